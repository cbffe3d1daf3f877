//! Command line: the default mode takes llama-cli's flags; subcommands are the tools.

pub mod eval;
pub mod llama;
pub mod resolve;
pub mod serve;
pub mod tools;
pub mod values;

use clap::{Parser, Subcommand};

pub use llama::RunArgs;

/// llama-cli's multi-letter single-dash flags, which clap cannot express, mapped to their long
/// names before parsing.
const SINGLE_DASH: &[(&str, &str)] = &[
    ("-sys", "--system-prompt"),
    ("-ngl", "--n-gpu-layers"),
    ("-fa", "--flash-attn"),
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-tb", "--threads-batch"),
    ("-ub", "--ubatch-size"),
    ("-no-cnv", "--no-conversation"),
    ("-cnv", "--conversation"),
    ("-st", "--single-turn"),
    ("-sm", "--split-mode"),
    ("-ts", "--tensor-split"),
    ("-mg", "--main-gpu"),
    ("-dev", "--device"),
];

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
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Single turn (-st): answer -p and exit, also on a terminal.
    #[arg(long = "single-turn", global = true)]
    pub single_turn: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a random-weight GGUF with the exact shape of a real model, for GPU benchmarks.
    Synth(tools::SynthArgs),
    /// Selection recall of a needle at every layer (one prefill, no generation).
    Layers(eval::LayersArgs),
    /// Standard llama.cpp prefill vs GemFilter on the same prompts: time, memory, decode speed.
    Bench(tools::BenchArgs),
    /// Needle-in-a-haystack: full prompt vs GemFilter over lengths and depths, with recall.
    Niah(eval::NiahArgs),
    /// Find the filter layer for a model: selection recall per layer on built-in needles.
    Calibrate(eval::CalibrateArgs),
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

/// Rewrite llama-cli's single-dash long flags (`-ngl 99`, `-fa=on`) to clap's form.
#[must_use]
pub fn normalize_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            for (short, long) in SINGLE_DASH {
                if s == *short {
                    return (*long).into();
                }
                if let Some(v) = s.strip_prefix(short).and_then(|r| r.strip_prefix('=')) {
                    return format!("{long}={v}").into();
                }
            }
            a
        })
        .collect()
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
        let cli = Cli::try_parse_from(normalize_args(argv.iter().map(Into::into))).unwrap();
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
