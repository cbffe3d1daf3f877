use std::collections::{HashMap, HashSet};

use super::words::{self, ADJECTIVES, NOUNS, VERBS};
use super::*;
use crate::eval::niah::grid::BUNDLED;

/// Toy token counters: white-space words, and bytes / 4.
fn by_words(s: &str) -> usize {
    s.split_whitespace().count()
}

fn by_quarter_bytes(s: &str) -> usize {
    s.len().div_ceil(4)
}

type Counter<'a> = &'a dyn Fn(&str) -> usize;

/// Equal up to rounding.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn gen(task: Task, budget: usize, depth: u32, seed: u64) -> Sample {
    generate(task, BUNDLED, budget, depth, seed, &by_words).unwrap()
}

#[test]
fn task_names_round_trip_through_display_fromstr_and_serde() {
    let names: Vec<String> = Task::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "niah_single_1",
            "niah_single_2",
            "niah_single_3",
            "niah_multikey_1",
            "niah_multikey_2",
            "niah_multikey_3",
            "niah_multivalue",
            "niah_multiquery",
            "vt",
            "cwe"
        ]
    );
    for t in Task::ALL {
        assert_eq!(t.name().parse::<Task>().unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{t}\""));
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), t);
        assert_eq!(t.metric(), Metric::All);
    }
    let err = "niah_single_4".parse::<Task>().unwrap_err().to_string();
    assert!(err.contains("unknown RULER task") && err.contains("niah_multiquery"));
    assert_eq!(Task::Vt.tokens_to_generate(), 30);
    assert_eq!(Task::Cwe.tokens_to_generate(), 120);
    assert_eq!(Task::NiahSingle1.tokens_to_generate(), 128);
}

#[test]
fn word_lists_are_clean_and_disjoint() {
    let mut all = HashSet::new();
    for list in [NOUNS, ADJECTIVES, VERBS] {
        let n = words::words(list).count();
        assert!(n >= 150, "{n} words");
        for w in words::words(list) {
            assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w}");
            assert!(all.insert(w), "'{w}' appears twice");
        }
    }
    assert!(all.len() >= 600);
}

#[test]
fn ruler_depth_grid_is_numpy_linspace_rounded() {
    let d = ruler_depths();
    assert_eq!(d.len(), 40);
    assert_eq!(&d[..5], &[0, 3, 5, 8, 10]);
    assert_eq!(d[39], 100);
    assert_eq!(d[20], 51);
}

#[test]
fn same_arguments_same_sample_and_the_seed_matters() {
    for task in Task::ALL {
        let a = gen(task, 3000, 40, 7);
        let b = gen(task, 3000, 40, 7);
        assert_eq!(a, b, "{task}");
        let c = gen(task, 3000, 40, 8);
        assert_ne!(a.answers, c.answers, "{task}");
        assert_eq!((a.task, a.depth, a.seed), (task, 40, 7));
        // Records survive JSON.
        let back: Sample = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}

#[test]
fn answers_are_in_the_context_and_needle_ranges_point_at_them() {
    for task in Task::ALL {
        for (seed, depth) in [(0, 0), (1, 25), (2, 75), (3, 100)] {
            let s = gen(task, 2500, depth, seed);
            assert!(!s.answers.is_empty());
            for a in &s.answers {
                assert!(s.context.contains(a.as_str()), "{task}: {a} missing");
            }
            let expected = match task {
                Task::NiahMultivalue | Task::NiahMultiquery => 4,
                Task::Vt => 5,
                Task::Cwe => 10,
                _ => 1,
            };
            assert_eq!(s.answers.len(), expected, "{task}");
            match task {
                Task::Cwe => {
                    // 30 occurrences of each answer (6 below 4K tokens): 2500 is short.
                    assert_eq!(s.needles.len(), 6 * 10);
                    for r in &s.needles {
                        assert!(s.answers.contains(&s.context[r.clone()].to_owned()));
                    }
                }
                Task::Vt => {
                    assert_eq!(s.needles.len(), 5);
                    for (r, v) in s.needles.iter().zip(&s.answers) {
                        assert!(s.context[r.clone()].starts_with(&format!("VAR {v} = ")));
                    }
                }
                _ => {
                    assert_eq!(s.needles.len(), s.answers.len());
                    for (r, a) in s.needles.iter().zip(&s.answers) {
                        let needle = &s.context[r.clone()];
                        assert!(needle.starts_with("One of the special magic "), "{needle}");
                        assert!(needle.ends_with(&format!(" is: {a}.")), "{needle}");
                    }
                }
            }
        }
    }
}

#[test]
fn niah_wording_follows_ruler_singular_and_plural() {
    let s = gen(Task::NiahSingle2, 2000, 50, 1);
    let key = s.context[s.needles[0].clone()]
        .strip_prefix("One of the special magic numbers for ")
        .and_then(|t| t.split_once(" is: "))
        .unwrap()
        .0
        .to_owned();
    assert!(s.context.starts_with(
        "A special magic number is hidden within the following text. Make sure to memorize it. \
         I will quiz you about the number afterwards.\n"
    ));
    assert_eq!(
        s.question,
        format!("What is the special magic number for {key} mentioned in the provided text?")
    );
    assert_eq!(
        s.answer_prefix,
        format!(" The special magic number for {key} mentioned in the provided text is")
    );
    let (adj, noun) = key.split_once('-').unwrap();
    assert!(words::words(ADJECTIVES).any(|w| w == adj) && words::words(NOUNS).any(|w| w == noun));
    assert!(s.answers[0].len() == 7 && s.answers[0].bytes().all(|b| b.is_ascii_digit()));

    let u = gen(Task::NiahSingle3, 2000, 50, 1);
    assert!(u
        .question
        .starts_with("What is the special magic uuid for "));
    assert!(u.context[u.needles[0].clone()].starts_with("One of the special magic uuids for "));
    is_uuid(&u.answers[0]);

    let m = gen(Task::NiahMultivalue, 2000, 50, 1);
    assert!(m.context.starts_with(
        "Some special magic numbers are hidden within the following text. Make sure to memorize \
         it. I will quiz you about the numbers afterwards.\n"
    ));
    assert!(m
        .question
        .starts_with("What are all the special magic numbers for "));
    assert!(m
        .answer_prefix
        .ends_with(" mentioned in the provided text are"));
    // One key, four needles.
    let keys: HashSet<&str> = m
        .needles
        .iter()
        .map(|r| m.context[r.clone()].split(" is: ").next().unwrap())
        .collect();
    assert_eq!(keys.len(), 1);

    let q = gen(Task::NiahMultiquery, 2000, 50, 1);
    assert_eq!(q.question.matches(", ").count(), 3);
    assert!(q.question.contains(", and "));
    for (r, a) in q.needles.iter().zip(&q.answers) {
        let key = q.context[r.clone()]
            .strip_prefix("One of the special magic numbers for ")
            .unwrap()
            .split(" is: ")
            .next()
            .unwrap();
        assert!(q.question.contains(key));
        assert!(q.context[r.clone()].contains(a.as_str()));
    }
    assert_eq!(q.input(), format!("{}\n{}", q.context, q.question));
    assert_eq!(q.prompt(), format!("{}{}", q.input(), q.answer_prefix));
}

fn is_uuid(s: &str) {
    let parts: Vec<&str> = s.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{s}"
    );
    assert!(s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    assert!(parts[2].starts_with('4'), "version 4: {s}");
    assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
}

#[test]
fn multikey_tasks_hide_the_key_among_distractors() {
    let s = gen(Task::NiahMultikey1, 3000, 30, 3);
    assert_eq!(s.distractors.len(), 3);
    let key = |r: &std::ops::Range<usize>| {
        s.context[r.clone()]
            .split(" is: ")
            .next()
            .unwrap()
            .to_owned()
    };
    let asked = key(&s.needles[0]);
    for d in &s.distractors {
        assert_ne!(key(d), asked);
        assert!(s.context[d.clone()].starts_with("One of the special magic numbers for "));
    }

    for task in [Task::NiahMultikey2, Task::NiahMultikey3] {
        let s = gen(task, 3000, 60, 3);
        let needle = s.context[s.needles[0].clone()].to_owned();
        let key_part = needle.split(" is: ").next().unwrap();
        let lines: Vec<&str> = s.context.lines().skip(1).collect();
        // The haystack is needles only, and just one carries the asked key.
        assert!(lines.len() > 50, "{task}: {} lines", lines.len());
        assert!(lines
            .iter()
            .all(|l| l.starts_with("One of the special magic ")));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.split(" is: ").next() == Some(key_part))
                .count(),
            1,
            "{task}"
        );
        if task == Task::NiahMultikey3 {
            is_uuid(&s.answers[0]);
            let k = key_part.rsplit(' ').next().unwrap();
            is_uuid(k);
        }
    }

    let n = gen(Task::NiahSingle1, 2000, 50, 3);
    let body: Vec<&str> = n.context.lines().skip(1).collect();
    assert_eq!(body.iter().filter(|l| **l != niah::NOISE).count(), 1);
}

#[test]
fn depth_places_the_asked_needle() {
    for task in [Task::NiahSingle1, Task::NiahSingle2, Task::NiahMultikey2] {
        let head = gen(task, 4000, 0, 5);
        let start = head.context.find('\n').unwrap() + 1;
        assert_eq!(head.needles[0].start, start, "{task} at 0%");
        let tail = gen(task, 4000, 100, 5);
        assert_eq!(tail.needles[0].end, tail.context.len(), "{task} at 100%");
        let mid = gen(task, 4000, 50, 5);
        #[allow(clippy::cast_precision_loss)]
        let at = mid.needles[0].start as f64 / mid.context.len() as f64;
        assert!((0.4..0.6).contains(&at), "{task} at 50%: {at}");
        // Same needle whatever the depth.
        assert_eq!(head.answers, mid.answers);
    }
    // Essay needles sit between sentences.
    let s = gen(Task::NiahSingle2, 4000, 37, 2);
    let before = s.context[..s.needles[0].start].trim_end();
    assert!(
        before.ends_with(['.', '!', '?', '"', ')']),
        "{}",
        &before[before.len() - 40..]
    );
    assert_eq!(&s.context[s.needles[0].end..=s.needles[0].end], " ");
}

#[test]
fn prompts_fill_the_budget_without_exceeding_it() {
    let counters: [(&str, Counter); 2] = [("words", &by_words), ("bytes/4", &by_quarter_bytes)];
    for (name, count) in counters {
        for budget in [1500, 4000, 16000] {
            for task in Task::ALL {
                let s = generate(task, BUNDLED, budget, 50, 11, count).unwrap();
                let tokens = count(&s.prompt());
                assert_eq!(tokens, s.tokens);
                assert!(tokens <= budget, "{task} {name}: {tokens} > {budget}");
                // Within one haystack unit (a noise line is 18 words, ~23 quarter-bytes).
                assert!(tokens + 40 >= budget, "{task} {name}: {tokens} of {budget}");
            }
        }
    }
}

#[test]
fn the_needles_do_not_change_with_the_budget() {
    for task in Task::ALL {
        let a = gen(task, 2000, 50, 9);
        let b = gen(task, 8000, 50, 9);
        assert!(b.haystack_units > a.haystack_units);
        assert_eq!(a.answers, b.answers, "{task}");
    }
}

#[test]
fn bad_arguments_are_errors() {
    let e = generate(Task::NiahSingle2, BUNDLED, 4000, 101, 0, &by_words).unwrap_err();
    assert!(e.to_string().contains("out of range"));
    let e = generate(Task::NiahSingle2, BUNDLED, 30, 50, 0, &by_words).unwrap_err();
    assert!(e.to_string().contains("too small for niah_single_2"), "{e}");
    assert!(generate(Task::NiahSingle2, "  \n", 4000, 50, 0, &by_words).is_err());
    // Tasks that do not read the essay work without one.
    assert!(generate(Task::NiahSingle1, "", 1000, 50, 0, &by_words).is_ok());
    assert!(generate(Task::Vt, "", 1000, 50, 0, &by_words).is_ok());
    let many = generate_many(&[Task::Vt, Task::Cwe], 3, BUNDLED, 1200, 0, 4, &by_words).unwrap();
    assert_eq!(many.len(), 6);
    assert_eq!(many[2].seed, 6);
    assert_ne!(many[0].answers, many[1].answers);
}

#[test]
fn scoring_is_rulers_string_match() {
    let refs = ["1234567", "7654321", "Brave-Otter", "0000000"];
    // string_match_all: the share found, case-insensitive.
    assert!(close(
        string_match_all("The numbers are 1234567 and brave-otter.", &refs),
        0.5
    ));
    assert!(close(
        string_match_all("1234567 7654321 BRAVE-OTTER 0000000", &refs),
        1.0
    ));
    assert!(close(string_match_all("nothing", &refs), 0.0));
    assert!(close(string_match_all::<&str>("anything", &[]), 0.0));
    // Substring, as RULER: a longer number containing the answer counts.
    assert!(close(string_match_all("91234567", &["1234567"]), 1.0));
    // string_match_part: any one.
    assert!(close(string_match_part("it is 7654321", &refs), 1.0));
    assert!(close(string_match_part("none", &refs), 0.0));
    // postprocess_pred: control characters become newlines, ends stripped.
    assert_eq!(postprocess_pred("  a\tb\u{1}c \n"), "a\nb\nc");
    assert!(close(Metric::Part.score("x 0000000", &refs), 1.0));
    assert!(close(Metric::All.score("x 0000000", &refs), 0.25));

    let s = gen(Task::NiahMultivalue, 2000, 50, 2);
    let two = format!("{} and {}", s.answers[0].to_uppercase(), s.answers[3]);
    assert!(close(s.score(&two), 0.5));
    assert!(close(s.score(&s.answers.join(", ")), 1.0));
    let v = gen(Task::Vt, 2000, 0, 2);
    assert!(close(
        v.score(&v.answers[..4].join(" ").to_lowercase()),
        0.8
    ));
}

/// The main part of a vt/cwe context: after the last occurrence of the task's opening line.
fn main_part<'a>(s: &'a Sample, opening: &str) -> &'a str {
    let at = s.context.rfind(opening).unwrap() + opening.len();
    &s.context[at..]
}

#[test]
fn vt_answers_are_exactly_the_variables_that_resolve_to_the_value() {
    for seed in 0..6 {
        let s = gen(Task::Vt, 3000, 0, seed);
        // The worked example comes first, answered.
        assert!(s
            .context
            .starts_with("Memorize and track the chain(s) of variable assignment"));
        assert_eq!(s.context.matches("Memorize and track").count(), 2);
        let body = main_part(&s, "hidden in the following text.\n\n");
        let mut assigned: HashMap<&str, &str> = HashMap::new();
        for line in body.lines().filter(|l| l.starts_with("VAR ")) {
            let (lhs, rhs) = line.trim_end().split_once(" = ").unwrap();
            assigned.insert(lhs.strip_prefix("VAR ").unwrap(), rhs);
        }
        assert_eq!(assigned.len(), 5);
        let value = s
            .question
            .strip_prefix("Question: Find all variables that are assigned the value ")
            .and_then(|q| q.strip_suffix(" in the text above."))
            .unwrap();
        let mut found: Vec<&str> = assigned
            .keys()
            .copied()
            .filter(|v| resolve(&assigned, v) == value)
            .collect();
        found.sort_unstable();
        let mut answers: Vec<&str> = s.answers.iter().map(String::as_str).collect();
        answers.sort_unstable();
        assert_eq!(found, answers);
        assert!(s
            .answers
            .iter()
            .all(|a| a.len() == 5 && a.bytes().all(|b| b.is_ascii_uppercase())));
        assert_eq!(
            s.answer_prefix,
            format!(
                " Answer: According to the chain(s) of variable assignment in the text above, \
                 5 variables are assigned the value {value}, they are: "
            )
        );
        // Statements in chain order in the text.
        assert!(s.needles.windows(2).all(|w| w[0].end < w[1].start));
    }
}

/// Follow `VAR X = VAR Y` to the number at the end of the chain.
fn resolve<'a>(assigned: &HashMap<&'a str, &'a str>, mut v: &'a str) -> &'a str {
    loop {
        match assigned[v].strip_prefix("VAR ") {
            Some(next) => v = next,
            None => return assigned[v],
        }
    }
}

fn cwe_counts(s: &Sample) -> (HashMap<String, usize>, usize) {
    let list = main_part(s, "Memorize the ones that appear most often.\n");
    let mut counts = HashMap::new();
    let mut n = 0;
    for (i, entry) in list.split(' ').collect::<Vec<_>>().chunks(2).enumerate() {
        assert_eq!(entry[0], format!("{}.", i + 1));
        *counts.entry(entry[1].to_owned()).or_insert(0) += 1;
        n += 1;
    }
    (counts, n)
}

#[test]
fn cwe_answers_are_strictly_the_ten_most_common_words() {
    for (budget, common, rare) in [(2000, 6, 1), (6000, 30, 3), (40000, 30, 3)] {
        let s = gen(Task::Cwe, budget, 0, 13);
        let (counts, entries) = cwe_counts(&s);
        assert_eq!(s.answers.len(), 10);
        let answers: HashSet<&str> = s.answers.iter().map(String::as_str).collect();
        assert_eq!(answers.len(), 10);
        for (w, c) in &counts {
            let want = if answers.contains(w.as_str()) {
                common
            } else {
                rare
            };
            assert_eq!(*c, want, "{w} at budget {budget}");
        }
        assert_eq!(entries, 10 * common + (counts.len() - 10) * rare);
        assert_eq!(s.haystack_units, counts.len());
        assert_eq!(s.needles.len(), 10 * common);
        assert!(s
            .answer_prefix
            .starts_with(" Answer: The top 10 words that appear most often in the list are:"));
        assert_eq!(
            s.question,
            "Question: What are the 10 most common words in the above list?"
        );
        // The worked example is answered in the context.
        assert_eq!(s.context.matches("Answer: The top 10 words").count(), 1);
        if budget == 40000 {
            // More distinct words than the built-in list: pseudo-words continue it.
            assert!(counts.len() > 900, "{}", counts.len());
        }
    }
}

#[test]
fn the_fit_counts_few_times() {
    for task in Task::ALL {
        let calls = std::cell::Cell::new(0);
        let count = |s: &str| {
            calls.set(calls.get() + 1);
            by_quarter_bytes(s)
        };
        let s = generate(task, BUNDLED, 32000, 50, 3, &count).unwrap();
        // vt fits its worked example too.
        let limit = if task == Task::Vt { 20 } else { 12 };
        assert!(calls.get() <= limit, "{task}: {} counts", calls.get());
        assert!(s.tokens + 40 >= 32000, "{task}: {}", s.tokens);
    }
}
