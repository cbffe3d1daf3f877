//! Interactive mode (`-i`, `-if`, `--in-prefix`, `--in-suffix`, `--in-prefix-bos`, `-mli`) and
//! self-extend (`-gan`, `-gaw`) against llama.cpp's own `llama-completion` (built by
//! `make compat`), as tests/compat.rs compares: the same command line and the same lines on
//! standard input, with a fixed seed and two threads, give the same text byte for byte.
//!
//! Both read input as llama-completion's `--simple-io` console does (lines, not echoed; without
//! it, llama-completion echoes what it reads to standard output when there is no terminal).
//! Standard output then holds the generated text with each `--in-prefix`/`--in-suffix` printed
//! around the (unprinted) input. llama-completion ends with `EOF by user` and a blank line at
//! the end of input (a blank line alone when the loop ends otherwise), gemfilter with one newline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::util;

fn reference() -> PathBuf {
    let p = util::root().join(".reference/bin/llama-completion");
    assert!(
        p.exists(),
        "{} is missing: run `make compat` (scripts/reference-llama.sh builds llama.cpp's own tools)",
        p.display()
    );
    p
}

const LIMIT: Duration = Duration::from_mins(5);

/// A dialogue that hands control back at once: the prompt ends with the reverse prompt.
const DIALOGUE: &str = "User: Hello\nAssistant: Hi there.\nUser:";
const LINES: &str = "What is the capital of France?\nTell me a joke.\n";
const AFFIXES: &[&str] = &[
    "-i",
    "-r",
    "User:",
    "--in-prefix",
    " ",
    "--in-suffix",
    "Assistant:",
];

/// `-m MODEL -p PROMPT -n N -s 42 -t 2 -c 2048 --no-display-prompt -no-cnv --simple-io`.
fn common(model: &Path, prompt: &str, n: &str) -> Vec<String> {
    let m = model.to_str().unwrap();
    [
        "-m",
        m,
        "-p",
        prompt,
        "-n",
        n,
        "-s",
        "42",
        "-t",
        "2",
        "-c",
        "2048",
        "--no-display-prompt",
        "-no-cnv",
        "--simple-io",
    ]
    .map(String::from)
    .to_vec()
}

fn run(cmd: Command, args: &[String], input: &str) -> Output {
    let mut cmd = cmd;
    cmd.args(args);
    util::run_within(cmd, Some(input.as_bytes()), LIMIT).0
}

/// llama-completion's text before its own ending.
fn reference_text(o: &Output) -> String {
    let s = util::stdout(o);
    for end in ["EOF by user\n\n\n", "\n\n"] {
        if let Some(t) = s.strip_suffix(end) {
            return t.strip_suffix(" [end of text]\n").unwrap_or(t).to_owned();
        }
    }
    panic!("llama-completion's output does not end as expected: {s:?}");
}

/// gemfilter's text before its one closing newline.
fn our_text(o: &Output) -> String {
    let s = util::stdout(o);
    s.strip_suffix('\n')
        .unwrap_or_else(|| panic!("gemfilter's output does not end with a newline: {s:?}"))
        .to_owned()
}

/// Run both on `args` with `input` on stdin; assert the same text and return it.
fn same(args: &[String], input: &str) -> String {
    let want = run(Command::new(reference()), args, input);
    assert!(
        want.status.success(),
        "llama-completion failed on {args:?}: {}",
        util::stderr(&want)
    );
    let mut ours = vec!["--gem".to_owned(), "off".to_owned()];
    ours.extend(args.iter().cloned());
    let got = run(util::gemfilter(), &ours, input);
    assert!(
        got.status.success(),
        "gemfilter failed on {ours:?}: {}",
        util::stderr(&got)
    );
    let (want, got) = (reference_text(&want), our_text(&got));
    assert_eq!(
        got, want,
        "\ngemfilter (left) and llama-completion (right) differ for {args:?}"
    );
    want
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// At least `n` inputs were read and wrapped: the suffix is printed after each.
fn assert_turns(text: &str, suffix: &str, n: usize) {
    assert!(
        text.matches(suffix).count() >= n,
        "expected {n} inputs wrapped in {suffix:?}: {text:?}"
    );
}

#[test]
fn reverse_prompt_and_affixes_seeded() {
    let args = with(common(&util::smollm2(), DIALOGUE, "32"), AFFIXES);
    let text = same(&args, LINES);
    // Both lines were answered: the prompt ends with "User:", so input comes first.
    assert!(text.starts_with(" Assistant:"), "{text:?}");
    assert_turns(&text, "Assistant:", 2);
}

#[test]
fn reverse_prompt_and_affixes_greedy() {
    let args = with(common(&util::smollm2(), DIALOGUE, "32"), AFFIXES);
    let text = same(&with(args, &["--temp", "0"]), LINES);
    assert_turns(&text, "Assistant:", 2);
}

#[test]
fn reverse_prompt_and_affixes_qwen() {
    let args = with(common(&util::qwen05(), DIALOGUE, "32"), AFFIXES);
    let text = same(&args, LINES);
    assert_turns(&text, "Assistant:", 2);
}

#[test]
fn interactive_first_waits_for_input() {
    let prompt = "Q: What is the capital of Italy?\nA: Rome\nQ:";
    let args = with(
        common(&util::smollm2(), prompt, "24"),
        &[
            "-if",
            "-r",
            "Q:",
            "--in-prefix",
            " ",
            "--in-suffix",
            "\\nA:",
        ],
    );
    let text = same(&args, "Paris\nBerlin\n");
    // Input before any generation: the output opens with the prefix and the suffix.
    assert!(text.starts_with(" \nA:"), "{text:?}");
    assert_turns(&text, "\nA:", 2);
}

#[test]
fn budget_hands_back_control() {
    // No reverse prompt: after -n tokens the loop waits for input, then has -n again.
    let args = with(
        common(
            &util::smollm2(),
            "Once upon a time, in a small village by the sea,",
            "8",
        ),
        &["-i", "--in-suffix", " And then"],
    );
    let text = same(&args, "the fisherman smiled.\nthe boat sank.\n");
    assert_turns(&text, " And then", 2);
}

#[test]
fn in_prefix_bos() {
    let args = with(
        common(&util::smollm2(), DIALOGUE, "32"),
        &[AFFIXES, &["--in-prefix-bos"]].concat(),
    );
    same(&args, LINES);
}

#[test]
fn multiline_input() {
    // With -mli one input runs until a line ends in `\`: two inputs of two lines each.
    let args = with(
        common(&util::smollm2(), DIALOGUE, "32"),
        &[AFFIXES, &["-mli"]].concat(),
    );
    let text = same(
        &args,
        "What is the capital\nof France?\\\nTell me\na joke.\\\n",
    );
    assert_turns(&text, "Assistant:", 2);
}

#[test]
fn end_of_generation_hands_back_control() {
    // A bias on <|im_end|> ends each answer early; in interactive mode the loop then prints a
    // newline, queues the first reverse prompt and waits for input (-sp shows the marker).
    let args = with(
        common(&util::smollm2(), DIALOGUE, "32"),
        &[AFFIXES, &["-l", "2+8", "-sp"]].concat(),
    );
    let text = same(&args, LINES);
    assert!(text.contains("<|im_end|>\n"), "{text:?}");
}

/// A raw prompt of about 320 tokens: with -gaw 64 or 32 the self-extend block moves the
/// positions many times during the prompt and the answer.
fn long_prompt() -> String {
    let line = "The quick brown fox jumps over the lazy dog near the river bank, and the farmer \
                watches from his porch while drinking tea.";
    let mut p = [line; 12].join(" ");
    p.push_str(
        " Once upon a time, in a small village by the sea, there lived an old fisherman who",
    );
    p
}

fn self_extend(extra: &[&str]) -> String {
    self_extend_on(&util::smollm2(), extra)
}

fn self_extend_on(model: &Path, extra: &[&str]) -> String {
    let args = with(
        common(model, &long_prompt(), "48"),
        &[&["--ignore-eos"], extra].concat(),
    );
    same(&args, "")
}

#[test]
fn self_extend_matches_and_changes_the_text() {
    let plain = self_extend(&[]);
    let extended = self_extend(&["-gan", "2", "-gaw", "64"]);
    // Positions were really divided: the same run without self-extend says something else.
    assert_ne!(plain, extended);
    self_extend(&["-gan", "2", "-gaw", "64", "--temp", "0"]);
}

#[test]
fn self_extend_between_prompt_batches() {
    // With -b 64 the prompt is decoded in five batches and positions move between them.
    let a = self_extend(&["-gan", "4", "-gaw", "32", "-b", "64", "-ub", "64"]);
    let b = self_extend(&["-gan", "4", "-gaw", "32"]);
    assert_ne!(a, b);
}

#[test]
fn self_extend_qwen() {
    self_extend_on(&util::qwen05(), &["-gan", "2", "-gaw", "64"]);
}

#[test]
fn gemfilter_selection_then_interactive() {
    // GemFilter on: the long -f document is filtered, the selection is the context the loop
    // starts from, and each line typed is decoded whole after it.
    let dir = util::tmpdir("interactive-gem");
    let words = [
        "river", "stone", "lamp", "garden", "window", "paper", "silver", "bridge", "cloud",
    ];
    let mut doc: Vec<&str> = (0..900)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect();
    doc.insert(300, "The secret code is 4721.");
    let file = util::write(&dir, "doc.txt", doc.join(" ").as_bytes());
    let m = util::smollm2();
    let mut cmd = util::gemfilter();
    cmd.args([
        "-m",
        m.to_str().unwrap(),
        "-f",
        file.to_str().unwrap(),
        "-p",
        "Question: what is the secret code?\nAnswer:",
        "-n",
        "12",
        "--temp",
        "0",
        "-t",
        "2",
        "--no-display-prompt",
        "-no-cnv",
        "-i",
        "-r",
        "Question:",
        "--in-prefix",
        " ",
        "--in-suffix",
        "\\nAnswer:",
        "--gem-topk",
        "128",
        "--gem-show",
    ]);
    let (o, _) = util::run_within(cmd, Some(b"Say it again.\nOnce more.\n"), LIMIT);
    let (out, err) = (util::stdout(&o), util::stderr(&o));
    assert!(o.status.success(), "{err}");
    let shown = err
        .lines()
        .find(|l| l.starts_with("--- selected "))
        .unwrap_or_else(|| panic!("no selection shown: {err}"));
    assert!(shown.starts_with("--- selected 128 of "), "{shown}");
    assert_turns(&out, "\nAnswer:", 2);
    // The question picked the tokens: the needle is in the selection the answers start from.
    let selection = &err[err.find("--- selected ").unwrap()..];
    assert!(selection.contains("4721"), "{selection}");
}

#[test]
fn bad_combinations_refused_in_one_line() {
    let m = util::smollm2();
    let m = m.to_str().unwrap();
    let q = util::qwen05();
    let q = q.to_str().unwrap();
    for (args, what) in [
        (
            vec!["-m", m, "-p", "hi", "-no-cnv", "-gan", "3", "-gaw", "64"],
            "-gaw (--grp-attn-w) must be a positive multiple of -gan",
        ),
        (
            vec!["-m", m, "-p", "hi", "-no-cnv", "-gan", "0"],
            "-gan (--grp-attn-n) must be positive",
        ),
        (
            vec!["-m", m, "-p", "hi", "-no-cnv", "-gan", "2", "-gaw", "0"],
            "-gaw (--grp-attn-w) must be a positive multiple",
        ),
        (
            vec!["-m", m, "-p", "hi", "-no-cnv", "-gan", "300", "-gaw", "600"],
            "at most 255",
        ),
        (
            vec!["-m", q, "-p", "hi", "-i"],
            "add -no-cnv for raw-text interactive mode",
        ),
        (
            vec!["-m", m, "-p", "hi", "-no-cnv", "-i", "--json"],
            "--json: not with -i",
        ),
        (
            vec![
                "-m", m, "-p", "hi", "-no-cnv", "-gan", "2", "-gaw", "64", "--json",
            ],
            "--json: not with -gan",
        ),
        (
            vec!["-m", m, "-p", "hi", "-no-cnv", "-i", "-o", "transcript.txt"],
            "-o: not with -i",
        ),
        (
            vec!["-m", m, "-p", "hi", "-cnv", "-gan", "2", "-gaw", "64"],
            "not in conversation mode",
        ),
        (
            vec!["-m", m, "-p", "hi", "-cnv", "-mli"],
            "-mli: not in conversation mode",
        ),
    ] {
        let o = util::run(&args);
        util::assert_one_error(&o, what);
    }
}
