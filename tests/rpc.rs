//! RPC on the CPU: `gemfilter rpc-server` workers started here on localhost serve the real
//! SmolLM2-135M to `gemfilter --rpc`; the filter pass (early exit, per-ubatch capture, K read
//! from the cache) finds layer r on the remote device and selects exactly what the local run
//! selects, also with the layers split over two workers or between the CPU and a worker; bad
//! input and a worker that dies mid-run end in one line.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::*;

const NEEDLE: &str = "The secret passkey for the vault is 48213.";
const QUESTION: &str = "Question: What is the secret passkey for the vault? Answer:";

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `gemfilter rpc-server` child, killed when dropped; its stdout lines arrive on `lines`.
struct Worker {
    child: Child,
    endpoint: String,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn start() -> Self {
        let port = free_port();
        let mut child = gemfilter()
            .args(["rpc-server", "-p", &port.to_string(), "-t", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rpc-server");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let endpoint = format!("127.0.0.1:{port}");
        let t0 = Instant::now();
        // Listening once a connection is accepted (the worker closes it at once: no HELLO).
        while TcpStream::connect(&endpoint).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "rpc-server exited before listening"
            );
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "rpc-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            endpoint,
            lines,
        }
    }

    /// Wait (at most `secs`) for a stdout line containing `what`.
    fn wait_for(&self, what: &str, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Client connections the worker accepted so far, not counting the one `start` made to see
    /// it listening: 0 means no run used this worker.
    fn served(&self) -> usize {
        let mut n = 0;
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
            n += usize::from(l.contains("Accepted client connection"));
        }
        n.saturating_sub(1)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn doc(dir: &Path, chars: usize) -> PathBuf {
    write(dir, "doc.txt", haystack(chars, NEEDLE, 0.5).as_bytes())
}

/// A greedy single-turn GemFilter run over `f` with `extra` flags, keeping 256 tokens.
fn needle_run(dir: &Path, f: &Path, extra: &[&str]) -> Output {
    cached(dir)
        .args(["-m", smollm2().to_str().unwrap(), "-f", f.to_str().unwrap()])
        .args(["-p", QUESTION, "-n", "16", "--temp", "0", "-t", "2"])
        .args(["-st", "--json", "--gem-topk", "256"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Run to completion, or fail the test after `secs` (no hang allowed).
fn output_within(mut c: Command, secs: u64) -> Output {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("gemfilter hung for {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn rpc_worker_selects_the_needle_exactly_as_the_local_run() {
    let d = tmpdir("rpc-same");
    let f = doc(&d, 10_000);
    let local = json(&needle_run(&d, &f, &[]));
    assert_eq!(local["selected_tokens"], 256);
    assert!(local["answer"].as_str().unwrap().contains("48213"));
    let w = Worker::start();
    // Per-ubatch capture with the early exit (the CPU default), then K read from layer r's
    // cache on the remote device (the GPU default), then the filter pass on the full model.
    for extra in [
        &["--gem-k-source", "ubatch"][..],
        &["--gem-k-source", "cache"],
        &["--gem-prefix", "off"],
    ] {
        let mut args = vec!["--rpc", w.endpoint.as_str()];
        args.extend_from_slice(extra);
        let r = json(&needle_run(&d, &f, &args));
        assert_eq!(
            r["selected_ranges"], local["selected_ranges"],
            "{extra:?}: another selection over RPC"
        );
        assert_eq!(
            r["filter_max_layer"], r["layer"],
            "{extra:?}: the filter pass ran past layer r"
        );
        let answer = r["answer"].as_str().unwrap();
        assert!(answer.contains("48213"), "{extra:?}: answer {answer:?}");
    }
    assert!(w.served() > 0, "the worker never served a client");
}

#[test]
fn layers_split_over_two_workers_or_cpu_and_worker_select_as_local() {
    let d = tmpdir("rpc-split");
    let f = doc(&d, 8_000);
    let local = json(&needle_run(&d, &f, &[]));
    let (a, b) = (Worker::start(), Worker::start());
    let both = format!("{},{}", a.endpoint, b.endpoint);
    let layer = local["layer"].as_u64().unwrap().to_string();
    for extra in [
        // Layers split 1:1 over two workers (layer r on the first or second, by model).
        vec!["--rpc", both.as_str(), "-sm", "layer", "-ts", "1,1"],
        // The prefix model on the second worker only, the full model over both.
        vec!["--rpc", both.as_str(), "--gem-device", "RPC1"],
        // The first layers on the CPU, the rest (layer r among them or not) on a worker.
        vec!["--rpc", a.endpoint.as_str(), "-ngl", &layer],
    ] {
        let r = json(&needle_run(&d, &f, &extra));
        assert_eq!(
            r["selected_ranges"], local["selected_ranges"],
            "{extra:?}: another selection"
        );
        assert_eq!(r["filter_max_layer"], r["layer"], "{extra:?}");
        assert!(
            r["answer"].as_str().unwrap().contains("48213"),
            "{extra:?}: answer {}",
            r["answer"]
        );
    }
    assert!(
        a.served() > 0 && b.served() > 0,
        "a worker served no client"
    );
}

#[test]
fn unreachable_rpc_server_is_one_line() {
    let d = tmpdir("rpc-down");
    let f = doc(&d, 2_000);
    let port = free_port();
    let ep = format!("127.0.0.1:{port}");
    let o = needle_run(&d, &f, &["--rpc", &ep]);
    assert_one_error(&o, &format!("cannot reach RPC server '{ep}'"));
}

#[test]
fn rpc_server_that_dies_mid_run_is_one_line_and_no_hang() {
    let d = tmpdir("rpc-dies");
    let f = doc(&d, 26_000);
    let w = Worker::start();
    let mut c = cached(&d);
    c.args(["-m", smollm2().to_str().unwrap(), "-f", f.to_str().unwrap()])
        .args(["-p", QUESTION, "-n", "12", "--temp", "0", "-t", "2"])
        .args(["-no-cnv", "--json", "--log-disable", "--rpc", &w.endpoint]);
    let mut w = w;
    let killer = std::thread::spawn(move || {
        assert!(
            w.wait_for("Accepted client connection", 60),
            "client never connected"
        );
        // Weights sent, the filter pass under way.
        std::thread::sleep(Duration::from_millis(1500));
        let _ = w.child.kill();
        let _ = w.child.wait();
    });
    let o = output_within(c, 120);
    killer.join().unwrap();
    assert_one_error(&o, "lost the RPC server");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn bad_placement_flags_are_one_line() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    for (flags, what) in [
        (&["--rpc", "localhost"][..], "has no port"),
        (&["--rpc", "h:0"], "bad port"),
        (&["-ts", "0,0"], "every share is zero"),
        (&["-ts", "1,x"], "bad share"),
        (&["-mg", "-2"], "-mg must be"),
        (&["-dev", "CUDA0,"], "empty device name"),
        (&["-dev", "NOPE0"], "-dev: no device 'NOPE0'"),
        (&["-sm", "none", "-mg", "3"], "-mg 3"),
        (&["-ts", "1,1,1"], "-ts lists 3 shares"),
        (&["--gem-device", "none", "--gem", "off"], "--gem-device"),
    ] {
        let mut args = vec!["-m", m, "-p", "hi", "-n", "1", "-no-cnv"];
        args.extend_from_slice(flags);
        assert_one_error(&run(&args), what);
    }
    let o = run(&["-sm", "diagonal", "-m", m, "-p", "hi"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses bad -sm values");
}

#[test]
fn list_devices_shows_the_cpu_and_the_workers() {
    let o = run(&["--list-devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("Available devices:") && out.contains("CPU"),
        "{out}"
    );
    let w = Worker::start();
    let o = run(&["--list-devices", "--rpc", &w.endpoint]);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("RPC") && l.contains(&w.endpoint)),
        "{out}"
    );
}

#[test]
fn rpc_server_warns_off_loopback_and_refuses_a_busy_port() {
    let port = free_port();
    let mut child = gemfilter()
        .args(["rpc-server", "-H", "0.0.0.0", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains("warning") && first.contains("no authentication"),
        "{first}"
    );
    // On loopback: no warning; a port already taken is one error line.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port().to_string();
    let o = output_within(
        {
            let mut c = gemfilter();
            c.args(["rpc-server", "-p", &busy]);
            c
        },
        30,
    );
    assert_one_error(&o, "cannot listen on '127.0.0.1:");
}
