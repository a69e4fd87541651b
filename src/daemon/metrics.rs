//! The `/metrics` + `/healthz` endpoint, and the daemon-wide metrics (through
//! prometheus-client).
//!
//! Where blackbox_exporter has a metric with the same meaning, its name is used
//! (`probe_success`, `probe_duration_seconds`, `probe_ssl_earliest_cert_expiry`), so existing
//! dashboards and alert rules work. Those are per target, as in blackbox_exporter; the
//! connector-level view is under `connector_probe_*`. Both are written from the status
//! page's board at each scrape ([`super::exposition`]), so series of removed connectors and
//! of targets that no longer exist are simply not written, never left stale.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use super::exposition::Format;

type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

pub struct Metrics {
    /// The daemon-wide series; the per-connector ones are written from the board
    /// ([`super::exposition`]).
    registry: Registry,
    reloads: Family<ResultLabels, Counter>,
    connectors: Gauge,
    state_writes: Family<KindLabels, Counter>,
    state_bytes: Counter,
    longest_tick_gap: FGauge,
    /// `vantage="…"` (and `shard="…"`), written into every per-connector series.
    constant: String,
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
        let shard = shard.map(|s| s.index.to_string());
        let labels: Vec<(&str, &str)> = std::iter::once(("vantage", vantage))
            .chain(shard.as_deref().map(|k| ("shard", k)))
            .collect();
        let mut registry = Registry::with_labels(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned().into(), (*v).to_owned().into())),
        );
        let m = Metrics {
            reloads: Family::default(),
            connectors: Gauge::default(),
            state_writes: Family::default(),
            state_bytes: Counter::default(),
            longest_tick_gap: FGauge::default(),
            constant: super::exposition::constant_labels(&labels),
            registry: Registry::default(),
        };
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

    /// The registry's daemon-wide series in `format`, without OpenMetrics' `# EOF` (the
    /// per-connector families follow them).
    fn head(&self, format: Format) -> String {
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &self.registry)
            .expect("writing to a String");
        let om = om.strip_suffix("# EOF\n").unwrap_or(&om);
        match format {
            Format::OpenMetrics => om.to_owned(),
            Format::Text => openmetrics_to_text(om),
        }
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
                        let page = super::page::serve(page, &shared).await;
                        return Ok::<_, Infallible>(page.map(BodyExt::boxed));
                    }
                    Ok(respond(&req, &shared))
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

/// A response body of any kind: a page or a short text whole, `/metrics` streamed.
type Body = BoxBody<Bytes, Infallible>;

/// `/metrics`' body: the chunks [`super::exposition::stream`] sends, as they come.
struct Chunks(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn respond(req: &Request<Incoming>, shared: &super::Shared) -> Response<Body> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)).boxed())
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
        "/metrics" => {
            let (format, content_type) = if openmetrics {
                (
                    Format::OpenMetrics,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (Format::Text, "text/plain; version=0.0.4; charset=utf-8")
            };
            // A few chunks in flight: a slow scraper holds the writer, not the memory.
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(super::exposition::stream(
                shared.board.snapshot(),
                shared.metrics.head(format),
                shared.metrics.constant.clone(),
                format,
                tx,
            ));
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", content_type)
                .body(Chunks(rx).boxed())
                .expect("static response parts")
        }
        "/healthz" if !shared.heartbeat.fresh() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "stuck: the scheduler has not ticked recently\n".into(),
        ),
        "/healthz" => match shared.faults.problem() {
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
