//! The pipeline: for every target of a connector, resolve → connect → banner → EHLO →
//! STARTTLS → TLS → certificate → EHLO → QUIT, each stage under its own timeout, stopping at
//! the first failure. Every outcome is put to [`verdict::judge`]; this module decides
//! nothing about codes itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use rustls_pki_types::ServerName;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::certificate::{CertificateInfo, chain_outcome, matches_tls_domain};
use crate::config::{Config, Connector, Host, Route, Settings, TlsDomain, TlsMode};
use crate::connect::connect;
use crate::dns::{DnsFailure, MxAnswer, Resolver};
use crate::limits::{Limits, Place};
use crate::smtp::{Command, ReadError, Reply, SmtpStream};
use crate::tls::{Engine, TlsClient, peer_chain, session_info};
use crate::verdict::{
    self, Action, Code, ConnectorVerdict, Failure, Outcome, Stage, TargetVerdict,
};

/// What every probe of a run shares: one resolver (and cache), one TLS configuration.
pub struct ProbeContext {
    pub resolver: Resolver,
    pub tls: TlsClient,
}

impl ProbeContext {
    pub fn new(config: &Config) -> ProbeContext {
        ProbeContext {
            resolver: Resolver::new(&config.dns, config.defaults.timeouts.dns),
            tls: TlsClient::new(&config.tls),
        }
    }
}

/// Probes every connector once, concurrently but at most `concurrency` at a time (each open
/// connection is a file descriptor; ten thousand at once would exhaust them), results in
/// configuration order. Probes waiting on dead servers make way for the others (see
/// [`crate::limits`]). A connector's probe is only made once it has a place, so the probes'
/// state in memory follows the probes in flight, not the number of connectors.
pub async fn probe_all(
    ctx: &ProbeContext,
    connectors: &[Connector],
    concurrency: usize,
) -> Vec<ConnectorVerdict> {
    let limits = Limits::new(concurrency);
    let mut verdicts: Vec<Option<ConnectorVerdict>> = connectors.iter().map(|_| None).collect();
    let mut waiting = connectors.iter().enumerate().peekable();
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            place = limits.acquire(), if waiting.peek().is_some() => {
                let (i, c) = waiting.next().expect("peeked");
                running.push(async move { (i, probe_connector_in(ctx, c, &place).await) });
            }
            Some((i, verdict)) = running.next() => verdicts[i] = Some(verdict),
            else => break,
        }
    }
    verdicts
        .into_iter()
        .map(|v| v.expect("every connector was probed"))
        .collect()
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
    let planned = plan(ctx, c).await;
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
    ConnectorVerdict::new(
        &c.name,
        c.settings.tls,
        c.settings.certificate_failure_code,
        started_at.format(&Rfc3339).unwrap_or_default(),
        ms(t0.elapsed()),
        targets,
    )
}

/// A resolved target, ready for the session stages.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host as configured (or the MX host), for reports and SNI.
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

/// The resolve stage: the connector's targets, in order (smart hosts as listed, MX hosts by
/// preference; IPv4 addresses before IPv6 within a host). The whole stage, MX lookup and the
/// MX hosts' addresses together, is bounded by the `dns` timeout.
async fn plan(ctx: &ProbeContext, c: &Connector) -> Vec<Planned> {
    let s = &c.settings;
    let deadline = tokio::time::Instant::now() + s.timeouts.dns;
    match &c.route {
        Route::SmartHosts(hosts) => {
            let per_host = hosts.iter().map(|h| {
                let port = h.port.unwrap_or(s.port);
                async move {
                    match &h.host {
                        Host::Ip(ip) => vec![Planned::Target(Target {
                            host: h.host.to_string(),
                            server_name: ServerName::IpAddress((*ip).into()),
                            addr: SocketAddr::new(*ip, port),
                            resolve_ms: None,
                        })],
                        Host::Name(name) => resolve_host(ctx, s, name, port, deadline).await,
                    }
                }
            });
            join_all(per_host).await.into_iter().flatten().collect()
        }
        Route::Mx(domain) => {
            let t0 = Instant::now();
            let answer = tokio::time::timeout_at(deadline, ctx.resolver.mx(domain)).await;
            let hosts = match answer {
                Ok(Ok(MxAnswer::Hosts(hosts))) => hosts.into_iter().map(|h| h.name).collect(),
                Ok(Ok(MxAnswer::Implicit)) => vec![domain.clone()],
                Ok(Err(f)) => {
                    return vec![Planned::Failed(Box::new(resolve_failed(c, domain, f, t0)))];
                }
                Err(_) => {
                    let f = dns_timeout(
                        &ctx.resolver,
                        s.timeouts.dns,
                        &format!("MX lookup for {domain}"),
                    );
                    return vec![Planned::Failed(Box::new(resolve_failed(c, domain, f, t0)))];
                }
            };
            let per_host = hosts
                .iter()
                .map(|h| resolve_host(ctx, s, h, s.port, deadline));
            join_all(per_host).await.into_iter().flatten().collect()
        }
    }
}

async fn resolve_host(
    ctx: &ProbeContext,
    s: &Settings,
    name: &str,
    port: u16,
    deadline: tokio::time::Instant,
) -> Vec<Planned> {
    let t0 = Instant::now();
    let result = tokio::time::timeout_at(deadline, ctx.resolver.addresses(name, s.ip_family)).await;
    let addresses = match result {
        Ok(Ok(a)) => a,
        Ok(Err(f)) => {
            return vec![Planned::Failed(Box::new(resolve_failed_s(
                s, name, port, f, t0,
            )))];
        }
        Err(_) => {
            let f = dns_timeout(&ctx.resolver, s.timeouts.dns, name);
            return vec![Planned::Failed(Box::new(resolve_failed_s(
                s, name, port, f, t0,
            )))];
        }
    };
    let resolve_ms = Some(ms(t0.elapsed()));
    let server_name = match ServerName::try_from(name.to_owned()) {
        Ok(n) => n,
        Err(_) => ServerName::IpAddress(addresses[0].into()),
    };
    addresses
        .into_iter()
        .map(|ip: IpAddr| {
            Planned::Target(Target {
                host: name.to_owned(),
                server_name: server_name.clone(),
                addr: SocketAddr::new(ip, port),
                resolve_ms,
            })
        })
        .collect()
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

fn resolve_failed(c: &Connector, host: &str, f: DnsFailure, t0: Instant) -> TargetVerdict {
    resolve_failed_s(&c.settings, host, c.settings.port, f, t0)
}

fn resolve_failed_s(
    s: &Settings,
    host: &str,
    port: u16,
    f: DnsFailure,
    t0: Instant,
) -> TargetVerdict {
    let mut run = Run::new(s, None, host, None, port);
    run.timings.insert(Stage::Resolve, ms(t0.elapsed()));
    run.finish(Err(Failure::new(Stage::Resolve, f.outcome, f.detail)))
}

/// Probes one resolved target through every session stage.
pub async fn probe_target(
    ctx: &ProbeContext,
    c: &Connector,
    target: Target,
    place: &Place,
) -> TargetVerdict {
    let mut run = Run::new(
        &c.settings,
        c.tls_domain.as_ref(),
        &target.host,
        Some(target.addr),
        target.addr.port(),
    );
    if let Some(r) = target.resolve_ms {
        run.timings.insert(Stage::Resolve, r);
    }
    let mut result = run.session(ctx, &target, place, Engine::Rustls).await;
    if run.no_common_algorithm {
        // The server took none of rustls's suites, but EOP also offers suites rustls lacks
        // (AES-CBC, RSA key exchange): the OpenSSL engine offers those, over a new connection
        // and a new dialogue. Its session is the verdict if its handshake completed;
        // otherwise the server agrees on nothing EOP offers, and rustls's failure says so.
        // The stages' times are both attempts'.
        run.close_timing(Instant::now());
        let mut retry = Run::new(
            &c.settings,
            c.tls_domain.as_ref(),
            &target.host,
            Some(target.addr),
            target.addr.port(),
        );
        retry.timings.clone_from(&run.timings);
        let second = retry.session(ctx, &target, place, Engine::OpenSsl).await;
        if retry.verdict.tls.is_some() {
            return retry.finish(second);
        }
        if let (Err(first), Err(second)) = (&mut result, &second) {
            first.detail = format!(
                "{}; EOP's suites that only OpenSSL speaks were refused too ({})",
                first.detail, second.detail
            );
        }
    }
    run.finish(result)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
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
            verdict: TargetVerdict {
                host: host.to_owned(),
                address: addr.map(|a| a.ip()),
                port,
                stage: Stage::Resolve,
                code: None,
                detail: String::new(),
                eop_status: None,
                timings_ms: BTreeMap::new(),
                banner: None,
                extensions: Vec::new(),
                extensions_tls: Vec::new(),
                tls: None,
                certificate: None,
                warnings: Vec::new(),
                failure: None,
            },
            timings: BTreeMap::new(),
            current: None,
            enhanced_codes: false,
            no_common_algorithm: false,
        }
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

    /// Puts an outcome to the table: a failure ends the probe, a warning is noted.
    fn outcome(&mut self, stage: Stage, outcome: Outcome, detail: String) -> Result<(), Failure> {
        match verdict::judge(stage, outcome, self.mode()) {
            Action::Fail(_) => Err(Failure::new(stage, outcome, detail)),
            Action::Warn => {
                if !self.verdict.warnings.contains(&detail) {
                    self.verdict.warnings.push(detail);
                }
                Ok(())
            }
            Action::Ignore => Ok(()),
        }
    }

    /// Runs a stage's future under the stage's timeout.
    async fn timed<T, F>(
        &self,
        stage: Stage,
        limit: Duration,
        what: &str,
        fut: F,
    ) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, Failure>>,
    {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                stage,
                Outcome::Timeout,
                format!(
                    "{what}: nothing complete within {}",
                    crate::config::format_duration(limit)
                ),
            )),
        }
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
    ) -> Result<Reply, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let read = async {
            smtp.read_reply()
                .await
                .map_err(|e| read_failure(stage, what, e))
        };
        let reply = match tokio::time::timeout(limit, read).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Failure::new(
                    stage,
                    Outcome::Timeout,
                    format!(
                        "{what}: no complete reply within {} ({} byte(s) received)",
                        crate::config::format_duration(shown),
                        smtp.pending().len()
                    ),
                ));
            }
        };
        for l in &reply.lenience {
            self.outcome(
                stage,
                Outcome::LenientReply,
                format!("lenient parse: {}", l.describe()),
            )?;
        }
        Ok(reply)
    }

    /// Sends a command and reads its reply, both within the command timeout.
    async fn command<S>(
        &mut self,
        smtp: &mut SmtpStream<S>,
        stage: Stage,
        cmd: Command,
    ) -> Result<Reply, Failure>
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
    fn refused(&mut self, stage: Stage, what: &str, reply: &Reply) -> Result<(), Failure> {
        let outcome = match reply.class() {
            4 => Outcome::TransientReply,
            5 => Outcome::PermanentReply,
            _ => Outcome::NotSmtp,
        };
        let detail = format!("{what}: {}", self.reply_text(reply));
        self.outcome(stage, outcome, detail)
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
        engine: Engine,
    ) -> Result<(), Failure> {
        let t = self.settings.timeouts;

        self.enter(Stage::Connect);
        let tcp = place.connect(connect(target.addr, t.connect)).await?;
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

        self.enter(Stage::Starttls);
        if !keywords.iter().any(|k| k == "STARTTLS") {
            self.outcome(
                Stage::Starttls,
                Outcome::StarttlsNotOffered,
                "the server does not advertise STARTTLS: mail would go in plaintext".into(),
            )?;
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
            self.outcome(Stage::Starttls, Outcome::StarttlsRefused, detail)?;
            return self.quit(smtp).await;
        }
        if !smtp.pending().is_empty() {
            let injected = crate::smtp::escape(&smtp.pending()[..smtp.pending().len().min(80)]);
            self.outcome(
                Stage::Starttls,
                Outcome::Injection,
                format!("the server sent bytes after \"{}\" and before the TLS handshake: \"{injected}\"", reply.summary()),
            )?;
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
    async fn ehlo<S>(&mut self, smtp: &mut SmtpStream<S>) -> Result<Reply, Failure>
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
        self.outcome(
            Stage::Ehlo,
            Outcome::HeloFallback,
            format!(
                "EHLO refused ({}); HELO accepted, so no extensions (no STARTTLS)",
                ehlo.summary()
            ),
        )?;
        Ok(helo)
    }

    /// The certificate stage: details always, then the chain and name judgement.
    async fn certificate(
        &mut self,
        ctx: &ProbeContext,
        target: &Target,
        chain: &[rustls_pki_types::CertificateDer<'static>],
    ) -> Result<(), Failure> {
        let now = OffsetDateTime::now_utc();
        let info = CertificateInfo::from_chain(chain, now);
        self.verdict.certificate = info.clone();
        let fetch = self.mode().validates_certificate();
        let judgement = ctx.tls.judge_chain(chain, &target.server_name, fetch).await;
        for warning in judgement.warnings {
            self.outcome(Stage::Certificate, Outcome::RevocationUnchecked, warning)?;
        }
        let problem = match judgement.result {
            Ok(()) => None,
            Err(e) => chain_outcome(&e, info.as_ref().is_some_and(|i| i.self_issued)),
        };
        if let Some((outcome, detail)) = problem {
            return self.outcome(Stage::Certificate, outcome, detail);
        }
        if self.mode() == TlsMode::DomainValidation
            && let Some(domain) = self.tls_domain
        {
            let names: Vec<&str> = info.iter().flat_map(|i| i.candidate_names()).collect();
            if !matches_tls_domain(domain, names.iter().copied()) {
                self.outcome(
                    Stage::Certificate,
                    Outcome::NameMismatch,
                    format!(
                        "no certificate name matches tls_domain {domain} (presented: {})",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                )?;
            }
        }
        if let Some(warning) =
            info.and_then(|i| i.expiring_within(self.settings.expiry_warning, now))
        {
            self.outcome(Stage::Certificate, Outcome::ExpiresSoon, warning)?;
        }
        Ok(())
    }

    /// QUIT, politely and within the command timeout; its outcome does not matter.
    async fn quit<S>(&mut self, mut smtp: SmtpStream<S>) -> Result<(), Failure>
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
    fn finish(mut self, result: Result<(), Failure>) -> TargetVerdict {
        self.close_timing(Instant::now());
        let mut v = self.verdict;
        v.timings_ms = self.timings;
        match result {
            Ok(()) => {
                v.stage = Stage::Done;
                v.detail = success_detail(&v);
            }
            Err(f) => {
                let code = match verdict::judge(f.stage, f.outcome, self.settings.tls) {
                    Action::Fail(code) => code,
                    // A stage only returns what the table fails; anything else is a bug in
                    // the pipeline, reported rather than hidden.
                    _ => Code::Other,
                };
                let cert_code = self.settings.certificate_failure_code;
                v.stage = f.stage;
                v.code = Some(code.render(cert_code));
                v.detail = f.detail.clone();
                v.eop_status = Some(verdict::eop_status(
                    code,
                    cert_code,
                    &f,
                    &v.host,
                    v.address.map(|a| SocketAddr::new(a, v.port)),
                    v.certificate.as_ref(),
                    self.tls_domain.map(|d| d.to_string()).as_deref(),
                ));
                v.failure = Some((code, f));
            }
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
