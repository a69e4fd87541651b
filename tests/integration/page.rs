//! The status page (issue 16): the daemon probing lab servers, hostile ones included, its
//! page loaded in headless Chromium through chromedriver (fantoccini), the DOM read as the
//! browser built it; the JSON API; the history across a restart.
//!
//! The browser test is skipped ("SKIPPED: …") without `chromium` and `chromedriver`, unless
//! `CONNECTOR_PROBE_REQUIRE_PEERS=1`. Its screenshots go to `target/page-screenshots/`; with
//! `CONNECTOR_PROBE_SCREENSHOT_DOCS=1` the list is also written to `docs/status-page.png`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer, Step, send};
use serde_json::{Value, json};

use crate::daemon::{Daemon, WAIT, blocking, config, free_port, lab_dir};
use crate::peers::support::{Need, available, tool_path};

const HOSTILE_BANNER: &str = "<script>window.pwned=1</script>";
const HOSTILE_CN: &str = "<img src=x onerror=\"window.pwned=1\">";

/// The lab: a healthy server, one whose certificate's CN is markup, one that refuses mail
/// with markup in its banner, one with an expired certificate, and a closed port.
struct Lab {
    _servers: Vec<SmtpServer>,
    connectors: String,
    names: Vec<&'static str>,
}

async fn lab(pki: &Pki) -> Lab {
    let healthy = |spec: &LeafSpec| Script::healthy(pki.leaf(spec).server_config());
    let good = SmtpServer::start(healthy(&LeafSpec::valid("127.0.0.1")))
        .await
        .unwrap();
    let hostile_cert = LeafSpec {
        common_name: HOSTILE_CN.into(),
        ..LeafSpec::valid("127.0.0.1")
    };
    let cert = SmtpServer::start(healthy(&hostile_cert)).await.unwrap();
    let banner = SmtpServer::start(Script::new(vec![
        send(&format!("554 5.7.1 {HOSTILE_BANNER} no mail here\r\n")),
        Step::Close,
    ]))
    .await
    .unwrap();
    let expired = SmtpServer::start(healthy(&LeafSpec::expired("127.0.0.1")))
        .await
        .unwrap();
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let entry = |name: &str, hosts: &[SocketAddr]| {
        let hosts: Vec<String> = hosts.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "[[connector]]\nname = \"{name}\"\nsmart_hosts = [{}]\ntls = \"certificate-validation\"\n",
            hosts.join(", ")
        )
    };
    let connectors = [
        entry("contoso-onprem", &[good.addr]),
        entry("fabrikam-relay", &[closed]),
        entry("hostile-banner", &[banner.addr]),
        entry("hostile-certificate", &[cert.addr]),
        entry("litware-expired", &[expired.addr]),
        entry("northwind-pair", &[good.addr, closed]),
    ]
    .concat();
    Lab {
        _servers: vec![good, cert, banner, expired],
        connectors,
        names: vec![
            "contoso-onprem",
            "fabrikam-relay",
            "hostile-banner",
            "hostile-certificate",
            "litware-expired",
            "northwind-pair",
        ],
    }
}

/// A history file as a day of running would have left it beside the state file, so the
/// timelines have something to draw: the daemon reads it at start.
fn seed_history(dir: &Path) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let h = |hours_ago: i64, status: &str, code: Option<&str>| json!({"at": now - hours_ago * 3600, "status": status, "code": code});
    let doc = json!({"version": 1, "connectors": {
        "contoso-onprem": [h(30, "ok", None)],
        "fabrikam-relay": [h(30, "ok", None), h(9, "failing", Some("450 4.4.316")), h(7, "ok", None)],
        "hostile-banner": [h(20, "ok", None)],
        "litware-expired": [h(30, "ok", None), h(14, "warning", None)],
        "northwind-pair": [h(30, "ok", None), h(5, "degraded", None), h(4, "ok", None)],
    }});
    std::fs::write(dir.join("state.history.json"), doc.to_string()).unwrap();
}

/// A GET on the daemon's listener: status line, headers (lower-cased names) and body.
fn get(port: u16, path: &str) -> (String, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the daemon listens");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn api(port: u16) -> Value {
    let (status, headers, body) = get(port, "/api/v1/connectors");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    serde_json::from_str(&body).expect("the API answers JSON")
}

fn by_name<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connector"] == name)
        .unwrap_or_else(|| panic!("{name} in {doc:#}"))
}

/// Waits until every connector was probed at least once (the page and the API then show all
/// of them with a verdict).
fn wait_probed(d: &mut Daemon, names: &[&str]) {
    for name in names {
        d.event("probe_result", name, WAIT);
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("page-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver on a port of its own, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new(tool_path("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> fantoccini::Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1500,900",
    ];
    let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": tool_path("chromium"), "args": args}),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session through chromedriver")
}

/// What the browser built: the rows, and every trace the hostile strings could leave.
const READ_DOM: &str = r#"
    const rows = [...document.querySelectorAll('tr[data-connector]')].map(r => ({
        name: r.dataset.connector,
        status: r.querySelector('.b').textContent,
        code: r.querySelector('td.code').textContent,
        line: r.querySelector('td.line').textContent,
    }));
    return {
        rows,
        pwned: typeof window.pwned,
        scripts: document.querySelectorAll('script').length,
        images: document.querySelectorAll('img').length,
        handlers: document.querySelectorAll('[onerror],[onload],[onclick]').length,
        text: document.body.innerText,
        title: document.title,
    };
"#;

fn check_harmless(dom: &Value, page: &str) {
    assert_eq!(dom["pwned"], "undefined", "{page}: a hostile string ran");
    assert_eq!(dom["scripts"], 0, "{page}: a <script> element exists");
    assert_eq!(dom["images"], 0, "{page}: an <img> element exists");
    assert_eq!(
        dom["handlers"], 0,
        "{page}: an event handler attribute exists"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_shows_every_connector_worst_first_and_hostile_text_stays_text() {
    if !available(
        "the status page in a browser",
        &[Need::Tool("chromium"), Need::Tool("chromedriver")],
    ) {
        return;
    }
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let lab = lab(&pki).await;
    let port = free_port();
    let cfg = config(dir.path(), port, &lab.connectors);
    seed_history(dir.path());
    let names = lab.names.clone();
    let daemon = blocking(move || {
        let mut d = Daemon::start(&cfg);
        wait_probed(&mut d, &names);
        d
    })
    .await;
    let expected = blocking(move || api(port)).await;

    let driver = blocking(Driver::start).await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    client.set_window_size(1500, 900).await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    client.goto(&format!("{base}/")).await.unwrap();
    let dom = client.execute(READ_DOM, vec![]).await.unwrap();
    check_harmless(&dom, "/");

    let rows = dom["rows"].as_array().unwrap();
    let shown: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(shown.len(), lab.names.len(), "a row per connector: {dom:#}");
    let rank = |s: &str| {
        ["failing", "degraded", "warning", "ok"]
            .iter()
            .position(|x| *x == s)
    };
    let ranks: Vec<Option<usize>> = rows
        .iter()
        .map(|r| rank(r["status"].as_str().unwrap()))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]) && ranks.iter().all(Option::is_some),
        "worst first: {rows:#?}"
    );
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let api = by_name(&expected, name);
        assert_eq!(row["status"], api["status"], "{name}: {row} vs {api}");
        assert_eq!(
            row["code"].as_str().unwrap(),
            api["code"].as_str().unwrap_or(""),
            "{name}"
        );
    }
    let status = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status("contoso-onprem"), "ok");
    assert_eq!(status("hostile-certificate"), "ok");
    assert_eq!(status("fabrikam-relay"), "failing");
    assert_eq!(status("hostile-banner"), "failing");
    assert_eq!(status("litware-expired"), "failing");
    assert_eq!(status("northwind-pair"), "degraded");
    let code = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["code"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(code("fabrikam-relay"), "450 4.4.316");
    assert_eq!(code("litware-expired"), "450 4.7.320");
    let banner_row = rows.iter().find(|r| r["name"] == "hostile-banner").unwrap();
    assert!(
        banner_row["line"]
            .as_str()
            .unwrap()
            .contains(HOSTILE_BANNER),
        "the banner is shown as text: {banner_row}"
    );
    assert!(
        dom["title"].as_str().unwrap().starts_with("3 failing"),
        "{dom}"
    );
    // The page's content, without the empty window below it.
    let shot = client
        .find(fantoccini::Locator::Css("body"))
        .await
        .unwrap()
        .screenshot()
        .await
        .unwrap();
    std::fs::write(screenshot_dir().join("status-page.png"), &shot).unwrap();
    if std::env::var_os("CONNECTOR_PROBE_SCREENSHOT_DOCS").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::write(docs, &shot).unwrap();
    }

    // The connector's view, reached by its link as a person would.
    client
        .find(fantoccini::Locator::LinkText("hostile-certificate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/connector/hostile-certificate"
    );
    let dom = client.execute(READ_DOM, vec![]).await.unwrap();
    check_harmless(&dom, "/connector/hostile-certificate");
    let subject = client
        .find(fantoccini::Locator::Css("dd.cert-subject"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(subject.contains(HOSTILE_CN), "the CN is text: {subject}");
    let text = dom["text"].as_str().unwrap();
    for needle in ["Targets", "Stage reached", "Last 24 hours", "done"] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    let bars = client
        .find_all(fantoccini::Locator::Css("svg.tl-big rect"))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "the timeline is drawn");
    let shot = client.screenshot().await.unwrap();
    std::fs::write(
        screenshot_dir().join("connector-hostile-certificate.png"),
        &shot,
    )
    .unwrap();

    client
        .goto(&format!("{base}/connector/hostile-banner"))
        .await
        .unwrap();
    let dom = client.execute(READ_DOM, vec![]).await.unwrap();
    check_harmless(&dom, "/connector/hostile-banner");
    let text = dom["text"].as_str().unwrap();
    assert!(text.contains(HOSTILE_BANNER), "{text}");
    assert!(text.contains("What to fix:"), "the fix is shown: {text}");
    let shot = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join("connector-hostile-banner.png"), &shot).unwrap();

    client.close().await.unwrap();
    drop(driver);
    let (code, _, _) = blocking(move || daemon.stop(WAIT)).await;
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_api_are_read_only_uncached_script_free_and_history_survives_a_restart() {
    let pki = Pki::new();
    let dir = lab_dir(&pki);
    let lab = lab(&pki).await;
    let port = free_port();
    let cfg = config(dir.path(), port, &lab.connectors);
    let names = lab.names.clone();
    let cfg2 = cfg.clone();
    let (before, daemon) = blocking(move || {
        let mut d = Daemon::start(&cfg2);
        wait_probed(&mut d, &names);
        (api(port), d)
    })
    .await;

    for path in ["/", "/connector/fabrikam-relay", "/api/v1/connectors"] {
        let (status, headers, body) = blocking(move || get(port, path)).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        let csp = header(&headers, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{path}: {csp}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&headers, "cache-control"), Some("no-store"));
        if path != "/api/v1/connectors" {
            assert!(body.contains("<meta http-equiv=\"refresh\""), "{path}");
            assert!(!body.contains("<script"), "{path}: no script at all");
            assert!(!body.contains("<img"), "{path}");
        }
    }
    let (status, _, _) = blocking(move || get(port, "/connector/nobody%20here")).await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    let (status, _, body) = blocking(move || get(port, "/")).await;
    assert!(status.starts_with("HTTP/1.1 200"));
    assert!(
        body.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"),
        "{body}"
    );

    let relay = by_name(&before, "fabrikam-relay");
    assert_eq!(relay["status"], "failing");
    assert_eq!(relay["code"], "450 4.4.316");
    assert!(
        relay["targets"][0]
            .as_object()
            .unwrap()
            .contains_key("banner"),
        "a failing connector's whole probe --json object: {relay}"
    );
    assert!(relay["state"]["failing_since"].is_string(), "{relay}");
    assert!(
        relay["state"]["ndr_at"].is_string(),
        "a queued code counts down: {relay}"
    );
    let ok = by_name(&before, "contoso-onprem");
    assert_eq!(ok["status"], "ok");
    assert!(ok["state"]["failing_since"].is_null());
    assert!(
        ok["targets"][0]["certificate"]["subject"].is_string(),
        "an ok connector's summary keeps its certificate: {ok}"
    );
    let history = |doc: &Value, name: &str| by_name(doc, name)["state"]["history"].clone();
    for name in &lab.names {
        let h = history(&before, name);
        assert_eq!(
            h.as_array().map(Vec::len),
            Some(1),
            "{name}: one transition: {h}"
        );
    }

    // A reload keeps the history; a restart, even after kill -9, reads it back from the
    // state files before the first probe.
    let before2 = before.clone();
    let names = lab.names.clone();
    let state_dir = dir.path().to_owned();
    blocking(move || {
        let mut daemon = daemon;
        daemon.signal(libc::SIGHUP);
        daemon.wait("config_reloaded", WAIT, |v| v["event"] == "config_reloaded");
        let after = api(port);
        for name in &names {
            assert_eq!(
                history(&after, name),
                history(&before2, name),
                "{name}: after a reload"
            );
        }
        // Every transition written (the snapshot, or lines of the journal), then no clean
        // stop and no last compaction.
        let written = Instant::now();
        while !names.iter().all(|n| transitions_written(&state_dir, n)) {
            assert!(
                written.elapsed() < WAIT,
                "transitions not in the state files"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon.signal(libc::SIGKILL);
    })
    .await;
    assert!(
        !dir.path().join("state.history.json").exists(),
        "the history has no file of its own"
    );
    let names = lab.names.clone();
    let before2 = before.clone();
    let state_dir = dir.path().to_owned();
    blocking(move || {
        let mut d = Daemon::start(&cfg);
        d.wait("metrics_listening", WAIT, |v| {
            v["event"] == "metrics_listening"
        });
        let after = api(port);
        for name in &names {
            assert_eq!(
                history(&after, name),
                history(&before2, name),
                "{name}: the same transitions after a restart"
            );
        }
        wait_probed(&mut d, &names);
        let after = api(port);
        for name in &names {
            assert_eq!(
                history(&after, name),
                history(&before2, name),
                "{name}: no new transition for the same status after a restart"
            );
        }
        let (code, _, _) = d.stop(WAIT);
        assert_eq!(code, 0);
        // A clean stop compacts: the snapshot holds every timeline.
        let snapshot: Value =
            serde_json::from_slice(&std::fs::read(state_dir.join("state.json")).unwrap()).unwrap();
        for name in &names {
            assert_eq!(
                snapshot["history"][name].as_array().map(Vec::len),
                Some(1),
                "{name}: {snapshot}"
            );
        }
    })
    .await;
}

/// Whether `name`'s transition is in the state files beside `dir`'s configuration: in the
/// snapshot's `history`, or on a journal line of its own.
fn transitions_written(dir: &Path, name: &str) -> bool {
    let snapshot = std::fs::read(dir.join("state.json")).unwrap_or_default();
    let in_snapshot = serde_json::from_slice::<Value>(&snapshot)
        .is_ok_and(|s| s["history"][name].as_array().is_some_and(|h| !h.is_empty()));
    let journal = std::fs::read_to_string(dir.join("state.json.journal")).unwrap_or_default();
    in_snapshot
        || journal.lines().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| {
                v["connector"] == name && v["transitions"].as_array().is_some_and(|t| !t.is_empty())
            })
        })
}
