//! The SMTP reply parser: pure, incremental, capped.
//!
//! It works on the bytes received so far and answers [`Parsed::Incomplete`] until a whole
//! reply is there, so the stream above it can read more. It is strict where classification
//! depends on it (a first line that is not `DDD`, `DDD ` or `DDD-` is not SMTP) and lenient
//! where real servers differ (bare LF line ends, a bare code, mixed codes in one multi-line
//! reply), recording every leniency so the report can warn about it.

use super::escape;

/// Longest reply line accepted, CRLF included. RFC 5321 asks for 512; real servers send
/// longer EHLO lines, so this allows four times that before calling it hostile.
pub const MAX_LINE: usize = 2048;
/// Longest whole reply accepted. A real EHLO reply is well under 1 KiB.
pub const MAX_REPLY: usize = 64 * 1024;

/// Something a server did that is tolerated but worth a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lenience {
    /// A line ended in LF without CR.
    BareLf,
    /// The lines of one multi-line reply carried different codes; the last one is used.
    MixedCodes,
}

impl Lenience {
    pub fn describe(self) -> &'static str {
        match self {
            Lenience::BareLf => "reply lines end in a bare LF instead of CRLF",
            Lenience::MixedCodes => "a multi-line reply mixes reply codes",
        }
    }
}

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line after the code and separator, control bytes escaped.
    pub lines: Vec<String>,
    pub lenience: Vec<Lenience>,
}

impl Reply {
    /// 2 (positive), 3 (intermediate), 4 (transient) or 5 (permanent).
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// The reply as one line, as a report shows it: `421 Service not available`.
    pub fn summary(&self) -> String {
        match self.lines.first() {
            Some(t) if !t.is_empty() => format!("{} {}", self.code, t),
            _ => self.code.to_string(),
        }
    }

    /// The reply as received, for EOP's Message: every line with its code (and `-` on all but
    /// the last), CR LF removed, lines joined by a space.
    pub fn as_received(&self) -> String {
        let last = self.lines.len().saturating_sub(1);
        let lines: Vec<String> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, t)| match (t.is_empty(), i == last) {
                (true, true) => self.code.to_string(),
                (false, true) => format!("{} {t}", self.code),
                (_, false) => format!("{}-{t}", self.code),
            })
            .collect();
        if lines.is_empty() {
            self.code.to_string()
        } else {
            lines.join(" ")
        }
    }

    /// The EHLO keywords (the first word of every line after the greeting), upper-cased.
    pub fn ehlo_keywords(&self) -> impl Iterator<Item = String> + '_ {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(|w| w.to_ascii_uppercase()))
    }

    /// The enhanced status code (`5.7.1`) at the start of the first line, if any. Only
    /// meaningful when the server advertised ENHANCEDSTATUSCODES.
    pub fn enhanced_code(&self) -> Option<&str> {
        let first = self.lines.first()?.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let ok = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }
}

/// Why received bytes cannot be a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("not an SMTP reply: \"{line}\"")]
    NotAReply { line: String },
    #[error("reply line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("reply longer than {limit} bytes")]
    ReplyTooLong { limit: usize },
}

/// The parser's answer for the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A whole reply, and how many bytes of the buffer it used.
    Complete { reply: Reply, consumed: usize },
}

/// Incremental parser state: where the current line starts and how far the buffer has been
/// searched for its end, so bytes arriving one at a time are each looked at once.
#[derive(Debug, Default)]
pub struct ReplyParser {
    line_start: usize,
    scanned: usize,
    code: Option<u16>,
    lines: Vec<String>,
    lenience: Vec<Lenience>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `buf`, which must start at the beginning of the reply and only grow between
    /// calls until a reply is complete; after `Complete` the caller drops `consumed` bytes
    /// and the parser starts afresh.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ReplyError> {
        loop {
            // The current line must end (LF included) by `cap`, whichever limit comes first.
            // Nothing past `cap` is looked at, so the error for a line that crosses it does
            // not depend on how the bytes were split into reads (found by the property tests:
            // a long line crossing MAX_REPLY was LineTooLong when read at once, ReplyTooLong
            // when read a byte at a time).
            let line_cap = self.line_start + MAX_LINE;
            let cap = line_cap.min(MAX_REPLY);
            let seen = buf.len().min(cap);
            check_prefix(&buf[self.line_start..seen])?;
            let from = self.scanned.max(self.line_start);
            let Some(nl) = buf[from..seen].iter().position(|&b| b == b'\n') else {
                self.scanned = seen;
                if buf.len() <= cap {
                    return Ok(Parsed::Incomplete);
                }
                return Err(if line_cap <= MAX_REPLY {
                    ReplyError::LineTooLong { limit: MAX_LINE }
                } else {
                    ReplyError::ReplyTooLong { limit: MAX_REPLY }
                });
            };
            let end = from + nl;
            let raw = &buf[self.line_start..end];
            let content = match raw.strip_suffix(b"\r") {
                Some(c) => c,
                None => {
                    self.note(Lenience::BareLf);
                    raw
                }
            };
            let (code, last, text) = parse_line(content)?;
            if self.code.is_some_and(|c| c != code) {
                self.note(Lenience::MixedCodes);
            }
            self.code = Some(code);
            self.lines.push(text);
            self.line_start = end + 1;
            self.scanned = self.line_start;
            if last {
                let done = std::mem::take(self);
                return Ok(Parsed::Complete {
                    consumed: done.line_start,
                    reply: Reply {
                        code,
                        lines: done.lines,
                        lenience: done.lenience,
                    },
                });
            }
        }
    }

    fn note(&mut self, l: Lenience) {
        if !self.lenience.contains(&l) {
            self.lenience.push(l);
        }
    }
}

/// Rejects a line as soon as its first bytes show it is not a reply (an SSH or HTTP banner),
/// without waiting for its end.
fn check_prefix(line: &[u8]) -> Result<(), ReplyError> {
    let ok = line.iter().take(4).enumerate().all(|(i, &b)| match i {
        0 => (b'2'..=b'5').contains(&b),
        1 | 2 => b.is_ascii_digit(),
        _ => matches!(b, b' ' | b'-' | b'\r' | b'\n'),
    });
    if ok { Ok(()) } else { Err(not_a_reply(line)) }
}

fn not_a_reply(line: &[u8]) -> ReplyError {
    let end = line
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(line.len())
        .min(80);
    ReplyError::NotAReply {
        line: escape(&line[..end]),
    }
}

/// One line without its line end: `(code, is_last, text)`.
fn parse_line(content: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    if content.len() < 3
        || !content[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&content[0])
    {
        return Err(not_a_reply(content));
    }
    let code = content[..3]
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    match content.get(3) {
        None => Ok((code, true, String::new())),
        Some(b' ') => Ok((code, true, escape(&content[4..]))),
        Some(b'-') => Ok((code, false, escape(&content[4..]))),
        Some(_) => Err(not_a_reply(content)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected result of parsing one buffer in one go.
    enum Want {
        Reply(u16, &'static [&'static str], usize, &'static [Lenience]),
        Incomplete,
        NotAReply,
        LineTooLong,
        ReplyTooLong,
    }
    use Want::*;

    fn check(input: &[u8], want: Want) {
        let got = ReplyParser::new().parse(input);
        let shown = escape(&input[..input.len().min(60)]);
        match (want, got) {
            (Reply(code, lines, consumed, len), Ok(Parsed::Complete { reply, consumed: c })) => {
                assert_eq!(reply.code, code, "{shown}");
                assert_eq!(reply.lines, lines, "{shown}");
                assert_eq!(c, consumed, "{shown}");
                assert_eq!(reply.lenience, len, "{shown}");
            }
            (Incomplete, Ok(Parsed::Incomplete)) => {}
            (NotAReply, Err(ReplyError::NotAReply { .. })) => {}
            (LineTooLong, Err(ReplyError::LineTooLong { .. })) => {}
            (ReplyTooLong, Err(ReplyError::ReplyTooLong { .. })) => {}
            (_, got) => panic!("{shown}: unexpected {got:?}"),
        }
    }

    #[test]
    fn good_replies() {
        check(
            b"220 mail.contoso.com ESMTP\r\n",
            Reply(220, &["mail.contoso.com ESMTP"], 28, &[]),
        );
        check(b"220\r\n", Reply(220, &[""], 5, &[]));
        check(b"220 \r\n", Reply(220, &[""], 6, &[]));
        check(
            b"250-mail.contoso.com\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n",
            Reply(
                250,
                &["mail.contoso.com", "PIPELINING", "STARTTLS", "SMTPUTF8"],
                66,
                &[],
            ),
        );
        check(
            b"421 4.3.2 Service not available\r\n",
            Reply(421, &["4.3.2 Service not available"], 33, &[]),
        );
        check(
            b"554 No SMTP service here\r\n",
            Reply(554, &["No SMTP service here"], 26, &[]),
        );
        // Bytes after the reply are left for the caller (STARTTLS injection detection).
        check(
            b"220 Ready to start TLS\r\nJUNK",
            Reply(220, &["Ready to start TLS"], 24, &[]),
        );
    }

    #[test]
    fn tolerated_replies() {
        check(b"220 hi\n", Reply(220, &["hi"], 7, &[Lenience::BareLf]));
        check(
            b"250-a\n250 b\r\n",
            Reply(250, &["a", "b"], 13, &[Lenience::BareLf]),
        );
        check(
            b"250-a\r\n251 b\r\n",
            Reply(251, &["a", "b"], 14, &[Lenience::MixedCodes]),
        );
        check(
            b"220 nul\x00 and \xff\r\n",
            Reply(220, &["nul\\x00 and \\xff"], 16, &[]),
        );
    }

    #[test]
    fn incomplete_replies() {
        check(b"", Incomplete);
        check(b"2", Incomplete);
        check(b"22", Incomplete);
        check(b"220", Incomplete);
        check(b"220 almost", Incomplete);
        check(b"220 almost\r", Incomplete);
        check(b"250-first\r\n", Incomplete);
        check(b"250-first\r\n250", Incomplete);
    }

    #[test]
    fn not_replies() {
        check(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n", NotAReply);
        check(b"S", NotAReply);
        check(b"HTTP/1.1 400 Bad Request\r\n", NotAReply);
        check(b"\r\n", NotAReply);
        check(b"\n", NotAReply);
        check(b"22\r\n", NotAReply);
        check(b"2a0 x\r\n", NotAReply);
        check(b"120 x\r\n", NotAReply);
        check(b"620 x\r\n", NotAReply);
        check(b"220Ready\r\n", NotAReply);
        check(b"220_x", NotAReply);
        check(b"250-ok\r\nbogus\r\n", NotAReply);
        check(b"\x16\x03\x01\x00", NotAReply);
    }

    #[test]
    fn limits() {
        let mut long = b"220 ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE));
        check(&long, LineTooLong);
        long.extend(b"\r\n");
        check(&long, LineTooLong);

        let mut many = Vec::new();
        while many.len() <= MAX_REPLY {
            many.extend(b"250-0123456789012345678901234567890123456789\r\n");
        }
        check(&many, ReplyTooLong);

        // A line crossing the reply cap before it passes its own: the reply cap is what is
        // passed first, whether the bytes come at once or one at a time.
        let mut crossing = b"200-\r\n".repeat(10922);
        crossing.extend(b"250 ");
        crossing.extend(std::iter::repeat_n(b' ', MAX_LINE - 4));
        crossing.extend(b"\r\n");
        check(&crossing, ReplyTooLong);

        // Exactly at the line limit is still fine.
        let mut edge = b"220 ".to_vec();
        edge.extend(std::iter::repeat_n(b'a', MAX_LINE - 6));
        edge.extend(b"\r\n");
        assert_eq!(edge.len(), MAX_LINE);
        let len = edge.len();
        let got = ReplyParser::new().parse(&edge).unwrap();
        assert!(matches!(got, Parsed::Complete { consumed, .. } if consumed == len));
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once() {
        let input = b"250-mail.contoso.com\r\n250-SIZE 35882577\n250 ENHANCEDSTATUSCODES\r\n";
        let mut p = ReplyParser::new();
        let mut got = None;
        for n in 1..=input.len() {
            match p.parse(&input[..n]).unwrap() {
                Parsed::Incomplete => assert!(n < input.len()),
                Parsed::Complete { reply, consumed } => {
                    assert_eq!(n, input.len());
                    assert_eq!(consumed, input.len());
                    got = Some(reply);
                }
            }
        }
        let reply = got.expect("complete");
        assert_eq!(reply.lines.len(), 3);
        assert_eq!(reply.lenience, vec![Lenience::BareLf]);
        assert_eq!(
            reply.ehlo_keywords().collect::<Vec<_>>(),
            vec!["SIZE", "ENHANCEDSTATUSCODES"]
        );
    }

    #[test]
    fn enhanced_codes() {
        let r = |t: &str| super::Reply {
            code: 550,
            lines: vec![t.into()],
            lenience: vec![],
        };
        assert_eq!(r("5.7.1 Relay denied").enhanced_code(), Some("5.7.1"));
        assert_eq!(r("4.3.2 busy").enhanced_code(), Some("4.3.2"));
        assert_eq!(r("Relay denied").enhanced_code(), None);
        assert_eq!(r("5.7 x").enhanced_code(), None);
        assert_eq!(r("3.1.1 x").enhanced_code(), None);
        assert_eq!(r("").enhanced_code(), None);
    }
}
