//! `connector-probe demo`: the built-in lab. One loopback server per row of the
//! classification table, certificates generated at start, every case probed through the real
//! pipeline, and the table of expected and produced codes printed. It needs no configuration,
//! no network beyond loopback, and no root.
//!
//! The same catalogue drives the integration tests (`tests/classification.rs`), so the demo
//! and the suite cannot drift apart.

mod catalogue;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub use catalogue::{CaseDef, Expect, LAB_TIMEOUTS, catalogue};
use catalogue::{DOC, DnsCase, MxCase, Peer, REVOKED_SERIAL, healthy, plaintext_only};

use crate::config::{
    CertificateFailureCode, Config, Connector, DEFAULT_BOUNDS, DEFAULT_MAX_CONNECTIONS,
    DaemonConfig, DnsConfig, Host, IpFamily, Route, Settings, SmartHost, TlsConfig, TlsDomain,
    TlsMode,
};
use crate::lab::blackhole::Blackhole;
use crate::lab::certs::{LeafSpec, Pki};
use crate::lab::dns::{Behaviour, DnsServer};
use crate::lab::smtp::SmtpServer;
use crate::probe::{ProbeContext, probe_connector};
use crate::verdict::{ConnectorVerdict, Status};

/// A running lab: servers, DNS, PKI, and one connector per case.
pub struct Lab {
    pub dns: DnsServer,
    pub pki: Pki,
    pub config: Config,
    /// The configuration of the resolver nobody answers (the `dns-no-resolver` case).
    pub unanswered: Config,
    pub cases: Vec<(CaseDef, Connector)>,
    servers: Vec<SmtpServer>,
    _blackhole: Option<Blackhole>,
    _dead_resolver: std::net::UdpSocket,
}

fn lab_settings(mode: TlsMode, cert_code: CertificateFailureCode, port: u16) -> Settings {
    Settings {
        helo_name: "probe.lab.test".into(),
        port,
        interval: Duration::from_secs(60),
        tls: mode,
        expiry_warning: Duration::from_secs(14 * 86_400),
        ip_family: IpFamily::Ipv4,
        certificate_failure_code: cert_code,
        timeouts: LAB_TIMEOUTS,
        bounds: DEFAULT_BOUNDS,
        source_address: None,
    }
}

fn lab_config(pki: &Pki, nameserver: SocketAddr, connectors: Vec<Connector>) -> Config {
    Config {
        source: PathBuf::from("<demo>"),
        defaults: lab_settings(TlsMode::Opportunistic, DOC, 25),
        dns: DnsConfig {
            nameservers: vec![nameserver],
        },
        tls: TlsConfig {
            ca_file: None,
            extra_roots: vec![pki.root.cert.clone()],
            crl_file: None,
            crls: vec![pki.crl(&[REVOKED_SERIAL])],
            revocation: Default::default(),
        },
        daemon: DaemonConfig {
            concurrency: 256,
            message_expiration: Duration::from_secs(24 * 3600),
            queue_alert_after: Duration::from_secs(3600),
            metrics_listen: None,
            state_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            vantage: "demo".into(),
            shard: None,
        },
        connectors,
    }
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl Lab {
    /// Starts the servers of the cases whose id `filter` accepts.
    pub async fn start(filter: impl Fn(&str) -> bool) -> io::Result<Lab> {
        let dns = DnsServer::start().await?;
        let pki = Pki::new();
        // A UDP port that is bound but never read: queries to it go unanswered.
        let dead_resolver = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let mut servers = Vec::new();
        let mut blackhole = None;
        let mut cases = Vec::new();
        for def in catalogue().into_iter().filter(|d| filter(d.id)) {
            let host = format!("{}.lab.test", def.id);
            let route = match def.peer {
                Peer::Dns(kind) => {
                    match kind {
                        DnsCase::NxDomain => {}
                        DnsCase::NoData => dns.exists(&host),
                        DnsCase::ServFail => dns.behave(&host, Behaviour::ServFail),
                        DnsCase::Refused => dns.behave(&host, Behaviour::Refused),
                        DnsCase::Silent => dns.behave(&host, Behaviour::Silent),
                    }
                    smart(&host, 25)
                }
                Peer::NoResolver => smart(&host, 25),
                Peer::Mx(kind) => {
                    let port = match kind {
                        MxCase::NxDomain => 25,
                        MxCase::NoRecords => {
                            dns.exists(&host);
                            25
                        }
                        MxCase::NullMx => {
                            dns.mx(&host, 0, ".");
                            25
                        }
                        MxCase::HostMissing => {
                            dns.mx(&host, 10, &format!("ghost.{host}"));
                            25
                        }
                        MxCase::ServFail => {
                            dns.behave(&host, Behaviour::ServFail);
                            25
                        }
                        MxCase::Implicit => {
                            let server = SmtpServer::start(plaintext_only()).await?;
                            dns.address(&host, LOOPBACK);
                            let port = server.addr.port();
                            servers.push(server);
                            port
                        }
                        MxCase::Healthy => {
                            let mx1 = format!("mx1.{host}");
                            let server =
                                SmtpServer::start(healthy(&pki, LeafSpec::valid(&mx1))).await?;
                            dns.mx(&host, 10, &mx1);
                            dns.address(&mx1, LOOPBACK);
                            let port = server.addr.port();
                            servers.push(server);
                            port
                        }
                    };
                    (Route::Mx(host.clone()), port)
                }
                Peer::Blackhole => {
                    let hole = Blackhole::start().await?;
                    let route = (Route::SmartHosts(vec![ip_host(hole.addr)]), 25);
                    blackhole = Some(hole);
                    route
                }
                Peer::Closed => {
                    // Bind and drop: the port is free and nothing listens there.
                    let port = std::net::TcpListener::bind("127.0.0.1:0")?
                        .local_addr()?
                        .port();
                    (
                        Route::SmartHosts(vec![ip_host(SocketAddr::new(LOOPBACK, port))]),
                        25,
                    )
                }
                Peer::Script(make) => {
                    let server = SmtpServer::start(make(&pki, &host)).await?;
                    dns.address(&host, LOOPBACK);
                    let route = smart(&host, server.addr.port());
                    servers.push(server);
                    route
                }
                Peer::SmartHostViaMx => {
                    // The smart host name has an MX record and no address: only by following
                    // the MX does the probe reach the healthy server.
                    let mx = format!("mx.{host}");
                    let server = SmtpServer::start(healthy(&pki, LeafSpec::valid(&mx))).await?;
                    dns.mx(&host, 10, &mx);
                    dns.address(&mx, LOOPBACK);
                    let route = smart(&host, server.addr.port());
                    servers.push(server);
                    route
                }
                Peer::Degraded => {
                    let good = format!("good.{host}");
                    let server = SmtpServer::start(healthy(&pki, LeafSpec::valid(&good))).await?;
                    dns.address(&good, LOOPBACK);
                    let port = std::net::TcpListener::bind("127.0.0.1:0")?
                        .local_addr()?
                        .port();
                    let hosts = vec![
                        ip_host(SocketAddr::new(LOOPBACK, port)),
                        SmartHost {
                            host: Host::Name(good),
                            port: Some(server.addr.port()),
                        },
                    ];
                    servers.push(server);
                    (Route::SmartHosts(hosts), 25)
                }
            };
            let connector = Connector {
                name: def.id.to_owned(),
                route: route.0,
                tls_domain: def
                    .tls_domain
                    .map(|d| TlsDomain::parse(d).expect("catalogue domains are valid")),
                settings: lab_settings(def.mode, def.cert_code, route.1).into(),
            };
            cases.push((def, connector));
        }
        let config = lab_config(
            &pki,
            dns.addr,
            cases.iter().map(|(_, c)| c.clone()).collect(),
        );
        let unanswered = lab_config(&pki, dead_resolver.local_addr()?, Vec::new());
        Ok(Lab {
            dns,
            pki,
            config,
            unanswered,
            cases,
            servers,
            _blackhole: blackhole,
            _dead_resolver: dead_resolver,
        })
    }

    /// Every command line the lab's SMTP servers received.
    pub fn received_commands(&self) -> Vec<String> {
        self.servers.iter().flat_map(|s| s.received()).collect()
    }

    /// Probes every case concurrently; results in catalogue order.
    pub async fn run(&self) -> Vec<(&CaseDef, ConnectorVerdict)> {
        let main = ProbeContext::new(&self.config);
        let unanswered = ProbeContext::new(&self.unanswered);
        let runs = self.cases.iter().map(|(def, connector)| {
            let ctx = if matches!(def.peer, Peer::NoResolver) {
                &unanswered
            } else {
                &main
            };
            async move { (def, probe_connector(ctx, connector).await) }
        });
        futures_util::future::join_all(runs).await
    }
}

fn smart(host: &str, port: u16) -> (Route, u16) {
    (
        Route::SmartHosts(vec![SmartHost {
            host: Host::Name(host.to_owned()),
            port: Some(port),
        }]),
        port,
    )
}

fn ip_host(addr: SocketAddr) -> SmartHost {
    SmartHost {
        host: Host::Ip(addr.ip()),
        port: Some(addr.port()),
    }
}

fn describe(status: Status, code: Option<&str>) -> String {
    match code {
        Some(c) => format!("{} {c}", status.as_str()),
        None => status.as_str().to_owned(),
    }
}

/// Runs the whole lab and prints the table (or the verdicts as JSON). Exits 0 when every
/// case produced what the spec says, 1 otherwise.
pub async fn run(json: bool) -> ExitCode {
    let lab = match Lab::start(|_| true).await {
        Ok(l) => l,
        Err(e) => {
            crate::say!("error: cannot start the lab on loopback: {e}");
            return ExitCode::from(3);
        }
    };
    let results = lab.run().await;
    let mismatches = results
        .iter()
        .filter(|(def, v)| !matches_expectation(def, v))
        .count();
    let text = if json {
        let verdicts: Vec<&ConnectorVerdict> = results.iter().map(|(_, v)| v).collect();
        format!(
            "{}\n",
            serde_json::to_string_pretty(&verdicts).expect("verdicts serialize")
        )
    } else if mismatches == 0 {
        format!(
            "{}\nall {} cases produced the status, code and Message classification.md gives.\n",
            table(&results),
            results.len()
        )
    } else {
        format!(
            "{}\n{mismatches} of {} cases did NOT produce what the spec gives.\n",
            table(&results),
            results.len()
        )
    };
    if let Err(e) = crate::output::print(&text) {
        crate::say!("error: cannot write the demo's report: {e}");
        return ExitCode::from(3);
    }
    if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Whether a verdict is what the case expects.
pub fn matches_expectation(def: &CaseDef, v: &ConnectorVerdict) -> bool {
    let message = v
        .targets
        .iter()
        .find(|t| t.eop_status.is_some() && t.eop_status == v.eop_status)
        .and_then(|t| t.failure.as_ref())
        .map(|j| j.message.as_str());
    v.status == def.expect.status
        && v.code_kind == def.expect.code
        && def.expect.message_matches(message)
}

fn table(results: &[(&CaseDef, ConnectorVerdict)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "connector-probe demo: {} loopback servers, one per row of the classification table\n",
        results.len()
    );
    let _ = writeln!(
        out,
        "   {:<62} {:<23} {:<20} got",
        "row of classification.md", "tls mode", "expected"
    );
    for (def, v) in results {
        let expected = describe(
            def.expect.status,
            def.expect.code.map(|c| c.render(def.cert_code)),
        );
        let got = describe(v.status, v.code);
        let mark = if matches_expectation(def, v) {
            "ok"
        } else {
            "!!"
        };
        // What the probe saw: the failing target, else the first warning.
        let first = v
            .targets
            .iter()
            .find(|t| !t.succeeded())
            .or(v.targets.first());
        let detail = first
            .map(|t| {
                let note = t.warnings.first().map(String::as_str).unwrap_or(&t.detail);
                format!("{}: {}", t.stage, note)
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{mark} {:<62} {:<23} {:<20} {}",
            truncate(def.row, 62),
            def.mode.as_str(),
            expected,
            got
        );
        let _ = writeln!(out, "     [{}] {}", def.id, truncate(&detail, 140));
        if let Some(line) = &v.eop_status {
            let _ = writeln!(out, "     queue line: {line}");
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}
