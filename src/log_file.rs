//! llama.cpp's logging options, for gemfilter's log (its notices) and llama.cpp's own (`-v`):
//!
//! - `--log-file FNAME`: every log line also goes to FNAME, created or emptied at start, as
//!   `common_log_set_file` does (llama-cli writes no log lines of its own at the default
//!   verbosity, so there the file holds only llama.cpp's log with `-v`).
//! - `--log-jsonl`: each log line is one JSON object on standard output instead,
//!   `{"type":"log","time":µs since start,"level":"info","msg":"...\n"}`, the shape and key
//!   order of `common_log_entry::print`; the file gets the same lines.
//! - `--log-prompts-dir PATH` (llama-cli and llama-server): each prompt sent to the model is
//!   written to `PATH/<milliseconds>.txt`, as llama.cpp's server does for every completion; the
//!   directory is created when missing (a failure is a warning, as there).
//!
//! Set once at start ([`init`]); nothing here is used when no option asked for it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result};

pub use crate::engine::ffi::log::Level;
use crate::sanitize;

/// The logging options, resolved from the command line.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub file: Option<PathBuf>,
    pub jsonl: bool,
    pub prompts_dir: Option<PathBuf>,
    /// `-v`: llama.cpp's own log is shown (and logged).
    pub verbose: bool,
}

struct Sink {
    file: Option<Mutex<File>>,
    jsonl: bool,
    prompts_dir: Option<PathBuf>,
    start: Instant,
}

static SINK: OnceLock<Sink> = OnceLock::new();

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Cont => "cont",
            Level::None => "none",
        }
    }
}

/// One `--log-jsonl` line, fields in llama.cpp's order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: u64,
    level: &'static str,
    msg: &'a str,
}

/// Open the log file (created, or emptied when it exists) and the prompts directory, and route
/// llama.cpp's log through here when it is shown (`-v`) and a file or JSON lines were asked for.
///
/// # Errors
/// A log file that cannot be opened for writing.
pub fn init(s: &LogSettings) -> Result<()> {
    let file = match &s.file {
        Some(p) => Some(Mutex::new(File::create(p).with_context(|| {
            format!(
                "--log-file {}: cannot open it for writing",
                sanitize::path(p)
            )
        })?)),
        None => None,
    };
    let prompts_dir = s
        .prompts_dir
        .as_ref()
        .and_then(|d| match std::fs::create_dir_all(d) {
            Ok(()) => Some(d.clone()),
            Err(e) => {
                crate::notice!(
                    "warning: failed to create --log-prompts-dir {}: {e}; prompts are not logged",
                    sanitize::path(d)
                );
                None
            }
        });
    let routed = file.is_some() || s.jsonl;
    let _ = SINK.set(Sink {
        file,
        jsonl: s.jsonl,
        prompts_dir,
        start: Instant::now(),
    });
    if s.verbose && routed {
        crate::engine::ffi::log::route_to(llama_line);
    }
    Ok(())
}

fn sink() -> Option<&'static Sink> {
    SINK.get()
}

fn json_line(s: &Sink, level: Level, msg: &str) -> String {
    let line = JsonLine {
        kind: "log",
        time: u64::try_from(s.start.elapsed().as_micros()).unwrap_or(u64::MAX),
        level: level.name(),
        msg,
    };
    let mut out = serde_json::to_string(&line).unwrap_or_default();
    out.push('\n');
    out
}

/// Write `text` (whole lines) where the log goes: standard error, or standard output as JSON
/// lines; and the log file.
fn emit(level: Level, text: &str, to_console: bool) {
    let Some(s) = sink() else {
        if to_console {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        return;
    };
    let out = if s.jsonl {
        json_line(s, level, text)
    } else {
        text.to_owned()
    };
    if to_console {
        if s.jsonl {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(out.as_bytes());
            let _ = o.flush();
        } else {
            let _ = std::io::stderr().write_all(out.as_bytes());
        }
    }
    if let Some(f) = &s.file {
        let mut f = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = f.write_all(out.as_bytes());
        let _ = f.flush();
    }
}

/// A gemfilter notice (`notice!`): `gemfilter: TEXT` on standard error and in the log file, or
/// one JSON line with `--log-jsonl`.
pub fn notice(text: &str) {
    let level = if text.starts_with("warning:") {
        Level::Warn
    } else {
        Level::Info
    };
    emit(level, &format!("gemfilter: {text}\n"), true);
}

/// The run's `error:` line: also in the log file (the console line is main's).
pub fn error(line: &str) {
    let Some(s) = sink() else { return };
    let Some(f) = &s.file else { return };
    let text = format!("{line}\n");
    let out = if s.jsonl {
        json_line(s, Level::Error, &text)
    } else {
        text
    };
    let mut f = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = f.write_all(out.as_bytes());
    let _ = f.flush();
}

/// llama.cpp's log (installed only with `-v`): as shown without these options, plus the file
/// or JSON lines.
fn llama_line(level: Level, text: &str) {
    emit(level, text, true);
}

/// Whether prompts are logged (`--log-prompts-dir`).
#[must_use]
pub fn logs_prompts() -> bool {
    sink().is_some_and(|s| s.prompts_dir.is_some())
}

/// Write a prompt sent to the model to `--log-prompts-dir` as `<ms>.txt` (llama.cpp's server
/// names it by `ggml_time_ms()`, milliseconds of a monotonic clock; here of the wall clock, so
/// runs do not reuse names). An existing file is never replaced: the next free millisecond is
/// taken. A failure is a warning.
pub fn prompt(text: &str) {
    let Some(dir) = sink().and_then(|s| s.prompts_dir.as_deref()) else {
        return;
    };
    if let Err(e) = write_prompt(dir, text) {
        crate::notice!(
            "warning: cannot log the prompt to {}: {e:#}",
            sanitize::path(dir)
        );
    }
}

fn write_prompt(dir: &Path, text: &str) -> Result<PathBuf> {
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    loop {
        let path = dir.join(format!("{ms:012}.txt"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(text.as_bytes())?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => ms += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_llamas_shape_and_order() {
        let s = Sink {
            file: None,
            jsonl: true,
            prompts_dir: None,
            start: Instant::now(),
        };
        let line = json_line(&s, Level::Warn, "a \"quoted\"\nline\n");
        assert!(line.ends_with("\"level\":\"warn\",\"msg\":\"a \\\"quoted\\\"\\nline\\n\"}\n"));
        assert!(line.starts_with("{\"type\":\"log\",\"time\":"), "{line}");
    }

    #[test]
    fn prompts_never_replace_a_file() {
        let d = std::env::temp_dir().join(format!("gf-prompts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let a = write_prompt(&d, "one").unwrap();
        let b = write_prompt(&d, "two").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "two");
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.len() >= 16, "{name}");
        assert_eq!(a.extension().unwrap(), "txt");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
