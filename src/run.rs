//! The default mode: llama-cli flags in, one answer out (streamed, or one JSON record).

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use llama_cpp_2::context::params::KvCacheType;

use crate::capture::KSource;
use crate::cli::llama::{KSourceArg, OnOff, OnOffAuto, RunArgs};
use crate::engine::{ContextOptions, Engine, LoadOptions};
use crate::generate::{GenLimits, Sampling, TokenSink};
use crate::gguf_info::{self, ModelMeta, SUPPORTED_ARCHS};
use crate::notice;
use crate::pipeline::{answer, GemSettings, Job, Models, Outcome};
use crate::prompt::{self, Assembled, PromptInput};
use crate::report::RunRecord;
use crate::select::{self, Scoring};

/// Streams text to stdout; a closed pipe ends generation quietly.
struct Stdout {
    enabled: bool,
}

impl TokenSink for Stdout {
    fn text(&mut self, piece: &str) -> Result<bool> {
        if !self.enabled {
            return Ok(true);
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("cannot write to stdout"),
        }
    }
}

/// Parse a `-ctk`/`-ctv` name.
///
/// # Errors
/// Unknown type names.
pub fn kv_type(name: &str) -> Result<KvCacheType> {
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
        other => bail!("unknown KV cache type '{other}' (use f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1)"),
    })
}

/// `-ngl` value: a count, or auto/all (every layer).
///
/// # Errors
/// Anything else.
pub fn gpu_layers(s: &str) -> Result<u32> {
    match s {
        "auto" | "all" | "-1" => Ok(u32::MAX),
        n => n
            .parse::<u32>()
            .with_context(|| format!("invalid -ngl value '{n}' (a number, auto or all)")),
    }
}

/// Context options from the shared model flags.
///
/// # Errors
/// Bad cache types or thread counts.
pub fn context_options(m: &crate::cli::llama::ModelArgs) -> Result<ContextOptions> {
    let cores =
        std::thread::available_parallelism().map_or(4, |n| i32::try_from(n.get()).unwrap_or(4));
    let threads = m.threads.unwrap_or(cores);
    if threads < 1 || m.threads_batch.is_some_and(|t| t < 1) {
        bail!("thread counts must be at least 1");
    }
    if m.batch_size == 0 || m.ubatch_size == 0 {
        bail!("batch sizes (-b, -ub) must be at least 1");
    }
    Ok(ContextOptions {
        n_batch: m.batch_size,
        n_ubatch: m.ubatch_size,
        threads,
        threads_batch: m.threads_batch.unwrap_or(threads),
        flash_attn: match m.flash_attn {
            OnOffAuto::On => 1,
            OnOffAuto::Off => 0,
            OnOffAuto::Auto => -1,
        },
        type_k: kv_type(&m.cache_type_k)?,
        type_v: kv_type(&m.cache_type_v)?,
    })
}

/// Read and validate the GGUF header, then load the model.
///
/// # Errors
/// See [`gguf_info::read`] and [`Engine::load`].
pub fn open_model(m: &crate::cli::llama::ModelArgs) -> Result<(ModelMeta, Engine, f64)> {
    let path = model_path(m)?;
    let meta = gguf_info::read(path)?;
    let t0 = Instant::now();
    let engine = Engine::load(path, &load_options(m)?)?;
    Ok((meta, engine, t0.elapsed().as_secs_f64()))
}

/// Load options from the model flags.
///
/// # Errors
/// A bad -ngl value.
pub fn load_options(m: &crate::cli::llama::ModelArgs) -> Result<LoadOptions> {
    Ok(LoadOptions {
        n_gpu_layers: gpu_layers(&m.n_gpu_layers)?,
        use_mmap: !m.no_mmap,
        verbose: m.verbose,
    })
}

/// The `-m` path (clap enforces it outside subcommands).
///
/// # Errors
/// When no model was given.
pub fn model_path(m: &crate::cli::llama::ModelArgs) -> Result<&std::path::Path> {
    m.model
        .as_deref()
        .context("no model given: gemfilter -m MODEL.gguf -f CONTEXT.txt -p QUESTION (see --help)")
}

/// Resolve the GemFilter settings from flags, presets and the model, validating them.
///
/// # Errors
/// Impossible layer or k, sliding-window layers, unsupported architectures, bad scoring names.
pub fn gem_settings(args: &crate::cli::llama::GemArgs, meta: &ModelMeta) -> Result<GemSettings> {
    if !SUPPORTED_ARCHS.contains(&meta.architecture.as_str()) {
        bail!(
            "architecture '{}' is not supported by GemFilter (supported: {}); run it with --gem off",
            meta.architecture,
            SUPPORTED_ARCHS.join(", ")
        );
    }
    let (user, builtin) = crate::presets::load()?;
    let preset = crate::presets::resolve(meta, user.as_ref(), &builtin);
    if preset.label.is_none() && args.gem_layer.is_none() {
        notice!(
            "no preset for {} ({} layers): using filter layer {}; `gemfilter calibrate -m MODEL` finds a better one",
            meta.display_name(),
            meta.block_count,
            preset.layer
        );
    }
    let layer = args.gem_layer.unwrap_or(preset.layer);
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
    let top_k = args.gem_topk.unwrap_or(preset.top_k);
    if top_k == 0 {
        bail!("--gem-topk must be at least 1");
    }
    let scoring_name = args.gem_scoring.clone().unwrap_or(preset.scoring);
    let window = args.gem_window.or(preset.window).unwrap_or(32);
    if window == 0 {
        bail!("--gem-window must be at least 1");
    }
    let scoring: Scoring = scoring_name.parse()?;
    let pool = args
        .gem_pool
        .or(preset.pool)
        .unwrap_or(crate::select::POOL_KERNEL);
    if pool % 2 == 0 {
        bail!("--gem-pool must be an odd number, got {pool}");
    }
    let q_window = if matches!(scoring, Scoring::WindowSoftmax { .. }) {
        window
    } else {
        1
    };
    let scoring = match scoring {
        Scoring::WindowSoftmax { .. } => Scoring::WindowSoftmax { window },
        s => s,
    };
    Ok(GemSettings {
        layer,
        top_k,
        scoring,
        q_window,
        no_early_exit: args.gem_no_early_exit,
        prefix: args.gem_prefix == OnOff::On,
        ubatch: args.gem_ubatch.filter(|&u| u > 0),
        pool,
        min_tokens: args.gem_min_tokens.unwrap_or(0),
        k_source: match args.gem_k_source {
            KSourceArg::Auto => None,
            KSourceArg::Ubatch => Some(KSource::Ubatch),
            KSourceArg::Cache => Some(KSource::Cache),
        },
    })
}

fn read_context_file(path: &std::path::Path) -> Result<String> {
    let shown = path.display();
    if path.is_dir() {
        bail!("prompt file '{shown}' is a directory");
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read prompt file '{shown}'"))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "prompt file '{shown}' is not valid UTF-8 (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Default `--gem-min-tokens` when layers run on a GPU. H100, 8B shape, Q4_0, f16 KV
/// (bench/runs/2026-11-28-h100): GemFilter's first token vs the whole prompt's was 2.86x at 8K,
/// 1.43x at 16K, 0.92x at 32K, 0.63x at 64K. Its fixed cost (prefix-model and full-model loads,
/// ~1.6 s) outweighs the prefill it saves below ~30K tokens.
pub const GPU_MIN_TOKENS: usize = 32_768;

/// The default mode.
///
/// # Errors
/// Any bad input or engine failure, as one message.
pub fn run(args: &RunArgs) -> Result<()> {
    crate::messages::set_quiet(args.model.log_disable);
    let gem_on = args.gem.gem == OnOff::On;
    let ctx_opts = context_options(&args.model)?;
    if args.sampling.n_predict < -1 {
        bail!("-n must be -1 (unlimited) or a count");
    }
    // Validate cheap things before the (slow) model load.
    let escape = !args.prompt.no_escape;
    let question = args.prompt.prompt.as_deref().map(|p| {
        if escape {
            prompt::process_escapes(p)
        } else {
            p.to_owned()
        }
    });
    let context = args
        .prompt
        .file
        .as_deref()
        .map(read_context_file)
        .transpose()?;
    let input = PromptInput {
        system: args.prompt.system_prompt.clone(),
        context,
        question,
    };
    if input.context.as_deref().unwrap_or("").trim().is_empty()
        && input.question.as_deref().unwrap_or("").trim().is_empty()
    {
        bail!("empty prompt: give the text with -p TEXT and/or -f FILE");
    }
    let meta = gguf_info::read(model_path(&args.model)?)?;
    let gem = if gem_on {
        let mut gem = gem_settings(&args.gem, &meta)?;
        if args.gem.gem_min_tokens.is_none() && load_options(&args.model)?.offloads_to_gpu() {
            gem.min_tokens = GPU_MIN_TOKENS;
        }
        Some(gem)
    } else {
        None
    };

    let path = model_path(&args.model)?.to_path_buf();
    let load = load_options(&args.model)?;
    let t0 = Instant::now();
    let vocab = Engine::load_vocab(&path, &load)?;
    let template = prompt::choose_template(
        &vocab.model,
        args.prompt.no_conversation,
        args.prompt.chat_template.as_deref(),
    )?;
    let assembled = prompt::assemble(&vocab.model, &input, &template)?;
    // A vocab-only load has no hparams: the training context comes from the GGUF header.
    let n_ctx_train = meta
        .context_length
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(u32::MAX);
    let vocab_s = t0.elapsed().as_secs_f64();
    let ctx_limit = if args.model.ctx_size > 0 {
        args.model.ctx_size
    } else {
        n_ctx_train
    };
    let n = assembled.tokens.len();
    if n as u64 >= u64::from(ctx_limit) {
        bail!(
            "the prompt is {n} tokens, more than the {} of {ctx_limit} tokens allows",
            if args.model.ctx_size > 0 {
                "context size (-c)"
            } else {
                "model's training context"
            }
        );
    }
    let protected = assembled.protected(args.gem.gem_protect);
    if args.prompt.no_conversation && !args.sampling.no_display_prompt && !args.gem.json {
        let _ = Stdout { enabled: true }.text(&assembled.text)?;
    }
    let seed = if args.sampling.seed < 0 {
        u32::MAX
    } else {
        u32::try_from(args.sampling.seed).unwrap_or(u32::MAX)
    };
    let reverse_prompts = args
        .sampling
        .reverse_prompt
        .iter()
        .map(|r| {
            if escape {
                prompt::process_escapes(r)
            } else {
                r.clone()
            }
        })
        .collect();
    let job = Job {
        tokens: &assembled.tokens,
        protected: &protected,
        gem: gem.clone(),
        ctx: ctx_opts,
        ctx_limit,
        ctx_fixed: args.model.ctx_size > 0,
        sampling: Sampling {
            temp: args.sampling.temp,
            top_k: args.sampling.top_k,
            top_p: args.sampling.top_p,
            min_p: args.sampling.min_p,
            repeat_penalty: args.sampling.repeat_penalty,
            repeat_last_n: args.sampling.repeat_last_n,
            seed,
        },
        limits: GenLimits {
            n_predict: args.sampling.n_predict,
            ignore_eos: args.sampling.ignore_eos,
            reverse_prompts,
        },
        progress: !args.gem.json,
    };
    let mut sink = Stdout {
        enabled: !args.gem.json,
    };
    let mut models = Models::new(path, meta.block_count, load);
    let mut out = answer(&mut models, &job, &mut sink)?;
    out.timings.load_s = vocab_s + out.load_secs;
    if let Some(why) = &out.skipped {
        notice!(
            "{why}{}",
            if input.context.is_none() {
                " (pass the long context with -f; -p text is always kept)"
            } else {
                ""
            }
        );
    }
    if args.gem.gem_show {
        show_selection(&vocab, &assembled, &out);
    }
    if args.model.verbose {
        if let Some(s) = &out.selected {
            notice!(
                "filter pass reached layer {:?}; {} ubatches stopped early",
                s.max_layer_reached,
                s.early_exits
            );
        }
    }
    let record = record(args, &meta, gem.as_ref(), &assembled, &protected, &out);
    if args.gem.json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, &record)?;
        writeln!(stdout)?;
    } else {
        let _ = sink.text("\n")?;
        if args.sampling.perf {
            print_perf(&record);
        }
    }
    Ok(())
}

fn record(
    args: &RunArgs,
    meta: &ModelMeta,
    gem: Option<&GemSettings>,
    assembled: &Assembled,
    protected: &[bool],
    out: &Outcome,
) -> RunRecord {
    RunRecord {
        answer: out.generated.text.clone(),
        model: args
            .model
            .model
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        architecture: meta.architecture.clone(),
        gem: gem.is_some(),
        layer: gem.map(|g| g.layer),
        k: gem.map(|g| g.top_k),
        scoring: gem.map(|g| g.scoring.to_string()),
        protect: gem.map(|_| format!("{:?}", args.gem.gem_protect).to_lowercase()),
        prompt_tokens: assembled.tokens.len(),
        selected_tokens: out.n_rerun,
        protected_tokens: protected.iter().filter(|&&p| p).count(),
        context_range: [assembled.context.start, assembled.context.end],
        selected_ranges: out
            .selected
            .as_ref()
            .map(|s| {
                select::runs(&s.indices)
                    .into_iter()
                    .map(|(a, b)| [a, b])
                    .collect()
            })
            .unwrap_or_default(),
        filter_skipped: out.skipped.clone(),
        filter_max_layer: out.selected.as_ref().and_then(|s| s.max_layer_reached),
        generated_tokens: out.generated.n_tokens,
        stop_reason: out.generated.stop,
        timings: out.timings.clone(),
        peak_device_mem_bytes: out.peak_device_mem,
    }
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

fn print_perf(r: &RunRecord) {
    let t = &r.timings;
    eprintln!(
        "gemfilter: load {:.2} s | filter pass {:.3} s | selection {:.4} s | re-run {:.3} s ({} tokens) | first token {:.3} s | decode {} | prompt {} tokens",
        t.load_s,
        t.filter_pass_s,
        t.selection_s,
        t.rerun_s,
        r.selected_tokens,
        t.first_token_s,
        t.decode_tok_per_s.map_or("n/a".into(), |v| format!("{v:.1} tok/s")),
        r.prompt_tokens
    );
}
