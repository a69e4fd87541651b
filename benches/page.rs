//! The status page's cost: rendering `GET /` (and the JSON of `/api/v1/connectors`) for a
//! fleet of 10,000 connectors, and the memory the page's board holds for 100,000.
//!
//! `cargo bench --bench page` (release build). Prints a Markdown table for
//! `benches/RESULTS.md`; nothing here fails on a time, it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use connector_probe::certificate::CertificateInfo;
use connector_probe::config::{CertificateFailureCode, TlsMode};
use connector_probe::daemon::history::{Board, Dates, Transition};
use connector_probe::daemon::page::{api, render};
use connector_probe::verdict::{
    Code, Condition, ConnectorVerdict, Failure, Judged, Outcome, Stage, Status, TargetVerdict,
    TlsInfo,
};

/// Counts the bytes live on the heap, so the board's memory is measured exactly rather than
/// read from an RSS that reuses what earlier rounds freed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: as allocated above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NOW: i64 = 1_800_000_000;
const CERT: CertificateFailureCode = CertificateFailureCode::CertificateValidationFailed;

fn certificate(i: usize) -> CertificateInfo {
    let not_after = NOW + 86_400 * (5 + (i % 400) as i64);
    CertificateInfo {
        subject: format!("CN=mail{i}.contoso.example, O=Contoso, C=US"),
        windows_subject: String::new(),
        names: vec![format!("mail{i}.contoso.example")],
        issuer: "CN=Contoso Issuing CA 01, O=Contoso, C=US".into(),
        not_before: "2026-01-01T00:00:00Z".into(),
        not_after: "2027-01-01T00:00:00Z".into(),
        days_left: (not_after - NOW) / 86_400,
        sha1_thumbprint: "0".repeat(40),
        sha256_fingerprint: "00:".repeat(31) + "00",
        chain_length: 2,
        common_names: Vec::new(),
        not_after_unix: not_after,
        earliest_expiry_unix: not_after,
        self_issued: false,
    }
}

/// A target as a real probe leaves it: every stage timed, TLS and a certificate; or refused.
fn target(i: usize, n: usize, refused: bool) -> TargetVerdict {
    let address = IpAddr::V4(Ipv4Addr::new(10, (i >> 8) as u8, i as u8, n as u8));
    let mut t = TargetVerdict::new(&format!("mail{i}.contoso.example"), Some(address), 25);
    if refused {
        t.timings_ms.insert(Stage::Resolve, 1.2);
        t.timings_ms.insert(Stage::Connect, 0.4);
        let failure = Failure::new(
            Stage::Connect,
            Outcome::ConnectRefused,
            "connection refused",
        );
        let judged = Judged {
            code: Code::ConnectionRefused,
            condition: Condition::ConnectRefused,
            failure,
            message: "Socket error code 10061".into(),
        };
        t.fail(judged, CERT);
        return t;
    }
    for (s, ms) in [
        (Stage::Resolve, 1.2),
        (Stage::Connect, 0.4),
        (Stage::Banner, 2.0),
        (Stage::Ehlo, 0.6),
        (Stage::Starttls, 0.5),
        (Stage::Tls, 4.1),
        (Stage::Certificate, 0.2),
        (Stage::EhloTls, 0.6),
        (Stage::Quit, 0.3),
    ] {
        t.timings_ms.insert(s, ms);
    }
    t.stage = Stage::Done;
    t.banner = Some(format!("220 mail{i}.contoso.example ESMTP ready"));
    t.extensions = ["PIPELINING", "SIZE 36700160", "STARTTLS", "8BITMIME"]
        .map(String::from)
        .to_vec();
    t.tls = Some(TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS_AES_256_GCM_SHA384".into(),
        engine: "rustls".into(),
    });
    t.certificate = Some(certificate(i));
    t
}

/// The fleet's mix: 2 % failing, 1 % degraded, the rest ok, a third of them with two hosts.
fn verdict(i: usize) -> ConnectorVerdict {
    let (targets, refused) = match i % 100 {
        0 | 1 => (1, [true, true]),
        2 => (2, [false, true]),
        _ if i % 3 == 0 => (2, [false, false]),
        _ => (1, [false, false]),
    };
    let targets = (0..targets).map(|n| target(i, n, refused[n])).collect();
    ConnectorVerdict::new(
        &format!("connector-{i:06}"),
        TlsMode::CertificateValidation,
        CERT,
        "2027-01-15T08:00:00Z".into(),
        12.5,
        targets,
    )
}

fn board(n: usize) -> Board {
    let mut history = BTreeMap::new();
    for i in 0..n {
        // Every tenth connector had an episode an hour long this morning.
        if i % 10 == 0 {
            let h = vec![
                Transition {
                    at: NOW - 30_000,
                    status: Status::Ok,
                    code: None,
                },
                Transition {
                    at: NOW - 20_000,
                    status: Status::Failing,
                    code: Some("450 4.4.316".into()),
                },
                Transition {
                    at: NOW - 16_400,
                    status: Status::Ok,
                    code: None,
                },
            ];
            history.insert(format!("connector-{i:06}"), h);
        }
    }
    let board = Board::with_history(history);
    let names: Vec<String> = (0..n).map(|i| format!("connector-{i:06}")).collect();
    board.configure(names.iter().map(String::as_str));
    for i in 0..n {
        let v = verdict(i);
        let failing = (v.status == Status::Failing).then_some(NOW - 5000);
        let dates = Dates {
            failing_since: failing,
            last_probe: Some(NOW - 20),
            last_success: failing.is_none().then_some(NOW - 20),
        };
        board.record(&v, dates, NOW - 20);
    }
    board
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let cx = render::Context {
        now: NOW,
        message_expiration: 2 * 86_400,
    };
    let n = 10_000;
    let board_10k = board(n);
    let rounds = 15;
    let mut page_times = Vec::new();
    let mut api_times = Vec::new();
    let mut page_bytes = 0;
    let mut api_bytes = 0;
    for _ in 0..rounds {
        let t0 = Instant::now();
        let html = render::list(&mut board_10k.snapshot(), &cx);
        page_times.push(t0.elapsed());
        page_bytes = html.len();
        let t0 = Instant::now();
        let json = api(&board_10k.snapshot(), &cx);
        api_times.push(t0.elapsed());
        api_bytes = json.len();
    }
    let detail = board_10k
        .get("connector-000000")
        .expect("a failing connector");
    let t0 = Instant::now();
    let one = render::connector("connector-000000", &detail, &cx);
    let detail_time = t0.elapsed();
    drop(board_10k);

    let big = 100_000;
    let (bytes0, allocs0) = (
        LIVE.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    let board_100k = board(big);
    let bytes = LIVE.load(Ordering::Relaxed) - bytes0;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs0;
    // glibc adds 8 bytes to each block and rounds it up to 16.
    let with_overhead = bytes + allocs * 16;
    assert_eq!(board_100k.snapshot().len(), big);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("## Status page (`cargo bench --bench page`)\n");
    println!(
        "- machine: {} core(s); load average at start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.trim()
    );
    println!(
        "- fleet: {n} connectors (2 % failing, 1 % degraded, a third with two targets, every tenth with an episode in its 24-hour timeline); median of {rounds} renderings\n"
    );
    println!("| what | connectors | median | size |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `GET /` (HTML, worst first, a timeline per row) | {n} | {:.1} ms | {:.1} MiB |",
        median(page_times).as_secs_f64() * 1e3,
        page_bytes as f64 / 1048576.0
    );
    println!(
        "| `GET /api/v1/connectors` (JSON) | {n} | {:.1} ms | {:.1} MiB |",
        median(api_times).as_secs_f64() * 1e3,
        api_bytes as f64 / 1048576.0
    );
    println!(
        "| `GET /connector/<name>` (one failing connector) | 1 | {:.2} ms | {:.1} KiB |",
        detail_time.as_secs_f64() * 1e3,
        one.len() as f64 / 1024.0
    );
    println!(
        "\nThe page's board for {big} connectors (latest summaries, the whole verdict of the non-ok ones, timelines): {:.1} MiB on the heap in {allocs} blocks ({} bytes per connector), about {:.1} MiB with the allocator's overhead ({} bytes per connector).",
        bytes as f64 / 1048576.0,
        bytes / big,
        with_overhead as f64 / 1048576.0,
        with_overhead / big,
    );
}
