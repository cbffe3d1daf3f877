//! Flags of the tools beside the default mode (`bench`, `synth`).

use std::path::PathBuf;

use super::eval::PromptsArgs;
use super::llama::{GemArgs, ModelArgs};
use crate::tools::synth::{WeightType, NOISE_NOTE};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gem: GemArgs,
    #[command(flatten)]
    pub prompts: PromptsArgs,
    /// Tokens to decode after the prompt, for the decode speed at that depth.
    #[arg(long = "n-decode", default_value_t = 32, value_name = "N")]
    pub n_decode: i32,
    /// Also write the results (JSON) here after every length.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip the standard llama.cpp run (e.g. when it cannot fit in memory).
    #[arg(long = "no-standard")]
    pub no_standard: bool,
    /// A conversation of N questions per length instead of one prompt: GemFilter's conversation
    /// mode (document filtered once, re-selected per question) beside standard llama.cpp
    /// keeping its whole KV cache. Each length is the whole conversation, answers included.
    #[arg(long = "turns", value_name = "N", default_value_t = 0)]
    pub turns: usize,
}

/// Write a random-weight GGUF with the exact tensor shapes of a real model.
#[allow(clippy::doc_markdown)] // the field docs are --help text, not Markdown
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = NOISE_NOTE)]
pub struct SynthArgs {
    /// Model shape to copy (see --list): llama-3.1-8b, llama-3.2-1b, mistral-nemo-12b,
    /// qwen2-7b, qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b, tiny-llama, tiny-qwen2.
    #[arg(long, value_name = "NAME", required_unless_present = "list")]
    pub shape: Option<String>,

    /// GGUF file to write (overwritten if it exists).
    #[arg(
        short = 'o',
        long,
        value_name = "PATH",
        required_unless_present = "list"
    )]
    pub output: Option<PathBuf>,

    /// Type of the 2-D weight matrices (norms and biases stay f32). Rows that don't fill whole
    /// blocks fall back: q4_k to q4_0, q4_0 and q8_0 to f16.
    #[arg(long = "type", value_enum, value_name = "TYPE", default_value_t = WeightType::Q4_0)]
    pub weight_type: WeightType,

    /// Random seed; the same seed gives the same file.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Number of layers instead of the real block count (small test models).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub layers: Option<u32>,

    /// Training context length to write instead of the shape's.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub ctx: Option<u32>,

    /// Print the known shapes and exit.
    #[arg(long)]
    pub list: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_args_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: SynthArgs,
        }
        let c = Cli::try_parse_from([
            "x", "--shape", "qwen2-7b", "-o", "m.gguf", "--type", "q4_k", "--layers", "2",
        ])
        .unwrap();
        assert_eq!(
            (c.a.weight_type, c.a.layers, c.a.seed),
            (WeightType::Q4_K, Some(2), 0)
        );
        assert!(Cli::try_parse_from(["x", "--list"]).unwrap().a.list);
        assert!(Cli::try_parse_from(["x", "--shape", "qwen2-7b"]).is_err());
        assert!(Cli::try_parse_from(["x", "--shape", "a", "-o", "b", "--layers", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--shape", "a", "-o", "b", "--type", "q5_0"]).is_err());
    }
}

/// `gemfilter rpc-server`: llama.cpp's rpc-server flags.
#[allow(clippy::doc_markdown)] // the field docs are --help text, not Markdown
#[derive(Debug, Clone, clap::Args)]
pub struct RpcServerArgs {
    /// Address to listen on. Anything but a loopback address exposes this machine's devices to
    /// the network: the RPC protocol has no authentication.
    #[arg(
        short = 'H',
        long = "host",
        default_value = "127.0.0.1",
        value_name = "HOST"
    )]
    pub host: String,
    /// Port to listen on.
    #[arg(
        short = 'p',
        long = "port",
        default_value_t = 50052,
        value_name = "PORT"
    )]
    pub port: u16,
    /// Keep received tensors in a local file cache ($LLAMA_CACHE, else ~/.cache/llama.cpp,
    /// under rpc/), so a client that sends the same weights again is served from disk.
    #[arg(short = 'c', long = "cache")]
    pub cache: bool,
    /// CPU threads for the computation (default: all cores).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// Memory clients may allocate, in MiB (default: the served devices' free memory); it is
    /// also the memory the devices report.
    #[arg(short = 'm', long = "mem", value_name = "MiB")]
    pub mem: Option<u64>,
}
