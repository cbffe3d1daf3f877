//! llama.cpp's chat options (`--chat-template-kwargs`, `--reasoning*`) against llama.cpp's own
//! tools. llama-cli hands them to the llama-server it runs in-process, so the reference is
//! `.reference/bin/llama-server`: its `/apply-template` renders the prompt llama-cli would, and
//! its `/tokenize` the tokens; an answer's thinking is split as its chat completions split it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gemfilter::prompt::{self, ChatSettings, KwargOptions, PromptInput, ReasoningFormat, Template};
use gemfilter::reasoning::AnswerView;
use serde_json::{json, Value};

use crate::util;

const SYSTEM: &str = "You answer briefly.";
const QUESTION: &str = "Name three colours of the rainbow.";

/// A template that reads the variables the options set and has a thinking block: earlier
/// answers' thinking in `<think>` tags, and the answer opened with `<think>` when
/// `enable_thinking` is on (closed at once when it is off, as Qwen3's).
const THINKING: &str = concat!(
    "{% for m in messages %}<|im_start|>{{ m.role }}\n",
    "{% if m.reasoning_content is defined and m.reasoning_content %}",
    "<think>\n{{ m.reasoning_content }}\n</think>\n\n{% endif %}",
    "{{ m.content }}<|im_end|>\n{% endfor %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n",
    "{% if style is defined %}style={{ style }}\n{% endif %}",
    "{% if reasoning_effort is defined %}effort={{ reasoning_effort }}\n{% endif %}",
    "{% if preserve_reasoning is defined %}preserve={{ preserve_reasoning }}\n{% endif %}",
    "{% if enable_thinking %}<think>\n{% else %}<think>\n\n</think>\n\n{% endif %}",
    "{% endif %}",
);

/// The same variables and `enable_thinking` as text, no thinking block.
const PLAIN: &str = concat!(
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n",
    "{% if style is defined %}style={{ style }}\n{% endif %}",
    "thinking={{ enable_thinking }}\n",
    "{% endif %}",
);

/// llama.cpp's own llama-server on SmolLM2 with `args`; killed when dropped.
struct Reference {
    child: Child,
    port: u16,
}

impl Reference {
    fn start(args: &[&str]) -> Self {
        let bin = util::root().join(".reference/bin/llama-server");
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
        let child = Command::new(bin)
            .args(["-m", util::smollm2().to_str().unwrap()])
            .args([
                "-t",
                "2",
                "-c",
                "2048",
                "-np",
                "1",
                "--port",
                &port.to_string(),
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn llama-server");
        let s = Self { child, port };
        let up = (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            s.request("GET", "/health", None)
                .is_some_and(|(c, _)| c == 200)
        });
        assert!(up, "llama-server did not start with {args:?}");
        s
    }

    /// One HTTP/1.1 request; None when nothing answers yet.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        c.set_read_timeout(Some(Duration::from_mins(2))).ok()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, serde_json::from_str(rest).unwrap_or(Value::Null)))
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let (code, v) = self
            .request("POST", path, Some(body))
            .expect("llama-server answers");
        assert_eq!(code, 200, "{path}: {v}");
        v
    }

    /// The prompt llama-cli builds for one system + user turn, and its tokens.
    fn prompt(&self) -> (String, Vec<i32>) {
        let messages = json!([{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": QUESTION}]);
        let text = self.post("/apply-template", &json!({"messages": messages}))["prompt"]
            .as_str()
            .unwrap()
            .to_owned();
        let tokens = self.post(
            "/tokenize",
            &json!({"content": text, "add_special": true, "parse_special": true}),
        )["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| i32::try_from(t.as_i64().unwrap()).unwrap())
            .collect();
        (text, tokens)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// gemfilter's chat settings for the options as llama-cli's command line gives them.
fn settings(kw: &KwargOptions<'_>, budget: i32) -> ChatSettings {
    ChatSettings {
        jinja: true,
        reasoning: kw.reasoning,
        kwargs: Box::leak(prompt::template_kwargs(kw).unwrap().into_boxed_str()),
        reasoning_format: ReasoningFormat::Deepseek,
        reasoning_budget: budget,
    }
}

fn ours(template: &str, chat: ChatSettings) -> prompt::Assembled {
    let e = vocab(&util::smollm2());
    let input = PromptInput {
        system: Some(SYSTEM.into()),
        question: Some(QUESTION.into()),
        ..PromptInput::default()
    };
    prompt::assemble_with(
        &e.model,
        &input,
        &Template::Chat(Some(template.into())),
        chat,
    )
    .unwrap()
}

/// Each option's effect on the prompt, text and tokens, as llama-cli's server renders it.
fn same_prompt(template: &str, args: &[&str], kw: &KwargOptions<'_>, must_hold: &str) {
    let dir = util::tmpdir("chat-options");
    let file = util::write(&dir, "template.jinja", template.as_bytes());
    let mut all = vec!["--jinja", "--chat-template-file", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let (text, tokens) = Reference::start(&all).prompt();
    let got = ours(template, settings(kw, -1));
    assert_eq!(got.text, text, "prompt text differs for {args:?}");
    let got: Vec<i32> = got.tokens.iter().map(|t| t.0).collect();
    assert_eq!(got, tokens, "prompt tokens differ for {args:?}");
    assert!(
        text.contains(must_hold),
        "{args:?}: {text:?} lacks {must_hold:?}"
    );
}

#[test]
fn kwargs_reach_the_template_as_in_llama_cli() {
    let json = r#"{"style":"terse","enable_thinking":false}"#;
    same_prompt(
        THINKING,
        &["--chat-template-kwargs", json],
        &KwargOptions {
            json: Some(json),
            ..KwargOptions::default()
        },
        "assistant\nstyle=terse\npreserve=True\n<think>\n\n</think>\n\n",
    );
}

#[test]
fn thinking_is_on_by_default_where_the_template_supports_it() {
    same_prompt(
        THINKING,
        &[],
        &KwargOptions::default(),
        "assistant\npreserve=True\n<think>\n",
    );
}

#[test]
fn reasoning_off_and_on_set_enable_thinking() {
    for (value, on, holds) in [
        ("off", false, "preserve=True\n<think>\n\n</think>\n\n"),
        ("on", true, "thinking=True\n"),
    ] {
        let template = if on { PLAIN } else { THINKING };
        same_prompt(
            template,
            &["--reasoning", value],
            &KwargOptions {
                reasoning: Some(on),
                ..KwargOptions::default()
            },
            holds,
        );
    }
}

#[test]
fn reasoning_effort_and_preserve_are_template_variables() {
    same_prompt(
        THINKING,
        &["--reasoning-effort", "high", "--no-reasoning-preserve"],
        &KwargOptions {
            effort: Some("high"),
            preserve: Some(false),
            ..KwargOptions::default()
        },
        "effort=high\npreserve=False\n<think>\n",
    );
    // "default" leaves the template's own.
    let kw = KwargOptions {
        json: Some(r#"{"reasoning_effort":"low"}"#),
        effort: Some("default"),
        ..KwargOptions::default()
    };
    assert_eq!(
        prompt::template_kwargs(&kw).unwrap(),
        prompt::DEFAULT_KWARGS
    );
}

/// llama.cpp enforces `--reasoning-budget` while sampling, not in the template: with a budget
/// the prompt is the default one (llama-cli's server), and where the template has no thinking
/// block gemfilter takes it as such.
#[test]
fn a_reasoning_budget_leaves_the_prompt_alone() {
    same_prompt(
        PLAIN,
        &[
            "--reasoning-budget",
            "0",
            "--reasoning-budget-message",
            "Enough.",
        ],
        &KwargOptions::default(),
        "<|im_start|>assistant\nthinking=False\n",
    );
    // The same budget with a template that thinks is refused rather than not enforced.
    let e = vocab(&util::smollm2());
    let input = PromptInput {
        question: Some(QUESTION.into()),
        ..PromptInput::default()
    };
    let t = Template::Chat(Some(THINKING.into()));
    let err = prompt::assemble_with(&e.model, &input, &t, settings(&KwargOptions::default(), 0))
        .unwrap_err();
    assert!(
        format!("{err:#}").starts_with("--reasoning-budget 0: not supported yet"),
        "{err:#}"
    );
}

/// With a document, the template's own text (the kwargs' part included) and the question are
/// kept by GemFilter's selection; only the document's tokens are chosen from.
#[test]
fn selection_still_protects_the_template_and_the_question() {
    let e = vocab(&util::smollm2());
    let doc = util::haystack(4_000, "The vault code is 4417.", 0.5);
    let input = PromptInput {
        context: Some(doc.clone()),
        question: Some(QUESTION.into()),
        ..PromptInput::default()
    };
    let json = r#"{"style":"terse"}"#;
    let chat = settings(
        &KwargOptions {
            json: Some(json),
            ..KwargOptions::default()
        },
        -1,
    );
    let a =
        prompt::assemble_with(&e.model, &input, &Template::Chat(Some(PLAIN.into())), chat).unwrap();
    let keep = a.protected(prompt::Protect::All);
    let vocab = e.model.vocab();
    let text = |r: std::ops::Range<usize>| {
        String::from_utf8_lossy(&vocab.detokenize(&a.tokens[r], false, true)).into_owned()
    };
    assert_eq!(text(a.context.clone()), doc);
    assert!(a.context.clone().all(|i| !keep[i]));
    let after = text(a.context.end..a.tokens.len());
    assert!(
        after.contains(QUESTION) && after.ends_with("style=terse\nthinking=False\n"),
        "{after:?}"
    );
    assert!((a.context.end..a.tokens.len()).all(|i| keep[i]));
    // And the run selects: fewer tokens than the prompt, the answer from the selection.
    let dir = util::tmpdir("chat-options-gem");
    let f = util::write(&dir, "doc.txt", doc.as_bytes());
    let t = util::write(&dir, "t.jinja", PLAIN.as_bytes());
    let m = util::smollm2();
    let v = util::json(&util::run(&[
        "-m",
        m.to_str().unwrap(),
        "-f",
        f.to_str().unwrap(),
        "-p",
        QUESTION,
        "--jinja",
        "--chat-template-file",
        t.to_str().unwrap(),
        "--chat-template-kwargs",
        json,
        "--gem-topk",
        "256",
        "--gem-min-tokens",
        "0",
        "-n",
        "4",
        "--temp",
        "0",
        "-st",
        "--json",
    ]));
    let (n, kept) = (
        v["prompt_tokens"].as_u64().unwrap(),
        v["selected_tokens"].as_u64(),
    );
    assert_eq!(n as usize, a.tokens.len(), "{v}");
    assert!(kept.is_some_and(|k| k < n), "{v}");
}

/// An answer's thinking and content as llama-cli's server splits them, per --reasoning-format.
#[test]
fn answers_split_their_thinking_as_llama_server_does() {
    let dir = util::tmpdir("chat-options-split");
    let file = util::write(&dir, "template.jinja", THINKING.as_bytes());
    let s = Reference::start(&[
        "--jinja",
        "--chat-template-file",
        file.to_str().unwrap(),
        "--temp",
        "0",
        "-n",
        "24",
    ]);
    let ask = |format: &str| {
        s.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": QUESTION}],
                    "reasoning_format": format, "temperature": 0, "max_tokens": 24}),
        )["choices"][0]["message"]
            .clone()
    };
    // The generated text itself: the same prompt as a raw completion.
    let (prompt, _) = s.prompt();
    let raw = s.post(
        "/completion",
        &json!({"prompt": prompt, "temperature": 0, "n_predict": 24}),
    )["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!raw.is_empty());
    let e = vocab(&util::smollm2());
    let input = PromptInput {
        system: Some(SYSTEM.into()),
        question: Some(QUESTION.into()),
        ..PromptInput::default()
    };
    let t = Template::Chat(Some(THINKING.into()));
    for format in ["deepseek", "none", "auto"] {
        let want = ask(format);
        let chat = ChatSettings {
            reasoning_format: ReasoningFormat::from_name(format).unwrap(),
            ..settings(&KwargOptions::default(), -1)
        };
        let view = AnswerView::new(&e.model, &input, &t, chat)
            .unwrap()
            .unwrap();
        let (thinking, content) = view.split(&raw, false).unwrap();
        assert_eq!(
            thinking,
            want["reasoning_content"].as_str().unwrap_or(""),
            "{format}"
        );
        assert_eq!(content, want["content"].as_str().unwrap_or(""), "{format}");
        // The template opened a thinking block: deepseek takes the answer as thinking.
        assert_eq!(
            thinking.is_empty(),
            format == "none",
            "{format}: {thinking:?}"
        );
    }
}

/// Bad values: one line naming the option, as llama.cpp refuses them.
#[test]
fn bad_values_are_one_error_line() {
    let m = util::smollm2();
    let m = m.to_str().unwrap();
    for (args, what) in [
        (
            vec!["--chat-template-kwargs", "nope"],
            "--chat-template-kwargs: not valid JSON",
        ),
        (
            vec!["--chat-template-kwargs", "[1,2]"],
            "--chat-template-kwargs: must be a JSON object",
        ),
        (
            vec!["--chat-template-kwargs", r#"{"enable_thinking":"no"}"#],
            "invalid type for \"enable_thinking\"",
        ),
        (
            vec!["--reasoning-format", "bogus"],
            "--reasoning-format: unknown reasoning format 'bogus'",
        ),
        (
            vec!["--reasoning-budget", "-2"],
            "--reasoning-budget must be -1",
        ),
    ] {
        let mut all = vec!["-m", m, "-p", "hi", "-n", "1", "--jinja"];
        all.extend_from_slice(&args);
        util::assert_one_error(&util::run(&all), what);
    }
    // Not a number: clap's message, as for every numeric option.
    let o = util::run(&["-m", m, "-p", "hi", "--reasoning-budget", "x"]);
    assert!(!o.status.success());
    assert!(
        util::stderr(&o).starts_with("error: invalid value 'x' for '--reasoning-budget <N>'"),
        "{}",
        util::stderr(&o)
    );
}

/// What llama-cli prints for the answer: between its echo of the question (`> QUESTION`) and
/// its speed line (`[ Prompt: …`).
fn llama_cli_answer(args: &[&str]) -> String {
    let bin = util::root().join(".reference/bin/llama-cli");
    assert!(
        bin.exists(),
        "{} is missing: run `make reference`",
        bin.display()
    );
    // The UI writes through stdout and stderr: both, in order, through one pipe.
    let o = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" \"$@\" 2>&1")
        .arg(bin)
        .args(args)
        .args(["-c", "2048"])
        .stdin(Stdio::null())
        .output()
        .expect("spawn llama-cli");
    let out = util::stdout(&o);
    assert!(o.status.success(), "llama-cli failed: {out}");
    let start = format!("> {QUESTION}\n");
    let from = out.find(&start).map(|i| i + start.len());
    let to = out.rfind("\n[ Prompt:");
    match (from, to) {
        (Some(a), Some(b)) if a <= b => out[a..b].to_owned(),
        _ => panic!("no answer in llama-cli's output: {out}"),
    }
}

/// The answer as llama-cli shows it, thinking marked, for each --reasoning-format, byte for
/// byte (gemfilter ends with one line break where llama-cli ends a line that lacks one).
#[test]
fn thinking_is_shown_as_llama_cli_shows_it() {
    let dir = util::tmpdir("chat-options-cli");
    let file = util::write(&dir, "template.jinja", THINKING.as_bytes());
    let m = util::smollm2();
    for format in ["deepseek", "none", "deepseek-legacy"] {
        let args = [
            "-m",
            m.to_str().unwrap(),
            "--jinja",
            "--chat-template-file",
            file.to_str().unwrap(),
            "-sys",
            SYSTEM,
            "-p",
            QUESTION,
            "-n",
            "24",
            "--temp",
            "0",
            "--ignore-eos",
            "-st",
            "-t",
            "2",
            "--reasoning-format",
            format,
        ];
        let want = llama_cli_answer(&args);
        let o = util::run(&args);
        assert!(o.status.success(), "{}", util::stderr(&o));
        let got = util::stdout(&o);
        assert_eq!(
            got.trim_end_matches('\n'),
            want.trim_end_matches('\n'),
            "{format}"
        );
        assert_eq!(
            got.starts_with("\n[Start thinking]\n\n"),
            format != "none",
            "{format}: {got:?}"
        );
    }
}
