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
use crate::generate::{generate, Discard, GenLimits, Sampling, Start};
use crate::notice;
use crate::pipeline::GemSettings;
use crate::prompt::{Assembled, Protect};
use crate::report::{bytes_ratio, gb, ratio};
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

/// One turn, both ways.
#[derive(Debug, Clone, Serialize)]
pub struct TurnResult {
    pub turn: usize,
    /// The whole conversation's tokens when this turn's question was asked.
    pub prompt_tokens: usize,
    /// Tokens GemFilter decoded through its filter layers this turn (the whole prompt on turn 1,
    /// only what follows the document afterwards).
    pub filter_tokens_decoded: usize,
    pub selected_tokens: usize,
    pub gem_first_token_s: f64,
    pub gem_decode_tok_per_s: Option<f64>,
    pub gem_device_mem_bytes: Option<u64>,
    /// Tokens standard llama.cpp prefilled this turn (the whole prompt on turn 1, the question
    /// afterwards: the answers are already in its KV cache).
    pub std_tokens_prefilled: Option<usize>,
    pub std_first_token_s: Option<f64>,
    pub std_decode_tok_per_s: Option<f64>,
    pub std_device_mem_bytes: Option<u64>,
    pub ratio_first_token: Option<f64>,
    pub ratio_mem: Option<f64>,
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
        for (row, (n, ft, dec, mem)) in rows.iter_mut().zip(std) {
            row.std_tokens_prefilled = Some(n);
            row.std_first_token_s = Some(ft);
            row.std_decode_tok_per_s = dec;
            row.std_device_mem_bytes = mem;
            row.ratio_first_token = ratio(Some(row.gem_first_token_s), Some(ft));
            row.ratio_mem = bytes_ratio(row.gem_device_mem_bytes, mem);
            row.ratio_decode = ratio(row.gem_decode_tok_per_s, dec);
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
        rows.push(TurnResult {
            turn: i + 1,
            prompt_tokens: asm.tokens.len(),
            filter_tokens_decoded: rec.filter_tokens_decoded,
            selected_tokens: rec.selected_tokens,
            gem_first_token_s: rec.first_token_s,
            gem_decode_tok_per_s: rec.decode_tok_per_s,
            gem_device_mem_bytes: rec.device_mem_bytes,
            std_tokens_prefilled: None,
            std_first_token_s: None,
            std_decode_tok_per_s: None,
            std_device_mem_bytes: None,
            ratio_first_token: None,
            ratio_mem: None,
            ratio_decode: None,
        });
    }
    Ok((rows, load_s))
}

/// Per turn of standard llama.cpp: tokens prefilled, first token, decode rate, device memory.
type StdTurn = (usize, f64, Option<f64>, Option<u64>);

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
        // Every sampled token but a context-full stop's was decoded into the cache.
        n_past += g.n_tokens();
        rows.push((
            new.len(),
            g.first_token_s(t0),
            g.decode_tok_per_s(),
            full.device_mem_now(),
        ));
    }
    Ok((rows, load_s))
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
        println!(
            "{:>4} {:>8} | {:>8} {:>8} {:>8.3}s {:>9} {:>9} | {:>8} {:>9} {:>9} {:>9} | {:>6} {:>6} {:>6}",
            t.turn,
            t.prompt_tokens,
            t.filter_tokens_decoded,
            t.selected_tokens,
            t.gem_first_token_s,
            opt(t.gem_decode_tok_per_s, "/s"),
            gb(t.gem_device_mem_bytes),
            t.std_tokens_prefilled.map_or("-".into(), |n| n.to_string()),
            opt(t.std_first_token_s, "s"),
            opt(t.std_decode_tok_per_s, "/s"),
            gb(t.std_device_mem_bytes),
            opt(t.ratio_first_token, ""),
            opt(t.ratio_mem, ""),
            opt(t.ratio_decode, ""),
        );
    }
}
