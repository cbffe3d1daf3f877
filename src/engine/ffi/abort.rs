//! What the user sees when ggml or llama.cpp gives up. `GGML_ASSERT`/`GGML_ABORT` call
//! `ggml_abort` (ggml/src/ggml.c), which by default prints the failed check and then
//! `ggml_print_backtrace`: it forks gdb or lldb onto the process and dumps a dozen lines of
//! debugger output before `abort()` raises SIGABRT. [`install`] turns that into one line:
//! `GGML_NO_BACKTRACE` (read by `ggml_print_backtrace` at call time, so also for the C++
//! terminate handler that ggml.cpp registers) silences the debugger, and an abort callback
//! (`ggml_set_abort_callback`) prints one sanitized `error:` line and exits with status 1.
//! The header checks in [`crate::gguf_info`] refuse what they can before llama.cpp sees a file;
//! this is the net under them.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use llama_cpp_sys_2 as sys;

extern "C" {
    /// POSIX `_exit` (C runtime): ends the process at once, without atexit handlers or C++
    /// static destructors, which could run while ggml's worker threads still use them.
    fn _exit(status: c_int) -> !;
}

/// Set to keep ggml's own abort behaviour (message, debugger backtrace, SIGABRT) for debugging.
pub const KEEP_ENV: &str = "GEMFILTER_GGML_ABORT";

/// Set (to anything) to make [`install`] trip a ggml abort at once: the test suite checks
/// through the binary that an abort inside ggml ends in one line and exit status 1.
pub const SELFTEST_ENV: &str = "GEMFILTER_ABORT_SELFTEST";

/// Install the one-line abort handling; call first thing in `main`, before any thread starts
/// (it sets an environment variable).
pub fn install() {
    if std::env::var_os(KEEP_ENV).is_some() {
        return;
    }
    if std::env::var_os("GGML_NO_BACKTRACE").is_none() {
        std::env::set_var("GGML_NO_BACKTRACE", "1");
    }
    // SAFETY: ggml_set_abort_callback only stores the function pointer in a global; `on_abort`
    // has the `ggml_abort_callback_t` signature and never unwinds (it ends the process).
    unsafe {
        sys::ggml_set_abort_callback(Some(on_abort));
    }
    if std::env::var_os(SELFTEST_ENV).is_some() {
        // SAFETY: ggml_abort takes a file name, a line and a printf format with its arguments;
        // all three strings are NUL-terminated literals and "%s" consumes the one argument.
        // It does not return (the callback above ends the process).
        unsafe {
            sys::ggml_abort(
                c"/build/ggml/src/selftest.c".as_ptr(),
                1,
                c"GGML_ASSERT(%s) failed".as_ptr(),
                c"gemfilter abort self-test".as_ptr(),
            );
        }
    }
}

/// The one line for ggml's abort message `msg` (`file:line: GGML_ASSERT(x) failed`).
#[must_use]
pub fn abort_line(msg: &str) -> String {
    let msg = msg.trim();
    // Drop the build machine's directories from `/long/path/ggml/src/ggml.c:123: ...`.
    let detail = match msg.find(": ") {
        Some(colon) => {
            let (loc, rest) = msg.split_at(colon);
            let file = loc.rsplit(['/', '\\']).next().unwrap_or(loc);
            format!("{file}{rest}")
        }
        None => msg.to_owned(),
    };
    let lower = detail.to_ascii_lowercase();
    let what = if lower.contains("rpc") || lower.contains("failed to connect") {
        "lost the RPC server (it stopped, or the network failed)"
    } else if lower.contains("out of memory")
        || lower.contains("cuda error")
        || lower.contains("failed to allocate")
    {
        "llama.cpp stopped on a device error (out of memory?)"
    } else {
        "llama.cpp stopped on an internal check; the model file is probably malformed"
    };
    crate::sanitize::line(&format!(
        "error: {what}: {}",
        crate::sanitize::quote_max(&detail, 120)
    ))
}

/// `ggml_abort_callback_t`: print one line, end the process with status 1.
unsafe extern "C" fn on_abort(msg: *const c_char) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::SeqCst) {
        // Another thread is already reporting and about to exit; never return into abort().
        loop {
            std::thread::park();
        }
    }
    let line = std::panic::catch_unwind(|| {
        let text = if msg.is_null() {
            String::new()
        } else {
            // SAFETY: ggml passes its NUL-terminated message buffer, alive during the call.
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .into_owned()
        };
        abort_line(&text)
    })
    .unwrap_or_else(|_| "error: llama.cpp stopped on an internal check".to_owned());
    let _ = writeln!(std::io::stderr(), "{line}");
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { _exit(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_lines_are_one_short_line() {
        let l = abort_line(
            "/home/ci/llama.cpp/ggml/src/ggml-cpu/ops.cpp:3456: GGML_ASSERT(eps >= 0.0f) failed",
        );
        assert!(l.starts_with("error: llama.cpp stopped"), "{l}");
        assert!(
            l.contains("malformed")
                && l.contains("'ops.cpp:3456: GGML_ASSERT(eps >= 0.0f) failed'"),
            "{l}"
        );
        let l = abort_line(
            "/x/ggml-rpc/ggml-rpc.cpp:566: Remote RPC server crashed or returned malformed response",
        );
        assert!(
            l.starts_with("error: lost the RPC server") && l.contains("'ggml-rpc.cpp:566:"),
            "{l}"
        );
        let l = abort_line("ggml-cuda.cu:88: CUDA error: out of memory");
        assert!(l.contains("out of memory?"), "{l}");
        let l = abort_line(&format!("x.c:1: {}", "\n\x1b[2J".repeat(10_000)));
        assert!(
            l.chars().count() < 300 && !l.contains('\n') && !l.contains('\x1b'),
            "{l}"
        );
    }
}
