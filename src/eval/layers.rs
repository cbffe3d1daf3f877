//! `gemfilter layers`: selection recall of one needle at every layer, for one prompt (one
//! capturing prefill, no generation). How filter layers are explored by hand.

use anyhow::Result;

use super::curves::recall_curve;
use super::tokens::{token_offsets, tokens_covering};
use crate::engine::Engine;
use crate::prompt::{self, PromptInput, Protect};
use crate::scoring::ScoringSpec;
use crate::settings::ModelSettings;

/// What `gemfilter layers` measures, resolved from its flags.
#[derive(Debug, Clone)]
pub struct LayersSettings {
    pub model: ModelSettings,
    /// The prompt; its `-f` context holds `needle`.
    pub input: PromptInput,
    pub needle: String,
    pub no_conversation: bool,
    pub chat_template: Option<String>,
    pub layers: Vec<usize>,
    pub scorings: Vec<ScoringSpec>,
    pub protect: Protect,
    pub top_k: usize,
}

/// # Errors
/// Bad input or engine failures.
pub fn run(s: &LayersSettings) -> Result<()> {
    let context = s.input.context.as_deref().unwrap_or("");
    // An empty needle is found everywhere and covers no token: recall would be a vacuous 1.
    if s.needle.trim().is_empty() {
        anyhow::bail!("--needle is empty: give the text hidden in the -f file");
    }
    let Some(needle_at) = context.find(&s.needle) else {
        anyhow::bail!("the --needle text is not in the -f file");
    };
    let engine = Engine::load(&s.model.path, &s.model.load)?;
    let template =
        prompt::choose_template(&engine.model, s.no_conversation, s.chat_template.as_deref())?;
    let asm = prompt::assemble(&engine.model, &s.input, &template)?;
    let offsets = token_offsets(&engine, &asm.tokens[asm.context.clone()]);
    let target = tokens_covering(
        &offsets,
        needle_at..needle_at + s.needle.len(),
        asm.context.start,
    );
    let protected = asm.protected(s.protect);
    let curve = recall_curve(
        &engine,
        &asm.tokens,
        &protected,
        target.clone(),
        &s.layers,
        &s.scorings,
        s.top_k,
        &s.model.ctx,
    )?;
    let shown = engine
        .model
        .vocab()
        .detokenize(&asm.tokens[target.clone()], false, false);
    eprintln!(
        "prompt {} tokens, needle tokens {:?} = {:?}, k {}",
        asm.tokens.len(),
        target,
        String::from_utf8_lossy(&shown),
        s.top_k
    );
    eprintln!(
        "{:>5} {:>24} {:>7} {:>9}",
        "layer", "scoring", "recall", "best rank"
    );
    for c in &curve {
        eprintln!(
            "{:>5} {:>24} {:>7.3} {:>9}",
            c.layer,
            c.scoring.to_string(),
            c.recall,
            c.best_rank
        );
    }
    println!("{}", serde_json::to_string(&curve)?);
    Ok(())
}
