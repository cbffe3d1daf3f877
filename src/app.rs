//! One top-level function per mode, on settings resolved once by `cli::resolve`.

use anyhow::Result;

use crate::cli::resolve::{resolve, Mode, Resolved};
use crate::cli::Cli;

/// Resolve the command line, then run the mode it asks for. `notices` are the parser's (options
/// accepted with no effect here), printed once the verbosity is known.
///
/// # Errors
/// Whatever resolving or the mode reports; `main` prints it as one line.
pub fn run(cli: Cli, notices: &[String]) -> Result<()> {
    crate::messages::set_quiet(cli.quiet());
    crate::log_file::init(&cli.log_settings())?;
    for n in notices {
        crate::notice!("{n}");
    }
    let Resolved { mut mode, steps } = resolve(cli)?;
    // Device probes and first-use calibration, explicitly, before the mode.
    for step in steps {
        step.run(&mut mode)?;
    }
    match mode {
        Mode::Run(s) if s.conversation => crate::conversation::interactive::run(&s),
        Mode::Run(s) if s.prompt_cache.is_some() => crate::conversation::single::run(&s),
        Mode::Run(s) if s.interactive.is_some() || s.self_extend.is_some() => {
            crate::completion::run(&s)
        }
        Mode::Run(s) => crate::run::run(&s),
        Mode::Bench(s) => crate::tools::bench::run(&s),
        Mode::Niah(s) => crate::eval::niah::run(&s),
        Mode::Layers(s) => crate::eval::layers::run(&s),
        Mode::Calibrate(s) => crate::eval::calibrate::run(&s),
        Mode::Synth(a) => crate::tools::synth::run(&a),
        Mode::ListDevices(load) => crate::tools::rpc_server::list_devices(&load),
        Mode::RpcServer(s) => crate::tools::rpc_server::run(&s),
        Mode::Serve(s) => crate::server::run(*s),
    }
}
