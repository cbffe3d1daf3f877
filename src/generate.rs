//! Sampling and the token loop: sample → stream UTF-8 text → decode the token → repeat,
//! until end-of-generation, `-n`, a reverse prompt, or a full context.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

/// One stage of llama.cpp's sampler chain (`common_sampler_type`), in `--samplers` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Penalties,
    Dry,
    TopNSigma,
    TopK,
    Typical,
    TopP,
    MinP,
    Xtc,
    Temperature,
    /// Adaptive-p: named in `--samplers`, it replaces the final seeded draw.
    AdaptiveP,
}

impl Stage {
    /// llama.cpp's default order (`common_params_sampling::samplers`).
    pub const DEFAULT: [Stage; 9] = [
        Stage::Penalties,
        Stage::Dry,
        Stage::TopNSigma,
        Stage::TopK,
        Stage::Typical,
        Stage::TopP,
        Stage::MinP,
        Stage::Xtc,
        Stage::Temperature,
    ];

    /// A `--samplers` name as llama.cpp reads it (canonical, kebab-case, without separators,
    /// or an alias; any case). `None` for names it does not know.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase().replace(['_', '-'], "");
        Some(match n.as_str() {
            "penalties" => Self::Penalties,
            "dry" => Self::Dry,
            "topnsigma" => Self::TopNSigma,
            "topk" => Self::TopK,
            "typp" | "typ" => Self::Typical,
            "topp" | "nucleus" => Self::TopP,
            "minp" => Self::MinP,
            "xtc" => Self::Xtc,
            "temperature" | "temp" => Self::Temperature,
            "adaptivep" => Self::AdaptiveP,
            _ => return None,
        })
    }

    /// A `--sampler-seq` letter.
    #[must_use]
    pub fn from_char(c: char) -> Option<Self> {
        Some(match c {
            'e' => Self::Penalties,
            'd' => Self::Dry,
            's' => Self::TopNSigma,
            'k' => Self::TopK,
            'y' => Self::Typical,
            'p' => Self::TopP,
            'm' => Self::MinP,
            'x' => Self::Xtc,
            't' => Self::Temperature,
            'a' => Self::AdaptiveP,
            _ => return None,
        })
    }
}

/// llama-cli's sampling flags (`common_params_sampling`).
#[derive(Debug, Clone)]
pub struct Sampling {
    pub temp: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    /// -1: the context size.
    pub repeat_last_n: i32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub dry_multiplier: f32,
    pub dry_base: f32,
    pub dry_allowed_length: i32,
    /// -1: the context size.
    pub dry_penalty_last_n: i32,
    pub dry_breakers: Vec<String>,
    pub top_n_sigma: f32,
    pub xtc_probability: f32,
    pub xtc_threshold: f32,
    pub typical_p: f32,
    pub dynatemp_range: f32,
    pub dynatemp_exponent: f32,
    /// 0 off, 1 Mirostat, 2 Mirostat 2.0.
    pub mirostat: u8,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    /// `--adaptive-target` (negative: off) and `--adaptive-decay`, for an `adaptive_p` stage.
    pub adaptive_target: f32,
    pub adaptive_decay: f32,
    /// The chain's order (`--samplers`, `--sampler-seq`).
    pub stages: Vec<Stage>,
    /// `-l`: (token id, bias).
    pub logit_bias: Vec<(i32, f32)>,
    /// GBNF text (`--grammar`, `--grammar-file`).
    pub grammar: Option<String>,
    /// `--ignore-eos`: llama.cpp biases every end-of-generation token to -inf (when the
    /// vocabulary has an EOS token), so none is ever sampled.
    pub ban_eog: bool,
    pub seed: u32,
}

impl Default for Sampling {
    /// llama.cpp's defaults.
    fn default() -> Self {
        Self {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: 64,
            dry_breakers: ["\n", ":", "\"", "*"].map(String::from).to_vec(),
            top_n_sigma: -1.0,
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            typical_p: 1.0,
            dynatemp_range: 0.0,
            dynatemp_exponent: 1.0,
            mirostat: 0,
            mirostat_tau: 5.0,
            mirostat_eta: 0.1,
            adaptive_target: -1.0,
            adaptive_decay: 0.9,
            stages: Stage::DEFAULT.to_vec(),
            logit_bias: Vec::new(),
            grammar: None,
            ban_eog: false,
            seed: u32::MAX,
        }
    }
}

impl Sampling {
    /// Greedy decoding with no penalties (what bench and niah answer with).
    #[must_use]
    pub fn greedy() -> Self {
        Self {
            temp: 0.0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
            ..Self::default()
        }
    }

    /// Greedy with nothing that could change the argmax: the chain would only take it.
    #[must_use]
    pub fn is_plain_greedy(&self) -> bool {
        let penalties = (self.repeat_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0)
            && self.repeat_last_n != 0;
        // XTC and typical-p can drop the most likely token; without a temperature stage the
        // draw samples the whole distribution.
        self.temp <= 0.0
            && self.stages.contains(&Stage::Temperature)
            && self.xtc_probability <= 0.0
            && self.typical_p >= 1.0
            && self.mirostat == 0
            && !penalties
            && (self.dry_multiplier == 0.0 || self.dry_penalty_last_n == 0)
            && self.logit_bias.is_empty()
            && self.grammar.is_none()
            && !self.ban_eog
    }

    fn last_n(n: i32, n_ctx: u32) -> i32 {
        if n < 0 {
            i32::try_from(n_ctx).unwrap_or(i32::MAX)
        } else {
            n
        }
    }

    /// Penalties then greedy: what the measuring tools decode with.
    #[must_use]
    pub fn sampler(&self, n_vocab: i32, n_ctx: u32) -> LlamaSampler {
        LlamaSampler::chain_simple([
            LlamaSampler::penalties(
                n_vocab,
                Self::last_n(self.repeat_last_n, n_ctx),
                self.repeat_penalty,
                self.frequency_penalty,
                self.presence_penalty,
            ),
            LlamaSampler::greedy(),
        ])
    }

    /// The chain llama.cpp's `common_sampler_init` builds for these flags, in `--samplers`
    /// order: logit bias, then the stages and a seeded draw (or temperature and Mirostat),
    /// with the grammar kept apart for its rejection sampling, as `common_sampler_sample` does.
    ///
    /// # Errors
    /// A grammar llama.cpp cannot parse.
    pub fn chain(&self, model: &LlamaModel, n_ctx: u32) -> Result<Sampler> {
        let n_vocab = model.n_vocab();
        let mut chain = Vec::new();
        let mut biases: Vec<LlamaLogitBias> = self
            .logit_bias
            .iter()
            .map(|&(t, b)| LlamaLogitBias::new(LlamaToken::new(t), b))
            .collect();
        let vocab = model.vocab();
        if self.ban_eog && vocab.eos().0 >= 0 {
            biases.extend(
                (0..n_vocab)
                    .map(LlamaToken::new)
                    .filter(|&t| vocab.is_eog(t))
                    .map(|t| LlamaLogitBias::new(t, f32::NEG_INFINITY)),
            );
        }
        if !biases.is_empty() {
            chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
        }
        match self.mirostat {
            0 => {
                chain.extend(
                    self.stages
                        .iter()
                        .filter_map(|s| self.stage(*s, model, n_ctx)),
                );
                // As llama.cpp: adaptive-p draws the token instead of `dist` when it is named.
                chain.push(if self.stages.contains(&Stage::AdaptiveP) {
                    LlamaSampler::adaptive_p(self.adaptive_target, self.adaptive_decay, self.seed)
                } else {
                    LlamaSampler::dist(self.seed)
                });
            }
            m => {
                chain.push(LlamaSampler::temp(self.temp));
                chain.push(if m == 1 {
                    LlamaSampler::mirostat(
                        n_vocab,
                        self.seed,
                        self.mirostat_tau,
                        self.mirostat_eta,
                        100,
                    )
                } else {
                    LlamaSampler::mirostat_v2(self.seed, self.mirostat_tau, self.mirostat_eta)
                });
            }
        }
        let grammar = match &self.grammar {
            Some(g) => Some(
                LlamaSampler::grammar(model, g, "root")
                    .map_err(|e| anyhow::anyhow!("--grammar: llama.cpp cannot parse it ({e})"))?,
            ),
            None => None,
        };
        Ok(Sampler {
            chain: LlamaSampler::chain_simple(chain),
            grammar,
        })
    }

    /// The sampler of one stage; None for adaptive-p, which ends the chain.
    fn stage(&self, stage: Stage, model: &LlamaModel, n_ctx: u32) -> Option<LlamaSampler> {
        // min_keep is 0 in llama.cpp's common sampler.
        Some(match stage {
            Stage::Penalties => LlamaSampler::penalties(
                model.n_vocab(),
                Self::last_n(self.repeat_last_n, n_ctx),
                self.repeat_penalty,
                self.frequency_penalty,
                self.presence_penalty,
            ),
            Stage::Dry => LlamaSampler::dry(
                model,
                self.dry_multiplier,
                self.dry_base,
                self.dry_allowed_length,
                Self::last_n(self.dry_penalty_last_n, n_ctx),
                self.dry_breakers.iter().map(String::as_bytes),
            ),
            Stage::TopNSigma => LlamaSampler::top_n_sigma(self.top_n_sigma),
            Stage::TopK => LlamaSampler::top_k(self.top_k),
            Stage::Typical => LlamaSampler::typical(self.typical_p, 0),
            Stage::TopP => LlamaSampler::top_p(self.top_p, 0),
            Stage::MinP => LlamaSampler::min_p(self.min_p, 0),
            Stage::Xtc => LlamaSampler::xtc(self.xtc_probability, self.xtc_threshold, 0, self.seed),
            Stage::Temperature => {
                LlamaSampler::temp_ext(self.temp, self.dynatemp_range, self.dynatemp_exponent)
            }
            Stage::AdaptiveP => return None,
        })
    }
}

/// Picks the next token and remembers the ones chosen.
pub trait Pick {
    /// The token for the logits at `idx` (not yet accepted).
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken;
    /// Record a chosen token (penalties, DRY, Mirostat and the grammar keep state).
    fn accept(&mut self, token: LlamaToken);
}

impl Pick for LlamaSampler {
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken {
        let mut cur = ctx.token_data_array_ith(idx);
        cur.apply_sampler(self);
        cur.selected_token()
            .unwrap_or_else(|| argmax(ctx.get_logits_ith(idx)))
    }

    fn accept(&mut self, token: LlamaToken) {
        LlamaSampler::accept(self, token);
    }
}

/// llama.cpp's common sampler: the chain, and the grammar applied as `common_sampler_sample`
/// does (sample with the chain; if the grammar rejects the token, apply the grammar to every
/// candidate and sample again).
pub struct Sampler {
    pub chain: LlamaSampler,
    pub grammar: Option<LlamaSampler>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("grammar", &self.grammar.is_some())
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// Feed prompt tokens to the chain (penalties see them, as in llama-completion); the
    /// grammar only constrains the answer.
    pub fn accept_prompt(&mut self, tokens: &[LlamaToken]) {
        self.chain.accept_many(tokens);
    }

    /// `common_sampler_reset`: the chain starts over (penalty history cleared, seeded stages
    /// re-seeded); the grammar keeps its state.
    pub fn reset(&mut self) {
        self.chain.reset();
    }
}

impl Pick for Sampler {
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken {
        let id = self.chain.pick(ctx, idx);
        let Some(grammar) = self.grammar.as_mut() else {
            return id;
        };
        let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(id, 1.0, 0.0)], false);
        one.apply_sampler(grammar);
        if one
            .data
            .first()
            .is_some_and(|d| d.logit() != f32::NEG_INFINITY)
        {
            return id;
        }
        let mut cur = ctx.token_data_array_ith(idx);
        cur.apply_sampler(grammar);
        cur.apply_sampler(&mut self.chain);
        cur.selected_token().unwrap_or(id)
    }

    fn accept(&mut self, token: LlamaToken) {
        if let Some(g) = self.grammar.as_mut() {
            LlamaSampler::accept(g, token);
        }
        LlamaSampler::accept(&mut self.chain, token);
    }
}

/// Limits of one generation.
#[derive(Debug, Clone)]
pub struct GenLimits {
    /// -1: until end-of-generation or a full context.
    pub n_predict: i32,
    pub ignore_eos: bool,
    pub reverse_prompts: Vec<String>,
    /// Print special tokens' text (`-sp`).
    pub special: bool,
    /// `--context-shift` with `--keep N`: a full context drops half of what follows the kept
    /// tokens and generation goes on, as llama-completion does; None: it stops.
    pub shift: Option<i32>,
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
    sampler: &mut dyn Pick,
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
            let t = sampler.pick(ctx, idx);
            sampler.accept(t);
            t
        };
        let now = Instant::now();
        let first = *out.first_token_at.get_or_insert(now);
        out.decode_secs = now.duration_since(first).as_secs_f64();
        if vocab.is_eog(tok) && !limits.ignore_eos {
            out.stop = StopReason::EndOfGeneration;
            // `-sp` shows the end-of-turn marker as llama.cpp does; the answer's text stays
            // without it (a conversation renders earlier answers into its next prompt).
            if limits.special {
                pending.extend(vocab.token_to_piece(tok, true, None));
                let shown = String::from_utf8_lossy(&std::mem::take(&mut pending)).into_owned();
                sink.text(&shown)?;
            }
            break;
        }
        out.tokens.push(tok);
        pending.extend(vocab.token_to_piece(tok, limits.special, None));
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
            // Shifting moves cells' positions; a selection decoded at its original positions
            // (pos_offset > 0) has no contiguous positions to move.
            match limits.shift {
                Some(keep) if pos_offset == 0 && limits.n_predict != -2 => {
                    let n_keep = keep_count(keep, n_past, vocab.should_add_bos());
                    pos = shift(ctx, pos, n_keep)?;
                }
                _ => {
                    out.stop = StopReason::ContextFull;
                    break;
                }
            }
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

/// Group-attention self-extend (`-gan N -gaw W`): as the context grows past each window of
/// `w` positions, llama-completion divides that window's positions by `n` and moves the rest
/// back, so the positions the model sees stay within what it was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfExtend {
    /// `-gan`: the group size (> 1).
    pub n: std::num::NonZeroU8,
    /// `-gaw`: the window, a multiple of `n`.
    pub w: u32,
}

impl SelfExtend {
    /// llama-completion's block before each decode: while `n_past` reaches past the next
    /// window (at `ga_i`), shift, divide and shift the cache's positions; `n_past` and `ga_i`
    /// come back updated.
    ///
    /// # Errors
    /// Positions past `i32::MAX`.
    pub fn apply(
        &self,
        ctx: &mut LlamaContext<'_>,
        n_past: &mut u32,
        ga_i: &mut u32,
    ) -> Result<()> {
        let (n, w) = (u32::from(self.n.get()), self.w);
        let err = |e| anyhow::anyhow!("self-extend: {e}");
        while *n_past >= *ga_i + w {
            // As llama.cpp's ints: dd is negative.
            let ib = i64::from(n * *ga_i / w);
            let bd = i64::from((w / n) * (n - 1));
            let dd = i64::from(w / n) - ib * bd - i64::from(w);
            let i32_of = |v: i64| i32::try_from(v).context("self-extend: position overflow");
            let u32_of = |v: i64| u32::try_from(v).context("self-extend: position overflow");
            let (gi, np) = (i64::from(*ga_i), i64::from(*n_past));
            ctx.kv_cache_seq_add(0, Some(*ga_i), Some(*n_past), i32_of(ib * bd)?)
                .map_err(err)?;
            ctx.kv_cache_seq_div(
                0,
                Some(u32_of(gi + ib * bd)?),
                Some(u32_of(gi + ib * bd + i64::from(w))?),
                self.n,
            )
            .map_err(err)?;
            ctx.kv_cache_seq_add(
                0,
                Some(u32_of(gi + ib * bd + i64::from(w))?),
                Some(u32_of(np + ib * bd)?),
                i32_of(dd)?,
            )
            .map_err(err)?;
            *n_past = u32_of(np - bd)?;
            *ga_i += w / n;
        }
        Ok(())
    }
}

/// llama-completion's `n_keep`: `--keep` -1 (or more than the prompt) keeps the whole prompt,
/// otherwise `--keep` tokens plus the BOS token when the vocabulary adds one.
#[must_use]
pub fn keep_count(keep: i32, n_prompt: usize, add_bos: bool) -> usize {
    match usize::try_from(keep) {
        Ok(k) if k <= n_prompt => k + usize::from(add_bos),
        _ => n_prompt,
    }
}

/// llama-completion's context shift: of the `n_past` cells, keep the first `n_keep`, drop half
/// of the rest and move the later half back over them; returns the new `n_past`.
///
/// # Errors
/// A context whose memory cannot shift (recurrent models), or nothing left to drop.
pub fn shift(ctx: &mut LlamaContext<'_>, n_past: usize, n_keep: usize) -> Result<usize> {
    let n_discard = n_past.saturating_sub(n_keep) / 2;
    anyhow::ensure!(
        n_discard > 0,
        "--context-shift: the context is full and --keep leaves nothing to drop (use a larger -c or a smaller --keep)"
    );
    let p = |v: usize| u32::try_from(v).context("position overflow");
    let removed = ctx
        .clear_kv_cache_seq(Some(0), Some(p(n_keep)?), Some(p(n_keep + n_discard)?))
        .map_err(|e| anyhow::anyhow!("--context-shift: cannot drop cells ({e})"))?;
    anyhow::ensure!(removed, "--context-shift: this model's memory cannot shift");
    let delta = -i32::try_from(n_discard).context("position overflow")?;
    ctx.kv_cache_seq_add(0, Some(p(n_keep + n_discard)?), Some(p(n_past)?), delta)
        .map_err(|e| anyhow::anyhow!("--context-shift: this model's memory cannot shift ({e})"))?;
    Ok(n_past - n_discard)
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
