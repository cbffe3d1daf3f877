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
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `gemfilter serve` on SmolLM2 with `args`, once it listens.
    fn start(args: &[&str]) -> Server {
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

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `curl` a request: (status, body).
    fn call(
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

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (code, text) = self.call("POST", path, Some(body.to_string().as_bytes()), &[]);
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}\nserver: {}", self.log()));
        (code, v)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.call("GET", path, None, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `data:` payloads of a server-sent event stream.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
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
    assert_eq!(r["gem"]["filtered"], false, "{r}");

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

#[test]
fn serve_refuses_bad_requests_in_openais_format_and_keeps_serving() {
    let s = Server::start(&["-c", "1024"]);
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": FRANCE}], "max_tokens": 4});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        s.post("/v1/chat/completions", &b)
    };
    let long = "word ".repeat(3000);
    for (extra, what) in [
        (json!({"model": "gpt-4"}), "not served here"),
        (json!({"temperature": "hot"}), "temperature"),
        (
            json!({"messages": [{"role": "user", "content": long}]}),
            "context size of 1024",
        ),
        (json!({"gem": {"top": 3}}), "gem.top"),
    ] {
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
    let (code, body) = s.get("/v2/nothing");
    assert_eq!(code, 404, "{body}");

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
        metrics.contains("gemfilter:request_errors_total 6"),
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
    let s = Server::start(&["-c", "4096", "--gem-topk", "256"]);
    let doc = haystack(6000, "The secret passkey for the vault is 48213.", 0.5);
    let ask = |q: &str| {
        let (code, r) = s.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": doc}, {"type": "text", "text": q}]}],
                "temperature": 0, "max_tokens": 20}),
        );
        assert_eq!(code, 200, "{r}\n{}", s.log());
        r
    };
    let r1 = ask("What is the secret passkey for the vault?");
    let g1 = &r1["gem"];
    assert!(
        r1["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("48213"),
        "{r1}"
    );
    assert_eq!(g1["filtered"], true, "{g1}");
    assert_eq!(g1["document_cached"], false);
    let n1 = g1["prompt_tokens"].as_u64().unwrap();
    assert!(n1 > 1000, "{g1}");
    assert_eq!(g1["filter_tokens_decoded"].as_u64().unwrap(), n1);
    assert!(g1["kept_tokens"].as_u64().unwrap() <= 256, "{g1}");
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
    let doc_end = g2["document_tokens"][1].as_u64().unwrap();
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
    assert_eq!(r3["gem"]["filtered"], false, "{r3}");
    assert_eq!(r3["timings"]["prompt_n"], r3["usage"]["prompt_tokens"]);
}

#[test]
fn a_client_that_leaves_mid_stream_frees_its_slot_and_slots_answer_at_once() {
    let s = Server::start(&["-np", "2", "-c", "2048"]);
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
    let s = Server::start(&["--timeout", "2", "-c", "2048"]);
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

#[test]
fn the_openai_client_suite_passes_on_llama_server_too() {
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
    .args(["--api-key", "s3cret-key", "--port", &port.to_string()]);
    let s = Server::spawn(&mut cmd, Some(&format!("http://127.0.0.1:{port}")));
    let up = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        s.get("/health").0 == 200
    });
    assert!(up, "llama-server did not start: {}", s.log());
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
