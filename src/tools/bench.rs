//! `gemfilter bench`: standard llama.cpp prefill and GemFilter on the same prompts, in one
//! process, measured first and printed afterwards. GemFilter runs first at each length so the
//! standard run's larger allocations cannot inflate its memory reading.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use crate::cli::llama::{GemArgs, ModelArgs};
use crate::engine::Engine;
use crate::generate::{GenLimits, Sampling, TokenSink};
use crate::notice;
use crate::pipeline::{answer, Job, Models, Outcome};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gem: GemArgs,
    /// Prompt lengths in tokens, comma-separated; k and m suffixes (8k = 8192).
    #[arg(long = "lengths", default_value = "8k,32k", value_name = "LIST")]
    pub lengths: String,
    /// Tokens to decode after the prompt, for the decode speed at that depth.
    #[arg(long = "n-decode", default_value_t = 32, value_name = "N")]
    pub n_decode: i32,
    /// Text the prompts are cut from (repeated as needed); default: the bundled haystack.
    #[arg(long = "haystack", value_name = "FILE")]
    pub haystack: Option<PathBuf>,
    /// Also write the results (JSON) here after every length.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip the standard llama.cpp run (e.g. when it cannot fit in memory).
    #[arg(long = "no-standard")]
    pub no_standard: bool,
}

/// One mode at one length.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub filter_pass_s: f64,
    /// Part of the filter pass spent reading layer r's keys from the KV cache.
    pub filter_read_s: f64,
    pub selection_s: f64,
    /// Prefill of what the model answers from (selected tokens, or the whole prompt).
    pub prefill_s: f64,
    /// Model loads inside the measured span (GemFilter loads the full model after the filter pass).
    pub load_in_span_s: f64,
    pub first_token_s: f64,
    pub decode_tok_per_s: Option<f64>,
    pub peak_device_mem_bytes: Option<u64>,
    pub tokens_answered_from: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LengthResult {
    pub prompt_tokens: usize,
    pub layer: usize,
    pub k: usize,
    pub gemfilter: ModeResult,
    pub standard: Option<ModeResult>,
    /// GemFilter / standard.
    pub ratio_first_token: Option<f64>,
    pub ratio_peak_mem: Option<f64>,
    /// GemFilter decode speed / standard's at full depth.
    pub ratio_decode: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub device: String,
    pub cache_type_k: String,
    pub cache_type_v: String,
    pub n_ubatch: u32,
    pub results: Vec<LengthResult>,
}

struct Discard;
impl TokenSink for Discard {
    fn text(&mut self, _: &str) -> Result<bool> {
        Ok(true)
    }
}

/// "8k,32k,131072" → token counts.
///
/// # Errors
/// Malformed entries.
pub fn parse_lengths(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|p| {
            let p = p.trim().to_ascii_lowercase();
            let (num, mul) = match p.strip_suffix('k') {
                Some(n) => (n, 1024),
                None => match p.strip_suffix('m') {
                    Some(n) => (n, 1024 * 1024),
                    None => (p.as_str(), 1),
                },
            };
            let n: usize = num.parse().with_context(|| format!("bad length '{p}'"))?;
            anyhow::ensure!(n > 0, "lengths must be positive");
            Ok(n * mul)
        })
        .collect()
}

/// `n` prompt tokens cut from the haystack's tokens, repeated as needed.
fn prompt_tokens(source: &[LlamaToken], bos: Option<LlamaToken>, n: usize) -> Vec<LlamaToken> {
    bos.into_iter()
        .chain(source.iter().copied().cycle())
        .take(n)
        .collect()
}

fn mode(out: &Outcome) -> ModeResult {
    ModeResult {
        filter_pass_s: out.timings.filter_pass_s,
        selection_s: out.timings.selection_s,
        filter_read_s: out.timings.filter_read_s,
        prefill_s: out.timings.rerun_s,
        load_in_span_s: out.load_secs,
        first_token_s: out.timings.first_token_s,
        decode_tok_per_s: out.timings.decode_tok_per_s,
        peak_device_mem_bytes: out.peak_device_mem,
        tokens_answered_from: out.n_rerun,
    }
}

/// # Errors
/// Bad input, or a run that fails (out of memory included).
pub fn run(args: &BenchArgs) -> Result<()> {
    crate::messages::set_quiet(args.model.log_disable);
    let lengths = parse_lengths(&args.lengths)?;
    let path = crate::run::model_path(&args.model)?.to_path_buf();
    let meta = crate::gguf_info::read(&path)?;
    let gem = crate::run::gem_settings(&args.gem, &meta)?;
    let ctx = crate::run::context_options(&args.model)?;
    let load = crate::run::load_options(&args.model)?;
    if let Some(o) = &args.output {
        std::fs::write(o, b"").with_context(|| format!("cannot write '{}'", o.display()))?;
    }
    let text = match &args.haystack {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read '{}'", p.display()))?
        }
        None => include_str!("../../data/haystack.txt").to_owned(),
    };
    let (source, bos) = {
        let vocab = Engine::load_vocab(&path, &load)?;
        let v = vocab.model.vocab();
        (v.tokenize(text.as_bytes(), false, false), Some(v.bos()))
    };
    if source.is_empty() {
        bail!("the haystack tokenizes to nothing");
    }
    let max_ctx = meta.context_length.unwrap_or(usize::MAX);
    if gem.prefix && gem.layer + 1 < meta.block_count {
        // Written once per model and layer; not part of any measured run.
        crate::engine::prefix::prefix_model(&path, gem.layer + 1, meta.block_count)?;
    }
    let mut models = Models::new(path.clone(), meta.block_count, load);
    // Warm-up: first use of a device pays one-time initialisation; keep it out of the numbers.
    {
        let warm = prompt_tokens(&source, bos, 256);
        let job = job(&warm, None, &ctx, 4);
        answer(&mut models, &job, &mut Discard)?;
    }
    let mut report = BenchReport {
        model: path.display().to_string(),
        device: device_name(),
        cache_type_k: args.model.cache_type_k.clone(),
        cache_type_v: args.model.cache_type_v.clone(),
        n_ubatch: args.model.ubatch_size,
        results: Vec::new(),
    };
    let n_decode = usize::try_from(args.n_decode.max(0)).unwrap_or(0);
    for &asked in &lengths {
        let n = asked.min(max_ctx.saturating_sub(n_decode + 1));
        if n != asked {
            notice!("bench: {asked} tokens plus {n_decode} to decode exceed the model's context of {max_ctx}: using {n}");
        }
        if n < 2 {
            bail!("length {asked} leaves no room in the model's context of {max_ctx} tokens");
        }
        let tokens = prompt_tokens(&source, bos, n);
        notice!(
            "bench: {n} tokens, GemFilter (layer {}, k {})",
            gem.layer,
            gem.top_k
        );
        let g = answer(
            &mut models,
            &job(&tokens, Some(gem.clone()), &ctx, args.n_decode),
            &mut Discard,
        )?;
        let standard = if args.no_standard {
            None
        } else {
            notice!("bench: {n} tokens, standard llama.cpp");
            Some(answer(
                &mut models,
                &job(&tokens, None, &ctx, args.n_decode),
                &mut Discard,
            )?)
        };
        let (gm, sm) = (mode(&g), standard.as_ref().map(mode));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        #[allow(clippy::cast_precision_loss)]
        let mem = |m: &ModeResult| m.peak_device_mem_bytes.map(|b| b as f64);
        report.results.push(LengthResult {
            prompt_tokens: n,
            layer: gem.layer,
            k: gem.top_k,
            ratio_first_token: ratio(Some(gm.first_token_s), sm.as_ref().map(|s| s.first_token_s)),
            ratio_peak_mem: ratio(mem(&gm), sm.as_ref().and_then(mem)),
            ratio_decode: ratio(
                gm.decode_tok_per_s,
                sm.as_ref().and_then(|s| s.decode_tok_per_s),
            ),
            gemfilter: gm,
            standard: sm,
        });
        if let Some(o) = &args.output {
            std::fs::write(o, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("cannot write '{}'", o.display()))?;
        }
    }
    if args.gem.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&report);
    }
    Ok(())
}

fn job<'a>(
    tokens: &'a [LlamaToken],
    gem: Option<crate::pipeline::GemSettings>,
    ctx: &crate::engine::ContextOptions,
    n_decode: i32,
) -> Job<'a> {
    Job {
        tokens,
        protected: &[],
        gem,
        ctx: ctx.clone(),
        ctx_limit: u32::MAX,
        ctx_fixed: false,
        sampling: Sampling::greedy(),
        limits: GenLimits {
            n_predict: n_decode,
            ignore_eos: true,
            reverse_prompts: Vec::new(),
        },
        progress: true,
    }
}

fn device_name() -> String {
    crate::engine::ffi::gpu_names().unwrap_or_else(|| {
        format!(
            "CPU ({} threads)",
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
        )
    })
}

fn gb(b: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    b.map_or("n/a".into(), |b| format!("{:.2} GB", b as f64 / 1e9))
}

fn print_table(r: &BenchReport) {
    println!(
        "model {} | {} | KV {}/{} | ubatch {}",
        r.model, r.device, r.cache_type_k, r.cache_type_v, r.n_ubatch
    );
    println!(
        "{:>8} {:>10} | {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>6} {:>6} {:>6}",
        "tokens", "mode", "filter", "select", "prefill", "load", "1st tok", "decode", "peak mem", "std 1st", "std dec", "std mem", "ttft×", "mem×", "dec×"
    );
    for x in &r.results {
        let g = &x.gemfilter;
        let s = x.standard.as_ref();
        println!(
            "{:>8} {:>10} | {:>7.2}s {:>7.3}s {:>7.2}s {:>6.2}s {:>8.2}s {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>6} {:>6} {:>6}",
            x.prompt_tokens,
            format!("r{} k{}", x.layer, x.k),
            g.filter_pass_s,
            g.selection_s,
            g.prefill_s,
            g.load_in_span_s,
            g.first_token_s,
            g.decode_tok_per_s.map_or("n/a".into(), |v| format!("{v:.1}/s")),
            gb(g.peak_device_mem_bytes),
            s.map_or("-".into(), |s| format!("{:.2}s", s.first_token_s)),
            s.and_then(|s| s.decode_tok_per_s).map_or("-".into(), |v| format!("{v:.1}/s")),
            s.map_or("-".into(), |s| gb(s.peak_device_mem_bytes)),
            x.ratio_first_token.map_or("-".into(), |v| format!("{v:.2}")),
            x.ratio_peak_mem.map_or("-".into(), |v| format!("{v:.2}")),
            x.ratio_decode.map_or("-".into(), |v| format!("{v:.2}")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse() {
        assert_eq!(
            parse_lengths("8k, 32K,100").unwrap(),
            vec![8192, 32768, 100]
        );
        assert!(parse_lengths("8q").is_err());
        assert!(parse_lengths("0").is_err());
    }

    #[test]
    fn prompt_repeats_source() {
        let src: Vec<LlamaToken> = (0..3).map(LlamaToken::new).collect();
        let p = prompt_tokens(&src, Some(LlamaToken::new(9)), 6);
        assert_eq!(
            p.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![9, 0, 1, 2, 0, 1]
        );
    }
}
