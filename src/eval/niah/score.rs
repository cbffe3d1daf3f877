//! Answer scorers. `rouge1` is the reference harness's scorer (GemFilter's
//! `eval/needle/needle_in_haystack.py`: ROUGE-1 F-measure between the needle sentence and the
//! response, times 10 there; here in 0..1, and without the Porter stemmer, so plural/verb forms
//! that the stemmer would merge count as different words). `exact` is 1 when every expected
//! answer occurs in the response (case-insensitive), averaged over expected answers.

use std::collections::HashMap;

/// Lower-case alphanumeric words, as `rouge_score`'s default tokenizer splits them.
#[must_use]
pub fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// ROUGE-1 F-measure of `candidate` against `reference` (unigram overlap with counts).
#[must_use]
pub fn rouge1(reference: &str, candidate: &str) -> f64 {
    let (r, c) = (words(reference), words(candidate));
    if r.is_empty() || c.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &r {
        *counts.entry(w).or_default() += 1;
    }
    let mut hits = 0usize;
    for w in &c {
        if let Some(n) = counts.get_mut(w.as_str()) {
            if *n > 0 {
                *n -= 1;
                hits += 1;
            }
        }
    }
    if hits == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let (p, rc) = (hits as f64 / c.len() as f64, hits as f64 / r.len() as f64);
    2.0 * p * rc / (p + rc)
}

/// Share of `expected` answers found in `response` (case-insensitive substring).
#[must_use]
pub fn exact(expected: &[&str], response: &str) -> f64 {
    if expected.is_empty() {
        return 0.0;
    }
    let resp = response.to_lowercase();
    let found = expected
        .iter()
        .filter(|e| resp.contains(&e.to_lowercase()))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let s = found as f64 / expected.len() as f64;
    s
}

/// The part of a generated continuation that is scored: leading whitespace dropped, cut at the
/// first blank line (small base models ramble on into new "questions" after answering).
#[must_use]
pub fn scored_part(answer: &str) -> &str {
    let a = answer.trim_start();
    let end = a.find("\n\n").unwrap_or(a.len());
    a[..end].trim_end()
}
