//! How many probes run at once, and how a wall of dead servers is kept from holding up the
//! live ones.
//!
//! Every connector's probe takes a place in the main pool (`[daemon] concurrency` places)
//! before it starts and gives it back when it ends. The bound is there for what a probe costs
//! this host: a socket, the CPU of a TLS handshake, and timings that still mean something
//! because the host is not overloaded. A probe that is only waiting for a server that does not
//! answer costs none of that but its socket, yet it would keep its place for the whole connect
//! timeout, and ten thousand connectors with a few hundred black-holed ones would then take
//! a timeout's length per few hundred of them.
//!
//! So a connect still pending after [`SLOW_CONNECT`] counts as such a wait: by then the
//! initial SYN retransmission timeout (RFC 6298, one second) has passed, so the SYN or its
//! answer was lost, or nothing is listening. When every target a probe still runs is in such
//! a wait, the probe moves to the slow pool, giving its main place to the next connector, and
//! stays there until it ends, whatever follows. When the slow pool is full it keeps its main
//! place, as before. Nothing about the probe itself changes: its timeouts, stages and verdict
//! are the same; only whose turn it is changes.
//!
//! A waiting probe costs a socket, so the slow pool is sized from the open-files limit: half
//! of it, less the main pool (the other half is for the probes at work, which may hold a
//! socket per target, and everything else). With the limit the binary raises at start, that
//! is thousands of places, enough for every dead server of a large fleet to wait out even the
//! default 30 s connect timeout.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a connect may be pending before the probe waiting on it gives up its main place.
pub const SLOW_CONNECT: Duration = Duration::from_secs(1);

/// The two pools of a run (`probe --all`) or of a daemon configuration.
#[derive(Debug)]
pub struct Limits {
    main: Arc<Semaphore>,
    slow: Arc<Semaphore>,
}

impl Limits {
    /// `concurrency` main places, and a slow pool sized from the open-files limit.
    pub fn new(concurrency: usize) -> Limits {
        let concurrency = concurrency.max(1);
        let slow = (open_files_limit() / 2).saturating_sub(concurrency);
        Limits::with_pools(concurrency, slow)
    }

    fn with_pools(main: usize, slow: usize) -> Limits {
        Limits {
            main: Arc::new(Semaphore::new(main)),
            slow: Arc::new(Semaphore::new(slow)),
        }
    }

    /// Waits for a main place (first come, first served).
    pub async fn acquire(&self) -> Place {
        let permit = self
            .main
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Place {
            slow: Some(self.slow.clone()),
            state: Mutex::new(State {
                permit: Some(permit),
                in_slow_pool: false,
                running: 0,
                waiting: 0,
            }),
        }
    }
}

/// The soft limit on open files (1024, the usual default, if it cannot be read).
fn open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// One probe's place, held until it is dropped.
#[derive(Debug)]
pub struct Place {
    /// `None` for a probe outside any bound.
    slow: Option<Arc<Semaphore>>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    permit: Option<OwnedSemaphorePermit>,
    in_slow_pool: bool,
    /// Targets whose session is running.
    running: usize,
    /// Of those, the ones waiting on a slow connect.
    waiting: usize,
}

impl Place {
    /// A place outside any bound, for a single probe (tests, the demo).
    pub fn unbounded() -> Place {
        Place {
            slow: None,
            state: Mutex::new(State {
                permit: None,
                in_slow_pool: false,
                running: 0,
                waiting: 0,
            }),
        }
    }

    /// Whether the probe has moved to the slow pool.
    pub fn in_slow_pool(&self) -> bool {
        self.state.lock().expect("place lock").in_slow_pool
    }

    /// `n` more targets start their sessions.
    pub(crate) fn started(&self, n: usize) {
        self.update(|s| s.running += n);
    }

    /// A target's session ended.
    pub(crate) fn finished(&self) {
        self.update(|s| s.running = s.running.saturating_sub(1));
    }

    /// Awaits a target's connect, noting when it has become a slow one.
    pub(crate) async fn connect<F: Future>(&self, connect: F) -> F::Output {
        if self.slow.is_none() {
            return connect.await;
        }
        let mut connect = std::pin::pin!(connect);
        if let Ok(done) = tokio::time::timeout(SLOW_CONNECT, &mut connect).await {
            return done;
        }
        self.update(|s| s.waiting += 1);
        let done = connect.await;
        self.update(|s| s.waiting = s.waiting.saturating_sub(1));
        done
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().expect("place lock");
        change(&mut s);
        let all_waiting = s.running > 0 && s.waiting == s.running;
        if !all_waiting || s.in_slow_pool {
            return;
        }
        if let Some(slow) = &self.slow
            && let Ok(permit) = slow.clone().try_acquire_owned()
        {
            // Replacing the permit returns the main place.
            s.permit = Some(permit);
            s.in_slow_pool = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_connect_frees_the_main_place() {
        let limits = Limits::with_pools(1, 4);
        let place = limits.acquire().await;
        place.started(1);
        let never = std::future::pending::<()>();
        let waiting = tokio::time::timeout(SLOW_CONNECT * 3, place.connect(never));
        let next = async {
            let _second = limits.acquire().await;
            tokio::time::Instant::now()
        };
        let start = tokio::time::Instant::now();
        let (timed_out, got_place_at) = tokio::join!(waiting, next);
        assert!(timed_out.is_err());
        assert!(place.in_slow_pool());
        assert_eq!(got_place_at - start, SLOW_CONNECT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_connect_keeps_the_main_place() {
        let limits = Limits::with_pools(1, 4);
        let place = limits.acquire().await;
        place.started(1);
        let fast = tokio::time::sleep(SLOW_CONNECT / 2);
        place.connect(fast).await;
        assert!(!place.in_slow_pool());
        assert!(limits.main.try_acquire().is_err(), "still held");
    }

    #[tokio::test(start_paused = true)]
    async fn one_busy_target_keeps_the_place() {
        let limits = Limits::with_pools(1, 4);
        let place = limits.acquire().await;
        place.started(2);
        let slow = tokio::time::sleep(SLOW_CONNECT * 2);
        place.connect(slow).await;
        assert!(!place.in_slow_pool(), "the other target was still busy");
        drop(place);

        let place = limits.acquire().await;
        place.started(2);
        let slow = place.connect(tokio::time::sleep(SLOW_CONNECT * 2));
        let other = async {
            tokio::time::sleep(SLOW_CONNECT * 3 / 2).await;
            place.finished();
        };
        tokio::join!(slow, other);
        assert!(
            place.in_slow_pool(),
            "once the other ended, all left were waiting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_slow_pool_keeps_the_main_place() {
        let limits = Limits::with_pools(1, 1);
        let _taken = limits.slow.clone().try_acquire_owned().unwrap();
        let place = limits.acquire().await;
        place.started(1);
        place.connect(tokio::time::sleep(SLOW_CONNECT * 2)).await;
        assert!(!place.in_slow_pool());
        assert!(limits.main.try_acquire().is_err());
    }
}
