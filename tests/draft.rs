//! Draft selection (`--gem-draft`): Qwen2.5-Coder-0.5B selects for its 1.5B sibling on the CPU;
//! a draft with another tokenizer is refused; original positions answer too.

use crate::util::*;

fn needle_doc(d: &std::path::Path) -> std::path::PathBuf {
    write(
        d,
        "doc.txt",
        haystack(9000, "The secret passkey for the vault is 48213.", 0.4).as_bytes(),
    )
}

const QUESTION: &str = "What is the secret passkey for the vault? Answer with the number.";

#[test]
fn a_05b_draft_selects_the_needle_and_the_15b_answers_it() {
    let d = tmpdir("draft-pair");
    let (draft, target, doc) = (qwen05(), qwen15(), needle_doc(&d));
    let o = cached(&d)
        .args(["-m", target.to_str().unwrap(), "-f", doc.to_str().unwrap()])
        .args(["-p", QUESTION, "-n", "12", "--temp", "0", "-t", "2"])
        .args(["--json", "--gem-show", "--gem-calibrate", "off"])
        .args([
            "--gem-draft",
            draft.to_str().unwrap(),
            "--gem-draft-layer",
            "13",
        ])
        .args([
            "--gem-scoring",
            "window-softmax:32+pool15",
            "--gem-topk",
            "256",
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let rec = json(&o);
    assert!(
        err.contains("48213"),
        "the draft did not select the needle: {err}"
    );
    assert!(
        rec["answer"].as_str().unwrap().contains("48213"),
        "answer: {}",
        rec["answer"]
    );
    // The record names the draft and its layer; the filter pass ran on the draft's 14-layer
    // prefix (layer 13 is the last it computed), and both loads were timed.
    assert!(rec["draft"]["model"]
        .as_str()
        .unwrap()
        .ends_with("0.5b-instruct-q4_k_m.gguf"));
    assert_eq!(rec["draft"]["layer"], 13);
    assert_eq!(rec["layer"], 13);
    assert_eq!(rec["filter_max_layer"], 13);
    assert!(rec["draft"]["load_s"].as_f64().unwrap() > 0.0);
    assert!(rec["target_load_s"].as_f64().unwrap() > 0.0);
    assert_eq!(rec["selected_tokens"], 256, "k counts the protected tokens too");
    assert_eq!(rec["positions"], "compact");
}

#[test]
fn a_draft_with_another_tokenizer_is_refused() {
    let d = tmpdir("draft-mismatch");
    let doc = needle_doc(&d);
    let o = cached(&d)
        .args([
            "-m",
            qwen05().to_str().unwrap(),
            "-f",
            doc.to_str().unwrap(),
        ])
        .args(["-p", QUESTION, "-n", "4", "--gem-calibrate", "off"])
        .args([
            "--gem-draft",
            smollm2().to_str().unwrap(),
            "--gem-draft-layer",
            "18",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_one_error(&o, "tokenizer differs");
    assert!(stdout(&o).is_empty(), "no answer may be printed");
}

#[test]
fn draft_flags_are_checked() {
    let m = qwen05();
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "hi",
        "--gem-draft-layer",
        "3",
    ]);
    assert_one_error(&o, "--gem-draft-layer needs --gem-draft");
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "hi",
        "--gem-draft",
        m.to_str().unwrap(),
        "--gem-layer",
        "3",
    ]);
    assert_one_error(&o, "--gem-draft-layer");
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "hi",
        "--gem-draft",
        "/nonexistent.gguf",
    ]);
    assert!(!o.status.success());
}

#[test]
fn original_positions_answer_and_are_recorded() {
    let d = tmpdir("positions-original");
    let doc = needle_doc(&d);
    let o = cached(&d)
        .args([
            "-m",
            qwen05().to_str().unwrap(),
            "-f",
            doc.to_str().unwrap(),
        ])
        .args([
            "-p", QUESTION, "-n", "12", "--temp", "0", "-t", "2", "--json",
        ])
        .args([
            "--gem-calibrate",
            "off",
            "--gem-layer",
            "13",
            "--gem-positions",
            "original",
        ])
        .args([
            "--gem-scoring",
            "window-softmax:32+pool15",
            "--gem-topk",
            "256",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = json(&o);
    assert_eq!(rec["positions"], "original");
    assert!(
        rec["answer"].as_str().unwrap().contains("48213"),
        "answer: {}",
        rec["answer"]
    );
    assert!(rec["draft"].is_null());
}
