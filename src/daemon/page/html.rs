//! The page's tiny templating: markup is written only as `&'static str`, so anything that
//! varies (a name, a server's banner, a certificate's subject, even a number) can only go in
//! through [`Html::text`], which escapes it with [`escape_into`], the one escaping function.

use std::fmt::{self, Display, Write};

/// A page being written.
#[derive(Default)]
pub struct Html {
    out: String,
}

impl Html {
    pub fn with_capacity(n: usize) -> Html {
        Html {
            out: String::with_capacity(n),
        }
    }

    /// Markup. A `&'static str` is written by the programmer, never read from outside.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// Text or an attribute value, escaped.
    pub fn text(&mut self, value: impl Display) -> &mut Self {
        let _ = write!(Escaping(&mut self.out), "{value}");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A writer that escapes what goes through it.
struct Escaping<'a>(&'a mut String);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Appends `text` to `out` for use as HTML text or a quoted attribute value: `& < > " '` as
/// entities; control characters and the invisible ones that can make text read otherwise
/// (bidirectional overrides, zero-width) as the visible escapes of [`crate::escape`], as a
/// terminal would show them.
pub fn escape_into(out: &mut String, text: &str) {
    let mut plain = 0;
    for (i, c) in text.char_indices() {
        let entity = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            c if c.is_ascii_graphic() || c == ' ' => continue,
            c => {
                let mut buf = [0; 4];
                let shown = crate::escape::escape(c.encode_utf8(&mut buf).as_bytes());
                if shown.len() == c.len_utf8() {
                    continue;
                }
                out.push_str(&text[plain..i]);
                // The escapes are ASCII backslash sequences: nothing in them to escape.
                out.push_str(&shown);
                plain = i + c.len_utf8();
                continue;
            }
        };
        out.push_str(&text[plain..i]);
        out.push_str(entity);
        plain = i + c.len_utf8();
    }
    out.push_str(&text[plain..]);
}

/// A connector's name as a path segment: every byte but the unreserved ones of RFC 3986 as
/// `%XX`.
pub fn path_segment(name: &str) -> impl Display + '_ {
    struct Segment<'a>(&'a str);
    impl Display for Segment<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for b in self.0.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    f.write_char(char::from(b))?;
                } else {
                    write!(f, "%{b:02X}")?;
                }
            }
            Ok(())
        }
    }
    Segment(name)
}

/// The inverse of [`path_segment`]; `None` for a malformed escape or bytes that are not UTF-8.
pub fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_text() {
        let mut h = Html::default();
        h.raw("<td title=\"")
            .text("\"><img src=x onerror=\"window.pwned=1\">")
            .raw("\">")
            .text("<script>window.pwned=1</script> & 'x'")
            .raw("</td>");
        assert_eq!(
            h.finish(),
            "<td title=\"&quot;&gt;&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;\">\
             &lt;script&gt;window.pwned=1&lt;/script&gt; &amp; &#39;x&#39;</td>"
        );
    }

    #[test]
    fn control_and_invisible_characters_are_shown_not_obeyed() {
        let mut out = String::new();
        escape_into(&mut out, "a\r\nb\u{202e}cba é");
        assert_eq!(out, "a\\r\\nb\\u{202e}cba é");
    }

    #[test]
    fn names_survive_the_path() {
        for name in ["contoso", "a b/c?d#e%f", "ünïcode <x>", ""] {
            let seg = path_segment(name).to_string();
            assert!(
                seg.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
            );
            assert_eq!(decode_segment(&seg).as_deref(), Some(name));
        }
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%4"), None);
        assert_eq!(decode_segment("%ff"), None, "not UTF-8");
    }
}
