//! What every mode runs on, built once from the command line by `cli::resolve`: typed,
//! validated, with the model's GGUF header already read. Nothing below `cli` parses flags.

use std::path::PathBuf;

use crate::capture::{KSource, ScoreOn};
use crate::draft::Draft;
use crate::engine::{ContextOptions, LoadOptions};
use crate::generate::{GenLimits, Sampling, SelfExtend};
use crate::gguf_info::ModelMeta;
use crate::prompt::{self, PromptInput, Protect};
use crate::scoring::ScoringSpec;

/// The model and how to run it (`-m`, `-c`, `-ngl`, `-t`, `-b`, `-ub`, `-fa`, `-ctk`, `-ctv`).
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub path: PathBuf,
    pub meta: ModelMeta,
    pub load: LoadOptions,
    pub ctx: ContextOptions,
    /// `-c`; 0 means what the prompt and `-n` need, up to the model's training context.
    pub ctx_size: u32,
    /// `-ctk`/`-ctv` as given, for reports.
    pub cache_types: [String; 2],
}

impl ModelSettings {
    /// The largest context a run may use: `-c`, else the model's training context.
    #[must_use]
    pub fn ctx_limit(&self) -> u32 {
        if self.ctx_size > 0 {
            return self.ctx_size;
        }
        self.meta
            .context_length
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(u32::MAX)
    }

    /// The file name without its extension, as records and reports name the model.
    #[must_use]
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
    }
}

/// GemFilter parameters for one run.
#[derive(Debug, Clone)]
pub struct GemSettings {
    /// Filter layer of the model that selects (the draft's, with a draft).
    pub layer: usize,
    pub top_k: usize,
    /// Scoring, window and pooling kernel.
    pub spec: ScoringSpec,
    /// Disable the early exit (tests use it to show the exit is real).
    pub no_early_exit: bool,
    /// Run the filter pass on the cached (r+1)-layer prefix model instead of the full model.
    pub prefix: bool,
    /// Physical batch size of the filter pass (None: the context's).
    pub ubatch: Option<u32>,
    /// Prompts shorter than this are answered whole (0: always filter).
    pub min_tokens: usize,
    /// Where the filter pass reads layer r's keys (None: from the KV cache on a GPU when the
    /// model's last layer is r, i.e. the prefix model; per ubatch with early exit otherwise).
    pub k_source: Option<KSource>,
    /// Where layer r's token scores are computed (the cache's device, or the host).
    pub score_on: ScoreOn,
    /// A smaller model with the same tokenizer runs the filter pass instead of the target.
    pub draft: Option<Draft>,
    pub positions: Positions,
}

/// Everything the default mode needs, resolved from the flags.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub model: ModelSettings,
    pub input: PromptInput,
    /// Raw completion (`-no-cnv`): no chat template.
    pub no_conversation: bool,
    /// Conversation mode: many questions about one document (`-cnv`, or a terminal).
    pub conversation: bool,
    /// `--prompt-cache`: the document's filter state saved to / loaded from this file.
    pub prompt_cache: Option<std::path::PathBuf>,
    /// When it is written (`--prompt-cache-ro`, `--prompt-cache-all`).
    pub cache_save: crate::doc_state::Save,
    /// `-o`: the conversation's transcript, as llama-cli writes it.
    pub output_file: Option<PathBuf>,
    pub chat_template: Option<String>,
    /// `--jinja`, `--reasoning`: how a chat template is applied.
    pub chat: prompt::ChatSettings,
    /// None with `--gem off`.
    pub gem: Option<GemSettings>,
    pub protect: Protect,
    pub sampling: Sampling,
    pub limits: GenLimits,
    /// llama-completion's interactive mode on raw text (`-i`, `-if`; not with `-cnv`).
    pub interactive: Option<Interactive>,
    /// `-gan`/`-gaw` (None: `-gan 1`, off).
    pub self_extend: Option<SelfExtend>,
    /// Echo the raw prompt before the answer (`-no-cnv` without `--no-display-prompt`).
    pub echo_prompt: bool,
    pub show_selection: bool,
    pub json: bool,
    pub perf: bool,
}

/// llama-completion's interactive mode: what wraps each input and how it is read.
#[derive(Debug, Clone, Default)]
pub struct Interactive {
    /// `-if`: wait for input before generating.
    pub first: bool,
    /// `-mli`: input goes on until a line ends in `\`.
    pub multiline: bool,
    /// `--in-prefix-bos`: a BOS token before each input.
    pub prefix_bos: bool,
    /// `--in-prefix`, `--in-suffix` (escapes processed).
    pub prefix: String,
    pub suffix: String,
    /// Process escapes in what is typed (`-e`, on by default).
    pub escape: bool,
}

/// Where the selected tokens sit when the target re-runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// At 0..k-1, a fresh short prompt (GemFilter's reference code).
    #[default]
    Compact,
    /// Where they stood in the prompt, gaps and all (SpecPrefill); generation goes on after the
    /// prompt's last position.
    Original,
}
