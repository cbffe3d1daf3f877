//! The option table against llama.cpp's own list (`common/arg.cpp`, vendored), and llama-cli
//! command lines through the real binary.

use gemfilter::cli::defs::{self, Does};

use crate::util::*;

/// One `common_arg` of arg.cpp: its names, negative names, whether it takes a value, its env.
#[derive(Debug)]
struct Upstream {
    names: Vec<String>,
    neg: Vec<String>,
    takes_value: bool,
    env: Option<String>,
}

fn quoted(s: &str) -> Vec<String> {
    s.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(a) = rest.find("/*") {
        out.push_str(&rest[..a]);
        rest = rest[a..].find("*/").map_or("", |b| &rest[a + b + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every option llama-cli gets: examples CLI, COMPLETION or COMMON (or none given, which is
/// COMMON), not excluded from CLI.
fn upstream() -> Vec<Upstream> {
    let path = root().join("vendor/llama-cpp-sys-2/llama.cpp/common/arg.cpp");
    let src = std::fs::read_to_string(&path).expect("vendored arg.cpp");
    let mut out = Vec::new();
    for chunk in src.split("add_opt(common_arg(").skip(1) {
        let body = strip_comments(chunk.split("\n    add_opt(").next().unwrap_or(""));
        let body = body.trim_start();
        assert!(
            body.starts_with('{'),
            "unparsed option: {}",
            &body[..60.min(body.len())]
        );
        let close = body.find('}').unwrap();
        let names = quoted(&body[..close]);
        let rest = body[close + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        let neg = if rest.starts_with('{') {
            quoted(&rest[..rest.find('}').unwrap()])
        } else {
            Vec::new()
        };
        let examples = body
            .find(".set_examples(")
            .map(|i| &body[i..i + body[i..].find(')').unwrap()]);
        let wanted = match examples {
            None => true,
            Some(e) => {
                e.contains("mmproj_examples")
                    || [
                        "LLAMA_EXAMPLE_CLI",
                        "LLAMA_EXAMPLE_COMPLETION",
                        "LLAMA_EXAMPLE_COMMON",
                    ]
                    .iter()
                    .any(|x| e.contains(x))
            }
        };
        let excluded = body.find(".set_excludes(").is_some_and(|i| {
            body[i..i + body[i..].find(')').unwrap()].contains("LLAMA_EXAMPLE_CLI,")
        });
        if !wanted || excluded {
            continue;
        }
        let lambda = body.find("[](common_params").expect("handler");
        let params = &body[lambda..lambda + body[lambda..].find(')').unwrap()];
        let second = params.split(',').nth(1).map(str::trim);
        let takes_value = second.is_some_and(|p| !p.starts_with("bool"));
        let env = body
            .find(".set_env(\"")
            .map(|i| quoted(&body[i..i + body[i..].find(')').unwrap()])[0].clone());
        out.push(Upstream {
            names,
            neg,
            takes_value,
            env,
        });
    }
    out
}

#[test]
fn every_llama_cli_option_is_accepted_or_refused_by_name() {
    let up = upstream();
    assert!(
        up.len() > 150,
        "only {} options parsed from arg.cpp",
        up.len()
    );
    let mut missing = Vec::new();
    for u in &up {
        for (n, positive) in u
            .names
            .iter()
            .map(|n| (n, true))
            .chain(u.neg.iter().map(|n| (n, false)))
        {
            match defs::find(n) {
                None => missing.push(n.clone()),
                Some((opt, pos)) => {
                    assert_eq!(pos, positive, "{n}: polarity");
                    assert_eq!(opt.value.is_some(), u.takes_value, "{n}: takes a value?");
                    assert_eq!(opt.env, u.env.as_deref(), "{n}: environment variable");
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "llama-cli options missing from the table: {missing:?}"
    );
    let (accepted, refused) = defs::counts();
    assert_eq!(accepted + refused, defs::TABLE.len());
    let applied = defs::TABLE
        .iter()
        .filter(|o| matches!(o.does, Does::Clap(_)))
        .count();
    eprintln!(
        "llama-cli options: {} in arg.cpp, {} in the table; accepted {accepted} ({:.1}%; applied {applied}), refused {refused} ({:.1}%)",
        up.len(),
        defs::TABLE.len(),
        100.0 * accepted as f64 / defs::TABLE.len() as f64,
        100.0 * refused as f64 / defs::TABLE.len() as f64
    );
    // Nothing in the table that llama.cpp no longer has.
    for o in defs::TABLE {
        assert!(
            up.iter().any(|u| u.names.iter().any(|n| n == o.names[0])),
            "{} is not a llama-cli option in arg.cpp",
            o.names[0]
        );
    }
}

#[test]
fn options_doc_is_generated_from_the_table() {
    let committed = std::fs::read_to_string(root().join("docs/options.md")).unwrap_or_default();
    let generated = gemfilter::cli::options_doc();
    assert!(
        committed == generated,
        "docs/options.md is stale: regenerate it with `gemfilter --help-options > docs/options.md`"
    );
    let o = gemfilter().arg("--help-options").output().unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o), generated);
}

#[test]
fn refused_options_are_named_with_the_reason() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    for (args, what) in [
        (
            vec!["-mu", "https://example.com/model.gguf"],
            "-mu: downloads are not supported",
        ),
        (
            vec!["-m", m, "-p", "hi", "--mmproj", "x.gguf"],
            "--mmproj: multimodal",
        ),
        (
            vec![
                "-m",
                m,
                "-p",
                "hi",
                "--server-base",
                "http://localhost:8080",
            ],
            "--server-base: not supported",
        ),
        (vec!["-m", m, "-p", "hi", "-cz"], "unknown option '-cz'"),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
        assert!(
            e.starts_with("error: ") && e.contains(what),
            "{args:?}: {e}"
        );
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn multi_letter_names_and_llama_values() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    // -co is --color, never -c o; -fa takes llama.cpp's words; -t above the cores runs with a
    // warning; a bare -fa at the end wants its value, as in llama.cpp.
    let o = run(&[
        "-m",
        m,
        "-p",
        "The capital of France is",
        "-n",
        "4",
        "--temp",
        "0",
        "-no-cnv",
        "-co",
        "on",
        "-fa",
        "1",
        "-t",
        "64",
        "-mg",
        "0",
        "--prio",
        "2",
        "--gem",
        "off",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("-t 64 is more threads than"), "{e}");
    assert!(e.contains("--prio has no effect here"), "{e}");
    assert!(
        stdout(&o).starts_with("The capital of France is"),
        "{}",
        stdout(&o)
    );
    let o = run(&["-m", m, "-p", "hi", "-fa"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("-fa expects a value"), "{}", stderr(&o));
    let o = run(&["-m", m, "-p", "hi", "-fa", "maybe"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("--flash-attn"), "{}", stderr(&o));
}

#[test]
fn environment_applies_under_the_command_line() {
    let m = smollm2();
    let base = [
        "-p",
        "Count: one, two,",
        "--temp",
        "0",
        "-no-cnv",
        "--gem",
        "off",
    ];
    let mut c = gemfilter();
    c.args(base)
        .env("LLAMA_ARG_MODEL", &m)
        .env("LLAMA_ARG_N_PREDICT", "3");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let three = stdout(&o);
    let mut c = gemfilter();
    c.args(base)
        .args(["-n", "6"])
        .env("LLAMA_ARG_MODEL", &m)
        .env("LLAMA_ARG_N_PREDICT", "3");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let six = stdout(&o);
    assert!(
        six.len() > three.len() && six.starts_with(three.trim_end()),
        "{three:?} vs {six:?}"
    );
    assert!(
        stderr(&o).contains("LLAMA_ARG_N_PREDICT is set, but the command line's -n overrides it")
    );
}

/// SmolLM2's output with `--gem off`, `base` and then `extra`; the run must succeed.
fn output(base: &[&str], extra: &[&str]) -> String {
    let m = smollm2();
    let mut args = vec!["-m", m.to_str().unwrap(), "--gem", "off"];
    args.extend_from_slice(base);
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
    stdout(&o)
}

/// The answer alone (raw completion, no echo) of SmolLM2 to `prompt` with `extra` options.
fn answer(prompt: &str, extra: &[&str]) -> String {
    output(&["-p", prompt, "-no-cnv", "--no-display-prompt"], extra)
}

#[test]
fn grammars_and_json_schemas_constrain_the_answer() {
    let a = answer(
        "Is the sky blue? Answer:",
        &[
            "-n",
            "8",
            "--temp",
            "0",
            "--grammar",
            r#"root ::= "yes" | "no""#,
        ],
    );
    assert!(["yes", "no"].contains(&a.trim()), "{a:?}");
    let a = answer(
        "Favourite colour:",
        &[
            "-n",
            "8",
            "--temp",
            "0.8",
            "-s",
            "5",
            "-j",
            r#"{"enum": ["red", "green"]}"#,
        ],
    );
    assert!(["\"red\"", "\"green\""].contains(&a.trim()), "{a:?}");
    let d = tmpdir("grammar");
    let g = write(&d, "digits.gbnf", b"root ::= [0-9] [0-9] [0-9]");
    let a = answer(
        "The year was",
        &[
            "-n",
            "8",
            "--temp",
            "0",
            "--grammar-file",
            g.to_str().unwrap(),
        ],
    );
    assert!(
        a.trim().len() == 3 && a.trim().chars().all(|c| c.is_ascii_digit()),
        "{a:?}"
    );
    let m = smollm2();
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "x",
        "--gem",
        "off",
        "-j",
        "{not json",
    ]);
    assert_one_error(&o, "-j: not a JSON schema");
}

#[test]
fn sampler_order_bias_and_seeds() {
    let prompt = "Once upon a time";
    let greedy = answer(prompt, &["-n", "10", "--temp", "0"]);
    // Top-k 1 before the temperature keeps the most likely token: greedy, whatever the seed.
    for order in [["--samplers", "top_k;temperature"], ["--sampler-seq", "kt"]] {
        let a = answer(
            prompt,
            &[
                "-n", "10", "--temp", "1.5", "--top-k", "1", "-s", "3", order[0], order[1],
            ],
        );
        assert_eq!(a, greedy, "{order:?}");
    }
    // The full chain with a seed is reproducible, and the seed matters.
    let chain = [
        "-n",
        "10",
        "--temp",
        "0.9",
        "--dry-multiplier",
        "0.8",
        "--xtc-probability",
        "0.5",
        "--typical",
        "0.9",
        "--top-nsigma",
        "1.5",
        "--presence-penalty",
        "0.5",
        "--frequency-penalty",
        "0.2",
        "--dynatemp-range",
        "0.3",
    ];
    let with_seed = |s: &str| {
        let mut v = chain.to_vec();
        v.extend(["-s", s]);
        answer(prompt, &v)
    };
    let a = with_seed("3");
    assert_eq!(a, with_seed("3"));
    assert!((4..9).map(|s| with_seed(&s.to_string())).any(|b| b != a));
    let a = answer(prompt, &["-n", "10", "--mirostat", "2", "-s", "3"]);
    assert!(!a.trim().is_empty());
    // A large bias on one token makes it every token.
    let a = answer("Hello", &["-n", "3", "--temp", "0", "-l", "42+100"]);
    let a = a.trim_end_matches('\n');
    let third = a.len() / 3;
    assert!(third > 0 && a == a[..third].repeat(3), "{a:?}");
    let m = smollm2();
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "x",
        "--samplers",
        "top_k;magic",
    ]);
    assert_one_error(&o, "--samplers: unknown sampler 'magic'");
    let o = run(&["-m", m.to_str().unwrap(), "-p", "x", "-l", "42*3"]);
    assert_one_error(&o, "-l: invalid logit bias");
}

#[test]
fn rope_and_system_prompt_files_reach_the_model() {
    let prompt = "Once upon a time";
    let base = answer(prompt, &["-n", "10", "--temp", "0"]);
    let scaled = answer(
        prompt,
        &[
            "-n",
            "10",
            "--temp",
            "0",
            "--rope-scaling",
            "linear",
            "--rope-scale",
            "4",
        ],
    );
    assert_ne!(base, scaled);
    let d = tmpdir("sysf");
    let f = write(&d, "sys.txt", b"You answer in French.");
    let m = smollm2();
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "Say hello.",
        "-sysf",
        f.to_str().unwrap(),
        "-st",
        "--gem",
        "off",
        "-n",
        "8",
        "--temp",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Bonjour"), "{}", stdout(&o));
    // -sp prints the end-of-turn marker a chat model emits.
    let o = run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "Say hi.",
        "-st",
        "--gem",
        "off",
        "-n",
        "40",
        "--temp",
        "0",
        "-sp",
    ]);
    // As llama-completion -sp prints it when the model ends its turn (--ignore-eos would ban it).
    assert!(stdout(&o).contains("<|im_end|>"), "{}", stdout(&o));
}

#[test]
fn chat_template_options_reach_the_prompt() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    let chat = |extra: &[&str]| {
        output(
            &["-p", "Say hello.", "-st", "-n", "8", "--temp", "0"],
            extra,
        )
    };
    let builtin = chat(&[]);
    assert_eq!(chat(&["--no-jinja"]), builtin);
    // The model's template through llama.cpp's jinja engine adds SmolLM2's default system
    // prompt, which the built-in formatter does not know.
    let jinja = chat(&["--jinja"]);
    assert_ne!(jinja, builtin);
    let d = tmpdir("chat-template");
    let t = write(
        &d,
        "t.jinja",
        b"{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n",
    );
    let own = chat(&["--jinja", "--chat-template-file", t.to_str().unwrap()]);
    assert_ne!(own, jinja);
    let o = run(&[
        "-m",
        m,
        "-p",
        "x",
        "--chat-template-file",
        "/nonexistent/t.jinja",
    ]);
    assert_one_error(&o, "--chat-template-file: cannot read");
}

const STORY: &str = "Once upon a time, in a small village by the sea, there lived";

/// `--lora`, `--control-vector` and `--override-kv` change the answer, a zero scale leaves it
/// as it was, and GemFilter filters with them (with `--lora` on the full model, said once).
#[test]
fn adapters_and_overrides_change_the_answer() {
    let dir = tmpdir("adapters");
    let lora = crate::compat::smollm2_lora(&dir);
    let cvec = crate::compat::smollm2_control_vector(&dir);
    let (lora, cvec) = (lora.to_str().unwrap(), cvec.to_str().unwrap());
    let greedy = ["-n", "16", "--temp", "0"];
    let with = |extra: &[&str]| {
        let mut e = greedy.to_vec();
        e.extend_from_slice(extra);
        answer(STORY, &e)
    };
    let base = with(&[]);
    assert_ne!(with(&["--lora", lora]), base, "the adapter changed nothing");
    assert_eq!(with(&["--lora-scaled", &format!("{lora}:0")]), base);
    assert_ne!(with(&["--control-vector", cvec]), base);
    assert_eq!(
        with(&["--control-vector-scaled", &format!("{cvec}:0")]),
        base
    );
    // A range outside the model's layers applies nothing.
    assert_eq!(
        with(&[
            "--control-vector",
            cvec,
            "--control-vector-layer-range",
            "40",
            "50"
        ]),
        base
    );
    assert_ne!(
        with(&[
            "--override-kv",
            "llama.attention.layer_norm_rms_epsilon=float:0.01"
        ]),
        base
    );

    // GemFilter over a ~2K-token document: LoRA filter pass on the full model, the control
    // vector on the prefix model.
    let doc = write(
        &dir,
        "doc.txt",
        haystack(8000, "The vault code is 4417.", 0.5).as_bytes(),
    );
    let m = smollm2();
    for (extra, notice) in [
        (vec!["--lora", lora], true),
        (vec!["--control-vector", cvec], false),
    ] {
        let mut args = vec![
            "-m",
            m.to_str().unwrap(),
            "-f",
            doc.to_str().unwrap(),
            "-p",
            "What is the vault code?",
            "-n",
            "8",
            "--temp",
            "0",
            "--gem-topk",
            "256",
            "--json",
            "-no-cnv",
        ];
        args.extend(extra);
        let o = cached(&dir).args(&args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let r = json(&o);
        assert_eq!(r["gem"], true, "{r}");
        assert_eq!(r["selected_tokens"], 256, "{r}");
        assert_eq!(
            stderr(&o).contains("--lora: the filter pass runs on the full model"),
            notice,
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn bad_adapters_and_overrides_are_one_line() {
    let dir = tmpdir("bad-adapters");
    let not_gguf = write(&dir, "text.gguf", b"not a gguf file");
    let cvec = crate::compat::smollm2_control_vector(&dir);
    let m = smollm2();
    let m = m.to_str().unwrap();
    let nf = not_gguf.to_str().unwrap();
    let cv = cvec.to_str().unwrap();
    for (extra, what) in [
        (vec!["--lora", "/nonexistent/a.gguf"], "--lora"),
        (
            vec!["--lora", nf],
            "--lora: llama.cpp could not load the adapter",
        ),
        (
            vec!["--lora", cv],
            "--lora: llama.cpp could not load the adapter",
        ),
        (vec!["--lora-scaled", nf], "--lora-scaled: "),
        (vec!["--lora-scaled", "a:b:1"], "is not FNAME:SCALE"),
        (vec!["--control-vector", nf], "--control-vector: "),
        (
            vec!["--control-vector-layer-range", "1"],
            "expects values (START END)",
        ),
        (
            vec!["--control-vector-layer-range", "a", "2"],
            "not a layer number",
        ),
        (
            vec!["--override-kv", "x"],
            "--override-kv: 'x' is not KEY=TYPE:VALUE",
        ),
        (
            vec!["--override-kv", "k=bool:yes"],
            "neither true nor false",
        ),
        (vec!["--override-kv", "k=blob:1"], "unknown type"),
        (vec!["--lora", cv, "--gem-draft", m], "drop --gem-draft"),
    ] {
        let mut args = vec![
            "-m",
            m,
            "-p",
            "hi",
            "-n",
            "2",
            "-no-cnv",
            "--no-display-prompt",
        ];
        if !extra.contains(&"--gem-draft") {
            args.extend(["--gem", "off"]);
        }
        args.extend(extra.iter().copied());
        let o = run(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert_one_error(&o, what);
    }
}

/// `--completion-bash` prints a script bash accepts, whose function completes option names
/// (llama.cpp's and gemfilter's own) and offers GGUF files after `--lora`.
#[test]
fn bash_completion_completes_options_and_files() {
    let o = gemfilter().arg("--completion-bash").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tmpdir("completion");
    let script = write(&dir, "gemfilter.bash", &o.stdout);
    write(&dir, "adapter.gguf", b"");
    write(&dir, "notes.txt", b"");
    let complete = |words: &str| {
        let o = std::process::Command::new("bash")
            .current_dir(&dir)
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
                 _gemfilter_completions; echo \"${{COMPREPLY[*]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_owned()
    };
    assert_eq!(complete("gemfilter --lora-sc"), "--lora-scaled");
    assert_eq!(complete("gemfilter --gem-to"), "--gem-topk");
    assert_eq!(complete("gemfilter -m m.gguf --lora ''"), "adapter.gguf");
    assert_eq!(complete("gemfilter -f n"), "notes.txt");
}

/// Without `--context-shift` a full context ends the answer; with it the answer goes on to -n
/// (256 tokens: llama.cpp's smallest context).
#[test]
fn context_shift_goes_past_a_full_context() {
    let m = smollm2();
    let base = [
        "-m",
        m.to_str().unwrap(),
        "-p",
        STORY,
        "-n",
        "280",
        "--temp",
        "0",
        "-c",
        "256",
        "-no-cnv",
        "--gem",
        "off",
        "--json",
        "--ignore-eos",
    ];
    let record = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        let o = run(&a);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        json(&o)
    };
    let full = record(&[]);
    assert_eq!(full["stop_reason"], "context_full", "{full}");
    assert!(full["generated_tokens"].as_u64().unwrap() < 256, "{full}");
    // Keeping the whole prompt still shifts the generated half.
    let shifted = record(&["--context-shift", "--keep", "-1"]);
    assert_eq!(shifted["stop_reason"], "max_tokens", "{shifted}");
    assert_eq!(shifted["generated_tokens"], 280, "{shifted}");
}

/// `-hf` reads llama.cpp's download cache as llama.cpp does offline: the file it picks answers
/// as with `-m` and as `llama-completion -hf --offline`; a model that is not cached is one line;
/// `-cl` lists the cache as llama-completion does.
#[test]
fn hf_repo_reads_llama_cpp_cache() {
    let dir = tmpdir("hf-cache");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = dir.join("models--test-org--SmolLM2-135M-Instruct-GGUF");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::os::unix::fs::symlink(smollm2(), snap.join("SmolLM2-135M-Instruct-Q4_1.gguf")).unwrap();
    // Q8_0 comes before any other quantization when none is named; this one is empty.
    std::fs::write(snap.join("SmolLM2-135M-Instruct-Q8_0.gguf"), b"").unwrap();
    let base = [
        "-p",
        STORY,
        "-n",
        "8",
        "--temp",
        "0",
        "-t",
        "2",
        "-no-cnv",
        "--no-display-prompt",
    ];
    let with = |cmd: &mut std::process::Command, extra: &[&str]| {
        let o = cmd
            .env("LLAMA_CACHE", &dir)
            .args(base)
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        stdout(&o)
    };
    let hf = ["-hf", "test-org/SmolLM2-135M-Instruct-GGUF:Q4_1"];
    let ours = with(&mut gemfilter(), &[&hf[..], &["--gem", "off"]].concat());
    let by_path = with(
        &mut gemfilter(),
        &["-m", smollm2().to_str().unwrap(), "--gem", "off"],
    );
    assert_eq!(ours, by_path);
    let reference = root().join(".reference/bin/llama-completion");
    let want = with(
        &mut std::process::Command::new(&reference),
        &[&hf[..], &["--offline"]].concat(),
    );
    assert_eq!(ours.trim_end(), want.trim_end());

    for (args, what) in [
        (vec!["-hf", "test-org/other"], "is not in llama.cpp's cache"),
        (
            vec!["-hf", "test-org/SmolLM2-135M-Instruct-GGUF:F16"],
            "with quantization 'F16'",
        ),
        (vec!["-hf", "no-slash:Q4_1"], "invalid repository"),
        (
            vec!["-hff", "x.gguf", "-m", "m.gguf"],
            "give -hf USER/MODEL too",
        ),
    ] {
        let o = gemfilter()
            .env("LLAMA_CACHE", &dir)
            .args(&args)
            .args(["-p", "hi", "-n", "1", "--gem", "off"])
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        let e = stderr(&o);
        assert!(e.lines().count() == 1 && e.contains(what), "{args:?}: {e}");
    }
    // No quantization named: Q8_0 is picked (and this empty one is refused by name).
    let o = gemfilter()
        .env("LLAMA_CACHE", &dir)
        .args(["-hf", "test-org/SmolLM2-135M-Instruct-GGUF", "-p", "hi"])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("Q8_0"),
        "{}",
        stderr(&o)
    );

    let list = |cmd: &mut std::process::Command| {
        let o = cmd.env("LLAMA_CACHE", &dir).arg("-cl").output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        // Numbered in directory order by llama.cpp: compare the entries, not their numbers.
        let mut lines: Vec<String> = stdout(&o)
            .lines()
            .map(|l| l.split_once(". ").map_or(l, |(_, m)| m).to_owned())
            .collect();
        lines.sort();
        lines
    };
    let ours = list(&mut gemfilter());
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert_eq!(ours, list(&mut std::process::Command::new(&reference)));
}

/// llama.cpp's `--vision-gemma-4b-default` preset: its model from the local cache (here a Gemma
/// 3 of another size under the preset's repository name) and its options, the command line's
/// own winning.
#[test]
fn model_presets_read_the_cache() {
    let dir = tmpdir("preset-cache");
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let repo = dir.join("models--ggml-org--gemma-3-4b-it-qat-GGUF");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::os::unix::fs::symlink(gemma3(), snap.join("gemma-3-4b-it-qat-Q4_K_M.gguf")).unwrap();
    let run_with = |args: &[&str]| {
        let o = gemfilter()
            .env("LLAMA_CACHE", &dir)
            .args([
                "-p", STORY, "-n", "8", "--temp", "0", "-no-cnv", "--gem", "off",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let preset = run_with(&["--vision-gemma-4b-default", "-t", "2"]);
    let explicit = run_with(&[
        "-m",
        gemma3().to_str().unwrap(),
        "-c",
        "0",
        "--jinja",
        "-t",
        "2",
    ]);
    assert_eq!(preset, explicit);
    // Not cached: one line naming the preset's repository.
    let o = gemfilter()
        .env("LLAMA_CACHE", &dir)
        .args(["--gpt-oss-20b-default", "-p", "hi"])
        .output()
        .unwrap();
    assert_one_error(
        &o,
        "'gpt-oss-20b-mxfp4.gguf' of ggml-org/gpt-oss-20b-GGUF is not in llama.cpp's cache",
    );
}
