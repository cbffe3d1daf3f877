//! `--prompt-cache FILE` in conversation mode (llama-cli's flag): a document's filter state on
//! disk, so a document is filtered once and questioned in later processes. `FILE` starts with
//! the line [`MAGIC`], then one JSON line saying what the state belongs to (the model by
//! content, its filter layers, the document's tokens) and the checksum of `FILE.kv`, then the
//! kept keys of the captured layers (f32, little-endian); `FILE.kv` is llama.cpp's sequence
//! state, the document's KV in the filter model's layers.
//!
//! Only our own files are ever replaced: a `FILE` that does not start with [`MAGIC`] (a
//! document, a model, anything else) or a `FILE.kv` that is not a llama.cpp state, and any
//! symlink, FIFO, device or directory in their place, is refused with one line. Both files are
//! written through exclusive temp files renamed into place. A state of ours for another model
//! or document, or a damaged one, is never used: it is checked in full (see [`seq_state`])
//! before llama.cpp reads it, and rebuilt.
//!
//! llama-completion's two switches: `--prompt-cache-ro` uses the file and never writes it
//! ([`Save::Never`]); `--prompt-cache-all` saves, after the answer, the state of the whole
//! prompt and the answer ([`Save::WithAnswer`]: the tokens after the document are in the
//! header, their keys after the document's), so a later prompt that starts with them decodes
//! only from where it differs.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use crate::engine::prefix::{reader_check, Check, Fnv};
use crate::engine::session::CaptureSession;
use crate::fsutil::{self, TempFile};
use crate::{sanitize, seq_state};

/// First line of a prompt cache.
pub const MAGIC: &str = "gemfilter prompt cache v2";
/// How the first version's files began (no magic line): still ours, rebuilt.
const OLD_START: &[u8] = b"{\"format\":1,\"identity\":";
/// The header line (with `--prompt-cache-all`, the tokens after the document too) is at most
/// this long; anything longer is not ours.
const MAX_HEADER: u64 = 8 << 20;

/// When the prompt cache is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Save {
    /// `--prompt-cache`: the document's state, when the file is missing or does not match.
    #[default]
    Document,
    /// `--prompt-cache-ro`: never (a missing file is not created).
    Never,
    /// `--prompt-cache-all`: after the answer, the state of the prompt and the answer.
    WithAnswer,
}

/// A prompt cache path that is not ours to replace: the run stops with this line.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Whether `e` refuses the path (stop) rather than saying the state must be rebuilt.
#[must_use]
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>().is_some()
}

/// What a saved state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// File name and size of the model the filter ran on (for the message).
    pub model: String,
    pub model_bytes: u64,
    /// The model by content: checksum of its GGUF header and sampled tensor data (the prefix
    /// cache's check), so two models of one name and size are told apart.
    pub model_check: u64,
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
    /// An unreadable or invalid model file.
    pub fn of(model: &Path, layers: &[usize], tokens: &[LlamaToken]) -> Result<Self> {
        let mut h = Fnv::new();
        for t in tokens {
            h.update(&t.0.to_le_bytes());
        }
        let check = Check::of(model)
            .with_context(|| format!("cannot read the model {}", sanitize::path(model)))?;
        Ok(Self {
            model: model
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            model_bytes: check.size,
            model_check: check.hash,
            layers: layers.to_vec(),
            n_tokens: tokens.len(),
            tokens_hash: h.finish(),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    identity: Identity,
    /// f32 values of kept keys, per layer.
    key_floats: Vec<usize>,
    kv_bytes: u64,
    kv_hash: u64,
    /// Tokens the state holds after the document (`--prompt-cache-all`); their keys follow
    /// the document's in each layer.
    #[serde(default)]
    after: Vec<i32>,
}

/// A loaded state: per captured layer the keys of the document and of `after`, and the tokens
/// after the document it holds (the filter context holds them all).
#[derive(Debug)]
pub struct Loaded {
    pub keys: Vec<Vec<f32>>,
    pub after: Vec<LlamaToken>,
}

fn kv_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".kv");
    PathBuf::from(p)
}

/// What is at `FILE` now.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    Ours,
    /// Written by the first version of this format.
    Old,
}

fn refused(path: &Path, why: &str) -> anyhow::Error {
    Refused(format!(
        "--prompt-cache {} {why}: refusing to replace it (remove it or name another file)",
        sanitize::path(path)
    ))
    .into()
}

/// Whether `FILE` and `FILE.kv` are ours to read and replace.
///
/// # Errors
/// [`Refused`] for a file that is not ours or not a regular file.
fn inspect(path: &Path) -> Result<Found> {
    let file_kind = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(md) if md.file_type().is_file() => Ok(true),
        Ok(md) => Err(refused(p, &format!("is {}", fsutil::kind_name(&md)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(refused(p, &format!("cannot be read ({e})"))),
    };
    let head = |p: &Path, n: u64| -> Result<Vec<u8>> {
        let mut b = Vec::new();
        fsutil::open_regular(p, "--prompt-cache")
            .map_err(|e| refused(p, &format!("cannot be read ({e:#})")))?
            .take(n)
            .read_to_end(&mut b)
            .map_err(|e| refused(p, &format!("cannot be read ({e})")))?;
        Ok(b)
    };
    let found = if file_kind(path)? {
        let h = head(path, MAGIC.len() as u64 + 1)?;
        if h == format!("{MAGIC}\n").as_bytes() {
            Found::Ours
        } else if h.starts_with(OLD_START) {
            Found::Old
        } else {
            return Err(refused(path, "is not a gemfilter prompt cache"));
        }
    } else {
        Found::Nothing
    };
    let kv = kv_path(path);
    if file_kind(&kv)? {
        let h = head(&kv, 4)?;
        // A .kv shorter than its magic is ours only beside a FILE of ours (a truncated state).
        let ours = seq_state::looks_like(&h) || (h.len() < 4 && found != Found::Nothing);
        if !ours {
            return Err(refused(&kv, "is not a llama.cpp state file"));
        }
    }
    Ok(found)
}

/// Whether a state of ours is at `path` (a missing one is built; see [`load`]).
///
/// # Errors
/// [`Refused`] when `FILE` or `FILE.kv` is there and not ours.
pub fn present(path: &Path) -> Result<bool> {
    Ok(inspect(path)? != Found::Nothing)
}

/// Save the state: llama.cpp's KV of `tokens` (the document's, `id`, then any after it), then
/// the header and keys (of every token, per layer), each through an exclusive temp file
/// renamed into place, so a reader never sees half of it and no link is followed.
///
/// # Errors
/// [`Refused`] when `FILE` or `FILE.kv` is not ours; unwritable paths (a full disk is said so).
pub fn save(
    path: &Path,
    session: &CaptureSession<'_>,
    id: &Identity,
    tokens: &[LlamaToken],
    keys: &[Vec<f32>],
) -> Result<()> {
    inspect(path)?;
    ensure!(
        tokens.len() >= id.n_tokens,
        "holds fewer tokens than its document"
    );
    let kv = kv_path(path);
    let mut kv_tmp = TempFile::beside(&kv)?;
    kv_tmp.close();
    session.save_kv(kv_tmp.path(), tokens).map_err(|e| {
        let dir = kv.parent().filter(|d| !d.as_os_str().is_empty());
        if fsutil::disk_full(dir.unwrap_or(Path::new("."))) {
            anyhow::anyhow!("cannot write {}: the disk is full", sanitize::path(&kv))
        } else {
            e
        }
    })?;
    let check = {
        let f = fsutil::open_regular(kv_tmp.path(), "the KV state")?;
        reader_check(f).with_context(|| format!("cannot read back {}", sanitize::path(&kv)))?
    };
    let header = Header {
        identity: id.clone(),
        key_floats: keys.iter().map(Vec::len).collect(),
        kv_bytes: check.size,
        kv_hash: check.hash,
        after: tokens[id.n_tokens..].iter().map(|t| t.0).collect(),
    };
    let mut tmp = TempFile::beside(path)?;
    let mut body = format!("{MAGIC}\n").into_bytes();
    serde_json::to_writer(&mut body, &header)?;
    body.push(b'\n');
    tmp.write_all(&body)?;
    for layer in keys {
        let bytes: Vec<u8> = layer.iter().flat_map(|v| v.to_le_bytes()).collect();
        tmp.write_all(&bytes)?;
    }
    kv_tmp.commit(&kv)?;
    tmp.commit(path)
}

/// A state saved for `saved` may be used for `id` only when both are the same model, filter
/// layers and document; the error names what differs.
fn same_owner(saved: &Identity, id: &Identity) -> Result<()> {
    if saved == id {
        return Ok(());
    }
    bail!(
        "belongs to another {}",
        if saved.model != id.model
            || saved.model_bytes != id.model_bytes
            || saved.model_check != id.model_check
        {
            "model"
        } else if saved.layers != id.layers {
            "filter layer"
        } else {
            "document"
        }
    )
}

/// The header line of an open cache whose magic line was read.
fn header(r: &mut impl BufRead) -> Result<(Header, u64)> {
    let mut line = Vec::new();
    r.take(MAX_HEADER)
        .read_until(b'\n', &mut line)
        .context("cannot read it")?;
    let header: Header =
        serde_json::from_slice(&line).map_err(|_| anyhow::anyhow!("has a damaged header"))?;
    Ok((header, line.len() as u64))
}

/// How many tokens the state at `path` holds (its document's and any after it), to size the
/// context it is loaded into; 0 when there is none or it cannot be read (then [`load`] says why).
#[must_use]
pub fn held_tokens(path: &Path) -> usize {
    let read = || -> Result<usize> {
        if inspect(path)? != Found::Ours {
            return Ok(0);
        }
        let mut r = BufReader::new(fsutil::open_regular(path, "--prompt-cache")?);
        let mut magic = vec![0u8; MAGIC.len() + 1];
        r.read_exact(&mut magic)?;
        let (h, _) = header(&mut r)?;
        Ok(h.identity.n_tokens.saturating_add(h.after.len()))
    };
    read().unwrap_or(0)
}

/// Load a saved state into `session` (an empty filter context) if it belongs to `id` (its
/// document is `tokens`); `Ok(None)` when there is no file.
///
/// # Errors
/// [`Refused`] for a path that is not ours (the caller stops); otherwise a file for another
/// model or document, or a damaged one (the caller rebuilds it).
pub fn load(
    path: &Path,
    session: &mut CaptureSession<'_>,
    id: &Identity,
    tokens: &[LlamaToken],
) -> Result<Option<Loaded>> {
    match inspect(path)? {
        Found::Nothing => return Ok(None),
        Found::Old => bail!("was written by an older gemfilter"),
        Found::Ours => {}
    }
    let f = fsutil::open_regular(path, "--prompt-cache")?;
    let file_len = f.metadata().context("cannot read it")?.len();
    let mut r = BufReader::new(f);
    let magic_len = MAGIC.len() as u64 + 1;
    let mut magic = vec![0u8; MAGIC.len() + 1];
    r.read_exact(&mut magic).context("cannot read it")?;
    ensure!(
        magic == format!("{MAGIC}\n").as_bytes(),
        "changed while read"
    );
    let (header, line_len) = header(&mut r)?;
    same_owner(&header.identity, id)?;
    ensure!(
        header.key_floats.len() == id.layers.len(),
        "holds keys for {} layers, not {}",
        header.key_floats.len(),
        id.layers.len()
    );
    // The keys must be exactly what is left of the file: a header cannot make us allocate more.
    let want = header
        .key_floats
        .iter()
        .try_fold(magic_len + line_len, |acc, &n| {
            acc.checked_add((n as u64).checked_mul(4)?)
        })
        .context("is damaged")?;
    ensure!(want == file_len, "is truncated or damaged");
    let kv = kv_path(path);
    let kv_file = fsutil::open_regular(&kv, "--prompt-cache")
        .map_err(|e| anyhow::anyhow!("has no usable KV file ({e:#})"))?;
    let check = reader_check(&kv_file).context("cannot read its KV file")?;
    (&kv_file)
        .seek(SeekFrom::Start(0))
        .context("cannot read its KV file")?;
    ensure!(
        check.size == header.kv_bytes && check.hash == header.kv_hash,
        "does not match its KV file (damaged)"
    );
    let mut ids: Vec<i32> = tokens.iter().map(|t| t.0).collect();
    ids.extend_from_slice(&header.after);
    // Every layer holds whole rows of keys for every token.
    ensure!(
        header.key_floats.iter().all(|&n| n % ids.len().max(1) == 0),
        "holds keys that do not match its tokens (damaged)"
    );
    seq_state::check(&kv_file, check.size, &ids)
        .map_err(|e| anyhow::anyhow!("has a KV file that {e:#}"))?;
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
    // llama.cpp reads the very file checked above (its descriptor), not whatever the name
    // points to by now.
    let fd_path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&kv_file)
    ));
    let load_from = if fd_path.exists() { &fd_path } else { &kv };
    let loaded = session.load_kv(load_from, ids.len())?;
    drop(kv_file);
    ensure!(
        loaded.iter().map(|t| t.0).eq(ids.iter().copied()),
        "holds other tokens than its header says (damaged)"
    );
    Ok(Some(Loaded {
        keys,
        after: header.after.iter().map(|&t| LlamaToken(t)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gf-docstate-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn smollm2() -> PathBuf {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(p.exists(), "{} is missing: run `make models`", p.display());
        p
    }

    fn t(v: &[i32]) -> Vec<LlamaToken> {
        v.iter().map(|&x| LlamaToken(x)).collect()
    }

    #[test]
    fn identity_tells_documents_layers_and_model_contents_apart() {
        let model = smollm2();
        let a = Identity::of(&model, &[13], &t(&[1, 2, 3])).unwrap();
        assert_eq!(a, Identity::of(&model, &[13], &t(&[1, 2, 3])).unwrap());
        let err = |id: Identity| same_owner(&a, &id).unwrap_err().to_string();
        assert_eq!(
            err(Identity::of(&model, &[13], &t(&[1, 2, 4])).unwrap()),
            "belongs to another document"
        );
        assert_eq!(
            err(Identity::of(&model, &[12], &t(&[1, 2, 3])).unwrap()),
            "belongs to another filter layer"
        );
        // The same name and size with other tensor data: another model.
        let d = dir("identity");
        let copy = d.join(model.file_name().unwrap());
        let mut bytes = std::fs::read(&model).unwrap();
        let n = bytes.len();
        for b in &mut bytes[n - 8192..] {
            *b ^= 0x5a;
        }
        std::fs::write(&copy, &bytes).unwrap();
        let other = Identity::of(&copy, &[13], &t(&[1, 2, 3])).unwrap();
        assert_eq!((&other.model, other.model_bytes), (&a.model, a.model_bytes));
        assert_eq!(err(other), "belongs to another model");
        assert_eq!(
            kv_path(Path::new("/x/doc.cache")),
            Path::new("/x/doc.cache.kv")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_our_own_files_may_be_replaced() {
        let d = dir("inspect");
        let cache = d.join("c");
        assert_eq!(inspect(&cache).unwrap(), Found::Nothing);
        std::fs::write(&cache, format!("{MAGIC}\n{{}}\n")).unwrap();
        assert_eq!(inspect(&cache).unwrap(), Found::Ours);
        std::fs::write(&cache, b"{\"format\":1,\"identity\":{\"model\":\"x\"}}\n").unwrap();
        assert_eq!(inspect(&cache).unwrap(), Found::Old);
        let refusal = |p: &Path| {
            let e = inspect(p).unwrap_err();
            assert!(is_refusal(&e), "{e:#}");
            e.to_string()
        };
        std::fs::write(&cache, b"my notes\n").unwrap();
        assert!(refusal(&cache).contains("is not a gemfilter prompt cache: refusing to replace it"));
        std::fs::write(&cache, b"").unwrap();
        assert!(refusal(&cache).contains("not a gemfilter prompt cache"));
        std::fs::remove_file(&cache).unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere"), &cache).unwrap();
        assert!(refusal(&cache).contains("is a symbolic link"));
        std::fs::remove_file(&cache).unwrap();
        let kv = kv_path(&cache);
        std::fs::write(&kv, b"important").unwrap();
        assert!(refusal(&cache).contains("is not a llama.cpp state file"));
        std::fs::write(&kv, seq_state::MAGIC.to_le_bytes()).unwrap();
        assert_eq!(inspect(&cache).unwrap(), Found::Nothing);
        std::fs::remove_file(&kv).unwrap();
        std::fs::create_dir(&kv).unwrap();
        assert!(refusal(&cache).contains("is a directory"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
