//! `explain`: the fixture corpus (`tests/fixtures/explain/`) through the parser and the
//! binary, the command line (exit codes, JSON, stdin, a whole NDR message), and `--probe`
//! against the lab's scripted servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use connector_probe::explain::{self, Explained};
use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer, Step, send};

use crate::util::binary;

/// One fixture: where its shape comes from, the line, what must be read from it.
struct Fixture {
    file: String,
    source: String,
    line: String,
    expect: Option<BTreeMap<String, String>>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain")
}

/// Every block of every `*.lines` file.
fn fixtures() -> Vec<Fixture> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lines"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut source = String::new();
        for block in text.split("\n\n") {
            let mut line = None;
            let mut expect = None;
            for l in block.lines() {
                if let Some(s) = l.strip_prefix("# source:") {
                    source = s.trim().to_owned();
                } else if let Some(s) = l.strip_prefix("line: ") {
                    line = Some(s.to_owned());
                } else if let Some(s) = l.strip_prefix("expect: ") {
                    expect = Some(
                        s.split(" | ")
                            .map(|kv| {
                                let (k, v) = kv
                                    .split_once('=')
                                    .unwrap_or_else(|| panic!("{file}: {kv:?} is not key=value"));
                                (k.trim().to_owned(), v.trim().to_owned())
                            })
                            .collect(),
                    );
                }
            }
            if let Some(line) = line {
                assert!(!source.is_empty(), "{file}: a fixture without its source");
                out.push(Fixture {
                    file: file.clone(),
                    source: source.clone(),
                    line,
                    expect,
                });
            }
        }
    }
    out
}

/// A field of an explained line as the fixtures write it (`-` for none).
fn field(e: &Explained, key: &str) -> String {
    let opt = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let cert = e.certificate.as_ref();
    match key {
        "code" => e.code.clone(),
        "condition" => e.condition.as_str().to_owned(),
        "stage" => opt(e.stage),
        "server" => opt(e.server.as_deref()),
        "ip" => opt(e.ip.as_deref()),
        "port" => e.port.map_or("-".to_owned(), |p| p.to_string()),
        "kind" => serde_json::to_value(e.kind)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
        "mfi_code" => opt(e.mfi_code.as_deref()),
        "status" => opt(cert.map(|c| c.status.as_str())),
        "expected_subject" => opt(cert.and_then(|c| c.expected_subject.as_deref())),
        "presented_subject" => opt(cert.and_then(|c| c.presented_subject.as_deref())),
        "thumbprint" => opt(cert.and_then(|c| c.thumbprint.as_deref())),
        "reply" => opt(e.reply.as_deref()),
        "socket_error" => e.socket_error.map_or("-".to_owned(), |n| n.to_string()),
        other => panic!("fixtures name no field {other:?}"),
    }
}

/// The fields the hidden corpus is judged on: every fixture must name them.
const REQUIRED: [&str; 5] = ["code", "condition", "stage", "server", "ip"];

#[test]
fn every_fixture_reads_as_expected() {
    let all = fixtures();
    assert!(all.len() >= 50, "the corpus shrank to {}", all.len());
    let mut failures = Vec::new();
    for f in &all {
        let got = explain::parse(&f.line);
        match (&f.expect, got) {
            (None, None) => {}
            (None, Some(e)) => failures.push(format!(
                "{}: recognised as {} {}, expected not to be: {}",
                f.file,
                e.code,
                e.condition.as_str(),
                f.line
            )),
            (Some(_), None) => failures.push(format!("{}: not recognised: {}", f.file, f.line)),
            (Some(expect), Some(e)) => {
                for key in REQUIRED {
                    assert!(
                        expect.contains_key(key),
                        "{}: {:?} lacks {key}",
                        f.file,
                        f.line
                    );
                }
                for (k, want) in expect {
                    let got = field(&e, k);
                    if &got != want {
                        failures.push(format!(
                            "{} ({}): {k} is {got:?}, expected {want:?}\n    {}",
                            f.file, f.source, f.line
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .env(
            "CONNECTOR_PROBE_CONFIG",
            "/nonexistent/connector-probe.toml",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn objects(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The same corpus through the binary: arguments in, one JSON object per line out, in order,
/// with the same fields.
#[test]
fn every_fixture_reads_the_same_through_the_binary() {
    let all = fixtures();
    let mut args = vec!["explain", "--json"];
    args.extend(all.iter().map(|f| f.line.as_str()));
    let out = run(&args, "");
    assert_eq!(out.status.code(), Some(1), "some fixtures are unrecognised");
    let objects = objects(&out);
    assert_eq!(objects.len(), all.len());
    for (f, v) in all.iter().zip(&objects) {
        let Some(expect) = &f.expect else {
            assert_eq!(v["recognised"], false, "{}", f.line);
            continue;
        };
        assert_eq!(v["recognised"], true, "{}", f.line);
        for key in REQUIRED {
            let got = match &v[key] {
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(&got, &expect[key], "{key} of {}", f.line);
        }
    }
}

const REFUSED: &str = "450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=192.0.2.10:25]";

#[test]
fn exit_codes_say_how_many_lines_were_recognised() {
    assert_eq!(run(&["explain", REFUSED], "").status.code(), Some(0));
    assert_eq!(
        run(&["explain", REFUSED, "550 5.1.1 User unknown"], "")
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(&["explain", "hello", "550 5.1.1 User unknown"], "")
            .status
            .code(),
        Some(3)
    );
    let nothing = run(&["explain"], "");
    assert_eq!(nothing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("no line to explain"));
    assert_eq!(
        run(&["explain", "--no-such-flag"], "").status.code(),
        Some(3)
    );
}

/// interface.md's example: every documented key, with the values it shows.
#[test]
fn json_has_the_documented_keys() {
    let line = "450 4.4.317 Cannot connect to remote server [Message=CertificateExpired Expected Subject: mail.contoso.com. Presented Subject: CN=mail.contoso.com. Thumbprint: 94E7….] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=192.0.2.10:25]";
    let out = run(&["explain", "--json", line], "");
    assert_eq!(out.status.code(), Some(0));
    let v = &objects(&out)[0];
    assert_eq!(v["input"], line);
    assert_eq!(v["kind"], "queue");
    assert_eq!(v["code"], "450 4.4.317");
    assert_eq!(v["title"], "Cannot connect to remote server");
    assert_eq!(
        v["message"],
        "CertificateExpired Expected Subject: mail.contoso.com. Presented Subject: CN=mail.contoso.com. Thumbprint: 94E7…."
    );
    assert_eq!(v["mfi_code"], "450 4.7.320");
    assert_eq!(v["condition"], "certificate-expired");
    assert_eq!(v["stage"], "certificate");
    assert_eq!(v["server"], "mail.contoso.com");
    assert_eq!(v["ip"], "192.0.2.10");
    assert_eq!(v["port"], 25);
    assert!(v["fix"].as_str().unwrap().contains("Renew"));
    assert_eq!(v["certificate"]["status"], "CertificateExpired");
    assert_eq!(v["certificate"]["presented_subject"], "CN=mail.contoso.com");
    assert_eq!(v["certificate"]["thumbprint"], "94E7…");
}

#[test]
fn stdin_lines_are_explained_one_by_one_in_order() {
    let input = format!(
        "{REFUSED}\n\n   \nnot a line from EOP\n550 5.4.318 Message expired, connection reset (SuspiciousRemoteServerError)\n"
    );
    let out = run(&["explain", "--json"], &input);
    assert_eq!(out.status.code(), Some(1));
    let v = objects(&out);
    let conditions: Vec<&serde_json::Value> = v.iter().map(|o| &o["condition"]).collect();
    assert_eq!(
        conditions,
        [
            &serde_json::json!("connect-refused"),
            &serde_json::Value::Null,
            &serde_json::json!("closed-abruptly")
        ]
    );
    assert_eq!(v[1]["recognised"], false);
}

/// A saved NDR: the status line stated in the text part, the quoted-printable HTML part and
/// the folded Diagnostic-Code header is one entry; the rest of the message is not reported.
#[test]
fn a_whole_ndr_message_yields_its_eop_line_once() {
    let eml = std::fs::read_to_string(fixtures_dir().join("ndr-message.eml")).unwrap();
    let out = run(&["explain", "--json"], &eml);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = objects(&out);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0]["code"], "550 5.4.316");
    assert_eq!(v[0]["kind"], "ndr");
    assert_eq!(v[0]["condition"], "connect-refused");
    assert_eq!(v[0]["message"], "Socket error code 10061");
}

#[test]
fn the_human_report_names_condition_stage_server_and_fix() {
    let out = run(&["explain", REFUSED], "");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(REFUSED), "{text}");
    assert!(
        text.contains("condition: connect-refused (probe stage: connect)"),
        "{text}"
    );
    assert!(
        text.contains("server:    mail.contoso.com at 192.0.2.10 port 25"),
        "{text}"
    );
    assert!(text.contains("socket error: 10061"), "{text}");
    assert!(
        text.contains("fix:       The address answered but refused"),
        "{text}"
    );

    let onprem = "451 4.4.397 Error communicating with target host. -> 421 4.4.2 Connection dropped due to SocketError";
    let text = String::from_utf8(run(&["explain", onprem], "").stdout).unwrap();
    assert!(
        text.contains("on-premises Exchange's own queue: the on-prem side failed"),
        "{text}"
    );
}

/// A port on loopback with nothing listening (bound, read, released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn refused_line(port: u16) -> String {
    format!(
        "450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=127.0.0.1] [LastAttemptedIP=127.0.0.1:{port}]"
    )
}

fn mismatch_line(port: u16) -> String {
    format!(
        "450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: mail.lab.test. Presented Subject: CN=other.lab.test. Thumbprint: 0000000000000000000000000000000000000000.] [LastAttemptedServerName=127.0.0.1] [LastAttemptedIP=127.0.0.1:{port}]"
    )
}

/// `explain --probe --json` off the async runtime (the lab servers need it to keep running).
async fn probe(args: Vec<String>) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || {
        let mut all = vec!["explain".to_owned(), "--probe".into(), "--json".into()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run(&refs, "")
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    objects(&out).remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_says_still_failing_then_now_ok_when_the_server_comes_back() {
    let port = closed_port();
    let v = probe(vec![refused_line(port)]).await;
    assert_eq!(v["probe"]["verdict"], "same", "{v:#}");
    assert_eq!(v["probe"]["summary"], "still failing the same way");
    assert_eq!(v["probe"]["connector"], "from-line");
    assert_eq!(v["probe"]["configured"], false);
    assert_eq!(v["probe"]["tls_mode"], "opportunistic");
    assert!(
        v["probe"]["eop_status"]
            .as_str()
            .unwrap()
            .starts_with("450 4.4.316 Connection refused")
    );

    let _server = SmtpServer::start_on(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Script::new(vec![
            send("220 lab.example ESMTP\r\n"),
            Step::Expect("EHLO"),
            send("250 lab.example\r\n"),
            Step::Expect("QUIT"),
            send("221 bye\r\n"),
        ]),
    )
    .await
    .unwrap();
    let v = probe(vec![refused_line(port)]).await;
    assert_eq!(v["probe"]["verdict"], "ok", "{v:#}");
    // Plaintext only: EOP would deliver, with a warning.
    assert_eq!(v["probe"]["summary"], "now ok (status warning)");
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_says_how_a_failure_changed() {
    let port = closed_port();
    let _server = SmtpServer::start_on(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Script::new(vec![send("554 5.7.1 Go away\r\n"), Step::Close]),
    )
    .await
    .unwrap();
    let v = probe(vec![refused_line(port)]).await;
    assert_eq!(v["probe"]["verdict"], "different", "{v:#}");
    let summary = v["probe"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("now fails differently: session-rejected (450 4.4.317"),
        "{summary}"
    );
    assert_eq!(v["probe"]["condition"], "session-rejected");
}

/// A SubjectMismatch line implies domain validation with the Expected Subject as TlsDomain.
/// Built from the line alone, the lab's private root is not trusted, so the probe now sees an
/// untrusted root first; with the configured connector (which trusts the lab's root) it sees
/// the mismatch again.
#[tokio::test(flavor = "multi_thread")]
async fn probe_uses_the_configured_connector_or_builds_one_from_the_line() {
    let pki = Pki::new();
    let server = SmtpServer::start(Script::healthy(
        pki.leaf(&LeafSpec::valid("other.lab.test")).server_config(),
    ))
    .await
    .unwrap();
    let port = server.addr.port();

    let v = probe(vec![mismatch_line(port)]).await;
    assert_eq!(v["probe"]["connector"], "from-line", "{v:#}");
    assert_eq!(v["probe"]["tls_mode"], "domain-validation");
    assert_eq!(v["probe"]["verdict"], "different");
    assert_eq!(v["probe"]["condition"], "certificate-untrusted");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), &pki.root.pem).unwrap();
    let config = dir.path().join("probe.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[defaults.timeouts]
connect = "3s"
banner = "3s"
command = "3s"
tls = "3s"

[tls]
ca_file = "root.pem"

[[connector]]
name = "lab-onprem"
smart_hosts = ["127.0.0.1:{port}"]
tls = "domain-validation"
tls_domain = "mail.lab.test"
"#
        ),
    )
    .unwrap();
    let v = probe(vec![
        "--config".into(),
        config.display().to_string(),
        mismatch_line(port),
    ])
    .await;
    assert_eq!(v["probe"]["connector"], "lab-onprem", "{v:#}");
    assert_eq!(v["probe"]["configured"], true);
    assert_eq!(v["probe"]["verdict"], "same");
    assert_eq!(v["probe"]["summary"], "still failing the same way");
    assert!(
        v["probe"]["eop_status"]
            .as_str()
            .unwrap()
            .contains("SubjectMismatch Expected Subject: mail.lab.test"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_leaves_on_prem_lines_alone() {
    let v = probe(vec![
        "451 4.4.0 Primary target IP address responded with: \"421 4.2.1 Unable to connect.\""
            .into(),
    ])
    .await;
    assert_eq!(v["kind"], "onprem");
    assert_eq!(v["probe"]["verdict"], "not-probed");
    assert!(v["probe"]["connector"].is_null());
}

/// The README's example is what the binary prints (lines shortened there with `…` match up
/// to it).
#[test]
fn the_readme_example_is_what_explain_prints() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Explaining an NDR or queue line")
        .nth(1)
        .expect("the README has the section");
    let block = section.split("```").nth(1).expect("an example block");
    let mut lines = block.lines().skip_while(|l| !l.starts_with("$ "));
    let command = lines.next().expect("the command");
    let line = command
        .strip_prefix("$ connector-probe explain '")
        .and_then(|l| l.strip_suffix('\''))
        .expect("one quoted line");
    let out = run(&["explain", line], "");
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<&str> = printed.lines().collect();
    let shown: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    assert_eq!(shown.len(), printed.len(), "{printed:#?}");
    for (want, got) in shown.iter().zip(&printed) {
        match want.split_once('…') {
            Some((head, _)) => assert!(got.starts_with(head), "{got:?} vs {want:?}"),
            None => assert_eq!(got, want),
        }
    }
}

/// A DNS failure is probed through the configured resolver: a name that still does not
/// resolve still fails the same way.
#[tokio::test(flavor = "multi_thread")]
async fn probe_rechecks_a_dns_failure_through_the_configured_resolver() {
    use connector_probe::lab::dns::DnsServer;
    let dns = DnsServer::start().await.unwrap();
    dns.exists("lab.test");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("probe.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults.timeouts]\ndns = \"2s\"\n\n[dns]\nnameservers = [\"{}\"]\n",
            dns.addr
        ),
    )
    .unwrap();
    let line = "450 4.4.312 DNS query failed [Message=InfoDomainNonexistent] [LastAttemptedServerName=gone.lab.test]";
    let v = probe(vec![
        "--config".into(),
        config.display().to_string(),
        line.into(),
    ])
    .await;
    assert_eq!(v["condition"], "dns-failed");
    assert_eq!(v["probe"]["connector"], "from-line", "{v:#}");
    assert_eq!(v["probe"]["verdict"], "same", "{v:#}");
    assert!(
        v["probe"]["eop_status"]
            .as_str()
            .unwrap()
            .starts_with("450 4.4.312 DNS query failed"),
        "{v:#}"
    );
}

#[test]
fn the_human_report_says_what_the_probe_found() {
    let out = run(&["explain", "--probe", &refused_line(closed_port())], "");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("  now:       still failing the same way\n             (probed with a connector built from the line, tls opportunistic)"),
        "{text}"
    );
}
