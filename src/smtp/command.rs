//! The commands the probe sends. There is deliberately no MAIL, RCPT or DATA: the probe must
//! never start a mail transaction.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    StartTls,
    Quit,
}

impl Command {
    /// The verb, for stage names and traces.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::StartTls => "STARTTLS",
            Command::Quit => "QUIT",
        }
    }
}

/// The exact wire line, CRLF included.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(name) => write!(f, "EHLO {name}\r\n"),
            Command::Helo(name) => write!(f, "HELO {name}\r\n"),
            Command::StartTls => f.write_str("STARTTLS\r\n"),
            Command::Quit => f.write_str("QUIT\r\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lines() {
        assert_eq!(
            Command::Ehlo("probe.example".into()).to_string(),
            "EHLO probe.example\r\n"
        );
        assert_eq!(
            Command::Helo("probe.example".into()).to_string(),
            "HELO probe.example\r\n"
        );
        assert_eq!(Command::StartTls.to_string(), "STARTTLS\r\n");
        assert_eq!(Command::Quit.to_string(), "QUIT\r\n");
    }
}
