//! `-hf`, `-hff` and `-cl` without a network: llama.cpp's own download cache (the Hugging Face
//! hub layout its `common/hf-cache.cpp` writes) is read the way llama.cpp reads it offline:
//! `models--USER--MODEL/refs/main` names a commit, `snapshots/COMMIT/` holds the files, and
//! `-hf USER/MODEL[:QUANT]` picks a file as `common/download.cpp`'s `find_best_model` does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};

use crate::sanitize;

/// One cached file of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    pub repo: String,
    /// The path inside the repository, with `/`.
    pub path: String,
    pub local: PathBuf,
}

/// llama.cpp's cache directory: `LLAMA_CACHE`, `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`,
/// `HF_HOME/hub`, `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
#[must_use]
pub fn cache_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("LLAMA_CACHE")
        .or_else(|| var("HF_HUB_CACHE"))
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|p| p.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("huggingface").join("hub")))
        .or_else(|| var("HOME").map(|p| p.join(".cache").join("huggingface").join("hub")))
}

/// `[A-Za-z0-9_]` words joined by single `/`, `.` or `-`, exactly one `/` (llama.cpp's rule).
fn valid_repo(repo: &str) -> bool {
    let mut special = true;
    let mut slashes = 0;
    for c in repo.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            special = false;
        } else if matches!(c, '/' | '.' | '-') {
            if special {
                return false;
            }
            slashes += usize::from(c == '/');
            special = true;
        } else {
            return false;
        }
    }
    !repo.is_empty() && repo.len() <= 256 && !special && slashes == 1
}

/// The commit a cached repository's `refs/main` (else its first valid ref) names.
fn cached_ref(repo_dir: &Path) -> Option<String> {
    let valid = |s: &str| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit());
    let read = |p: &Path| {
        let text = crate::fsutil::read_bounded(p, 4096, "ref").ok()?;
        let line = String::from_utf8(text).ok()?.lines().next()?.to_owned();
        valid(&line).then_some(line)
    };
    if let Some(c) = read(&repo_dir.join("refs").join("main")) {
        return Some(c);
    }
    let mut refs: Vec<PathBuf> = std::fs::read_dir(repo_dir.join("refs"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    refs.sort();
    refs.iter().find_map(|p| read(p))
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && depth < 8 {
            walk(&p, base, out, depth + 1);
        } else if p.is_file() {
            if let Ok(rel) = p.strip_prefix(base) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((parts.join("/"), p.clone()));
            }
        }
    }
}

/// Every cached file (of `repo` only, when given), sorted by repository and path.
#[must_use]
pub fn cached_files(cache: &Path, repo: Option<&str>) -> Vec<CachedFile> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("models--").map(|s| s.replace("--", "/")) else {
            continue;
        };
        if !valid_repo(&id) || repo.is_some_and(|r| r != id) || !dir.is_dir() {
            continue;
        }
        let Some(commit) = cached_ref(&dir) else {
            continue;
        };
        let snap = dir.join("snapshots").join(&commit);
        let mut found = Vec::new();
        walk(&snap, &snap, &mut found, 0);
        files.extend(found.into_iter().map(|(path, local)| CachedFile {
            repo: id.clone(),
            path,
            local,
        }));
    }
    files.sort_by(|a, b| (&a.repo, &a.path).cmp(&(&b.repo, &b.path)));
    files
}

/// `NAME-00001-of-00003.gguf`: (index, count); 1 of 1 for an unsplit file.
fn split_info(path: &str) -> (u32, u32) {
    let stem = path.strip_suffix(".gguf").unwrap_or(path);
    let b = stem.as_bytes();
    let n = b.len();
    if n > 15 && b[n - 9..n - 5].eq_ignore_ascii_case(b"-of-") && b[n - 15] == b'-' {
        let (i, n) = (&stem[n - 14..n - 9], &stem[n - 5..]);
        if let (Ok(i), Ok(n)) = (i.parse(), n.parse()) {
            return (i, n);
        }
    }
    (1, 1)
}

/// The quantization tag of a file name (`...-Q4_K_M.gguf` → `Q4_K_M`), upper case.
fn tag_of(path: &str) -> Option<String> {
    let stem = path.strip_suffix(".gguf")?;
    let stem = match split_info(path) {
        (_, 1) => stem,
        _ => &stem[..stem.len() - 15],
    };
    let start = stem.rfind(['-', '.'])? + 1;
    let tag = &stem[start..];
    (!tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| tag.to_ascii_uppercase())
}

/// A model GGUF, not a projector, imatrix or speculative sidecar.
#[allow(clippy::case_sensitive_file_extension_comparisons)] // llama.cpp's test is case-sensitive
fn is_model(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path.ends_with(".gguf")
        && !["mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"]
            .iter()
            .any(|s| name.contains(s))
}

/// llama.cpp's `find_best_model`: the first model file whose path holds TAG followed by `.` or
/// `-` (any case; `Q4_K_M`, then `Q8_0` when no tag is given), the first part of a split; with no
/// tag, else the first model file.
fn best_model<'a>(files: &'a [CachedFile], tag: &str) -> Option<&'a CachedFile> {
    let tags: Vec<String> = if tag.is_empty() {
        vec!["Q4_K_M".into(), "Q8_0".into()]
    } else {
        vec![tag.to_owned()]
    };
    let first_part = |f: &&CachedFile| is_model(&f.path) && split_info(&f.path).0 == 1;
    for t in &tags {
        let t = t.to_ascii_lowercase();
        let hit = files.iter().filter(first_part).find(|f| {
            let p = f.path.to_ascii_lowercase();
            p.match_indices(&t)
                .any(|(i, _)| matches!(p.as_bytes().get(i + t.len()), Some(b'.' | b'-')))
        });
        if hit.is_some() {
            return hit;
        }
    }
    if tag.is_empty() {
        return files.iter().find(first_part);
    }
    None
}

/// The local path of `-hf USER/MODEL[:QUANT]` (with `-hff FILE`: that file of the repository).
///
/// # Errors
/// A malformed repository, or a file that is not in the cache (one line naming the cache).
pub fn resolve(
    hf_repo: &str,
    hf_file: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf> {
    let (repo, tag) = match hf_repo.rsplit_once(':') {
        Some((r, t)) => (r, t),
        None => (hf_repo, ""),
    };
    ensure!(
        repo.split('/').count() == 2 && valid_repo(repo),
        "-hf: invalid repository {}, expected <user>/<model>[:quant]",
        sanitize::quote(hf_repo)
    );
    let Some(cache) = cache_dir(env) else {
        bail!("-hf: no cache directory (set LLAMA_CACHE or HOME) and gemfilter never downloads: pass -m with a local GGUF file");
    };
    let files = cached_files(&cache, Some(repo));
    let not_cached = |what: String| {
        anyhow::anyhow!(
            "-hf: {what} is not in llama.cpp's cache ({}) and gemfilter never downloads: fetch it once with llama.cpp (llama-cli -hf), or pass -m with a local GGUF file",
            sanitize::path(&cache)
        )
    };
    let found = match hf_file {
        Some(f) => files
            .iter()
            .find(|c| c.path == f)
            .ok_or_else(|| not_cached(format!("{} of {repo}", sanitize::quote(f))))?,
        None => best_model(&files, tag).ok_or_else(|| {
            not_cached(if tag.is_empty() {
                format!("a model of {repo}")
            } else {
                format!("{repo} with quantization {}", sanitize::quote(tag))
            })
        })?,
    };
    Ok(found.local.clone())
}

/// `-cl`: the cached models as llama.cpp lists them (`REPO:TAG`, first split parts only).
#[must_use]
pub fn list(env: &dyn Fn(&str) -> Option<String>) -> String {
    let files = cache_dir(env).map_or_else(Vec::new, |c| cached_files(&c, None));
    let mut models: Vec<String> = Vec::new();
    for f in &files {
        if !is_model(&f.path) || split_info(&f.path).0 != 1 {
            continue;
        }
        let Some(tag) = tag_of(&f.path) else {
            continue;
        };
        let name = format!("{}:{tag}", f.repo);
        if !models.contains(&name) {
            models.push(name);
        }
    }
    let mut s = format!("number of models in cache: {}\n", models.len());
    for (i, m) in models.iter().enumerate() {
        let _ = writeln!(s, "{:4}. {m}", i + 1);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_llama_cpp_reads_them() {
        assert!(valid_repo("bartowski/Qwen2.5-7B-Instruct-GGUF"));
        assert!(!valid_repo("a//b") && !valid_repo("a/b/c") && !valid_repo("a/-b"));
        assert_eq!(split_info("m-Q4_K_M-00002-of-00003.gguf"), (2, 3));
        assert_eq!(split_info("m-Q4_K_M.gguf"), (1, 1));
        assert_eq!(tag_of("x/m-q4_k_m.gguf").as_deref(), Some("Q4_K_M"));
        assert_eq!(
            tag_of("m.Q8_0-00001-of-00002.gguf").as_deref(),
            Some("Q8_0")
        );
        let f = |p: &str| CachedFile {
            repo: "a/b".into(),
            path: p.into(),
            local: PathBuf::from(p),
        };
        let files = [
            f("mmproj-Q4_K_M.gguf"),
            f("m-Q8_0.gguf"),
            f("m-Q4_K_M-00002-of-00002.gguf"),
            f("m-Q4_K_M-00001-of-00002.gguf"),
        ];
        assert_eq!(
            best_model(&files, "").unwrap().path,
            "m-Q4_K_M-00001-of-00002.gguf"
        );
        assert_eq!(best_model(&files, "q8_0").unwrap().path, "m-Q8_0.gguf");
        assert!(best_model(&files, "F16").is_none());
    }
}
