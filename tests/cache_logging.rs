//! llama.cpp's `--prompt-cache-ro`, `--prompt-cache-all`, `-o` and logging options on
//! SmolLM2-135M (CPU, a ~900-token document), against llama.cpp's own tools where they define
//! the output: llama-cli's `-o` transcript and `--log-prompts-dir` files, llama-completion's
//! `--log-jsonl` lines.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::*;

const Q1: &str = "What is the secret passkey for the vault?";

/// A ~900-token document with one fact a third of the way in.
fn doc(dir: &Path) -> PathBuf {
    let text = haystack(4000, "The secret passkey for the vault is 48213.", 0.33);
    write(dir, "doc.txt", text.as_bytes())
}

/// GemFilter on SmolLM2 keeping 64 tokens, greedy, `-n n`, prefix models cached in `dir`.
fn gem(dir: &Path, n: &str) -> Command {
    let mut c = cached(dir);
    c.args(["-m", smollm2().to_str().unwrap()])
        .args(["-n", n, "--temp", "0", "-t", "2", "--gem-topk", "64"])
        .stdin(Stdio::null());
    c
}

fn one_record(o: &Output) -> serde_json::Value {
    let mut v = json_lines(o);
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

fn u(v: &serde_json::Value) -> usize {
    usize::try_from(v.as_u64().unwrap()).unwrap()
}

fn reference(tool: &str) -> PathBuf {
    let p = root().join(".reference/bin").join(tool);
    assert!(p.exists(), "{} is missing: run `make test`", p.display());
    p
}

/// The two numbers of "the prompt cache matches M of N prompt tokens".
fn matches(err: &str) -> (usize, usize) {
    let at = err
        .find("the prompt cache matches ")
        .unwrap_or_else(|| panic!("no reuse line: {err}"));
    let words: Vec<&str> = err[at..].split_whitespace().collect();
    (words[4].parse().unwrap(), words[6].parse().unwrap())
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

fn kv(cache: &Path) -> PathBuf {
    PathBuf::from(format!("{}.kv", cache.display()))
}

#[test]
fn prompt_cache_ro_uses_the_cache_and_never_writes_it() {
    let d = tmpdir("cache-ro");
    let doc = doc(&d);
    let cache = d.join("doc.state");
    let ask = |q: &str, doc: &Path, extra: &[&str]| {
        gem(&d, "4")
            .args(["-f", doc.to_str().unwrap(), "-p", q, "-st", "--json"])
            .args(["--prompt-cache", cache.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    // A missing cache is not created.
    let o = ask(Q1, &doc, &["--prompt-cache-ro"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!cache.exists() && !kv(&cache).exists(), "{}", stderr(&o));
    // Written by an ordinary --prompt-cache run, then used read-only: same bytes afterwards.
    let o = ask(Q1, &doc, &[]);
    assert!(
        stderr(&o).contains("saved the document's filter state"),
        "{}",
        stderr(&o)
    );
    let before = (bytes(&cache), bytes(&kv(&cache)));
    let o = ask("Who wrote the essay?", &doc, &["--prompt-cache-ro"]);
    let err = stderr(&o);
    let r = one_record(&o);
    assert!(err.contains("loaded the document's filter state"), "{err}");
    let doc_end = u(&r["context_range"][1]);
    assert_eq!(
        u(&r["filter_tokens_decoded"]),
        u(&r["prompt_tokens"]) - doc_end,
        "only what follows the document was decoded: {err}"
    );
    assert_eq!(matches(&err), (doc_end, u(&r["prompt_tokens"])));
    assert!(!err.contains("saved"), "{err}");
    assert_eq!((bytes(&cache), bytes(&kv(&cache))), before);
    // A cache for another document is not used, and not rebuilt either.
    let other = write(&d, "other.txt", &std::fs::read(&doc).unwrap()[100..]);
    let o = ask(Q1, &other, &["--prompt-cache-ro"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("belongs to another document: not using it (--prompt-cache-ro"),
        "{err}"
    );
    assert_eq!((bytes(&cache), bytes(&kv(&cache))), before);
}

#[test]
fn prompt_cache_all_keeps_the_answer_and_a_prompt_going_on_from_it_reuses_it() {
    let d = tmpdir("cache-all");
    let doc = doc(&d);
    let cache = d.join("doc.state");
    let run = |q: &str, cached: bool| {
        let mut c = gem(&d, "12");
        c.args(["-f", doc.to_str().unwrap(), "-p", q, "-no-cnv", "--json"]);
        if cached {
            c.args([
                "--prompt-cache",
                cache.to_str().unwrap(),
                "--prompt-cache-all",
            ]);
        }
        c.output().unwrap()
    };
    let o = run(Q1, true);
    let first = one_record(&o);
    let answer = first["answer"].as_str().unwrap().to_owned();
    assert!(u(&first["generated_tokens"]) > 0, "{first}");
    let held = u(&first["prompt_tokens"]) + u(&first["generated_tokens"]);
    assert!(
        stderr(&o).contains(&format!(
            "saved the filter state of the prompt and the answer to '{}' ({held} tokens)",
            cache.display()
        )),
        "{}",
        stderr(&o)
    );
    // The raw prompt goes on from the first prompt and its answer: only the rest is decoded.
    let longer = format!(
        "{Q1}{answer} Now say the secret passkey for the vault once more, as a number, and then \
         say in one short sentence where in the text it was written."
    );
    let o = run(&longer, true);
    let err = stderr(&o);
    let second = one_record(&o);
    let (reused, n) = matches(&err);
    assert_eq!(n, u(&second["prompt_tokens"]));
    assert!(
        reused >= u(&first["prompt_tokens"]),
        "the whole first prompt is reused, and more: {err}"
    );
    assert!(reused <= held, "{err}");
    assert_eq!(u(&second["filter_tokens_decoded"]), n - reused, "{err}");
    // Reuse changes the cost, not the answer: the same selection and answer as a fresh run.
    let fresh = one_record(&run(&longer, false));
    assert_eq!(u(&fresh["filter_tokens_decoded"]), n);
    assert_eq!(second["answer"], fresh["answer"]);
    assert_eq!(second["selected_tokens"], fresh["selected_tokens"]);
    let in_doc = |r: &serde_json::Value| -> Vec<(usize, usize)> {
        let end = u(&r["context_range"][1]);
        r["selected_ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (u(&p[0]), u(&p[1]).min(end - 1)))
            .filter(|&(a, _)| a < end)
            .collect()
    };
    assert_eq!(in_doc(&second), in_doc(&fresh));
}

#[test]
fn prompt_cache_switches_are_refused_where_they_cannot_apply() {
    let d = tmpdir("cache-refused");
    let doc = doc(&d);
    let cache = d.join("c");
    let o = gem(&d, "4")
        .args(["-f", doc.to_str().unwrap(), "-cnv", "--prompt-cache"])
        .arg(&cache)
        .arg("--prompt-cache-all")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "--prompt-cache-all saves one answer (llama-completion refuses it in interactive mode)"
        ),
        "{}",
        stderr(&o)
    );
    let o = gem(&d, "4")
        .args(["-p", "hi", "-st", "--gem", "off", "--prompt-cache"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("it needs GemFilter on the target"),
        "{}",
        stderr(&o)
    );
    assert!(!cache.exists());
}

/// `User:\n<message>\n\nAssistant:\n<answer>\n\n` blocks, as llama-cli's `cli_context` writes.
fn transcript(turns: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (q, a) in turns {
        let nl = if a.ends_with('\n') { "" } else { "\n" };
        let _ = write!(out, "User:\n{q}\n\nAssistant:\n{a}{nl}\n");
    }
    out
}

#[test]
fn output_file_is_llama_clis_transcript() {
    let d = tmpdir("output-file");
    // llama-cli's own file: one exchange framed as transcript() frames it.
    let reference_out = d.join("ref.txt");
    let o = Command::new(reference("llama-cli"))
        .args([
            "-m",
            smollm2().to_str().unwrap(),
            "-p",
            "Hi there",
            "-n",
            "6",
        ])
        .args(["--temp", "0", "-st", "-o"])
        .arg(&reference_out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = std::fs::read_to_string(&reference_out).unwrap();
    let answer = got
        .strip_prefix("User:\nHi there\n\nAssistant:\n")
        .and_then(|r| r.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("llama-cli's transcript: {got:?}"));
    assert_eq!(got, transcript(&[("Hi there", answer)]));
    // gemfilter's, a conversation of two questions about a document (answered whole: the
    // transcript does not depend on the selection).
    let small = write(
        &d,
        "small.txt",
        b"The vault's passkey is 48213. The museum is old.",
    );
    let out = d.join("out.txt");
    std::fs::write(&out, "an older file is emptied first").unwrap();
    let mut child = gem(&d, "6")
        .args([
            "-f",
            small.to_str().unwrap(),
            "-cnv",
            "-p",
            "What is the passkey?",
        ])
        .args(["--gem-min-tokens", "100000", "--json", "-o"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Is the museum old?\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let turns = json_lines(&o);
    assert_eq!(turns.len(), 2);
    let a = |i: usize| turns[i]["answer"].as_str().unwrap().to_owned();
    let (a1, a2) = (a(0), a(1));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        transcript(&[
            (
                "The vault's passkey is 48213. The museum is old.\n\nWhat is the passkey?",
                &a1
            ),
            ("Is the museum old?", &a2),
        ])
    );
    // A single answer writes the same block; a file that cannot be opened is one error line.
    let o = gem(&d, "4")
        .args(["-p", "Hi there", "-st", "--gem", "off", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    let printed = printed.strip_suffix('\n').unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        transcript(&[("Hi there", printed)])
    );
    let o = gem(&d, "4")
        .args(["-p", "Hi", "-st", "-o"])
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: failed to open output file (-o)"),
        "{}",
        stderr(&o)
    );
}

/// Every `{"type":"log",...}` line has llama.cpp's keys, in its order; returns how many. A
/// line may start after text of the answer on the same line, as in llama-cli.
fn assert_log_lines(text: &str, who: &str) -> usize {
    let lines: Vec<&str> = text
        .match_indices("{\"type\":\"log\"")
        .map(|(at, _)| text[at..].split_inclusive('\n').next().unwrap())
        .collect();
    for l in &lines {
        let rest = l.strip_prefix("{\"type\":\"log\",\"time\":").unwrap();
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        assert!(digits > 0, "{who}: {l}");
        assert!(rest[digits..].starts_with(",\"level\":\""), "{who}: {l}");
        let v: serde_json::Value = serde_json::from_str(l.trim_end()).unwrap();
        assert!(v["msg"].is_string() && v["level"].is_string(), "{who}: {l}");
        assert_eq!(v.as_object().unwrap().len(), 4, "{who}: {l}");
    }
    lines.len()
}

#[test]
fn log_file_and_jsonl_carry_the_log_as_llama_cpp_does() {
    let d = tmpdir("log-file");
    // A prompt shorter than -k: gemfilter says so in a notice, its log line.
    let log = d.join("run.log");
    let o = gem(&d, "2")
        .args(["-p", "Hi there", "-st", "--log-file"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("gemfilter: prompt has"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), stderr(&o));
    // With -v, llama.cpp's own log goes there as well.
    let o = gem(&d, "2")
        .args(["-p", "Hi there", "-st", "-v", "--log-file"])
        .arg(&log)
        .output()
        .unwrap();
    let file = std::fs::read_to_string(&log).unwrap();
    assert!(file.contains("llama_model_loader"), "{file}");
    assert_eq!(file, stderr(&o));
    // --log-jsonl: the log lines are JSON objects on stdout, in llama-completion's shape.
    let o = gem(&d, "2")
        .args(["-p", "Hi there", "-st", "--log-jsonl", "--log-file"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("gemfilter: prompt has"),
        "{}",
        stderr(&o)
    );
    let out = stdout(&o);
    assert!(out.contains("\"msg\":\"gemfilter: prompt has"), "{out}");
    assert!(assert_log_lines(&out, "gemfilter") >= 1);
    let file = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        assert_log_lines(&file, "gemfilter's file"),
        file.lines().count()
    );
    let o = Command::new(reference("llama-completion"))
        .args([
            "-m",
            smollm2().to_str().unwrap(),
            "-p",
            "Hi",
            "-n",
            "1",
            "-no-cnv",
        ])
        .arg("--log-jsonl")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(assert_log_lines(&stdout(&o), "llama-completion") > 3);
}

#[test]
fn log_prompts_dir_holds_the_prompt_llama_cli_sends() {
    let d = tmpdir("log-prompts");
    let files = |dir: &Path| -> Vec<String> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v.iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    };
    let reference_dir = d.join("ref");
    let o = Command::new(reference("llama-cli"))
        .args([
            "-m",
            smollm2().to_str().unwrap(),
            "-p",
            "Hi there",
            "-n",
            "2",
        ])
        .args(["--temp", "0", "-st", "--log-prompts-dir"])
        .arg(&reference_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let want = files(&reference_dir);
    assert_eq!(want.len(), 1, "{want:?}");
    // The directory is created, nested too; the prompt is byte-equal (llama-cli applies the
    // template with its Jinja engine, so --jinja here).
    let dir = d.join("ours/prompts");
    for _ in 0..2 {
        let o = gem(&d, "2")
            .args(["-p", "Hi there", "-st", "--jinja", "--log-prompts-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(files(&dir), [want[0].clone(), want[0].clone()]);
}
