//! What the real-peer tests share: finding the tools, skipping (or, in CI, failing) when one
//! is missing, daemons and network namespaces that clean up after themselves, and the table of
//! cases, each run through the real binary and held to what `classification.md` gives.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::binary;

/// Set to `1` (as `.ci/run` does) to turn every "SKIPPED" into a failure.
const REQUIRE: &str = "CONNECTOR_PROBE_REQUIRE_PEERS";

/// Every stage timeout of the peers' connectors: short, so the cases that wait for one end
/// quickly, and long enough for a debug build on a busy two-core machine.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What a probe may take beyond the one timeout it can wait for (each stage stops at its
/// first failure, and targets run concurrently): process start and scheduling.
const SLACK: Duration = Duration::from_secs(3);
/// How long a daemon may take to start listening.
const STARTUP: Duration = Duration::from_secs(20);

/// Something a group of cases needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    Root,
    Tool(&'static str),
}

/// True when everything in `needs` is there. Otherwise says why on stderr ("SKIPPED: …") and
/// returns false, or panics when `CONNECTOR_PROBE_REQUIRE_PEERS=1`, so that CI, which
/// installs the peers, cannot pass by skipping them.
pub fn available(what: &str, needs: &[Need]) -> bool {
    let missing: Vec<String> = needs
        .iter()
        .filter_map(|need| match need {
            Need::Root if !is_root() => Some("root (network namespaces, Postfix)".to_owned()),
            Need::Tool(name) if tool(name).is_none() => Some(format!("`{name}` not found")),
            _ => None,
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{what}: {}", missing.join(", "));
    if std::env::var_os(REQUIRE).is_some_and(|v| v == "1") {
        panic!("{REQUIRE}=1, but {why}");
    }
    skipped(&why);
    false
}

/// Says what is skipped and why, straight to the process's stderr: the test harness
/// captures the `eprintln!` of a passing test, and a skip must be seen.
pub fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // The effective uid is the second field of `Uid:`; reading it avoids an unsafe geteuid().
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Where `name` is: on `PATH`, or in the sbin and plugin directories a user's `PATH` lacks.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/lib/nagios/plugins"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The path of a tool that [`available`] has already found.
pub fn tool_path(name: &str) -> PathBuf {
    tool(name).unwrap_or_else(|| panic!("`{name}` vanished"))
}

/// A name no other run or test uses: the pid, the tag, and a counter.
fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "cp{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port on loopback that nothing listens on right now, and that this process has not
/// handed out before: the kernel may offer a released port again, and two peers (in one
/// namespace, or on the host) must never share one.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A scratch directory that Postfix's unprivileged processes may traverse.
pub fn scratch_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("connector-probe-peers.")
        .tempdir()
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary directory");
    dir
}

/// Where peers and clients run: this machine's loopback, or a network namespace of our own.
pub enum Place {
    Host,
    Netns(Netns),
}

impl Place {
    /// `program` to run here.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match self {
            Place::Host => Command::new(program),
            Place::Netns(ns) => {
                let mut c = Command::new(tool_path("ip"));
                c.args(["netns", "exec", &ns.name]).arg(program);
                c
            }
        }
    }

    /// The port for the peers' DNS server: any free one, except in a namespace whose
    /// `resolv.conf` points at it, because the tools compared with the probe have no other
    /// way to be given a resolver.
    pub fn dns_port(&self) -> u16 {
        match self {
            Place::Netns(ns) if ns.resolver => 53,
            _ => free_port(),
        }
    }

    /// The network namespace, for the cases that need one.
    pub fn netns(&self) -> Option<&Netns> {
        match self {
            Place::Netns(ns) => Some(ns),
            Place::Host => None,
        }
    }

    /// The local ports something listens on here, TCP or UDP.
    fn listening(&self, udp: bool) -> Vec<u16> {
        let out = self
            .command(tool_path("ss"))
            .arg(if udp { "-Hlnu" } else { "-Hlnt" })
            .output()
            .expect("ss runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(3)?
                    .rsplit_once(':')?
                    .1
                    .parse()
                    .ok()
            })
            .collect()
    }
}

/// A network namespace with loopback up, deleted (with anything left running in it) on drop.
pub struct Netns {
    pub name: String,
    /// Whether `/etc/netns/NAME/resolv.conf` points the namespace's resolver at 127.0.0.1.
    resolver: bool,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let ns = Netns {
            name: unique(tag),
            resolver: false,
        };
        run_ok(Command::new(tool_path("ip")).args(["netns", "add", &ns.name]));
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A namespace whose programs resolve names through a DNS server on 127.0.0.1:53 in it
    /// (`ip netns exec` mounts `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`).
    pub fn with_resolver(tag: &str) -> Netns {
        let mut ns = Netns::new(tag);
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        ns.resolver = true;
        std::fs::write(
            dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n",
        )
        .expect("write the namespace's resolv.conf");
        ns
    }

    /// Runs a command in the namespace and insists that it succeeds.
    pub fn exec(&self, args: &[&str]) {
        run_ok(
            Command::new(tool_path("ip"))
                .args(["netns", "exec", &self.name])
                .args(args),
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ip = tool_path("ip");
        // A process left inside (a daemon's forked child) would outlive the namespace's name.
        if let Ok(out) = Command::new(&ip)
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new(&ip)
            .args(["netns", "delete", &self.name])
            .status();
        if self.resolver {
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
        }
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A peer process, stopped and reaped on drop. Its output goes to a log file, quoted when it
/// fails to start.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    /// How to ask it to stop before it is killed (Postfix: `postfix stop`).
    stop: Option<Command>,
}

impl Daemon {
    /// Starts `cmd`, logging to `dir/name.log`, and waits until it listens on every port
    /// in `tcp` and `udp` in `place`.
    pub fn start(
        place: &Place,
        dir: &Path,
        name: &str,
        mut cmd: Command,
        tcp: &[u16],
        udp: &[u16],
    ) -> Daemon {
        let (busy_tcp, busy_udp) = (place.listening(false), place.listening(true));
        assert!(
            !tcp.iter().any(|p| busy_tcp.contains(p)) && !udp.iter().any(|p| busy_udp.contains(p)),
            "{name}: tcp {tcp:?} or udp {udp:?} is taken before it starts"
        );
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create the daemon's log");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup the log"))
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {cmd:?}: {e}"));
        let mut daemon = Daemon {
            name: name.to_owned(),
            child,
            log,
            stop: None,
        };
        daemon.wait_listening(place, tcp, udp);
        daemon
    }

    /// Asks `cmd` to stop the daemon on drop, before killing what is left.
    pub fn stop_with(mut self, cmd: Command) -> Daemon {
        self.stop = Some(cmd);
        self
    }

    fn wait_listening(&mut self, place: &Place, tcp: &[u16], udp: &[u16]) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) while starting:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let (open_tcp, open_udp) = (place.listening(false), place.listening(true));
            if tcp.iter().all(|p| open_tcp.contains(p)) && udp.iter().all(|p| open_udp.contains(p))
            {
                return;
            }
            assert!(
                start.elapsed() < STARTUP,
                "{} does not listen on tcp {tcp:?} udp {udp:?} after {STARTUP:?}:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = &mut self.stop {
            let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a connector reaches its peer.
pub enum Target {
    /// `smart_hosts = [HOST:PORT]`; HOST is an IPv4 literal or a name.
    Smart { host: String, port: u16 },
    /// `mx_domain = DOMAIN`, with `port = PORT`.
    Mx { domain: String, port: u16 },
}

/// What classification.md says a case must produce.
#[derive(Debug, Clone)]
pub struct Expect {
    pub status: &'static str,
    pub code: Option<&'static str>,
    /// The stage every target ended at, in order.
    pub stages: Vec<&'static str>,
    /// The start of the `[Message=…]` of EOP's status line, where the README fixes it.
    pub message: Option<&'static str>,
    /// The engine and the suite (IANA's name) every target's TLS session must have.
    pub tls: Option<(&'static str, &'static str)>,
}

/// A connector that fails with `code` at `stage`.
pub fn failing(code: &'static str, stage: &'static str) -> Expect {
    Expect {
        status: "failing",
        code: Some(code),
        stages: vec![stage],
        message: None,
        tls: None,
    }
}

/// A connector that delivers, with `status` `ok` or `warning`.
pub fn delivers(status: &'static str) -> Expect {
    Expect {
        status,
        code: None,
        stages: vec!["done"],
        message: None,
        tls: None,
    }
}

impl Expect {
    pub fn message(mut self, message: &'static str) -> Expect {
        self.message = Some(message);
        self
    }

    pub fn stages(mut self, stages: &[&'static str]) -> Expect {
        self.stages = stages.to_vec();
        self
    }

    /// Every target's TLS session made by `engine` with `cipher` (IANA's name).
    pub fn over(mut self, engine: &'static str, cipher: &'static str) -> Expect {
        self.tls = Some((engine, cipher));
        self
    }

    /// Everything that differs between this and what the probe produced.
    fn differences(&self, run: &Run) -> Vec<String> {
        let v = &run.json;
        let mut diffs = Vec::new();
        if v["status"] != self.status {
            diffs.push(format!("status {} (want {})", v["status"], self.status));
        }
        if v["code"].as_str() != self.code {
            diffs.push(format!("code {} (want {:?})", v["code"], self.code));
        }
        let stages: Vec<&str> = targets(v)
            .map(|t| t["stage"].as_str().unwrap_or("?"))
            .collect();
        if stages != self.stages {
            diffs.push(format!("stages {stages:?} (want {:?})", self.stages));
        }
        if let Some((engine, cipher)) = self.tls {
            for t in targets(v) {
                if t["tls"]["engine"] != engine || t["tls"]["cipher"] != cipher {
                    diffs.push(format!("tls {} (want {engine} {cipher})", t["tls"]));
                }
            }
        }
        if let Some(message) = self.message {
            let want = format!("[Message={message}");
            if !v["eop_status"].as_str().is_some_and(|s| s.contains(&want)) {
                diffs.push(format!("eop_status {} (want {want}…)", v["eop_status"]));
            }
        }
        let exit = match self.status {
            "ok" => 0,
            "warning" | "degraded" => 1,
            _ => 2,
        };
        if run.exit != Some(exit) {
            diffs.push(format!("exit code {:?} (want {exit})", run.exit));
        }
        if run.elapsed > TIMEOUT + SLACK {
            diffs.push(format!(
                "took {:?}, more than one timeout ({TIMEOUT:?}) plus {SLACK:?}",
                run.elapsed
            ));
        }
        diffs
    }
}

fn targets(v: &Value) -> impl Iterator<Item = &Value> {
    v["targets"].as_array().into_iter().flatten()
}

/// One connector against one peer.
pub struct Case {
    /// The connector's name: unique in its group.
    pub name: &'static str,
    /// What the peer does, in a few words (for the reports and the comparison table).
    pub peer: String,
    pub target: Target,
    pub tls: &'static str,
    pub tls_domain: Option<&'static str>,
    /// Further connector keys, as TOML lines.
    pub settings: Vec<&'static str>,
    pub expect: Expect,
}

impl Case {
    /// An opportunistic connector to `target`.
    pub fn new(
        name: &'static str,
        peer: impl Into<String>,
        target: Target,
        expect: Expect,
    ) -> Case {
        Case {
            name,
            peer: peer.into(),
            target,
            tls: "opportunistic",
            tls_domain: None,
            settings: Vec::new(),
            expect,
        }
    }

    pub fn tls(mut self, mode: &'static str) -> Case {
        self.tls = mode;
        self
    }

    /// `domain-validation` against `domain`.
    pub fn domain(mut self, domain: &'static str) -> Case {
        self.tls = "domain-validation";
        self.tls_domain = Some(domain);
        self
    }

    pub fn setting(mut self, line: &'static str) -> Case {
        self.settings.push(line);
        self
    }

    fn toml(&self) -> String {
        let mut s = format!("\n[[connector]]\nname = \"{}\"\n", self.name);
        match &self.target {
            Target::Smart { host, port } => {
                let _ = writeln!(s, "smart_hosts = [\"{host}:{port}\"]");
            }
            Target::Mx { domain, port } => {
                let _ = writeln!(s, "mx_domain = \"{domain}\"\nport = {port}");
            }
        }
        let _ = writeln!(s, "tls = \"{}\"", self.tls);
        if let Some(d) = self.tls_domain {
            let _ = writeln!(s, "tls_domain = \"{d}\"");
        }
        for line in &self.settings {
            let _ = writeln!(s, "{line}");
        }
        s
    }
}

/// Peers, running, and the cases against them. Dropping it stops the peers, then removes
/// their directory.
pub struct Group {
    pub cases: Vec<Case>,
    /// The probe's resolver: the group's DNS server, else a loopback port nobody answers on,
    /// so that a stray lookup fails here instead of leaving the machine.
    pub nameserver: String,
    /// A PEM file of extra trusted roots (the lab root).
    pub ca_file: Option<PathBuf>,
    pub daemons: Vec<Daemon>,
    /// Declared last: removed after the daemons that use it have stopped.
    pub dir: tempfile::TempDir,
}

impl Group {
    pub fn new(dir: tempfile::TempDir) -> Group {
        Group {
            cases: Vec::new(),
            nameserver: "127.0.0.1:9".into(),
            ca_file: None,
            daemons: Vec::new(),
            dir,
        }
    }

    /// Writes the configuration with every case's connector and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let t = humantime::format_duration(TIMEOUT);
        let mut s = format!(
            "[defaults]\nhelo_name = \"probe.lab.test\"\n\n[defaults.timeouts]\n\
             dns = \"{t}\"\nconnect = \"{t}\"\nbanner = \"{t}\"\ncommand = \"{t}\"\ntls = \"{t}\"\n\n\
             [dns]\nnameservers = [\"{}\"]\n",
            self.nameserver
        );
        if let Some(ca) = &self.ca_file {
            let _ = write!(s, "\n[tls]\nca_file = \"{}\"\n", ca.display());
        }
        for case in &self.cases {
            s.push_str(&case.toml());
        }
        let path = self.dir.path().join("connector-probe.toml");
        std::fs::write(&path, s).expect("write the probe's configuration");
        path
    }
}

/// One run of `connector-probe probe --json`.
pub struct Run {
    pub json: Value,
    pub exit: Option<i32>,
    pub elapsed: Duration,
}

impl Run {
    /// The probe's verdict in a few words: status, code, and the detail of the target that
    /// decided it.
    pub fn summary(&self) -> String {
        let v = &self.json;
        let decisive = targets(v)
            .find(|t| !t["code"].is_null())
            .or_else(|| targets(v).next());
        let detail = decisive.map_or(String::new(), |t| {
            let warnings = t["warnings"].as_array().map_or(0, Vec::len);
            let mut d = format!(
                "{}: {}",
                t["stage"].as_str().unwrap_or("?"),
                t["detail"].as_str().unwrap_or("")
            );
            if t["code"].is_null() && warnings > 0 {
                let _ = write!(d, "; warning: {}", t["warnings"][0].as_str().unwrap_or(""));
            }
            d
        });
        let code = v["code"]
            .as_str()
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        format!("{}{code} ({detail})", v["status"].as_str().unwrap_or("?"))
    }
}

/// Runs the binary for one connector of `config`, in `place`.
pub fn probe(place: &Place, config: &Path, connector: &str) -> Run {
    let started = Instant::now();
    let out = place
        .command(binary())
        .args(["probe", "--config"])
        .arg(config)
        .args(["--connector", connector, "--json"])
        .env_remove("CONNECTOR_PROBE_CONFIG")
        .output()
        .expect("the binary runs");
    let elapsed = started.elapsed();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{connector}: no JSON on stdout ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        json,
        exit: out.status.code(),
        elapsed,
    }
}

/// What is wrong with `run` as the outcome of `case`, if anything.
pub fn mismatch(case: &Case, run: &Run) -> Option<String> {
    let diffs = case.expect.differences(run);
    (!diffs.is_empty()).then(|| {
        format!(
            "{} ({}, {}): {}\n    got: {}",
            case.name,
            case.peer,
            case.tls,
            diffs.join("; "),
            run.summary()
        )
    })
}

/// Fails with every mismatch at once.
pub fn assert_no_mismatches(mismatches: &[String], cases: usize) {
    assert!(
        mismatches.is_empty(),
        "{} of {cases} case(s) differ from classification.md:\n  {}",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}

/// One area's test: unless its needs are missing, makes the place, starts the peers in it,
/// then probes every case and holds it to its expectation, printing what each produced.
pub fn run_area(
    what: &str,
    needs: &[Need],
    place: impl FnOnce() -> Place,
    start: fn(&Place) -> Group,
) {
    if !available(what, needs) {
        return;
    }
    let place = place();
    let group = start(&place);
    let config = group.write_config();
    let mut mismatches = Vec::new();
    for case in &group.cases {
        let run = probe(&place, &config, case.name);
        eprintln!(
            "{:<40} {:>6} ms  {}",
            case.name,
            run.elapsed.as_millis(),
            run.summary()
        );
        mismatches.extend(mismatch(case, &run));
    }
    assert_no_mismatches(&mismatches, group.cases.len());
}
