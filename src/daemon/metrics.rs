//! Prometheus metrics (through prometheus-client) and the `/metrics` + `/healthz` endpoint.
//!
//! Where blackbox_exporter has a metric with the same meaning, its name is used
//! (`probe_success`, `probe_duration_seconds`, `probe_ssl_earliest_cert_expiry`), so existing
//! dashboards and alert rules work. Those are per target, as in blackbox_exporter; the
//! connector-level view is under `connector_probe_*`. Series of removed connectors and of
//! targets that no longer exist are deleted, not left stale.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::state::ConnectorState;
use crate::verdict::{ConnectorVerdict, Status};

type FGauge = Gauge<f64, AtomicU64>;

/// A label value shared by every series that carries it: at 100,000 connectors there are
/// millions of series, and a `String` per label of each was most of the daemon's memory.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Text(Arc<str>);

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Arc::from(s))
    }
}

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    connector: Text,
    host: Text,
    target: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    connector: Text,
    host: Text,
    target: Text,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    connector: Text,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    connector: Text,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetCodeLabels {
    connector: Text,
    host: Text,
    target: Text,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// The label sets a connector currently has, so stale ones can be removed.
#[derive(Default)]
struct Series {
    targets: Vec<TargetLabels>,
    stages: Vec<StageLabels>,
    target_codes: Vec<TargetCodeLabels>,
    codes: Vec<CodeLabels>,
}

const STATUSES: [Status; 4] = [
    Status::Ok,
    Status::Warning,
    Status::Degraded,
    Status::Failing,
];

pub struct Metrics {
    registry: Registry,
    probe_success: Family<TargetLabels, Gauge>,
    probe_duration: Family<TargetLabels, FGauge>,
    ssl_expiry: Family<TargetLabels, FGauge>,
    stage_duration: Family<StageLabels, FGauge>,
    target_code: Family<TargetCodeLabels, Gauge>,
    connector_success: Family<ConnectorLabels, Gauge>,
    connector_status: Family<StatusLabels, Gauge>,
    connector_code: Family<CodeLabels, Gauge>,
    connector_duration: Family<ConnectorLabels, FGauge>,
    failing_since: Family<ConnectorLabels, FGauge>,
    last_success: Family<ConnectorLabels, FGauge>,
    last_probe: Family<ConnectorLabels, FGauge>,
    probes: Family<StatusLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    connectors: Gauge,
    state_writes: Family<KindLabels, Counter>,
    state_bytes: Counter,
    longest_tick_gap: FGauge,
    /// The size of the last exposition, to size the next one's buffer.
    exposition_bytes: AtomicUsize,
    series: Mutex<HashMap<String, Series>>,
}

fn unix(t: time::OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&crate::config::hostname(), None)
    }
}

impl Metrics {
    /// Every series carries `vantage` (where the probes run from) and, for a shard, `shard`
    /// (its index K): Prometheus compares vantages and notices a shard that went silent.
    pub fn new(vantage: &str, shard: Option<crate::shard::Shard>) -> Metrics {
        let constant = std::iter::once(("vantage", vantage.to_owned()))
            .chain(shard.map(|s| ("shard", s.index.to_string())))
            .map(|(k, v)| (k.into(), v.into()));
        let mut registry = Registry::with_labels(constant);
        let m = Metrics {
            probe_success: Family::default(),
            probe_duration: Family::default(),
            ssl_expiry: Family::default(),
            stage_duration: Family::default(),
            target_code: Family::default(),
            connector_success: Family::default(),
            connector_status: Family::default(),
            connector_code: Family::default(),
            connector_duration: Family::default(),
            failing_since: Family::default(),
            last_success: Family::default(),
            last_probe: Family::default(),
            probes: Family::default(),
            reloads: Family::default(),
            connectors: Gauge::default(),
            state_writes: Family::default(),
            state_bytes: Counter::default(),
            longest_tick_gap: FGauge::default(),
            exposition_bytes: AtomicUsize::new(0),
            series: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "probe_success",
            "Whether the target accepted the session up to QUIT (blackbox_exporter's name)",
            m.probe_success.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "How long the target's probe took, resolve to QUIT (blackbox_exporter's name)",
            m.probe_duration.clone(),
        );
        registry.register(
            "probe_ssl_earliest_cert_expiry",
            "Expiry of the target's certificate, Unix seconds (blackbox_exporter's name)",
            m.ssl_expiry.clone(),
        );
        registry.register(
            "connector_probe_stage_duration_seconds",
            "Time spent in each pipeline stage of the target's last probe",
            m.stage_duration.clone(),
        );
        registry.register(
            "connector_probe_target_code_info",
            "The code the target produced in its last probe (1 for the current code)",
            m.target_code.clone(),
        );
        registry.register(
            "connector_probe_connector_success",
            "1 unless the connector is failing (EOP would queue its mail)",
            m.connector_success.clone(),
        );
        registry.register(
            "connector_probe_status",
            "The connector's status, one series per status, 1 for the current one",
            m.connector_status.clone(),
        );
        registry.register(
            "connector_probe_code_info",
            "The code of a failing connector (1 for the current code; absent when not failing)",
            m.connector_code.clone(),
        );
        registry.register(
            "connector_probe_duration_seconds",
            "How long the connector's last probe took",
            m.connector_duration.clone(),
        );
        registry.register(
            "connector_probe_failing_since_timestamp_seconds",
            "When the connector's current failing episode began, Unix seconds (absent when not failing)",
            m.failing_since.clone(),
        );
        registry.register(
            "connector_probe_last_success_timestamp_seconds",
            "When the connector last was not failing, Unix seconds",
            m.last_success.clone(),
        );
        registry.register(
            "connector_probe_last_probe_timestamp_seconds",
            "When the connector was last probed, Unix seconds",
            m.last_probe.clone(),
        );
        registry.register(
            "connector_probe_probes",
            "Probes run, by connector and resulting status",
            m.probes.clone(),
        );
        registry.register(
            "connector_probe_config_reloads",
            "Configuration reloads, by result",
            m.reloads.clone(),
        );
        registry.register(
            "connector_probe_connectors",
            "Connectors in the running configuration",
            m.connectors.clone(),
        );
        registry.register(
            "connector_probe_state_writes",
            "Writes of the state files, each with one fsync: journal appends and compactions",
            m.state_writes.clone(),
        );
        registry.register(
            "connector_probe_state_written_bytes",
            "Bytes written to the state files (journal and snapshot)",
            m.state_bytes.clone(),
        );
        registry.register(
            "connector_probe_main_loop_longest_tick_gap_seconds",
            "The longest time between two ticks of the main loop (due every second at most), which stamp /healthz and ping the watchdog",
            m.longest_tick_gap.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The exposition in the OpenMetrics text format (what Prometheus asks for).
    ///
    /// At 100,000 connectors this is millions of lines and seconds of work, with each
    /// family's lock held while it is written: on a daemon's worker thread it runs as
    /// blocking work (`block_in_place`), so the worker's other tasks move to another thread
    /// instead of waiting behind it.
    pub fn encode(&self) -> String {
        let encode = || {
            // Sized from the last scrape: grown by doubling, the buffer of a 200 MB
            // exposition could end up with 56 MB of room it never uses, after a series of
            // ever larger copies.
            let last = self.exposition_bytes.load(Ordering::Relaxed);
            let mut out = String::with_capacity(last + last / 8);
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
                .expect("writing to a String");
            self.exposition_bytes.store(out.len(), Ordering::Relaxed);
            out
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(encode)
            }
            _ => encode(),
        }
    }

    /// The exposition in the classic Prometheus text format (0.0.4), for scrapers and tools
    /// that do not ask for OpenMetrics (curl, promtool, older agents).
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    pub fn set_connectors(&self, n: usize) {
        self.connectors.set(n as i64);
    }

    /// The main loop ticked, `gap` after its previous tick.
    pub fn ticked(&self, gap: Duration) {
        let gap = gap.as_secs_f64();
        if gap > self.longest_tick_gap.get() {
            self.longest_tick_gap.set(gap);
        }
    }

    /// A flush of the state files ended.
    pub fn state_written(&self, flushed: super::state::Flushed) {
        use super::state::Flushed;
        let (kind, bytes) = match flushed {
            Flushed::Nothing => return,
            Flushed::Appended { bytes, .. } => ("append", bytes),
            Flushed::Compacted { bytes } => ("compaction", bytes),
        };
        self.state_writes
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
        self.state_bytes.inc_by(bytes);
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Restores the connector-level series from persisted state (at start), so
    /// `failing_since` is exported before the first probe of a restarted daemon.
    pub fn restore(&self, connector: &str, state: &ConnectorState) {
        let c = ConnectorLabels {
            connector: connector.into(),
        };
        if let Some(since) = state.failing_since {
            self.failing_since.get_or_create(&c).set(unix(since));
        }
        if let Some(t) = state.last_success {
            self.last_success.get_or_create(&c).set(unix(t));
        }
    }

    /// Records a probe result.
    pub fn record(&self, v: &ConnectorVerdict, state: &ConnectorState) {
        let name = Text::from(v.connector.as_str());
        let c = ConnectorLabels {
            connector: name.clone(),
        };
        let mut now = Series::default();
        for t in &v.targets {
            let tl = TargetLabels {
                connector: name.clone(),
                host: t.host.as_str().into(),
                target: t.endpoint().as_str().into(),
            };
            self.probe_success
                .get_or_create(&tl)
                .set(i64::from(t.succeeded()));
            let total: f64 = t.timings_ms.values().sum();
            self.probe_duration.get_or_create(&tl).set(total / 1e3);
            match &t.certificate {
                Some(cert) => {
                    self.ssl_expiry
                        .get_or_create(&tl)
                        .set(cert.earliest_expiry_unix as f64);
                }
                None => remove(&self.ssl_expiry, &tl),
            }
            for (stage, ms) in &t.timings_ms {
                let sl = StageLabels {
                    connector: name.clone(),
                    host: tl.host.clone(),
                    target: tl.target.clone(),
                    stage: stage.as_str(),
                };
                self.stage_duration.get_or_create(&sl).set(ms / 1e3);
                now.stages.push(sl);
            }
            if let Some(code) = t.code {
                let cl = TargetCodeLabels {
                    connector: name.clone(),
                    host: tl.host.clone(),
                    target: tl.target.clone(),
                    code,
                };
                self.target_code.get_or_create(&cl).set(1);
                now.target_codes.push(cl);
            }
            now.targets.push(tl);
        }
        self.connector_success
            .get_or_create(&c)
            .set(i64::from(v.status != Status::Failing));
        for s in STATUSES {
            let sl = StatusLabels {
                connector: name.clone(),
                status: s.as_str(),
            };
            self.connector_status
                .get_or_create(&sl)
                .set(i64::from(s == v.status));
        }
        if let Some(code) = v.code {
            let cl = CodeLabels {
                connector: name.clone(),
                code,
            };
            self.connector_code.get_or_create(&cl).set(1);
            now.codes.push(cl);
        }
        self.connector_duration
            .get_or_create(&c)
            .set(v.duration_ms / 1e3);
        match state.failing_since {
            Some(since) => {
                self.failing_since.get_or_create(&c).set(unix(since));
            }
            None => remove(&self.failing_since, &c),
        }
        if let Some(t) = state.last_success {
            self.last_success.get_or_create(&c).set(unix(t));
        }
        if let Some(t) = state.last_probe {
            self.last_probe.get_or_create(&c).set(unix(t));
        }
        self.probes
            .get_or_create(&StatusLabels {
                connector: name.clone(),
                status: v.status.as_str(),
            })
            .inc();

        // The shared map is held only to swap this connector's entry; the diff runs outside
        // it, so one large connector does not hold up every other connector's probe. A
        // connector's probes never overlap, so nobody else writes its entry meanwhile.
        let before = super::health::lock(&self.series).remove(&v.connector);
        if let Some(before) = before {
            self.remove_stale(&before, &now);
        }
        super::health::lock(&self.series).insert(v.connector.clone(), now);
    }

    /// Deletes the series `before` had and `after` does not: linear in their sizes (a set
    /// of `after`'s labels, not a scan of it per label, which froze a connector with many
    /// targets for seconds).
    fn remove_stale(&self, before: &Series, after: &Series) {
        fn gone<'a, T: Eq + std::hash::Hash>(
            before: &'a [T],
            after: &[T],
        ) -> impl Iterator<Item = &'a T> {
            let kept: HashSet<&T> = after.iter().collect();
            before.iter().filter(move |x| !kept.contains(x))
        }
        for t in gone(&before.targets, &after.targets) {
            self.probe_success.remove(t);
            self.probe_duration.remove(t);
            self.ssl_expiry.remove(t);
        }
        for s in gone(&before.stages, &after.stages) {
            self.stage_duration.remove(s);
        }
        for c in gone(&before.target_codes, &after.target_codes) {
            self.target_code.remove(c);
        }
        for c in gone(&before.codes, &after.codes) {
            self.connector_code.remove(c);
        }
    }

    /// Deletes every series of a connector that is no longer configured.
    pub fn forget(&self, connector: &str) {
        let before = super::health::lock(&self.series).remove(connector);
        if let Some(before) = before {
            self.remove_stale(&before, &Series::default());
        }
        let c = ConnectorLabels {
            connector: connector.into(),
        };
        for family in [
            &self.connector_duration,
            &self.failing_since,
            &self.last_success,
            &self.last_probe,
        ] {
            family.remove(&c);
        }
        self.connector_success.remove(&c);
        for s in STATUSES {
            let sl = StatusLabels {
                connector: c.connector.clone(),
                status: s.as_str(),
            };
            self.connector_status.remove(&sl);
            self.probes.remove(&sl);
        }
    }
}

/// Removes a series if it exists. A removal takes the family's write lock, which waits for
/// a scrape that is writing the family out; most probes have nothing to remove (a healthy
/// connector has no `failing_since`), and a look takes only the read lock.
fn remove<S, M, C>(family: &Family<S, M, C>, labels: &S)
where
    S: Clone + std::hash::Hash + Eq,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    if family.get(labels).is_some() {
        family.remove(labels);
    }
}

/// OpenMetrics names a counter family without `_total` and ends with `# EOF`; the classic
/// text format names the family as its samples are named, and has no EOF marker.
fn openmetrics_to_text(om: &str) -> String {
    let counters: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Liveness: the daemon's main loop stamps this every tick; `/healthz` and the systemd
/// watchdog both trust it only while it is fresh.
#[derive(Default)]
pub struct Heartbeat {
    unix_ms: AtomicU64,
}

impl Heartbeat {
    /// How old the heartbeat may be before the daemon counts as stuck.
    pub const STALE: Duration = Duration::from_secs(15);

    pub fn beat(&self) {
        self.unix_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn fresh(&self) -> bool {
        now_ms().saturating_sub(self.unix_ms.load(Ordering::Relaxed))
            < Self::STALE.as_millis() as u64
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Serves `/metrics`, `/healthz` and the status page ([`super::page`]) until the task is
/// aborted. Each connection is bounded in time, so a slow or hostile scraper cannot hold
/// resources.
pub async fn serve(listener: TcpListener, shared: std::sync::Arc<super::Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    if let Some(page) = super::page::route(&req) {
                        return Ok::<_, Infallible>(super::page::serve(page, &shared).await);
                    }
                    Ok(respond(
                        &req,
                        &shared.metrics,
                        &shared.heartbeat,
                        &shared.faults,
                    ))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    metrics: &Metrics,
    heartbeat: &Heartbeat,
    faults: &super::health::Faults,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let openmetrics = req
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.contains("application/openmetrics-text"))
        });
    match req.uri().path() {
        "/metrics" if openmetrics => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.encode_text(),
        ),
        "/healthz" if !heartbeat.fresh() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "stuck: the scheduler has not ticked recently\n".into(),
        ),
        "/healthz" => match faults.problem() {
            None => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            Some(problem) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("unhealthy: {problem}\n"),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /healthz\n".into(),
        ),
    }
}

/// The client side of `/healthz`, for `connector-probe health` (a container HEALTHCHECK
/// needs no curl in the image). An unspecified listen address is asked on loopback.
pub fn check_health(listen: SocketAddr, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| format!("{addr}: {e}"))?;
    let status = String::from_utf8_lossy(&head[..n]);
    let line = status.lines().next().unwrap_or("");
    if line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("{addr}/healthz answered {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_like_their_samples() {
        let om = "# HELP a_seconds A gauge.\n# TYPE a_seconds gauge\na_seconds 1.5\n# HELP b Probes.\n# TYPE b counter\nb_total{x=\"1\"} 3\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP a_seconds A gauge.\n# TYPE a_seconds gauge\na_seconds 1.5\n# HELP b_total Probes.\n# TYPE b_total counter\nb_total{x=\"1\"} 3\n"
        );
    }
}
