//! One `--json` record everywhere (docs/json.md): a single answer, a conversation turn, a server
//! response's `gem` field and `bench --json`'s measurements validate against the same schema,
//! field for field and type for type; the server's `timings` are llama-server's, field for
//! field. SmolLM2 on a ~2K-token document keeps it quick on two cores.

use std::process::Stdio;

use serde_json::{json, Value};

use crate::server::{filtered, llama_server, Server};
use crate::util::*;

/// A JSON type, as docs/json.md names them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Num,
    Str,
    Bool,
    Null,
    Arr,
    Obj,
}

fn ty(v: &Value) -> Ty {
    match v {
        Value::Number(_) => Ty::Num,
        Value::String(_) => Ty::Str,
        Value::Bool(_) => Ty::Bool,
        Value::Null => Ty::Null,
        Value::Array(_) => Ty::Arr,
        Value::Object(_) => Ty::Obj,
    }
}

use Ty::{Arr, Bool, Null, Num, Obj, Str};

/// The record's fields and the types each may take (docs/json.md's table).
const RECORD: &[(&str, &[Ty])] = &[
    ("schema_version", &[Num]),
    ("kind", &[Str]),
    ("turn", &[Num, Null]),
    ("question", &[Str, Null]),
    ("answer", &[Str]),
    ("model", &[Str]),
    ("architecture", &[Str]),
    ("gem", &[Bool]),
    ("layer", &[Num, Null]),
    ("k", &[Num, Null]),
    ("scoring", &[Str, Null]),
    ("protect", &[Str, Null]),
    ("positions", &[Str, Null]),
    ("prompt_tokens", &[Num]),
    ("selected_tokens", &[Num]),
    ("protected_tokens", &[Num]),
    ("context_range", &[Arr]),
    ("selected_ranges", &[Arr]),
    ("filter_skipped", &[Str, Null]),
    ("filter_tokens_decoded", &[Num]),
    ("filter_max_layer", &[Num, Null]),
    ("generated_tokens", &[Num]),
    ("stop_reason", &[Str]),
    ("interrupted", &[Bool]),
    ("timings", &[Obj]),
    ("peak_device_mem_bytes", &[Num, Null]),
    ("draft", &[Obj, Null]),
    ("target_load_s", &[Num]),
];

const TIMINGS: &[(&str, &[Ty])] = &[
    ("load_s", &[Num]),
    ("filter_pass_s", &[Num]),
    ("filter_read_s", &[Num]),
    ("selection_s", &[Num]),
    ("rerun_s", &[Num]),
    ("first_token_s", &[Num]),
    ("decode_tok_per_s", &[Num, Null]),
    ("total_s", &[Num]),
];

/// What the server's `gem` field adds to the record.
const SERVED: &[(&str, &[Ty])] = &[
    ("kept_passages", &[Arr]),
    ("document_cached", &[Bool]),
    ("document_from_disk", &[Bool]),
    ("queue_s", &[Num]),
];

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// `v` has exactly the fields of `schema`, each of one of its types.
fn conforms(v: &Value, schema: &[&[(&str, &[Ty])]]) {
    let mut want: Vec<String> = schema
        .iter()
        .flat_map(|s| s.iter().map(|(f, _)| (*f).to_owned()))
        .collect();
    want.sort();
    assert_eq!(keys(v), want, "{v}");
    for (f, tys) in schema.iter().flat_map(|s| s.iter()) {
        assert!(tys.contains(&ty(&v[f])), "{f} is {:?}: {v}", ty(&v[f]));
    }
}

/// A version-1 record of `kind` with GemFilter's selection in it (`gem` true, filtered), plus
/// `extra` fields.
fn valid(r: &Value, kind: &str, extra: &[(&str, &[Ty])]) {
    conforms(r, &[RECORD, extra]);
    conforms(&r["timings"], &[TIMINGS]);
    assert_eq!(r["schema_version"], 1, "{r}");
    assert_eq!(r["kind"], kind, "{r}");
    let range = r["context_range"].as_array().unwrap();
    assert!(range.len() == 2 && range.iter().all(Value::is_u64), "{r}");
    for run in r["selected_ranges"].as_array().unwrap() {
        let run = run.as_array().unwrap();
        assert!(run.len() == 2 && run[0].as_u64() <= run[1].as_u64(), "{r}");
    }
    assert!(r["timings"]["first_token_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["generated_tokens"].as_u64().unwrap() > 0, "{r}");
}

/// The same field for the record of each source, side by side.
fn same_settings(records: &[(&str, &Value)]) {
    let (_, first) = records[0];
    for (what, r) in &records[1..] {
        for f in [
            "model",
            "architecture",
            "layer",
            "k",
            "scoring",
            "positions",
        ] {
            assert_eq!(r[f], first[f], "{f} of {what}: {r}");
        }
    }
}

const QUESTION: &str = "What is the secret passkey for the vault?";

#[test]
fn cli_turn_server_and_bench_write_the_same_record() {
    let d = tmpdir("record");
    let m = smollm2();
    let m = m.to_str().unwrap();
    let text = haystack(8000, "The secret passkey for the vault is 48213.", 0.5);
    let doc = write(&d, "doc.txt", text.as_bytes());
    let ask = |extra: &[&str]| {
        let mut c = cached(&d);
        c.args(["-m", m, "-f", doc.to_str().unwrap(), "-p", QUESTION])
            .args(["-n", "8", "--temp", "0", "-t", "2", "--gem-topk", "256"])
            .args(["--json"])
            .args(extra)
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let o = ask(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = json(&o);
    valid(&run, "run", &[]);
    assert_eq!(filtered(&run), true, "{run}");

    let o = ask(&["-cnv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let turns = json_lines(&o);
    assert_eq!(turns.len(), 1, "one question, one turn");
    let turn = &turns[0];
    valid(turn, "turn", &[]);
    assert_eq!(turn["turn"], 1);

    let s = Server::start(&["-c", "4096", "--gem-topk", "256"]);
    let chat = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": text}, {"type": "text", "text": QUESTION}]}],
        "temperature": 0, "max_tokens": 8});
    let (code, r) = s.post("/v1/chat/completions", &chat);
    assert_eq!(code, 200, "{r}");
    let served = &r["gem"];
    valid(served, "request", SERVED);
    assert_eq!(filtered(served), true, "{served}");
    assert_eq!(served["turn"], Value::Null);
    assert_eq!(served["question"], QUESTION);
    assert_eq!(
        served["answer"], r["choices"][0]["message"]["content"],
        "the record's answer is the response's"
    );
    assert_eq!(served["selected_tokens"], r["timings"]["prompt_n"]);
    assert_eq!(
        served["kept_passages"].as_array().unwrap().len(),
        served["selected_ranges"].as_array().unwrap().len()
    );
    // The same prompt answered whole: the same record, GemFilter off.
    let mut off = chat.clone();
    off["gem"] = json!({"off": true});
    let (code, whole) = s.post("/v1/chat/completions", &off);
    assert_eq!(code, 200, "{whole}");
    conforms(&whole["gem"], &[RECORD, SERVED]);
    assert_eq!(whole["gem"]["gem"], false);
    assert_eq!(
        whole["gem"]["selected_tokens"],
        whole["gem"]["prompt_tokens"]
    );
    drop(s);

    let o = cached(&d)
        .args(["bench", "-m", m, "--lengths", "1500", "--n-decode", "4"])
        .args(["-t", "2", "--gem-topk", "256", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let b = json(&o);
    assert_eq!(b["schema_version"], 1, "{b}");
    let at = &b["results"][0];
    let (gem, standard) = (&at["gemfilter"], &at["standard"]);
    valid(gem, "bench", &[]);
    valid(standard, "bench", &[]);
    assert_eq!(filtered(gem), true, "{gem}");
    assert_eq!(standard["gem"], false, "{standard}");
    assert_eq!(gem["prompt_tokens"], 1500);
    assert_eq!(gem["selected_tokens"], 256);
    let ratio = gem["timings"]["first_token_s"].as_f64().unwrap()
        / standard["timings"]["first_token_s"].as_f64().unwrap();
    assert!((at["ratio_first_token"].as_f64().unwrap() - ratio).abs() < 1e-9);

    // bench --turns: a record each way per turn.
    let o = cached(&d)
        .args(["bench", "-m", m, "--lengths", "1500", "--turns", "2"])
        .args(["--n-decode", "4", "-t", "2", "--gem-topk", "256", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let b = json(&o);
    assert_eq!(b["schema_version"], 1, "{b}");
    let turns = b["conversations"][0]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{b}");
    for (i, t) in turns.iter().enumerate() {
        valid(&t["gemfilter"], "bench", &[]);
        conforms(&t["standard"], &[RECORD]);
        assert_eq!(t["gemfilter"]["turn"], i + 1, "{t}");
        assert_eq!(t["standard"]["turn"], i + 1, "{t}");
        assert_eq!(t["standard"]["gem"], false, "{t}");
    }

    same_settings(&[
        ("a run", &run),
        ("a turn", turn),
        ("a server response", served),
        ("bench", gem),
        ("bench --turns", &turns[0]["gemfilter"]),
    ]);
}

/// The server's `timings` are the fields llama-server sends, each a number.
#[test]
fn server_timings_are_llama_servers() {
    let body = json!({"prompt": "The capital of France is", "n_predict": 4, "temperature": 0});
    let timings = |s: &Server| {
        let (code, r) = s.post("/completion", &body);
        assert_eq!(code, 200, "{r}");
        let t = r["timings"].clone();
        assert!(t.as_object().unwrap().values().all(Value::is_number), "{t}");
        t
    };
    let ours = timings(&Server::start(&["-c", "2048"]));
    let theirs = timings(&llama_server(&[]));
    assert_eq!(
        keys(&ours),
        keys(&theirs),
        "ours {ours}\nllama-server {theirs}"
    );
    assert_eq!(ours["predicted_n"], theirs["predicted_n"]);
    assert_eq!(ours["prompt_n"], theirs["prompt_n"]);
}
