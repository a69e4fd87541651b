//! The hostile servers of `hostile`, against the real binary in its own process: each probe
//! gives the code the table gives, ends within its timeouts, and peaks at no more than
//! 16 MiB above a healthy probe's peak (`ru_maxrss` of the reaped child, from `wait4`, in a
//! small [`launcher`] process).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer, Step, send};

use crate::util::binary;

/// How much more than the healthy probe a hostile one may use.
const GROWTH_LIMIT_KIB: i64 = 16 * 1024;
/// Process start-up (the native root store is loaded before the first probe) and scheduling
/// on a busy machine, on top of a timeout.
const SLACK: Duration = Duration::from_millis(1500);
/// Every timeout but the banner's, in cases that must end on a cap or a fault: long enough
/// that ending before it shows the probe did not wait for it.
const LONG: Duration = Duration::from_secs(10);
/// The wall time of a probe ended by a cap or a fault, not by a (long) timeout.
const QUICK: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(LONG.as_secs() / 2));
/// The banner timeout of the drip cases, and the pause between dripped bytes.
const BANNER: Duration = Duration::from_secs(2);
const DRIP: Duration = Duration::from_millis(40);

/// What one run of `connector-probe probe --json` gave.
struct Measured {
    json: serde_json::Value,
    exit: i32,
    peak_kib: i64,
    took: Duration,
}

/// Names the directory of one measurement when this binary runs as the [`launcher`].
const LAUNCH_IN: &str = "CONNECTOR_PROBE_LAUNCH_IN";

/// Runs the binary against `port`, from the [`launcher`], and reads what it measured.
fn probe_process(dir: &Path, port: u16, banner: Duration) -> Measured {
    std::fs::write(
        dir.join("probe.toml"),
        format!(
            r#"
[defaults]
helo_name = "probe.test"
ip_family = "ipv4"
[defaults.timeouts]
dns = "{long}"
connect = "{long}"
banner = "{banner}"
command = "{long}"
tls = "{long}"

[[connector]]
name = "under-test"
smart_hosts = ["127.0.0.1:{port}"]
"#,
            long = humantime::format_duration(LONG),
            banner = humantime::format_duration(banner),
        ),
    )
    .unwrap();
    let launched = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "memory::launcher", "--test-threads=1", "--quiet"])
        .env(LAUNCH_IN, dir)
        .output()
        .unwrap();
    assert!(launched.status.success(), "launcher: {launched:?}");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let numbers: Vec<i64> = read("measured")
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let &[exit, peak_kib, took_us] = numbers.as_slice() else {
        panic!("measured: {numbers:?}");
    };
    let json = serde_json::from_str(&read("stdout"))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", read("stdout"), read("stderr")));
    Measured {
        json,
        exit: i32::try_from(exit).unwrap(),
        peak_kib,
        took: Duration::from_micros(took_us.try_into().unwrap()),
    }
}

/// Not a check of its own: with [`LAUNCH_IN`] set, the small process the probe is started
/// from. Linux counts the memory of the process a child is spawned from in the child's
/// `ru_maxrss` (at its exec), so a probe spawned from the test process, with its lab servers
/// and generated inputs, would seem to peak at the test process's own peak.
///
/// Runs the probe on `probe.toml` in that directory, reaps it with `wait4` for its peak
/// resident size, and writes its stdout, stderr, and `measured`: exit code, peak KiB, wall
/// time in microseconds.
#[test]
fn launcher() {
    let Some(dir) = std::env::var_os(LAUNCH_IN).map(PathBuf::from) else {
        return;
    };
    let config = dir.join("probe.toml");
    let floor = own_peak_kib();
    let t0 = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, which reports the resource usage"
    )]
    let child = Command::new(binary())
        .args(["probe", "--config", config.to_str().unwrap()])
        .args(["--connector", "under-test", "--json"])
        .env_remove("CONNECTOR_PROBE_CONFIG")
        .stdout(File::create(dir.join("stdout")).unwrap())
        .stderr(File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("the binary starts");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes only through the two pointers, both valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = t0.elapsed();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status),
        "the probe died: status {status:#x}"
    );
    // ru_maxrss is in kilobytes on Linux.
    assert!(
        usage.ru_maxrss > floor,
        "the probe's peak ({} KiB) is not above the launcher's ({floor} KiB), so it is not its own",
        usage.ru_maxrss
    );
    std::fs::write(
        dir.join("measured"),
        format!(
            "{} {} {}",
            libc::WEXITSTATUS(status),
            usage.ru_maxrss,
            took.as_micros()
        ),
    )
    .unwrap();
}

/// This process's peak resident size (`VmHWM`), in KiB: what a child's `ru_maxrss` cannot go
/// below.
fn own_peak_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Starts `script` on loopback and measures one probe of it.
async fn measure(script: Script, banner: Duration) -> Measured {
    let server = SmtpServer::start(script).await.unwrap();
    let port = server.addr.port();
    let dir = tempfile::tempdir().unwrap();
    // Blocking: the child runs while the server keeps playing on the runtime.
    tokio::task::spawn_blocking(move || probe_process(dir.path(), port, banner))
        .await
        .unwrap()
}

/// One hostile server and what the probe of it must give.
struct Case {
    name: &'static str,
    script: Script,
    banner: Duration,
    /// The verdict's status, and its code and stage when it fails.
    status: &'static str,
    failure: Option<(&'static str, &'static str)>,
    /// The wall time the probe must take: at least, and less than.
    took: (Duration, Duration),
}

/// A case whose probe must fail with `code` at `stage`.
fn fails(
    name: &'static str,
    script: Script,
    banner: Duration,
    code: &'static str,
    stage: &'static str,
    took: (Duration, Duration),
) -> Case {
    Case {
        name,
        script,
        banner,
        status: "failing",
        failure: Some((code, stage)),
        took,
    }
}

/// Bytes sent with the `220` to STARTTLS, in the same write: response injection.
/// The connector is opportunistic, so a failed negotiation is followed by a session without
/// STARTTLS, which the same script answers: a warning, quickly, whatever the server sent.
fn injection(name: &'static str, extra: &str) -> Case {
    Case {
        name,
        script: Script::answering_starttls([
            send(&format!("220 2.0.0 Ready to start TLS\r\n{extra}")),
            Step::Hang,
        ]),
        banner: LONG,
        status: "warning",
        failure: None,
        took: QUICK,
    }
}

/// A server that greets with `greeting` (dripped when `pause` is given), answers EHLO with
/// `ehlo`, and says goodbye.
fn plaintext(greeting: &[u8], pause: Option<Duration>, ehlo: &[u8]) -> Script {
    let greet = match pause {
        Some(p) => Step::Drip(greeting.to_vec(), p),
        None => Step::Send(greeting.to_vec()),
    };
    Script::new(vec![
        greet,
        Step::Expect("EHLO"),
        Step::Send(ehlo.to_vec()),
        Step::Expect("QUIT"),
        send("221 bye\r\n"),
    ])
}

fn cases() -> Vec<Case> {
    let inside = b"220 drip.example ESMTP ready\r\n";
    let outside = b"220 drip.example ESMTP ready, one byte at a time, far too slowly\r\n";
    // Inside with room for a busy machine's late timers, outside by a quarter at least.
    assert!(
        DRIP * inside.len() as u32 * 5 <= BANNER * 3,
        "inside: 60% of the timeout"
    );
    assert!(
        DRIP * outside.len() as u32 * 4 >= BANNER * 5,
        "outside: 125% of it"
    );
    let mut mebibyte = Vec::new();
    while mebibyte.len() < 1 << 20 {
        mebibyte.extend(b"250-SIZE 1024000000000000000000000000000000000000000000000000000\r\n");
    }
    mebibyte.extend(b"250 OK\r\n");
    vec![
        fails(
            "endless line",
            Script::new(vec![send("220 "), Step::Flood(vec![b'A'; 8192])]),
            LONG,
            "450 4.4.317",
            "banner",
            QUICK,
        ),
        fails(
            "endless multi-line reply",
            Script::new(vec![
                send("220 x ESMTP\r\n"),
                Step::Expect("EHLO"),
                Step::Flood(
                    b"250-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n".repeat(64),
                ),
            ]),
            LONG,
            "450 4.4.317",
            "ehlo",
            QUICK,
        ),
        Case {
            name: "greeting dripped just inside the banner timeout",
            script: plaintext(inside, Some(DRIP), b"250 drip.example\r\n"),
            banner: BANNER,
            // No STARTTLS offered: plaintext, a warning.
            status: "warning",
            failure: None,
            took: (DRIP * inside.len() as u32, BANNER + SLACK),
        },
        fails(
            "greeting dripped just outside the banner timeout",
            Script::new(vec![Step::Drip(outside.to_vec(), DRIP)]),
            BANNER,
            "450 4.4.318",
            "banner",
            (BANNER, BANNER + SLACK),
        ),
        Case {
            name: "NUL bytes and invalid UTF-8 in the greeting and EHLO",
            script: plaintext(
                b"220 odd\x00host \xff\xfe ESMTP\r\n",
                None,
                b"250-odd\x00host\r\n250 8BIT\xc3\x28MIME\r\n",
            ),
            banner: LONG,
            status: "warning",
            failure: None,
            took: QUICK,
        },
        fails(
            "1 MiB EHLO reply",
            Script::new(vec![
                send("220 x ESMTP\r\n"),
                Step::Expect("EHLO"),
                Step::Send(mebibyte),
                Step::Hang,
            ]),
            LONG,
            "450 4.4.317",
            "ehlo",
            QUICK,
        ),
        injection(
            "garbage after 220 Ready to start TLS",
            "\x16\x03\x01garbage",
        ),
        injection(
            "a reply pipelined after the STARTTLS 220",
            "250 2.0.0 pipelined\r\n",
        ),
        Case {
            name: "reset after the ClientHello",
            script: Script::answering_starttls([
                send("220 2.0.0 Ready to start TLS\r\n"),
                Step::Drain,
                Step::Reset,
            ]),
            banner: LONG,
            status: "warning",
            failure: None,
            took: QUICK,
        },
    ]
}

/// What is wrong with one case's run, if anything.
fn judge(case: &Case, m: &Measured, baseline_kib: i64) -> Vec<String> {
    let mut wrong = Vec::new();
    let v = &m.json;
    if v["status"] != case.status {
        wrong.push(format!("status {} (want {})", v["status"], case.status));
    }
    let (exit, code, stage) = match case.failure {
        Some((code, stage)) => (2, Some(code), Some(stage)),
        None => (i32::from(case.status == "warning"), None, None),
    };
    if v["code"].as_str() != code {
        wrong.push(format!("code {} (want {code:?})", v["code"]));
    }
    if let Some(stage) = stage
        && v["targets"][0]["stage"] != stage
    {
        wrong.push(format!("stage {} (want {stage})", v["targets"][0]["stage"]));
    }
    if m.exit != exit {
        wrong.push(format!("exit {} (want {exit})", m.exit));
    }
    let (at_least, under) = case.took;
    if m.took < at_least || m.took >= under {
        wrong.push(format!("took {:?} (want {at_least:?}..{under:?})", m.took));
    }
    if m.peak_kib - baseline_kib >= GROWTH_LIMIT_KIB {
        wrong.push(format!(
            "peak {} KiB, {} KiB over the healthy probe",
            m.peak_kib,
            m.peak_kib - baseline_kib
        ));
    }
    wrong
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_servers_cost_the_probe_process_bounded_time_and_memory() {
    let pki = Pki::new();
    let healthy = Script::healthy(pki.leaf(&LeafSpec::valid("mail.lab.test")).server_config());
    let baseline = measure(healthy, LONG).await;
    assert_eq!(
        baseline.json["code"],
        serde_json::Value::Null,
        "{}",
        baseline.json
    );
    eprintln!(
        "healthy probe (baseline): peak {} KiB, {:?}",
        baseline.peak_kib, baseline.took
    );
    // One at a time, so that the runs' timings do not disturb each other.
    let mut failures = Vec::new();
    for case in cases() {
        let m = measure(case.script.clone(), case.banner).await;
        eprintln!(
            "{}: {} {}, peak {} KiB ({:+} KiB), {:?}",
            case.name,
            m.json["status"],
            m.json["code"],
            m.peak_kib,
            m.peak_kib - baseline.peak_kib,
            m.took
        );
        for w in judge(&case, &m, baseline.peak_kib) {
            failures.push(format!("{}: {w}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
