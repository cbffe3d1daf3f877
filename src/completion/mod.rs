//! llama-completion's main loop, for raw text (`-no-cnv`): interactive mode (`-i`, `-if`,
//! `--in-prefix`, `--in-suffix`, `--in-prefix-bos`, `-mli`, reverse prompts handing control
//! back) and group-attention self-extend (`-gan`, `-gaw`). A port of `completion.cpp`'s loop,
//! step for step, so the same command line and input give the same tokens: what is decoded in
//! which batch, when the sampler is reset and what the reverse prompts are matched against all
//! follow it. With GemFilter on, a long prompt is filtered first and the selection is the
//! prompt the loop starts from; what is typed later is decoded whole.

mod input;

use std::io::Write;

use anyhow::{bail, Context, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::engine::ffi::signal;
use crate::engine::prefill;
use crate::generate::{keep_count, shift, Pick, Sampler, SelfExtend};
use crate::notice;
use crate::pipeline::Models;
use crate::prompt;
use crate::selector;
use crate::settings::{Interactive, RunSettings};

use input::Lines;

/// llama-completion's sampler history (`common_params_sampling::n_prev`, at least 32).
const N_PREV: usize = 64;
/// Tokens of history the reverse prompts are matched against.
const N_PREV_MATCH: usize = 32;

/// Run the loop on the prompt of `s` (filtered first when GemFilter is on).
///
/// # Errors
/// Bad input, a prompt longer than the context, or engine failures, as one message.
pub fn run(s: &RunSettings) -> Result<()> {
    let p = crate::run::prepare(s)?;
    let mut out = Out::default();
    if s.echo_prompt {
        out.write(p.assembled.text.as_bytes())?;
    }
    let mut models = Models::new(&s.model, s.gem.as_ref());
    let prompt_tokens = select(s, &p.assembled.tokens, &p.protected, &mut models)?;
    let engine = models.full()?;
    if s.show_selection && prompt_tokens.len() < p.assembled.tokens.len() {
        let text = engine.model.vocab().detokenize(&prompt_tokens, false, true);
        eprintln!(
            "--- selected {} of {} tokens ---\n{}\n--- end of selection ---",
            prompt_tokens.len(),
            p.assembled.tokens.len(),
            String::from_utf8_lossy(&text)
        );
    }
    let n_ctx = ctx_size(s, prompt_tokens.len());
    let mut ctx = engine.session(&s.model.ctx, n_ctx)?;
    let sampler = s.sampling.chain(&engine.model, n_ctx)?;
    signal::install();
    let mut l = Loop::new(s, &engine.model, sampler, prompt_tokens, n_ctx)?;
    let r = l.run(&mut ctx, &mut out);
    signal::answering(false);
    r?;
    out.write(b"\n")
}

/// The prompt the loop starts from: the selection when GemFilter filters it, else all of it.
fn select(
    s: &RunSettings,
    tokens: &[LlamaToken],
    protected: &[bool],
    models: &mut Models,
) -> Result<Vec<LlamaToken>> {
    let Some(gem) = &s.gem else {
        return Ok(tokens.to_vec());
    };
    let n_protected = protected.iter().filter(|&&p| p).count();
    if let Some(why) = selector::skip(gem, tokens.len(), n_protected) {
        notice!("{why}");
        return Ok(tokens.to_vec());
    }
    selector::warn_if_nothing_kept(gem, n_protected);
    let sel = models.select(tokens, protected, gem, &s.model.ctx, true)?;
    Ok(sel.indices.iter().map(|&i| tokens[i]).collect())
}

/// llama-completion's context: `-c`, else the model's training context; a run that is not
/// interactive and has a budget needs only the prompt and `-n` (the cells, whatever positions
/// self-extend gives them).
fn ctx_size(s: &RunSettings, n_prompt: usize) -> u32 {
    let limit = s.model.ctx_limit();
    if s.model.ctx_size > 0 || s.interactive.is_some() {
        return limit;
    }
    match u32::try_from(s.limits.n_predict) {
        Ok(n) => u32::try_from(n_prompt)
            .unwrap_or(u32::MAX)
            .saturating_add(n)
            .saturating_add(4)
            .min(limit),
        Err(_) => limit,
    }
}

/// Standard output as llama-completion writes it: bytes as they come, flushed; a closed pipe
/// ends the run quietly.
#[derive(Default)]
struct Out {
    closed: bool,
}

impl Out {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.closed || bytes.is_empty() {
            return Ok(());
        }
        let mut o = std::io::stdout().lock();
        match o.write_all(bytes).and_then(|()| o.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(e).context("cannot write to stdout"),
        }
    }
}

/// The loop's state, named as in `completion.cpp`.
struct Loop<'m> {
    model: &'m LlamaModel,
    sampler: Sampler,
    interactive: Option<Interactive>,
    extend: Option<SelfExtend>,
    /// Context shift: `n_keep` (None: a full context stops the run).
    n_keep: Option<usize>,
    special: bool,
    n_predict: i32,
    n_batch: usize,
    n_ctx: usize,
    antiprompts: Vec<String>,
    /// Reverse prompts that are one token.
    antiprompt_tokens: Vec<LlamaToken>,
    /// The sampler's history (`common_sampler::prev`).
    prev: std::collections::VecDeque<LlamaToken>,
    embd_inp: Vec<LlamaToken>,
    embd: Vec<LlamaToken>,
    n_past: u32,
    n_consumed: usize,
    n_remain: i32,
    ga_i: u32,
    is_interacting: bool,
    is_antiprompt: bool,
    lines: Lines,
}

impl<'m> Loop<'m> {
    fn new(
        s: &RunSettings,
        model: &'m LlamaModel,
        sampler: Sampler,
        prompt_tokens: Vec<LlamaToken>,
        n_ctx: u32,
    ) -> Result<Self> {
        let n_ctx = n_ctx as usize;
        if prompt_tokens.len() + 4 > n_ctx {
            bail!(
                "the prompt is {} tokens, more than the context (-c {n_ctx}) less 4 holds",
                prompt_tokens.len()
            );
        }
        let vocab = model.vocab();
        let antiprompts = s.limits.reverse_prompts.clone();
        let antiprompt_tokens = antiprompts
            .iter()
            .filter_map(|a| match vocab.tokenize(a.as_bytes(), false, true)[..] {
                [t] => Some(t),
                _ => None,
            })
            .collect();
        let n_keep = s
            .limits
            .shift
            .map(|k| keep_count(k, prompt_tokens.len(), vocab.should_add_bos()));
        let interactive = s.interactive.clone();
        Ok(Self {
            model,
            sampler,
            is_interacting: interactive.as_ref().is_some_and(|i| i.first),
            interactive,
            extend: s.self_extend,
            n_keep,
            special: s.limits.special,
            n_predict: s.limits.n_predict,
            n_batch: 1,
            n_ctx,
            antiprompts,
            antiprompt_tokens,
            prev: std::collections::VecDeque::with_capacity(N_PREV),
            embd_inp: prompt_tokens,
            embd: Vec::new(),
            n_past: 0,
            n_consumed: 0,
            n_remain: s.limits.n_predict,
            ga_i: 0,
            is_antiprompt: false,
            lines: Lines::stdin(),
        })
    }

    fn remember(&mut self, t: LlamaToken) {
        if self.prev.len() == N_PREV {
            self.prev.pop_front();
        }
        self.prev.push_back(t);
    }

    fn piece(&self, t: LlamaToken, special: bool) -> Vec<u8> {
        self.model.vocab().token_to_piece(t, special, None)
    }

    /// `common_sampler_prev_str`: the last 32 tokens of history as text (special tokens shown).
    fn prev_str(&self) -> Vec<u8> {
        let n = self.prev.len().min(N_PREV_MATCH);
        let mut s = Vec::new();
        for &t in self.prev.iter().skip(self.prev.len() - n) {
            s.extend(self.piece(t, true));
        }
        s
    }

    fn tokenize(&self, text: &str, parse_special: bool) -> Vec<LlamaToken> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, parse_special)
    }

    /// Decode `embd` at `n_past`, after a context shift or self-extend as llama-completion
    /// does them; false when a full context ends the run.
    fn decode(&mut self, ctx: &mut LlamaContext<'_>) -> Result<bool> {
        let max_embd = self.n_ctx.saturating_sub(4);
        if self.embd.len() > max_embd {
            let skipped = self.embd.len() - max_embd;
            self.embd.truncate(max_embd);
            notice!("input too long: skipped {skipped} tokens");
        }
        match self.extend {
            None => {
                if self.n_past as usize + self.embd.len() >= self.n_ctx {
                    let Some(n_keep) = self.n_keep else {
                        notice!("context full and context shift is disabled => stopping");
                        return Ok(false);
                    };
                    let n = shift(ctx, self.n_past as usize, n_keep)?;
                    self.n_past = u32::try_from(n).context("position overflow")?;
                }
            }
            Some(ext) => ext.apply(ctx, &mut self.n_past, &mut self.ga_i)?,
        }
        prefill(ctx, &self.embd, self.n_past as usize, None)?;
        self.n_past += u32::try_from(self.embd.len()).context("position overflow")?;
        Ok(true)
    }

    fn run(&mut self, ctx: &mut LlamaContext<'_>, out: &mut Out) -> Result<()> {
        let interactive = self.interactive.clone();
        let vocab = self.model.vocab();
        self.n_batch = (ctx.n_batch() as usize).max(1);
        if interactive.is_some() {
            signal::answering(true);
        }
        while (self.n_remain != 0 && !self.is_antiprompt) || interactive.is_some() {
            if out.closed {
                break;
            }
            if !self.embd.is_empty() && !self.decode(ctx)? {
                break;
            }
            self.embd.clear();
            let sampled = self.embd_inp.len() <= self.n_consumed && !self.is_interacting;
            if sampled {
                let id = self.sampler.pick(ctx, -1);
                self.sampler.accept(id);
                self.remember(id);
                self.embd.push(id);
                self.n_remain -= 1;
            } else {
                while self.embd_inp.len() > self.n_consumed {
                    let t = self.embd_inp[self.n_consumed];
                    self.embd.push(t);
                    self.sampler.accept_prompt(&[t]);
                    self.remember(t);
                    self.n_consumed += 1;
                    if self.embd.len() == self.n_batch {
                        break;
                    }
                }
            }
            // The prompt was shown (or not) before the loop; what is typed is never echoed.
            if sampled {
                let piece = self.piece(self.embd[0], self.special);
                out.write(&piece)?;
            }
            // Ctrl-C while generating hands control to the user, as llama-completion's handler.
            if interactive.is_some() && signal::interrupted() && !self.is_interacting {
                self.is_interacting = true;
                signal::answering(true);
            }
            if self.embd_inp.len() <= self.n_consumed {
                self.check_antiprompts(interactive.is_some());
                let last = self.prev.back().copied();
                if last.is_some_and(|t| vocab.is_eog(t)) && interactive.is_some() {
                    if let Some(first) = self.antiprompts.first() {
                        let t = self.tokenize(first, true);
                        self.embd_inp.extend(t);
                        self.is_antiprompt = true;
                    }
                    self.is_interacting = true;
                    out.write(b"\n")?;
                }
                // is_interacting is only ever set in interactive mode.
                if let Some(i) = interactive
                    .as_ref()
                    .filter(|_| self.n_past > 0 && self.is_interacting)
                {
                    if !self.read_input(i, out)? {
                        break;
                    }
                }
                if self.n_past > 0 {
                    if self.is_interacting {
                        self.sampler.reset();
                        self.prev.clear();
                    }
                    self.is_interacting = false;
                }
            }
            if interactive.is_none() && self.embd.last().is_some_and(|&t| vocab.is_eog(t)) {
                break;
            }
            if interactive.is_some() && self.n_remain <= 0 && self.n_predict >= 0 {
                self.n_remain = self.n_predict;
                self.is_interacting = true;
            }
        }
        Ok(())
    }

    /// Whether the text of the last tokens ends with a reverse prompt (within two bytes when
    /// not interactive, where a prompt may be tokenized with what follows it), or the last
    /// token is a one-token reverse prompt.
    fn check_antiprompts(&mut self, interactive: bool) {
        if self.antiprompts.is_empty() {
            return;
        }
        let last_output = self.prev_str();
        self.is_antiprompt = false;
        let pad = if interactive { 0 } else { 2 };
        for a in &self.antiprompts {
            let a = a.as_bytes();
            let start = last_output.len().saturating_sub(a.len() + pad);
            if !a.is_empty() && last_output[start..].windows(a.len()).any(|w| w == a) {
                self.is_antiprompt = true;
                break;
            }
        }
        if !last_output.is_empty() {
            if let Some(last) = self.prev.back() {
                if self.antiprompt_tokens.contains(last) {
                    self.is_antiprompt = true;
                }
            }
        }
        if self.is_antiprompt && interactive {
            self.is_interacting = true;
        }
    }

    /// Wait for a line (or lines, with `-mli`) and queue it with `--in-prefix`/`--in-suffix`;
    /// false at the end of input.
    fn read_input(&mut self, i: &Interactive, out: &mut Out) -> Result<bool> {
        signal::answering(false);
        if i.prefix_bos {
            self.embd_inp.push(self.model.vocab().bos());
        }
        out.write(i.prefix.as_bytes())?;
        let mut buffer = self.lines.read(i.multiline)?;
        signal::answering(true);
        if buffer.is_empty() {
            return Ok(false);
        }
        if buffer.ends_with('\n') {
            buffer.pop();
        }
        if !buffer.is_empty() {
            out.write(i.suffix.as_bytes())?;
            if i.escape {
                buffer = prompt::process_escapes(&buffer);
            }
            let pfx = self.tokenize(&i.prefix, true);
            let inp = self.tokenize(&buffer, false);
            let sfx = self.tokenize(&i.suffix, true);
            self.n_remain -= i32::try_from(inp.len()).unwrap_or(i32::MAX);
            self.embd_inp.extend(pfx);
            self.embd_inp.extend(inp);
            self.embd_inp.extend(sfx);
        }
        Ok(true)
    }
}
