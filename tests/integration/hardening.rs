//! Attacks and accidents the binary must survive (issue 13): closed pipes, a closed stdout, a
//! second SIGTERM, forged dates in the state file, hostile certificate text, duplicate keys
//! and planted links in an import, a full disk.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer, Step};

use crate::daemon::{Daemon, WAIT, blocking, config, free_port, lab_dir, scrape, smart};
use crate::peers::support::{Need, available};
use crate::util::binary;

fn closed_port() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// `count` connectors to a refused port: a report of some 100 KiB, more than a pipe holds.
fn refused_config(dir: &Path, count: usize) -> String {
    let mut text = String::from(
        "[defaults]\nhelo_name = \"probe.lab.test\"\n[defaults.timeouts]\nconnect = \"2s\"\n",
    );
    let addr = closed_port();
    for i in 0..count {
        text.push_str(&format!(
            "\n[[connector]]\nname = \"refused-{i}\"\nsmart_hosts = [\"{addr}\"]\n"
        ));
    }
    let path = dir.join("probe.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs the binary with its stdout a pipe whose reader has already gone, as `| head -1`
/// leaves it once `head` has its line.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .env_remove("CONNECTOR_PROBE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_keeps_the_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = refused_config(dir.path(), 300);
    for (args, want) in [
        (vec!["check-config", "--config", &cfg], 0),
        (vec!["probe", "--all", "--config", &cfg], 2),
        (vec!["probe", "--all", "--json", "--config", &cfg], 2),
    ] {
        let out = with_closed_stdout(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// GET without asserting the status, which is what these tests check; empty while nothing
/// listens yet.
fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

fn until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_whose_stdout_closed_says_so_once_and_keeps_state_and_metrics() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let metrics = free_port();
    let cfg = config(dir.path(), metrics, &smart("gone", closed_port()));
    let state = dir.path().join("state.json");
    blocking(move || {
        let mut child = Command::new(binary())
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let healthz = || get(metrics, "/healthz");
        assert!(
            until(WAIT, || healthz().contains("standard output is closed")),
            "/healthz: {}",
            healthz()
        );
        assert!(healthz().starts_with("HTTP/1.1 503"), "{}", healthz());
        // Probes go on (every 300 ms): the state is written and the metrics count them.
        assert!(until(WAIT, || state.exists()), "no state file");
        let probes = |text: String| {
            text.lines()
                .find(|l| l.starts_with("connector_probe_probes_total{") && l.contains("gone"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let first = probes(scrape(metrics, "/metrics"));
        assert!(
            until(WAIT, || probes(scrape(metrics, "/metrics")) >= first + 3.0),
            "probes stopped at {first}"
        );
        let saved = std::fs::read_to_string(&state).unwrap();
        assert!(saved.contains("\"gone\""), "{saved}");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.matches("standard output failed").count(),
            1,
            "said once: {err}"
        );
        assert!(!err.contains("Unable to write"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_stops_at_once() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let silent = SmtpServer::start(Script::new(vec![Step::Hang]))
        .await
        .unwrap();
    let cfg = config(dir.path(), free_port(), &smart("silent", silent.addr));
    // Each probe now waits 60 s for a banner that never comes, beyond the 10 s grace.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("banner = \"1s\"", "banner = \"60s\"");
    std::fs::write(&cfg, text).unwrap();
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        d.wait("daemon_started", WAIT, |v| v["event"] == "daemon_started");
        // The first probe starts within the interval (300 ms) and hangs.
        std::thread::sleep(Duration::from_millis(800));
        d.signal(libc::SIGTERM);
        d.wait("daemon_stopping", WAIT, |v| v["event"] == "daemon_stopping");
        let (code, took, seen) = d.stop(Duration::from_secs(3));
        assert_eq!(code, 1, "a forced stop is not a clean one");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let stopped = seen
            .iter()
            .find(|v| v["event"] == "daemon_stopped")
            .expect("daemon_stopped");
        assert_eq!(stopped["forced"], true, "{stopped}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_from_the_year_9999_is_clamped_and_the_daemon_keeps_going() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    std::fs::write(
        dir.path().join("state.json"),
        r#"{"version": 1, "connectors": {"gone": {"status": "failing", "code": "450 4.4.316",
            "failing_since": "9999-12-31T23:59:59Z"}}}"#,
    )
    .unwrap();
    let metrics = free_port();
    let cfg = config(dir.path(), metrics, &smart("gone", closed_port()));
    let state = dir.path().join("state.json");
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        let w = d.wait("state_date_clamped", WAIT, |v| {
            v["event"] == "state_date_clamped"
        });
        assert!(w["message"].as_str().unwrap().contains("9999-12-31"), "{w}");
        // Before the fix, the first probe panicked with the state lock held: no second one.
        for _ in 0..3 {
            d.event("probe_result", "gone", WAIT);
        }
        // The clamped episode began now, so queue_alert fires after queue_alert_after (2 s).
        d.event("queue_alert", "gone", WAIT);
        assert!(get(metrics, "/healthz").starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(1500));
        let saved = std::fs::read_to_string(&state).unwrap();
        assert!(!saved.contains("9999"), "{saved}");
        assert_eq!(d.stop(WAIT).0, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_text_cannot_write_to_the_terminal() {
    let pki = Pki::new();
    let forged = "mail.lab.test\x1b]0;owned\x07\x1b[2J\n  ok   127.0.0.1:25  stage quit";
    let leaf = pki.leaf(&LeafSpec {
        common_name: forged.into(),
        names: vec!["mail.lab.test".into(), "evil\x1b[31m.lab.test".into()],
        ..LeafSpec::valid("mail.lab.test")
    });
    let server = SmtpServer::start(Script::healthy(leaf.server_config()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.toml");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\nhelo_name = \"probe.lab.test\"\n[[connector]]\nname = \"forged\"\nsmart_hosts = [\"{}\"]\n",
            server.addr
        ),
    )
    .unwrap();
    let out = blocking(move || {
        Command::new(binary())
            .args(["probe", "--connector", "forged", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    })
    .await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(
        text.contains("\\x1b]0;owned\\x07\\x1b[2J\\n  ok"),
        "escaped, not dropped: {text}"
    );
    assert!(text.contains("evil\\x1b[31m.lab.test"), "{text}");
    let fake = text
        .lines()
        .filter(|l| l.trim_start().starts_with("ok "))
        .count();
    assert_eq!(fake, 0, "no line forged by the certificate: {text}");
}

fn import(args: &[&str]) -> Output {
    Command::new(binary())
        .args(["import", "exchange"])
        .args(args)
        .output()
        .unwrap()
}

const EXPORT: &str = r#"[{"Name": "Relay", "SmartHosts": ["mail.contoso.com"], "Enabled": false,
  "TlsSettings": "EncryptionOnly", "Enabled": true}]"#;

#[test]
fn an_export_with_a_key_twice_is_refused_with_the_key_and_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");
    std::fs::write(&file, EXPORT).unwrap();
    let out = import(&[file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("duplicate key \"Enabled\" at line 2 column"),
        "{err}"
    );
}

#[test]
fn import_force_never_writes_through_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");
    std::fs::write(
        &file,
        r#"{"Name": "Relay", "SmartHosts": ["mail.contoso.com"]}"#,
    )
    .unwrap();
    let output = dir.path().join("out.toml");
    std::fs::write(&output, "# old\n").unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // The temporary name the import used before, and the state file's old one.
    symlink(&victim, dir.path().join(".out.toml.import")).unwrap();
    let out = import(&[
        file.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--force",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some_and(|c| c < 3), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        std::fs::read_to_string(&output)
            .unwrap()
            .contains("[[connector]]")
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A full disk: a 64 KiB tmpfs, filled to the last block, in a mount namespace of its own
/// (root and `unshare` needed; skipped otherwise). The import's replacement fails with ENOSPC
/// and leaves no temporary file behind, and the old file as it was; a new file that does not
/// fit is not left half-written.
#[test]
fn a_full_disk_leaves_no_temporary_file() {
    if !available(
        "full-disk import",
        &[Need::Root, Need::Tool("unshare"), Need::Tool("mount")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.json");
    let many: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"Name": "Relay {i}", "SmartHosts": ["mail{i}.contoso.com"]}}"#))
        .collect();
    std::fs::write(&export, format!("[{}]", many.join(","))).unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {disk} && echo '# old' > {disk}/out.toml \
         && (dd if=/dev/zero of={disk}/filler bs=1k 2>/dev/null; true) \
         && {bin} import exchange {export} --output {disk}/out.toml --force; \
         echo exit=$?; {bin} import exchange {export} --output {disk}/new.toml; \
         echo new_exit=$?; echo files=$(ls -A {disk}); cat {disk}/out.toml",
        disk = disk.display(),
        bin = binary(),
        export = export.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(text.starts_with("exit=3\nnew_exit=3\n"), "{text}\n{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        text.contains("files=filler out.toml\n"),
        "only the filler and the old file, no half-written new one: {text}"
    );
    assert!(text.contains("# old"), "the old file is kept: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_text_log_has_no_colours_off_a_terminal() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let cfg = config(dir.path(), free_port(), &smart("gone", closed_port()));
    blocking(move || {
        let mut child = Command::new(binary())
            .args(["run", "--log-format", "text", "--config"])
            .arg(&cfg)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        child.wait().unwrap();
        assert!(text.contains("probing 1 connector(s)"), "{text}");
        assert!(text.contains("gone: unknown -> failing"), "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
    })
    .await;
}
