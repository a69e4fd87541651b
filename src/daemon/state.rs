//! What the daemon remembers per connector, and how it survives a restart.
//!
//! The file is JSON, written atomically through [`crate::files::replace`] (a fresh temporary
//! file, fsync, rename, fsync of the directory), so a crash mid-write leaves the previous
//! version. A missing file is a fresh start; an unreadable, oversized or corrupted one is a
//! logged warning, kept aside for inspection, and a fresh start: never a crash. Dates in the
//! future are brought back to the present (see [`States::clamp_future_dates`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::verdict::Status;

/// Bumped when the format changes incompatibly; an unknown version is a fresh start.
const VERSION: u32 = 1;
/// The largest state file read. A connector's state is well under 1 KiB, so this holds
/// tens of thousands of connectors; anything larger is not a state file.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The alerts already raised in the current failing episode, so each fires once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raised {
    pub queue_alert: bool,
    pub ndr_imminent: bool,
    pub ndr_expected: bool,
}

/// One connector's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorState {
    /// `None` until the first probe.
    pub status: Option<Status>,
    pub code: Option<String>,
    pub eop_status: Option<String>,
    /// When the current failing episode began: the start of EOP's queueing, and of the NDR
    /// countdown.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub failing_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_success: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_probe: Option<OffsetDateTime>,
    #[serde(default)]
    pub raised: Raised,
    /// `target|not_after` of certificates already reported as expiring.
    #[serde(default)]
    pub certificates_warned: BTreeSet<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    connectors: BTreeMap<String, ConnectorState>,
}

/// Why the state file was not used at start.
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
}

/// All connectors' states.
#[derive(Debug, Default)]
pub struct States {
    pub connectors: BTreeMap<String, ConnectorState>,
}

impl States {
    /// Loads `path`. A missing file is an empty state without a problem; anything else that
    /// prevents using the file is an empty state and a problem to log.
    pub fn load(path: &Path) -> (States, Option<LoadProblem>) {
        let bytes = match crate::files::read_bounded(path, MAX_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (States::default(), None),
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                return (States::default(), Some(set_aside(path, e.to_string())));
            }
            Err(source) => {
                let problem = LoadProblem::Unreadable {
                    path: path.to_owned(),
                    source,
                };
                return (States::default(), Some(problem));
            }
        };
        let reason = match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(file) if file.version == VERSION => {
                return (
                    States {
                        connectors: file.connectors,
                    },
                    None,
                );
            }
            Ok(file) => format!("unknown format version {}", file.version),
            Err(e) => e.to_string(),
        };
        (States::default(), Some(set_aside(path, reason)))
    }

    /// The file's contents, made while the caller holds the state briefly; the slow part,
    /// writing them, is [`save_bytes`].
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            version: u32,
            connectors: &'a BTreeMap<String, ConnectorState>,
        }
        let file = Borrowed {
            version: VERSION,
            connectors: &self.connectors,
        };
        serde_json::to_vec_pretty(&file).map_err(io::Error::other)
    }

    /// Writes the state atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        save_bytes(path, &self.to_bytes()?)
    }

    /// Brings dates later than `now` back to `now`, and says which. A date from the future
    /// comes from a clock that was wrong, or from a file someone wrote: kept, a
    /// `failing_since` of 9999-12-31 would postpone every alert forever.
    pub fn clamp_future_dates(&mut self, now: OffsetDateTime) -> Vec<String> {
        let mut clamped = Vec::new();
        for (name, state) in &mut self.connectors {
            for (field, date) in [
                ("failing_since", &mut state.failing_since),
                ("last_success", &mut state.last_success),
                ("last_probe", &mut state.last_probe),
            ] {
                if let Some(d) = date.filter(|d| *d > now) {
                    clamped.push(format!(
                        "{name}: {field} {} is in the future; using the present instead",
                        crate::daemon::events::rfc3339(d)
                    ));
                    *date = Some(now);
                }
            }
        }
        clamped
    }

    /// Forgets connectors that are no longer configured.
    pub fn retain(&mut self, names: &BTreeSet<&str>) {
        self.connectors
            .retain(|name, _| names.contains(name.as_str()));
    }
}

/// Writes a state file's bytes atomically.
pub fn save_bytes(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::files::replace(path, bytes, None)
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
        s.save(&path).unwrap();
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
        assert!(said[0].contains("c: failing_since 9999-12-31"), "{said:?}");
        let c = &s.connectors["c"];
        assert_eq!(c.failing_since, Some(now));
        assert_eq!(
            c.last_probe,
            Some(OffsetDateTime::from_unix_timestamp(1_577_836_800).unwrap())
        );
    }
}
