//! Ctrl-C in conversation mode, llama-cli's habit: during an answer it stops that answer and the
//! conversation goes on; at the `> ` prompt it ends the program (exit status 130).

use std::sync::atomic::{AtomicBool, Ordering};

static ANSWERING: AtomicBool = AtomicBool::new(false);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    if ANSWERING.load(Ordering::SeqCst) {
        INTERRUPTED.store(true, Ordering::SeqCst);
    } else {
        // SAFETY: `_exit` is async-signal-safe; nothing is half-written at the prompt.
        unsafe { libc::_exit(130) };
    }
}

/// Route SIGINT to [`on_sigint`] for the rest of the process.
pub fn install() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only touches atomics and calls `_exit`, both async-signal-safe, and
    // `signal` with a valid function pointer has no other precondition.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// Mark the start (true) or end (false) of an answer; starting clears an old interruption.
pub fn answering(on: bool) {
    if on {
        INTERRUPTED.store(false, Ordering::SeqCst);
    }
    ANSWERING.store(on, Ordering::SeqCst);
}

/// Ctrl-C was pressed during the current answer.
#[must_use]
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// End the process now with `code`, without running exit handlers: for a closed output pipe,
/// where llama.cpp's worker threads may still run and its static destructors must not race
/// them.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it ends the process without returning.
    unsafe { libc::_exit(code) }
}
