//! What the daemon remembers per connector, and how it survives a restart.
//!
//! The file is JSON, written atomically (a temporary file, fsync, rename, fsync of the
//! directory), so a crash mid-write leaves the previous version. A missing file is a fresh
//! start; an unreadable or corrupted one is a logged warning, kept aside for inspection, and a
//! fresh start: never a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::verdict::Status;

/// Bumped when the format changes incompatibly; an unknown version is a fresh start.
const VERSION: u32 = 1;

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
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (States::default(), None),
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
        let kept = path.with_extension(format!(
            "corrupt-{}",
            OffsetDateTime::now_utc().unix_timestamp()
        ));
        let kept = match std::fs::rename(path, &kept) {
            Ok(()) => kept,
            Err(_) => path.to_owned(),
        };
        let problem = LoadProblem::Corrupted {
            path: path.to_owned(),
            reason,
            kept,
        };
        (States::default(), Some(problem))
    }

    /// Writes the state atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let file = StateFile {
            version: VERSION,
            connectors: self.connectors.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("state.json")
        ));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Forgets connectors that are no longer configured.
    pub fn retain(&mut self, names: &BTreeSet<&str>) {
        self.connectors
            .retain(|name, _| names.contains(name.as_str()));
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
}
