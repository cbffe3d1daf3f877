//! llama.cpp's (and ggml's) log callback, routed to [`crate::log_file`] for `--log-file` and
//! `--log-jsonl` when the log is shown (`-v`).

use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;

/// A log line's level, named as llama.cpp's `level_str` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    /// The continuation of the previous line.
    Cont,
    None,
}

/// Where each log text goes.
static ROUTE: OnceLock<fn(Level, &str)> = OnceLock::new();

unsafe extern "C" fn forward(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string that lives for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let level = match level {
        sys::GGML_LOG_LEVEL_DEBUG => Level::Debug,
        sys::GGML_LOG_LEVEL_INFO => Level::Info,
        sys::GGML_LOG_LEVEL_WARN => Level::Warn,
        sys::GGML_LOG_LEVEL_ERROR => Level::Error,
        sys::GGML_LOG_LEVEL_CONT => Level::Cont,
        _ => Level::None,
    };
    if let Some(route) = ROUTE.get() {
        // A panic must not unwind into C.
        let _ = std::panic::catch_unwind(|| route(level, &text));
    }
}

/// Send llama.cpp's and ggml's log lines to `route` from now on.
pub fn route_to(route: fn(Level, &str)) {
    let _ = ROUTE.set(route);
    // SAFETY: `forward` is a plain function that never unwinds and ignores its user data;
    // llama.cpp stores the pointer for the life of the process (it also sets ggml's logger).
    unsafe { sys::llama_log_set(Some(forward), std::ptr::null_mut()) };
}
