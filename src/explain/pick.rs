//! The lines to explain in a text on stdin: one per line, or, from a whole NDR message (a
//! saved `.eml`, a pasted bounce), the lines that carry EOP's codes, each once.

use super::parse::{self, Explained};

/// The most of stdin read; an NDR with its original attached is well under this.
pub const MAX_INPUT: usize = 4 * 1024 * 1024;

/// Header names that start lines of a whole message (not of a pasted status line).
const HEADERS: &[&str] = &[
    "from:",
    "to:",
    "subject:",
    "date:",
    "received:",
    "content-type:",
    "mime-version:",
    "reporting-mta:",
    "final-recipient:",
    "action:",
];

/// The wording of Exchange's NDRs around the status line (not on the line itself, as
/// "Remote Server returned" is).
const NDR_PHRASES: &[&str] = &[
    "diagnostic information for administrators",
    "delivery has failed to these recipients",
    "your message couldn't be delivered",
    "your message wasn't delivered",
    "generating server:",
];

/// Whether `lines` are a whole message: two of its headers, or an NDR's own wording. Lines
/// pasted one per line are all explained; a message's other lines are not.
fn is_message(lines: &[String]) -> bool {
    let mut headers = 0;
    for l in lines {
        let l = l.to_ascii_lowercase();
        if NDR_PHRASES.iter().any(|p| l.contains(p)) {
            return true;
        }
        if HEADERS.iter().any(|h| l.starts_with(h)) {
            headers += 1;
            if headers >= 2 {
                return true;
            }
        }
    }
    false
}

/// The most lines picked from one message: an NDR states a handful; a text with thousands
/// of distinct ones is not one message, and each is compared with those before it.
pub const MAX_PICKED: usize = 256;

/// One line to explain, or one that was not recognised.
pub type Entry = Result<Explained, String>;

/// The entries of `text`: every non-empty line, or, when `text` is a whole message, only its
/// recognised lines without repeats (an NDR states its code in the text, the HTML and the
/// delivery-status parts).
pub fn pick(text: &str) -> Vec<Entry> {
    let decoded;
    let text = if text.to_ascii_lowercase().contains("quoted-printable") {
        decoded = quoted_printable(text);
        &decoded
    } else {
        text
    };
    let lines = unfold(text);
    let message = lines.len() > 1 && is_message(&lines);
    if !message {
        return lines
            .iter()
            .map(|l| parse::parse(l).ok_or_else(|| parse::cap(l).to_owned()))
            .collect();
    }
    let mut out: Vec<Explained> = Vec::new();
    for line in &lines {
        let Some(e) = parse::parse(&strip_tags(line)) else {
            continue;
        };
        if out.len() >= MAX_PICKED {
            break;
        }
        match out.iter_mut().find(|o| same(o, &e)) {
            // A fuller statement of a line already picked (`Status: 5.4.316` first, the
            // whole line later) takes its place.
            Some(o) if o.message.is_none() && e.message.is_some() => *o = e,
            Some(_) => {}
            None => out.push(e),
        }
    }
    out.into_iter().map(Ok).collect()
}

/// The same line in another part of the message, or a bare statement of its code.
fn same(a: &Explained, b: &Explained) -> bool {
    a.code == b.code
        && (a.message == b.message || a.message.is_none() || b.message.is_none())
        && (a.server == b.server || a.server.is_none() || b.server.is_none())
}

/// Non-empty lines, with header continuation lines (starting with a space or tab) joined
/// to the header they continue, as RFC 5322 folds long `Diagnostic-Code:` lines.
fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut header = false;
    for raw in text.lines() {
        let folded = raw.starts_with([' ', '\t']);
        if folded && header {
            if let Some(last) = lines.last_mut() {
                if last.len() < parse::MAX_LINE {
                    last.push(' ');
                    last.push_str(raw.trim());
                }
                continue;
            }
        }
        let line = raw.trim();
        header = is_header(line);
        if !line.is_empty() {
            lines.push(line.to_owned());
        }
    }
    lines
}

fn is_header(line: &str) -> bool {
    match line.split_once(':') {
        Some((name, _)) => {
            !name.is_empty()
                && name.len() < 40
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        }
        None => false,
    }
}

/// `line` without HTML tags and with the few entities NDRs use.
fn strip_tags(line: &str) -> String {
    if !line.contains('<') {
        return line.to_owned();
    }
    let mut out = String::with_capacity(line.len());
    let mut in_tag = false;
    for c in line.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Quoted-printable decoded (soft line breaks joined, `=XX` as bytes), leniently: a
/// malformed escape stays as written.
fn quoted_printable(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
            if let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_soft_breaks_and_escapes_are_decoded() {
        assert_eq!(
            quoted_printable("[Message=3DSocket error=\r\n code 10061]"),
            "[Message=Socket error code 10061]"
        );
    }

    #[test]
    fn a_folded_diagnostic_code_header_is_one_line() {
        let lines = unfold(
            "Diagnostic-Code: smtp; 550 5.4.316 Message expired,\n connection refused(Socket error code 10061)\n",
        );
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("(Socket error code 10061)"));
    }
}
