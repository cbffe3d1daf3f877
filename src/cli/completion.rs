//! llama-completion's interactive-mode and self-extend flags (default mode only).

use clap::Args;

/// Interactive mode and group-attention self-extend.
#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// Interactive mode on raw text (with -no-cnv): generate, then at a reverse prompt (-r),
    /// end of generation or -n tokens read a line from standard input and go on; ends at EOF.
    /// With -cnv, conversation mode is interactive already.
    #[arg(long = "interactive")]
    pub interactive: bool,

    /// Interactive mode, waiting for input before generating (after the prompt is decoded).
    #[arg(long = "interactive-first")]
    pub interactive_first: bool,

    /// Interactive mode: input goes on over several lines until one ends in `\`.
    #[arg(long = "multiline-input")]
    pub multiline_input: bool,

    /// Interactive mode: a BOS token before each input.
    #[arg(long = "in-prefix-bos")]
    pub in_prefix_bos: bool,

    /// Interactive mode: text put before each input (printed, and decoded with it).
    #[arg(long = "in-prefix", value_name = "STRING")]
    pub in_prefix: Option<String>,

    /// Interactive mode: text put after each input (printed, and decoded with it).
    #[arg(long = "in-suffix", value_name = "STRING")]
    pub in_suffix: Option<String>,

    /// Self-extend group factor (-gan): past each window of -gaw positions, positions are
    /// divided by N so a long context stays within the trained positions; 1 is off.
    #[arg(
        long = "grp-attn-n",
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub grp_attn_n: i32,

    /// Self-extend window (-gaw), a multiple of -gan.
    #[arg(
        long = "grp-attn-w",
        value_name = "N",
        default_value_t = 512,
        allow_negative_numbers = true
    )]
    pub grp_attn_w: i32,
}

impl CompletionArgs {
    /// Any interactive-mode option given.
    #[must_use]
    pub fn any_interactive(&self) -> bool {
        self.interactive
            || self.interactive_first
            || self.multiline_input
            || self.in_prefix_bos
            || self.in_prefix.is_some()
            || self.in_suffix.is_some()
    }
}
