//! Everything that is not the answer goes to stderr through here; `--log-disable` silences
//! notices (never errors). A closed stdout or stderr (`gemfilter … | head -c 3`) is a normal
//! end, as for any Unix filter: notices to a closed stderr are dropped, and a print to a closed
//! pipe ends the process quietly with status 0 instead of panicking.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

#[must_use]
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A one-line notice on stderr, prefixed `gemfilter:`; dropped when stderr is closed. It is
/// gemfilter's log: `--log-file` gets it too, `--log-jsonl` makes it a JSON line.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => {
        if !$crate::messages::quiet() {
            $crate::log_file::notice(&format!($($arg)*));
        }
    };
}

/// True for the panic of `print!`/`eprint!` (and their `ln` forms) on a closed pipe.
fn is_broken_pipe_panic(info: &std::panic::PanicHookInfo<'_>) -> Option<bool> {
    let msg = info
        .payload()
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| info.payload().downcast_ref::<&str>().copied())?;
    let broken = msg.contains("Broken pipe") || msg.contains("os error 32");
    if !broken {
        return None;
    }
    if msg.starts_with("failed printing to stdout") {
        Some(true)
    } else if msg.starts_with("failed printing to stderr") {
        Some(false)
    } else {
        None
    }
}

/// Make a print to a closed stdout or stderr end the process at once with status 0 (the reader
/// has what it wanted), instead of a panic message and status 101. Other panics are reported
/// as before.
pub fn end_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| match is_broken_pipe_panic(info) {
        Some(stdout_closed) => {
            if !stdout_closed {
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            }
            crate::engine::ffi::signal::exit_now(0);
        }
        None => default(info),
    }));
}
