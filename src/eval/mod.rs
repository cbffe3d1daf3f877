//! Accuracy tools: needle-in-a-haystack grids (`niah`), recall per layer (`layers`) and the
//! per-model calibration (`calibrate`), over one shared core (`curves`, `tokens`).
pub mod calibrate;
pub mod curves;
pub mod layers;
pub mod niah;
pub mod ruler;
pub mod tokens;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr (hidden when stderr is not a terminal).
#[must_use]
pub fn progress(n: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(n);
    b.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_prefix(what.to_owned());
    b
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal).
pub fn say(bar: &ProgressBar, line: &str) {
    if crate::messages::quiet() {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
