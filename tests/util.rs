//! Shared helpers: paths to the real test models, running the binary, building haystacks.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// SmolLM2-135M-Instruct (fetched by `make test` / scripts/fetch-models.sh).
pub fn smollm2() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run `make models` (scripts/fetch-models.sh)",
        p.display()
    );
    p
}

/// Gemma-3-270M (`scripts/fetch-models.sh gemma3`, part of `make test`).
pub fn gemma3() -> PathBuf {
    let p = root().join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch-models.sh gemma3`",
        p.display()
    );
    p
}

/// The binary, with user presets in a file of this test process (never the user's own): a
/// model without a preset may calibrate itself and store the result there.
pub fn gemfilter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gemfilter"));
    c.env(
        "GEMFILTER_PRESETS",
        std::env::temp_dir().join(format!(
            "gemfilter-test-{}-presets.toml",
            std::process::id()
        )),
    );
    c
}

/// Qwen2.5-Coder-0.5B-Instruct (`scripts/fetch-models.sh qwen05`, part of `make test`).
pub fn qwen05() -> PathBuf {
    let p = root().join("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch-models.sh qwen05`",
        p.display()
    );
    p
}

/// Qwen2.5-Coder-1.5B-Instruct (`scripts/fetch-models.sh qwen15`, part of `make test`): the
/// 0.5B's sibling with the same tokenizer, the target of the draft tests.
pub fn qwen15() -> PathBuf {
    let p = root().join("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch-models.sh qwen15`",
        p.display()
    );
    p
}

/// Run and return output; stdin closed.
pub fn run(args: &[&str]) -> Output {
    gemfilter()
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn gemfilter")
}

/// A fresh temporary directory for one test.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gemfilter-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The bundled haystack cut to about `chars` characters at a sentence end, with `needle`
/// inserted after the sentence nearest `depth` (0.0..=1.0).
pub fn haystack(chars: usize, needle: &str, depth: f64) -> String {
    let text = std::fs::read_to_string(root().join("data/haystack.txt")).unwrap();
    let mut cut = text[..chars.min(text.len())].to_string();
    if let Some(end) = cut.rfind(". ") {
        cut.truncate(end + 1);
    }
    let at = (cut.len() as f64 * depth) as usize;
    let pos = cut[at..].find(". ").map_or(cut.len(), |p| at + p + 1);
    format!("{} {needle}{}", &cut[..pos], &cut[pos..])
}

pub fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failed run that printed exactly one error line containing `what`, nothing on stdout,
/// and no panic.
pub fn assert_one_error(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(lines[0].starts_with("error: "), "not an error line: {err}");
    assert!(lines[0].contains(what), "error line lacks {what:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    assert!(o.stdout.is_empty(), "stdout not empty: {}", stdout(o));
}

pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "run failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(o)))
}

/// The JSON values of a successful run's standard output, one per line (`-cnv --json`).
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "run failed: {}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect()
}

/// The binary with its prefix-model cache inside the test's directory.
pub fn cached(dir: &Path) -> Command {
    let mut c = gemfilter();
    c.env("GEMFILTER_CACHE", dir.join("cache"));
    c
}

/// A random-weight model of `shape` (e.g. tiny-qwen2) written by `gemfilter synth` into `dir`.
pub fn synth(dir: &Path, shape: &str) -> PathBuf {
    let model = dir.join(format!("{shape}.gguf"));
    let o = run(&["synth", "--shape", shape, "-o", model.to_str().unwrap()]);
    assert!(o.status.success(), "synth failed: {}", stderr(&o));
    model
}

/// The JSON values of a JSON-lines file.
pub fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait for `child`, killing it and failing the test if it is still running `limit` after `t0`
/// (a hang); `stderr` is shown in the failure.
pub fn wait_within(
    child: &mut Child,
    t0: Instant,
    limit: Duration,
    what: &dyn std::fmt::Debug,
    stderr: impl Fn() -> String,
) -> ExitStatus {
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?} (a hang): {what:?}\nstderr: {}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `cmd` with `input` on stdin (`None`: stdin closed), draining its output on threads so
/// a chatty child never blocks; a run past `limit` fails the test. Output and wall time.
pub fn run_within(mut cmd: Command, input: Option<&[u8]>, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gemfilter");
    let feeder = input.map(|bytes| {
        let mut stdin = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = wait_within(&mut child, t0, limit, &cmd, String::new);
    let elapsed = t0.elapsed();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    let o = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (o, elapsed)
}
