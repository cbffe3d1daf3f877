//! Common words extraction, after RULER's `scripts/data/synthetic/common_words_extraction.py`
//! with `synthetic.yaml`'s `cwe` (`freq_cw` 30, `freq_ucw` 3, `num_cw` 10, one worked example).

use std::collections::HashSet;
use std::fmt::Write;
use std::ops::Range;

use anyhow::Result;

use super::words::{self, ADJECTIVES, NOUNS, VERBS};
use super::{fit, Rng, Sample, Task};

/// `TASKS['common_words_extraction']['template']` of RULER's `constants.py`.
const TEMPLATE: &str = "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?";

/// `TASKS['common_words_extraction']['answer_prefix']`.
const ANSWER_PREFIX: &str = " Answer: The top 10 words that appear most often in the list are:";

/// `num_cw`: how many words are frequent (and asked).
pub(crate) const NUM_CW: usize = 10;

/// Letters of the pseudo-words: consonants, vowels.
const C: &[u8] = b"bdfgklmnprstvz";
const V: &[u8] = b"aeiou";

/// The word pool in sampling order: the built-in words (stand-in for wonderwords' nouns,
/// adjectives and verbs), shuffled, then as many generated pseudo-words (three consonant-vowel
/// syllables, none a built-in word) as `n` needs. Any prefix is the same for every `n`.
fn pool(seed: u64, n: usize) -> Vec<String> {
    let mut real: Vec<String> = [NOUNS, ADJECTIVES, VERBS]
        .into_iter()
        .flat_map(words::words)
        .map(str::to_owned)
        .collect();
    real.sort_unstable();
    real.dedup();
    Rng::new(seed, 3).shuffle(&mut real);
    if n <= real.len() {
        real.truncate(n);
        return real;
    }
    let known: HashSet<String> = real.iter().cloned().collect();
    let mut seen = HashSet::new();
    let mut rng = Rng::new(seed, 4);
    while real.len() < n {
        let w: String = (0..3)
            .flat_map(|_| [C[rng.below(C.len())], V[rng.below(V.len())]])
            .map(char::from)
            .collect();
        if !known.contains(&w) && seen.insert(w.clone()) {
            real.push(w);
        }
    }
    real
}

/// `get_example`: the first `NUM_CW` words `common` times each and the rest `uncommon` times
/// each, shuffled (`random.Random(seed).shuffle`, the same stream every call as in RULER), as
/// `1. w 2. w …`. Returns the list, the asked words, and the byte ranges of their occurrences.
fn example(
    words: &[String],
    common: usize,
    uncommon: usize,
    seed: u64,
) -> (String, Vec<String>, Vec<Range<usize>>) {
    let (cw, ucw) = words.split_at(NUM_CW.min(words.len()));
    let mut list: Vec<&str> = Vec::new();
    for _ in 0..common {
        list.extend(cw.iter().map(String::as_str));
    }
    for _ in 0..uncommon {
        list.extend(ucw.iter().map(String::as_str));
    }
    Rng::new(seed, 5).shuffle(&mut list);
    let asked: HashSet<&str> = cw.iter().map(String::as_str).collect();
    let mut out = String::new();
    let mut ranges = Vec::new();
    for (i, w) in list.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{}. ", i + 1);
        if asked.contains(w) {
            ranges.push(out.len()..out.len() + w.len());
        }
        out.push_str(w);
    }
    (out, cw.to_vec(), ranges)
}

fn numbered(words: &[String]) -> String {
    let v: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{}. {w}", i + 1))
        .collect();
    v.join(" ")
}

/// `max_seq_length` is RULER's (prompt plus `tokens_to_generate`): below 4096 RULER uses the
/// short setting (example of 20 words 3/1 times, list 6/1 times), else 40 words 10/3 times and
/// the list 30/3 times.
pub(super) fn generate(
    max_seq_length: usize,
    budget: usize,
    seed: u64,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Sample> {
    let short = max_seq_length < 4096;
    let ((shot_n, shot_c, shot_u), (cw, ucw)) = if short {
        ((20, 3, 1), (6, 1))
    } else {
        ((40, 10, 3), (30, 3))
    };
    let (head, tail) = TEMPLATE.split_once("{context}").expect("template");
    let question = tail.trim_start_matches('\n');
    // The worked example, from its own draw of the built-in words.
    let shot_words = pool(seed ^ 0x5EED, shot_n);
    let (shot_list, shot_answer, _) = example(&shot_words, shot_c, shot_u, seed);
    let lead = format!(
        "{head}{shot_list}\n{question}{ANSWER_PREFIX} {}\n{head}",
        numbered(&shot_answer)
    );
    let build = |n: usize| {
        let (list, answers, ranges) = example(&pool(seed, n), cw, ucw, seed);
        Sample {
            task: Task::Cwe,
            depth: 0,
            seed,
            context: format!("{lead}{list}"),
            question: question.to_owned(),
            answer_prefix: ANSWER_PREFIX.to_owned(),
            answers,
            needles: ranges
                .into_iter()
                .map(|r| r.start + lead.len()..r.end + lead.len())
                .collect(),
            distractors: Vec::new(),
            haystack_units: n,
            tokens: 0,
        }
    };
    fit(
        Task::Cwe,
        budget,
        count_tokens,
        (NUM_CW + 1, 64, budget + 64),
        &build,
    )
}
