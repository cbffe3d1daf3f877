//! `--slot-save-path DIR`: documents' filter state on disk, and llama-server's
//! `POST /slots/{id}?action=save|restore|erase`.
//!
//! Every document a slot filters is written to `DIR/doc-<tokens>-<hash>.state` (the conversation
//! mode's prompt cache format: header and kept keys, and `.kv` beside it with llama.cpp's sequence
//! state), and a request about a document no slot holds in memory reads it back there instead of
//! filtering it again. `save` copies the slot's latest document to `DIR/<filename>`; `restore`
//! copies such a file back to the name its document is looked up by, so the next request about
//! that document, in any slot, starts from it. File names are plain names inside DIR: no
//! separators, no `..`, no leading dot, no links.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::doc_state::{self, Identity};
use crate::fsutil::{self, TempFile};

/// Longest file name accepted.
const MAX_NAME: usize = 200;

/// Where the state of the document `tokens` (the prompt up to the end of the document) lives.
///
/// # Errors
/// The model file cannot be read (its identity is part of the state's).
pub fn doc_path(dir: &Path, model: &Path, tokens: &[LlamaToken]) -> anyhow::Result<PathBuf> {
    let id = Identity::of(model, &[], tokens)?;
    Ok(named(dir, id.n_tokens, id.tokens_hash))
}

fn named(dir: &Path, n_tokens: usize, hash: u64) -> PathBuf {
    dir.join(format!("doc-{n_tokens}-{hash:016x}.state"))
}

fn kv(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".kv");
    PathBuf::from(p)
}

/// A file name as llama-server takes it: one plain name inside the directory.
///
/// # Errors
/// 400 for anything that could name another place (separators, `..`, a leading dot, control
/// characters) or is empty or too long.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "invalid filename {name:?}: a plain name of letters, digits, '.', '_' and '-' (not starting with '.', at most {MAX_NAME} bytes)"
        )))
    }
}

/// `path` and `path.kv` must be regular files (or absent), never links or anything else.
fn plain_or_absent(path: &Path, name: &str) -> Result<bool, ApiError> {
    let mut found = false;
    for p in [path.to_path_buf(), kv(path)] {
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_file() => found |= p == path,
            Ok(md) => {
                return Err(ApiError::bad(format!(
                    "{name:?}: {} is {}, not a regular file",
                    p.file_name()
                        .map_or(String::new(), |f| f.to_string_lossy().into_owned()),
                    fsutil::kind_name(&md)
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ApiError::internal(format!("{name:?}: {e}"))),
        }
    }
    // Only a document state of ours is ever read or replaced.
    doc_state::present(path).map_err(|e| ApiError::bad(format!("{name:?}: {e:#}")))?;
    Ok(found)
}

/// Copy a state (`from` and `from.kv`) to `to`, each through a temp file renamed into place.
fn copy_state(from: &Path, to: &Path) -> Result<u64, ApiError> {
    let mut bytes = 0;
    for (src, dst) in [(kv(from), kv(to)), (from.to_path_buf(), to.to_path_buf())] {
        let fail =
            |e: &dyn std::fmt::Display| ApiError::internal(format!("cannot copy the state: {e}"));
        let mut f = fsutil::open_regular(&src, "the state").map_err(|e| fail(&format!("{e:#}")))?;
        let mut tmp = TempFile::beside(&dst).map_err(|e| fail(&format!("{e:#}")))?;
        let out = tmp.file().ok_or_else(|| fail(&"the temp file is closed"))?;
        bytes += std::io::copy(&mut f, out).map_err(|e| fail(&e))?;
        tmp.commit(&dst).map_err(|e| fail(&format!("{e:#}")))?;
    }
    Ok(bytes)
}

/// `action=save`: the slot's latest document (`latest`, its state file) to `DIR/filename`.
///
/// # Errors
/// 400: a bad name, a slot that holds no document, a target that is not a state of ours.
pub fn save(
    dir: &Path,
    slot: usize,
    latest: Option<&Path>,
    filename: &str,
) -> Result<Value, ApiError> {
    check_name(filename)?;
    let t0 = Instant::now();
    let Some(from) = latest.filter(|p| p.exists()) else {
        return Err(ApiError::bad(format!(
            "slot {slot} holds no filtered document to save"
        )));
    };
    let to = dir.join(filename);
    plain_or_absent(&to, filename)?;
    let n_saved = header(from)?.0;
    let n_written = copy_state(from, &to)?;
    Ok(
        json!({"id_slot": slot, "filename": filename, "n_saved": n_saved,
        "n_written": n_written, "timings": {"save_ms": t0.elapsed().as_secs_f64() * 1e3}}),
    )
}

/// `action=restore`: `DIR/filename` back to where its document is looked up.
///
/// # Errors
/// 400: a bad name, a missing file or one that is not a state of ours.
pub fn restore(dir: &Path, slot: usize, filename: &str) -> Result<Value, ApiError> {
    check_name(filename)?;
    let t0 = Instant::now();
    let from = dir.join(filename);
    if !plain_or_absent(&from, filename)? {
        return Err(ApiError::bad(format!(
            "{filename:?}: no such file in --slot-save-path"
        )));
    }
    let (n, hash) = header(&from)?;
    let to = named(dir, n, hash);
    let n_read = if to == from {
        std::fs::metadata(&from).map_or(0, |m| m.len())
    } else {
        plain_or_absent(&to, filename)?;
        copy_state(&from, &to)?
    };
    Ok(
        json!({"id_slot": slot, "filename": filename, "n_restored": n, "n_read": n_read,
        "timings": {"restore_ms": t0.elapsed().as_secs_f64() * 1e3}}),
    )
}

/// The document's token count and checksum from a state's header line.
fn header(path: &Path) -> Result<(usize, u64), ApiError> {
    let bad = || ApiError::bad("the file is not a gemfilter document state");
    let f = fsutil::open_regular(path, "the state").map_err(|_| bad())?;
    let mut r = BufReader::new(f.take(64 << 10));
    let mut line = String::new();
    r.read_line(&mut line).map_err(|_| bad())?;
    if line.trim_end() != doc_state::MAGIC {
        return Err(bad());
    }
    line.clear();
    r.read_line(&mut line).map_err(|_| bad())?;
    let v: Value = serde_json::from_str(&line).map_err(|_| bad())?;
    let id = &v["identity"];
    match (id["n_tokens"].as_u64(), id["tokens_hash"].as_u64()) {
        (Some(n), Some(h)) => Ok((usize::try_from(n).map_err(|_| bad())?, h)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        for good in ["a", "doc.state", "book_1-v2.bin"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            ".hidden",
            "a\\b",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(201),
        ] {
            assert_eq!(check_name(bad).unwrap_err().status, 400, "{bad:?}");
        }
    }
}
