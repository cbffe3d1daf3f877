//! End to end on the real SmolLM2-135M: a ~6K-token haystack with one hidden fact, answered
//! through GemFilter (the preset layer and scoring) and through the full prompt.

use crate::util::*;

const NEEDLE: &str = "The secret passkey for the vault is 48213.";
const QUESTION: &str = "Question: What is the secret passkey for the vault? Answer:";

fn doc(dir: &std::path::Path) -> std::path::PathBuf {
    write(
        dir,
        "haystack.txt",
        haystack(26_000, NEEDLE, 0.5).as_bytes(),
    )
}

/// A greedy, JSON-reporting run of `-p p` over the file `f`, generating `n` tokens.
fn prompt_args<'a>(m: &'a str, f: &'a str, p: &'a str, n: &'a str) -> Vec<&'a str> {
    vec![
        "-m", m, "-f", f, "-p", p, "-n", n, "--temp", "0", "-t", "2", "--json",
    ]
}

/// The needle question, raw (no chat template).
fn base_args<'a>(m: &'a str, f: &'a str) -> Vec<&'a str> {
    let mut a = prompt_args(m, f, QUESTION, "24");
    a.push("-no-cnv");
    a
}

/// The `--json` record's fields, as docs/json.md lists them: one shape for a single answer and
/// a conversation turn.
const RECORD_FIELDS: &[&str] = &[
    "schema_version",
    "kind",
    "turn",
    "question",
    "answer",
    "model",
    "architecture",
    "gem",
    "layer",
    "k",
    "scoring",
    "protect",
    "positions",
    "prompt_tokens",
    "selected_tokens",
    "protected_tokens",
    "context_range",
    "selected_ranges",
    "filter_skipped",
    "filter_tokens_decoded",
    "filter_max_layer",
    "generated_tokens",
    "stop_reason",
    "interrupted",
    "timings",
    "peak_device_mem_bytes",
    "draft",
    "target_load_s",
];

const TIMING_FIELDS: &[&str] = &[
    "load_s",
    "filter_pass_s",
    "filter_read_s",
    "selection_s",
    "rerun_s",
    "first_token_s",
    "decode_tok_per_s",
    "total_s",
];

/// `r` is a version-1 record of `kind` ("run" or "turn") with exactly the documented fields.
pub fn assert_record(r: &serde_json::Value, kind: &str) {
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    let mut want: Vec<String> = RECORD_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    want.sort();
    assert_eq!(keys(r), want, "{r}");
    let mut timings: Vec<String> = TIMING_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    timings.sort();
    assert_eq!(keys(&r["timings"]), timings, "{r}");
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["kind"], kind);
    assert!(r["timings"]["first_token_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["answer"].is_string() && r["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn gemfilter_selects_the_needle_and_answers_from_1024_of_6k_tokens() {
    let d = tmpdir("e2e");
    let (m, f) = (smollm2(), doc(&d));
    let (m, f) = (m.to_str().unwrap(), f.to_str().unwrap());
    let mut args = base_args(m, f);
    args.push("--gem-show");
    let o = cached(&d).args(&args).output().unwrap();
    let r = json(&o);
    assert_record(&r, "run");
    let prompt = r["prompt_tokens"].as_u64().unwrap();
    assert!((5500..7500).contains(&prompt), "prompt has {prompt} tokens");
    assert_eq!(r["gem"], true);
    assert_eq!(r["selected_tokens"], 1024);
    assert_eq!(r["filter_tokens_decoded"].as_u64(), Some(prompt));
    assert_eq!(r["turn"], serde_json::Value::Null);
    assert_eq!(r["question"], QUESTION);
    assert_eq!(
        r["filter_max_layer"], r["layer"],
        "filter pass ran past layer r"
    );
    // The selection (printed by --gem-show) holds the needle ...
    let err = stderr(&o);
    let shown = err
        .split("--- selected")
        .nth(1)
        .expect("--gem-show printed the selection");
    assert!(
        shown.contains("passkey for the vault is 48213"),
        "needle not selected:\n{shown}"
    );
    assert!(shown.contains(" [...] "), "runs are not separated");
    // ... and the answer from those 1024 tokens has it.
    let answer = r["answer"].as_str().unwrap();
    assert!(answer.contains("48213"), "answer: {answer:?}");
    let ranges = r["selected_ranges"].as_array().unwrap();
    let kept: u64 = ranges
        .iter()
        .map(|p| p[1].as_u64().unwrap() - p[0].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(kept, 1024);
}

#[test]
fn gem_off_runs_the_full_prompt_through_the_same_binary() {
    let d = tmpdir("e2e-off");
    let (m, f) = (smollm2(), doc(&d));
    let mut args = base_args(m.to_str().unwrap(), f.to_str().unwrap());
    args.extend(["--gem", "off"]);
    let r = json(&run(&args));
    assert_eq!(r["gem"], false);
    assert_eq!(r["selected_tokens"], r["prompt_tokens"]);
    assert_eq!(r["timings"]["filter_pass_s"], 0.0);
    assert!(r["generated_tokens"].as_u64().unwrap() >= 1);
}

#[test]
fn short_prompt_skips_the_filter_pass_and_says_so() {
    let m = smollm2();
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "Name a colour.",
        "-n",
        "4",
        "--temp",
        "0",
        "--json",
    ]);
    let r = json(&o);
    assert!(r["filter_skipped"]
        .as_str()
        .unwrap()
        .contains("no more than"));
    assert_eq!(r["selected_tokens"], r["prompt_tokens"]);
    assert!(stderr(&o).contains("answering from the whole prompt"));
}

#[test]
fn prompts_below_gem_min_tokens_are_answered_whole() {
    let d = tmpdir("e2e-min");
    let f = write(&d, "doc.txt", haystack(8_000, NEEDLE, 0.5).as_bytes());
    let m = smollm2();
    let mut args = prompt_args(m.to_str().unwrap(), f.to_str().unwrap(), QUESTION, "6");
    args.push("-no-cnv");
    let mut below = args.clone();
    below.extend(["--gem-min-tokens", "100000"]);
    let o = cached(&d).args(&below).output().unwrap();
    let r = json(&o);
    let n = r["prompt_tokens"].as_u64().unwrap();
    assert!(
        n > 1024,
        "the prompt must be long enough to filter otherwise ({n} tokens)"
    );
    assert!(r["filter_skipped"]
        .as_str()
        .unwrap()
        .contains("fewer than --gem-min-tokens 100000"));
    assert_eq!(r["timings"]["filter_pass_s"], 0.0);
    assert_eq!(r["selected_tokens"], r["prompt_tokens"]);
    // Same tokens as the full prompt; and a threshold below the length does filter.
    let mut off = args.clone();
    off.extend(["--gem", "off"]);
    assert_eq!(
        json(&cached(&d).args(&off).output().unwrap())["answer"],
        r["answer"]
    );
    let mut above = args.clone();
    above.extend(["--gem-min-tokens", "1000"]);
    let r = json(&cached(&d).args(&above).output().unwrap());
    assert!(r["filter_skipped"].is_null());
    assert_eq!(r["selected_tokens"], 1024);
}

#[test]
fn filter_pass_reading_keys_from_the_kv_cache_selects_as_the_per_ubatch_capture() {
    // The GPU default (keys read once from layer r's cache on the prefix model), forced on the
    // CPU through the whole CLI: needle kept, same selection up to f16 rounding, same answer.
    let d = tmpdir("e2e-ksrc");
    let f = write(&d, "doc.txt", haystack(9_000, NEEDLE, 0.3).as_bytes());
    let m = smollm2();
    let mut args = base_args(m.to_str().unwrap(), f.to_str().unwrap());
    args.extend(["--gem-topk", "256", "--gem-show"]);
    let expand = |r: &serde_json::Value| -> Vec<u64> {
        r["selected_ranges"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p[0].as_u64().unwrap()..=p[1].as_u64().unwrap())
            .collect()
    };
    let mut runs = Vec::new();
    for src in ["ubatch", "cache"] {
        let mut a = args.clone();
        a.extend(["--gem-k-source", src]);
        let o = cached(&d).args(&a).output().unwrap();
        assert!(stderr(&o).contains("48213"), "{src}: needle not selected");
        let r = json(&o);
        assert!(r["prompt_tokens"].as_u64().unwrap() > 2000);
        assert_eq!(
            r["filter_max_layer"], r["layer"],
            "{src}: prefix model has no higher layer"
        );
        runs.push(r);
    }
    assert!(runs[0]["timings"]["filter_read_s"] == 0.0);
    assert!(runs[1]["timings"]["filter_read_s"].as_f64().unwrap() > 0.0);
    let (a, b) = (expand(&runs[0]), expand(&runs[1]));
    let common = a.iter().filter(|i| b.binary_search(i).is_ok()).count();
    assert!(
        common + 3 >= a.len(),
        "selections differ: {common} of {} in common",
        a.len()
    );
    assert_eq!(runs[0]["answer"], runs[1]["answer"]);
}

#[test]
fn chat_template_keeps_scaffolding_and_question() {
    // Through the chat template with k smaller than the document: every non-document token
    // (template, question) is kept and the rest of the budget is document tokens.
    let d = tmpdir("e2e-chat");
    let (m, f) = (
        smollm2(),
        write(&d, "doc.txt", haystack(6000, NEEDLE, 0.3).as_bytes()),
    );
    let o = cached(&d)
        .args(prompt_args(
            m.to_str().unwrap(),
            f.to_str().unwrap(),
            "What is the passkey?",
            "8",
        ))
        .args(["--gem-topk", "200", "--gem-layer", "10"])
        .output()
        .unwrap();
    let r = json(&o);
    let (start, end) = (
        r["context_range"][0].as_u64().unwrap(),
        r["context_range"][1].as_u64().unwrap(),
    );
    let n = r["prompt_tokens"].as_u64().unwrap();
    let protected = r["protected_tokens"].as_u64().unwrap();
    assert_eq!(
        protected,
        start + (n - end),
        "protected = everything outside the document"
    );
    assert!(
        start > 0 && end < n,
        "template scaffolding around the document"
    );
    assert_eq!(r["selected_tokens"], 200);
    let ranges = r["selected_ranges"].as_array().unwrap();
    assert_eq!(ranges.first().unwrap()[0], 0, "template head kept");
    assert_eq!(
        ranges.last().unwrap()[1].as_u64().unwrap(),
        n - 1,
        "question and assistant header kept"
    );
}

#[test]
fn qwen2_graph_exposes_qk_and_gemfilter_runs_on_it() {
    // No real qwen2 weights can be installed here: a random-weight qwen2 (Q/K/V biases, its own
    // tensor names) proves the capture finds post-RoPE Q/K (and its K cache) and exits at layer r.
    let d = tmpdir("qwen2");
    let model = synth(&d, "tiny-qwen2");
    let f = write(&d, "doc.txt", haystack(3000, NEEDLE, 0.5).as_bytes());
    let mut selections = Vec::new();
    // Prefix model (per-ubatch capture, then K from the KV cache as on a GPU), full model.
    for (prefix, k_source) in [("on", "auto"), ("on", "cache"), ("off", "auto")] {
        let o = cached(&d)
            .args(prompt_args(
                model.to_str().unwrap(),
                f.to_str().unwrap(),
                "q",
                "4",
            ))
            .args(["-no-cnv", "--gem-layer", "2", "--gem-topk", "128"])
            .args(["--gem-prefix", prefix, "--gem-k-source", k_source])
            .output()
            .unwrap();
        let r = json(&o);
        assert_eq!(r["architecture"], "qwen2");
        assert_eq!(r["filter_max_layer"], 2, "prefix {prefix}");
        assert_eq!(r["selected_tokens"], 128);
        assert_eq!(r["generated_tokens"], 4);
        selections.push(r["selected_ranges"].clone());
    }
    assert_eq!(
        selections[0], selections[1],
        "K from the cache selects the same tokens"
    );
}

#[test]
fn gemma3_filters_at_a_global_layer() {
    let g = gemma3();
    let d = tmpdir("gemma");
    let f = write(&d, "doc.txt", haystack(12_000, NEEDLE, 0.5).as_bytes());
    let mut answers = Vec::new();
    // Per-ubatch capture (the CPU default) and K read from the global layer's cache (the GPU
    // default; Gemma-3 keeps global and sliding-window layers in two caches).
    for k_source in ["auto", "cache"] {
        let o = cached(&d)
            .args(prompt_args(
                g.to_str().unwrap(),
                f.to_str().unwrap(),
                QUESTION,
                "12",
            ))
            .args(["--gem-show", "--gem-k-source", k_source])
            .output()
            .unwrap();
        let r = json(&o);
        assert_eq!(r["architecture"], "gemma3");
        assert_eq!(r["layer"], 5);
        assert_eq!(r["filter_max_layer"], 5);
        assert!(
            stderr(&o).contains("48213"),
            "{k_source}: needle not selected"
        );
        assert!(
            r["answer"].as_str().unwrap().contains("48213"),
            "{k_source}: answer: {}",
            r["answer"]
        );
        answers.push(r["answer"].clone());
    }
    assert_eq!(answers[0], answers[1]);
}

#[test]
fn unwritable_prefix_cache_falls_back_to_the_full_model() {
    let d = tmpdir("nocache");
    let model = synth(&d, "tiny-llama");
    let f = write(&d, "doc.txt", haystack(4000, NEEDLE, 0.5).as_bytes());
    let blocker = write(&d, "not-a-dir", b"x"); // a file where the cache directory should be
    let o = gemfilter()
        .args(prompt_args(
            model.to_str().unwrap(),
            f.to_str().unwrap(),
            "q",
            "2",
        ))
        .args(["-no-cnv", "--gem-layer", "2", "--gem-topk", "64"])
        .env("GEMFILTER_CACHE", blocker.join("cache"))
        .output()
        .unwrap();
    let r = json(&o);
    assert_eq!(r["selected_tokens"], 64);
    assert_eq!(r["filter_max_layer"], 2);
    assert!(
        stderr(&o).contains("running the filter pass on the full model"),
        "{}",
        stderr(&o)
    );
}
