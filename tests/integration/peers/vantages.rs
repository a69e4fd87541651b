//! Many machines on one: daemons as two vantages × two shards, a real Prometheus with the
//! shipped rules joining them, and a firewall that admits only the inside vantage.
//!
//! Everything runs in a network namespace of the test's own. The two vantages are two source
//! addresses on its loopback, 127.0.0.2 ("inside") and 127.0.0.3 ("outside"); iptables in the
//! namespace lets only 127.0.0.2 reach one server and resets the others' connections, as an
//! on-premises firewall that allows the LAN and not Microsoft 365 does (4.4.316). Prometheus
//! (Debian's `prometheus`) scrapes the four daemons every second and evaluates
//! `config/prometheus-alerts.yml` and `config/prometheus-vantages.yml`; the test reads its
//! HTTP API with `promtool query` from inside the namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sink::sink;
use super::support::{Daemon, Need, Netns, Place, available, free_port, scratch_dir, tool_path};
use crate::util::binary;

const NEEDS: &[Need] = &[
    Need::Root,
    Need::Tool("ip"),
    Need::Tool("iptables"),
    Need::Tool("smtp-sink"),
    Need::Tool("ss"),
    Need::Tool("prometheus"),
    Need::Tool("promtool"),
];

const INSIDE: &str = "127.0.0.2";
const OUTSIDE: &str = "127.0.0.3";
/// How long the fleet may take, from the daemons' start, to be probed from both vantages and
/// for the rules to have fired: a debug build of four daemons and a Prometheus on a busy
/// two-core machine, probing every 2 s, scraped and evaluated every 1 s.
const SETTLE: Duration = Duration::from_secs(120);
const FIREWALL_ALERT: &str = "ConnectorFirewallBlocksOutsideSenders";

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The rules, the unit tests and the example configurations pass promtool.
#[test]
fn vantage_rules_pass_promtool() {
    if !available("promtool", &[Need::Tool("promtool")]) {
        return;
    }
    let promtool = tool_path("promtool");
    for args in [
        &["check", "rules", "prometheus-vantages.yml"][..],
        &["test", "rules", "prometheus-vantages.test.yml"],
        &["check", "config", "prometheus-scrape.yml"],
        &["check", "config", "prometheus-central.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(config_dir())
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One daemon: which vantage, which shard, where its metrics are.
struct Probe {
    vantage: &'static str,
    kind: &'static str,
    shard: u32,
    port: u16,
    log: PathBuf,
}

#[test]
fn two_vantages_two_shards_and_prometheus_name_the_firewall() {
    if !available("vantages and shards with Prometheus", NEEDS) {
        return;
    }
    let place = Place::Netns(Netns::new("vantage"));
    let ns = place.netns().expect("a namespace");
    let dir = scratch_dir();
    let mut peers = Vec::new();

    // The servers: one open to all, one behind the firewall, and a port nothing listens on.
    let (open, open_port) = sink(&place, dir.path(), "sink-open", &[], "127.0.0.1");
    let (walled, walled_port) = sink(&place, dir.path(), "sink-walled", &[], "127.0.0.1");
    peers.extend([open, walled]);
    ns.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &walled_port.to_string(),
        "!",
        "-s",
        INSIDE,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);
    let down_port = free_port();
    let mut connectors: BTreeMap<String, u16> =
        (1..=6).map(|i| (format!("open-{i}"), open_port)).collect();
    connectors.insert("behind-firewall".into(), walled_port);
    connectors.insert("server-down".into(), down_port);
    // The names are fixed, so this only guards the test's own premise: both shards have work.
    let owners: BTreeSet<u32> = connectors
        .keys()
        .map(|n| connector_probe::shard::owner(n, 2))
        .collect();
    assert_eq!(owners.len(), 2, "both shards own connectors");

    // Inside takes its shard from --shard; outside from `shard = "ordinal/2"` and the host
    // name, as a StatefulSet's pods do.
    let mut probes = Vec::new();
    for (vantage, kind, source) in [("dmz", "inside", INSIDE), ("azure", "outside", OUTSIDE)] {
        for shard in 0..2 {
            let port = free_port();
            let name = format!("probe-{vantage}-{shard}");
            let from_ordinal = kind == "outside";
            let config = dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &config,
                daemon_config(vantage, source, port, from_ordinal, &connectors),
            )
            .expect("write a daemon's configuration");
            let mut cmd = place.command(binary());
            cmd.args(["run", "--config"]).arg(&config);
            if from_ordinal {
                cmd.env("HOSTNAME", format!("connector-probe-{shard}"));
            } else {
                cmd.args(["--shard", &format!("{shard}/2")]);
            }
            peers.push(Daemon::start(&place, dir.path(), &name, cmd, &[port], &[]));
            probes.push(Probe {
                vantage,
                kind,
                shard,
                port,
                log: dir.path().join(format!("{name}.log")),
            });
        }
    }

    let prometheus_port = free_port();
    let prometheus = start_prometheus(&place, dir.path(), prometheus_port, &probes);
    peers.push(prometheus);
    let query = |expr: &str| promql(&place, prometheus_port, expr);

    // Wait until every connector has been probed from both vantages and the firewall alert
    // fires, then give the rules a few more evaluations to fire where they should not.
    let all_pairs = connectors.len() * 2;
    let started = Instant::now();
    loop {
        let probed =
            query("count by (vantage, connector) (connector_probe_last_probe_timestamp_seconds)");
        let fired = query(&format!(
            "ALERTS{{alertname=\"{FIREWALL_ALERT}\",alertstate=\"firing\"}}"
        ));
        if probed.len() == all_pairs && !fired.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "after {SETTLE:?}: {} of {all_pairs} (vantage, connector) pairs probed, firewall alert {fired:?}\n{}",
            probed.len(),
            logs(&probes)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(4));

    // Every connector, exactly once per vantage: one series per (vantage, connector), from
    // the shard rendezvous hashing gives it, with probes counted by that shard alone.
    let want: BTreeSet<String> = connectors.keys().cloned().collect();
    for vantage in ["dmz", "azure"] {
        let series = query(&format!(
            "connector_probe_last_probe_timestamp_seconds{{vantage=\"{vantage}\"}}"
        ));
        let mut seen = BTreeMap::<String, Vec<u32>>::new();
        for s in &series {
            let connector = label(s, "connector");
            let shard: u32 = label(s, "shard").parse().expect("a numeric shard label");
            assert_eq!(
                connector_probe::shard::owner(&connector, 2),
                shard,
                "{connector} reported by shard {shard} of {vantage}"
            );
            seen.entry(connector).or_default().push(shard);
        }
        assert_eq!(
            seen.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{vantage}"
        );
        assert!(seen.values().all(|s| s.len() == 1), "{vantage}: {seen:?}");
        let counted = query(&format!(
            "count by (connector) (sum by (connector, instance) (connector_probe_probes_total{{vantage=\"{vantage}\"}}) > 0)"
        ));
        assert_eq!(counted.len(), want.len(), "{vantage}: {counted:?}");
        assert!(
            counted.iter().all(|s| value(s) == 1.0),
            "{vantage}: {counted:?}"
        );
    }

    // The firewall alert: for the walled connector, from outside, and for nothing else.
    let alerts = |name: &str| -> BTreeSet<(String, String, String)> {
        query(&format!(
            "ALERTS{{alertname=\"{name}\",alertstate=\"firing\"}}"
        ))
        .iter()
        .map(|s| (label(s, "connector"), label(s, "vantage"), label(s, "code")))
        .collect()
    };
    let everything = query(&format!("ALERTS{{alertname=\"{FIREWALL_ALERT}\"}}"));
    assert_eq!(
        alerts(FIREWALL_ALERT),
        BTreeSet::from([(
            "behind-firewall".into(),
            "azure".into(),
            "450 4.4.316".into()
        )]),
        "{everything:?}"
    );
    assert_eq!(everything.len(), 1, "{everything:?}");
    // And the comparisons around it: the dead server fails from everywhere, the walled one
    // from some vantages only; no shard or vantage is silent.
    let connectors_of =
        |name: &str| -> BTreeSet<String> { alerts(name).into_iter().map(|(c, _, _)| c).collect() };
    assert_eq!(
        connectors_of("ConnectorFailingFromEveryVantage"),
        BTreeSet::from(["server-down".to_owned()])
    );
    assert_eq!(
        connectors_of("ConnectorFailingFromSomeVantages"),
        BTreeSet::from(["behind-firewall".to_owned()])
    );
    for silent in ["ConnectorProbeShardSilent", "ConnectorProbeVantageSilent"] {
        assert!(
            query(&format!("ALERTS{{alertname=\"{silent}\"}}")).is_empty(),
            "{silent}"
        );
    }

    // Every event line names its vantage.
    for p in &probes {
        let text = std::fs::read_to_string(&p.log).expect("the daemon's log");
        let mut results = 0;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let event: Value = serde_json::from_str(line).expect("a JSON log line");
            assert_eq!(event["vantage"], p.vantage, "{line}");
            results += usize::from(event["event"] == "probe_result");
        }
        assert!(results > 0, "{}: no probe_result lines", p.log.display());
    }
    drop(peers);
}

/// A daemon's configuration: the same connectors for every daemon; its own vantage, source
/// address and metrics port; the shard from `ordinal/2` or (else) from `--shard`.
fn daemon_config(
    vantage: &str,
    source: &str,
    port: u16,
    from_ordinal: bool,
    connectors: &BTreeMap<String, u16>,
) -> String {
    let shard = if from_ordinal { "ordinal/2" } else { "" };
    let mut s = format!(
        "[defaults]\nhelo_name = \"probe.lab.test\"\ninterval = \"2s\"\nsource_address = \"{source}\"\n\n\
         [defaults.timeouts]\ndns = \"2s\"\nconnect = \"2s\"\nbanner = \"2s\"\ncommand = \"2s\"\ntls = \"2s\"\n\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\n\n\
         [daemon]\nvantage = \"{vantage}\"\nshard = \"{shard}\"\nmetrics_listen = \"127.0.0.1:{port}\"\nstate_file = \"\"\n"
    );
    for (name, port) in connectors {
        s.push_str(&format!(
            "\n[[connector]]\nname = \"{name}\"\nsmart_hosts = [\"127.0.0.1:{port}\"]\n"
        ));
    }
    s
}

/// A private Prometheus: scrapes the daemons every second, labels each with its vantage's
/// kind, and evaluates the shipped rules every second. The rules' `for:` durations are set to
/// zero in its copies, so that it need not wait minutes; the unit tests hold the durations.
fn start_prometheus(place: &Place, dir: &Path, port: u16, probes: &[Probe]) -> Daemon {
    let mut rule_files = Vec::new();
    for name in ["prometheus-alerts.yml", "prometheus-vantages.yml"] {
        let text = std::fs::read_to_string(config_dir().join(name)).expect("a shipped rule file");
        let immediate: String = text
            .lines()
            .map(|l| match l.trim_start().strip_prefix("for:") {
                Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(immediate, text, "{name} has `for:` durations to shorten");
        let path = dir.join(name);
        std::fs::write(&path, immediate).expect("write a rule file");
        rule_files.push(format!("  - {}\n", path.display()));
    }
    let mut targets = String::new();
    for kind in ["inside", "outside"] {
        let list: Vec<String> = probes
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| format!("\"127.0.0.1:{}\"", p.port))
            .collect();
        targets.push_str(&format!(
            "      - targets: [{}]\n        labels: {{vantage_kind: {kind}}}\n",
            list.join(", ")
        ));
    }
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: connector-probe\n    static_configs:\n{targets}",
            rule_files.concat()
        ),
    )
    .expect("write prometheus.yml");
    let mut cmd = place.command(tool_path("prometheus"));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Daemon::start(place, dir, "prometheus", cmd, &[port], &[])
}

/// An instant query, through `promtool query` run in the namespace: the result vector.
fn promql(place: &Place, port: u16, expr: &str) -> Vec<Value> {
    let out = place
        .command(tool_path("promtool"))
        .args(["query", "instant", "-o", "json"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(expr)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool query {expr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Array(samples)) => samples,
        Ok(Value::Null) => Vec::new(),
        other => panic!("promtool query {expr}: not a vector: {other:?} from {text}"),
    }
}

fn label(sample: &Value, name: &str) -> String {
    sample["metric"][name]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The daemons' last log lines, for a failure message.
fn logs(probes: &[Probe]) -> String {
    probes
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            format!("--- {} shard {}:\n{}", p.vantage, p.shard, tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
