//! Hostile input through the binary: model files, flags and prefix caches. Every bad input
//! ends with one short clean `error:` line and exit status 1, no signal, within seconds; a
//! damaged prefix cache is rebuilt with a notice and the run still answers right.
#![allow(
    clippy::cast_possible_truncation,
    clippy::many_single_char_names,
    clippy::too_many_lines,
    clippy::type_complexity
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::gguf_fuzz::{mutate, smollm2_layout, targeted, Mutant, Rng};
use crate::util::*;

/// Run `cmd` with stdin closed, killing it after `limit`; output and wall time.
fn run_limited(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let d = tmpdir(&format!("out-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    let out = d.join("stdout");
    let err = d.join("stderr");
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn gemfilter");
    let status = wait_within(&mut child, t0, limit, &cmd, || {
        String::from_utf8_lossy(&std::fs::read(&err).unwrap_or_default())
            .chars()
            .take(2000)
            .collect()
    });
    let elapsed = t0.elapsed();
    let o = Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    };
    let _ = std::fs::remove_dir_all(&d);
    (o, elapsed)
}

/// The rule: exit status 1 (no signal), exactly one line on stderr, starting `error: `,
/// under 300 characters, free of control bytes, holding `what`; nothing on stdout.
#[track_caller]
fn assert_clean_error(o: &Output, what: &[&str], case: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    let shown: String = err.chars().take(600).collect();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{case}: status {:?} (a signal if None); stderr: {shown}",
        o.status
    );
    assert!(
        o.stdout.is_empty(),
        "{case}: stdout not empty: {:.300}",
        stdout(o)
    );
    assert!(
        !o.stderr.iter().any(|&b| b < 0x20 && b != b'\n') && !o.stderr.contains(&0x7f),
        "{case}: control bytes on stderr: {shown:?}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{case}: expected one line, got: {shown}");
    let l = lines[0];
    assert!(
        l.starts_with("error: "),
        "{case}: not an error line: {shown}"
    );
    assert!(
        l.chars().count() < 300,
        "{case}: {} characters: {shown}",
        l.chars().count()
    );
    assert!(
        what.iter().any(|w| l.contains(w)),
        "{case}: the line names none of {what:?}: {l}"
    );
}

/// Write a mutant as a (sparse) model file: its header, then zeros up to its length.
fn write_mutant(dir: &Path, name: &str, m: &Mutant) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    let n = (m.bytes.len() as u64).min(m.file_len) as usize;
    std::io::Write::write_all(&mut &f, &m.bytes[..n]).unwrap();
    f.set_len(m.file_len).unwrap();
    p
}

/// Write a mutant of the same header length over a copy of the real model, so that what gets
/// past the inspection runs on real weights (a zero-weight model decodes ~20x slower).
fn write_mutant_real(dir: &Path, name: &str, m: &Mutant) -> PathBuf {
    use std::io::{Seek, Write};
    let p = dir.join(name);
    std::fs::copy(smollm2(), &p).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    let n = (m.bytes.len() as u64).min(m.file_len) as usize;
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(&m.bytes[..n]).unwrap();
    f.set_len(m.file_len).unwrap();
    p
}

fn model_cmd(model: &Path, extra: &[&str]) -> Command {
    let mut c = gemfilter();
    c.args([
        "-m",
        model.to_str().unwrap(),
        "-p",
        "Say hi.",
        "-n",
        "2",
        "-c",
        "128",
        // One thread: ggml's spinning workers slow down 10x on a busy 2-core machine.
        "-t",
        "1",
    ])
    .args(extra);
    c
}

/// Table rows about model files: `block_count` 10^9, 2^32-1, u64 2^40, missing and 0; epsilon
/// NaN; alignment 1 added; `general.languages` as u8[2^40]; tensor name lengths of 100,000 and
/// 50,000,000; and the other targeted edits of the generator.
#[test]
fn hostile_model_files_give_one_clean_line() {
    let d = tmpdir("hostile-files");
    let layout = smollm2_layout();
    for (i, (m, want)) in targeted(layout).iter().enumerate() {
        let f = write_mutant(&d, &format!("t{i}.gguf"), m);
        let (o, dt) = run_limited(model_cmd(&f, &[]), Duration::from_secs(30));
        assert_clean_error(&o, &[want], &m.what);
        assert!(dt < Duration::from_secs(5), "{}: took {dt:?}", m.what);
        std::fs::remove_file(&f).unwrap();
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// Truncations of the real model at points through the header and the data.
#[test]
fn hostile_truncations_give_one_clean_line() {
    let d = tmpdir("hostile-trunc");
    let layout = smollm2_layout();
    let cuts = [
        0u64,
        3,
        4,
        10,
        23,
        24,
        100,
        5000,
        layout.tensors_start as u64 - 3,
        layout.tensors_start as u64 + 50,
        layout.header_end as u64 - 1,
        layout.data_offset as u64,
        layout.data_offset as u64 + 1,
        layout.file_len / 2,
        layout.file_len - 1,
    ];
    for cut in cuts {
        let m = Mutant {
            bytes: layout.header[..(cut as usize).min(layout.header.len())].to_vec(),
            file_len: cut,
            what: format!("cut at {cut}"),
        };
        let f = write_mutant(&d, "cut.gguf", &m);
        let (o, dt) = run_limited(model_cmd(&f, &[]), Duration::from_secs(30));
        assert_clean_error(&o, &["truncated", "not a GGUF"], &m.what);
        assert!(dt < Duration::from_secs(5), "{}: took {dt:?}", m.what);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// Seeded random mutants of the real header through the binary (--gem off):
/// eight the inspection refuses and eight it lets through to llama.cpp. Whatever happens
/// there, the run ends cleanly — an answer, or one clean error line — and never with a signal,
/// a panic, debugger output or a hang.
#[test]
fn hostile_random_mutants_never_crash() {
    let d = tmpdir("hostile-random");
    let layout = smollm2_layout();
    let mut rng = Rng(0x5eed_0009);
    let (mut refused_early, mut passed_on) = (Vec::new(), Vec::new());
    while refused_early.len() < 8 || passed_on.len() < 8 {
        let m = mutate(layout, &mut rng);
        let accepted = crate::gguf_fuzz::inspect_mutant(&m).unwrap().is_none();
        let bucket = if accepted {
            &mut passed_on
        } else {
            &mut refused_early
        };
        if bucket.len() < 8 {
            bucket.push(m);
        }
    }
    let (mut ran, mut failed) = (0, 0);
    for (i, m) in refused_early.iter().chain(&passed_on).enumerate() {
        let f = if i < 8 {
            write_mutant(&d, &format!("r{i}.gguf"), m)
        } else {
            write_mutant_real(&d, &format!("r{i}.gguf"), m)
        };
        let (o, dt) = run_limited(
            model_cmd(&f, &["--gem", "off", "-no-cnv", "--no-display-prompt"]),
            Duration::from_mins(1),
        );
        eprintln!("{:.1} s: {}", dt.as_secs_f64(), m.what);
        if o.status.success() {
            ran += 1;
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains("panicked"), "{}: {err:.600}", m.what);
        } else {
            failed += 1;
            assert_clean_error(&o, &["error: "], &m.what);
            eprintln!(
                "{} (inspection {}): {}",
                m.what,
                if i < 8 { "refused" } else { "passed" },
                stderr(&o).trim()
            );
        }
        std::fs::remove_file(&f).unwrap();
    }
    eprintln!("random mutants through the binary: {ran} ran, {failed} ended in one error line");
    std::fs::remove_dir_all(&d).unwrap();
}

/// An abort inside ggml (a `GGML_ASSERT` that no header check caught) ends in one line and exit
/// status 1, with no debugger backtrace (gdb is attached by default where installed): the
/// abort callback's net, tripped through the binary by its self-test switch.
#[test]
fn hostile_ggml_abort_is_one_line() {
    let mut c = gemfilter();
    c.env(gemfilter::engine::ffi::abort::SELFTEST_ENV, "1")
        .env_remove("GGML_NO_BACKTRACE")
        .args(["-m", "/nonexistent.gguf", "-p", "hi"]);
    let (o, dt) = run_limited(c, Duration::from_secs(30));
    assert_clean_error(&o, &["malformed"], "ggml abort self-test");
    assert!(stderr(&o).contains("selftest.c:1: GGML_ASSERT(gemfilter abort self-test) failed"));
    assert!(dt < Duration::from_secs(5), "took {dt:?}");
}

fn flag_case(args: &[&str], what: &[&str]) {
    let (o, dt) = run_limited(
        {
            let mut c = gemfilter();
            c.args(args);
            c
        },
        Duration::from_mins(1),
    );
    assert_clean_error(&o, what, &args.join(" "));
    assert!(dt < Duration::from_secs(10), "{args:?}: took {dt:?}");
}

/// The hostile flag values, one test per row so that each reports on its own.
mod flags {
    use super::*;

    fn m() -> String {
        smollm2().to_str().unwrap().to_owned()
    }

    #[test]
    fn hostile_flag_gem_pool_u64_max() {
        flag_case(
            &["-m", &m(), "-p", "hi", "--gem-pool", "18446744073709551615"],
            &["--gem-pool"],
        );
    }

    #[test]
    fn hostile_flag_gem_pool_34_gb() {
        flag_case(
            &["-m", &m(), "-p", "hi", "--gem-pool", "8589934593"],
            &["--gem-pool"],
        );
    }

    #[test]
    fn hostile_flag_gem_pool_999999999() {
        flag_case(
            &["-m", &m(), "-p", "hi", "--gem-pool", "999999999"],
            &["--gem-pool"],
        );
    }

    #[test]
    fn hostile_flag_layers_range_u64_max() {
        let d = tmpdir("hostile-layers");
        let f = write(&d, "doc.txt", b"The passkey is 4821. Remember it.");
        flag_case(
            &[
                "layers",
                "-m",
                &m(),
                "-f",
                f.to_str().unwrap(),
                "-p",
                "What is the passkey?",
                "--needle",
                "4821",
                "--layers",
                "0-18446744073709551615",
            ],
            &["--layers"],
        );
    }

    #[test]
    fn hostile_flag_threads_10000() {
        flag_case(
            &["-m", &m(), "-p", "hi", "-t", "10000"],
            &["-t", "--threads"],
        );
    }

    #[test]
    fn hostile_flag_prompt_file_dev_zero() {
        flag_case(
            &["-m", &m(), "-f", "/dev/zero", "-p", "hi"],
            &["-f", "/dev/zero"],
        );
    }

    #[test]
    fn hostile_flag_temp_nan() {
        flag_case(&["-m", &m(), "-p", "hi", "--temp", "nan"], &["--temp"]);
    }

    #[test]
    fn hostile_flag_top_p_2() {
        flag_case(&["-m", &m(), "-p", "hi", "--top-p", "2"], &["--top-p"]);
    }

    #[test]
    fn hostile_flag_min_p_2() {
        flag_case(&["-m", &m(), "-p", "hi", "--min-p", "2"], &["--min-p"]);
    }

    #[test]
    fn hostile_flag_repeat_penalty_nan() {
        flag_case(
            &["-m", &m(), "-p", "hi", "--repeat-penalty", "nan"],
            &["--repeat-penalty"],
        );
    }

    #[test]
    fn hostile_flag_bench_lengths_u64_max() {
        flag_case(
            &["bench", "-m", &m(), "--lengths", "18446744073709551615"],
            &["--lengths"],
        );
    }

    #[test]
    fn hostile_flag_bench_lengths_1m() {
        flag_case(&["bench", "-m", &m(), "--lengths", "1m"], &["--lengths"]);
    }
}

/// The prefix-cache test's command: a ~370-token document with a passkey, `GemFilter` on with a
/// prefix of 22 layers (layer 21 finds the passkey, measured), greedy; the answer holds it.
fn cache_run(dir: &Path, doc: &Path) -> Output {
    let mut c = cached(dir);
    c.args([
        "-m",
        smollm2().to_str().unwrap(),
        "-f",
        doc.to_str().unwrap(),
        "-p",
        "What is the secret passkey for the vault?",
        "-n",
        "16",
        "--temp",
        "0",
        "--gem-layer",
        "21",
        "--gem-topk",
        "128",
        // One thread: ggml's spinning workers slow down 10x on a busy 2-core machine.
        "-t",
        "1",
    ]);
    run_limited(c, Duration::from_mins(2)).0
}

const NEEDLE: &str = "The secret passkey for the vault is 48213.";

fn only_prefix(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// A damaged prefix cache (truncated, garbage, 1 MB of 0xff in its tensor data, no check
/// file) is rebuilt with a notice and the run answers right; an orphan temp file of a dead
/// writer is removed, a live writer's is kept; a healthy cache is used silently.
#[test]
fn hostile_damaged_prefix_cache_is_rebuilt() {
    let d = tmpdir("hostile-cache");
    let doc = write(&d, "doc.txt", haystack(1500, NEEDLE, 0.5).as_bytes());
    let answered = |o: &Output, case: &str| {
        assert!(o.status.success(), "{case}: {}", stderr(o));
        assert!(
            stdout(o).contains("48213"),
            "{case}: answer {:?}",
            stdout(o)
        );
    };
    let o = cache_run(&d, &doc);
    answered(&o, "first run");
    let prefix = only_prefix(&d);
    let good = std::fs::read(&prefix).unwrap();
    let check = gemfilter::engine::prefix::check_path(&prefix);
    assert!(check.exists(), "no check file beside {}", prefix.display());
    let meta = gemfilter::gguf_info::read(&prefix).unwrap();

    let damage: Vec<(&str, Box<dyn Fn(&Path)>)> = vec![
        (
            "truncated",
            Box::new(|p: &Path| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(good.len() as u64 / 3).unwrap();
            }),
        ),
        (
            "garbage",
            Box::new(|p: &Path| std::fs::write(p, vec![0x5au8; good.len()]).unwrap()),
        ),
        (
            "1 MB of 0xff in its tensor data",
            Box::new(|p: &Path| {
                let mut b = good.clone();
                let at = meta.data_offset as usize + (b.len() - meta.data_offset as usize) / 3;
                b[at..at + (1 << 20)].fill(0xff);
                std::fs::write(p, b).unwrap();
            }),
        ),
    ];
    for (case, hurt) in &damage {
        hurt(&prefix);
        let o = cache_run(&d, &doc);
        answered(&o, case);
        assert!(
            stderr(&o).contains("rebuilding it"),
            "{case}: no rebuild notice: {}",
            stderr(&o)
        );
        assert_eq!(
            std::fs::read(&prefix).unwrap(),
            good,
            "{case}: not rebuilt as before"
        );
    }

    // No check file (an older gemfilter's cache), with orphan temp files beside it: a dead
    // writer's (idle a minute, new and old naming) goes, a live writer's stays.
    std::fs::remove_file(&check).unwrap();
    let cache = d.join("cache");
    let name = prefix.file_name().unwrap().to_str().unwrap().to_owned();
    let dead = cache.join(format!("{name}.tmp.4294967294.0"));
    let legacy = cache.join(name.replace(".gguf", ".tmp4294967293"));
    let live = cache.join(format!("{name}.tmp.{}.0", std::process::id()));
    for p in [&dead, &legacy, &live] {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(1 << 20).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_mins(1))
            .unwrap();
    }
    let o = cache_run(&d, &doc);
    answered(&o, "no check file");
    assert!(stderr(&o).contains("no check file"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&prefix).unwrap(), good);
    assert!(!dead.exists() && !legacy.exists(), "orphan temp files left");
    assert!(live.exists(), "a live writer's temp file was removed");
    // And a healthy cache is used as it is.
    let o = cache_run(&d, &doc);
    answered(&o, "healthy cache");
    assert!(!stderr(&o).contains("prefix"), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

/// Two writers at once with an empty cache: both answer, and the cache holds one complete
/// prefix with a matching check file and no temp files.
#[test]
fn hostile_two_prefix_writers_at_once() {
    let d = tmpdir("hostile-writers");
    let doc = write(&d, "doc.txt", haystack(1500, NEEDLE, 0.5).as_bytes());
    let spawn = || {
        let d = d.clone();
        let doc = doc.clone();
        std::thread::spawn(move || cache_run(&d, &doc))
    };
    let (a, b) = (spawn(), spawn());
    for o in [a.join().unwrap(), b.join().unwrap()] {
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("48213"), "{}", stdout(&o));
    }
    let prefix = only_prefix(&d);
    gemfilter::engine::prefix::verify(&prefix).unwrap();
    let left: Vec<_> = std::fs::read_dir(d.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// On a GPU, a context far too large for the card is one clean line.
#[test]
#[ignore = "needs a GPU: scripts/gpu.sh test (docs/gpu.md)"]
fn hostile_gpu_context_too_large_is_one_line() {
    assert!(
        gemfilter::engine::ffi::gpu_names().is_some(),
        "no GPU found: this test runs on a GPU machine with a CUDA build (scripts/gpu.sh test)"
    );
    let d = tmpdir("hostile-oom");
    // A synthetic model whose training context allows a KV cache of terabytes.
    let model = synth(&d, "tiny-llama");
    let (o, _) = run_limited(
        {
            let mut c = gemfilter();
            c.args([
                "-m",
                model.to_str().unwrap(),
                "-p",
                "hi",
                "-n",
                "1",
                "-c",
                "100000000",
                "-ngl",
                "99",
                "--gem",
                "off",
            ]);
            c
        },
        Duration::from_mins(2),
    );
    assert_clean_error(&o, &["memory", "context", "-c"], "-c 100000000 on a GPU");
    std::fs::remove_dir_all(&d).unwrap();
}
