//! Selection on models nobody tuned by hand: RULER-style task cells, self-calibration, and the
//! real Qwen2.5-Coder-0.5B answering through its chat template (CPU, prompts of 1-3K tokens).

use crate::util::*;

#[test]
fn niah_tasks_score_ruler_samples_and_measure_recall() {
    let d = tmpdir("tasks");
    let m = smollm2();
    let out = d.join("out");
    let tasks = || {
        cached(&d)
            .args([
                "niah",
                "-m",
                m.to_str().unwrap(),
                "--tasks",
                "niah_single_1,vt",
            ])
            .args(["--lengths", "1200", "--samples", "2", "--depths", "50"])
            .args([
                "--methods",
                "full,gem,reference",
                "--gem-topk",
                "256",
                "-t",
                "2",
            ])
            .args(["-o", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = tasks();
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = lines(&out.join("cells.jsonl"));
    assert_eq!(recs.len(), 12, "2 tasks x 2 samples x 3 methods");
    for r in &recs {
        let task = r["task"].as_str().unwrap();
        assert!(["niah_single_1", "vt"].contains(&task), "{task}");
        let n = r["prompt_tokens"].as_u64().unwrap();
        assert!((900..=1200).contains(&n), "{task}: {n} tokens");
        let expected = r["expected"].as_array().unwrap();
        assert!(!expected.is_empty());
        let score = r["score_exact"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        // RULER's rule: the share of reference answers found in the answer, case-insensitive.
        let answer = r["answer"].as_str().unwrap().to_lowercase();
        let found = expected
            .iter()
            .filter(|e| answer.contains(&e.as_str().unwrap().to_lowercase()))
            .count();
        assert!((score - found as f64 / expected.len() as f64).abs() < 1e-9);
        match r["method"].as_str().unwrap() {
            "full" => assert!(r["recall"].is_null()),
            "gem" => {
                assert_eq!(r["selected_tokens"], 256);
                assert!(r["recall"].as_f64().is_some());
            }
            "reference" => {
                assert_eq!(r["scoring"], "reference");
                assert_eq!(r["layer"], 18, "the reference runs at the preset's layer");
            }
            other => panic!("method {other}"),
        }
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("| 1200 | vt | 2 |"), "{summary}");
    assert!(summary.contains("**average**"), "{summary}");
    // A rerun finds every cell done.
    let again = tasks();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(lines(&out.join("cells.jsonl")).len(), 12);
}

#[test]
fn a_calibrated_model_is_stored_and_never_calibrated_again() {
    let d = tmpdir("selfcal");
    let m = smollm2();
    let presets = d.join("presets.toml");
    // ~3.7K tokens: the default k of 1024 keeps a quarter of them.
    let doc = write(
        &d,
        "doc.txt",
        haystack(16_000, "The secret passkey for the vault is 48213.", 0.5).as_bytes(),
    );
    let ask = |extra: &[&str]| {
        cached(&d)
            .env("GEMFILTER_PRESETS", &presets)
            .args(["-m", m.to_str().unwrap(), "-f", doc.to_str().unwrap()])
            .args([
                "-p",
                "What is the secret passkey for the vault?",
                "-n",
                "16",
            ])
            .args(["--temp", "0", "-t", "2", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = ask(&["--gem-calibrate", "force"]);
    let err = stderr(&first);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("calibrating the filter layer"), "{err}");
    assert!(
        err.contains("calibrated ") && err.contains(" s: layer "),
        "{err}"
    );
    assert!(
        err.contains("the cheapest filter pass within 0.05 of the best recall"),
        "{err}"
    );
    // Stderr is not a terminal here: the progress is plain lines, more than one per probe.
    let progress = err
        .lines()
        .filter(|l| l.starts_with("filter passes "))
        .count();
    assert!(
        progress > 3,
        "{progress} progress lines for 3 probes: {err}"
    );
    let text = std::fs::read_to_string(&presets).unwrap();
    let file = gemfilter::presets::parse(&text, "written").unwrap();
    assert_eq!(file.models.len(), 1);
    let e = &file.models[0];
    assert_eq!(e.block_count, Some(30));
    assert!(e.label.contains("calibrated"));
    // Candidates stop at three quarters of the model's 30 layers.
    assert!(e.filter_layer < 22, "layer {}", e.filter_layer);
    let rec = json(&first);
    assert_eq!(rec["layer"].as_u64().unwrap() as usize, e.filter_layer);
    assert_eq!(
        rec["scoring"].as_str().unwrap(),
        e.scoring.unwrap().to_string()
    );
    // The stored preset wins from now on: no calibration, same layer and scoring; what it
    // selects answers the needle.
    let second = ask(&[]);
    assert!(!stderr(&second).contains("calibrat"), "{}", stderr(&second));
    let rec2 = json(&second);
    assert_eq!(rec2["layer"], rec["layer"]);
    assert_eq!(rec2["scoring"], rec["scoring"]);
    assert!(
        rec2["prompt_tokens"].as_u64().unwrap() > 3000,
        "{}",
        rec2["prompt_tokens"]
    );
    assert!(
        rec2["answer"].as_str().unwrap().contains("48213"),
        "answer: {}",
        rec2["answer"]
    );
    // Off: the uncalibrated fallback, said so.
    let off = ask(&["--gem-calibrate", "off", "--gem-layer", "5"]);
    assert!(off.status.success(), "{}", stderr(&off));
    assert_eq!(json(&off)["layer"], 5);
}

/// Calibration's progress moves with every decoded ubatch of a probe: off a terminal, one plain
/// line each on stderr (a 1.2K-token probe in ubatches of 256: five lines).
#[test]
fn calibration_progress_is_a_line_per_ubatch_off_a_terminal() {
    let d = tmpdir("calibrate-progress");
    let o = cached(&d)
        .args(["calibrate", "-m", smollm2().to_str().unwrap()])
        .args(["--lengths", "1200", "--depths", "50", "--gem-topk", "64"])
        .args(["--scorings", "reference", "-ub", "256", "-t", "2"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // "filter passes 1/1: 1200 tokens, depth 50%, NEEDLE: DONE/N tokens (S s)"
    let done: Vec<(u64, u64)> = err
        .lines()
        .filter_map(|l| l.strip_prefix("filter passes 1/1: 1200 tokens, depth 50%, "))
        .map(|l| {
            let counts = l.split(": ").nth(1).unwrap().split(' ').next().unwrap();
            let (a, n) = counts.split_once('/').unwrap();
            (a.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    let n = done
        .last()
        .unwrap_or_else(|| panic!("no progress lines: {err}"))
        .1;
    let want: Vec<(u64, u64)> = (1..=n.div_ceil(256))
        .map(|i| ((i * 256).min(n), n))
        .collect();
    assert_eq!(done, want, "{err}");
}

#[test]
fn qwen_05b_selects_and_answers_a_needle_through_its_chat_template() {
    let d = tmpdir("qwen05");
    let m = qwen05();
    let doc = write(
        &d,
        "doc.txt",
        haystack(9000, "The secret passkey for the vault is 48213.", 0.4).as_bytes(),
    );
    let o = cached(&d)
        .args(["-m", m.to_str().unwrap(), "-f", doc.to_str().unwrap()])
        .args([
            "-p",
            "What is the secret passkey for the vault? Answer with the number.",
        ])
        .args(["-n", "12", "--temp", "0", "-t", "2", "--json", "--gem-show"])
        .args(["--gem-calibrate", "off", "--gem-layer", "13"])
        .args([
            "--gem-scoring",
            "window-softmax:32+pool15",
            "--gem-topk",
            "256",
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    let rec = json(&o);
    assert_eq!(rec["architecture"], "qwen2");
    let n = rec["prompt_tokens"].as_u64().unwrap();
    assert!(n > 1500, "prompt of {n} tokens");
    assert!(err.contains("48213"), "the needle was not selected: {err}");
    assert!(
        rec["answer"].as_str().unwrap().contains("48213"),
        "answer: {}",
        rec["answer"]
    );
    assert_eq!(rec["filter_max_layer"], 13);
}
