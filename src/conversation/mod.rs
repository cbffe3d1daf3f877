//! Conversation turns: many questions about one document, for conversation mode's
//! interactive loop ([`interactive`]), `bench --turns` and the server's document cache. The filter pass runs over the document once and its context
//! (the prefix model's layers 0..r holding the document's KV) stays alive. Each later turn
//! decodes only what follows the document (earlier questions and answers, the new question)
//! through those layers, scores the document's kept keys with the new question's queries, and
//! selects a fresh top-k for it; the full model answers from that selection plus the whole
//! conversation, which is always kept. Both models stay resident.

pub mod interactive;
pub mod single;

use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llama_cpp_2::token::LlamaToken;

use crate::capture::{CaptureSpec, KSource, LayerCapture};
use crate::doc_state::{self, Identity};
use crate::engine::ffi::signal;
use crate::engine::session::CaptureSession;
use crate::engine::Engine;
use crate::generate::{GenLimits, Sampling, StopReason, TokenSink};
use crate::notice;
use crate::pipeline::{respond, select_from, Job};
use crate::prompt::{Assembled, Protect};
use crate::report::{Record, RecordKind, Timings, SCHEMA_VERSION};
use crate::select;
use crate::selector::{self, Selector};
use crate::settings::{GemSettings, ModelSettings, Positions, RunSettings};

/// What one turn did; its `--json` form is [`Turn::record`].
#[derive(Debug, Clone)]
pub struct Turn {
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
    /// Selected document positions as inclusive runs (none when the turn was answered whole).
    pub selected_ranges: Vec<[usize; 2]>,
    /// Why the turn was answered from the whole prompt, if it was.
    pub filter_skipped: Option<String>,
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
    pub protected_tokens: usize,
    pub stop_reason: StopReason,
    /// Loading the full model for this answer (where it does not stay resident).
    pub load_s: f64,
    pub total_s: f64,
    /// The answer's tokens (for callers that continue the conversation in tokens).
    pub answer_tokens: Vec<LlamaToken>,
}

impl Turn {
    /// The `--json` record of this turn: the single answer's shape.
    #[must_use]
    pub fn record(&self, s: &TurnSettings<'_>) -> Record {
        let gem = s.gem;
        Record {
            schema_version: SCHEMA_VERSION,
            kind: RecordKind::Turn,
            turn: Some(self.turn),
            question: Some(self.question.clone()),
            answer: self.answer.clone(),
            model: s.model.path.display().to_string(),
            architecture: s.model.meta.architecture.clone(),
            gem: true,
            layer: Some(gem.layer),
            k: Some(gem.top_k),
            scoring: Some(gem.spec),
            protect: Some(s.protect),
            prompt_tokens: self.prompt_tokens,
            selected_tokens: self.selected_tokens,
            protected_tokens: self.protected_tokens,
            context_range: self.context_range,
            selected_ranges: self.selected_ranges.clone(),
            filter_skipped: self.filter_skipped.clone(),
            filter_tokens_decoded: self.filter_tokens_decoded,
            filter_max_layer: None,
            generated_tokens: self.generated_tokens,
            stop_reason: self.stop_reason,
            interrupted: self.interrupted,
            timings: Timings {
                load_s: self.load_s,
                filter_pass_s: self.filter_pass_s,
                filter_read_s: 0.0,
                selection_s: self.selection_s,
                rerun_s: self.rerun_s,
                first_token_s: self.first_token_s,
                decode_tok_per_s: self.decode_tok_per_s,
                total_s: self.total_s,
            },
            peak_device_mem_bytes: self.device_mem_bytes,
            draft: None,
            target_load_s: self.load_s,
            positions: Some(gem.positions),
        }
    }
}

/// What a turn needs from the run's (or `bench --turns`') settings.
pub struct TurnSettings<'s> {
    pub model: &'s ModelSettings,
    pub gem: &'s GemSettings,
    pub protect: Protect,
    pub sampling: &'s Sampling,
    pub limits: &'s GenLimits,
    pub prompt_cache: Option<&'s std::path::Path>,
    /// A status line on a terminal while the turn filters and re-runs (cleared at the answer).
    pub progress: bool,
}

impl<'s> TurnSettings<'s> {
    /// A run's settings for its turns (`-cnv`, or one answer through the conversation path).
    #[must_use]
    pub fn of(s: &'s RunSettings, gem: &'s GemSettings) -> Self {
        TurnSettings {
            model: &s.model,
            gem,
            protect: s.protect,
            sampling: &s.sampling,
            limits: &s.limits,
            prompt_cache: s.prompt_cache.as_deref(),
            progress: !s.json,
        }
    }
}

/// One document's conversation: the models and the document's kept filter state.
pub struct Conversation<'e> {
    filter: &'e Engine,
    full: Option<&'e Engine>,
    kept: Option<Kept<'e>>,
    /// When `--prompt-cache` is written.
    save: doc_state::Save,
}

impl<'e> Conversation<'e> {
    /// `full` None: the full model is loaded for each answer.
    #[must_use]
    pub fn new(filter: &'e Engine, full: Option<&'e Engine>) -> Self {
        Conversation {
            filter,
            full,
            kept: None,
            save: doc_state::Save::Document,
        }
    }

    /// Write the prompt cache as `save` says (`--prompt-cache-ro`, `--prompt-cache-all`).
    #[must_use]
    pub fn saving(mut self, save: doc_state::Save) -> Self {
        self.save = save;
        self
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
    ) -> Result<Turn> {
        let gem = s.gem;
        let t0 = Instant::now();
        let n = asm.tokens.len();
        let protected = asm.protected(s.protect);
        let n_protected = protected.iter().filter(|&&p| p).count();
        let status = Status::new(s.progress, n_turn);
        // Answered whole where the single answer would be (the document's state stays for
        // later turns).
        let skipped = selector::skip(gem, n, n_protected);
        let (indices, decoded, filter_s, selection_s) = if skipped.is_some() {
            ((0..n).collect(), 0, 0.0, 0.0)
        } else {
            self.select(s, asm, &protected, &status)?
        };
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
        let mut load_s = 0.0;
        let full = if let Some(f) = self.full {
            f
        } else {
            status.stage("loading the full model");
            let t_load = Instant::now();
            reloaded = Engine::load(&s.model.path, &s.model.load)?;
            load_s = t_load.elapsed().as_secs_f64();
            &reloaded
        };
        status.stage(&format!(
            "{} {} tokens",
            if skipped.is_some() {
                "prefill of"
            } else {
                "re-run of"
            },
            tokens.len()
        ));
        signal::answering(true);
        let positions = (skipped.is_none() && gem.positions == Positions::Original)
            .then_some(indices.as_slice());
        let mut sink = StatusSink {
            status: &status,
            inner: sink,
        };
        let answered = respond(full, &job, &tokens, positions, n, t_rerun, &mut sink);
        signal::answering(false);
        status.clear();
        let (generated, rerun_s, device_mem_bytes) = answered?;
        if self.save == doc_state::Save::WithAnswer && skipped.is_none() {
            self.save_with_answer(s, &status, asm, &generated.tokens)?;
        }
        let first_token_s = generated.first_token_s(t0);
        let decode_tok_per_s = generated.decode_tok_per_s();
        let selected_ranges = if skipped.is_some() {
            Vec::new()
        } else {
            select::runs(&indices)
                .into_iter()
                .filter(|&(a, _)| asm.context.contains(&a))
                .map(|(a, b)| [a, b.min(asm.context.end.saturating_sub(1))])
                .collect()
        };
        Ok(Turn {
            turn: n_turn,
            question: question.to_owned(),
            answer: generated.text.clone(),
            prompt_tokens: n,
            context_range: [asm.context.start, asm.context.end],
            filter_tokens_decoded: decoded,
            selected_tokens: tokens.len(),
            selected_ranges,
            filter_skipped: skipped,
            filter_pass_s: filter_s,
            selection_s,
            rerun_s,
            first_token_s,
            decode_tok_per_s,
            generated_tokens: generated.n_tokens(),
            device_mem_bytes,
            interrupted: signal::interrupted(),
            protected_tokens: n_protected,
            stop_reason: generated.stop,
            load_s,
            total_s: t0.elapsed().as_secs_f64(),
            answer_tokens: generated.tokens,
        })
    }
}

impl Conversation<'_> {
    /// The filter layers' pass and the selection of one turn: the kept positions, the tokens
    /// decoded through the filter layers, and the seconds of each.
    fn select(
        &mut self,
        s: &TurnSettings<'_>,
        asm: &Assembled,
        protected: &[bool],
        status: &Status,
    ) -> Result<(Vec<usize>, usize, f64, f64)> {
        let gem = s.gem;
        let n_protected = protected.iter().filter(|&&p| p).count();
        selector::check_prompt(gem, asm.tokens.len(), n_protected)?;
        selector::warn_if_nothing_kept(gem, n_protected);
        status.stage("filter pass");
        let f = filter_turn(s, status, self.filter, &mut self.kept, asm, self.save)?;
        status.stage("selection");
        let t_sel = Instant::now();
        let ends = if gem.spec.sentences {
            self.filter.sentence_ends(&asm.tokens)
        } else {
            Vec::new()
        };
        let indices = select_from(&f.layers, gem, protected, &ends)?;
        Ok((indices, f.decoded, f.secs, t_sel.elapsed().as_secs_f64()))
    }
}

/// A notice while the status line shows: the line steps aside for it.
macro_rules! say {
    ($status:expr, $($arg:tt)*) => {
        $status.bar.suspend(|| notice!($($arg)*))
    };
}

impl Conversation<'_> {
    /// `--prompt-cache-all`: the filter state of this turn's whole prompt and its answer, saved
    /// after the answer (llama-completion saves its final session so), so a later prompt that
    /// goes on from them decodes only what follows. The live state keeps only the document.
    fn save_with_answer(
        &mut self,
        s: &TurnSettings<'_>,
        status: &Status,
        asm: &Assembled,
        answer: &[LlamaToken],
    ) -> Result<()> {
        let (Some(path), Some(k)) = (s.prompt_cache, self.kept.as_mut()) else {
            return Ok(());
        };
        let doc_end = k.prefix.len();
        let mut tail = asm.tokens[doc_end..].to_vec();
        tail.extend_from_slice(answer);
        if doc_end + tail.len() > k.n_ctx as usize {
            say!(
                status,
                "the prompt and its answer outgrew the filter context: the prompt cache keeps the document only"
            );
            return Ok(());
        }
        let layers = s.gem.spec.capture_layers(s.gem.layer);
        let d = k.session.decode(
            &tail,
            doc_end,
            CaptureSpec {
                layers: layers.clone(),
                n_tokens: 0,
                q_window: 1,
                stop_after_last: true,
                trace_layers: false,
                k_source: KSource::Ubatch,
            },
        )?;
        let keys: Vec<Vec<f32>> = k
            .keys
            .iter()
            .zip(&d.capture.layers)
            .map(|(doc, lc)| [doc.as_slice(), lc.first_keys(tail.len())].concat())
            .collect();
        let mut tokens = k.prefix.clone();
        tokens.extend_from_slice(&tail);
        let id = Identity::of(&s.model.path, &layers, &k.prefix)?;
        let saved = doc_state::save(path, &k.session, &id, &tokens, &keys);
        k.session.forget_from(doc_end)?;
        match saved {
            Ok(()) => say!(
                status,
                "saved the filter state of the prompt and the answer to {} ({} tokens)",
                crate::sanitize::quote(&path.display().to_string()),
                tokens.len()
            ),
            Err(e) if doc_state::is_refusal(&e) => return Err(e),
            Err(e) => say!(status, "{e:#}; going on without saving it"),
        }
        Ok(())
    }
}

/// A turn's status line on a terminal (standard error), with the time spent so far: nothing
/// else shows while the filter pass and the re-run run, which take tens of seconds on a CPU.
struct Status {
    bar: ProgressBar,
    enabled: bool,
    /// Drawn from the first stage on (a notice before it stays on a line of its own).
    shown: std::cell::Cell<bool>,
}

impl Status {
    fn new(enabled: bool, turn: usize) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} turn {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(turn.to_string());
        Status {
            bar,
            enabled: enabled && !crate::messages::quiet(),
            shown: std::cell::Cell::new(false),
        }
    }

    fn stage(&self, what: &str) {
        self.bar.set_message(what.to_owned());
        if self.enabled && !self.shown.replace(true) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// Gone before the answer's first text.
    fn clear(&self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

/// Clears the status line at the answer's first text.
struct StatusSink<'a> {
    status: &'a Status,
    inner: &'a mut dyn TokenSink,
}

impl TokenSink for StatusSink<'_> {
    fn text(&mut self, piece: &str) -> Result<bool> {
        self.status.clear();
        self.inner.text(piece)
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

/// The filter model (the prefix, when the filter layer is not the last and it can be written;
/// else none: the full model filters) and the full model, as the [`Selector`] decides. Both
/// stay resident; where the full model does not fit beside the filter model it is left out
/// (None) and loaded for each answer, while the document's filter state stays.
///
/// # Errors
/// A model that cannot be loaded (the full one only when there is no separate filter model).
pub fn load_models(
    model: &ModelSettings,
    gem: &GemSettings,
) -> Result<(Option<Engine>, Option<Engine>)> {
    let filter = Selector::new(model, gem).load_filter()?;
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

/// What a loaded prompt cache holds after the document (`--prompt-cache-all`): its tokens and,
/// per captured layer, their keys; the filter context holds them after the document.
struct Carried {
    after: Vec<LlamaToken>,
    keys: Vec<Vec<f32>>,
}

/// The document's filter state from `--prompt-cache`, if it is there and belongs to this model
/// and document; a mismatch or damage is said in one line and the state is rebuilt (only used
/// otherwise with `--prompt-cache-ro`).
#[allow(clippy::too_many_arguments)]
fn restore<'a>(
    s: &TurnSettings<'_>,
    status: &Status,
    filter: &'a Engine,
    path: &std::path::Path,
    id: &Identity,
    prefix_tokens: &[LlamaToken],
    n: usize,
    save: doc_state::Save,
) -> Result<Option<(Kept<'a>, Carried)>> {
    if !doc_state::present(path)? {
        return Ok(None);
    }
    let n_ctx = context_size(s, n.max(doc_state::held_tokens(path)));
    let mut session = CaptureSession::new(filter, &s.model.ctx, n_ctx)?;
    match doc_state::load(path, &mut session, id, prefix_tokens) {
        Ok(Some(loaded)) => {
            let doc = prefix_tokens.len();
            let total = (doc + loaded.after.len()).max(1);
            let (keys, after_keys): (Vec<_>, Vec<_>) = loaded
                .keys
                .into_iter()
                .map(|mut k| {
                    let row = k.len() / total;
                    let after = k.split_off(doc * row);
                    (k, after)
                })
                .unzip();
            say!(
                status,
                "loaded the document's filter state from {} ({doc} tokens{}): no filter pass over the document",
                crate::sanitize::quote(&path.display().to_string()),
                if loaded.after.is_empty() {
                    String::new()
                } else {
                    format!(", and {} after it", loaded.after.len())
                }
            );
            Ok(Some((
                Kept {
                    session,
                    prefix: prefix_tokens.to_vec(),
                    keys,
                    n_ctx,
                },
                Carried {
                    after: loaded.after,
                    keys: after_keys,
                },
            )))
        }
        Ok(None) => Ok(None),
        Err(e) if doc_state::is_refusal(&e) => Err(e),
        Err(e) => {
            say!(
                status,
                "the prompt cache {} {e:#}: {}",
                crate::sanitize::quote(&path.display().to_string()),
                if save == doc_state::Save::Never {
                    "not using it (--prompt-cache-ro leaves it as it is)"
                } else {
                    "rebuilding it"
                }
            );
            Ok(None)
        }
    }
}

/// A turn on the kept document state: decode only what follows the document (and, from a
/// `--prompt-cache-all` state, what follows the part of the prompt it already holds).
fn decode_after_document(
    k: &mut Kept<'_>,
    carried: Option<&Carried>,
    asm: &Assembled,
    spec: CaptureSpec,
    status: &Status,
) -> Result<Filtered> {
    let doc_end = asm.context.end;
    let n = asm.tokens.len();
    let rest = &asm.tokens[doc_end..];
    // Tokens after the document that the cache holds and this prompt repeats
    // (--prompt-cache-all) are not decoded again, short of the question's window of
    // queries, which the scores need.
    let (reused, extra): (usize, Vec<&[f32]>) = match carried {
        Some(c) if !c.after.is_empty() => {
            let same = c.after.iter().zip(rest).take_while(|(a, b)| a == b).count();
            let r = same.min(rest.len().saturating_sub(spec.q_window));
            let extra = c
                .keys
                .iter()
                .map(|ks| &ks[..r * (ks.len() / c.after.len())])
                .collect();
            (r, extra)
        }
        _ => (0, Vec::new()),
    };
    let start = doc_end + reused;
    if carried.is_some() {
        k.session.forget_from(start)?;
    }
    let suffix = &asm.tokens[start..];
    let d = k.session.decode(
        suffix,
        start,
        CaptureSpec {
            q_window: spec.q_window.min(suffix.len()),
            ..spec
        },
    )?;
    k.session.forget_from(doc_end)?;
    if carried.is_some() {
        say!(
            status,
            "the prompt cache matches {start} of {n} prompt tokens: the filter layers decode the other {}",
            suffix.len()
        );
    }
    let layers = d
        .capture
        .layers
        .iter()
        .zip(&k.keys)
        .enumerate()
        .map(|(i, (lc, doc))| match extra.get(i) {
            Some(x) if !x.is_empty() => lc.after(&[doc.as_slice(), x].concat()),
            _ => lc.after(doc),
        })
        .collect();
    Ok(Filtered {
        layers,
        decoded: suffix.len(),
        secs: d.secs,
    })
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
    status: &Status,
    filter: &'a Engine,
    kept: &mut Option<Kept<'a>>,
    asm: &Assembled,
    save: doc_state::Save,
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
        say!(
            status,
            "the template rendered the document differently this turn: filtering it again"
        );
        *kept = None;
    }
    if kept.as_ref().is_some_and(|k| (k.n_ctx as usize) < n) {
        say!(status, "the conversation outgrew the filter context: filtering the document again with more room");
        *kept = None;
    }
    let prefix_tokens = &asm.tokens[..doc_end];
    let id = match s.prompt_cache {
        Some(_) => Some(Identity::of(&s.model.path, &spec.layers, prefix_tokens)?),
        None => None,
    };
    let mut carried = None;
    if let (None, Some(path), Some(id)) = (kept.as_ref(), s.prompt_cache, &id) {
        if let Some((k, c)) = restore(s, status, filter, path, id, prefix_tokens, n, save)? {
            *kept = Some(k);
            carried = Some(c);
        }
    }
    if let Some(k) = kept {
        return decode_after_document(k, carried.as_ref(), asm, spec, status);
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
    if let (Some(path), Some(id), doc_state::Save::Document) = (s.prompt_cache, &id, save) {
        match doc_state::save(path, &session, id, prefix_tokens, &keys) {
            Ok(()) => say!(
                status,
                "saved the document's filter state to {} ({doc_end} tokens)",
                crate::sanitize::quote(&path.display().to_string())
            ),
            Err(e) => say!(status, "{e:#}; the conversation goes on without it"),
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
