//! The second stage of the command line (ripgrep's low/high args): parsed flags, the model's
//! GGUF header and the presets become typed, validated settings, once, for every mode. Every
//! flag is checked here, with its name in the error; the modes never see a flag.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use llama_cpp_2::context::params::KvCacheType;

use super::completion::CompletionArgs;
use super::eval::{CalibrateArgs, LayersArgs, NiahArgs, BENCH_LENGTHS, NIAH_LENGTHS};
use super::llama::{
    Calibrate, GemArgs, KSourceArg, LoadMode, ModelArgs, OnOff, OnOffAuto, PromptArgs, RopeScaling,
    RunArgs, SamplingArgs, ScoreOnArg,
};
use super::tools::{BenchArgs, SynthArgs};
use super::values;
use super::{Cli, Command};
use crate::capture::{KSource, ScoreOn};
use crate::engine::{ContextExtras, ContextOptions, LoadOptions, Placement};
use crate::eval::calibrate::CalibrateSettings;
use crate::eval::layers::LayersSettings;
use crate::eval::niah::{needles, Experiment, NiahSettings};
use crate::generate::{GenLimits, Sampling, Stage};
use crate::gguf_info::{self, ModelMeta, SUPPORTED_ARCHS};
use crate::pipeline::GemSettings;
use crate::prompt::{self, PromptInput};
use crate::run::RunSettings;
use crate::scoring::{self, ScoringSpec};
use crate::settings::ModelSettings;
use crate::tools::bench::BenchSettings;

/// One mode with everything it needs.
#[derive(Debug)]
pub enum Mode {
    Run(Box<RunSettings>),
    Bench(Box<BenchSettings>),
    Niah(Box<NiahSettings>),
    Layers(Box<LayersSettings>),
    Calibrate(Box<CalibrateSettings>),
    Synth(crate::tools::synth::SynthJob),
    /// `--list-devices`, with the `--rpc` servers to ask.
    ListDevices(LoadOptions),
    RpcServer(crate::tools::rpc_server::RpcServerSettings),
    Serve(Box<crate::server::ServeSettings>),
}

/// The mode, and the work `app` runs before it.
#[derive(Debug)]
pub struct Resolved {
    pub mode: Mode,
    pub steps: Vec<Step>,
}

/// Work that touches devices, the network or the model's weights: resolving only decides it,
/// `app` runs it (in order) before the mode.
#[derive(Debug)]
pub enum Step {
    /// Check a placement: the `--rpc` servers answer and the devices named exist (`flag`: the
    /// option that placed it, for errors).
    Probe {
        load: Box<LoadOptions>,
        flag: &'static str,
    },
    /// Calibrate the selecting model on first use (its preset is stored in the user presets),
    /// then settle the filter layer, k and scoring from it.
    Calibrate(Box<Calibration>),
}

/// What a first-use calibration needs, and what settling the result needs.
#[derive(Debug)]
pub struct Calibration {
    args: GemArgs,
    model: ModelSettings,
    selector: ModelSettings,
    preset: crate::presets::Preset,
    top_k: usize,
    layers: Vec<usize>,
}

impl Step {
    /// Run the step, updating `mode` with what it found.
    ///
    /// # Errors
    /// An unreachable RPC server or unknown device; a draft whose tokenizer differs from the
    /// target's; a failed calibration or settings it makes invalid.
    pub fn run(self, mode: &mut Mode) -> Result<()> {
        self.run_on(gem_mut(mode))
    }

    /// Run the step; a calibration settles `gem`.
    fn run_on(self, gem: Option<&mut GemSettings>) -> Result<()> {
        match self {
            Step::Probe { load, flag } => crate::engine::check_placement(&load).map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    format!("{e:#}").replacen("-dev:", &format!("{flag}:"), 1)
                )
            }),
            Step::Calibrate(c) => {
                if c.args.gem_draft.is_some() {
                    // Before spending a calibration on a draft that cannot select for the target.
                    crate::selector::shared_ids(&c.model.path, &c.selector.path, &c.model.load)?;
                }
                let entry = crate::eval::calibrate::auto(&c.selector, c.top_k, c.layers.clone())?;
                let preset = crate::presets::Preset {
                    layer: entry.filter_layer,
                    top_k: entry.top_k.unwrap_or(c.top_k),
                    spec: entry.spec(c.preset.spec),
                    label: Some(entry.label),
                };
                let settled = gem_settings(&c.args, &c.model, &c.selector, None, &preset)?;
                if let Some(g) = gem {
                    *g = GemSettings {
                        min_tokens: g.min_tokens,
                        ..settled
                    };
                }
                Ok(())
            }
        }
    }
}

/// Run `steps` at once (for callers outside the one-mode flow of `app`), settling `gem`.
///
/// # Errors
/// As [`Step::run`].
pub fn run_steps(steps: Vec<Step>, mut gem: Option<&mut GemSettings>) -> Result<()> {
    for step in steps {
        step.run_on(gem.as_deref_mut())?;
    }
    Ok(())
}

fn gem_mut(mode: &mut Mode) -> Option<&mut GemSettings> {
    match mode {
        Mode::Run(s) => s.gem.as_mut(),
        Mode::Bench(s) => Some(&mut s.gem),
        Mode::Niah(s) => Some(&mut s.gem),
        Mode::Serve(s) => s.gem.as_mut(),
        _ => None,
    }
}

/// Resolve the command line: no model weights are loaded and no device or server is asked;
/// what needs them comes back as [`Step`]s.
///
/// # Errors
/// Any invalid flag, an unreadable or malformed model header, a bad prompt file.
pub fn resolve(cli: Cli) -> Result<Resolved> {
    let mut steps = Vec::new();
    if let Some(m) = cli.model_args().filter(|m| m.list_devices) {
        return Ok(Resolved {
            mode: Mode::ListDevices(load_options(m)?),
            steps,
        });
    }
    let st = &mut steps;
    let mode = match cli.command {
        None => Mode::Run(Box::new(run(
            &cli.run,
            &cli.completion,
            cli.single_turn,
            st,
        )?)),
        Some(Command::Bench(a)) => Mode::Bench(Box::new(bench(&a, st)?)),
        Some(Command::Niah(a)) => Mode::Niah(Box::new(niah(&a, st)?)),
        Some(Command::Layers(a)) => Mode::Layers(Box::new(layers(&a, st)?)),
        Some(Command::Calibrate(a)) => Mode::Calibrate(Box::new(calibrate(&a, st)?)),
        Some(Command::Synth(a)) => Mode::Synth(synth(&a)?),
        Some(Command::RpcServer(a)) => Mode::RpcServer(rpc_server(&a)?),
        Some(Command::Serve(a)) => Mode::Serve(Box::new(serve(&a, st)?)),
    };
    Ok(Resolved { mode, steps })
}

/// ggml's thread limit (`GGML_MAX_N_THREADS`): more would overrun its per-thread arrays.
const MAX_THREADS: i32 = 512;

/// Prompt files may hold at most this many bytes per token of the context (a 128K-token
/// context allows 4 MiB), and never less than [`MIN_PROMPT_BYTES`]: larger or endless input is
/// refused before it is read whole.
const PROMPT_BYTES_PER_TOKEN: u64 = 32;
const MIN_PROMPT_BYTES: u64 = 1 << 20;

/// Default `--gem-min-tokens` when layers run on a GPU. H100, 8B shape, `Q4_0`, f16 KV
/// (bench/runs/2026-11-28-h100): GemFilter's first token vs the whole prompt's was 2.86x at 8K,
/// 1.43x at 16K, 0.92x at 32K, 0.63x at 64K. Its fixed cost (prefix-model and full-model loads,
/// ~1.6 s) outweighs the prefill it saves below ~30K tokens.
pub const GPU_MIN_TOKENS: usize = 32_768;

/// Default `--gem-min-tokens` of `serve` when layers run on a GPU. Both models stay resident, so
/// no load is paid per request; what is left is the filter pass and the re-run against one
/// prefill. H100, Qwen2.5-1.5B shape, layer 14 of 28, one client, first question
/// (bench/runs/2026-12-06-h100-server): GemFilter 0.175 / 0.213 / 0.327 / 0.605 s against
/// llama-server's 0.087 / 0.155 / 0.301 / 0.663 s at 2K / 4K / 8K / 16K tokens. From 8K on it is
/// even or ahead, and a follow-up about a kept document is cheap, so documents from 8K on are
/// filtered. On the CPU the default stays 0.
pub const SERVE_GPU_MIN_TOKENS: usize = 8_192;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(4, std::num::NonZero::get)
}

/// A `-ctk`/`-ctv` name.
///
/// # Errors
/// Unknown type names.
pub fn kv_type(flag: &str, name: &str) -> Result<KvCacheType> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "f32" => KvCacheType::F32,
        "f16" => KvCacheType::F16,
        "bf16" => KvCacheType::BF16,
        "q8_0" => KvCacheType::Q8_0,
        "q4_0" => KvCacheType::Q4_0,
        "q4_1" => KvCacheType::Q4_1,
        "iq4_nl" => KvCacheType::IQ4_NL,
        "q5_0" => KvCacheType::Q5_0,
        "q5_1" => KvCacheType::Q5_1,
        _ => bail!(
            "{flag}: unknown KV cache type {} (use f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1)",
            crate::sanitize::quote(name)
        ),
    })
}

/// `-ngl`: a count, or auto/all (every layer).
///
/// # Errors
/// Anything else.
pub fn gpu_layers(s: &str) -> Result<u32> {
    match s {
        "auto" | "all" | "-1" => Ok(u32::MAX),
        n => n.parse::<u32>().map_err(|_| {
            anyhow::anyhow!(
                "-ngl: invalid value {} (a number, auto or all)",
                crate::sanitize::quote(n)
            )
        }),
    }
}

/// `-t`/`-tb` as llama.cpp reads them: 0 or less means every core; more threads than cores run
/// (slower), with a warning; more than ggml can hold are refused.
fn threads(flag: &str, n: i32) -> Result<i32> {
    let cores = cores();
    if n <= 0 {
        return Ok(i32::try_from(cores).unwrap_or(4));
    }
    ensure!(
        n <= MAX_THREADS,
        "{flag} {n} is more threads than ggml supports (at most {MAX_THREADS})"
    );
    if usize::try_from(n).is_ok_and(|n| n > cores) {
        crate::notice!(
            "warning: {flag} {n} is more threads than this machine's {cores} cores; they will share them (slower)"
        );
    }
    Ok(n)
}

fn context_options(m: &ModelArgs) -> Result<ContextOptions> {
    let threads_gen = threads(
        "-t",
        m.threads.unwrap_or(i32::try_from(cores()).unwrap_or(4)),
    )?;
    let threads_batch = match m.threads_batch {
        Some(t) => threads("-tb", t)?,
        None => threads_gen,
    };
    ensure!(m.batch_size >= 1, "-b must be at least 1");
    ensure!(m.ubatch_size >= 1, "-ub must be at least 1");
    Ok(ContextOptions {
        n_batch: m.batch_size,
        n_ubatch: m.ubatch_size,
        threads: threads_gen,
        threads_batch,
        flash_attn: match m.flash_attn {
            OnOffAuto::On => 1,
            OnOffAuto::Off => 0,
            OnOffAuto::Auto => -1,
        },
        type_k: kv_type("-ctk", &m.cache_type_k)?,
        type_v: kv_type("-ctv", &m.cache_type_v)?,
        extra: context_extras(m)?,
    })
}

/// `--rope-*`, `--yarn-*` and `-nkvo`, checked as llama.cpp would need them.
fn context_extras(m: &ModelArgs) -> Result<ContextExtras> {
    let positive = |flag: &str, v: Option<f32>| -> Result<Option<f32>> {
        if let Some(v) = v {
            ensure!(
                v.is_finite() && v > 0.0,
                "{flag} must be a positive number, got {v}"
            );
        }
        Ok(v)
    };
    let finite = |flag: &str, v: Option<f32>| -> Result<Option<f32>> {
        if let Some(v) = v {
            ensure!(v.is_finite(), "{flag} must be a finite number, got {v}");
        }
        Ok(v)
    };
    let scale = positive("--rope-scale", m.rope_scale)?;
    Ok(ContextExtras {
        rope_scaling: m.rope_scaling.map(|r| match r {
            RopeScaling::None => 0,
            RopeScaling::Linear => 1,
            RopeScaling::Yarn => 2,
        }),
        rope_freq_base: positive("--rope-freq-base", m.rope_freq_base)?,
        rope_freq_scale: match scale {
            Some(s) => Some(1.0 / s),
            None => positive("--rope-freq-scale", m.rope_freq_scale)?,
        },
        yarn_orig_ctx: m.yarn_orig_ctx,
        yarn_ext_factor: finite("--yarn-ext-factor", m.yarn_ext_factor)?,
        yarn_attn_factor: finite("--yarn-attn-factor", m.yarn_attn_factor)?,
        yarn_beta_slow: finite("--yarn-beta-slow", m.yarn_beta_slow)?,
        yarn_beta_fast: finite("--yarn-beta-fast", m.yarn_beta_fast)?,
        no_kv_offload: m.no_kv_offload,
    })
}

/// The model flags, with the GGUF header read and checked; the placement probe (`--rpc`,
/// `-dev`, ...) is left to `steps`.
///
/// # Errors
/// Bad flags, or a missing, unreadable or malformed model file.
pub fn model(m: &ModelArgs, steps: &mut Vec<Step>) -> Result<ModelSettings> {
    let ctx = context_options(m)?;
    let load = load_options(m)?;
    ensure!(
        m.hf_file.is_none() || m.hf_repo.is_some(),
        "-hff names a file of the -hf repository: give -hf USER/MODEL too"
    );
    ensure!(
        m.model.is_none() || m.hf_repo.is_none(),
        "give the model with -m or with -hf, not both"
    );
    let path = match &m.hf_repo {
        Some(repo) => {
            super::hf_cache::resolve(repo, m.hf_file.as_deref(), &|k| std::env::var(k).ok())?
        }
        None => m.model.clone().context(
            "no model given: gemfilter -m MODEL.gguf -f CONTEXT.txt -p QUESTION (see --help)",
        )?,
    };
    let meta = gguf_info::read(&path)?;
    if !load.placement.is_default() {
        steps.push(Step::Probe {
            load: Box::new(load.clone()),
            flag: "-dev",
        });
    }
    Ok(ModelSettings {
        path,
        meta,
        load,
        ctx,
        ctx_size: m.ctx_size,
        cache_types: [m.cache_type_k.clone(), m.cache_type_v.clone()],
    })
}

/// `-ngl`, `--no-mmap`, `-v` and the placement flags (`-sm`, `-ts`, `-mg`, `-dev`, `--rpc`).
fn load_options(m: &ModelArgs) -> Result<LoadOptions> {
    let placement = Placement {
        split_mode: m.split_mode,
        tensor_split: m
            .tensor_split
            .as_deref()
            .map(values::parse_tensor_split)
            .transpose()?
            .unwrap_or_default(),
        main_gpu: m.main_gpu,
        devices: m
            .device
            .as_deref()
            .map(|d| values::parse_devices("-dev", d))
            .transpose()?,
        filter_devices: None,
        rpc: m
            .rpc
            .as_deref()
            .map(values::parse_endpoints)
            .transpose()?
            .unwrap_or_default(),
    };
    if let Some(mg) = placement.main_gpu {
        ensure!(
            mg >= -1,
            "-mg must be a device index (0, 1, ...) or -1, got {mg}"
        );
    }
    let use_mmap = match m.load_mode {
        None => !m.no_mmap,
        Some(LoadMode::None | LoadMode::Dio) => false,
        Some(LoadMode::Auto | LoadMode::Mmap) => true,
        Some(LoadMode::Mlock | LoadMode::MmapMlock) => {
            crate::notice!(
                "-lm mlock: the model is memory-mapped; locking it in RAM is not supported yet"
            );
            true
        }
    };
    Ok(LoadOptions {
        n_gpu_layers: gpu_layers(&m.n_gpu_layers)?,
        use_mmap,
        verbose: m.verbose,
        placement,
        adjust: adjust(m)?,
    })
}

/// `--lora*`, `--control-vector*`, `--override-kv`, `--check-tensors`: files checked readable,
/// values parsed as llama.cpp parses them.
fn adjust(m: &ModelArgs) -> Result<crate::engine::adapters::Adjust> {
    use crate::engine::adapters::{adapter_file, parse_kv_override};
    let mut a = crate::engine::adapters::Adjust {
        check_tensors: m.check_tensors,
        ..Default::default()
    };
    for v in &m.lora {
        for item in values::csv_row(v) {
            a.lora.push((adapter_file("--lora", &item)?, 1.0));
        }
    }
    for v in &m.lora_scaled {
        for (name, scale) in values::parse_scaled("--lora-scaled", v)? {
            a.lora.push((adapter_file("--lora-scaled", &name)?, scale));
        }
    }
    for v in &m.control_vector {
        for item in values::csv_row(v) {
            a.control_vectors
                .push((adapter_file("--control-vector", &item)?, 1.0));
        }
    }
    for v in &m.control_vector_scaled {
        for (name, scale) in values::parse_scaled("--control-vector-scaled", v)? {
            a.control_vectors
                .push((adapter_file("--control-vector-scaled", &name)?, scale));
        }
    }
    if let Some(r) = &m.control_vector_layer_range {
        a.cvec_layers = values::parse_layer_range(r)?;
    }
    for v in &m.override_kv {
        for item in values::csv_row(v) {
            a.kv_overrides.push(parse_kv_override(&item)?);
        }
    }
    Ok(a)
}

/// `--gem-device`: where the filter pass's model goes, when not where `-dev` puts the full one.
fn gem_device(model: &mut ModelSettings, g: &GemArgs, steps: &mut Vec<Step>) -> Result<()> {
    model.load.placement.filter_devices = g
        .gem_device
        .as_deref()
        .map(|d| values::parse_devices("--gem-device", d))
        .transpose()?;
    ensure!(
        g.gem_device.is_none() || g.gem == OnOff::On,
        "--gem-device places the filter pass, which --gem off does not run"
    );
    if g.gem_device.is_some() {
        steps.push(Step::Probe {
            load: Box::new(model.load.for_filter()),
            flag: "--gem-device",
        });
    }
    Ok(())
}

/// `gemfilter serve`: its own checks, then the CLI's model, sampling and `--gem-*` flags.
fn serve(
    a: &super::serve::ServeArgs,
    steps: &mut Vec<Step>,
) -> Result<crate::server::ServeSettings> {
    super::serve::check(a)?;
    let sampling = sampling(&a.run.sampling)?;
    let model = model(&a.run.model, steps)?;
    let gem = match a.run.gem.gem {
        OnOff::On => {
            let mut g = gem(&a.run.gem, &model, steps)?;
            if a.run.gem.gem_min_tokens.is_none() && model.load.offloads_to_gpu() {
                g.min_tokens = SERVE_GPU_MIN_TOKENS;
            }
            Some(g)
        }
        OnOff::Off => None,
    };
    let key = super::serve::api_key(a, |f| read_prompt_file(f, 64 << 10))?;
    super::serve::settings(a, model, sampling, gem, key)
}

/// `gemfilter rpc-server`.
fn rpc_server(
    a: &super::tools::RpcServerArgs,
) -> Result<crate::tools::rpc_server::RpcServerSettings> {
    ensure!(
        !a.host.is_empty() && !a.host.contains(char::is_whitespace),
        "-H: bad host {}",
        crate::sanitize::quote(&a.host)
    );
    ensure!(a.port > 0, "-p: port must be between 1 and 65535");
    let threads = match a.threads {
        Some(t) => {
            usize::try_from(threads("-t", i32::try_from(t).unwrap_or(i32::MAX))?).unwrap_or(1)
        }
        None => cores(),
    };
    Ok(crate::tools::rpc_server::RpcServerSettings {
        host: a.host.clone(),
        port: a.port,
        cache: a.cache,
        threads,
        mem: a
            .mem
            .map(|m| {
                m.checked_mul(1 << 20)
                    .filter(|&b| b > 0)
                    .context("-m: give the memory in MiB, at least 1")
            })
            .transpose()?,
    })
}

/// Refuse architectures whose graphs GemFilter has not been checked on.
fn supported(meta: &ModelMeta) -> Result<()> {
    if !SUPPORTED_ARCHS.contains(&meta.architecture.as_str()) {
        bail!(
            "architecture {} is not supported by GemFilter (supported: {}); run it with --gem off",
            crate::sanitize::quote(&meta.architecture),
            SUPPORTED_ARCHS.join(", ")
        );
    }
    Ok(())
}

/// The model that selects and its layer flag: with `--gem-draft` everything about the
/// selection (preset, calibration, layer) is the draft's.
fn selector(args: &GemArgs, model: &ModelSettings) -> Result<(ModelSettings, Option<usize>)> {
    let Some(path) = &args.gem_draft else {
        ensure!(
            args.gem_draft_layer.is_none(),
            "--gem-draft-layer needs --gem-draft"
        );
        return Ok((model.clone(), args.gem_layer));
    };
    ensure!(
        args.gem_layer.is_none(),
        "--gem-layer is the target's filter layer; with --gem-draft give the draft's as --gem-draft-layer"
    );
    let meta = gguf_info::read(path)?;
    supported(&meta)?;
    let draft = ModelSettings {
        path: path.clone(),
        meta,
        ..model.clone()
    };
    Ok((draft, args.gem_draft_layer))
}

/// The filter layer, k and scoring: flags over presets over the fallback rule, validated
/// against the model; a first-use calibration is left to `steps`, which settles the result.
///
/// # Errors
/// Impossible layer or k, sliding-window layers, unsupported architectures, bad scorings.
pub fn gem(args: &GemArgs, model: &ModelSettings, steps: &mut Vec<Step>) -> Result<GemSettings> {
    supported(&model.meta)?;
    let adjust = &model.load.adjust;
    ensure!(
        args.gem_draft.is_none()
            || (adjust.lora.is_empty()
                && adjust.control_vectors.is_empty()
                && adjust.kv_overrides.is_empty()),
        "--lora, --control-vector and --override-kv change -m's model, and --gem-draft selects with another model they do not fit: drop --gem-draft (or them)"
    );
    if !adjust.lora.is_empty() && args.gem_prefix == OnOff::On {
        crate::notice!("--lora: the filter pass runs on the full model with the adapter (a prefix model has no place for the adapter's later layers)");
    }
    let (selector, layer_flag) = selector(args, model)?;
    let meta = &selector.meta;
    let (user, builtin) = crate::presets::load()?;
    let preset = crate::presets::resolve(meta, user.as_ref(), &builtin);
    let calibrate = match args.gem_calibrate {
        Calibrate::Force => true,
        Calibrate::Auto => preset.label.is_none() && layer_flag.is_none(),
        Calibrate::Off => false,
    };
    if calibrate {
        steps.push(Step::Calibrate(Box::new(Calibration {
            args: args.clone(),
            model: model.clone(),
            selector: selector.clone(),
            preset: preset.clone(),
            top_k: args.gem_topk.unwrap_or(preset.top_k).max(1),
            layers: (0..meta.block_count)
                .filter(|&l| !meta.is_sliding_layer(l))
                .collect(),
        })));
    } else if preset.label.is_none() && layer_flag.is_none() {
        crate::notice!(
            "no preset for {} ({} layers): using the uncalibrated filter layer {} (--gem-calibrate auto finds a better one)",
            meta.display_name(),
            meta.block_count,
            preset.layer
        );
    }
    gem_settings(args, model, &selector, layer_flag, &preset)
}

/// The filter layer, k and scoring from the flags over `preset`, validated against the model.
fn gem_settings(
    args: &GemArgs,
    model: &ModelSettings,
    selector: &ModelSettings,
    layer_flag: Option<usize>,
    preset: &crate::presets::Preset,
) -> Result<GemSettings> {
    let meta = &selector.meta;
    let layer = layer_flag.unwrap_or(preset.layer);
    let flag = if args.gem_draft.is_some() {
        "--gem-draft-layer"
    } else {
        "--gem-layer"
    };
    check_layer(meta, layer, flag)?;
    let top_k = args.gem_topk.unwrap_or(preset.top_k);
    ensure!(top_k >= 1, "--gem-topk must be at least 1");
    let mut spec = match args.gem_scoring.as_deref() {
        Some(text) => text
            .parse::<ScoringSpec>()
            .map_err(|e| anyhow::anyhow!("--gem-scoring: {e}"))?,
        None => preset.spec,
    };
    if let Some(w) = args.gem_window {
        ensure!(w >= 1, "--gem-window must be at least 1");
        spec = spec.with_window(w);
    }
    if let Some(p) = args.gem_pool {
        spec = spec.with_pool(p);
    }
    spec.validate(None).map_err(anyhow::Error::msg)?;
    if let Some(&l) = spec
        .capture_layers(layer)
        .iter()
        .find(|&&l| meta.is_sliding_layer(l))
    {
        bail!("scoring {spec} at layer {layer} would read sliding-window layer {l}; use one layer");
    }
    let ctx_limit = usize::try_from(model.ctx_limit()).unwrap_or(usize::MAX);
    ensure!(
        spec.pool <= ctx_limit,
        "--gem-pool {} is wider than the context ({ctx_limit} tokens)",
        spec.pool
    );
    // Measuring tools (bench, niah) always filter unless told otherwise; only the default mode
    // answers short prompts whole on a GPU (see `run`).
    let min_tokens = args.gem_min_tokens.unwrap_or(0);
    Ok(GemSettings {
        layer,
        top_k,
        spec,
        no_early_exit: args.gem_no_early_exit,
        prefix: args.gem_prefix == OnOff::On && model.load.adjust.lora.is_empty(),
        ubatch: args.gem_ubatch.filter(|&u| u > 0),
        min_tokens,
        k_source: match args.gem_k_source {
            KSourceArg::Auto => None,
            KSourceArg::Ubatch => Some(KSource::Ubatch),
            KSourceArg::Cache => Some(KSource::Cache),
        },
        score_on: match args.gem_score_on {
            ScoreOnArg::Auto => ScoreOn::Auto,
            ScoreOnArg::Host => ScoreOn::Host,
            ScoreOnArg::Graph => ScoreOn::Graph,
        },
        draft: args.gem_draft.as_ref().map(|_| crate::draft::Draft {
            name: selector.name(),
            n_layer: meta.block_count,
            path: selector.path.clone(),
        }),
        positions: args.gem_positions,
    })
}

fn check_layer(meta: &ModelMeta, layer: usize, flag: &str) -> Result<()> {
    if layer >= meta.block_count {
        bail!(
            "{flag} {layer} is out of range: the model has {} layers (0..{})",
            meta.block_count,
            meta.block_count.saturating_sub(1)
        );
    }
    if meta.is_sliding_layer(layer) {
        let global: Vec<String> = (0..meta.block_count)
            .filter(|&il| !meta.is_sliding_layer(il))
            .map(|il| il.to_string())
            .collect();
        bail!(
            "layer {layer} of {} is a sliding-window layer (it only sees the last {} tokens) and cannot select; \
             use a global layer: {}",
            meta.display_name(),
            meta.sliding_window.unwrap_or(0),
            global.join(", ")
        );
    }
    Ok(())
}

fn finite_in(flag: &str, v: f32, lo: f32, hi: f32) -> Result<f32> {
    ensure!(
        v.is_finite() && (lo..=hi).contains(&v),
        "{flag} must be a number in [{lo}, {hi}], got {v}"
    );
    Ok(v)
}

fn finite(flag: &str, v: f32) -> Result<f32> {
    ensure!(v.is_finite(), "{flag} must be a finite number, got {v}");
    Ok(v)
}

/// `--samplers` (names separated by ';') or `--sampler-seq` (one letter each); llama.cpp
/// skips names it does not know with a warning, gemfilter refuses them.
fn stages(s: &SamplingArgs) -> Result<Vec<Stage>> {
    if let Some(list) = &s.samplers {
        return list
            .split(';')
            .map(|n| {
                Stage::from_name(n).with_context(|| {
                    format!(
                        "--samplers: unknown sampler {} (penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p, xtc, temperature)",
                        crate::sanitize::quote(n)
                    )
                })
            })
            .collect();
    }
    if let Some(seq) = &s.sampler_seq {
        return seq
            .chars()
            .map(|c| {
                Stage::from_char(c).with_context(|| {
                    format!("--sampler-seq: unknown sampler letter {c:?} (of edskypmxt)")
                })
            })
            .collect();
    }
    Ok(Stage::DEFAULT.to_vec())
}

/// `-l TOKEN_ID(+/-)BIAS`, as llama.cpp reads it.
fn logit_bias(text: &str) -> Result<(i32, f32)> {
    let bad = || {
        anyhow::anyhow!(
            "-l: invalid logit bias {} (TOKEN_ID+BIAS or TOKEN_ID-BIAS, e.g. 15043+1)",
            crate::sanitize::quote(text)
        )
    };
    let t = text.trim_start();
    let digits = t
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(t.len(), |(i, _)| i);
    let (id, rest) = t.split_at(digits);
    let id: i32 = id.parse().map_err(|_| bad())?;
    let rest = rest.trim_start();
    let (sign, value) = match rest.chars().next() {
        Some('+') => (1.0, &rest[1..]),
        Some('-') => (-1.0, &rest[1..]),
        _ => return Err(bad()),
    };
    let v: f32 = value.trim().parse().map_err(|_| bad())?;
    Ok((id, sign * v))
}

/// Sampling flags, range-checked (llama-cli's meanings).
///
/// # Errors
/// NaN or out-of-range values, unknown samplers, a malformed logit bias or an unreadable
/// grammar file.
pub fn sampling(s: &SamplingArgs) -> Result<Sampling> {
    finite("--temp", s.temp)?;
    ensure!(
        s.repeat_penalty.is_finite() && s.repeat_penalty > 0.0,
        "--repeat-penalty must be a positive number, got {}",
        s.repeat_penalty
    );
    // llama.cpp refuses negative counts here (it once read -1 as the context size).
    ensure!(
        s.repeat_last_n >= 0,
        "--repeat-last-n must be 0 (off) or a count of tokens, got {}",
        s.repeat_last_n
    );
    ensure!(
        s.dry_penalty_last_n >= 0,
        "--dry-penalty-last-n must be 0 (off) or a count of tokens, got {}",
        s.dry_penalty_last_n
    );
    ensure!(
        (0..=2).contains(&s.mirostat),
        "--mirostat must be 0 (off), 1 or 2, got {}",
        s.mirostat
    );
    let read = |flag: &str, f: &Path| {
        read_prompt_file(f, MIN_PROMPT_BYTES).map_err(|e| {
            anyhow::anyhow!(
                "{flag}: {}",
                format!("{e:#}").replacen("prompt file ", "", 1)
            )
        })
    };
    let schema = |flag: &str, text: &str| {
        llama_cpp_2::json_schema_to_grammar(text)
            .map_err(|e| anyhow::anyhow!("{flag}: not a JSON schema llama.cpp can convert ({e})"))
    };
    let grammar = if let Some(g) = &s.grammar {
        Some(g.clone())
    } else if let Some(f) = &s.grammar_file {
        Some(read("--grammar-file", f)?)
    } else if let Some(j) = &s.json_schema {
        Some(schema("-j", j)?)
    } else if let Some(f) = &s.json_schema_file {
        Some(schema("-jf", &read("-jf", f)?)?)
    } else {
        None
    };
    let defaults = Sampling::default();
    // llama.cpp: --dry-sequence-breaker replaces the defaults; "none" clears them.
    let dry_breakers = if s.dry_sequence_breaker.is_empty() {
        defaults.dry_breakers.clone()
    } else {
        s.dry_sequence_breaker
            .iter()
            .filter(|b| b.as_str() != "none")
            .cloned()
            .collect()
    };
    Ok(Sampling {
        temp: s.temp,
        top_k: s.top_k,
        top_p: finite_in("--top-p", s.top_p, 0.0, 1.0)?,
        min_p: finite_in("--min-p", s.min_p, 0.0, 1.0)?,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n,
        presence_penalty: finite("--presence-penalty", s.presence_penalty)?,
        frequency_penalty: finite("--frequency-penalty", s.frequency_penalty)?,
        dry_multiplier: finite("--dry-multiplier", s.dry_multiplier)?,
        dry_base: if finite("--dry-base", s.dry_base)? >= 1.0 {
            s.dry_base
        } else {
            defaults.dry_base
        },
        dry_allowed_length: s.dry_allowed_length,
        dry_penalty_last_n: s.dry_penalty_last_n,
        dry_breakers,
        top_n_sigma: finite("--top-nsigma", s.top_nsigma)?,
        xtc_probability: finite("--xtc-probability", s.xtc_probability)?,
        xtc_threshold: finite("--xtc-threshold", s.xtc_threshold)?,
        typical_p: finite("--typical", s.typical)?,
        dynatemp_range: finite("--dynatemp-range", s.dynatemp_range)?,
        dynatemp_exponent: finite("--dynatemp-exp", s.dynatemp_exp)?,
        mirostat: u8::try_from(s.mirostat).unwrap_or(0),
        mirostat_tau: finite("--mirostat-ent", s.mirostat_ent)?,
        mirostat_eta: finite("--mirostat-lr", s.mirostat_lr)?,
        adaptive_target: finite("--adaptive-target", s.adaptive_target)?,
        adaptive_decay: finite("--adaptive-decay", s.adaptive_decay)?,
        stages: stages(s)?,
        logit_bias: s
            .logit_bias
            .iter()
            .map(|b| logit_bias(b))
            .collect::<Result<_>>()?,
        grammar,
        ban_eog: s.ignore_eos,
        // llama.cpp reads the seed as unsigned; -1 (LLAMA_DEFAULT_SEED) means random.
        seed: if s.seed < 0 {
            u32::MAX
        } else {
            u32::try_from(s.seed).unwrap_or(u32::MAX)
        },
    })
}

/// `-p`/`-r` text with llama-cli's escape processing unless `--no-escape`.
fn unescape(p: &PromptArgs, text: &str) -> String {
    if p.no_escape {
        text.to_owned()
    } else {
        prompt::process_escapes(text)
    }
}

/// Read a prompt file of at most `limit` bytes; larger or endless input is refused before it
/// is read whole.
///
/// # Errors
/// Missing, unreadable, directory, too large, or not UTF-8.
pub fn read_prompt_file(path: &Path, limit: u64) -> Result<String> {
    let shown = crate::sanitize::quote(&path.display().to_string());
    if path.is_dir() {
        bail!("prompt file {shown} is a directory");
    }
    // A FIFO or device would block the read or never end: regular files only.
    let file = crate::fsutil::open_following(path, "prompt file")?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read prompt file {shown}"))?;
    if bytes.len() as u64 > limit {
        bail!(
            "prompt file {shown} is larger than {} MiB, more text than the context can hold",
            limit.div_ceil(1 << 20)
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "prompt file {shown} is not valid UTF-8 (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn prompt_limit(model: &ModelSettings) -> u64 {
    (u64::from(model.ctx_limit()).saturating_mul(PROMPT_BYTES_PER_TOKEN)).max(MIN_PROMPT_BYTES)
}

fn prompt_input(p: &PromptArgs, model: &ModelSettings) -> Result<PromptInput> {
    let system = match &p.system_prompt_file {
        Some(f) => Some(read_prompt_file(f, prompt_limit(model)).map_err(|e| {
            anyhow::anyhow!(
                "-sysf: {}",
                format!("{e:#}").replacen("prompt file ", "", 1)
            )
        })?),
        None => p.system_prompt.clone(),
    };
    let input = PromptInput {
        system,
        context: p
            .file
            .as_deref()
            .map(|f| read_prompt_file(f, prompt_limit(model)))
            .transpose()?,
        question: p.prompt.as_deref().map(|q| unescape(p, q)),
        history: Vec::new(),
    };
    if input.is_empty() {
        bail!(prompt::EMPTY_PROMPT);
    }
    Ok(input)
}

/// `--chat-template NAME`, or the text of `--chat-template-file`.
fn chat_template(p: &PromptArgs) -> Result<Option<String>> {
    Ok(match &p.chat_template_file {
        Some(f) => Some(read_prompt_file(f, MIN_PROMPT_BYTES).map_err(|e| {
            anyhow::anyhow!(
                "--chat-template-file: {}",
                format!("{e:#}").replacen("prompt file ", "", 1)
            )
        })?),
        None => p.chat_template.clone(),
    })
}

/// `--jinja` and the reasoning options, validated as llama.cpp does.
fn chat_settings(p: &PromptArgs) -> Result<crate::prompt::ChatSettings> {
    use crate::prompt::{template_kwargs, ChatSettings, KwargOptions, ReasoningFormat};
    let budget = p.reasoning_budget.unwrap_or(-1);
    ensure!(
        budget >= -1,
        "--reasoning-budget must be -1 (unrestricted), 0 or a token count, not {budget}"
    );
    let reasoning = match p.reasoning {
        Some(OnOffAuto::On) => Some(true),
        Some(OnOffAuto::Off) => Some(false),
        Some(OnOffAuto::Auto) | None => None,
    };
    let preserve = if p.reasoning_preserve {
        Some(true)
    } else if p.no_reasoning_preserve {
        Some(false)
    } else {
        None
    };
    let kwargs = template_kwargs(&KwargOptions {
        json: p.chat_template_kwargs.as_deref(),
        reasoning,
        effort: p.reasoning_effort.as_deref(),
        preserve,
    })?;
    Ok(ChatSettings {
        jinja: p.jinja,
        reasoning,
        // Resolved once per process; a 'static text keeps the settings `Copy`.
        kwargs: Box::leak(kwargs.into_boxed_str()),
        reasoning_format: p
            .reasoning_format
            .as_deref()
            .map_or(Ok(ReasoningFormat::Deepseek), ReasoningFormat::from_name)?,
        reasoning_budget: budget,
    })
}

/// llama-cli's rule: `-cnv` forces conversation mode, `-st` and `-no-cnv` rule it out, and
/// otherwise a model with a chat template talks when standard input is a terminal (here also
/// only when there is a document to keep and GemFilter runs on the target itself).
fn conversation(
    a: &RunArgs,
    single_turn: bool,
    model: &ModelSettings,
    gem: Option<&GemSettings>,
) -> bool {
    if a.prompt.conversation {
        return true;
    }
    !single_turn
        && !a.prompt.no_conversation
        && model.meta.has_chat_template
        && a.prompt.file.is_some()
        && gem.is_some_and(|g| g.draft.is_none())
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
}

fn run(
    a: &RunArgs,
    c: &CompletionArgs,
    single_turn: bool,
    steps: &mut Vec<Step>,
) -> Result<RunSettings> {
    ensure!(
        a.sampling.n_predict >= -1,
        "-n must be -1 (unlimited) or a count"
    );
    let sampling = sampling(&a.sampling)?;
    let mut model = model(&a.model, steps)?;
    gem_device(&mut model, &a.gem, steps)?;
    let input = prompt_input(&a.prompt, &model)?;
    let gem = match a.gem.gem {
        OnOff::On => {
            let mut g = gem(&a.gem, &model, steps)?;
            if a.gem.gem_min_tokens.is_none() && model.load.offloads_to_gpu() {
                g.min_tokens = GPU_MIN_TOKENS;
            }
            Some(g)
        }
        OnOff::Off => None,
    };
    let conversation = conversation(a, single_turn, &model, gem.as_ref());
    let (interactive, self_extend) = completion(c, a, conversation, &model, gem.as_ref())?;
    Ok(RunSettings {
        limits: GenLimits {
            n_predict: a.sampling.n_predict,
            ignore_eos: a.sampling.ignore_eos,
            reverse_prompts: a
                .sampling
                .reverse_prompt
                .iter()
                .map(|r| unescape(&a.prompt, r))
                .collect(),
            special: a.prompt.special,
            shift: (a.sampling.context_shift && !a.sampling.no_context_shift)
                .then_some(a.sampling.keep),
        },
        interactive,
        self_extend,
        sampling,
        input,
        no_conversation: a.prompt.no_conversation,
        conversation,
        prompt_cache: a.prompt.prompt_cache.clone(),
        cache_save: prompt_cache(a, conversation, single_turn, gem.as_ref())?,
        output_file: a.prompt.output_file.clone(),
        chat_template: chat_template(&a.prompt)?,
        chat: chat_settings(&a.prompt)?,
        gem,
        protect: a.gem.gem_protect,
        echo_prompt: a.prompt.no_conversation && !a.sampling.no_display_prompt && !a.gem.json,
        show_selection: a.gem.gem_show,
        json: a.gem.json,
        perf: a.sampling.perf,
        model,
    })
}

/// llama-completion's interactive mode and self-extend. Conversation mode (`-cnv`) is
/// interactive already: `-i`/`-if` add nothing there, and llama.cpp ignores `--in-prefix` and
/// `--in-suffix` in it. Raw-text interactive mode needs `-no-cnv` on a model with a chat
/// template (llama-completion would chat through the template).
fn completion(
    c: &CompletionArgs,
    a: &RunArgs,
    conversation: bool,
    model: &ModelSettings,
    gem: Option<&GemSettings>,
) -> Result<(
    Option<crate::settings::Interactive>,
    Option<crate::generate::SelfExtend>,
)> {
    let (n, w) = (c.grp_attn_n, c.grp_attn_w);
    let extend = if n == 1 {
        None
    } else {
        ensure!(n > 0, "-gan (--grp-attn-n) must be positive, not {n}");
        ensure!(
            w > 0 && w % n == 0,
            "-gaw (--grp-attn-w) must be a positive multiple of -gan (--grp-attn-n) {n}, not {w}"
        );
        let n = u8::try_from(n)
            .ok()
            .and_then(std::num::NonZeroU8::new)
            .context("-gan (--grp-attn-n) must be at most 255 here")?;
        Some(crate::generate::SelfExtend {
            n,
            w: w.unsigned_abs(),
        })
    };
    if conversation {
        ensure!(
            extend.is_none(),
            "-gan: self-extend runs on raw text (-no-cnv), not in conversation mode (-cnv)"
        );
        ensure!(
            !c.multiline_input && !c.in_prefix_bos,
            "{}: not in conversation mode (-cnv), which reads one question per line",
            if c.multiline_input {
                "-mli"
            } else {
                "--in-prefix-bos"
            }
        );
        if c.in_prefix.is_some() || c.in_suffix.is_some() {
            crate::notice!("--in-prefix and --in-suffix have no effect in conversation mode (-cnv), as in llama.cpp");
        }
        return Ok((None, None));
    }
    let interactive = c.interactive || c.interactive_first;
    if !interactive && c.any_interactive() {
        crate::notice!(
            "-mli, --in-prefix, --in-suffix and --in-prefix-bos have no effect without -i or -if"
        );
    }
    if interactive {
        ensure!(
            a.prompt.no_conversation || !model.meta.has_chat_template,
            "-i: with this model's chat template llama-completion chats (here: -cnv, questions about a -f document); add -no-cnv for raw-text interactive mode"
        );
    }
    if interactive || extend.is_some() {
        let flag = if interactive { "-i" } else { "-gan" };
        ensure!(
            a.prompt.prompt_cache.is_none() && a.prompt.output_file.is_none(),
            "{}: not with {flag} (conversation mode's document cache and transcript)",
            if a.prompt.output_file.is_some() {
                "-o"
            } else {
                "--prompt-cache"
            }
        );
        ensure!(
            !a.gem.json,
            "--json: not with {flag} (no single record to print)"
        );
        ensure!(
            gem.is_none_or(|g| g.positions == crate::settings::Positions::Compact),
            "--gem-positions original: not with {flag}, which needs the selection at 0..k"
        );
    }
    let interactive = interactive.then(|| crate::settings::Interactive {
        first: c.interactive_first,
        multiline: c.multiline_input,
        prefix_bos: c.in_prefix_bos,
        prefix: c
            .in_prefix
            .as_deref()
            .map(|t| unescape(&a.prompt, t))
            .unwrap_or_default(),
        suffix: c
            .in_suffix
            .as_deref()
            .map(|t| unescape(&a.prompt, t))
            .unwrap_or_default(),
        escape: !a.prompt.no_escape,
    });
    Ok((interactive, extend))
}

/// `--prompt-cache` and its switches (llama-completion's): the cache holds GemFilter's filter
/// state of the `-f` document, so it needs both; `--prompt-cache-all` is one answer's, as
/// llama-completion refuses it in interactive mode.
fn prompt_cache(
    a: &RunArgs,
    conversation: bool,
    single_turn: bool,
    gem: Option<&GemSettings>,
) -> Result<crate::doc_state::Save> {
    use crate::doc_state::Save;
    let p = &a.prompt;
    if p.prompt_cache.is_none() {
        for (on, flag) in [
            (p.prompt_cache_ro, "--prompt-cache-ro"),
            (p.prompt_cache_all, "--prompt-cache-all"),
        ] {
            if on {
                crate::notice!("{flag} does nothing without --prompt-cache FNAME");
            }
        }
        return Ok(Save::Document);
    }
    ensure!(
        gem.is_some_and(|g| g.draft.is_none()),
        "--prompt-cache keeps GemFilter's filter state of the -f document: it needs GemFilter on \
         the target (no --gem off, no --gem-draft)"
    );
    ensure!(
        p.file.is_some(),
        "--prompt-cache keeps the filter state of the -f document: give the document with -f"
    );
    ensure!(
        !p.prompt_cache_all || !conversation || single_turn,
        "--prompt-cache-all saves one answer (llama-completion refuses it in interactive mode): \
         add -st, or drop it for conversation mode"
    );
    Ok(if p.prompt_cache_ro {
        Save::Never
    } else if p.prompt_cache_all {
        Save::WithAnswer
    } else {
        Save::Document
    })
}

/// Refuse (never clamp) lengths the model's context cannot hold with `extra` tokens more.
/// Lengths must fit the training context, or `-c` when given (as llama.cpp, which lets `-c`
/// pass the training context: with `--rope-scaling yarn --rope-scale 4` a 32K model reads 128K).
fn fit_lengths(lengths: &[usize], model: &ModelSettings, extra: usize, flag: &str) -> Result<()> {
    let (ctx, what) = if model.ctx_size > 0 {
        (Some(model.ctx_size as usize), "-c")
    } else {
        (model.meta.context_length, "the model's training context")
    };
    if let Some(ctx) = ctx {
        if let Some(&l) = lengths.iter().find(|&&l| l.saturating_add(extra) >= ctx) {
            bail!("{flag}: length {l} (+{extra} to generate) does not fit {what} of {ctx} tokens");
        }
    }
    Ok(())
}

fn bench(a: &BenchArgs, steps: &mut Vec<Step>) -> Result<BenchSettings> {
    let lengths = values::parse_lengths(a.prompts.lengths.as_deref().unwrap_or(BENCH_LENGTHS))
        .context("--lengths")?;
    ensure!(
        (0..=1 << 20).contains(&a.n_decode),
        "--n-decode must be between 0 and 1048576"
    );
    let mut model = model(&a.model, steps)?;
    gem_device(&mut model, &a.gem, steps)?;
    let n_decode = usize::try_from(a.n_decode).unwrap_or(0);
    fit_lengths(&lengths, &model, n_decode + 1, "--lengths")?;
    let gem = gem(&a.gem, &model, steps)?;
    ensure!(a.turns <= 64, "--turns must be at most 64");
    ensure!(
        a.turns == 0 || gem.draft.is_none(),
        "--turns measures conversation mode, which selects with the target itself: drop --gem-draft"
    );
    Ok(BenchSettings {
        lengths,
        n_decode: a.n_decode,
        turns: a.turns,
        haystack: a.prompts.haystack.clone(),
        output: a.output.clone(),
        standard: !a.no_standard,
        json: a.gem.json,
        gem,
        model,
    })
}

/// `--scorings` × `--pools` (every scoring tried with every kernel).
fn scorings_with_pools(
    list: &str,
    pools: &[usize],
    window: Option<usize>,
) -> Result<Vec<ScoringSpec>> {
    let base = scoring::parse_list(list)
        .map_err(anyhow::Error::msg)
        .context("--scorings")?;
    let mut out = Vec::new();
    for s in base {
        let s = match window {
            Some(w) => s.with_window(w),
            None => s,
        };
        for &p in pools {
            let spec = s.with_pool(p);
            if !out.contains(&spec) {
                out.push(spec);
            }
        }
    }
    Ok(out)
}

/// Every global layer, or the listed ones.
fn probe_layers(list: Option<&str>, meta: &ModelMeta) -> Result<Vec<usize>> {
    let all = match list {
        Some(s) => values::parse_layers(s, meta.block_count)?,
        None => (0..meta.block_count).collect(),
    };
    let global: Vec<usize> = all
        .into_iter()
        .filter(|&l| !meta.is_sliding_layer(l))
        .collect();
    ensure!(
        !global.is_empty(),
        "every listed layer is a sliding-window layer, which cannot select"
    );
    Ok(global)
}

fn niah(a: &NiahArgs, steps: &mut Vec<Step>) -> Result<NiahSettings> {
    let lengths = values::parse_lengths(a.prompts.lengths.as_deref().unwrap_or(NIAH_LENGTHS))
        .context("--lengths")?;
    let depths = values::parse_depths(&a.depths).context("--depths")?;
    let needles = needles::parse_list(&a.needles).context("--needles")?;
    ensure!(
        !a.variants.is_empty() && !a.methods.is_empty(),
        "--variants and --methods need at least one value"
    );
    ensure!(
        (1..=1 << 16).contains(&a.n_predict),
        "-n must be between 1 and 65536"
    );
    if let Some(h) = &a.prompts.haystack {
        ensure!(
            h.exists(),
            "haystack {} does not exist",
            crate::sanitize::quote(&h.display().to_string())
        );
    }
    let mut model = model(&a.model, steps)?;
    gem_device(&mut model, &a.gem, steps)?;
    fit_lengths(
        &lengths,
        &model,
        usize::try_from(a.n_predict).unwrap_or(0),
        "--lengths",
    )?;
    let gem_settings = gem(&a.gem, &model, steps)?;
    let layers = match &a.layers {
        Some(l) => Some(probe_layers(Some(l), &model.meta)?),
        None => None,
    };
    let pools = values::parse_pools(&a.pools)?;
    let tasks = match a.tasks.as_deref() {
        None => Vec::new(),
        Some("all") => crate::eval::ruler::Task::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<crate::eval::ruler::Task>()
                    .map_err(|e| anyhow::anyhow!("--tasks: {e}"))
            })
            .collect::<Result<Vec<_>>>()?,
    };
    ensure!(
        a.tasks.is_none() || !tasks.is_empty(),
        "--tasks lists no task"
    );
    ensure!(
        (1..=10_000).contains(&a.samples),
        "--samples must be between 1 and 10000"
    );
    let experiment = match layers {
        Some(layers) => {
            ensure!(
                tasks.is_empty(),
                "--layers measures recall per layer on the needle grid: drop --tasks"
            );
            Experiment::Layers {
                layers,
                scorings: scorings_with_pools(&a.scorings, &pools, a.gem.gem_window)?,
            }
        }
        None if !tasks.is_empty() => Experiment::Tasks {
            tasks,
            samples: a.samples,
        },
        None => Experiment::Needles,
    };
    Ok(NiahSettings {
        experiment,
        methods: if a.gem.gem == OnOff::Off {
            vec![crate::eval::niah::Method::Full]
        } else {
            a.methods.clone()
        },
        gem: gem_settings,
        protect: a.gem.gem_protect,
        haystack: a.prompts.haystack.clone(),
        lengths,
        depths,
        needles,
        variants: a.variants.clone(),
        style: a.style,
        chat_template: a.chat_template.clone(),
        n_predict: a.n_predict,
        seed: a.seed,
        output: a.output.clone(),
        fresh: a.fresh,
        report_only: a.report_only,
        model,
    })
}

fn layers(a: &LayersArgs, steps: &mut Vec<Step>) -> Result<LayersSettings> {
    let r = &a.run;
    let model = model(&r.model, steps)?;
    ensure!(
        r.prompt.file.is_some(),
        "layers needs -f FILE with the haystack that holds --needle"
    );
    let input = prompt_input(&r.prompt, &model)?;
    ensure!(
        chat_settings(&r.prompt)? == crate::prompt::ChatSettings::default(),
        "layers renders the prompt with the built-in formatter: drop --jinja, \
         --chat-template-kwargs and the --reasoning options"
    );
    ensure!(
        input
            .context
            .as_deref()
            .is_some_and(|c| c.contains(&a.needle)),
        "the --needle text is not in the -f file"
    );
    let top_k = r.gem.gem_topk.unwrap_or(1024);
    ensure!(top_k >= 1, "--gem-topk must be at least 1");
    Ok(LayersSettings {
        layers: probe_layers(a.layers.as_deref(), &model.meta)?,
        scorings: scorings_with_pools(
            &a.scorings,
            &[crate::select::POOL_KERNEL],
            r.gem.gem_window,
        )?,
        needle: a.needle.clone(),
        input,
        no_conversation: r.prompt.no_conversation,
        chat_template: chat_template(&r.prompt)?,
        protect: r.gem.gem_protect,
        top_k,
        model,
    })
}

fn calibrate(a: &CalibrateArgs, steps: &mut Vec<Step>) -> Result<CalibrateSettings> {
    ensure!(a.top_k >= 1, "--gem-topk must be at least 1");
    let model = model(&a.model, steps)?;
    supported(&model.meta)?;
    let lengths = match &a.prompts.lengths {
        Some(s) => values::parse_lengths(s).context("--lengths")?,
        None => crate::eval::calibrate::default_lengths(&model.meta),
    };
    fit_lengths(&lengths, &model, 0, "--lengths")?;
    Ok(CalibrateSettings {
        lengths,
        depths: values::parse_depths(&a.depths).context("--depths")?,
        scorings: scorings_with_pools(&a.scorings, &[crate::select::POOL_KERNEL], None)?,
        layers: probe_layers(None, &model.meta)?,
        top_k: a.top_k,
        protect: a.protect,
        style: a.style,
        haystack: a.prompts.haystack.clone(),
        write: a.write,
        context_k: false,
        model,
    })
}

fn synth(a: &SynthArgs) -> Result<crate::tools::synth::SynthJob> {
    crate::tools::synth::SynthJob::new(
        a.list,
        a.shape.as_deref(),
        a.output.clone(),
        a.weight_type,
        a.seed,
        a.layers,
        a.ctx,
    )
}
