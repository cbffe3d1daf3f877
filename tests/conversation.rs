//! Conversation mode (`-cnv`): two questions about two facts at opposite ends of one document,
//! on the real Qwen2.5-Coder-0.5B (CPU). The document is filtered once; the second turn decodes
//! only what follows it through the filter layers.

use serde_json::json;
use std::io::Write;
use std::process::Stdio;

use crate::util::*;

/// A ~2.9K-token document with one fact at 15% and another at 85%.
fn two_fact_doc(dir: &std::path::Path) -> std::path::PathBuf {
    let text = haystack(9000, "The secret passkey for the vault is 48213.", 0.15);
    let at = text.len() * 85 / 100;
    let pos = text[at..].find(". ").map_or(text.len(), |p| at + p + 1);
    let text = format!(
        "{} The museum was founded by Eleanor Whitfield.{}",
        &text[..pos],
        &text[pos..]
    );
    write(dir, "doc.txt", text.as_bytes())
}

const PASSKEY: &str = "What is the secret passkey for the vault? Answer with the number.";

/// `gemfilter -cnv` on the 0.5B at layer 13 about `doc`, first question `first`, `-n n`.
fn cnv(
    dir: &std::path::Path,
    doc: &std::path::Path,
    first: &str,
    n: &str,
) -> std::process::Command {
    let mut c = cached(dir);
    c.args([
        "-m",
        qwen05().to_str().unwrap(),
        "-f",
        doc.to_str().unwrap(),
        "-cnv",
    ])
    .args(["-p", first, "-n", n, "--temp", "0", "-t", "2"])
    .args(["--gem-calibrate", "off", "--gem-layer", "13"])
    .args([
        "--gem-scoring",
        "window-softmax:32+pool15",
        "--gem-topk",
        "256",
    ]);
    c
}

#[test]
fn two_questions_are_answered_and_the_second_decodes_only_what_follows_the_document() {
    let d = tmpdir("conversation");
    let doc = two_fact_doc(&d);
    let mut child = cnv(&d, &doc, PASSKEY, "12")
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Who founded the museum? Answer with the name.\n/exit\nnever asked\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let turns = json_lines(&o);
    assert_eq!(turns.len(), 2, "two questions, then /exit: {turns:?}");
    let (t1, t2) = (&turns[0], &turns[1]);
    // Each turn is the single answer's record (docs/json.md).
    crate::end_to_end::assert_record(t1, "turn");
    crate::end_to_end::assert_record(t2, "turn");
    assert_eq!(t1["turn"], 1);
    assert_eq!(t1["question"], PASSKEY);
    assert!(t1["filter_skipped"].is_null() && t1["filter_pass_s"].is_null());
    assert!(
        t1["answer"].as_str().unwrap().contains("48213"),
        "turn 1: {}",
        t1["answer"]
    );
    assert!(
        t2["answer"].as_str().unwrap().contains("Whitfield"),
        "turn 2: {}",
        t2["answer"]
    );
    // Turn 1 filtered the whole prompt; turn 2 decoded only the tokens after the document
    // (question 1, answer 1, question 2 and the template around them) through the filter layers.
    let n1 = t1["prompt_tokens"].as_u64().unwrap();
    assert_eq!(t1["filter_tokens_decoded"].as_u64().unwrap(), n1);
    let doc_end = t2["context_range"][1].as_u64().unwrap();
    assert_eq!(
        doc_end,
        t1["context_range"][1].as_u64().unwrap(),
        "same document tokens"
    );
    let n2 = t2["prompt_tokens"].as_u64().unwrap();
    let decoded = t2["filter_tokens_decoded"].as_u64().unwrap();
    assert_eq!(decoded, n2 - doc_end);
    assert!(
        decoded < 120 && n1 > 1500,
        "turn 2 decoded {decoded} of {n2} tokens"
    );
    // Each turn selected for its own question: the two selections differ.
    assert_ne!(t1["selected_ranges"], t2["selected_ranges"]);
    assert_eq!(t2["turn"], 2);
}

#[test]
fn conversation_mode_without_a_document_or_with_gem_off_is_one_error() {
    let m = qwen05();
    let off = ["--gem-calibrate", "off", "--gem-layer", "13"];
    let o = run(&[&["-m", m.to_str().unwrap(), "-p", "hi", "-cnv"], &off[..]].concat());
    assert_one_error(&o, "-f");
    let d = tmpdir("conversation-off");
    let doc = write(&d, "doc.txt", b"Some text.");
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-f",
        doc.to_str().unwrap(),
        "-cnv",
        "--gem",
        "off",
    ]);
    assert_one_error(&o, "-st");
}

/// One `-cnv --json` turn on a random-weight tiny model (the `chatml` template) about a ~1K-token
/// document, with `extra` flags and the prefix cache at `cache`.
fn tiny_turn(
    dir: &std::path::Path,
    cache: &std::path::Path,
    extra: &[&str],
) -> (serde_json::Value, String) {
    let model = synth(dir, "tiny-llama");
    let doc = write(
        dir,
        "doc.txt",
        haystack(4000, "The boat is blue.", 0.5).as_bytes(),
    );
    let o = gemfilter()
        .args(["-m", model.to_str().unwrap(), "-f", doc.to_str().unwrap()])
        .args([
            "-cnv",
            "--chat-template",
            "chatml",
            "-p",
            "q",
            "-n",
            "2",
            "--json",
        ])
        .args(["--gem-layer", "2", "--gem-topk", "64"])
        .args(extra)
        .env("GEMFILTER_CACHE", cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    let turns = json_lines(&o);
    assert_eq!(turns.len(), 1, "{turns:?}");
    (turns[0].clone(), err)
}

/// The conversation decides as the single answer does (one selector): an unwritable prefix
/// cache falls back to filtering on the full model, and a prompt below --gem-min-tokens is
/// answered whole, both said in one line.
#[test]
fn a_turn_falls_back_and_skips_where_a_single_answer_does() {
    let d = tmpdir("conversation-fallback");
    let blocker = write(&d, "not-a-dir", b"x"); // a file where the cache directory should be
    let (t, err) = tiny_turn(&d, &blocker.join("cache"), &[]);
    assert!(
        err.contains("running the filter pass on the full model"),
        "{err}"
    );
    assert_eq!(t["filter_tokens_decoded"], t["prompt_tokens"]);
    assert!(t["filter_skipped"].is_null());
    let n = t["prompt_tokens"].as_u64().unwrap();
    let selected = t["selected_tokens"].as_u64().unwrap();
    assert!((64..n).contains(&selected), "{selected} of {n}");
    let (t, _) = tiny_turn(&d, &d.join("cache"), &["--gem-min-tokens", "100000"]);
    assert!(
        t["filter_skipped"]
            .as_str()
            .unwrap()
            .contains("fewer than --gem-min-tokens 100000"),
        "{t}"
    );
    assert_eq!(t["filter_tokens_decoded"], 0);
    assert_eq!(t["selected_tokens"], t["prompt_tokens"]);
    assert_eq!(t["timings"]["filter_pass_s"], 0.0);
}

/// One `-cnv` run of a single question with `--prompt-cache`; returns its turn records.
fn cached_turns(
    dir: &std::path::Path,
    doc: &std::path::Path,
    cache: &std::path::Path,
    q: &str,
) -> (Vec<serde_json::Value>, String) {
    let o = cnv(dir, doc, q, "12")
        .arg("--json")
        .args(["--prompt-cache", cache.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    let turns = json_lines(&o);
    (turns, err)
}

#[test]
fn a_saved_document_state_answers_in_a_second_process_without_a_filter_pass() {
    let d = tmpdir("conversation-cache");
    let doc = two_fact_doc(&d);
    let cache = d.join("doc.gfstate");
    let (t, err) = cached_turns(&d, &doc, &cache, PASSKEY);
    assert!(err.contains("saved the document's filter state"), "{err}");
    assert_eq!(t[0]["filter_tokens_decoded"], t[0]["prompt_tokens"]);
    // A second process: the document is not filtered again.
    let (t, err) = cached_turns(
        &d,
        &doc,
        &cache,
        "Who founded the museum? Answer with the name.",
    );
    assert!(err.contains("loaded the document's filter state"), "{err}");
    let decoded = t[0]["filter_tokens_decoded"].as_u64().unwrap();
    let suffix =
        t[0]["prompt_tokens"].as_u64().unwrap() - t[0]["context_range"][1].as_u64().unwrap();
    assert_eq!(
        decoded, suffix,
        "only what follows the document went through the filter layers"
    );
    assert!(
        t[0]["answer"].as_str().unwrap().contains("Whitfield"),
        "{}",
        t[0]["answer"]
    );
    // Another document's state is refused and rebuilt, never used.
    let other = write(
        &d,
        "other.txt",
        haystack(6000, "The boat is blue.", 0.5).as_bytes(),
    );
    let (t, err) = cached_turns(&d, &other, &cache, "What colour is the boat?");
    assert!(
        err.contains("belongs to another document") && err.contains("rebuilding"),
        "{err}"
    );
    assert_eq!(t[0]["filter_tokens_decoded"], t[0]["prompt_tokens"]);
    // A damaged KV file is refused and rebuilt.
    let kv = d.join("doc.gfstate.kv");
    let mut bytes = std::fs::read(&kv).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&kv, bytes).unwrap();
    let (t, err) = cached_turns(&d, &other, &cache, "What colour is the boat?");
    assert!(
        err.contains("damaged") && err.contains("rebuilding"),
        "{err}"
    );
    assert_eq!(t[0]["filter_tokens_decoded"], t[0]["prompt_tokens"]);
}

#[test]
fn ctrl_c_stops_the_answer_and_the_conversation_goes_on() {
    use std::io::Read;
    let d = tmpdir("conversation-sigint");
    let doc = two_fact_doc(&d);
    let mut child = cnv(
        &d,
        &doc,
        "Write a long story about the vault and its passkey.",
        "400",
    )
    .arg("--ignore-eos")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The first streamed byte means turn 1 is generating (400 tokens, EOS ignored): Ctrl-C now.
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    out.read_exact(&mut first).unwrap();
    let kill = std::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Who founded the museum? Answer with the name.\n")
        .unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(
        o.status.success(),
        "the session went on after Ctrl-C: {err}"
    );
    assert!(err.contains("turn 1 (stopped by Ctrl-C)"), "{err}");
    assert!(err.contains("turn 2:"), "{err}");
    assert!(rest.contains("Whitfield"), "turn 2 answered: {rest}");
}

/// `bench --turns`: GemFilter's later turns decode only what follows the document (the earlier
/// question, its answer, the new question) through the filter layers, while standard llama.cpp
/// keeps its whole cache and prefills only the new question; each length is the whole
/// conversation. SmolLM2 keeps it quick on two cores.
#[test]
fn bench_turns_decode_only_what_follows_the_document() {
    let d = tmpdir("bench-turns");
    let o = cached(&d)
        .args(["bench", "-m", smollm2().to_str().unwrap()])
        .args([
            "--lengths",
            "1500",
            "--turns",
            "2",
            "--n-decode",
            "6",
            "-t",
            "2",
        ])
        .args(["--gem-topk", "256", "--json"])
        .output()
        .unwrap();
    let v = json(&o);
    let c = &v["conversations"][0];
    let doc = c["document_tokens"].as_u64().unwrap();
    let turns = c["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    let (t1, t2) = (&turns[0], &turns[1]);
    let n1 = t1["prompt_tokens"].as_u64().unwrap();
    let n2 = t2["prompt_tokens"].as_u64().unwrap();
    // Turn 1 filters everything; turn 2 only the tail after the document.
    // Each turn is a record each way (docs/json.md), GemFilter's under "gemfilter".
    let (g1, g2) = (&t1["gemfilter"], &t2["gemfilter"]);
    assert_eq!(g1["filter_tokens_decoded"].as_u64(), Some(n1));
    assert_eq!(g2["filter_tokens_decoded"].as_u64(), Some(n2 - doc));
    for (t, g) in [(t1, g1), (t2, g2)] {
        assert_eq!(g["prompt_tokens"], t["prompt_tokens"], "{t}");
        assert_eq!(t["standard"]["prompt_tokens"], t["prompt_tokens"], "{t}");
        assert_eq!(
            (&g["kind"], &t["standard"]["kind"]),
            (&json!("bench"), &json!("bench"))
        );
        assert_eq!(g["schema_version"], json!(1));
    }
    let question = n1 - doc;
    assert_eq!(
        n2,
        n1 + 6 + question,
        "turn 2 = turn 1 + answer + a question"
    );
    assert_eq!(t1["std_tokens_prefilled"].as_u64(), Some(n1));
    assert_eq!(t2["std_tokens_prefilled"].as_u64(), Some(question));
    // The whole conversation is the length asked for.
    assert_eq!(n2 + 6, 1500);
    for t in turns {
        let g = &t["gemfilter"];
        assert!(g["selected_tokens"].as_u64().unwrap() >= 256);
        assert!(g["selected_tokens"].as_u64().unwrap() < n1);
        assert!(g["timings"]["first_token_s"].as_f64().unwrap() > 0.0);
        assert!(t["standard"]["timings"]["first_token_s"].as_f64().unwrap() > 0.0);
    }
}
