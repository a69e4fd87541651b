//! The Markdown report: what ran, the figures, the ratios to the peers, and the issue's
//! targets with whether this run met them. Figures are reported, never asserted.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::blackbox;
use crate::daemon;
use crate::fleet::{self, Cycle, Knobs, Shape};
use crate::oneshot::Tool;

const MIB: f64 = 1024.0 * 1024.0;

/// The targets.
const CYCLE_TARGET: Duration = Duration::from_secs(30);
const CPU_PER_PROBE_TARGET_MS: f64 = 1.0;
const RSS_TARGET_MIB: f64 = 100.0;

pub struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    load: String,
    commit: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(env!("CARGO_MANIFEST_DIR"))
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let commit = match (
            git(&["rev-parse", "--short", "HEAD"]),
            git(&["status", "--porcelain"]),
        ) {
            (Some(c), Some(s)) if !s.is_empty() => format!("{c} (with uncommitted changes)"),
            (Some(c), _) => c,
            _ => "unknown".into(),
        };
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            load: read_trim("/proc/loadavg"),
            commit,
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

pub struct CycleRow {
    pub shape: Shape,
    pub cycle: Cycle,
    /// CPU the responder spent serving the cycle (context, not counted against the probe).
    pub fleet_cpu: Duration,
}

pub struct Report {
    machine: Machine,
    knobs: Knobs,
    probe: String,
    pub cycles: Vec<CycleRow>,
    pub blackbox: Vec<(Shape, blackbox::Cycle)>,
    pub one_shot: Vec<Tool>,
    pub daemons: Vec<daemon::Row>,
    /// Connectors, the import's run, and the export's size.
    pub import: Option<(usize, (crate::measure::Run, u64))>,
    pub missing: Vec<String>,
}

impl Report {
    pub fn new(args: &crate::Args, machine: Machine) -> Report {
        Report {
            machine,
            knobs: args.knobs,
            probe: args.probe.display().to_string(),
            cycles: Vec::new(),
            blackbox: Vec::new(),
            one_shot: Vec::new(),
            daemons: Vec::new(),
            import: None,
            missing: Vec::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        self.header(&mut o);
        self.cycles(&mut o);
        self.blackholed(&mut o);
        self.openssl(&mut o);
        self.blackbox(&mut o);
        self.one_shot(&mut o);
        self.daemons(&mut o);
        self.import(&mut o);
        self.targets(&mut o);
        if !self.missing.is_empty() {
            let _ = writeln!(
                o,
                "\nNot run, not installed: {} (apt-get install prometheus-blackbox-exporter \
                 monitoring-plugins-basic openssl swaks).",
                self.missing.join(", ")
            );
        }
        o
    }

    fn header(&self, o: &mut String) {
        let m = &self.machine;
        let _ = writeln!(
            o,
            "# Fleet benchmark\n\n\
             - machine: {} core(s), {}, Linux {}; load average at start: {}\n\
             - connector-probe: commit {}, `{}`\n\
             - fleet: one responder (tokio-rustls, 2 threads) on 0.0.0.0:25 in a private \
             network namespace, answering every 127.x.y.z; ECDSA P-256 leaf + intermediate, \
             TLS 1.3\n\
             - connectors: one smart host each (an IP literal), `tls = \"certificate-validation\"` \
             (chain and dates against the fleet CA in `[tls] ca_file`, plus the native roots)\n\
             - `[daemon] concurrency = {}`; black-holed connectors: every 10th, in a /16 whose \
             SYNs are dropped; `timeouts.connect = \"{}s\"`",
            m.cores,
            m.cpu,
            m.kernel,
            m.load,
            m.commit,
            self.probe,
            self.knobs.concurrency,
            self.knobs.connect_timeout.as_secs(),
        );
    }

    fn cycles(&self, o: &mut String) {
        if self.cycles.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n## One cycle: `connector-probe probe --all --json`, process spawn to exit\n\n\
             CPU is user + system of the probe process (wait4), RSS its peak. \"healthy done\" is \
             when the last healthy connector's probe ended (from its `started_at` + \
             `duration_ms`). \"fleet CPU\" is what the responder spent serving the cycle \
             (context; not counted against the probe).\n\n\
             | connectors | shape | wall | probes/s | CPU | CPU/probe | peak RSS | \
             healthy done | healthy probe p50 / p99 | as expected | fleet CPU |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &self.cycles {
            let c = &row.cycle;
            let n = row.shape.size as f64;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} | {} | {:.3} ms | {:.1} MiB | {} | {:.1} / {:.1} ms | {} | {} |",
                row.shape.size,
                row.shape.describe(),
                secs(c.run.wall),
                n / c.run.wall.as_secs_f64(),
                secs(c.run.cpu),
                ms(c.run.cpu) / n,
                c.run.max_rss as f64 / MIB,
                secs(c.healthy_done),
                fleet::percentile(&c.healthy_ms, 50.0),
                fleet::percentile(&c.healthy_ms, 99.0),
                expected(c.as_expected, c.unexpected_count),
                secs(row.fleet_cpu),
            );
        }
        for row in &self.cycles {
            for u in &row.cycle.unexpected {
                let _ = writeln!(o, "\n- unexpected ({} connectors): {u}", row.shape.size);
            }
        }
    }

    /// Each all-healthy, all-rustls cycle with the cycle of the same size whose shape `other`
    /// picks.
    fn against_baseline(&self, other: impl Fn(&Shape) -> bool) -> Vec<(&CycleRow, &CycleRow)> {
        self.cycles
            .iter()
            .filter(|r| r.shape.is_baseline())
            .filter_map(|base| {
                self.cycles
                    .iter()
                    .find(|r| r.shape.size == base.shape.size && other(&r.shape))
                    .map(|b| (base, b))
            })
            .collect()
    }

    /// Healthy connectors' cycle with 10 % black-holed against the all-healthy baseline.
    fn blackholed(&self, o: &mut String) {
        let pairs = self.against_baseline(|s| s.dead_every.is_some());
        if pairs.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n## 10 % black-holed: do dead servers slow the healthy ones?\n\n\
             The healthy connectors' cycle may grow by at most the connect timeout ({}s).\n\n\
             | connectors | baseline cycle (all healthy) | healthy done, 10 % black-holed | \
             growth | whole cycle, 10 % black-holed | within the timeout |\n\
             |---:|---:|---:|---:|---:|:---|",
            self.knobs.connect_timeout.as_secs()
        );
        for (base, b) in pairs {
            let growth = b.cycle.healthy_done.as_secs_f64() - base.cycle.run.wall.as_secs_f64();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:+.2} s | {} | {} |",
                base.shape.size,
                secs(base.cycle.run.wall),
                secs(b.cycle.healthy_done),
                growth,
                secs(b.cycle.run.wall),
                yes_no(growth <= self.knobs.connect_timeout.as_secs_f64()),
            );
        }
    }

    /// What the second TLS engine costs: a fleet where 10 % of the servers speak only
    /// ECDHE-RSA-AES256-SHA384, against the all-rustls baseline of the same size.
    fn openssl(&self, o: &mut String) {
        let pairs = self.against_baseline(|s| s.openssl_every.is_some());
        if pairs.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n## 10 % needing the OpenSSL engine: what the second engine costs\n\n\
             Every tenth server speaks only ECDHE-RSA-AES256-SHA384 (TLS 1.2, an RSA leaf), one \
             of Exchange Online's suites that rustls lacks: its probe fails the rustls handshake, \
             connects again and handshakes with OpenSSL. The rest are the baseline's servers.\n\n\
             | connectors | CPU/probe, all rustls | CPU/probe, 10 % OpenSSL | ratio | \
             CPU per OpenSSL probe (extra over the baseline's) | wall, all rustls | wall, 10 % OpenSSL |\n\
             |---:|---:|---:|---:|---:|---:|---:|"
        );
        for (base, b) in pairs {
            let n = base.shape.size as f64;
            let per_base = ms(base.cycle.run.cpu) / n;
            let per_mixed = ms(b.cycle.run.cpu) / n;
            let extra = (ms(b.cycle.run.cpu) - ms(base.cycle.run.cpu)) / b.shape.openssl() as f64;
            let _ = writeln!(
                o,
                "| {} | {per_base:.3} ms | {per_mixed:.3} ms | {:.2}× | {:.3} ms | {} | {} |",
                base.shape.size,
                per_mixed / per_base,
                per_base + extra,
                secs(base.cycle.run.wall),
                secs(b.cycle.run.wall),
            );
        }
    }

    fn blackbox(&self, o: &mut String) {
        if self.blackbox.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n## Peer: blackbox_exporter `smtp_starttls`, same fleet, same concurrency ({})\n\n\
             One `/probe` HTTP request per target, {} in flight (HTTP/1.0, a connection each); \
             the same dialogue, with chain and name verification against the fleet CA. Wall is \
             first request to last answer; CPU and peak RSS are the exporter's (a fresh process \
             per cycle; `/proc`, 10 ms ticks). Ratios are blackbox_exporter / connector-probe.\n\n\
             | targets | black-holed | wall | probes/s | CPU/probe | peak RSS | healthy done | \
             as expected | wall ratio | CPU/probe ratio | RSS ratio |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            self.knobs.concurrency, self.knobs.concurrency
        );
        for (shape, b) in &self.blackbox {
            let n = shape.size as f64;
            let cp = self.cycles.iter().find(|r| {
                r.shape.size == shape.size
                    && r.shape.dead_every == shape.dead_every
                    && r.shape.openssl_every == shape.openssl_every
            });
            let ratio = |x: f64, y: Option<f64>| match y {
                Some(y) if y > 0.0 => format!("{:.2}×", x / y),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} | {:.3} ms | {:.1} MiB | {} | {} | {} | {} | {} |",
                shape.size,
                shape.dead(),
                secs(b.wall),
                n / b.wall.as_secs_f64(),
                ms(b.cpu) / n,
                b.peak_rss as f64 / MIB,
                secs(b.healthy_done),
                expected(b.as_expected, b.unexpected),
                ratio(
                    b.wall.as_secs_f64(),
                    cp.map(|r| r.cycle.run.wall.as_secs_f64())
                ),
                ratio(ms(b.cpu), cp.map(|r| ms(r.cycle.run.cpu))),
                ratio(b.peak_rss as f64, cp.map(|r| r.cycle.run.max_rss as f64)),
            );
        }
    }

    fn one_shot(&self, o: &mut String) {
        let Some(first) = self.one_shot.first() else {
            return;
        };
        let runs = first.walls.len();
        let _ = writeln!(
            o,
            "\n## One-shot, process start to exit, against one local STARTTLS server\n\n\
             {runs} timed rounds after 3 untimed ones; in each round every command runs once, \
             in turn. Two places for the fleet's CA: a file of its own (`[tls] ca_file`, \
             `-CAfile`, `--tls-ca-path`), as for a private CA; and the system store \
             (`SSL_CERT_FILE` = the system bundle plus the fleet CA), as for a public CA, \
             where each tool reads the system's roots its own way. Ratio is the tool's median wall / connector-probe's in the same \
             scenario.\n\n\
             | CA in | tool | what it checks | median wall | median CPU | ratio | failed runs |\n\
             |---|---|---|---:|---:|---:|---:|"
        );
        for t in &self.one_shot {
            let base = self
                .probe_in(t.scenario)
                .map(|p| p.median_wall().as_secs_f64());
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.1} ms | {:.1} ms | {} | {} |",
                t.scenario,
                t.name,
                t.checks,
                ms(t.median_wall()),
                ms(t.median_cpu()),
                base.map_or("–".into(), |b| format!(
                    "{:.2}×",
                    t.median_wall().as_secs_f64() / b
                )),
                t.failures,
            );
        }
        let _ = writeln!(o, "\nCommands:\n");
        for t in &self.one_shot {
            let _ = writeln!(o, "    {}", t.shell_line());
        }
    }

    fn daemons(&self, o: &mut String) {
        if self.daemons.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n## The daemon: `connector-probe run` over the fleet\n\n\
             The same fleet and settings as the cycles, `state_file` on the machine's disk and \
             `/metrics` on loopback. Load is spawn to the `daemon_started` line; reload is \
             `SIGHUP` (the same file) to `config_reloaded`. The window starts after a warm-up \
             (one whole interval at 100,000, so every connector has had its once-in-a-life first \
             probe, unknown to ok; 75 s for the flapping fleet): the steady state. Peak RSS is \
             the process's whole life, load and warm-up included. CPU is the daemon's over the \
             window (`/proc`, 10 ms ticks), its log lines on a pipe included, a reload \
             included, the scrapes not. The tick gap is the longest time between two ticks \
             of the main loop (due every second; they stamp `/healthz` and ping the \
             watchdog), from start to the end of the window. State: the daemon's writes \
             (each one fsync) and bytes, and `write_bytes` of `/proc/PID/io` (what reached \
             the storage layer, whole pages), per day = the window's × 86400 / window.\n\n\
             | connectors | flapping | interval | warm-up | window | load | reload | probes | CPU/probe | \
             peak RSS | tick gap | `/metrics` | scrape (daemon CPU) | state changes | state writes (compactions) | fsync/s | \
             state bytes | disk bytes | disk bytes/day | stop |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for d in &self.daemons {
            let window = d.elapsed.as_secs_f64();
            let _ = writeln!(
                o,
                "| {} | {} | {} s | {} s | {:.0} s | {} | {} | {} | {:.3} ms | {:.1} MiB | {:.2} s | {:.1} MiB | {} ({}) | {} | {} ({}) | {:.2} | {:.1} MiB | {:.1} MiB | {:.0} MB | {} |",
                d.plan.size,
                d.plan.flapping,
                d.plan.interval.as_secs(),
                d.plan.warmup.as_secs(),
                window,
                secs(d.load),
                d.reload.map_or("–".into(), secs),
                d.probes,
                ms(d.cpu) / d.probes.max(1) as f64,
                d.peak_rss as f64 / MIB,
                d.longest_tick_gap,
                d.metrics_bytes as f64 / MIB,
                secs(d.scrape),
                secs(d.scrape_cpu),
                d.state_changes,
                d.state_writes,
                d.compactions,
                d.state_writes / window,
                d.state_bytes / MIB,
                d.disk_bytes as f64 / MIB,
                d.disk_bytes as f64 * 86_400.0 / window / 1e6,
                secs(d.stop),
            );
        }
    }

    fn import(&self, o: &mut String) {
        let Some((size, (run, bytes))) = &self.import else {
            return;
        };
        let _ = writeln!(
            o,
            "\n## `import exchange` of {size} connectors\n\n\
             A generated export ({:.0} MiB: compact objects with the properties the import \
             reads; every tenth connector shares its name with 399 others), to a whole \
             configuration file (`--output`, which the import loads back to check it).\n\n\
             | connectors | wall | CPU | peak RSS | exit |\n|---:|---:|---:|---:|---:|\n\
             | {size} | {} | {} | {:.0} MiB | {} |",
            *bytes as f64 / MIB,
            secs(run.wall),
            secs(run.cpu),
            run.max_rss as f64 / MIB,
            run.exit_code.map_or("killed".into(), |c| c.to_string()),
        );
    }

    fn probe_in(&self, scenario: &str) -> Option<&Tool> {
        self.one_shot
            .iter()
            .find(|t| t.is_probe() && t.scenario == scenario)
    }

    fn targets(&self, o: &mut String) {
        let mut rows: Vec<(String, String, bool)> = Vec::new();
        let healthy = |size| {
            self.cycles
                .iter()
                .find(|r| r.shape.size == size && r.shape.is_baseline())
        };
        if let Some(r) = healthy(10_000) {
            rows.push((
                "10,000 connectors in one cycle ≤ 30 s".into(),
                secs(r.cycle.run.wall),
                r.cycle.run.wall <= CYCLE_TARGET,
            ));
        }
        for r in self.cycles.iter().filter(|r| r.shape.is_baseline()) {
            let per = ms(r.cycle.run.cpu) / r.shape.size as f64;
            rows.push((
                format!(
                    "≤ 1 ms probe-process CPU per probe ({} connectors)",
                    r.shape.size
                ),
                format!("{per:.3} ms"),
                per <= CPU_PER_PROBE_TARGET_MS,
            ));
        }
        if let Some(peak) = self.cycles.iter().map(|r| r.cycle.run.max_rss).max() {
            let mib = peak as f64 / MIB;
            rows.push((
                "peak RSS ≤ 100 MiB (largest cycle)".into(),
                format!("{mib:.1} MiB"),
                mib <= RSS_TARGET_MIB,
            ));
        }
        for peer in self
            .one_shot
            .iter()
            .filter(|t| t.name.starts_with("openssl") || t.name.starts_with("check_smtp"))
        {
            if let Some(probe) = self.probe_in(peer.scenario) {
                rows.push((
                    format!(
                        "one-shot no slower than {} (CA in {})",
                        peer.name, peer.scenario
                    ),
                    format!(
                        "{:.1} ms vs {:.1} ms",
                        ms(probe.median_wall()),
                        ms(peer.median_wall())
                    ),
                    probe.median_wall() <= peer.median_wall(),
                ));
            }
        }
        self.daemon_targets(&mut rows);
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n## Targets\n\n| target | this run | met |\n|---|---:|:---|"
        );
        for (what, value, met) in rows {
            let _ = writeln!(o, "| {what} | {value} | {} |", yes_no(met));
        }
    }
}

impl Report {
    fn daemon_targets(&self, rows: &mut Vec<(String, String, bool)>) {
        let probe_all_10k = self
            .cycles
            .iter()
            .find(|r| r.shape.size == 10_000 && r.shape.dead_every.is_none());
        for d in self.daemons.iter().filter(|d| d.plan.flapping == 0) {
            let n = d.plan.size;
            rows.push((
                format!("{n} connectors load ≤ 1 s"),
                secs(d.load),
                d.load <= Duration::from_secs(1),
            ));
            if let Some(r) = d.reload {
                rows.push((
                    format!("{n} connectors reload ≤ 1 s"),
                    secs(r),
                    r <= Duration::from_secs(1),
                ));
            }
            rows.push((
                "no heartbeat gap over 1 s (tick due every 1 s: longest gap ≤ 2 s)".into(),
                format!("{:.2} s", d.longest_tick_gap),
                d.longest_tick_gap <= 2.0,
            ));
            let mib = d.peak_rss as f64 / MIB;
            rows.push((
                format!("daemon RSS ≤ 200 MiB at {n}"),
                format!("{mib:.1} MiB"),
                mib <= 200.0,
            ));
            if let Some(p) = probe_all_10k {
                let daemon = ms(d.cpu) / d.probes.max(1) as f64;
                let cycle = ms(p.cycle.run.cpu) / p.shape.size as f64;
                rows.push((
                    "daemon CPU per probe ≤ 1.2× probe --all's (10,000)".into(),
                    format!("{daemon:.3} ms vs {cycle:.3} ms ({:.2}×)", daemon / cycle),
                    daemon <= 1.2 * cycle,
                ));
            }
        }
        for d in self.daemons.iter().filter(|d| d.plan.flapping > 0) {
            let window = d.elapsed.as_secs_f64();
            let per_s = d.state_writes / window;
            rows.push((
                format!("≤ 1 fsync/s at {} connectors, 1 % flapping", d.plan.size),
                format!("{per_s:.2}/s"),
                per_s <= 1.0,
            ));
            let day = d.disk_bytes as f64 * 86_400.0 / window / 1e6;
            rows.push((
                format!(
                    "≤ 100 MB/day of state at {} connectors, 1 % flapping",
                    d.plan.size
                ),
                format!(
                    "{day:.0} MB (disk), {:.0} MB (written)",
                    d.state_bytes * 86_400.0 / window / 1e6
                ),
                day <= 100.0,
            ));
        }
        if let Some(p) = probe_all_10k {
            if let Some((_, b)) = self
                .blackbox
                .iter()
                .find(|(s, _)| s.size == 10_000 && s.dead_every.is_none())
            {
                rows.push((
                    "probe --all RSS at 10,000 ≤ blackbox_exporter's".into(),
                    format!(
                        "{:.1} MiB vs {:.1} MiB",
                        p.cycle.run.max_rss as f64 / MIB,
                        b.peak_rss as f64 / MIB
                    ),
                    p.cycle.run.max_rss <= b.peak_rss,
                ));
            }
        }
        if let Some((size, (run, _))) = &self.import {
            rows.push((
                format!("import of {size} ≤ 10 s"),
                secs(run.wall),
                run.wall <= Duration::from_secs(10),
            ));
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

fn expected(ok: usize, not: usize) -> String {
    if not == 0 {
        format!("{ok}/{ok}")
    } else {
        format!("{ok}/{} (**{not} not**)", ok + not)
    }
}
