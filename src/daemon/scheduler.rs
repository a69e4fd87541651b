//! The schedule: one timer queue for every connector, and a task only while a probe runs.
//!
//! Each connector has its next due time in one queue (a binary heap); a driver task sleeps
//! until the earliest, and starts a task for each connector that is due. The task probes,
//! records the verdict and puts the connector back in the queue for `started + interval`, so
//! one connector is never probed twice at once, and a probe that overran its interval is
//! followed at once by the next, not by a burst of the missed ones. An earlier design had a
//! task per connector asleep between its probes: at 100,000 connectors that was 77 MB of
//! sleeping task state (770 bytes each), where a queue entry is 40 bytes.
//!
//! First runs are spread across the interval (by a hash of the name, so a restart keeps each
//! connector's phase) to avoid a thundering herd. Global [`Limits`](crate::limits::Limits)
//! bound the probes in flight, and a probe waiting on a dead server makes way for the others;
//! every probe is itself bounded by its timeouts, so a connector whose servers hang delays
//! only itself. A probe that panics anyway is logged, its connector marked as a fault in
//! [`Faults`](super::health::Faults) (`/healthz` fails until it probes again), and tried
//! again after [`RESTART_AFTER`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;

use super::Shared;
use super::health::lock;
use crate::config::Connector;
use crate::probe::probe_connector_in;

/// What a reload changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

/// One probe of a connector: its start, or `None` when the daemon stopped before it began.
pub type Run = Arc<
    dyn Fn(
            Arc<Connector>,
            watch::Receiver<bool>,
        ) -> Pin<Box<dyn Future<Output = Option<Instant>> + Send>>
        + Send
        + Sync,
>;

/// Told of a probe that panicked: the connector and the panic's message.
pub type OnPanic = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How long a connector whose probe panicked waits before it is probed again, so a panic on
/// every probe cannot spin.
pub const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Probes are started in waves at most this far apart: everything due within it starts
/// together. Probes started one by one, a few milliseconds apart, each woke the runtime for
/// every step of its dialogue alone; started together they share the wake-ups, as a
/// `probe --all` cycle does. A probe starts at most this late.
const WAVE: Duration = Duration::from_secs(1);

/// A configured connector. `generation` changes when its settings do, so a queue entry or a
/// probe of the settings before is recognised and dropped.
struct Slot {
    connector: Arc<Connector>,
    generation: u64,
}

/// What the scheduler and its driver share.
#[derive(Default)]
struct Plan {
    connectors: HashMap<Arc<str>, Slot>,
    /// When each connector is next due. Entries of removed or changed connectors stay until
    /// they come up and are dropped then (at most one per change).
    due: BinaryHeap<Reverse<(Instant, u64, Arc<str>)>>,
    /// The probes running, to abort those of a connector removed or changed.
    running: HashMap<Arc<str>, AbortHandle>,
    next_generation: u64,
}

impl Plan {
    fn current(&self, name: &str, generation: u64) -> bool {
        self.connectors
            .get(name)
            .is_some_and(|s| s.generation == generation)
    }

    /// Puts a connector back in the queue; says whether it is now the earliest.
    fn queue(&mut self, at: Instant, generation: u64, name: Arc<str>) -> bool {
        let earliest = self
            .due
            .peek()
            .is_none_or(|Reverse((first, ..))| at < *first);
        self.due.push(Reverse((at, generation, name)));
        earliest
    }
}

pub struct Scheduler {
    plan: Arc<Mutex<Plan>>,
    /// Wakes the driver when the earliest due time moved closer.
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    driver: JoinHandle<JoinSet<Done>>,
}

/// A probe's task ends with its connector, the generation it probed and when it started.
type Done = (Arc<str>, u64, Option<Instant>);

impl Scheduler {
    /// The daemon's scheduler: each probe waits for a place, probes, and records its verdict.
    pub fn new(shared: Arc<Shared>) -> Scheduler {
        let probing = shared.clone();
        let run: Run = Arc::new(move |connector, mut stop| {
            let shared = probing.clone();
            Box::pin(async move {
                let (ctx, limits) = shared.probe_resources();
                let place = tokio::select! {
                    p = limits.acquire() => p,
                    _ = stop.changed() => return None,
                };
                let started = Instant::now();
                // Once started, a probe runs to its end (bounded by its timeouts), even
                // during shutdown: `Scheduler::shutdown` waits for it, up to its grace period.
                let verdict = probe_connector_in(&ctx, &connector, &place).await;
                drop(place);
                shared.record(&connector, verdict);
                Some(started)
            })
        });
        let on_panic: OnPanic = Arc::new(move |name, why| {
            shared.faults.crashed(name);
            tracing::error!(
                event = "task_panicked",
                connector = name,
                error = why,
                "the probe of {name} panicked ({why}); probing it again in {}s",
                RESTART_AFTER.as_secs()
            );
        });
        Scheduler::with(run, on_panic)
    }

    /// A scheduler that runs `run` for each connector that is due.
    pub fn with(run: Run, on_panic: OnPanic) -> Scheduler {
        let plan = Arc::new(Mutex::new(Plan::default()));
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let driver = tokio::spawn(drive(plan.clone(), wake.clone(), stopped, run, on_panic));
        Scheduler {
            plan,
            wake,
            stop,
            driver,
        }
    }

    /// Makes the schedule match `connectors`: new ones are queued, changed ones start again
    /// with their new settings, removed ones stop (a probe of theirs in flight is
    /// abandoned). The scheduler keeps the connectors: the daemon holds no other copy.
    pub fn apply(&mut self, connectors: Vec<Connector>) -> (Changes, Vec<String>) {
        let mut changes = Changes::default();
        let mut removed = Vec::new();
        let wanted: HashSet<&str> = connectors.iter().map(|c| c.name.as_str()).collect();
        let mut plan = lock(&self.plan);
        let gone: Vec<Arc<str>> = plan
            .connectors
            .keys()
            .filter(|name| !wanted.contains(&***name))
            .cloned()
            .collect();
        drop(wanted);
        for name in gone {
            plan.connectors.remove(&name);
            if let Some(probe) = plan.running.remove(&name) {
                probe.abort();
            }
            changes.removed += 1;
            removed.push(name.to_string());
        }
        for c in connectors {
            match plan.connectors.get(c.name.as_str()) {
                Some(slot) if *slot.connector == c => continue,
                Some(_) => changes.changed += 1,
                None => changes.added += 1,
            }
            let name: Arc<str> = Arc::from(c.name.as_str());
            if let Some(probe) = plan.running.remove(&name) {
                probe.abort();
            }
            plan.next_generation += 1;
            let generation = plan.next_generation;
            let first = crate::clock::deadline(first_run_offset(&c.name, c.settings.interval));
            plan.queue(first, generation, name.clone());
            let connector = Arc::new(c);
            plan.connectors.insert(
                name,
                Slot {
                    connector,
                    generation,
                },
            );
        }
        drop(plan);
        self.wake.notify_one();
        (changes, removed)
    }

    /// Stops scheduling, lets in-flight probes finish for up to `grace`, then abandons them.
    pub async fn shutdown(self, grace: Duration) -> usize {
        let _ = self.stop.send(true);
        let Ok(mut running) = self.driver.await else {
            return 0;
        };
        let deadline = Instant::now() + grace;
        let drained = tokio::time::timeout_at(deadline, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            return 0;
        }
        let abandoned = running.len();
        running.abort_all();
        abandoned
    }
}

/// The driver: starts what is due, reschedules what ended, until `stop`; then hands over
/// the probes still running.
async fn drive(
    plan: Arc<Mutex<Plan>>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    run: Run,
    on_panic: OnPanic,
) -> JoinSet<Done> {
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut names: HashMap<tokio::task::Id, (Arc<str>, u64)> = HashMap::new();
    // When the last wave of probes started.
    let mut wave: Option<Instant> = None;
    loop {
        let next = {
            let now = Instant::now();
            let mut plan = lock(&plan);
            while plan.due.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
                let Some(Reverse((_, generation, name))) = plan.due.pop() else {
                    break;
                };
                if !plan.current(&name, generation) || plan.running.contains_key(&name) {
                    continue;
                }
                let connector = plan.connectors[&name].connector.clone();
                let probe = run(connector, stop.clone());
                let done = (name.clone(), generation);
                let handle = running.spawn(async move {
                    let started = probe.await;
                    (done.0, done.1, started)
                });
                names.insert(handle.id(), (name.clone(), generation));
                plan.running.insert(name, handle);
                wave = Some(now);
            }
            // What falls due within [`WAVE`] of the last wave waits for the next one.
            let at = plan.due.peek().map(|Reverse((at, ..))| *at);
            at.map(|at| wave.map_or(at, |w| at.max(w + WAVE)))
        };
        let sleep = tokio::time::sleep_until(
            next.unwrap_or_else(|| crate::clock::deadline(Duration::from_secs(3600))),
        );
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => {}
            ended = running.join_next_with_id(), if !running.is_empty() => {
                let Some(ended) = ended else { continue };
                let id = match &ended {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                let Some((name, generation)) = names.remove(&id) else { continue };
                let mut plan = lock(&plan);
                if plan.running.get(&name).is_some_and(|h| h.id() == id) {
                    plan.running.remove(&name);
                }
                let again = match ended {
                    Ok((_, (_, _, Some(started)))) => {
                        let interval = plan.connectors.get(&name).map(|s| s.connector.settings.interval);
                        interval.map(|i| started.checked_add(i).unwrap_or_else(|| crate::clock::deadline(i)).max(Instant::now()))
                    }
                    Ok((_, (_, _, None))) => None,
                    Err(e) if e.is_panic() => {
                        let panic = e.into_panic();
                        let why = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("a panic without a message");
                        if plan.current(&name, generation) {
                            on_panic(&name, why);
                        }
                        Some(Instant::now() + RESTART_AFTER)
                    }
                    // Aborted: its connector was removed or changed, and queued anew.
                    Err(_) => None,
                };
                if let Some(at) = again.filter(|_| plan.current(&name, generation)) {
                    plan.queue(at, generation, name);
                }
            }
            _ = stop.changed() => return running,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn connectors(names: &[&str], interval: &str) -> Vec<Connector> {
        let mut text = format!("[defaults]\ninterval = \"{interval}\"\n");
        for n in names {
            text.push_str(&format!(
                "[[connector]]\nname = \"{n}\"\nsmart_hosts = [\"127.0.0.1\"]\n"
            ));
        }
        crate::config::Config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .connectors
    }

    /// Probes that count themselves per connector, take `takes`, and panic on the runs
    /// `panics` names.
    fn counting(
        takes: Duration,
        panics: fn(&str, usize) -> bool,
    ) -> (Run, Arc<Mutex<HashMap<String, usize>>>) {
        let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = runs.clone();
        let run: Run = Arc::new(move |c, _stop| {
            let runs = counted.clone();
            Box::pin(async move {
                let n = {
                    let mut runs = lock(&runs);
                    let n = runs.entry(c.name.clone()).or_default();
                    *n += 1;
                    *n
                };
                let started = Instant::now();
                tokio::time::sleep(takes).await;
                if panics(&c.name, n) {
                    panic!("overflow when adding durations");
                }
                Some(started)
            })
        });
        (run, runs)
    }

    fn count(runs: &Mutex<HashMap<String, usize>>, name: &str) -> usize {
        lock(runs).get(name).copied().unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn each_connector_is_probed_once_per_interval_and_a_reload_changes_the_set() {
        let (run, runs) = counting(Duration::from_millis(100), |_, _| false);
        let mut s = Scheduler::with(run, Arc::new(|_, _| {}));
        let names: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (changes, _) = s.apply(connectors(&refs, "60s"));
        assert_eq!(changes.added, 50);
        tokio::time::sleep(Duration::from_secs(60 * 5 + 1)).await;
        for n in &names {
            let c = count(&runs, n);
            assert!(
                (5..=6).contains(&c),
                "{n} probed {c} times in five intervals"
            );
        }
        // Half removed, one changed: the removed are probed no more.
        let keep: Vec<&str> = refs[..25].to_vec();
        let mut next = connectors(&keep, "60s");
        Arc::make_mut(&mut next[0].settings).interval = Duration::from_secs(10);
        let (changes, removed) = s.apply(next);
        assert_eq!(
            (changes.added, changes.changed, changes.removed),
            (0, 1, 25)
        );
        assert_eq!(removed.len(), 25);
        let before: Vec<usize> = names.iter().map(|n| count(&runs, n)).collect();
        tokio::time::sleep(Duration::from_secs(120)).await;
        for (i, n) in names.iter().enumerate() {
            let more = count(&runs, n) - before[i];
            match i {
                0 => assert!(more >= 11, "the changed one, every 10 s: {more}"),
                1..25 => assert!((1..=3).contains(&more), "{n}: {more}"),
                _ => assert_eq!(more, 0, "{n} was removed"),
            }
        }
        assert_eq!(s.shutdown(Duration::from_secs(1)).await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_probe_is_reported_and_tried_again() {
        let (run, runs) = counting(Duration::from_millis(10), |_, n| n == 1);
        let panicked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let told = panicked.clone();
        let on_panic: OnPanic = Arc::new(move |name, why| {
            lock(&told).push((name.to_owned(), why.to_owned()));
        });
        let mut s = Scheduler::with(run, on_panic);
        s.apply(connectors(&["contoso"], "1h"));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            *lock(&panicked),
            [(
                "contoso".to_owned(),
                "overflow when adding durations".to_owned()
            )]
        );
        assert_eq!(
            count(&runs, "contoso"),
            2,
            "tried again after RESTART_AFTER"
        );
        s.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_a_probe_in_flight_up_to_its_grace() {
        let started = Arc::new(AtomicUsize::new(0));
        let seen = started.clone();
        let run: Run = Arc::new(move |_, _| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(30)).await;
                Some(Instant::now())
            })
        });
        let mut s = Scheduler::with(run.clone(), Arc::new(|_, _| {}));
        s.apply(connectors(&["slow"], "1s"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(started.load(Ordering::SeqCst), 1, "never twice at once");
        assert_eq!(s.shutdown(Duration::from_secs(5)).await, 1, "abandoned");

        let mut s = Scheduler::with(run, Arc::new(|_, _| {}));
        s.apply(connectors(&["slow"], "1s"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(s.shutdown(Duration::from_secs(60)).await, 0, "finished");
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
