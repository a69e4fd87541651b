//! The binary: exit codes, JSON, configuration errors with file, line, column and key.

use std::path::Path;
use std::process::{Command, Output};

use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::dns::DnsServer;
use connector_probe::lab::smtp::{Script, SmtpServer, Step, send};

use crate::util::binary;

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("CONNECTOR_PROBE_CONFIG")
        .output()
        .expect("the binary runs")
}

/// A configuration with three connectors against loopback servers: healthy, plaintext only
/// (warning) and refused (failing).
struct Setup {
    dir: tempfile::TempDir,
    _servers: Vec<SmtpServer>,
    _dns: DnsServer,
}

impl Setup {
    async fn new() -> Setup {
        let pki = Pki::new();
        let dns = DnsServer::start().await.unwrap();
        dns.address("mail.lab.test", "127.0.0.1".parse().unwrap());
        let healthy = SmtpServer::start(Script::healthy(
            pki.leaf(&LeafSpec::valid("mail.lab.test")).server_config(),
        ))
        .await
        .unwrap();
        let plain = SmtpServer::start(Script::new(vec![
            send("220 plain ESMTP\r\n"),
            Step::Expect("EHLO"),
            send("250 plain\r\n"),
            Step::Expect("QUIT"),
            send("221 bye\r\n"),
        ]))
        .await
        .unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), &pki.root.pem).unwrap();
        let config = format!(
            r#"
[defaults]
helo_name = "probe.lab.test"
[defaults.timeouts]
dns = "2s"
connect = "2s"
banner = "2s"
command = "2s"
tls = "2s"

[dns]
nameservers = ["{dns}"]

[tls]
ca_file = "root.pem"

[[connector]]
name = "healthy"
smart_hosts = ["mail.lab.test:{healthy}"]
tls = "domain-validation"
tls_domain = "mail.lab.test"

[[connector]]
name = "plaintext"
smart_hosts = ["127.0.0.1:{plain}"]

[[connector]]
name = "refused"
smart_hosts = ["127.0.0.1:{closed}"]
"#,
            dns = dns.addr,
            healthy = healthy.addr.port(),
            plain = plain.addr.port(),
        );
        std::fs::write(dir.path().join("probe.toml"), config).unwrap();
        Setup {
            dir,
            _servers: vec![healthy, plain],
            _dns: dns,
        }
    }

    fn config(&self) -> String {
        self.dir.path().join("probe.toml").display().to_string()
    }
}

/// Runs the binary off the async runtime (the lab servers need it to keep running).
async fn run_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_follow_the_monitoring_plugin_convention() {
    let s = Setup::new().await;
    for (name, want) in [("healthy", 0), ("plaintext", 1), ("refused", 2)] {
        let out = run_async(vec![
            "probe".into(),
            "--config".into(),
            s.config(),
            "--connector".into(),
            name.into(),
        ])
        .await;
        assert_eq!(
            out.status.code(),
            Some(want),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run_async(vec![
        "probe".into(),
        "--config".into(),
        s.config(),
        "--connector".into(),
        "nope".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("known: healthy, plaintext, refused"));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_for_one_and_for_all() {
    let s = Setup::new().await;
    let out = run_async(vec![
        "probe".into(),
        "--config".into(),
        s.config(),
        "--connector".into(),
        "refused".into(),
        "--json".into(),
    ])
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["connector"], "refused");
    assert_eq!(v["status"], "failing");
    assert_eq!(v["code"], "450 4.4.316");
    assert_eq!(v["title"], "Connection refused");
    assert_eq!(v["targets"][0]["stage"], "connect");
    assert_eq!(v["targets"][0]["address"], "127.0.0.1");
    assert!(
        v["eop_status"]
            .as_str()
            .unwrap()
            .starts_with("450 4.4.316 Connection refused [Message=Socket error code 10061]")
    );

    let out = run_async(vec![
        "probe".into(),
        "--config".into(),
        s.config(),
        "--all".into(),
        "--json".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "worst of all connectors");
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON array");
    // In the order the probes ended (README, "probe --all"), so compared by name.
    let mut statuses: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["connector"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("healthy", "ok"),
            ("plaintext", "warning"),
            ("refused", "failing")
        ]
    );
    let healthy = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connector"] == "healthy")
        .unwrap();
    let healthy = &healthy["targets"][0];
    assert_eq!(healthy["host"], "mail.lab.test");
    assert_eq!(healthy["stage"], "done");
    assert_eq!(healthy["certificate"]["names"][0], "mail.lab.test");
    assert!(
        healthy["tls"]["version"]
            .as_str()
            .unwrap()
            .starts_with("TLSv1.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn human_report_reads_at_a_glance() {
    let s = Setup::new().await;
    let out = run_async(vec![
        "probe".into(),
        "--config".into(),
        s.config(),
        "--all".into(),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("healthy  OK  mail would be delivered"),
        "{text}"
    );
    assert!(
        text.contains("refused  FAILING  450 4.4.316 Connection refused"),
        "{text}"
    );
    assert!(
        text.contains("Microsoft 365 would queue: 450 4.4.316 Connection refused [Message=Socket error code 10061]"),
        "{text}"
    );
    assert!(
        text.contains("mail flow intelligence: 450 4.4.316 Connection refused"),
        "{text}"
    );
    assert!(
        text.contains("after 1d senders get: 550 5.4.316 Message expired, connection refused(Socket error code 10061)"),
        "{text}"
    );
    assert!(text.contains("fix: "), "{text}");
    assert!(text.contains("certificate: CN=mail.lab.test"), "{text}");
}

#[test]
fn check_config_prints_an_effective_config_that_loads_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[defaults]\nhelo_name = \"probe.contoso.com\"\n[defaults.timeouts]\nconnect = \"5s\"\n\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"mail.contoso.com\", \"[2001:db8::1]:2525\"]\ntls = \"domain-validation\"\ntls_domain = \"*.contoso.com\"\n[connector.timeouts]\ntls = \"10s\"\n",
    )
    .unwrap();
    let out = run(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("connect = \"5s\""), "{printed}");
    assert!(printed.contains("banner = \"1m\""), "{printed}");
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &printed).unwrap();
    let first = connector_probe::config::Config::load(&path).unwrap();
    let second = connector_probe::config::Config::load(&again).unwrap();
    assert_eq!(first.connectors, second.connectors);
    assert_eq!(first.defaults, second.defaults);
}

/// Every file in `tests/configs/bad` starts with `# expect: KEY LINE:COLUMN` and must fail
/// with exit code 3 and exactly that location, in one line on stderr.
#[test]
fn bad_configurations_fail_with_file_line_column_and_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks its '# expect:' line", file.display()));
        let (key, place) = expect.rsplit_once(' ').unwrap();
        let out = run(&["check-config", "--config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", file.display());
        assert!(
            out.stdout.is_empty(),
            "{}: nothing on stdout",
            file.display()
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{}: one line: {stderr}",
            file.display()
        );
        let want = format!("error: {}:{place}: key `{key}`: ", file.display());
        assert!(
            stderr.starts_with(&want),
            "{}:\n  want {want}\n  got  {stderr}",
            file.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn unreadable_config_is_exit_3_naming_the_file() {
    let out = run(&[
        "check-config",
        "--config",
        "/nonexistent/connector-probe.toml",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: /nonexistent/connector-probe.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn config_path_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.toml");
    std::fs::write(
        &path,
        "[[connector]]\nname = \"from-env\"\nsmart_hosts = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["check-config"])
        .env("CONNECTOR_PROBE_CONFIG", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("name = \"from-env\""));
}

#[test]
fn shipped_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/connector-probe.toml");
    let out = run(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A command-line mistake is "unknown" (3) under the monitoring-plugin convention, never the
/// 2 that means a failing connector; help is not an error.
#[test]
fn command_line_errors_exit_3_and_help_exits_0() {
    for args in [
        &["probe"][..],
        &["probe", "--connector"],
        &["probe", "--connector", "a", "--bogus"],
        &["bogus"],
        &[],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // What went wrong and a pointer to `--help` (with no command at all, the help itself).
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
    }
    for args in [&["--help"][..], &["probe", "--help"], &["--version"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}
