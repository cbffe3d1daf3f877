//! One answer with `--prompt-cache` (llama-completion's session file, `-no-cnv` or `-st`): a
//! single conversation turn, so the document's filter state is loaded and saved as in
//! conversation mode (`--prompt-cache-ro`, `--prompt-cache-all`: [`crate::doc_state::Save`]).
//! Its output is the single answer's: streamed text (the raw prompt first with `-no-cnv`), or
//! one `run` record with `--json`.

use anyhow::{bail, Context, Result};

use super::{load_models, Conversation, TurnSettings};
use crate::generate::{Stdout, TokenSink};
use crate::notice;
use crate::output_file::{self, OutputFile};
use crate::prompt;
use crate::report::RecordKind;
use crate::settings::RunSettings;

/// The single answer with the prompt cache.
///
/// # Errors
/// Bad input or engine failures, as one message.
pub fn run(s: &RunSettings) -> Result<()> {
    let Some(gem) = s.gem.as_ref().filter(|g| g.draft.is_none()) else {
        bail!("--prompt-cache keeps GemFilter's filter state: it needs GemFilter on the target (no --gem off, no --gem-draft)");
    };
    let (filter, full) = load_models(&s.model, gem)?;
    let engine = filter
        .as_ref()
        .or(full.as_ref())
        .context("no model loaded")?;
    let template =
        prompt::choose_template(&engine.model, s.no_conversation, s.chat_template.as_deref())?;
    let asm = prompt::assemble_with(&engine.model, &s.input, &template, s.chat)?;
    let limit = s.model.ctx_limit() as usize;
    if asm.tokens.len() >= limit {
        bail!(
            "the prompt is {} tokens, more than the context of {limit} tokens allows",
            asm.tokens.len()
        );
    }
    let mut output = OutputFile::open(s.output_file.as_deref())?;
    if s.echo_prompt {
        let _ = Stdout { enabled: true }.text(&asm.text)?;
    }
    crate::log_file::prompt(&asm.text);
    output.user(&output_file::first_message(&s.input))?;
    let settings = TurnSettings::of(s, gem);
    let mut conversation = Conversation::new(engine, full.as_ref()).saving(s.cache_save);
    let question = s.input.question.clone().unwrap_or_default();
    let mut sink = Stdout { enabled: !s.json };
    let turn = conversation.turn(&settings, &asm, 1, &question, &mut sink)?;
    output.assistant(&turn.answer)?;
    if let Some(why) = &turn.filter_skipped {
        notice!("{why}");
    }
    let mut record = turn.record(&settings);
    record.kind = RecordKind::Run;
    record.turn = None;
    record.question.clone_from(&s.input.question);
    crate::run::finish(s, &record, &mut sink)
}
