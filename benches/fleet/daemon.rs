//! The daemon under a fleet: `connector-probe run` with tens of thousands of connectors
//! against the loopback fleet for minutes, measured from the outside (`/proc`, its log
//! lines, `/metrics`): time to load and to reload, CPU per probe, peak RSS, the `/metrics`
//! exposition, what the state files cost the disk, and the main loop's longest tick gap.
//!
//! A flapping run gives some connectors addresses in 127.201.0.0/16, where the responder
//! refuses the session for five minutes out of every ten (see [`crate::responder`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fleet::{Knobs, Shape};
use crate::measure;
use crate::netns::{Background, tied};

/// Where the daemon serves `/metrics` inside the namespace.
const METRICS: &str = "127.0.0.1:9425";

/// One daemon run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub size: usize,
    /// Connectors that flap (the first ones), each failing five minutes in ten.
    pub flapping: usize,
    pub interval: Duration,
    /// Not measured: the first probes of every connector (each is `unknown` → something,
    /// a state change) and the first snapshot.
    pub warmup: Duration,
    pub window: Duration,
    /// A `SIGHUP` in the middle of the window, timed to its `config_reloaded` line.
    pub reload: bool,
}

/// What a daemon run showed.
pub struct Row {
    pub plan: Plan,
    /// Spawn to its `daemon_started` line: configuration, state, one task per connector.
    pub load: Duration,
    /// `SIGHUP` to its `config_reloaded` line (the same file: parse, validate, diff).
    pub reload: Option<Duration>,
    /// Probes completed in the window, and the daemon's CPU over it.
    pub probes: u64,
    pub elapsed: Duration,
    pub cpu: Duration,
    pub peak_rss: u64,
    pub state_changes: u64,
    /// `/metrics` (OpenMetrics, as Prometheus asks) at the end: bytes, wall, daemon CPU.
    pub metrics_bytes: usize,
    pub scrape: Duration,
    pub scrape_cpu: Duration,
    /// In the window: the state writes (each one fsync), their bytes, and what the daemon
    /// sent to the storage layer (`/proc/PID/io` `write_bytes`: whole pages, and ext4's
    /// view of them).
    pub state_writes: f64,
    pub compactions: f64,
    pub state_bytes: f64,
    pub disk_bytes: u64,
    pub longest_tick_gap: f64,
    /// `SIGTERM` to exit (the last state write included).
    pub stop: Duration,
}

/// Counted from the daemon's log lines.
#[derive(Default)]
struct Lines {
    probes: AtomicU64,
    state_changes: AtomicU64,
    started: Mutex<Option<Instant>>,
    reloaded: Mutex<Vec<Instant>>,
}

/// A flapping connector's address: 127.201.0.0/16 (the responder's flapping range).
fn flapping_address(j: usize) -> Ipv4Addr {
    let third = j / 250;
    Ipv4Addr::new(127, 201, third as u8, 1 + (j % 250) as u8)
}

fn write_config(dir: &Path, plan: &Plan, knobs: &Knobs, ca: &Path) -> io::Result<PathBuf> {
    use std::fmt::Write as _;
    let shape = Shape {
        size: plan.size,
        dead_every: None,
        openssl_every: None,
    };
    let mut text = format!(
        "# Written by benches/fleet: the daemon, {} connector(s), {} flapping.\n\
         [defaults]\nhelo_name = \"probe.fleet.test\"\ntls = \"certificate-validation\"\n\
         interval = \"{}s\"\n\
         [defaults.timeouts]\nconnect = \"{}s\"\n\
         [tls]\nca_file = \"{}\"\n\
         [daemon]\nconcurrency = {}\nmetrics_listen = \"{METRICS}\"\nstate_file = \"{}\"\n",
        plan.size,
        plan.flapping,
        plan.interval.as_secs(),
        knobs.connect_timeout.as_secs(),
        ca.display(),
        knobs.concurrency,
        dir.join("state.json").display(),
    );
    for i in 0..plan.size {
        let addr = if i < plan.flapping {
            flapping_address(i)
        } else {
            shape.address(i)
        };
        let _ = writeln!(
            text,
            "[[connector]]\nname = \"fleet-{i:06}\"\nsmart_hosts = [\"{addr}\"]"
        );
    }
    let path = dir.join("daemon.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

pub fn run(exe: &Path, dir: &Path, ca: &Path, knobs: &Knobs, plan: Plan) -> io::Result<Row> {
    let dir = dir.join(format!("daemon-{}-{}", plan.size, plan.flapping));
    std::fs::create_dir_all(&dir)?;
    let config = write_config(&dir, &plan, knobs, ca)?;
    let spawned = Instant::now();
    let mut daemon = Background {
        child: tied(
            exe.to_str()
                .ok_or_else(|| io::Error::other("non-UTF-8 path"))?,
        )
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?,
    };
    let pid = daemon.pid();
    let lines = Arc::new(Lines::default());
    let stdout = daemon.child.stdout.take().expect("piped");
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || read_lines(stdout, &lines))
    };

    let started = wait_for(Duration::from_secs(300), || *lines.started.lock().unwrap())?;
    let load = started - spawned;
    std::thread::sleep(plan.warmup);

    let metrics_before = scrape()?.0;
    let window_start = Sample::take(pid, &lines)?;
    let mut reload = None;
    if plan.reload {
        std::thread::sleep(plan.window / 2);
        let sent = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        let done = wait_for(Duration::from_secs(60), || {
            lines.reloaded.lock().unwrap().last().copied()
        })?;
        reload = Some(done.saturating_duration_since(sent));
        std::thread::sleep(plan.window.saturating_sub(sent.elapsed() + plan.window / 2));
    } else {
        std::thread::sleep(plan.window);
    }
    let end = Sample::take(pid, &lines)?;
    let (text, scrape_wall) = scrape()?;
    let after_scrape = Sample::take(pid, &lines)?;

    let t0 = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = daemon.child.wait()?;
    let stop = t0.elapsed();
    if !status.success() {
        eprintln!("fleet: the daemon exited with {status}");
    }
    let _ = reader.join();

    let metric = |text: &str, name: &str| sum(text, name);
    Ok(Row {
        plan,
        load,
        reload,
        probes: end.probes - window_start.probes,
        cpu: end.cpu.saturating_sub(window_start.cpu),
        elapsed: end.at - window_start.at,
        peak_rss: after_scrape.peak_rss.max(end.peak_rss),
        state_changes: end.state_changes - window_start.state_changes,
        metrics_bytes: text.len(),
        scrape: scrape_wall,
        scrape_cpu: after_scrape.cpu.saturating_sub(end.cpu),
        state_writes: metric(&text, "connector_probe_state_writes_total")
            - metric(&metrics_before, "connector_probe_state_writes_total"),
        compactions: kind(&text, "compaction") - kind(&metrics_before, "compaction"),
        state_bytes: metric(&text, "connector_probe_state_written_bytes_total")
            - metric(&metrics_before, "connector_probe_state_written_bytes_total"),
        disk_bytes: end.disk.saturating_sub(window_start.disk),
        longest_tick_gap: metric(&text, "connector_probe_main_loop_longest_tick_gap_seconds"),
        stop,
    })
}

/// The daemon's counters at one moment.
struct Sample {
    at: Instant,
    cpu: Duration,
    peak_rss: u64,
    disk: u64,
    probes: u64,
    state_changes: u64,
}

impl Sample {
    fn take(pid: u32, lines: &Lines) -> io::Result<Sample> {
        let proc = measure::sample(pid)?;
        let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
        let disk = io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(Sample {
            at: Instant::now(),
            cpu: proc.cpu,
            peak_rss: proc.peak_rss,
            disk,
            probes: lines.probes.load(Ordering::Relaxed),
            state_changes: lines.state_changes.load(Ordering::Relaxed),
        })
    }
}

fn read_lines(stdout: impl Read, lines: &Lines) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        // Substrings, not JSON: the reader must keep up with thousands of lines a second.
        if line.contains("\"event\":\"probe_result\"") {
            lines.probes.fetch_add(1, Ordering::Relaxed);
        } else if line.contains("\"event\":\"state_change\"") {
            lines.state_changes.fetch_add(1, Ordering::Relaxed);
        } else if line.contains("\"event\":\"daemon_started\"") {
            *lines.started.lock().unwrap() = Some(Instant::now());
        } else if line.contains("\"event\":\"config_reloaded\"") {
            lines.reloaded.lock().unwrap().push(Instant::now());
        }
    }
}

fn wait_for<T>(limit: Duration, mut what: impl FnMut() -> Option<T>) -> io::Result<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = what() {
            return Ok(v);
        }
        if t0.elapsed() > limit {
            return Err(io::Error::other("the daemon did not get there in time"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `GET /metrics` as Prometheus asks for it; the body and the wall time to read it all.
fn scrape() -> io::Result<(String, Duration)> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(METRICS)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {METRICS}\r\n\
         Accept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let wall = t0.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((body, wall))
}

/// A chunked body (`/metrics` is streamed) as the bytes it carries; what a cut-off body
/// carried up to the cut.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or("");
    }
    out
}

/// The sum of a metric's samples (every label set).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn kind(text: &str, kind: &str) -> f64 {
    let prefix = format!("connector_probe_state_writes_total{{kind=\"{kind}\"}} ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok())
        .sum()
}

/// `import exchange` of `size` connectors: the export is generated (compact objects with
/// the properties the import reads; every tenth connector shares its name with others, as
/// exports of many tenants' "Outbound to Contoso" do).
pub fn import(exe: &Path, dir: &Path, size: usize) -> io::Result<(measure::Run, u64)> {
    let export = dir.join(format!("export-{size}.json"));
    let mut out = io::BufWriter::new(std::fs::File::create(&export)?);
    out.write_all(b"[\n")?;
    for i in 0..size {
        let name = if i % 10 == 9 {
            format!("Outbound to Contoso {}", i % 1000)
        } else {
            format!("Outbound to tenant {i:06}")
        };
        // TlsDomain only where Exchange uses it, so the import has nothing to say.
        let (tls, domain) = match i % 3 {
            0 => ("EncryptionOnly", "null".to_owned()),
            1 => ("CertificateValidation", "null".to_owned()),
            _ => ("DomainValidation", format!("\"mail.t{i}.example.com\"")),
        };
        writeln!(
            out,
            "  {{\"Enabled\": true, \"UseMXRecord\": false, \"ConnectorType\": \"Partner\", \
             \"ConnectorSource\": \"Default\", \"SmartHosts\": [\"mail.t{i}.example.com\"], \
             \"TlsDomain\": {domain}, \"TlsSettings\": \"{tls}\", \
             \"Name\": \"{name}\", \"WhenChanged\": \"2024-03-18T10:41:27+01:00\"}}{}",
            if i + 1 < size { "," } else { "" }
        )?;
    }
    out.write_all(b"]\n")?;
    out.flush()?;
    drop(out);
    let bytes = std::fs::metadata(&export)?.len();
    let output = dir.join(format!("imported-{size}.toml"));
    let run = measure::run(
        std::process::Command::new(exe)
            .args(["import", "exchange"])
            .arg(&export)
            .arg("--output")
            .arg(&output)
            .arg("--force"),
    )?;
    Ok((run, bytes))
}
