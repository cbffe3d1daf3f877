//! `-o/--output/--output-file FNAME` (llama-cli's): a transcript of the conversation, written
//! as llama-cli's `cli_context` writes it: `User:\n<message>\n\n` before each answer and
//! `Assistant:\n<answer>\n\n` after it (a newline added when the answer lacks one), flushed each
//! time. The file is created, or emptied when it exists, before the first answer. The user
//! message is what the user turn holds: the `-f` document, a blank line and the question.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::prompt::PromptInput;
use crate::sanitize;

/// The open transcript, or nothing without `-o`.
pub struct OutputFile(Option<File>);

impl OutputFile {
    /// Create (or empty) `path`; none without one.
    ///
    /// # Errors
    /// A path that cannot be opened for writing (llama-cli: "failed to open output file").
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let Some(p) = path else { return Ok(Self(None)) };
        let f = File::create(p)
            .with_context(|| format!("failed to open output file (-o) {}", sanitize::path(p)))?;
        Ok(Self(Some(f)))
    }

    fn write(&mut self, text: &str) -> Result<()> {
        if let Some(f) = &mut self.0 {
            f.write_all(text.as_bytes())
                .and_then(|()| f.flush())
                .context("cannot write the output file (-o)")?;
        }
        Ok(())
    }

    /// The user's message, before its answer.
    ///
    /// # Errors
    /// A failed write.
    pub fn user(&mut self, message: &str) -> Result<()> {
        self.write(&format!("User:\n{message}\n\n"))
    }

    /// The answer.
    ///
    /// # Errors
    /// A failed write.
    pub fn assistant(&mut self, answer: &str) -> Result<()> {
        let mut out = format!("Assistant:\n{answer}");
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
        self.write(&out)
    }
}

/// The first user message: the document, a blank line, then the question (either alone when
/// the other is empty), as the prompt's user turn puts them.
#[must_use]
pub fn first_message(input: &PromptInput) -> String {
    let context = input.context.as_deref().unwrap_or("");
    let question = input.question.as_deref().unwrap_or("");
    match (context.is_empty(), question.is_empty()) {
        (false, false) => format!("{context}\n\n{question}"),
        (false, true) => context.to_owned(),
        _ => question.to_owned(),
    }
}

/// A conversation turn's user message: the first one holds the document too.
#[must_use]
pub fn turn_message(input: &PromptInput, question: &str, first: bool) -> String {
    if !first {
        return question.to_owned();
    }
    let context = input.context.as_deref().unwrap_or("");
    if context.is_empty() {
        question.to_owned()
    } else {
        format!("{context}\n\n{question}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_is_llama_clis() {
        let d = std::env::temp_dir().join(format!("gf-output-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("t.txt");
        std::fs::write(&p, "old content that must go").unwrap();
        let mut o = OutputFile::open(Some(&p)).unwrap();
        o.user("q").unwrap();
        o.assistant("a").unwrap();
        o.user("q2").unwrap();
        o.assistant("b\n").unwrap();
        drop(o);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "User:\nq\n\nAssistant:\na\n\nUser:\nq2\n\nAssistant:\nb\n\n"
        );
        let e = OutputFile::open(Some(&d)).err().unwrap();
        assert!(format!("{e:#}").starts_with("failed to open output file (-o)"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
