//! The demo's catalogue: one case per row of the classification table, each with the
//! server behaviour that produces it and the status and code the spec gives.

use std::time::Duration;

use crate::config::{CertificateFailureCode, Timeouts, TlsMode};
use crate::lab::certs::{LeafSpec, Pki, Signer};
use crate::lab::smtp::{Script, Step, send};
use crate::verdict::{Code, Status};

/// The timeouts of the lab: short, so the rows that wait for a timeout end quickly.
pub const LAB_TIMEOUTS: Timeouts = Timeouts {
    dns: Duration::from_millis(1500),
    connect: Duration::from_millis(1500),
    banner: Duration::from_millis(1500),
    command: Duration::from_millis(1500),
    tls: Duration::from_millis(1500),
};

/// What the spec says a case must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub status: Status,
    pub code: Option<Code>,
    /// The `[Message=…]` of EOP's line; a trailing `*` matches any rest (a thumbprint).
    pub message: Option<&'static str>,
}

impl Expect {
    /// Whether `message` is the one the case expects.
    pub fn message_matches(&self, message: Option<&str>) -> bool {
        match (self.message, message) {
            (None, None) => true,
            (Some(want), Some(got)) => match want.strip_suffix('*') {
                Some(prefix) => got.starts_with(prefix),
                None => got == want,
            },
            _ => false,
        }
    }
}

const fn failing(code: Code, message: &'static str) -> Expect {
    Expect {
        status: Status::Failing,
        code: Some(code),
        message: Some(message),
    }
}
const OK: Expect = Expect {
    status: Status::Ok,
    code: None,
    message: None,
};
const WARNING: Expect = Expect {
    status: Status::Warning,
    code: None,
    message: None,
};
const DEGRADED: Expect = Expect {
    status: Status::Degraded,
    code: None,
    message: None,
};

/// The server side of a case.
#[derive(Clone, Copy)]
pub(super) enum Peer {
    /// A smart host name that the lab DNS answers with this behaviour.
    Dns(DnsCase),
    /// A smart host name, probed through a resolver that nobody answers.
    NoResolver,
    /// An `mx_domain` connector.
    Mx(MxCase),
    /// A listener whose accept queue is full: SYNs are dropped.
    Blackhole,
    /// A loopback port nobody listens on.
    Closed,
    /// A scripted server, its certificate made by the lab PKI for the case's host name.
    Script(fn(&Pki, &str) -> Script),
    /// Two smart hosts: one refuses, one is healthy.
    Degraded,
    /// A smart host name that has an MX record: EOP follows it to the MX host.
    SmartHostViaMx,
}

#[derive(Clone, Copy)]
pub(super) enum DnsCase {
    NxDomain,
    NoData,
    ServFail,
    Refused,
    Silent,
}

#[derive(Clone, Copy)]
pub(super) enum MxCase {
    /// The domain does not exist: 550 5.4.310, nothing queued.
    NxDomain,
    /// The domain exists but has neither MX nor address records.
    NoRecords,
    NullMx,
    HostMissing,
    ServFail,
    Implicit,
    Healthy,
}

/// One row of the demo.
pub struct CaseDef {
    pub id: &'static str,
    /// The row of `classification.md`, in words.
    pub row: &'static str,
    pub mode: TlsMode,
    pub tls_domain: Option<&'static str>,
    pub cert_code: CertificateFailureCode,
    pub expect: Expect,
    pub(super) peer: Peer,
}

pub(super) const DOC: CertificateFailureCode = CertificateFailureCode::CertificateValidationFailed;
use TlsMode::{
    CertificateValidation as CV, DomainValidation as DV, EncryptionOnly as EO, Opportunistic as OP,
};

macro_rules! case {
    ($id:literal, $row:literal, $mode:expr, $expect:expr, $peer:expr) => {
        CaseDef {
            id: $id,
            row: $row,
            mode: $mode,
            tls_domain: None,
            cert_code: DOC,
            expect: $expect,
            peer: $peer,
        }
    };
    ($id:literal, $row:literal, $mode:expr, $domain:literal, $expect:expr, $peer:expr) => {
        CaseDef {
            id: $id,
            row: $row,
            mode: $mode,
            tls_domain: Some($domain),
            cert_code: DOC,
            expect: $expect,
            peer: $peer,
        }
    };
}

fn tls_to(leaf: LeafSpec) -> impl Fn(&Pki) -> Script {
    move |pki| Script::healthy(pki.leaf(&leaf).server_config())
}

/// Greeting, EHLO and the STARTTLS exchange, then whatever `tail` does instead of TLS.
fn after_starttls_220(tail: Vec<Step>) -> Script {
    Script::answering_starttls(
        [send("220 2.0.0 Ready to start TLS\r\n")]
            .into_iter()
            .chain(tail),
    )
}

/// The catalogue: every row of the classification table, and then some.
pub fn catalogue() -> Vec<CaseDef> {
    vec![
        case!(
            "dns-nxdomain",
            "resolve: NXDOMAIN",
            OP,
            failing(Code::DnsQueryFailed, "InfoDomainNonexistent"),
            Peer::Dns(DnsCase::NxDomain)
        ),
        case!(
            "dns-nodata",
            "resolve: no A/AAAA (NODATA)",
            OP,
            failing(Code::DnsQueryFailed, "InfoNoRecords"),
            Peer::Dns(DnsCase::NoData)
        ),
        case!(
            "dns-servfail",
            "resolve: SERVFAIL",
            OP,
            failing(Code::DnsQueryFailed, "ErrorRetry"),
            Peer::Dns(DnsCase::ServFail)
        ),
        case!(
            "dns-refused",
            "resolve: REFUSED",
            OP,
            failing(Code::DnsQueryFailed, "ErrorRetry"),
            Peer::Dns(DnsCase::Refused)
        ),
        case!(
            "dns-timeout",
            "resolve: resolver timeout",
            OP,
            failing(Code::DnsQueryFailed, "ErrorRetry"),
            Peer::Dns(DnsCase::Silent)
        ),
        case!(
            "dns-no-resolver",
            "resolve: no resolver reachable",
            OP,
            failing(Code::DnsQueryFailed, "ErrorRetry"),
            Peer::NoResolver
        ),
        case!(
            "mx-nxdomain",
            "resolve: MX routing, the domain does not exist (550 5.4.310)",
            OP,
            failing(Code::DomainNonexistent, "InfoDomainNonexistent"),
            Peer::Mx(MxCase::NxDomain)
        ),
        case!(
            "mx-no-records",
            "resolve: MX routing, no MX and no A/AAAA (NODATA)",
            OP,
            failing(Code::DnsQueryFailed, "InfoNoRecords"),
            Peer::Mx(MxCase::NoRecords)
        ),
        case!(
            "smart-host-mx",
            "resolve: a smart host name with an MX is routed through its MX host",
            DV,
            "mx.smart-host-mx.lab.test",
            OK,
            Peer::SmartHostViaMx
        ),
        case!(
            "mx-null",
            "resolve: null MX (0 .)",
            OP,
            failing(Code::DnsQueryFailed, "InfoNoRecords"),
            Peer::Mx(MxCase::NullMx)
        ),
        case!(
            "mx-host-unresolvable",
            "resolve: MX hosts do not resolve",
            OP,
            failing(Code::DnsQueryFailed, "ErrorRetry"),
            Peer::Mx(MxCase::HostMissing)
        ),
        case!(
            "mx-lookup-fails",
            "resolve: MX lookup fails",
            OP,
            failing(Code::DnsQueryFailed, "ErrorRetry"),
            Peer::Mx(MxCase::ServFail)
        ),
        case!(
            "mx-implicit",
            "resolve: no MX, an A record (implicit MX)",
            OP,
            WARNING,
            Peer::Mx(MxCase::Implicit)
        ),
        case!(
            "mx-healthy",
            "resolve: MX routing to a healthy host",
            CV,
            OK,
            Peer::Mx(MxCase::Healthy)
        ),
        case!(
            "connect-timeout",
            "connect: no answer (SYN dropped)",
            OP,
            failing(Code::ConnectionTimedOut, "Socket error code 10060"),
            Peer::Blackhole
        ),
        case!(
            "connect-refused",
            "connect: refused (RST)",
            OP,
            failing(Code::ConnectionRefused, "Socket error code 10061"),
            Peer::Closed
        ),
        case!(
            "connect-reset",
            "connect: reset right after the handshake",
            OP,
            failing(Code::ClosedAbruptly, "SuspiciousRemoteServerError"),
            Peer::Script(|_, _| Script::new(vec![Step::Reset]))
        ),
        case!(
            "banner-eof",
            "banner: EOF before a greeting",
            OP,
            failing(Code::ClosedAbruptly, "SuspiciousRemoteServerError"),
            Peer::Script(|_, _| Script::new(vec![
                Step::Sleep(Duration::from_millis(50)),
                Step::Close
            ]))
        ),
        case!(
            "banner-partial-reset",
            "banner: reset in the middle of the greeting",
            OP,
            failing(Code::ClosedAbruptly, "SuspiciousRemoteServerError"),
            Peer::Script(|_, _| Script::new(vec![
                send("220 lab.exa"),
                Step::Sleep(Duration::from_millis(50)),
                Step::Reset
            ]))
        ),
        case!(
            "banner-timeout",
            "banner: no greeting before the banner timeout",
            OP,
            failing(Code::ClosedAbruptly, "SuspiciousRemoteServerError"),
            Peer::Script(|_, _| Script::new(vec![Step::Hang]))
        ),
        case!(
            "banner-421",
            "banner: 421 Service not available",
            OP,
            failing(Code::CannotConnect, "421 4.3.2 Service not available"),
            Peer::Script(|_, _| Script::new(vec![
                send("421 4.3.2 Service not available\r\n"),
                Step::Hang
            ]))
        ),
        case!(
            "banner-554",
            "banner: 554 No SMTP service",
            OP,
            failing(Code::CannotConnect, "554 5.3.2 No SMTP service here"),
            Peer::Script(|_, _| Script::new(vec![
                send("554 5.3.2 No SMTP service here\r\n"),
                Step::Hang
            ]))
        ),
        case!(
            "banner-ssh",
            "banner: not SMTP (SSH banner)",
            OP,
            failing(Code::CannotConnect, "Invalid SMTP response"),
            Peer::Script(|_, _| Script::new(vec![
                send("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
                Step::Hang
            ]))
        ),
        case!(
            "banner-long-line",
            "banner: a line over the length limit",
            OP,
            failing(Code::CannotConnect, "Invalid SMTP response"),
            Peer::Script(|_, _| Script::new(vec![send("220 "), Step::Flood(vec![b'x'; 1024])]))
        ),
        case!(
            "ehlo-helo-fallback",
            "ehlo: EHLO refused, HELO accepted",
            OP,
            WARNING,
            Peer::Script(|_, _| Script::new(vec![
                send("220 old.example SMTP\r\n"),
                Step::Expect("EHLO"),
                send("502 5.5.1 Command not implemented\r\n"),
                Step::Expect("HELO"),
                send("250 old.example\r\n"),
                Step::Expect("QUIT"),
                send("221 Bye\r\n"),
                Step::Close
            ]))
        ),
        case!(
            "ehlo-421",
            "ehlo: EHLO answered 4xx",
            OP,
            failing(Code::CannotConnect, "421 4.7.0 Too many connections"),
            Peer::Script(|_, _| Script::new(vec![
                send("220 lab.example ESMTP\r\n"),
                Step::Expect("EHLO"),
                send("421 4.7.0 Too many connections\r\n"),
                Step::Hang
            ]))
        ),
        case!(
            "ehlo-helo-refused",
            "ehlo: EHLO and HELO refused",
            OP,
            failing(Code::CannotConnect, "550 5.7.1 Go away"),
            Peer::Script(|_, _| Script::new(vec![
                send("220 lab.example ESMTP\r\n"),
                Step::Expect("EHLO"),
                send("500 5.5.1 Unrecognized\r\n"),
                Step::Expect("HELO"),
                send("550 5.7.1 Go away\r\n"),
                Step::Hang
            ]))
        ),
        case!(
            "ehlo-eof",
            "ehlo: EOF after EHLO",
            OP,
            failing(Code::ClosedAbruptly, "SuspiciousRemoteServerError"),
            Peer::Script(|_, _| Script::new(vec![
                send("220 lab.example ESMTP\r\n"),
                Step::Expect("EHLO"),
                Step::Close
            ]))
        ),
        case!(
            "ehlo-timeout",
            "ehlo: no reply before the command timeout",
            OP,
            failing(Code::ClosedAbruptly, "SuspiciousRemoteServerError"),
            Peer::Script(|_, _| Script::new(vec![
                send("220 lab.example ESMTP\r\n"),
                Step::Expect("EHLO"),
                Step::Hang
            ]))
        ),
        case!(
            "starttls-missing-opportunistic",
            "starttls: not advertised, opportunistic",
            OP,
            WARNING,
            Peer::Script(|_, _| plaintext_only())
        ),
        case!(
            "starttls-missing-required",
            "starttls: not advertised, TLS required",
            EO,
            failing(
                Code::CannotConnect,
                "451 5.7.3 STARTTLS is required to send mail"
            ),
            Peer::Script(|_, _| plaintext_only())
        ),
        case!(
            "starttls-454-opportunistic",
            "starttls: 454 TLS not available, opportunistic",
            OP,
            WARNING,
            Peer::Script(|_, _| starttls_refused())
        ),
        case!(
            "starttls-454-required",
            "starttls: 454 TLS not available, TLS required",
            CV,
            failing(
                Code::CannotConnect,
                "454 4.7.0 TLS not available due to local problem"
            ),
            Peer::Script(|_, _| starttls_refused())
        ),
        case!(
            "starttls-injection",
            "starttls: bytes after 220 before the handshake, opportunistic: falls back to plaintext",
            OP,
            WARNING,
            Peer::Script(|_, _| Script::answering_starttls([
                send("220 2.0.0 Ready to start TLS\r\n250 injected\r\n"),
                Step::Hang,
            ]))
        ),
        case!(
            "starttls-injection-required",
            "starttls: bytes after 220 before the handshake, TLS required",
            EO,
            failing(
                Code::CannotConnect,
                "451 4.4.0 Security status IllegalMessage"
            ),
            Peer::Script(|_, _| Script::answering_starttls([
                send("220 2.0.0 Ready to start TLS\r\n250 injected\r\n"),
                Step::Hang,
            ]))
        ),
        case!(
            "starttls-eof",
            "starttls: EOF after STARTTLS, opportunistic: falls back to plaintext",
            OP,
            WARNING,
            Peer::Script(|_, _| Script::answering_starttls([Step::Close]))
        ),
        case!(
            "starttls-eof-required",
            "starttls: EOF after STARTTLS, TLS required",
            CV,
            failing(
                Code::CannotConnect,
                "451 4.4.0 TLS negotiation failed with error SocketError"
            ),
            Peer::Script(|_, _| Script::answering_starttls([Step::Close]))
        ),
        case!(
            "tls-old-protocol",
            "tls: TLS 1.0/1.1-only server (protocol_version alert), opportunistic: falls back to plaintext",
            OP,
            WARNING,
            Peer::Script(|_, _| after_starttls_220(vec![
                Step::Drain,
                Step::Send(vec![0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]),
                Step::Close
            ]))
        ),
        case!(
            "tls-old-protocol-required",
            "tls: TLS 1.0/1.1-only server (protocol_version alert), TLS required",
            EO,
            failing(
                Code::CannotConnect,
                "451 4.4.0 TLS negotiation failed with error AlgorithmMismatch"
            ),
            Peer::Script(|_, _| after_starttls_220(vec![
                Step::Drain,
                Step::Send(vec![0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]),
                Step::Close
            ]))
        ),
        case!(
            "tls-not-tls",
            "tls: the answer is not a TLS record, opportunistic: falls back to plaintext",
            OP,
            WARNING,
            Peer::Script(|_, _| after_starttls_220(vec![
                Step::Drain,
                send("500 5.5.1 what is this?\r\n"),
                Step::Hang
            ]))
        ),
        case!(
            "tls-not-tls-required",
            "tls: the answer is not a TLS record, TLS required",
            EO,
            failing(
                Code::CannotConnect,
                "451 4.4.0 Security status IllegalMessage"
            ),
            Peer::Script(|_, _| after_starttls_220(vec![
                Step::Drain,
                send("500 5.5.1 what is this?\r\n"),
                Step::Hang
            ]))
        ),
        case!(
            "tls-reset",
            "tls: reset during the handshake, opportunistic: falls back to plaintext",
            OP,
            WARNING,
            Peer::Script(|_, _| after_starttls_220(vec![Step::Drain, Step::Reset]))
        ),
        case!(
            "tls-reset-required",
            "tls: reset during the handshake, TLS required",
            CV,
            failing(
                Code::CannotConnect,
                "451 4.4.0 TLS negotiation failed with error SocketError"
            ),
            Peer::Script(|_, _| after_starttls_220(vec![Step::Drain, Step::Reset]))
        ),
        case!(
            "tls-timeout",
            "tls: no ServerHello before the TLS timeout, opportunistic: falls back to plaintext",
            OP,
            WARNING,
            Peer::Script(|_, _| after_starttls_220(vec![Step::Hang]))
        ),
        case!(
            "tls-timeout-required",
            "tls: no ServerHello before the TLS timeout, TLS required",
            CV,
            failing(
                Code::CannotConnect,
                "451 4.4.0 TLS negotiation failed with error Timeout"
            ),
            Peer::Script(|_, _| after_starttls_220(vec![Step::Hang]))
        ),
        case!(
            "cert-expired",
            "certificate: expired",
            CV,
            failing(
                Code::CertificateValidationFailed,
                "CertificateExpired Expected Subject: cert-expired.lab.test. Presented Subject: CN=cert-expired.lab.test. Thumbprint: *"
            ),
            Peer::Script(|pki, host| healthy(pki, LeafSpec::expired(host)))
        ),
        case!(
            "cert-not-yet-valid",
            "certificate: not yet valid",
            CV,
            failing(
                Code::CertificateValidationFailed,
                "CertificateExpired Expected Subject: cert-not-yet-valid.lab.test. Presented Subject: CN=cert-not-yet-valid.lab.test*"
            ),
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    not_before: time::Duration::days(3),
                    not_after: time::Duration::days(400),
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-self-signed",
            "certificate: self-signed",
            CV,
            failing(
                Code::CertificateValidationFailed,
                "UntrustedRoot Expected Subject: cert-self-signed.lab.test. Presented Subject: CN=cert-self-signed.lab.test*"
            ),
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    signer: Signer::SelfSigned,
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-unknown-ca",
            "certificate: unknown issuer",
            DV,
            "*.lab.test",
            failing(
                Code::CertificateValidationFailed,
                "UntrustedRoot Expected Subject: *.lab.test. Presented Subject: CN=cert-unknown-ca.lab.test*"
            ),
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    signer: Signer::Stranger,
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-missing-intermediate",
            "certificate: missing intermediate",
            CV,
            failing(
                Code::CertificateValidationFailed,
                "UntrustedRoot Expected Subject: cert-missing-intermediate.lab.test.*"
            ),
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    send_intermediate: false,
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-wrong-usage",
            "certificate: wrong key usage (clientAuth only)",
            CV,
            failing(
                Code::CertificateValidationFailed,
                "CertificateInvalid Expected Subject: cert-wrong-usage.lab.test.*"
            ),
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    server_auth: false,
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-revoked",
            "certificate: revoked (CRL)",
            CV,
            failing(
                Code::CertificateValidationFailed,
                "CertificateRevoked Expected Subject: cert-revoked.lab.test.*"
            ),
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    serial: REVOKED_SERIAL,
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-subject-mismatch",
            "certificate: no name matches tls_domain",
            DV,
            "mail.contoso.com",
            failing(
                Code::CertificateValidationFailed,
                "SubjectMismatch Expected Subject: mail.contoso.com. Presented Subject: CN=cert-subject-mismatch.lab.test*"
            ),
            Peer::Script(|pki, host| healthy(pki, LeafSpec::valid(host)))
        ),
        case!(
            "cert-self-signed-encryption-only",
            "certificate: self-signed, non-validating mode",
            EO,
            WARNING,
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    signer: Signer::SelfSigned,
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-expired-opportunistic",
            "certificate: expired, opportunistic",
            OP,
            WARNING,
            Peer::Script(|pki, host| healthy(pki, LeafSpec::expired(host)))
        ),
        case!(
            "cert-expiring-soon",
            "certificate: valid, expires within expiry_warning",
            CV,
            WARNING,
            Peer::Script(|pki, host| healthy(
                pki,
                LeafSpec {
                    not_after: time::Duration::days(5),
                    ..LeafSpec::valid(host)
                }
            ))
        ),
        case!(
            "cert-wildcard",
            "certificate: *.lab.test matches tls_domain (one label)",
            DV,
            "cert-wildcard.lab.test",
            OK,
            Peer::Script(|pki, _| healthy(
                pki,
                LeafSpec {
                    common_name: "*.lab.test".into(),
                    names: vec!["*.lab.test".into()],
                    ..LeafSpec::valid("x")
                }
            ))
        ),
        case!(
            "tls-domain-subdomains",
            "certificate: tls_domain *.lab.test accepts any depth",
            DV,
            "*.lab.test",
            OK,
            Peer::Script(|pki, _| healthy(pki, LeafSpec::valid("deep.eu.lab.test")))
        ),
        CaseDef {
            cert_code: CertificateFailureCode::CannotConnect,
            ..case!(
                "cert-expired-field-spelling",
                "certificate: expired, certificate_failure_code = 4.4.317",
                CV,
                failing(
                    Code::CertificateValidationFailed,
                    "CertificateExpired Expected Subject: cert-expired-field-spelling.lab.test.*"
                ),
                Peer::Script(|pki, host| healthy(pki, LeafSpec::expired(host)))
            )
        },
        case!(
            "ehlo-tls-refused",
            "ehlo_tls: EHLO after TLS answered 5xx",
            CV,
            failing(Code::CannotConnect, "554 5.7.1 Not you"),
            Peer::Script(|pki, host| {
                let mut steps = Script::greeting();
                steps.extend(Script::starttls(
                    pki.leaf(&LeafSpec::valid(host)).server_config(),
                ));
                steps.extend([
                    Step::Expect("EHLO"),
                    send("554 5.7.1 Not you\r\n"),
                    Step::Hang,
                ]);
                Script::new(steps)
            })
        ),
        case!(
            "ehlo-tls-eof",
            "ehlo_tls: EOF after EHLO over TLS",
            CV,
            failing(Code::ClosedAbruptly, "SuspiciousRemoteServerError"),
            Peer::Script(|pki, host| {
                let mut steps = Script::greeting();
                steps.extend(Script::starttls(
                    pki.leaf(&LeafSpec::valid(host)).server_config(),
                ));
                steps.extend([Step::Expect("EHLO"), Step::Reset]);
                Script::new(steps)
            })
        ),
        case!(
            "quit-reset",
            "quit: reset after QUIT (does not matter)",
            DV,
            "quit-reset.lab.test",
            OK,
            Peer::Script(|pki, host| {
                let mut steps = Script::greeting();
                steps.extend(Script::starttls(
                    pki.leaf(&LeafSpec::valid(host)).server_config(),
                ));
                steps.extend([
                    Step::Expect("EHLO"),
                    send("250 lab.example\r\n"),
                    Step::Expect("QUIT"),
                    Step::Reset,
                ]);
                Script::new(steps)
            })
        ),
        case!(
            "healthy",
            "all stages pass (domain-validation)",
            DV,
            "healthy.lab.test",
            OK,
            Peer::Script(|pki, host| healthy(pki, LeafSpec::valid(host)))
        ),
        case!(
            "degraded",
            "one smart host refuses, one is healthy",
            CV,
            DEGRADED,
            Peer::Degraded
        ),
    ]
}

/// The serial of the lab's revoked certificate (listed in the lab CRL).
pub(super) const REVOKED_SERIAL: u64 = 0x0bad_cafe;

pub(super) fn healthy(pki: &Pki, leaf: LeafSpec) -> Script {
    tls_to(leaf)(pki)
}

pub(super) fn plaintext_only() -> Script {
    Script::new(vec![
        send("220 plain.example ESMTP\r\n"),
        Step::Expect("EHLO"),
        send("250-plain.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
        Step::Expect("QUIT"),
        send("221 Bye\r\n"),
        Step::Close,
    ])
}

fn starttls_refused() -> Script {
    Script::answering_starttls([
        send("454 4.7.0 TLS not available due to local problem\r\n"),
        Step::Expect("QUIT"),
        send("221 Bye\r\n"),
        Step::Close,
    ])
}
