//! Inference, on its own OS threads (one per slot), never on the async runtime: each worker
//! takes a request from the queue, assembles the prompt, answers it through the conversation
//! mode's path (the document's filter state kept in the server's shared document cache) or, for a short prompt
//! or with GemFilter off, from the whole prompt, and streams text back through the request's
//! channel. A closed channel (the client left) stops generation at the next token.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::error::ApiError;
use super::openai::{Finished, Request};
use super::slot_files;
use super::Shared;
use crate::conversation::TurnSettings;
use crate::engine::Engine;
use crate::generate::{GenLimits, StopReason, TokenSink};
use crate::notice;
use crate::pipeline::{respond, GemSettings, Job};
use crate::prompt::{self, Assembled, Template};
use crate::report::{Record, RecordKind, RequestRecord, Timings};
use crate::selector;

/// What a worker sends back for one request: `Started` (or `Failed`) first, then text, then
/// `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    Started,
    Text(String),
    Done(Box<Finished>),
    Failed(ApiError),
}

/// One queued request.
#[derive(Debug)]
pub struct Task {
    pub id: u64,
    pub req: Request,
    pub events: UnboundedSender<Event>,
    pub queued: Instant,
}

/// Streams the answer into the request's channel, holding back text that may be the start of
/// a stop string, and ending at a stop string (left out of the answer, as OpenAI does) or when
/// the client has gone.
struct ChannelSink<'a> {
    tx: &'a UnboundedSender<Event>,
    stops: &'a [String],
    held: String,
    sent: String,
    stopped_by: Option<String>,
    gone: bool,
}

impl<'a> ChannelSink<'a> {
    fn new(tx: &'a UnboundedSender<Event>, stops: &'a [String]) -> Self {
        Self {
            tx,
            stops,
            held: String::new(),
            sent: String::new(),
            stopped_by: None,
            gone: false,
        }
    }

    fn send(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.sent.push_str(text);
        if self.tx.send(Event::Text(text.to_owned())).is_err() {
            self.gone = true;
        }
    }

    /// Send what is still held (generation ended without a stop string).
    fn finish(&mut self) {
        if self.stopped_by.is_none() {
            let rest = std::mem::take(&mut self.held);
            self.send(&rest);
        }
    }
}

/// The earliest stop string in `text`: (byte offset, the string).
fn find_stop<'s>(text: &str, stops: &'s [String]) -> Option<(usize, &'s String)> {
    stops
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|&(at, _)| at)
}

/// Bytes at the end of `text` that could begin a stop string (held back until the next piece).
fn partial_stop(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| {
            (1..s.len())
                .rev()
                .filter(|&n| s.is_char_boundary(n) && text.ends_with(&s[..n]))
                .take(1)
        })
        .max()
        .unwrap_or(0)
}

impl TokenSink for ChannelSink<'_> {
    fn text(&mut self, piece: &str) -> Result<bool> {
        if self.stopped_by.is_some() || self.gone || self.tx.is_closed() {
            self.gone |= self.tx.is_closed();
            return Ok(false);
        }
        self.held.push_str(piece);
        if let Some((at, s)) = find_stop(&self.held, self.stops) {
            let before = self.held[..at].to_owned();
            self.send(&before);
            self.held.clear();
            self.stopped_by = Some(s.clone());
            return Ok(false);
        }
        let keep = partial_stop(&self.held, self.stops);
        let ready: String = self.held.drain(..self.held.len() - keep).collect();
        self.send(&ready);
        Ok(!self.gone)
    }
}

/// The engines a worker answers with (shared by every worker; each makes its own contexts).
#[derive(Clone, Copy)]
pub struct Engines<'e> {
    /// Runs the filter pass (the prefix model, or the full one).
    pub filter: &'e Engine,
    pub full: &'e Engine,
}

/// One slot's loop: until the queue closes.
pub fn run(slot: usize, shared: &Arc<Shared>, engines: Engines<'_>, queue: &Mutex<Receiver<Task>>) {
    let state = &shared.slots[slot];
    loop {
        let task = loop {
            if state.erase.swap(false, Relaxed) {
                if let Ok(mut docs) = shared.docs.lock() {
                    docs.clear_owner(slot);
                }
                publish(shared);
            }
            // Waits in short steps so that an erase is done while the slot is idle.
            let Ok(rx) = queue.lock() else { return };
            match rx.recv_timeout(IDLE_CHECK) {
                Ok(t) => break t,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        shared.metrics.deferred.fetch_sub(1, Relaxed);
        if task.events.is_closed() {
            shared.metrics.cancelled.fetch_add(1, Relaxed);
            continue;
        }
        state.busy.store(true, Relaxed);
        state.task.store(task.id, Relaxed);
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| answer(shared, engines, slot, &task)))
                .unwrap_or_else(|_| Err(ApiError::internal("the answer failed inside the engine")));
        let event = match outcome {
            Ok(f) => Event::Done(Box::new(f)),
            Err(e) => {
                shared.metrics.errors.fetch_add(1, Relaxed);
                Event::Failed(e)
            }
        };
        if task.events.send(event).is_err() {
            shared.metrics.cancelled.fetch_add(1, Relaxed);
        }
        publish(shared);
        state.done.fetch_add(1, Relaxed);
        state.busy.store(false, Relaxed);
    }
}

/// How often an idle slot looks for an erase.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// What `/slots` and `/metrics` show of a slot's kept documents.
fn publish(shared: &Shared) {
    let Ok(docs) = shared.docs.lock() else { return };
    for (slot, state) in shared.slots.iter().enumerate() {
        let (n, bytes, tokens) = docs.owned_by(slot);
        state.docs.store(n as u64, Relaxed);
        state.doc_bytes.store(bytes, Relaxed);
        state.doc_tokens.store(tokens as u64, Relaxed);
    }
}

/// The GemFilter settings for this request, or None to answer from the whole prompt.
fn gem_for(shared: &Shared, req: &Request) -> Result<Option<GemSettings>, ApiError> {
    let g = &req.gem;
    if g.off == Some(true) {
        return Ok(None);
    }
    let Some(mut gem) = shared.settings.gem.clone() else {
        if g.off == Some(false) || g.top_k.is_some() || g.min_tokens.is_some() {
            return Err(ApiError::bad(
                "GemFilter is off on this server (started with --gem off)",
            ));
        }
        return Ok(None);
    };
    if let Some(k) = g.top_k {
        gem.top_k = k;
    }
    if let Some(m) = g.min_tokens {
        gem.min_tokens = m;
    }
    Ok(Some(gem))
}

fn internal(e: &anyhow::Error) -> ApiError {
    ApiError::internal(format!("{e:#}"))
}

/// What GemFilter did for one answer, beyond its record.
struct Kept {
    filtered: bool,
    cached: bool,
    /// Read back from `--slot-save-path` (not in this slot's memory).
    from_disk: bool,
}

fn answer(
    shared: &Shared,
    engines: Engines<'_>,
    slot: usize,
    task: &Task,
) -> Result<Finished, ApiError> {
    let s = &shared.settings;
    let req = &task.req;
    let t0 = Instant::now();
    let template = if req.templated {
        shared.template.clone()
    } else {
        Template::Raw
    };
    let asm = prompt::assemble(&engines.full.model, &req.input, &template)
        .map_err(|e| ApiError::bad(format!("{e:#}")))?;
    let n = asm.tokens.len();
    let limit = s.model.ctx_limit() as usize;
    if n >= limit {
        return Err(ApiError::bad(format!(
            "the prompt is {n} tokens, more than the context size of {limit} tokens allows"
        )));
    }
    // `--log-prompts-dir`: every prompt the model is given, as llama-server writes them.
    crate::log_file::prompt(&asm.text);
    let gem = gem_for(shared, req)?;
    if req.sampling.grammar.is_some() {
        // A grammar llama.cpp cannot parse is the request's fault: 400 before any answer.
        req.sampling
            .chain(&engines.full.model, s.model.ctx_limit())
            .map_err(|e| ApiError::bad(format!("\"grammar\": {e:#}").replace("--grammar: ", "")))?;
    }
    let protected = asm.protected(s.protect);
    let n_protected = protected.iter().filter(|&&p| p).count();
    let filter = match &gem {
        Some(_) if asm.context.is_empty() => Err("the prompt has no document to filter".to_owned()),
        // When to filter is the selector's rule, as in every mode.
        Some(g) => {
            selector::check_prompt(g, n, n_protected)
                .map_err(|e| ApiError::bad(format!("{e:#}")))?;
            selector::skip(g, n, n_protected).map_or(Ok(g), Err)
        }
        None => Err("GemFilter is off for this request".to_owned()),
    };
    let _ = task.events.send(Event::Started);
    let limits = GenLimits {
        n_predict: req.n_predict,
        ignore_eos: false,
        reverse_prompts: Vec::new(),
        special: false,
        shift: None,
    };
    let mut sink = ChannelSink::new(&task.events, &req.stop);
    let mut a = match filter {
        Ok(g) => filtered(shared, slot, &asm, g, req, &limits, &mut sink)?,
        Err(why) => whole(
            engines.full,
            s,
            &asm,
            &protected,
            req,
            &limits,
            t0,
            &mut sink,
            gem.as_ref().map(|g| (g, why)),
        )?,
    };

    sink.finish();
    let m = &shared.metrics;
    m.prompt_tokens.fetch_add(n as u64, Relaxed);
    m.predicted_tokens
        .fetch_add(a.generated_tokens as u64, Relaxed);
    m.kept_tokens.fetch_add(a.n_rerun as u64, Relaxed);
    m.prompt_us.fetch_add(micros(a.first_token_s), Relaxed);
    m.predicted_us.fetch_add(micros(a.decode_s), Relaxed);
    let finish = match (&sink.stopped_by, a.stop) {
        (Some(_), _) | (None, StopReason::EndOfGeneration | StopReason::ReversePrompt) => "stop",
        _ => "length",
    };
    let queue_s = t0.duration_since(task.queued).as_secs_f64();
    // llama-server counts the end-of-generation token among the predicted ones.
    let eog = sink.stopped_by.is_none() && a.stop == StopReason::EndOfGeneration;
    log_timings(slot, task.id, n, &a, queue_s);
    a.record.answer.clone_from(&sink.sent);
    a.record.question.clone_from(&req.input.question);
    Ok(Finished {
        content: std::mem::take(&mut sink.sent),
        finish,
        stopping_word: sink.stopped_by.take(),
        prompt_tokens: n,
        completion_tokens: a.generated_tokens + usize::from(eog),
        timings: timings(&a),
        gem: gem_json(engines.full, &asm, a.record, &a.kept, queue_s),
    })
}

/// One line per answer on stderr, as llama-server logs its timings: what a load test needs
/// beside the client's view (where the time went, whether the document was kept).
fn log_timings(slot: usize, id: u64, n: usize, a: &Answered, queue_s: f64) {
    let (k, r) = (&a.kept, &a.record);
    let decoded = r.filter_tokens_decoded;
    let how = match (k.filtered, k.cached, k.from_disk) {
        (false, ..) => "whole prompt".to_owned(),
        (true, true, _) => format!("document kept in memory, {decoded} decoded"),
        (true, false, true) => format!("document read from disk, {decoded} decoded"),
        (true, false, false) => format!("filter pass {:.3} s", r.timings.filter_pass_s),
    };
    let rate = if a.decode_s > 0.0 {
        a.generated_tokens.saturating_sub(1) as f64 / a.decode_s
    } else {
        0.0
    };
    notice!(
        "slot {slot} task {id}: {n} prompt tokens, {} prefilled ({how}), selection {:.3} s, first token {:.3} s, {} tokens at {rate:.1} tok/s, queued {queue_s:.3} s",
        a.n_rerun,
        r.timings.selection_s,
        a.first_token_s,
        a.generated_tokens,
    );
}

/// llama-server's `"timings"`, its fields only (clients read them): the prompt is what the
/// full model prefilled, its time everything up to the first token (filter pass and selection
/// included). GemFilter's own stages are in the `"gem"` record.
fn timings(a: &Answered) -> Value {
    let gen = a.generated_tokens;
    let (first, decode) = (a.first_token_s, a.decode_s);
    json!({
        "cache_n": 0,
        "prompt_n": a.n_rerun,
        "prompt_ms": first * 1e3,
        "prompt_per_token_ms": first * 1e3 / a.n_rerun.max(1) as f64,
        "prompt_per_second": if first > 0.0 { a.n_rerun as f64 / first } else { 0.0 },
        "predicted_n": gen,
        "predicted_ms": decode * 1e3,
        "predicted_per_token_ms": decode * 1e3 / gen.saturating_sub(1).max(1) as f64,
        "predicted_per_second": if decode > 0.0 { gen.saturating_sub(1) as f64 / decode } else { 0.0 },
    })
}

/// How one answer went, whichever path it took.
struct Answered {
    /// The `--json` record of the answer (its text and question are set last).
    record: Record,
    kept: Kept,
    /// Tokens the full model prefilled.
    n_rerun: usize,
    generated_tokens: usize,
    stop: StopReason,
    first_token_s: f64,
    decode_s: f64,
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // durations: small, positive
fn micros(secs: f64) -> u64 {
    (secs * 1e6) as u64
}

/// GemFilter through the conversation mode's path, with the document's filter state from (and
/// back into) the shared document cache.
#[allow(clippy::too_many_arguments)]
fn filtered(
    shared: &Shared,
    slot: usize,
    asm: &Assembled,
    gem: &GemSettings,
    req: &Request,
    limits: &GenLimits,
    sink: &mut ChannelSink<'_>,
) -> Result<Answered, ApiError> {
    let key = asm.tokens[..asm.context.end].to_vec();
    let (mut conv, cached) = shared
        .docs
        .lock()
        .map_err(|_| ApiError::internal("the document cache is unusable"))?
        .take(&key);
    // With --slot-save-path the document's state is also on disk: written on its first filter
    // pass, read back when no slot holds it in memory.
    let on_disk = match &shared.settings.slot_save_path {
        Some(dir) => Some(
            slot_files::doc_path(dir, &shared.settings.model.path, &key)
                .map_err(|e| internal(&e))?,
        ),
        None => None,
    };
    let settings = TurnSettings {
        model: &shared.settings.model,
        gem,
        protect: shared.settings.protect,
        sampling: &req.sampling,
        limits,
        prompt_cache: on_disk.as_deref(),
        progress: false,
    };
    let rec = conv
        .turn(&settings, asm, 1, "", sink)
        .map_err(|e| internal(&e))?;
    let mut record = rec.record(&settings);
    record.kind = RecordKind::Request;
    record.turn = None;
    if let Ok(mut docs) = shared.docs.lock() {
        docs.put(key, conv, slot);
    }
    if let Some(p) = on_disk {
        if let Ok(mut latest) = shared.slots[slot].latest.lock() {
            *latest = Some(p);
        }
    }
    let m = &shared.metrics;
    m.filter_decoded
        .fetch_add(rec.filter_tokens_decoded as u64, Relaxed);
    if cached { &m.doc_hits } else { &m.doc_misses }.fetch_add(1, Relaxed);
    let decode_s = rec
        .decode_tok_per_s
        .map_or(0.0, |r| rec.generated_tokens.saturating_sub(1) as f64 / r);
    let at_limit = usize::try_from(req.n_predict).is_ok_and(|n| rec.generated_tokens >= n);
    Ok(Answered {
        record,
        kept: Kept {
            filtered: true,
            cached,
            from_disk: !cached && rec.filter_tokens_decoded < asm.tokens.len(),
        },
        n_rerun: rec.selected_tokens,
        generated_tokens: rec.generated_tokens,
        stop: if at_limit {
            StopReason::MaxTokens
        } else {
            StopReason::EndOfGeneration
        },
        first_token_s: rec.first_token_s,
        decode_s,
    })
}

/// The whole prompt on the full model (short prompts, or GemFilter off: `skip` None), with
/// the record a single answer would write.
#[allow(clippy::too_many_arguments)]
fn whole(
    full: &Engine,
    s: &super::ServeSettings,
    asm: &Assembled,
    protected: &[bool],
    req: &Request,
    limits: &GenLimits,
    t0: Instant,
    sink: &mut ChannelSink<'_>,
    skip: Option<(&GemSettings, String)>,
) -> Result<Answered, ApiError> {
    let n = asm.tokens.len();
    let job = Job {
        tokens: &asm.tokens,
        protected,
        gem: None,
        ctx: s.model.ctx.clone(),
        ctx_limit: s.model.ctx_limit(),
        ctx_fixed: s.model.ctx_size > 0,
        sampling: req.sampling.clone(),
        limits: limits.clone(),
        progress: false,
    };
    let (generated, rerun_s, device_mem) =
        respond(full, &job, &asm.tokens, None, n, t0, sink).map_err(|e| internal(&e))?;
    let gem = skip.as_ref().map(|(g, _)| *g);
    let record = Record {
        // The response's text is the record's answer (set when the answer is finished).
        answer: String::new(),
        prompt_tokens: n,
        selected_tokens: n,
        protected_tokens: protected.iter().filter(|&&p| p).count(),
        context_range: [asm.context.start, asm.context.end],
        filter_skipped: skip.map(|(_, why)| why),
        timings: Timings {
            rerun_s,
            first_token_s: generated.first_token_s(t0),
            decode_tok_per_s: generated.decode_tok_per_s(),
            total_s: t0.elapsed().as_secs_f64(),
            ..Timings::default()
        },
        peak_device_mem_bytes: device_mem,
        ..Record::answered(RecordKind::Request, &s.model, gem, s.protect, &generated)
    };
    Ok(Answered {
        record,
        kept: Kept {
            filtered: false,
            cached: false,
            from_disk: false,
        },
        n_rerun: n,
        generated_tokens: generated.n_tokens(),
        stop: generated.stop,
        first_token_s: generated.first_token_s(t0),
        decode_s: generated.decode_secs,
    })
}

/// The `"gem"` extension field: the answer's record, with the kept runs as text.
fn gem_json(full: &Engine, asm: &Assembled, record: Record, kept: &Kept, queue_s: f64) -> Value {
    let vocab = full.model.vocab();
    let kept_passages = record
        .selected_ranges
        .iter()
        .map(|&[a, b]| {
            let t: &[LlamaToken] = &asm.tokens[a..=b];
            String::from_utf8_lossy(&vocab.detokenize(t, false, false)).into_owned()
        })
        .collect();
    serde_json::to_value(RequestRecord {
        record,
        kept_passages,
        document_cached: kept.cached,
        document_from_disk: kept.from_disk,
        queue_s,
    })
    .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, Option<String>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut sink = ChannelSink::new(&tx, &stops);
        for p in pieces {
            if !sink.text(p).unwrap() {
                break;
            }
        }
        sink.finish();
        let mut got = Vec::new();
        while let Ok(Event::Text(t)) = rx.try_recv() {
            got.push(t);
        }
        (got, sink.sent, sink.stopped_by)
    }

    #[test]
    fn stop_strings_are_held_back_and_left_out() {
        let (got, sent, by) = sink_run(&["END"], &["Hello ", "wor", "ld E", "N", "D more"]);
        assert_eq!(sent, "Hello world ");
        assert_eq!(got.concat(), "Hello world ");
        assert_eq!(by.as_deref(), Some("END"));
        let (_, sent, by) = sink_run(&["END"], &["a E", "b"]);
        assert_eq!((sent.as_str(), by), ("a Eb", None));
    }

    #[test]
    fn a_closed_channel_stops_generation() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        let mut sink = ChannelSink::new(&tx, &[]);
        assert!(!sink.text("x").unwrap());
    }
}
