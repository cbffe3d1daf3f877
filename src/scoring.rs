//! How the filter layer's attention becomes token scores, as ONE value: the scoring, its query
//! window and the pooling kernel. Flags, presets, records and reports all spell it the same
//! way, through [`ScoringSpec`]'s `FromStr`/`Display`:
//!
//! `reference`, `head-softmax`, `window-softmax:32`, `window-softmax:16+pool15`, `reference+pool9`,
//! `window-softmax:32+pool15+layers3`
//!
//! The pool suffix is omitted when it is the reference's kernel (5), the layers suffix when the
//! scores come from the filter layer alone. `+layersN` scores the N consecutive layers ending at
//! the filter layer, standardises each and sums them ([`crate::select::combine_layers`]): those
//! layers run in the filter pass anyway, and one layer alone is fragile on some models (good
//! and useless layers alternate).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use ndarray::{Array1, ArrayView1};

use crate::select::{self, Scoring, DEFAULT_WINDOW, POOL_KERNEL};

/// A scoring with its window (inside [`Scoring::WindowSoftmax`]) and the pooling kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScoringSpec {
    pub scoring: Scoring,
    /// Average-pooling kernel over the token scores (odd).
    pub pool: usize,
    /// Consecutive layers ending at the filter layer whose scores are combined (1: that layer).
    pub layers: usize,
    /// Select whole sentences: every token takes the best pooled score of its sentence (or line),
    /// so a fact whose key scores high is kept with its value however long the value is.
    pub sentences: bool,
}

/// Most layers a multi-layer scoring may combine.
pub const MAX_LAYERS: usize = 8;

impl ScoringSpec {
    /// The paper's scoring: sum over heads of the last token's q·k, pool 5.
    pub const REFERENCE: Self = Self {
        scoring: Scoring::Reference,
        pool: POOL_KERNEL,
        layers: 1,
        sentences: false,
    };

    /// Query rows the filter pass must capture from the end of the prompt.
    #[must_use]
    pub fn queries_needed(self) -> usize {
        self.scoring.queries_needed()
    }

    /// The same scoring with another window (no effect unless it is window-softmax).
    #[must_use]
    pub fn with_window(self, window: usize) -> Self {
        match self.scoring {
            Scoring::WindowSoftmax { .. } => Self {
                scoring: Scoring::WindowSoftmax { window },
                ..self
            },
            _ => self,
        }
    }

    /// The same scoring with another pooling kernel.
    #[must_use]
    pub fn with_pool(self, pool: usize) -> Self {
        Self { pool, ..self }
    }

    /// The same scoring selecting whole sentences (or not).
    #[must_use]
    pub fn with_sentences(self, sentences: bool) -> Self {
        Self { sentences, ..self }
    }

    /// The same scoring over `layers` consecutive layers.
    #[must_use]
    pub fn with_layers(self, layers: usize) -> Self {
        Self { layers, ..self }
    }

    /// The scores top-k ranks, from each captured layer's raw scores (ascending layers): several
    /// layers standardised and summed, then this spec's pool, then with `+sent` each token
    /// lifted to its sentence's best (`ends`: which tokens end one; `protected` tokens never lend
    /// their scores).
    ///
    /// # Errors
    /// No layers, or layers of different lengths.
    pub fn ranked(
        self,
        per_layer: &[ArrayView1<'_, f32>],
        ends: &[bool],
        protected: &[bool],
    ) -> anyhow::Result<Array1<f32>> {
        let pooled = match per_layer {
            [one] => select::avg_pool(*one, self.pool),
            many => select::avg_pool(select::combine_layers(many)?.view(), self.pool),
        };
        Ok(if self.sentences {
            select::segment_max(pooled.view(), ends, protected)
        } else {
            pooled
        })
    }

    /// The layers whose Q/K a filter pass at `layer` must capture (ascending).
    #[must_use]
    pub fn capture_layers(self, layer: usize) -> Vec<usize> {
        (layer + 1 - self.layers.clamp(1, layer + 1)..=layer).collect()
    }

    /// Check the numbers against a prompt of `n` tokens (`None`: length not known yet).
    ///
    /// # Errors
    /// An even or zero pool, a zero window, or either wider than the prompt.
    pub fn validate(self, n: Option<usize>) -> Result<(), String> {
        if self.pool == 0 || self.pool.is_multiple_of(2) {
            return Err(format!(
                "--gem-pool must be an odd number, got {}",
                self.pool
            ));
        }
        if let Scoring::WindowSoftmax { window: 0 } = self.scoring {
            return Err("--gem-window must be at least 1".into());
        }
        if !(1..=MAX_LAYERS).contains(&self.layers) {
            return Err(format!(
                "a scoring combines 1 to {MAX_LAYERS} layers, got {}",
                self.layers
            ));
        }
        if let Some(n) = n {
            if self.pool > n.max(1) {
                return Err(format!(
                    "--gem-pool {} is wider than the prompt ({n} tokens)",
                    self.pool
                ));
            }
        }
        Ok(())
    }
}

impl Default for ScoringSpec {
    fn default() -> Self {
        Self::REFERENCE
    }
}

impl fmt::Display for ScoringSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scoring {
            Scoring::WindowSoftmax { window } => write!(f, "window-softmax:{window}")?,
            s => write!(f, "{s}")?,
        }
        if self.pool != POOL_KERNEL {
            write!(f, "+pool{}", self.pool)?;
        }
        if self.layers != 1 {
            write!(f, "+layers{}", self.layers)?;
        }
        if self.sentences {
            f.write_str("+sent")?;
        }
        Ok(())
    }
}

impl FromStr for ScoringSpec {
    type Err = String;

    /// `NAME[:WINDOW][+poolK][+layersN][+sent]`; a window-softmax without a window gets
    /// [`DEFAULT_WINDOW`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let mut parts = s.split('+');
        let head = parts.next().unwrap_or("");
        let (mut pool, mut layers, mut sentences) = (POOL_KERNEL, 1, false);
        for part in parts {
            if part == "sent" {
                sentences = true;
                continue;
            }
            let num = |prefix: &str| {
                part.strip_prefix(prefix)
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        format!("bad '+{part}' in scoring '{s}' (+poolK, +layersN, +sent)")
                    })
            };
            if part.starts_with("pool") {
                pool = num("pool")?;
            } else {
                layers = num("layers")?;
            }
        }
        let (name, window) = match head.split_once(':') {
            Some((n, w)) => (
                n,
                Some(
                    w.parse::<usize>()
                        .map_err(|_| format!("bad window in scoring '{s}'"))?,
                ),
            ),
            None => (head, None),
        };
        let scoring: Scoring = name.parse().map_err(|e| format!("{e}"))?;
        let scoring = match (scoring, window) {
            (Scoring::WindowSoftmax { .. }, w) => Scoring::WindowSoftmax {
                window: w.unwrap_or(DEFAULT_WINDOW),
            },
            (other, None) => other,
            (other, Some(_)) => return Err(format!("scoring '{other}' takes no window")),
        };
        let spec = Self {
            scoring,
            pool,
            layers,
            sentences,
        };
        spec.validate(None)?;
        Ok(spec)
    }
}

impl TryFrom<String> for ScoringSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ScoringSpec> for String {
    fn from(s: ScoringSpec) -> Self {
        s.to_string()
    }
}

/// Parse a comma-separated list of specs.
///
/// # Errors
/// Any malformed entry, or an empty list.
pub fn parse_list(list: &str) -> Result<Vec<ScoringSpec>, String> {
    let v = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<ScoringSpec>, String>>()?;
    if v.is_empty() {
        return Err("no scorings given".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for s in [
            "reference",
            "head-softmax",
            "window-softmax:32",
            "window-softmax:16+pool15",
            "reference+pool9",
            "window-softmax:32+pool15+layers3",
            "reference+layers2",
            "window-softmax:32+pool31+sent",
            "window-softmax:32+layers3+sent",
        ] {
            let spec: ScoringSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        let w: ScoringSpec = "window-softmax".parse().unwrap();
        assert_eq!(
            w.scoring,
            Scoring::WindowSoftmax {
                window: DEFAULT_WINDOW
            }
        );
        assert_eq!(w.pool, POOL_KERNEL);
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "",
            "softmax",
            "reference:3",
            "window-softmax:x",
            "window-softmax:0",
            "reference+pool4",
            "reference+pool0",
            "reference+poolx",
            "reference+layers0",
            "reference+layers9",
            "reference+bogus3",
            "reference+sentx",
        ] {
            assert!(bad.parse::<ScoringSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            s: ScoringSpec,
        }
        let t = T {
            s: "window-softmax:16+pool15".parse().unwrap(),
        };
        let text = toml::to_string(&t).unwrap();
        assert_eq!(text.trim(), "s = \"window-softmax:16+pool15\"");
        assert_eq!(toml::from_str::<T>(&text).unwrap(), t);
        assert!(toml::from_str::<T>("s = \"bogus\"").is_err());
    }

    #[test]
    fn pool_is_bounded_by_the_prompt() {
        let s = ScoringSpec::REFERENCE.with_pool(31);
        assert!(s.validate(Some(31)).is_ok());
        assert!(s.validate(Some(30)).unwrap_err().contains("--gem-pool 31"));
        assert!(ScoringSpec::REFERENCE
            .with_pool(u32::MAX as usize)
            .validate(Some(10))
            .is_err());
    }

    #[test]
    fn multi_layer_capture_ends_at_the_filter_layer() {
        let s: ScoringSpec = "window-softmax:32+layers3".parse().unwrap();
        assert_eq!(s.capture_layers(13), vec![11, 12, 13]);
        assert_eq!(s.capture_layers(1), vec![0, 1]);
        assert_eq!(ScoringSpec::REFERENCE.capture_layers(5), vec![5]);
    }

    #[test]
    fn list_parses() {
        let v = parse_list("reference, window-softmax:8+pool15").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].to_string(), "window-softmax:8+pool15");
        assert!(parse_list(" , ").is_err());
    }
}
