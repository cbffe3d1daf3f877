//! The default mode: one prompt in, one answer out (streamed, or one JSON record).
//! Read the prompt → assemble it → answer → emit.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::engine::Engine;
use crate::generate::{Stdout, TokenSink};
use crate::notice;
use crate::output_file::OutputFile;
use crate::pipeline::{answer, Job, Models, Outcome};
use crate::prompt::{self, Assembled};
use crate::report::{Record, RecordKind};
use crate::select;
use crate::selector;
pub use crate::settings::RunSettings;

/// The prompt, tokenized through the template, with the vocab it was tokenized with.
pub(crate) struct Prepared {
    vocab: Engine,
    pub(crate) assembled: Assembled,
    pub(crate) protected: Vec<bool>,
    secs: f64,
}

pub(crate) fn prepare(s: &RunSettings) -> Result<Prepared> {
    let t0 = Instant::now();
    let vocab = Engine::load_vocab(&s.model.path, &s.model.load)?;
    let template =
        prompt::choose_template(&vocab.model, s.no_conversation, s.chat_template.as_deref())?;
    let assembled = prompt::assemble_with(&vocab.model, &s.input, &template, s.chat)?;
    // A vocab-only load has no hparams: the context limit comes from -c or the GGUF header.
    let limit = s.model.ctx_limit();
    let n = assembled.tokens.len();
    if n as u64 >= u64::from(limit) {
        bail!(
            "the prompt is {n} tokens, more than the {} of {limit} tokens allows",
            if s.model.ctx_size > 0 {
                "context size (-c)"
            } else {
                "model's training context"
            }
        );
    }
    let protected = assembled.protected(s.protect);
    // A prompt that will be filtered must be at least as long as the pooling kernel (shorter
    // ones are answered whole, whatever the kernel).
    if let Some(g) = &s.gem {
        selector::check_prompt(g, n, protected.iter().filter(|&&p| p).count())?;
    }
    Ok(Prepared {
        vocab,
        assembled,
        protected,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// The default mode.
///
/// # Errors
/// Any bad input or engine failure, as one message.
pub fn run(s: &RunSettings) -> Result<()> {
    let p = prepare(s)?;
    let mut output = OutputFile::open(s.output_file.as_deref())?;
    if s.echo_prompt {
        let _ = Stdout { enabled: true }.text(&p.assembled.text)?;
    }
    crate::log_file::prompt(&p.assembled.text);
    output.user(&crate::output_file::first_message(&s.input))?;
    let job = Job {
        tokens: &p.assembled.tokens,
        protected: &p.protected,
        gem: s.gem.clone(),
        ctx: s.model.ctx.clone(),
        ctx_limit: s.model.ctx_limit(),
        ctx_fixed: s.model.ctx_size > 0,
        sampling: s.sampling.clone(),
        limits: s.limits.clone(),
        progress: !s.json,
    };
    let mut sink = Stdout { enabled: !s.json };
    let mut models = Models::new(&s.model, s.gem.as_ref());
    // A template's thinking block is shown as llama-cli shows it (crate::reasoning).
    let mut out = match crate::reasoning::AnswerView::for_run(&p.vocab.model, s)? {
        Some(view) if !s.json => {
            let mut shown = crate::reasoning::ReasoningSink::new(&mut sink, view);
            let out = answer(&mut models, &job, &mut shown)?;
            shown.finish()?;
            out
        }
        _ => answer(&mut models, &job, &mut sink)?,
    };
    output.assistant(&out.generated.text)?;
    out.timings.load_s = p.secs + out.load_secs;
    emit(s, &p, &out, &mut sink)
}

fn emit(s: &RunSettings, p: &Prepared, out: &Outcome, sink: &mut Stdout) -> Result<()> {
    if let Some(why) = &out.skipped {
        notice!(
            "{why}{}",
            if s.input.context.is_none() {
                " (pass the long context with -f; -p text is always kept)"
            } else {
                ""
            }
        );
    }
    if s.show_selection {
        show_selection(&p.vocab, &p.assembled, out);
    }
    if s.model.load.verbose {
        if let Some(sel) = &out.selected {
            notice!(
                "filter pass reached layer {:?}; {} ubatches stopped early",
                sel.max_layer_reached,
                sel.early_exits
            );
        }
    }
    finish(s, &record(s, p, out), sink)
}

/// The end of one answer: the `--json` record on stdout, or the answer's last newline and, with
/// `--perf`, its timings.
///
/// # Errors
/// Writing to stdout fails.
pub(crate) fn finish(s: &RunSettings, record: &Record, sink: &mut Stdout) -> Result<()> {
    if s.json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, record)?;
        writeln!(stdout)?;
    } else {
        let _ = sink.text("\n")?;
        if s.perf {
            print_perf(record);
        }
    }
    Ok(())
}

fn record(s: &RunSettings, p: &Prepared, out: &Outcome) -> Record {
    let gem = s.gem.as_ref();
    let base = Record {
        question: s.input.question.clone(),
        prompt_tokens: p.assembled.tokens.len(),
        protected_tokens: p.protected.iter().filter(|&&x| x).count(),
        context_range: [p.assembled.context.start, p.assembled.context.end],
        ..Record::answered(RecordKind::Run, &s.model, gem, s.protect, &out.generated)
    };
    out.record(base, gem)
}

fn show_selection(engine: &Engine, assembled: &Assembled, out: &Outcome) {
    let Some(s) = &out.selected else { return };
    let vocab = engine.model.vocab();
    let pieces: Vec<String> = select::runs(&s.indices)
        .into_iter()
        .map(|(a, b)| {
            String::from_utf8_lossy(&vocab.detokenize(&assembled.tokens[a..=b], false, true))
                .into_owned()
        })
        .collect();
    eprintln!(
        "--- selected {} of {} tokens ---\n{}\n--- end of selection ---",
        s.indices.len(),
        assembled.tokens.len(),
        pieces.join(" [...] ")
    );
}

pub(crate) fn print_perf(r: &Record) {
    let t = &r.timings;
    let decode = t
        .decode_tok_per_s
        .map_or("n/a".into(), |v| format!("{v:.1} tok/s"));
    // The standard path (--gem off, or the filter skipped) has no filter pass or selection:
    // its one prompt pass is a prefill of the whole prompt.
    if !r.gem || r.filter_skipped.is_some() {
        eprintln!(
            "gemfilter: load {:.2} s | prefill {:.3} s ({} tokens) | first token {:.3} s | decode {decode}",
            t.load_s, t.rerun_s, r.selected_tokens, t.first_token_s,
        );
        return;
    }
    eprintln!(
        "gemfilter: load {:.2} s | filter pass {:.3} s | selection {:.4} s | re-run {:.3} s ({} tokens) | first token {:.3} s | decode {decode} | prompt {} tokens",
        t.load_s,
        t.filter_pass_s,
        t.selection_s,
        t.rerun_s,
        r.selected_tokens,
        t.first_token_s,
        r.prompt_tokens
    );
}
