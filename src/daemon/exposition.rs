//! The per-connector and per-target metrics, written from the board and streamed.
//!
//! At 100,000 connectors a registry of label sets (prometheus-client's families) held some
//! twenty series per connector, each with its own labels and hash-map entry, and every probe
//! looked up and updated twenty of them; a scrape then built the whole exposition (224 MB) in
//! memory before sending it. Together that was most of a gigabyte of RSS and a third of the
//! daemon's CPU beyond the probes themselves. The board ([`super::history`]) already keeps one
//! compact record per connector for the status page, so `/metrics` is written from it: a
//! scrape takes a snapshot of the board (two pointers per connector, no copy of any record),
//! writes family after family into a buffer, and hands the buffer to the HTTP response each
//! time it fills. Memory per scrape is the snapshot and a few buffers whatever the fleet, and
//! a probe costs one record, not twenty series.
//!
//! The daemon-wide series (reloads, state writes, the main loop's tick gap) stay in
//! prometheus-client's registry ([`super::metrics`]); this module writes the rest.

use std::fmt::Write as _;

use hyper::body::Bytes;
use tokio::sync::mpsc;

use super::history::{Entry, Named, STATUSES, TargetSummary};

/// The exposition formats Prometheus and other scrapers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0: counters named without `_total` in `# TYPE`, `# EOF` at the end.
    OpenMetrics,
    /// The classic text format 0.0.4.
    Text,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

/// One metric family: its name, help and how to write its samples for one connector.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: fn(&mut Samples<'_>, &str, &Entry),
}

/// Where a family's samples go: the buffer, the family's name and the labels every series
/// carries (`vantage`, and `shard` in a shard).
struct Samples<'a> {
    out: &'a mut String,
    name: &'a str,
    constant: &'a str,
}

/// A label value as the formats need it: backslash, double quote and newline escaped.
fn escaped(out: &mut String, value: &str) {
    // Names, hosts and addresses almost never need it: copied whole, not char by char.
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: integers as integers, the rest in the shortest form that reads back the
/// same, never in exponent notation (both formats accept it; people read it).
enum Value {
    Int(i64),
    Float(f32),
}

impl Samples<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: Value) {
        self.out.push_str(self.name);
        self.out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            escaped(self.out, v);
            self.out.push('"');
        }
        if !self.constant.is_empty() {
            if !labels.is_empty() {
                self.out.push(',');
            }
            self.out.push_str(self.constant);
        }
        self.out.push_str("} ");
        let _ = match value {
            Value::Int(n) => write!(self.out, "{n}"),
            Value::Float(x) if x.is_nan() => write!(self.out, "NaN"),
            Value::Float(x) => write!(self.out, "{x}"),
        };
        self.out.push('\n');
    }

    /// One sample per target that has a latest probe, labelled like blackbox_exporter's.
    fn per_target(
        &mut self,
        connector: &str,
        e: &Entry,
        value: impl Fn(&TargetSummary) -> Option<Value>,
    ) {
        let Some(latest) = &e.latest else { return };
        for t in latest.targets.iter() {
            if let Some(v) = value(t) {
                let target = t.endpoint();
                self.sample(
                    &[
                        ("connector", connector),
                        ("host", t.host()),
                        ("target", &target),
                    ],
                    v,
                );
            }
        }
    }
}

fn seconds(ms: f32) -> Value {
    Value::Float(ms / 1e3)
}

const FAMILIES: &[Family] = &[
    Family {
        name: "probe_success",
        help: "Whether the target accepted the session up to QUIT (blackbox_exporter's name)",
        kind: Kind::Gauge,
        samples: |s, c, e| s.per_target(c, e, |t| Some(Value::Int(i64::from(t.succeeded)))),
    },
    Family {
        name: "probe_duration_seconds",
        help: "How long the target's probe took, resolve to QUIT (blackbox_exporter's name)",
        kind: Kind::Gauge,
        samples: |s, c, e| s.per_target(c, e, |t| Some(seconds(t.total_ms))),
    },
    Family {
        name: "probe_ssl_earliest_cert_expiry",
        help: "Expiry of the target's certificate, Unix seconds (blackbox_exporter's name)",
        kind: Kind::Gauge,
        samples: |s, c, e| s.per_target(c, e, |t| t.earliest_expiry().map(Value::Int)),
    },
    Family {
        name: "connector_probe_stage_duration_seconds",
        help: "Time spent in each pipeline stage of the target's last probe (three significant digits)",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            let Some(latest) = &e.latest else { return };
            for t in latest.targets.iter() {
                let target = t.endpoint();
                for (stage, ms) in t.timings() {
                    s.sample(
                        &[
                            ("connector", c),
                            ("host", t.host()),
                            ("target", &target),
                            ("stage", stage.as_str()),
                        ],
                        seconds(ms),
                    );
                }
            }
        },
    },
    Family {
        name: "connector_probe_target_code_info",
        help: "The code the target produced in its last probe (1 for the current code)",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            let Some(latest) = &e.latest else { return };
            for t in latest.targets.iter() {
                if let Some(code) = t.code() {
                    let target = t.endpoint();
                    s.sample(
                        &[
                            ("connector", c),
                            ("host", t.host()),
                            ("target", &target),
                            ("code", code),
                        ],
                        Value::Int(1),
                    );
                }
            }
        },
    },
    Family {
        name: "connector_probe_connector_success",
        help: "1 unless the connector is failing (EOP would queue its mail)",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            if let Some(latest) = &e.latest {
                let ok = latest.status != crate::verdict::Status::Failing;
                s.sample(&[("connector", c)], Value::Int(i64::from(ok)));
            }
        },
    },
    Family {
        name: "connector_probe_status",
        help: "The connector's status, one series per status, 1 for the current one",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            if let Some(latest) = &e.latest {
                for status in STATUSES {
                    let on = i64::from(status == latest.status);
                    s.sample(
                        &[("connector", c), ("status", status.as_str())],
                        Value::Int(on),
                    );
                }
            }
        },
    },
    Family {
        name: "connector_probe_code_info",
        help: "The code of a failing connector (1 for the current code; absent when not failing)",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            if let Some(code) = e.latest.as_ref().and_then(|l| l.code()) {
                s.sample(&[("connector", c), ("code", code)], Value::Int(1));
            }
        },
    },
    Family {
        name: "connector_probe_duration_seconds",
        help: "How long the connector's last probe took",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            if let Some(latest) = &e.latest {
                s.sample(&[("connector", c)], seconds(latest.duration_ms));
            }
        },
    },
    Family {
        name: "connector_probe_failing_since_timestamp_seconds",
        help: "When the connector's current failing episode began, Unix seconds (absent when not failing)",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            if let Some(t) = e.failing_since {
                s.sample(&[("connector", c)], Value::Int(t));
            }
        },
    },
    Family {
        name: "connector_probe_last_success_timestamp_seconds",
        help: "When the connector last was not failing, Unix seconds",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            if let Some(t) = e.last_success {
                s.sample(&[("connector", c)], Value::Int(t));
            }
        },
    },
    Family {
        name: "connector_probe_last_probe_timestamp_seconds",
        help: "When the connector was last probed, Unix seconds",
        kind: Kind::Gauge,
        samples: |s, c, e| {
            if let Some(t) = e.last_probe {
                s.sample(&[("connector", c)], Value::Int(t));
            }
        },
    },
    Family {
        name: "connector_probe_probes",
        help: "Probes run since the daemon started, by connector and resulting status",
        kind: Kind::Counter,
        samples: |s, c, e| {
            for (status, n) in STATUSES.iter().zip(e.probes) {
                if n > 0 {
                    s.sample(
                        &[("connector", c), ("status", status.as_str())],
                        Value::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                    );
                }
            }
        },
    },
];

/// A buffer is sent once it holds this much: large enough that a scrape of 100,000
/// connectors is a few thousand sends, small enough to be nothing next to the fleet.
const CHUNK: usize = 64 * 1024;

/// The labels every series carries, written once: `vantage="…",shard="…"`.
pub fn constant_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"");
        escaped(&mut out, v);
        out.push('"');
    }
    out
}

/// Writes every family of `entries` after `head` (the registry's own series, already in
/// `format`), sending a chunk whenever one fills; ends with `# EOF` in OpenMetrics. Stops
/// early when the receiver is gone (the scraper hung up).
pub async fn stream(
    entries: Vec<Named>,
    head: String,
    constant: String,
    format: Format,
    tx: mpsc::Sender<Bytes>,
) {
    let mut out = head;
    out.reserve(CHUNK);
    for family in FAMILIES {
        write_header(&mut out, family, format);
        let name = match (family.kind, format) {
            (Kind::Counter, _) => format!("{}_total", family.name),
            (Kind::Gauge, _) => family.name.to_owned(),
        };
        for (connector, entry) in &entries {
            let mut samples = Samples {
                out: &mut out,
                name: &name,
                constant: &constant,
            };
            (family.samples)(&mut samples, connector, entry);
            if out.len() >= CHUNK {
                let full = std::mem::replace(&mut out, String::with_capacity(CHUNK + CHUNK / 4));
                if tx.send(Bytes::from(full)).await.is_err() {
                    return;
                }
            }
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    let _ = tx.send(Bytes::from(out)).await;
}

fn write_header(out: &mut String, family: &Family, format: Format) {
    let (name, kind) = match (family.kind, format) {
        (Kind::Gauge, _) => (family.name.to_owned(), "gauge"),
        (Kind::Counter, Format::OpenMetrics) => (family.name.to_owned(), "counter"),
        (Kind::Counter, Format::Text) => (format!("{}_total", family.name), "counter"),
    };
    // prometheus-client ends every help text with a full stop; the same here, so the two
    // halves of the exposition read alike.
    let _ = writeln!(out, "# HELP {name} {}.", family.help);
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition of `entries` as one string, for the tests (the daemon streams).
#[cfg(test)]
pub async fn collect(
    entries: Vec<Named>,
    head: String,
    constant: String,
    format: Format,
) -> String {
    let (tx, mut rx) = mpsc::channel(4);
    let writer = tokio::spawn(stream(entries, head, constant, format, tx));
    let mut text = String::new();
    while let Some(chunk) = rx.recv().await {
        text.push_str(std::str::from_utf8(&chunk).expect("written as a String"));
    }
    let _ = writer.await;
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::history::{Board, Dates};
    use crate::verdict::{ConnectorVerdict, Stage, Status, TargetVerdict};

    /// A board of `n` probed connectors (every third failing), and one named to break the
    /// format if label values were not escaped.
    fn board(n: usize) -> Board {
        let mut names: Vec<String> = (0..n).map(|i| format!("c{i:05}")).collect();
        names.push("evil\"} 1\nprobe_success{x=\"".into());
        let board = Board::default();
        board.configure(names.iter().map(String::as_str));
        for (i, name) in names.iter().enumerate() {
            let mut t = TargetVerdict::new("mail.example.com", Some([127, 0, 0, 1].into()), 25);
            t.timings_ms.insert(Stage::Connect, 1.5);
            t.timings_ms.insert(Stage::Tls, 12.25);
            let mut v = ConnectorVerdict::new(
                name,
                crate::config::TlsMode::Opportunistic,
                crate::config::CertificateFailureCode::CertificateValidationFailed,
                "2026-11-30T12:00:00Z".into(),
                14.0,
                vec![t],
            );
            v.status = if i % 3 == 0 {
                v.code = Some("450 4.4.316");
                Status::Failing
            } else {
                Status::Ok
            };
            let dates = Dates {
                failing_since: (i % 3 == 0).then_some(1_000),
                last_probe: Some(2_000),
                last_success: Some(1_500),
            };
            board.record(&v, dates, 2_000);
        }
        board
    }

    #[tokio::test]
    async fn the_exposition_is_streamed_in_chunks_and_reads_back() {
        let n = 3_000;
        let board = board(n);
        let (tx, mut rx) = mpsc::channel(4);
        let constant = constant_labels(&[("vantage", "here")]);
        let writer = tokio::spawn(stream(
            board.snapshot(),
            String::new(),
            constant,
            Format::Text,
            tx,
        ));
        let mut chunks = 0;
        let mut text = String::new();
        while let Some(chunk) = rx.recv().await {
            assert!(chunk.len() < 2 * CHUNK, "a chunk of {} bytes", chunk.len());
            chunks += 1;
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        writer.await.unwrap();
        assert!(chunks > 10, "{chunks} chunks for {} bytes", text.len());
        // The hostile name stays inside its label value: its lines are the only ones that
        // mention it, each a whole sample of its own, and nothing it says starts a line.
        let evil: Vec<&str> = text.lines().filter(|l| l.contains("evil")).collect();
        assert_eq!(evil.len(), 15, "{evil:#?}");
        let escaped_name = r#"{connector="evil\"} 1\nprobe_success{x=\"","#;
        assert!(evil.iter().all(|l| l.contains(escaped_name)), "{evil:#?}");
        assert!(!text.lines().any(|l| l.starts_with("probe_success{x=")));
        // prometheus-parse cannot read escaped quotes; the rest it reads as Prometheus would.
        let scrape = prometheus_parse::Scrape::parse(
            text.lines()
                .filter(|l| !l.contains("evil"))
                .map(|l| Ok(l.to_owned())),
        )
        .unwrap();
        let of = |metric: &'static str| scrape.samples.iter().filter(move |s| s.metric == metric);
        assert_eq!(of("probe_success").count(), n);
        assert!(of("probe_success").all(|s| s.labels.get("vantage") == Some("here")));
        assert_eq!(of("connector_probe_status").count(), 4 * n);
        assert_eq!(of("connector_probe_stage_duration_seconds").count(), 2 * n);
        assert_eq!(
            of("connector_probe_code_info").count(),
            n.div_ceil(3),
            "only the failing connectors"
        );
        let tls = of("connector_probe_stage_duration_seconds")
            .find(|s| s.labels.get("stage") == Some("tls"))
            .unwrap();
        assert!(
            matches!(tls.value, prometheus_parse::Value::Gauge(v) if (v - 0.01225).abs() < 1e-4)
        );
    }

    #[tokio::test]
    async fn openmetrics_ends_with_eof_and_names_counters_without_total() {
        let text = collect(
            board(3).snapshot(),
            String::new(),
            String::new(),
            Format::OpenMetrics,
        )
        .await;
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE connector_probe_probes counter\n"));
        assert!(text.contains(
            "\nconnector_probe_probes_total{connector=\"c00000\",status=\"failing\"} 1\n"
        ));
        let plain = collect(
            board(3).snapshot(),
            String::new(),
            String::new(),
            Format::Text,
        )
        .await;
        assert!(!plain.contains("# EOF"));
        assert!(plain.contains("# TYPE connector_probe_probes_total counter\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escaped(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
        assert_eq!(
            constant_labels(&[("vantage", "x\"y"), ("shard", "1")]),
            "vantage=\"x\\\"y\",shard=\"1\""
        );
    }
}
