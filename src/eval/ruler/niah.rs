//! The needle tasks, after RULER's `scripts/data/synthetic/niah.py` with the arguments of
//! `synthetic.yaml`.

use std::collections::HashSet;
use std::ops::Range;

use anyhow::{ensure, Result};

use super::words::{self, ADJECTIVES, NOUNS};
use super::{fit, ruler_depths, Rng, Sample, Task};

/// RULER's noise haystack, one line of it.
pub(crate) const NOISE: &str =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

/// `TASKS['niah']['template']` of RULER's `constants.py`.
const TEMPLATE: &str = "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?";

/// `TASKS['niah']['answer_prefix']`.
const ANSWER_PREFIX: &str =
    " The special magic {type_needle_v} for {query} mentioned in the provided text are";

/// `niah.py`'s needle.
const NEEDLE: &str = "One of the special magic {type_needle_v} for {key} is: {value}.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hay {
    /// The noise line repeated, one per line.
    Noise,
    /// The essay's words, needles between sentences.
    Essay,
    /// Needles with random keys and values, one per line.
    Needle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Words,
    Numbers,
    Uuids,
}

impl Kind {
    /// RULER's `type_needle_*` name, which the templates print.
    fn name(self) -> &'static str {
        match self {
            Kind::Words => "words",
            Kind::Numbers => "numbers",
            Kind::Uuids => "uuids",
        }
    }
}

/// One `synthetic.yaml` entry.
#[derive(Debug, Clone, Copy)]
struct Config {
    hay: Hay,
    key: Kind,
    value: Kind,
    num_k: usize,
    num_v: usize,
    num_q: usize,
}

fn config(task: Task) -> Config {
    use Hay::{Essay, Needle, Noise};
    use Kind::{Numbers, Uuids, Words};
    let c = |hay, key, value, num_k, num_v, num_q| Config {
        hay,
        key,
        value,
        // niah.py: `args.num_needle_k = max(args.num_needle_k, args.num_needle_q)`.
        num_k: usize::max(num_k, num_q),
        num_v,
        num_q,
    };
    match task {
        Task::NiahSingle1 => c(Noise, Words, Numbers, 1, 1, 1),
        Task::NiahSingle2 => c(Essay, Words, Numbers, 1, 1, 1),
        Task::NiahSingle3 => c(Essay, Words, Uuids, 1, 1, 1),
        Task::NiahMultikey1 => c(Essay, Words, Numbers, 4, 1, 1),
        Task::NiahMultikey2 => c(Needle, Words, Numbers, 1, 1, 1),
        Task::NiahMultikey3 => c(Needle, Uuids, Uuids, 1, 1, 1),
        Task::NiahMultivalue => c(Essay, Words, Numbers, 1, 4, 1),
        Task::NiahMultiquery => c(Essay, Words, Numbers, 1, 1, 4),
        Task::Vt | Task::Cwe => unreachable!("{task} is not a needle task"),
    }
}

/// Random keys and values as `niah.py` draws them: words are `adjective-noun`, numbers have 7
/// digits, UUIDs are version 4.
struct Draw {
    adjectives: Vec<&'static str>,
    nouns: Vec<&'static str>,
}

impl Draw {
    fn new() -> Self {
        Self {
            adjectives: words::words(ADJECTIVES).collect(),
            nouns: words::words(NOUNS).collect(),
        }
    }

    fn value(&self, rng: &mut Rng, kind: Kind) -> String {
        match kind {
            Kind::Words => format!(
                "{}-{}",
                self.adjectives[rng.below(self.adjectives.len())],
                self.nouns[rng.below(self.nouns.len())]
            ),
            Kind::Numbers => rng.between(1_000_000, 9_999_999).to_string(),
            Kind::Uuids => rng.uuid(),
        }
    }
}

fn needle_text(kind: Kind, key: &str, value: &str) -> String {
    NEEDLE
        .replace("{type_needle_v}", kind.name())
        .replace("{key}", key)
        .replace("{value}", value)
}

/// A needle to insert.
struct Placed {
    text: String,
    /// Depth in percent.
    depth: u32,
    /// Index into the answers when its key is asked.
    answer: Option<usize>,
}

/// What one sample hides and asks, drawn before the haystack so it is the same at every size.
struct Plan {
    /// Every key, the asked ones among them.
    keys: Vec<String>,
    answers: Vec<String>,
    /// The asked keys as the question names them (`a, b, c, and d`).
    query: String,
    /// The needles in document order.
    placed: Vec<Placed>,
}

/// Keys and values (distinct within the sample), the asked keys, and each needle's depth: the
/// first answer's at `depth_percent`, the others at distinct depths of RULER's grid.
fn plan(cfg: Config, draw: &Draw, rng: &mut Rng, depth_percent: u32) -> Plan {
    let mut seen = HashSet::new();
    let mut fresh = |rng: &mut Rng, kind: Kind| loop {
        let v = draw.value(rng, kind);
        if seen.insert(v.clone()) {
            return v;
        }
    };
    let mut keys = Vec::new();
    let mut values: Vec<Vec<String>> = Vec::new();
    for _ in 0..cfg.num_k {
        keys.push(fresh(rng, cfg.key));
        values.push((0..cfg.num_v).map(|_| fresh(rng, cfg.value)).collect());
    }
    // `random.sample(range(num_needle_k), num_needle_q)`: the asked keys, in random order.
    let asked = rng.sample(cfg.num_k, cfg.num_q);
    let answers = asked
        .iter()
        .flat_map(|&k| values[k].iter().cloned())
        .collect();
    let query = match asked.as_slice() {
        [init @ .., last] if !init.is_empty() => {
            let init: Vec<&str> = init.iter().map(|&k| keys[k].as_str()).collect();
            format!("{}, and {}", init.join(", "), keys[*last])
        }
        _ => keys[asked[0]].clone(),
    };
    let mut placed = Vec::new();
    for (k, vals) in values.iter().enumerate() {
        let slot = asked.iter().position(|&a| a == k);
        for (j, v) in vals.iter().enumerate() {
            placed.push(Placed {
                text: needle_text(cfg.value, &keys[k], v),
                depth: depth_percent,
                answer: slot.map(|s| s * cfg.num_v + j),
            });
        }
    }
    let grid = ruler_depths();
    let mut others = rng.sample(grid.len(), placed.len() - 1).into_iter();
    for p in placed.iter_mut().filter(|p| p.answer != Some(0)) {
        p.depth = grid[others.next().unwrap_or(0)];
    }
    placed.sort_by_key(|p| p.depth);
    Plan {
        keys,
        answers,
        query,
        placed,
    }
}

/// The prompt around the context, worded as niah.py words it for one answer or several: (text
/// before the context, question, answer prefix).
fn wording(cfg: Config, query: &str) -> (String, String, String) {
    let mut template = format!("{TEMPLATE}{ANSWER_PREFIX}");
    let mut type_v = cfg.value.name();
    if cfg.num_q * cfg.num_v == 1 {
        for (from, to) in [
            ("Some", "A"),
            ("are all", "is"),
            ("are", "is"),
            ("answers", "answer"),
        ] {
            template = template.replace(from, to);
        }
        type_v = &type_v[..type_v.len() - 1];
    }
    let template = template
        .replace("{type_needle_v}", type_v)
        .replace("{query}", query);
    let (head, tail) = template
        .split_once("{context}")
        .expect("the template has {context}");
    let tail = tail.strip_prefix('\n').unwrap_or(tail);
    // niah.py finds the answer prefix by its first 10 characters.
    let cut = tail.rfind(&ANSWER_PREFIX[..10]).unwrap_or(tail.len());
    let (question, prefix) = tail.split_at(cut);
    (head.to_owned(), question.to_owned(), prefix.to_owned())
}

pub(super) fn generate(
    task: Task,
    haystack: &str,
    budget: usize,
    depth_percent: u32,
    seed: u64,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Sample> {
    let cfg = config(task);
    let essay: Vec<&str> = haystack.split_whitespace().collect();
    ensure!(
        cfg.hay != Hay::Essay || !essay.is_empty(),
        "{task} needs an essay haystack, and the one given is empty"
    );
    let draw = Draw::new();
    let plan = plan(
        cfg,
        &draw,
        &mut Rng::new(seed, 16 + task as u64),
        depth_percent,
    );
    let (head, question, answer_prefix) = wording(cfg, &plan.query);
    let real_keys: HashSet<&str> = plan.keys.iter().map(String::as_str).collect();
    let build = |n: usize| {
        let (body, ranges) = match cfg.hay {
            Hay::Essay => essay_body(&essay, n, &plan.placed),
            Hay::Noise => lines_body(&vec![NOISE.to_owned(); n], &plan.placed),
            Hay::Needle => {
                // Distractors from their own stream, so line i is the same for every n.
                let mut rng = Rng::new(seed, 32 + task as u64);
                let lines: Vec<String> = (0..n)
                    .map(|_| {
                        let key = loop {
                            let k = draw.value(&mut rng, cfg.key);
                            if !real_keys.contains(k.as_str()) {
                                break k;
                            }
                        };
                        let value = draw.value(&mut rng, cfg.value);
                        needle_text(cfg.value, &key, &value)
                    })
                    .collect();
                lines_body(&lines, &plan.placed)
            }
        };
        let shift = |r: &Range<usize>| r.start + head.len()..r.end + head.len();
        let mut needles = vec![0..0; plan.answers.len()];
        let mut distractors = Vec::new();
        for (p, r) in plan.placed.iter().zip(&ranges) {
            match p.answer {
                Some(a) => needles[a] = shift(r),
                None => distractors.push(shift(r)),
            }
        }
        Sample {
            task,
            depth: depth_percent,
            seed,
            context: format!("{head}{body}"),
            question: question.clone(),
            answer_prefix: answer_prefix.clone(),
            answers: plan.answers.clone(),
            needles,
            distractors,
            haystack_units: n,
            tokens: 0,
        }
    };
    // RULER's step sizes (`incremental`): 500 essay words, 25 lines.
    let probe = if cfg.hay == Hay::Essay { 500 } else { 25 };
    fit(
        task,
        budget,
        count_tokens,
        (1, probe, 4 * budget + 64),
        &build,
    )
}

/// Noise or needle lines with the needles inserted as lines of their own: a needle at depth d
/// goes before line `n * d / 100` (after every line at 100%), joined with newlines. Returns the
/// text and the byte range of each needle, in `placed` order.
fn lines_body(lines: &[String], placed: &[Placed]) -> (String, Vec<Range<usize>>) {
    let n = lines.len();
    let at: Vec<usize> = placed.iter().map(|p| n * p.depth as usize / 100).collect();
    let mut out = String::new();
    let mut ranges = vec![0..0; placed.len()];
    let push = |out: &mut String, s: &str| -> Range<usize> {
        if !out.is_empty() {
            out.push('\n');
        }
        let start = out.len();
        out.push_str(s);
        start..out.len()
    };
    let mut next = 0;
    for (i, line) in lines.iter().enumerate() {
        while next < placed.len() && at[next] == i {
            ranges[next] = push(&mut out, &placed[next].text);
            next += 1;
        }
        push(&mut out, line);
    }
    for (p, r) in placed.iter().zip(&mut ranges).skip(next) {
        *r = push(&mut out, &p.text);
    }
    (out, ranges)
}

/// Whether a word ends a sentence (`.`, `!` or `?`, maybe inside closing quotes or brackets).
fn ends_sentence(w: &str) -> bool {
    w.trim_end_matches(['"', '\'', ')', ']', '\u{201d}', '\u{2019}'])
        .ends_with(['.', '!', '?'])
}

/// Whether a word can open a sentence (a capital or digit, maybe after opening quotes).
fn opens_sentence(w: &str) -> bool {
    w.trim_start_matches(['"', '\'', '(', '[', '\u{201c}', '\u{2018}'])
        .chars()
        .next()
        .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
}

/// The first `n` words of the essay (repeated as needed), with the needles between sentences: a
/// needle at depth d goes before sentence `sentences * d / 100`, as niah.py inserts into the
/// sentences of `sent_tokenize`; pieces are joined with single spaces.
fn essay_body(essay: &[&str], n: usize, placed: &[Placed]) -> (String, Vec<Range<usize>>) {
    let word = |i: usize| essay[i % essay.len()];
    let mut starts = vec![0];
    starts.extend((1..n).filter(|&i| ends_sentence(word(i - 1)) && opens_sentence(word(i))));
    let at: Vec<usize> = placed
        .iter()
        .map(|p| {
            let s = starts.len() * p.depth as usize / 100;
            starts.get(s).copied().unwrap_or(n)
        })
        .collect();
    let mut out = String::new();
    let mut ranges = Vec::with_capacity(placed.len());
    let space = |out: &mut String| {
        if !out.is_empty() {
            out.push(' ');
        }
    };
    let mut from = 0;
    for (p, &a) in placed.iter().zip(&at) {
        for i in from..a {
            space(&mut out);
            out.push_str(word(i));
        }
        from = a;
        space(&mut out);
        let start = out.len();
        out.push_str(&p.text);
        ranges.push(start..out.len());
    }
    for i in from..n {
        space(&mut out);
        out.push_str(word(i));
    }
    (out, ranges)
}
