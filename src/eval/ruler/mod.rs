//! A RULER-style task suite (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your
//! Long-Context Language Models?", NVIDIA/RULER): the synthetic tasks of its
//! `scripts/synthetic.yaml`, with the templates of `scripts/data/synthetic/constants.py`, the
//! generators of `niah.py`, `variable_tracking.py` and `common_words_extraction.py`, and the
//! scoring of `scripts/eval/synthetic/constants.py`.
//!
//! The module is pure: no model, no tokenizer. [`generate`] takes a token-counting closure and
//! the essay haystack text, and sizes the haystack (a search over its size, like RULER's binary
//! search) so that the whole prompt is as long as the budget allows. Everything is seeded: the
//! same arguments give the same sample (not RULER's own samples: the random streams differ).
//!
//! One sample is RULER's `input` split in two: [`Sample::context`], the long document (what `-f`
//! holds: the task's opening instruction, then the haystack with the needles), and
//! [`Sample::question`] (what `-p` holds); RULER joins them with one `"\n"`
//! ([`Sample::input`]). RULER then appends [`Sample::answer_prefix`] to the prompt, after the
//! chat template's assistant header when there is one ([`Sample::prompt`] without a template).
//!
//! Where this departs from RULER, and why:
//! - Word values come from a built-in list of a few hundred words ([`words`]), not wonderwords;
//!   `cwe` prompts that need more distinct words than the list holds continue with generated
//!   pseudo-words (RULER switches to a large English dictionary past ~9,000 words instead).
//! - The needle that is asked (the first asked one when several are) goes at the caller's
//!   `depth_percent`; RULER draws all depths at random from 40 even depths, and so does this for
//!   the other needles. `vt` and `cwe` have no depth (their statements are spread at random, as
//!   in RULER); the depth is recorded only.
//! - Needles in the noise and needle haystacks go before line `lines * depth / 100` (RULER: a
//!   random line); `vt` draws the chain's places as fractions of the text, so they do not move
//!   with its size, and its worked example gets fresh names and value directly (RULER draws
//!   `12345` and three-letter names, then replaces them).
//! - Sentence ends of the essay haystack are found by a punctuation-and-capital rule, not NLTK's
//!   punkt; empty text around a needle at depth 0 or 100 is not joined in with a stray space.
//! - Keys and values inside one sample are distinct (RULER's far larger word pool makes a
//!   repeat there too unlikely to matter), and a distractor needle of the needle haystack never
//!   reuses a real key, so the answer is always unique.
//! - The budget counts the prompt only: RULER's `max_seq_length` is `budget +
//!   Task::tokens_to_generate()` (that sum picks `cwe`'s short-context setting, as in RULER).
//!   The closure sees the plain text of [`Sample::prompt`]; the tokens a chat template adds are
//!   the caller's to subtract from the budget (RULER's `model_template_token`). gemfilter
//!   joins `-f` and `-p` with a blank line where RULER has one newline.

mod cwe;
mod niah;
pub mod score;
mod vt;
pub mod words;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::eval::niah::grid::SplitMix;

pub use score::{postprocess_pred, string_match_all, string_match_part, Metric};

/// One task of RULER's synthetic suite, named as in its `synthetic.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Task {
    /// One needle in the repeated noise text; 7-digit number value.
    #[serde(rename = "niah_single_1")]
    NiahSingle1,
    /// One needle in the essay haystack; number value.
    #[serde(rename = "niah_single_2")]
    NiahSingle2,
    /// One needle in the essay haystack; UUID value.
    #[serde(rename = "niah_single_3")]
    NiahSingle3,
    /// Four needles with different keys in the essay haystack; one key asked.
    #[serde(rename = "niah_multikey_1")]
    NiahMultikey1,
    /// One needle in a haystack made only of needles with other word keys; number values.
    #[serde(rename = "niah_multikey_2")]
    NiahMultikey2,
    /// One needle in a haystack made only of needles; UUID keys and values.
    #[serde(rename = "niah_multikey_3")]
    NiahMultikey3,
    /// Four values for one key in the essay haystack; all four asked.
    #[serde(rename = "niah_multivalue")]
    NiahMultivalue,
    /// Four keys with one value each in the essay haystack; all four asked.
    #[serde(rename = "niah_multiquery")]
    NiahMultiquery,
    /// Variable tracking: one chain of 4 hops (`VAR B = VAR A`) in the noise text.
    #[serde(rename = "vt")]
    Vt,
    /// Common words extraction: the 10 words that appear 30 times (6 below 4K) in a numbered
    /// list where the others appear 3 times (once).
    #[serde(rename = "cwe")]
    Cwe,
}

impl Task {
    /// Every task, in `synthetic.yaml` order.
    pub const ALL: [Task; 10] = [
        Task::NiahSingle1,
        Task::NiahSingle2,
        Task::NiahSingle3,
        Task::NiahMultikey1,
        Task::NiahMultikey2,
        Task::NiahMultikey3,
        Task::NiahMultivalue,
        Task::NiahMultiquery,
        Task::Vt,
        Task::Cwe,
    ];

    /// RULER's name of the task.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Task::NiahSingle1 => "niah_single_1",
            Task::NiahSingle2 => "niah_single_2",
            Task::NiahSingle3 => "niah_single_3",
            Task::NiahMultikey1 => "niah_multikey_1",
            Task::NiahMultikey2 => "niah_multikey_2",
            Task::NiahMultikey3 => "niah_multikey_3",
            Task::NiahMultivalue => "niah_multivalue",
            Task::NiahMultiquery => "niah_multiquery",
            Task::Vt => "vt",
            Task::Cwe => "cwe",
        }
    }

    /// `tokens_to_generate` of RULER's `constants.py` (niah 128, variable tracking 30, common
    /// words 120).
    #[must_use]
    pub fn tokens_to_generate(self) -> usize {
        match self {
            Task::Vt => 30,
            Task::Cwe => 120,
            _ => 128,
        }
    }

    /// The scoring rule RULER applies to the task (`string_match_all` for all of these; RULER
    /// uses `string_match_part` only for its QA tasks).
    #[must_use]
    pub fn metric(self) -> Metric {
        Metric::All
    }

    /// Whether `depth_percent` places anything (the `niah` tasks); `vt` and `cwe` only record it.
    #[must_use]
    pub fn uses_depth(self) -> bool {
        !matches!(self, Task::Vt | Task::Cwe)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Task::ALL
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Task::ALL.iter().map(|t| t.name()).collect();
                anyhow::anyhow!("unknown RULER task '{s}' (known: {})", known.join(", "))
            })
    }
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub task: Task,
    /// Depth in percent of the asked needle (recorded only for `vt` and `cwe`).
    pub depth: u32,
    pub seed: u64,
    /// The long document: the task's opening instruction (and for `vt`/`cwe` RULER's worked
    /// example), then the haystack with the needles. What `-f` holds.
    pub context: String,
    /// The question after the document. What `-p` holds.
    pub question: String,
    /// What RULER puts at the start of the answer (after the assistant header of a chat
    /// template); begins with a space.
    pub answer_prefix: String,
    /// The reference answers, each to be found in the prediction.
    pub answers: Vec<String>,
    /// Byte ranges inside `context` of what the answer needs. niah: each needle sentence that
    /// holds an answer, in `answers` order. vt: each statement of the chain (`VAR X = …`), in
    /// chain order, which is `answers` order. cwe: every occurrence of an answer word in the
    /// list, in document order.
    pub needles: Vec<Range<usize>>,
    /// Byte ranges of the inserted needles whose key is not asked (`niah_multikey_1`'s three);
    /// the needle-haystack distractors of `niah_multikey_2/3` are not listed.
    pub distractors: Vec<Range<usize>>,
    /// Size of the haystack the fit chose: essay words, noise or needle lines, or distinct
    /// words of the `cwe` list.
    pub haystack_units: usize,
    /// Token count of [`Sample::prompt`] by the caller's counter.
    pub tokens: usize,
}

impl Sample {
    /// RULER's `input`: the context, a newline, the question.
    #[must_use]
    pub fn input(&self) -> String {
        format!("{}\n{}", self.context, self.question)
    }

    /// The whole prompt of a base model in RULER: `input` and the answer prefix. This is what
    /// the budget bounds.
    #[must_use]
    pub fn prompt(&self) -> String {
        format!("{}\n{}{}", self.context, self.question, self.answer_prefix)
    }

    /// Score of one prediction by the task's RULER rule, in 0..=1 (RULER reports the mean × 100).
    #[must_use]
    pub fn score(&self, prediction: &str) -> f64 {
        self.task.metric().score(prediction, &self.answers)
    }
}

/// Generate one sample of `task` whose prompt ([`Sample::prompt`]) has at most `budget` tokens
/// by `count_tokens`, with the haystack as large as that allows. `haystack` is the essay text
/// (the essay tasks take its words in order, repeated when the budget asks for more; the other
/// tasks do not read it). `depth_percent` (0..=100) places the asked needle of the `niah`
/// tasks. The same arguments give the same sample.
///
/// # Errors
/// A depth over 100, an essay task with an empty haystack, or a budget too small for the
/// smallest sample (the message gives its size).
pub fn generate(
    task: Task,
    haystack: &str,
    budget: usize,
    depth_percent: u32,
    seed: u64,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Sample> {
    if depth_percent > 100 {
        bail!("depth {depth_percent}% is out of range (0-100)");
    }
    let mut s = match task {
        Task::Vt => vt::generate(budget, seed, count_tokens)?,
        Task::Cwe => cwe::generate(
            budget + task.tokens_to_generate(),
            budget,
            seed,
            count_tokens,
        )?,
        _ => niah::generate(task, haystack, budget, depth_percent, seed, count_tokens)?,
    };
    s.depth = depth_percent;
    Ok(s)
}

/// Generate `count` samples of each task in `tasks`, seeds `seed`, `seed + 1`, … per task, at
/// `depth_percent`; a convenience over [`generate`].
///
/// # Errors
/// As [`generate`].
pub fn generate_many(
    tasks: &[Task],
    count: usize,
    haystack: &str,
    budget: usize,
    depth_percent: u32,
    seed: u64,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Vec<Sample>> {
    let mut out = Vec::with_capacity(tasks.len() * count);
    for &t in tasks {
        for i in 0..count as u64 {
            out.push(generate(
                t,
                haystack,
                budget,
                depth_percent,
                seed.wrapping_add(i),
                count_tokens,
            )?);
        }
    }
    Ok(out)
}

/// The haystack size that fits: the largest `n` in `min..=max` whose sample's prompt has at most
/// `budget` tokens (token counts grow with `n`, about linearly). RULER bisects between bounds
/// estimated from the tokens per unit at a probe size; this starts at that probe (RULER's step
/// size) and then aims each try where the line through the nearest sizes that fit and that do
/// not (or, before one is too large, through the smallest and the largest that fit) meets the
/// budget, bisecting whenever such a try fails to halve a bounded interval. Only counted
/// samples are returned, so the result always fits (with Qwen2.5's tokenizer: within 35 tokens
/// of budgets from 4K to 32K, after 4 to 8 counts).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn fit(
    task: Task,
    budget: usize,
    count_tokens: &dyn Fn(&str) -> usize,
    (min, probe, max): (usize, usize, usize),
    build: &dyn Fn(usize) -> Sample,
) -> Result<Sample> {
    let measure = |n: usize| {
        let mut s = build(n);
        s.tokens = count_tokens(&s.prompt());
        s.haystack_units = n;
        s
    };
    let smallest = measure(min);
    if smallest.tokens > budget {
        bail!(
            "a budget of {budget} tokens is too small for {task}: its smallest prompt has {} tokens",
            smallest.tokens
        );
    }
    let (n0, t0) = (min, smallest.tokens);
    // `lo` fits; sizes from `hi` up do not (`hi_tokens` once one was counted).
    let mut lo = smallest;
    let (mut hi, mut hi_tokens) = (max + 1, None);
    let mut next = probe;
    let mut bisect = false;
    while hi - lo.haystack_units > 1 {
        let width = hi - lo.haystack_units;
        let ln = lo.haystack_units;
        let n = if bisect { ln + width / 2 } else { next }.clamp(ln + 1, hi - 1);
        let s = measure(n);
        if s.tokens <= budget {
            lo = s;
        } else {
            hi = n;
            hi_tokens = Some(s.tokens);
        }
        let (ln, lt) = (lo.haystack_units, lo.tokens);
        bisect = !bisect && hi_tokens.is_some() && 2 * (hi - ln) > width;
        // Tokens per unit along the nearest known sizes on either side (or from the start).
        let per_unit = match hi_tokens {
            Some(ht) => ht.saturating_sub(lt) as f64 / (hi - ln) as f64,
            None => lt.saturating_sub(t0) as f64 / (ln - n0).max(1) as f64,
        };
        let step = ((budget - lt) as f64 / per_unit.max(1e-9)).min(1e12) as usize;
        next = ln.saturating_add(step);
    }
    Ok(lo)
}

/// Seeded random draws over the project's splitmix64 stream (independent streams per purpose,
/// so that what is drawn for the needles does not depend on the haystack size).
#[derive(Debug, Clone)]
pub(crate) struct Rng(SplitMix);

impl Rng {
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(SplitMix(
            seed ^ stream.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03),
        ));
        r.0.next_u64();
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform below `n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x
    }

    /// Fisher-Yates.
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }

    /// `k` distinct indices below `n`, in draw order (as Python's `random.sample`).
    pub(crate) fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k.min(n));
        idx
    }

    /// A version-4 UUID from 128 random bits, as `uuid.UUID(int=getrandbits(128), version=4)`.
    pub(crate) fn uuid(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let hi = (hi & !0xF000) | 0x4000; // version 4
        let lo = (lo & !(0xC000 << 48)) | (0x8000 << 48); // RFC 4122 variant
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

/// RULER's needle depths: `np.round(np.linspace(0, 100, 40))`.
pub(crate) fn ruler_depths() -> Vec<u32> {
    (0..40)
        .map(|i| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let d = (f64::from(i) * 100.0 / 39.0).round_ties_even() as u32;
            d
        })
        .collect()
}
