//! The daemon as a process: events on stdout, state transitions, restarts, reloads, signals,
//! and a metrics scrape read by a Prometheus text parser.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer};
use serde_json::Value;

use crate::peers::support::{Need, available, tool_path};
use crate::util::binary;

/// A running `connector-probe run`, its stdout read line by line.
pub(crate) struct Daemon {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<Value>,
}

impl Daemon {
    pub(crate) fn start(config: &Path) -> Daemon {
        let mut child = Command::new(binary())
            .args(["run", "--config", config.to_str().unwrap()])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the daemon starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an event line for which `pred` holds; every line must be a JSON object
    /// with `timestamp`, `level` and `event`.
    pub(crate) fn wait(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                    for key in ["timestamp", "level", "event"] {
                        assert!(v.get(key).is_some(), "line without {key}: {line}");
                    }
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let seen: Vec<String> = self.seen.iter().map(Value::to_string).collect();
                    panic!("no {what} within {within:?}; saw:\n{}", seen.join("\n"));
                }
            }
        }
    }

    pub(crate) fn event(&mut self, name: &str, connector: &str, within: Duration) -> Value {
        self.wait(&format!("{name} for {connector}"), within, |v| {
            v["event"] == name && v["connector"] == connector
        })
    }

    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGTERM, then the exit status, which must come within `within`.
    pub(crate) fn stop(mut self, within: Duration) -> (i32, Duration, Vec<Value>) {
        let t0 = Instant::now();
        self.signal(libc::SIGTERM);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    if let Ok(v) = serde_json::from_str(&line) {
                        self.seen.push(v);
                    }
                }
                let seen = std::mem::take(&mut self.seen);
                return (status.code().unwrap_or(-1), t0.elapsed(), seen);
            }
            assert!(
                t0.elapsed() < within,
                "the daemon did not stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon configuration with short timers.
pub(crate) fn config(dir: &Path, metrics: u16, connectors: &str) -> PathBuf {
    let text = format!(
        r#"
[defaults]
helo_name = "probe.lab.test"
interval = "300ms"
[defaults.timeouts]
dns = "1s"
connect = "1s"
banner = "1s"
command = "1s"
tls = "1s"

[tls]
ca_file = "root.pem"

[daemon]
metrics_listen = "127.0.0.1:{metrics}"
state_file = "{state}"
queue_alert_after = "2s"
message_expiration = "1h"

{connectors}
"#,
        state = dir.join("state.json").display()
    );
    let path = dir.join("connector-probe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn smart(name: &str, addr: SocketAddr) -> String {
    format!(
        "[[connector]]\nname = \"{name}\"\nsmart_hosts = [\"{addr}\"]\ntls = \"certificate-validation\"\n"
    )
}

async fn healthy_server(pki: &Pki, addr: Option<SocketAddr>) -> SmtpServer {
    let script = Script::healthy(pki.leaf(&LeafSpec::valid("127.0.0.1")).server_config());
    match addr {
        Some(a) => SmtpServer::start_on(a, script).await.unwrap(),
        None => SmtpServer::start(script).await.unwrap(),
    }
}

pub(crate) fn lab_dir(pki: &Pki) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), &pki.root.pem).unwrap();
    dir
}

/// Blocking work (reading the daemon) off the runtime that runs the lab servers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

pub(crate) const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn server_stops_and_starts_again_state_change_and_recovery() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let server = healthy_server(&pki, None).await;
    let addr = server.addr;
    let cfg = config(dir.path(), free_port(), &smart("onprem", addr));
    let mut d = blocking(move || {
        let mut d = Daemon::start(&cfg);
        let v = d.event("state_change", "onprem", WAIT);
        assert_eq!(
            (v["from"].as_str(), v["to"].as_str()),
            (Some("unknown"), Some("ok")),
            "{v}"
        );
        let r = d.event("probe_result", "onprem", WAIT);
        assert_eq!(r["status"], "ok");
        assert!(
            r["duration_ms"].is_number() && r["targets"].is_string(),
            "{r}"
        );
        d
    })
    .await;

    drop(server);
    d = blocking(move || {
        let v = d.event("state_change", "onprem", WAIT);
        assert_eq!(v["to"], "failing", "{v}");
        assert_eq!(v["code"], "450 4.4.316");
        assert!(
            v["eop_status"]
                .as_str()
                .unwrap()
                .starts_with("450 4.4.316 Connection refused")
        );
        assert!(v["failing_since"].is_string());
        d
    })
    .await;

    let _server = healthy_server(&pki, Some(addr)).await;
    let d = blocking(move || {
        let v = d.event("state_change", "onprem", WAIT);
        assert_eq!(
            (v["from"].as_str(), v["to"].as_str()),
            (Some("failing"), Some("ok")),
            "{v}"
        );
        assert!(v.get("code").is_none(), "no code once recovered: {v}");
        d
    })
    .await;
    let (code, _, seen) = blocking(move || d.stop(WAIT)).await;
    assert_eq!(code, 0);
    let changes = seen.iter().filter(|v| v["event"] == "state_change").count();
    assert_eq!(changes, 3, "one event per transition, none repeated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_failing_since_and_raises_nothing_twice() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics_port = free_port();
    let cfg = config(dir.path(), metrics_port, &smart("gone", closed));
    let state_path = dir.path().join("state.json");
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        let change = d.event("state_change", "gone", WAIT);
        let since = change["failing_since"].as_str().unwrap().to_owned();
        let alert = d.event("queue_alert", "gone", WAIT);
        assert_eq!(alert["failing_since"], since.as_str());
        assert_eq!(alert["code"], "450 4.4.316");
        let (code, _, _) = d.stop(WAIT);
        assert_eq!(code, 0, "SIGTERM is a clean exit");

        let saved: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        assert_eq!(saved["connectors"]["gone"]["failing_since"], since.as_str());

        let mut d = Daemon::start(&cfg);
        d.event("probe_result", "gone", WAIT);
        d.event("probe_result", "gone", WAIT);
        let scrape = scrape(metrics_port, "/metrics");
        let (_, _, seen) = d.stop(WAIT);
        assert!(
            !seen
                .iter()
                .any(|v| v["event"] == "state_change" || v["event"] == "queue_alert"),
            "nothing raised twice after a restart: {seen:?}"
        );
        let metrics = parse(&scrape);
        let exported = value(
            &metrics,
            "connector_probe_failing_since_timestamp_seconds",
            &[("connector", "gone")],
        );
        let since_unix =
            time::OffsetDateTime::parse(&since, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert!(
            (exported - since_unix.unix_timestamp() as f64).abs() < 1.0,
            "{exported} vs {since}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_state_is_a_warning_and_a_fresh_start() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    std::fs::write(
        dir.path().join("state.json"),
        b"{\"version\": 1, \"connectors\": {\"x\": {\"sta",
    )
    .unwrap();
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = config(dir.path(), free_port(), &smart("c", closed));
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        let w = d.wait("state_load_failed", WAIT, |v| {
            v["event"] == "state_load_failed"
        });
        assert_eq!(w["level"], "WARN");
        let v = d.event("state_change", "c", WAIT);
        assert_eq!(v["from"], "unknown");
        assert_eq!(d.stop(WAIT).0, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_good_config_and_keeps_running_on_a_bad_one() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let server = healthy_server(&pki, None).await;
    let metrics_port = free_port();
    let cfg = config(dir.path(), metrics_port, &smart("first", server.addr));
    let dir_path = dir.path().to_owned();
    let addr = server.addr;
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        d.event("probe_result", "first", WAIT);

        std::fs::write(
            &cfg,
            "[[connector]]\nname = \"broken\"\nsmart_hosts = [\"127.0.0.1\"]\ntls = \"nonsense\"\n",
        )
        .unwrap();
        d.signal(libc::SIGHUP);
        let failed = d.wait("config_reload_failed", WAIT, |v| {
            v["event"] == "config_reload_failed"
        });
        let error = failed["error"].as_str().unwrap();
        assert!(
            error.contains("connector-probe.toml:4:7: key `connector[0].tls`"),
            "{error}"
        );
        d.event("probe_result", "first", WAIT);
        d.event("probe_result", "first", WAIT);

        config(&dir_path, metrics_port, &smart("second", addr));
        d.signal(libc::SIGHUP);
        let ok = d.wait("config_reloaded", WAIT, |v| v["event"] == "config_reloaded");
        assert_eq!(
            (ok["added"].as_u64(), ok["removed"].as_u64()),
            (Some(1), Some(1)),
            "{ok}"
        );
        d.event("probe_result", "second", WAIT);
        d.event("probe_result", "second", WAIT);
        let scrape = scrape(metrics_port, "/metrics");
        assert!(
            !scrape.contains("connector=\"first\""),
            "series of a removed connector are deleted"
        );
        assert!(scrape.contains("connector=\"second\""));
        assert!(
            // After the `vantage` label every series carries.
            scrape
                .lines()
                .any(|l| l.starts_with("connector_probe_config_reloads_total{")
                    && l.ends_with(",result=\"failure\"} 1")),
            "{scrape}"
        );
        assert_eq!(d.stop(WAIT).0, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_in_flight_probe_finish_and_exits_0() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    // A server that never greets: each probe lasts the banner timeout (1 s).
    let silent = SmtpServer::start(Script::new(vec![connector_probe::lab::smtp::Step::Hang]))
        .await
        .unwrap();
    let cfg = config(dir.path(), free_port(), &smart("silent", silent.addr));
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        d.event("probe_result", "silent", WAIT);
        // The next probe starts within the interval (300 ms) and then hangs for 1 s.
        std::thread::sleep(Duration::from_millis(500));
        let (code, took, seen) = d.stop(WAIT);
        assert_eq!(code, 0);
        assert!(
            took < Duration::from_secs(3),
            "bounded by the probe's own timeouts: {took:?}"
        );
        let stopped = seen
            .iter()
            .find(|v| v["event"] == "daemon_stopped")
            .expect("daemon_stopped");
        assert_eq!(
            stopped["abandoned_probes"], 0,
            "the in-flight probe finished"
        );
        let last_result = seen.iter().rposition(|v| v["event"] == "probe_result");
        let stopping = seen
            .iter()
            .position(|v| v["event"] == "daemon_stopping")
            .unwrap();
        assert!(
            last_result.is_some_and(|r| r > stopping),
            "the in-flight probe reported after the stop began"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_scrape_is_valid_prometheus_text() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let server = healthy_server(&pki, None).await;
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let port = free_port();
    let cfg = config(
        dir.path(),
        port,
        &format!("{}\n{}", smart("good", server.addr), smart("bad", closed)),
    );
    let good_target = server.addr.to_string();
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        d.event("probe_result", "good", WAIT);
        d.event("probe_result", "bad", WAIT);
        let health = scrape(port, "/healthz");
        assert_eq!(health.trim(), "ok");
        let text = scrape(port, "/metrics");
        assert!(
            !text.contains("# EOF") && text.contains("# TYPE connector_probe_probes_total counter"),
            "classic text format by default"
        );
        let om = get(
            port,
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
        );
        assert!(
            om.ends_with("# EOF\n") && om.contains("# TYPE connector_probe_probes counter"),
            "OpenMetrics when asked"
        );
        let m = parse(&text);
        let good = [("connector", "good"), ("target", good_target.as_str())];
        assert_eq!(value(&m, "probe_success", &good), 1.0);
        assert!(value(&m, "probe_duration_seconds", &good) > 0.0);
        let expiry = value(&m, "probe_ssl_earliest_cert_expiry", &good);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            expiry > now + 300.0 * 86400.0,
            "a one-year certificate: {expiry}"
        );
        assert_eq!(value(&m, "probe_success", &[("connector", "bad")]), 0.0);
        assert_eq!(
            value(
                &m,
                "connector_probe_status",
                &[("connector", "bad"), ("status", "failing")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &m,
                "connector_probe_status",
                &[("connector", "good"), ("status", "ok")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &m,
                "connector_probe_code_info",
                &[("connector", "bad"), ("code", "450 4.4.316")]
            ),
            1.0
        );
        assert!(
            value(
                &m,
                "connector_probe_failing_since_timestamp_seconds",
                &[("connector", "bad")]
            ) > 0.0
        );
        assert!(
            m.samples.iter().all(|s| !(s.metric
                == "connector_probe_failing_since_timestamp_seconds"
                && s.labels.get("connector") == Some("good"))),
            "no failing_since for a connector that is not failing"
        );
        assert!(
            value(
                &m,
                "connector_probe_stage_duration_seconds",
                &[("connector", "good"), ("stage", "tls")]
            ) > 0.0
        );
        assert_eq!(d.stop(WAIT).0, 0);
    })
    .await;
}

/// GET over plain TCP, so the test depends on no HTTP client.
pub(crate) fn scrape(port: u16, path: &str) -> String {
    get(port, path, "")
}

fn get(port: u16, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the metrics endpoint listens");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    }
}

/// A chunked body (`/metrics` is streamed) as the bytes it carries.
pub(crate) fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hexadecimal chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = rest[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after a chunk");
    }
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format")
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(m: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let hits: Vec<&prometheus_parse::Sample> = m
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(hits.len(), 1, "{metric} {labels:?}: {} samples", hits.len());
    match hits[0].value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{metric}: unexpected {other:?}"),
    }
}

#[test]
fn alert_rules_pass_promtool() {
    if !available("promtool", &[Need::Tool("promtool")]) {
        return;
    }
    let promtool = tool_path("promtool");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let check = Command::new(&promtool)
        .args(["check", "rules", "prometheus-alerts.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let test = Command::new(&promtool)
        .args(["test", "rules", "prometheus-alerts.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_a_live_scrape() {
    if !available("promtool", &[Need::Tool("promtool")]) {
        return;
    }
    let promtool = tool_path("promtool");
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let server = healthy_server(&pki, None).await;
    let port = free_port();
    let cfg = config(dir.path(), port, &smart("good", server.addr));
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        d.event("probe_result", "good", WAIT);
        let text = scrape(port, "/metrics");
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        // promtool exits non-zero for format errors; lint remarks are printed but not fatal.
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(d.stop(WAIT).0, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_readiness_watchdog_reload_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let server = healthy_server(&pki, None).await;
    let port = free_port();
    let cfg = config(dir.path(), port, &smart("good", server.addr));
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    blocking(move || {
        let child = Command::new(binary())
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "1000000")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            lines: channel().1,
            seen: Vec::new(),
        };
        let mut messages = Vec::new();
        let mut next = |want: &str| {
            let mut buf = [0u8; 512];
            loop {
                let n = socket.recv(&mut buf).unwrap_or_else(|e| {
                    panic!("no {want} from the daemon ({e}); got {messages:?}")
                });
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                messages.push(msg.clone());
                if msg.lines().any(|l| l == want) {
                    return msg;
                }
            }
        };
        next("READY=1");
        next("WATCHDOG=1");
        assert_eq!(
            crate::util::health(port),
            0,
            "/healthz answers 200 while the loop runs"
        );
        d.signal(libc::SIGHUP);
        let reloading = next("RELOADING=1");
        assert!(
            reloading.contains("MONOTONIC_USEC="),
            "systemd 253+ needs MONOTONIC_USEC: {reloading}"
        );
        next("READY=1");
        d.signal(libc::SIGTERM);
        next("STOPPING=1");
        let status = d.child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
    })
    .await;
}
