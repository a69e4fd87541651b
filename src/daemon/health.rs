//! What makes the daemon unhealthy besides a stuck main loop, for `/healthz`: a connector
//! whose task panicked and has not completed a probe since its restart, and a lost stdout.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The daemon's locks are taken through these: a panic while one was held must not turn
/// every later use into a panic too. Each critical section is a few plain assignments, so
/// the data is whole even after a panic (and the panic itself is logged by the supervisor).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
pub struct Faults {
    crashed: Mutex<BTreeSet<String>>,
}

impl Faults {
    /// A connector's task panicked; it stays a fault until the connector's next probe.
    pub fn crashed(&self, connector: &str) {
        lock(&self.crashed).insert(connector.to_owned());
    }

    /// A connector completed a probe.
    pub fn recovered(&self, connector: &str) {
        let mut crashed = lock(&self.crashed);
        if !crashed.is_empty() {
            crashed.remove(connector);
        }
    }

    /// A connector is no longer configured.
    pub fn forget(&self, connector: &str) {
        self.recovered(connector);
    }

    /// Why the daemon is unhealthy, if it is.
    pub fn problem(&self) -> Option<String> {
        let crashed = lock(&self.crashed);
        if !crashed.is_empty() {
            let names: Vec<&str> = crashed.iter().map(String::as_str).collect();
            return Some(format!(
                "the task of {} panicked and was restarted; no probe has completed since",
                names.join(", ")
            ));
        }
        drop(crashed);
        crate::output::stdout_lost()
            .then(|| "standard output is closed: log lines and events are being lost".to_owned())
    }
}
