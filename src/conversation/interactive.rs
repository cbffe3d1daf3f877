//! Conversation mode's interactive loop (`-cnv`; llama-cli's default with a chat template on
//! a terminal): questions from `-p` and standard input, the conversation kept within the
//! context, each answer streamed (Ctrl-C stops it) and followed by a line of timings, or one
//! JSON record per turn. The turns themselves are [`super::Conversation`]'s.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{load_models, Conversation, TurnSettings};
use crate::engine::ffi::signal;
use crate::generate::{Stdout, TokenSink};
use crate::notice;
use crate::output_file::{self, OutputFile};
use crate::prompt::{self, Assembled, Exchange, PromptInput, Template};
use crate::settings::RunSettings;

/// The answer's text to stdout, until Ctrl-C stops it.
struct TurnSink(Stdout);

impl TokenSink for TurnSink {
    fn text(&mut self, piece: &str) -> Result<bool> {
        if signal::interrupted() {
            return Ok(false);
        }
        self.0.text(piece)
    }
}

/// Longest question line read, in bytes; the rest of a longer line is skipped. Far more than
/// any context holds (a question longer than the context is refused anyway).
const MAX_LINE_BYTES: usize = 4 << 20;

/// Questions: `-p` first (if given), then one per line from standard input until EOF or
/// `/exit`; on a terminal each is asked for with llama-cli's `> ` prompt. Lines end at LF, CR
/// or CRLF; a line that is not UTF-8 or holds a NUL byte is refused in one line and the
/// conversation goes on.
struct Questions {
    first: Option<String>,
    tty: bool,
    input: Box<dyn std::io::BufRead>,
    /// The last line ended in CR: an LF right after it belongs to that line end.
    after_cr: bool,
    line_no: usize,
}

impl Questions {
    fn next(&mut self) -> Result<Option<String>> {
        if let Some(q) = self.first.take() {
            return Ok(Some(q));
        }
        loop {
            if self.tty {
                print!("\n> ");
                std::io::stdout().flush().ok();
            }
            let Some((bytes, cut)) = self
                .read_line()
                .context("cannot read a question from standard input")?
            else {
                return Ok(None);
            };
            self.line_no += 1;
            let n = self.line_no;
            let line = match String::from_utf8(bytes) {
                Ok(l) => l,
                Err(e) => {
                    notice!(
                        "input line {n} is not valid UTF-8 (first bad byte at offset {}): not asked",
                        e.utf8_error().valid_up_to()
                    );
                    continue;
                }
            };
            if let Some(at) = line.find('\0') {
                notice!("input line {n} holds a NUL byte (at offset {at}): not asked");
                continue;
            }
            if cut {
                notice!(
                    "input line {n} is longer than {} MiB: not asked",
                    MAX_LINE_BYTES >> 20
                );
                continue;
            }
            let q = line.trim();
            match q {
                "" => {}
                "/exit" | "/quit" | "/bye" => return Ok(None),
                _ => return Ok(Some(q.to_owned())),
            }
        }
    }

    /// The next line's bytes without its end (LF, CR or CRLF), and whether it was cut at
    /// [`MAX_LINE_BYTES`]; None at the end of input.
    fn read_line(&mut self) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        let mut line = Vec::new();
        let mut cut = false;
        let mut any = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(any.then_some((line, cut)));
            }
            if std::mem::take(&mut self.after_cr) && buf[0] == b'\n' {
                self.input.consume(1);
                continue;
            }
            any = true;
            let end = buf.iter().position(|&b| b == b'\n' || b == b'\r');
            let take = end.unwrap_or(buf.len());
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            cut |= take > room;
            line.extend_from_slice(&buf[..take.min(room)]);
            match end {
                Some(e) => {
                    self.after_cr = buf[e] == b'\r';
                    self.input.consume(e + 1);
                    return Ok(Some((line, cut)));
                }
                None => self.input.consume(take),
            }
        }
    }
}

/// Conversation mode.
///
/// # Errors
/// Bad input or engine failures, as one message; a turn that fails ends the conversation.
pub fn run(s: &RunSettings) -> Result<()> {
    let Some(gem) = s.gem.as_ref().filter(|g| g.draft.is_none()) else {
        bail!("conversation mode needs GemFilter on the target itself (no --gem off, no --gem-draft); use -st for one turn");
    };
    if s.input.context.is_none() {
        bail!("conversation mode needs the document as -f FILE");
    }
    let t_load = Instant::now();
    let (filter, full) = load_models(&s.model, gem)?;
    let filter_engine = filter
        .as_ref()
        .or(full.as_ref())
        .context("no model loaded")?;
    notice!(
        "conversation: {} {} ({:.1} s to load{}); one question per line, /exit to end",
        s.model.meta.display_name(),
        if full.is_some() {
            format!("and its {}-layer filter model resident", gem.layer + 1)
        } else {
            format!(
                "reloaded per answer; its {}-layer filter model resident",
                gem.layer + 1
            )
        },
        t_load.elapsed().as_secs_f64(),
        filter_engine
            .device_mem_now()
            .map_or(String::new(), |b| format!(
                ", {:.2} GB of device memory",
                b as f64 / 1e9
            ))
    );
    let template =
        prompt::choose_template(&filter_engine.model, false, s.chat_template.as_deref())?;
    if matches!(template, Template::Raw) {
        bail!("conversation mode needs a chat template (the model has none: give --chat-template NAME, or use -st)");
    }
    signal::install();
    let stdin = std::io::stdin();
    let mut questions = Questions {
        first: s.input.question.clone().filter(|q| !q.trim().is_empty()),
        tty: stdin.is_terminal(),
        input: Box::new(stdin.lock()),
        after_cr: false,
        line_no: 0,
    };
    let mut history: Vec<Exchange> = Vec::new();
    // Turns answered, counting those whose exchanges were dropped to fit the context.
    let mut asked = 0;
    let mut conversation = Conversation::new(filter_engine, full.as_ref()).saving(s.cache_save);
    let settings = TurnSettings::of(s, gem);
    let mut output = OutputFile::open(s.output_file.as_deref())?;
    while let Some(question) = questions.next()? {
        let Some(asm) = fit(s, &filter_engine.model, &template, &question, &mut history)? else {
            continue;
        };
        let mut sink = TurnSink(Stdout { enabled: !s.json });
        asked += 1;
        crate::log_file::prompt(&asm.text);
        output.user(&output_file::turn_message(&s.input, &question, asked == 1))?;
        let rec = conversation.turn(&settings, &asm, asked, &question, &mut sink)?;
        output.assistant(&rec.answer)?;
        history.push(Exchange {
            question,
            answer: rec.answer.trim().to_owned(),
        });
        if s.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &rec.record(&settings))?;
            writeln!(out)?;
        } else {
            println!();
            if let Some(why) = &rec.filter_skipped {
                notice!("{why}");
            }
            notice!(
                "turn {}{}: filter layers decoded {} tokens, selected {} of {} (document {} tokens): filter {:.2} s, selection {:.3} s, re-run {:.2} s, first token {:.2} s",
                rec.turn,
                if rec.interrupted { " (stopped by Ctrl-C)" } else { "" },
                rec.filter_tokens_decoded,
                rec.selected_tokens,
                rec.prompt_tokens,
                rec.context_range[1] - rec.context_range[0],
                rec.filter_pass_s,
                rec.selection_s,
                rec.rerun_s,
                rec.first_token_s
            );
        }
    }
    Ok(())
}

/// The prompt for `question` within the context (`-c`, else the model's): when the conversation
/// has outgrown it, its oldest exchanges are dropped, as llama-cli's context shift drops the
/// oldest turns, but the document stays (it is what the conversation is about), until the
/// prompt fits, said in one line. A question that does not fit even with the document alone
/// is refused in one line and the conversation goes on as it was; a document that leaves no
/// room for any question ends it.
///
/// # Errors
/// A prompt that cannot be assembled, or a document that fills the context.
fn fit(
    s: &RunSettings,
    model: &llama_cpp_2::model::LlamaModel,
    template: &Template,
    question: &str,
    history: &mut Vec<Exchange>,
) -> Result<Option<Assembled>> {
    let room = s.model.ctx_limit() as usize;
    let assemble = |history: &[Exchange]| {
        let input = PromptInput {
            question: Some(question.to_owned()),
            history: history.to_vec(),
            ..s.input.clone()
        };
        prompt::assemble_with(model, &input, template, s.chat)
    };
    let asm = assemble(history)?;
    // At least one token of room for the answer.
    if asm.tokens.len() < room {
        return Ok(Some(asm));
    }
    let alone = if history.is_empty() {
        asm
    } else {
        assemble(&[])?
    };
    if alone.tokens.len() >= room {
        if alone.context.end + 1 >= room {
            bail!(
                "the document takes {} tokens of the context of {room}: no question fits; give a larger -c",
                alone.context.end
            );
        }
        notice!(
            "this question makes a prompt of {} tokens with the document, over the context of {room} (-c): not asked; ask a shorter one",
            alone.tokens.len()
        );
        return Ok(None);
    }
    let mut dropped = 0;
    loop {
        history.remove(0);
        dropped += 1;
        let asm = if history.is_empty() {
            alone.clone()
        } else {
            assemble(history)?
        };
        if asm.tokens.len() < room {
            notice!(
                "the conversation outgrew the context of {room} tokens: dropped its oldest {dropped} exchange{} (the document stays)",
                if dropped == 1 { "" } else { "s" }
            );
            return Ok(Some(asm));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Questions;

    fn questions(input: &[u8]) -> Questions {
        Questions {
            first: None,
            tty: false,
            input: Box::new(std::io::Cursor::new(input.to_vec())),
            after_cr: false,
            line_no: 0,
        }
    }

    #[test]
    fn lines_end_at_lf_cr_or_crlf_and_bad_lines_are_skipped() {
        let mut q = questions(b"one\rtwo\r\nthree\n\r\nbad \xff\nnul \0\nfour\r/exit\nnever");
        let mut got = Vec::new();
        while let Some(l) = q.next().unwrap() {
            got.push(l);
        }
        assert_eq!(got, ["one", "two", "three", "four"]);
    }
}
