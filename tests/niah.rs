//! `gemfilter niah` and `gemfilter calibrate`: pure parts (scorers, the layer recommendation,
//! preset merging) on hand examples, and small runs on the real SmolLM2-135M (CPU, prompts of
//! 600-1500 tokens).

use gemfilter::eval::calibrate::merge;
use gemfilter::eval::curves::{
    choose, choose_cheapest, curves_by_length, lowest_within, worst_over_lengths, Choice,
    CurveRecord, LayerRecall, COST_TOLERANCE,
};
use gemfilter::eval::niah::grid::{Style, Variant};
use gemfilter::eval::niah::score::{exact, rouge1, scored_part};
use gemfilter::presets::{self, Entry, PresetFile};
use gemfilter::prompt::Protect;
use gemfilter::scoring::ScoringSpec;

use crate::util::*;

#[test]
fn rouge1_is_unigram_f_measure() {
    // 2 of 6 reference words matched, both candidate words correct: P = 1, R = 1/3, F = 0.5.
    assert!((rouge1("The cat sat on the mat.", "the CAT") - 0.5).abs() < 1e-12);
    // Counts are clipped: "the the the" matches "the" twice at most.
    let f = rouge1("the cat the", "the the the");
    assert!(
        (f - 2.0 * (2.0 / 3.0) * (2.0 / 3.0) / (4.0 / 3.0)).abs() < 1e-12,
        "{f}"
    );
    assert_eq!(rouge1("a b", ""), 0.0);
    assert_eq!(rouge1("a b", "c d"), 0.0);
    assert!((rouge1("eat a sandwich", "Eat a sandwich!") - 1.0).abs() < 1e-12);
}

#[test]
fn exact_scorer_and_scored_part() {
    assert_eq!(exact(&["48213"], "It is 48213."), 1.0);
    assert_eq!(exact(&["Dolores Park"], "dolores park, sunny"), 1.0);
    assert_eq!(exact(&["7391", "teal"], "Teal, I think"), 0.5);
    assert_eq!(exact(&["7391"], "7 3 9 1"), 0.0);
    assert_eq!(scored_part("\n\n  48213.\n\nQuestion: what else"), "48213.");
    assert_eq!(scored_part(""), "");
}

fn spec(s: &str) -> ScoringSpec {
    s.parse().unwrap()
}

fn curve(points: &[(usize, f64)]) -> Vec<(usize, f64)> {
    points.to_vec()
}

#[test]
fn calibrate_recommends_the_lowest_layer_within_001_of_the_best() {
    let c = curve(&[(3, 0.50), (5, 0.991), (9, 1.0), (12, 0.995), (20, 1.0)]);
    assert_eq!(lowest_within(&c, 0.01), Some((5, 0.991)));
    let c = curve(&[(3, 0.50), (5, 0.989), (9, 1.0)]);
    assert_eq!(
        lowest_within(&c, 0.01),
        Some((9, 1.0)),
        "0.989 is more than 0.01 below"
    );
    assert_eq!(lowest_within(&[], 0.01), None);
    // The scoring listed first (the reference) wins when it comes within the tolerance ...
    let curves = vec![
        (spec("reference"), curve(&[(4, 0.2), (13, 0.995)])),
        (spec("head-softmax"), curve(&[(4, 1.0), (13, 1.0)])),
    ];
    assert_eq!(
        choose(&curves, 0.01),
        Some(Choice {
            scoring: spec("reference"),
            layer: 13,
            recall: 0.995,
            best: 1.0
        })
    );
    // ... and loses when another is better by more.
    let curves = vec![
        (spec("reference"), curve(&[(4, 0.2), (13, 0.6)])),
        (
            spec("window-softmax:32"),
            curve(&[(4, 0.7), (11, 0.95), (13, 0.96)]),
        ),
    ];
    let ch = choose(&curves, 0.01).unwrap();
    assert_eq!(
        (ch.scoring.to_string().as_str(), ch.layer),
        ("window-softmax:32", 11)
    );
    // Among the others, the lowest qualifying layer wins whatever the scoring's place.
    let curves = vec![
        (spec("reference"), curve(&[(7, 0.1), (21, 0.7)])),
        (spec("head-softmax"), curve(&[(7, 0.5), (18, 1.0)])),
        (spec("window-softmax:16"), curve(&[(7, 0.995), (18, 1.0)])),
    ];
    let ch = choose(&curves, 0.01).unwrap();
    assert_eq!(
        (ch.scoring.to_string().as_str(), ch.layer, ch.recall),
        ("window-softmax:16", 7, 0.995)
    );
}

fn record(length: usize, points: &[(usize, f64)]) -> CurveRecord {
    CurveRecord {
        key: format!("{length}"),
        model: "m".into(),
        length,
        depth: 50,
        needle: "n".into(),
        variant: Variant::Single,
        style: Style::Chat,
        k: 256,
        protect: Protect::All,
        prompt_tokens: length,
        filter_pass_s: 0.0,
        points: points
            .iter()
            .map(|&(layer, recall)| LayerRecall {
                layer,
                scoring: spec("window-softmax:32"),
                recall,
                best_rank: 0,
            })
            .collect(),
    }
}

#[test]
fn calibration_chooses_on_each_layers_worst_length() {
    // Layer 9 is perfect at 8K and lost at 16K; layer 13 holds at both: the worst-length curve
    // makes 13 the choice although 9 is cheaper and has the best mean over all cells.
    let recs = vec![
        record(8192, &[(9, 1.0), (13, 0.97)]),
        record(8192, &[(9, 1.0), (13, 0.99)]),
        record(16384, &[(9, 0.3), (13, 1.0)]),
        record(16384, &[(9, 0.5), (13, 0.98)]),
    ];
    let worst = worst_over_lengths(&curves_by_length(&recs));
    assert_eq!(worst.len(), 1);
    let pts = &worst[0].1;
    assert_eq!(pts[0].0, 9);
    assert!((pts[0].1 - 0.4).abs() < 1e-12, "{pts:?}");
    assert_eq!(pts[1].0, 13);
    assert!((pts[1].1 - 0.98).abs() < 1e-12, "{pts:?}");
    assert_eq!(choose(&worst, 0.01).map(|c| c.layer), Some(13));
    assert!(worst_over_lengths(&curves_by_length(&[])).is_empty());
}

#[test]
fn calibrated_preset_replaces_the_earlier_entry_for_the_same_model() {
    let mut file = presets::parse(
        "[[model]]\nlabel='old'\narchitecture='llama'\nblock_count=30\nname='SmolLM2'\nfilter_layer=3\n\n\
         [[model]]\nlabel='other'\narchitecture='qwen2'\nfilter_layer=9\n",
        "test",
    )
    .unwrap();
    let e = Entry {
        label: "new".into(),
        architecture: Some("llama".into()),
        block_count: Some(30),
        name: Some("SmolLM2".into()),
        filter_layer: 21,
        ..Default::default()
    };
    merge(&mut file, e.clone());
    assert_eq!(file.models.len(), 2);
    assert_eq!(file.models[0], e);
    merge(
        &mut file,
        Entry {
            block_count: Some(24),
            ..e
        },
    );
    assert_eq!(
        file.models.len(),
        3,
        "a different model is added, not replaced"
    );
    let text = toml::to_string(&file).unwrap();
    let back: PresetFile = presets::parse(&text, "round trip").unwrap();
    assert_eq!(back.models, file.models);
}

#[test]
fn niah_grid_writes_jsonl_summary_heatmaps_and_resumes() {
    let d = tmpdir("niah-grid");
    let m = smollm2();
    let out = d.join("out");
    let args = [
        "niah",
        "-m",
        m.to_str().unwrap(),
        "--lengths",
        "600",
        "--depths",
        "0,100",
        "--needles",
        "vault-passkey",
        "--style",
        "primed",
        "--gem-topk",
        "128",
        "--gem-layer",
        "21",
        "-n",
        "10",
        "-t",
        "2",
        "-o",
        out.to_str().unwrap(),
    ];
    let o = cached(&d).args(args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = lines(&out.join("cells.jsonl"));
    assert_eq!(recs.len(), 4, "2 depths x (full, gem)");
    for r in &recs {
        let n = r["prompt_tokens"].as_u64().unwrap();
        assert!((540..=600).contains(&n), "prompt has {n} tokens");
        let nt = &r["needle_tokens"][0];
        let (a, b) = (nt[0].as_u64().unwrap(), nt[1].as_u64().unwrap());
        assert!(b > a && b - a < 20, "needle tokens {a}..{b}");
        assert_eq!(r["expected"][0], "48213");
        let (rouge, ex) = (
            r["score_rouge"].as_f64().unwrap(),
            r["score_exact"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&rouge) && (ex == 0.0 || ex == 1.0));
        if r["method"] == "gem" {
            assert_eq!(r["selected_tokens"], 128);
            assert_eq!(r["layer"], 21);
            let rec = r["recall"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&rec));
        } else {
            assert_eq!(r["method"], "full");
            assert!(r["recall"].is_null());
            assert_eq!(r["selected_tokens"], r["prompt_tokens"]);
        }
    }
    // The needle at depth 0 sits at the start of the context, at 100% at its end.
    let d0 = recs.iter().find(|r| r["depth"] == 0).unwrap();
    let d100 = recs.iter().find(|r| r["depth"] == 100).unwrap();
    assert!(d0["needle_tokens"][0][0].as_u64().unwrap() <= 2);
    assert!(
        d100["needle_tokens"][0][1].as_u64().unwrap() + 30
            > d100["prompt_tokens"].as_u64().unwrap()
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("| 600 | 2 |"), "{summary}");
    for stem in [
        "heatmap-full-exact",
        "heatmap-gem-exact",
        "heatmap-recall",
        "heatmap-gem-rouge",
    ] {
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png");
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{stem}.svg");
    }
    // A rerun finds every cell done: no model work, same file.
    let t0 = std::time::Instant::now();
    let o = cached(&d).args(args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("4 of 4 cell runs already in"),
        "{}",
        stderr(&o)
    );
    assert_eq!(lines(&out.join("cells.jsonl")), recs);
    assert!(t0.elapsed().as_secs() < 5, "rerun did model work");
    // Adding a depth runs only the new cell's two methods.
    let mut more = args.to_vec();
    more[6] = "0,50,100";
    let o = cached(&d).args(&more).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("4 of 6 cell runs already in"),
        "{}",
        stderr(&o)
    );
    assert_eq!(lines(&out.join("cells.jsonl")).len(), 6);
}

#[test]
fn layers_mode_finds_the_needle_at_a_known_good_layer() {
    let d = tmpdir("niah-layers");
    let m = smollm2();
    let out = d.join("out");
    // One needle cell, primed; each call adds its --layers/--scorings (and --pools).
    let niah = |extra: &[&str]| {
        gemfilter()
            .args([
                "niah",
                "-m",
                m.to_str().unwrap(),
                "--lengths",
                "1500",
                "--depths",
                "50",
            ])
            .args(["--needles", "vault-passkey", "--style", "primed"])
            .args(extra)
            .args(["--gem-topk", "256", "-t", "2", "-o", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = niah(&[
        "--layers",
        "0-29",
        "--scorings",
        "reference,head-softmax",
        "--pools",
        "5,15",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("layers.json")).unwrap()).unwrap();
    let curves = j["curves"].as_array().unwrap();
    let names: Vec<&str> = curves
        .iter()
        .map(|c| c["scoring"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "reference",
            "reference+pool15",
            "head-softmax",
            "head-softmax+pool15"
        ]
    );
    for c in curves {
        assert_eq!(c["points"].as_array().unwrap().len(), 30);
    }
    // Measured: at ~1.5K tokens (k = 256) layers 21-23 select all of the passkey sentence with
    // either scoring, while early layers do not.
    let at = |name: &str, layer: usize| {
        let c = curves.iter().find(|c| c["scoring"] == name).unwrap();
        c["points"][layer]["mean_recall"].as_f64().unwrap()
    };
    assert!(
        at("head-softmax", 21) >= 0.9,
        "head-softmax recall at 21: {}",
        at("head-softmax", 21)
    );
    assert!(
        at("reference", 22) >= 0.9,
        "reference recall at 22: {}",
        at("reference", 22)
    );
    assert!(
        at("reference", 0) < 0.5,
        "layer 0 should not find the needle"
    );
    assert!(
        j["recommended"]["layer"].as_u64().unwrap() <= 21,
        "{}",
        j["recommended"]
    );
    for f in ["layers.png", "layers.svg", "layers.jsonl", "layers.md"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // A rerun asking for a subset of what was computed does no filter pass.
    let o = niah(&["--layers", "20-22", "--scorings", "head-softmax"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 of 1 cells already in"),
        "{}",
        stderr(&o)
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("layers.json")).unwrap()).unwrap();
    let c = j["curves"].as_array().unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["points"].as_array().unwrap().len(), 3);
}

#[test]
fn calibrate_writes_a_preset_that_resolves() {
    let d = tmpdir("calibrate");
    let m = smollm2();
    let presets_file = d.join("presets.toml");
    let o = gemfilter()
        .args([
            "calibrate",
            "-m",
            m.to_str().unwrap(),
            "--lengths",
            "900",
            "--depths",
            "50",
        ])
        .args([
            "--scorings",
            "reference,head-softmax",
            "--gem-topk",
            "128",
            "-t",
            "2",
            "--write",
        ])
        .env("GEMFILTER_PRESETS", &presets_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layer = out["recommended"]["layer"].as_u64().unwrap() as usize;
    assert!(stderr(&o).contains("recommended: "), "{}", stderr(&o));
    let text = std::fs::read_to_string(&presets_file).unwrap();
    let file = presets::parse(&text, "written").unwrap();
    assert_eq!(file.models.len(), 1);
    let e = &file.models[0];
    assert_eq!(
        (e.filter_layer, e.top_k, e.block_count),
        (layer, Some(128), Some(30))
    );
    let meta = gemfilter::gguf_info::read(&m).unwrap();
    let builtin = presets::parse(include_str!("../models.toml"), "builtin").unwrap();
    let p = presets::resolve(&meta, Some(&file), &builtin);
    assert_eq!(p.layer, layer);
    assert!(p.label.unwrap().contains("calibrated"));
    // The recommendation is the rule (the cheapest within the tolerance) on the printed curves.
    let curves: Vec<(ScoringSpec, Vec<(usize, f64)>)> = out["curves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let pts = c["points"].as_array().unwrap();
            let pts = pts.iter().map(|p| {
                (
                    p["layer"].as_u64().unwrap() as usize,
                    p["mean_recall"].as_f64().unwrap(),
                )
            });
            (spec(c["scoring"].as_str().unwrap()), pts.collect())
        })
        .collect();
    assert_eq!(
        choose_cheapest(&curves, 30, COST_TOLERANCE).unwrap().layer,
        layer
    );
}

#[test]
fn bad_niah_input_is_one_error_line() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    assert_one_error(&run(&["niah", "-m", m, "--depths", "120"]), "out of range");
    assert_one_error(
        &run(&["niah", "-m", m, "--needles", "nope"]),
        "unknown needle 'nope'",
    );
    assert_one_error(
        &run(&["niah", "-m", m, "--lengths", "9000"]),
        "does not fit the model's training context",
    );
    assert_one_error(
        &run(&["niah", "-m", m, "--lengths", "2k", "--layers", "40"]),
        "out of range",
    );
    assert_one_error(
        &run(&["niah", "-m", m, "--layers", "0-3", "--pools", "4"]),
        "must be odd",
    );
    assert_one_error(
        &run(&["calibrate", "-m", m, "--gem-topk", "0"]),
        "at least 1",
    );
    assert_one_error(
        &run(&[
            "niah",
            "-m",
            m,
            "--haystack",
            "/nonexistent/dir",
            "--lengths",
            "600",
            "--depths",
            "0",
        ]),
        "haystack",
    );
}
