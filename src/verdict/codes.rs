//! The codes of `classification.md` ("The codes"), as one table of facts: the mail flow
//! intelligence code and title, the code and title of the queue line EOP writes today, the NDR
//! the sender gets when the queued message expires. Nothing else in the crate spells a code.
//! (The fix goes with the condition, which is finer than the code: see [`super::conditions`].)

use crate::config::CertificateFailureCode;

/// A code a failing target can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 450 4.4.312
    DnsQueryFailed,
    /// 450 4.4.315
    ConnectionTimedOut,
    /// 450 4.4.316
    ConnectionRefused,
    /// 450 4.4.317
    CannotConnect,
    /// 450 4.4.318
    ClosedAbruptly,
    /// 450 4.7.320 (or 4.4.317, per `certificate_failure_code`); queued under 4.4.317.
    CertificateValidationFailed,
    /// 550 5.4.310: an MX-routed domain that does not exist. Bounced at once, never queued.
    DomainNonexistent,
    /// Anything the table does not cover (a local error of the probe host).
    Other,
}

/// How the sender hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ndr {
    /// After `MessageExpiration`: `<code> Message expired, <text>(<Message>)`, with a space
    /// before the parenthesis only where EOP writes one.
    Expiry {
        code: &'static str,
        text: &'static str,
        space: bool,
    },
    /// At once: the status line itself is the NDR.
    Immediate,
    /// Unknown: EOP's behaviour for a failure outside the table is not documented.
    Unknown,
}

/// The facts of one code (a row of "The codes").
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// The mail flow intelligence code and title, as the article and EOP's alert name them.
    pub mfi: &'static str,
    pub title: &'static str,
    /// The code and title EOP's queue line starts with today. `{domain}` in the title is
    /// replaced by the domain.
    pub queue: &'static str,
    pub queue_title: &'static str,
    pub ndr: Ndr,
    /// The row's evidence: F field lines, D documentation, U unconfirmed.
    pub evidence: &'static str,
}

const fn expiry(code: &'static str, text: &'static str) -> Ndr {
    Ndr::Expiry {
        code,
        text,
        space: false,
    }
}

impl Code {
    /// The row of "The codes" for this code.
    pub const fn facts(self) -> Facts {
        match self {
            Code::DnsQueryFailed => Facts {
                mfi: "450 4.4.312",
                title: "DNS query failed",
                queue: "450 4.4.312",
                queue_title: "DNS query failed",
                ndr: expiry("550 5.4.312", "DNS query failed"),
                evidence: "F",
            },
            Code::ConnectionTimedOut => Facts {
                mfi: "450 4.4.315",
                title: "Connection timed out",
                queue: "450 4.4.315",
                queue_title: "Connection timed out",
                ndr: expiry("550 5.4.315", "connection timed out"),
                evidence: "U",
            },
            Code::ConnectionRefused => Facts {
                mfi: "450 4.4.316",
                title: "Connection refused",
                queue: "450 4.4.316",
                queue_title: "Connection refused",
                ndr: expiry("550 5.4.316", "connection refused"),
                evidence: "F",
            },
            Code::CannotConnect => Facts {
                mfi: "450 4.4.317",
                title: "Cannot connect to remote server",
                queue: "450 4.4.317",
                queue_title: "Cannot connect to remote server",
                ndr: expiry("550 5.4.317", "cannot connect to remote server"),
                evidence: "F",
            },
            Code::ClosedAbruptly => Facts {
                mfi: "450 4.4.318",
                title: "Connection was closed abruptly",
                queue: "450 4.4.318",
                queue_title: "Connection was closed abruptly",
                ndr: Ndr::Expiry {
                    code: "550 5.4.318",
                    text: "connection reset",
                    space: true,
                },
                evidence: "F",
            },
            Code::CertificateValidationFailed => Facts {
                mfi: "450 4.7.320",
                title: "Certificate validation failed",
                queue: "450 4.4.317",
                queue_title: "Cannot connect to remote server",
                ndr: expiry("550 5.4.317", "cannot connect to remote server"),
                evidence: "F",
            },
            Code::DomainNonexistent => Facts {
                mfi: "550 5.4.310",
                title: "DNS domain does not exist",
                queue: "550 5.4.310",
                queue_title: "DNS domain {domain} does not exist",
                ndr: Ndr::Immediate,
                evidence: "F",
            },
            Code::Other => Facts {
                mfi: "other",
                title: "Delivery problem",
                queue: "other",
                queue_title: "Delivery problem",
                ndr: Ndr::Unknown,
                evidence: "-",
            },
        }
    }

    /// `code`: the MFI code, with a certificate failure spelled as `certificate_failure_code`
    /// says.
    pub fn render(self, cert: CertificateFailureCode) -> &'static str {
        match (self, cert) {
            (Code::CertificateValidationFailed, CertificateFailureCode::CannotConnect) => {
                Code::CannotConnect.facts().mfi
            }
            _ => self.facts().mfi,
        }
    }

    /// `title`: the MFI title that goes with [`Code::render`].
    pub fn title(self, cert: CertificateFailureCode) -> &'static str {
        match (self, cert) {
            (Code::CertificateValidationFailed, CertificateFailureCode::CannotConnect) => {
                Code::CannotConnect.facts().title
            }
            _ => self.facts().title,
        }
    }

    /// `queue_code`: the code EOP's line starts with today (`None` for `other`).
    pub fn queue_code(self) -> Option<&'static str> {
        (self != Code::Other).then_some(self.facts().queue)
    }

    /// `ndr`: the code of the NDR the sender gets.
    pub fn ndr(self) -> Option<&'static str> {
        match self.facts().ndr {
            Ndr::Expiry { code, .. } => Some(code),
            Ndr::Immediate => Some(self.facts().queue),
            Ndr::Unknown => None,
        }
    }

    /// Whether EOP queues (and retries) the message: every code but 5.4.310.
    pub fn is_queued(self) -> bool {
        !matches!(self.facts().ndr, Ndr::Immediate)
    }

    /// The queue line: `<queue code> <queue title> [Message=…] [LastAttemptedServerName=…]`
    /// and, when an address was tried, `[LastAttemptedIP=…]`.
    pub fn status_line(
        self,
        message: &str,
        server: &str,
        address: Option<std::net::SocketAddr>,
    ) -> Option<String> {
        if self == Code::Other {
            return None;
        }
        let f = self.facts();
        let title = f.queue_title.replace("{domain}", server);
        let mut line = format!(
            "{} {title} [Message={message}] [LastAttemptedServerName={server}]",
            f.queue
        );
        if let Some(a) = address {
            // SocketAddr writes IPv6 as [2001:db8::1]:25, as EOP does.
            line.push_str(&format!(" [LastAttemptedIP={a}]"));
        }
        Some(line)
    }

    /// The line the sender gets: the expiry NDR built from the Message, or the status line
    /// itself for a code EOP bounces at once.
    pub fn ndr_line(self, message: &str, status_line: &str) -> Option<String> {
        match self.facts().ndr {
            Ndr::Expiry { code, text, space } => Some(format!(
                "{code} Message expired, {text}{}({message})",
                if space { " " } else { "" }
            )),
            Ndr::Immediate => Some(status_line.to_owned()),
            Ndr::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: CertificateFailureCode = CertificateFailureCode::CertificateValidationFailed;
    const FIELD: CertificateFailureCode = CertificateFailureCode::CannotConnect;

    #[test]
    fn spellings() {
        assert_eq!(Code::ConnectionRefused.render(DOC), "450 4.4.316");
        assert_eq!(Code::ConnectionRefused.ndr(), Some("550 5.4.316"));
        assert_eq!(Code::CertificateValidationFailed.render(DOC), "450 4.7.320");
        assert_eq!(
            Code::CertificateValidationFailed.queue_code(),
            Some("450 4.4.317")
        );
        assert_eq!(Code::CertificateValidationFailed.ndr(), Some("550 5.4.317"));
        assert_eq!(
            Code::CertificateValidationFailed.render(FIELD),
            "450 4.4.317"
        );
        assert_eq!(
            Code::CertificateValidationFailed.title(FIELD),
            "Cannot connect to remote server"
        );
        assert_eq!(Code::DomainNonexistent.render(DOC), "550 5.4.310");
        assert_eq!(Code::DomainNonexistent.ndr(), Some("550 5.4.310"));
        assert!(!Code::DomainNonexistent.is_queued());
        assert_eq!(Code::Other.render(DOC), "other");
        assert_eq!(Code::Other.ndr(), None);
        assert_eq!(Code::Other.queue_code(), None);
    }

    #[test]
    fn ndr_lines_are_eops_to_the_character() {
        let m = "Socket error code 10061";
        assert_eq!(
            Code::ConnectionRefused.ndr_line(m, "").unwrap(),
            "550 5.4.316 Message expired, connection refused(Socket error code 10061)"
        );
        assert_eq!(
            Code::ClosedAbruptly
                .ndr_line("SuspiciousRemoteServerError", "")
                .unwrap(),
            "550 5.4.318 Message expired, connection reset (SuspiciousRemoteServerError)"
        );
        assert_eq!(
            Code::DnsQueryFailed.ndr_line("ErrorRetry", "").unwrap(),
            "550 5.4.312 Message expired, DNS query failed(ErrorRetry)"
        );
        let line = Code::DomainNonexistent
            .status_line("InfoDomainNonexistent", "fabrikam.example", None)
            .unwrap();
        assert_eq!(
            line,
            "550 5.4.310 DNS domain fabrikam.example does not exist [Message=InfoDomainNonexistent] [LastAttemptedServerName=fabrikam.example]"
        );
        assert_eq!(Code::DomainNonexistent.ndr_line("x", &line).unwrap(), line);
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let line = Code::ConnectionRefused
            .status_line(
                "Socket error code 10061",
                "mail.contoso.com",
                Some("[2001:db8::1]:25".parse().unwrap()),
            )
            .unwrap();
        assert!(
            line.ends_with("[LastAttemptedIP=[2001:db8::1]:25]"),
            "{line}"
        );
    }
}
