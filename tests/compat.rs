//! Token-for-token equality with llama.cpp: `gemfilter --gem off` against llama.cpp's own
//! `llama-completion`, built from the same llama.cpp source by `scripts/reference-llama.sh`
//! (`make compat`, and `make test` before the suite), for the same command line. Every case
//! prints only the generated text (`--no-display-prompt`), with a fixed seed and two threads, and
//! compares it byte for byte: with the same prompt tokens, logits and sampler chain, the same
//! tokens come out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gemfilter::prompt::{self, ChatSettings, PromptInput, Template};

use crate::util;

/// The reference binary; missing, the test fails and says how to build it.
fn reference() -> PathBuf {
    let p = util::root().join(".reference/bin/llama-completion");
    assert!(
        p.exists(),
        "{} is missing: run `make compat` (scripts/reference-llama.sh builds llama.cpp's own tools)",
        p.display()
    );
    p
}

/// A short raw completion prompt that both models continue for well over 32 tokens.
const STORY: &str =
    "Once upon a time, in a small village by the sea, there lived an old fisherman who";

/// The options every case shares: the prompt, 32 tokens, a fixed seed, 2 threads, a small
/// context, and only the generated text on stdout.
fn common(model: &Path, prompt: &str) -> Vec<String> {
    [
        "-m",
        model.to_str().unwrap(),
        "-p",
        prompt,
        "-n",
        "32",
        "-s",
        "42",
        "-t",
        "2",
        "-c",
        "2048",
        "--no-display-prompt",
    ]
    .map(String::from)
    .to_vec()
}

fn run(mut cmd: Command, args: &[String]) -> Output {
    cmd.args(args).stdin(Stdio::null()).output().expect("spawn")
}

/// Run both on `model` with `prompt` and `extra` options and assert the same text.
fn same(model: &Path, prompt: &str, extra: &[&str]) {
    let mut args = common(model, prompt);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    same_args(&args);
}

/// Run both with `args` and assert the same text.
fn same_args(args: &[String]) {
    let want = run(Command::new(reference()), args);
    assert!(
        want.status.success(),
        "llama-completion failed on {args:?}: {}",
        util::stderr(&want)
    );
    let mut ours = vec!["--gem".to_owned(), "off".to_owned()];
    ours.extend(args.iter().cloned());
    let got = run(util::gemfilter(), &ours);
    assert!(
        got.status.success(),
        "gemfilter failed on {ours:?}: {}",
        util::stderr(&got)
    );
    let (want, got) = (generated_reference(&want), generated(&got));
    assert!(
        !want.trim().is_empty(),
        "llama-completion generated nothing for {args:?}"
    );
    assert_eq!(
        got, want,
        "\ngemfilter (left) and llama-completion (right) differ for {args:?}"
    );
}

/// The text llama-completion generated: it ends its output with a blank line (`\n\n`), after
/// ` [end of text]\n` when the model ended it.
fn generated_reference(o: &Output) -> String {
    let s = util::stdout(o);
    let s = s.strip_suffix("\n\n").unwrap_or(&s);
    s.strip_suffix(" [end of text]\n").unwrap_or(s).to_owned()
}

/// The text gemfilter generated: it ends its output with one newline.
fn generated(o: &Output) -> String {
    let s = util::stdout(o);
    s.strip_suffix('\n').unwrap_or(&s).to_owned()
}

/// A raw completion (no chat template), as `llama-completion -no-cnv` runs it.
fn raw(model: &Path, extra: &[&str]) {
    let mut e = vec!["-no-cnv"];
    e.extend_from_slice(extra);
    same(model, STORY, &e);
}

const PENALTIES: &[&str] = &[
    "--repeat-penalty",
    "1.3",
    "--repeat-last-n",
    "32",
    "--presence-penalty",
    "0.6",
    "--frequency-penalty",
    "0.4",
];
const DRY: &[&str] = &[
    "--dry-multiplier",
    "0.8",
    "--dry-base",
    "1.75",
    "--dry-allowed-length",
    "2",
    "--dry-penalty-last-n",
    "48",
];
const XTC: &[&str] = &["--xtc-probability", "0.5", "--xtc-threshold", "0.05"];
const MIROSTAT: &[&str] = &[
    "--mirostat",
    "2",
    "--mirostat-lr",
    "0.2",
    "--mirostat-ent",
    "4",
];
const MIROSTAT1: &[&str] = &["--mirostat", "1"];
/// Adaptive-p draws the token after min-p.
const ADAPTIVE: &[&str] = &[
    "--samplers",
    "min_p;adaptive_p",
    "--adaptive-target",
    "0.3",
    "--adaptive-decay",
    "0.8",
];
const ORDER: &[&str] = &[
    "--samplers",
    "min_p;temperature;top_k;top_p",
    "--min-p",
    "0.02",
    "--top-k",
    "20",
];
/// A list of lower-case words, one per line.
const GRAMMAR: &[&str] = &[
    "--grammar",
    "root ::= (\"- \" [a-z]+ (\" \" [a-z]+)* \"\\n\")+",
];
const SCHEMA: &[&str] = &[
    "-j",
    r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}"#,
];
const ROPE: &[&str] = &[
    "--temp",
    "0",
    "--rope-scaling",
    "yarn",
    "--rope-scale",
    "2",
    "--yarn-orig-ctx",
    "1024",
];

/// One chat turn through the model's template run by llama.cpp's jinja engine, with a system
/// prompt: `llama-completion -cnv -st` formats it, prints the answer and exits.
fn chat(model: &Path, extra: &[&str]) {
    let mut e = vec!["--jinja", "-sys", SYSTEM];
    e.extend_from_slice(extra);
    same(model, QUESTION, &e);
}

/// The same turn through llama.cpp's built-in template formatter (`--no-jinja`, what
/// llama-completion does by default).
fn chat_builtin(model: &Path, extra: &[&str]) {
    let mut e = vec!["-sys", SYSTEM];
    e.extend_from_slice(extra);
    same(model, QUESTION, &e);
}

/// One chat turn with no system prompt, through llama.cpp's jinja engine: Qwen2.5's template
/// then writes its own default system prompt, which llama.cpp's built-in formatter leaves out.
fn chat_jinja_plain(model: &Path, extra: &[&str]) {
    let mut e = vec!["--jinja"];
    e.extend_from_slice(extra);
    same(model, QUESTION, &e);
}

macro_rules! matrix {
    ($($name:ident: $model:ident, $how:ident, $extra:expr;)*) => {
        $(
            #[test]
            fn $name() {
                $how(&util::$model(), $extra);
            }
        )*
    };
}

matrix! {
    smollm2_greedy: smollm2, raw, &["--temp", "0"];
    smollm2_seeded: smollm2, raw, &[];
    smollm2_penalties: smollm2, raw, PENALTIES;
    smollm2_dry: smollm2, raw, DRY;
    smollm2_xtc: smollm2, raw, XTC;
    smollm2_mirostat: smollm2, raw, MIROSTAT;
    smollm2_mirostat1: smollm2, raw, MIROSTAT1;
    smollm2_adaptive_p: smollm2, raw, ADAPTIVE;
    smollm2_samplers_order: smollm2, raw, ORDER;
    smollm2_grammar: smollm2, raw, GRAMMAR;
    smollm2_json_schema: smollm2, raw, SCHEMA;
    smollm2_chat_greedy: smollm2, chat_builtin, &["--temp", "0", "-st"];
    smollm2_chat_ignore_eos: smollm2, chat_builtin, &["--temp", "0", "-st", "--ignore-eos"];
    smollm2_rope_yarn: smollm2, raw, ROPE;
    smollm2_jinja_system: smollm2, chat, &["--temp", "0", "-st"];
    smollm2_jinja_seeded: smollm2, chat, &["-st"];
    qwen05_greedy: qwen05, raw, &["--temp", "0"];
    qwen05_seeded: qwen05, raw, &[];
    qwen05_penalties: qwen05, raw, PENALTIES;
    qwen05_dry: qwen05, raw, DRY;
    qwen05_xtc: qwen05, raw, XTC;
    qwen05_mirostat: qwen05, raw, MIROSTAT;
    qwen05_samplers_order: qwen05, raw, ORDER;
    qwen05_grammar: qwen05, raw, GRAMMAR;
    qwen05_json_schema: qwen05, raw, SCHEMA;
    qwen05_rope_yarn: qwen05, raw, ROPE;
    qwen05_chat_greedy: qwen05, chat_builtin, &["--temp", "0", "-st"];
    qwen05_jinja_system: qwen05, chat, &["--temp", "0", "-st"];
    qwen05_jinja_seeded: qwen05, chat, &["-st"];
    qwen05_jinja_default_system: qwen05, chat_jinja_plain, &["--temp", "0", "-st"];
}

/// The model's vocabulary and template only (no weights).
fn vocab(path: &Path) -> gemfilter::engine::Engine {
    gemfilter::engine::Engine::load_vocab(
        path,
        &gemfilter::engine::LoadOptions {
            n_gpu_layers: 0,
            use_mmap: true,
            verbose: false,
            placement: gemfilter::engine::Placement::default(),
            adjust: gemfilter::engine::adapters::Adjust::default(),
        },
    )
    .unwrap()
}

fn render(path: &Path, system: Option<&str>, jinja: bool, name: Option<&str>) -> String {
    let e = vocab(path);
    let input = PromptInput {
        system: system.map(String::from),
        question: Some("Name three colours.".into()),
        ..PromptInput::default()
    };
    let chat = ChatSettings {
        jinja,
        ..ChatSettings::default()
    };
    let template = Template::Chat(name.map(String::from));
    prompt::assemble_with(&e.model, &input, &template, chat)
        .unwrap()
        .text
}

/// Qwen2.5's jinja template writes its default system prompt when none is given; llama.cpp's
/// built-in chatml formatter does not: `--jinja` renders what the template says.
#[test]
fn jinja_renders_the_models_own_template() {
    let q = util::qwen05();
    let jinja = render(&q, None, true, None);
    assert!(
        jinja.starts_with("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud."),
        "{jinja}"
    );
    assert!(
        jinja.ends_with("<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"),
        "{jinja}"
    );
    let builtin = render(&q, None, false, None);
    assert!(builtin.starts_with("<|im_start|>user\n"), "{builtin}");
    let sys = render(&q, Some("Be brief."), true, None);
    assert!(
        sys.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"),
        "{sys}"
    );
}

/// `--chat-template TEXT` with `--jinja` is a jinja template of the user's own; a template the
/// engine cannot parse is one clear error, not a crash.
#[test]
fn jinja_takes_a_template_text_and_reports_a_bad_one() {
    let s = util::smollm2();
    let own = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}\
               {% if add_generation_prompt %}[assistant] {% endif %}";
    let text = render(&s, Some("Be brief."), true, Some(own));
    assert_eq!(
        text,
        "[system] Be brief.\n[user] Name three colours.\n[assistant] "
    );
    let e = vocab(&s);
    let input = PromptInput {
        question: Some("hi".into()),
        ..PromptInput::default()
    };
    let chat = ChatSettings {
        jinja: true,
        ..ChatSettings::default()
    };
    let bad = Template::Chat(Some("{% for m in messages %}".into()));
    let err = prompt::assemble_with(&e.model, &input, &bad, chat).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("cannot apply the chat template with --jinja ("),
        "{msg}"
    );
}

/// The prompt tokens llama-completion lists with `--verbose-prompt` (`ID -> 'piece'` lines
/// after "number of tokens in prompt").
fn reference_prompt_tokens(args: &[&str]) -> Vec<i32> {
    let mut all = vec!["-n", "1", "-c", "512", "-t", "2", "--verbose-prompt", "-st"];
    all.extend_from_slice(args);
    let o = Command::new(reference())
        .args(&all)
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    let err = util::stderr(&o);
    assert!(
        o.status.success(),
        "llama-completion failed on {all:?}: {err}"
    );
    let listing = err
        .split_once("number of tokens in prompt")
        .and_then(|(_, rest)| rest.split_once("sampler seed").map(|(l, _)| l))
        .unwrap_or_else(|| panic!("no prompt listing in: {err}"));
    listing
        .lines()
        .filter_map(|l| {
            let (head, _) = l.split_once(" -> '")?;
            head.split_whitespace().last()?.parse().ok()
        })
        .collect()
}

/// The tokens gemfilter assembles for the same chat turn.
fn our_prompt_tokens(
    path: &Path,
    system: Option<&str>,
    template: Option<&str>,
    jinja: bool,
) -> Vec<i32> {
    let e = vocab(path);
    let input = PromptInput {
        system: system.map(String::from),
        question: Some(QUESTION.into()),
        ..PromptInput::default()
    };
    let chat = ChatSettings {
        jinja,
        ..ChatSettings::default()
    };
    let t = Template::Chat(template.map(String::from));
    prompt::assemble_with(&e.model, &input, &t, chat)
        .unwrap()
        .tokens
        .iter()
        .map(|t| t.0)
        .collect()
}

const QUESTION: &str = "Name three colours of the rainbow.";
const SYSTEM: &str = "You are a helpful assistant who answers briefly.";

/// The prompt of one chat turn, token for token, as llama-completion builds it: through the
/// model's template with llama.cpp's jinja engine (`--jinja`) or its built-in formatter, with
/// and without a system prompt, and through a template file of the user's own.
fn same_prompt(path: &Path, system: Option<&str>, template_file: Option<&str>, jinja: bool) {
    let m = path.to_str().unwrap();
    let mut args = vec!["-m", m, "-p", QUESTION];
    if let Some(s) = system {
        args.extend(["-sys", s]);
    }
    if jinja {
        args.push("--jinja");
    }
    let dir = util::tmpdir("compat-template");
    let file = template_file.map(|t| util::write(&dir, "template.jinja", t.as_bytes()));
    if let Some(f) = &file {
        args.extend(["--chat-template-file", f.to_str().unwrap()]);
    }
    let want = reference_prompt_tokens(&args);
    assert!(want.len() > 5, "{want:?}");
    let got = our_prompt_tokens(path, system, template_file, jinja);
    assert_eq!(got, want, "prompt tokens differ for {args:?}");
}

/// A template of the user's own: roles in brackets.
const OWN_TEMPLATE: &str = "{% for m in messages %}[{{ m.role }}]\n{{ m.content }}\n{% endfor %}\
                            {% if add_generation_prompt %}[assistant]\n{% endif %}";

#[test]
fn prompt_qwen05_jinja_system() {
    same_prompt(&util::qwen05(), Some(SYSTEM), None, true);
}

#[test]
fn prompt_qwen05_jinja_default_system() {
    same_prompt(&util::qwen05(), None, None, true);
}

#[test]
fn prompt_qwen05_builtin_system() {
    same_prompt(&util::qwen05(), Some(SYSTEM), None, false);
}

#[test]
fn prompt_smollm2_jinja_system() {
    same_prompt(&util::smollm2(), Some(SYSTEM), None, true);
}

#[test]
fn prompt_smollm2_builtin_system() {
    same_prompt(&util::smollm2(), Some(SYSTEM), None, false);
}

#[test]
fn prompt_smollm2_jinja_template_file() {
    same_prompt(&util::smollm2(), Some(SYSTEM), Some(OWN_TEMPLATE), true);
}

/// Values llama.cpp refuses are refused here too (llama.cpp takes no negative last-n).
#[test]
fn refuses_what_llama_cpp_refuses() {
    let m = util::smollm2();
    for bad in [["--dry-penalty-last-n", "-1"], ["--repeat-last-n", "-1"]] {
        let mut args = common(&m, "Hello");
        args.extend(bad.iter().map(|s| (*s).to_owned()));
        args.push("-no-cnv".into());
        let want = run(Command::new(reference()), &args);
        assert!(!want.status.success(), "llama-completion took {bad:?}");
        let mut ours = vec!["--gem".to_owned(), "off".to_owned()];
        ours.extend(args.iter().cloned());
        let got = run(util::gemfilter(), &ours);
        util::assert_one_error(&got, bad[0]);
    }
}

/// Deterministic values in `[-amp, amp]` (an LCG: the same file on every run).
fn noise(n: usize, seed: u64, amp: f32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let u = (x >> 40) as f32 / (1u64 << 24) as f32;
        out.extend_from_slice(&((u * 2.0 - 1.0) * amp).to_le_bytes());
    }
    out
}

/// Write a GGUF of F32 tensors with `kv` string keys.
fn write_gguf(path: &Path, kv: &[(&str, &str)], tensors: &[(String, Vec<u64>, Vec<u8>)]) {
    use gemfilter::engine::ffi::gguf::{Gguf, TensorType};
    let mut g = Gguf::new();
    for (k, v) in kv {
        g.set_str(k, v).unwrap();
    }
    for (name, dims, _) in tensors {
        g.add_tensor(name, dims, TensorType::F32).unwrap();
    }
    let mut data = g.write_meta(std::fs::File::create(path).unwrap()).unwrap();
    for (_, _, bytes) in tensors {
        data.write(bytes).unwrap();
    }
    data.finish().unwrap();
}

/// A rank-4 `--lora` adapter for SmolLM2-135M (llama, 576 wide, 30 layers) on every layer's
/// attention output and the last layer's feed-forward down projection (past any prefix model).
pub fn smollm2_lora(dir: &Path) -> PathBuf {
    let p = dir.join("smollm2-lora.gguf");
    let (embd, ff, rank) = (576u64, 1536u64, 4u64);
    let mut t = Vec::new();
    for l in 0..30u64 {
        let name = format!("blk.{l}.attn_output.weight");
        t.push((
            format!("{name}.lora_a"),
            vec![embd, rank],
            noise(2304, l, 0.3),
        ));
        t.push((
            format!("{name}.lora_b"),
            vec![rank, embd],
            noise(2304, 100 + l, 0.3),
        ));
    }
    t.push((
        "blk.29.ffn_down.weight.lora_a".into(),
        vec![ff, rank],
        noise(6144, 7, 0.3),
    ));
    t.push((
        "blk.29.ffn_down.weight.lora_b".into(),
        vec![rank, embd],
        noise(2304, 8, 0.3),
    ));
    write_gguf(
        &p,
        &[
            ("general.architecture", "llama"),
            ("general.type", "adapter"),
            ("adapter.type", "lora"),
        ],
        &t,
    );
    p
}

/// A control vector for SmolLM2-135M: a direction for each of layers 1..=29.
pub fn smollm2_control_vector(dir: &Path) -> PathBuf {
    let p = dir.join("smollm2-cvec.gguf");
    let t: Vec<_> = (1..30u64)
        .map(|l| {
            (
                format!("direction.{l}"),
                vec![576],
                noise(576, 300 + l, 0.5),
            )
        })
        .collect();
    write_gguf(&p, &[("general.architecture", "llama")], &t);
    p
}

/// Low-rank adapters, control vectors and metadata overrides as llama-completion applies them.
#[test]
fn smollm2_adapters_and_overrides() {
    let dir = util::tmpdir("compat-adapters");
    let lora = smollm2_lora(&dir);
    let cvec = smollm2_control_vector(&dir);
    let (lora, cvec) = (lora.to_str().unwrap(), cvec.to_str().unwrap());
    let m = util::smollm2();
    raw(&m, &["--temp", "0", "--lora", lora]);
    raw(&m, &["--lora-scaled", &format!("{lora}:0.5")]);
    raw(&m, &["--temp", "0", "--control-vector", cvec]);
    raw(
        &m,
        &[
            "--temp",
            "0",
            "--control-vector-scaled",
            &format!("{cvec}:0.7"),
            "--control-vector-layer-range",
            "5",
            "20",
        ],
    );
    raw(
        &m,
        &[
            "--temp",
            "0",
            "--override-kv",
            "llama.attention.layer_norm_rms_epsilon=float:0.01",
            "--check-tensors",
        ],
    );
}

/// `--context-shift` in a 256-token context (llama.cpp's smallest: it rounds -c up to 256):
/// 280 tokens, so the context shifts once (options.rs shows that it does), keeping the BOS token
/// only or the first 6 prompt tokens as well.
#[test]
fn smollm2_context_shift() {
    let m = util::smollm2();
    for keep in ["0", "6"] {
        let args: Vec<String> = [
            "-m",
            m.to_str().unwrap(),
            "-p",
            STORY,
            "-n",
            "280",
            "--ignore-eos",
            "--temp",
            "0",
            "-t",
            "2",
            "-c",
            "256",
            "--no-display-prompt",
            "-no-cnv",
            "--context-shift",
            "--keep",
            keep,
        ]
        .map(String::from)
        .to_vec();
        same_args(&args);
    }
}
