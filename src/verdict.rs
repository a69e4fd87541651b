//! The classification contract of `classification.md`, as data.
//!
//! [`RULES`] is the table "the pipeline and its outcomes": for a stage, an outcome and the
//! connector's TLS mode, it says whether the probe fails with a code, continues with a
//! warning, or ignores the outcome. [`judge`] is the only place that reads it. The rest of
//! this module turns target results into the connector's status and EOP's status line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::certificate::CertificateInfo;
use crate::config::{CertificateFailureCode, TlsMode};

/// The pipeline stages, in order. A target's `stage` is the last one it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Resolve,
    Connect,
    Banner,
    Ehlo,
    Starttls,
    Tls,
    Certificate,
    EhloTls,
    Quit,
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Resolve => "resolve",
            Stage::Connect => "connect",
            Stage::Banner => "banner",
            Stage::Ehlo => "ehlo",
            Stage::Starttls => "starttls",
            Stage::Tls => "tls",
            Stage::Certificate => "certificate",
            Stage::EhloTls => "ehlo_tls",
            Stage::Quit => "quit",
            Stage::Done => "done",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mail flow intelligence codes.
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
    /// 450 4.7.320 (or 4.4.317, per `certificate_failure_code`)
    CertificateValidationFailed,
    /// Anything the table does not cover.
    Other,
}

impl Code {
    /// The enhanced status code, as EOP spells it under the given setting.
    pub fn enhanced(self, cert: CertificateFailureCode) -> &'static str {
        match self {
            Code::DnsQueryFailed => "4.4.312",
            Code::ConnectionTimedOut => "4.4.315",
            Code::ConnectionRefused => "4.4.316",
            Code::CannotConnect => "4.4.317",
            Code::ClosedAbruptly => "4.4.318",
            Code::CertificateValidationFailed => cert.as_str(),
            Code::Other => "other",
        }
    }

    /// `450 4.4.316`, or `other`.
    pub fn render(self, cert: CertificateFailureCode) -> String {
        match self {
            Code::Other => "other".into(),
            c => format!("450 {}", c.enhanced(cert)),
        }
    }

    /// The NDR the sender gets when queued mail expires: `550 5.4.316`.
    pub fn ndr(self, cert: CertificateFailureCode) -> Option<String> {
        match self {
            Code::Other => None,
            c => Some(format!("550 5{}", &c.enhanced(cert)[1..])),
        }
    }

    /// EOP's title for the code.
    pub fn title(self, cert: CertificateFailureCode) -> &'static str {
        match (self, cert) {
            (Code::DnsQueryFailed, _) => "DNS query failed",
            (Code::ConnectionTimedOut, _) => "Connection timed out",
            (Code::ConnectionRefused, _) => "Connection refused",
            (Code::CannotConnect, _)
            | (Code::CertificateValidationFailed, CertificateFailureCode::CannotConnect) => {
                "Cannot connect to remote server"
            }
            (Code::ClosedAbruptly, _) => "Connection was closed abruptly",
            (Code::CertificateValidationFailed, _) => "Certificate validation failed",
            (Code::Other, _) => "Delivery problem",
        }
    }

    /// What the admin should look at, in one or two sentences.
    pub fn fix(self) -> &'static str {
        match self {
            Code::DnsQueryFailed => {
                "The smart host (or the domain's MX) does not resolve in public DNS. Check the name in the connector, the zone at your DNS host, and that the domain has not expired."
            }
            Code::ConnectionTimedOut => {
                "Nothing answered on the port. Check that the server is up, that the connector points at the right address, and that no firewall silently drops Microsoft 365's connections."
            }
            Code::ConnectionRefused => {
                "The host answered but refused the connection. Start the SMTP service or open the firewall to Microsoft 365's IP ranges on TCP 25; if on-premises mail is retired, disable the connector."
            }
            Code::CannotConnect => {
                "The server answered but refused to talk, or does not meet the connector's requirements. Check the server's greeting and its TLS setup (STARTTLS offered, a TLS 1.2+ protocol and cipher in common)."
            }
            Code::ClosedAbruptly => {
                "The session started and then dropped or stalled. Look for an SMTP-inspecting firewall, an overloaded or crashing mail service, or network trouble on the path."
            }
            Code::CertificateValidationFailed => {
                "The certificate fails the connector's validation. Renew or replace it (full chain, public CA, a name matching TlsDomain), or correct the connector's TLS settings."
            }
            Code::Other => {
                "The probe hit a problem outside the documented codes; the detail quotes what happened."
            }
        }
    }
}

/// What happened at a stage, in the terms of the classification table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    // resolve
    NxDomain,
    NoData,
    ServFail,
    DnsRefused,
    DnsTimeout,
    NoResolver,
    NullMx,
    DnsOther,
    // connect
    ConnectTimeout,
    ConnectRefused,
    HostUnreachable,
    NetUnreachable,
    LocalFirewall,
    // any session stage
    Closed,
    Reset,
    Timeout,
    TransientReply,
    PermanentReply,
    NotSmtp,
    // ehlo
    HeloFallback,
    // starttls
    StarttlsNotOffered,
    StarttlsRefused,
    Injection,
    // tls
    HandshakeFailed,
    // certificate
    Expired,
    NotYetValid,
    Untrusted,
    Invalid,
    Revoked,
    NameMismatch,
    ExpiresSoon,
    /// A CRL or OCSP source the certificate names could not be reached or read.
    RevocationUnchecked,
    // any reply the parser had to be lenient with (bare LF, mixed codes)
    LenientReply,
    // anything else (an I/O error the table does not name)
    Unexpected,
}

/// Which TLS modes a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modes {
    All,
    Opportunistic,
    /// Every mode but opportunistic: STARTTLS is required.
    RequireTls,
    /// Modes that judge the certificate.
    Validating,
    /// Modes that only report certificate problems.
    NonValidating,
}

impl Modes {
    fn contains(self, mode: TlsMode) -> bool {
        match self {
            Modes::All => true,
            Modes::Opportunistic => !mode.requires_tls(),
            Modes::RequireTls => mode.requires_tls(),
            Modes::Validating => mode.validates_certificate(),
            Modes::NonValidating => !mode.validates_certificate(),
        }
    }
}

/// What an outcome means for the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The target fails with this code.
    Fail(Code),
    /// The target continues; the outcome is a warning.
    Warn,
    /// The outcome does not matter (after QUIT the probe has already succeeded).
    Ignore,
}

pub struct Rule {
    pub stages: &'static [Stage],
    pub outcomes: &'static [Outcome],
    pub modes: Modes,
    pub action: Action,
}

use Outcome as O;
use Stage as S;

const DROPPED: &[Outcome] = &[O::Closed, O::Reset, O::Timeout];
const ERROR_REPLY: &[Outcome] = &[O::TransientReply, O::PermanentReply, O::NotSmtp];
const CERT_PROBLEMS: &[Outcome] = &[
    O::Expired,
    O::NotYetValid,
    O::Untrusted,
    O::Invalid,
    O::Revoked,
    O::NameMismatch,
];

/// The table of `classification.md`, row for row. First match wins; no match is `other`.
pub const RULES: &[Rule] = &[
    Rule {
        stages: &[S::Resolve],
        outcomes: &[
            O::NxDomain,
            O::NoData,
            O::ServFail,
            O::DnsRefused,
            O::DnsTimeout,
            O::NoResolver,
            O::NullMx,
            O::DnsOther,
        ],
        modes: Modes::All,
        action: Action::Fail(Code::DnsQueryFailed),
    },
    Rule {
        stages: &[S::Connect],
        outcomes: &[O::ConnectTimeout],
        modes: Modes::All,
        action: Action::Fail(Code::ConnectionTimedOut),
    },
    Rule {
        stages: &[S::Connect],
        outcomes: &[
            O::ConnectRefused,
            O::HostUnreachable,
            O::NetUnreachable,
            O::LocalFirewall,
        ],
        modes: Modes::All,
        action: Action::Fail(Code::ConnectionRefused),
    },
    // A reset right after the handshake is reported from the banner stage (see `connect`).
    Rule {
        stages: &[S::Banner, S::Ehlo, S::Starttls, S::Tls, S::EhloTls],
        outcomes: DROPPED,
        modes: Modes::All,
        action: Action::Fail(Code::ClosedAbruptly),
    },
    Rule {
        stages: &[S::Banner, S::Ehlo, S::Starttls, S::EhloTls],
        outcomes: &[O::LenientReply],
        modes: Modes::All,
        action: Action::Warn,
    },
    Rule {
        stages: &[S::Ehlo],
        outcomes: &[O::HeloFallback],
        modes: Modes::All,
        action: Action::Warn,
    },
    Rule {
        stages: &[S::Banner, S::Ehlo, S::EhloTls],
        outcomes: ERROR_REPLY,
        modes: Modes::All,
        action: Action::Fail(Code::CannotConnect),
    },
    Rule {
        stages: &[S::Starttls],
        outcomes: &[O::StarttlsNotOffered, O::StarttlsRefused],
        modes: Modes::Opportunistic,
        action: Action::Warn,
    },
    Rule {
        stages: &[S::Starttls],
        outcomes: &[O::StarttlsNotOffered, O::StarttlsRefused],
        modes: Modes::RequireTls,
        action: Action::Fail(Code::CannotConnect),
    },
    Rule {
        stages: &[S::Starttls],
        outcomes: &[O::Injection, O::NotSmtp],
        modes: Modes::All,
        action: Action::Fail(Code::CannotConnect),
    },
    // EOP does not fall back to plaintext after a failed handshake, in any mode.
    Rule {
        stages: &[S::Tls],
        outcomes: &[O::HandshakeFailed],
        modes: Modes::All,
        action: Action::Fail(Code::CannotConnect),
    },
    Rule {
        stages: &[S::Certificate],
        outcomes: CERT_PROBLEMS,
        modes: Modes::Validating,
        action: Action::Fail(Code::CertificateValidationFailed),
    },
    Rule {
        stages: &[S::Certificate],
        outcomes: CERT_PROBLEMS,
        modes: Modes::NonValidating,
        action: Action::Warn,
    },
    Rule {
        stages: &[S::Certificate],
        outcomes: &[O::ExpiresSoon, O::RevocationUnchecked],
        modes: Modes::All,
        action: Action::Warn,
    },
    Rule {
        stages: &[S::Quit],
        outcomes: &[],
        modes: Modes::All,
        action: Action::Ignore,
    },
];

/// What the table says about `outcome` at `stage` for a connector in `mode`.
pub fn judge(stage: Stage, outcome: Outcome, mode: TlsMode) -> Action {
    RULES
        .iter()
        .find(|r| {
            r.stages.contains(&stage)
                && (r.outcomes.is_empty() || r.outcomes.contains(&outcome))
                && r.modes.contains(mode)
        })
        .map_or(Action::Fail(Code::Other), |r| r.action)
}

/// How a failed target failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub outcome: Outcome,
    /// For people: what happened, with the server's words where there were any.
    pub detail: String,
}

impl Failure {
    pub fn new(stage: Stage, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            stage,
            outcome,
            detail: detail.into(),
        }
    }
}

/// The `[Message=…]` part of EOP's status line for a failure, in EOP's vocabulary: Windows
/// socket error codes for the transport, the server's own reply where it sent one, and the
/// certificate status names EOP's NDRs use.
fn eop_message(f: &Failure, cert: Option<&CertificateInfo>, tls_domain: Option<&str>) -> String {
    let thumb = || {
        cert.map(|c| format!(" Thumbprint: {}", c.sha1_thumbprint))
            .unwrap_or_default()
    };
    match f.outcome {
        O::NxDomain => "InfoDomainNonexistent".into(),
        O::NoData => "InfoNoRecords".into(),
        O::ServFail => "ErrorRetry ServerFailure".into(),
        O::DnsRefused => "ErrorRetry Refused".into(),
        O::DnsTimeout => "ErrorTimeout".into(),
        O::NoResolver => "ErrorRetry NoNameServerReachable".into(),
        O::NullMx => "InfoNoRecords NullMX".into(),
        O::ConnectTimeout => "Socket error code 10060".into(),
        O::ConnectRefused => "Socket error code 10061".into(),
        O::HostUnreachable => "Socket error code 10065".into(),
        O::NetUnreachable => "Socket error code 10051".into(),
        O::LocalFirewall => "Socket error code 10013".into(),
        O::Reset => "Socket error code 10054".into(),
        O::Closed => "Remote host closed the connection".into(),
        O::Timeout => "Socket error code 10060 (no reply)".into(),
        O::Expired | O::NotYetValid => format!("CertificateExpired{}", thumb()),
        O::Untrusted => format!("UntrustedRoot{}", thumb()),
        O::Invalid => format!("CertificateInvalid{}", thumb()),
        O::Revoked => format!("CertificateRevoked{}", thumb()),
        O::NameMismatch => format!(
            "SubjectMismatch Expected Subject: {} Presented Subject: {}{}",
            tls_domain.unwrap_or("?"),
            cert.map(|c| c.presented_subject()).unwrap_or_default(),
            thumb()
        ),
        _ => f.detail.clone(),
    }
}

/// EOP's status line for a failed target.
pub fn eop_status(
    code: Code,
    cert_code: CertificateFailureCode,
    failure: &Failure,
    host: &str,
    address: Option<SocketAddr>,
    cert: Option<&CertificateInfo>,
    tls_domain: Option<&str>,
) -> String {
    let mut line = format!(
        "{} {} [Message={}] [LastAttemptedServerName={}]",
        code.render(cert_code),
        code.title(cert_code),
        eop_message(failure, cert, tls_domain),
        host
    );
    if let Some(a) = address {
        line.push_str(&format!(" [LastAttemptedIP={a}]"));
    }
    line
}

/// The connector's status.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Degraded,
    Failing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Degraded => "degraded",
            Status::Failing => "failing",
        }
    }

    /// The monitoring-plugin exit code: 0 ok, 1 warning or degraded, 2 failing.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning | Status::Degraded => 1,
            Status::Failing => 2,
        }
    }
}

/// The negotiated protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    pub version: String,
    /// IANA's name of the suite.
    pub cipher: String,
    /// Which engine handshook: "rustls", or "openssl" for EOP's suites rustls lacks.
    pub engine: String,
}

/// One target's result, as `probe --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetVerdict {
    pub host: String,
    pub address: Option<IpAddr>,
    pub port: u16,
    pub stage: Stage,
    pub code: Option<String>,
    pub detail: String,
    pub eop_status: Option<String>,
    pub timings_ms: BTreeMap<Stage, f64>,
    pub banner: Option<String>,
    /// The EHLO keywords before STARTTLS.
    pub extensions: Vec<String>,
    /// The EHLO keywords after STARTTLS.
    pub extensions_tls: Vec<String>,
    pub tls: Option<TlsInfo>,
    pub certificate: Option<CertificateInfo>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub failure: Option<(Code, Failure)>,
}

impl TargetVerdict {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// `host:port` or `address:port`, for reports.
    pub fn endpoint(&self) -> String {
        match self.address {
            Some(a) => SocketAddr::new(a, self.port).to_string(),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The connector's status, and the target whose code it carries when failing: the one that
/// got furthest through the stages, the first of equals.
pub fn connector_status(targets: &[TargetVerdict]) -> (Status, Option<&TargetVerdict>) {
    let ok = targets.iter().filter(|t| t.succeeded()).count();
    if targets.is_empty() {
        return (Status::Failing, None);
    }
    if ok == targets.len() {
        let warned = targets.iter().any(|t| !t.warnings.is_empty());
        return (if warned { Status::Warning } else { Status::Ok }, None);
    }
    if ok > 0 {
        return (Status::Degraded, None);
    }
    let mut furthest: Option<&TargetVerdict> = None;
    for t in targets {
        if furthest.is_none_or(|f| t.stage > f.stage) {
            furthest = Some(t);
        }
    }
    (Status::Failing, furthest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows() {
        use TlsMode::*;
        let cases: &[(Stage, Outcome, TlsMode, Action)] = &[
            (
                S::Resolve,
                O::NxDomain,
                DomainValidation,
                Action::Fail(Code::DnsQueryFailed),
            ),
            (
                S::Resolve,
                O::NullMx,
                Opportunistic,
                Action::Fail(Code::DnsQueryFailed),
            ),
            (
                S::Connect,
                O::ConnectTimeout,
                Opportunistic,
                Action::Fail(Code::ConnectionTimedOut),
            ),
            (
                S::Connect,
                O::HostUnreachable,
                Opportunistic,
                Action::Fail(Code::ConnectionRefused),
            ),
            (
                S::Banner,
                O::Reset,
                Opportunistic,
                Action::Fail(Code::ClosedAbruptly),
            ),
            (
                S::Banner,
                O::PermanentReply,
                Opportunistic,
                Action::Fail(Code::CannotConnect),
            ),
            (S::Ehlo, O::HeloFallback, DomainValidation, Action::Warn),
            (
                S::Ehlo,
                O::Timeout,
                Opportunistic,
                Action::Fail(Code::ClosedAbruptly),
            ),
            (
                S::Starttls,
                O::StarttlsNotOffered,
                Opportunistic,
                Action::Warn,
            ),
            (
                S::Starttls,
                O::StarttlsNotOffered,
                EncryptionOnly,
                Action::Fail(Code::CannotConnect),
            ),
            (S::Starttls, O::StarttlsRefused, Opportunistic, Action::Warn),
            (
                S::Starttls,
                O::StarttlsRefused,
                CertificateValidation,
                Action::Fail(Code::CannotConnect),
            ),
            (
                S::Starttls,
                O::Injection,
                Opportunistic,
                Action::Fail(Code::CannotConnect),
            ),
            (
                S::Tls,
                O::HandshakeFailed,
                Opportunistic,
                Action::Fail(Code::CannotConnect),
            ),
            (
                S::Tls,
                O::Closed,
                Opportunistic,
                Action::Fail(Code::ClosedAbruptly),
            ),
            (
                S::Certificate,
                O::Expired,
                CertificateValidation,
                Action::Fail(Code::CertificateValidationFailed),
            ),
            (S::Certificate, O::Untrusted, EncryptionOnly, Action::Warn),
            (S::Certificate, O::Untrusted, Opportunistic, Action::Warn),
            (
                S::Certificate,
                O::ExpiresSoon,
                DomainValidation,
                Action::Warn,
            ),
            (
                S::EhloTls,
                O::PermanentReply,
                Opportunistic,
                Action::Fail(Code::CannotConnect),
            ),
            (S::Quit, O::Reset, Opportunistic, Action::Ignore),
            (
                S::Connect,
                O::Unexpected,
                Opportunistic,
                Action::Fail(Code::Other),
            ),
        ];
        for (stage, outcome, mode, want) in cases {
            assert_eq!(
                judge(*stage, *outcome, *mode),
                *want,
                "{stage} {outcome:?} {mode:?}"
            );
        }
    }

    #[test]
    fn code_spellings() {
        let doc = CertificateFailureCode::CertificateValidationFailed;
        let field = CertificateFailureCode::CannotConnect;
        assert_eq!(Code::ConnectionRefused.render(doc), "450 4.4.316");
        assert_eq!(Code::ConnectionRefused.ndr(doc).unwrap(), "550 5.4.316");
        assert_eq!(Code::CertificateValidationFailed.render(doc), "450 4.7.320");
        assert_eq!(
            Code::CertificateValidationFailed.ndr(doc).unwrap(),
            "550 5.7.320"
        );
        assert_eq!(
            Code::CertificateValidationFailed.render(field),
            "450 4.4.317"
        );
        assert_eq!(
            Code::CertificateValidationFailed.title(field),
            "Cannot connect to remote server"
        );
        assert_eq!(Code::Other.render(doc), "other");
        assert_eq!(Code::Other.ndr(doc), None);
    }
}

/// One connector's result, as `probe --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorVerdict {
    pub connector: String,
    pub status: Status,
    pub code: Option<String>,
    pub title: Option<String>,
    pub eop_status: Option<String>,
    pub tls_mode: TlsMode,
    pub started_at: String,
    pub duration_ms: f64,
    pub targets: Vec<TargetVerdict>,
    /// The code behind `code`, for the daemon's NDR countdown.
    #[serde(skip)]
    pub code_kind: Option<Code>,
    #[serde(skip)]
    pub certificate_failure_code: CertificateFailureCode,
}

impl ConnectorVerdict {
    /// The connector's verdict from its targets' (`classification.md`, "From targets to the
    /// connector").
    pub fn new(
        connector: &str,
        tls_mode: TlsMode,
        cert_code: CertificateFailureCode,
        started_at: String,
        duration_ms: f64,
        targets: Vec<TargetVerdict>,
    ) -> ConnectorVerdict {
        let (status, furthest) = connector_status(&targets);
        let failure =
            furthest.and_then(|t| t.failure.as_ref().map(|(c, _)| (*c, t.eop_status.clone())));
        ConnectorVerdict {
            connector: connector.to_owned(),
            status,
            code: failure.as_ref().map(|(c, _)| c.render(cert_code)),
            title: failure.as_ref().map(|(c, _)| c.title(cert_code).to_owned()),
            eop_status: failure.as_ref().and_then(|(_, s)| s.clone()),
            code_kind: failure.map(|(c, _)| c),
            tls_mode,
            started_at,
            duration_ms,
            targets,
            certificate_failure_code: cert_code,
        }
    }
}
