//! The conditions of `interface.md` ("`explain`"): what went wrong, in stable names, with the
//! stage that produces each and the fix. Every failing row of the table ([`super::table`])
//! names its condition, so the probe's verdict and `explain`'s reading of the line EOP writes
//! for it agree; `tests/integration/explain.rs` holds them to that for every lab case.

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

/// Every condition, once, with the one fix text the probe's verdicts, the daemon's events and
/// `explain` all give.
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
