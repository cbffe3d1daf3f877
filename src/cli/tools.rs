//! Flags of the tools beside the default mode (`bench`; `synth` keeps its own beside its code).

use std::path::PathBuf;

use super::llama::{GemArgs, ModelArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gem: GemArgs,
    /// Prompt lengths in tokens, comma-separated; k and m suffixes (8k = 8192).
    #[arg(long = "lengths", default_value = "8k,32k", value_name = "LIST")]
    pub lengths: String,
    /// Tokens to decode after the prompt, for the decode speed at that depth.
    #[arg(long = "n-decode", default_value_t = 32, value_name = "N")]
    pub n_decode: i32,
    /// Text the prompts are cut from (repeated as needed); default: the bundled haystack.
    #[arg(long = "haystack", value_name = "FILE")]
    pub haystack: Option<PathBuf>,
    /// Also write the results (JSON) here after every length.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip the standard llama.cpp run (e.g. when it cannot fit in memory).
    #[arg(long = "no-standard")]
    pub no_standard: bool,
}
