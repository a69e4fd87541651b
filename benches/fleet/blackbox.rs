//! The peer for cycles: Prometheus blackbox_exporter with an `smtp_starttls` module that walks
//! the same dialogue as connector-probe (greeting, EHLO, STARTTLS, handshake with chain and
//! name verification against the fleet's CA, EHLO, QUIT), driven like Prometheus drives it,
//! one HTTP `/probe` request per target, as many in flight as connector-probe's concurrency.
//!
//! A fresh exporter is started for each cycle, so its peak RSS is that cycle's. Its CPU is
//! read from `/proc` before and after; the driver's own HTTP requests are not counted.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fleet::Shape;
use crate::measure;
use crate::netns::{Background, tied};

pub const EXE: &str = "prometheus-blackbox-exporter";
const LISTEN: &str = "127.0.0.1:9115";

/// One cycle of `/probe` requests.
pub struct Cycle {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss: u64,
    pub as_expected: usize,
    pub unexpected: usize,
    /// From the first request to the last healthy target's answer.
    pub healthy_done: Duration,
}

fn config(ca: &Path, timeout: Duration) -> String {
    format!(
        r#"modules:
  smtp_starttls:
    prober: tcp
    timeout: {}s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 "
        - send: "EHLO probe.fleet.test\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220 "
        - starttls: true
        - send: "EHLO probe.fleet.test\r"
        - expect: "^250 "
        - send: "QUIT\r"
        - expect: "^221 "
      tls_config:
        ca_file: "{}"
        server_name: fleet.test
"#,
        timeout.as_secs(),
        ca.display()
    )
}

pub fn cycle(
    dir: &Path,
    ca: &Path,
    shape: &Shape,
    concurrency: usize,
    timeout: Duration,
) -> io::Result<Cycle> {
    let config_path = dir.join("blackbox.yml");
    std::fs::write(&config_path, config(ca, timeout))?;
    let exporter = Background {
        child: tied(EXE)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address={LISTEN}"))
            .arg("--log.level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listen: SocketAddr = LISTEN.parse().expect("literal address");
    runtime.block_on(wait_ready(listen))?;
    let before = measure::sample(exporter.pid())?;
    let targets: Arc<Vec<(bool, String)>> = Arc::new(
        shape
            .addresses()
            .into_iter()
            .map(|(i, a)| (shape.is_dead(i), format!("{a}:25")))
            .collect(),
    );
    let t0 = Instant::now();
    let results = runtime.block_on(drive(listen, targets.clone(), concurrency))?;
    let wall = t0.elapsed();
    let after = measure::sample(exporter.pid())?;
    let mut c = Cycle {
        wall,
        cpu: after.cpu.saturating_sub(before.cpu),
        peak_rss: after.peak_rss,
        as_expected: 0,
        unexpected: 0,
        healthy_done: Duration::ZERO,
    };
    for ((dead, _), (success, done)) in targets.iter().zip(results) {
        if success != *dead {
            c.as_expected += 1;
        } else {
            c.unexpected += 1;
        }
        if !dead {
            c.healthy_done = c.healthy_done.max(done - t0);
        }
    }
    Ok(c)
}

async fn wait_ready(listen: SocketAddr) -> io::Result<()> {
    for _ in 0..200 {
        if get(listen, "/-/healthy").await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(io::Error::other(format!(
        "{EXE} did not come up on {listen}"
    )))
}

/// Every target once, `concurrency` requests in flight: per target, whether the probe
/// succeeded and when its answer arrived.
async fn drive(
    listen: SocketAddr,
    targets: Arc<Vec<(bool, String)>>,
    concurrency: usize,
) -> io::Result<Vec<(bool, Instant)>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(targets.len()) {
        let (next, targets) = (next.clone(), targets.clone());
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, target)) = targets.get(i) else {
                    return done;
                };
                let path = format!("/probe?module=smtp_starttls&target={target}");
                let success = get(listen, &path)
                    .await
                    .is_ok_and(|body| body.contains("\nprobe_success 1"));
                done.push((i, success, Instant::now()));
            }
        }));
    }
    let mut results = vec![(false, Instant::now()); targets.len()];
    for w in workers {
        for (i, success, at) in w.await.map_err(io::Error::other)? {
            results[i] = (success, at);
        }
    }
    Ok(results)
}

/// A plain HTTP/1.0 GET (one connection per request, as simple as a client gets).
async fn get(listen: SocketAddr, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect(listen).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {listen}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    if body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200") {
        Ok(body)
    } else {
        Err(io::Error::other("not 200"))
    }
}
