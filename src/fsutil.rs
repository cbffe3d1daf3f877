//! Files gemfilter reads or writes on a user's behalf (presets, prompt caches, haystacks,
//! synthetic models): a path must be a regular file, reads are bounded, and writes go to an
//! exclusively created, unguessable temp file beside the target that is renamed into place, so
//! a planted symlink, FIFO or device is never followed, blocked on or replaced, and a failed
//! write leaves the target as it was.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::sanitize;

/// What a non-regular file is, for "X is a FIFO, not a regular file".
#[must_use]
pub fn kind_name(md: &Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// The metadata of `path` without following a final symlink: `None` when nothing is there, an
/// error naming what it is when it is anything but a regular file.
///
/// # Errors
/// A symlink, FIFO, device, socket or directory at `path`, or an unreadable path.
pub fn regular_or_absent(path: &Path, what: &str) -> Result<Option<Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_file() => Ok(Some(md)),
        Ok(md) => bail!(
            "{what} {} is {}, not a regular file",
            sanitize::path(path),
            kind_name(&md)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("cannot read {what} {}: {e}", sanitize::path(path)),
    }
}

/// Open a regular file for reading: a final symlink is not followed and a FIFO does not block
/// the open; anything but a regular file is refused after the open, on the file itself.
///
/// # Errors
/// A missing or unreadable path, or one that is not a regular file.
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    open_checked(path, what, false)
}

/// Open a regular file for reading through symlinks (a user's dotfile links stay usable); a
/// FIFO or device is refused without blocking on it.
///
/// # Errors
/// A missing or unreadable path, or one that is not a regular file.
pub fn open_following(path: &Path, what: &str) -> Result<File> {
    open_checked(path, what, true)
}

/// [`open_regular`], or through symlinks with `follow` (reading a link's target is harmless;
/// what is opened must still be a regular file).
fn open_checked(path: &Path, what: &str, follow: bool) -> Result<File> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let f = match f {
        Ok(f) => f,
        // O_NOFOLLOW on a symlink: say what it is rather than "too many levels of links".
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => bail!(
            "{what} {} is a symbolic link, not a regular file",
            sanitize::path(path)
        ),
        Err(e) => bail!("cannot read {what} {}: {e}", sanitize::path(path)),
    };
    let md = f
        .metadata()
        .with_context(|| format!("cannot read {what} {}", sanitize::path(path)))?;
    if !md.file_type().is_file() {
        bail!(
            "{what} {} is {}, not a regular file",
            sanitize::path(path),
            kind_name(&md)
        );
    }
    Ok(f)
}

/// Read a whole regular file (symlinks followed) of at most `limit` bytes.
///
/// # Errors
/// A FIFO, device, socket or directory, a read error, or a file larger than `limit`.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let f = open_following(path, what)?;
    let mut bytes = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", sanitize::path(path)))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{what} {} is larger than {}, more than such a file ever holds",
            sanitize::path(path),
            size_text(limit)
        );
    }
    Ok(bytes)
}

/// `limit` as "64 KiB" / "16 MiB".
fn size_text(limit: u64) -> String {
    if limit >= 1 << 20 {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{} KiB", (limit >> 10).max(1))
    }
}

/// A temp file beside a target, created exclusively under an unguessable name
/// (`<target>.tmp.<pid>.<random>`), removed on drop unless renamed into place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
    done: bool,
}

impl TempFile {
    /// Create the temp file for `target` in its directory.
    ///
    /// # Errors
    /// An unwritable directory.
    pub fn beside(target: &Path) -> Result<TempFile> {
        let mut last = None;
        for _ in 0..8 {
            let mut name = target.as_os_str().to_owned();
            name.push(format!(
                ".tmp.{}.{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let path = PathBuf::from(name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                        done: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(write_error(&path, &e)),
            }
        }
        let e = last.unwrap_or_else(|| std::io::Error::other("no free name"));
        Err(write_error(target, &e))
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (None after [`Self::close`]).
    pub fn file(&mut self) -> Option<&mut File> {
        self.file.as_mut()
    }

    /// Close the file (another writer, e.g. llama.cpp, writes the path itself).
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Write all of `bytes`.
    ///
    /// # Errors
    /// A write error (a full disk is said so), naming the temp file.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(f) = self.file.as_mut() else {
            bail!("{} is closed", sanitize::path(&self.path));
        };
        f.write_all(bytes).map_err(|e| write_error(&self.path, &e))
    }

    /// Flush to disk and rename over `target` (a symlink there is replaced, never followed).
    ///
    /// # Errors
    /// A failed sync or rename; the temp file is removed.
    pub fn commit(mut self, target: &Path) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(|e| write_error(&self.path, &e))?;
        } else if let Ok(f) = File::open(&self.path) {
            f.sync_all().map_err(|e| write_error(&self.path, &e))?;
        }
        std::fs::rename(&self.path, target).map_err(|e| write_error(target, &e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// "cannot write PATH: the disk is full" or "cannot write PATH: <error>".
#[must_use]
pub fn write_error(path: &Path, e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::EDQUOT) {
        anyhow::anyhow!(
            "cannot write {}: the disk is full (or over quota)",
            sanitize::path(path)
        )
    } else {
        anyhow::anyhow!("cannot write {}: {e}", sanitize::path(path))
    }
}

/// Whether the file system holding `dir` has no room left: one block written and synced in
/// a probe file (removed again). Tells "the disk is full" from other failures of a writer that
/// reports only a status code.
#[must_use]
pub fn disk_full(dir: &Path) -> bool {
    let Ok(mut t) = TempFile::beside(&dir.join(".gemfilter-space-probe")) else {
        return false;
    };
    let Some(f) = t.file() else { return false };
    let r = f
        .write_all(&vec![0u8; 64 << 10])
        .and_then(|()| f.sync_all());
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::StorageFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gf-fsutil-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn only_regular_files_are_read_and_reads_are_bounded() {
        let d = dir("read");
        let f = d.join("a.txt");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_bounded(&f, 5, "x").unwrap(), b"hello");
        let e = read_bounded(&f, 4, "presets file").unwrap_err().to_string();
        assert!(e.contains("larger than 1 KiB"), "{e}");
        let link = d.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(read_bounded(&link, 99, "x").unwrap(), b"hello");
        let e = open_regular(&link, "cache").unwrap_err().to_string();
        assert!(e.contains("is a symbolic link, not a regular file"), "{e}");
        let e = regular_or_absent(&link, "cache").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = read_bounded(&d, 99, "haystack").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), 99, "haystack")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a device"), "{e}");
        assert!(regular_or_absent(&d.join("none"), "x").unwrap().is_none());
        assert!(regular_or_absent(&f, "x").unwrap().is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temp_files_are_exclusive_and_vanish_unless_committed() {
        let d = dir("temp");
        let target = d.join("out.bin");
        let mut t = TempFile::beside(&target).unwrap();
        let p = t.path().to_path_buf();
        assert!(p.starts_with(&d) && p != target);
        t.write_all(b"abc").unwrap();
        drop(t);
        assert!(!p.exists() && !target.exists());
        // A symlink at the target is replaced by the file, its destination never written.
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        let mut t = TempFile::beside(&target).unwrap();
        t.write_all(b"new").unwrap();
        t.commit(&target).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(!disk_full(&d));
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2, "no probe left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_full_disk_is_named() {
        let e = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let m = write_error(Path::new("/x/y"), &e).to_string();
        assert!(m.contains("/x/y") && m.contains("disk is full"), "{m}");
    }
}
