//! Turns byte spans into line and column, and key paths into spans and back.
//!
//! serde reports a span; validation knows a key path. Both are resolved here against
//! toml's spanned document tree, so every error can name line, column and key.

use std::cell::OnceCell;
use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root to a value, e.g. `connector[1].timeouts.dns`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a table key.
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        Self(segs)
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The parsed document with its spans, for locating keys. The tree is parsed on the first
/// question, so a configuration without errors never pays for it (at 100,000 connectors it
/// is a second copy of the document, some 100 MB).
pub struct Locator<'a> {
    source: &'a str,
    parsed: OnceCell<Option<Spanned<DeTable<'a>>>>,
}

impl<'a> Locator<'a> {
    pub fn new(source: &'a str) -> Self {
        Self {
            source,
            parsed: OnceCell::new(),
        }
    }

    fn tree(&self) -> Option<&Spanned<DeTable<'a>>> {
        self.parsed
            .get_or_init(|| DeTable::parse(self.source).ok())
            .as_ref()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.source[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// The span of the key (for a table key) or the value (for an array element) at `path`.
    /// Falls back to the deepest ancestor that exists, so a missing key points at its table.
    pub fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let tree = self.tree()?;
        let mut best = tree.span();
        let mut table: Option<&DeTable<'_>> = Some(tree.get_ref());
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in &path.0 {
            match seg {
                Seg::Key(k) => {
                    let Some((key, v)) =
                        table.and_then(|t| t.iter().find(|(key, _)| key.get_ref() == k))
                    else {
                        break;
                    };
                    best = key.span();
                    value = Some(v);
                }
                Seg::Index(n) => {
                    let Some(item) = value
                        .and_then(|v| v.get_ref().as_array())
                        .and_then(|a| a.get(*n))
                    else {
                        break;
                    };
                    best = item.span();
                    value = Some(item);
                }
            }
            table = value.and_then(|v| v.get_ref().as_table());
        }
        Some(best)
    }

    /// The path of the innermost key whose key or value contains `span`.
    pub fn path_at(&self, span: &Range<usize>) -> Option<KeyPath> {
        let tree = self.tree()?;
        let mut path = KeyPath::root();
        descend_table(tree.get_ref(), span, &mut path).then_some(path)
    }

    /// A best-effort key for a syntax error: the `key =` or `[table]` on the error's line.
    pub fn key_on_line(&self, offset: usize) -> Option<String> {
        let (line, _) = self.line_col(offset);
        let text = self.source.lines().nth(line - 1)?.trim();
        if let Some(header) = text.strip_prefix('[') {
            let name = header.trim_start_matches('[').split(']').next()?.trim();
            return (!name.is_empty()).then(|| name.to_owned());
        }
        let key = text.split('=').next()?.trim();
        (!key.is_empty() && text.contains('=')).then(|| key.to_owned())
    }
}

/// Where to point when toml reports an error without a place: it does so for a key of too many
/// dotted parts ("recursion limit"), so the deepest key is the best guess. Returns the byte
/// offset of the first key with the most parts, and that key shortened for a message; `None`
/// for a document without keys.
pub fn deepest_key(source: &str) -> Option<(usize, String)> {
    let mut best: Option<(usize, Vec<&str>)> = None;
    let mut line_start = 0;
    for line in source.split_inclusive('\n') {
        if let Some((at, parts)) = key_of_line(line) {
            if best.as_ref().is_none_or(|(_, b)| parts.len() > b.len()) {
                best = Some((line_start + at, parts));
            }
        }
        line_start += line.len();
    }
    let (offset, parts) = best?;
    let shown = match parts.len() {
        0..=3 => parts.join("."),
        _ => format!("{}…", parts[..3].join(".")),
    };
    Some((offset, shown))
}

/// The dotted key of a `[table]`, `[[array]]` or `key = value` line, split outside quotes,
/// with the offset where it starts.
fn key_of_line(line: &str) -> Option<(usize, Vec<&str>)> {
    let body = line.trim_start();
    let mut start = line.len() - body.len();
    let key_and_rest = if body.starts_with('[') {
        let brackets = body.len() - body.trim_start_matches('[').len();
        start += brackets;
        &body[brackets..]
    } else {
        body
    };
    let mut parts = Vec::new();
    let mut part_start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in key_and_rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '.') => {
                parts.push(key_and_rest[part_start..i].trim());
                part_start = i + 1;
            }
            (None, ']' | '=' | '#' | '\n') => {
                parts.push(key_and_rest[part_start..i].trim());
                break;
            }
            (None, _) => {}
        }
    }
    (parts.iter().any(|p| !p.is_empty())).then_some((start, parts))
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// Finds the innermost key whose key or value holds `span`. Tables are searched whatever
/// their own span, because a `[table]` or `[[array]]` value spans only its header.
fn descend_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut KeyPath) -> bool {
    for (key, value) in table.iter() {
        path.0.push(Seg::Key(key.get_ref().to_string()));
        if contains(&key.span(), span) || descend_value(value, span, path) {
            return true;
        }
        path.0.pop();
    }
    false
}

fn descend_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut KeyPath) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => descend_table(t, span, path) || contains(&value.span(), span),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.0.push(Seg::Index(i));
                if descend_value(item, span, path) {
                    return true;
                }
                path.0.pop();
            }
            contains(&value.span(), span)
        }
        _ => contains(&value.span(), span),
    }
}

#[cfg(test)]
mod tests {
    use super::deepest_key;

    #[test]
    fn the_deepest_key_is_found_and_quoted_dots_are_not_separators() {
        let text = "[defaults]\nport = 25\n[\"a.b.c\".d]\n  x.y.z.w = 1\n[[p.q.r.s.t]]\n";
        // `x.y.z.w` and `p.q.r.s.t`: the second has more parts.
        let (at, key) = deepest_key(text).unwrap();
        assert_eq!(&text[at..at + 9], "p.q.r.s.t");
        assert_eq!(key, "p.q.r…");
        let (at, key) = deepest_key("[\"a.b.c\".d]\n").unwrap();
        assert_eq!((at, key.as_str()), (1, "\"a.b.c\".d"));
        assert_eq!(deepest_key("# only a comment\n"), None);
    }
}
