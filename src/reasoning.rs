//! An answer's thinking shown as llama-cli shows it: the reply parsed as its in-process server
//! parses one (the template's own parser and `--reasoning-format`), the thinking between
//! `[Start thinking]` and `[End thinking]` lines, then the rest.

use anyhow::Result;
use llama_cpp_2::model::LlamaModel;

use crate::engine::ffi::chat;
use crate::generate::TokenSink;
use crate::prompt::{self, ChatSettings, PromptInput, ReasoningFormat, Template};

/// How llama-cli tells an answer's thinking from the rest, under one template and
/// `--reasoning-format`.
#[derive(Debug, Clone)]
pub struct AnswerView {
    rendered: chat::Rendered,
    format: ReasoningFormat,
}

impl AnswerView {
    /// None where the answer is printed as generated: no template, no `--jinja` (llama.cpp's
    /// built-in formatter has no parser), or a template without a thinking block (where
    /// llama-cli shows the reply's content, which is the answer).
    ///
    /// # Errors
    /// The template engine's message, as for the prompt.
    pub fn new(
        model: &LlamaModel,
        input: &PromptInput,
        template: &Template,
        chat: ChatSettings,
    ) -> Result<Option<Self>> {
        let Template::Chat(name) = template else {
            return Ok(None);
        };
        if !chat.jinja {
            return Ok(None);
        }
        let mut msgs: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = input.system.as_deref() {
            msgs.push(("system", s));
        }
        msgs.push(("user", input.question.as_deref().unwrap_or("")));
        let rendered = prompt::render_for_answer(model, name.as_deref(), chat, &msgs)?;
        Ok(rendered.supports_thinking.then_some(Self {
            rendered,
            format: chat.reasoning_format,
        }))
    }

    /// [`AnswerView::new`] for the default mode's settings.
    ///
    /// # Errors
    /// As [`AnswerView::new`].
    pub fn for_run(model: &LlamaModel, s: &crate::settings::RunSettings) -> Result<Option<Self>> {
        let template =
            prompt::choose_template(model, s.no_conversation, s.chat_template.as_deref())?;
        Self::new(model, &s.input, &template, s.chat)
    }

    /// `text` as (thinking, the rest); `partial` while it is still being generated.
    ///
    /// # Errors
    /// The parser's message.
    pub fn split(&self, text: &str, partial: bool) -> Result<(String, String)> {
        let p = chat::parse(&self.rendered, self.format.name(), text, partial)
            .map_err(|e| anyhow::anyhow!("cannot parse the answer ({e})"))?;
        Ok((p.reasoning_content, p.content))
    }
}

/// Which part of the answer is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Thinking,
    Content,
}

/// llama-cli's display of one assistant turn (`ui::assistant_turn`): a line break before a
/// part when the last text did not end one, `\n[Start thinking]\n\n` before thinking and
/// `[End thinking]\n\n` before what follows it.
#[derive(Debug)]
struct Turn {
    part: Part,
    trailing_newline: bool,
    thinking: bool,
}

impl Turn {
    const fn new() -> Self {
        Self {
            part: Part::Content,
            trailing_newline: true,
            thinking: false,
        }
    }

    /// The text to print for `text` of `part`.
    fn push(&mut self, part: Part, text: &str) -> String {
        let mut out = String::new();
        if part != self.part {
            if !self.trailing_newline {
                out.push('\n');
            }
            match part {
                Part::Content if self.thinking => {
                    out.push_str("[End thinking]\n\n");
                    self.thinking = false;
                }
                Part::Content => {}
                Part::Thinking => {
                    self.thinking = true;
                    out.push_str("\n[Start thinking]\n\n");
                }
            }
        }
        self.part = part;
        if !text.is_empty() {
            self.trailing_newline = text.ends_with('\n');
            out.push_str(text);
        }
        out
    }
}

/// Streams an answer through `inner` as llama-cli shows it: each piece re-parses the answer so
/// far and prints what is new in its thinking, then in the rest.
pub struct ReasoningSink<'a> {
    inner: &'a mut dyn TokenSink,
    view: AnswerView,
    raw: String,
    shown: (usize, usize),
    turn: Turn,
}

impl<'a> ReasoningSink<'a> {
    pub fn new(inner: &'a mut dyn TokenSink, view: AnswerView) -> Self {
        Self {
            inner,
            view,
            raw: String::new(),
            shown: (0, 0),
            turn: Turn::new(),
        }
    }

    /// Print what the parse of the answer so far adds; false when the output is closed.
    fn show(&mut self, partial: bool) -> Result<bool> {
        let (thinking, content) = self.view.split(&self.raw, partial)?;
        let mut out = String::new();
        for (part, text, shown) in [
            (Part::Thinking, thinking, &mut self.shown.0),
            (Part::Content, content, &mut self.shown.1),
        ] {
            // Only growth is shown, as llama-server's streamed deltas.
            if text.len() > *shown && text.is_char_boundary(*shown) {
                out.push_str(&self.turn.push(part, &text[*shown..]));
                *shown = text.len();
            }
        }
        if out.is_empty() {
            return Ok(true);
        }
        self.inner.text(&out)
    }

    /// The finished answer: what its final parse adds.
    ///
    /// # Errors
    /// The parser's message or the output's.
    pub fn finish(&mut self) -> Result<bool> {
        self.show(false)
    }
}

impl TokenSink for ReasoningSink<'_> {
    fn text(&mut self, piece: &str) -> Result<bool> {
        self.raw.push_str(piece);
        self.show(true)
    }
}

#[cfg(test)]
mod tests {
    use super::{Part, Turn};

    /// llama-cli's markers and line breaks around the thinking.
    #[test]
    fn a_turn_marks_its_thinking_as_llama_cli_does() {
        let mut t = Turn::new();
        let shown: String = [
            t.push(Part::Thinking, "Let me"),
            t.push(Part::Thinking, " think."),
            t.push(Part::Content, "Red."),
        ]
        .concat();
        assert_eq!(
            shown,
            "\n[Start thinking]\n\nLet me think.\n[End thinking]\n\nRed."
        );
        let mut t = Turn::new();
        assert_eq!(t.push(Part::Content, "Just this.\n"), "Just this.\n");
        assert_eq!(t.push(Part::Content, ""), "");
    }
}
