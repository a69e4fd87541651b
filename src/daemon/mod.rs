//! `connector-probe run`: the daemon.
//!
//! * [`scheduler`]: one task per connector on its own interval, spread, globally bounded.
//! * [`state`]: status, code, `failing_since` per connector, and the status page's
//!   transitions; a journal of what changed, compacted into a snapshot.
//! * [`events`]: the alert events of `interface.md`, once per transition, as JSON lines.
//! * [`metrics`]: Prometheus `/metrics` and `/healthz`.
//! * [`page`]: the status page on the same listener, drawn from [`history`]: each connector's
//!   latest verdict, compact, and its transitions of the last 24 hours.
//! * [`vantage`]: the `vantage` field on every JSON log line.
//! * [`health`]: what makes `/healthz` fail besides a stuck loop; locks that a panic cannot
//!   poison.
//!
//! This module holds the lifecycle: start, `SIGHUP` reload (a bad configuration keeps the
//! old one running), `SIGTERM`/`SIGINT` shutdown with a bounded wait for in-flight probes
//! (a second signal stops at once), and systemd's readiness and watchdog notifications.
//!
//! Nothing that grows with the fleet runs on the main loop while a lock the probes need is
//! held: a reload's parsing runs on a blocking thread while the loop keeps ticking, and the
//! state files are written by their own task, from the writer's own copy of the records.

pub mod events;
pub mod exposition;
pub mod health;
pub mod history;
pub mod metrics;
pub mod page;
pub mod scheduler;
pub mod state;
pub mod vantage;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, ConfigError, Connector};
use crate::limits::Limits;
use crate::probe::ProbeContext;
use crate::shard::Shard;
use crate::verdict::ConnectorVerdict;
use events::Policy;
use health::{Faults, lock, read, write};
use metrics::{Heartbeat, Metrics};
use scheduler::Scheduler;
use state::{Batch, Change, Flushed, States, Store};

/// How long `SIGTERM` waits for in-flight probes before abandoning them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the flusher looks for changed states: an isolated change (after a quiet
/// [`FLUSH_SPACING`]) is on disk within this.
const FLUSH_TICK: Duration = Duration::from_secs(1);
/// The least time between two journal writes while changes keep coming. Each fsync'd append
/// costs at least a 4 KiB page, however short its lines (and a batch of long lines two): a
/// write every second is about 350 MB a day of pages; every 5 s the fleet benchmark measured
/// 97 MB a day at 10,000 connectors with 1 % flapping, at the edge of issue 14's 100 MB;
/// every 10 s at most 0.1/s × 4 KiB × 86,400 ≈ 35 MB of single pages. The price: `kill -9`
/// can lose the changes of the last 10 s that were not yet written (see the README's
/// **State**).
const FLUSH_SPACING: Duration = Duration::from_secs(10);

/// What the probes of the running configuration share; swapped whole on reload.
struct Runtime {
    ctx: Arc<ProbeContext>,
    limits: Arc<Limits>,
    policy: Policy,
    state_file: Option<PathBuf>,
    concurrency: usize,
}

impl Runtime {
    fn new(config: &Config) -> Runtime {
        let ctx = Arc::new(ProbeContext::new(config));
        Runtime {
            ctx,
            limits: Arc::new(Limits::new(config.daemon.concurrency)),
            policy: Policy {
                queue_alert_after: config.daemon.queue_alert_after,
                message_expiration: config.daemon.message_expiration,
            },
            state_file: config.daemon.state_file.clone(),
            concurrency: config.daemon.concurrency,
        }
    }
}

/// State shared by the scheduler's tasks, the metrics endpoint and the main loop.
pub struct Shared {
    pub metrics: Metrics,
    pub heartbeat: Heartbeat,
    pub faults: Faults,
    /// What the status page shows.
    pub board: history::Board,
    states: Mutex<States>,
    /// The records changed since the last flush, and the transitions made, by connector.
    pending: Mutex<Batch>,
    /// The state files' writer; only the flushes, on blocking threads, take it.
    store: Mutex<Option<Store>>,
    runtime: RwLock<Runtime>,
}

impl Shared {
    fn probe_resources(&self) -> (Arc<ProbeContext>, Arc<Limits>) {
        let rt = read(&self.runtime);
        (rt.ctx.clone(), rt.limits.clone())
    }

    /// Takes a probe's verdict: state, events, metrics.
    fn record(&self, connector: &Connector, verdict: ConnectorVerdict) {
        let (policy, persisted) = {
            let rt = read(&self.runtime);
            (rt.policy, rt.state_file.is_some())
        };
        let now = OffsetDateTime::now_utc();
        let (raised, snapshot, changed) = {
            let mut states = lock(&self.states);
            let state = states.connectors.entry(connector.name.clone()).or_default();
            let before = state.clone();
            let raised = events::advance(
                state,
                &verdict,
                connector.settings.expiry_warning,
                now,
                &policy,
            );
            let changed = state.differs_durably(&before);
            (raised, state.clone(), changed)
        };
        self.faults.recovered(&connector.name);
        let transition = self.board.record(
            &verdict,
            history::Dates::of(&snapshot),
            now.unix_timestamp(),
        );
        // A probe that changes nothing a restart needs (most of them) writes nothing. A
        // transition (status or code) is such a change, and goes into the same line; it is
        // also written when the state did not change (a connector whose timeline was lost),
        // so the page's history and the state files never disagree for long.
        if (changed || transition.is_some()) && persisted {
            let record = snapshot.to_record();
            let mut pending = lock(&self.pending);
            let change = pending.entry(connector.name.clone()).or_default();
            change.record = Some(record);
            change.transitions.extend(transition);
        }
        events::emit_probe_result(&verdict);
        for e in &raised {
            events::emit(&connector.name, e);
        }
    }

    /// Writes the records changed since the last flush. `at_stop`, once the probes have
    /// ended: with every connector's record as it is now, in one compaction (see
    /// [`Store::flush_at_stop`]). The disk is written on a blocking thread, by the store
    /// alone.
    async fn flush(self: &Arc<Self>, at_stop: bool, last_error: &mut Option<String>) {
        let batch = std::mem::take(&mut *lock(&self.pending));
        let shared = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut store = lock(&shared.store);
            let Some(store) = store.as_mut() else {
                return (PathBuf::new(), Ok(Flushed::Nothing));
            };
            let flushed = if at_stop {
                store.flush_at_stop(batch, &lock(&shared.states).connectors)
            } else {
                store.flush(batch, false)
            };
            (store.path().to_owned(), flushed)
        })
        .await
        .unwrap_or_else(|e| (PathBuf::new(), Err(std::io::Error::other(e))));
        match written {
            (_, Ok(flushed)) => {
                self.metrics.state_written(flushed);
                *last_error = None;
            }
            (path, Err(e)) => {
                let text = e.to_string();
                // Once per distinct error, not every second; the store retries by compacting.
                if last_error.as_deref() != Some(&text) {
                    tracing::error!(event = "state_save_failed", path = %path.display(), error = %text, "cannot write the state file {}: {text}", path.display());
                    *last_error = Some(text);
                }
            }
        }
    }

    /// Whether a flush would write anything: changed records, or a store that must compact.
    fn has_pending(&self) -> bool {
        let changed = !lock(&self.pending).is_empty();
        changed || lock(&self.store).as_ref().is_some_and(Store::must_compact)
    }
}

/// Whether the flusher writes at `now`: something is waiting (a changed record, or a store
/// that must compact after a failed write or a damaged journal), and the last write began
/// at least [`FLUSH_SPACING`] ago. So an isolated change is written at the next tick, and
/// sustained change at most once per spacing.
fn due(now: Instant, last_write: Option<Instant>, pending: bool) -> bool {
    pending && last_write.is_none_or(|t| now.saturating_duration_since(t) >= FLUSH_SPACING)
}

/// Flushes on a [`FLUSH_TICK`] when [`due`], until aborted, in a task of its own so that a
/// slow disk or a compaction never holds up the main loop's heartbeat.
async fn flusher(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(FLUSH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error = None;
    let mut last_write = None;
    loop {
        let now = tick.tick().await;
        if due(now, last_write, shared.has_pending()) {
            last_write = Some(now);
            shared.flush(false, &mut last_error).await;
        }
    }
}

/// How the daemon's log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (tracing's JSON layout, fields at the top level).
    Json,
    /// Human-readable lines.
    Text,
}

/// Logs go to stdout, ready for journald or a log shipper; a closed stdout is reported once
/// (see [`crate::output::LogStdout`]). Text has colours only on a terminal.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::output::LogStdout)
        .with_ansi(crate::output::stdout_is_terminal())
        .with_target(false);
    let _ = match format {
        // Without the target, a `target` event field cannot collide with tracing's own.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .map_event_format(vantage::Tagged)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(states);
}

async fn bind_metrics(
    addr: Option<SocketAddr>,
    shared: &Arc<Shared>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, String> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(event = "metrics_listening", address = %bound, "serving the status page, /metrics and /healthz on http://{bound}/");
    let task = tokio::spawn(metrics::serve(listener, shared.clone()));
    Ok(Some((addr, task)))
}

/// Runs the daemon until `SIGTERM` or `SIGINT`, probing the connectors of `shard` (`--shard`;
/// else `[daemon] shard`). Exit code 0 after a clean stop, 3 for a configuration that does
/// not load, 1 when the daemon cannot start.
pub async fn run(path: &Path, shard: Option<Shard>) -> ExitCode {
    let config = match crate::shard::load(path, shard) {
        Ok(c) => c,
        Err(e) => {
            crate::say!("error: {e}");
            tracing::error!(event = "config_invalid", error = %e, "{e}");
            return ExitCode::from(3);
        }
    };
    vantage::set(&config.daemon.vantage);
    let (mut states, mut store, problems) = match &config.daemon.state_file {
        Some(p) => {
            let (states, store, problems) = Store::open(p);
            (states, Some(store), problems)
        }
        None => (States::default(), None, Vec::new()),
    };
    for p in problems {
        tracing::warn!(event = "state_load_failed", error = %p, "{p}");
    }
    if let Some(s) = store.as_mut() {
        history::migrate(s, &mut states.history);
    }
    let mut batch = Batch::new();
    for gone in states.retain(&names(&config)) {
        batch.insert(gone, Change::removed());
    }
    for (name, said) in states.clamp_future_dates(OffsetDateTime::now_utc()) {
        tracing::warn!(event = "state_date_clamped", "{said}");
        batch.insert(
            name.clone(),
            Change::record(states.connectors[&name].to_record()),
        );
        // The snapshot itself must not keep the date.
        if let Some(s) = store.as_mut() {
            s.compact_soon();
        }
    }
    // The board keeps the transitions from here on (and the store its own copy).
    let board = history::start(std::mem::take(&mut states.history), names(&config));
    let shared = Arc::new(Shared {
        metrics: Metrics::new(
            &config.daemon.vantage,
            config.daemon.shard.and_then(|s| s.shard()),
        ),
        heartbeat: Heartbeat::default(),
        faults: Faults::default(),
        board,
        states: Mutex::new(states),
        pending: Mutex::new(batch),
        store: Mutex::new(store),
        runtime: RwLock::new(Runtime::new(&config)),
    });
    shared.heartbeat.beat();
    for (name, state) in &lock(&shared.states).connectors {
        let dates = history::Dates::of(state);
        shared
            .board
            .restore(name, dates.failing_since, dates.last_success);
    }
    shared.metrics.set_connectors(config.connectors.len());

    let mut http = match bind_metrics(config.daemon.metrics_listen, &shared).await {
        Ok(h) => h,
        Err(e) => {
            crate::say!("error: {e}");
            tracing::error!(event = "metrics_listen_failed", error = %e, "{e}");
            return ExitCode::from(1);
        }
    };
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        crate::say!("error: cannot install signal handlers");
        return ExitCode::from(1);
    };

    let mut scheduler = Scheduler::new(shared.clone());
    let mut config = config;
    let connectors = config.connectors.len();
    scheduler.apply(std::mem::take(&mut config.connectors));
    release_freed_memory();
    tracing::info!(
        event = "daemon_started",
        config = %path.display(),
        connectors,
        shard = %config.daemon.shard.map(|s| s.to_string()).unwrap_or_default(),
        version = env!("CARGO_PKG_VERSION"),
        "probing {connectors} connector(s) from {}",
        path.display()
    );
    let status = format!("probing {connectors} connector(s)");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);

    let watchdog = sd_notify::watchdog_enabled();
    let tick_every = watchdog.map_or(Duration::from_secs(1), |w| {
        (w / 2).min(Duration::from_secs(1))
    });
    let mut tick = tokio::time::interval(tick_every);
    let flushing = tokio::spawn(flusher(shared.clone()));
    let mut last_tick = Instant::now();
    // A reload's parsing, in flight on a blocking thread; the loop keeps ticking meanwhile.
    let mut loading: Option<JoinHandle<Result<Config, ConfigError>>> = None;
    let mut reload_again = false;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if loading.is_some() {
                    // A signal during a load: the file may have changed after it was read.
                    reload_again = true;
                } else {
                    loading = Some(start_loading(path, shard));
                }
            }
            loaded = async { loading.as_mut().expect("guarded").await }, if loading.is_some() => {
                loading = None;
                // The load panicked: reported like a configuration that does not load.
                let loaded = loaded.unwrap_or_else(|e| Err(ConfigError {
                    file: path.to_owned(),
                    line: None,
                    column: None,
                    key: None,
                    message: format!("loading the configuration failed: {e}"),
                }));
                if let Some(new) = reload(loaded, &shared, &mut scheduler, &mut http, &config).await {
                    config = new;
                }
                if std::mem::take(&mut reload_again) {
                    loading = Some(start_loading(path, shard));
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {
                let now = Instant::now();
                shared.metrics.ticked(now - last_tick);
                last_tick = now;
                shared.heartbeat.beat();
                if watchdog.is_some() {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    }

    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!(
        event = "daemon_stopping",
        grace_seconds = SHUTDOWN_GRACE.as_secs(),
        "stopping: waiting for in-flight probes"
    );
    let abandoned = tokio::select! {
        n = scheduler.shutdown(SHUTDOWN_GRACE) => n,
        _ = term.recv() => return stop_now(),
        _ = int.recv() => return stop_now(),
    };
    if let Some((_, task)) = http.take() {
        task.abort();
    }
    // The flusher's batch in flight, if any, finishes first: the store is taken in turn.
    flushing.abort();
    shared.flush(true, &mut None).await;
    tracing::info!(
        event = "daemon_stopped",
        abandoned_probes = abandoned,
        "stopped"
    );
    ExitCode::SUCCESS
}

/// Gives the memory freed after a load back to the system. Parsing a large configuration
/// takes several times the memory the result keeps (the TOML document, its tokens). In the
/// daemon the Rust heap is mimalloc's (see `src/allocator.rs`), which returns freed pages by
/// itself; glibc's holds what the C libraries allocate (OpenSSL), and keeps freed memory for
/// reuse unless trimmed (and is the whole heap when a test runs the daemon in-process).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A second `SIGTERM` or `SIGINT` during the grace period: the operator wants out now. The
/// in-flight probes are abandoned and the state is not written again (what changed was
/// journaled at most [`FLUSH_SPACING`] ago), so a hung disk cannot hold the exit either.
fn stop_now() -> ExitCode {
    tracing::warn!(
        event = "daemon_stopped",
        forced = true,
        "a second signal: stopped without waiting for in-flight probes"
    );
    ExitCode::from(1)
}

fn names(config: &Config) -> HashSet<&str> {
    config.connectors.iter().map(|c| c.name.as_str()).collect()
}

/// Reads and validates the configuration on a blocking thread: at 100,000 connectors that
/// takes most of a second, which the main loop's ticks must not wait for.
fn start_loading(path: &Path, shard: Option<Shard>) -> JoinHandle<Result<Config, ConfigError>> {
    let usec = sd_notify::NotifyState::monotonic_usec_now().ok();
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    reloading.extend(usec);
    notify(&reloading);
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || crate::shard::load(&path, shard))
}

/// `SIGHUP`: applies the configuration loaded again. A bad one is logged and changes nothing.
async fn reload(
    loaded: Result<Config, ConfigError>,
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler,
    http: &mut Option<(SocketAddr, JoinHandle<()>)>,
    old: &Config,
) -> Option<Config> {
    let result = match loaded {
        Err(e) => {
            shared.metrics.reloaded(false);
            tracing::error!(event = "config_reload_failed", error = %e, "the new configuration was rejected; the previous one keeps running: {e}");
            None
        }
        Ok(mut new) => {
            // The labels are the registry's, fixed at start; only K is a label, so a new N
            // (shards added or removed) changes none.
            let label = |c: &Config| {
                let k = c.daemon.shard.and_then(|s| s.shard()).map(|s| s.index);
                (c.daemon.vantage.clone(), k)
            };
            if label(&new) != label(old) {
                tracing::warn!(
                    event = "config_reload_partial",
                    "the vantage and shard labels of metrics and events keep their values until a restart; the new shard's connectors are probed now"
                );
            }
            if new.daemon.metrics_listen != old.daemon.metrics_listen {
                match bind_metrics(new.daemon.metrics_listen, shared).await {
                    Ok(bound) => {
                        if let Some((_, task)) = std::mem::replace(http, bound) {
                            task.abort();
                        }
                    }
                    Err(e) => {
                        tracing::error!(event = "metrics_listen_failed", error = %e, "{e}; the previous endpoint stays")
                    }
                }
            }
            {
                // Built before the lock is taken: the probes read the runtime at every start.
                let fresh = Runtime::new(&new);
                let mut rt = write(&shared.runtime);
                let concurrency = rt.concurrency;
                let limits = rt.limits.clone();
                *rt = fresh;
                if concurrency == new.daemon.concurrency {
                    // Keep the pools, so probes in flight still count against the limit.
                    rt.limits = limits;
                }
            }
            if new.daemon.state_file != old.daemon.state_file {
                move_state_file(shared, new.daemon.state_file.as_deref());
            }
            shared.board.configure(names(&new));
            let connectors = new.connectors.len();
            let (changes, removed) = scheduler.apply(std::mem::take(&mut new.connectors));
            // One removal at a time, not a pass over every state under the lock the probes
            // take: a reload that removes a few connectors of 100,000 costs a few lookups.
            for name in &removed {
                lock(&shared.states).connectors.remove(name);
                lock(&shared.pending).insert(name.clone(), Change::removed());
                shared.faults.forget(name);
            }
            shared.metrics.set_connectors(connectors);
            shared.metrics.reloaded(true);
            release_freed_memory();
            tracing::info!(
                event = "config_reloaded",
                connectors,
                added = changes.added,
                changed = changes.changed,
                removed = changes.removed,
                "configuration reloaded: {} added, {} changed, {} removed",
                changes.added,
                changes.changed,
                changes.removed
            );
            Some(new)
        }
    };
    notify(&[sd_notify::NotifyState::Ready]);
    result
}

/// `state_file` changed in a reload: the new file gets every record and the board's
/// transitions at the next flush; an empty `state_file` stops writing. Rare, so the one pass
/// over the states is acceptable.
fn move_state_file(shared: &Shared, path: Option<&Path>) {
    let store = path.map(|p| {
        let board = shared.board.snapshot();
        let history = board.iter().map(|(n, e)| (&**n, e.history.as_slice()));
        Store::adopt(p, &lock(&shared.states), history)
    });
    *lock(&shared.store) = store;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flusher's decisions over `seconds` ticks, for changes arriving at the given
    /// seconds: the seconds at which it writes.
    fn writes(changes: &[u64], seconds: u64) -> Vec<u64> {
        let start = Instant::now();
        let mut last_write = None;
        let mut pending = false;
        let mut written = Vec::new();
        for s in 0..seconds {
            // A change in second s is pending at the tick that ends it.
            pending |= changes.contains(&s);
            let now = start + Duration::from_secs(s + 1);
            if due(now, last_write, pending) {
                last_write = Some(now);
                pending = false;
                written.push(s + 1);
            }
        }
        written
    }

    #[test]
    fn an_isolated_change_is_written_at_the_next_tick() {
        assert_eq!(writes(&[3], 30), [4]);
        // Quiet for the spacing since the last write: the next change waits for no one.
        assert_eq!(writes(&[0, 10, 20], 30), [1, 11, 21]);
        assert_eq!(
            writes(&[], 30),
            Vec::<u64>::new(),
            "nothing pending, nothing written"
        );
    }

    #[test]
    fn sustained_change_is_written_once_per_spacing() {
        let every_second: Vec<u64> = (0..600).collect();
        let written = writes(&every_second, 600);
        let spacing = FLUSH_SPACING.as_secs();
        assert!(
            written.windows(2).all(|w| w[1] - w[0] >= spacing),
            "{written:?}"
        );
        // Every change is written, at most one spacing late.
        assert_eq!(written.len() as u64, 600 / spacing, "{written:?}");
        assert!(*written.last().unwrap() >= 600 - spacing);
        // A change just after a write waits out the spacing, not a tick more.
        assert_eq!(writes(&[0, 1], 30), [1, 1 + spacing]);
        assert_eq!(writes(&[0, spacing + 2], 30), [1, spacing + 3]);
    }

    #[test]
    fn the_spacing_keeps_the_journal_under_the_daily_budget() {
        // Issue 14: every fsync'd append costs at least a 4 KiB page.
        let pages_a_day = 86_400 / FLUSH_SPACING.as_secs() * 4096;
        assert!(pages_a_day <= 100_000_000, "{pages_a_day}");
        assert!(FLUSH_TICK < FLUSH_SPACING);
    }
}
