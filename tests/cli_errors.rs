//! Bad input: one clear error line, non-zero exit, no panic, nothing on stdout.

use crate::util::*;

#[test]
fn missing_model_file() {
    let o = run(&["-m", "/nonexistent/model.gguf", "-p", "hi"]);
    assert_one_error(&o, "cannot be read");
}

#[test]
fn model_path_is_a_directory() {
    let d = tmpdir("dir");
    let o = run(&["-m", d.to_str().unwrap(), "-p", "hi"]);
    assert_one_error(&o, "is a directory");
}

#[test]
fn model_is_not_gguf() {
    let d = tmpdir("notgguf");
    let f = write(&d, "x.gguf", b"this is plain text, not a model\n");
    assert_one_error(&run(&["-m", f.to_str().unwrap(), "-p", "hi"]), "not a GGUF");
}

#[test]
fn truncated_gguf() {
    let d = tmpdir("trunc");
    let full = std::fs::read(smollm2()).unwrap();
    let f = write(&d, "half.gguf", &full[..full.len() / 2]);
    assert_one_error(&run(&["-m", f.to_str().unwrap(), "-p", "hi"]), "truncated");
}

#[test]
fn empty_prompt() {
    let m = smollm2();
    assert_one_error(&run(&["-m", m.to_str().unwrap(), "-p", ""]), "empty prompt");
    let d = tmpdir("empty");
    let f = write(&d, "empty.txt", b"  \n");
    assert_one_error(
        &run(&["-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()]),
        "empty prompt",
    );
}

#[test]
fn prompt_longer_than_context() {
    let m = smollm2();
    let d = tmpdir("long");
    let f = write(&d, "doc.txt", haystack(4000, "", 0.5).as_bytes());
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-f",
        f.to_str().unwrap(),
        "-p",
        "Summarise.",
        "-c",
        "256",
    ]);
    assert_one_error(&o, "more than the context size (-c) of 256 tokens");
}

#[test]
fn gem_layer_out_of_range() {
    let m = smollm2();
    let o = run(&["-m", m.to_str().unwrap(), "-p", "hi", "--gem-layer", "30"]);
    assert_one_error(
        &o,
        "--gem-layer 30 is out of range: the model has 30 layers",
    );
}

#[test]
fn gem_topk_zero() {
    let m = smollm2();
    assert_one_error(
        &run(&["-m", m.to_str().unwrap(), "-p", "hi", "--gem-topk", "0"]),
        "--gem-topk must be at least 1",
    );
}

#[test]
fn unreadable_and_non_utf8_prompt_files() {
    let m = smollm2();
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-f",
        "/nonexistent/doc.txt",
        "-p",
        "q",
    ]);
    assert_one_error(&o, "cannot read prompt file");
    let d = tmpdir("latin1");
    let f = write(&d, "latin1.txt", b"caf\xe9 au lait\n");
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-f",
        f.to_str().unwrap(),
        "-p",
        "q",
    ]);
    assert_one_error(&o, "not valid UTF-8");
    // A FIFO as the document is refused at once, never read until it ends.
    let fifo = d.join("doc.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-f",
        fifo.to_str().unwrap(),
        "-p",
        "q",
    ]);
    assert_one_error(&o, "is a FIFO, not a regular file");
}

#[test]
fn unknown_scoring_and_cache_type() {
    let m = smollm2();
    assert_one_error(
        &run(&[
            "-m",
            m.to_str().unwrap(),
            "-p",
            "hi",
            "--gem-scoring",
            "magic",
        ]),
        "magic",
    );
    assert_one_error(
        &run(&["-m", m.to_str().unwrap(), "-p", "hi", "-ctk", "q3_x"]),
        "unknown KV cache type",
    );
}

#[test]
fn sliding_window_layer_is_refused() {
    let g = gemma3();
    let o = run(&["-m", g.to_str().unwrap(), "-p", "hi", "--gem-layer", "4"]);
    assert_one_error(&o, "layer 4 of");
    assert!(
        stderr(&o).contains("sliding-window") && stderr(&o).contains("5, 11, 17"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2_without_panic() {
    let o = run(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("panicked"));
    let o = run(&["-p", "hi"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn unsupported_architecture_is_refused_before_loading() {
    use gemfilter::engine::ffi::gguf::Gguf;
    let d = tmpdir("arch");
    let path = d.join("mamba.gguf");
    let mut g = Gguf::new();
    g.set_str("general.architecture", "mamba").unwrap();
    g.set_u32("mamba.block_count", 4).unwrap();
    std::fs::write(&path, g.meta()).unwrap();
    let o = run(&["-m", path.to_str().unwrap(), "-p", "hi"]);
    assert_one_error(&o, "architecture 'mamba' is not supported by GemFilter");
}

#[test]
fn model_path_that_is_not_a_regular_file() {
    // A device (or a FIFO, which would block the open forever) is refused before it is opened.
    assert_one_error(
        &run(&["-m", "/dev/zero", "-p", "hi"]),
        "is not a regular file",
    );
}

#[test]
fn model_without_block_count_is_named_as_such() {
    // GGUF v3, no tensors, one key: general.architecture = llama.
    let mut gguf = b"GGUF".to_vec();
    gguf.extend(3u32.to_le_bytes());
    gguf.extend(0u64.to_le_bytes());
    gguf.extend(1u64.to_le_bytes());
    let mut value = 5u64.to_le_bytes().to_vec();
    value.extend(b"llama");
    gguf.extend(crate::gguf_fuzz::kv_bytes(
        "general.architecture",
        8,
        &value,
    ));
    let d = tmpdir("no-blocks");
    let path = write(&d, "llama.gguf", &gguf);
    let o = run(&["-m", path.to_str().unwrap(), "-p", "hi"]);
    assert_one_error(&o, "llama.block_count (its number of layers) is missing");
    assert!(!stderr(&o).contains("--gem-layer"), "{}", stderr(&o));
}

#[test]
fn draft_layer_and_prompt_cache_are_named() {
    let q = qwen05();
    let q = q.to_str().unwrap();
    let o = run(&[
        "-m",
        q,
        "-p",
        "hi",
        "--gem-draft",
        q,
        "--gem-draft-layer",
        "999",
    ]);
    assert_one_error(&o, "--gem-draft-layer 999 is out of range");
    let d = tmpdir("pcache-st");
    let cache = d.join("doc.cache");
    let o = run(&[
        "-m",
        q,
        "-p",
        "hi",
        "-st",
        "--prompt-cache",
        cache.to_str().unwrap(),
    ]);
    assert_one_error(
        &o,
        "--prompt-cache keeps the filter state of the -f document: give the document with -f",
    );
    assert!(!cache.exists());
}

#[test]
fn a_draft_with_another_tokenizer_is_refused_before_calibrating_it() {
    let d = tmpdir("draft-cal");
    let o = cached(&d)
        .env("GEMFILTER_PRESETS", d.join("presets.toml"))
        .args(["-m", qwen05().to_str().unwrap(), "-p", "hi"])
        .args(["--gem-draft", smollm2().to_str().unwrap()])
        .args(["--gem-calibrate", "force"])
        .output()
        .unwrap();
    assert_one_error(&o, "tokenizer differs");
    assert!(!stderr(&o).contains("calibrat"), "{}", stderr(&o));
    assert!(!d.join("presets.toml").exists());
}
