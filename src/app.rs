//! One top-level function per mode.

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Run whatever the command line asked for.
///
/// # Errors
/// Whatever the mode reports; `main` prints it as one line.
pub fn run(cli: Cli) -> Result<()> {
    match (cli.command, cli.run) {
        (Some(Command::Synth(a)), _) => crate::tools::synth::run(&a),
        (Some(Command::Layers(a)), _) => crate::eval::layers::run(&a),
        (Some(Command::Bench(a)), _) => crate::tools::bench::run(&a),
        (Some(Command::Niah(a)), _) => crate::eval::niah::run(&a),
        (Some(Command::Calibrate(a)), _) => crate::eval::calibrate::run(&a),
        (None, r) => crate::run::run(&r),
    }
}
