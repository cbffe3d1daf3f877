//! One GemFilter answer on a loaded engine: filter pass → score → select → fresh context on
//! the selected tokens → generate. With GemFilter off, the same path on the whole prompt.
//! `run`, `bench` and `niah` all go through [`answer`] so they measure the same thing.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use llama_cpp_2::token::LlamaToken;

use crate::capture::{CaptureSpec, CaptureState, KSource, LayerCapture};
use crate::engine::{prefill, prefill_at, ContextOptions, Engine, LoadOptions};
use crate::generate::{generate, GenLimits, Generated, Sampling, Start, TokenSink};
use crate::report::{DraftRecord, Record, Timings};
use crate::select;
use crate::selector::{self, Selector};
use crate::settings::ModelSettings;
pub use crate::settings::{GemSettings, Positions};

/// The models a run needs, loaded only when needed: the filter pass (prefix model) and the
/// answer (full model) never hold the device at the same time.
pub struct Models {
    pub path: PathBuf,
    pub opts: LoadOptions,
    full: Option<Engine>,
    /// Which model selects and on what (None with `--gem off`).
    selector: Option<Selector>,
    /// Seconds spent loading models so far (draft included).
    pub load_secs: f64,
    /// Of which loading the draft (or its prefix).
    pub draft_load_secs: f64,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("path", &self.path)
            .field("loaded", &self.full.is_some())
            .finish_non_exhaustive()
    }
}

impl Models {
    /// The models of `model`, selecting as `gem` says (None: every answer from the whole prompt).
    #[must_use]
    pub fn new(model: &ModelSettings, gem: Option<&GemSettings>) -> Self {
        Self {
            path: model.path.clone(),
            opts: model.load.clone(),
            full: None,
            selector: gem.map(|g| Selector::new(model, g)),
            load_secs: 0.0,
            draft_load_secs: 0.0,
        }
    }

    /// The run's selector (None with `--gem off`).
    #[must_use]
    pub fn selector(&self) -> Option<&Selector> {
        self.selector.as_ref()
    }

    /// The full model, loaded on first use.
    ///
    /// # Errors
    /// Load failures.
    ///
    /// # Panics
    /// Never: the model is loaded just before it is returned.
    pub fn full(&mut self) -> Result<&Engine> {
        if self.full.is_none() {
            let t0 = Instant::now();
            self.full = Some(Engine::load(&self.path, &self.opts)?);
            self.load_secs += t0.elapsed().as_secs_f64();
        }
        Ok(self.full.as_ref().expect("loaded above"))
    }

    /// Free the full model (before a prefix-model filter pass).
    pub fn release_full(&mut self) {
        self.full = None;
    }

    /// Selection as the selector decides: on the prefix model (full model freed first) or the
    /// full one; with a draft, on the draft's prefix model (or the whole draft at its last
    /// layer), the target freed first. `gem` is the answer's (its layer is the selector's).
    ///
    /// # Errors
    /// Models set up with GemFilter off; a draft with another tokenizer; loading or filter-pass
    /// failures.
    pub fn select(
        &mut self,
        tokens: &[LlamaToken],
        protected: &[bool],
        gem: &GemSettings,
        ctx: &ContextOptions,
        progress: bool,
    ) -> Result<Selected> {
        let Some(selector) = &self.selector else {
            bail!("these models were set up with GemFilter off");
        };
        selector.check_tokens(tokens)?;
        let draft = selector.draft().is_some();
        let Some(file) = selector.filter_file() else {
            if self.opts.placement.filter_devices.is_some() {
                crate::notice!("--gem-device: the filter pass runs on the full model here (no prefix model), placed as the full model");
            }
            let engine = self.full()?;
            return select_tokens(engine, tokens, protected, gem, ctx, progress);
        };
        self.release_full();
        let t0 = Instant::now();
        let engine = Engine::load(&file, &self.opts.for_filter())?;
        let secs = t0.elapsed().as_secs_f64();
        self.load_secs += secs;
        if draft {
            self.draft_load_secs += secs;
        }
        select_tokens(&engine, tokens, protected, gem, ctx, progress)
    }
}

/// Result of selection.
#[derive(Debug, Clone)]
pub struct Selected {
    /// Sorted prompt positions kept.
    pub indices: Vec<usize>,
    pub filter_secs: f64,
    /// Part of `filter_secs` spent reading layer r's keys from the KV cache.
    pub read_secs: f64,
    pub selection_secs: f64,
    /// Why scoring on the device fell back to the host, if it did (shown with -v).
    pub score_fallback: Option<String>,
    pub device_mem: Option<u64>,
    /// Highest layer whose graph nodes ran during the filter pass.
    pub max_layer_reached: Option<usize>,
    pub early_exits: usize,
}

/// Run the filter pass over `tokens` and pick the positions to keep.
///
/// # Errors
/// Filter-pass or scoring failures.
pub fn select_tokens(
    engine: &Engine,
    tokens: &[LlamaToken],
    protected: &[bool],
    gem: &GemSettings,
    ctx: &ContextOptions,
    progress: bool,
) -> Result<Selected> {
    let spec = CaptureSpec {
        layers: gem.spec.capture_layers(gem.layer),
        n_tokens: tokens.len(),
        q_window: gem.spec.queries_needed().clamp(1, tokens.len()),
        stop_after_last: !gem.no_early_exit,
        trace_layers: true,
        // On a GPU, reading the cache once lets the prefill run asynchronously; on the CPU
        // there is nothing to overlap, and the per-ubatch early exit skips layer r's attention.
        k_source: gem.k_source.unwrap_or(
            if engine.on_gpu && engine.model.n_layer() as usize == gem.layer + 1 {
                KSource::Cache
            } else {
                KSource::Ubatch
            },
        ),
    };
    let mut ctx = ctx.clone();
    if let Some(ub) = gem.ubatch {
        ctx.n_ubatch = ub;
        ctx.n_batch = ctx.n_batch.max(ub);
    }
    let state = CaptureState::new(spec).with_graph_scoring(gem.score_on.graph(gem.spec.scoring));
    // Sentence ends need only the vocabulary: found on another thread while the pass runs.
    let model = &engine.model;
    let (pass, ends) = std::thread::scope(|s| {
        let ends = s.spawn(|| {
            if engine.on_gpu && gem.score_on != crate::capture::ScoreOn::Host {
                crate::engine::ffi::score::warm_up();
            }
            if gem.spec.sentences {
                crate::engine::sentence_ends(model, tokens)
            } else {
                Vec::new()
            }
        });
        let pass = engine.filter_pass_with(tokens, state, &ctx, progress);
        (pass, ends.join())
    });
    let pass = pass?;
    let ends = ends.map_err(|_| anyhow::anyhow!("finding sentence ends failed"))?;
    let t0 = Instant::now();
    let indices = select_from(&pass.capture.layers, gem, protected, &ends)?;
    // Device scoring runs inside the filter pass (in its last ubatch) but is selection work.
    let scored = pass.capture.score_secs;
    if let Some(why) = &pass.capture.graph_fallback {
        crate::notice!("scoring on the host, not the GPU: {why}");
    }
    Ok(Selected {
        indices,
        filter_secs: pass.secs - scored,
        read_secs: pass.capture.read_secs,
        selection_secs: t0.elapsed().as_secs_f64() + scored,
        score_fallback: pass.capture.graph_fallback.clone(),
        device_mem: pass.device_mem,
        max_layer_reached: pass.capture.max_layer_reached(),
        early_exits: pass.capture.early_exits,
    })
}

/// Top-k from the captured layers: one layer's scores, or several standardised and summed;
/// pooled, and with `+sent` spread over whole sentences (`ends`, empty otherwise).
///
/// # Errors
/// Bad shapes or masks.
pub fn select_from(
    layers: &[LayerCapture],
    gem: &GemSettings,
    protected: &[bool],
    ends: &[bool],
) -> Result<Vec<usize>> {
    if layers.iter().any(|lc| lc.scores.is_some()) {
        // Scored on the device: pool, combine and rank the n scores here.
        let per_layer = layers
            .iter()
            .map(|lc| {
                lc.scores
                    .as_deref()
                    .map(ndarray::ArrayView1::from)
                    .context("a layer was scored on the host and another on the device")
            })
            .collect::<Result<Vec<_>>>()?;
        let ranked = gem.spec.ranked(&per_layer, ends, protected)?;
        return Ok(select::select_top_k(ranked.view(), gem.top_k, protected));
    }
    if let ([lc], false) = (layers, gem.spec.sentences) {
        // The reference path, exactly as the paper's code does it.
        let sel = select::gemfilter_select_pooled(
            lc.q_view(),
            lc.k_view(),
            gem.spec.scoring,
            gem.top_k,
            protected,
            gem.spec.pool,
        )?;
        return Ok(sel.indices);
    }
    let per_layer = layers
        .iter()
        .map(|lc| select::scores(lc.q_view(), lc.k_view(), gem.spec.scoring))
        .collect::<Result<Vec<_>>>()?;
    let views: Vec<_> = per_layer.iter().map(ndarray::ArrayBase::view).collect();
    let ranked = gem.spec.ranked(&views, ends, protected)?;
    Ok(select::select_top_k(ranked.view(), gem.top_k, protected))
}

/// Everything [`answer`] needs besides the engine.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub tokens: &'a [LlamaToken],
    pub protected: &'a [bool],
    /// None: full prompt.
    pub gem: Option<GemSettings>,
    pub ctx: ContextOptions,
    /// Upper bound on the generation context (from -c or the model).
    pub ctx_limit: u32,
    /// -c was given: use it as the generation context size.
    pub ctx_fixed: bool,
    pub sampling: Sampling,
    pub limits: GenLimits,
    pub progress: bool,
}

/// What one answer produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub generated: Generated,
    pub selected: Option<Selected>,
    /// Seconds of model loading inside this answer (prefix and full model after it).
    pub load_secs: f64,
    /// Of which loading the target for the re-run (0 when it was already loaded).
    pub target_load_secs: f64,
    /// Of which loading the draft (or its prefix model).
    pub draft_load_secs: f64,
    /// Set when GemFilter was on but the prompt was too short to filter.
    pub skipped: Option<String>,
    pub n_rerun: usize,
    pub timings: Timings,
    pub peak_device_mem: Option<u64>,
}

impl Outcome {
    /// `base` (its prompt counts and ranges set) with what this answer selected, filtered and
    /// took: one place for the run's and the bench's records.
    #[must_use]
    pub fn record(&self, base: Record, gem: Option<&GemSettings>) -> Record {
        let n = base.prompt_tokens;
        let sel = self.selected.as_ref();
        Record {
            selected_tokens: self.n_rerun,
            selected_ranges: sel.map_or_else(Vec::new, |sel| {
                select::runs(&sel.indices)
                    .into_iter()
                    .map(|(a, b)| [a, b])
                    .collect()
            }),
            filter_skipped: self.skipped.clone(),
            filter_tokens_decoded: sel.map_or(0, |_| n),
            filter_max_layer: sel.and_then(|sel| sel.max_layer_reached),
            timings: self.timings.clone(),
            peak_device_mem_bytes: self.peak_device_mem,
            draft: gem.and_then(|g| g.draft.as_ref()).map(|d| DraftRecord {
                model: d.path.display().to_string(),
                layer: gem.map_or(0, |g| g.layer),
                load_s: self.draft_load_secs,
            }),
            target_load_s: self.target_load_secs,
            ..base
        }
    }
}

/// Tokens generated when -n is -1 and -c was not given.
const OPEN_ENDED_BUDGET: u32 = 4096;

/// Size of the generation context for `n_used` prompt tokens. A bounded `-n` never needs more
/// than the prompt plus its budget, so a fixed `-c` only caps it: a 1K-token selection answered
/// under `-c 131072` would otherwise allocate a 128K-cell KV cache (16 GB for an 8B) on every
/// answer, as a server follow-up did (bench/runs/2026-12-06-h100-server). Only an
/// open-ended `-n -1` under a fixed `-c` gets the whole context, as llama-cli gives it.
fn gen_ctx_size(job: &Job<'_>, n_used: usize) -> Result<u32> {
    let n_used = u32::try_from(n_used)?;
    let cap = job.ctx_limit.max(n_used + 1);
    let budget = match u32::try_from(job.limits.n_predict) {
        Ok(b) => b,
        Err(_) if job.ctx_fixed => return Ok(cap),
        Err(_) => OPEN_ENDED_BUDGET,
    };
    Ok(n_used.saturating_add(budget).saturating_add(1).min(cap))
}

/// The re-run and the answer: a fresh context on `engine` gets `tokens` (at 0.., or at
/// `positions` with generation going on at `n_prompt`), then generation streams into `sink`.
/// Returns what was generated, the prefill's seconds since `t0`, and device memory at the end.
///
/// # Errors
/// Any llama.cpp failure, or a sink error.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    engine: &Engine,
    job: &Job<'_>,
    tokens: &[LlamaToken],
    positions: Option<&[usize]>,
    n_prompt: usize,
    t0: Instant,
    sink: &mut dyn TokenSink,
) -> Result<(Generated, f64, Option<u64>)> {
    let n_ctx = gen_ctx_size(job, tokens.len())?;
    let mut ctx = engine.session(&job.ctx, n_ctx)?;
    let label = job.progress.then_some("prefill");
    if let Some(positions) = positions {
        ctx.set_pos_gaps(true);
        prefill_at(&mut ctx, tokens, positions, label)?;
    } else {
        prefill(&mut ctx, tokens, 0, label)?;
    }
    let rerun_secs = t0.elapsed().as_secs_f64();
    let mut sampler = job.sampling.chain(&engine.model, n_ctx)?;
    sampler.accept_prompt(tokens);
    let generated = generate(
        &mut ctx,
        &engine.model,
        &mut sampler,
        Start {
            n_past: tokens.len(),
            pos_offset: positions.map_or(0, |_| n_prompt - tokens.len()),
        },
        &job.limits,
        job.sampling.is_plain_greedy(),
        sink,
    )?;
    let gen_mem = engine.device_mem_now();
    Ok((generated, rerun_secs, gen_mem))
}

/// Answer one prompt.
///
/// # Errors
/// Any llama.cpp failure, or a sink error.
pub fn answer(models: &mut Models, job: &Job<'_>, sink: &mut dyn TokenSink) -> Result<Outcome> {
    let n = job.tokens.len();
    if n == 0 {
        bail!("empty prompt");
    }
    let t_start = Instant::now();
    let load0 = models.load_secs;
    let draft0 = models.draft_load_secs;
    let n_protected = job.protected.iter().filter(|&&p| p).count();
    let mut skipped = None;
    let mut selected = None;
    if let Some(gem) = &job.gem {
        skipped = selector::skip(gem, n, n_protected);
        if skipped.is_none() {
            selector::warn_if_nothing_kept(gem, n_protected);
            selected =
                Some(models.select(job.tokens, job.protected, gem, &job.ctx, job.progress)?);
        }
    }
    let rerun_tokens: Vec<LlamaToken> = match &selected {
        Some(s) => s.indices.iter().map(|&i| job.tokens[i]).collect(),
        None => job.tokens.to_vec(),
    };
    // At original positions the selection keeps its gaps and generation goes on at n.
    let original = match (&selected, &job.gem) {
        (Some(s), Some(g)) if g.positions == Positions::Original => Some(&s.indices),
        _ => None,
    };
    let t_rerun = Instant::now();
    let load_before = models.load_secs;
    let draft_load_secs = models.draft_load_secs - draft0;
    let engine = models.full()?;
    let (generated, rerun_secs, gen_mem) = respond(
        engine,
        job,
        &rerun_tokens,
        original.map(Vec::as_slice),
        n,
        t_rerun,
        sink,
    )?;

    let first_token_s = generated.first_token_s(t_start);
    let decode_tok_per_s = generated.decode_tok_per_s();
    let timings = Timings {
        load_s: 0.0,
        filter_pass_s: selected.as_ref().map_or(0.0, |s| s.filter_secs),
        selection_s: selected.as_ref().map_or(0.0, |s| s.selection_secs),
        filter_read_s: selected.as_ref().map_or(0.0, |s| s.read_secs),
        rerun_s: rerun_secs,
        first_token_s,
        decode_tok_per_s,
        total_s: t_start.elapsed().as_secs_f64(),
    };
    let peak_device_mem = match (selected.as_ref().and_then(|s| s.device_mem), gen_mem) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let load_secs = models.load_secs - load0;
    Ok(Outcome {
        load_secs,
        target_load_secs: models.load_secs - load_before,
        draft_load_secs,
        generated,
        selected,
        skipped,
        n_rerun: rerun_tokens.len(),
        timings,
        peak_device_mem,
    })
}
