//! GGUF metadata read before llama.cpp touches the file: validates the path and gives presets
//! and the CLI what they need (architecture, names, layer and head counts, sliding windows).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

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

/// Read and validate the GGUF header at `path`.
///
/// # Errors
/// Missing file, a directory, not a GGUF file, a header that cannot be parsed, or a file
/// shorter than its tensor data (truncated download).
pub fn read(path: &Path) -> Result<ModelMeta> {
    let shown = path.display();
    let md =
        std::fs::metadata(path).with_context(|| format!("model file '{shown}' cannot be read"))?;
    if md.is_dir() {
        bail!("model path '{shown}' is a directory, not a GGUF file");
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("cannot open model file '{shown}'"))?;
        if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            bail!("'{shown}' is not a GGUF model file (no GGUF magic)");
        }
    }
    let path_str = path
        .to_str()
        .with_context(|| format!("model path '{shown}' is not valid UTF-8"))?;
    let model = gguf_rs::get_gguf_container_array_size(path_str, 4)
        .and_then(|mut c| c.decode())
        .map_err(|e| anyhow::anyhow!("'{shown}' is not a valid GGUF file: {e}"))?;

    let data_end = model
        .tensors()
        .iter()
        .map(|t| model.data_offset() + t.offset + t.size)
        .max()
        .unwrap_or(0);
    if md.len() < data_end {
        bail!(
            "'{shown}' is truncated: its tensors need {data_end} bytes, the file has {} (incomplete download?)",
            md.len()
        );
    }
    Ok(from_kv(model.metadata()))
}

fn from_kv(kv: &std::collections::BTreeMap<String, Value>) -> ModelMeta {
    let s = |k: &str| kv.get(k).and_then(Value::as_str).map(str::to_owned);
    let arch = s("general.architecture").unwrap_or_default();
    let u = |k: &str| {
        kv.get(&format!("{arch}.{k}")).and_then(|v| match v {
            Value::Number(n) => n.as_u64().and_then(|x| usize::try_from(x).ok()),
            // Per-layer arrays (e.g. head_count_kv): take the first element.
            Value::Array(a) => a
                .first()
                .and_then(Value::as_u64)
                .and_then(|x| usize::try_from(x).ok()),
            _ => None,
        })
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
        has_chat_template: kv.contains_key("tokenizer.chat_template"),
        architecture: arch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_global_layers() {
        let m = ModelMeta {
            sliding_window: Some(512),
            swa_pattern: Some(6),
            ..Default::default()
        };
        let global: Vec<usize> = (0..18).filter(|&il| !m.is_sliding_layer(il)).collect();
        assert_eq!(global, vec![5, 11, 17]);
        let plain = ModelMeta::default();
        assert!(!plain.is_sliding_layer(3));
    }

    #[test]
    fn rejects_non_gguf_and_dirs() {
        let dir = std::env::temp_dir().join(format!("gf-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read(&dir).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let f = dir.join("x.gguf");
        std::fs::write(&f, b"not a model").unwrap();
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("not a GGUF"), "{e}");
        let e = format!("{:#}", read(&dir.join("missing.gguf")).unwrap_err());
        assert!(e.contains("cannot be read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
