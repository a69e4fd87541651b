//! The pipeline: for every target of a connector, resolve → connect → banner → EHLO →
//! STARTTLS → TLS → certificate → EHLO → QUIT, each stage under its own timeout, stopping at
//! the first failure. Every outcome is put to [`verdict::judge`]; this module decides
//! nothing about codes itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use rustls_pki_types::ServerName;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::certificate::{CertificateInfo, Problem, chain_problem, matches_tls_domain};
use crate::config::{Config, Connector, Host, Route, Settings, TlsDomain, TlsMode};
use crate::connect::connect;
use crate::dns::{DnsFailure, MxAnswer, Resolver};
use crate::limits::{Limits, Place};
use crate::smtp::{Command, ReadError, Reply, SmtpStream};
use crate::tls::{Engine, TlsClient, peer_chain, session_info};
use crate::verdict::table::{self, Msg};
use crate::verdict::{
    self, Action, Code, Condition, ConnectorVerdict, Failure, Judged, Outcome, Stage,
    TargetVerdict, message,
};

/// What every probe of a run shares: one resolver (and cache), one TLS configuration.
pub struct ProbeContext {
    pub resolver: Resolver,
    pub tls: TlsClient,
    /// Connections in flight across every probe (`[daemon] max_connections`): however many
    /// addresses DNS hands out, the probe opens no more sockets than this at once.
    connections: Arc<Semaphore>,
}

impl ProbeContext {
    pub fn new(config: &Config) -> ProbeContext {
        ProbeContext {
            resolver: Resolver::new(&config.dns, config.defaults.timeouts.dns),
            tls: TlsClient::new(&config.tls),
            connections: Arc::new(Semaphore::new(config.daemon.max_connections)),
        }
    }

    /// A place among the connections in flight, held for a target's sessions.
    async fn connection_permit(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so this only fails if it were.
        self.connections.clone().acquire_owned().await.ok()
    }
}

/// Probes every connector once, concurrently but at most `concurrency` at a time (each open
/// connection is a file descriptor; ten thousand at once would exhaust them), and hands each
/// verdict to `each` as soon as its probe ends: in completion order, started in
/// configuration order. Probes waiting on dead servers make way for the others (see
/// [`crate::limits`]). A connector's probe is only made once it has a place, and its verdict
/// is the caller's once made, so the memory used follows the probes in flight, not the
/// number of connectors.
pub async fn probe_all(
    ctx: &ProbeContext,
    connectors: &[Connector],
    concurrency: usize,
    mut each: impl FnMut(ConnectorVerdict),
) {
    let limits = Limits::new(concurrency);
    let mut waiting = connectors.iter().peekable();
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            place = limits.acquire(), if waiting.peek().is_some() => {
                let c = waiting.next().expect("peeked");
                running.push(async move { probe_connector_in(ctx, c, &place).await });
            }
            Some(verdict) = running.next() => each(verdict),
            else => break,
        }
    }
}

/// Probes every target of one connector, concurrently, outside any concurrency bound.
pub async fn probe_connector(ctx: &ProbeContext, c: &Connector) -> ConnectorVerdict {
    probe_connector_in(ctx, c, &Place::unbounded()).await
}

/// Probes every target of one connector, concurrently, holding `place` in the bound.
pub async fn probe_connector_in(
    ctx: &ProbeContext,
    c: &Connector,
    place: &Place,
) -> ConnectorVerdict {
    let started_at = OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let Plan {
        targets: planned,
        warnings,
    } = plan(ctx, c).await;
    place.started(
        planned
            .iter()
            .filter(|p| matches!(p, Planned::Target(_)))
            .count(),
    );
    let targets = join_all(planned.into_iter().map(|p| async move {
        match p {
            Planned::Failed(t) => *t,
            Planned::Target(t) => {
                let verdict = probe_target(ctx, c, t, place).await;
                place.finished();
                verdict
            }
        }
    }))
    .await;
    let mut verdict = ConnectorVerdict::new(
        &c.name,
        c.settings.tls,
        c.settings.certificate_failure_code,
        started_at.format(&Rfc3339).unwrap_or_default(),
        ms(t0.elapsed()),
        targets,
    );
    verdict.warnings = warnings;
    verdict
}

/// A resolved target, ready for the session stages.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name the address came from: the MX host when one was followed, else the smart
    /// host, else the IP literal. SNI is sent for it when it is a DNS name.
    pub host: String,
    pub server_name: ServerName<'static>,
    pub addr: SocketAddr,
    pub resolve_ms: Option<f64>,
}

enum Planned {
    Target(Target),
    /// A host (or MX domain) that did not resolve: already a failed target.
    Failed(Box<TargetVerdict>),
}

/// The resolve stage's result: the targets in EOP's order, and what the bounds left out.
struct Plan {
    targets: Vec<Planned>,
    warnings: Vec<String>,
}

/// The resolve stage, as EOP resolves (`classification.md`, "The client the probe imitates"):
/// a smart host name's MX first, by preference, and its own addresses only when it has no MX;
/// an MX-routed domain's MX hosts, or the domain itself when it has no MX (RFC 5321 implicit
/// MX); within a preference level every IPv6 address before every IPv4 one. The whole stage
/// is bounded by the `dns` timeout, and what DNS can make the probe do by the connector's
/// bounds (MX hosts, addresses per host, targets); what is left out is reported, not probed.
async fn plan(ctx: &ProbeContext, c: &Connector) -> Plan {
    let s = &c.settings;
    let deadline = crate::clock::deadline(s.timeouts.dns);
    let mut warnings = Vec::new();
    let mut targets: Vec<Planned> = match &c.route {
        Route::SmartHosts(hosts) => {
            let per_host = hosts.iter().map(|h| {
                let port = h.port.unwrap_or(s.port);
                async move {
                    match &h.host {
                        Host::Ip(ip) => (
                            vec![Planned::Target(Target {
                                host: h.host.to_string(),
                                server_name: ServerName::IpAddress((*ip).into()),
                                addr: SocketAddr::new(*ip, port),
                                resolve_ms: None,
                            })],
                            Vec::new(),
                        ),
                        Host::Name(name) => {
                            resolve_domain(ctx, s, name, port, deadline, false).await
                        }
                    }
                }
            });
            join_all(per_host)
                .await
                .into_iter()
                .flat_map(|(t, w)| {
                    warnings.extend(w);
                    t
                })
                .collect()
        }
        Route::Mx(domain) => {
            let (t, w) = resolve_domain(ctx, s, domain, s.port, deadline, true).await;
            warnings.extend(w);
            t
        }
    };
    let max = s.bounds.max_targets;
    if targets.len() > max {
        let left: Vec<String> = targets[max..]
            .iter()
            .map(|p| match p {
                Planned::Target(t) => format!("{} {}", t.host, t.addr),
                Planned::Failed(v) => v.host.clone(),
            })
            .collect();
        warnings.push(format!(
            "{} target(s) beyond max_targets = {max} not probed: {}",
            left.len(),
            summarise(&left)
        ));
        targets.truncate(max);
    }
    Plan { targets, warnings }
}

/// The first few of a list, and how many more.
fn summarise(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

/// A name's targets by EOP's rules: its MX hosts when it has some, else its own addresses.
/// `mx_route` is true for an MX-routed domain, whose nonexistence EOP answers with 5.4.310.
async fn resolve_domain(
    ctx: &ProbeContext,
    s: &Settings,
    name: &str,
    port: u16,
    deadline: tokio::time::Instant,
    mx_route: bool,
) -> (Vec<Planned>, Vec<String>) {
    let t0 = Instant::now();
    let failed = |f: DnsFailure| {
        vec![Planned::Failed(Box::new(resolve_failed(
            s, name, port, f, t0,
        )))]
    };
    let answer = tokio::time::timeout_at(deadline, ctx.resolver.mx(name)).await;
    let hosts = match answer {
        Ok(Ok(MxAnswer::Hosts(hosts))) => hosts,
        Ok(Ok(MxAnswer::Implicit)) => {
            let groups = vec![vec![name.to_owned()]];
            return resolve_levels(ctx, s, name, &groups, port, deadline, t0).await;
        }
        Ok(Err(mut f)) => {
            if mx_route && f.outcome == Outcome::NxDomain {
                f.outcome = Outcome::DomainNonexistent;
            }
            return (failed(f), Vec::new());
        }
        Err(_) => {
            let what = format!("MX lookup for {name}");
            return (
                failed(dns_timeout(&ctx.resolver, s.timeouts.dns, &what)),
                Vec::new(),
            );
        }
    };
    let mut warnings = Vec::new();
    let max = s.bounds.max_mx_hosts;
    if hosts.len() > max {
        let left: Vec<String> = hosts[max..].iter().map(|h| h.name.clone()).collect();
        warnings.push(format!(
            "{name}: {} MX host(s) beyond max_mx_hosts = {max} not probed: {}",
            left.len(),
            summarise(&left)
        ));
    }
    // Preference levels, in order; the hosts of a level in the order DNS gave them.
    let mut levels: Vec<(u16, Vec<String>)> = Vec::new();
    for h in hosts.into_iter().take(max) {
        match levels.last_mut() {
            Some((p, names)) if *p == h.preference => names.push(h.name),
            _ => levels.push((h.preference, vec![h.name])),
        }
    }
    let groups: Vec<Vec<String>> = levels.into_iter().map(|(_, n)| n).collect();
    let (targets, more) = resolve_levels(ctx, s, name, &groups, port, deadline, t0).await;
    warnings.extend(more);
    (targets, warnings)
}

/// The addresses of hosts grouped by preference level: per level, every host's IPv6
/// addresses, then every host's IPv4 addresses. A host that does not resolve is a failed
/// target of its own while another host resolves; when none does, the name's lookup failed
/// as a whole (`ErrorRetry`), or, for a name used as its own mail host, as that host failed.
async fn resolve_levels(
    ctx: &ProbeContext,
    s: &Settings,
    name: &str,
    levels: &[Vec<String>],
    port: u16,
    deadline: tokio::time::Instant,
    t0: Instant,
) -> (Vec<Planned>, Vec<String>) {
    let implicit = levels.len() == 1 && levels[0].len() == 1 && levels[0][0] == name;
    let lookups = levels.iter().map(|level| {
        join_all(level.iter().map(|host| async move {
            let r = tokio::time::timeout_at(deadline, ctx.resolver.addresses(host, s.ip_family));
            let r = match r.await {
                Ok(r) => r,
                Err(_) => Err(dns_timeout(&ctx.resolver, s.timeouts.dns, host)),
            };
            (host.clone(), r)
        }))
    });
    let answers = join_all(lookups).await;
    let resolve_ms = Some(ms(t0.elapsed()));
    let resolved = answers.iter().flatten().filter(|(_, r)| r.is_ok()).count();
    if resolved == 0 {
        let failures: Vec<(String, DnsFailure)> = answers
            .into_iter()
            .flatten()
            .filter_map(|(h, r)| r.err().map(|f| (h, f)))
            .collect();
        let f = if implicit {
            failures
                .into_iter()
                .next()
                .map(|(_, f)| f)
                .unwrap_or_else(|| DnsFailure {
                    outcome: Outcome::NoData,
                    detail: format!("{name}: no address"),
                })
        } else {
            DnsFailure {
                outcome: Outcome::MxHostsUnresolvable,
                detail: format!(
                    "none of the MX hosts of {name} resolves: {}",
                    failures
                        .iter()
                        .map(|(h, f)| format!("{h}: {}", f.detail))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }
        };
        let failed = resolve_failed(s, name, port, f, t0);
        return (vec![Planned::Failed(Box::new(failed))], Vec::new());
    }
    let max = s.bounds.max_addresses_per_host;
    let mut targets = Vec::new();
    let mut warnings = Vec::new();
    for level in answers {
        let mut v6 = Vec::new();
        let mut v4 = Vec::new();
        for (host, r) in level {
            match r {
                Err(f) => targets.push(Planned::Failed(Box::new(resolve_failed(
                    s, &host, port, f, t0,
                )))),
                Ok(addresses) => {
                    if addresses.len() > max {
                        let left: Vec<String> =
                            addresses[max..].iter().map(IpAddr::to_string).collect();
                        warnings.push(format!(
                            "{host}: {} address(es) beyond max_addresses_per_host = {max} not probed: {}",
                            left.len(),
                            summarise(&left)
                        ));
                    }
                    let server_name = ServerName::try_from(host.clone())
                        .unwrap_or_else(|_| ServerName::IpAddress(addresses[0].into()));
                    for ip in addresses.into_iter().take(max) {
                        let t = Target {
                            host: host.clone(),
                            server_name: server_name.clone(),
                            addr: SocketAddr::new(ip, port),
                            resolve_ms,
                        };
                        if ip.is_ipv6() { v6.push(t) } else { v4.push(t) }
                    }
                }
            }
        }
        targets.extend(v6.into_iter().chain(v4).map(Planned::Target));
    }
    (targets, warnings)
}

fn dns_timeout(resolver: &Resolver, limit: Duration, what: &str) -> DnsFailure {
    DnsFailure {
        outcome: Outcome::DnsTimeout,
        detail: format!(
            "{what}: no answer within the dns timeout ({}) from {}",
            crate::config::format_duration(limit),
            resolver.servers()
        ),
    }
}

/// A name that did not resolve, as a failed target named after it.
fn resolve_failed(
    s: &Settings,
    host: &str,
    port: u16,
    f: DnsFailure,
    t0: Instant,
) -> TargetVerdict {
    let mut run = Run::new(s, None, host, None, port);
    run.timings.insert(Stage::Resolve, ms(t0.elapsed()));
    let failure = run.judge(Failure::new(Stage::Resolve, f.outcome, f.detail));
    run.finish(Err(failure))
}

/// Probes one resolved target through every session stage. In an opportunistic connector, a
/// TLS negotiation that fails after STARTTLS was accepted is followed, as EOP does, by a second
/// session on a new connection without STARTTLS, whose outcome is the target's; the failed
/// negotiation stays as a warning with the Message EOP would have written.
pub async fn probe_target(
    ctx: &ProbeContext,
    c: &Connector,
    target: Target,
    place: &Place,
) -> TargetVerdict {
    let mut run = Run::for_target(c, &target);
    if let Some(r) = target.resolve_ms {
        run.timings.insert(Stage::Resolve, r);
    }
    let _connection = ctx.connection_permit().await;
    let mut result = run
        .session(ctx, &target, place, Attempt::Starttls(Engine::Rustls))
        .await;
    if run.no_common_algorithm {
        // The server took none of rustls's suites, but EOP also offers suites rustls lacks
        // (AES-CBC, RSA key exchange): the OpenSSL engine offers those, over a new connection
        // and a new dialogue. Its session decides if its handshake completed; otherwise the
        // server agrees on nothing EOP offers, and rustls's failure says so (and, in an
        // opportunistic connector, leads to the fallback below). The stages' times are both
        // attempts'.
        run.close_timing(Instant::now());
        let mut retry = Run::for_target(c, &target);
        retry.timings.clone_from(&run.timings);
        let second = retry
            .session(ctx, &target, place, Attempt::Starttls(Engine::OpenSsl))
            .await;
        if retry.verdict.tls.is_some() {
            run = retry;
            result = second;
        } else if let (Err(first), Err(second)) = (&mut result, &second) {
            let also = format!(
                "; EOP's suites that only OpenSSL speaks were refused too ({})",
                second.failure().detail
            );
            first.failure_mut().detail.push_str(&also);
        }
    }
    let result = match result {
        Err(Stop::Fallback(f)) => {
            run.note_fallback(&f);
            run.session(ctx, &target, place, Attempt::Plaintext).await
        }
        other => other,
    };
    run.finish(result.map_err(|stop| match stop {
        Stop::Failed(j) => j,
        // The plaintext attempt sends no STARTTLS, so it cannot ask for another fallback.
        Stop::Fallback(f) => run_other(f),
    }))
}

fn run_other(f: Failure) -> Judged {
    Judged {
        code: Code::Other,
        condition: Condition::Other,
        message: f.detail.clone(),
        failure: f,
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Which session: the usual one, with the TLS engine that handshakes, or the opportunistic
/// fallback without STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Starttls(Engine),
    Plaintext,
}

/// Why a session stopped early.
enum Stop {
    /// The table failed the target.
    Failed(Judged),
    /// Opportunistic TLS failed after STARTTLS was accepted: try again without it.
    Fallback(Failure),
}

impl Stop {
    fn failure(&self) -> &Failure {
        match self {
            Stop::Failed(j) => &j.failure,
            Stop::Fallback(f) => f,
        }
    }

    fn failure_mut(&mut self) -> &mut Failure {
        match self {
            Stop::Failed(j) => &mut j.failure,
            Stop::Fallback(f) => f,
        }
    }
}

/// The state of one target's probe.
struct Run<'a> {
    settings: &'a Settings,
    tls_domain: Option<&'a TlsDomain>,
    verdict: TargetVerdict,
    timings: BTreeMap<Stage, f64>,
    /// The stage being timed, and since when.
    current: Option<(Stage, Instant)>,
    enhanced_codes: bool,
    /// The handshake failed because the server took nothing the engine offered.
    no_common_algorithm: bool,
}

impl<'a> Run<'a> {
    fn new(
        settings: &'a Settings,
        tls_domain: Option<&'a TlsDomain>,
        host: &str,
        addr: Option<SocketAddr>,
        port: u16,
    ) -> Self {
        Run {
            settings,
            tls_domain,
            verdict: TargetVerdict::new(host, addr.map(|a| a.ip()), port),
            timings: BTreeMap::new(),
            current: None,
            enhanced_codes: false,
            no_common_algorithm: false,
        }
    }

    /// A run for a resolved target of `c`.
    fn for_target(c: &'a Connector, target: &Target) -> Self {
        Run::new(
            &c.settings,
            c.tls_domain.as_ref(),
            &target.host,
            Some(target.addr),
            target.addr.port(),
        )
    }

    fn mode(&self) -> TlsMode {
        self.settings.tls
    }

    /// Enters a stage, closing the previous stage's timing.
    fn enter(&mut self, stage: Stage) {
        self.close_timing(Instant::now());
        self.verdict.stage = stage;
        self.current = Some((stage, Instant::now()));
    }

    fn close_timing(&mut self, now: Instant) {
        if let Some((stage, started)) = self.current.take() {
            *self.timings.entry(stage).or_insert(0.0) += ms(now - started);
        }
    }

    /// `Expected Subject` of a certificate Message: `tls_domain`, else the target's host.
    fn expected_subject(&self) -> String {
        self.tls_domain
            .map(|d| d.to_string())
            .unwrap_or_else(|| self.verdict.host.clone())
    }

    /// The Message a row writes, from what this run saw.
    fn message(&self, msg: Msg, f: &Failure) -> String {
        let problem = match f.outcome {
            Outcome::Certificate(p) => Some(p),
            _ => None,
        };
        message::build(
            msg,
            &message::Seen {
                reply: f.reply.as_deref(),
                detail: &f.detail,
                certificate: self.verdict.certificate.as_ref(),
                problem,
                expected_subject: &self.expected_subject(),
            },
        )
    }

    /// Judges a failure by the table that every stage's error goes through, once.
    fn judge(&self, f: Failure) -> Judged {
        let rule = verdict::judge(f.stage, f.outcome, self.mode());
        let (code, condition) = match rule.action {
            Action::Fail(code) => (code, rule.condition),
            // A stage error the table does not fail (a table gap) is reported, not hidden.
            _ => (Code::Other, Condition::Other),
        };
        Judged {
            code,
            condition,
            message: self.message(rule.message, &f),
            failure: f,
        }
    }

    /// Puts an outcome to the table, once: a failure stops the session, a fallback stops it
    /// for the plaintext attempt, a warning is noted.
    fn observe(&mut self, f: Failure) -> Result<(), Stop> {
        match verdict::judge(f.stage, f.outcome, self.mode()).action {
            Action::Fail(_) => Err(Stop::Failed(self.judge(f))),
            Action::Fallback => Err(Stop::Fallback(f)),
            Action::Warn => {
                if !self.verdict.warnings.contains(&f.detail) {
                    self.verdict.warnings.push(f.detail);
                }
                Ok(())
            }
            Action::Ignore => Ok(()),
        }
    }

    /// A stage's error: judged like any other outcome (it can only stop the session).
    fn stop(&mut self, f: Failure) -> Stop {
        match self.observe(f) {
            Err(stop) => stop,
            // The table lets this error pass, but the stage cannot go on: a gap in the table.
            Ok(()) => Stop::Failed(run_other(Failure::new(
                self.verdict.stage,
                Outcome::Unexpected,
                "the stage failed in a way the classification table lets pass",
            ))),
        }
    }

    /// The failed negotiation of an opportunistic connector, kept as a warning that quotes the
    /// Message EOP would have written had TLS been required; the session starts again.
    fn note_fallback(&mut self, f: &Failure) {
        let row = table::negotiation_row(f.stage, f.outcome);
        let eop = self.message(row.message, f);
        self.verdict.warnings.push(format!(
            "TLS negotiation failed ({eop}: {}); Microsoft 365 would send without TLS over a new connection",
            f.detail
        ));
        self.verdict.tls = None;
        self.enhanced_codes = false;
    }

    /// Runs a stage's future under the stage's timeout.
    async fn timed<T, F>(
        &mut self,
        stage: Stage,
        limit: Duration,
        what: &str,
        fut: F,
    ) -> Result<T, Stop>
    where
        F: Future<Output = Result<T, Failure>>,
    {
        let f = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(f)) => f,
            Err(_) => Failure::new(
                stage,
                Outcome::Timeout,
                format!(
                    "{what}: nothing complete within {}",
                    crate::config::format_duration(limit)
                ),
            ),
        };
        Err(self.stop(f))
    }

    /// Reads one reply within `limit`, noting leniency.
    /// `limit` is what remains of the stage's bound; `shown` is the configured bound that
    /// the message names.
    async fn reply<S>(
        &mut self,
        smtp: &mut SmtpStream<S>,
        stage: Stage,
        (limit, shown): (Duration, Duration),
        what: &str,
    ) -> Result<Reply, Stop>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let read = async {
            smtp.read_reply()
                .await
                .map_err(|e| read_failure(stage, what, e))
        };
        let reply = match tokio::time::timeout(limit, read).await {
            Ok(Ok(r)) => r,
            Ok(Err(f)) => return Err(self.stop(f)),
            Err(_) => {
                let f = Failure::new(
                    stage,
                    Outcome::Timeout,
                    format!(
                        "{what}: no complete reply within {} ({} byte(s) received)",
                        crate::config::format_duration(shown),
                        smtp.pending().len()
                    ),
                );
                return Err(self.stop(f));
            }
        };
        for l in &reply.lenience {
            self.observe(Failure::new(
                stage,
                Outcome::LenientReply,
                format!("lenient parse: {}", l.describe()),
            ))?;
        }
        Ok(reply)
    }

    /// Sends a command and reads its reply, both within the command timeout.
    async fn command<S>(
        &mut self,
        smtp: &mut SmtpStream<S>,
        stage: Stage,
        cmd: Command,
    ) -> Result<Reply, Stop>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limit = self.settings.timeouts.command;
        let started = Instant::now();
        let verb = cmd.verb();
        self.timed(stage, limit, verb, async {
            smtp.send(&cmd)
                .await
                .map_err(|e| read_failure(stage, verb, ReadError::Io(e)))
        })
        .await?;
        let rest = limit.saturating_sub(started.elapsed());
        self.reply(smtp, stage, (rest, limit), &format!("reply to {verb}"))
            .await
    }

    /// A failing reply as an outcome: 4xx, 5xx, or anything else (not SMTP).
    fn refused(&mut self, stage: Stage, what: &str, reply: &Reply) -> Result<(), Stop> {
        let outcome = match reply.class() {
            4 => Outcome::TransientReply,
            5 => Outcome::PermanentReply,
            _ => Outcome::NotSmtp,
        };
        let detail = format!("{what}: {}", self.reply_text(reply));
        self.observe(Failure::new(stage, outcome, detail).with_reply(reply.as_received()))
    }

    /// A reply for a report, with its enhanced status code named where the server
    /// advertised ENHANCEDSTATUSCODES (only then is the prefix of the text one).
    fn reply_text(&self, reply: &Reply) -> String {
        match reply.enhanced_code().filter(|_| self.enhanced_codes) {
            Some(enhanced) => format!("{} (enhanced status {enhanced})", reply.summary()),
            None => reply.summary(),
        }
    }

    async fn session(
        &mut self,
        ctx: &ProbeContext,
        target: &Target,
        place: &Place,
        attempt: Attempt,
    ) -> Result<(), Stop> {
        let t = self.settings.timeouts;

        self.enter(Stage::Connect);
        let source = self.settings.source_address;
        let tcp = match place.connect(connect(target.addr, source, t.connect)).await {
            Ok(tcp) => tcp,
            Err(f) => return Err(self.stop(f)),
        };
        // A probe that gave its place away during a slow connect waits for one again; that
        // wait is no stage's.
        self.close_timing(Instant::now());
        place.resume().await;

        self.enter(Stage::Banner);
        let mut smtp = SmtpStream::new(tcp);
        let banner = self
            .reply(&mut smtp, Stage::Banner, (t.banner, t.banner), "greeting")
            .await?;
        self.verdict.banner = Some(banner.summary());
        if !banner.is_positive() {
            self.refused(Stage::Banner, "the server greeted with an error", &banner)?;
        }

        self.enter(Stage::Ehlo);
        let ehlo = self.ehlo(&mut smtp).await?;
        self.verdict.extensions = ehlo.lines.iter().skip(1).cloned().collect();
        let keywords: Vec<String> = ehlo.ehlo_keywords().collect();
        self.enhanced_codes = keywords.iter().any(|k| k == "ENHANCEDSTATUSCODES");

        let Attempt::Starttls(engine) = attempt else {
            return self.quit(smtp).await;
        };
        self.enter(Stage::Starttls);
        if !keywords.iter().any(|k| k == "STARTTLS") {
            self.observe(Failure::new(
                Stage::Starttls,
                Outcome::StarttlsNotOffered,
                "the server does not advertise STARTTLS: mail would go in plaintext",
            ))?;
            return self.quit(smtp).await;
        }
        let reply = self
            .command(&mut smtp, Stage::Starttls, Command::StartTls)
            .await?;
        if !reply.is_positive() {
            let detail = format!(
                "STARTTLS refused ({}): mail would go in plaintext",
                self.reply_text(&reply)
            );
            self.observe(
                Failure::new(Stage::Starttls, Outcome::StarttlsRefused, detail)
                    .with_reply(reply.as_received()),
            )?;
            return self.quit(smtp).await;
        }
        if !smtp.pending().is_empty() {
            let injected = crate::smtp::escape(&smtp.pending()[..smtp.pending().len().min(80)]);
            self.observe(Failure::new(
                Stage::Starttls,
                Outcome::Injection,
                format!("the server sent bytes after \"{}\" and before the TLS handshake: \"{injected}\"", reply.summary()),
            ))?;
        }

        self.enter(Stage::Tls);
        let tcp = smtp.into_inner();
        let mut no_common = false;
        let handshake = async {
            ctx.tls
                .handshake(tcp, target.server_name.clone(), engine)
                .await
                .map_err(|e| {
                    no_common = e.no_common_algorithm();
                    Failure::new(Stage::Tls, e.outcome, e.detail)
                })
        };
        let tls = self
            .timed(Stage::Tls, t.tls, "TLS handshake", handshake)
            .await;
        self.no_common_algorithm = no_common && engine == Engine::Rustls;
        let tls = tls?;
        self.verdict.tls = Some(session_info(&tls));

        self.enter(Stage::Certificate);
        self.certificate(ctx, target, &peer_chain(&tls)).await?;

        self.enter(Stage::EhloTls);
        let mut smtp = SmtpStream::new(tls);
        let ehlo = self
            .command(
                &mut smtp,
                Stage::EhloTls,
                Command::Ehlo(self.settings.helo_name.clone()),
            )
            .await?;
        if !ehlo.is_positive() {
            self.refused(Stage::EhloTls, "EHLO after STARTTLS refused", &ehlo)?;
        }
        self.verdict.extensions_tls = ehlo.lines.iter().skip(1).cloned().collect();
        self.quit(smtp).await
    }

    /// EHLO, with the HELO fallback of the table.
    async fn ehlo<S>(&mut self, smtp: &mut SmtpStream<S>) -> Result<Reply, Stop>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let helo_name = self.settings.helo_name.clone();
        let ehlo = self
            .command(smtp, Stage::Ehlo, Command::Ehlo(helo_name.clone()))
            .await?;
        if ehlo.is_positive() {
            return Ok(ehlo);
        }
        if ehlo.class() != 5 {
            self.refused(Stage::Ehlo, "EHLO refused", &ehlo)?;
            return Ok(ehlo);
        }
        let helo = self
            .command(smtp, Stage::Ehlo, Command::Helo(helo_name))
            .await?;
        if !helo.is_positive() {
            let what = format!("EHLO refused ({}) and HELO refused too", ehlo.summary());
            self.refused(Stage::Ehlo, &what, &helo)?;
        }
        self.observe(Failure::new(
            Stage::Ehlo,
            Outcome::HeloFallback,
            format!(
                "EHLO refused ({}); HELO accepted, so no extensions (no STARTTLS)",
                ehlo.summary()
            ),
        ))?;
        Ok(helo)
    }

    /// The certificate stage: details always, then the judgement. When several statuses
    /// apply, the first of UntrustedRoot, CertificateExpired, CertificateRevoked,
    /// CertificateInvalid, SubjectMismatch is the one reported (`classification.md`).
    async fn certificate(
        &mut self,
        ctx: &ProbeContext,
        target: &Target,
        chain: &[rustls_pki_types::CertificateDer<'static>],
    ) -> Result<(), Stop> {
        let now = OffsetDateTime::now_utc();
        let info = CertificateInfo::from_chain(chain, now);
        self.verdict.certificate = info.clone();
        let self_issued = info.as_ref().is_some_and(|i| i.self_issued);
        let fetch = self.mode().validates_certificate();
        let judgement = ctx.tls.judge_chain(chain, &target.server_name, fetch).await;
        for warning in judgement.warnings {
            self.observe(Failure::new(
                Stage::Certificate,
                Outcome::RevocationUnchecked,
                warning,
            ))?;
        }
        let mut problem = match judgement.result {
            Ok(()) => None,
            Err(e) => chain_problem(&e, self_issued),
        };
        // webpki reports the first error it meets; an expired certificate from an unknown
        // issuer must still read UntrustedRoot. Judge the chain again inside its validity.
        if let (Some((Problem::Expired | Problem::NotYetValid, _)), Some(i)) = (&problem, &info) {
            let inside = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                u64::try_from(i.not_after_unix.saturating_sub(1)).unwrap_or(0),
            ));
            if let Err(e) = ctx
                .tls
                .verify_chain(chain, &target.server_name, Some(inside))
                .await
                && let Some(p @ (Problem::Untrusted, _)) = chain_problem(&e, self_issued)
            {
                problem = Some(p);
            }
        }
        if let Some((p, detail)) = problem {
            return self.observe(Failure::new(
                Stage::Certificate,
                Outcome::Certificate(p),
                detail,
            ));
        }
        if self.mode() == TlsMode::DomainValidation
            && let Some(domain) = self.tls_domain
        {
            let names: Vec<&str> = info.iter().flat_map(|i| i.candidate_names()).collect();
            if !matches_tls_domain(domain, names.iter().copied()) {
                self.observe(Failure::new(
                    Stage::Certificate,
                    Outcome::Certificate(Problem::NameMismatch),
                    format!(
                        "no certificate name matches tls_domain {domain} (presented: {})",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                ))?;
            }
        }
        if let Some(warning) =
            info.and_then(|i| i.expiring_within(self.settings.expiry_warning, now))
        {
            self.observe(Failure::new(
                Stage::Certificate,
                Outcome::ExpiresSoon,
                warning,
            ))?;
        }
        Ok(())
    }

    /// QUIT, politely and within the command timeout; its outcome does not matter.
    async fn quit<S>(&mut self, mut smtp: SmtpStream<S>) -> Result<(), Stop>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.enter(Stage::Quit);
        let limit = self.settings.timeouts.command;
        let _ = tokio::time::timeout(limit, async {
            if smtp.send(&Command::Quit).await.is_ok() {
                let _ = smtp.read_reply().await;
            }
            let _ = smtp.get_mut().shutdown().await;
        })
        .await;
        Ok(())
    }

    /// The target's verdict from the session's result.
    fn finish(mut self, result: Result<(), Judged>) -> TargetVerdict {
        self.close_timing(Instant::now());
        let mut v = self.verdict;
        v.timings_ms = self.timings;
        match result {
            Ok(()) => {
                v.stage = Stage::Done;
                v.detail = success_detail(&v);
            }
            Err(judged) => v.fail(judged, self.settings.certificate_failure_code),
        }
        v
    }
}

fn success_detail(v: &TargetVerdict) -> String {
    match (&v.tls, &v.certificate) {
        (Some(tls), Some(cert)) => format!(
            "accepted over {} ({}); certificate {} valid until {}",
            tls.version,
            tls.cipher,
            cert.presented_subject(),
            cert.not_after
        ),
        (Some(tls), None) => format!("accepted over {}", tls.version),
        _ => "accepted in plaintext (no TLS)".to_owned(),
    }
}

/// A read or write error as a row of the table.
fn read_failure(stage: Stage, what: &str, e: ReadError) -> Failure {
    use std::io::ErrorKind as K;
    let (outcome, detail) = match &e {
        ReadError::Eof { partial: 0 } => (
            Outcome::Closed,
            format!("{what}: the server closed the connection"),
        ),
        ReadError::Eof { partial } => (
            Outcome::Closed,
            format!(
                "{what}: the server closed the connection after {partial} byte(s) of an unfinished reply"
            ),
        ),
        ReadError::Io(io) => match io.kind() {
            K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::NotConnected
            | K::TimedOut
            | K::UnexpectedEof => (Outcome::Reset, format!("{what}: connection reset: {io}")),
            _ => (Outcome::Unexpected, format!("{what}: {io}")),
        },
        ReadError::Protocol(p) => (Outcome::NotSmtp, format!("{what}: {p}")),
    };
    Failure::new(stage, outcome, detail)
}
