//! `gemfilter bench`: standard llama.cpp prefill and GemFilter on the same prompts, in one
//! process, measured first and printed afterwards. GemFilter runs first at each length so the
//! standard run's larger allocations cannot inflate its memory reading. Each measurement is a
//! `--json` [`Record`] (kind `bench`), the same shape a single answer writes.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use crate::engine::Engine;
use crate::generate::{Discard, GenLimits, Sampling};
use crate::notice;
use crate::pipeline::{answer, GemSettings, Job, Models, Outcome};
use crate::prompt::Protect;
use crate::report::{bytes_ratio, gb, ratio, Record, RecordKind, SCHEMA_VERSION};
use crate::settings::ModelSettings;

/// Both modes at one length: their records and GemFilter / standard ratios.
#[derive(Debug, Clone, Serialize)]
pub struct LengthResult {
    pub prompt_tokens: usize,
    pub layer: usize,
    pub k: usize,
    pub gemfilter: Record,
    pub standard: Option<Record>,
    /// GemFilter / standard.
    pub ratio_first_token: Option<f64>,
    pub ratio_peak_mem: Option<f64>,
    /// GemFilter decode speed / standard's at full depth.
    pub ratio_decode: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The records' [`SCHEMA_VERSION`].
    pub schema_version: u32,
    pub model: String,
    /// The model that selected for GemFilter (`--gem-draft`), if not the target.
    pub draft: Option<String>,
    pub positions: crate::settings::Positions,
    pub device: String,
    pub cache_type_k: String,
    pub cache_type_v: String,
    pub n_ubatch: u32,
    pub results: Vec<LengthResult>,
    /// `--turns`: one conversation per length instead of single prompts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conversations: Vec<super::turns::ConversationResult>,
}

/// What `gemfilter bench` runs, resolved from its flags.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub model: ModelSettings,
    pub gem: GemSettings,
    /// Prompt lengths in tokens, each checked against the model's context.
    pub lengths: Vec<usize>,
    pub n_decode: i32,
    pub haystack: Option<PathBuf>,
    pub output: Option<PathBuf>,
    /// Also run standard llama.cpp on the whole prompt.
    pub standard: bool,
    /// `--turns N`: a conversation of N questions per length (0: single prompts).
    pub turns: usize,
    pub json: bool,
}

/// `n` prompt tokens cut from the haystack's tokens, repeated as needed.
fn prompt_tokens(source: &[LlamaToken], bos: Option<LlamaToken>, n: usize) -> Vec<LlamaToken> {
    bos.into_iter()
        .chain(source.iter().copied().cycle())
        .take(n)
        .collect()
}

/// One measurement as a `--json` record: the whole prompt is the document, nothing protected.
fn record(s: &BenchSettings, gem: Option<&GemSettings>, n: usize, out: &Outcome) -> Record {
    let base = Record {
        prompt_tokens: n,
        context_range: [0, n],
        ..Record::answered(
            RecordKind::Bench,
            &s.model,
            gem,
            Protect::None,
            &out.generated,
        )
    };
    let mut record = out.record(base, gem);
    // Loads inside the measured span (GemFilter loads the full model after the filter pass).
    record.timings.load_s = out.load_secs;
    record
}

/// Text the prompts are cut from, tokenized once (with BOS first when the model has one).
fn source_tokens(s: &BenchSettings) -> Result<(Vec<LlamaToken>, Option<LlamaToken>, Engine)> {
    // A directory or a file, read as niah and calibrate read theirs.
    let text = crate::eval::niah::grid::load_haystack(s.haystack.as_deref())?;
    let vocab = Engine::load_vocab(&s.model.path, &s.model.load)?;
    let v = vocab.model.vocab();
    let source = v.tokenize(text.as_bytes(), false, false);
    if source.is_empty() {
        bail!("the haystack tokenizes to nothing");
    }
    let bos = Some(v.bos());
    Ok((source, bos, vocab))
}

/// One length: GemFilter, then standard llama.cpp on the same tokens.
fn measure(s: &BenchSettings, models: &mut Models, tokens: &[LlamaToken]) -> Result<LengthResult> {
    let n = tokens.len();
    notice!(
        "bench: {n} tokens, GemFilter (layer {}, k {})",
        s.gem.layer,
        s.gem.top_k
    );
    let g = answer(
        models,
        &job(tokens, Some(s.gem.clone()), &s.model.ctx, s.n_decode),
        &mut Discard,
    )?;
    let standard = if s.standard {
        notice!("bench: {n} tokens, standard llama.cpp");
        Some(answer(
            models,
            &job(tokens, None, &s.model.ctx, s.n_decode),
            &mut Discard,
        )?)
    } else {
        None
    };
    let gm = record(s, Some(&s.gem), n, &g);
    let sm = standard.as_ref().map(|o| record(s, None, n, o));
    Ok(LengthResult {
        prompt_tokens: n,
        layer: s.gem.layer,
        k: s.gem.top_k,
        ratio_first_token: ratio(
            Some(gm.timings.first_token_s),
            sm.as_ref().map(|s| s.timings.first_token_s),
        ),
        ratio_peak_mem: bytes_ratio(
            gm.peak_device_mem_bytes,
            sm.as_ref().and_then(|s| s.peak_device_mem_bytes),
        ),
        ratio_decode: ratio(
            gm.timings.decode_tok_per_s,
            sm.as_ref().and_then(|s| s.timings.decode_tok_per_s),
        ),
        gemfilter: gm,
        standard: sm,
    })
}

/// # Errors
/// Bad input, or a run that fails (out of memory included).
pub fn run(s: &BenchSettings) -> Result<()> {
    if let Some(o) = &s.output {
        std::fs::write(o, b"").with_context(|| {
            format!(
                "cannot write {}",
                crate::sanitize::quote(&o.display().to_string())
            )
        })?;
    }
    let (source, bos, vocab) = source_tokens(s)?;
    let mut models = Models::new(&s.model, Some(&s.gem));
    // The prefix model is written once per model and layer, before any measured run.
    if let Some(sel) = models.selector() {
        sel.prefix_model();
    }
    // Warm-up: first use of a device pays one-time initialisation; keep it out of the numbers.
    answer(
        &mut models,
        &job(&prompt_tokens(&source, bos, 256), None, &s.model.ctx, 4),
        &mut Discard,
    )?;
    let mut report = BenchReport {
        schema_version: SCHEMA_VERSION,
        model: s.model.path.display().to_string(),
        draft: s.gem.draft.as_ref().map(|d| d.path.display().to_string()),
        positions: s.gem.positions,
        device: device_name(&s.model.load.placement.rpc),
        cache_type_k: s.model.cache_types[0].clone(),
        cache_type_v: s.model.cache_types[1].clone(),
        n_ubatch: s.model.ctx.n_ubatch,
        results: Vec::new(),
        conversations: Vec::new(),
    };
    if s.turns > 0 {
        // Conversations load their own models (filter and full resident, then standard's):
        // the warmed-up full model is freed first.
        models.release_full();
    }
    for &n in &s.lengths {
        if s.turns > 0 {
            let t = super::turns::TurnsBench {
                model: &s.model,
                gem: &s.gem,
                turns: s.turns,
                n_decode: s.n_decode,
                standard: s.standard,
            };
            report
                .conversations
                .push(super::turns::measure(&t, &vocab, &source, bos, n)?);
        } else {
            let tokens = prompt_tokens(&source, bos, n);
            report.results.push(measure(s, &mut models, &tokens)?);
        }
        if let Some(o) = &s.output {
            std::fs::write(o, serde_json::to_vec_pretty(&report)?).with_context(|| {
                format!(
                    "cannot write {}",
                    crate::sanitize::quote(&o.display().to_string())
                )
            })?;
        }
    }
    if s.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else if s.turns > 0 {
        print_header(&report);
        report.conversations.iter().for_each(super::turns::print);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn job<'a>(
    tokens: &'a [LlamaToken],
    gem: Option<GemSettings>,
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
            special: false,
            shift: None,
        },
        progress: true,
    }
}

/// Local GPUs or the CPU, and the `--rpc` workers (whose devices come first in the split).
fn device_name(rpc: &[String]) -> String {
    let local = crate::engine::ffi::gpu_names().unwrap_or_else(|| {
        format!(
            "CPU ({} threads)",
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
        )
    });
    if rpc.is_empty() {
        local
    } else {
        format!("RPC {} + {local}", rpc.join(", "))
    }
}

fn print_header(r: &BenchReport) {
    println!(
        "model {}{} | {} | KV {}/{} | ubatch {}",
        r.model,
        r.draft
            .as_ref()
            .map_or(String::new(), |d| format!(" (selection by draft {d})")),
        r.device,
        r.cache_type_k,
        r.cache_type_v,
        r.n_ubatch
    );
}

fn print_table(r: &BenchReport) {
    print_header(r);
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
            g.timings.filter_pass_s,
            g.timings.selection_s,
            g.timings.rerun_s,
            g.timings.load_s,
            g.timings.first_token_s,
            g.timings.decode_tok_per_s.map_or("n/a".into(), |v| format!("{v:.1}/s")),
            gb(g.peak_device_mem_bytes),
            s.map_or("-".into(), |s| format!("{:.2}s", s.timings.first_token_s)),
            s.and_then(|s| s.timings.decode_tok_per_s).map_or("-".into(), |v| format!("{v:.1}/s")),
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
    fn prompt_repeats_source() {
        let src: Vec<LlamaToken> = (0..3).map(LlamaToken::new).collect();
        let p = prompt_tokens(&src, Some(LlamaToken::new(9)), 6);
        assert_eq!(
            p.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![9, 0, 1, 2, 0, 1]
        );
    }
}
