//! The schedule: one task per connector, each on its own interval.
//!
//! A connector's task probes, waits for its next slot, and probes again, so one connector is
//! never probed twice at once. First runs are spread across the interval (by a hash of the
//! name, so a restart keeps each connector's phase) to avoid a thundering herd. Global
//! [`Limits`](crate::limits::Limits) bound the probes in flight, and a probe waiting on a dead
//! server makes way for the others; every probe is itself bounded by its timeouts, so a
//! connector whose servers hang delays only itself. A task that panics anyway is logged and
//! restarted (see [`supervise`]), and `/healthz` fails until its connector probes again.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Shared;
use super::health::Faults;
use crate::config::Connector;
use crate::probe::probe_connector_in;

/// What a reload changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    /// Each connector once, shared with its task: at 100,000 connectors a copy per holder
    /// (the map, the task, its restarts) was a few hundred bytes each, times three.
    tasks: HashMap<String, (Arc<Connector>, JoinHandle<()>)>,
    stop: watch::Sender<bool>,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Scheduler {
        Scheduler {
            shared,
            tasks: HashMap::new(),
            stop: watch::channel(false).0,
        }
    }

    /// Makes the running tasks match `connectors`: new ones start, changed ones restart with
    /// their new settings, removed ones stop (an in-flight probe of theirs is abandoned).
    /// The scheduler keeps the connectors: the daemon holds no other copy.
    pub fn apply(&mut self, connectors: Vec<Connector>) -> (Changes, Vec<String>) {
        let mut changes = Changes::default();
        let mut removed = Vec::new();
        let wanted: HashSet<&str> = connectors.iter().map(|c| c.name.as_str()).collect();
        self.tasks.retain(|name, (_, handle)| {
            let keep = wanted.contains(name.as_str());
            if !keep {
                handle.abort();
                changes.removed += 1;
                removed.push(name.clone());
            }
            keep
        });
        drop(wanted);
        for c in connectors {
            match self.tasks.get(&c.name) {
                Some((running, _)) if **running == c => continue,
                Some(_) => changes.changed += 1,
                None => changes.added += 1,
            }
            let c = Arc::new(c);
            let (shared, connector, stop) = (self.shared.clone(), c.clone(), self.stop.subscribe());
            let handle = tokio::spawn(async move {
                let faults = &shared.faults;
                supervise(&connector.name, faults, stop.clone(), || {
                    run_connector(shared.clone(), connector.clone(), stop.clone())
                })
                .await
            });
            if let Some((_, old)) = self.tasks.insert(c.name.clone(), (c, handle)) {
                old.abort();
            }
        }
        (changes, removed)
    }

    /// Stops scheduling, lets in-flight probes finish for up to `grace`, then abandons them.
    pub async fn shutdown(self, grace: Duration) -> usize {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + grace;
        let mut abandoned = 0;
        for (_, (_, mut handle)) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
                abandoned += 1;
            }
        }
        abandoned
    }
}

/// Where in its interval a connector's first run falls: a stable fraction of the interval
/// taken from its name (FNV-1a), so connectors spread out evenly and keep their phase.
pub fn first_run_offset(name: &str, interval: Duration) -> Duration {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    interval.mul_f64((hash % 10_000) as f64 / 10_000.0)
}

/// How long a panicked task waits before it runs again, so a panic on every probe cannot
/// spin.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Runs `task` again whenever it panics, until it returns or `stop` is set. Each panic is
/// logged and marks `name` as a fault in `faults`; the task clears it when it recovers.
pub async fn supervise<F, Fut>(
    name: &str,
    faults: &Faults,
    mut stop: watch::Receiver<bool>,
    mut task: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let Err(panic) = AssertUnwindSafe(task()).catch_unwind().await else {
            return;
        };
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        faults.crashed(name);
        tracing::error!(
            event = "task_panicked",
            connector = name,
            error = why,
            "the task of {name} panicked ({why}); restarting it"
        );
        tokio::select! {
            _ = tokio::time::sleep(RESTART_AFTER) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn run_connector(
    shared: Arc<Shared>,
    connector: Arc<Connector>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = connector.settings.interval;
    let mut next = crate::clock::deadline(first_run_offset(&connector.name, interval));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        let (ctx, limits) = shared.probe_resources();
        let place = tokio::select! {
            p = limits.acquire() => p,
            _ = stop.changed() => return,
        };
        let started = Instant::now();
        // Once started, a probe runs to its end (bounded by its timeouts), even during
        // shutdown: `Scheduler::shutdown` waits for it, up to its grace period.
        // Boxed: a task spends its life asleep, and the probe's state machine, inline, would
        // make each of 100,000 sleeping tasks as large as a running probe.
        let verdict = Box::pin(probe_connector_in(&ctx, &connector, &place)).await;
        drop(place);
        shared.record(&connector, verdict);
        // A probe that overran its interval is followed at once by the next, not by a burst
        // of the missed ones.
        next = started
            .checked_add(interval)
            .unwrap_or_else(|| crate::clock::deadline(interval))
            .max(Instant::now());
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_a_fault_until_it_recovers() {
        let faults = Faults::default();
        let runs = AtomicUsize::new(0);
        let (stop, stopped) = watch::channel(false);
        let watched = async {
            // The task is restarted after RESTART_AFTER; by then the fault is visible.
            tokio::time::sleep(RESTART_AFTER / 2).await;
            let problem = faults.problem().expect("unhealthy after the panic");
            assert!(problem.contains("contoso"), "{problem}");
        };
        let supervised = supervise("contoso", &faults, stopped, || {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            let faults = &faults;
            async move {
                if n == 0 {
                    panic!("overflow when adding durations");
                }
                faults.recovered("contoso");
            }
        });
        tokio::join!(supervised, watched);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "restarted once, then returned"
        );
        assert_eq!(faults.problem(), None, "healthy once it recovered");
        drop(stop);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_restarts() {
        let faults = Faults::default();
        let (stop, stopped) = watch::channel(false);
        let runs = AtomicUsize::new(0);
        let supervised = supervise("c", &faults, stopped, || {
            runs.fetch_add(1, Ordering::SeqCst);
            async { panic!("always") }
        });
        let stopper = async {
            tokio::time::sleep(RESTART_AFTER * 3 + RESTART_AFTER / 2).await;
            let _ = stop.send(true);
        };
        tokio::join!(supervised, stopper);
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn first_runs_spread_over_the_interval() {
        let interval = Duration::from_secs(300);
        let mut buckets = [0usize; 10];
        for i in 0..1000 {
            let offset = first_run_offset(&format!("connector-{i}"), interval);
            assert!(offset < interval);
            buckets[(offset.as_secs() / 30) as usize] += 1;
        }
        for (i, n) in buckets.iter().enumerate() {
            assert!(
                (50..=150).contains(n),
                "bucket {i} holds {n} of 1000: {buckets:?}"
            );
        }
        assert_eq!(
            first_run_offset("contoso", interval),
            first_run_offset("contoso", interval),
            "stable across restarts"
        );
    }
}
