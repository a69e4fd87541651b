//! What the status page shows, kept apart from the alerting state ([`super::state`]): the
//! latest verdict of each connector as a compact summary, and its transitions of the last
//! 24 hours. The transitions are persisted by the state files ([`super::state`]): each one
//! goes into the same journal batch as the connector's record, and a compaction writes them
//! all into the snapshot, so the timeline costs no file and no fsync of its own. The
//! history file of earlier versions (`state.history.json`) is read once, see [`migrate`].
//!
//! Memory is the constraint (100,000 connectors within the daemon's budget), so a healthy
//! connector's verdict is kept as a [`Latest`] of a few hundred bytes, and the whole
//! `probe --json` object only while a connector is not ok (then its detail matters, and such
//! connectors are few). The history holds transitions (a change of status or code), not
//! probes: a steady connector has one, a flapping one at most [`MAX_TRANSITIONS`].
//!
//! Entries are shared as `Arc`s: a page takes a snapshot of the pointers under the lock and
//! renders without it, so rendering a large fleet never holds up a probe's result.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::health::lock;
use crate::verdict::{ConnectorVerdict, Stage, Status, TargetVerdict};

/// The window of the timeline.
pub const WINDOW_SECS: i64 = 24 * 3600;
/// The most transitions kept per connector; beyond, the oldest go (a connector flapping every
/// few minutes would otherwise grow without bound within the window).
pub const MAX_TRANSITIONS: usize = 64;
/// The largest history file (of earlier versions) read: 100,000 connectors of a few
/// transitions each fit easily.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The history file's format version; another is not read.
const VERSION: u32 = 1;

/// A change of a connector's status or code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Unix seconds.
    pub at: i64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Box<str>>,
}

/// What a connector that is not ok carries beyond its status. Few connectors have one, so
/// it is boxed, and the whole verdict is kept with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub code: Option<&'static str>,
    pub title: Option<&'static str>,
    pub fix: Option<&'static str>,
    pub eop_status: Option<Box<str>>,
    pub ndr_line: Option<Box<str>>,
    pub warnings: Box<[Box<str>]>,
    /// The whole `probe --json` object.
    pub verdict_json: Box<str>,
}

/// What a target that failed or warned carries beyond its stage.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetProblem {
    pub code: Option<&'static str>,
    /// What went wrong (empty for a target that only warned).
    pub detail: Box<str>,
    pub warnings: Box<[Box<str>]>,
}

/// The stages in order, to index [`TargetSummary`]'s timings.
pub const STAGES: [Stage; 10] = [
    Stage::Resolve,
    Stage::Connect,
    Stage::Banner,
    Stage::Ehlo,
    Stage::Starttls,
    Stage::Tls,
    Stage::Certificate,
    Stage::EhloTls,
    Stage::Quit,
    Stage::Done,
];

/// One target of the latest probe, packed: its own texts in one allocation, the texts many
/// targets share (a TLS suite, a CA's name) stored once, the timings inline.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSummary {
    pub address: Option<IpAddr>,
    pub port: u16,
    /// The last stage reached.
    pub stage: Stage,
    /// Whether the target accepted the session up to QUIT (`probe_success`).
    pub succeeded: bool,
    /// The whole probe of the target, resolve to QUIT, in milliseconds.
    pub total_ms: f32,
    /// Milliseconds per stage, in the order of [`STAGES`], as bfloat16 (the upper half of
    /// an `f32`: three significant digits, the whole range, half the size); NaN for a stage
    /// not run.
    timings: [u16; STAGES.len()],
    /// The host, then the certificate's subject; `cut` is where the host ends.
    text: Box<str>,
    cut: u32,
    /// Protocol version and cipher suite.
    tls: Option<Arc<str>>,
    certificate: Option<CertFacts>,
    pub problem: Option<Box<TargetProblem>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CertFacts {
    issuer: Arc<str>,
    /// The leaf's, Unix seconds.
    not_after: i64,
    /// The earliest `not_after` of the chain, Unix seconds.
    earliest_expiry: i64,
}

/// The most distinct texts [`shared`] keeps.
const SHARED_MAX: usize = 4096;

/// `text`, stored once for every target that has it. Past [`SHARED_MAX`] distinct texts a
/// new one is kept unshared, so servers that all present a different issuer cannot grow
/// the table without bound (at most a few hundred KiB).
fn shared(text: &str) -> Arc<str> {
    static TABLE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<Arc<str>>>> =
        std::sync::OnceLock::new();
    let mut table = lock(TABLE.get_or_init(Default::default));
    if let Some(known) = table.get(text) {
        return known.clone();
    }
    let new: Arc<str> = Arc::from(text);
    if table.len() < SHARED_MAX {
        table.insert(new.clone());
    }
    new
}

/// A certificate, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertView<'a> {
    pub subject: &'a str,
    pub issuer: &'a str,
    /// RFC 3339.
    pub not_after: String,
    /// Whole days from now to `not_after`; negative once expired.
    pub days_left: i64,
    #[serde(skip)]
    pub earliest_expiry_unix: i64,
}

impl TargetSummary {
    fn new(t: &TargetVerdict) -> TargetSummary {
        let mut timings = [bf16(f32::NAN); STAGES.len()];
        for (stage, ms) in &t.timings_ms {
            if let Some(i) = STAGES.iter().position(|s| s == stage) {
                timings[i] = bf16(*ms as f32);
            }
        }
        let cert = t.certificate.as_ref();
        let subject = cert.map_or("", |c| c.subject.as_str());
        let text = [t.host.as_str(), subject].concat();
        let failed = !t.succeeded();
        let problem = (failed || !t.warnings.is_empty()).then(|| {
            Box::new(TargetProblem {
                code: t.code,
                detail: if failed {
                    t.detail.as_str().into()
                } else {
                    Box::default()
                },
                warnings: boxed_strs(&t.warnings),
            })
        });
        TargetSummary {
            address: t.address,
            port: t.port,
            stage: t.stage,
            succeeded: !failed,
            total_ms: t.timings_ms.values().sum::<f64>() as f32,
            timings,
            text: text.into_boxed_str(),
            cut: u32::try_from(t.host.len()).unwrap_or(u32::MAX),
            tls: t.tls.as_ref().map(|tls| {
                // The engine is named only when it is not the usual one.
                let engine = if tls.engine == "rustls" {
                    String::new()
                } else {
                    format!(" ({})", tls.engine)
                };
                shared(&format!("{} {}{engine}", tls.version, tls.cipher))
            }),
            certificate: cert.map(|c| CertFacts {
                issuer: shared(&c.issuer),
                not_after: c.not_after_unix,
                earliest_expiry: c.earliest_expiry_unix,
            }),
            problem,
        }
    }

    pub fn host(&self) -> &str {
        self.text.get(..self.cut as usize).unwrap_or("")
    }

    fn subject(&self) -> &str {
        self.text.get(self.cut as usize..).unwrap_or("")
    }

    /// `address:port`, or `host:port` without an address.
    pub fn endpoint(&self) -> String {
        match self.address {
            Some(a) => SocketAddr::new(a, self.port).to_string(),
            None => format!("{}:{}", self.host(), self.port),
        }
    }

    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    pub fn certificate(&self) -> Option<CertView<'_>> {
        let c = self.certificate.as_ref()?;
        Some(CertView {
            subject: self.subject(),
            issuer: &c.issuer,
            not_after: rfc3339(c.not_after),
            days_left: (c.not_after - time::OffsetDateTime::now_utc().unix_timestamp())
                .div_euclid(86_400),
            earliest_expiry_unix: c.earliest_expiry,
        })
    }

    /// The stages run and their milliseconds, in order.
    pub fn timings(&self) -> impl Iterator<Item = (Stage, f32)> + '_ {
        STAGES
            .iter()
            .zip(self.timings)
            .map(|(s, ms)| (*s, f32::from_bits(u32::from(ms) << 16)))
            .filter(|(_, ms)| !ms.is_nan())
    }

    pub fn code(&self) -> Option<&'static str> {
        self.problem.as_ref().and_then(|p| p.code)
    }

    /// The earliest `not_after` of the certificate chain, Unix seconds.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.certificate.as_ref().map(|c| c.earliest_expiry)
    }

    pub fn detail(&self) -> &str {
        self.problem.as_ref().map_or("", |p| &p.detail)
    }

    pub fn warnings(&self) -> &[Box<str>] {
        self.problem.as_ref().map_or(&[], |p| &p.warnings)
    }
}

impl Serialize for TargetSummary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Timings<'a>(&'a TargetSummary);
        impl Serialize for Timings<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.timings())
            }
        }
        #[derive(Serialize)]
        struct Json<'a> {
            host: &'a str,
            address: Option<IpAddr>,
            port: u16,
            stage: Stage,
            code: Option<&'static str>,
            detail: &'a str,
            timings_ms: Timings<'a>,
            tls: Option<&'a str>,
            certificate: Option<CertView<'a>>,
            warnings: &'a [Box<str>],
        }
        Json {
            host: self.host(),
            address: self.address,
            port: self.port,
            stage: self.stage,
            code: self.code(),
            detail: self.detail(),
            timings_ms: Timings(self),
            tls: self.tls(),
            certificate: self.certificate(),
            warnings: self.warnings(),
        }
        .serialize(s)
    }
}

/// A connector's latest verdict, compact: with its entry, about 600 bytes for a healthy
/// connector (`benches/page.rs` measures it).
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub status: Status,
    /// Whether EOP would be queueing the connector's mail (the NDR countdown runs).
    pub queued: bool,
    pub duration_ms: f32,
    /// When the probe started, Unix milliseconds.
    pub started_at_ms: i64,
    /// Only while the connector is not ok.
    pub problem: Option<Box<Problem>>,
    pub targets: Box<[TargetSummary]>,
}

impl Latest {
    pub fn from_verdict(v: &ConnectorVerdict) -> Latest {
        let started_at_ms = time::OffsetDateTime::parse(
            &v.started_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        let problem = (v.status != Status::Ok).then(|| {
            Box::new(Problem {
                code: v.code,
                title: v.title,
                fix: v.fix,
                eop_status: v.eop_status.as_deref().map(Box::from),
                ndr_line: v.ndr_line.as_deref().map(Box::from),
                warnings: boxed_strs(&v.warnings),
                verdict_json: serde_json::to_string(v).unwrap_or_default().into(),
            })
        });
        Latest {
            status: v.status,
            queued: v.is_queueing(),
            duration_ms: v.duration_ms as f32,
            started_at_ms,
            problem,
            targets: v.targets.iter().map(TargetSummary::new).collect(),
        }
    }

    pub fn code(&self) -> Option<&'static str> {
        self.problem.as_ref().and_then(|p| p.code)
    }

    pub fn title(&self) -> Option<&'static str> {
        self.problem.as_ref().and_then(|p| p.title)
    }

    pub fn fix(&self) -> Option<&'static str> {
        self.problem.as_ref().and_then(|p| p.fix)
    }

    pub fn eop_status(&self) -> Option<&str> {
        self.problem.as_ref().and_then(|p| p.eop_status.as_deref())
    }

    pub fn ndr_line(&self) -> Option<&str> {
        self.problem.as_ref().and_then(|p| p.ndr_line.as_deref())
    }

    pub fn warnings(&self) -> &[Box<str>] {
        self.problem.as_ref().map_or(&[], |p| &p.warnings)
    }

    pub fn verdict_json(&self) -> Option<&str> {
        self.problem.as_ref().map(|p| &*p.verdict_json)
    }

    /// The probe's start, RFC 3339.
    pub fn started_at(&self) -> String {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.started_at_ms) * 1_000_000)
            .map(crate::daemon::events::rfc3339)
            .unwrap_or_default()
    }

    /// The earliest certificate expiry of any target, Unix seconds.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.targets
            .iter()
            .filter_map(TargetSummary::earliest_expiry)
            .min()
    }
}

impl Serialize for Latest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            status: Status,
            code: Option<&'static str>,
            title: Option<&'static str>,
            eop_status: Option<&'a str>,
            fix: Option<&'static str>,
            started_at: String,
            duration_ms: f32,
            targets: &'a [TargetSummary],
        }
        Json {
            status: self.status,
            code: self.code(),
            title: self.title(),
            eop_status: self.eop_status(),
            fix: self.fix(),
            started_at: self.started_at(),
            duration_ms: self.duration_ms,
            targets: &self.targets,
        }
        .serialize(s)
    }
}

/// `ms` as bfloat16, rounded to the nearest.
fn bf16(ms: f32) -> u16 {
    if ms.is_nan() {
        return 0x7fc0;
    }
    let bits = ms.to_bits();
    let rounded = bits.saturating_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(crate::daemon::events::rfc3339)
        .unwrap_or_default()
}

fn boxed_strs(v: &[String]) -> Box<[Box<str>]> {
    v.iter().map(|s| Box::from(s.as_str())).collect()
}

/// The alerting state's dates after a probe, Unix seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dates {
    pub failing_since: Option<i64>,
    pub last_probe: Option<i64>,
    pub last_success: Option<i64>,
}

impl Dates {
    pub fn of(state: &super::state::ConnectorState) -> Dates {
        let unix = |t: time::OffsetDateTime| t.unix_timestamp();
        Dates {
            failing_since: state.failing_since.map(unix),
            last_probe: state.last_probe.map(unix),
            last_success: state.last_success.map(unix),
        }
    }
}

/// Everything the page and the metrics know of one connector.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// `None` until the connector's first probe since the daemon started.
    pub latest: Option<Latest>,
    /// From the alerting state: when the failing episode began (Unix seconds).
    pub failing_since: Option<i64>,
    /// Unix seconds.
    pub last_probe: Option<i64>,
    /// When the connector was last not failing, Unix seconds (from the alerting state).
    pub last_success: Option<i64>,
    /// Probes since the daemon started, by resulting status (in [`STATUSES`] order).
    pub probes: [u64; 4],
    /// Oldest first.
    pub history: Vec<Transition>,
}

/// The statuses in the order of [`Entry::probes`].
pub const STATUSES: [Status; 4] = [
    Status::Ok,
    Status::Warning,
    Status::Degraded,
    Status::Failing,
];

impl Entry {
    /// The status to show: the latest probe's, or before it the last one remembered.
    pub fn status(&self) -> Option<Status> {
        match &self.latest {
            Some(l) => Some(l.status),
            None => self.history.last().map(|t| t.status),
        }
    }
}

/// A connector's name and what the board knows of it.
pub type Named = (Arc<str>, Arc<Entry>);

/// What the status page and the per-connector metrics show of every configured connector:
/// one compact record each, drawn by the page and streamed by `/metrics` alike.
#[derive(Debug, Default)]
pub struct Board {
    entries: std::sync::Mutex<BTreeMap<Arc<str>, Arc<Entry>>>,
}

impl Board {
    /// A board with the transitions the state files held (see [`start`]).
    pub fn with_history(history: BTreeMap<String, Vec<Transition>>) -> Board {
        let entries = history
            .into_iter()
            .map(|(name, history)| {
                let entry = Entry {
                    history,
                    ..Entry::default()
                };
                (Arc::from(name), Arc::new(entry))
            })
            .collect();
        Board {
            entries: std::sync::Mutex::new(entries),
        }
    }

    /// Makes the board hold exactly the configured connectors: new ones appear (not yet
    /// probed), removed ones and their history go.
    pub fn configure<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut entries = lock(&self.entries);
        let mut kept = BTreeMap::new();
        for name in names {
            // The old key kept: a reload of 100,000 connectors allocates no new names.
            let (key, entry) = entries
                .remove_entry(name)
                .unwrap_or_else(|| (Arc::from(name), Arc::default()));
            kept.insert(key, entry);
        }
        *entries = kept;
    }

    /// The alerting state's dates of a connector not yet probed since the daemon started
    /// (Unix seconds), so a restarted daemon exports `failing_since` before its first probe.
    pub fn restore(&self, name: &str, failing_since: Option<i64>, last_success: Option<i64>) {
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get_mut(name) {
            let entry = Arc::make_mut(entry);
            entry.failing_since = failing_since;
            entry.last_success = last_success;
        }
    }

    /// Takes a probe's verdict of a configured connector, with the alerting state's dates
    /// after it (Unix seconds). Returns the transition it made, if any, for the state
    /// journal to keep.
    pub fn record(&self, v: &ConnectorVerdict, dates: Dates, now: i64) -> Option<Transition> {
        let latest = Latest::from_verdict(v);
        let mut entries = lock(&self.entries);
        // A connector removed by a reload while its probe ran: not shown any more.
        let slot = entries.get_mut(v.connector.as_str())?;
        let old = &**slot;
        let mut history = old.history.clone();
        let changed = history
            .last()
            .is_none_or(|t| t.status != latest.status || t.code.as_deref() != latest.code());
        let transition = changed.then(|| Transition {
            at: now,
            status: latest.status,
            code: latest.code().map(Box::from),
        });
        history.extend(transition.clone());
        prune(&mut history, now);
        let mut probes = old.probes;
        if let Some(i) = STATUSES.iter().position(|s| *s == latest.status) {
            probes[i] = probes[i].saturating_add(1);
        }
        let entry = Entry {
            latest: Some(latest),
            failing_since: dates.failing_since,
            last_probe: dates.last_probe,
            last_success: dates.last_success,
            probes,
            history,
        };
        *slot = Arc::new(entry);
        transition
    }

    /// Every connector, in name order, without holding the lock afterwards.
    pub fn snapshot(&self) -> Vec<Named> {
        lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        lock(&self.entries).get(name).cloned()
    }
}

/// The board at start: the transitions the state files held (see [`migrate`]), for the
/// configured connectors.
pub(super) fn start<'a>(
    history: BTreeMap<String, Vec<Transition>>,
    names: impl IntoIterator<Item = &'a str>,
) -> Board {
    let board = Board::with_history(history);
    board.configure(names);
    board
}

/// Once, at start: when the snapshot has no transitions (it was written by an earlier
/// version, or there is none), the history file earlier versions kept beside it
/// (`state.history.json`) is read, if there is one. Its transitions join those of the
/// journal, in `history` and in `store`; the store's next flush compacts, so the snapshot
/// holds them from then on, and removes the file. An unusable file is logged as
/// `history_load_failed` and left alone.
pub(super) fn migrate(
    store: &mut super::state::Store,
    history: &mut BTreeMap<String, Vec<Transition>>,
) {
    if store.history_in_snapshot() {
        return;
    }
    let path = path_for(store.path());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (old, problem) = load(&path, now);
    if let Some(p) = problem {
        tracing::warn!(event = "history_load_failed", error = %p, "the status page's history was not read, it starts afresh: {p}");
        return;
    }
    if !path.exists() {
        return;
    }
    for (name, transitions) in &old {
        let kept = history.entry(name.clone()).or_default();
        for t in transitions {
            super::state::add_transition(kept, t.clone());
        }
        prune(kept, now);
    }
    tracing::info!(event = "history_migrated", path = %path.display(), connectors = old.len(), "the status page's history moves from {} into the state files", path.display());
    store.migrate(path, &old);
}

/// Brings `history` into shape after a load: dates in the future back to `now` (a clock
/// that was wrong), in time order (a file written by hand may be out of order; the timeline
/// needs it sorted), pruned to the window.
pub fn tidy(history: &mut Vec<Transition>, now: i64) {
    for t in history.iter_mut() {
        t.at = t.at.min(now);
    }
    history.sort_by_key(|t| t.at);
    prune(history, now);
}

/// Drops what the timeline no longer needs: transitions older than the window, except the
/// last of them (the status at the window's start), and the oldest beyond
/// [`MAX_TRANSITIONS`].
pub fn prune(history: &mut Vec<Transition>, now: i64) {
    let start = now - WINDOW_SECS;
    let before = history.iter().take_while(|t| t.at <= start).count();
    let drop = before
        .saturating_sub(1)
        .max(history.len().saturating_sub(MAX_TRANSITIONS));
    history.drain(..drop);
}

/// Where earlier versions kept the history: beside the state file, `state.json` →
/// `state.history.json`.
pub fn path_for(state_file: &Path) -> PathBuf {
    state_file.with_extension("history.json")
}

#[derive(Deserialize)]
struct File<T> {
    version: u32,
    connectors: T,
}

/// Reads a history file of earlier versions. A missing one is an empty history; one that
/// cannot be used is an empty history and the reason, to log. Transitions are pruned
/// to the window and dates in the future brought back to `now`.
pub fn load(path: &Path, now: i64) -> (BTreeMap<String, Vec<Transition>>, Option<String>) {
    let bytes = match crate::files::read_bounded(path, MAX_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (BTreeMap::new(), None),
        Err(e) => return (BTreeMap::new(), Some(format!("{}: {e}", path.display()))),
    };
    let mut file = match serde_json::from_slice::<File<BTreeMap<String, Vec<Transition>>>>(&bytes) {
        Ok(f) if f.version == VERSION => f.connectors,
        Ok(f) => {
            let why = format!("{}: unknown format version {}", path.display(), f.version);
            return (BTreeMap::new(), Some(why));
        }
        Err(e) => return (BTreeMap::new(), Some(format!("{}: {e}", path.display()))),
    };
    for history in file.values_mut() {
        tidy(history, now);
    }
    (file, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(at: i64, status: Status) -> Transition {
        Transition {
            at,
            status,
            code: None,
        }
    }

    #[test]
    fn pruning_keeps_the_status_at_the_start_of_the_window() {
        let now = 1_000_000;
        let mut h = vec![
            t(now - 3 * WINDOW_SECS, Status::Ok),
            t(now - 2 * WINDOW_SECS, Status::Failing),
            t(now - 10, Status::Ok),
        ];
        prune(&mut h, now);
        assert_eq!(
            h,
            vec![
                t(now - 2 * WINDOW_SECS, Status::Failing),
                t(now - 10, Status::Ok)
            ]
        );
        let mut flapping: Vec<Transition> =
            (0..200).map(|i| t(now - 200 + i, Status::Ok)).collect();
        prune(&mut flapping, now);
        assert_eq!(flapping.len(), MAX_TRANSITIONS);
        assert_eq!(flapping.last().unwrap().at, now - 1, "the newest are kept");
    }

    #[test]
    fn a_target_packed_gives_back_what_the_probe_saw() {
        let mut t = TargetVerdict::new("mx.contoso.example", Some([192, 0, 2, 7].into()), 25);
        t.stage = Stage::Done;
        t.timings_ms.insert(Stage::Connect, 1.5);
        t.timings_ms.insert(Stage::Tls, 4.0);
        t.tls = Some(crate::verdict::TlsInfo {
            version: "TLSv1_3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            engine: "rustls".into(),
        });
        let packed = TargetSummary::new(&t);
        assert_eq!(packed.host(), "mx.contoso.example");
        assert_eq!(packed.endpoint(), "192.0.2.7:25");
        assert_eq!(packed.tls(), Some("TLSv1_3 TLS13_AES_128_GCM_SHA256"));
        assert_eq!(packed.certificate(), None);
        assert_eq!(
            packed.timings().collect::<Vec<_>>(),
            [(Stage::Connect, 1.5), (Stage::Tls, 4.0)]
        );
        let ms = |x: f32| f32::from_bits(u32::from(bf16(x)) << 16);
        for x in [0.37_f32, 12.34, 987.6, 29_999.0] {
            assert!((ms(x) - x).abs() / x < 0.004, "{x} kept as {}", ms(x));
        }
        assert!(
            packed.problem.is_none(),
            "a healthy target carries no problem"
        );
        assert!(STAGES.windows(2).all(|w| w[0] < w[1]), "in pipeline order");
        let again = TargetSummary::new(&t);
        assert!(
            Arc::ptr_eq(packed.tls.as_ref().unwrap(), again.tls.as_ref().unwrap()),
            "one TLS suite, stored once"
        );
        let json = serde_json::to_value(&packed).unwrap();
        assert_eq!(json["timings_ms"]["tls"], 4.0, "{json}");
    }

    #[test]
    fn the_history_file_of_earlier_versions_is_read_and_bad_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("state.json"));
        assert_eq!(path.file_name().unwrap(), "state.history.json");
        let now = 2_000_000;
        let (h, problem) = load(&path, now);
        assert!(h.is_empty() && problem.is_none(), "missing: fresh, quietly");

        // As the last version wrote it.
        std::fs::write(
            &path,
            format!(
                r#"{{"version":1,"connectors":{{"a":[{{"at":{},"status":"failing","code":"450 4.4.316"}}]}}}}"#,
                now - 60
            ),
        )
        .unwrap();
        let (back, problem) = load(&path, now);
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(
            back["a"],
            vec![Transition {
                at: now - 60,
                status: Status::Failing,
                code: Some("450 4.4.316".into())
            }]
        );

        std::fs::write(
            &path,
            br#"{"version":1,"connectors":{"a":[{"at":9999999999,"status":"ok"}]}}"#,
        )
        .unwrap();
        let (back, _) = load(&path, now);
        assert_eq!(
            back["a"][0].at, now,
            "a date in the future is brought to now"
        );

        std::fs::write(&path, b"{\"version\":1,\"conn").unwrap();
        let (back, problem) = load(&path, now);
        assert!(back.is_empty() && problem.is_some());
    }

    #[test]
    fn a_board_reports_the_transitions_it_makes() {
        let board = Board::with_history(BTreeMap::from([(
            "a".to_owned(),
            vec![t(1_000, Status::Ok)],
        )]));
        board.configure(["a"]);
        let now = 2_000;
        let mut v = ConnectorVerdict::new(
            "a",
            crate::config::TlsMode::Opportunistic,
            crate::config::CertificateFailureCode::CertificateValidationFailed,
            "1970-01-01T00:33:20Z".into(),
            1.0,
            Vec::new(),
        );
        v.status = Status::Ok;
        let dates = |failing_since, at| Dates {
            failing_since,
            last_probe: Some(at),
            last_success: Some(now),
        };
        assert_eq!(board.record(&v, dates(None, now), now), None, "still ok");
        v.status = Status::Failing;
        v.code = Some("450 4.4.316");
        let made = board.record(&v, dates(Some(now + 1), now + 1), now + 1);
        assert_eq!(
            made,
            Some(Transition {
                at: now + 1,
                status: Status::Failing,
                code: Some("450 4.4.316".into())
            })
        );
        let a = board.get("a").unwrap();
        assert_eq!(a.history.last(), made.as_ref());
        // What /metrics reads: probes by status, and the alerting state's dates.
        assert_eq!(a.probes, [1, 0, 0, 1], "one ok, one failing");
        assert_eq!(
            (a.failing_since, a.last_probe, a.last_success),
            (Some(now + 1), Some(now + 1), Some(now))
        );
        v.connector = "gone".into();
        assert_eq!(
            board.record(&v, dates(None, now), now),
            None,
            "a connector not configured makes none"
        );
    }
}
