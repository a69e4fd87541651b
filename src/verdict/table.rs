//! "The pipeline and its outcomes" of `classification.md` v2, row for row, as data.
//!
//! For a stage, an outcome and the connector's TLS mode, a [`Rule`] says what EOP does: fail
//! with a code and a `[Message=…]`, go on with a warning, fall back to a session without TLS
//! (opportunistic connectors), or ignore it. [`judge`] is the only reader of the table, and
//! the probe asks it once per outcome.
//!
//! Adding a stage (a DANE/TLSA check, say) means: a [`Stage`] variant, the stage's outcomes
//! in [`Outcome`], its rows here (and a code in [`super::codes`] if it brings one), the stage
//! in the pipeline (`probe.rs`) reporting its outcomes through `Run::observe`, and a lab case
//! in `demo/catalogue.rs`. Nothing else reads the outcomes.

use super::codes::Code;
use super::conditions::Condition;
use super::{Outcome, Stage};
use crate::certificate::Problem;
use crate::config::TlsMode;

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
    /// The target goes on; the outcome is a warning.
    Warn,
    /// Opportunistic TLS: the negotiation failed after STARTTLS was accepted, so EOP sends
    /// over a new connection without STARTTLS, and that session decides.
    Fallback,
    /// The outcome does not matter (after QUIT the probe has already succeeded).
    Ignore,
}

/// How the `[Message=…]` of a failing row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// EOP's own words.
    Text(&'static str),
    /// The server's reply as received: all its lines, CR LF removed, joined by a space.
    Reply,
    /// `<Status> Expected Subject: …. Presented Subject: …. Thumbprint: ….`
    Certificate,
    /// No status line (a warning, or a code EOP has no line for).
    None,
}

pub struct Rule {
    pub stages: &'static [Stage],
    pub outcomes: &'static [Outcome],
    pub modes: Modes,
    pub action: Action,
    pub message: Msg,
    /// What went wrong, in `interface.md`'s stable names (and so the fix); `other` for rows
    /// that do not fail.
    pub condition: Condition,
    /// The row's evidence in `classification.md`: F field lines, D documentation, U no
    /// evidence beyond the mail flow intelligence article (unconfirmed).
    pub evidence: &'static str,
}

use Outcome as O;
use Stage as S;

const DROPPED: &[Outcome] = &[O::Closed, O::Reset, O::Timeout];
const CERT_PROBLEMS: &[Outcome] = &[
    O::Certificate(Problem::Expired),
    O::Certificate(Problem::NotYetValid),
    O::Certificate(Problem::Untrusted),
    O::Certificate(Problem::Invalid),
    O::Certificate(Problem::Revoked),
    O::Certificate(Problem::NameMismatch),
];
/// What can go wrong once STARTTLS was sent and before TLS is up.
const NEGOTIATION: &[Outcome] = &[
    O::Closed,
    O::Reset,
    O::Timeout,
    O::Injection,
    O::NoCommonAlgorithm,
    O::IllegalMessage,
];
const SOCKET_ERROR: Msg = Msg::Text("451 4.4.0 TLS negotiation failed with error SocketError");
const SUSPICIOUS: Msg = Msg::Text("SuspiciousRemoteServerError");

const fn fail(
    stages: &'static [Stage],
    outcomes: &'static [Outcome],
    modes: Modes,
    (code, condition): (Code, Condition),
    message: Msg,
    evidence: &'static str,
) -> Rule {
    Rule {
        stages,
        outcomes,
        modes,
        action: Action::Fail(code),
        message,
        condition,
        evidence,
    }
}

const fn go_on(
    stages: &'static [Stage],
    outcomes: &'static [Outcome],
    modes: Modes,
    action: Action,
    evidence: &'static str,
) -> Rule {
    Rule {
        stages,
        outcomes,
        modes,
        action,
        message: Msg::None,
        condition: Condition::Other,
        evidence,
    }
}

use Code::{
    CannotConnect as C317, CertificateValidationFailed as C320, ClosedAbruptly as C318,
    ConnectionRefused as C316, ConnectionTimedOut as C315, DnsQueryFailed as C312,
    DomainNonexistent as C310,
};
use Modes::{All, NonValidating, Opportunistic, RequireTls, Validating};

/// The table, in the spec's order. First match wins; no match is `other`.
pub const RULES: &[Rule] = &[
    // resolve
    fail(
        &[S::Resolve],
        &[O::NxDomain],
        All,
        (C312, Condition::DnsFailed),
        Msg::Text("InfoDomainNonexistent"),
        "U",
    ),
    fail(
        &[S::Resolve],
        &[O::NoData],
        All,
        (C312, Condition::DnsFailed),
        Msg::Text("InfoNoRecords"),
        "F",
    ),
    // Any other answer code (NOTIMP, FORMERR) is a server failure to EOP too.
    fail(
        &[S::Resolve],
        &[
            O::ServFail,
            O::DnsRefused,
            O::DnsTimeout,
            O::NoResolver,
            O::DnsOther,
        ],
        All,
        (C312, Condition::DnsFailed),
        Msg::Text("ErrorRetry"),
        "F",
    ),
    fail(
        &[S::Resolve],
        &[O::MxHostsUnresolvable],
        All,
        (C312, Condition::DnsFailed),
        Msg::Text("ErrorRetry"),
        "F",
    ),
    fail(
        &[S::Resolve],
        &[O::DomainNonexistent],
        All,
        (C310, Condition::DomainNonexistent),
        Msg::Text("InfoDomainNonexistent"),
        "F",
    ),
    fail(
        &[S::Resolve],
        &[O::NullMx],
        All,
        (C312, Condition::DnsFailed),
        Msg::Text("InfoNoRecords"),
        "U",
    ),
    // connect
    fail(
        &[S::Connect],
        &[O::ConnectTimeout],
        All,
        (C315, Condition::ConnectTimeout),
        Msg::Text("Socket error code 10060"),
        "U",
    ),
    fail(
        &[S::Connect],
        &[O::ConnectRefused],
        All,
        (C316, Condition::ConnectRefused),
        Msg::Text("Socket error code 10061"),
        "F",
    ),
    fail(
        &[S::Connect],
        &[O::HostUnreachable],
        All,
        (C316, Condition::ConnectFailed),
        Msg::Text("Socket error code 10065"),
        "U",
    ),
    fail(
        &[S::Connect],
        &[O::NetUnreachable],
        All,
        (C316, Condition::ConnectFailed),
        Msg::Text("Socket error code 10051"),
        "U",
    ),
    fail(
        &[S::Connect],
        &[O::LocalFirewall],
        All,
        (C316, Condition::ConnectFailed),
        Msg::Text("Socket error code 10013"),
        "U",
    ),
    // A reset right after the handshake surfaces on the greeting's read.
    fail(
        &[S::Connect],
        &[O::Reset],
        All,
        (C318, Condition::ClosedAbruptly),
        SUSPICIOUS,
        "U",
    ),
    // banner
    fail(
        &[S::Banner],
        DROPPED,
        All,
        (C318, Condition::ClosedAbruptly),
        SUSPICIOUS,
        "F",
    ),
    fail(
        &[S::Banner],
        &[O::TransientReply, O::PermanentReply],
        All,
        (C317, Condition::SessionRejected),
        Msg::Reply,
        "F",
    ),
    fail(
        &[S::Banner],
        &[O::NotSmtp],
        All,
        (C317, Condition::SessionRejected),
        Msg::Text("Invalid SMTP response"),
        "U",
    ),
    go_on(
        &[S::Banner, S::Ehlo, S::Starttls, S::EhloTls],
        &[O::LenientReply],
        All,
        Action::Warn,
        "-",
    ),
    // ehlo
    go_on(&[S::Ehlo], &[O::HeloFallback], All, Action::Warn, "U"),
    fail(
        &[S::Ehlo],
        &[O::TransientReply, O::PermanentReply],
        All,
        (C317, Condition::SessionRejected),
        Msg::Reply,
        "F",
    ),
    fail(
        &[S::Ehlo],
        &[O::NotSmtp],
        All,
        (C317, Condition::SessionRejected),
        Msg::Text("Invalid SMTP response"),
        "U",
    ),
    fail(
        &[S::Ehlo],
        DROPPED,
        All,
        (C318, Condition::ClosedAbruptly),
        SUSPICIOUS,
        "U",
    ),
    // starttls
    go_on(
        &[S::Starttls],
        &[O::StarttlsNotOffered, O::StarttlsRefused],
        Opportunistic,
        Action::Warn,
        "D",
    ),
    fail(
        &[S::Starttls],
        &[O::StarttlsNotOffered],
        RequireTls,
        (C317, Condition::StarttlsRequired),
        Msg::Text("451 5.7.3 STARTTLS is required to send mail"),
        "F",
    ),
    fail(
        &[S::Starttls],
        &[O::StarttlsRefused],
        RequireTls,
        (C317, Condition::TlsNegotiationFailed),
        Msg::Reply,
        "U",
    ),
    go_on(
        &[S::Starttls, S::Tls],
        NEGOTIATION,
        Opportunistic,
        Action::Fallback,
        "D/F",
    ),
    fail(
        &[S::Starttls, S::Tls],
        &[O::Timeout],
        RequireTls,
        (C317, Condition::TlsNegotiationFailed),
        Msg::Text("451 4.4.0 TLS negotiation failed with error Timeout"),
        "U",
    ),
    fail(
        &[S::Starttls, S::Tls],
        &[O::Injection, O::IllegalMessage, O::NotSmtp],
        RequireTls,
        (C317, Condition::TlsNegotiationFailed),
        Msg::Text("451 4.4.0 Security status IllegalMessage"),
        "U",
    ),
    fail(
        &[S::Starttls, S::Tls],
        &[O::Closed, O::Reset],
        RequireTls,
        (C317, Condition::TlsNegotiationFailed),
        SOCKET_ERROR,
        "F",
    ),
    fail(
        &[S::Tls],
        &[O::NoCommonAlgorithm],
        RequireTls,
        (C317, Condition::TlsNegotiationFailed),
        Msg::Text("451 4.4.0 TLS negotiation failed with error AlgorithmMismatch"),
        "F/U",
    ),
    // A STARTTLS answer that is not SMTP, in an opportunistic connector: the session cannot go
    // on in plaintext either, so EOP would try again without STARTTLS.
    go_on(
        &[S::Starttls],
        &[O::NotSmtp],
        Opportunistic,
        Action::Fallback,
        "U",
    ),
    // certificate
    fail(
        &[S::Certificate],
        &[
            O::Certificate(Problem::Expired),
            O::Certificate(Problem::NotYetValid),
        ],
        Validating,
        (C320, Condition::CertificateExpired),
        Msg::Certificate,
        "F",
    ),
    fail(
        &[S::Certificate],
        &[O::Certificate(Problem::Untrusted)],
        Validating,
        (C320, Condition::CertificateUntrusted),
        Msg::Certificate,
        "D",
    ),
    fail(
        &[S::Certificate],
        &[O::Certificate(Problem::Invalid)],
        Validating,
        (C320, Condition::CertificateInvalid),
        Msg::Certificate,
        "U",
    ),
    fail(
        &[S::Certificate],
        &[O::Certificate(Problem::Revoked)],
        Validating,
        (C320, Condition::CertificateRevoked),
        Msg::Certificate,
        "U",
    ),
    fail(
        &[S::Certificate],
        &[O::Certificate(Problem::NameMismatch)],
        Validating,
        (C320, Condition::SubjectMismatch),
        Msg::Certificate,
        "F",
    ),
    go_on(
        &[S::Certificate],
        CERT_PROBLEMS,
        NonValidating,
        Action::Warn,
        "D",
    ),
    go_on(&[S::Certificate], &[O::ExpiresSoon], All, Action::Warn, "-"),
    // A CRL or OCSP source the certificate names that cannot be reached or read is never a
    // failure (classification.md, "Revocation").
    go_on(
        &[S::Certificate],
        &[O::RevocationUnchecked],
        All,
        Action::Warn,
        "D",
    ),
    // ehlo_tls
    fail(
        &[S::EhloTls],
        &[O::TransientReply, O::PermanentReply],
        All,
        (C317, Condition::SessionRejected),
        Msg::Reply,
        "U",
    ),
    fail(
        &[S::EhloTls],
        &[O::NotSmtp],
        All,
        (C317, Condition::SessionRejected),
        Msg::Text("Invalid SMTP response"),
        "U",
    ),
    fail(
        &[S::EhloTls],
        DROPPED,
        All,
        (C318, Condition::ClosedAbruptly),
        SUSPICIOUS,
        "U",
    ),
    // quit
    go_on(&[S::Quit], &[], All, Action::Ignore, "-"),
];

/// The row for anything the table does not name: `other`, with the probe's own words.
pub static OTHER: Rule = Rule {
    stages: &[],
    outcomes: &[],
    modes: Modes::All,
    action: Action::Fail(Code::Other),
    message: Msg::None,
    condition: Condition::Other,
    evidence: "-",
};

/// The row of the table for `outcome` at `stage` in a connector of `mode`.
pub fn judge(stage: Stage, outcome: Outcome, mode: TlsMode) -> &'static Rule {
    RULES
        .iter()
        .find(|r| {
            r.stages.contains(&stage)
                && (r.outcomes.is_empty() || r.outcomes.contains(&outcome))
                && r.modes.contains(mode)
        })
        .unwrap_or(&OTHER)
}

/// The condition of the failing row whose Message is EOP's own `text` (not a server's reply),
/// for reading a line back (`explain`).
pub fn condition_of_message(text: &str) -> Option<Condition> {
    RULES.iter().find_map(|r| match (r.action, r.message) {
        (Action::Fail(_), Msg::Text(t)) if t.eq_ignore_ascii_case(text.trim()) => Some(r.condition),
        _ => None,
    })
}

/// The row EOP would have written for a failed negotiation had TLS been required: the
/// Message an opportunistic connector's fallback warning quotes.
pub fn negotiation_row(stage: Stage, outcome: Outcome) -> &'static Rule {
    judge(stage, outcome, TlsMode::EncryptionOnly)
}

#[cfg(test)]
mod tests {
    use super::{Action, C310, C312, C315, C316, C317, C318, C320, Code, Msg, O, Problem, S};
    use super::{Outcome, RULES, Stage, TlsMode, judge, negotiation_row};
    use TlsMode::*;

    fn action(stage: Stage, outcome: Outcome, mode: TlsMode) -> Action {
        judge(stage, outcome, mode).action
    }

    #[test]
    fn rows() {
        let cases: &[(Stage, Outcome, TlsMode, Action)] = &[
            (
                S::Resolve,
                O::NxDomain,
                DomainValidation,
                Action::Fail(C312),
            ),
            (
                S::Resolve,
                O::DomainNonexistent,
                Opportunistic,
                Action::Fail(C310),
            ),
            (S::Resolve, O::NullMx, Opportunistic, Action::Fail(C312)),
            (
                S::Connect,
                O::ConnectTimeout,
                Opportunistic,
                Action::Fail(C315),
            ),
            (
                S::Connect,
                O::HostUnreachable,
                Opportunistic,
                Action::Fail(C316),
            ),
            (S::Banner, O::Reset, Opportunistic, Action::Fail(C318)),
            (
                S::Banner,
                O::PermanentReply,
                Opportunistic,
                Action::Fail(C317),
            ),
            (S::Ehlo, O::HeloFallback, DomainValidation, Action::Warn),
            (S::Ehlo, O::Timeout, Opportunistic, Action::Fail(C318)),
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
                Action::Fail(C317),
            ),
            (S::Starttls, O::StarttlsRefused, Opportunistic, Action::Warn),
            (
                S::Starttls,
                O::StarttlsRefused,
                CertificateValidation,
                Action::Fail(C317),
            ),
            (S::Starttls, O::Injection, Opportunistic, Action::Fallback),
            (
                S::Starttls,
                O::Injection,
                EncryptionOnly,
                Action::Fail(C317),
            ),
            (S::Starttls, O::Closed, EncryptionOnly, Action::Fail(C317)),
            (S::Starttls, O::Closed, Opportunistic, Action::Fallback),
            (
                S::Tls,
                O::NoCommonAlgorithm,
                Opportunistic,
                Action::Fallback,
            ),
            (
                S::Tls,
                O::NoCommonAlgorithm,
                DomainValidation,
                Action::Fail(C317),
            ),
            (S::Tls, O::Reset, CertificateValidation, Action::Fail(C317)),
            (S::Tls, O::Timeout, Opportunistic, Action::Fallback),
            (
                S::Certificate,
                O::Certificate(Problem::Expired),
                CertificateValidation,
                Action::Fail(C320),
            ),
            (
                S::Certificate,
                O::Certificate(Problem::Untrusted),
                EncryptionOnly,
                Action::Warn,
            ),
            (
                S::Certificate,
                O::Certificate(Problem::Untrusted),
                Opportunistic,
                Action::Warn,
            ),
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
                Action::Fail(C317),
            ),
            (S::EhloTls, O::Reset, Opportunistic, Action::Fail(C318)),
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
                action(*stage, *outcome, *mode),
                *want,
                "{stage} {outcome:?} {mode:?}"
            );
        }
    }

    #[test]
    fn every_failing_row_but_other_writes_a_message() {
        for r in RULES {
            if let Action::Fail(code) = r.action {
                assert_ne!(r.message, Msg::None, "{code:?} {:?}", r.outcomes);
                assert!(["F", "D", "U", "F/U", "D/F"].contains(&r.evidence));
            }
        }
    }

    #[test]
    fn negotiation_messages() {
        let text = |stage, outcome| match negotiation_row(stage, outcome).message {
            Msg::Text(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(S::Tls, O::NoCommonAlgorithm),
            "451 4.4.0 TLS negotiation failed with error AlgorithmMismatch"
        );
        assert_eq!(
            text(S::Starttls, O::Reset),
            "451 4.4.0 TLS negotiation failed with error SocketError"
        );
        assert_eq!(
            text(S::Tls, O::IllegalMessage),
            "451 4.4.0 Security status IllegalMessage"
        );
    }
}
