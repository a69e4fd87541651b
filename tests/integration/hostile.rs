//! Servers that never answer, drip bytes, or never stop sending: the probe ends within its
//! timeouts with the code the table gives, and its buffers stay bounded (the parser's caps).

use std::time::{Duration, Instant};

use connector_probe::config::{Config, TlsMode};
use connector_probe::lab::smtp::{Script, SmtpServer, Step, send};
use connector_probe::probe::{ProbeContext, probe_connector};
use connector_probe::verdict::ConnectorVerdict;

use crate::util::{connector_to, uniform};

const LIMIT: Duration = Duration::from_millis(800);
/// Scheduling slack on top of a timeout.
const SLACK: Duration = Duration::from_millis(700);

async fn probe(script: Script, mode: TlsMode) -> (ConnectorVerdict, Duration) {
    let server = SmtpServer::start(script).await.unwrap();
    let config = Config::parse("", std::path::Path::new("<test>")).unwrap();
    let ctx = ProbeContext::new(&config);
    let c = connector_to(server.addr, mode, uniform(LIMIT));
    let t0 = Instant::now();
    let v = probe_connector(&ctx, &c).await;
    (v, t0.elapsed())
}

fn code(v: &ConnectorVerdict) -> &str {
    v.code.unwrap_or(v.status.as_str())
}

#[tokio::test]
async fn silent_server_ends_at_the_banner_timeout() {
    let (v, took) = probe(Script::new(vec![Step::Hang]), TlsMode::Opportunistic).await;
    assert_eq!(code(&v), "450 4.4.318");
    assert!(took >= LIMIT && took < LIMIT + SLACK, "{took:?}");
}

#[tokio::test]
async fn greeting_dripped_inside_the_timeout_is_accepted() {
    let script = Script::new(vec![
        Step::Drip(
            b"220 slow.example ESMTP\r\n".to_vec(),
            Duration::from_millis(15),
        ),
        Step::Expect("EHLO"),
        send("250 slow.example\r\n"),
        Step::Expect("QUIT"),
        send("221 bye\r\n"),
    ]);
    let (v, _) = probe(script, TlsMode::Opportunistic).await;
    // No STARTTLS offered: plaintext, a warning, but the greeting was read.
    assert_eq!(v.status.as_str(), "warning", "{:#?}", v.targets);
}

#[tokio::test]
async fn greeting_dripped_past_the_timeout_is_4_4_318_on_time() {
    let script = Script::new(vec![Step::Drip(
        b"220 slow.example ESMTP but far too slow for anyone\r\n".to_vec(),
        Duration::from_millis(40),
    )]);
    let (v, took) = probe(script, TlsMode::Opportunistic).await;
    assert_eq!(code(&v), "450 4.4.318");
    assert!(
        v.targets[0].detail.contains("byte(s) received"),
        "{}",
        v.targets[0].detail
    );
    assert!(took < LIMIT + SLACK, "{took:?}");
}

#[tokio::test]
async fn endless_line_is_4_4_317_without_waiting() {
    let script = Script::new(vec![send("220 "), Step::Flood(vec![b'A'; 8192])]);
    let (v, took) = probe(script, TlsMode::Opportunistic).await;
    assert_eq!(code(&v), "450 4.4.317");
    assert!(
        took < LIMIT,
        "cut off at the line cap, not the timeout: {took:?}"
    );
}

#[tokio::test]
async fn endless_multiline_ehlo_is_4_4_317() {
    let script = Script::new(vec![
        send("220 x ESMTP\r\n"),
        Step::Expect("EHLO"),
        Step::Flood(
            b"250-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n".repeat(64),
        ),
    ]);
    let (v, took) = probe(script, TlsMode::Opportunistic).await;
    assert_eq!(code(&v), "450 4.4.317");
    assert!(
        v.targets[0].detail.contains("reply longer than"),
        "{}",
        v.targets[0].detail
    );
    assert!(took < LIMIT, "{took:?}");
}

#[tokio::test]
async fn one_mebibyte_ehlo_reply_is_4_4_317() {
    let mut reply = Vec::new();
    while reply.len() < 1 << 20 {
        reply.extend(b"250-SIZE 1024000000000000000000000000000000000000000000000000000000\r\n");
    }
    reply.extend(b"250 OK\r\n");
    let script = Script::new(vec![
        send("220 x ESMTP\r\n"),
        Step::Expect("EHLO"),
        Step::Send(reply),
        Step::Hang,
    ]);
    let (v, _) = probe(script, TlsMode::Opportunistic).await;
    assert_eq!(code(&v), "450 4.4.317");
}

#[tokio::test]
async fn nul_bytes_and_invalid_utf8_in_the_greeting_are_tolerated() {
    let script = Script::new(vec![
        Step::Send(b"220 odd\x00host \xff\xfe ESMTP\r\n".to_vec()),
        Step::Expect("EHLO"),
        send("250 odd\r\n"),
        Step::Expect("QUIT"),
        send("221 bye\r\n"),
    ]);
    let (v, _) = probe(script, TlsMode::Opportunistic).await;
    assert_eq!(
        v.status.as_str(),
        "warning",
        "plaintext only: {:#?}",
        v.targets
    );
    assert_eq!(
        v.targets[0].banner.as_deref(),
        Some("220 odd\\x00host \\xff\\xfe ESMTP")
    );
}

#[tokio::test]
async fn bare_lf_replies_are_a_warning() {
    let script = Script::new(vec![
        send("220 lf.example ESMTP\n"),
        Step::Expect("EHLO"),
        send("250-lf.example\n250 8BITMIME\n"),
        Step::Expect("QUIT"),
        send("221 bye\n"),
    ]);
    let (v, _) = probe(script, TlsMode::Opportunistic).await;
    assert_eq!(v.status.as_str(), "warning");
    assert!(
        v.targets[0].warnings.iter().any(|w| w.contains("bare LF")),
        "{:?}",
        v.targets[0].warnings
    );
}

#[tokio::test]
async fn garbage_after_ready_to_start_tls_is_4_4_317() {
    let script = Script::answering_starttls([
        send("220 2.0.0 Ready to start TLS\r\n\x16\x03\x01garbage"),
        Step::Hang,
    ]);
    let (v, _) = probe(script, TlsMode::EncryptionOnly).await;
    assert_eq!(code(&v), "450 4.4.317");
    assert_eq!(v.targets[0].stage.as_str(), "starttls");
    assert!(
        v.eop_status
            .as_deref()
            .unwrap()
            .contains("[Message=451 4.4.0 Security status IllegalMessage]")
    );
}

#[tokio::test]
async fn handshake_that_never_finishes_ends_at_the_tls_timeout() {
    let script = Script::answering_starttls([
        send("220 2.0.0 Ready to start TLS\r\n"),
        Step::Drain,
        // A record header promising more than ever comes.
        Step::Send(vec![0x16, 0x03, 0x03, 0x40, 0x00, 0x02]),
        Step::Hang,
    ]);
    let (v, took) = probe(script, TlsMode::CertificateValidation).await;
    assert_eq!(code(&v), "450 4.4.317");
    assert_eq!(v.targets[0].stage.as_str(), "tls");
    assert!(
        v.eop_status
            .as_deref()
            .unwrap()
            .contains("[Message=451 4.4.0 TLS negotiation failed with error Timeout]")
    );
    assert!(took < 3 * LIMIT + SLACK, "{took:?}");
}

/// With one place in the bound, a black-holed connector ahead of a healthy one makes way
/// for it once its connect has been pending for `SLOW_CONNECT`, instead of holding the place
/// for its whole connect timeout.
#[tokio::test]
async fn a_black_holed_connector_does_not_hold_up_the_next() {
    use connector_probe::lab::blackhole::Blackhole;
    use connector_probe::probe::probe_all;

    let dead = Blackhole::start().await.unwrap();
    let live = SmtpServer::start(Script::new(vec![
        send("220 live.example ESMTP\r\n"),
        Step::Expect("EHLO"),
        send("250 live.example\r\n"),
        Step::Expect("QUIT"),
        send("221 bye\r\n"),
    ]))
    .await
    .unwrap();
    let config = Config::parse("", std::path::Path::new("<test>")).unwrap();
    let ctx = ProbeContext::new(&config);
    let timeouts = uniform(connector_probe::limits::SLOW_CONNECT * 4);
    let mut first = connector_to(dead.addr, TlsMode::Opportunistic, timeouts);
    first.name = "dead".into();
    let mut second = connector_to(live.addr, TlsMode::Opportunistic, timeouts);
    second.name = "live".into();
    let mut v = Vec::new();
    probe_all(&ctx, &[first, second], 1, |verdict| v.push(verdict)).await;
    // Handed over as the probes end: the live one first.
    let names: Vec<&str> = v.iter().map(|v| v.connector.as_str()).collect();
    assert_eq!(names, ["live", "dead"]);
    v.reverse();
    assert_eq!(code(&v[0]), "450 4.4.315", "{:#?}", v[0].targets);
    assert_eq!(code(&v[1]), "warning", "{:#?}", v[1].targets);
    let ended = |v: &ConnectorVerdict| {
        let started = time::OffsetDateTime::parse(
            &v.started_at,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        started + Duration::from_secs_f64(v.duration_ms / 1e3)
    };
    assert!(
        ended(&v[1]) < ended(&v[0]),
        "the live connector waited for the dead one's timeout"
    );
}
