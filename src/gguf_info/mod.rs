//! GGUF metadata read before llama.cpp touches the file: validates the path and the header and
//! gives presets and the CLI what they need (architecture, names, layer and head counts,
//! sliding windows).
//!
//! The header is walked by [`inspect`], a small pure parser over any buffered reader: every
//! count and length is checked against the bytes left in the file before anything is allocated
//! or looped over, big arrays are skipped rather than kept, and the rules of llama.cpp's own
//! reader (`ggml/src/gguf.cpp`) are applied, so a file that passes is one llama.cpp's reader
//! accepts too. Then the hyper-parameters llama.cpp asserts on (`GGML_ASSERT`, which aborts the
//! process) are checked: layer count, epsilons, alignment, head counts, dimensions, experts,
//! rope scaling and duplicate vocabulary entries. Error messages never hold raw bytes of the
//! file: names and values pass through [`crate::sanitize`].
//!
//! Three jobs, one file each: [`parse`] walks the header within its bounds, [`hparams`] holds the
//! copy of llama.cpp's hyper-parameter checks, and [`meta`] is what the rest of gemfilter keeps
//! ([`ModelMeta`]).

use std::io::{BufRead, BufReader, Seek};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::sanitize;

mod hparams;
mod meta;
mod parse;
#[cfg(test)]
mod tests;

pub use meta::{ModelMeta, SUPPORTED_ARCHS};
pub use parse::{ggml_type_traits, parse_header, Header, Kv, Value};

/// llama.cpp's `LLAMA_MAX_LAYERS` (src/llama-hparams.h): `block_count` above it aborts.
pub const LLAMA_MAX_LAYERS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
pub const LLAMA_MAX_EXPERTS: u64 = 1024;
/// ggml's `TENSOR_ALIGNMENT`: the CPU backend asserts that tensor data is this aligned.
const TENSOR_ALIGNMENT: u64 = 32;

/// Read and validate the GGUF header at `path`.
///
/// # Errors
/// Missing file, a directory, not a GGUF file, a header that is malformed or that llama.cpp
/// would abort on, or a file shorter than its tensor data (truncated download).
pub fn read(path: &Path) -> Result<ModelMeta> {
    let shown = sanitize::path(path);
    let md =
        std::fs::metadata(path).with_context(|| format!("model file {shown} cannot be read"))?;
    if md.is_dir() {
        bail!("model path {shown} is a directory, not a GGUF file");
    }
    if !md.is_file() {
        // A FIFO would block the open below forever; devices are no model files either.
        bail!("model path {shown} is not a regular file");
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open model file {shown}"))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    inspect(&mut r, md.len()).map_err(|e| match e {
        Bad::NotGguf => anyhow::anyhow!("{shown} is not a GGUF model file (no GGUF magic)"),
        Bad::Truncated(m) => anyhow::anyhow!("{shown} is truncated: {m} (incomplete download?)"),
        Bad::Format(m) => anyhow::anyhow!("{shown} is not a valid GGUF file: {m}"),
        Bad::Model(m) => anyhow::anyhow!("{shown} is a malformed model: {m}"),
        Bad::Io(m) => anyhow::anyhow!("cannot read model file {shown}: {m}"),
    })
}

/// Why a header was refused. Every message is short and holds no raw bytes of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// No `GGUF` magic.
    NotGguf,
    /// The file ends before what its header describes.
    Truncated(String),
    /// The header breaks the GGUF format (as llama.cpp's reader checks it).
    Format(String),
    /// The header parses but holds values llama.cpp cannot load (or asserts on).
    Model(String),
    /// Reading failed.
    Io(String),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::NotGguf => write!(f, "not a GGUF file (no GGUF magic)"),
            Bad::Truncated(m) => write!(f, "truncated: {m}"),
            Bad::Format(m) => write!(f, "not a valid GGUF file: {m}"),
            Bad::Model(m) => write!(f, "malformed model: {m}"),
            Bad::Io(m) => write!(f, "read error: {m}"),
        }
    }
}

impl std::error::Error for Bad {}

/// Parse and check a GGUF header from `r`, positioned at the file's start, for a file of
/// `file_len` bytes. Only the header is read; the tensor data is never touched, so `r` may hold
/// just the header (reading past what it holds counts as truncation).
///
/// # Errors
/// See [`Bad`].
pub fn inspect<R: BufRead + Seek>(r: &mut R, file_len: u64) -> Result<ModelMeta, Bad> {
    let h = parse_header(r, file_len)?;
    hparams::check_model(&h)?;
    hparams::check_layout(&h, file_len)?;
    Ok(meta::meta_of(&h))
}
