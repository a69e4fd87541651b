//! Alerting through log shipping, end to end: the daemon's events in a file, as a container's
//! stdout on a volume leaves them, read by a real shipper running the shipped configuration
//! (`config/rsyslog/connector-probe.conf` in `rsyslogd`, `config/syslog-ng/connector-probe.conf`
//! in `syslog-ng`), its `/var/log/connector-probe/` paths pointed at a temporary directory and
//! nothing else changed. A lab server fails and recovers; the daemon and the shipper are each
//! restarted in the middle; the alert file must hold exactly one line per transition and the
//! archive every other line, whole and once. Between the daemon's lines the test writes a line
//! longer than 64 KiB and an alert wrapped as Docker's json-file log driver writes it.
//!
//! syslog-ng-core and rsyslog conflict in Debian (each is the system log daemon), so CI keeps
//! rsyslog installed and unpacks syslog-ng-core beside it; `CONNECTOR_PROBE_SYSLOG_NG_ROOT`
//! names the directory it was unpacked into. Without it, a `syslog-ng` on the `PATH` is used.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer};
use serde_json::Value;

use super::support::{Need, available, tool_path};
use crate::util::binary;

/// The directory the shipped configuration reads and writes in; the test replaces it.
const SHIPPED_DIR: &str = "/var/log/connector-probe/";
/// Where CI unpacked the syslog-ng-core package.
const SYSLOG_NG_ROOT: &str = "CONNECTOR_PROBE_SYSLOG_NG_ROOT";
/// How long any one thing may take to show up (a debug build on a busy two-core machine).
const WAIT: Duration = Duration::from_secs(30);
/// rsyslog cuts lines at 8 KiB by default, syslog-ng at 64 KiB; this one is longer.
const LONG_LINE: usize = 70 * 1024;

/// A child process, killed and reaped on drop unless it was stopped first; its stderr (and
/// stdout, unless redirected) goes to `log`, quoted when something goes wrong.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf, stdout: Option<File>) -> Self {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the process's log");
        let stdout = match stdout {
            Some(file) => Stdio::from(file),
            None => Stdio::from(out.try_clone().expect("dup the log")),
        };
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {cmd:?}: {e}"));
        Process { name, child, log }
    }

    /// SIGTERM, then the exit status, which must come within [`WAIT`].
    async fn terminate(mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill {} failed", self.name);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {WAIT:?}:\n{}",
                self.name,
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails, with its log, if it has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, tail(&self.log));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Where everything of one run lives.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon's stdout: the file the shipper reads.
    fn events(&self) -> PathBuf {
        self.path("events.jsonl")
    }

    fn alerts(&self) -> Vec<Alert> {
        read_lines(&self.path("alerts.log"))
            .iter()
            .map(|l| Alert::parse(l))
            .collect()
    }

    fn archive(&self) -> Vec<String> {
        read_lines(&self.path("archive.jsonl"))
    }

    fn event_lines(&self) -> Vec<String> {
        read_lines(&self.events())
    }

    /// The shipped configuration `config/<relative>` with its paths in this directory.
    fn shipped_config(&self, relative: &str) -> PathBuf {
        let shipped_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(relative);
        let shipped = std::fs::read_to_string(&shipped_path).expect("read the shipped config");
        for file in ["events.jsonl", "alerts.log", "archive.jsonl"] {
            assert!(
                shipped.contains(&format!("\"{SHIPPED_DIR}{file}\"")),
                "{relative} names {SHIPPED_DIR}{file}"
            );
        }
        let here = format!("{}/", self.dir.path().display());
        let conf = self.path("connector-probe.conf");
        std::fs::write(&conf, shipped.replace(SHIPPED_DIR, &here)).unwrap();
        conf
    }

    fn start_shipper(&self, shipper: &Shipper) -> Process {
        Process::spawn(
            shipper.name,
            shipper.command(),
            self.path("shipper.log"),
            None,
        )
    }

    fn start_daemon(&self, config: &Path) -> Process {
        // Appended to, as a log driver or `>>` does, so a restart continues the same file.
        let events = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.events())
            .expect("open the event file");
        let mut cmd = Command::new(binary());
        cmd.args(["run", "--config"])
            .arg(config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .env_remove("CONNECTOR_PROBE_CONFIG");
        Process::spawn(
            "connector-probe run",
            cmd,
            self.path("daemon.log"),
            Some(events),
        )
    }

    /// Polls `found` until it gives something, for at most [`WAIT`], checking that the
    /// processes still run; on timeout, fails with what the files hold.
    async fn wait_for<T>(
        &self,
        what: &str,
        running: &mut [&mut Process],
        mut found: impl FnMut(&Lab) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = found(self) {
                return t;
            }
            for p in running.iter_mut() {
                p.assert_running();
            }
            if Instant::now() >= deadline {
                let alerts: Vec<String> = self.alerts().into_iter().map(|a| a.line).collect();
                panic!(
                    "no {what} within {WAIT:?}\nalerts:\n{}\nevents (tail):\n{}\nshipper:\n{}\ndaemon:\n{}",
                    alerts.join("\n"),
                    tail(&self.events()),
                    tail(&self.path("shipper.log")),
                    tail(&self.path("daemon.log"))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A log shipper, run in the foreground as a private instance: its own work directory and
/// state, no system socket.
struct Shipper {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
}

impl Shipper {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).envs(self.env.iter().cloned());
        cmd
    }

    /// rsyslogd with the shipped configuration, included from a main file that gives it a work
    /// directory (where imfile keeps its read position), as /etc/rsyslog.conf does.
    fn rsyslog(lab: &Lab) -> Shipper {
        let conf = lab.shipped_config("rsyslog/connector-probe.conf");
        let work = lab.path("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let main = lab.path("rsyslog.conf");
        let text = format!(
            "global(workDirectory=\"{}\")\ninclude(file=\"{}\")\n",
            work.display(),
            conf.display()
        );
        std::fs::write(&main, text).unwrap();
        // -n: in the foreground; -i: a pid file of its own, not the system instance's.
        let args = vec![
            "-n".into(),
            "-f".into(),
            main.into(),
            "-i".into(),
            lab.path("rsyslogd.pid").into(),
        ];
        Shipper {
            name: "rsyslogd",
            program: tool_path("rsyslogd"),
            args,
            env: Vec::new(),
        }
    }

    /// syslog-ng with the shipped configuration, included from a main file that declares the
    /// configuration version of the binary, as /etc/syslog-ng/syslog-ng.conf does. Its read
    /// position is kept in its persist file.
    fn syslog_ng(lab: &Lab, install: &SyslogNg) -> Shipper {
        let conf = lab.shipped_config("syslog-ng/connector-probe.conf");
        let mut probe = install.command();
        let version = probe
            .arg("--version")
            .output()
            .expect("syslog-ng --version");
        let version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix("Config version:")
                    .map(|v| v.trim().to_owned())
            })
            .expect("syslog-ng --version gives its config version");
        let main = lab.path("syslog-ng.conf");
        let text = format!("@version: {version}\n@include \"{}\"\n", conf.display());
        std::fs::write(&main, text).unwrap();
        let mut args = install.args.clone();
        // -F: in the foreground; no capabilities to drop; persist file, pid file and control
        // socket of its own, not the system instance's.
        args.extend([
            OsString::from("-F"),
            "--no-caps".into(),
            "-f".into(),
            main.into(),
        ]);
        for (flag, file) in [
            ("-R", "syslog-ng.persist"),
            ("-p", "syslog-ng.pid"),
            ("-c", "syslog-ng.ctl"),
        ] {
            args.extend([flag.into(), lab.path(file).into()]);
        }
        Shipper {
            name: "syslog-ng",
            program: install.program.clone(),
            args,
            env: install.env.clone(),
        }
    }
}

/// Where syslog-ng is: installed, or unpacked from its Debian package.
struct SyslogNg {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
}

impl SyslogNg {
    /// The unpacked package under `$CONNECTOR_PROBE_SYSLOG_NG_ROOT`, else a `syslog-ng` on the
    /// `PATH`; `None` (after saying "SKIPPED") when there is neither.
    fn find() -> Option<SyslogNg> {
        let Some(root) = std::env::var_os(SYSLOG_NG_ROOT).map(PathBuf::from) else {
            return available("syslog-ng shipping", &[Need::Tool("syslog-ng")]).then(|| SyslogNg {
                program: tool_path("syslog-ng"),
                args: Vec::new(),
                env: Vec::new(),
            });
        };
        let libs = root.join("usr/lib/syslog-ng");
        let modules = std::fs::read_dir(&libs)
            .unwrap_or_else(|e| panic!("{SYSLOG_NG_ROOT}: {}: {e}", libs.display()))
            .map(|e| e.unwrap().path())
            .find(|p| p.join("libjson-plugin.so").is_file())
            .unwrap_or_else(|| {
                panic!(
                    "{SYSLOG_NG_ROOT}: no module directory in {}",
                    libs.display()
                )
            });
        Some(SyslogNg {
            program: root.join("usr/sbin/syslog-ng"),
            args: vec![format!("--module-path={}", modules.display()).into()],
            env: vec![("LD_LIBRARY_PATH", libs.into())],
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).envs(self.env.iter().cloned());
        cmd
    }
}

/// One line of the alert file: `<timestamp> <alert> connector=<name>[ key=value…]`.
#[derive(Debug, Clone)]
struct Alert {
    timestamp: String,
    kind: String,
    connector: String,
    line: String,
}

impl Alert {
    fn parse(line: &str) -> Alert {
        let mut words = line.splitn(4, ' ');
        let (Some(timestamp), Some(kind), Some(connector)) =
            (words.next(), words.next(), words.next())
        else {
            panic!("not an alert line: {line:?}");
        };
        let connector = connector
            .strip_prefix("connector=")
            .unwrap_or_else(|| panic!("no connector in {line:?}"));
        Alert {
            timestamp: timestamp.to_owned(),
            kind: kind.to_owned(),
            connector: connector.to_owned(),
            line: line.to_owned(),
        }
    }

    /// The value of `key=`: up to the next space, or within quotes.
    fn field(&self, key: &str) -> Option<&str> {
        let start = self.line.find(&format!(" {key}="))? + key.len() + 2;
        let rest = &self.line[start..];
        match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next(),
            None => rest.split(' ').next(),
        }
    }
}

/// The event on `line`, unwrapped from Docker's json-file format (`{"log":"<line>\n",…}`)
/// if need be.
fn event(line: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(line).ok()?;
    match v["log"].as_str() {
        Some(inner) if v.get("event").is_none() => serde_json::from_str(inner).ok(),
        _ => Some(v),
    }
}

/// What the shipped configuration calls the event on `line`, if it is an alert: its
/// documented routing, restated as the oracle of this test.
fn alert_kind(line: &str) -> Option<String> {
    let v = event(line)?;
    match v["event"].as_str()? {
        "state_change" if v["to"] == "failing" => Some("failing".into()),
        "state_change" if v["from"] == "failing" => Some("recovered".into()),
        e @ ("queue_alert" | "ndr_imminent" | "ndr_expected" | "certificate_expiring") => {
            Some(e.into())
        }
        _ => None,
    }
}

fn daemon_config(lab: &Lab, server: SocketAddr) -> PathBuf {
    // A connector whose probe_result passes rsyslog's default 8 KiB limit: 25 targets with
    // long names (which fail to resolve: the resolver is a loopback port nobody answers on).
    let long_hosts: Vec<String> = (0..25)
        .map(|i| {
            let label = "x".repeat(60);
            format!("\"{label}.{label}.{label}.mail-{i:02}.example:25\"")
        })
        .collect();
    let text = format!(
        r#"
[defaults]
helo_name = "probe.lab.test"
interval = "1s"
[defaults.timeouts]
dns = "1s"
connect = "1s"
banner = "1s"
command = "1s"
tls = "1s"

[dns]
nameservers = ["127.0.0.1:9"]

[tls]
ca_file = "{root}"

[daemon]
metrics_listen = ""
state_file = "{state}"
queue_alert_after = "3s"
message_expiration = "1h"

[[connector]]
name = "onprem"
smart_hosts = ["{server}"]
tls = "certificate-validation"

[[connector]]
name = "many-targets"
smart_hosts = [{long}]
"#,
        root = lab.path("root.pem").display(),
        state = lab.path("state.json").display(),
        long = long_hosts.join(", "),
    );
    let path = lab.path("connector-probe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn healthy_server(pki: &Pki, addr: Option<SocketAddr>) -> SmtpServer {
    let script = Script::healthy(pki.leaf(&LeafSpec::valid("127.0.0.1")).server_config());
    match addr {
        Some(a) => SmtpServer::start_on(a, script).await.unwrap(),
        None => SmtpServer::start(script).await.unwrap(),
    }
}

fn count(alerts: &[Alert], kind: &str, connector: &str) -> usize {
    alerts
        .iter()
        .filter(|a| a.kind == kind && a.connector == connector)
        .count()
}

fn find(alerts: &[Alert], kind: &str, connector: &str) -> Option<Alert> {
    alerts
        .iter()
        .find(|a| a.kind == kind && a.connector == connector)
        .cloned()
}

/// Lines of the archive that are `event` for `connector`.
fn archived(lab: &Lab, event: &str, connector: &str) -> Vec<Value> {
    lab.archive()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event && v["connector"] == connector)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rsyslog_ships_one_alert_per_transition_across_restarts() {
    if !available("rsyslog shipping", &[Need::Tool("rsyslogd")]) {
        return;
    }
    let lab = Lab::new();
    let shipper = Shipper::rsyslog(&lab);
    failing_and_recovering_across_restarts(lab, shipper).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_ng_ships_one_alert_per_transition_across_restarts() {
    let Some(install) = SyslogNg::find() else {
        return;
    };
    let lab = Lab::new();
    let shipper = Shipper::syslog_ng(&lab, &install);
    failing_and_recovering_across_restarts(lab, shipper).await;
}

/// The journald variant cannot run here (no systemd as PID 1), but rsyslogd can check it, with
/// imjournal loaded as on RHEL and the routing it calls.
#[test]
fn rsyslog_accepts_the_journald_variant() {
    if !available("rsyslog journald variant", &[Need::Tool("rsyslogd")]) {
        return;
    }
    let lab = Lab::new();
    let routing = lab.shipped_config("rsyslog/connector-probe.conf");
    let variant =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rsyslog/connector-probe-journald.conf");
    let main = lab.path("rsyslog.conf");
    let text = format!(
        "global(workDirectory=\"{}\")\nmodule(load=\"imjournal\" StateFile=\"imjournal.state\")\n\
         include(file=\"{}\")\ninclude(file=\"{}\")\n",
        lab.dir.path().display(),
        variant.display(),
        routing.display()
    );
    std::fs::write(&main, text).unwrap();
    let out = Command::new(tool_path("rsyslogd"))
        .arg("-N1")
        .arg("-f")
        .arg(&main)
        .output()
        .expect("rsyslogd runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !said.contains("error"),
        "rsyslogd -N1: {}\n{said}",
        out.status
    );
}

/// The scenario both shippers go through; see the module's documentation.
async fn failing_and_recovering_across_restarts(lab: Lab, shipper: Shipper) {
    let pki = Pki::new();
    std::fs::write(lab.path("root.pem"), &pki.root.pem).unwrap();
    let server = healthy_server(&pki, None).await;
    let addr = server.addr;
    let config = daemon_config(&lab, addr);

    let mut shipping = lab.start_shipper(&shipper);
    let mut daemon = lab.start_daemon(&config);

    // Healthy: the first state change (unknown -> ok) is not an alert; it goes to the archive.
    lab.wait_for(
        "onprem ok in the archive",
        &mut [&mut shipping, &mut daemon],
        |l| {
            archived(l, "state_change", "onprem")
                .into_iter()
                .find(|v| v["to"] == "ok")
        },
    )
    .await;
    assert_eq!(count(&lab.alerts(), "recovered", "onprem"), 0);

    // The server goes away: connection refused, one failing alert.
    drop(server);
    let failing = lab
        .wait_for(
            "the failing alert",
            &mut [&mut shipping, &mut daemon],
            |l| find(&l.alerts(), "failing", "onprem"),
        )
        .await;
    assert_eq!(
        failing.field("code"),
        Some("450 4.4.316"),
        "{}",
        failing.line
    );
    assert_eq!(
        failing.field("status"),
        Some("ok->failing"),
        "{}",
        failing.line
    );
    assert!(
        failing
            .field("queue")
            .is_some_and(|q| q.starts_with("450 4.4.316 Connection refused [Message=")),
        "the queue line EOP would show: {}",
        failing.line
    );
    let since = failing.field("since").expect("since").to_owned();

    // The daemon restarts mid-episode, appending to the same file. While it is down, a line
    // longer than 64 KiB is appended too (rsyslog cuts at 8 KiB by default, syslog-ng at 64).
    assert!(
        daemon.terminate().await.success(),
        "SIGTERM is a clean exit"
    );
    let long_line = serde_json::json!({
        "timestamp": "2026-01-01T00:00:00Z",
        "level": "INFO",
        "message": "a very long line",
        "event": "probe_result",
        "connector": "synthetic",
        "targets": "t".repeat(LONG_LINE),
    })
    .to_string();
    // And an alert as Docker's json-file log driver writes it, which the configurations unwrap.
    let wrapped = serde_json::json!({
        "timestamp": "2026-01-01T00:00:01Z",
        "level": "WARN",
        "message": "docker: failing",
        "event": "state_change",
        "connector": "docker",
        "from": "ok",
        "to": "failing",
        "code": "450 4.4.317",
    });
    let wrapped = serde_json::json!({
        "log": format!("{wrapped}\n"),
        "stream": "stdout",
        "time": "2026-01-01T00:00:01.000000001Z",
    });
    writeln!(
        OpenOptions::new().append(true).open(lab.events()).unwrap(),
        "{long_line}\n{wrapped}"
    )
    .unwrap();
    let mut daemon = lab.start_daemon(&config);

    // The restarted daemon carries on: the queue alert comes once, from the same episode, and
    // the failing alert is not repeated.
    let queue = lab
        .wait_for("the queue alert", &mut [&mut shipping, &mut daemon], |l| {
            find(&l.alerts(), "queue_alert", "onprem")
        })
        .await;
    assert_eq!(queue.field("code"), Some("450 4.4.316"), "{}", queue.line);
    assert_eq!(queue.field("since"), Some(since.as_str()), "{}", queue.line);
    lab.wait_for(
        "two probes by the restarted daemon",
        &mut [&mut shipping, &mut daemon],
        |l| {
            let started = l
                .archive()
                .iter()
                .filter(|line| line.contains(r#""event":"daemon_started""#))
                .count();
            let after_restart = l
                .archive()
                .iter()
                .rev()
                .take_while(|line| !line.contains(r#""event":"daemon_started""#))
                .filter(|line| line.contains(r#""connector":"onprem""#))
                .count();
            (started == 2 && after_restart >= 2).then_some(())
        },
    )
    .await;

    // The shipper stops; the server comes back while it is down, and the recovery is written to
    // the file with nobody reading it.
    assert!(
        shipping.terminate().await.success(),
        "{} stops cleanly",
        shipper.name
    );
    let _server = healthy_server(&pki, Some(addr)).await;
    lab.wait_for("the recovery in the event file", &mut [&mut daemon], |l| {
        l.event_lines()
            .iter()
            .any(|line| alert_kind(line).as_deref() == Some("recovered") && line.contains("onprem"))
            .then_some(())
    })
    .await;
    // The shipper starts again from its saved position: the recovery comes out, nothing before it
    // again.
    let mut shipping = lab.start_shipper(&shipper);
    let recovered = lab
        .wait_for(
            "the recovery alert",
            &mut [&mut shipping, &mut daemon],
            |l| find(&l.alerts(), "recovered", "onprem"),
        )
        .await;
    assert_eq!(
        recovered.field("status"),
        Some("failing->ok"),
        "{}",
        recovered.line
    );
    assert_eq!(recovered.field("code"), None, "no code once recovered");

    // Everything written has been read: every line is in exactly one of the two outputs.
    assert!(daemon.terminate().await.success());
    let written = lab.event_lines().len();
    lab.wait_for("every line shipped", &mut [&mut shipping], |l| {
        (l.alerts().len() + l.archive().len() >= written).then_some(())
    })
    .await;
    assert!(shipping.terminate().await.success());

    let alerts = lab.alerts();
    let docker = find(&alerts, "failing", "docker").expect("the alert from Docker's format");
    assert_eq!(docker.field("code"), Some("450 4.4.317"), "{}", docker.line);
    for kind in ["failing", "queue_alert", "recovered"] {
        assert_eq!(
            count(&alerts, kind, "onprem"),
            1,
            "one {kind} alert for the episode, across both restarts:\n{alerts:#?}"
        );
    }
    // The outputs hold the event file exactly: the alerts in order, one line for each alert
    // event, and the archive every other line, whole, in order, once.
    let lines = lab.event_lines();
    let expected_alerts: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| {
            let kind = alert_kind(l)?;
            Some((event(l)?["timestamp"].as_str()?.to_owned(), kind))
        })
        .collect();
    let got_alerts: Vec<(String, String)> = alerts
        .iter()
        .map(|a| (a.timestamp.clone(), a.kind.clone()))
        .collect();
    assert_eq!(got_alerts, expected_alerts, "the alert file");
    let expected_archive: Vec<&String> = lines.iter().filter(|l| alert_kind(l).is_none()).collect();
    let archive = lab.archive();
    assert!(
        archive.iter().eq(expected_archive.iter().copied()),
        "the archive differs from the event file's other lines ({} vs {} lines)",
        archive.len(),
        expected_archive.len()
    );
    assert!(
        archive.contains(&long_line),
        "the line of {LONG_LINE} bytes is whole"
    );
    // The connector with 25 long-named targets: its probe_result lines pass 8 KiB, list 20
    // targets and count the rest.
    let many = archived(&lab, "probe_result", "many-targets");
    assert!(!many.is_empty(), "no probe_result for many-targets");
    for v in &many {
        let line = v.to_string();
        assert!(
            line.len() > 8 * 1024 && line.len() < 16 * 1024,
            "{} bytes",
            line.len()
        );
        let targets = v["targets"].as_str().unwrap();
        assert_eq!(targets.split("; ").count(), 21, "{targets}");
        assert!(targets.ends_with("; and 5 more"), "{targets}");
    }
}
