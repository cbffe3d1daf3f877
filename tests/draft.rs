//! Draft selection (`--gem-draft`): Qwen2.5-Coder-0.5B selects for its 1.5B sibling on the CPU;
//! a draft with another tokenizer is refused; original positions answer too.

use std::path::Path;
use std::process::Output;

use crate::util::*;

const QUESTION: &str = "What is the secret passkey for the vault? Answer with the number.";

/// The needle question about a ~2.9K-token document, answered by `target` with `extra` flags.
fn ask(dir: &Path, target: &Path, extra: &[&str]) -> Output {
    let doc = write(
        dir,
        "doc.txt",
        haystack(9000, "The secret passkey for the vault is 48213.", 0.4).as_bytes(),
    );
    cached(dir)
        .args(["-m", target.to_str().unwrap(), "-f", doc.to_str().unwrap()])
        .args(["-p", QUESTION, "-n", "12", "--temp", "0", "-t", "2"])
        .args(["--gem-calibrate", "off"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn answered(rec: &serde_json::Value) {
    assert!(
        rec["answer"].as_str().unwrap().contains("48213"),
        "answer: {}",
        rec["answer"]
    );
}

#[test]
fn a_05b_draft_selects_the_needle_and_the_15b_answers_it() {
    let d = tmpdir("draft-pair");
    let draft = qwen05();
    let o = ask(
        &d,
        &qwen15(),
        &[
            "--json",
            "--gem-show",
            "--gem-draft",
            draft.to_str().unwrap(),
            "--gem-draft-layer",
            "13",
            "--gem-scoring",
            "window-softmax:32+pool15",
            "--gem-topk",
            "256",
        ],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("48213"),
        "the draft did not select the needle: {err}"
    );
    let rec = json(&o);
    answered(&rec);
    // The record names the draft and its layer; the filter pass ran on the draft's 14-layer
    // prefix (layer 13 is the last it computed), and both loads were timed.
    let name = rec["draft"]["model"].as_str().unwrap();
    assert!(name.ends_with("0.5b-instruct-q4_k_m.gguf"), "{name}");
    assert_eq!(rec["draft"]["layer"], 13);
    assert_eq!(rec["layer"], 13);
    assert_eq!(rec["filter_max_layer"], 13);
    assert!(rec["draft"]["load_s"].as_f64().unwrap() > 0.0);
    assert!(rec["target_load_s"].as_f64().unwrap() > 0.0);
    assert_eq!(
        rec["selected_tokens"], 256,
        "k counts the protected tokens too"
    );
    assert_eq!(rec["positions"], "compact");
}

#[test]
fn a_draft_with_another_tokenizer_is_refused() {
    let d = tmpdir("draft-mismatch");
    let draft = smollm2();
    let o = ask(
        &d,
        &qwen05(),
        &[
            "--gem-draft",
            draft.to_str().unwrap(),
            "--gem-draft-layer",
            "18",
        ],
    );
    assert_one_error(&o, "tokenizer differs");
    assert!(stdout(&o).is_empty(), "no answer may be printed");
}

#[test]
fn draft_flags_are_checked() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    let o = run(&["-m", m, "-p", "hi", "--gem-draft-layer", "3"]);
    assert_one_error(&o, "--gem-draft-layer needs --gem-draft");
    let o = run(&["-m", m, "-p", "hi", "--gem-draft", m, "--gem-layer", "3"]);
    assert_one_error(&o, "--gem-draft-layer");
    let o = run(&["-m", m, "-p", "hi", "--gem-draft", "/nonexistent.gguf"]);
    assert!(!o.status.success());
}

#[test]
fn original_positions_answer_and_are_recorded() {
    let d = tmpdir("positions-original");
    let o = ask(
        &d,
        &qwen05(),
        &[
            "--json",
            "--gem-layer",
            "13",
            "--gem-positions",
            "original",
            "--gem-scoring",
            "window-softmax:32+pool15",
            "--gem-topk",
            "256",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = json(&o);
    assert_eq!(rec["positions"], "original");
    answered(&rec);
    assert!(rec["draft"].is_null());
}
