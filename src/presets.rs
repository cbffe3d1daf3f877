//! `models.toml` (built in) plus the user's presets file → the filter layer, k and scoring for
//! a model, chosen from its GGUF metadata before loading.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::gguf_info::ModelMeta;
use crate::scoring::ScoringSpec;

const BUILTIN: &str = include_str!("../models.toml");

/// One `[[model]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct Entry {
    pub label: String,
    pub architecture: Option<String>,
    pub block_count: Option<usize>,
    pub size_label: Option<String>,
    /// Case-insensitive substring of general.basename or general.name.
    pub name: Option<String>,
    pub filter_layer: usize,
    pub top_k: Option<usize>,
    /// Scoring with its window and pool, e.g. `window-softmax:16+pool15`.
    pub scoring: Option<ScoringSpec>,
    /// Older files spell the window and the pool as keys of their own; they override the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Fallback {
    pub layer_fraction: f64,
    pub top_k: usize,
    pub scoring: ScoringSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PresetFile {
    pub fallback: Option<Fallback>,
    #[serde(default, rename = "model")]
    pub models: Vec<Entry>,
}

/// The settings a run starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub layer: usize,
    pub top_k: usize,
    pub spec: ScoringSpec,
    /// Which entry matched, or None for the fallback.
    pub label: Option<String>,
}

impl Entry {
    /// The entry's scoring with the legacy `window`/`pool` keys folded in.
    #[must_use]
    pub fn spec(&self, default: ScoringSpec) -> ScoringSpec {
        let mut spec = self.scoring.unwrap_or(default);
        if let Some(w) = self.window {
            spec = spec.with_window(w);
        }
        if let Some(p) = self.pool {
            spec = spec.with_pool(p);
        }
        spec
    }

    /// Number of keys that match, or None if any given key does not.
    fn specificity(&self, m: &ModelMeta) -> Option<usize> {
        let mut n = 0;
        if let Some(a) = &self.architecture {
            (a == &m.architecture).then_some(())?;
            n += 1;
        }
        if let Some(b) = self.block_count {
            (b == m.block_count).then_some(())?;
            n += 1;
        }
        if let Some(s) = &self.size_label {
            m.size_label
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(s))
                .then_some(())?;
            n += 1;
        }
        if let Some(name) = &self.name {
            let needle = name.to_lowercase();
            let hit = [&m.basename, &m.name].iter().any(|f| {
                f.as_deref()
                    .is_some_and(|v| v.to_lowercase().contains(&needle))
            });
            hit.then_some(())?;
            n += 1;
        }
        Some(n)
    }
}

/// Where user presets live: `$GEMFILTER_PRESETS`, else `~/.config/gemfilter/presets.toml`.
#[must_use]
pub fn user_presets_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GEMFILTER_PRESETS") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("gemfilter").join("presets.toml"))
}

/// Parse a presets file.
///
/// # Errors
/// TOML syntax or schema errors, with the file named.
pub fn parse(text: &str, origin: &str) -> Result<PresetFile> {
    toml::from_str(text).with_context(|| format!("invalid presets file {origin}"))
}

/// Load the user's presets (if the file exists) and the built-in ones.
///
/// # Errors
/// An unreadable or invalid user presets file.
pub fn load() -> Result<(Option<PresetFile>, PresetFile)> {
    let builtin = parse(BUILTIN, "models.toml (built in)")?;
    let user = match user_presets_path() {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(parse(&text, &p.display().to_string())?)
        }
        _ => None,
    };
    Ok((user, builtin))
}

/// Pick the preset for `meta`: the most specific matching entry, user entries first.
#[must_use]
pub fn resolve(meta: &ModelMeta, user: Option<&PresetFile>, builtin: &PresetFile) -> Preset {
    let mut best: Option<(usize, &Entry)> = None;
    for e in user.iter().flat_map(|u| &u.models).chain(&builtin.models) {
        if let Some(s) = e.specificity(meta) {
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, e));
            }
        }
    }
    let fb = user
        .and_then(|u| u.fallback.clone())
        .or_else(|| builtin.fallback.clone())
        .unwrap_or(Fallback {
            layer_fraction: 0.4,
            top_k: 1024,
            scoring: ScoringSpec::REFERENCE,
        });
    if let Some((_, e)) = best {
        return Preset {
            layer: e.filter_layer,
            top_k: e.top_k.unwrap_or(fb.top_k),
            spec: e.spec(fb.scoring),
            label: Some(e.label.clone()),
        };
    }
    Preset {
        layer: fallback_layer(meta, fb.layer_fraction),
        top_k: fb.top_k,
        spec: fb.scoring,
        label: None,
    }
}

/// floor(L * fraction), moved to the nearest global layer on sliding-window models.
#[must_use]
pub fn fallback_layer(meta: &ModelMeta, fraction: f64) -> usize {
    let l = meta.block_count.max(1);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let guess = ((l as f64 * fraction).floor() as usize).min(l - 1);
    (0..l)
        .filter(|&il| !meta.is_sliding_layer(il))
        .min_by_key(|&il| (il.abs_diff(guess), il))
        .unwrap_or(guess)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(arch: &str, layers: usize, name: &str, size: &str) -> ModelMeta {
        ModelMeta {
            architecture: arch.into(),
            block_count: layers,
            basename: Some(name.into()),
            size_label: Some(size.into()),
            ..Default::default()
        }
    }

    #[test]
    fn builtin_presets_match_the_reference_models() {
        let b = parse(BUILTIN, "builtin").unwrap();
        let p = resolve(&meta("llama", 32, "Meta-Llama-3.1", "8B"), None, &b);
        assert_eq!((p.layer, p.top_k), (13, 1024));
        assert_eq!(
            resolve(
                &meta("llama", 40, "Mistral-Nemo-Instruct-2407", "12B"),
                None,
                &b
            )
            .layer,
            19
        );
        assert_eq!(
            resolve(&meta("phi3", 32, "Phi-3.5-mini-instruct", "3.8B"), None, &b).layer,
            19
        );
        let smol = resolve(&meta("llama", 30, "SmolLM2", "135M"), None, &b);
        assert_eq!(smol.label.as_deref(), Some("SmolLM2-135M-Instruct"));
        let g = ModelMeta {
            sliding_window: Some(512),
            swa_pattern: Some(6),
            ..meta("gemma3", 18, "gemma-3", "270M")
        };
        let gp = resolve(&g, None, &b);
        assert!(
            !g.is_sliding_layer(gp.layer),
            "gemma preset layer {} slides",
            gp.layer
        );
    }

    #[test]
    fn unknown_model_falls_back_and_avoids_sliding_layers() {
        let b = parse(BUILTIN, "builtin").unwrap();
        let p = resolve(&meta("qwen2", 28, "Qwen2", "7B"), None, &b);
        assert_eq!((p.layer, p.label), (11, None));
        let g = ModelMeta {
            sliding_window: Some(1024),
            swa_pattern: Some(6),
            ..meta("gemma3", 26, "x", "1B")
        };
        assert_eq!(fallback_layer(&g, 0.4), 11);
    }

    #[test]
    fn user_entries_override_builtin() {
        let b = parse(BUILTIN, "builtin").unwrap();
        let u = parse("[[model]]\nlabel='mine'\narchitecture='llama'\nblock_count=30\nname='smollm2'\nfilter_layer=21\nscoring='window-softmax'\nwindow=16\n", "user").unwrap();
        let p = resolve(&meta("llama", 30, "SmolLM2", "135M"), Some(&u), &b);
        assert_eq!(
            (p.layer, p.spec.to_string().as_str()),
            (21, "window-softmax:16")
        );
        let u = parse("[[model]]\nlabel='new'\narchitecture='llama'\nblock_count=30\nname='smollm2'\nfilter_layer=20\nscoring='window-softmax:8+pool15'\n", "user").unwrap();
        let p = resolve(&meta("llama", 30, "SmolLM2", "135M"), Some(&u), &b);
        assert_eq!(p.spec.to_string(), "window-softmax:8+pool15");
        assert!(parse(
            "[[model]]\nlabel='x'\nfilter_layer=1\nscoring='bogus'\n",
            "bad"
        )
        .is_err());
        assert!(parse("[[model]]\nlabel=3", "bad").is_err());
    }
}
