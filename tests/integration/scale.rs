//! Issue 14 as a process: the state journal (a probe that changes nothing writes nothing;
//! `kill -9` after a flush loses nothing), a large configuration loaded by the daemon, and
//! `probe --all` streaming its report.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer};
use serde_json::Value;

use crate::daemon::{Daemon, WAIT, blocking, config, free_port, lab_dir, smart};
use crate::util::binary;

fn closed_port() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// The state files' bytes: the snapshot and the journal.
fn files(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    (read("state.json"), read("state.json.journal"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_that_changes_nothing_writes_nothing() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let leaf = pki.leaf(&LeafSpec::valid("127.0.0.1"));
    let server = SmtpServer::start(Script::healthy(leaf.server_config()))
        .await
        .unwrap();
    let cfg = config(dir.path(), free_port(), &smart("steady", server.addr));
    let path = dir.path().to_owned();
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        d.event("state_change", "steady", WAIT);
        // The change is written within a second (FLUSH_TICK); then probes every 300 ms.
        d.event("probe_result", "steady", WAIT);
        std::thread::sleep(Duration::from_millis(1500));
        let before = files(&path);
        assert!(
            String::from_utf8_lossy(&before.0).contains("\"steady\""),
            "the first change made the snapshot"
        );
        for _ in 0..6 {
            d.event("probe_result", "steady", WAIT);
        }
        std::thread::sleep(Duration::from_millis(1200));
        assert!(
            files(&path) == before,
            "six unchanged probes wrote to the state files"
        );
        let (code, _, _) = d.stop(WAIT);
        assert_eq!(code, 0);
        // A clean stop compacts: the snapshot keeps last_probe, the journal is empty.
        let (snapshot, journal) = files(&path);
        let saved: Value = serde_json::from_slice(&snapshot).unwrap();
        assert!(
            saved["connectors"]["steady"]["last_probe"].is_string(),
            "{saved}"
        );
        assert_eq!(
            journal.iter().filter(|&&b| b == b'\n').count(),
            1,
            "the header alone"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_a_flush_keeps_failing_since_and_the_raised_alerts() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let cfg = config(dir.path(), free_port(), &smart("gone", closed_port()));
    let path = dir.path().to_owned();
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        let since = d.event("state_change", "gone", WAIT)["failing_since"]
            .as_str()
            .unwrap()
            .to_owned();
        d.event("queue_alert", "gone", WAIT);
        // Flushed within the spacing of writes (5 s, after the first change's write); then
        // no clean stop, no last compaction.
        let flushed = std::time::Instant::now();
        let raised = |journal: &[u8]| {
            String::from_utf8_lossy(journal)
                .lines()
                .any(|l| l.contains("\"queue_alert\":true"))
        };
        while !raised(&files(&path).1) && flushed.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(100));
        }
        d.signal(libc::SIGKILL);
        let (_, journal) = files(&path);
        assert!(
            raised(&journal),
            "the raised alert is in the journal: {}",
            String::from_utf8_lossy(&journal)
        );
        drop(d);

        let mut d = Daemon::start(&cfg);
        for _ in 0..3 {
            d.event("probe_result", "gone", WAIT);
        }
        let (code, _, seen) = d.stop(WAIT);
        assert_eq!(code, 0);
        let repeated: Vec<&Value> = seen
            .iter()
            .filter(|v| v["event"] == "state_change" || v["event"] == "queue_alert")
            .collect();
        assert!(
            repeated.is_empty(),
            "raised again after kill -9: {repeated:?}"
        );
        let (snapshot, _) = files(&path);
        let saved: Value = serde_json::from_slice(&snapshot).unwrap();
        assert_eq!(saved["connectors"]["gone"]["failing_since"], since.as_str());
    })
    .await;
}

/// The status page's transitions of `name` in the state files: the snapshot's, then the
/// journal's lines in order, as `(at, status)`.
fn transitions(dir: &std::path::Path, name: &str) -> Vec<(i64, String)> {
    let (snapshot, journal) = files(dir);
    let pair = |t: &Value| (t["at"].as_i64().unwrap(), t["status"].to_string());
    let mut out: Vec<(i64, String)> = serde_json::from_slice::<Value>(&snapshot)
        .ok()
        .and_then(|s| s["history"][name].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(pair)
        .collect();
    for line in String::from_utf8_lossy(&journal).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["connector"] == name {
            out.extend(v["transitions"].as_array().into_iter().flatten().map(pair));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_a_flush_keeps_the_status_pages_transitions() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let leaf = pki.leaf(&LeafSpec::valid("127.0.0.1"));
    let server = SmtpServer::start(Script::healthy(leaf.server_config()))
        .await
        .unwrap();
    let cfg = config(dir.path(), free_port(), &smart("flappy", server.addr));
    let path = dir.path().to_owned();
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed() < WAIT, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (mut d, first) = blocking({
        let path = path.clone();
        move || {
            let mut d = Daemon::start(&cfg);
            d.event("state_change", "flappy", WAIT);
            until("the first transition written", &|| {
                transitions(&path, "flappy").len() == 1
            });
            let first = transitions(&path, "flappy");
            (d, first)
        }
    })
    .await;
    assert_eq!(first[0].1, "\"ok\"");
    drop(server);
    let (written, cfg) = blocking({
        let path = path.clone();
        move || {
            let v = d.event("state_change", "flappy", WAIT);
            assert_eq!(v["to"], "failing", "{v}");
            // The failing transition goes to the journal (the snapshot exists already).
            until("the second transition journaled", &|| {
                transitions(&path, "flappy").len() == 2
            });
            let journal = String::from_utf8(files(&path).1).unwrap();
            assert!(journal.contains("\"transitions\""), "{journal}");
            d.signal(libc::SIGKILL);
            drop(d);
            (
                transitions(&path, "flappy"),
                config(&path, free_port(), &smart("flappy", closed_port())),
            )
        }
    })
    .await;
    assert_eq!(written[1].1, "\"failing\"");
    blocking(move || {
        // A second later, so a transition made again would not have the same date.
        std::thread::sleep(Duration::from_millis(1100));
        let mut d = Daemon::start(&cfg);
        for _ in 0..3 {
            d.event("probe_result", "flappy", WAIT);
        }
        let (code, _, _) = d.stop(WAIT);
        assert_eq!(code, 0);
        // Compacted at the stop: the snapshot alone holds the timeline, as replayed.
        let (_, journal) = files(&path);
        assert_eq!(journal.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(
            transitions(&path, "flappy"),
            written,
            "the same transitions, none made again"
        );
    })
    .await;
}

/// `count` connectors to one refused port.
fn many(count: usize, addr: SocketAddr) -> String {
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "[[connector]]\nname = \"c{i:05}\"\nsmart_hosts = [\"{addr}\"]\n"
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_of_twenty_thousand_connectors_starts_and_reloads() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let closed = closed_port();
    let cfg = config(dir.path(), free_port(), &many(20_000, closed));
    // Probing them all every 300 ms is not the point here: once an hour, spread.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("interval = \"300ms\"", "interval = \"1h\"");
    std::fs::write(&cfg, &text).unwrap();
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        let started = d.wait("daemon_started", WAIT, |v| v["event"] == "daemon_started");
        assert_eq!(started["connectors"], 20_000);
        // One connector fewer, one renamed: a diff, not a restart of everything.
        let text = text.replacen("name = \"c00000\"", "name = \"renamed\"", 1);
        let text = text.replacen(
            &format!("[[connector]]\nname = \"c00001\"\nsmart_hosts = [\"{closed}\"]\n"),
            "",
            1,
        );
        std::fs::write(&cfg, text).unwrap();
        d.signal(libc::SIGHUP);
        let reloaded = d.wait("config_reloaded", WAIT, |v| v["event"] == "config_reloaded");
        assert_eq!(
            (
                &reloaded["added"],
                &reloaded["changed"],
                &reloaded["removed"]
            ),
            (&Value::from(1), &Value::from(0), &Value::from(2)),
            "{reloaded}"
        );
        assert_eq!(d.stop(WAIT).0, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_all_streams_one_array_in_the_order_probes_end() {
    let pki = Pki::new();
    // The first connector's server hangs up to its banner timeout (2 s); the others answer
    // at once, so they come out before it.
    let slow = SmtpServer::start(Script::new(vec![connector_probe::lab::smtp::Step::Hang]))
        .await
        .unwrap();
    let dir = lab_dir(&pki);
    let mut text = String::from(
        "[defaults]\nhelo_name = \"probe.lab.test\"\n[defaults.timeouts]\nbanner = \"2s\"\n",
    );
    text.push_str(&format!(
        "[[connector]]\nname = \"slow\"\nsmart_hosts = [\"{}\"]\n",
        slow.addr
    ));
    text.push_str(&many(50, closed_port()));
    let cfg = dir.path().join("many.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = blocking(move || {
        Command::new(binary())
            .args([
                "probe",
                "--all",
                "--json",
                "--config",
                cfg.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    })
    .await;
    assert_eq!(out.status.code(), Some(2));
    let all: Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["connector"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 51);
    assert_eq!(names.last(), Some(&"slow"), "the slow one last: {names:?}");
}
