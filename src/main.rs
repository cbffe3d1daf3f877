use std::process::ExitCode;

use gemfilter::cli::{parse_args, ParseError, Parsed};

fn main() -> ExitCode {
    // Before anything else (it sets an environment variable): ggml's aborts become one line.
    gemfilter::engine::ffi::abort::install();
    gemfilter::messages::end_quietly_on_broken_pipe();
    let env = |k: &str| std::env::var(k).ok();
    let (cli, notices) = match parse_args(std::env::args_os(), &env) {
        Ok(Parsed::Run(c, notices)) => (c, notices),
        Ok(Parsed::OptionsDoc(md)) => {
            print!("{md}");
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Clap(e)) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(ParseError::Refused(msg)) => {
            eprintln!("{}", gemfilter::sanitize::line(&format!("error: {msg}")));
            return ExitCode::from(2);
        }
    };
    match gemfilter::app::run(*cli, &notices) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the message holds: controls escaped, length capped.
            let line = gemfilter::sanitize::line(&format!("error: {e:#}"));
            eprintln!("{line}");
            gemfilter::log_file::error(&line);
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
