//! Flags of the accuracy tools (`niah`, `layers`, `calibrate`) and the prompt group they share
//! with `bench`.

use std::path::PathBuf;

use crate::eval::niah::grid::{Style, Variant};
use crate::eval::niah::Method;
use crate::prompt::Protect;

use super::llama::{GemArgs, ModelArgs, RunArgs};

/// `niah`'s prompt lengths without `--lengths`.
pub const NIAH_LENGTHS: &str = "1000,2000,4000";
/// `bench`'s prompt lengths without `--lengths`.
pub const BENCH_LENGTHS: &str = "8k,32k";

/// The prompts a measuring tool cuts from a haystack (`niah`, `calibrate`, `bench`): one group,
/// so the flags read the same everywhere; each tool's default lengths are applied in `resolve`.
#[derive(Debug, Clone, clap::Args)]
pub struct PromptsArgs {
    /// Text the prompts are cut from: a directory of .txt files (concatenated in name order, as
    /// the reference harness does with Paul Graham's essays) or one file, repeated as needed.
    /// Default: the bundled essays.
    #[arg(long = "haystack", value_name = "DIR|FILE")]
    pub haystack: Option<PathBuf>,

    /// Prompt lengths in tokens, comma-separated, with k and m suffixes (`2000,8k,7.5k`; 8k =
    /// 8192). Default: niah 1000,2000,4000; calibrate 2000 and min(6000, context - 256);
    /// bench 8k,32k.
    #[arg(long = "lengths", value_name = "LIST")]
    pub lengths: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NiahArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gem: GemArgs,

    #[command(flatten)]
    pub prompts: PromptsArgs,

    /// Needle depths in percent of the context, comma-separated.
    #[arg(
        long = "depths",
        default_value = "0,10,20,30,40,50,60,70,80,90,100",
        value_name = "LIST"
    )]
    pub depths: String,

    /// RULER-style tasks instead of needles, comma-separated: `niah_single_1..3`,
    /// `niah_multikey_1..3`, `niah_multivalue`, `niah_multiquery`, vt, cwe, or `all`. Each length gets
    /// --samples samples per task, at the --depths in turn; scored by RULER's rule.
    #[arg(long = "tasks", value_name = "LIST")]
    pub tasks: Option<String>,

    /// Samples per task and length with --tasks.
    #[arg(long = "samples", default_value_t = 10, value_name = "N")]
    pub samples: usize,

    /// Needles: reference, all, own (the 23 beside the reference), or ids, comma-separated.
    #[arg(long = "needles", default_value = "reference", value_name = "LIST")]
    pub needles: String,

    /// Needle variants, comma-separated: single, distractors (two more needles hidden, one
    /// asked), multi (three hidden, all asked).
    #[arg(
        long = "variants",
        value_enum,
        value_delimiter = ',',
        default_value = "single",
        value_name = "LIST"
    )]
    pub variants: Vec<Variant>,

    /// Prompt wording: plain (`… Question: Q Answer:`), primed (plain plus the start of the
    /// answer sentence), book (the GemFilter harness's), or chat (the model's chat template).
    #[arg(long = "style", value_enum, default_value = "plain")]
    pub style: Style,

    /// Built-in chat template name for --style chat (default: the model's own).
    #[arg(long = "chat-template", value_name = "NAME")]
    pub chat_template: Option<String>,

    /// Methods per cell, comma-separated: full (the whole prompt), gem (GemFilter as
    /// configured), reference (GemFilter at the same layer with the paper's scoring).
    #[arg(
        long = "methods",
        value_enum,
        value_delimiter = ',',
        default_value = "full,gem",
        value_name = "LIST"
    )]
    pub methods: Vec<Method>,

    /// Tokens to generate per answer (greedy).
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 32,
        value_name = "N"
    )]
    pub n_predict: i32,

    /// Seed for the companion needles of the multi-needle variants.
    #[arg(long = "seed", default_value_t = 0, value_name = "SEED")]
    pub seed: u64,

    /// Output directory (created; cells already in it are skipped).
    #[arg(
        short = 'o',
        long = "output",
        default_value = "niah-out",
        value_name = "DIR"
    )]
    pub output: PathBuf,

    /// Recall-per-layer mode: filter passes only, no generation; e.g. 0-29 or 5,11,17.
    #[arg(long = "layers", value_name = "A-B")]
    pub layers: Option<String>,

    /// Scorings compared in --layers mode (`window-softmax:W` picks a window).
    #[arg(
        long = "scorings",
        default_value = "reference,head-softmax,window-softmax:32",
        value_name = "LIST"
    )]
    pub scorings: String,

    /// Average-pooling kernels tried with every scoring in --layers mode, comma-separated odd
    /// numbers (5 is the reference's; others are an experiment the runtime does not use yet).
    #[arg(long = "pools", default_value = "5", value_name = "LIST")]
    pub pools: String,

    /// Discard earlier results in the output directory instead of resuming.
    #[arg(long = "fresh")]
    pub fresh: bool,

    /// Only rebuild the summary and plots from the output directory.
    #[arg(long = "report-only")]
    pub report_only: bool,
}

/// `gemfilter layers`: recall per layer for one prompt whose context contains `--needle`.
#[derive(Debug, Clone, clap::Args)]
pub struct LayersArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Text inside the -f context whose tokens should be selected.
    #[arg(long = "needle", value_name = "TEXT")]
    pub needle: String,
    /// Layers to probe, e.g. 0-29 (default: every global layer).
    #[arg(long = "layers", value_name = "A-B")]
    pub layers: Option<String>,
    /// Scorings to compare, comma-separated (`window-softmax:W` picks a window).
    #[arg(
        long = "scorings",
        default_value = "reference,head-softmax,window-softmax",
        value_name = "LIST"
    )]
    pub scorings: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub prompts: PromptsArgs,

    /// Needle depths in percent.
    #[arg(long = "depths", default_value = "25,50,75", value_name = "LIST")]
    pub depths: String,

    /// Scorings to compare; the first wins ties (the reference stays the default until another
    /// is better by more than the tolerance).
    #[arg(
        long = "scorings",
        default_value = "reference,head-softmax,window-softmax:32",
        value_name = "LIST"
    )]
    pub scorings: String,

    /// Tokens kept (k) at which recall is measured.
    #[arg(long = "gem-topk", default_value_t = 1024, value_name = "K")]
    pub top_k: usize,

    /// What is always kept (as in the run).
    #[arg(long = "gem-protect", value_enum, default_value = "all")]
    pub protect: Protect,

    /// Prompt wording (plain suits base and small models).
    #[arg(long = "style", value_enum, default_value = "plain")]
    pub style: Style,

    /// Store the recommendation in the user presets file ($`GEMFILTER_PRESETS`, else
    /// ~/.config/gemfilter/presets.toml), replacing an earlier entry for this model.
    #[arg(long = "write")]
    pub write: bool,
}
