//! What the daemon remembers per connector, and how it survives a restart: the alerting
//! state, and the status page's timeline (each connector's transitions, see
//! [`super::history`]).
//!
//! Two files: a snapshot (`state.json`) and a journal beside it (`state.json.journal`).
//!
//! * The snapshot holds every connector's record, and beside them (`history`) each one's
//!   transitions of the last 24 hours. It is written whole, atomically, through
//!   [`crate::files::replace`] (a fresh temporary file, fsync, rename, fsync of the
//!   directory), so a crash mid-write leaves the previous version; and only at a compaction.
//! * The journal is appended to: one JSON line per connector whose record changed in a way a
//!   restart needs (status, code, `failing_since`, the alerts raised, the certificates
//!   warned about; not `last_probe` or `last_success`, which change at every probe), at most
//!   one batch and one fsync per flush. The line carries the transitions the connector made
//!   since the last flush (`transitions`, left out when none), so the timeline costs no file
//!   and no fsync of its own. A connector removed from the configuration is a line with a
//!   `null` state, and its transitions go with it.
//! * A compaction writes the snapshot afresh from the records and starts an empty journal:
//!   when the journal outgrows twice the snapshot (at least [`JOURNAL_FLOOR`]) or
//!   [`MAX_BYTES`], and at a clean stop (which also keeps every `last_probe`).
//! * Each snapshot carries a generation and each journal starts with the generation of the
//!   snapshot it follows; a journal of another generation is left over from a compaction
//!   interrupted between its two steps, and everything in it is already in the snapshot.
//!
//! Loading is the snapshot, then the journal's lines in order (each line is a connector's
//! whole record, so the last one wins; its transitions are added to the connector's). A torn last line (a crash mid-append, before its
//! fsync, so never acknowledged) is ignored; so is a line that does not parse anywhere else,
//! with a warning; either makes the next flush a compaction, so nothing is appended after
//! garbage. A missing snapshot is a fresh start; an unreadable, oversized or corrupted one is
//! a logged warning, kept aside for inspection, and a fresh start: never a crash. Dates in
//! the future are brought back to the present (see [`States::clamp_future_dates`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::history::{Transition, prune};
use crate::verdict::Status;

/// Bumped when the format changes incompatibly; an unknown version is a fresh start.
const VERSION: u32 = 1;
/// The largest snapshot read, and the journal size that forces a compaction. A connector's
/// record is a few hundred bytes, so this holds well over 100,000 connectors; anything
/// larger is not a state file.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The largest journal read: it is compacted once past [`MAX_BYTES`], plus one batch.
const MAX_JOURNAL_BYTES: u64 = 2 * MAX_BYTES;
/// A journal smaller than this is never compacted for its size: for a small fleet, a
/// compaction per few changes would cost more than the journal's replay saves.
pub const JOURNAL_FLOOR: u64 = 1024 * 1024;

/// The alerts already raised in the current failing episode, so each fires once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raised {
    pub queue_alert: bool,
    pub ndr_imminent: bool,
    pub ndr_expected: bool,
}

impl Raised {
    fn is_none(&self) -> bool {
        *self == Raised::default()
    }
}

/// One connector's state. Empty fields are left out of the files, which keeps a healthy
/// connector's record (written at every compaction) small.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorState {
    /// `None` until the first probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eop_status: Option<String>,
    /// When the current failing episode began: the start of EOP's queueing, and of the NDR
    /// countdown.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub failing_since: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_success: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_probe: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Raised::is_none")]
    pub raised: Raised,
    /// `target|not_after` of certificates already reported as expiring.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub certificates_warned: BTreeSet<String>,
}

impl ConnectorState {
    /// Whether `self` and `other` differ in what a restart needs: everything but the two
    /// timestamps every probe moves. Only such a change is written to the journal.
    pub fn differs_durably(&self, other: &ConnectorState) -> bool {
        self.status != other.status
            || self.code != other.code
            || self.eop_status != other.eop_status
            || self.failing_since != other.failing_since
            || self.raised != other.raised
            || self.certificates_warned != other.certificates_warned
    }

    /// The record as the files hold it.
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).expect("a state serialises")
    }
}

#[derive(Debug, Default, Deserialize)]
struct StateFile {
    version: u32,
    /// Absent in files written before the journal: generation 0.
    #[serde(default)]
    generation: u64,
    connectors: BTreeMap<String, ConnectorState>,
    /// Absent in files written before the timeline moved into the state files (it was
    /// `state.history.json`): then that file is read once, see [`super::history::migrate`].
    #[serde(default)]
    history: Option<BTreeMap<String, Vec<Transition>>>,
}

/// The first line of a journal.
#[derive(Debug, Serialize, Deserialize)]
struct JournalHeader {
    generation: u64,
}

/// Every other line of a journal: a connector's new record, or `null` once it is removed,
/// and the transitions it made since the previous flush (none in lines written before).
#[derive(Debug, Deserialize)]
struct JournalLine {
    connector: String,
    state: Option<ConnectorState>,
    #[serde(default)]
    transitions: Vec<Transition>,
}

/// Why the state files were not (wholly) used at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadProblem {
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{path} is corrupted ({reason}); it was moved to {kept} and the daemon starts afresh")]
    Corrupted {
        path: PathBuf,
        reason: String,
        kept: PathBuf,
    },
    #[error("{path}: {lines} line(s) before the last are corrupted and were skipped")]
    JournalDamaged { path: PathBuf, lines: usize },
}

/// All connectors' states, and as loaded, their transitions (for the status page's board,
/// which keeps them from then on; the daemon takes them out at start).
#[derive(Debug, Default)]
pub struct States {
    pub connectors: BTreeMap<String, ConnectorState>,
    /// Oldest first, pruned to the window.
    pub history: BTreeMap<String, Vec<Transition>>,
}

impl States {
    /// Loads the snapshot at `path` and replays its journal; see [`Store::open`].
    pub fn load(path: &Path) -> (States, Option<LoadProblem>) {
        let (states, _, mut problems) = Store::open(path);
        (states, problems.drain(..).next())
    }

    /// Brings dates later than `now` back to `now`, and says which connectors and how. A
    /// date from the future comes from a clock that was wrong, or from a file someone wrote:
    /// kept, a `failing_since` of 9999-12-31 would postpone every alert forever.
    pub fn clamp_future_dates(&mut self, now: OffsetDateTime) -> Vec<(String, String)> {
        let mut clamped = Vec::new();
        for (name, state) in &mut self.connectors {
            for (field, date) in [
                ("failing_since", &mut state.failing_since),
                ("last_success", &mut state.last_success),
                ("last_probe", &mut state.last_probe),
            ] {
                if let Some(d) = date.filter(|d| *d > now) {
                    clamped.push((
                        name.clone(),
                        format!(
                            "{name}: {field} {} is in the future; using the present instead",
                            crate::daemon::events::rfc3339(d)
                        ),
                    ));
                    *date = Some(now);
                }
            }
        }
        clamped
    }

    /// Forgets connectors that are no longer configured, their records and their
    /// transitions, and returns their names.
    pub fn retain(&mut self, names: &HashSet<&str>) -> Vec<String> {
        let mut gone = Vec::new();
        // Transitions first, each name once: one with a record is named by the records.
        let connectors = &self.connectors;
        self.history.retain(|name, _| {
            let keep = names.contains(name.as_str());
            if !keep && !connectors.contains_key(name) {
                gone.push(name.clone());
            }
            keep
        });
        self.connectors.retain(|name, _| {
            let keep = names.contains(name.as_str());
            if !keep {
                gone.push(name.clone());
            }
            keep
        });
        gone
    }
}

/// What a flush writes of one connector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The connector's record (see [`ConnectorState::to_record`]), `None` once it is removed.
    pub record: Option<String>,
    /// The transitions it made since the last flush, oldest first.
    pub transitions: Vec<Transition>,
}

impl Change {
    pub fn record(record: String) -> Change {
        Change {
            record: Some(record),
            transitions: Vec::new(),
        }
    }

    pub fn removed() -> Change {
        Change::default()
    }
}

/// A batch for [`Store::flush`]: each changed connector's record and new transitions.
pub type Batch = HashMap<String, Change>;

/// Adds `t` to `history` unless it is there already: a transition can reach the store twice
/// (a moved state file adopts the board's history while the same transitions still wait in
/// the pending batch; a migrated history file overlaps the journal), and the timeline must
/// not show it twice. Only the transitions not older than `t` are compared, so a flapping
/// connector's steady stream costs one comparison each.
pub fn add_transition(history: &mut Vec<Transition>, t: Transition) {
    let seen = history
        .iter()
        .rev()
        .take_while(|h| h.at >= t.at)
        .any(|h| *h == t);
    if !seen {
        // Kept in time order, even if a clock stepped back.
        let at = history.partition_point(|h| h.at <= t.at);
        history.insert(at, t);
    }
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// What a flush did, for the logs and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing to write.
    #[default]
    Nothing,
    /// Lines appended to the journal, and one fsync.
    Appended { lines: usize, bytes: u64 },
    /// The snapshot written afresh, and an empty journal started.
    Compacted { bytes: u64 },
}

/// What the store keeps of one connector.
#[derive(Debug, Default)]
struct Kept {
    /// As written (see [`ConnectorState::to_record`]); `None` for a connector with
    /// transitions but no record (its record was never written, e.g. migrated history).
    record: Option<Box<str>>,
    /// Oldest first, pruned to the window.
    history: Vec<Transition>,
}

impl Kept {
    fn set_record(&mut self, record: String) {
        self.record = Some(record.into_boxed_str());
    }

    /// Adds transitions, keeping the list pruned and no larger than it needs to be: a
    /// one-element list grown by `push` would reserve four.
    fn add(&mut self, transitions: impl IntoIterator<Item = Transition>, now: i64) {
        for t in transitions {
            add_transition(&mut self.history, t);
        }
        prune(&mut self.history, now);
        self.history.shrink_to_fit();
    }
}

/// The writer of the state files. It keeps each connector's record as it last wrote it, so
/// a compaction needs nothing from the daemon's shared state (and holds none of its locks).
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    journal_path: PathBuf,
    generation: u64,
    /// Each connector's record and transitions as the last flush left them, for the
    /// snapshot: one entry per connector, not a map each (at 100,000 connectors the second
    /// map's keys and table were 10 MB).
    kept: HashMap<Box<str>, Kept>,
    /// Whether the snapshot read at start had its `history`; else the first compaction
    /// writes it (see [`super::history::migrate`]).
    history_in_snapshot: bool,
    /// The history file of earlier versions, read once at start: removed after the first
    /// compaction, which holds its transitions.
    migrated: Option<PathBuf>,
    snapshot_bytes: Option<u64>,
    journal: Option<File>,
    journal_bytes: u64,
    /// The next flush compacts: the journal on disk cannot be appended to, or a write failed
    /// and the files may lack a batch the records hold.
    must_compact: bool,
}

/// The journal's path: the state file's, with `.journal` added.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

impl Store {
    /// Reads the snapshot and replays the journal. Nothing is written: a journal that
    /// cannot be appended to (torn, damaged, or of another generation) is replaced by the
    /// first flush, which compacts.
    pub fn open(path: &Path) -> (States, Store, Vec<LoadProblem>) {
        let mut problems = Vec::new();
        let (file, snapshot_bytes) = match read_snapshot(path) {
            Ok(Some((file, bytes))) => (file, Some(bytes)),
            Ok(None) => (StateFile::default(), None),
            Err(p) => {
                problems.push(p);
                (StateFile::default(), None)
            }
        };
        let history_in_snapshot = file.history.is_some();
        let mut store = Store {
            path: path.to_owned(),
            journal_path: journal_path(path),
            generation: file.generation,
            kept: HashMap::with_capacity(file.connectors.len()),
            history_in_snapshot,
            migrated: None,
            snapshot_bytes,
            journal: None,
            journal_bytes: 0,
            must_compact: false,
        };
        let mut states = States {
            connectors: file.connectors,
            history: file.history.unwrap_or_default(),
        };
        match store.replay(&mut states) {
            Ok(()) => {}
            Err(p) => {
                store.must_compact = true;
                problems.extend(p);
            }
        }
        for (name, state) in &states.connectors {
            store.kept_mut(name).set_record(state.to_record());
        }
        let now = unix_now();
        states.history.retain(|_, h| {
            super::history::tidy(h, now);
            !h.is_empty()
        });
        for (name, history) in &states.history {
            store.kept_mut(name).history = history.clone();
        }
        (states, store, problems)
    }

    /// A store at `path` for `states` and the transitions in `history` (the state file
    /// moved in a reload): the first flush writes it whole.
    pub fn adopt<'a>(
        path: &Path,
        states: &States,
        history: impl IntoIterator<Item = (&'a str, &'a [Transition])>,
    ) -> Store {
        let mut store = Store {
            path: path.to_owned(),
            journal_path: journal_path(path),
            generation: 0,
            kept: HashMap::with_capacity(states.connectors.len()),
            history_in_snapshot: true,
            migrated: None,
            snapshot_bytes: None,
            journal: None,
            journal_bytes: 0,
            must_compact: true,
        };
        for (name, state) in &states.connectors {
            store.kept_mut(name).set_record(state.to_record());
        }
        for (name, h) in history.into_iter().filter(|(_, h)| !h.is_empty()) {
            store.kept_mut(name).history = h.to_vec();
        }
        store
    }

    fn kept_mut(&mut self, name: &str) -> &mut Kept {
        // Looked up before inserting: most calls find the connector, and need no new key.
        if !self.kept.contains_key(name) {
            self.kept.insert(Box::from(name), Kept::default());
        }
        self.kept.get_mut(name).expect("just inserted")
    }

    /// At a clean stop: `batch` (its transitions and removals) and every connector's
    /// record as `states` hold it now, written by a compaction, so the snapshot keeps
    /// `last_probe` and `last_success` too (a journal line is written only for a change a
    /// restart needs). The records are replaced in place, one at a time: no batch holding a
    /// copy of the whole fleet's records.
    pub fn flush_at_stop(
        &mut self,
        batch: Batch,
        states: &BTreeMap<String, ConnectorState>,
    ) -> io::Result<Flushed> {
        let now = unix_now();
        for (name, change) in batch {
            self.apply(&name, change, now);
        }
        for (name, state) in states {
            self.kept_mut(name).set_record(state.to_record());
        }
        let result = self.compact().map(|bytes| Flushed::Compacted { bytes });
        self.settle(result)
    }

    /// Takes one connector's change into what the store keeps: its new record and
    /// transitions, or its removal.
    fn apply(&mut self, name: &str, change: Change, now: i64) {
        let Some(record) = change.record else {
            self.kept.remove(name);
            return;
        };
        let kept = self.kept_mut(name);
        kept.set_record(record);
        if !change.transitions.is_empty() {
            kept.add(change.transitions, now);
        }
    }

    /// After a write: a failed one leaves the changes in what the store keeps, and the next
    /// flush compacts, so they are retried whole, never lost from memory.
    fn settle(&mut self, result: io::Result<Flushed>) -> io::Result<Flushed> {
        if result.is_err() {
            self.must_compact = true;
            self.journal = None;
        }
        result
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next flush rewrites the snapshot, e.g. after dates were corrected at load.
    pub fn compact_soon(&mut self) {
        self.must_compact = true;
    }

    /// Whether the snapshot read at start held the transitions (it was written by a version
    /// that keeps them there), or this store began afresh with them.
    pub fn history_in_snapshot(&self) -> bool {
        self.history_in_snapshot
    }

    /// Takes the transitions of the history file of earlier versions at `old`, read once at
    /// start: they join what the journal held, the next flush compacts (so the snapshot
    /// holds them from then on), and the file is removed once it has.
    pub fn migrate(&mut self, old: PathBuf, history: &BTreeMap<String, Vec<Transition>>) {
        let now = unix_now();
        for (name, transitions) in history {
            self.kept_mut(name).add(transitions.iter().cloned(), now);
        }
        self.history_in_snapshot = true;
        self.migrated = Some(old);
        self.must_compact = true;
    }

    /// Whether the next flush compacts even with nothing new: the journal on disk cannot be
    /// appended to, or a write failed.
    pub fn must_compact(&self) -> bool {
        self.must_compact
    }

    /// Applies `batch` to the records and makes it durable: appended to the journal with one
    /// fsync, or by a compaction when one is due or `compact` asks for it. An error leaves
    /// the batch in the records and the next flush compacts, so a failed write is retried
    /// whole, never lost from memory.
    pub fn flush(&mut self, batch: Batch, compact: bool) -> io::Result<Flushed> {
        if batch.is_empty() && !compact && !self.must_compact {
            return Ok(Flushed::Nothing);
        }
        let mut lines = Vec::new();
        let count = batch.len();
        let now = unix_now();
        for (name, change) in batch {
            append_line(&mut lines, &name, &change);
            self.apply(&name, change, now);
        }
        let due = compact
            || self.must_compact
            || self.snapshot_bytes.is_none()
            || self.journal_bytes + lines.len() as u64 > self.compaction_threshold();
        let result = if due {
            self.compact().map(|bytes| Flushed::Compacted { bytes })
        } else {
            self.append(&lines).map(|()| Flushed::Appended {
                lines: count,
                bytes: lines.len() as u64,
            })
        };
        self.settle(result)
    }

    fn compaction_threshold(&self) -> u64 {
        (2 * self.snapshot_bytes.unwrap_or(0)).clamp(JOURNAL_FLOOR, MAX_BYTES)
    }

    fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.journal.is_none() {
            self.journal = Some(self.start_journal()?);
        }
        let journal = self.journal.as_mut().expect("just opened");
        journal.write_all(lines)?;
        journal.sync_data()?;
        self.journal_bytes += lines.len() as u64;
        Ok(())
    }

    /// An empty journal of the current generation, durably in place, opened for appending
    /// (never through a symbolic link).
    fn start_journal(&mut self) -> io::Result<File> {
        let mut header = serde_json::to_vec(&JournalHeader {
            generation: self.generation,
        })
        .map_err(io::Error::other)?;
        header.push(b'\n');
        crate::files::replace(&self.journal_path, &header, None)?;
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.journal_path)?;
        self.journal_bytes = header.len() as u64;
        Ok(file)
    }

    /// Writes the snapshot of the next generation, then starts its journal. A crash between
    /// the two leaves the old journal, which the next load recognises as older and skips.
    fn compact(&mut self) -> io::Result<u64> {
        self.journal = None;
        let generation = self.generation + 1;
        let bytes = self.render(generation);
        crate::files::replace(&self.path, &bytes, None)?;
        self.generation = generation;
        self.snapshot_bytes = Some(bytes.len() as u64);
        // The snapshot holds the old history file's transitions now: it is never read again.
        if let Some(old) = self.migrated.take() {
            let _ = std::fs::remove_file(old);
        }
        self.journal = Some(self.start_journal()?);
        self.must_compact = false;
        Ok(bytes.len() as u64)
    }

    /// The snapshot: the records in name order (a stable file that diffs well), then the
    /// transitions the same way. `history` is written even when empty: its presence says
    /// the snapshot holds the timeline.
    fn render(&self, generation: u64) -> Vec<u8> {
        let mut kept: Vec<(&str, &Kept)> = self.kept.iter().map(|(n, k)| (&**n, k)).collect();
        kept.sort_unstable_by_key(|(n, _)| *n);
        let size: usize = kept
            .iter()
            .map(|(n, k)| {
                2 * n.len() + k.record.as_ref().map_or(0, |r| r.len()) + 48 * k.history.len() + 16
            })
            .sum();
        let mut out = Vec::with_capacity(size + 64);
        out.extend_from_slice(
            format!("{{\"version\":{VERSION},\"generation\":{generation},\"connectors\":{{")
                .as_bytes(),
        );
        let records = kept
            .iter()
            .filter_map(|(n, k)| Some((*n, k.record.as_deref()?)));
        object_members(&mut out, records, |out, record| {
            out.extend_from_slice(record.as_bytes());
        });
        out.extend_from_slice(b"\n},\n\"history\":{");
        let history = kept
            .iter()
            .filter(|(_, k)| !k.history.is_empty())
            .map(|(n, k)| (*n, k.history.as_slice()));
        object_members(&mut out, history, |out, history| {
            serde_json::to_writer(out, history).expect("transitions serialise");
        });
        out.extend_from_slice(b"\n}}\n");
        out
    }

    /// Replays the journal onto `states`. `Err` when it must be replaced before anything is
    /// appended (with the problems worth a warning, possibly none).
    fn replay(&mut self, states: &mut States) -> Result<(), Vec<LoadProblem>> {
        let bytes = match crate::files::read_bounded(&self.journal_path, MAX_JOURNAL_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(vec![LoadProblem::Unreadable {
                    path: self.journal_path.clone(),
                    source,
                }]);
            }
        };
        let mut lines = bytes.split_inclusive(|&b| b == b'\n');
        let header = lines
            .next()
            .and_then(|l| serde_json::from_slice::<JournalHeader>(l).ok());
        if header.is_none_or(|h| h.generation != self.generation) {
            // Left over from an interrupted compaction (or not ours): already in the snapshot.
            return Err(Vec::new());
        }
        let mut damaged = 0;
        let mut torn = false;
        for line in lines {
            let complete = line.ends_with(b"\n");
            match serde_json::from_slice::<JournalLine>(line) {
                Ok(JournalLine {
                    connector,
                    state,
                    transitions,
                }) if complete => match state {
                    Some(s) => {
                        if !transitions.is_empty() {
                            let history = states.history.entry(connector.clone()).or_default();
                            for t in transitions {
                                add_transition(history, t);
                            }
                        }
                        states.connectors.insert(connector, s);
                    }
                    None => {
                        states.connectors.remove(&connector);
                        states.history.remove(&connector);
                    }
                },
                // The last line without its newline: a crash mid-append, before the fsync
                // that would have acknowledged it.
                _ if !complete => torn = true,
                _ => damaged += 1,
            }
        }
        self.journal_bytes = bytes.len() as u64;
        match (damaged, torn) {
            (0, false) => Ok(()),
            (0, true) => Err(Vec::new()),
            (lines, _) => Err(vec![LoadProblem::JournalDamaged {
                path: self.journal_path.clone(),
                lines,
            }]),
        }
    }
}

/// The members of a JSON object, one a line, in the order given: `"name":value,…`.
fn object_members<'a, V>(
    out: &mut Vec<u8>,
    members: impl Iterator<Item = (&'a str, V)>,
    value: impl Fn(&mut Vec<u8>, V),
) {
    for (i, (name, v)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"\n");
        out.extend_from_slice(json_string(name).as_bytes());
        out.push(b':');
        value(out, v);
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn append_line(out: &mut Vec<u8>, name: &str, change: &Change) {
    out.extend_from_slice(b"{\"connector\":");
    out.extend_from_slice(json_string(name).as_bytes());
    out.extend_from_slice(b",\"state\":");
    out.extend_from_slice(change.record.as_deref().unwrap_or("null").as_bytes());
    if change.record.is_some() && !change.transitions.is_empty() {
        out.extend_from_slice(b",\"transitions\":");
        serde_json::to_writer(&mut *out, &change.transitions).expect("transitions serialise");
    }
    out.extend_from_slice(b"}\n");
}

/// The snapshot and its size; `None` when there is none.
fn read_snapshot(path: &Path) -> Result<Option<(StateFile, u64)>, LoadProblem> {
    let bytes = match crate::files::read_bounded(path, MAX_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            return Err(set_aside(path, e.to_string()));
        }
        Err(source) => {
            return Err(LoadProblem::Unreadable {
                path: path.to_owned(),
                source,
            });
        }
    };
    let reason = match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(file) if file.version == VERSION => return Ok(Some((file, bytes.len() as u64))),
        Ok(file) => format!("unknown format version {}", file.version),
        Err(e) => e.to_string(),
    };
    Err(set_aside(path, reason))
}

/// Moves a file that cannot be used to `NAME.corrupt-UNIXTIME` beside it, for inspection.
fn set_aside(path: &Path, reason: String) -> LoadProblem {
    let mut kept = path.as_os_str().to_owned();
    kept.push(format!(
        ".corrupt-{}",
        OffsetDateTime::now_utc().unix_timestamp()
    ));
    let kept = PathBuf::from(kept);
    let kept = match std::fs::rename(path, &kept) {
        Ok(()) => kept,
        Err(_) => path.to_owned(),
    };
    LoadProblem::Corrupted {
        path: path.to_owned(),
        reason,
        kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `states` as a snapshot of its own (and no journal), through a store.
    fn save(states: &States, path: &Path) {
        let mut store = Store::adopt(path, states, []);
        store.flush(Batch::new(), true).unwrap();
    }

    fn failing(since: i64, code: &str) -> ConnectorState {
        ConnectorState {
            status: Some(Status::Failing),
            code: Some(code.into()),
            failing_since: Some(OffsetDateTime::from_unix_timestamp(since).unwrap()),
            ..Default::default()
        }
    }

    fn one(name: &str, state: &ConnectorState) -> Batch {
        Batch::from([(name.to_owned(), Change::record(state.to_record()))])
    }

    #[test]
    fn changes_go_to_the_journal_and_a_restart_replays_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, problems) = Store::open(&path);
        assert!(problems.is_empty());
        let a = failing(1_700_000_000, "450 4.4.316");
        // The first write makes the snapshot (there is none yet); later ones append.
        assert!(matches!(
            store.flush(one("a", &a), false).unwrap(),
            Flushed::Compacted { .. }
        ));
        let snapshot = std::fs::read(&path).unwrap();
        let mut b = failing(1_700_000_100, "450 4.7.320");
        b.raised.queue_alert = true;
        b.certificates_warned.insert("127.0.0.1:25|2030".into());
        assert!(matches!(
            store.flush(one("b", &b), false).unwrap(),
            Flushed::Appended { lines: 1, .. }
        ));
        let mut a2 = a.clone();
        a2.raised.ndr_imminent = true;
        store.flush(one("a", &a2), false).unwrap();
        assert_eq!(store.flush(Batch::new(), false).unwrap(), Flushed::Nothing);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            snapshot,
            "appends leave the snapshot alone"
        );

        // A restart (or kill -9 after these flushes): failing_since and the raised flags.
        let (back, _, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.connectors["a"], a2);
        assert_eq!(back.connectors["b"], b);

        let removed = Batch::from([("a".to_owned(), Change::removed())]);
        store.flush(removed, false).unwrap();
        let (back, _, _) = Store::open(&path);
        assert_eq!(back.connectors.keys().collect::<Vec<_>>(), ["b"]);
    }

    fn tr(at: i64, status: Status, code: Option<&str>) -> Transition {
        Transition {
            at,
            status,
            code: code.map(Box::from),
        }
    }

    fn with(state: &ConnectorState, transitions: Vec<Transition>) -> Change {
        Change {
            record: Some(state.to_record()),
            transitions,
        }
    }

    #[test]
    fn a_clean_stop_writes_the_live_records_the_batch_transitions_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, _) = Store::open(&path);
        let now = unix_now();
        let at = |t: i64| Some(OffsetDateTime::from_unix_timestamp(t).unwrap());
        let ok = |probe: i64| ConnectorState {
            status: Some(Status::Ok),
            last_success: at(probe),
            last_probe: at(probe),
            ..Default::default()
        };
        let first = tr(now - 300, Status::Ok, None);
        store
            .flush(
                Batch::from([
                    ("a".into(), with(&ok(now - 300), vec![first.clone()])),
                    ("gone".into(), with(&ok(now - 300), Vec::new())),
                ]),
                false,
            )
            .unwrap();
        // Waiting at the stop: a's transition to failing, and gone's removal. The live
        // states are newer than the batch's record (probes that changed nothing durable).
        let down = failing(now - 100, "450 4.4.316");
        let second = tr(now - 100, Status::Failing, Some("450 4.4.316"));
        let batch = Batch::from([
            ("a".into(), with(&down, vec![second.clone()])),
            ("gone".into(), Change::removed()),
        ]);
        let live_a = ConnectorState {
            last_probe: at(now - 5),
            ..down.clone()
        };
        let live = BTreeMap::from([
            ("a".to_owned(), live_a.clone()),
            ("b".to_owned(), ok(now - 2)),
        ]);
        let written = store.flush_at_stop(batch, &live).unwrap();
        assert!(matches!(written, Flushed::Compacted { .. }), "{written:?}");
        let journal = std::fs::read_to_string(journal_path(&path)).unwrap();
        assert_eq!(journal.lines().count(), 1, "the header alone: {journal}");
        let (back, _, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            back.connectors, live,
            "the live records, the removed one gone"
        );
        assert_eq!(back.history["a"], [first, second]);
        assert!(!back.history.contains_key("gone"));
    }

    #[test]
    fn transitions_survive_a_kill_after_their_flush_and_a_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, _) = Store::open(&path);
        let now = unix_now();
        let ok = ConnectorState {
            status: Some(Status::Ok),
            ..Default::default()
        };
        let down = failing(now - 100, "450 4.4.316");
        let first = tr(now - 200, Status::Ok, None);
        let second = tr(now - 100, Status::Failing, Some("450 4.4.316"));
        store
            .flush(
                Batch::from([("a".into(), with(&ok, vec![first.clone()]))]),
                false,
            )
            .unwrap();
        let appended = store
            .flush(
                Batch::from([("a".into(), with(&down, vec![second.clone()]))]),
                false,
            )
            .unwrap();
        assert!(matches!(appended, Flushed::Appended { lines: 1, .. }));
        let journal = std::fs::read_to_string(journal_path(&path)).unwrap();
        assert!(
            journal
                .lines()
                .last()
                .unwrap()
                .contains(r#""transitions":[{"at":"#),
            "the transition rides on the connector's line: {journal}"
        );
        // A probe that makes no transition (its state changed otherwise) keeps the timeline.
        let mut raised = down.clone();
        raised.raised.queue_alert = true;
        store.flush(one("a", &raised), false).unwrap();

        // kill -9 now: the snapshot has the first, the journal the second.
        let (back, _, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.history["a"], [first.clone(), second.clone()]);
        assert_eq!(back.connectors["a"], raised);

        // A compaction writes them into the snapshot, and the journal starts empty.
        store.flush(Batch::new(), true).unwrap();
        let snapshot: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            snapshot["history"]["a"][1]["code"], "450 4.4.316",
            "{snapshot}"
        );
        let (back, mut store, _) = Store::open(&path);
        assert!(store.history_in_snapshot());
        assert_eq!(back.history["a"], [first, second]);

        // A removed connector's transitions go with its record.
        store
            .flush(Batch::from([("a".into(), Change::removed())]), false)
            .unwrap();
        let (back, mut store, _) = Store::open(&path);
        assert!(back.history.is_empty() && back.connectors.is_empty());
        store.flush(Batch::new(), true).unwrap();
        let snapshot = std::fs::read_to_string(&path).unwrap();
        assert!(!snapshot.contains("4.4.316"), "{snapshot}");
    }

    #[test]
    fn a_transition_is_kept_once_and_in_order() {
        let mut h = vec![tr(10, Status::Ok, None), tr(20, Status::Failing, None)];
        add_transition(&mut h, tr(20, Status::Failing, None));
        add_transition(&mut h, tr(10, Status::Ok, None));
        assert_eq!(h.len(), 2, "seen already: {h:?}");
        add_transition(&mut h, tr(15, Status::Warning, None));
        add_transition(&mut h, tr(30, Status::Ok, None));
        let at: Vec<i64> = h.iter().map(|t| t.at).collect();
        assert_eq!(at, [10, 15, 20, 30]);

        // A moved state file adopts the board's timeline while the same transition still
        // waits in the batch: the snapshot has it once.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moved.json");
        let now = unix_now();
        let t = tr(now - 5, Status::Failing, Some("450 4.4.316"));
        let mut states = States::default();
        let state = failing(now - 5, "450 4.4.316");
        states.connectors.insert("a".into(), state.clone());
        let board = [t.clone()];
        let mut store = Store::adopt(&path, &states, [("a", &board[..])]);
        store
            .flush(
                Batch::from([("a".into(), with(&state, vec![t.clone()]))]),
                false,
            )
            .unwrap();
        let (back, _, _) = Store::open(&path);
        assert_eq!(back.history["a"], [t]);
    }

    #[test]
    fn a_torn_line_with_a_transition_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, _) = Store::open(&path);
        let now = unix_now();
        let a = failing(now - 50, "450 4.4.316");
        let kept = tr(now - 50, Status::Failing, Some("450 4.4.316"));
        store
            .flush(
                Batch::from([("a".into(), with(&a, vec![kept.clone()]))]),
                false,
            )
            .unwrap();
        let ok = ConnectorState {
            status: Some(Status::Ok),
            ..Default::default()
        };
        store
            .flush(
                Batch::from([("a".into(), with(&ok, vec![tr(now - 10, Status::Ok, None)]))]),
                false,
            )
            .unwrap();
        drop(store);
        // The second line, torn inside its transition before the fsync.
        let journal = journal_path(&path);
        let text = std::fs::read(&journal).unwrap();
        let cut = text.len() - 12;
        std::fs::write(&journal, &text[..cut]).unwrap();
        let (back, mut store, problems) = Store::open(&path);
        assert!(problems.is_empty(), "a torn tail is expected: {problems:?}");
        assert_eq!(back.connectors["a"], a, "the torn line's state is not used");
        assert_eq!(
            back.history["a"],
            std::slice::from_ref(&kept),
            "nor its transition"
        );
        assert!(
            matches!(
                store.flush(Batch::new(), false).unwrap(),
                Flushed::Compacted { .. }
            ),
            "nothing is appended after the torn line"
        );
        let (back, _, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.history["a"], [kept]);
    }

    #[test]
    fn the_history_file_of_earlier_versions_moves_into_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let now = unix_now();
        // As the last version left them: a snapshot without history, the file beside it.
        std::fs::write(
            &path,
            br#"{"version":1,"generation":3,"connectors":{"a":{"status":"ok"},"b":{"status":"ok"}}}"#,
        )
        .unwrap();
        let old = crate::daemon::history::path_for(&path);
        std::fs::write(
            &old,
            format!(
                r#"{{"version":1,"connectors":{{"a":[{{"at":{},"status":"failing","code":"450 4.4.316"}},{{"at":{},"status":"ok"}}]}}}}"#,
                now - 600,
                now - 300
            ),
        )
        .unwrap();
        let (mut states, mut store, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!store.history_in_snapshot());
        crate::daemon::history::migrate(&mut store, &mut states.history);
        let want = [
            tr(now - 600, Status::Failing, Some("450 4.4.316")),
            tr(now - 300, Status::Ok, None),
        ];
        assert_eq!(states.history["a"], want, "the board starts from it");
        assert!(store.must_compact(), "the next flush writes the snapshot");
        assert!(old.exists(), "kept until the snapshot holds it");
        assert!(matches!(
            store.flush(Batch::new(), false).unwrap(),
            Flushed::Compacted { .. }
        ));
        assert!(!old.exists(), "removed once the snapshot holds it");
        let (mut back, mut store, _) = Store::open(&path);
        assert!(store.history_in_snapshot());
        assert_eq!(back.history["a"], want);
        assert_eq!(back.connectors.len(), 2);
        // Once migrated, a file that reappears is not read again.
        std::fs::write(
            &old,
            br#"{"version":1,"connectors":{"b":[{"at":1,"status":"ok"}]}}"#,
        )
        .unwrap();
        crate::daemon::history::migrate(&mut store, &mut back.history);
        assert!(!back.history.contains_key("b"));
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_the_next_flush_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, _) = Store::open(&path);
        let a = failing(1_700_000_000, "450 4.4.316");
        store.flush(one("a", &a), false).unwrap();
        let b = failing(1_700_000_100, "450 4.4.317");
        store.flush(one("b", &b), false).unwrap();
        drop(store);
        // A crash in the middle of appending c's line, before its fsync.
        let journal = journal_path(&path);
        let mut text = std::fs::read(&journal).unwrap();
        text.extend_from_slice(br#"{"connector":"c","state":{"status":"fai"#);
        std::fs::write(&journal, &text).unwrap();

        let (back, mut store, problems) = Store::open(&path);
        assert!(problems.is_empty(), "a torn tail is expected: {problems:?}");
        assert_eq!(back.connectors.len(), 2);
        assert_eq!(back.connectors["b"], b);
        // Nothing is appended after the torn line: the next flush starts afresh.
        let c = failing(1_700_000_200, "450 4.4.316");
        assert!(matches!(
            store.flush(one("c", &c), false).unwrap(),
            Flushed::Compacted { .. }
        ));
        let (back, _, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.connectors.len(), 3);
        assert_eq!(back.connectors["c"], c);
    }

    #[test]
    fn a_damaged_line_is_skipped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, _) = Store::open(&path);
        store
            .flush(one("a", &failing(1, "450 4.4.316")), false)
            .unwrap();
        store
            .flush(one("b", &failing(2, "450 4.4.316")), false)
            .unwrap();
        drop(store);
        let journal = journal_path(&path);
        let text = std::fs::read_to_string(&journal).unwrap();
        let text = text.replace("\"connector\":\"b\"", "\"connector\":\u{0}");
        std::fs::write(
            &journal,
            format!("{text}{{\"connector\":\"c\",\"state\":null}}\n"),
        )
        .unwrap();
        let (back, _, problems) = Store::open(&path);
        assert!(
            matches!(problems[..], [LoadProblem::JournalDamaged { lines: 1, .. }]),
            "{problems:?}"
        );
        assert_eq!(back.connectors.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn a_long_journal_is_compacted_into_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, _) = Store::open(&path);
        let mut flushes = Vec::new();
        // 50 connectors flapping: each change a line, until the journal passes its floor.
        for i in 0..400 {
            let batch = (0..50)
                .map(|c| {
                    let mut s = failing(1_700_000_000 + i, "450 4.4.316");
                    s.eop_status = Some(format!("450 4.4.316 Connection refused, change {i}"));
                    (format!("flappy-{c}"), Change::record(s.to_record()))
                })
                .collect();
            flushes.push(store.flush(batch, false).unwrap());
        }
        let compactions = flushes
            .iter()
            .filter(|f| matches!(f, Flushed::Compacted { .. }))
            .count();
        // The first write, and one each time the journal outgrows its floor (1 MiB of
        // lines of about 170 bytes: every 6,000 or so of the 20,000).
        assert!((2..=4).contains(&compactions), "{compactions} compactions");
        let journal = std::fs::metadata(journal_path(&path)).unwrap().len();
        assert!(journal <= JOURNAL_FLOOR, "{journal}");
        let (back, _, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            back.connectors["flappy-49"].failing_since,
            Some(OffsetDateTime::from_unix_timestamp(1_700_000_399).unwrap())
        );
    }

    #[test]
    fn a_compaction_interrupted_before_the_new_journal_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut store, _) = Store::open(&path);
        let old = failing(1, "450 4.4.316");
        store.flush(one("a", &old), false).unwrap();
        store
            .flush(one("a", &failing(2, "450 4.4.316")), false)
            .unwrap();
        let stale_journal = std::fs::read(journal_path(&path)).unwrap();
        let newest = failing(3, "450 4.7.320");
        store.flush(one("a", &newest), true).unwrap();
        // As if the crash came after the snapshot's rename, before the journal's: the old
        // journal's lines are older than the snapshot and must not be replayed over it.
        std::fs::write(journal_path(&path), stale_journal).unwrap();
        let (back, mut store, problems) = Store::open(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.connectors["a"], newest);
        assert!(
            matches!(
                store.flush(Batch::new(), false).unwrap(),
                Flushed::Compacted { .. }
            ),
            "the stale journal is replaced before anything is appended"
        );
    }

    #[test]
    fn a_file_from_before_the_journal_still_loads() {
        let text = br#"{"version": 1, "connectors": {"c": {"status": "failing",
            "code": "450 4.4.316", "eop_status": null, "failing_since": "2023-11-14T22:13:20Z",
            "last_success": null, "last_probe": null,
            "raised": {"queue_alert": true, "ndr_imminent": false, "ndr_expected": false},
            "certificates_warned": []}}}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, text).unwrap();
        let (s, problem) = States::load(&path);
        assert!(problem.is_none(), "{problem:?}");
        let mut want = failing(1_700_000_000, "450 4.4.316");
        want.raised.queue_alert = true;
        assert_eq!(s.connectors["c"], want);
    }

    #[test]
    fn only_durable_fields_count_as_a_change() {
        let a = failing(1, "450 4.4.316");
        let mut b = a.clone();
        b.last_probe = Some(OffsetDateTime::from_unix_timestamp(5).unwrap());
        b.last_success = Some(OffsetDateTime::from_unix_timestamp(4).unwrap());
        assert!(!a.differs_durably(&b));
        b.raised.ndr_expected = true;
        assert!(a.differs_durably(&b));
        let mut c = a.clone();
        c.certificates_warned.insert("x".into());
        assert!(a.differs_durably(&c));
    }

    #[test]
    fn round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");

        let (s, problem) = States::load(&path);
        assert!(
            s.connectors.is_empty() && problem.is_none(),
            "missing file: fresh, quietly"
        );

        let mut s = States::default();
        let since = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        s.connectors.insert(
            "contoso".into(),
            ConnectorState {
                status: Some(Status::Failing),
                code: Some("450 4.4.316".into()),
                failing_since: Some(since),
                ..Default::default()
            },
        );
        save(&s, &path);
        let (back, problem) = States::load(&path);
        assert!(problem.is_none());
        assert_eq!(back.connectors, s.connectors);

        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let (fresh, problem) = States::load(&path);
        assert!(fresh.connectors.is_empty());
        let Some(LoadProblem::Corrupted { kept, .. }) = problem else {
            panic!("truncated file is reported as corrupted")
        };
        assert!(kept.exists(), "the corrupted file is kept for inspection");
        let kept_name = kept.file_name().unwrap().to_str().unwrap();
        assert!(
            kept_name.starts_with("state.json.corrupt-"),
            "named as the README says: {kept_name}"
        );
        assert!(!path.exists());

        std::fs::write(&path, b"\x00\xffnot json").unwrap();
        assert!(matches!(
            States::load(&path).1,
            Some(LoadProblem::Corrupted { .. })
        ));
        std::fs::write(&path, br#"{"version": 99, "connectors": {}}"#).unwrap();
        assert!(matches!(
            States::load(&path).1,
            Some(LoadProblem::Corrupted { .. })
        ));
    }

    #[test]
    fn oversized_files_and_devices_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_BYTES + 1).unwrap();
        let (s, problem) = States::load(&path);
        assert!(s.connectors.is_empty());
        assert!(
            matches!(problem, Some(LoadProblem::Corrupted { .. })),
            "{problem:?}"
        );
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let (_, problem) = States::load(&path);
        assert!(
            matches!(problem, Some(LoadProblem::Unreadable { .. })),
            "{problem:?}"
        );
    }

    #[test]
    fn dates_from_the_future_are_brought_to_the_present() {
        let text = br#"{"version": 1, "connectors": {"c": {"status": "failing",
            "code": "450 4.4.316", "failing_since": "9999-12-31T23:59:59Z",
            "last_probe": "2020-01-01T00:00:00Z"}}}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, text).unwrap();
        let (mut s, problem) = States::load(&path);
        assert!(problem.is_none(), "{problem:?}");
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let said = s.clamp_future_dates(now);
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].0, "c");
        assert!(
            said[0].1.contains("c: failing_since 9999-12-31"),
            "{said:?}"
        );
        let c = &s.connectors["c"];
        assert_eq!(c.failing_since, Some(now));
        assert_eq!(
            c.last_probe,
            Some(OffsetDateTime::from_unix_timestamp(1_577_836_800).unwrap())
        );
    }
}
