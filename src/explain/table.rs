//! What `explain` knows, as data: the conditions (interface.md's stable names) with the probe
//! stage that produces each and the fix, and EOP's codes (classification.md v2, "The codes")
//! with the condition each means when its `[Message=…]` says no more.

use serde::Serialize;

/// What went wrong, by interface.md's stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    DnsFailed,
    DomainNonexistent,
    ConnectTimeout,
    ConnectRefused,
    ConnectFailed,
    SessionRejected,
    StarttlsRequired,
    TlsNegotiationFailed,
    CertificateExpired,
    CertificateUntrusted,
    SubjectMismatch,
    CertificateInvalid,
    CertificateRevoked,
    ClosedAbruptly,
    Other,
}

/// One condition's facts.
pub struct ConditionFacts {
    pub condition: Condition,
    pub name: &'static str,
    /// The probe stage that produces it (interface.md's stage names); `None` for `other`.
    pub stage: Option<&'static str>,
    /// What to check, and where, in an admin's terms.
    pub fix: &'static str,
}

/// Every condition, once. The fixes live here alone so that they can be unified with the
/// probe's own table later.
pub const CONDITIONS: &[ConditionFacts] = &[
    ConditionFacts {
        condition: Condition::DnsFailed,
        name: "dns-failed",
        stage: Some("resolve"),
        fix: "Exchange Online could not resolve the connector's smart host (or the domain's MX). Check the smart host name in the outbound connector (Exchange admin center > Mail flow > Connectors), that its MX or A/AAAA record exists in public DNS (Resolve-DnsName <name> -Server 8.8.8.8), that the zone's name servers answer, and that the domain has not expired.",
    },
    ConditionFacts {
        condition: Condition::DomainNonexistent,
        name: "domain-nonexistent",
        stage: Some("resolve"),
        fix: "The recipient domain does not exist in public DNS (NXDOMAIN), so Exchange Online bounced the message at once. Check the recipient address for a typo; if the domain is yours or a partner's, check its registration and its name servers at the registrar.",
    },
    ConditionFacts {
        condition: Condition::ConnectTimeout,
        name: "connect-timeout",
        stage: Some("connect"),
        fix: "Nothing answered on TCP port 25 at the address Exchange Online tried. Check that the server is up, that the connector's smart host points at the right public address, and that no firewall or NAT rule silently drops connections from Microsoft 365's IP ranges.",
    },
    ConditionFacts {
        condition: Condition::ConnectRefused,
        name: "connect-refused",
        stage: Some("connect"),
        fix: "The address answered but refused the connection on TCP port 25 (a reset). Check that the SMTP service is running and listening on port 25, that the firewall publishes port 25 to it and admits Microsoft 365's IP ranges; if the on-premises server was retired, disable or correct the outbound connector.",
    },
    ConditionFacts {
        condition: Condition::ConnectFailed,
        name: "connect-failed",
        stage: Some("connect"),
        fix: "Exchange Online could not reach the address (network or host unreachable, or blocked). Check the public address in DNS and in the connector, the routing to it, and the firewall rules for Microsoft 365's IP ranges on TCP port 25.",
    },
    ConditionFacts {
        condition: Condition::SessionRejected,
        name: "session-rejected",
        stage: Some("banner"),
        fix: "The server answered with an SMTP error instead of accepting the session (its reply is quoted). Check the receiving server's connection filtering, IP allow lists and rate limits for Microsoft 365's ranges, and the health of its SMTP service (on Exchange: the receive connector's RemoteIPRanges and the transport service).",
    },
    ConditionFacts {
        condition: Condition::StarttlsRequired,
        name: "starttls-required",
        stage: Some("starttls"),
        fix: "The connector requires TLS but the server does not offer STARTTLS. Enable TLS on the receiving server (a certificate bound to SMTP; on Exchange, Enable-ExchangeCertificate -Services SMTP), and check that no firewall SMTP inspection strips STARTTLS from the EHLO reply.",
    },
    ConditionFacts {
        condition: Condition::TlsNegotiationFailed,
        name: "tls-negotiation-failed",
        stage: Some("tls"),
        fix: "STARTTLS was accepted but the TLS handshake failed. Check that the server offers TLS 1.2 or 1.3 with a modern cipher suite (ECDHE with AES-GCM), that its certificate and private key are usable by the SMTP service, and that no firewall inspects or breaks the TLS session.",
    },
    ConditionFacts {
        condition: Condition::CertificateExpired,
        name: "certificate-expired",
        stage: Some("certificate"),
        fix: "The server's certificate has expired (or is not yet valid). Renew it, bind the new one to SMTP on every server and appliance that answers for this host (on Exchange: Enable-ExchangeCertificate -Services SMTP; also any firewall or load balancer that terminates TLS), and restart the transport service.",
    },
    ConditionFacts {
        condition: Condition::CertificateUntrusted,
        name: "certificate-untrusted",
        stage: Some("certificate"),
        fix: "The server's certificate does not chain to a trusted public root: self-signed, from a private CA, or served without its intermediate certificates. Install a certificate from a public CA and configure the server to send the full chain (leaf and intermediates).",
    },
    ConditionFacts {
        condition: Condition::SubjectMismatch,
        name: "subject-mismatch",
        stage: Some("certificate"),
        fix: "No name in the server's certificate matches the connector's TlsDomain (Expected Subject). Either serve a certificate whose subject or SAN holds that name (check every server behind the smart host; a missed one fails only some messages), or set the connector's TlsDomain to a name the certificate carries.",
    },
    ConditionFacts {
        condition: Condition::CertificateInvalid,
        name: "certificate-invalid",
        stage: Some("certificate"),
        fix: "The server's certificate is not valid for a TLS server (wrong key usage, malformed, or otherwise rejected). Reissue it as a standard server-authentication certificate from a public CA and bind it to SMTP.",
    },
    ConditionFacts {
        condition: Condition::CertificateRevoked,
        name: "certificate-revoked",
        stage: Some("certificate"),
        fix: "The server's certificate has been revoked by its CA. Obtain a new certificate, bind it to SMTP on every server that answers for this host, and remove the revoked one.",
    },
    ConditionFacts {
        condition: Condition::ClosedAbruptly,
        name: "closed-abruptly",
        stage: Some("banner"),
        fix: "The connection was opened and then dropped or stalled before the session completed. Look for a firewall doing SMTP inspection (Cisco ESMTP inspection, SonicWall, Meraki), an overloaded or crashing SMTP service, or a load balancer with a short idle timeout.",
    },
    ConditionFacts {
        condition: Condition::Other,
        name: "other",
        stage: None,
        fix: "The line does not say which stage failed. Run `connector-probe explain --probe` or `connector-probe probe` against the connector to see where delivery fails now.",
    },
];

impl Condition {
    pub fn facts(self) -> &'static ConditionFacts {
        CONDITIONS
            .iter()
            .find(|f| f.condition == self)
            .expect("every condition has a row")
    }

    pub fn as_str(self) -> &'static str {
        self.facts().name
    }

    pub fn stage(self) -> Option<&'static str> {
        self.facts().stage
    }

    pub fn fix(self) -> &'static str {
        self.facts().fix
    }

    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            Condition::CertificateExpired
                | Condition::CertificateUntrusted
                | Condition::SubjectMismatch
                | Condition::CertificateInvalid
                | Condition::CertificateRevoked
        )
    }
}

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
