//! The filter pass runs on a *prefix model*: the same GGUF cut to layers 0..=r with
//! llama.cpp's `prune_layers`, cached on disk. Its context allocates weights, KV cache and
//! compute buffers for r+1 layers only, and the full model is loaded only after it is freed,
//! so the filter pass never holds what the later layers need.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::ffi;
use crate::notice;

/// Where prefix models are kept: `$GEMFILTER_CACHE`, else `$XDG_CACHE_HOME/gemfilter`, else
/// `~/.cache/gemfilter`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("GEMFILTER_CACHE") {
        return PathBuf::from(p);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("gemfilter")
}

/// The cached prefix of `model` with `keep` layers, written on first use.
///
/// The file name carries the source's size and modification time, so a changed model gets a
/// fresh prefix.
///
/// # Errors
/// Unreadable model, unwritable cache, or llama.cpp failing to write the prefix.
pub fn prefix_model(model: &Path, keep: usize, n_layer: usize) -> Result<PathBuf> {
    let md =
        std::fs::metadata(model).with_context(|| format!("cannot read '{}'", model.display()))?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let stem = model
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let dir = cache_dir();
    let out = dir.join(format!(
        "{stem}.{}-{mtime}.first{keep}of{n_layer}.gguf",
        md.len()
    ));
    if out.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create cache directory '{}'", dir.display()))?;
    notice!(
        "writing the {keep}-layer prefix of the model for the filter pass to {} (once)",
        out.display()
    );
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    ffi::write_prefix_model(model, &tmp, keep, n_layer).map_err(|e| {
        anyhow::anyhow!("cannot write the prefix model to '{}': {e}", tmp.display())
    })?;
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("cannot move the prefix model into '{}'", out.display()))?;
    Ok(out)
}
