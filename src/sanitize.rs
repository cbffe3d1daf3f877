//! Making error lines safe to print: text from a file or the command line (names, paths,
//! values) may hold newlines, NULs, terminal escape sequences or megabytes of bytes. Untrusted
//! pieces go through [`quote`], [`quote_bytes`] or [`path`] where a message is built, and the
//! whole line through [`line`] where it is printed, so the user always sees one short line.

use std::fmt::Write as _;
use std::path::Path;

/// Longest line [`line`] returns, in characters (the `error: ` prefix comes on top).
pub const MAX_LINE: usize = 240;
/// Default cut of one quoted value, in characters before escaping.
pub const MAX_VALUE: usize = 60;
/// Default cut of a quoted path.
pub const MAX_PATH: usize = 100;

/// True for characters that must not reach a terminal as they are: C0/C1 controls, DEL, and
/// the invisible format characters that reorder or hide text (bidi overrides, zero widths).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if u32::from(c) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// `s` with every unsafe character escaped (`\n`, `\x1b`, `\u{202e}`), at most [`MAX_LINE`]
/// characters long; a cut line ends in `…`, and an escape is never split.
#[must_use]
pub fn line(s: &str) -> String {
    let mut out = String::new();
    let mut count = 0usize;
    // Byte length of the longest prefix of whole units that leaves room for the `…`.
    let mut keep = 0usize;
    for c in s.chars() {
        if count < MAX_LINE {
            keep = out.len();
        }
        let before = out.len();
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
        count += out[before..].chars().count();
        if count > MAX_LINE {
            out.truncate(keep);
            out.push('…');
            return out;
        }
    }
    out
}

/// Untrusted text in single quotes: controls escaped, `'` and `\` escaped, cut after
/// [`MAX_VALUE`] characters (`…` marks the cut, inside the quotes).
#[must_use]
pub fn quote(s: &str) -> String {
    quote_max(s, MAX_VALUE)
}

/// [`quote`] with a cut after `max` characters of the original.
#[must_use]
pub fn quote_max(s: &str, max: usize) -> String {
    let mut out = String::from("'");
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        push_quoted(&mut out, c);
    }
    out.push('\'');
    out
}

fn push_quoted(out: &mut String, c: char) {
    match c {
        '\'' => out.push_str("\\'"),
        '\\' => out.push_str("\\\\"),
        c if is_unsafe(c) => push_escaped(out, c),
        c => out.push(c),
    }
}

/// Raw bytes from a file, quoted: valid UTF-8 is kept (controls escaped), other bytes become
/// `\xNN`; at most `max` characters of the original.
#[must_use]
pub fn quote_bytes(b: &[u8], max: usize) -> String {
    // A bounded prefix is enough: every shown character takes at most 4 bytes.
    let mut rest = &b[..b.len().min(max.saturating_mul(4).saturating_add(4))];
    let mut out = String::from("'");
    let mut shown = 0usize;
    while !rest.is_empty() {
        let (valid, bad_len) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => (
                // The prefix up to valid_up_to() is UTF-8 by definition.
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
                e.error_len().unwrap_or(rest.len() - e.valid_up_to()),
            ),
        };
        for c in valid.chars() {
            if shown == max {
                out.push_str("…'");
                return out;
            }
            push_quoted(&mut out, c);
            shown += 1;
        }
        let bad = &rest[valid.len()..valid.len() + bad_len];
        for &x in bad {
            if shown == max {
                out.push_str("…'");
                return out;
            }
            let _ = write!(out, "\\x{x:02x}");
            shown += 1;
        }
        rest = &rest[valid.len() + bad_len..];
    }
    out.push('\'');
    out
}

/// A path in quotes, long ones cut in the middle so that the file name stays visible.
#[must_use]
pub fn path(p: &Path) -> String {
    let s = p.to_string_lossy();
    let n = s.chars().count();
    if n <= MAX_PATH {
        return quote_max(&s, MAX_PATH);
    }
    let mut out = String::from("'");
    for c in s.chars().take(MAX_PATH / 2 - 1) {
        push_quoted(&mut out, c);
    }
    out.push('…');
    for c in s.chars().skip(n - MAX_PATH / 2) {
        push_quoted(&mut out, c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_lines_capped() {
        let l = line("a\nb\x1b[31mred\0\u{202e}x");
        assert_eq!(l, "a\\nb\\x1b[31mred\\0\\u{202e}x");
        let long = "x".repeat(10_000);
        let l = line(&long);
        assert_eq!(l.chars().count(), MAX_LINE);
        assert!(l.ends_with('…'));
        let l = line(&"\n".repeat(1_000_000));
        assert!(l.chars().count() <= MAX_LINE && !l.contains('\n'));
        // A cut never leaves half an escape.
        let l = line(&format!("{}\x1b", "y".repeat(MAX_LINE - 3)));
        assert!(l.ends_with("y…"), "{l}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "'abc'");
        assert_eq!(quote("it's\\"), "'it\\'s\\\\'");
        assert_eq!(quote_max("abcdef", 3), "'abc…'");
        assert_eq!(quote("a\tb"), "'a\\tb'");
        assert_eq!(quote(&"z".repeat(1000)).chars().count(), MAX_VALUE + 3);
        assert_eq!(quote_bytes(b"ok\xff\x00z", 10), "'ok\\xff\\0z'");
        assert_eq!(quote_bytes(b"caf\xc3\xa9", 10), "'café'");
        let big = vec![b'\n'; 50_000_000];
        let q = quote_bytes(&big, 20);
        assert!(q.len() < 100, "{q}");
    }

    #[test]
    fn paths_keep_their_file_name() {
        let p = format!("/{}/model.gguf", "d".repeat(500));
        let q = path(Path::new(&p));
        assert!(q.chars().count() <= MAX_PATH + 4, "{q}");
        assert!(q.ends_with("model.gguf'") && q.contains('…'), "{q}");
        assert_eq!(path(Path::new("/a/b\nc")), "'/a/b\\nc'");
    }
}
