//! The `--json` record: one shape, [`Record`], for a single answer, every turn of a
//! conversation, every server response (its `"gem"` field, [`RequestRecord`]) and every bench
//! measurement (documented in `docs/json.md`). Field names are a stable interface (users'
//! scripts read them): add fields, never rename; a change of meaning raises
//! [`SCHEMA_VERSION`].

use serde::Serialize;

use crate::generate::{Generated, StopReason};
use crate::prompt::Protect;
use crate::settings::{GemSettings, ModelSettings};

#[derive(Debug, Clone, Serialize, Default)]
pub struct Timings {
    /// Model load (s); a conversation turn's models are loaded before its first turn (0 unless
    /// the full model is loaded for each answer).
    pub load_s: f64,
    /// Filter pass: prefill through layer r of the whole prompt (s); 0 with --gem off.
    pub filter_pass_s: f64,
    /// Part of the filter pass spent reading layer r's keys out of the KV cache (s).
    pub filter_read_s: f64,
    /// Scoring and top-k (s).
    pub selection_s: f64,
    /// Prefill of the selected tokens (or the whole prompt with --gem off) (s).
    pub rerun_s: f64,
    /// From the start of prompt processing to the first sampled token (s).
    pub first_token_s: f64,
    /// Generation speed after the first token (tokens/s); null with fewer than 2 tokens.
    pub decode_tok_per_s: Option<f64>,
    /// Whole run (or turn) after load (s).
    pub total_s: f64,
}

/// The `--json` record's schema version (`schema_version`), raised when a field changes
/// meaning or goes away; new fields do not raise it.
pub const SCHEMA_VERSION: u32 = 1;

/// What a record answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A single answer (the default mode).
    Run,
    /// One turn of conversation mode (`-cnv`), one record per question.
    Turn,
    /// One answer of `gemfilter serve` (the response's `"gem"` field).
    Request,
    /// One method at one length of `gemfilter bench` (greedy, end of generation ignored).
    Bench,
}

/// One answer, as `--json` writes it in every mode.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    pub kind: RecordKind,
    /// The conversation's turn, from 1; null for a single answer.
    pub turn: Option<usize>,
    /// The question (`-p`, or the conversation's line); null without one.
    pub question: Option<String>,
    pub answer: String,
    pub model: String,
    pub architecture: String,
    pub gem: bool,
    /// Filter layer (0-based), null with --gem off.
    pub layer: Option<usize>,
    /// Requested k, null with --gem off.
    pub k: Option<usize>,
    pub scoring: Option<crate::scoring::ScoringSpec>,
    pub protect: Option<crate::prompt::Protect>,
    pub prompt_tokens: usize,
    /// Tokens the model answered from (= `prompt_tokens` when nothing was filtered).
    pub selected_tokens: usize,
    pub protected_tokens: usize,
    /// Token range of the -f context within the prompt, [start, end).
    pub context_range: [usize; 2],
    /// Selected prompt positions as inclusive [start, end] runs (a conversation turn lists
    /// those within the document: the conversation after it is always kept).
    pub selected_ranges: Vec<[usize; 2]>,
    /// Why the filter pass was skipped, if it was.
    pub filter_skipped: Option<String>,
    /// Tokens decoded through the filter layers: the whole prompt when it is filtered, only
    /// what follows the document in a conversation's later turns (its state is kept); 0 when
    /// nothing was filtered.
    pub filter_tokens_decoded: usize,
    /// Highest layer whose graph nodes ran in the filter pass (should equal `layer`); null
    /// where it is not traced (conversation turns).
    pub filter_max_layer: Option<usize>,
    pub generated_tokens: usize,
    pub stop_reason: StopReason,
    /// Ctrl-C stopped the answer (conversation mode).
    pub interrupted: bool,
    pub timings: Timings,
    /// Peak device memory this process used (bytes), where the backend reports it (GPU).
    pub peak_device_mem_bytes: Option<u64>,
    /// The draft model that selected (`--gem-draft`); `layer` and `scoring` are then its own.
    pub draft: Option<DraftRecord>,
    /// Loading the target for the re-run (s); `timings.load_s` counts every load.
    pub target_load_s: f64,
    /// Where the re-run put the selected tokens; null with --gem off.
    pub positions: Option<crate::settings::Positions>,
}

impl Record {
    /// The record of one answer `generated` by `model` under GemFilter's settings (`gem`, None
    /// when it is off) and `protect`: the settings and the answer filled, prompt counts, ranges
    /// and times left empty for the caller.
    #[must_use]
    pub fn answered(
        kind: RecordKind,
        model: &ModelSettings,
        gem: Option<&GemSettings>,
        protect: Protect,
        generated: &Generated,
    ) -> Self {
        Record {
            schema_version: SCHEMA_VERSION,
            kind,
            turn: None,
            question: None,
            answer: generated.text.clone(),
            model: model.path.display().to_string(),
            architecture: model.meta.architecture.clone(),
            gem: gem.is_some(),
            layer: gem.map(|g| g.layer),
            k: gem.map(|g| g.top_k),
            scoring: gem.map(|g| g.spec),
            protect: gem.map(|_| protect),
            prompt_tokens: 0,
            selected_tokens: 0,
            protected_tokens: 0,
            context_range: [0, 0],
            selected_ranges: Vec::new(),
            filter_skipped: None,
            filter_tokens_decoded: 0,
            filter_max_layer: None,
            generated_tokens: generated.n_tokens(),
            stop_reason: generated.stop,
            interrupted: false,
            timings: Timings::default(),
            peak_device_mem_bytes: None,
            draft: None,
            target_load_s: 0.0,
            positions: gem.map(|g| g.positions),
        }
    }
}

/// A server response's `"gem"` field: the answer's [`Record`] (kind `request`) and what only
/// the server knows.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    #[serde(flatten)]
    pub record: Record,
    /// `selected_ranges` as text.
    pub kept_passages: Vec<String>,
    /// The document's filter state was in this slot's memory.
    pub document_cached: bool,
    /// The document's filter state was read back from `--slot-save-path`.
    pub document_from_disk: bool,
    /// Waiting for a free slot (s).
    pub queue_s: f64,
}

/// The draft of a draft-selected run.
#[derive(Debug, Clone, Serialize)]
pub struct DraftRecord {
    pub model: String,
    pub layer: usize,
    /// Loading the draft (or its prefix model) (s).
    pub load_s: f64,
}

/// `a / b` where both are known and `b` is positive: the benches' GemFilter/standard ratios.
#[must_use]
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// [`ratio`] of two byte counts (device memory).
#[must_use]
pub fn bytes_ratio(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    let f = |b: Option<u64>| b.map(|b| b as f64);
    ratio(f(a), f(b))
}

/// Bytes as "1.23 GB", or "n/a" where the backend reports no device memory.
#[must_use]
pub fn gb(b: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    b.map_or("n/a".into(), |b| format!("{:.2} GB", b as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_need_both_sides_and_a_positive_divisor() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(None, Some(4.0)), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(bytes_ratio(Some(3), Some(4)), Some(0.75));
        assert_eq!(bytes_ratio(Some(3), None), None);
        assert_eq!(bytes_ratio(Some(3), Some(0)), None);
        assert_eq!(gb(Some(4_780_000_000)), "4.78 GB");
        assert_eq!(gb(None), "n/a");
    }
}
