//! The classification contract of `classification.md` v2, as data, and the verdicts built
//! from it.
//!
//! * [`table`]: "the pipeline and its outcomes", row for row, with each row's evidence; the
//!   only place that decides what an outcome means.
//! * [`codes`]: "the codes": MFI code and title, queue code and title, NDR.
//! * [`conditions`]: what went wrong in `interface.md`'s stable names, and the fix.
//! * [`message`]: the `[Message=…]` builder.
//!
//! This module holds what the stages report (a [`Failure`]: stage, outcome, the server's reply,
//! details for people), the verdicts of a target and of a connector, and the rule that turns
//! target verdicts into the connector's status ("From targets to the connector"). Renderings
//! (JSON, the human report, events, metrics) read the typed [`Judged`] and [`Code`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

pub mod codes;
pub mod conditions;
pub mod message;
pub mod table;

pub use codes::Code;
pub use table::{Action, judge};

pub use conditions::Condition;

use crate::certificate::{CertificateInfo, Problem};
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

/// What happened at a stage, in the terms of the classification table. The data that goes
/// with it (the reply, the certificate) travels in the [`Failure`] and the target's verdict.
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
    /// MX hosts were found, and none of them resolves.
    MxHostsUnresolvable,
    /// MX routing: the domain itself does not exist.
    DomainNonexistent,
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
    /// No common version or suite: a handshake_failure, protocol_version or
    /// insufficient_security alert, or a server hello the client cannot accept.
    NoCommonAlgorithm,
    /// Not a TLS record, any other fatal alert, a malformed handshake.
    IllegalMessage,
    // certificate
    Certificate(Problem),
    ExpiresSoon,
    /// A CRL or OCSP source the certificate names could not be reached or read.
    RevocationUnchecked,
    // any reply the parser had to be lenient with (bare LF, mixed codes)
    LenientReply,
    // anything else (an I/O error the table does not name)
    Unexpected,
}

/// What a stage reports when it stops: where, what, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub outcome: Outcome,
    /// For people: what happened, with the server's words where there were any.
    pub detail: String,
    /// The server's reply as received (all lines, joined by a space), where there was one.
    pub reply: Option<String>,
}

impl Failure {
    pub fn new(stage: Stage, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            stage,
            outcome,
            detail: detail.into(),
            reply: None,
        }
    }

    pub fn with_reply(mut self, reply: String) -> Self {
        self.reply = Some(reply);
        self
    }
}

/// A failure as the table judged it: its code, and the Message EOP would write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub code: Code,
    pub condition: Condition,
    pub failure: Failure,
    pub message: String,
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
    /// The name the address came from: the MX host when one was followed, else the smart
    /// host, else the IP literal (for a DNS failure: the name that did not resolve).
    pub host: String,
    pub address: Option<IpAddr>,
    pub port: u16,
    pub stage: Stage,
    pub code: Option<&'static str>,
    pub title: Option<&'static str>,
    pub queue_code: Option<&'static str>,
    pub ndr: Option<&'static str>,
    pub ndr_line: Option<String>,
    pub detail: String,
    pub eop_status: Option<String>,
    pub condition: Option<Condition>,
    pub fix: Option<&'static str>,
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
    pub failure: Option<Judged>,
}

impl TargetVerdict {
    /// A target about to be probed: nothing known yet but where it is.
    pub fn new(host: &str, address: Option<IpAddr>, port: u16) -> TargetVerdict {
        TargetVerdict {
            host: host.to_owned(),
            address,
            port,
            stage: Stage::Resolve,
            code: None,
            title: None,
            queue_code: None,
            ndr: None,
            ndr_line: None,
            detail: String::new(),
            eop_status: None,
            condition: None,
            fix: None,
            timings_ms: BTreeMap::new(),
            banner: None,
            extensions: Vec::new(),
            extensions_tls: Vec::new(),
            tls: None,
            certificate: None,
            warnings: Vec::new(),
            failure: None,
        }
    }

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

    /// Records a judged failure and the renderings of it that the JSON carries.
    pub fn fail(&mut self, judged: Judged, cert: CertificateFailureCode) {
        let code = judged.code;
        // A DNS failure has no address (EOP had none to try), so it writes no LastAttemptedIP.
        let address = self.address.map(|a| SocketAddr::new(a, self.port));
        self.stage = judged.failure.stage;
        self.code = Some(code.render(cert));
        self.title = Some(code.title(cert));
        self.queue_code = code.queue_code();
        self.ndr = code.ndr();
        self.detail = judged.failure.detail.clone();
        self.eop_status = code.status_line(&judged.message, &self.host, address);
        self.ndr_line = self
            .eop_status
            .as_deref()
            .and_then(|line| code.ndr_line(&judged.message, line));
        self.condition = Some(judged.condition);
        self.fix = Some(judged.condition.fix());
        self.failure = Some(judged);
    }
}

/// The connector's status, and the target whose code it carries when failing: the one that
/// got furthest through the stages, the first of equals in EOP's order.
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

/// One connector's result, as `probe --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorVerdict {
    pub connector: String,
    pub status: Status,
    pub code: Option<&'static str>,
    pub title: Option<&'static str>,
    pub queue_code: Option<&'static str>,
    pub ndr: Option<&'static str>,
    pub ndr_line: Option<String>,
    pub eop_status: Option<String>,
    pub condition: Option<Condition>,
    pub fix: Option<&'static str>,
    pub tls_mode: TlsMode,
    pub started_at: String,
    pub duration_ms: f64,
    /// What concerns the connector rather than one target: targets left unprobed by the
    /// bounds on what DNS can make the probe do.
    pub warnings: Vec<String>,
    pub targets: Vec<TargetVerdict>,
    /// The code behind `code`, for the daemon.
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
        let failing = furthest.filter(|t| t.failure.is_some());
        let code = failing.and_then(|t| t.failure.as_ref().map(|j| j.code));
        ConnectorVerdict {
            connector: connector.to_owned(),
            status,
            code: code.map(|c| c.render(cert_code)),
            title: code.map(|c| c.title(cert_code)),
            queue_code: failing.and_then(|t| t.queue_code),
            ndr: failing.and_then(|t| t.ndr),
            ndr_line: failing.and_then(|t| t.ndr_line.clone()),
            eop_status: failing.and_then(|t| t.eop_status.clone()),
            condition: failing.and_then(|t| t.condition),
            fix: failing.and_then(|t| t.fix),
            code_kind: code,
            tls_mode,
            started_at,
            duration_ms,
            warnings: Vec::new(),
            targets,
            certificate_failure_code: cert_code,
        }
    }

    /// A verdict with no targets, for the tests of what renders verdicts (report, events):
    /// `failing` carries the code and the condition.
    #[cfg(test)]
    pub(crate) fn sample(
        connector: &str,
        status: Status,
        failing: Option<(Code, Condition)>,
    ) -> ConnectorVerdict {
        let cert = CertificateFailureCode::CertificateValidationFailed;
        let code = failing.map(|(c, _)| c);
        ConnectorVerdict {
            connector: connector.into(),
            status,
            code: code.map(|c| c.render(cert)),
            title: code.map(|c| c.title(cert)),
            queue_code: code.and_then(Code::queue_code),
            ndr: code.and_then(Code::ndr),
            ndr_line: None,
            eop_status: None,
            condition: failing.map(|(_, c)| c),
            fix: failing.map(|(_, c)| c.fix()),
            tls_mode: TlsMode::Opportunistic,
            started_at: String::new(),
            duration_ms: 1.0,
            warnings: Vec::new(),
            targets: Vec::new(),
            code_kind: code,
            certificate_failure_code: cert,
        }
    }

    /// Whether EOP would be queueing this connector's mail now (failing with a code it retries).
    pub fn is_queueing(&self) -> bool {
        self.status == Status::Failing && self.code_kind.is_some_and(Code::is_queued)
    }
}
