//! RULER's scoring (`scripts/eval/synthetic/constants.py`, `scripts/eval/evaluate.py`), per
//! sample in 0..=1. RULER reports `round(mean × 100, 2)` over a task's samples:
//!
//! ```python
//! def string_match_part(preds, refs):
//!     score = sum([max([1.0 if r.lower() in pred.lower() else 0.0 for r in ref]) ...]) / len(preds) * 100
//! def string_match_all(preds, refs):
//!     score = sum([sum([1.0 if r.lower() in pred.lower() else 0.0 for r in ref]) / len(ref) ...]) / len(preds) * 100
//! ```
//!
//! Predictions are first cleaned as `postprocess_pred` does: stripped, every character below
//! 0x20 turned into a newline, stripped again.

use serde::{Deserialize, Serialize};

/// Which of RULER's two rules scores a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `string_match_all`: the share of the references found (niah, vt, cwe).
    All,
    /// `string_match_part`: 1 when any reference is found (RULER's QA tasks).
    Part,
}

impl Metric {
    /// The score of one prediction, after [`postprocess_pred`].
    #[must_use]
    pub fn score<S: AsRef<str>>(self, prediction: &str, references: &[S]) -> f64 {
        let pred = postprocess_pred(prediction);
        match self {
            Metric::All => string_match_all(&pred, references),
            Metric::Part => string_match_part(&pred, references),
        }
    }
}

/// RULER's `postprocess_pred`: strip, control characters (`[\x00-\x1f]`) to `\n`, strip.
#[must_use]
pub fn postprocess_pred(prediction: &str) -> String {
    let s: String = prediction
        .trim()
        .chars()
        .map(|c| if c < '\u{20}' { '\n' } else { c })
        .collect();
    s.trim().to_owned()
}

fn found<S: AsRef<str>>(prediction: &str, references: &[S]) -> usize {
    let pred = prediction.to_lowercase();
    references
        .iter()
        .filter(|r| pred.contains(&r.as_ref().to_lowercase()))
        .count()
}

/// Share of `references` that occur in `prediction`, ignoring case (0 with no references).
#[must_use]
pub fn string_match_all<S: AsRef<str>>(prediction: &str, references: &[S]) -> f64 {
    if references.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let s = found(prediction, references) as f64 / references.len() as f64;
    s
}

/// 1 when any of `references` occurs in `prediction`, ignoring case, else 0.
#[must_use]
pub fn string_match_part<S: AsRef<str>>(prediction: &str, references: &[S]) -> f64 {
    if found(prediction, references) > 0 {
        1.0
    } else {
        0.0
    }
}
