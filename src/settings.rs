//! What every mode runs on, built once from the command line by `cli::resolve`: typed,
//! validated, with the model's GGUF header already read. Nothing below `cli` parses flags.

use std::path::PathBuf;

use crate::engine::{ContextOptions, LoadOptions};
use crate::gguf_info::ModelMeta;

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

/// Where the selected tokens sit when the target re-runs them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// At 0..k-1, a fresh short prompt (GemFilter's reference code).
    #[default]
    Compact,
    /// Where they stood in the prompt, gaps and all (SpecPrefill); generation goes on after the
    /// prompt's last position.
    Original,
}
