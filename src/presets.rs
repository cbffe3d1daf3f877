//! `models.toml` (built in) plus the user's presets file → the filter layer, k and scoring for
//! a model, chosen from its GGUF metadata before loading. The user's file is read only when it
//! is a regular file of sane size, and calibration edits it in place ([`store`]): comments and
//! keys it does not know are kept, the file is replaced atomically, and a file that is not a
//! presets file is never written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, TempFile};
use crate::gguf_info::ModelMeta;
use crate::sanitize;
use crate::scoring::ScoringSpec;

const BUILTIN: &str = include_str!("../models.toml");
/// A presets file is a few KiB; anything past this is not one (or not meant for us).
pub const MAX_PRESETS_BYTES: u64 = 1 << 20;
/// The top-level keys of a presets file; a file with keys but neither of these is another file.
const TOP_KEYS: [&str; 2] = ["fallback", "model"];

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

/// Where user presets live: `$GEMFILTER_PRESETS`, else `~/.config/gemfilter/presets.toml`. An
/// empty variable counts as unset.
#[must_use]
pub fn user_presets_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("GEMFILTER_PRESETS") {
        return Some(PathBuf::from(p));
    }
    let base = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("gemfilter").join("presets.toml"))
}

/// Parse a presets file and check its values.
///
/// # Errors
/// TOML syntax or schema errors as one line with the position and reason, or a fallback
/// `layer_fraction` outside 0..=1, with the file named.
pub fn parse(text: &str, origin: &str) -> Result<PresetFile> {
    let file: PresetFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(String::new(), |r| {
            let before = &text[..r.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}: ")
        });
        anyhow::anyhow!(
            "invalid presets file {origin}: {at}{}",
            sanitize::line(e.message().trim())
        )
    })?;
    if let Some(fb) = &file.fallback {
        let f = fb.layer_fraction;
        if !(0.0..=1.0).contains(&f) {
            bail!(
                "invalid presets file {origin}: fallback layer_fraction {f} is not between 0 and 1"
            );
        }
    }
    Ok(file)
}

/// Read a user presets file: a regular file of at most [`MAX_PRESETS_BYTES`], UTF-8.
fn read_user(path: &Path) -> Result<String> {
    let bytes = fsutil::read_bounded(path, MAX_PRESETS_BYTES, "presets file")?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "presets file {} is not UTF-8 text (bad byte at offset {})",
            sanitize::path(path),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Load the user's presets (if the file exists) and the built-in ones.
///
/// # Errors
/// An unreadable or invalid user presets file, or one that is not a regular file.
pub fn load() -> Result<(Option<PresetFile>, PresetFile)> {
    let builtin = parse(BUILTIN, "models.toml (built in)")?;
    let user = match user_presets_path() {
        // Read through a symlink (a dotfile link is fine); FIFOs and devices are refused.
        Some(p) if std::fs::metadata(&p).is_ok() => {
            Some(parse(&read_user(&p)?, &sanitize::path(&p))?)
        }
        _ => None,
    };
    Ok((user, builtin))
}

/// The model keys of a `[[model]]` table equal those of `e` (a key absent on both sides is
/// equal).
fn same_model(t: &toml_edit::Table, e: &Entry) -> bool {
    let s = |k: &str| {
        t.get(k)
            .and_then(toml_edit::Item::as_str)
            .map(str::to_owned)
    };
    let n = |k: &str| {
        t.get(k)
            .and_then(toml_edit::Item::as_integer)
            .and_then(|v| usize::try_from(v).ok())
    };
    s("architecture") == e.architecture
        && n("block_count") == e.block_count
        && s("name") == e.name
        && s("size_label") == e.size_label
}

/// Write `e`'s keys into a `[[model]]` table (legacy `window`/`pool` dropped: the scoring
/// carries them).
fn fill(t: &mut toml_edit::Table, e: &Entry) {
    use toml_edit::Value;
    let int = |v: usize| Value::from(i64::try_from(v).unwrap_or(i64::MAX));
    set(t, "label", Value::from(e.label.as_str()));
    for (k, v) in [
        ("architecture", &e.architecture),
        ("size_label", &e.size_label),
        ("name", &e.name),
    ] {
        if let Some(v) = v {
            set(t, k, Value::from(v.as_str()));
        }
    }
    if let Some(b) = e.block_count {
        set(t, "block_count", int(b));
    }
    set(t, "filter_layer", int(e.filter_layer));
    match e.top_k {
        Some(k) => set(t, "top_k", int(k)),
        None => drop(t.remove("top_k")),
    }
    if let Some(sc) = &e.scoring {
        set(t, "scoring", Value::from(sc.to_string()));
    }
    t.remove("window");
    t.remove("pool");
}

/// Set `k` to `v`, keeping an existing key's comments and the value's spacing.
fn set(t: &mut toml_edit::Table, k: &str, mut v: toml_edit::Value) {
    match t.get_mut(k) {
        Some(item) => {
            if let Some(old) = item.as_value() {
                *v.decor_mut() = old.decor().clone();
            }
            *item = toml_edit::Item::Value(v);
        }
        None => {
            t.insert(k, toml_edit::Item::Value(v));
        }
    }
}

/// Put `entry` into the presets file at `path` (created when missing), replacing the entry with
/// the same model keys; `note` becomes a comment above a new entry. The file is edited, not
/// rewritten: its comments, order and unknown keys stay. It is replaced atomically (a temp file
/// beside it, renamed).
///
/// # Errors
/// A path that is not a regular file, a file that is not a presets file (left untouched), an
/// invalid one, or a failed write.
pub fn store(path: &Path, entry: &Entry, note: &str) -> Result<()> {
    let shown = sanitize::path(path);
    let text = match fsutil::regular_or_absent(path, "presets file")? {
        Some(_) => read_user(path)?,
        None => {
            "# gemfilter user presets (override models.toml); entries written by calibration.\n"
                .to_owned()
        }
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        anyhow::anyhow!(
            "invalid presets file {shown}: {}",
            sanitize::line(e.message().trim())
        )
    })?;
    let keys: Vec<String> = doc.iter().map(|(k, _)| k.to_owned()).collect();
    if !keys.is_empty() && !keys.iter().any(|k| TOP_KEYS.contains(&k.as_str())) {
        bail!(
            "{shown} is not a gemfilter presets file (it has no [fallback] or [[model]]): not writing to it"
        );
    }
    parse(&text, &shown)?;
    let models = doc.entry("model").or_insert(toml_edit::Item::ArrayOfTables(
        toml_edit::ArrayOfTables::new(),
    ));
    let Some(models) = models.as_array_of_tables_mut() else {
        bail!("{shown}: `model` is not a list of [[model]] tables: not writing to it");
    };
    let at = models.iter().position(|t| same_model(t, entry));
    if let Some(t) = at.and_then(|i| models.get_mut(i)) {
        fill(t, entry);
    } else {
        let mut t = toml_edit::Table::new();
        fill(&mut t, entry);
        t.decor_mut()
            .set_prefix(format!("\n# {}\n", sanitize::line(note)));
        models.push(t);
    }
    let out = doc.to_string();
    parse(&out, &shown).context("the edited presets would not read back")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", sanitize::path(dir)))?;
    }
    let mut tmp = TempFile::beside(path)?;
    tmp.write_all(out.as_bytes())?;
    tmp.commit(path)
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

    #[test]
    fn errors_are_one_line_with_position_and_reason_and_fractions_are_checked() {
        let e = parse(
            "[fallback]\nlayer_fraction = 0.4\ntop_k = 'x'\nscoring='reference'\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.starts_with("invalid presets file f: line 3, column 9: "),
            "{e}"
        );
        assert!(e.contains("invalid type"), "{e}");
        for bad in ["nan", "-0.5", "1.5", "inf"] {
            let e = parse(
                &format!("[fallback]\nlayer_fraction = {bad}\ntop_k = 8\nscoring='reference'\n"),
                "f",
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("layer_fraction") && e.contains("between 0 and 1"),
                "{e}"
            );
        }
    }

    fn entry(layer: usize) -> Entry {
        Entry {
            label: "m (calibrated)".into(),
            architecture: Some("llama".into()),
            block_count: Some(30),
            name: Some("SmolLM2".into()),
            filter_layer: layer,
            scoring: Some("window-softmax:32+pool31".parse().unwrap()),
            ..Entry::default()
        }
    }

    #[test]
    fn store_edits_the_file_keeping_comments_and_unknown_keys() {
        let d = std::env::temp_dir().join(format!("gf-presets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("presets.toml");
        std::fs::write(
            &p,
            "# my presets\n[[model]]\n# the llama one\nlabel = 'old'\narchitecture = 'llama'\nblock_count = 30\nname = 'SmolLM2'\nfilter_layer = 3\nwindow = 8\nmine = true\n\n[[model]]\nlabel = 'other'\nfilter_layer = 1\n",
        )
        .unwrap();
        store(&p, &entry(21), "note").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("# my presets\n"), "{text}");
        assert!(
            text.contains("# the llama one") && text.contains("mine = true"),
            "{text}"
        );
        assert!(
            !text.contains("window = 8") && !text.contains("top_k"),
            "{text}"
        );
        let f = parse(&text, "x").unwrap();
        assert_eq!(f.models.len(), 2);
        assert_eq!(
            (f.models[0].filter_layer, f.models[1].label.as_str()),
            (21, "other")
        );
        // Another model is appended with its note; a new file is created.
        let mut e = entry(5);
        e.name = Some("Other".into());
        store(&p, &e, "calibrated x").unwrap();
        let f = parse(&std::fs::read_to_string(&p).unwrap(), "x").unwrap();
        assert_eq!(f.models.len(), 3);
        let fresh = d.join("sub/new.toml");
        store(&fresh, &entry(7), "n").unwrap();
        assert_eq!(
            parse(&std::fs::read_to_string(&fresh).unwrap(), "x")
                .unwrap()
                .models[0]
                .filter_layer,
            7
        );
        // Not a presets file, or not a regular file: left exactly as it was.
        let cargo = d.join("Cargo.toml");
        let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
        std::fs::write(&cargo, &body).unwrap();
        let err = store(&cargo, &entry(1), "n").unwrap_err().to_string();
        assert!(err.contains("is not a gemfilter presets file"), "{err}");
        assert_eq!(std::fs::read(&cargo).unwrap(), body);
        let link = d.join("link.toml");
        std::os::unix::fs::symlink(&cargo, &link).unwrap();
        assert!(store(&link, &entry(1), "n")
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert_eq!(std::fs::read(&cargo).unwrap(), body);
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            4,
            "no temp file left"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
