//! What the status page shows, kept apart from the alerting state ([`super::state`]): the
//! latest verdict of each connector as a compact summary, and its transitions of the last
//! 24 hours, persisted in a small file of their own beside the state file.
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
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::health::lock;
use crate::verdict::{ConnectorVerdict, Stage, Status};

/// The window of the timeline.
pub const WINDOW_SECS: i64 = 24 * 3600;
/// The most transitions kept per connector; beyond, the oldest go (a connector flapping every
/// few minutes would otherwise grow without bound within the window).
pub const MAX_TRANSITIONS: usize = 64;
/// The largest history file read: 100,000 connectors of a few transitions each fit easily.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Bumped when the file's format changes incompatibly; an unknown version is a fresh start.
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

/// A certificate, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    pub subject: Box<str>,
    pub issuer: Box<str>,
    pub not_after: Box<str>,
    pub days_left: i64,
    /// The earliest `not_after` of the chain presented, Unix seconds.
    #[serde(skip)]
    pub earliest_expiry_unix: i64,
}

/// One target of the latest probe, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSummary {
    pub host: Box<str>,
    pub endpoint: Box<str>,
    /// The last stage reached.
    pub stage: Stage,
    pub code: Option<&'static str>,
    /// What went wrong, for a target that failed (empty otherwise).
    pub detail: Box<str>,
    #[serde(serialize_with = "timings_as_map")]
    pub timings_ms: Box<[(Stage, f32)]>,
    /// Protocol version and cipher suite, once TLS was negotiated.
    pub tls: Option<Box<str>>,
    pub certificate: Option<Box<CertSummary>>,
    pub warnings: Box<[Box<str>]>,
}

/// `{"stage": ms}`, as `probe --json` writes timings.
fn timings_as_map<S: serde::Serializer>(t: &[(Stage, f32)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(t.iter().map(|(stage, ms)| (stage, ms)))
}

/// A connector's latest verdict, compact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latest {
    pub status: Status,
    pub code: Option<&'static str>,
    pub title: Option<&'static str>,
    pub eop_status: Option<Box<str>>,
    pub ndr_line: Option<Box<str>>,
    pub fix: Option<&'static str>,
    /// Whether EOP would be queueing the connector's mail (the NDR countdown runs).
    pub queued: bool,
    pub started_at: Box<str>,
    pub duration_ms: f32,
    pub warnings: Box<[Box<str>]>,
    pub targets: Box<[TargetSummary]>,
    /// The whole `probe --json` object, only while the connector is not ok.
    #[serde(skip)]
    pub verdict_json: Option<Box<str>>,
}

impl Latest {
    pub fn from_verdict(v: &ConnectorVerdict) -> Latest {
        let targets = v.targets.iter().map(target_summary).collect();
        Latest {
            status: v.status,
            code: v.code,
            title: v.title,
            eop_status: v.eop_status.as_deref().map(Box::from),
            ndr_line: v.ndr_line.as_deref().map(Box::from),
            fix: v.fix,
            queued: v.is_queueing(),
            started_at: v.started_at.as_str().into(),
            duration_ms: v.duration_ms as f32,
            warnings: boxed_strs(&v.warnings),
            targets,
            verdict_json: (v.status != Status::Ok)
                .then(|| serde_json::to_string(v).ok().map(Box::from))
                .flatten(),
        }
    }

    /// The earliest certificate expiry of any target, Unix seconds.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.targets
            .iter()
            .filter_map(|t| t.certificate.as_ref().map(|c| c.earliest_expiry_unix))
            .min()
    }
}

fn boxed_strs(v: &[String]) -> Box<[Box<str>]> {
    v.iter().map(|s| Box::from(s.as_str())).collect()
}

fn target_summary(t: &crate::verdict::TargetVerdict) -> TargetSummary {
    TargetSummary {
        host: t.host.as_str().into(),
        endpoint: t.endpoint().into(),
        stage: t.stage,
        code: t.code,
        detail: if t.succeeded() {
            Box::default()
        } else {
            t.detail.as_str().into()
        },
        timings_ms: t
            .timings_ms
            .iter()
            .map(|(s, ms)| (*s, *ms as f32))
            .collect(),
        tls: t
            .tls
            .as_ref()
            .map(|tls| format!("{} {}", tls.version, tls.cipher).into()),
        certificate: t.certificate.as_ref().map(|c| {
            Box::new(CertSummary {
                subject: c.subject.as_str().into(),
                issuer: c.issuer.as_str().into(),
                not_after: c.not_after.as_str().into(),
                days_left: c.days_left,
                earliest_expiry_unix: c.earliest_expiry_unix,
            })
        }),
        warnings: boxed_strs(&t.warnings),
    }
}

/// Everything the page knows of one connector.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// `None` until the connector's first probe since the daemon started.
    pub latest: Option<Latest>,
    /// From the alerting state: when the failing episode began (Unix seconds).
    pub failing_since: Option<i64>,
    /// Unix seconds.
    pub last_probe: Option<i64>,
    /// Oldest first.
    pub history: Vec<Transition>,
}

impl Entry {
    /// The status to show: the latest probe's, or before it the last one remembered.
    pub fn status(&self) -> Option<Status> {
        match &self.latest {
            Some(l) => Some(l.status),
            None => self.history.last().map(|t| t.status),
        }
    }
}

/// The page's view of every configured connector.
#[derive(Debug, Default)]
pub struct Board {
    entries: std::sync::Mutex<BTreeMap<Box<str>, Arc<Entry>>>,
    dirty: AtomicBool,
}

impl Board {
    /// A board with the transitions of a history file, if there is one (see [`load`]).
    pub fn with_history(history: BTreeMap<String, Vec<Transition>>) -> Board {
        let entries = history
            .into_iter()
            .map(|(name, history)| {
                let entry = Entry {
                    history,
                    ..Entry::default()
                };
                (name.into_boxed_str(), Arc::new(entry))
            })
            .collect();
        Board {
            entries: std::sync::Mutex::new(entries),
            dirty: AtomicBool::new(false),
        }
    }

    /// Makes the board hold exactly the configured connectors: new ones appear (not yet
    /// probed), removed ones and their history go.
    pub fn configure<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut entries = lock(&self.entries);
        let mut kept = BTreeMap::new();
        for name in names {
            let entry = entries.remove(name).unwrap_or_default();
            kept.insert(Box::from(name), entry);
        }
        if !entries.is_empty() {
            self.dirty.store(true, Ordering::Release);
        }
        *entries = kept;
    }

    /// Takes a probe's verdict of a configured connector, with the alerting state's dates
    /// after it (Unix seconds).
    pub fn record(
        &self,
        v: &ConnectorVerdict,
        failing_since: Option<i64>,
        last_probe: Option<i64>,
        now: i64,
    ) {
        let latest = Latest::from_verdict(v);
        let mut entries = lock(&self.entries);
        // A connector removed by a reload while its probe ran: not shown any more.
        let Some(old) = entries.get(v.connector.as_str()) else {
            return;
        };
        let mut history = old.history.clone();
        let changed = history
            .last()
            .is_none_or(|t| t.status != latest.status || t.code.as_deref() != latest.code);
        if changed {
            history.push(Transition {
                at: now,
                status: latest.status,
                code: latest.code.map(Box::from),
            });
            self.dirty.store(true, Ordering::Release);
        }
        prune(&mut history, now);
        let entry = Entry {
            latest: Some(latest),
            failing_since,
            last_probe,
            history,
        };
        entries.insert(v.connector.as_str().into(), Arc::new(entry));
    }

    /// Every connector, in name order, without holding the lock afterwards.
    pub fn snapshot(&self) -> Vec<(Box<str>, Arc<Entry>)> {
        lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        lock(&self.entries).get(name).cloned()
    }

    /// Writes the history file if a transition happened since the last write. A failed
    /// write is retried at the next call.
    pub async fn flush(&self, path: &Path) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = self.snapshot();
        let path = path.to_owned();
        let saved = tokio::task::spawn_blocking(move || save(&path, &snapshot))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        if saved.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        saved
    }
}

/// Writes the history beside the running configuration's state file, if it has one; says
/// once per distinct error that it cannot.
pub(super) async fn flush(shared: &super::Shared, last_error: &mut Option<String>) {
    let Some(state_file) = super::health::read(&shared.runtime).state_file.clone() else {
        return;
    };
    let path = path_for(&state_file);
    match shared.board.flush(&path).await {
        Ok(()) => *last_error = None,
        Err(e) => {
            let text = e.to_string();
            if last_error.as_deref() != Some(&text) {
                tracing::error!(event = "history_save_failed", path = %path.display(), error = %text, "cannot write the status page's history {}: {text}", path.display());
                *last_error = Some(text);
            }
        }
    }
}

/// The board at start: the history file beside `state_file`, if any, for the configured
/// connectors.
pub(super) fn start<'a>(
    state_file: Option<&Path>,
    names: impl IntoIterator<Item = &'a str>,
) -> Board {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (history, problem) = state_file.map_or_else(Default::default, |p| load(&path_for(p), now));
    if let Some(p) = problem {
        tracing::warn!(event = "history_load_failed", error = %p, "the status page's history was not read, it starts afresh: {p}");
    }
    let board = Board::with_history(history);
    board.configure(names);
    board
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

/// Where the history lives: beside the state file, `state.json` → `state.history.json`.
pub fn path_for(state_file: &Path) -> PathBuf {
    state_file.with_extension("history.json")
}

#[derive(Serialize, Deserialize)]
struct File<T> {
    version: u32,
    connectors: T,
}

fn save(path: &Path, snapshot: &[(Box<str>, Arc<Entry>)]) -> io::Result<()> {
    let connectors: BTreeMap<&str, &[Transition]> = snapshot
        .iter()
        .filter(|(_, e)| !e.history.is_empty())
        .map(|(name, e)| (&**name, e.history.as_slice()))
        .collect();
    let bytes = serde_json::to_vec(&File {
        version: VERSION,
        connectors,
    })
    .map_err(io::Error::other)?;
    crate::files::replace(path, &bytes, None)
}

/// Reads a history file. A missing one is an empty history; one that cannot be used is an
/// empty history and the reason, to log (the next write replaces it). Transitions are pruned
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
        for t in history.iter_mut() {
            t.at = t.at.min(now);
        }
        // A file written by hand may be out of order; the timeline needs it sorted.
        history.sort_by_key(|t| t.at);
        prune(history, now);
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
    fn history_file_round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("state.json"));
        assert_eq!(path.file_name().unwrap(), "state.history.json");
        let now = 2_000_000;
        let (h, problem) = load(&path, now);
        assert!(h.is_empty() && problem.is_none(), "missing: fresh, quietly");

        let board = Board::default();
        board.configure(["a", "b"]);
        let entry = Entry {
            history: vec![t(now - 60, Status::Failing)],
            ..Entry::default()
        };
        lock(&board.entries).insert("a".into(), Arc::new(entry));
        save(&path, &board.snapshot()).unwrap();
        let (back, problem) = load(&path, now);
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(back.len(), 1, "connectors without history are not written");
        assert_eq!(back["a"], vec![t(now - 60, Status::Failing)]);

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
}
