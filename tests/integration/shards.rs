//! Shards and vantages without root: `check-config` listing what each shard owns, the shard
//! taken from a StatefulSet pod's name, and a sharded daemon that probes only its own
//! connectors and labels every series and event line with its vantage and shard.
//! (`peers::vantages` runs four daemons and a real Prometheus against a real firewall.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use connector_probe::shard::owner;

use crate::daemon::{Daemon, free_port, scrape};
use crate::util::binary;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tenant-{i:02}")).collect()
}

/// A configuration of `names`, each with one smart host at `addr`, and `daemon` lines.
fn write(dir: &Path, names: &[String], addr: &str, daemon: &str) -> PathBuf {
    let mut text = format!(
        "[defaults]\nhelo_name = \"probe.lab.test\"\ninterval = \"300ms\"\n\n\
         [defaults.timeouts]\nconnect = \"1s\"\nbanner = \"1s\"\n\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\n\n[daemon]\n{daemon}\n"
    );
    for name in names {
        text.push_str(&format!(
            "\n[[connector]]\nname = \"{name}\"\nsmart_hosts = [\"{addr}\"]\n"
        ));
    }
    let path = dir.join("connector-probe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(config: &Path, args: &[&str], hostname: &str) -> Output {
    Command::new(binary())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .args(args)
        .env("HOSTNAME", hostname)
        .output()
        .unwrap()
}

/// The connectors a `check-config` output lists under `# shard K/N owns …`.
fn listed(out: &Output, shard: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, listing) = text
        .split_once(&format!("# shard {shard} owns "))
        .unwrap_or_else(|| panic!("no listing of shard {shard} in:\n{text}"));
    listing
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("#   "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn check_config_lists_what_each_shard_owns() {
    let dir = tempfile::tempdir().unwrap();
    let all = names(30);
    let config = write(dir.path(), &all, "192.0.2.10", "vantage = \"dmz\"");
    let mut union = BTreeSet::new();
    for k in 0..3 {
        let shard = format!("{k}/3");
        let out = check_config(&config, &["--shard", &shard], "mailhost");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let owned = listed(&out, &shard);
        assert!(!owned.is_empty(), "shard {shard} owns nothing of 30");
        for name in &owned {
            assert_eq!(owner(name, 3), k, "{name}");
            assert!(union.insert(name.clone()), "{name} is listed by two shards");
        }
        // The listing is TOML comments: the output is still a configuration that loads.
        let again = dir.path().join("again.toml");
        std::fs::write(&again, &out.stdout).unwrap();
        let reloaded = connector_probe::config::Config::load(&again).unwrap();
        assert_eq!(reloaded.daemon.vantage, "dmz");
        assert_eq!(reloaded.connectors.len(), 30);
    }
    assert_eq!(union, all.into_iter().collect());

    // No shard given, none configured: no listing.
    let out = check_config(&config, &[], "mailhost");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("# shard"));
    // A shard that does not exist is a usage error (exit 3, as every usage error).
    let out = check_config(&config, &["--shard", "3/3"], "mailhost");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist among 3"));
}

#[test]
fn the_shard_comes_from_the_pods_ordinal() {
    let dir = tempfile::tempdir().unwrap();
    let all = names(12);
    let config = write(dir.path(), &all, "192.0.2.10", "shard = \"ordinal/2\"");
    let out = check_config(&config, &[], "connector-probe-1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owned = listed(&out, "1/2");
    let want: Vec<String> = all.iter().filter(|n| owner(n, 2) == 1).cloned().collect();
    assert_eq!(owned, want);
    assert!(String::from_utf8_lossy(&out.stdout).contains("shard = \"ordinal/2\""));

    // Not a pod's name, or an ordinal beyond N: the configuration cannot run here.
    for host in ["mailhost", "connector-probe-2"] {
        let out = check_config(&config, &[], host);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{host}: {stderr}");
        assert!(stderr.contains("key `daemon.shard`"), "{host}: {stderr}");
        assert!(out.stdout.is_empty(), "{host}");
    }
    // --shard replaces the file's.
    let out = check_config(&config, &["--shard", "0/2"], "mailhost");
    assert!(out.status.success());
    assert_eq!(
        listed(&out, "0/2"),
        all.iter()
            .filter(|n| owner(n, 2) == 0)
            .cloned()
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_shard_probes_its_own_connectors_and_labels_what_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let all = names(8);
    let owned: BTreeSet<String> = all.iter().filter(|n| owner(n, 2) == 1).cloned().collect();
    assert!(!owned.is_empty() && owned.len() < all.len());
    // Refused at once: every probe is quick, and it fails, so that the failing series exist.
    let closed = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let config = write(
        dir.path(),
        &all,
        &closed,
        &format!(
            "vantage = \"lab-a\"\nshard = \"1/2\"\nmetrics_listen = \"127.0.0.1:{port}\"\nstate_file = \"\""
        ),
    );
    let mut daemon = Daemon::start(&config);
    let started = daemon.wait("daemon_started", Duration::from_secs(20), |v| {
        v["event"] == "daemon_started"
    });
    assert_eq!(started["vantage"], "lab-a");
    assert_eq!(started["shard"], "1/2");
    assert_eq!(started["connectors"], owned.len());
    for name in &owned {
        let event = daemon.event("probe_result", name, Duration::from_secs(20));
        assert_eq!(event["vantage"], "lab-a", "{event}");
    }
    // A few more rounds: a connector of the other shard would have been probed by now.
    std::thread::sleep(Duration::from_secs(1));
    let text = scrape(port, "/metrics");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut reported = BTreeSet::new();
    for sample in &scrape.samples {
        assert_eq!(sample.labels.get("vantage"), Some("lab-a"), "{sample:?}");
        assert_eq!(sample.labels.get("shard"), Some("1"), "{sample:?}");
        if let Some(c) = sample.labels.get("connector") {
            reported.insert(c.to_owned());
        }
    }
    assert_eq!(reported, owned);
    let (code, _, seen) = daemon.stop(Duration::from_secs(20));
    assert_eq!(code, 0);
    for event in &seen {
        assert_eq!(event["vantage"], "lab-a", "{event}");
        if event["event"] == "probe_result" {
            assert!(
                owned.contains(event["connector"].as_str().unwrap()),
                "{event}"
            );
        }
    }
}

#[test]
fn a_reload_keeps_the_vantage_and_shard_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let all = names(6);
    let closed = format!("127.0.0.1:{}", free_port());
    let daemon_lines = |vantage: &str, shard: &str| {
        format!(
            "vantage = \"{vantage}\"\nshard = \"{shard}\"\nmetrics_listen = \"\"\nstate_file = \"\""
        )
    };
    let config = write(dir.path(), &all, &closed, &daemon_lines("lab-a", "0/2"));
    let mut daemon = Daemon::start(&config);
    daemon.wait("daemon_started", Duration::from_secs(20), |v| {
        v["event"] == "daemon_started"
    });
    write(dir.path(), &all, &closed, &daemon_lines("lab-b", "1/2"));
    daemon.signal(libc::SIGHUP);
    let partial = daemon.wait("config_reload_partial", Duration::from_secs(20), |v| {
        v["event"] == "config_reload_partial"
    });
    assert_eq!(partial["vantage"], "lab-a", "{partial}");
    daemon.wait("config_reloaded", Duration::from_secs(20), |v| {
        v["event"] == "config_reloaded"
    });
    // The shard of the new file applies to the connectors at once; only the labels wait.
    let theirs: Vec<&String> = all.iter().filter(|n| owner(n, 2) == 1).collect();
    let event = daemon.event("probe_result", theirs[0], Duration::from_secs(20));
    assert_eq!(event["vantage"], "lab-a", "{event}");
    assert_eq!(daemon.stop(Duration::from_secs(20)).0, 0);
}
