//! Sampling and the token loop: sample → stream UTF-8 text → decode the token → repeat,
//! until end-of-generation, `-n`, a reverse prompt, or a full context.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// llama-cli's sampling flags.
#[derive(Debug, Clone)]
pub struct Sampling {
    pub temp: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    pub seed: u32,
}

impl Sampling {
    /// Greedy decoding with no penalties (what bench and niah answer with).
    #[must_use]
    pub fn greedy() -> Self {
        Self {
            temp: 0.0,
            top_k: 40,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }

    /// Greedy with no penalties: the sampler chain would only take the argmax.
    #[must_use]
    pub fn is_plain_greedy(&self) -> bool {
        self.temp <= 0.0 && (self.repeat_penalty == 1.0 || self.repeat_last_n == 0)
    }

    /// The chain llama.cpp's common sampler builds for these flags (penalties → top-k →
    /// top-p → min-p → temperature → draw); temperature ≤ 0 is greedy, `--repeat-last-n -1`
    /// means the whole context.
    #[must_use]
    pub fn sampler(&self, n_vocab: i32, n_ctx: u32) -> LlamaSampler {
        let last_n = if self.repeat_last_n < 0 {
            i32::try_from(n_ctx).unwrap_or(i32::MAX)
        } else {
            self.repeat_last_n
        };
        let mut chain = vec![LlamaSampler::penalties(
            n_vocab,
            last_n,
            self.repeat_penalty,
            0.0,
            0.0,
        )];
        if self.temp <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            chain.extend([
                LlamaSampler::top_k(self.top_k),
                LlamaSampler::top_p(self.top_p, 1),
                LlamaSampler::min_p(self.min_p, 1),
                LlamaSampler::temp(self.temp),
                LlamaSampler::dist(self.seed),
            ]);
        }
        LlamaSampler::chain_simple(chain)
    }
}

/// Limits of one generation.
#[derive(Debug, Clone)]
pub struct GenLimits {
    /// -1: until end-of-generation or a full context.
    pub n_predict: i32,
    pub ignore_eos: bool,
    pub reverse_prompts: Vec<String>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfGeneration,
    MaxTokens,
    ReversePrompt,
    ContextFull,
    OutputClosed,
}

/// What came out.
#[derive(Debug, Clone)]
pub struct Generated {
    pub text: String,
    /// The sampled tokens, in order (all decoded into the context, unless generation stopped
    /// at the context's end).
    pub tokens: Vec<LlamaToken>,
    /// When the first token was sampled.
    pub first_token_at: Option<Instant>,
    /// Seconds from the first to the last sampled token.
    pub decode_secs: f64,
    pub stop: StopReason,
}

impl Generated {
    /// Tokens sampled (each counted in `-n`).
    #[must_use]
    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Seconds from `t0` to the first sampled token (0 when none was).
    #[must_use]
    pub fn first_token_s(&self, t0: Instant) -> f64 {
        self.first_token_at
            .map_or(0.0, |t| t.duration_since(t0).as_secs_f64())
    }

    /// Tokens per second after the first; None with fewer than two.
    #[must_use]
    pub fn decode_tok_per_s(&self) -> Option<f64> {
        let n = self.n_tokens();
        (n > 1 && self.decode_secs > 0.0).then(|| (n - 1) as f64 / self.decode_secs)
    }
}

/// Receives text as it is produced; returning `Ok(false)` stops generation (closed output).
pub trait TokenSink {
    /// # Errors
    /// Output errors other than a closed pipe.
    fn text(&mut self, piece: &str) -> Result<bool>;
}

/// Drops the text (bench and niah keep the answer from the outcome instead).
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl TokenSink for Discard {
    fn text(&mut self, _piece: &str) -> Result<bool> {
        Ok(true)
    }
}

/// Streams text to stdout; a closed pipe ends generation quietly.
pub struct Stdout {
    pub enabled: bool,
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

/// Where generation starts: after `n_past` cells of prefill whose last logits are current, the
/// first new token at position `n_past + pos_offset` (a re-run at original positions has more
/// positions than cells).
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub n_past: usize,
    pub pos_offset: usize,
}

/// Generate from `start`. With `greedy`
/// (temperature ≤ 0, no penalties) the argmax is read straight from the logits, skipping the
/// sampler chain's per-token candidate array over the whole vocabulary.
///
/// # Errors
/// Decode failures or sink errors.
pub fn generate(
    ctx: &mut LlamaContext<'_>,
    model: &LlamaModel,
    sampler: &mut LlamaSampler,
    start: Start,
    limits: &GenLimits,
    greedy: bool,
    sink: &mut dyn TokenSink,
) -> Result<Generated> {
    let vocab = model.vocab();
    let n_ctx = ctx.n_ctx() as usize;
    let mut out = Generated {
        text: String::new(),
        tokens: Vec::new(),
        first_token_at: None,
        decode_secs: 0.0,
        stop: StopReason::MaxTokens,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut batch = LlamaBatch::new(1, 1);
    let Start { n_past, pos_offset } = start;
    let mut pos = n_past;
    let mut idx = -1; // logits of the last token of the previous decode
    let max = usize::try_from(limits.n_predict).ok();

    loop {
        if max.is_some_and(|m| out.tokens.len() >= m) {
            out.stop = StopReason::MaxTokens;
            break;
        }
        let tok: LlamaToken = if greedy {
            argmax(ctx.get_logits_ith(idx))
        } else {
            let t = sampler.sample(ctx, idx);
            sampler.accept(t);
            t
        };
        let now = Instant::now();
        let first = *out.first_token_at.get_or_insert(now);
        out.decode_secs = now.duration_since(first).as_secs_f64();
        if vocab.is_eog(tok) && !limits.ignore_eos {
            out.stop = StopReason::EndOfGeneration;
            break;
        }
        out.tokens.push(tok);
        pending.extend(vocab.token_to_piece(tok, false, None));
        let piece = take_utf8(&mut pending);
        out.text.push_str(&piece);
        if !piece.is_empty() && !sink.text(&piece)? {
            out.stop = StopReason::OutputClosed;
            break;
        }
        if limits
            .reverse_prompts
            .iter()
            .any(|r| !r.is_empty() && out.text.ends_with(r.as_str()))
        {
            out.stop = StopReason::ReversePrompt;
            break;
        }
        if pos + 1 >= n_ctx {
            out.stop = StopReason::ContextFull;
            break;
        }
        batch.clear();
        batch.add(
            tok,
            i32::try_from(pos + pos_offset).context("position overflow")?,
            &[0],
            true,
        )?;
        ctx.decode(&mut batch)
            .map_err(|e| anyhow::anyhow!("llama_decode failed during generation: {e}"))?;
        pos += 1;
        idx = 0;
    }
    if !pending.is_empty() {
        let rest = String::from_utf8_lossy(&pending).into_owned();
        out.text.push_str(&rest);
        sink.text(&rest)?;
    }
    Ok(out)
}

fn argmax(logits: &[f32]) -> LlamaToken {
    let best = logits
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0;
    LlamaToken::new(i32::try_from(best).unwrap_or(0))
}

/// Split off the longest complete UTF-8 prefix; keep an incomplete trailing sequence.
fn take_utf8(buf: &mut Vec<u8>) -> String {
    match std::str::from_utf8(buf) {
        Ok(s) => {
            let s = s.to_owned();
            buf.clear();
            s
        }
        Err(e) if e.error_len().is_none() => {
            let rest = buf.split_off(e.valid_up_to());

            String::from_utf8(std::mem::replace(buf, rest)).unwrap_or_default()
        }
        Err(_) => {
            let s = String::from_utf8_lossy(buf).into_owned();
            buf.clear();
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::take_utf8;

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(super::argmax(&[0.1, 3.0, -1.0, 3.0]).0, 1);
        assert_eq!(super::argmax(&[f32::NAN, 2.0]).0, 1);
    }

    #[test]
    fn utf8_split_across_tokens() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut buf = vec![b'a', euro[0], euro[1]];
        assert_eq!(take_utf8(&mut buf), "a");
        assert_eq!(buf.len(), 2);
        buf.push(euro[2]);
        assert_eq!(take_utf8(&mut buf), "€");
        assert!(buf.is_empty());
        let mut bad = vec![0xff, b'b'];
        assert_eq!(take_utf8(&mut bad), "\u{fffd}b");
    }
}
