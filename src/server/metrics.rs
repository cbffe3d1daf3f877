//! Counters for `/metrics` (Prometheus text format, llama-server's names where it has them) and
//! the slots' state for `/slots`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde_json::{json, Value};

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub cancelled: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub predicted_tokens: AtomicU64,
    /// Microseconds to the first token and of decoding, summed.
    pub prompt_us: AtomicU64,
    pub predicted_us: AtomicU64,
    pub filter_decoded: AtomicU64,
    pub kept_tokens: AtomicU64,
    pub doc_hits: AtomicU64,
    pub doc_misses: AtomicU64,
    /// Requests waiting for a slot.
    pub deferred: AtomicI64,
}

/// One slot (a worker thread) as `/slots` shows it.
#[derive(Debug, Default)]
pub struct Slot {
    pub busy: AtomicBool,
    pub task: AtomicU64,
    pub done: AtomicU64,
    pub docs: AtomicU64,
    pub doc_bytes: AtomicU64,
    /// Tokens of the kept documents.
    pub doc_tokens: AtomicU64,
    /// The state file of the slot's latest filtered document (`--slot-save-path`).
    pub latest: Mutex<Option<PathBuf>>,
    /// `action=erase` asked: the worker drops its documents when next idle.
    pub erase: AtomicBool,
}

/// Seconds from microseconds.
fn secs(us: &AtomicU64) -> f64 {
    us.load(Relaxed) as f64 / 1e6
}

impl Metrics {
    /// The Prometheus text exposition.
    #[must_use]
    pub fn prometheus(&self, slots: &[Slot]) -> String {
        let mut out = String::new();
        for (name, kind, help, v) in self.rows(slots) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }

    /// (name, type, help, value) of every metric.
    fn rows(&self, slots: &[Slot]) -> [(&'static str, &'static str, &'static str, f64); 15] {
        let busy = slots.iter().filter(|s| s.busy.load(Relaxed)).count();
        let doc_bytes: u64 = slots.iter().map(|s| s.doc_bytes.load(Relaxed)).sum();
        let docs: u64 = slots.iter().map(|s| s.docs.load(Relaxed)).sum();
        let n = |a: &AtomicU64| a.load(Relaxed) as f64;
        [
            (
                "llamacpp:prompt_tokens_total",
                "counter",
                "Prompt tokens received.",
                n(&self.prompt_tokens),
            ),
            (
                "llamacpp:prompt_seconds_total",
                "counter",
                "Seconds to first token, summed.",
                secs(&self.prompt_us),
            ),
            (
                "llamacpp:tokens_predicted_total",
                "counter",
                "Tokens generated.",
                n(&self.predicted_tokens),
            ),
            (
                "llamacpp:tokens_predicted_seconds_total",
                "counter",
                "Seconds of generation, summed.",
                secs(&self.predicted_us),
            ),
            (
                "llamacpp:requests_processing",
                "gauge",
                "Requests in a slot now.",
                busy as f64,
            ),
            (
                "llamacpp:requests_deferred",
                "gauge",
                "Requests waiting for a slot.",
                self.deferred.load(Relaxed).max(0) as f64,
            ),
            (
                "gemfilter:requests_total",
                "counter",
                "Completion requests accepted.",
                n(&self.requests),
            ),
            (
                "gemfilter:request_errors_total",
                "counter",
                "Requests answered with an error.",
                n(&self.errors),
            ),
            (
                "gemfilter:requests_cancelled_total",
                "counter",
                "Requests whose client left before the end.",
                n(&self.cancelled),
            ),
            (
                "gemfilter:filter_tokens_decoded_total",
                "counter",
                "Tokens decoded through the filter layers.",
                n(&self.filter_decoded),
            ),
            (
                "gemfilter:kept_tokens_total",
                "counter",
                "Prompt tokens the full model answered from.",
                n(&self.kept_tokens),
            ),
            (
                "gemfilter:document_cache_hits_total",
                "counter",
                "Requests about a document whose filter state was kept.",
                n(&self.doc_hits),
            ),
            (
                "gemfilter:document_cache_misses_total",
                "counter",
                "Requests that filtered their document anew.",
                n(&self.doc_misses),
            ),
            (
                "gemfilter:document_cache_documents",
                "gauge",
                "Documents whose filter state is kept.",
                docs as f64,
            ),
            (
                "gemfilter:document_cache_bytes",
                "gauge",
                "Bytes of kept filter state.",
                doc_bytes as f64,
            ),
        ]
    }
}

/// `/slots`: one object per slot.
#[must_use]
pub fn slots_json(slots: &[Slot], n_ctx: u32) -> Value {
    Value::Array(
        slots
            .iter()
            .enumerate()
            .map(|(id, s)| {
                json!({
                    "id": id,
                    "n_ctx": n_ctx,
                    "is_processing": s.busy.load(Relaxed),
                    "id_task": s.task.load(Relaxed),
                    "requests_done": s.done.load(Relaxed),
                    "cached_documents": s.docs.load(Relaxed),
                    "cached_bytes": s.doc_bytes.load(Relaxed),
                    "cached_tokens": s.doc_tokens.load(Relaxed),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_value() {
        let m = Metrics::default();
        m.prompt_tokens.store(42, Relaxed);
        let slots = [Slot::default()];
        slots[0].busy.store(true, Relaxed);
        let t = m.prometheus(&slots);
        assert!(t.contains(
            "# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 42\n"
        ));
        assert!(t.contains("llamacpp:requests_processing 1\n"));
        assert_eq!(slots_json(&slots, 8)[0]["is_processing"], true);
    }
}
