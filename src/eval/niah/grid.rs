//! Prompt building: the haystack, the grid of cells, needle insertion the reference way (cut the
//! haystack to the token budget, move each insertion point back to the previous sentence end),
//! and the token ranges of the needles inside the assembled prompt.

use std::ops::Range;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::needles::{Needle, NEEDLES};
use crate::engine::Engine;
use crate::eval::tokens::{token_offsets, tokens_covering};
use crate::prompt::{self, Assembled, PromptInput, Template};

/// The haystack bundled with the binary (first ~64 KB of the PG essays).
pub const BUNDLED: &str = include_str!("../../../data/haystack.txt");

/// The system prompt of the reference harness's chat prompt.
const CHAT_SYSTEM: &str = "You are a helpful AI bot that answers questions for a user. Keep your response short and direct";

/// The most haystack text read: far more than the longest prompt needs (128K tokens are
/// ~600 KB of text); a larger file or directory is refused before it is read whole.
pub const MAX_HAYSTACK_BYTES: u64 = 64 << 20;

/// Read `--haystack`: a directory (its `*.txt` files in name order, concatenated, as the reference
/// harness does), a file, or the bundled text. Only regular files are read (a FIFO or device
/// is refused, never blocked on), [`MAX_HAYSTACK_BYTES`] at most.
///
/// # Errors
/// Unreadable paths, a directory without `.txt` files, special or oversized files, non-UTF-8 or
/// empty text.
pub fn load_haystack(path: Option<&Path>) -> Result<String> {
    let Some(p) = path else {
        return Ok(BUNDLED.to_owned());
    };
    let shown = p.display();
    let text = if p.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(p)
            .with_context(|| format!("cannot read haystack directory '{shown}'"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        ensure!(
            !files.is_empty(),
            "haystack directory '{shown}' has no .txt files"
        );
        let mut all = String::new();
        for f in files {
            let left = MAX_HAYSTACK_BYTES.saturating_sub(all.len() as u64);
            let text = read_text(&f, left).map_err(|e| {
                anyhow::anyhow!(
                    "{e:#} (haystack directory '{shown}' is read up to {} MiB in all)",
                    MAX_HAYSTACK_BYTES >> 20
                )
            })?;
            all.push_str(&text);
        }
        all
    } else {
        read_text(p, MAX_HAYSTACK_BYTES)?
    };
    ensure!(
        text.trim().len() > 100,
        "haystack '{shown}' is empty or too short"
    );
    Ok(text)
}

fn read_text(p: &Path, limit: u64) -> Result<String> {
    let bytes = crate::fsutil::read_bounded(p, limit, "haystack")?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("haystack '{}' is not valid UTF-8", p.display()))
}

/// Which answers a cell gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The whole prompt.
    Full,
    /// GemFilter: filter pass, top-k, answer from the selection.
    Gem,
    /// GemFilter at the same layer with the paper's scoring (reference, pool 5, one layer),
    /// to compare the chosen scoring against.
    Reference,
}

/// How the prompt is worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Raw completion: `<context>\n\nQuestion: <q> Answer:` (what both small models answer).
    Plain,
    /// Plain, with the start of the answer sentence after `Answer:` (the needle's `lead`), so a
    /// small model continues with the fact instead of ending its turn. Multi-needle cells get
    /// no lead.
    Primed,
    /// The GemFilter harness's raw prompt: `This is a very long story book: <book> … </book>.`
    Book,
    /// The model's chat template with the reference harness's system prompt and instruction.
    Chat,
}

/// Which needles a cell hides and asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// One needle, asked.
    Single,
    /// The needle plus two others from the set (at other depths); only the first is asked.
    Distractors,
    /// Three needles, all asked in one question; scores and recall average over them.
    Multi,
}

impl Variant {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Variant::Single => "single",
            Variant::Distractors => "distractors",
            Variant::Multi => "multi",
        }
    }
}

/// One point of the grid.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Requested prompt length in tokens.
    pub length: usize,
    /// Needle depth in percent of the context.
    pub depth: u32,
    pub needle: &'static Needle,
    pub variant: Variant,
    /// Needles hidden in the context with their depths; the first is `needle`.
    pub hidden: Vec<(&'static Needle, u32)>,
}

impl Cell {
    /// Needles the question asks for.
    #[must_use]
    pub fn asked(&self) -> Vec<&'static Needle> {
        match self.variant {
            Variant::Multi => self.hidden.iter().map(|h| h.0).collect(),
            _ => vec![self.needle],
        }
    }

    /// Identity of the cell inside one run's output (method settings are added by the caller).
    #[must_use]
    pub fn id(&self) -> String {
        let others: Vec<&str> = self.hidden[1..].iter().map(|h| h.0.id).collect();
        let mut s = format!(
            "L{}|d{}|{}|{}",
            self.length,
            self.depth,
            self.needle.id,
            self.variant.name()
        );
        if !others.is_empty() {
            s.push('+');
            s.push_str(&others.join("+"));
        }
        s
    }
}

/// splitmix64: a reproducible stream for `--seed` that does not depend on a crate's versioning.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        #[allow(clippy::cast_possible_truncation)]
        let i = (self.next_u64() % n as u64) as usize;
        i
    }
}

/// Every cell of lengths × depths × needles × variants, in that nesting order (shortest first).
/// Companion needles for the multi-needle variants are drawn from the whole set with `seed`.
#[must_use]
pub fn cells(
    lengths: &[usize],
    depths: &[u32],
    needles: &[&'static Needle],
    variants: &[Variant],
    seed: u64,
) -> Vec<Cell> {
    let mut out = Vec::new();
    for &length in lengths {
        for &depth in depths {
            for (ni, &needle) in needles.iter().enumerate() {
                for &variant in variants {
                    let mut hidden = vec![(needle, depth)];
                    if variant != Variant::Single {
                        let mut rng = SplitMix(
                            seed ^ ((length as u64) << 20) ^ (u64::from(depth) << 8) ^ ni as u64,
                        );
                        while hidden.len() < 3 {
                            let c = &NEEDLES[rng.below(NEEDLES.len())];
                            if hidden.iter().all(|h| h.0.id != c.id) {
                                let d =
                                    (depth + 33 * u32::try_from(hidden.len()).unwrap_or(1)) % 100;
                                hidden.push((c, d));
                            }
                        }
                    }
                    out.push(Cell {
                        length,
                        depth,
                        needle,
                        variant,
                        hidden,
                    });
                }
            }
        }
    }
    out
}

/// Byte offset where a needle goes at `depth`% of `ctx`: the end of the sentence before that
/// point (start of text if none), or the very end at 100%.
#[must_use]
pub fn insertion_point(ctx: &str, depth: u32) -> usize {
    if depth >= 100 {
        return ctx.len();
    }
    let mut at = ctx.len() * depth as usize / 100;
    while !ctx.is_char_boundary(at) {
        at -= 1;
    }
    ctx[..at].rfind('.').map_or(0, |p| p + 1)
}

/// Insert the needles (each wrapped in newlines, as the reference needle is) at their depths.
#[must_use]
pub fn insert_needles(ctx: &str, hidden: &[(&Needle, u32)]) -> String {
    let mut at: Vec<(usize, &str)> = hidden
        .iter()
        .map(|(n, d)| (insertion_point(ctx, *d), n.text))
        .collect();
    // Insert from the back so earlier offsets stay valid.
    at.sort_by_key(|a| std::cmp::Reverse(a.0));
    let mut out = ctx.to_owned();
    for (pos, text) in &at {
        out.insert_str(*pos, &format!("\n{text}\n"));
    }
    out
}

/// A haystack tokenized once, so every cell can be cut to its token budget.
#[derive(Debug)]
pub struct Hay {
    text: String,
    /// Byte offset where each token starts.
    offsets: Vec<usize>,
}

impl Hay {
    /// Tokenize `text` (repeated until it has at least `min_tokens` tokens).
    #[must_use]
    pub fn new(vocab: &Engine, text: &str, min_tokens: usize) -> Self {
        let mut all = text.to_owned();
        loop {
            let toks = vocab.model.vocab().tokenize(all.as_bytes(), false, false);
            if toks.len() >= min_tokens || all.len() > 64 * 1024 * 1024 {
                let offsets = token_offsets(vocab, &toks);
                return Self { text: all, offsets };
            }
            all.push_str("\n\n");
            all.push_str(text);
        }
    }

    /// The first `budget` tokens' text, cut back to a sentence end.
    #[must_use]
    pub fn cut(&self, budget: usize) -> &str {
        let end = self
            .offsets
            .get(budget)
            .copied()
            .unwrap_or(self.text.len())
            .min(self.text.len());
        let mut end = end;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let s = &self.text[..end];
        s.rfind('.').map_or(s, |p| &s[..=p])
    }
}

/// The assembled prompt of one cell and where its asked needles are.
#[derive(Debug, Clone)]
pub struct Built {
    pub asm: Assembled,
    /// Token ranges of the asked needles, in `Cell::asked` order.
    pub targets: Vec<Range<usize>>,
    /// Token ranges of every hidden needle.
    pub all_targets: Vec<Range<usize>>,
    pub question: String,
}

/// The question text of a style.
#[must_use]
pub fn question(style: Style, asked: &[&Needle]) -> String {
    let q: Vec<&str> = asked.iter().map(|n| n.question).collect();
    let q = q.join(" ");
    match style {
        Style::Plain => format!("Question: {q} Answer:"),
        Style::Primed => match asked {
            [one] => format!("Question: {q} Answer: {}", one.lead),
            _ => format!("Question: {q} Answer:"),
        },
        Style::Book => {
            format!("</book>.\n Based on the content of the book, Question: {q}\nAnswer:")
        }
        Style::Chat => {
            format!("{q} Don't give information outside the document or repeat your findings.")
        }
    }
}

fn input(style: Style, context: String, question: String) -> (PromptInput, bool) {
    let (system, raw) = match style {
        Style::Plain | Style::Primed => (None, true),
        Style::Book => (
            Some("This is a very long story book: <book>".to_owned()),
            true,
        ),
        Style::Chat => (Some(CHAT_SYSTEM.to_owned()), false),
    };
    (
        PromptInput {
            system,
            context: Some(context),
            question: Some(question),
            history: Vec::new(),
        },
        raw,
    )
}

/// Build the prompt of `cell`: haystack cut so the whole prompt is about `cell.length` tokens.
///
/// # Errors
/// A length too short for the question and needles, or a chat template that fails.
pub fn build(
    vocab: &Engine,
    hay: &Hay,
    cell: &Cell,
    style: Style,
    chat_template: Option<&str>,
) -> Result<Built> {
    let asked = cell.asked();
    let q = question(style, &asked);
    let needles_only: String = cell.hidden.iter().fold(String::new(), |mut acc, (n, _)| {
        acc.push('\n');
        acc.push_str(n.text);
        acc.push('\n');
        acc
    });
    let (inp, raw) = input(style, needles_only, q.clone());
    let template = if raw {
        Template::Raw
    } else {
        prompt::choose_template(&vocab.model, false, chat_template)?
    };
    if !raw && matches!(template, Template::Raw) {
        bail!("--style chat needs a model with a chat template (or --chat-template NAME)");
    }
    let overhead = prompt::assemble(&vocab.model, &inp, &template)?
        .tokens
        .len();
    if cell.length < overhead + 16 {
        bail!(
            "length {} is too short: the question and needles alone take {overhead} tokens",
            cell.length
        );
    }
    let ctx = insert_needles(hay.cut(cell.length - overhead), &cell.hidden);
    let (inp, _) = input(style, ctx.clone(), q.clone());
    let asm = prompt::assemble(&vocab.model, &inp, &template)?;
    let offsets = token_offsets(vocab, &asm.tokens[asm.context.clone()]);
    let locate = |n: &Needle| -> Result<Range<usize>> {
        let at = ctx
            .find(n.text)
            .context("needle lost while building the prompt")?;
        Ok(tokens_covering(
            &offsets,
            at..at + n.text.len(),
            asm.context.start,
        ))
    };
    let targets = asked
        .iter()
        .map(|n| locate(n))
        .collect::<Result<Vec<_>>>()?;
    let all_targets = cell
        .hidden
        .iter()
        .map(|(n, _)| locate(n))
        .collect::<Result<Vec<_>>>()?;
    Ok(Built {
        asm,
        targets,
        all_targets,
        question: q,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needle_goes_after_the_previous_sentence() {
        let ctx = "One two. Three four. Five six.";
        assert_eq!(insertion_point(ctx, 0), 0);
        assert_eq!(insertion_point(ctx, 50), 8);
        assert_eq!(insertion_point(ctx, 100), ctx.len());
        let n = &NEEDLES[1];
        let out = insert_needles(ctx, &[(n, 50)]);
        assert_eq!(out, format!("One two.\n{}\n Three four. Five six.", n.text));
    }

    #[test]
    fn variants_hide_three_distinct_needles_reproducibly() {
        let ns = [&NEEDLES[0]];
        let a = cells(
            &[1000],
            &[0, 50],
            &ns,
            &[Variant::Distractors, Variant::Multi],
            7,
        );
        let b = cells(
            &[1000],
            &[0, 50],
            &ns,
            &[Variant::Distractors, Variant::Multi],
            7,
        );
        assert_eq!(a.len(), 4);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.id(), y.id());
            assert_eq!(x.hidden.len(), 3);
            assert_eq!(x.hidden[0].0.id, "sf-sandwich");
        }
        assert_eq!(a[0].asked().len(), 1);
        assert_eq!(a[1].asked().len(), 3);
    }
}
