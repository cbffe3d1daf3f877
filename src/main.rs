use std::process::ExitCode;

use clap::Parser;
use gemfilter::cli::{normalize_args, Cli};

fn main() -> ExitCode {
    // Before anything else (it sets an environment variable): ggml's aborts become one line.
    gemfilter::engine::ffi::abort::install();
    let cli = match Cli::try_parse_from(normalize_args(std::env::args_os())) {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match gemfilter::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the message holds: controls escaped, length capped.
            eprintln!("{}", gemfilter::sanitize::line(&format!("error: {e:#}")));
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
