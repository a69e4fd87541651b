//! SMTP, as far as the probe speaks it: a pure reply parser ([`reply`]), the four commands it
//! ever sends ([`command`]), and a buffered stream that reads replies within fixed bounds
//! ([`stream`]). Timeouts are applied by the caller, per stage.

pub mod command;
pub mod reply;
pub mod stream;

pub use command::Command;
pub use reply::{Lenience, Parsed, Reply, ReplyError, ReplyParser};
pub use stream::{ReadError, SmtpStream};

/// Replies are rendered with the crate's one escape, so a hostile banner cannot inject terminal
/// escapes or fake log lines.
pub use crate::escape::escape;
