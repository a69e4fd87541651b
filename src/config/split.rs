//! A bounded-memory way to read a large configuration: the file is cut at its top-level table
//! headers, every `[[connector]]` with its sub-tables is one segment, and the connectors are
//! deserialized a batch at a time instead of the whole document at once.
//!
//! toml lexes the whole input into one vector and builds the document's tree before serde sees
//! it; at 100,000 connectors that is some 350 MB of heap for a 6.8 MB file, and glibc keeps it.
//! Here the scan reads the lexer as an iterator and keeps only the segments' byte ranges, and
//! each batch's tokens and tree are freed before the next one is read. At 100,000 connectors
//! `check-config`'s peak RSS went from 233 MiB to 124 MiB, its heap peak from 285 MB to 95 MB
//! (heaptrack), its CPU time from 0.71 s to 0.52 s. A file with an error pays for both reads.
//!
//! The fast path is only taken where it cannot change the result: anything the scan does not
//! understand, and every error of any part, makes [`parse`] return `None`, and the caller
//! parses the whole file as before, so every error message stays exactly that parse's.
//!
//! Why the parts mean what the whole means: the cuts are at line starts where no value is open,
//! so each part lexes as the whole does there. A connector segment's `[[connector]]` appends
//! an element and its `[connector.…]` headers refer to that last element, so a segment means
//! the same wherever it is read. Every other top-level statement (the keys before the first
//! header, the other tables) has a first key other than `connector`, so the two kinds of part
//! never touch the same table and cannot conflict.

use std::ops::Range;

use serde::Deserialize;
use toml_parser::Source;
use toml_parser::lexer::{Lexer, Token, TokenKind};

use std::path::Path;

use super::raw::{RawConfig, RawConnector};
use super::{Config, validate};

/// Connectors deserialized at once: small enough that a batch's tokens and tree are a few
/// hundred kilobytes, large enough that the per-batch cost does not show in the load time.
pub const BATCH: usize = 1000;

/// One batch of segments: a slice of the file with nothing but `[[connector]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    #[serde(rename = "connector")]
    connectors: Vec<RawConnector>,
}

/// The file read through the fast path, or `None` when the whole-document parse must decide
/// (a file without connector segments, anything unusual, any error).
/// The configuration, validated, when the fast path can take `text` and it is valid; `None`
/// otherwise (the caller parses the whole document, whose errors are the ones reported).
/// Each batch is validated as it is read and dropped, so the raw form of every connector is
/// never held at once: at 100,000 connectors that was 40 MB on top of the result, and every
/// reload of a running daemon paid it again.
pub fn load(text: &str, file: &Path) -> Option<Config> {
    let (config, _) = read(
        text,
        BATCH,
        |rest| {
            let config = validate::settings(rest, file).ok()?;
            let shared = std::sync::Arc::new(config.defaults.clone());
            Some((config, shared))
        },
        |(config, shared): &mut (Config, std::sync::Arc<crate::config::Settings>), batch| {
            for rc in batch {
                let i = config.connectors.len();
                match validate::connector_at(&rc, shared, i) {
                    Ok(c) => config.connectors.push(c),
                    Err(_) => return false,
                }
            }
            true
        },
    )?;
    // A name twice is an error, which the whole document's validation reports.
    let mut seen = std::collections::HashSet::with_capacity(config.connectors.len());
    let unique = config
        .connectors
        .iter()
        .all(|c| seen.insert(c.name.as_str()));
    drop(seen);
    unique.then_some(config)
}

/// The raw configuration by the fast path (the tests compare it with the whole parse's).
#[cfg(test)]
pub fn parse(text: &str) -> Option<RawConfig> {
    parse_batched(text, BATCH)
}

#[cfg(test)]
fn parse_batched(text: &str, batch: usize) -> Option<RawConfig> {
    read(text, batch, Some, |raw: &mut RawConfig, part| {
        raw.connectors.extend(part);
        true
    })
}

/// Reads `text` by the fast path: the rest (everything but the connectors) to `first`,
/// then the connectors in batches of at most `batch` to `each`, in file order. `None` when
/// the fast path cannot take the text, a part does not parse, or a callback says no.
fn read<T>(
    text: &str,
    batch: usize,
    first: impl FnOnce(RawConfig) -> Option<T>,
    mut each: impl FnMut(&mut T, Vec<RawConnector>) -> bool,
) -> Option<T> {
    let segments = scan(text)?;
    if segments.is_empty() {
        return None;
    }
    let raw: RawConfig = toml::from_str(&rest(text, &segments)).ok()?;
    // The scan refuses a top-level `connector` key outside the segments; this is the same
    // guard from the other side, should serde ever see one.
    if !raw.connectors.is_empty() {
        return None;
    }
    let mut out = first(raw)?;
    for range in batches(&segments, batch) {
        let part: RawBatch = toml::from_str(&text[range]).ok()?;
        if !each(&mut out, part.connectors) {
            return None;
        }
    }
    Some(out)
}

/// The text without its connector segments: each segment's bytes, newlines included, become
/// spaces. Byte offsets stay the file's. A segment starts at a line start and ends at one (or
/// at the end), so what replaces it is indentation before the next header (or trailing
/// whitespace), and one whitespace token rather than two per line. Line numbers do change,
/// which does not matter: an error here is never reported, the whole file is parsed instead.
fn rest(text: &str, segments: &[Range<usize>]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for segment in segments {
        bytes[segment.clone()].fill(b' ');
    }
    // Whole lines were replaced by ASCII, so the bytes are still UTF-8.
    String::from_utf8(bytes).expect("segments are whole lines")
}

/// Contiguous runs of segments, at most `max` segments each, as byte ranges of the file.
fn batches(segments: &[Range<usize>], max: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut count = 0;
    for segment in segments {
        match out.last_mut() {
            Some(last) if last.end == segment.start && count < max => {
                last.end = segment.end;
                count += 1;
            }
            _ => {
                out.push(segment.clone());
                count = 1;
            }
        }
    }
    out
}

/// What a table header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// `[[connector]]`: a new connector segment.
    Connector,
    /// `[connector.timeouts]` and the like: part of the connector segment before it.
    ConnectorPart,
    /// Any other table: a segment of the rest.
    Other,
}

/// The byte ranges of the connector segments, in file order; `None` when the file has
/// something the scan does not understand.
pub fn scan(text: &str) -> Option<Vec<Range<usize>>> {
    let mut scanner = Scanner {
        text,
        tokens: Source::new(text).lex(),
        peeked: None,
        eof: None,
        end: 0,
    };
    let mut segments = Vec::new();
    let mut open: Option<usize> = None;
    let mut line_start = 0;
    loop {
        let token = scanner.next_significant();
        match token.kind() {
            TokenKind::Eof => break,
            TokenKind::Newline => {}
            TokenKind::Comment => scanner.end_of_line()?,
            TokenKind::LeftSquareBracket => {
                let header = scanner.header()?;
                match header {
                    Header::Connector => {
                        if let Some(start) = open.replace(line_start) {
                            segments.push(start..line_start);
                        }
                    }
                    // A sub-table must follow its connector; elsewhere it is better left to
                    // the whole parse (it is an error, or a table `connector` made oddly).
                    Header::ConnectorPart => {
                        open?;
                    }
                    Header::Other => {
                        if let Some(start) = open.take() {
                            segments.push(start..line_start);
                        }
                    }
                };
                scanner.end_of_line()?;
            }
            TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString => {
                // A key outside a connector is at the top level or in another table. A
                // top-level `connector` key (dotted or an inline array) would be the same
                // array as the segments; refuse it, and any quoted first key, everywhere
                // outside a connector rather than tell the two places apart.
                if open.is_none() && !first_key_is_plain(text, token) {
                    return None;
                }
                scanner.key_value()?;
            }
            _ => return None,
        }
        line_start = scanner.end;
    }
    if let Some(start) = open {
        segments.push(start..text.len());
    }
    Some(segments)
}

/// Whether a key-value line's first token is a bare key other than `connector`.
fn first_key_is_plain(text: &str, token: Token) -> bool {
    token.kind() == TokenKind::Atom && span_text(text, token) != "connector"
}

fn span_text(text: &str, token: Token) -> &str {
    &text[token.span().start()..token.span().end()]
}

struct Scanner<'i> {
    text: &'i str,
    tokens: Lexer<'i>,
    peeked: Option<Token>,
    /// The lexer yields its `Eof` token once; it is kept to answer every later call.
    eof: Option<Token>,
    /// The end of the last token consumed.
    end: usize,
}

impl Scanner<'_> {
    fn pull(&mut self) -> Token {
        if let Some(token) = self.peeked.take() {
            return token;
        }
        match self.tokens.next() {
            Some(token) => {
                if token.kind() == TokenKind::Eof {
                    self.eof = Some(token);
                }
                token
            }
            None => self.eof.expect("the lexer ends with an Eof token"),
        }
    }

    fn next(&mut self) -> Token {
        let token = self.pull();
        self.end = token.span().end();
        token
    }

    fn peek(&mut self) -> Token {
        let token = self.pull();
        self.peeked = Some(token);
        token
    }

    /// The next token that is not whitespace.
    fn next_significant(&mut self) -> Token {
        loop {
            let token = self.next();
            if token.kind() != TokenKind::Whitespace {
                return token;
            }
        }
    }

    /// Whitespace, an optional comment, then a newline or the end. A lone carriage return is
    /// lexed as a newline but is not one in TOML; such a file is left to the whole parse.
    fn end_of_line(&mut self) -> Option<()> {
        let mut token = self.next_significant();
        if token.kind() == TokenKind::Comment {
            token = self.next_significant();
        }
        match token.kind() {
            TokenKind::Eof => Some(()),
            TokenKind::Newline if span_text(self.text, token) != "\r" => Some(()),
            _ => None,
        }
    }

    /// A header after its first `[`, up to and including its last `]`.
    fn header(&mut self) -> Option<Header> {
        // `[[` is two adjacent tokens; `[ [` (not a TOML header) would show whitespace first.
        let array = self.peek().kind() == TokenKind::LeftSquareBracket;
        if array {
            self.next();
        }
        let first = self.next_significant();
        if first.kind() != TokenKind::Atom {
            // A quoted key, or no key at all.
            return None;
        }
        let connector = span_text(self.text, first) == "connector";
        let mut parts = 1;
        loop {
            let token = self.next_significant();
            match token.kind() {
                TokenKind::Dot => {
                    let key = self.next_significant();
                    if !matches!(
                        key.kind(),
                        TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString
                    ) {
                        return None;
                    }
                    parts += 1;
                }
                TokenKind::RightSquareBracket => break,
                _ => return None,
            }
        }
        if array && self.next().kind() != TokenKind::RightSquareBracket {
            return None;
        }
        match (connector, array, parts) {
            (false, _, _) => Some(Header::Other),
            (true, true, 1) => Some(Header::Connector),
            // `[connector]` alone would make the array a table: an error, or a file this
            // scan should not reason about.
            (true, false, 1) => None,
            (true, _, _) => Some(Header::ConnectorPart),
        }
    }

    /// The rest of a key-value statement after its first token: keys, `=`, and a value whose
    /// brackets and braces are followed across lines until they close.
    fn key_value(&mut self) -> Option<()> {
        loop {
            let token = self.next_significant();
            match token.kind() {
                TokenKind::Equals => break,
                TokenKind::Dot
                | TokenKind::Atom
                | TokenKind::BasicString
                | TokenKind::LiteralString => {}
                _ => return None,
            }
        }
        let mut depth: usize = 0;
        loop {
            let token = self.next();
            match token.kind() {
                TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                    depth = depth.checked_sub(1)?;
                }
                TokenKind::Newline if depth == 0 => {
                    return (span_text(self.text, token) != "\r").then_some(());
                }
                TokenKind::Newline if span_text(self.text, token) == "\r" => return None,
                TokenKind::Eof => return (depth == 0).then_some(()),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
