//! Variable tracking, after RULER's `scripts/data/synthetic/variable_tracking.py` with
//! `synthetic.yaml`'s `vt` (noise haystack, one chain, four hops) and its one worked example.

use std::ops::Range;

use anyhow::Result;

use super::niah::NOISE;
use super::{fit, Rng, Sample, Task};

/// `TASKS['variable_tracking']['template']` of RULER's `constants.py`.
const TEMPLATE: &str = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.";

/// `TASKS['variable_tracking']['answer_prefix']`.
const ANSWER_PREFIX: &str = " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the value {query}, they are: ";

const NUM_HOPS: usize = 4;

/// RULER fits its worked example to 500 tokens.
const EXAMPLE_TOKENS: usize = 500;

/// One chain: `VAR A = 12345`, then `VAR B = VAR A `, … (the trailing space is RULER's).
struct Chain {
    vars: Vec<String>,
    value: String,
    lines: Vec<String>,
    /// Where each statement goes, as a fraction of the noise lines before it.
    at: Vec<f64>,
}

/// `generate_chains` with one chain: `NUM_HOPS + 1` distinct names of `letters` capitals, a
/// value in 10000..=99998 (`np.random.randint(10000, 99999)`), and random places in the text.
fn chain(rng: &mut Rng, letters: usize) -> Chain {
    let mut vars: Vec<String> = Vec::new();
    while vars.len() < NUM_HOPS + 1 {
        let v: String = (0..letters)
            .map(|_| char::from(b'A' + u8::try_from(rng.below(26)).unwrap_or(0)))
            .collect();
        if !vars.contains(&v) {
            vars.push(v);
        }
    }
    let value = rng.between(10_000, 99_998).to_string();
    let mut lines = vec![format!("VAR {} = {value}", vars[0])];
    for j in 0..NUM_HOPS {
        lines.push(format!("VAR {} = VAR {} ", vars[j + 1], vars[j]));
    }
    let mut at: Vec<f64> = (0..lines.len()).map(|_| rng.unit()).collect();
    at.sort_by(f64::total_cmp);
    Chain {
        vars,
        value,
        lines,
        at,
    }
}

/// `n` noise lines with the chain's statements among them in order, as `variable_tracking.py`
/// inserts them (statement j after `floor(at_j * n)` noise lines), joined with newlines. Returns
/// the text and the byte range of each statement (without its trailing space).
fn body(c: &Chain, n: usize) -> (String, Vec<Range<usize>>) {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let after: Vec<usize> = c.at.iter().map(|f| (f * n as f64) as usize).collect();
    let mut out = String::new();
    let mut ranges = Vec::with_capacity(c.lines.len());
    let mut next = 0;
    for i in 0..=n {
        while next < c.lines.len() && after[next] == i {
            if !out.is_empty() {
                out.push('\n');
            }
            let start = out.len();
            out.push_str(&c.lines[next]);
            ranges.push(start..start + c.lines[next].trim_end().len());
            next += 1;
        }
        if i < n {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(NOISE);
        }
    }
    // RULER then replaces ". \n" by ".\n", which cannot occur in this text.
    (out, ranges)
}

/// The template around a chain: (text before the context, question, answer prefix).
fn wording(value: &str) -> (String, String, String) {
    let (head, tail) = TEMPLATE.split_once("{context}").expect("template");
    let question = tail.trim_start_matches('\n').replace("{query}", value);
    let prefix = ANSWER_PREFIX
        .replace("{num_v}", &(NUM_HOPS + 1).to_string())
        .replace("{query}", value);
    (head.to_owned(), question, prefix)
}

/// RULER's worked example: a chain of three-letter names over at most 500 tokens of noise (at
/// least 5 lines), the question and answer prefix, then the answer, then a newline.
fn example(seed: u64, count_tokens: &dyn Fn(&str) -> usize) -> String {
    let mut rng = Rng::new(seed, 2);
    let c = chain(&mut rng, 3);
    let (head, question, prefix) = wording(&c.value);
    let build = |n: usize| {
        let (b, _) = body(&c, n);
        Sample {
            task: Task::Vt,
            depth: 0,
            seed,
            context: format!("{head}{b}"),
            question: question.clone(),
            answer_prefix: prefix.clone(),
            answers: Vec::new(),
            needles: Vec::new(),
            distractors: Vec::new(),
            haystack_units: n,
            tokens: 0,
        }
    };
    let s = fit(Task::Vt, EXAMPLE_TOKENS, count_tokens, (5, 10, 500), &build)
        .unwrap_or_else(|_| build(5));
    format!("{} {}\n", s.prompt(), c.vars.join(" "))
}

pub(super) fn generate(
    budget: usize,
    seed: u64,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Sample> {
    let shot = example(seed, count_tokens);
    let mut rng = Rng::new(seed, 0);
    let c = chain(&mut rng, 5);
    let (head, question, prefix) = wording(&c.value);
    let lead = format!("{shot}\n{head}");
    let build = |n: usize| {
        let (b, ranges) = body(&c, n);
        Sample {
            task: Task::Vt,
            depth: 0,
            seed,
            context: format!("{lead}{b}"),
            question: question.clone(),
            answer_prefix: prefix.clone(),
            answers: c.vars.clone(),
            needles: ranges
                .into_iter()
                .map(|r| r.start + lead.len()..r.end + lead.len())
                .collect(),
            distractors: Vec::new(),
            haystack_units: n,
            tokens: 0,
        }
    };
    // RULER's step for noise is 10 lines.
    fit(
        Task::Vt,
        budget,
        count_tokens,
        (1, 10, 4 * budget + 64),
        &build,
    )
}
