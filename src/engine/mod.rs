//! llama.cpp behind a small safe surface: load a model, run a capturing filter pass, and run
//! ordinary prefill + generation sessions. FFI details live in [`ffi`].

pub mod adapters;
pub mod ffi;
pub mod prefix;
pub mod session;

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::{LlamaModelParams, LlamaSplitMode};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::capture::{CaptureSpec, CaptureState};

/// Context settings shared by the filter pass and generation (llama-cli's names).
#[derive(Debug, Clone)]
pub struct ContextOptions {
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub threads: i32,
    pub threads_batch: i32,
    /// -1 auto, 0 off, 1 on (llama.cpp's `llama_flash_attn_type`).
    pub flash_attn: i32,
    pub type_k: KvCacheType,
    pub type_v: KvCacheType,
    /// RoPE/YaRN overrides and KV placement (llama-cli's `--rope-*`, `--yarn-*`, `-nkvo`).
    pub extra: ContextExtras,
}

/// Context settings llama.cpp otherwise takes from the model or its defaults; `None` = that.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ContextExtras {
    /// `--rope-scaling`: 0 none, 1 linear, 2 yarn.
    pub rope_scaling: Option<i32>,
    pub rope_freq_base: Option<f32>,
    /// `--rope-freq-scale` (or 1 / `--rope-scale`).
    pub rope_freq_scale: Option<f32>,
    pub yarn_orig_ctx: Option<u32>,
    pub yarn_ext_factor: Option<f32>,
    pub yarn_attn_factor: Option<f32>,
    pub yarn_beta_slow: Option<f32>,
    pub yarn_beta_fast: Option<f32>,
    /// `-nkvo`: keep the KV cache in host memory.
    pub no_kv_offload: bool,
}

impl ContextExtras {
    fn apply(&self, mut p: LlamaContextParams) -> LlamaContextParams {
        use llama_cpp_2::context::params::RopeScalingType;
        if let Some(t) = self.rope_scaling {
            p = p.with_rope_scaling_type(match t {
                0 => RopeScalingType::None,
                1 => RopeScalingType::Linear,
                2 => RopeScalingType::Yarn,
                _ => RopeScalingType::Unspecified,
            });
        }
        if let Some(v) = self.rope_freq_base {
            p = p.with_rope_freq_base(v);
        }
        if let Some(v) = self.rope_freq_scale {
            p = p.with_rope_freq_scale(v);
        }
        if let Some(v) = self.yarn_orig_ctx {
            p = p.with_yarn_orig_ctx(v);
        }
        if let Some(v) = self.yarn_ext_factor {
            p = p.with_yarn_ext_factor(v);
        }
        if let Some(v) = self.yarn_attn_factor {
            p = p.with_yarn_attn_factor(v);
        }
        if let Some(v) = self.yarn_beta_slow {
            p = p.with_yarn_beta_slow(v);
        }
        if let Some(v) = self.yarn_beta_fast {
            p = p.with_yarn_beta_fast(v);
        }
        if self.no_kv_offload {
            p = p.with_offload_kqv(false);
        }
        p
    }
}

/// Model loading options.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub n_gpu_layers: u32,
    pub use_mmap: bool,
    pub verbose: bool,
    /// Devices and how layers are split over them.
    pub placement: Placement,
    /// Low-rank adapters, control vectors, metadata overrides, tensor check.
    pub adjust: adapters::Adjust,
}

impl LoadOptions {
    /// Layers will run on a local GPU: some are offloaded and a GPU backend is present (RPC
    /// devices do not count: see [`ffi::gpu_names`]).
    #[must_use]
    pub fn offloads_to_gpu(&self) -> bool {
        self.n_gpu_layers > 0
            && ffi::gpu_names().is_some()
            && self
                .placement
                .devices
                .as_ref()
                .is_none_or(|d| !d.is_empty())
    }

    /// The options the filter pass loads its model with: `--gem-device` in place of `-dev`
    /// (and no `-ts`, written for the full model's devices) when given.
    #[must_use]
    pub fn for_filter(&self) -> Self {
        let mut o = self.clone();
        if let Some(devs) = &self.placement.filter_devices {
            o.placement.devices = Some(devs.clone());
            o.placement.tensor_split.clear();
        }
        o
    }
}

/// llama.cpp's `llama_split_mode` (`-sm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitMode {
    /// One device (`-mg`) holds the whole offloaded model.
    None,
    /// Layers (and their KV cache) split over the devices, in `-ts` proportions.
    Layer,
    /// As layer, with matrix rows split too where the backend supports it (CUDA).
    Row,
}

/// Where the layers go (llama-cli's `-sm`, `-ts`, `-mg`, `-dev`, `--rpc`); empty = llama.cpp's
/// defaults (every GPU and RPC device, layer split, main GPU 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub split_mode: Option<SplitMode>,
    /// Share of the model per device, in the order of the devices used.
    pub tensor_split: Vec<f32>,
    pub main_gpu: Option<i32>,
    /// `-dev` names ("CUDA0", "RPC0"); `Some(empty)` = none: everything on the CPU.
    pub devices: Option<Vec<String>>,
    /// `--gem-device`: the filter pass's devices, when they differ from `-dev`.
    pub filter_devices: Option<Vec<String>>,
    /// `--rpc` servers (`host:port`), registered before the first load.
    pub rpc: Vec<String>,
}

impl Placement {
    /// Nothing asked beyond llama.cpp's defaults.
    #[must_use]
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Model parameters with this placement applied; device names are looked up in ggml's
    /// registry (RPC servers already added).
    ///
    /// # Errors
    /// An unknown device name, or a split or main device the chosen devices cannot hold.
    fn apply(&self, mut params: LlamaModelParams) -> Result<LlamaModelParams> {
        let all = ffi::rpc::devices(false);
        let offload: Vec<&ffi::rpc::Device> = all
            .iter()
            .filter(|d| d.kind != ffi::rpc::DeviceKind::Cpu)
            .collect();
        let names = || {
            let n: Vec<&str> = offload.iter().map(|d| d.name.as_str()).collect();
            if n.is_empty() {
                "none besides the CPU".to_owned()
            } else {
                n.join(", ")
            }
        };
        let n_used = if let Some(list) = &self.devices {
            let mut idx = Vec::with_capacity(list.len());
            for name in list {
                let d = offload
                    .iter()
                    .find(|d| d.name.eq_ignore_ascii_case(name))
                    .with_context(|| {
                        format!(
                            "-dev: no device {} (available: {})",
                            crate::sanitize::quote(name),
                            names()
                        )
                    })?;
                idx.push(d.index);
            }
            params = params
                .with_devices(&idx)
                .map_err(|e| anyhow::anyhow!("-dev: {e}"))?;
            list.len()
        } else {
            offload.len()
        };
        let mode = self.split_mode.unwrap_or(SplitMode::Layer);
        if let Some(mg) = self.main_gpu {
            ensure!(
                mode != SplitMode::None || usize::try_from(mg).map_or(mg == -1, |m| m < n_used),
                "-mg {mg}: the model uses {n_used} device(s) ({}), numbered from 0",
                names()
            );
            params = params.with_main_gpu(mg);
        }
        if !self.tensor_split.is_empty() {
            ensure!(
                self.tensor_split.len() <= n_used.max(1),
                "-ts lists {} shares for {n_used} device(s) ({})",
                self.tensor_split.len(),
                names()
            );
            params = params
                .with_tensor_split(&self.tensor_split)
                .map_err(|e| anyhow::anyhow!("-ts: {e}"))?;
        }
        if let Some(m) = self.split_mode {
            params = params.with_split_mode(match m {
                SplitMode::None => LlamaSplitMode::None,
                SplitMode::Layer => LlamaSplitMode::Layer,
                SplitMode::Row => LlamaSplitMode::Row,
            });
        }
        Ok(params)
    }
}

/// Register the `--rpc` servers (each checked first) once llama.cpp's backend is up.
///
/// # Errors
/// An unreachable or incompatible server, or a build without the RPC backend.
pub fn add_rpc_servers(opts: &LoadOptions) -> Result<()> {
    backend(opts.verbose)?;
    ffi::rpc::add_servers(&opts.placement.rpc)
}

/// Check a placement before anything runs: the `--rpc` servers answer (and are registered),
/// the `-dev` names exist, `-mg`/`-ts` fit the devices used.
///
/// # Errors
/// The first problem, as one line.
pub fn check_placement(opts: &LoadOptions) -> Result<()> {
    if opts.placement.is_default() {
        return Ok(());
    }
    add_rpc_servers(opts)?;
    opts.placement.apply(LlamaModelParams::default()).map(drop)
}

/// Every device llama.cpp can use, one line each (`--list-devices`), with the `--rpc` servers.
///
/// # Errors
/// As [`add_rpc_servers`].
pub fn device_lines(opts: &LoadOptions) -> Result<Vec<String>> {
    add_rpc_servers(opts)?;
    Ok(ffi::rpc::devices(true)
        .iter()
        .map(|d| {
            format!(
                "{}: {} ({} MiB, {} MiB free)",
                d.name, d.description, d.total_mib, d.free_mib
            )
        })
        .collect())
}

/// llama.cpp's backend can be initialised once per process; every engine shares it.
static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
/// Device memory in use before this process loaded anything (other processes, driver).
static DEVICE_BASELINE: OnceLock<Option<u64>> = OnceLock::new();

fn backend(verbose: bool) -> Result<&'static LlamaBackend> {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    // Two threads must not both call llama_backend_init (the second would be refused).
    let _guard = INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let mut b = LlamaBackend::init().context("cannot initialise llama.cpp")?;
    if !verbose {
        b.void_logs();
    }
    let b = BACKEND.get_or_init(|| b);
    DEVICE_BASELINE.get_or_init(ffi::device_memory_used);
    Ok(b)
}

/// A loaded model and the llama.cpp backend it needs.
pub struct Engine {
    pub model: LlamaModel,
    backend: &'static LlamaBackend,
    /// Adapters set on every context of this model.
    adapters: adapters::Loaded,
    /// Layers were offloaded to a GPU (-ngl > 0 and a GPU backend present).
    pub on_gpu: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// What a filter pass produced.
#[derive(Debug)]
pub struct FilterPass {
    pub capture: CaptureState,
    pub secs: f64,
    pub device_mem: Option<u64>,
}

impl Engine {
    /// Initialise llama.cpp and load the model at `path`.
    ///
    /// # Errors
    /// Backend initialisation or model load failure (llama.cpp's reason is in its log, shown
    /// with `-v`).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        Self::load_with(path, opts, false)
    }

    /// Load only the vocabulary and metadata (tokenizing, chat template): no weights.
    ///
    /// # Errors
    /// As [`Engine::load`].
    pub fn load_vocab(path: &Path, opts: &LoadOptions) -> Result<Self> {
        Self::load_with(path, opts, true)
    }

    fn load_with(path: &Path, opts: &LoadOptions, vocab_only: bool) -> Result<Self> {
        let backend = backend(opts.verbose)?;
        let mut params = LlamaModelParams::default()
            .with_n_gpu_layers(opts.n_gpu_layers)
            .with_use_mmap(opts.use_mmap)
            .with_vocab_only(vocab_only);
        if !vocab_only {
            ffi::rpc::add_servers(&opts.placement.rpc)?;
            params = opts.placement.apply(params)?;
        }
        let params = opts.adjust.apply_params(params)?;
        let placed = !opts.placement.is_default();
        let mut model = LlamaModel::load_from_file(backend, path, &params).map_err(|e| {
            anyhow::anyhow!(
                "llama.cpp could not load '{}' ({e}); the file may be damaged, of an unsupported \
                 architecture, or too large for memory{} (run with -v for llama.cpp's log)",
                path.display(),
                if placed {
                    " or for the devices given by -dev/-sm/-ts/-mg/--rpc"
                } else {
                    ""
                }
            )
        })?;
        let adapters = if vocab_only {
            adapters::Loaded::default()
        } else {
            adapters::Loaded::load(&mut model, &opts.adjust)?
        };
        Ok(Self {
            model,
            backend,
            adapters,
            on_gpu: opts.offloads_to_gpu(),
        })
    }

    /// Set this model's adapters (`--lora`, `--control-vector`) on a context made from it.
    ///
    /// # Errors
    /// llama.cpp refusing them.
    pub fn adapt(&self, ctx: &mut LlamaContext<'_>) -> Result<()> {
        self.adapters.set_on(ctx)
    }

    /// Device memory this process uses now (all models and contexts), where reported.
    #[must_use]
    pub fn device_mem_now(&self) -> Option<u64> {
        let base = DEVICE_BASELINE.get().copied().flatten().unwrap_or(0);
        Some(ffi::device_memory_used()?.saturating_sub(base))
    }

    fn context_params(opts: &ContextOptions, n_ctx: u32) -> LlamaContextParams {
        let n_batch = opts.n_batch.min(n_ctx).max(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx.max(1)))
            .with_n_batch(n_batch)
            .with_n_ubatch(opts.n_ubatch.min(n_batch).max(1))
            .with_n_threads(opts.threads)
            .with_n_threads_batch(opts.threads_batch)
            .with_flash_attention_policy(opts.flash_attn)
            .with_type_k(opts.type_k)
            .with_type_v(opts.type_v);
        opts.extra.apply(params)
    }

    /// A plain context (no callback) with room for `n_ctx` tokens.
    ///
    /// # Errors
    /// When llama.cpp cannot allocate the KV cache or compute buffers (out of memory).
    pub fn session(&self, opts: &ContextOptions, n_ctx: u32) -> Result<LlamaContext<'_>> {
        let mut ctx = self
            .model
            .new_context(self.backend, Self::context_params(opts, n_ctx))
            .map_err(|e| out_of_memory(e, n_ctx))?;
        self.adapt(&mut ctx)?;
        Ok(ctx)
    }

    /// Which of `tokens` end a sentence or line ([`crate::select::sentence_ends`] on their text).
    #[must_use]
    pub fn sentence_ends(&self, tokens: &[LlamaToken]) -> Vec<bool> {
        sentence_ends(&self.model, tokens)
    }

    /// Prefill `tokens` through a capturing context: records post-RoPE Q/K of `spec.layers`
    /// and, with `spec.stop_after_last`, stops each ubatch's graph right after them.
    ///
    /// # Errors
    /// Context allocation, decode failure, or tensors that were not where expected.
    pub fn filter_pass(
        &self,
        tokens: &[LlamaToken],
        spec: CaptureSpec,
        opts: &ContextOptions,
        progress: bool,
    ) -> Result<FilterPass> {
        self.filter_pass_with(tokens, CaptureState::new(spec), opts, progress)
    }

    /// [`Engine::filter_pass`] from a prepared capture state (e.g. scoring on the device).
    ///
    /// # Errors
    /// As [`Engine::filter_pass`].
    pub fn filter_pass_with(
        &self,
        tokens: &[LlamaToken],
        state: CaptureState,
        opts: &ContextOptions,
        progress: bool,
    ) -> Result<FilterPass> {
        let label = progress.then_some("filter pass");
        self.filter_pass_observed(tokens, state, opts, label, &mut |_| {})
    }

    /// [`Engine::filter_pass_with`] calling `on_batch` with the tokens decoded so far after
    /// each decoded batch (`opts.n_batch` tokens): a caller's own progress line.
    ///
    /// # Errors
    /// As [`Engine::filter_pass`].
    pub fn filter_pass_observed(
        &self,
        tokens: &[LlamaToken],
        state: CaptureState,
        opts: &ContextOptions,
        label: Option<&str>,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<FilterPass> {
        let n_ctx = u32::try_from(tokens.len()).context("prompt too long")?;
        let handle = ffi::CaptureHandle::new(state);
        let t0 = Instant::now();
        let mut ctx = self
            .model
            .new_context(
                self.backend,
                handle.params(Self::context_params(opts, n_ctx)),
            )
            .map_err(|e| out_of_memory(e, n_ctx))?;
        let res = self
            .adapt(&mut ctx)
            .and_then(|()| prefill_positions(&mut ctx, tokens, |i| i, label, on_batch));
        let device_mem = self.device_mem_now();
        let capture = handle.finish(ctx);
        res?;
        let secs = t0.elapsed().as_secs_f64();
        capture
            .finish()
            .map_err(|e| anyhow::anyhow!("filter pass failed: {e}"))?;
        Ok(FilterPass {
            capture,
            secs,
            device_mem,
        })
    }
}

/// Which of `tokens` end a sentence or line, from `model`'s vocabulary (no context needed, so a
/// filter pass can run beside it).
#[must_use]
pub fn sentence_ends(model: &LlamaModel, tokens: &[LlamaToken]) -> Vec<bool> {
    let vocab = model.vocab();
    let pieces: Vec<Vec<u8>> = tokens
        .iter()
        .map(|&t| vocab.detokenize(&[t], false, true))
        .collect();
    crate::select::sentence_ends(&pieces)
}

fn out_of_memory(e: impl std::fmt::Display, n_ctx: u32) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot create a llama.cpp context for {n_ctx} tokens ({e}): out of memory? \
         try a smaller -c/-b/-ub, a quantized KV cache (-ctk q8_0 -ctv q8_0) or fewer -ngl layers"
    )
}

/// Decode `tokens` at positions `pos0..`, in `n_batch` chunks, asking for logits of the last
/// token only. Shows a progress bar on a terminal when `label` is given and the prompt is long.
///
/// # Errors
/// llama.cpp decode failure.
pub fn prefill(
    ctx: &mut LlamaContext<'_>,
    tokens: &[LlamaToken],
    pos0: usize,
    label: Option<&str>,
) -> Result<()> {
    prefill_positions(ctx, tokens, |i| pos0 + i, label, &mut |_| {})
}

/// [`prefill`] at given, increasing positions (a selection re-run where it stood in the prompt);
/// the context must allow position gaps (`set_pos_gaps`).
///
/// # Errors
/// A position list of another length, or a llama.cpp decode failure.
pub fn prefill_at(
    ctx: &mut LlamaContext<'_>,
    tokens: &[LlamaToken],
    positions: &[usize],
    label: Option<&str>,
) -> Result<()> {
    ensure!(
        positions.len() == tokens.len(),
        "{} positions for {} tokens",
        positions.len(),
        tokens.len()
    );
    prefill_positions(ctx, tokens, |i| positions[i], label, &mut |_| {})
}

fn prefill_positions(
    ctx: &mut LlamaContext<'_>,
    tokens: &[LlamaToken],
    position: impl Fn(usize) -> usize,
    label: Option<&str>,
    on_batch: &mut dyn FnMut(usize),
) -> Result<()> {
    if tokens.is_empty() {
        bail!("nothing to decode");
    }
    let n_batch = ctx.n_batch() as usize;
    let bar = match label {
        Some(l) if tokens.len() > 4 * n_batch => {
            let b = ProgressBar::new(tokens.len() as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {pos}/{len} tokens ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(l.to_owned());
            b
        }
        _ => ProgressBar::hidden(),
    };
    let mut batch = LlamaBatch::new(n_batch, 1);
    let last = tokens.len() - 1;
    for (chunk_i, chunk) in tokens.chunks(n_batch).enumerate() {
        batch.clear();
        for (j, &tok) in chunk.iter().enumerate() {
            let i = chunk_i * n_batch + j;
            let pos = i32::try_from(position(i)).context("position overflow")?;
            batch
                .add(tok, pos, &[0], i == last)
                .context("batch overflow")?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| anyhow::anyhow!("llama_decode failed: {e}"))?;
        bar.inc(chunk.len() as u64);
        on_batch(chunk_i * n_batch + chunk.len());
    }
    bar.finish_and_clear();
    Ok(())
}
