//! Everything that is not the answer goes to stderr through here; `--log-disable` silences
//! notices (never errors).

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

#[must_use]
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A one-line notice on stderr, prefixed `gemfilter:`.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => {
        if !$crate::messages::quiet() {
            eprintln!("gemfilter: {}", format_args!($($arg)*));
        }
    };
}
