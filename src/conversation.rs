//! Conversation mode (`-cnv`; llama-cli's default with a chat template on a terminal): many
//! questions about one document. The filter pass runs over the document once and its context
//! (the prefix model's layers 0..r holding the document's KV) stays alive. Each later turn
//! decodes only what follows the document (earlier questions and answers, the new question)
//! through those layers, scores the document's kept keys with the new question's queries, and
//! selects a fresh top-k for it; the full model answers from that selection plus the whole
//! conversation, which is always kept. Both models stay resident.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use crate::capture::{CaptureSpec, KSource, LayerCapture};
use crate::doc_state::{self, Identity};
use crate::engine::ffi::signal;
use crate::engine::session::CaptureSession;
use crate::engine::{prefix, Engine};
use crate::generate::{GenLimits, Sampling, Stdout, TokenSink};
use crate::notice;
use crate::pipeline::{respond, select_from, GemSettings, Job, Positions};
use crate::prompt::{self, Assembled, Exchange, PromptInput, Protect, Template};
use crate::run::RunSettings;
use crate::select;
use crate::settings::ModelSettings;

/// The answer's text to stdout, until Ctrl-C stops it.
struct TurnSink(Stdout);

impl TokenSink for TurnSink {
    fn text(&mut self, piece: &str) -> Result<bool> {
        if signal::interrupted() {
            return Ok(false);
        }
        self.0.text(piece)
    }
}

/// The `--json` record of one turn.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    pub turn: usize,
    pub question: String,
    pub answer: String,
    pub prompt_tokens: usize,
    /// Tokens of the document (selectable) and its token range in the prompt.
    pub context_range: [usize; 2],
    /// Tokens decoded through the filter layers this turn: the whole prompt on the first turn,
    /// only what follows the document afterwards.
    pub filter_tokens_decoded: usize,
    /// Tokens the full model answered from.
    pub selected_tokens: usize,
    /// Selected document positions as inclusive runs.
    pub selected_ranges: Vec<[usize; 2]>,
    pub filter_pass_s: f64,
    pub selection_s: f64,
    pub rerun_s: f64,
    pub first_token_s: f64,
    pub decode_tok_per_s: Option<f64>,
    pub generated_tokens: usize,
    /// Device memory in use while the answer was generated (both models, the document's
    /// filter state and the answer's context), where the backend reports it.
    pub device_mem_bytes: Option<u64>,
    /// Ctrl-C stopped this answer.
    pub interrupted: bool,
    /// The answer's tokens (for callers that continue the conversation in tokens).
    #[serde(skip)]
    pub answer_tokens: Vec<LlamaToken>,
}

/// What a turn needs from the run's (or `bench --turns`') settings.
pub struct TurnSettings<'s> {
    pub model: &'s ModelSettings,
    pub gem: &'s GemSettings,
    pub protect: Protect,
    pub sampling: &'s Sampling,
    pub limits: &'s GenLimits,
    pub prompt_cache: Option<&'s std::path::Path>,
}

impl<'s> TurnSettings<'s> {
    fn of(s: &'s RunSettings, gem: &'s GemSettings) -> Self {
        TurnSettings {
            model: &s.model,
            gem,
            protect: s.protect,
            sampling: &s.sampling,
            limits: &s.limits,
            prompt_cache: s.prompt_cache.as_deref(),
        }
    }
}

/// One document's conversation: the models and the document's kept filter state.
pub struct Conversation<'e> {
    filter: &'e Engine,
    full: Option<&'e Engine>,
    kept: Option<Kept<'e>>,
}

impl<'e> Conversation<'e> {
    /// `full` None: the full model is loaded for each answer.
    #[must_use]
    pub fn new(filter: &'e Engine, full: Option<&'e Engine>) -> Self {
        Conversation {
            filter,
            full,
            kept: None,
        }
    }

    /// The kept document's token count and the bytes its filter state holds: the live
    /// context's cells at `kv_bytes_per_cell` each, and the captured keys. None before a turn.
    #[must_use]
    pub fn kept_footprint(&self, kv_bytes_per_cell: u64) -> Option<(usize, u64)> {
        self.kept.as_ref().map(|k| {
            let keys: usize = k.keys.iter().map(Vec::len).sum();
            let bytes = u64::from(k.n_ctx) * kv_bytes_per_cell + keys as u64 * 4;
            (k.prefix.len(), bytes)
        })
    }

    /// One turn: filter state (first turn: the whole prompt; later: only what follows the
    /// document), selection, answer into `sink`.
    ///
    /// # Errors
    /// Engine failures or sink errors.
    pub fn turn(
        &mut self,
        s: &TurnSettings<'_>,
        asm: &Assembled,
        n_turn: usize,
        question: &str,
        sink: &mut dyn TokenSink,
    ) -> Result<TurnRecord> {
        let gem = s.gem;
        let t0 = Instant::now();
        let n = asm.tokens.len();
        let protected = asm.protected(s.protect);
        let Filtered {
            layers,
            decoded,
            secs: filter_s,
        } = filter_turn(s, self.filter, &mut self.kept, asm)?;
        let t_sel = Instant::now();
        let ends = if gem.spec.sentences {
            self.filter.sentence_ends(&asm.tokens)
        } else {
            Vec::new()
        };
        let indices = if n > gem.top_k {
            select_from(&layers, gem, &protected, &ends)?
        } else {
            (0..n).collect()
        };
        let selection_s = t_sel.elapsed().as_secs_f64();
        let tokens: Vec<LlamaToken> = indices.iter().map(|&i| asm.tokens[i]).collect();
        let job = Job {
            tokens: &asm.tokens,
            protected: &protected,
            gem: Some(gem.clone()),
            ctx: s.model.ctx.clone(),
            ctx_limit: s.model.ctx_limit(),
            ctx_fixed: s.model.ctx_size > 0,
            sampling: s.sampling.clone(),
            limits: s.limits.clone(),
            progress: false,
        };
        let t_rerun = Instant::now();
        let reloaded;
        let full = if let Some(f) = self.full {
            f
        } else {
            reloaded = Engine::load(&s.model.path, &s.model.load)?;
            &reloaded
        };
        signal::answering(true);
        let positions = (gem.positions == Positions::Original).then_some(indices.as_slice());
        let answered = respond(full, &job, &tokens, positions, n, t_rerun, sink);
        signal::answering(false);
        let (generated, rerun_s, device_mem_bytes) = answered?;
        let first_token_s = generated.first_token_s(t0);
        let decode_tok_per_s = generated.decode_tok_per_s();
        Ok(TurnRecord {
            turn: n_turn,
            question: question.to_owned(),
            answer: generated.text.clone(),
            prompt_tokens: n,
            context_range: [asm.context.start, asm.context.end],
            filter_tokens_decoded: decoded,
            selected_tokens: tokens.len(),
            selected_ranges: select::runs(&indices)
                .into_iter()
                .filter(|&(a, _)| asm.context.contains(&a))
                .map(|(a, b)| [a, b.min(asm.context.end.saturating_sub(1))])
                .collect(),
            filter_pass_s: filter_s,
            selection_s,
            rerun_s,
            first_token_s,
            decode_tok_per_s,
            generated_tokens: generated.n_tokens(),
            device_mem_bytes,
            interrupted: signal::interrupted(),
            answer_tokens: generated.tokens,
        })
    }
}

/// Longest question line read, in bytes; the rest of a longer line is skipped. Far more than
/// any context holds (a question longer than the context is refused anyway).
const MAX_LINE_BYTES: usize = 4 << 20;

/// Questions: `-p` first (if given), then one per line from standard input until EOF or
/// `/exit`; on a terminal each is asked for with llama-cli's `> ` prompt. Lines end at LF, CR
/// or CRLF; a line that is not UTF-8 or holds a NUL byte is refused in one line and the
/// conversation goes on.
struct Questions {
    first: Option<String>,
    tty: bool,
    input: Box<dyn std::io::BufRead>,
    /// The last line ended in CR: an LF right after it belongs to that line end.
    after_cr: bool,
    line_no: usize,
}

impl Questions {
    fn next(&mut self) -> Result<Option<String>> {
        if let Some(q) = self.first.take() {
            return Ok(Some(q));
        }
        loop {
            if self.tty {
                print!("\n> ");
                std::io::stdout().flush().ok();
            }
            let Some((bytes, cut)) = self
                .read_line()
                .context("cannot read a question from standard input")?
            else {
                return Ok(None);
            };
            self.line_no += 1;
            let n = self.line_no;
            let line = match String::from_utf8(bytes) {
                Ok(l) => l,
                Err(e) => {
                    notice!(
                        "input line {n} is not valid UTF-8 (first bad byte at offset {}): not asked",
                        e.utf8_error().valid_up_to()
                    );
                    continue;
                }
            };
            if let Some(at) = line.find('\0') {
                notice!("input line {n} holds a NUL byte (at offset {at}): not asked");
                continue;
            }
            if cut {
                notice!(
                    "input line {n} is longer than {} MiB: not asked",
                    MAX_LINE_BYTES >> 20
                );
                continue;
            }
            let q = line.trim();
            match q {
                "" => {}
                "/exit" | "/quit" | "/bye" => return Ok(None),
                _ => return Ok(Some(q.to_owned())),
            }
        }
    }

    /// The next line's bytes without its end (LF, CR or CRLF), and whether it was cut at
    /// [`MAX_LINE_BYTES`]; None at the end of input.
    fn read_line(&mut self) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        let mut line = Vec::new();
        let mut cut = false;
        let mut any = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(any.then_some((line, cut)));
            }
            if std::mem::take(&mut self.after_cr) && buf[0] == b'\n' {
                self.input.consume(1);
                continue;
            }
            any = true;
            let end = buf.iter().position(|&b| b == b'\n' || b == b'\r');
            let take = end.unwrap_or(buf.len());
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            cut |= take > room;
            line.extend_from_slice(&buf[..take.min(room)]);
            match end {
                Some(e) => {
                    self.after_cr = buf[e] == b'\r';
                    self.input.consume(e + 1);
                    return Ok(Some((line, cut)));
                }
                None => self.input.consume(take),
            }
        }
    }
}

/// The document's kept filter state: the live context and every captured layer's keys of the
/// tokens up to the end of the document.
struct Kept<'a> {
    session: CaptureSession<'a>,
    /// Prompt tokens up to the end of the document: every turn's prompt starts with these.
    prefix: Vec<LlamaToken>,
    /// Per captured layer, the keys of `prefix`.
    keys: Vec<Vec<f32>>,
    /// Tokens the live context has room for.
    n_ctx: u32,
}

/// The filter model (the prefix, when the filter layer is not the last) and the full model.
/// Both stay resident; where the full model does not fit beside the filter model it is left
/// out (None) and loaded for each answer, while the document's filter state stays.
///
/// # Errors
/// A model that cannot be loaded (the full one only when there is no separate filter model).
pub fn load_models(
    model: &ModelSettings,
    gem: &GemSettings,
) -> Result<(Option<Engine>, Option<Engine>)> {
    let n_layer = model.meta.block_count;
    let filter = if gem.prefix && gem.layer + 1 < n_layer {
        let path = prefix::prefix_model(&model.path, gem.layer + 1, n_layer, model.load.verbose)?;
        Some(Engine::load(&path, &model.load.for_filter())?)
    } else {
        None
    };
    let full = match Engine::load(&model.path, &model.load) {
        Ok(e) => Some(e),
        Err(e) if filter.is_some() => {
            notice!("{e:#}: the full model does not fit beside the filter model; loading it for each answer instead (the document's filter state stays)");
            None
        }
        Err(e) => return Err(e),
    };
    Ok((filter, full))
}

/// Conversation mode.
///
/// # Errors
/// Bad input or engine failures, as one message; a turn that fails ends the conversation.
pub fn run(s: &RunSettings) -> Result<()> {
    let Some(gem) = s.gem.as_ref().filter(|g| g.draft.is_none()) else {
        bail!("conversation mode needs GemFilter on the target itself (no --gem off, no --gem-draft); use -st for one turn");
    };
    if s.input.context.is_none() {
        bail!("conversation mode needs the document as -f FILE");
    }
    let t_load = Instant::now();
    let (filter, full) = load_models(&s.model, gem)?;
    let filter_engine = filter
        .as_ref()
        .or(full.as_ref())
        .context("no model loaded")?;
    notice!(
        "conversation: {} {} ({:.1} s to load{}); one question per line, /exit to end",
        s.model.meta.display_name(),
        if full.is_some() {
            format!("and its {}-layer filter model resident", gem.layer + 1)
        } else {
            format!(
                "reloaded per answer; its {}-layer filter model resident",
                gem.layer + 1
            )
        },
        t_load.elapsed().as_secs_f64(),
        filter_engine
            .device_mem_now()
            .map_or(String::new(), |b| format!(
                ", {:.2} GB of device memory",
                b as f64 / 1e9
            ))
    );
    let template =
        prompt::choose_template(&filter_engine.model, false, s.chat_template.as_deref())?;
    if matches!(template, Template::Raw) {
        bail!("conversation mode needs a chat template (the model has none: give --chat-template NAME, or use -st)");
    }
    signal::install();
    let stdin = std::io::stdin();
    let mut questions = Questions {
        first: s.input.question.clone().filter(|q| !q.trim().is_empty()),
        tty: stdin.is_terminal(),
        input: Box::new(stdin.lock()),
        after_cr: false,
        line_no: 0,
    };
    let mut history: Vec<Exchange> = Vec::new();
    // Turns answered, counting those whose exchanges were dropped to fit the context.
    let mut asked = 0;
    let mut conversation = Conversation::new(filter_engine, full.as_ref());
    let settings = TurnSettings::of(s, gem);
    while let Some(question) = questions.next()? {
        let Some(asm) = fit(s, &filter_engine.model, &template, &question, &mut history)? else {
            continue;
        };
        let mut sink = TurnSink(Stdout { enabled: !s.json });
        asked += 1;
        let rec = conversation.turn(&settings, &asm, asked, &question, &mut sink)?;
        history.push(Exchange {
            question,
            answer: rec.answer.trim().to_owned(),
        });
        if s.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &rec)?;
            writeln!(out)?;
        } else {
            println!();
            notice!(
                "turn {}{}: filter layers decoded {} tokens, selected {} of {} (document {} tokens): filter {:.2} s, selection {:.3} s, re-run {:.2} s, first token {:.2} s",
                rec.turn,
                if rec.interrupted { " (stopped by Ctrl-C)" } else { "" },
                rec.filter_tokens_decoded,
                rec.selected_tokens,
                rec.prompt_tokens,
                rec.context_range[1] - rec.context_range[0],
                rec.filter_pass_s,
                rec.selection_s,
                rec.rerun_s,
                rec.first_token_s
            );
        }
    }
    Ok(())
}

/// The prompt for `question` within the context (`-c`, else the model's): when the conversation
/// has outgrown it, its oldest exchanges are dropped, as llama-cli's context shift drops the
/// oldest turns, but the document stays (it is what the conversation is about), until the
/// prompt fits, said in one line. A question that does not fit even with the document alone
/// is refused in one line and the conversation goes on as it was; a document that leaves no
/// room for any question ends it.
///
/// # Errors
/// A prompt that cannot be assembled, or a document that fills the context.
fn fit(
    s: &RunSettings,
    model: &llama_cpp_2::model::LlamaModel,
    template: &Template,
    question: &str,
    history: &mut Vec<Exchange>,
) -> Result<Option<Assembled>> {
    let room = s.model.ctx_limit() as usize;
    let assemble = |history: &[Exchange]| {
        let input = PromptInput {
            question: Some(question.to_owned()),
            history: history.to_vec(),
            ..s.input.clone()
        };
        prompt::assemble_with(model, &input, template, s.chat)
    };
    let asm = assemble(history)?;
    // At least one token of room for the answer.
    if asm.tokens.len() < room {
        return Ok(Some(asm));
    }
    let alone = if history.is_empty() {
        asm
    } else {
        assemble(&[])?
    };
    if alone.tokens.len() >= room {
        if alone.context.end + 1 >= room {
            bail!(
                "the document takes {} tokens of the context of {room}: no question fits; give a larger -c",
                alone.context.end
            );
        }
        notice!(
            "this question makes a prompt of {} tokens with the document, over the context of {room} (-c): not asked; ask a shorter one",
            alone.tokens.len()
        );
        return Ok(None);
    }
    let mut dropped = 0;
    loop {
        history.remove(0);
        dropped += 1;
        let asm = if history.is_empty() {
            alone.clone()
        } else {
            assemble(history)?
        };
        if asm.tokens.len() < room {
            notice!(
                "the conversation outgrew the context of {room} tokens: dropped its oldest {dropped} exchange{} (the document stays)",
                if dropped == 1 { "" } else { "s" }
            );
            return Ok(Some(asm));
        }
    }
}

/// The document's filter state from `--prompt-cache`, if it is there and belongs to this model
/// and document; a mismatch or damage is said in one line and the state is rebuilt.
fn restore<'a>(
    s: &TurnSettings<'_>,
    filter: &'a Engine,
    path: &std::path::Path,
    id: &Identity,
    prefix_tokens: &[LlamaToken],
    n: usize,
) -> Result<Option<Kept<'a>>> {
    if !doc_state::present(path)? {
        return Ok(None);
    }
    let n_ctx = context_size(s, n);
    let mut session = CaptureSession::new(filter, &s.model.ctx, n_ctx)?;
    match doc_state::load(path, &mut session, id, prefix_tokens) {
        Ok(Some(keys)) => {
            notice!(
                "loaded the document's filter state from {} ({} tokens): no filter pass over the document",
                crate::sanitize::quote(&path.display().to_string()),
                prefix_tokens.len()
            );
            Ok(Some(Kept {
                session,
                prefix: prefix_tokens.to_vec(),
                keys,
                n_ctx,
            }))
        }
        Ok(None) => Ok(None),
        Err(e) if doc_state::is_refusal(&e) => Err(e),
        Err(e) => {
            notice!(
                "the prompt cache {} {e:#}: rebuilding it",
                crate::sanitize::quote(&path.display().to_string())
            );
            Ok(None)
        }
    }
}

/// Room in the filter context: the prompt and as much again for later turns (at least 4096),
/// within the model's context.
fn context_size(s: &TurnSettings<'_>, n: usize) -> u32 {
    u32::try_from(n + n.max(4096))
        .unwrap_or(u32::MAX)
        .min(s.model.ctx_limit())
}

/// What one turn's pass through the filter layers captured.
struct Filtered {
    /// Per captured layer: this turn's queries against the keys of the whole prompt.
    layers: Vec<LayerCapture>,
    /// Tokens decoded through the filter layers.
    decoded: usize,
    secs: f64,
}

/// The filter layers' part of a turn: with the document's state kept (from an earlier turn or
/// `--prompt-cache`), decode only what follows the document; otherwise filter the whole prompt
/// and keep the document's state (saving it when asked).
fn filter_turn<'a>(
    s: &TurnSettings<'_>,
    filter: &'a Engine,
    kept: &mut Option<Kept<'a>>,
    asm: &Assembled,
) -> Result<Filtered> {
    let gem = s.gem;
    let n = asm.tokens.len();
    let doc_end = asm.context.end;
    let spec = CaptureSpec {
        layers: gem.spec.capture_layers(gem.layer),
        n_tokens: 0,
        q_window: gem.spec.queries_needed(),
        stop_after_last: true,
        trace_layers: false,
        k_source: KSource::Ubatch,
    };
    if kept
        .as_ref()
        .is_some_and(|k| asm.tokens.get(..doc_end) != Some(k.prefix.as_slice()))
    {
        notice!("the template rendered the document differently this turn: filtering it again");
        *kept = None;
    }
    if kept.as_ref().is_some_and(|k| (k.n_ctx as usize) < n) {
        notice!("the conversation outgrew the filter context: filtering the document again with more room");
        *kept = None;
    }
    let prefix_tokens = &asm.tokens[..doc_end];
    let id = match s.prompt_cache {
        Some(_) => Some(Identity::of(&s.model.path, &spec.layers, prefix_tokens)?),
        None => None,
    };
    if let (None, Some(path), Some(id)) = (kept.as_ref(), s.prompt_cache, &id) {
        *kept = restore(s, filter, path, id, prefix_tokens, n)?;
    }
    if let Some(k) = kept {
        let suffix = &asm.tokens[doc_end..];
        let d = k.session.decode(
            suffix,
            doc_end,
            CaptureSpec {
                q_window: spec.q_window.min(suffix.len()),
                ..spec
            },
        )?;
        k.session.forget_from(doc_end)?;
        let layers = d
            .capture
            .layers
            .iter()
            .zip(&k.keys)
            .map(|(lc, doc)| lc.after(doc))
            .collect();
        return Ok(Filtered {
            layers,
            decoded: suffix.len(),
            secs: d.secs,
        });
    }
    let n_ctx = context_size(s, n);
    let mut session = CaptureSession::new(filter, &s.model.ctx, n_ctx)?;
    let d = session.decode(
        &asm.tokens,
        0,
        CaptureSpec {
            q_window: spec.q_window.min(n),
            ..spec
        },
    )?;
    session.forget_from(doc_end)?;
    let keys: Vec<Vec<f32>> = d
        .capture
        .layers
        .iter()
        .map(|lc| lc.first_keys(doc_end).to_vec())
        .collect();
    if let (Some(path), Some(id)) = (s.prompt_cache, &id) {
        match doc_state::save(path, &session, id, prefix_tokens, &keys) {
            Ok(()) => notice!(
                "saved the document's filter state to {} ({doc_end} tokens)",
                crate::sanitize::quote(&path.display().to_string())
            ),
            Err(e) => notice!("{e:#}; the conversation goes on without it"),
        }
    }
    *kept = Some(Kept {
        session,
        prefix: prefix_tokens.to_vec(),
        keys,
        n_ctx,
    });
    Ok(Filtered {
        layers: d.capture.layers,
        decoded: n,
        secs: d.secs,
    })
}

#[cfg(test)]
mod tests {
    use super::Questions;

    fn questions(input: &[u8]) -> Questions {
        Questions {
            first: None,
            tty: false,
            input: Box::new(std::io::Cursor::new(input.to_vec())),
            after_cr: false,
            line_no: 0,
        }
    }

    #[test]
    fn lines_end_at_lf_cr_or_crlf_and_bad_lines_are_skipped() {
        let mut q = questions(b"one\rtwo\r\nthree\n\r\nbad \xff\nnul \0\nfour\r/exit\nnever");
        let mut got = Vec::new();
        while let Some(l) = q.next().unwrap() {
            got.push(l);
        }
        assert_eq!(got, ["one", "two", "three", "four"]);
    }
}
