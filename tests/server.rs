//! `gemfilter serve` on the real SmolLM2-135M (CPU), driven by real clients: curl and OpenAI's
//! Python package (`tests/server_client.py`, which must also pass against llama.cpp's own
//! llama-server from `make reference`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::*;

/// A server on a free port, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `gemfilter serve` on SmolLM2 with `args`, once it listens.
    pub(crate) fn start(args: &[&str]) -> Server {
        let mut cmd = gemfilter();
        cmd.env("GEMFILTER_CACHE", tmpdir("server-cache"));
        cmd.args([
            "serve",
            "-m",
            smollm2().to_str().unwrap(),
            "--port",
            "0",
            "-t",
            "2",
        ])
        .args(args);
        Self::spawn(&mut cmd, None)
    }

    /// Start `cmd`; its address is read from its "serving … on http://…" line, or is `base`.
    fn spawn(cmd: &mut Command, base: Option<&str>) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let (err, log2) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(at) = line.find("on http://") {
                    let addr = line[at + 3..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(addr.to_owned());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut s = Server {
            child,
            base: base.unwrap_or_default().to_owned(),
            log,
        };
        if base.is_none() {
            s.base = rx
                .recv_timeout(Duration::from_mins(5))
                .unwrap_or_else(|_| panic!("the server did not start: {}", s.log()));
        }
        s
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `curl` a request: (status, body).
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg(format!("{}{path}", self.base));
        for h in headers {
            c.args(["-H", h]);
        }
        if body.is_some() {
            c.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ]);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(b) = body {
            stdin.write_all(b).unwrap();
        }
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (code, text) = self.call("POST", path, Some(body.to_string().as_bytes()), &[]);
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}\nserver: {}", self.log()));
        (code, v)
    }

    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        self.call("GET", path, None, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a response's `gem` record says its document was filtered: GemFilter on and the
/// filter pass not skipped.
pub(crate) fn filtered(gem: &Value) -> Value {
    json!(gem["gem"] == true && gem["filter_skipped"].is_null())
}

/// The `data:` payloads of a server-sent event stream.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

/// A chat question `q` about `doc` (the page's shape: the document and the question as two text
/// parts), greedy; the response, its status asserted 200.
fn ask_about(s: &Server, doc: &str, q: &str, max_tokens: u32) -> Value {
    let (code, r) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": doc}, {"type": "text", "text": q}]}],
            "temperature": 0, "max_tokens": max_tokens}),
    );
    assert_eq!(code, 200, "{r}\n{}", s.log());
    r
}

const FRANCE: &str = "What is the capital of France? Answer in one word.";

/// A few sentences and a question: shorter than --gem-topk, answered whole by both.
const SHORT_DOC: &str =
    "The museum on the hill was founded in 1887 by Eleanor Whitfield. It holds \
    maps, coins and a large collection of clocks. Visitors come every summer to see the clocks.";
const SHORT_Q: &str = "Question: Who founded the museum? Answer:";

#[test]
fn serve_answers_as_the_cli_does_and_streams_over_sse() {
    let d = tmpdir("serve-cli");
    let doc = write(&d, "doc.txt", SHORT_DOC.as_bytes());
    let cli = json(&run(&[
        "-m",
        smollm2().to_str().unwrap(),
        "-no-cnv",
        "-f",
        doc.to_str().unwrap(),
        "-p",
        SHORT_Q,
        "-n",
        "24",
        "--temp",
        "0",
        "-t",
        "2",
        "--json",
    ]));
    let s = Server::start(&["-c", "2048"]);
    let (code, r) = s.post(
        "/completion",
        &json!({"prompt": format!("{SHORT_DOC}\n\n{SHORT_Q}"), "n_predict": 24, "temperature": 0}),
    );
    assert_eq!(code, 200, "{r}");
    assert!(
        cli["answer"].as_str().unwrap().contains("Whitfield"),
        "{cli}"
    );
    assert_eq!(
        r["content"], cli["answer"],
        "greedy: the server answers as the CLI does"
    );
    assert_eq!(r["tokens_evaluated"], cli["prompt_tokens"]);
    assert_eq!(filtered(&r["gem"]), false, "{r}");

    let chat = json!({"messages": [{"role": "user", "content": FRANCE}], "temperature": 0,
        "max_tokens": 16});
    let (code, whole) = s.post("/v1/chat/completions", &chat);
    assert_eq!(code, 200, "{whole}");
    let answer = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("Paris"), "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (code, body) = s.call(
        "POST",
        "/v1/chat/completions",
        Some(streamed.to_string().as_bytes()),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let ev = events(&body);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(chunks.len() > 3, "one chunk per piece: {body}");
    assert_eq!(text, answer, "the stream adds up to the whole answer");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(
        last["timings"]["predicted_n"].as_u64().unwrap() > 0,
        "{last}"
    );
}

/// Chat requests that must get 400, each with what its message names.
fn bad_chats() -> Vec<(Value, &'static str)> {
    let long = "word ".repeat(3000);
    vec![
        (json!({"model": "gpt-4"}), "not served here"),
        (json!({"temperature": "hot"}), "temperature"),
        (
            json!({"messages": [{"role": "user", "content": long}]}),
            "context size of 1024",
        ),
        (json!({"gem": {"top": 3}}), "gem.top"),
        (json!({"gem": {"top_k": 0}}), "gem.top_k"),
        (json!({"n": 2}), "one choice"),
        (json!({"max_tokens": -5}), "max_tokens"),
        (json!({"stream": "yes"}), "stream"),
        (json!({"messages": "hi"}), "messages"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "role",
        ),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"stop": [1, 2]}), "stop"),
        (json!({"top_p": 2}), "top_p"),
        (json!({"seed": "x"}), "seed"),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema",
                "json_schema": {"schema": {"type": "nonsense"}}}}),
            "JSON schema",
        ),
    ]
}

#[test]
fn serve_refuses_bad_requests_in_openais_format_and_keeps_serving() {
    let s = Server::start(&["-c", "1024", "--metrics"]);
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": FRANCE}], "max_tokens": 4});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        s.post("/v1/chat/completions", &b)
    };
    let cases = bad_chats();
    let n_errors = cases.len() + 4;
    for (extra, what) in cases {
        let (code, r) = chat(extra);
        assert_eq!(code, 400, "{r}");
        assert_eq!(r["error"]["type"], "invalid_request_error", "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(what),
            "{what}: {r}"
        );
    }
    let (code, body) = s.call(
        "POST",
        "/v1/chat/completions",
        Some(b"{\"messages\": ["),
        &[],
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    let big = vec![b' '; 3 << 20];
    let (code, body) = s.call("POST", "/v1/completions", Some(&big), &[]);
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("larger than"), "{body}");
    for body in [&b"\xff\xfe"[..], b"[]"] {
        let (code, body) = s.call("POST", "/v1/chat/completions", Some(body), &[]);
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("invalid_request_error"), "{body}");
    }
    let (code, body) = s.get("/v2/nothing");
    assert_eq!(code, 404, "{body}");
    let (code, body) = s.get("/v1/chat/completions");
    assert_eq!(code, 405, "{body}");
    assert!(body.contains("\"error\""), "an error object: {body}");
    for (path, body) in [
        ("/tokenize", json!({"content": 3})),
        ("/detokenize", json!({"tokens": "x"})),
    ] {
        let (code, r) = s.post(path, &body);
        assert_eq!(code, 400, "{path}: {r}");
    }

    // Still serving, and the other endpoints answer.
    let (code, r) = chat(json!({"temperature": 0, "max_tokens": 12}));
    assert_eq!(code, 200, "{r}");
    assert!(
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Paris"),
        "{r}"
    );
    let (_, t) = s.post("/tokenize", &json!({"content": "Hello world"}));
    let ids = t["tokens"].as_array().unwrap().clone();
    assert!(!ids.is_empty(), "{t}");
    let (_, back) = s.post("/detokenize", &json!({"tokens": ids}));
    assert_eq!(back["content"], "Hello world");
    let (code, r) = s.post("/detokenize", &json!({"tokens": [99_999_999]}));
    assert_eq!(code, 400, "{r}");
    let (_, props) = s.get("/props");
    assert!(props.contains("\"total_slots\":1"), "{props}");
    let (_, slots) = s.get("/slots");
    assert!(slots.contains("\"is_processing\":false"), "{slots}");
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("# TYPE llamacpp:prompt_tokens_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("gemfilter:request_errors_total {n_errors}\n")),
        "{metrics}"
    );
    let (code, page) = s.get("/");
    assert_eq!(code, 200);
    assert!(
        page.contains("<title>gemfilter</title>") && !page.contains("https://"),
        "no CDN"
    );
}

#[test]
fn serve_keeps_a_documents_filter_state_between_requests() {
    let s = Server::start(&["-c", "4096", "--gem-topk", "256", "--metrics"]);
    let doc = haystack(6000, "The secret passkey for the vault is 48213.", 0.5);
    let ask = |q: &str| ask_about(&s, &doc, q, 20);
    let r1 = ask("What is the secret passkey for the vault?");
    let g1 = &r1["gem"];
    assert!(
        r1["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("48213"),
        "{r1}"
    );
    assert_eq!(filtered(g1), true, "{g1}");
    assert_eq!(g1["document_cached"], false);
    let n1 = g1["prompt_tokens"].as_u64().unwrap();
    assert!(n1 > 1000, "{g1}");
    assert_eq!(g1["filter_tokens_decoded"].as_u64().unwrap(), n1);
    assert!(g1["selected_tokens"].as_u64().unwrap() <= 256, "{g1}");
    assert!(
        g1["kept_passages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().len() > 3),
        "{g1}"
    );

    let r2 = ask("What number opens the vault?");
    let g2 = &r2["gem"];
    assert_eq!(g2["document_cached"], true, "{g2}");
    let doc_end = g2["context_range"][1].as_u64().unwrap();
    let decoded = g2["filter_tokens_decoded"].as_u64().unwrap();
    assert_eq!(decoded, g2["prompt_tokens"].as_u64().unwrap() - doc_end);
    assert!(decoded < 40, "only what follows the document: {g2}");
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("gemfilter:document_cache_hits_total 1\n"),
        "{metrics}"
    );
    // The whole prompt on request.
    let (_, r3) = s.post(
        "/v1/completions",
        &json!({"prompt": format!("{doc}\n\nWhat is the passkey?"), "max_tokens": 2,
            "gem": {"off": true}}),
    );
    assert_eq!(filtered(&r3["gem"]), false, "{r3}");
    assert_eq!(r3["timings"]["prompt_n"], r3["usage"]["prompt_tokens"]);
}

#[test]
fn a_client_that_leaves_mid_stream_frees_its_slot_and_slots_answer_at_once() {
    let s = Server::start(&["-np", "2", "-c", "2048", "--metrics"]);
    let count = json!({"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "n_predict": 1500, "temperature": 0,
        "stream": true});
    let mut curl = Command::new("curl")
        .args(["-sS", "-N", "-H", "Content-Type: application/json", "-d"])
        .arg(count.to_string())
        .arg(format!("{}/completion", s.base))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(curl.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("data: {"),
        "streamed before leaving: {first}"
    );
    assert!(s.get("/slots").1.contains("\"is_processing\":true"));
    curl.kill().unwrap();
    curl.wait().unwrap();
    // The slot is free again within a few tokens.
    let freed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        !s.get("/slots").1.contains("\"is_processing\":true")
    });
    assert!(freed, "{}", s.get("/slots").1);
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("gemfilter:requests_cancelled_total 1\n"),
        "{metrics}"
    );

    // Two clients at once, both answered.
    let answers: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(|| {
                    let (_, r) = s.post(
                        "/v1/chat/completions",
                        &json!({"messages": [{"role": "user", "content": FRANCE}],
                            "temperature": 0, "max_tokens": 12}),
                    );
                    r["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a.contains("Paris")), "{answers:?}");
    assert_eq!(answers[0], answers[1]);
}

#[test]
fn a_request_past_the_timeout_gets_408_and_the_server_goes_on() {
    let s = Server::start(&["--timeout", "2", "-c", "2048", "--metrics"]);
    let t0 = Instant::now();
    let (code, r) = s.post(
        "/completion",
        &json!({"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "n_predict": 1800, "temperature": 0}),
    );
    assert_eq!(code, 408, "{r}");
    assert_eq!(r["error"]["type"], "timeout_error");
    assert!(t0.elapsed() < Duration::from_secs(20));
    // The abandoned generation stops and its slot serves again.
    let freed = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        !s.get("/slots").1.contains("\"is_processing\":true")
    });
    assert!(freed, "{}", s.get("/slots").1);
    assert_eq!(s.get("/health").0, 200);
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("gemfilter:requests_cancelled_total 1\n"),
        "{metrics}"
    );
}

/// The API key file's key guards every endpoint but /health and the page.
fn keyed_server() -> Server {
    let d = tmpdir("serve-key");
    let key = write(&d, "key.txt", b"s3cret-key\n");
    Server::start(&["-c", "2048", "--api-key-file", key.to_str().unwrap()])
}

fn python_suite(base: &str, key: &str) {
    let o = Command::new("python3")
        .arg(root().join("tests/server_client.py"))
        .args([&format!("{base}/v1"), key])
        .output()
        .expect("python3");
    assert!(
        o.status.success() && stdout(&o).contains("all checks passed"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn serve_requires_the_api_key_and_passes_the_openai_client_suite() {
    let s = keyed_server();
    for (path, headers) in [
        ("/v1/models", vec![]),
        ("/metrics", vec!["Authorization: Bearer wrong"]),
    ] {
        let (code, body) = s.call("GET", path, None, &headers);
        assert_eq!(code, 401, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
    }
    assert_eq!(s.get("/health").0, 200);
    let (code, _) = s.call(
        "GET",
        "/v1/models",
        None,
        &["Authorization: Bearer s3cret-key"],
    );
    assert_eq!(code, 200);
    python_suite(&s.base, "s3cret-key");
}

/// llama.cpp's own llama-server (from `make reference`) on SmolLM2 with `args`, once healthy.
pub(crate) fn llama_server(args: &[&str]) -> Server {
    let bin = root().join(".reference/bin/llama-server");
    assert!(
        bin.exists(),
        "{} is missing: run `make reference` (scripts/reference-llama.sh)",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "-m",
        smollm2().to_str().unwrap(),
        "-t",
        "2",
        "-c",
        "2048",
        "-np",
        "1",
    ])
    .args(args)
    .args(["--port", &port.to_string()]);
    let s = Server::spawn(&mut cmd, Some(&format!("http://127.0.0.1:{port}")));
    let up = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        s.get("/health").0 == 200
    });
    assert!(up, "llama-server did not start: {}", s.log());
    s
}

#[test]
fn the_openai_client_suite_passes_on_llama_server_too() {
    let s = llama_server(&["--api-key", "s3cret-key"]);
    python_suite(&s.base, "s3cret-key");
}

#[test]
fn serve_flags_are_checked_in_one_line() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    for (args, what) in [
        (
            vec!["serve", "-m", m, "-p", "hi"],
            "takes the prompt from each request",
        ),
        (vec!["serve", "-m", m, "-np", "0"], "--parallel"),
        (
            vec!["serve", "-m", m, "--api-key-file", "/nonexistent/key"],
            "--api-key-file",
        ),
        (vec!["serve", "-m", m, "--timeout", "0"], "--timeout"),
    ] {
        assert_one_error(&run(&args), what);
    }
}

fn city_schema() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"},
        "population": {"type": "integer"}}, "required": ["name", "population"]})
}

/// A JSON object holding `keys` in that order, the first a string, the second an integer.
fn assert_matches(text: &str, keys: [&str; 2]) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text:?}"));
    assert_eq!(o.keys().collect::<Vec<_>>().len(), 2, "{text:?}");
    assert!(o[keys[0]].is_string() && o[keys[1]].is_i64(), "{text:?}");
    assert!(
        text.find(keys[0]) < text.find(keys[1]),
        "order kept: {text:?}"
    );
    v
}

/// Schemas llama.cpp cannot use, and grammars beside schemas, are the request's fault.
fn refuses_bad_schemas(s: &Server) {
    for (body, what) in [
        (
            json!({"prompt": "x", "json_schema": {"type": "nonsense"}}),
            "can convert",
        ),
        (
            json!({"prompt": "x", "json_schema": [1]}),
            "must be an object",
        ),
        (
            json!({"prompt": "x", "grammar": "root ::= (", "n_predict": 2}),
            "cannot parse",
        ),
        (
            json!({"prompt": "x", "grammar": "root ::= \"a\"", "json_schema": {}}),
            "cannot both",
        ),
        (
            json!({"prompt": "x", "response_format": {"type": "xml"}}),
            "json_schema",
        ),
        (
            json!({"prompt": "x", "response_format": "json"}),
            "must be an object",
        ),
    ] {
        let (code, r) = s.post("/completion", &body);
        assert_eq!(code, 400, "{body}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(what),
            "{what}: {r}"
        );
    }
}

#[test]
fn json_schemas_constrain_the_answer_as_in_llama_server() {
    // Bodies as written: the person's properties name before age, which serde_json's sorted
    // maps would swap.
    let city = json!({"messages": [{"role": "user",
        "content": "Describe a city as JSON with its name and population."}],
        "max_tokens": 60, "temperature": 0,
        "response_format": {"type": "json_schema",
            "json_schema": {"name": "city", "schema": city_schema()}}});
    let color = json!({"messages": [{"role": "user", "content": "Name a color as JSON."}],
        "max_tokens": 24, "temperature": 0, "response_format": {"type": "json_object"}});
    let requests = [
        (
            "/completion",
            r#"{"prompt": "Give the name and age of a person as JSON:", "n_predict": 40,
            "temperature": 0, "json_schema": {"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"]}}"#
                .to_owned(),
        ),
        ("/v1/chat/completions", city.to_string()),
        ("/v1/chat/completions", color.to_string()),
    ];
    let answers = |s: &Server| -> Vec<(String, u64)> {
        requests
            .iter()
            .map(|(path, body)| {
                let (code, r) = post_raw(s, path, body.as_bytes());
                assert_eq!(code, 200, "{path}: {r}");
                if *path == "/completion" {
                    (
                        r["content"].as_str().unwrap().to_owned(),
                        r["tokens_predicted"].as_u64().unwrap(),
                    )
                } else {
                    (
                        r["choices"][0]["message"]["content"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        r["usage"]["completion_tokens"].as_u64().unwrap(),
                    )
                }
            })
            .collect()
    };
    let s = Server::start(&["-c", "2048"]);
    let ours = answers(&s);
    assert_matches(&ours[0].0, ["name", "age"]);
    assert_matches(&ours[1].0, ["name", "population"]);
    let any: Value = serde_json::from_str(ours[2].0.trim()).unwrap_or(Value::Null);
    assert!(
        any.is_object() || ours[2].0.trim_start().starts_with('{'),
        "an object (or its start, at max_tokens): {:?}",
        ours[2].0
    );

    // Filtered: the grammar holds on GemFilter's path too.
    let doc = haystack(2500, "The secret passkey for the vault is 48213.", 0.5);
    let (code, r) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": [{"type": "text", "text": doc},
            {"type": "text", "text": "What is the secret passkey for the vault? Reply as JSON."}]}],
            "max_tokens": 24, "temperature": 0, "gem": {"top_k": 64},
            "response_format": {"type": "json_schema", "json_schema": {"schema":
                {"type": "object", "properties": {"passkey": {"type": "integer"}},
                 "required": ["passkey"]}}}}),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(filtered(&r["gem"]), true, "{r}");
    let text = r["choices"][0]["message"]["content"].as_str().unwrap();
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(v["passkey"].is_i64(), "{text:?}");

    refuses_bad_schemas(&s);

    // llama-server, rendering the chat template as gemfilter does (--no-jinja), gives the same
    // tokens at temperature 0.
    let theirs = answers(&llama_server(&["--no-jinja"]));
    assert_eq!(ours, theirs, "gemfilter serve vs llama-server");
}

/// A POST with a raw body (curl cannot send a half request).
fn post_raw(s: &Server, path: &str, body: &[u8]) -> (u16, Value) {
    let (code, text) = s.call("POST", path, Some(body), &[]);
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn slots_save_restore_and_erase_stay_inside_the_save_path() {
    let dir = tmpdir("serve-slots");
    let save = dir.join("saved");
    let s = Server::start(&[
        "-c",
        "2048",
        "--gem-topk",
        "64",
        "--slot-save-path",
        save.to_str().unwrap(),
    ]);
    let action = |what: &str, name: &str| {
        post_raw(
            &s,
            &format!("/slots/0?action={what}"),
            json!({ "filename": name }).to_string().as_bytes(),
        )
    };
    let (code, r) = action("save", "early");
    assert_eq!(code, 400, "nothing to save yet: {r}");
    let doc = haystack(2500, "The secret passkey for the vault is 48213.", 0.5);
    let ask = |q: &str| ask_about(&s, &doc, q, 12)["gem"].clone();
    let g1 = ask("What is the secret passkey for the vault?");
    assert_eq!(
        (&filtered(&g1), &g1["document_cached"]),
        (&json!(true), &json!(false)),
        "{g1}"
    );
    let n_doc = g1["context_range"][1].as_u64().unwrap();

    let (code, r) = action("save", "vault.state");
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["n_saved"].as_u64(), Some(n_doc), "{r}");
    assert!(save.join("vault.state").is_file() && save.join("vault.state.kv").is_file());
    let (code, r) = post_raw(&s, "/slots/0?action=erase", b"");
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["n_erased"].as_u64(), Some(n_doc), "{r}");
    let erased = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        s.get("/slots").1.contains("\"cached_documents\":0")
    });
    assert!(erased, "{}", s.get("/slots").1);
    // Only the saved copy is left; restoring it lets the next question skip the document.
    for e in std::fs::read_dir(&save).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("vault")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let (code, r) = action("restore", "vault.state");
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["n_restored"].as_u64(), Some(n_doc), "{r}");
    let g2 = ask("Which number opens the vault?");
    assert_eq!(g2["document_cached"], false, "{g2}");
    assert_eq!(g2["document_from_disk"], true, "{g2}");
    assert!(g2["filter_tokens_decoded"].as_u64().unwrap() < 40, "{g2}");

    // Nothing outside the directory is named, followed or replaced.
    std::fs::write(save.join("notes.txt"), b"my notes").unwrap();
    std::os::unix::fs::symlink(dir.join("outside"), save.join("link")).unwrap();
    for name in [
        "../escape",
        "/tmp/escape",
        "..",
        ".",
        ".hidden",
        "a/b",
        "",
        "link",
        "notes.txt",
    ] {
        for what in ["save", "restore"] {
            let (code, r) = action(what, name);
            assert_eq!(code, 400, "{what} {name:?}: {r}");
        }
    }
    assert!(!dir.join("escape").exists() && !dir.join("outside").exists());
    assert_eq!(std::fs::read(save.join("notes.txt")).unwrap(), b"my notes");
    for (path, body) in [
        ("/slots/0?action=save", &b"{"[..]),
        ("/slots/0?action=save", b"{\"filename\": 3}"),
        ("/slots/9?action=save", b"{\"filename\": \"a\"}"),
        ("/slots/x?action=erase", b""),
        ("/slots/0?action=fly", b""),
        ("/slots/0", b""),
    ] {
        let (code, r) = post_raw(&s, path, body);
        assert_eq!(code, 400, "{path}: {r}");
    }
    assert_eq!(s.get("/health").0, 200);
}

#[test]
fn endpoints_are_switched_as_in_llama_server() {
    let s = Server::start(&["-c", "1024"]);
    let (code, body) = s.get("/metrics");
    assert_eq!(code, 501, "off by default, as in llama-server: {body}");
    assert!(body.contains("not_supported_error") && body.contains("--metrics"));
    assert_eq!(s.get("/slots").0, 200);
    assert_eq!(s.get("/").0, 200);
    let (code, r) = post_raw(&s, "/slots/0?action=save", b"{\"filename\": \"a\"}");
    assert_eq!(code, 501, "no --slot-save-path: {r}");
    drop(s);

    let s = Server::start(&[
        "-c",
        "1024",
        "--metrics",
        "--no-slots",
        "--no-webui",
        "--threads-http",
        "3",
    ]);
    assert_eq!(s.get("/metrics").0, 200);
    let (code, body) = s.get("/slots");
    assert_eq!(code, 501, "{body}");
    assert!(body.contains("--slots"), "{body}");
    assert_eq!(s.get("/").0, 404);
    assert_eq!(s.get("/health").0, 200);
    drop(s);
    // The later of a pair wins, as in llama.cpp's argument parser.
    let s = Server::start(&["-c", "1024", "--no-slots", "--slots", "--no-ui", "--ui"]);
    assert_eq!(s.get("/slots").0, 200);
    assert_eq!(s.get("/").0, 200);
}

/// Connect, send `bytes` and wait: (seconds until the server closed, what it sent).
fn stall(addr: &str, bytes: &[u8]) -> (f64, String) {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(bytes).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    (
        t0.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

#[test]
fn idle_and_slow_connections_are_dropped_after_the_timeout() {
    let s = Server::start(&["-c", "1024", "--timeout", "2"]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    for (what, bytes) in [
        ("idle", &b""[..]),
        (
            "half a request head",
            b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Le",
        ),
        (
            "half a body",
            b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
        ),
    ] {
        let (secs, reply) = stall(&addr, bytes);
        assert!(
            (1.5..10.0).contains(&secs),
            "{what}: closed after {secs} s: {reply}"
        );
        if what == "half a body" {
            assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        } else {
            assert!(reply.is_empty(), "{what}: {reply}");
        }
    }
    // A kept-alive connection that goes quiet after a request is closed the same way.
    let (secs, reply) = stall(&addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        reply.contains("200 OK") && (1.5..10.0).contains(&secs),
        "{secs} {reply}"
    );
    assert_eq!(s.get("/health").0, 200, "still serving");
}

/// One document cache for every slot: a follow-up finds its document whichever slot takes it
/// (with a cache per slot, a follow-up taken by another slot filtered the document again).
#[test]
fn a_follow_up_taken_by_another_slot_finds_its_document() {
    let s = Server::start(&["-np", "2", "-c", "4096", "--gem-topk", "256"]);
    let doc = haystack(2500, "The secret passkey for the vault is 48213.", 0.5);
    let ask = |q: &str| ask_about(&s, &doc, q, 4)["gem"].clone();
    // Which slot answered each request, from the server's one line per answer.
    let slots = || -> Vec<String> {
        s.log()
            .lines()
            .filter_map(|l| l.strip_prefix("gemfilter: slot "))
            .filter_map(|l| l.split(' ').next().map(str::to_owned))
            .collect()
    };
    let g1 = ask("What is the secret passkey for the vault?");
    assert_eq!(g1["document_cached"], false, "{g1}");
    let first = slots();
    assert_eq!(first.len(), 1, "{}", s.log());
    // Idle slots race for the queue: ask until another slot has taken a follow-up.
    let mut other = false;
    for q in 0..8 {
        let g = ask(&format!("Which number opens the vault? ({q})"));
        assert_eq!(
            g["document_cached"],
            true,
            "follow-up {q}: {g}\n{}",
            s.log()
        );
        other |= slots().last() != first.first();
        if other {
            break;
        }
    }
    assert!(
        other,
        "every follow-up went to the first slot:\n{}",
        s.log()
    );
}

/// Options of the CLI that serve takes but does not apply are named once at start, not dropped
/// silently (llama-server command lines often carry `--jinja`).
#[test]
fn options_serve_does_not_apply_are_named_at_start() {
    let s = Server::start(&["--jinja", "--reasoning-format", "deepseek", "--gem-show"]);
    let log = s.log();
    assert!(
        log.contains("serve does not apply --jinja, --reasoning-format, --gem-show"),
        "{log}"
    );
    let (code, _) = s.get("/health");
    assert_eq!(code, 200);
}

/// `--log-prompts-dir`: each request's prompt in a file of its own, as llama-server writes it.
#[test]
fn log_prompts_dir_holds_each_prompt_as_llama_server_writes_it() {
    let d = tmpdir("serve-prompts");
    let body = json!({"prompt": "The capital of France is", "n_predict": 2, "temperature": 0});
    let logged = |dir: &std::path::Path, s: &Server| {
        for _ in 0..2 {
            let (code, r) = s.post("/completion", &body);
            assert_eq!(code, 200, "{r}");
        }
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<Vec<_>>()
    };
    let (ours, theirs) = (d.join("ours"), d.join("theirs"));
    let o = logged(
        &ours,
        &Server::start(&["-c", "2048", "--log-prompts-dir", ours.to_str().unwrap()]),
    );
    let t = logged(
        &theirs,
        &llama_server(&["--log-prompts-dir", theirs.to_str().unwrap()]),
    );
    assert_eq!(o.len(), 2, "one file per request: {o:?}");
    assert_eq!(o, t);
}
