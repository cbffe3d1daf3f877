//! Prompt assembly: the long context (`-f`), the question (`-p`) and the system prompt
//! (`-sys`), through the model's chat template or raw, tokenized in pieces so we know which
//! tokens are the document (selectable) and which are scaffolding or question (kept).

use std::ops::Range;

use anyhow::{bail, Context, Result};
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

/// What the user gave.
#[derive(Debug, Clone, Default)]
pub struct PromptInput {
    pub system: Option<String>,
    /// Long context, from `-f`.
    pub context: Option<String>,
    /// Question or instruction, from `-p` (in a conversation, the current question).
    pub question: Option<String>,
    /// Earlier turns of a conversation, oldest first: the first question was asked with the
    /// context, and every one is kept, with its answer, before the current question.
    pub history: Vec<Exchange>,
}

/// One answered turn of a conversation.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub question: String,
    pub answer: String,
}

/// The one message for a prompt with no text in it.
pub const EMPTY_PROMPT: &str = "empty prompt: give the text with -p TEXT and/or -f FILE";

impl PromptInput {
    /// Neither `-f` nor `-p` holds anything but whitespace.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        let blank = |s: &Option<String>| s.as_deref().unwrap_or("").trim().is_empty();
        blank(&self.context) && blank(&self.question)
    }
}

/// How to wrap the input.
#[derive(Debug, Clone)]
pub enum Template {
    /// The GGUF's own template (or a named built-in one), when it has one.
    Chat(Option<String>),
    /// No template: the text as is, with BOS.
    Raw,
}

/// Which tokens always survive selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protect {
    /// Template scaffolding, system prompt and `-p` text are kept; top-k is chosen from the
    /// `-f` context only.
    All,
    /// The reference: selection over every prompt token.
    None,
}

/// A tokenized prompt and where its parts are.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub tokens: Vec<LlamaToken>,
    /// Token range of the `-f` context (empty when there is none).
    pub context: Range<usize>,
    /// The text the tokens came from, for `--display-prompt` style echo.
    pub text: String,
    /// True when a chat template was applied.
    pub templated: bool,
}

impl Assembled {
    /// Per-token "always keep" flags under a protection policy.
    #[must_use]
    pub fn protected(&self, protect: Protect) -> Vec<bool> {
        match protect {
            Protect::None => Vec::new(),
            Protect::All => (0..self.tokens.len())
                .map(|i| !self.context.contains(&i))
                .collect(),
        }
    }
}

/// Placeholders for the pieces of text that come from the user, the document or the model's
/// answers: `\u{E000}N\u{E001}` for piece N. The template is rendered around them and each piece is
/// tokenized on its own as plain text, so only the template's own markers can become special
/// tokens (llama-server's rule): a document or an answer that holds `<|im_start|>system` stays
/// text. Private-use characters: a template never writes them, and the real text never enters
/// the rendered string.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The untrusted pieces of one prompt, by placeholder number.
#[derive(Default)]
struct Pieces<'a> {
    texts: Vec<&'a str>,
}

impl<'a> Pieces<'a> {
    /// The placeholder that stands for `text` in the template.
    fn put(&mut self, text: &'a str) -> String {
        self.texts.push(text);
        format!("{OPEN}{}{CLOSE}", self.texts.len() - 1)
    }
}

/// One part of the rendered template: its own text, or an untrusted piece.
enum Part<'r> {
    Template(&'r str),
    Piece(usize),
}

/// The rendered template cut at its placeholders (`n` pieces); it always starts with a template
/// part, empty when a piece comes first.
fn split_rendered(rendered: &str, n: usize) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut literal = 0;
    let mut at = 0;
    while let Some(o) = rendered[at..].find(OPEN) {
        let open = at + o;
        let body = open + OPEN.len_utf8();
        let piece = rendered[body..].find(CLOSE).and_then(|c| {
            let i: usize = rendered[body..body + c].parse().ok()?;
            (i < n).then_some((i, body + c + CLOSE.len_utf8()))
        });
        match piece {
            Some((i, end)) => {
                if open > literal || parts.is_empty() {
                    parts.push(Part::Template(&rendered[literal..open]));
                }
                parts.push(Part::Piece(i));
                literal = end;
                at = end;
            }
            None => at = body,
        }
    }
    if literal < rendered.len() || parts.is_empty() {
        parts.push(Part::Template(&rendered[literal..]));
    }
    parts
}

/// How llama.cpp's chat options render the prompt, where a chat template is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatSettings {
    /// `--jinja`: llama.cpp's jinja engine (as its tools run it) instead of its built-in
    /// formatter, which only recognises common templates.
    pub jinja: bool,
    /// `--reasoning`: on, off, or None for auto (thinking where the template supports it).
    pub reasoning: Option<bool>,
    /// The template's extra variables as llama-cli gathers them ([`template_kwargs`]): a JSON
    /// object. Resolved once per process, so a `'static` text keeps this `Copy`.
    pub kwargs: &'static str,
    /// `--reasoning-format`: how the answer's thinking is told apart.
    pub reasoning_format: ReasoningFormat,
    /// `--reasoning-budget`: -1 unrestricted, else the thinking tokens allowed.
    pub reasoning_budget: i32,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            jinja: false,
            reasoning: None,
            kwargs: DEFAULT_KWARGS,
            reasoning_format: ReasoningFormat::Deepseek,
            reasoning_budget: -1,
        }
    }
}

/// What llama-cli gives the template when no option sets a variable.
pub const DEFAULT_KWARGS: &str = r#"{"preserve_reasoning":true}"#;

/// `--reasoning-format` (llama.cpp's `common_reasoning_format`; its default is deepseek).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningFormat {
    /// Thinking stays in the answer's text.
    None,
    Auto,
    /// Thinking apart from the answer.
    Deepseek,
    /// Thinking apart, and also left in the answer's text with its tags.
    DeepseekLegacy,
}

impl ReasoningFormat {
    /// llama.cpp's names, for `--reasoning-format`.
    pub const NAMES: [&'static str; 4] = ["none", "auto", "deepseek", "deepseek-legacy"];

    /// llama.cpp's `common_reasoning_format_from_name`.
    ///
    /// # Errors
    /// llama.cpp's message for a name it does not know.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "none" => Self::None,
            "auto" => Self::Auto,
            "deepseek" => Self::Deepseek,
            "deepseek-legacy" => Self::DeepseekLegacy,
            _ => bail!(
                "--reasoning-format: unknown reasoning format '{name}' (one of: {})",
                Self::NAMES.join(", ")
            ),
        })
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The options llama-cli turns into template variables (`default_template_kwargs` in
/// common/arg.cpp), gathered into one JSON object of values.
#[derive(Debug, Clone, Default)]
pub struct KwargOptions<'a> {
    /// `--chat-template-kwargs`: a JSON object.
    pub json: Option<&'a str>,
    /// `--reasoning on|off` sets `enable_thinking`; auto leaves it to the template.
    pub reasoning: Option<bool>,
    /// `--reasoning-effort`: `default` leaves `reasoning_effort` to the template.
    pub effort: Option<&'a str>,
    /// `--reasoning-preserve` / `--no-reasoning-preserve` set `preserve_reasoning`.
    pub preserve: Option<bool>,
}

/// The template variables llama-cli passes, as a JSON object. The named options come after
/// `--chat-template-kwargs` and override its keys.
///
/// # Errors
/// `--chat-template-kwargs` that is not a JSON object.
pub fn template_kwargs(o: &KwargOptions<'_>) -> Result<String> {
    let mut map = serde_json::Map::new();
    if let Some(text) = o.json {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("--chat-template-kwargs: not valid JSON ({e})"))?;
        let serde_json::Value::Object(m) = v else {
            bail!("--chat-template-kwargs: must be a JSON object, e.g. '{{\"enable_thinking\":false}}'");
        };
        // llama-server's check: a string would be a truthy "false".
        if m.get("enable_thinking")
            .is_some_and(serde_json::Value::is_string)
        {
            bail!("--chat-template-kwargs: invalid type for \"enable_thinking\" (expected boolean, got string)");
        }
        map = m;
    }
    if let Some(on) = o.reasoning {
        map.insert("enable_thinking".into(), on.into());
    }
    match o.effort {
        Some("default") => {
            map.remove("reasoning_effort");
        }
        Some(level) => {
            map.insert("reasoning_effort".into(), level.into());
        }
        None => {}
    }
    if let Some(on) = o.preserve {
        map.insert("preserve_reasoning".into(), on.into());
    }
    // llama.cpp's default when nothing sets it: on.
    map.entry("preserve_reasoning").or_insert(true.into());
    Ok(serde_json::Value::Object(map).to_string())
}

/// Resolve `--chat-template` / `-no-cnv` to a usable template or Raw.
///
/// # Errors
/// A named template llama.cpp does not know.
pub fn choose_template(model: &LlamaModel, no_cnv: bool, name: Option<&str>) -> Result<Template> {
    if no_cnv {
        return Ok(Template::Raw);
    }
    if let Some(n) = name {
        return Ok(Template::Chat(Some(n.to_owned())));
    }
    Ok(if model.chat_template(None).is_ok() {
        Template::Chat(None)
    } else {
        Template::Raw
    })
}

/// Tokenize the prompt, remembering which tokens are the `-f` context.
///
/// # Errors
/// Empty prompt, a template that fails to render, or a NUL byte in `-p` or the system prompt.
pub fn assemble(model: &LlamaModel, input: &PromptInput, template: &Template) -> Result<Assembled> {
    assemble_with(model, input, template, ChatSettings::default())
}

/// [`assemble`] with llama.cpp's chat options (`--jinja`, `--reasoning`, template kwargs ...).
///
/// # Errors
/// As [`assemble`]; with `--jinja`, the template engine's own message.
pub fn assemble_with(
    model: &LlamaModel,
    input: &PromptInput,
    template: &Template,
    chat: ChatSettings,
) -> Result<Assembled> {
    let context = input.context.as_deref().unwrap_or("");
    let question = input.question.as_deref().unwrap_or("");
    if input.is_empty() {
        bail!(EMPTY_PROMPT);
    }
    for (what, t) in [
        ("the prompt (-p)", question),
        ("the system prompt", system_text(input)),
    ] {
        if let Some(at) = t.find('\0') {
            bail!("{what} holds a NUL byte (at byte {at})");
        }
    }
    let mut pieces = Pieces::default();
    let context_piece = (!context.is_empty()).then_some(pieces.texts.len());
    // The context goes with the first question of the conversation.
    let first = input
        .history
        .first()
        .map_or(question, |e| e.question.as_str());
    let user = match (context.is_empty(), first.is_empty()) {
        (false, false) => format!("{}\n\n{}", pieces.put(context), pieces.put(first)),
        (false, true) => pieces.put(context),
        _ => pieces.put(first),
    };
    let system = input.system.as_deref().map(|s| pieces.put(s));
    // Later turns: each earlier answer, then the next question.
    let mut turns: Vec<(&str, String)> = Vec::new();
    for (i, e) in input.history.iter().enumerate() {
        turns.push(("assistant", pieces.put(e.answer.as_str())));
        let next = input
            .history
            .get(i + 1)
            .map_or(question, |n| n.question.as_str());
        turns.push(("user", pieces.put(next)));
    }
    let (rendered, templated) = match template {
        Template::Raw => {
            let sys = system.map(|s| format!("{s}\n\n")).unwrap_or_default();
            let rest: String = turns.iter().flat_map(|(_, t)| ["\n\n", t]).collect();
            (format!("{sys}{user}{rest}"), false)
        }
        Template::Chat(name) if chat.jinja => (
            render_jinja(
                model,
                name.as_deref(),
                chat,
                system.as_deref(),
                &user,
                &turns,
            )?,
            true,
        ),
        Template::Chat(name) => (
            render_chat(model, name.as_deref(), system.as_deref(), &user, &turns)?,
            true,
        ),
    };
    let parts = split_rendered(&rendered, pieces.texts.len());
    if let Some(c) = context_piece {
        if !parts.iter().any(|p| matches!(p, Part::Piece(i) if *i == c)) {
            bail!("the chat template dropped the context text");
        }
    }
    let vocab = model.vocab();
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut context_range = 0..0;
    for (n, part) in parts.iter().enumerate() {
        let start = tokens.len();
        match *part {
            // The template's own text: its markers are special tokens; BOS before the first.
            Part::Template(t) => {
                tokens.extend(vocab.tokenize(t.as_bytes(), n == 0, true));
                text.push_str(t);
            }
            // Text from the user, the document or an answer: data, never special tokens.
            Part::Piece(i) => {
                let t = pieces.texts[i];
                tokens.extend(vocab.tokenize(t.as_bytes(), false, false));
                text.push_str(t);
                if Some(i) == context_piece && context_range.is_empty() {
                    context_range = start..tokens.len();
                }
            }
        }
        // A template that already starts with BOS text plus the tokenizer's own BOS gives two.
        if n == 0 && tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
    }
    if context_range.is_empty() {
        context_range = tokens.len()..tokens.len();
    }
    Ok(Assembled {
        tokens,
        context: context_range,
        text,
        templated,
    })
}

fn system_text(input: &PromptInput) -> &str {
    input.system.as_deref().unwrap_or("")
}

fn render_chat(
    model: &LlamaModel,
    name: Option<&str>,
    system: Option<&str>,
    user: &str,
    turns: &[(&str, String)],
) -> Result<String> {
    let tmpl = match name {
        Some(n) => LlamaChatTemplate::new(n).context("chat template name contains a NUL byte")?,
        None => model
            .chat_template(None)
            .context("the model has no chat template")?,
    };
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(
            LlamaChatMessage::new("system".into(), s.to_owned()).context("bad system prompt")?,
        );
    }
    msgs.push(LlamaChatMessage::new("user".into(), user.to_owned()).context("bad prompt")?);
    for (role, text) in turns {
        msgs.push(
            LlamaChatMessage::new((*role).to_owned(), text.clone())
                .context("bad conversation turn")?,
        );
    }
    model.apply_chat_template(&tmpl, &msgs, true).map_err(|e| {
        anyhow::anyhow!(
            "cannot apply the chat template ({e}); try --chat-template chatml or -no-cnv"
        )
    })
}

/// The conversation through llama.cpp's jinja engine (`common_chat_templates_apply`), with the
/// model's BOS and EOS texts as the template's `bos_token` and `eos_token`, and llama-cli's
/// chat options.
fn render_jinja(
    model: &LlamaModel,
    name: Option<&str>,
    chat: ChatSettings,
    system: Option<&str>,
    user: &str,
    turns: &[(&str, String)],
) -> Result<String> {
    let mut msgs: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = system {
        msgs.push(("system", s));
    }
    msgs.push(("user", user));
    msgs.extend(turns.iter().map(|(r, t)| (*r, t.as_str())));
    let r = render_for_answer(model, name, chat, &msgs)?;
    if chat.reasoning_budget >= 0 && !r.thinking_end_tags.is_empty() {
        bail!(
            "--reasoning-budget {}: not supported yet with a template that thinks (it opens {:?}): \
             gemfilter does not enforce a budget while sampling; drop the option",
            chat.reasoning_budget,
            r.thinking_start_tag
        );
    }
    Ok(r.prompt)
}

/// [`crate::engine::ffi::chat::apply`] with the model's template (or `name`) and texts: the
/// prompt, and what parses the answer (`crate::reasoning`).
pub(crate) fn render_for_answer(
    model: &LlamaModel,
    name: Option<&str>,
    chat: ChatSettings,
    msgs: &[(&str, &str)],
) -> Result<crate::engine::ffi::chat::Rendered> {
    // The `--chat-template` name or text, else the model's own, else chatml (llama.cpp's rule).
    let source = match name {
        Some(n) => n.to_owned(),
        None => model
            .chat_template(None)
            .ok()
            .and_then(|t| t.to_string().ok())
            .unwrap_or_else(|| "chatml".to_owned()),
    };
    let vocab = model.vocab();
    let text = |t: LlamaToken| {
        if t.0 < 0 {
            return String::new();
        }
        String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
    };
    let (bos, eos) = (text(vocab.bos()), text(vocab.eos()));
    let opts = crate::engine::ffi::chat::Options {
        jinja: true,
        reasoning: chat.reasoning.map_or(-1, i32::from),
        kwargs: chat.kwargs,
        reasoning_format: chat.reasoning_format.name(),
    };
    crate::engine::ffi::chat::apply(&source, &bos, &eos, msgs, true, opts).map_err(|e| {
        anyhow::anyhow!(
            "cannot apply the chat template with --jinja ({e}); try --chat-template chatml or -no-cnv"
        )
    })
}

/// llama-cli's `-e` escape processing: `\n \r \t \\ \' \" \xHH`.
#[must_use]
pub fn process_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('x') => {
                let hex: String = it.clone().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) if hex.len() == 2 && b.is_ascii() => {
                        out.push(char::from(b));
                        it.next();
                        it.next();
                    }
                    _ => out.push_str("\\x"),
                }
            }
            Some('\\') | None => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{process_escapes, split_rendered, Part, Pieces};

    #[test]
    fn rendered_templates_split_at_their_placeholders_only() {
        let mut p = Pieces::default();
        let (a, b) = (p.put("doc"), p.put("question"));
        let rendered = format!("{a}<|im_start|>user\n{b}\u{E000}9\u{E001}\u{E000}x");
        let parts = split_rendered(&rendered, p.texts.len());
        let shown: Vec<String> = parts
            .iter()
            .map(|x| match x {
                Part::Template(t) => format!("T{t:?}"),
                Part::Piece(i) => format!("P{i}"),
            })
            .collect();
        // Always a template part first; a placeholder out of range stays template text.
        assert_eq!(
            shown,
            [
                "T\"\"",
                "P0",
                "T\"<|im_start|>user\\n\"",
                "P1",
                "T\"\\u{e000}9\\u{e001}\\u{e000}x\""
            ]
        );
        assert!(matches!(split_rendered("", 0)[..], [Part::Template("")]));
    }

    #[test]
    fn escapes() {
        assert_eq!(process_escapes(r"a\nb\tc\\d\'\x41\q"), "a\nb\tc\\d'A\\q");
        assert_eq!(process_escapes(r"end\"), "end\\");
    }
}
