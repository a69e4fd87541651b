//! `connector-probe run`: the daemon.
//!
//! * [`scheduler`]: one task per connector on its own interval, spread, globally bounded.
//! * [`state`]: status, code, `failing_since` per connector, persisted atomically.
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

pub mod events;
pub mod health;
pub mod history;
pub mod metrics;
pub mod page;
pub mod scheduler;
pub mod state;
pub mod vantage;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::config::{Config, Connector};
use crate::limits::Limits;
use crate::probe::ProbeContext;
use crate::shard::Shard;
use crate::verdict::ConnectorVerdict;
use events::Policy;
use health::{Faults, lock, read, write};
use metrics::{Heartbeat, Metrics};
use scheduler::Scheduler;
use state::States;

/// How long `SIGTERM` waits for in-flight probes before abandoning them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often a changed state is written to disk, at most.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

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
    dirty: AtomicBool,
    runtime: RwLock<Runtime>,
}

impl Shared {
    fn probe_resources(&self) -> (Arc<ProbeContext>, Arc<Limits>) {
        let rt = read(&self.runtime);
        (rt.ctx.clone(), rt.limits.clone())
    }

    /// Takes a probe's verdict: state, events, metrics.
    fn record(&self, connector: &Connector, verdict: ConnectorVerdict) {
        let policy = read(&self.runtime).policy;
        let now = OffsetDateTime::now_utc();
        let (raised, snapshot) = {
            let mut states = lock(&self.states);
            let state = states.connectors.entry(connector.name.clone()).or_default();
            let raised = events::advance(
                state,
                &verdict,
                connector.settings.expiry_warning,
                now,
                &policy,
            );
            (raised, state.clone())
        };
        self.dirty.store(true, Ordering::Release);
        self.faults.recovered(&connector.name);
        self.metrics.record(&verdict, &snapshot);
        let unix = |t: OffsetDateTime| t.unix_timestamp();
        self.board.record(
            &verdict,
            snapshot.failing_since.map(unix),
            snapshot.last_probe.map(unix),
            now.unix_timestamp(),
        );
        events::emit_probe_result(&verdict);
        for e in &raised {
            events::emit(&connector.name, e);
        }
    }

    /// Writes the state if it changed since the last write.
    async fn flush(self: &Arc<Self>, last_error: &mut Option<String>) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some(path) = read(&self.runtime).state_file.clone() else {
            return;
        };
        // The lock is held to serialise only; the disk is written without it.
        let bytes = lock(&self.states).to_bytes();
        let saved = tokio::task::spawn_blocking(move || {
            bytes
                .and_then(|b| state::save_bytes(&path, &b))
                .map_err(|e| (path, e))
        })
        .await
        .unwrap_or_else(|e| Err((PathBuf::new(), std::io::Error::other(e))));
        match saved {
            Ok(()) => *last_error = None,
            Err((path, e)) => {
                self.dirty.store(true, Ordering::Release);
                let text = e.to_string();
                // Once per distinct error, not every second.
                if last_error.as_deref() != Some(&text) {
                    tracing::error!(event = "state_save_failed", path = %path.display(), error = %text, "cannot write the state file {}: {text}", path.display());
                    *last_error = Some(text);
                }
            }
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
    let (mut states, problem) = match &config.daemon.state_file {
        Some(p) => States::load(p),
        None => (States::default(), None),
    };
    if let Some(p) = problem {
        tracing::warn!(event = "state_load_failed", error = %p, "{p}");
    }
    states.retain(&names(&config));
    for said in states.clamp_future_dates(OffsetDateTime::now_utc()) {
        tracing::warn!(event = "state_date_clamped", "{said}");
    }
    let shared = Arc::new(Shared {
        metrics: Metrics::new(
            &config.daemon.vantage,
            config.daemon.shard.and_then(|s| s.shard()),
        ),
        heartbeat: Heartbeat::default(),
        faults: Faults::default(),
        board: history::start(config.daemon.state_file.as_deref(), names(&config)),
        states: Mutex::new(states),
        dirty: AtomicBool::new(false),
        runtime: RwLock::new(Runtime::new(&config)),
    });
    shared.heartbeat.beat();
    for (name, state) in &lock(&shared.states).connectors {
        shared.metrics.restore(name, state);
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
    scheduler.apply(&config.connectors);
    let mut config = config;
    tracing::info!(
        event = "daemon_started",
        config = %path.display(),
        connectors = config.connectors.len(),
        shard = %config.daemon.shard.map(|s| s.to_string()).unwrap_or_default(),
        version = env!("CARGO_PKG_VERSION"),
        "probing {} connector(s) from {}",
        config.connectors.len(),
        path.display()
    );
    let status = format!("probing {} connector(s)", config.connectors.len());
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);

    let watchdog = sd_notify::watchdog_enabled();
    let tick_every = watchdog.map_or(Duration::from_secs(1), |w| {
        (w / 2).min(Duration::from_secs(1))
    });
    let mut tick = tokio::time::interval(tick_every);
    let mut flush_tick = tokio::time::interval(FLUSH_EVERY);
    let mut save_error = None;
    let mut history_error = None;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Some(new) = reload(path, shard, &shared, &mut scheduler, &mut http, &config).await {
                    config = new;
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = flush_tick.tick() => {
                shared.flush(&mut save_error).await;
                history::flush(&shared, &mut history_error, false).await;
            }
            _ = tick.tick() => {
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
    shared.flush(&mut save_error).await;
    history::flush(&shared, &mut history_error, true).await;
    tracing::info!(
        event = "daemon_stopped",
        abandoned_probes = abandoned,
        "stopped"
    );
    ExitCode::SUCCESS
}

/// A second `SIGTERM` or `SIGINT` during the grace period: the operator wants out now. The
/// in-flight probes are abandoned and the state is not written again (it was at most
/// [`FLUSH_EVERY`] old), so a hung disk cannot hold the exit either.
fn stop_now() -> ExitCode {
    tracing::warn!(
        event = "daemon_stopped",
        forced = true,
        "a second signal: stopped without waiting for in-flight probes"
    );
    ExitCode::from(1)
}

fn names(config: &Config) -> BTreeSet<&str> {
    config.connectors.iter().map(|c| c.name.as_str()).collect()
}

/// `SIGHUP`: loads the configuration again. A bad one is logged and changes nothing.
async fn reload(
    path: &Path,
    shard: Option<Shard>,
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler,
    http: &mut Option<(SocketAddr, JoinHandle<()>)>,
    old: &Config,
) -> Option<Config> {
    let usec = sd_notify::NotifyState::monotonic_usec_now().ok();
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    reloading.extend(usec);
    notify(&reloading);
    let result = match crate::shard::load(path, shard) {
        Err(e) => {
            shared.metrics.reloaded(false);
            tracing::error!(event = "config_reload_failed", error = %e, "the new configuration was rejected; the previous one keeps running: {e}");
            None
        }
        Ok(new) => {
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
                let mut rt = write(&shared.runtime);
                let concurrency = rt.concurrency;
                let limits = rt.limits.clone();
                *rt = Runtime::new(&new);
                if concurrency == new.daemon.concurrency {
                    // Keep the pools, so probes in flight still count against the limit.
                    rt.limits = limits;
                }
            }
            let (changes, removed) = scheduler.apply(&new.connectors);
            lock(&shared.states).retain(&names(&new));
            shared.board.configure(names(&new));
            for name in &removed {
                shared.metrics.forget(name);
                shared.faults.forget(name);
            }
            shared.metrics.set_connectors(new.connectors.len());
            shared.metrics.reloaded(true);
            shared.dirty.store(true, Ordering::Release);
            tracing::info!(
                event = "config_reloaded",
                connectors = new.connectors.len(),
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
