//! The filter pass runs on a *prefix model*: the same GGUF cut to layers 0..=r with
//! llama.cpp's `prune_layers`, cached on disk. Its context allocates weights, KV cache and
//! compute buffers for r+1 layers only, and the full model is loaded only after it is freed,
//! so the filter pass never holds what the later layers need.
//!
//! The cache heals itself. Each prefix `X.gguf` is written with a sidecar `X.gguf.check`
//! holding its size and a checksum; a cached file is used only when its header passes
//! [`gguf_info::read`] and size and checksum match, otherwise it is rebuilt with a notice.
//! The checksum (FNV-1a 64 over 8-byte words) covers the whole GGUF header and [`SAMPLES`] blocks of
//! [`SAMPLE_BYTES`] spread evenly over the tensor data (all of it when the data is smaller):
//! at most ~17 MB read per run whatever the model's size, a few milliseconds from the page
//! cache (the filter pass reads those pages anyway), and it catches any damaged run of bytes
//! longer than data/4096 — 1 MB for prefixes up to 4 GB — plus every header change, truncation
//! or replacement. Writes go to a temp file named after the writer's pid and a sequence number,
//! then rename into place, so concurrent writers never share a file and readers never see a
//! partial one; temp files whose writer is gone (or idle for an hour) are removed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use super::ffi;
use crate::fsutil::{self, TempFile};
use crate::{gguf_info, notice, sanitize};

/// Sampled blocks of the tensor data in the checksum, and their size.
pub const SAMPLES: u64 = 4096;
pub const SAMPLE_BYTES: u64 = 4096;
/// First line of a check file.
const CHECK_MAGIC: &str = "gemfilter prefix check v2";
/// A temp file whose writer is gone is removed once it has been idle this long (a live writer
/// keeps writing; this only spares a writer of another pid namespace in its first seconds).
const ORPHAN_IDLE: Duration = Duration::from_secs(10);
/// Any temp file idle this long is removed, whoever wrote it.
const STALE_IDLE: Duration = Duration::from_hours(1);

/// Where prefix models are kept: `$GEMFILTER_CACHE`, else `$XDG_CACHE_HOME/gemfilter`, else
/// `~/.cache/gemfilter`. An empty variable counts as unset (never the current directory).
#[must_use]
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("GEMFILTER_CACHE") {
        return PathBuf::from(p);
    }
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("gemfilter")
}

/// The cached prefix of `model` with `keep` layers, written on first use and rebuilt when the
/// cached file is incomplete or damaged; llama.cpp's logs of the writing only with `verbose`.
///
/// The file name carries the source's size and modification time, so a changed model gets a
/// fresh prefix.
///
/// # Errors
/// Unreadable model, unwritable cache (a full disk is said so), or llama.cpp failing to write
/// the prefix.
pub fn prefix_model(model: &Path, keep: usize, n_layer: usize, verbose: bool) -> Result<PathBuf> {
    let md = std::fs::metadata(model)
        .with_context(|| format!("cannot read {}", sanitize::path(model)))?;
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
    remove_orphans(&dir);
    if out.exists() {
        match verify(&out) {
            Ok(()) => return Ok(out),
            Err(why) => notice!(
                "the cached prefix model {} {why}; rebuilding it",
                sanitize::path(&out)
            ),
        }
    } else {
        notice!(
            "writing the {keep}-layer prefix of the model for the filter pass to {} (once)",
            sanitize::path(&out)
        );
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create cache directory {}", sanitize::path(&dir)))?;
    // The backend sets llama.cpp's logging: silent unless verbose, before the writer logs.
    super::backend(verbose)?;
    write(model, &out, keep, n_layer)?;
    Ok(out)
}

/// Write the prefix and its check file, each through an exclusively created temp file
/// (`<name>.tmp.<pid>.<random>`) renamed into place.
fn write(model: &Path, out: &Path, keep: usize, n_layer: usize) -> Result<()> {
    let mut tmp = TempFile::beside(out)?;
    tmp.close();
    ffi::write_prefix_model(model, tmp.path(), keep, n_layer).map_err(|e| {
        let dir = out.parent().unwrap_or(Path::new("."));
        if fsutil::disk_full(dir) {
            anyhow::anyhow!(
                "cannot write the prefix model to {}: the disk is full",
                sanitize::path(tmp.path())
            )
        } else {
            anyhow::anyhow!(
                "cannot write the prefix model to {}: writing failed ({})",
                sanitize::path(tmp.path()),
                sanitize::quote(&e)
            )
        }
    })?;
    let check = Check::of(tmp.path())
        .map_err(|e| anyhow::anyhow!("the prefix model just written is unusable: {e}"))?;
    let check_path = check_path(out);
    let mut check_tmp = TempFile::beside(&check_path)?;
    check_tmp.write_all(check.render().as_bytes())?;
    tmp.commit(out)?;
    check_tmp.commit(&check_path)
}

/// `X.gguf.check` next to `X.gguf`.
#[must_use]
pub fn check_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".check");
    PathBuf::from(s)
}

/// The writer pid of a prefix temp file name: `<prefix>.gguf[.check].tmp.<pid>.<seq>`, or the
/// older `<prefix>.tmp<pid>`, where `<prefix>` is `<stem>.<size>-<mtime>.first<k>of<n>`; None for
/// any other name (nothing else in the directory is touched).
fn temp_writer(name: &str) -> Option<u32> {
    if !name.contains(".first") {
        return None;
    }
    if let Some(i) = name.rfind(".tmp.") {
        let mut parts = name[i + 5..].split('.');
        let pid = parts.next()?.parse().ok()?;
        let seq_ok = parts.next().is_some_and(|s| s.parse::<u64>().is_ok());
        return (seq_ok && parts.next().is_none()).then_some(pid);
    }
    let i = name.rfind(".tmp")?;
    let digits = &name[i + 4..];
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Whether process `pid` exists (Linux: /proc); None where that cannot be told.
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

/// Remove temp files of writers that are gone (killed mid-write) or idle for an hour.
pub fn remove_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten().take(100_000) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = temp_writer(name) else {
            continue;
        };
        let Ok(md) = e.metadata() else { continue };
        if !md.is_file() || pid == me {
            continue;
        }
        let idle = md
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let gone = process_alive(pid) == Some(false);
        if (gone && idle >= ORPHAN_IDLE) || idle >= STALE_IDLE {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Why a cached prefix cannot be used, as the end of "the cached prefix model X …".
///
/// # Errors
/// A missing, unreadable or mismatching check file, a damaged GGUF, a size or checksum that
/// differs.
pub fn verify(out: &Path) -> Result<()> {
    let check_path = check_path(out);
    let mut text = String::new();
    match File::open(&check_path) {
        Ok(f) => {
            // A check file is ~60 bytes; never read more than 4 KiB of whatever is there.
            if f.take(4096).read_to_string(&mut text).is_err() {
                bail!("has an unreadable check file");
            }
        }
        Err(_) => bail!("has no check file (written by an older gemfilter, or interrupted)"),
    }
    let Some(want) = Check::parse(&text) else {
        bail!("has a damaged check file");
    };
    let size = std::fs::metadata(out).map_or(0, |m| m.len());
    if size != want.size {
        bail!(
            "is {size} bytes, its check file says {} (truncated?)",
            want.size
        );
    }
    let got = Check::of(out).map_err(|e| anyhow::anyhow!("is damaged ({e})"))?;
    if got != want {
        bail!("does not match its checksum (damaged)");
    }
    Ok(())
}

/// Size and checksum of a prefix file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub size: u64,
    pub hash: u64,
}

impl Check {
    /// Check a GGUF file's header and compute its check: word-wise FNV-1a over the size, the
    /// header and the sampled data blocks (each with its offset).
    ///
    /// # Errors
    /// An invalid or truncated GGUF, or a read error.
    pub fn of(path: &Path) -> Result<Check> {
        let meta = gguf_info::read(path)?;
        let mut f = File::open(path).context("cannot open it")?;
        let size = f.metadata().context("cannot read it")?.len();
        let mut h = Fnv::new();
        h.update(&size.to_le_bytes());
        let header = meta.data_offset.min(size);
        let mut buf = vec![0u8; 1 << 16];
        let mut left = header;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            f.read_exact(&mut buf[..n])
                .context("cannot read its header")?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        for (at, len) in sample_blocks(header, size) {
            let n = usize::try_from(len).unwrap_or(0).min(buf.len());
            f.seek(SeekFrom::Start(at)).context("cannot read it")?;
            f.read_exact(&mut buf[..n])
                .context("cannot read its data")?;
            h.update(&at.to_le_bytes());
            h.update(&buf[..n]);
        }
        Ok(Check {
            size,
            hash: h.finish(),
        })
    }

    fn render(&self) -> String {
        format!(
            "{CHECK_MAGIC}\nsize {}\nfnv1a64w {:016x}\n",
            self.size, self.hash
        )
    }

    fn parse(text: &str) -> Option<Check> {
        let mut lines = text.lines();
        if lines.next()? != CHECK_MAGIC {
            return None;
        }
        let size = lines.next()?.strip_prefix("size ")?.parse().ok()?;
        let hash = u64::from_str_radix(lines.next()?.strip_prefix("fnv1a64w ")?, 16).ok()?;
        Some(Check { size, hash })
    }
}

/// The data blocks a check reads: everything when the data section is at most
/// `SAMPLES * SAMPLE_BYTES`, else `SAMPLES` blocks at an even stride plus the last block.
fn sample_blocks(start: u64, end: u64) -> Vec<(u64, u64)> {
    let len = end.saturating_sub(start);
    if len <= SAMPLES * SAMPLE_BYTES {
        return (0..len.div_ceil(SAMPLE_BYTES))
            .map(|k| {
                let at = start + k * SAMPLE_BYTES;
                (at, SAMPLE_BYTES.min(end - at))
            })
            .collect();
    }
    let stride = len / SAMPLES;
    let mut v: Vec<(u64, u64)> = (0..SAMPLES)
        .map(|k| (start + k * stride, SAMPLE_BYTES))
        .collect();
    v.push((end - SAMPLE_BYTES, SAMPLE_BYTES));
    v
}

/// FNV-1a, 64-bit, over little-endian 8-byte words (a tail shorter than 8 bytes byte by byte):
/// one multiply per word, ~8x the speed of the byte-wise hash. Each step (xor, then multiply by
/// an odd constant) is a bijection of the state, so any change confined to one word always
/// changes the result; wider damage goes unnoticed with a chance of about 2^-64.
/// Word-wise FNV-1a, the checksum of cached files.
pub(crate) struct Fnv(u64);

impl Fnv {
    const PRIME: u64 = 0x0100_0000_01b3;

    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn update(&mut self, b: &[u8]) {
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            let x = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
            self.0 = (self.0 ^ x).wrapping_mul(Self::PRIME);
        }
        for &x in words.remainder() {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(Self::PRIME);
        }
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Size and FNV checksum of everything `f` reads, in 1 MiB blocks.
///
/// # Errors
/// A read error.
pub(crate) fn reader_check(mut f: impl Read) -> Result<Check> {
    let mut h = Fnv::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).context("cannot read it")?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    h.update(&size.to_le_bytes());
    Ok(Check {
        size,
        hash: h.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_identify_their_writer() {
        let d = std::env::temp_dir().join(format!("gf-prefix-names-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let t = TempFile::beside(&d.join("m.123-4.first5of30.gguf")).unwrap();
        let name = t.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_writer(name), Some(std::process::id()));
        drop(t);
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(temp_writer("m.first5of30.tmp4242"), Some(4242));
        assert_eq!(temp_writer("m.first5of30.gguf.check.tmp.77.0"), Some(77));
        assert_eq!(temp_writer("m.first5of30.gguf"), None);
        assert_eq!(temp_writer("m.first5of30.gguf.check"), None);
        assert_eq!(temp_writer("notes.tmp.txt"), None);
        assert_eq!(temp_writer("notes.tmp.12.3"), None);
        if Path::new("/proc/self").exists() {
            assert_eq!(process_alive(std::process::id()), Some(true));
            assert_eq!(process_alive(u32::MAX - 1), Some(false));
        }
    }

    #[test]
    fn samples_cover_the_data_evenly() {
        let small = sample_blocks(100, 100 + 10_000);
        assert_eq!(small.iter().map(|b| b.1).sum::<u64>(), 10_000);
        let big = 8 << 30;
        let v = sample_blocks(1 << 20, big);
        assert_eq!(v.len() as u64, SAMPLES + 1);
        let stride = v[1].0 - v[0].0;
        // Any damaged run of `stride` bytes or more overlaps a sampled block.
        assert!(stride <= (big - (1 << 20)) / SAMPLES + 1);
        assert!(v.iter().all(|&(at, n)| at + n <= big));
    }

    #[test]
    fn any_one_word_change_changes_the_hash() {
        let base: Vec<u8> = (0..4099u32).map(|i| (i * 7 % 251) as u8).collect();
        let hash = |b: &[u8]| {
            let mut h = Fnv::new();
            h.update(b);
            h.finish()
        };
        let h0 = hash(&base);
        for at in (0..base.len()).step_by(61) {
            let mut b = base.clone();
            b[at] ^= 0x80;
            assert_ne!(hash(&b), h0, "flip at {at}");
        }
        let mut b = base.clone();
        b.pop();
        assert_ne!(hash(&b), h0);
    }

    #[test]
    fn check_files_round_trip_and_reject_garbage() {
        let c = Check {
            size: 123,
            hash: 0xdead_beef,
        };
        assert_eq!(Check::parse(&c.render()), Some(c));
        assert_eq!(Check::parse("garbage"), None);
        assert_eq!(Check::parse(&format!("{CHECK_MAGIC}\nsize x\n")), None);
    }
}
