//! What the user types, read as llama-completion's simple console reads it
//! (`console::readline_simple`): whole lines from standard input, never echoed. A line ending
//! in `/` returns control at once; one ending in `\` toggles whether the next line continues
//! the input (so with `-mli` input goes on until a line ends in `\`).

use std::io::BufRead;

use anyhow::{Context, Result};

/// Standard input, line by line.
pub struct Lines {
    input: Box<dyn BufRead>,
}

impl Lines {
    pub fn stdin() -> Self {
        Self::new(Box::new(std::io::stdin().lock()))
    }

    pub fn new(input: Box<dyn BufRead>) -> Self {
        Self { input }
    }

    /// One line without its `\n`; None at the end of input.
    fn line(&mut self) -> Result<Option<String>> {
        let mut bytes = Vec::new();
        let n = self
            .input
            .read_until(b'\n', &mut bytes)
            .context("cannot read standard input")?;
        if n == 0 {
            return Ok(None);
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// One input (llama-completion's `do { readline } while (another_line)`): the lines read,
    /// each ending in `\n` unless `/` ended it. Empty at the end of input.
    ///
    /// # Errors
    /// A read error on standard input.
    pub fn read(&mut self, multiline: bool) -> Result<String> {
        let mut buffer = String::new();
        loop {
            let Some(mut line) = self.line()? else {
                return Ok(buffer);
            };
            let mut more = multiline;
            match line.chars().last() {
                Some('/') => {
                    line.pop();
                    line.push('\n');
                    buffer.push_str(&line);
                    return Ok(buffer);
                }
                Some('\\') => {
                    line.pop();
                    more = !more;
                }
                _ => {}
            }
            line.push('\n');
            buffer.push_str(&line);
            if !more {
                return Ok(buffer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    fn lines(text: &'static str) -> Lines {
        Lines::new(Box::new(std::io::Cursor::new(text.as_bytes())))
    }

    #[test]
    fn one_line_at_a_time_then_empty() {
        let mut l = lines("a\nb");
        assert_eq!(l.read(false).unwrap(), "a\n");
        assert_eq!(l.read(false).unwrap(), "b\n");
        assert_eq!(l.read(false).unwrap(), "");
    }

    #[test]
    fn backslash_and_slash_as_llama_completion() {
        // `\` continues (or, with -mli, ends) the input; `/` returns control at once.
        let mut l = lines("one\\\ntwo\nthree/\n");
        assert_eq!(l.read(false).unwrap(), "one\ntwo\n");
        assert_eq!(l.read(false).unwrap(), "three\n");
        let mut l = lines("one\ntwo\\\nthree\n");
        assert_eq!(l.read(true).unwrap(), "one\ntwo\n");
        // Input ending mid-way keeps what was read.
        assert_eq!(l.read(true).unwrap(), "three\n");
    }
}
