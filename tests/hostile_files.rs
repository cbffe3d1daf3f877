//! Files gemfilter writes or reads for the user, attacked through the binary: a prompt cache
//! path that is a document, a planted symlink, a FIFO; forged or truncated cache files; a copy
//! of Cargo.toml as the presets file; FIFOs as presets file, haystack or `synth -o`. Each case
//! ends in the right answer or one `error:` line, and no file outside gemfilter's own changes
//! (bytes compared before and after). Everything lives in the test's own temp directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::util::*;

const NEEDLE: &str = "The secret passkey for the vault is 48213.";
const QUESTION: &str = "What is the secret passkey for the vault?";

/// A ~370-token document with the passkey.
fn doc(dir: &Path) -> PathBuf {
    write(dir, "doc.txt", haystack(1500, NEEDLE, 0.5).as_bytes())
}

/// `c` asking one `-cnv` question about `doc` on SmolLM2 (stdin closed: one turn), greedy, at
/// its measured layer 21 with k 128.
fn ask(mut c: Command, doc: &Path) -> Command {
    c.args([
        "-m",
        smollm2().to_str().unwrap(),
        "-f",
        doc.to_str().unwrap(),
    ])
    .args(["-cnv", "-p", QUESTION, "-n", "24", "--temp", "0", "-t", "1"])
    .args([
        "--gem-calibrate",
        "off",
        "--gem-layer",
        "21",
        "--gem-topk",
        "128",
    ]);
    c
}

/// One question about `doc` with `--prompt-cache cache`, prefix models cached in the test's
/// directory.
fn cnv(dir: &Path, doc: &Path, cache: &Path) -> Output {
    let mut c = ask(cached(dir), doc);
    c.args(["--prompt-cache", cache.to_str().unwrap()]);
    run_within(c, None, Duration::from_mins(2)).0
}

/// A successful turn that answered the passkey.
#[track_caller]
fn assert_answered(o: &Output) {
    assert!(o.status.success(), "{}", stderr(o));
    assert!(stdout(o).contains("48213"), "answer: {}", stdout(o));
}

/// Every file under `dir` (not following links) with its bytes, or what it is.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            v.extend(snapshot(&p));
        } else if md.is_file() {
            v.push((p.clone(), std::fs::read(&p).unwrap()));
        } else if md.file_type().is_symlink() {
            let to = std::fs::read_link(&p).unwrap();
            v.push((p, to.into_os_string().into_encoded_bytes()));
        } else {
            v.push((p, b"special".to_vec()));
        }
    }
    v.sort();
    v
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

/// The prompt cache's checksum of its KV file (word-wise FNV-1a 64 over the bytes, then the
/// size), so a test can forge a header that matches a damaged KV file.
fn kv_seal(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut step = |x: u64| h = (h ^ x).wrapping_mul(0x0100_0000_01b3);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        step(u64::from_le_bytes(w.try_into().unwrap()));
    }
    for &b in words.remainder() {
        step(u64::from(b));
    }
    step(bytes.len() as u64);
    h
}

/// Replace `cache`'s KV file by `kv` and re-seal the header so the checksum matches: a forged
/// cache only the structural check can refuse.
fn forge(cache: &Path, kv: &[u8]) {
    let kv_path = PathBuf::from(format!("{}.kv", cache.display()));
    std::fs::write(&kv_path, kv).unwrap();
    let bytes = std::fs::read(cache).unwrap();
    let first = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let second = first + bytes[first..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[first..second]).unwrap();
    header["kv_bytes"] = serde_json::json!(kv.len());
    header["kv_hash"] = serde_json::json!(kv_seal(kv));
    let mut out = bytes[..first].to_vec();
    out.extend(serde_json::to_vec(&header).unwrap());
    out.push(b'\n');
    out.extend(&bytes[second..]);
    std::fs::write(cache, out).unwrap();
}

#[test]
fn prompt_cache_never_replaces_a_file_that_is_not_ours() {
    let d = tmpdir("files-not-ours");
    let doc = doc(&d);
    // The document itself, a model-like file, a planted symlink (dangling and to a victim), a
    // FIFO and a user's file at FILE.kv: each refused in one line, nothing changed.
    let model_like = write(&d, "model.gguf", b"GGUF\x03\x00\x00\x00 not really a model");
    let victim = write(&d, "victim.txt", b"precious");
    std::os::unix::fs::symlink(&victim, d.join("link.cache")).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling.cache")).unwrap();
    std::os::unix::fs::symlink(&victim, d.join("kvlink.cache.kv")).unwrap();
    mkfifo(&d.join("fifo.cache"));
    mkfifo(&d.join("kvfifo.cache.kv"));
    write(&d, "notes.kv", b"my notes about kv");
    std::fs::create_dir(d.join("dir.cache")).unwrap();
    let cases: [(&str, &str); 9] = [
        ("doc.txt", "is not a gemfilter prompt cache"),
        ("model.gguf", "is not a gemfilter prompt cache"),
        ("link.cache", "is a symbolic link"),
        ("dangling.cache", "is a symbolic link"),
        ("kvlink.cache", "is a symbolic link"),
        ("fifo.cache", "is a FIFO"),
        ("kvfifo.cache", "is a FIFO"),
        ("notes", "is not a llama.cpp state file"),
        ("dir.cache", "is a directory"),
    ];
    let before = snapshot(&d);
    for (name, what) in cases {
        let o = cnv(&d, &doc, &d.join(name));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{name}: {err}");
        assert!(
            errors[0].contains(what) && errors[0].contains("refusing to replace it"),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        let after: Vec<_> = snapshot(&d)
            .into_iter()
            .filter(|(p, _)| !p.starts_with(d.join("cache")))
            .collect();
        assert_eq!(after, before, "{name} changed a file");
    }
    assert!(std::fs::read(&model_like).unwrap().starts_with(b"GGUF\x03"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_forged_or_damaged_prompt_cache_is_rebuilt_and_answers() {
    let d = tmpdir("files-forged");
    let doc = doc(&d);
    let cache = d.join("doc.gfcache");
    let kv_path = d.join("doc.gfcache.kv");
    let o = cnv(&d, &doc, &cache);
    assert_answered(&o);
    assert!(
        stderr(&o).contains("saved the document's filter state"),
        "{}",
        stderr(&o)
    );
    let o = cnv(&d, &doc, &cache);
    assert_answered(&o);
    assert!(
        stderr(&o).contains("loaded the document's filter state"),
        "{}",
        stderr(&o)
    );
    let good = std::fs::read(&kv_path).unwrap();
    let good_cache = std::fs::read(&cache).unwrap();
    // Only our two files are there: the temp files were renamed into place.
    let names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("doc.gfcache"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Offsets in the KV file: magic, version, token count, the tokens, the stream count and
    // the cell count, then the first cell (position, sequence count, sequence id).
    let n_tok = u32::from_le_bytes(good[8..12].try_into().unwrap()) as usize;
    let cell0 = 12 + 4 * n_tok + 8;
    let set_pos = |cell: usize, pos: i32| {
        let mut b = good.clone();
        let at = cell0 + cell * 12;
        b[at..at + 4].copy_from_slice(&pos.to_le_bytes());
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() * 2 / 3].to_vec(),
            "truncated",
        ),
        ("far position", set_pos(3, 1_000_000), "position 1000000"),
        ("negative position", set_pos(0, -5), "position -5"),
        (
            "duplicate position",
            set_pos(2, 1),
            "two cells at position 1",
        ),
        ("empty", Vec::new(), "truncated"),
    ];
    for (case, kv, what) in cases {
        std::fs::write(&cache, &good_cache).unwrap();
        forge(&cache, &kv);
        let o = cnv(&d, &doc, &cache);
        let err = stderr(&o);
        assert_answered(&o);
        let notice: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("rebuilding it"))
            .collect();
        assert_eq!(notice.len(), 1, "{case}: {err}");
        assert!(notice[0].contains(what), "{case}: {err}");
        assert!(
            !err.contains("GGML_ASSERT") && !err.contains("error:"),
            "{case}: {err}"
        );
        // The rebuilt state replaced the damaged one.
        assert!(
            err.contains("saved the document's filter state"),
            "{case}: {err}"
        );
        assert_eq!(
            std::fs::read(&kv_path).unwrap(),
            good,
            "{case}: not rebuilt"
        );
    }
    // Healed: the next run loads it.
    let o = cnv(&d, &doc, &cache);
    assert_answered(&o);
    assert!(
        stderr(&o).contains("loaded the document's filter state"),
        "{}",
        stderr(&o)
    );
    // A cache of the first format (no magic line) is ours: rebuilt, not refused.
    std::fs::write(&cache, b"{\"format\":1,\"identity\":{\"model\":\"x\"}}\n").unwrap();
    let o = cnv(&d, &doc, &cache);
    assert_answered(&o);
    assert!(stderr(&o).contains("older gemfilter") && stderr(&o).contains("rebuilding it"));
    std::fs::remove_dir_all(&d).unwrap();
}

/// Writing the prefix model in conversation mode prints one notice, not llama.cpp's log; an
/// empty `GEMFILTER_CACHE` is unset (the cache goes under `$HOME/.cache`, never the current
/// directory).
#[test]
fn empty_cache_variable_is_unset_and_prefix_writing_is_quiet() {
    let d = tmpdir("files-cache-env");
    let doc = doc(&d);
    let work = d.join("cwd");
    let home = d.join("home");
    std::fs::create_dir_all(&work).unwrap();
    let mut c = gemfilter();
    c.current_dir(&work)
        .env("GEMFILTER_CACHE", "")
        .env("HOME", &home)
        .env_remove("XDG_CACHE_HOME");
    let c = ask(c, &doc);
    let o = run_within(c, None, Duration::from_mins(2)).0;
    assert_answered(&o);
    let err = stderr(&o);
    assert!(err.contains("prefix of the model"), "{err}");
    assert!(err.lines().count() < 12, "llama.cpp's log leaked: {err}");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "wrote into the current directory"
    );
    let cached: Vec<_> = std::fs::read_dir(home.join(".cache/gemfilter"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 2, "the prefix and its check file: {cached:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn presets_file_that_is_not_ours_is_never_written_or_hung_on() {
    let d = tmpdir("files-presets");
    let m = smollm2();
    let cargo = write(
        &d,
        "Cargo.toml",
        &std::fs::read(root().join("Cargo.toml")).unwrap(),
    );
    let before = std::fs::read(&cargo).unwrap();
    // Calibration with --write into a copy of Cargo.toml: one error line, the file unchanged.
    let mut c = gemfilter();
    c.env("GEMFILTER_PRESETS", &cargo)
        .args(["calibrate", "-m", m.to_str().unwrap(), "--write"])
        .args([
            "--lengths",
            "600",
            "--depths",
            "50",
            "--gem-topk",
            "64",
            "-t",
            "2",
        ]);
    let o = run_within(c, None, Duration::from_mins(2)).0;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("is not a gemfilter presets file"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&cargo).unwrap(),
        before,
        "Cargo.toml copy changed"
    );
    // A FIFO, a NaN fraction and a TOML error: one line each, at once.
    let fifo = d.join("presets.fifo");
    mkfifo(&fifo);
    let nan = write(
        &d,
        "nan.toml",
        b"[fallback]\nlayer_fraction = nan\ntop_k = 64\nscoring = 'reference'\n",
    );
    let broken = write(
        &d,
        "broken.toml",
        b"[[model]]\nlabel = 'x'\nfilter_layer = 'seven'\n",
    );
    let big = write(&d, "big.toml", &vec![b'#'; 2 << 20]);
    for (p, what) in [
        (&fifo, "is a FIFO, not a regular file"),
        (&nan, "layer_fraction NaN is not between 0 and 1"),
        (&broken, "line 3, column 16: invalid type"),
        (&big, "larger than 1 MiB"),
    ] {
        let mut c = gemfilter();
        c.env("GEMFILTER_PRESETS", p)
            .args(["-m", m.to_str().unwrap(), "-p", "hi", "-n", "1"]);
        let o = run_within(c, None, Duration::from_secs(30)).0;
        assert_one_error(&o, what);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn haystack_and_synth_output_must_be_regular_files() {
    let d = tmpdir("files-special");
    let fifo = d.join("hay.fifo");
    mkfifo(&fifo);
    let mut c = gemfilter();
    c.args([
        "niah",
        "-m",
        smollm2().to_str().unwrap(),
        "--haystack",
        fifo.to_str().unwrap(),
    ])
    .args(["--lengths", "600", "--depths", "50"]);
    let o = run_within(c, None, Duration::from_secs(30)).0;
    assert_one_error(&o, "is a FIFO, not a regular file");
    // synth -o: a FIFO or a symlink is refused; a write that fails half-way (a file size limit)
    // removes only its own temp file and leaves the file that was there.
    let out_fifo = d.join("out.fifo");
    mkfifo(&out_fifo);
    let victim = write(&d, "victim.gguf", b"precious");
    let link = d.join("link.gguf");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for (p, what) in [(&out_fifo, "is a FIFO"), (&link, "is a symbolic link")] {
        let mut c = gemfilter();
        c.args(["synth", "--shape", "tiny-qwen2", "-o", p.to_str().unwrap()]);
        let o = run_within(c, None, Duration::from_secs(30)).0;
        assert_one_error(&o, what);
    }
    let before = snapshot(&d);
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "trap '' XFSZ; ulimit -f 64; exec \"$0\" synth --shape tiny-qwen2 -o \"$1\"",
        env!("CARGO_BIN_EXE_gemfilter"),
        victim.to_str().unwrap(),
    ]);
    let o = run_within(c, None, Duration::from_mins(1)).0;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("victim.gguf"),
        "{err}"
    );
    assert_eq!(snapshot(&d), before, "a failed synth changed or left files");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Self-calibration edits the presets file: the user's comments and keys stay, the run's
/// one-off `--gem-topk` is not stored as the model's default, and a calibration that recalls
/// nothing is never stored (the file stays byte-identical). A random-weight model keeps it quick:
/// at a tiny k it recalls nothing; at a large k it recalls by chance.
#[test]
fn self_calibration_keeps_the_users_presets_and_stores_no_failure_or_one_off_k() {
    let d = tmpdir("files-selfcal");
    let model = synth(&d, "tiny-qwen2");
    let body = b"# my own notes\n[[model]]\nlabel = 'mine'\nname = 'some-other-model'\nfilter_layer = 3\nmy_key = 'kept'\n";
    let presets = write(&d, "presets.toml", body);
    let doc = doc(&d);
    let calibrate = |k: &str| {
        let mut c = cached(&d);
        c.env("GEMFILTER_PRESETS", &presets)
            .args(["-m", model.to_str().unwrap(), "-f", doc.to_str().unwrap()])
            .args(["-p", QUESTION, "-n", "2", "--temp", "0", "-t", "2"])
            .args(["--gem-calibrate", "force", "--gem-topk", k]);
        run_within(c, None, Duration::from_mins(2)).0
    };
    let o = calibrate("32");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("failed (needle recall 0.0"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&presets).unwrap(),
        body,
        "a failed calibration was stored"
    );
    let o = calibrate("8192");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("stored in"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&presets).unwrap();
    assert!(
        text.starts_with("# my own notes\n") && text.contains("my_key = 'kept'"),
        "{text}"
    );
    let file = gemfilter::presets::parse(&text, "written").unwrap();
    assert_eq!(file.models.len(), 2, "{text}");
    let e = &file.models[1];
    assert!(e.label.contains("calibrated"), "{text}");
    assert_eq!(e.top_k, None, "the run's --gem-topk was stored: {text}");
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(names.is_empty(), "temp files left: {names:?}");
    std::fs::remove_dir_all(&d).unwrap();
}
