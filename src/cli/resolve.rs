//! The second stage of the command line (ripgrep's low/high args): parsed flags, the model's
//! GGUF header and the presets become typed, validated settings, once, for every mode. Every
//! flag is checked here, with its name in the error; the modes never see a flag.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use llama_cpp_2::context::params::KvCacheType;

use super::eval::{CalibrateArgs, LayersArgs, NiahArgs};
use super::llama::{
    Calibrate, GemArgs, KSourceArg, ModelArgs, OnOff, OnOffAuto, PromptArgs, RunArgs, SamplingArgs,
};
use super::tools::{BenchArgs, SynthArgs};
use super::values;
use super::{Cli, Command};
use crate::capture::KSource;
use crate::engine::{ContextOptions, LoadOptions, Placement};
use crate::eval::calibrate::CalibrateSettings;
use crate::eval::layers::LayersSettings;
use crate::eval::niah::{needles, NiahSettings};
use crate::generate::{GenLimits, Sampling};
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

/// Resolve the command line.
///
/// # Errors
/// Any invalid flag, an unreadable or malformed model header, a bad prompt file.
pub fn resolve(cli: Cli) -> Result<Mode> {
    if let Some(m) = cli.model_args().filter(|m| m.list_devices) {
        return Ok(Mode::ListDevices(load_options(m)?));
    }
    Ok(match cli.command {
        None => Mode::Run(Box::new(run(&cli.run, cli.single_turn)?)),
        Some(Command::Bench(a)) => Mode::Bench(Box::new(bench(&a)?)),
        Some(Command::Niah(a)) => Mode::Niah(Box::new(niah(&a)?)),
        Some(Command::Layers(a)) => Mode::Layers(Box::new(layers(&a)?)),
        Some(Command::Calibrate(a)) => Mode::Calibrate(Box::new(calibrate(&a)?)),
        Some(Command::Synth(a)) => Mode::Synth(synth(&a)?),
        Some(Command::RpcServer(a)) => Mode::RpcServer(rpc_server(&a)?),
        Some(Command::Serve(a)) => Mode::Serve(Box::new(super::serve::settings(&a, st)?)),
    })
}

/// Threads above this multiple of the cores are refused: they only thrash.
const MAX_THREADS_PER_CORE: usize = 4;

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

fn threads(flag: &str, n: i32) -> Result<i32> {
    let max = cores() * MAX_THREADS_PER_CORE;
    ensure!(n >= 1, "{flag} must be at least 1, got {n}");
    ensure!(
        usize::try_from(n).is_ok_and(|n| n <= max),
        "{flag} {n} is more than {MAX_THREADS_PER_CORE} threads per core on this machine ({} cores, at most {max})",
        cores()
    );
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
    })
}

/// The model flags, with the GGUF header read and checked.
///
/// # Errors
/// Bad flags, or a missing, unreadable or malformed model file.
pub fn model(m: &ModelArgs) -> Result<ModelSettings> {
    let ctx = context_options(m)?;
    let load = load_options(m)?;
    let path = m.model.clone().context(
        "no model given: gemfilter -m MODEL.gguf -f CONTEXT.txt -p QUESTION (see --help)",
    )?;
    let meta = gguf_info::read(&path)?;
    crate::engine::check_placement(&load)?;
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
    Ok(LoadOptions {
        n_gpu_layers: gpu_layers(&m.n_gpu_layers)?,
        use_mmap: !m.no_mmap,
        verbose: m.verbose,
        placement,
    })
}

/// `--gem-device`: where the filter pass's model goes, when not where `-dev` puts the full one.
fn gem_device(model: &mut ModelSettings, g: &GemArgs) -> Result<()> {
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
        crate::engine::check_placement(&model.load.for_filter()).map_err(|e| {
            anyhow::anyhow!("{}", format!("{e:#}").replacen("-dev:", "--gem-device:", 1))
        })?;
    }
    Ok(())
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
/// against the model.
///
/// # Errors
/// Impossible layer or k, sliding-window layers, unsupported architectures, bad scorings.
pub fn gem(args: &GemArgs, model: &ModelSettings) -> Result<GemSettings> {
    supported(&model.meta)?;
    let (selector, layer_flag) = selector(args, model)?;
    let meta = &selector.meta;
    let (user, builtin) = crate::presets::load()?;
    let mut preset = crate::presets::resolve(meta, user.as_ref(), &builtin);
    let calibrate = match args.gem_calibrate {
        Calibrate::Force => true,
        Calibrate::Auto => preset.label.is_none() && layer_flag.is_none(),
        Calibrate::Off => false,
    };
    if calibrate {
        let layers: Vec<usize> = (0..meta.block_count)
            .filter(|&l| !meta.is_sliding_layer(l))
            .collect();
        let top_k = args.gem_topk.unwrap_or(preset.top_k).max(1);
        let entry = crate::eval::calibrate::auto(&selector, top_k, layers)?;
        preset = crate::presets::Preset {
            layer: entry.filter_layer,
            top_k: entry.top_k.unwrap_or(top_k),
            spec: entry.spec(preset.spec),
            label: Some(entry.label),
        };
    } else if preset.label.is_none() && layer_flag.is_none() {
        crate::notice!(
            "no preset for {} ({} layers): using the uncalibrated filter layer {} (--gem-calibrate auto finds a better one)",
            meta.display_name(),
            meta.block_count,
            preset.layer
        );
    }
    let layer = layer_flag.unwrap_or(preset.layer);
    check_layer(meta, layer)?;
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
        prefix: args.gem_prefix == OnOff::On,
        ubatch: args.gem_ubatch.filter(|&u| u > 0),
        min_tokens,
        k_source: match args.gem_k_source {
            KSourceArg::Auto => None,
            KSourceArg::Ubatch => Some(KSource::Ubatch),
            KSourceArg::Cache => Some(KSource::Cache),
        },
        draft: args.gem_draft.as_ref().map(|_| crate::draft::Draft {
            name: selector.name(),
            n_layer: meta.block_count,
            path: selector.path.clone(),
        }),
        positions: args.gem_positions,
    })
}

fn check_layer(meta: &ModelMeta, layer: usize) -> Result<()> {
    if layer >= meta.block_count {
        bail!(
            "--gem-layer {layer} is out of range: the model has {} layers (0..{})",
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

/// Sampling flags, range-checked (llama-cli's meanings).
///
/// # Errors
/// NaN or out-of-range values.
pub fn sampling(s: &SamplingArgs) -> Result<Sampling> {
    ensure!(
        s.temp.is_finite(),
        "--temp must be a finite number, got {}",
        s.temp
    );
    ensure!(
        s.repeat_penalty.is_finite() && s.repeat_penalty > 0.0,
        "--repeat-penalty must be a positive number, got {}",
        s.repeat_penalty
    );
    ensure!(
        s.repeat_last_n >= -1,
        "--repeat-last-n must be -1 (the context), 0 (off) or a count"
    );
    Ok(Sampling {
        temp: s.temp,
        top_k: s.top_k,
        top_p: finite_in("--top-p", s.top_p, 0.0, 1.0)?,
        min_p: finite_in("--min-p", s.min_p, 0.0, 1.0)?,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n,
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
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read prompt file {shown}"))?;
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
    let input = PromptInput {
        system: p.system_prompt.clone(),
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

fn run(a: &RunArgs, single_turn: bool) -> Result<RunSettings> {
    ensure!(
        a.sampling.n_predict >= -1,
        "-n must be -1 (unlimited) or a count"
    );
    let sampling = sampling(&a.sampling)?;
    let mut model = model(&a.model)?;
    gem_device(&mut model, &a.gem)?;
    let input = prompt_input(&a.prompt, &model)?;
    let gem = match a.gem.gem {
        OnOff::On => {
            let mut g = gem(&a.gem, &model)?;
            if a.gem.gem_min_tokens.is_none() && model.load.offloads_to_gpu() {
                g.min_tokens = GPU_MIN_TOKENS;
            }
            Some(g)
        }
        OnOff::Off => None,
    };
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
        },
        sampling,
        input,
        no_conversation: a.prompt.no_conversation,
        conversation: conversation(a, single_turn, &model, gem.as_ref()),
        prompt_cache: a.prompt.prompt_cache.clone(),
        chat_template: a.prompt.chat_template.clone(),
        gem,
        protect: a.gem.gem_protect,
        echo_prompt: a.prompt.no_conversation && !a.sampling.no_display_prompt && !a.gem.json,
        show_selection: a.gem.gem_show,
        json: a.gem.json,
        perf: a.sampling.perf,
        model,
    })
}

/// Refuse (never clamp) lengths the model's context cannot hold with `extra` tokens more.
fn fit_lengths(lengths: &[usize], model: &ModelSettings, extra: usize, flag: &str) -> Result<()> {
    if let Some(ctx) = model.meta.context_length {
        if let Some(&l) = lengths.iter().find(|&&l| l.saturating_add(extra) >= ctx) {
            bail!(
                "{flag}: length {l} (+{extra} to generate) does not fit the model's training context of {ctx} tokens"
            );
        }
    }
    Ok(())
}

fn bench(a: &BenchArgs) -> Result<BenchSettings> {
    let lengths = values::parse_lengths(&a.lengths).context("--lengths")?;
    ensure!(
        (0..=1 << 20).contains(&a.n_decode),
        "--n-decode must be between 0 and 1048576"
    );
    let mut model = model(&a.model)?;
    gem_device(&mut model, &a.gem)?;
    let n_decode = usize::try_from(a.n_decode).unwrap_or(0);
    fit_lengths(&lengths, &model, n_decode + 1, "--lengths")?;
    let gem = gem(&a.gem, &model)?;
    ensure!(a.turns <= 64, "--turns must be at most 64");
    ensure!(
        a.turns == 0 || gem.draft.is_none(),
        "--turns measures conversation mode, which selects with the target itself: drop --gem-draft"
    );
    Ok(BenchSettings {
        lengths,
        n_decode: a.n_decode,
        turns: a.turns,
        haystack: a.haystack.clone(),
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

fn niah(a: &NiahArgs) -> Result<NiahSettings> {
    let lengths = values::parse_lengths(&a.lengths).context("--lengths")?;
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
    if let Some(h) = &a.haystack {
        ensure!(
            h.exists(),
            "haystack {} does not exist",
            crate::sanitize::quote(&h.display().to_string())
        );
    }
    let mut model = model(&a.model)?;
    gem_device(&mut model, &a.gem)?;
    fit_lengths(
        &lengths,
        &model,
        usize::try_from(a.n_predict).unwrap_or(0),
        "--lengths",
    )?;
    let gem_settings = gem(&a.gem, &model)?;
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
    Ok(NiahSettings {
        tasks,
        samples: a.samples,
        scorings: scorings_with_pools(&a.scorings, &pools, a.gem.gem_window)?,
        methods: if a.gem.gem == OnOff::Off {
            vec![crate::eval::niah::Method::Full]
        } else {
            a.methods.clone()
        },
        gem: gem_settings,
        protect: a.gem.gem_protect,
        haystack: a.haystack.clone(),
        lengths,
        depths,
        needles,
        variants: a.variants.clone(),
        style: a.style,
        chat_template: a.chat_template.clone(),
        n_predict: a.n_predict,
        seed: a.seed,
        output: a.output.clone(),
        layers,
        fresh: a.fresh,
        report_only: a.report_only,
        model,
    })
}

fn layers(a: &LayersArgs) -> Result<LayersSettings> {
    let r = &a.run;
    let model = model(&r.model)?;
    ensure!(
        r.prompt.file.is_some(),
        "layers needs -f FILE with the haystack that holds --needle"
    );
    let input = prompt_input(&r.prompt, &model)?;
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
        chat_template: r.prompt.chat_template.clone(),
        protect: r.gem.gem_protect,
        top_k,
        model,
    })
}

fn calibrate(a: &CalibrateArgs) -> Result<CalibrateSettings> {
    ensure!(a.top_k >= 1, "--gem-topk must be at least 1");
    let model = model(&a.model)?;
    supported(&model.meta)?;
    let lengths = match &a.lengths {
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
        haystack: a.haystack.clone(),
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
