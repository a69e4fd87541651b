//! The one rendering of text that came from outside (a server's replies, DNS, a certificate)
//! for a terminal or a log line: nothing in it can move the cursor, set the title, clear the
//! screen or start a fake line.

use std::fmt::Write;

/// `text` with every character a terminal would act on written as an escape instead:
/// `\r`, `\n`, `\t`, other control characters as `\xNN` (C0, DEL, C1), invisible formatting
/// and bidirectional overrides as `\u{NNNN}`, and bytes that are not UTF-8 as `\xNN`.
/// Printable text, non-ASCII letters included, is kept as it is.
///
/// A backslash is kept as it is too, so the function is idempotent: a detail that quotes an
/// already escaped reply is not escaped twice when the report escapes the detail as a whole.
pub fn escape(text: impl AsRef<[u8]>) -> String {
    let bytes = text.as_ref();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if invisible(c) => {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Characters that print nothing yet change how what follows is shown: zero-width ones, the
/// line and paragraph separators, and the bidirectional controls that can make a name read
/// backwards ("Trojan Source").
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn terminal_controls_are_escaped_and_text_is_kept() {
        let cases: &[(&[u8], &str)] = &[
            (b"mail.contoso.com", "mail.contoso.com"),
            (b"CN=evil\x1b]0;owned\x07", "CN=evil\\x1b]0;owned\\x07"),
            (b"\x1b[2J\r\n  ok  fake", "\\x1b[2J\\r\\n  ok  fake"),
            (b"tab\there\x7f", "tab\\there\\x7f"),
            ("M\u{fc}ller GmbH".as_bytes(), "M\u{fc}ller GmbH"),
            ("C1 \u{9b}31m".as_bytes(), "C1 \\x9b31m"),
            ("abc\u{202e}fed".as_bytes(), "abc\\u{202e}fed"),
            (b"odd\x00host \xff\xfe", "odd\\x00host \\xff\\xfe"),
            (b"back\\slash", "back\\slash"),
        ];
        for (raw, want) in cases {
            assert_eq!(escape(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let raw = b"550 \x1b[31mno\r\n\xff \\x1b \xe2\x80\xae";
        let once = escape(raw);
        assert_eq!(escape(&once), once);
        assert!(once.chars().all(|c| !c.is_control()));
    }
}
