//! EOP's resolution order and the names in its line (`classification.md`, "The client the
//! probe imitates"), against the lab's DNS server and scripted servers on 127.0.0.1 and ::1:
//! a smart host's MX first, preference levels in order, IPv6 before IPv4 within a level, the
//! MX host's name in the line, the bounds on what DNS can make the probe do, and the
//! opportunistic fallback session deciding the target's outcome.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use connector_probe::config::{Config, Connector, Host, IpFamily, Route, SmartHost, TlsMode};
use connector_probe::demo::Lab;
use connector_probe::lab::smtp::{Script, SmtpServer, Step, send};
use connector_probe::probe::{ProbeContext, probe_connector};
use connector_probe::verdict::{ConnectorVerdict, Status};

use crate::util::{settings, uniform};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A lab with no cases: its DNS server and configuration, to which tests add names.
async fn empty_lab() -> Lab {
    Lab::start(|_| false).await.expect("lab starts")
}

fn named(name: &str, port: u16, mode: TlsMode) -> Connector {
    let mut s = settings(mode, uniform(Duration::from_secs(3)));
    s.ip_family = IpFamily::Any;
    Connector {
        name: "under-test".into(),
        route: Route::SmartHosts(vec![SmartHost {
            host: Host::Name(name.into()),
            port: Some(port),
        }]),
        tls_domain: None,
        settings: s.into(),
    }
}

async fn probe(config: &Config, c: &Connector) -> ConnectorVerdict {
    probe_connector(&ProbeContext::new(config), c).await
}

/// A plaintext server that answers greeting, EHLO and QUIT.
fn plaintext() -> Script {
    Script::new(vec![
        send("220 plain.example ESMTP\r\n"),
        Step::Expect("EHLO"),
        send("250-plain.example\r\n250 8BITMIME\r\n"),
        Step::Expect("QUIT"),
        send("221 Bye\r\n"),
        Step::Close,
    ])
}

/// The same port on 127.0.0.1 and ::1, so one smart host port reaches both.
async fn dual_stack(script: Script) -> (SmtpServer, SmtpServer) {
    for _ in 0..20 {
        let v4 = SmtpServer::start(script.clone()).await.unwrap();
        let port = v4.addr.port();
        if let Ok(v6) = SmtpServer::start_on(SocketAddr::new(V6, port), script.clone()).await {
            return (v4, v6);
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

#[tokio::test]
async fn ipv6_addresses_come_before_ipv4_ones() {
    let lab = empty_lab().await;
    let (_v4, _v6) = dual_stack(plaintext()).await;
    lab.dns.address("dual.lab.test", V4);
    lab.dns.address("dual.lab.test", V6);
    let v = probe(
        &lab.config,
        &named("dual.lab.test", _v4.addr.port(), TlsMode::Opportunistic),
    )
    .await;
    let order: Vec<IpAddr> = v.targets.iter().filter_map(|t| t.address).collect();
    assert_eq!(order, vec![V6, V4], "{:#?}", v.targets);
    assert!(v.targets.iter().all(|t| t.host == "dual.lab.test"));
}

#[tokio::test]
async fn a_smart_hosts_mx_is_followed_by_preference_and_named_in_the_line() {
    let lab = empty_lab().await;
    // Both MX hosts refuse (their port is closed), so each target carries a line.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    lab.dns.mx("relay.lab.test", 20, "backup.lab.test");
    lab.dns.mx("relay.lab.test", 10, "primary.lab.test");
    lab.dns.address("primary.lab.test", V4);
    lab.dns.address("backup.lab.test", V4);
    // The smart host's own address would be a different server: it must not be used.
    lab.dns
        .address("relay.lab.test", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let v = probe(
        &lab.config,
        &named("relay.lab.test", closed, TlsMode::Opportunistic),
    )
    .await;
    let hosts: Vec<&str> = v.targets.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(hosts, ["primary.lab.test", "backup.lab.test"]);
    assert_eq!(v.status, Status::Failing);
    let line = v.eop_status.as_deref().unwrap();
    assert_eq!(
        line,
        format!(
            "450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=primary.lab.test] [LastAttemptedIP=127.0.0.1:{closed}]"
        ),
        "ties go to the first in EOP's order"
    );
    assert_eq!(
        v.ndr_line.as_deref(),
        Some("550 5.4.316 Message expired, connection refused(Socket error code 10061)")
    );
    assert_eq!(v.queue_code, Some("450 4.4.316"));
}

#[tokio::test]
async fn an_mx_routed_domain_that_does_not_exist_bounces_at_once() {
    let lab = empty_lab().await;
    let mut c = named("x", 25, TlsMode::Opportunistic);
    c.route = Route::Mx("gone.lab.test".into());
    let v = probe(&lab.config, &c).await;
    assert_eq!(v.status, Status::Failing);
    assert_eq!(v.code, Some("550 5.4.310"));
    let line = "550 5.4.310 DNS domain gone.lab.test does not exist [Message=InfoDomainNonexistent] [LastAttemptedServerName=gone.lab.test]";
    assert_eq!(v.eop_status.as_deref(), Some(line));
    assert_eq!(
        v.ndr_line.as_deref(),
        Some(line),
        "the line itself is the NDR"
    );
    assert!(!v.is_queueing(), "nothing is queued");
}

#[tokio::test]
async fn dns_bounds_leave_the_rest_reported_not_probed() {
    let lab = empty_lab().await;
    let server = SmtpServer::start(plaintext()).await.unwrap();
    for i in 1..=20u8 {
        lab.dns
            .address("many.lab.test", IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)));
    }
    let mut c = named("many.lab.test", server.addr.port(), TlsMode::Opportunistic);
    std::sync::Arc::make_mut(&mut c.settings)
        .bounds
        .max_addresses_per_host = 1;
    let v = probe(&lab.config, &c).await;
    assert_eq!(v.targets.len(), 1, "{:#?}", v.targets);
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    assert!(
        v.warnings[0].contains("19 address(es) beyond max_addresses_per_host = 1 not probed"),
        "{}",
        v.warnings[0]
    );

    for i in 1..=12u16 {
        let mx = format!("mx{i}.wide.lab.test");
        lab.dns.mx("wide.lab.test", i, &mx);
        lab.dns.address(&mx, V4);
    }
    let mut c = named("wide.lab.test", server.addr.port(), TlsMode::Opportunistic);
    std::sync::Arc::make_mut(&mut c.settings)
        .bounds
        .max_mx_hosts = 3;
    std::sync::Arc::make_mut(&mut c.settings).bounds.max_targets = 2;
    let v = probe(&lab.config, &c).await;
    let hosts: Vec<&str> = v.targets.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(hosts, ["mx1.wide.lab.test", "mx2.wide.lab.test"]);
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("9 MX host(s) beyond max_mx_hosts = 3")),
        "{:?}",
        v.warnings
    );
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("1 target(s) beyond max_targets = 2")),
        "{:?}",
        v.warnings
    );
}

/// After a failed negotiation the fallback session decides: here the server refuses the
/// second connection's greeting, so the opportunistic connector fails with that reply, and the
/// negotiation's Message is kept as a warning.
#[tokio::test]
async fn the_fallback_sessions_outcome_is_the_targets() {
    let lab = empty_lab().await;
    let first = Script::answering_starttls([
        send("220 2.0.0 Go ahead\r\n"),
        Step::Drain,
        send("not tls\r\n"),
        Step::Close,
    ]);
    let second = Script::new(vec![send("421 4.7.0 Try again later\r\n"), Step::Close]);
    let server = SmtpServer::start_each("127.0.0.1:0".parse().unwrap(), vec![first, second])
        .await
        .unwrap();
    let mut c = named("x", server.addr.port(), TlsMode::Opportunistic);
    c.route = Route::SmartHosts(vec![SmartHost {
        host: Host::Ip(server.addr.ip()),
        port: Some(server.addr.port()),
    }]);
    let v = probe(&lab.config, &c).await;
    let t = &v.targets[0];
    assert_eq!(v.status, Status::Failing, "{t:#?}");
    assert_eq!(v.code, Some("450 4.4.317"));
    assert_eq!(t.stage.as_str(), "banner", "the fallback session's stage");
    assert!(
        v.eop_status
            .as_deref()
            .unwrap()
            .contains("[Message=421 4.7.0 Try again later]"),
        "{:?}",
        v.eop_status
    );
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("451 4.4.0 Security status IllegalMessage")),
        "{:?}",
        t.warnings
    );
}
