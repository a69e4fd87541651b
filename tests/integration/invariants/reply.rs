//! The SMTP reply parser, on any bytes cut into any chunks.

use connector_probe::smtp::reply::{MAX_LINE, MAX_REPLY};
use connector_probe::smtp::{Parsed, Reply, ReplyError, ReplyParser};

/// Feeds `data` to the parser in chunks of the given sizes (cycled; none means all at once)
/// and checks every answer, then checks that the same bytes in one chunk give the same
/// replies and the same ending.
pub fn check(data: &[u8], chunks: &[usize]) {
    let whole = feed(data, &[]);
    let split = feed(data, chunks);
    assert_eq!(
        split.replies, whole.replies,
        "replies depend on the chunking"
    );
    match (&split.end, &whole.end) {
        (None, None) => {}
        // A line is rejected as soon as its first bytes show it is not a reply, so with less
        // received the quoted line can only be shorter. A character cut in two by the chunk
        // end is quoted byte by byte (`\xd1`), so those escapes are not part of the prefix.
        (
            Some(ReplyError::NotAReply { line: early }),
            Some(ReplyError::NotAReply { line: late }),
        ) => assert!(
            late.starts_with(without_cut_character(early)),
            "{early:?} vs {late:?}"
        ),
        (Some(a), Some(b)) => assert_eq!(a, b, "the error depends on the chunking"),
        (a, b) => panic!("chunked ended with {a:?}, all at once with {b:?}"),
    }
}

/// `quoted` without the escapes of a UTF-8 character the chunk end cut short: at most three
/// trailing `\xNN` of bytes from 0x80 up.
fn without_cut_character(quoted: &str) -> &str {
    let mut s = quoted;
    for _ in 0..3 {
        let Some(i) = s.len().checked_sub(4) else {
            break;
        };
        let tail = &s.as_bytes()[i..];
        let high = tail[0] == b'\\'
            && tail[1] == b'x'
            && matches!(tail[2], b'8'..=b'9' | b'a'..=b'f')
            && tail[3].is_ascii_hexdigit();
        if !high {
            break;
        }
        s = &s[..i];
    }
    s
}

/// The replies parsed from a byte stream, and the error that stopped it (`None`: it ran out
/// of bytes in the middle of a reply, or between replies).
struct Run {
    replies: Vec<(Reply, usize)>,
    end: Option<ReplyError>,
}

/// Drives the parser as `SmtpStream::read_reply` does: parse what has arrived; on
/// `Complete` drop the consumed bytes and parse the rest; on `Incomplete` receive the next
/// chunk.
fn feed(data: &[u8], chunks: &[usize]) -> Run {
    let mut sizes = chunks.iter().map(|&n| n.max(1)).cycle();
    let mut parser = ReplyParser::new();
    let mut replies = Vec::new();
    // `data[start..received]` is the buffer; `line_from` is where its last line begins.
    let (mut start, mut received, mut line_from) = (0, 0, 0);
    loop {
        let buf = &data[start..received];
        match parser.parse(buf) {
            Ok(Parsed::Complete { reply, consumed }) => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                assert_eq!(buf[consumed - 1], b'\n', "complete before a line end");
                assert!(
                    consumed <= MAX_REPLY,
                    "a {consumed}-byte reply passed the cap"
                );
                let ends = buf[..consumed].iter().filter(|&&b| b == b'\n').count();
                assert_eq!(reply.lines.len(), ends, "one line per line end");
                replies.push((reply, consumed));
                start += consumed;
            }
            Ok(Parsed::Incomplete) => {
                let partial = received - line_from.max(start);
                assert!(
                    buf.len() <= MAX_REPLY && partial <= MAX_LINE,
                    "incomplete with {} byte(s) buffered, {partial} in the last line",
                    buf.len()
                );
                if received == data.len() {
                    return Run { replies, end: None };
                }
                let next = match sizes.next() {
                    Some(n) => (received + n).min(data.len()),
                    None => data.len(),
                };
                if let Some(nl) = data[received..next].iter().rposition(|&b| b == b'\n') {
                    line_from = received + nl + 1;
                }
                received = next;
            }
            Err(e) => {
                return Run {
                    replies,
                    end: Some(e),
                };
            }
        }
    }
}
