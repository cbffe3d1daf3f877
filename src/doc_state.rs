//! `--prompt-cache FILE` in conversation mode (llama-cli's flag): a document's filter state on
//! disk, so a document is filtered once and questioned in later processes. `FILE` holds one JSON
//! line saying what the state belongs to (the model file, its filter layers, the document's
//! tokens) and the checksum of `FILE.kv`, then the kept keys of the captured layers (f32,
//! little-endian); `FILE.kv` is llama.cpp's sequence state, the document's KV in the filter
//! model's layers. A file for another model or document, or a damaged one, is never used.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use crate::engine::prefix::{file_check, Fnv};
use crate::engine::session::CaptureSession;

const FORMAT: u32 = 1;
/// The header line is short; anything longer is not ours.
const MAX_HEADER: u64 = 64 << 10;

/// What a saved state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// File name and size of the model the filter ran on.
    pub model: String,
    pub model_bytes: u64,
    /// Layers whose keys are kept (the filter layer last).
    pub layers: Vec<usize>,
    /// The prompt tokens up to the end of the document: count and checksum.
    pub n_tokens: usize,
    pub tokens_hash: u64,
}

impl Identity {
    /// The identity of a state for `model`, `layers` and the document prefix `tokens`.
    ///
    /// # Errors
    /// An unreadable model file.
    pub fn of(model: &Path, layers: &[usize], tokens: &[LlamaToken]) -> Result<Self> {
        let mut h = Fnv::new();
        for t in tokens {
            h.update(&t.0.to_le_bytes());
        }
        Ok(Self {
            model: model
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            model_bytes: std::fs::metadata(model)
                .with_context(|| format!("cannot read {}", model.display()))?
                .len(),
            layers: layers.to_vec(),
            n_tokens: tokens.len(),
            tokens_hash: h.finish(),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    identity: Identity,
    /// f32 values of kept keys, per layer.
    key_floats: Vec<usize>,
    kv_bytes: u64,
    kv_hash: u64,
}

fn kv_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".kv");
    PathBuf::from(p)
}

/// Save the state: llama.cpp's KV of the document, then the header and keys (written to a
/// temporary file and renamed, so a reader never sees half of it).
///
/// # Errors
/// Unwritable paths.
pub fn save(
    path: &Path,
    session: &CaptureSession<'_>,
    id: &Identity,
    tokens: &[LlamaToken],
    keys: &[Vec<f32>],
) -> Result<()> {
    let kv = kv_path(path);
    session.save_kv(&kv, tokens)?;
    let check = file_check(&kv).with_context(|| format!("cannot read back {}", kv.display()))?;
    let header = Header {
        format: FORMAT,
        identity: id.clone(),
        key_floats: keys.iter().map(Vec::len).collect(),
        kv_bytes: check.size,
        kv_hash: check.hash,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer(&mut f, &header)?;
        f.write_all(b"\n")?;
        for layer in keys {
            for v in layer {
                f.write_all(&v.to_le_bytes())?;
            }
        }
        f.flush()?;
        Ok(())
    };
    write()
        .and_then(|()| std::fs::rename(&tmp, path).map_err(Into::into))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::anyhow!("cannot write the prompt cache {}: {e}", path.display())
        })
}

/// A state saved for `saved` may be used for `id` only when both are the same model, filter
/// layers and document; the error names what differs.
fn same_owner(saved: &Identity, id: &Identity) -> Result<()> {
    if saved == id {
        return Ok(());
    }
    bail!(
        "belongs to another {}",
        if saved.model != id.model || saved.model_bytes != id.model_bytes {
            "model"
        } else if saved.layers != id.layers {
            "filter layer"
        } else {
            "document"
        }
    )
}

/// Load a saved state into `session` (an empty filter context) if it belongs to `id`;
/// `Ok(None)` when there is no file. The keys come back per layer.
///
/// # Errors
/// A file for another model or document, or a damaged one (the caller rebuilds it).
pub fn load(
    path: &Path,
    session: &mut CaptureSession<'_>,
    id: &Identity,
    tokens: &[LlamaToken],
) -> Result<Option<Vec<Vec<f32>>>> {
    if !path.exists() {
        return Ok(None);
    }
    let f = std::fs::File::open(path).context("cannot open it")?;
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    (&mut r)
        .take(MAX_HEADER)
        .read_until(b'\n', &mut line)
        .context("cannot read it")?;
    let header: Header = serde_json::from_slice(&line)
        .map_err(|_| anyhow::anyhow!("is not a gemfilter prompt cache"))?;
    ensure!(header.format == FORMAT, "was written by another version");
    same_owner(&header.identity, id)?;
    ensure!(
        header.key_floats.len() == id.layers.len(),
        "holds keys for {} layers, not {}",
        header.key_floats.len(),
        id.layers.len()
    );
    let kv = kv_path(path);
    let check =
        file_check(&kv).map_err(|e| anyhow::anyhow!("has no readable {}: {e}", kv.display()))?;
    ensure!(
        check.size == header.kv_bytes && check.hash == header.kv_hash,
        "does not match its KV file (damaged)"
    );
    // The keys must be exactly what is left of the file: a header cannot make us allocate more.
    let file_len = std::fs::metadata(path).context("cannot read it")?.len();
    let want = header
        .key_floats
        .iter()
        .try_fold(line.len() as u64, |acc, &n| {
            acc.checked_add((n as u64).checked_mul(4)?)
        })
        .context("is damaged")?;
    ensure!(want == file_len, "is truncated or damaged");
    let mut keys = Vec::with_capacity(header.key_floats.len());
    for &n in &header.key_floats {
        let mut bytes = vec![0u8; n.checked_mul(4).context("is damaged")?];
        r.read_exact(&mut bytes).context("is truncated")?;
        keys.push(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    let loaded = session.load_kv(&kv, tokens.len())?;
    ensure!(
        loaded == tokens,
        "holds other tokens than its header says (damaged)"
    );
    Ok(Some(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_tells_documents_and_layers_apart() {
        let model = std::env::current_exe().unwrap();
        let t = |v: &[i32]| v.iter().map(|&x| LlamaToken(x)).collect::<Vec<_>>();
        let a = Identity::of(&model, &[13], &t(&[1, 2, 3])).unwrap();
        assert_eq!(a, Identity::of(&model, &[13], &t(&[1, 2, 3])).unwrap());
        assert_ne!(a, Identity::of(&model, &[13], &t(&[1, 2, 4])).unwrap());
        assert_ne!(a, Identity::of(&model, &[12], &t(&[1, 2, 3])).unwrap());
        assert_eq!(
            kv_path(Path::new("/x/doc.cache")),
            Path::new("/x/doc.cache.kv")
        );
    }
    #[test]
    fn a_state_is_refused_for_another_model_layer_or_document() {
        let dir = std::env::temp_dir().join(format!("gf-docstate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (m1, m2) = (dir.join("a.gguf"), dir.join("b.gguf"));
        std::fs::write(&m1, b"12345").unwrap();
        std::fs::write(&m2, b"123456").unwrap();
        let t = |v: &[i32]| v.iter().map(|&x| LlamaToken(x)).collect::<Vec<_>>();
        let saved = Identity::of(&m1, &[13], &t(&[1, 2, 3])).unwrap();
        let err = |id: Identity| same_owner(&saved, &id).unwrap_err().to_string();
        assert!(same_owner(&saved, &saved.clone()).is_ok());
        assert_eq!(
            err(Identity::of(&m2, &[13], &t(&[1, 2, 3])).unwrap()),
            "belongs to another model"
        );
        // Same file name, other size: another model too (a re-quantized file under the old name).
        std::fs::write(&m1, b"1234").unwrap();
        assert_eq!(
            err(Identity::of(&m1, &[13], &t(&[1, 2, 3])).unwrap()),
            "belongs to another model"
        );
        std::fs::write(&m1, b"12345").unwrap();
        assert_eq!(
            err(Identity::of(&m1, &[12], &t(&[1, 2, 3])).unwrap()),
            "belongs to another filter layer"
        );
        assert_eq!(
            err(Identity::of(&m1, &[13], &t(&[1, 2, 4])).unwrap()),
            "belongs to another document"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
