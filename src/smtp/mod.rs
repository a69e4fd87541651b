//! SMTP, as far as the probe speaks it: a pure reply parser ([`reply`]), the four commands it
//! ever sends ([`command`]), and a buffered stream that reads replies within fixed bounds
//! ([`stream`]). Timeouts are applied by the caller, per stage.

pub mod command;
pub mod reply;
pub mod stream;

pub use command::Command;
pub use reply::{Lenience, Parsed, Reply, ReplyError, ReplyParser};
pub use stream::{ReadError, SmtpStream};

/// Renders bytes for a report: printable ASCII as is, everything else escaped, so a hostile
/// banner cannot inject terminal escapes or fake log lines.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}
