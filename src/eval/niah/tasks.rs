//! RULER-style task cells for `gemfilter niah --tasks`: a sample of a task at a length, built
//! into a prompt (the model's chat template with `--style chat`, raw otherwise, RULER's answer
//! prefix appended), with the token spans of what the answer needs, for selection recall.

use std::ops::Range;

use anyhow::{bail, Result};

use super::grid::{Built, SplitMix, Style};
use crate::engine::Engine;
use crate::eval::ruler::{self, Sample, Task};
use crate::eval::tokens::{token_offsets, tokens_covering};
use crate::prompt::{self, PromptInput, Template};

/// One task cell: which sample of which task, at which prompt length.
#[derive(Debug, Clone)]
pub struct TaskCell {
    pub task: Task,
    pub length: usize,
    pub depth: u32,
    pub seed: u64,
}

impl TaskCell {
    /// Identity in records (what reruns skip).
    #[must_use]
    pub fn id(&self) -> String {
        format!(
            "{}|l{}|d{}|t{}",
            self.task, self.length, self.depth, self.seed
        )
    }
}

/// `samples` cells per task and length; sample i sits at depth `depths[i % depths.len()]` with
/// its own seed, so a grid is reproducible from `seed`.
#[must_use]
pub fn task_cells(
    tasks: &[Task],
    lengths: &[usize],
    depths: &[u32],
    samples: usize,
    seed: u64,
) -> Vec<TaskCell> {
    let mut out = Vec::new();
    for &length in lengths {
        for &task in tasks {
            let mut rng = SplitMix(seed ^ (length as u64).rotate_left(17));
            for i in 0..samples {
                out.push(TaskCell {
                    task,
                    length,
                    depth: depths[i % depths.len().max(1)],
                    seed: rng.next_u64(),
                });
            }
        }
    }
    out
}

/// A built task prompt and its sample (answers, scoring rule).
pub struct BuiltTask {
    pub built: Built,
    pub sample: Sample,
}

fn input(sample_context: String, question: String) -> PromptInput {
    PromptInput {
        system: None,
        context: Some(sample_context),
        question: Some(question),
        history: Vec::new(),
    }
}

/// Generate the cell's sample to fit `cell.length` tokens through the template, assemble it,
/// append RULER's answer prefix and locate the spans the answer needs.
///
/// # Errors
/// A length too short for the task, a chat style without a template, or tokenization failures.
pub fn build(
    vocab: &Engine,
    haystack: &str,
    cell: &TaskCell,
    style: Style,
    chat_template: Option<&str>,
) -> Result<BuiltTask> {
    let template = if style == Style::Chat {
        let t = prompt::choose_template(&vocab.model, false, chat_template)?;
        if matches!(t, Template::Raw) {
            bail!("--style chat needs a model with a chat template (or --chat-template NAME)");
        }
        t
    } else {
        Template::Raw
    };
    let v = vocab.model.vocab();
    let count = |s: &str| v.tokenize(s.as_bytes(), false, false).len();
    // What the template and the -f/-p joint add around the sample's own text.
    let overhead = prompt::assemble(&vocab.model, &input("x".into(), "x".into()), &template)?
        .tokens
        .len();
    let budget = cell.length.saturating_sub(overhead + 4);
    let sample = ruler::generate(cell.task, haystack, budget, cell.depth, cell.seed, &count)?;
    let mut asm = prompt::assemble(
        &vocab.model,
        &input(sample.context.clone(), sample.question.clone()),
        &template,
    )?;
    // RULER puts the answer prefix after the assistant header; it is not part of the document,
    // so it lies outside `asm.context` and is kept with the question.
    let prefix = sample.answer_prefix.trim_start();
    if !prefix.is_empty() {
        let sep = if asm.templated { "" } else { " " };
        asm.tokens
            .extend(v.tokenize(format!("{sep}{prefix}").as_bytes(), false, false));
        asm.text.push_str(sep);
        asm.text.push_str(prefix);
    }
    let offsets = token_offsets(vocab, &asm.tokens[asm.context.clone()]);
    let span = |r: &Range<usize>| tokens_covering(&offsets, r.clone(), asm.context.start);
    let targets: Vec<Range<usize>> = sample.needles.iter().map(span).collect();
    let all_targets = targets
        .iter()
        .cloned()
        .chain(sample.distractors.iter().map(span))
        .collect();
    Ok(BuiltTask {
        built: Built {
            asm,
            targets,
            all_targets,
            question: sample.question.clone(),
        },
        sample,
    })
}
