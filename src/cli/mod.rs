//! Command line: the default mode takes llama-cli's flags; subcommands are the tools.

pub mod completion;
pub mod defs;
pub mod enums;
pub mod eval;
pub mod hf_cache;
pub mod llama;
pub mod resolve;
pub mod serve;
pub mod tools;
pub mod values;

use clap::{Parser, Subcommand};

pub use llama::RunArgs;

#[derive(Debug, Parser)]
#[command(
    name = "gemfilter",
    version,
    about = "GemFilter on llama.cpp: select the prompt tokens that matter with the first layers, answer from those alone",
    long_about = "A drop-in for llama-cli on long prompts. It runs only the first r layers over the whole \
                  prompt, scores every token by layer r's attention from the last token, keeps the top-k \
                  (1024 by default) and answers from those alone: less time to first token, less memory, \
                  faster decoding.\n\nExample: gemfilter -m model.gguf -f book.txt -p \"Who is the narrator?\" -n 64",
    args_conflicts_with_subcommands = true,
    // llama.cpp: an option given twice takes the last value.
    args_override_self = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub completion: completion::CompletionArgs,

    /// Single turn (-st): answer -p and exit, also on a terminal.
    #[arg(long = "single-turn", global = true)]
    pub single_turn: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a random-weight GGUF with the exact shape of a real model, for GPU benchmarks.
    Synth(tools::SynthArgs),
    /// Selection recall of a needle at every layer (one prefill, no generation).
    Layers(Box<eval::LayersArgs>),
    /// Standard llama.cpp prefill vs GemFilter on the same prompts: time, memory, decode speed.
    Bench(Box<tools::BenchArgs>),
    /// Needle-in-a-haystack: full prompt vs GemFilter over lengths and depths, with recall.
    Niah(Box<eval::NiahArgs>),
    /// Find the filter layer for a model: selection recall per layer on built-in needles.
    Calibrate(Box<eval::CalibrateArgs>),
    /// Serve this machine's devices to `gemfilter --rpc` clients (llama.cpp's rpc-server).
    RpcServer(tools::RpcServerArgs),
    /// llama-server's OpenAI-compatible HTTP API, with GemFilter on long prompts.
    Serve(Box<serve::ServeArgs>),
}

impl Cli {
    /// `--log-disable` of whichever mode was asked for (applied once, before anything runs).
    #[must_use]
    pub fn quiet(&self) -> bool {
        match &self.command {
            None => self.run.model.log_disable,
            Some(Command::Layers(a)) => a.run.model.log_disable,
            Some(Command::Bench(a)) => a.model.log_disable,
            Some(Command::Niah(a)) => a.model.log_disable,
            Some(Command::Calibrate(a)) => a.model.log_disable,
            Some(Command::Serve(a)) => a.run.model.log_disable,
            Some(Command::Synth(_) | Command::RpcServer(_)) => false,
        }
    }

    /// `--log-file`, `--log-jsonl`, `--log-prompts-dir` and `-v` of whichever mode was asked
    /// for (applied once, before anything runs).
    #[must_use]
    pub fn log_settings(&self) -> crate::log_file::LogSettings {
        self.model_args()
            .map(|m| crate::log_file::LogSettings {
                file: m.log_file.clone(),
                jsonl: m.log_jsonl && !m.no_log_jsonl,
                prompts_dir: m.log_prompts_dir.clone(),
                verbose: m.verbose,
            })
            .unwrap_or_default()
    }

    /// The model flags of whichever mode was asked for (none for synth and rpc-server).
    #[must_use]
    pub fn model_args(&self) -> Option<&llama::ModelArgs> {
        match &self.command {
            None => Some(&self.run.model),
            Some(Command::Layers(a)) => Some(&a.run.model),
            Some(Command::Bench(a)) => Some(&a.model),
            Some(Command::Niah(a)) => Some(&a.model),
            Some(Command::Calibrate(a)) => Some(&a.model),
            Some(Command::Serve(a)) => Some(&a.run.model),
            Some(Command::Synth(_) | Command::RpcServer(_)) => None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// A mode to run, with notices about accepted options that have no effect.
    Run(Box<Cli>, Vec<String>),
    /// Text to print as is, then exit: `--help-options` (the option table as Markdown,
    /// docs/options.md) or `--completion-bash` (a bash completion script).
    OptionsDoc(String),
}

/// Why the command line was not parsed.
#[derive(Debug)]
pub enum ParseError {
    /// clap's own error (usage, or --help/--version, which print and exit 0).
    Clap(clap::Error),
    /// An option refused by name, or a malformed llama.cpp-style argument: one line.
    Refused(String),
}

/// Parse llama-cli's command line: [`defs::lex`] reads it as llama.cpp does (with the
/// `LLAMA_ARG_*` environment under it), then clap types it.
///
/// # Errors
/// See [`ParseError`].
pub fn parse_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, ParseError> {
    let mut argv: Vec<std::ffi::OsString> = args.into_iter().collect();
    if argv.get(1).is_some_and(|a| a == "serve") {
        argv = serve::long_names(argv);
    }
    if argv.get(1).is_some_and(|a| a == "--help-options") {
        return Ok(Parsed::OptionsDoc(options_doc()));
    }
    if argv.iter().skip(1).any(|a| a == "--completion-bash") {
        let cmd = <Cli as clap::CommandFactory>::command();
        let longs: Vec<String> = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect();
        return Ok(Parsed::OptionsDoc(defs::bash_completion(&longs)));
    }
    // A subcommand's own flags are left to clap; only table options it also has are rewritten.
    let cmd = <Cli as clap::CommandFactory>::command();
    let longs = argv
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| cmd.find_subcommand(name))
        .map(|c| {
            let mut longs: std::collections::HashSet<String> = c
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect();
            longs.insert("help".into());
            longs
        });
    let lexed = defs::lex(&argv, longs.as_ref(), env).map_err(ParseError::Refused)?;
    // llama.cpp lists the cache as soon as it reads -cl, and exits.
    if longs.is_none() && lexed.args.iter().any(|a| a == "--cache-list") {
        return Ok(Parsed::OptionsDoc(hf_cache::list(env)));
    }
    let cli = Cli::try_parse_from(lexed.args).map_err(ParseError::Clap)?;
    Ok(Parsed::Run(Box::new(cli), lexed.notices))
}

/// docs/options.md, from the option table and the default mode's clap help.
#[must_use]
pub fn options_doc() -> String {
    let cmd = <Cli as clap::CommandFactory>::command();
    defs::markdown(&|long| {
        if long == "help" || long == "version" {
            return Some(format!("print {long} and exit"));
        }
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_help().map(ToString::to_string))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    /// `debug_assert` is compiled out in release test builds; check the flag table directly.
    #[test]
    fn no_duplicate_flags_in_any_mode() {
        let cmd = Cli::command();
        for sub in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            let mut longs = std::collections::HashSet::new();
            let mut shorts = std::collections::HashSet::new();
            for a in sub.get_arguments() {
                if let Some(l) = a.get_long() {
                    assert!(
                        longs.insert(l),
                        "--{l} defined twice in '{}'",
                        sub.get_name()
                    );
                }
                if let Some(c) = a.get_short() {
                    assert!(
                        shorts.insert(c),
                        "-{c} defined twice in '{}'",
                        sub.get_name()
                    );
                }
            }
        }
    }

    /// Every option the table parses lands on a clap argument of the default mode.
    #[test]
    fn table_targets_exist() {
        let cmd = Cli::command();
        let longs: std::collections::HashSet<&str> =
            cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        for o in defs::TABLE {
            for d in [o.does, o.does_neg] {
                let targets: Vec<&str> = match d {
                    defs::Does::Clap(l) => vec![l],
                    defs::Does::Preset(args) => args.iter().map(|(l, _)| *l).collect(),
                    _ => Vec::new(),
                };
                for l in targets {
                    assert!(
                        l == "help" || l == "version" || longs.contains(l),
                        "{}: no clap argument --{l}",
                        o.names[0]
                    );
                }
            }
        }
    }

    #[test]
    fn repeated_options_take_the_last_value() {
        let argv = [
            "gemfilter",
            "-m",
            "x",
            "-n",
            "3",
            "-n",
            "5",
            "-r",
            "a",
            "-r",
            "b",
            "--perf",
            "--no-perf",
        ];
        let Parsed::Run(cli, _) = parse_args(argv.iter().map(Into::into), &|_| None).unwrap()
        else {
            panic!("not a run")
        };
        assert_eq!(cli.run.sampling.n_predict, 5);
        assert_eq!(cli.run.sampling.reverse_prompt, ["a", "b"]);
        assert!(!cli.run.sampling.perf);
    }

    #[test]
    fn llama_cli_flags_parse() {
        let argv = [
            "gemfilter",
            "-m",
            "x.gguf",
            "-sys",
            "be brief",
            "-ngl",
            "99",
            "-fa",
            "on",
            "-ctk",
            "q8_0",
            "-ctv=q8_0",
            "-ub",
            "256",
            "-tb",
            "3",
            "-no-cnv",
            "-n",
            "16",
            "-c",
            "4096",
            "--temp",
            "0",
            "-s",
            "7",
            "-p",
            "hi",
            "--gem-topk",
            "64",
            "--gem-layer",
            "5",
            "--json",
        ];
        let Parsed::Run(cli, _) = parse_args(argv.iter().map(Into::into), &|_| None).unwrap()
        else {
            panic!("not a run")
        };
        let r = cli.run;
        assert_eq!(r.prompt.system_prompt.as_deref(), Some("be brief"));
        assert_eq!(r.model.n_gpu_layers, "99");
        assert_eq!(r.model.cache_type_v, "q8_0");
        assert_eq!((r.model.ubatch_size, r.model.threads_batch), (256, Some(3)));
        assert!(r.prompt.no_conversation);
        assert_eq!(
            (r.sampling.n_predict, r.sampling.seed, r.model.ctx_size),
            (16, 7, 4096)
        );
        assert_eq!(
            (r.gem.gem_topk, r.gem.gem_layer, r.gem.json),
            (Some(64), Some(5), true)
        );
    }

    #[test]
    fn llama_cli_defaults() {
        let cli = Cli::try_parse_from(["gemfilter", "-m", "x.gguf", "-p", "q"]).unwrap();
        let r = cli.run;
        assert_eq!(
            (
                r.sampling.n_predict,
                r.sampling.top_k,
                r.sampling.repeat_last_n
            ),
            (-1, 40, 64)
        );
        assert_eq!(
            (r.sampling.temp, r.sampling.top_p, r.sampling.min_p),
            (0.8, 0.95, 0.05)
        );
        assert_eq!(
            (
                r.model.batch_size,
                r.model.ubatch_size,
                r.model.cache_type_k.as_str()
            ),
            (2048, 512, "f16")
        );
        assert_eq!(r.gem.gem, llama::OnOff::On);
    }
}
