//! The connectors of a benchmark run, their configuration file, and what a `probe --all
//! --json` cycle over them showed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::measure;

/// Every `dead_every`-th connector (if any) points into the black-holed /16; every
/// `openssl_every`-th one (if any) at a server that speaks only a suite rustls lacks.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub size: usize,
    pub dead_every: Option<usize>,
    pub openssl_every: Option<usize>,
}

impl Shape {
    pub fn is_dead(&self, i: usize) -> bool {
        self.dead_every.is_some_and(|n| i % n == n - 1)
    }

    /// Whether connector `i`'s server offers only ECDHE-RSA-AES256-SHA384 (TLS 1.2), one of
    /// EOP's suites that only the probe's OpenSSL engine speaks.
    pub fn needs_openssl(&self, i: usize) -> bool {
        !self.is_dead(i) && self.openssl_every.is_some_and(|n| i % n == 0)
    }

    /// Connector `i`'s address: healthy ones in 127.10.0.0/16 and up, black-holed ones in
    /// 127.200.0.0/16 (see [`crate::netns::BLACKHOLE_PREFIX`]), CBC-only ones in
    /// 127.202.0.0/16 (see [`crate::responder::CBC_ONLY_PREFIX`]). Never `.0` or `.255`.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        let (base, n) = if self.is_dead(i) {
            (200, i)
        } else if self.needs_openssl(i) {
            (crate::responder::CBC_ONLY_PREFIX, i)
        } else {
            (10, i)
        };
        let third = n / 250;
        Ipv4Addr::new(
            127,
            base + (third / 256) as u8,
            (third % 256) as u8,
            1 + (n % 250) as u8,
        )
    }

    pub fn addresses(&self) -> Vec<(usize, Ipv4Addr)> {
        (0..self.size).map(|i| (i, self.address(i))).collect()
    }

    pub fn dead(&self) -> usize {
        (0..self.size).filter(|&i| self.is_dead(i)).count()
    }

    /// All healthy, all spoken by rustls: the shape the others are compared with.
    pub fn is_baseline(&self) -> bool {
        self.dead_every.is_none() && self.openssl_every.is_none()
    }

    pub fn openssl(&self) -> usize {
        (0..self.size).filter(|&i| self.needs_openssl(i)).count()
    }

    /// How the shape reads in the report and on stderr.
    pub fn describe(&self) -> String {
        match (self.dead(), self.openssl()) {
            (0, 0) => "all healthy".to_owned(),
            (d, 0) => format!("{d} black-holed"),
            (0, o) => format!("{o} needing the OpenSSL engine"),
            (d, o) => format!("{d} black-holed, {o} needing the OpenSSL engine"),
        }
    }
}

/// The knobs shared by every connector-probe run.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub concurrency: usize,
    pub connect_timeout: Duration,
}

/// Writes the configuration for `shape` and returns its path.
pub fn write_config(dir: &Path, shape: &Shape, knobs: &Knobs, ca: &Path) -> io::Result<PathBuf> {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by benches/fleet: {} connector(s), {} black-holed.\n\
         [defaults]\nhelo_name = \"probe.fleet.test\"\ntls = \"certificate-validation\"\n\
         [defaults.timeouts]\nconnect = \"{}s\"\n\
         [tls]\nca_file = \"{}\"\n\
         [daemon]\nconcurrency = {}\nmetrics_listen = \"\"\n",
        shape.size,
        shape.dead(),
        knobs.connect_timeout.as_secs(),
        ca.display(),
        knobs.concurrency,
    );
    for (i, addr) in shape.addresses() {
        let _ = writeln!(
            text,
            "[[connector]]\nname = \"fleet-{i:05}\"\nsmart_hosts = [\"{addr}\"]"
        );
    }
    let path = dir.join(format!(
        "fleet-{}{}{}.toml",
        shape.size,
        if shape.dead_every.is_some() {
            "-blackholed"
        } else {
            ""
        },
        if shape.openssl_every.is_some() {
            "-openssl"
        } else {
            ""
        }
    ));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The fields of `probe --json` the benchmark reads.
#[derive(Deserialize)]
struct Verdict {
    connector: String,
    status: String,
    code: Option<String>,
    started_at: String,
    duration_ms: f64,
    targets: Vec<TargetVerdict>,
}

#[derive(Deserialize)]
struct TargetVerdict {
    tls: Option<TlsVerdict>,
}

#[derive(Deserialize)]
struct TlsVerdict {
    engine: String,
}

/// One `probe --all` cycle.
pub struct Cycle {
    pub run: measure::Run,
    /// Connectors that came out as expected: `ok` for healthy, `450 4.4.315` for black-holed.
    pub as_expected: usize,
    /// The others, `name: status code` (a few, for the report).
    pub unexpected: Vec<String>,
    pub unexpected_count: usize,
    /// Spawn to the end of the last healthy connector's probe.
    pub healthy_done: Duration,
    /// Spawn to the end of the last black-holed connector's probe.
    pub dead_done: Option<Duration>,
    /// The healthy connectors' own probe durations, for percentiles.
    pub healthy_ms: Vec<f64>,
}

pub fn cycle(exe: &Path, config: &Path, shape: &Shape) -> io::Result<Cycle> {
    let run = measure::run(
        Command::new(exe)
            .args(["probe", "--all", "--json", "--config"])
            .arg(config),
    )?;
    let verdicts: Vec<Verdict> = serde_json::from_slice(&run.stdout).map_err(|e| {
        io::Error::other(format!(
            "probe --all --json (exit {:?}) printed no verdicts: {e}",
            run.exit_code
        ))
    })?;
    let by_name: BTreeMap<&str, &Verdict> =
        verdicts.iter().map(|v| (v.connector.as_str(), v)).collect();
    let mut c = Cycle {
        as_expected: 0,
        unexpected: Vec::new(),
        unexpected_count: 0,
        healthy_done: Duration::ZERO,
        dead_done: None,
        healthy_ms: Vec::new(),
        run,
    };
    for i in 0..shape.size {
        let name = format!("fleet-{i:05}");
        let Some(v) = by_name.get(name.as_str()) else {
            c.unexpected_count += 1;
            c.unexpected
                .push(format!("{name}: missing from the output"));
            continue;
        };
        let dead = shape.is_dead(i);
        // A CBC-only server is reached by the OpenSSL engine, and only such a server is.
        let engine = v
            .targets
            .first()
            .and_then(|t| t.tls.as_ref())
            .map(|t| t.engine.as_str());
        let want_engine = if shape.needs_openssl(i) {
            "openssl"
        } else {
            "rustls"
        };
        let expected = if dead {
            v.status == "failing" && v.code.as_deref() == Some("450 4.4.315")
        } else {
            v.status == "ok" && engine == Some(want_engine)
        };
        if expected {
            c.as_expected += 1;
        } else {
            c.unexpected_count += 1;
            if c.unexpected.len() < 5 {
                c.unexpected.push(format!(
                    "{name}: {} {}",
                    v.status,
                    v.code.as_deref().unwrap_or("")
                ));
            }
        }
        let done = finished_after(c.run.spawned_at, v)?;
        if dead {
            c.dead_done = Some(c.dead_done.unwrap_or_default().max(done));
        } else {
            c.healthy_done = c.healthy_done.max(done);
            c.healthy_ms.push(v.duration_ms);
        }
    }
    c.healthy_ms.sort_by(f64::total_cmp);
    Ok(c)
}

/// How long after the process was spawned this connector's probe ended.
fn finished_after(spawned_at: SystemTime, v: &Verdict) -> io::Result<Duration> {
    let started = OffsetDateTime::parse(&v.started_at, &Rfc3339)
        .map_err(|e| io::Error::other(format!("started_at {:?}: {e}", v.started_at)))?;
    let spawned = OffsetDateTime::from(spawned_at);
    let end = started + Duration::from_secs_f64(v.duration_ms / 1e3);
    Ok((end - spawned).try_into().unwrap_or_default())
}

/// The `p`-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i]
}
