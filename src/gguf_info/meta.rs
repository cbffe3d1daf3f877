//! What gemfilter keeps of a model's header: [`ModelMeta`], and which architectures it supports.

use super::parse::{Header, Value};

/// What gemfilter needs to know about a model file, from its GGUF header alone.
#[derive(Debug, Clone, Default)]
pub struct ModelMeta {
    pub architecture: String,
    pub name: Option<String>,
    pub basename: Option<String>,
    pub size_label: Option<String>,
    pub block_count: usize,
    pub context_length: Option<usize>,
    pub head_count: Option<usize>,
    pub head_count_kv: Option<usize>,
    /// Sliding-window size in tokens, for architectures that mix local and global layers.
    pub sliding_window: Option<usize>,
    /// Every `swa_pattern`-th layer (il % pattern == pattern - 1) is global; others slide.
    pub swa_pattern: Option<usize>,
    pub has_chat_template: bool,
    /// Where the tensor data starts (the header's length, padded to the alignment).
    pub data_offset: u64,
    /// End of the last tensor's data: the least size of a complete file.
    pub data_end: u64,
}

impl ModelMeta {
    /// True when layer `il` only attends within a sliding window (no use for selection).
    #[must_use]
    pub fn is_sliding_layer(&self, il: usize) -> bool {
        match (self.sliding_window, self.swa_pattern) {
            (Some(_), Some(p)) if p > 1 => il % p != p - 1,
            _ => false,
        }
    }

    /// Human-readable model name for messages.
    #[must_use]
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.basename.clone())
            .unwrap_or_else(|| self.architecture.clone())
    }
}

/// Architectures whose llama.cpp graph names the post-RoPE Q/K `Qcur-il`/`Kcur-il` with a
/// ROPE node; others are refused up front rather than failing mid-run.
pub const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "qwen2", "qwen3", "gemma3", "mistral3", "phi3", "granite", "olmo2",
];

/// The metadata of a header that passed the checks.
pub(super) fn meta_of(h: &Header) -> ModelMeta {
    let s = |k: &str| match h.kv.get(k).map(|kv| &kv.value) {
        Some(Value::Str(v)) => Some(v.clone()),
        _ => None,
    };
    let arch = s("general.architecture").unwrap_or_default();
    let u = |k: &str| {
        h.kv.get(&format!("{arch}.{k}"))
            .and_then(|kv| match &kv.value {
                // Per-layer arrays (e.g. head_count_kv): take the first element.
                Value::Array { items, .. } => items.first().and_then(Value::as_u64),
                v => v.as_u64(),
            })
            .and_then(|x| usize::try_from(x).ok())
    };
    let sliding_window = u("attention.sliding_window").filter(|&w| w > 0);
    // llama.cpp hard-codes the local/global interleave for these architectures.
    let swa_pattern = u("attention.sliding_window_pattern").or(match arch.as_str() {
        "gemma3" => Some(6),
        "gemma2" => Some(2),
        _ => None,
    });
    ModelMeta {
        block_count: u("block_count").unwrap_or(0),
        context_length: u("context_length"),
        head_count: u("attention.head_count"),
        head_count_kv: u("attention.head_count_kv"),
        sliding_window,
        swa_pattern: sliding_window.and(swa_pattern),
        name: s("general.name"),
        basename: s("general.basename"),
        size_label: s("general.size_label"),
        has_chat_template: h.kv.contains_key("tokenizer.chat_template"),
        architecture: arch,
        data_offset: h.data_offset,
        data_end: h.data_offset.saturating_add(h.data_len),
    }
}
