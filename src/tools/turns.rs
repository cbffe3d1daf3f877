//! `gemfilter bench --turns N`: N questions about one document, in one process. GemFilter's
//! conversation mode (the document's filter state kept, only what follows it decoded through
//! the filter layers, a fresh selection per question) beside standard llama.cpp keeping the
//! whole KV cache, as `llama-cli -cnv` and llama-server's prompt cache do: its follow-up costs
//! the question's prefill at the document's depth and decoding at that depth.

use std::time::Instant;

use anyhow::{Context, Result};
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use crate::conversation::{load_models, Conversation, TurnSettings};
use crate::engine::{prefill, Engine};
use crate::generate::{generate, Discard, GenLimits, Generated, Sampling, Start};
use crate::notice;
use crate::pipeline::GemSettings;
use crate::prompt::{Assembled, Protect};
use crate::report::{bytes_ratio, gb, ratio, Record, RecordKind, Timings};
use crate::settings::ModelSettings;

/// What `bench --turns` measures, from the bench's settings.
pub struct TurnsBench<'s> {
    pub model: &'s ModelSettings,
    pub gem: &'s GemSettings,
    pub turns: usize,
    pub n_decode: i32,
    /// Also run standard llama.cpp's conversation.
    pub standard: bool,
}

/// One turn, both ways: a record each (kind `bench`, `turn` set), as `bench` writes per length.
#[derive(Debug, Clone, Serialize)]
pub struct TurnResult {
    pub turn: usize,
    /// The whole conversation's tokens when this turn's question was asked.
    pub prompt_tokens: usize,
    /// GemFilter's turn: conversation mode's record of it (`filter_tokens_decoded` is the whole
    /// prompt on turn 1, only what follows the document afterwards).
    pub gemfilter: Record,
    /// Standard llama.cpp's turn; null with `--no-standard`.
    pub standard: Option<Record>,
    /// Tokens standard llama.cpp prefilled this turn (the whole prompt on turn 1, the question
    /// afterwards: the answers are already in its KV cache).
    pub std_tokens_prefilled: Option<usize>,
    pub ratio_first_token: Option<f64>,
    pub ratio_peak_mem: Option<f64>,
    pub ratio_decode: Option<f64>,
}

/// One conversation at one length.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationResult {
    pub document_tokens: usize,
    pub layer: usize,
    pub k: usize,
    /// Loading the filter model and the full model (both stay resident), outside the turns.
    pub gem_load_s: f64,
    pub std_load_s: Option<f64>,
    pub turns: Vec<TurnResult>,
}

/// The questions, as plain text after the document (no template: synthetic models have none).
fn question(vocab: &Engine, t: usize) -> Vec<LlamaToken> {
    let text = format!(
        "\n\nQuestion {t}: What does the text above say in its part number {t}? Answer in one sentence.\nAnswer:"
    );
    vocab.model.vocab().tokenize(text.as_bytes(), false, false)
}

/// A conversation of `s.turns` questions whose last prompt and answer fill `length` tokens.
///
/// # Errors
/// A length too short for the turns, or any engine failure.
pub fn measure(
    s: &TurnsBench<'_>,
    vocab: &Engine,
    source: &[LlamaToken],
    bos: Option<LlamaToken>,
    length: usize,
) -> Result<ConversationResult> {
    let n_decode = usize::try_from(s.n_decode).unwrap_or(0);
    let questions: Vec<Vec<LlamaToken>> = (1..=s.turns).map(|t| question(vocab, t)).collect();
    let tail: usize = questions.iter().map(|q| q.len() + n_decode).sum();
    let doc_len = length
        .checked_sub(tail)
        .filter(|&d| d > s.gem.top_k)
        .with_context(|| {
            format!("--turns {}: length {length} leaves no document beyond --gem-topk after the questions and answers", s.turns)
        })?;
    let doc: Vec<LlamaToken> = bos
        .into_iter()
        .chain(source.iter().copied().cycle())
        .take(doc_len)
        .collect();
    let limits = GenLimits {
        n_predict: s.n_decode,
        ignore_eos: true,
        reverse_prompts: Vec::new(),
        special: false,
        shift: None,
    };
    let sampling = Sampling::greedy();
    let (mut rows, gem_load_s) = gem_turns(s, &doc, &questions, &limits, &sampling)?;
    let mut std_load_s = None;
    if s.standard {
        let (std, load_s) = std_turns(s, &doc, &questions, &limits, length)?;
        std_load_s = Some(load_s);
        for (row, (n, std)) in rows.iter_mut().zip(std) {
            let (g, t) = (&row.gemfilter, &std.timings);
            row.ratio_first_token = ratio(Some(g.timings.first_token_s), Some(t.first_token_s));
            row.ratio_peak_mem = bytes_ratio(g.peak_device_mem_bytes, std.peak_device_mem_bytes);
            row.ratio_decode = ratio(g.timings.decode_tok_per_s, t.decode_tok_per_s);
            row.std_tokens_prefilled = Some(n);
            row.standard = Some(std);
        }
    }
    Ok(ConversationResult {
        document_tokens: doc_len,
        layer: s.gem.layer,
        k: s.gem.top_k,
        gem_load_s,
        std_load_s,
        turns: rows,
    })
}

/// GemFilter's side: conversation mode's own turns, models loaded once.
fn gem_turns(
    s: &TurnsBench<'_>,
    doc: &[LlamaToken],
    questions: &[Vec<LlamaToken>],
    limits: &GenLimits,
    sampling: &Sampling,
) -> Result<(Vec<TurnResult>, f64)> {
    let t_load = Instant::now();
    let (filter, full) = load_models(s.model, s.gem)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let filter_engine = filter
        .as_ref()
        .or(full.as_ref())
        .context("no model loaded")?;
    let mut conversation = Conversation::new(filter_engine, full.as_ref());
    let settings = TurnSettings {
        model: s.model,
        gem: s.gem,
        protect: Protect::All,
        sampling,
        limits,
        prompt_cache: None,
        progress: false,
    };
    let mut tokens = doc.to_vec();
    let mut rows = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        tokens.extend_from_slice(q);
        notice!(
            "bench: turn {} of {}, {} tokens, GemFilter conversation",
            i + 1,
            questions.len(),
            tokens.len()
        );
        let asm = Assembled {
            tokens: tokens.clone(),
            context: 1.min(doc.len())..doc.len(),
            text: String::new(),
            templated: false,
        };
        let rec = conversation.turn(&settings, &asm, i + 1, "", &mut Discard)?;
        tokens.extend_from_slice(&rec.answer_tokens);
        let mut gemfilter = rec.record(&settings);
        gemfilter.kind = RecordKind::Bench;
        rows.push(TurnResult {
            turn: i + 1,
            prompt_tokens: asm.tokens.len(),
            gemfilter,
            standard: None,
            std_tokens_prefilled: None,
            ratio_first_token: None,
            ratio_peak_mem: None,
            ratio_decode: None,
        });
    }
    Ok((rows, load_s))
}

/// Per turn of standard llama.cpp: tokens prefilled, and its record.
type StdTurn = (usize, Record);

/// Standard llama.cpp's side: one context keeps the whole conversation; each turn prefills
/// what is new (the document and question, then each question) and decodes at depth.
fn std_turns(
    s: &TurnsBench<'_>,
    doc: &[LlamaToken],
    questions: &[Vec<LlamaToken>],
    limits: &GenLimits,
    length: usize,
) -> Result<(Vec<StdTurn>, f64)> {
    let t_load = Instant::now();
    let full = Engine::load(&s.model.path, &s.model.load)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let n_ctx = u32::try_from(length + 1)?.min(s.model.ctx_limit().max(1));
    let mut ctx = full.session(&s.model.ctx, n_ctx)?;
    let mut n_past = 0;
    let mut rows = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        let new: Vec<LlamaToken> = if i == 0 {
            doc.iter().chain(q).copied().collect()
        } else {
            q.clone()
        };
        notice!(
            "bench: turn {} of {}, {} new tokens at depth {n_past}, standard llama.cpp",
            i + 1,
            questions.len(),
            new.len()
        );
        let t0 = Instant::now();
        prefill(&mut ctx, &new, n_past, Some("prefill"))?;
        let prefill_s = t0.elapsed().as_secs_f64();
        n_past += new.len();
        let mut sampler = Sampling::greedy().sampler(full.model.n_vocab(), n_ctx);
        let g = generate(
            &mut ctx,
            &full.model,
            &mut sampler,
            Start {
                n_past,
                pos_offset: 0,
            },
            limits,
            true,
            &mut Discard,
        )?;
        let timings = Timings {
            rerun_s: prefill_s,
            first_token_s: g.first_token_s(t0),
            decode_tok_per_s: g.decode_tok_per_s(),
            total_s: t0.elapsed().as_secs_f64(),
            ..Timings::default()
        };
        let record = std_record(
            s,
            i + 1,
            doc.len(),
            n_past,
            &g,
            timings,
            full.device_mem_now(),
        );
        // Every sampled token but a context-full stop's was decoded into the cache.
        n_past += g.n_tokens();
        rows.push((new.len(), record));
    }
    Ok((rows, load_s))
}

/// Standard llama.cpp's turn as a record: the whole conversation is its prompt, nothing
/// filtered or selected.
fn std_record(
    s: &TurnsBench<'_>,
    turn: usize,
    doc_len: usize,
    n_prompt: usize,
    g: &Generated,
    timings: Timings,
    peak_device_mem_bytes: Option<u64>,
) -> Record {
    Record {
        turn: Some(turn),
        prompt_tokens: n_prompt,
        selected_tokens: n_prompt,
        context_range: [0, doc_len],
        timings,
        peak_device_mem_bytes,
        ..Record::answered(RecordKind::Bench, s.model, None, Protect::None, g)
    }
}

/// The turns table, after the per-length one.
pub fn print(c: &ConversationResult) {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.2}{unit}"));
    println!(
        "conversation: document {} tokens, r{} k{}; loads outside the turns: GemFilter {:.2} s (filter + full model), standard {}",
        c.document_tokens,
        c.layer,
        c.k,
        c.gem_load_s,
        opt(c.std_load_s, " s")
    );
    println!(
        "{:>4} {:>8} | {:>8} {:>8} {:>9} {:>9} {:>9} | {:>8} {:>9} {:>9} {:>9} | {:>6} {:>6} {:>6}",
        "turn",
        "tokens",
        "filter",
        "selected",
        "1st tok",
        "decode",
        "mem",
        "std new",
        "std 1st",
        "std dec",
        "std mem",
        "ttft×",
        "mem×",
        "dec×"
    );
    for t in &c.turns {
        let (g, std) = (&t.gemfilter, t.standard.as_ref());
        println!(
            "{:>4} {:>8} | {:>8} {:>8} {:>8.3}s {:>9} {:>9} | {:>8} {:>9} {:>9} {:>9} | {:>6} {:>6} {:>6}",
            t.turn,
            t.prompt_tokens,
            g.filter_tokens_decoded,
            g.selected_tokens,
            g.timings.first_token_s,
            opt(g.timings.decode_tok_per_s, "/s"),
            gb(g.peak_device_mem_bytes),
            t.std_tokens_prefilled.map_or("-".into(), |n| n.to_string()),
            opt(std.map(|r| r.timings.first_token_s), "s"),
            opt(std.and_then(|r| r.timings.decode_tok_per_s), "/s"),
            gb(std.and_then(|r| r.peak_device_mem_bytes)),
            opt(t.ratio_first_token, ""),
            opt(t.ratio_peak_mem, ""),
            opt(t.ratio_decode, ""),
        );
    }
}
