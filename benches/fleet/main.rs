//! The fleet benchmark: connector-probe against a loopback fleet of 1,000 and 10,000
//! STARTTLS servers, with and without 10 % of them black-holed, side by side with
//! blackbox_exporter over the same fleet and with the one-shot tools connector-probe
//! replaces (openssl s_client, check_smtp, swaks).
//!
//! Run it with `benches/fleet.sh` (or, as root, `cargo bench --bench fleet`). It needs root
//! for its network namespace; it prints a Markdown report, and `--output FILE` writes it
//! there too. Not part of `cargo test`: it takes minutes and it times things.
//!
//! * [`netns`]: the private network namespace and process lifetimes.
//! * [`responder`]: the one SMTP + STARTTLS server that answers for every `127.x.y.z`.
//! * [`fleet`]: the connectors, their configuration, and reading a `probe --all` cycle.
//! * [`measure`]: wall, CPU and peak RSS of a process, from the kernel.
//! * [`blackbox`]: the same cycles through blackbox_exporter.
//! * [`daemon`]: `connector-probe run` over a large fleet for minutes, and a large import.
//! * [`oneshot`]: one check, process start to exit, for every tool.
//! * [`report`]: the Markdown report.

mod blackbox;
mod daemon;
mod fleet;
mod measure;
mod netns;
mod oneshot;
mod report;
mod responder;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use fleet::{Knobs, Shape};
use netns::{Background, tied};

/// The connector-probe built alongside this benchmark, with the same profile.
const PROBE: &str = env!("CARGO_BIN_EXE_connector-probe");

const USAGE: &str = "\
usage: fleet [--sizes 1000,10000] [--concurrency 256] [--connect-timeout 5]
             [--one-shot-runs 30] [--no-peers] [--no-one-shot] [--probe PATH] [--output FILE]
             [--daemon 100000] [--daemon-window 300] [--flap 10000] [--flap-window 300]
             [--import 400000] [--no-cycles]";

/// The driver's settings.
struct Args {
    sizes: Vec<usize>,
    knobs: Knobs,
    one_shot_runs: usize,
    peers: bool,
    one_shot: bool,
    probe: PathBuf,
    output: Option<PathBuf>,
    /// Daemon runs: a large fleet with a reload, and a flapping one (0: not run).
    daemon: usize,
    daemon_window: Duration,
    flap: usize,
    flap_window: Duration,
    /// `import exchange` of this many connectors (0: not run).
    import: usize,
    cycles: bool,
    /// Internal: run as the fleet's responder, writing the CA into this directory.
    responder: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut a = Args {
            sizes: vec![1000, 10_000],
            knobs: Knobs {
                concurrency: 256,
                connect_timeout: Duration::from_secs(5),
            },
            one_shot_runs: 30,
            peers: true,
            one_shot: true,
            probe: PathBuf::from(PROBE),
            output: None,
            daemon: 0,
            daemon_window: Duration::from_secs(300),
            flap: 0,
            flap_window: Duration::from_secs(300),
            import: 0,
            cycles: true,
            responder: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or(format!("{arg} needs a value"));
            let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
            match arg.as_str() {
                "--sizes" => {
                    a.sizes = value()?
                        .split(',')
                        .map(|s| number(s.to_owned()))
                        .collect::<Result<_, _>>()?;
                }
                "--concurrency" => a.knobs.concurrency = number(value()?)?,
                "--connect-timeout" => {
                    a.knobs.connect_timeout = Duration::from_secs(number(value()?)? as u64);
                }
                "--one-shot-runs" => a.one_shot_runs = number(value()?)?.max(1),
                "--no-peers" => a.peers = false,
                "--no-one-shot" => a.one_shot = false,
                "--probe" => a.probe = PathBuf::from(value()?),
                "--output" => a.output = Some(PathBuf::from(value()?)),
                "--daemon" => a.daemon = number(value()?)?,
                "--daemon-window" => {
                    a.daemon_window = Duration::from_secs(number(value()?)? as u64);
                }
                "--flap" => a.flap = number(value()?)?,
                "--flap-window" => {
                    a.flap_window = Duration::from_secs(number(value()?)? as u64);
                }
                "--import" => a.import = number(value()?)?,
                "--no-cycles" => a.cycles = false,
                "--responder" => a.responder = Some(PathBuf::from(value()?)),
                // What `cargo bench` passes to a harness-less bench.
                "--bench" => {}
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        Ok(a)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &args.responder {
        return match responder::run(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("responder: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match drive(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

type Outcome<T> = Result<T, Box<dyn std::error::Error>>;

fn drive(args: &Args) -> Outcome<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root, for its network namespace: run benches/fleet.sh".into());
    }
    for tool in ["ip", "iptables"] {
        if !oneshot::installed(tool) {
            return Err(format!("{tool} not found (apt-get install iproute2 iptables)").into());
        }
    }
    if !args.probe.exists() {
        return Err(format!("{} not found", args.probe.display()).into());
    }
    let mut r = report::Report::new(args, report::Machine::read());
    netns::enter_private_namespace()?;
    let dir = tempfile::tempdir()?;
    let responder = start_responder(dir.path())?;
    let ca = dir.path().join("ca.pem");
    let mut missing = Vec::new();
    let blackbox_here = args.peers && oneshot::installed(blackbox::EXE);
    if args.peers && !blackbox_here {
        missing.push(blackbox::EXE.to_owned());
    }

    let sizes = if args.cycles { &args.sizes[..] } else { &[] };
    for &size in sizes {
        for (dead_every, openssl_every) in [(None, None), (Some(10), None), (None, Some(10))] {
            let shape = Shape {
                size,
                dead_every,
                openssl_every,
            };
            let config = fleet::write_config(dir.path(), &shape, &args.knobs, &ca)?;
            eprintln!(
                "fleet: probe --all, {size} connector(s), {}",
                shape.describe()
            );
            settle();
            let before = measure::sample(responder.pid())?;
            let cycle = fleet::cycle(&args.probe, &config, &shape)?;
            let fleet_cpu = measure::sample(responder.pid())?
                .cpu
                .saturating_sub(before.cpu);
            r.cycles.push(report::CycleRow {
                shape,
                cycle,
                fleet_cpu,
            });
            // blackbox_exporter's Go TLS has no ECDHE-RSA-AES256-SHA384: it could not reach the
            // CBC-only servers at all, so that shape is connector-probe's alone.
            if blackbox_here && openssl_every.is_none() {
                eprintln!(
                    "fleet: blackbox_exporter, {size} target(s), {} black-holed",
                    shape.dead()
                );
                settle();
                let b = blackbox::cycle(
                    dir.path(),
                    &ca,
                    &shape,
                    args.knobs.concurrency,
                    args.knobs.connect_timeout,
                )?;
                r.blackbox.push((shape, b));
            }
        }
    }

    if args.one_shot {
        let scenarios = one_shot_scenarios(dir.path(), &ca)?;
        let mut tools = Vec::new();
        for scenario in &scenarios {
            tools.extend(oneshot::tools(
                &args.probe,
                scenario,
                args.peers,
                &mut missing,
            ));
        }
        eprintln!(
            "fleet: one-shot, {} round(s) of {} command(s)",
            args.one_shot_runs,
            tools.len()
        );
        settle();
        oneshot::measure(&mut tools, 3, args.one_shot_runs)?;
        r.one_shot = tools;
    }
    if args.import > 0 {
        eprintln!("fleet: import exchange, {} connector(s)", args.import);
        settle();
        r.import = Some((
            args.import,
            daemon::import(&args.probe, dir.path(), args.import)?,
        ));
    }
    let mut plans = Vec::new();
    if args.daemon > 0 {
        // Each connector probed once in the window; a reload half-way through. Measured in
        // the steady state: after one whole interval, so every connector has had its first
        // probe (unknown → ok, a state change and a journal line each), which a daemon does
        // once in its life, not every interval.
        plans.push(daemon::Plan {
            size: args.daemon,
            flapping: 0,
            interval: args.daemon_window,
            warmup: args.daemon_window,
            window: args.daemon_window,
            reload: true,
        });
    }
    if args.flap > 0 {
        // 1 % flapping, every connector probed each minute; measured once all have had
        // their first probe (and the first snapshot is written).
        plans.push(daemon::Plan {
            size: args.flap,
            flapping: args.flap / 100,
            interval: Duration::from_secs(60),
            warmup: Duration::from_secs(75),
            window: args.flap_window,
            reload: false,
        });
    }
    for plan in plans {
        eprintln!(
            "fleet: the daemon, {} connector(s), {} flapping, {} s",
            plan.size,
            plan.flapping,
            plan.window.as_secs()
        );
        settle();
        r.daemons.push(daemon::run(
            &args.probe,
            dir.path(),
            &ca,
            &args.knobs,
            plan,
        )?);
    }
    r.missing = missing;
    drop(responder);

    let text = r.render();
    print!("{text}");
    if let Some(path) = &args.output {
        std::fs::write(path, &text)?;
        eprintln!("fleet: report written to {}", path.display());
    }
    Ok(())
}

/// The responder is this same executable, in `--responder` mode.
fn start_responder(dir: &Path) -> Outcome<Background> {
    let responder = Background {
        child: tied(std::env::current_exe()?.to_str().ok_or("non-UTF-8 path")?)
            .arg("--responder")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?,
    };
    let t0 = Instant::now();
    while !dir.join("ca.pem").exists() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the responder did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(responder)
}

/// The fleet CA as a file of its own, and in (a copy of) the system store.
fn one_shot_scenarios(dir: &Path, ca: &Path) -> Outcome<Vec<oneshot::Scenario>> {
    let connector = "[[connector]]\nname = \"one\"\nsmart_hosts = [\"127.0.0.1\"]\n";
    let defaults = "[defaults]\nhelo_name = \"probe.fleet.test\"\ntls = \"certificate-validation\"\n\
                    [daemon]\nmetrics_listen = \"\"\n";
    let with_ca_file = dir.join("one.toml");
    std::fs::write(
        &with_ca_file,
        format!(
            "{defaults}[tls]\nca_file = \"{}\"\n{connector}",
            ca.display()
        ),
    )?;
    let mut scenarios = vec![oneshot::Scenario {
        name: "CA file",
        config: with_ca_file,
        ca_file: Some(ca.to_owned()),
        env: Vec::new(),
    }];
    let system_bundle = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file());
    match system_bundle {
        Some(bundle) => {
            let mut pem = std::fs::read(bundle)?;
            pem.extend(std::fs::read(ca)?);
            let store = dir.join("system-and-fleet.pem");
            std::fs::write(&store, pem)?;
            let in_store = dir.join("one-system.toml");
            std::fs::write(&in_store, format!("{defaults}{connector}"))?;
            scenarios.push(oneshot::Scenario {
                name: "system store",
                config: in_store,
                ca_file: None,
                // The bundle is the system store: Debian's update-ca-certificates writes every
                // root into it, and /etc/ssl/certs only mirrors it as hashed links, which
                // OpenSSL reads lazily and a tool that loads all roots need not read twice.
                env: vec![("SSL_CERT_FILE", store)],
            });
        }
        None => eprintln!("fleet: no system CA bundle found; the system-store scenario is skipped"),
    }
    Ok(scenarios)
}

/// Where distributions keep the system's CA bundle (as openssl-probe looks for it).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Lets the previous run's connections leave TIME_WAIT's bookkeeping and the machine settle.
fn settle() {
    std::thread::sleep(Duration::from_secs(2));
}
