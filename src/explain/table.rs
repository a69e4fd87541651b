//! What `explain` knows, as data: the conditions (interface.md's stable names) with the probe
//! stage that produces each and the fix, and EOP's codes (classification.md v2, "The codes")
//! with the condition each means when its `[Message=…]` says no more.

pub use crate::verdict::conditions::{CONDITIONS, Condition, ConditionFacts};

/// What an enhanced code means before its Message is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The condition is fixed by the code.
    Is(Condition),
    /// 4.4.316: the socket error decides (refused, timed out, unreachable).
    Socket,
    /// 4.4.317 and its NDR 5.4.317: the Message decides (reply, STARTTLS, TLS, certificate).
    Session,
    /// 4.7.320: a certificate status decides.
    Certificate,
    /// 5.4.300 and 4.4.7, the bare "Message expired": only the Message says what failed, if
    /// anything.
    Read,
}

/// One of EOP's codes.
pub struct CodeFacts {
    /// The enhanced status code, e.g. `4.4.316`.
    pub enhanced: &'static str,
    /// The basic code EOP writes with it.
    pub basic: &'static str,
    /// Its titles, as EOP writes them (first: the one to show); matched case-insensitively.
    pub titles: &'static [&'static str],
    pub meaning: Meaning,
}

/// classification.md v2, "The codes": the queue codes, their NDRs on expiry, 5.4.310, and the
/// DANE codes EOP files under the same connector path.
pub const CODES: &[CodeFacts] = &[
    CodeFacts {
        enhanced: "4.4.312",
        basic: "450",
        titles: &["DNS query failed"],
        meaning: Meaning::Is(Condition::DnsFailed),
    },
    CodeFacts {
        enhanced: "4.4.315",
        basic: "450",
        titles: &["Connection timed out"],
        meaning: Meaning::Is(Condition::ConnectTimeout),
    },
    CodeFacts {
        enhanced: "4.4.316",
        basic: "450",
        titles: &["Connection refused"],
        meaning: Meaning::Socket,
    },
    CodeFacts {
        enhanced: "4.4.317",
        basic: "450",
        titles: &[
            "Cannot connect to remote server",
            "Cannot establish session with remote server",
        ],
        meaning: Meaning::Session,
    },
    CodeFacts {
        enhanced: "4.4.318",
        basic: "450",
        titles: &[
            "Connection was closed abruptly",
            "Connection closed abruptly",
        ],
        meaning: Meaning::Is(Condition::ClosedAbruptly),
    },
    CodeFacts {
        enhanced: "4.7.320",
        basic: "450",
        titles: &["Certificate validation failed"],
        meaning: Meaning::Certificate,
    },
    CodeFacts {
        enhanced: "5.4.310",
        basic: "550",
        titles: &["DNS domain does not exist"],
        meaning: Meaning::Is(Condition::DomainNonexistent),
    },
    CodeFacts {
        enhanced: "5.4.312",
        basic: "550",
        titles: &["Message expired, DNS query failed"],
        meaning: Meaning::Is(Condition::DnsFailed),
    },
    CodeFacts {
        enhanced: "5.4.315",
        basic: "550",
        titles: &["Message expired, connection timed out"],
        meaning: Meaning::Is(Condition::ConnectTimeout),
    },
    CodeFacts {
        enhanced: "5.4.316",
        basic: "550",
        titles: &["Message expired, connection refused"],
        meaning: Meaning::Socket,
    },
    CodeFacts {
        enhanced: "5.4.317",
        basic: "550",
        titles: &[
            "Message expired, cannot connect to remote server",
            "Message expired, cannot establish session with remote server",
        ],
        meaning: Meaning::Session,
    },
    CodeFacts {
        enhanced: "5.4.318",
        basic: "550",
        titles: &[
            "Message expired, connection reset",
            "Message expired, connection was closed abruptly",
        ],
        meaning: Meaning::Is(Condition::ClosedAbruptly),
    },
    // Exchange's generic expiry, in EOP's NDRs as on-prem's: no reason of its own.
    CodeFacts {
        enhanced: "4.4.7",
        basic: "550",
        titles: &["QUEUE.Expired; message expired", "Message expired"],
        meaning: Meaning::Read,
    },
    CodeFacts {
        enhanced: "5.4.300",
        basic: "550",
        titles: &["Message expired"],
        meaning: Meaning::Read,
    },
    // DANE (outbound SMTP DANE with DNSSEC): EOP bounces with these at once.
    CodeFacts {
        enhanced: "5.7.321",
        basic: "550",
        titles: &["starttls-not-supported"],
        meaning: Meaning::Is(Condition::StarttlsRequired),
    },
    CodeFacts {
        enhanced: "5.7.322",
        basic: "550",
        titles: &["certificate-expired"],
        meaning: Meaning::Is(Condition::CertificateExpired),
    },
    CodeFacts {
        enhanced: "5.7.323",
        basic: "550",
        titles: &["tlsa-invalid"],
        meaning: Meaning::Is(Condition::CertificateInvalid),
    },
    CodeFacts {
        enhanced: "5.7.324",
        basic: "550",
        titles: &["dnssec-invalid"],
        meaning: Meaning::Is(Condition::DnsFailed),
    },
    CodeFacts {
        enhanced: "5.7.325",
        basic: "550",
        titles: &["certificate-host-mismatch"],
        meaning: Meaning::Is(Condition::SubjectMismatch),
    },
];

/// The mail flow intelligence code a condition is filed under, for lines whose own code does
/// not say (5.4.300); `None` for `other`.
pub fn mfi_code(condition: Condition) -> Option<&'static str> {
    Some(match condition {
        Condition::DnsFailed => "450 4.4.312",
        Condition::DomainNonexistent => "550 5.4.310",
        Condition::ConnectTimeout => "450 4.4.315",
        Condition::ConnectRefused | Condition::ConnectFailed => "450 4.4.316",
        Condition::SessionRejected
        | Condition::StarttlsRequired
        | Condition::TlsNegotiationFailed => "450 4.4.317",
        Condition::ClosedAbruptly => "450 4.4.318",
        c if c.is_certificate() => "450 4.7.320",
        _ => return None,
    })
}

/// The facts of an enhanced code, if EOP uses it for connector delivery.
pub fn code(enhanced: &str) -> Option<&'static CodeFacts> {
    CODES.iter().find(|c| c.enhanced == enhanced)
}

/// A certificate status word as EOP (and the Windows chain engine under it) writes it.
pub fn certificate_status(word: &str) -> Option<Condition> {
    const STATUSES: &[(&str, Condition)] = &[
        ("CertificateExpired", Condition::CertificateExpired),
        ("NotTimeValid", Condition::CertificateExpired),
        ("CertificateNotYetValid", Condition::CertificateExpired),
        ("UntrustedRoot", Condition::CertificateUntrusted),
        ("PartialChain", Condition::CertificateUntrusted),
        ("NotSignatureValid", Condition::CertificateUntrusted),
        ("UntrustedCertificate", Condition::CertificateUntrusted),
        ("SubjectMismatch", Condition::SubjectMismatch),
        ("CertificateRevoked", Condition::CertificateRevoked),
        ("Revoked", Condition::CertificateRevoked),
        ("RevocationStatusUnknown", Condition::CertificateRevoked),
        ("CertificateInvalid", Condition::CertificateInvalid),
        ("NotValidForUsage", Condition::CertificateInvalid),
        ("InvalidExtension", Condition::CertificateInvalid),
        ("CertificateValidationFailed", Condition::CertificateInvalid),
    ];
    STATUSES
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(word))
        .map(|(_, c)| *c)
}

/// What a Windows socket error code (as EOP quotes it) means.
pub fn socket_error(code: u32) -> (Condition, &'static str) {
    match code {
        10060 => (
            Condition::ConnectTimeout,
            "WSAETIMEDOUT: no answer before the connect timeout",
        ),
        10061 => (
            Condition::ConnectRefused,
            "WSAECONNREFUSED: the address answered the connection with a reset",
        ),
        10065 => (
            Condition::ConnectFailed,
            "WSAEHOSTUNREACH: no route to the host",
        ),
        10051 => (
            Condition::ConnectFailed,
            "WSAENETUNREACH: the network is unreachable",
        ),
        10013 => (
            Condition::ConnectFailed,
            "WSAEACCES: the connection was blocked by a firewall rule",
        ),
        10054 => (
            Condition::ClosedAbruptly,
            "WSAECONNRESET: the connection was reset by the peer",
        ),
        10053 => (
            Condition::ClosedAbruptly,
            "WSAECONNABORTED: the connection was aborted",
        ),
        _ => (Condition::ConnectFailed, "a socket error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_has_exactly_one_row_and_interface_names() {
        let names: Vec<&str> = CONDITIONS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "dns-failed",
                "domain-nonexistent",
                "connect-timeout",
                "connect-refused",
                "connect-failed",
                "session-rejected",
                "starttls-required",
                "tls-negotiation-failed",
                "certificate-expired",
                "certificate-untrusted",
                "subject-mismatch",
                "certificate-invalid",
                "certificate-revoked",
                "closed-abruptly",
                "other",
            ]
        );
        for c in CONDITIONS {
            // The serde name is the table's name.
            assert_eq!(
                serde_json::to_value(c.condition).unwrap(),
                serde_json::Value::from(c.name)
            );
            assert_eq!(c.condition.as_str(), c.name);
        }
    }
}
