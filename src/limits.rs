//! How many probes run at once, and how a wall of dead servers is kept from holding up the
//! live ones.
//!
//! Every connector's probe takes a place in the main pool (`[daemon] concurrency` places)
//! before it starts. The bound is there for what a working probe costs this host: the CPU of
//! a TLS handshake, and timings that still mean something because the host is not
//! overloaded. A probe that is only waiting for a server that does not answer costs none of
//! that, only a socket, yet it would keep its place for the whole connect timeout, and ten
//! thousand connectors with a few hundred black-holed ones would then take a timeout's length
//! per few hundred of them.
//!
//! So a connect still pending after [`SLOW_CONNECT`] counts as waiting on the network:
//! longer than almost any round trip on Earth, so the SYN or its answer was lost, or nothing
//! is listening. When every target a probe still runs is in such a wait, the probe gives its
//! main place to the next connector and waits in the slow pool instead. If its connect then
//! succeeds after all, it takes a main place again before it goes on, ahead of probes that
//! have not started (new probes queue for a main place one at a time, so a returning probe
//! waits behind at most one of them). When the slow pool is full, a probe keeps its main
//! place, as before. So the main pool bounds the probes at work exactly, and nothing about a
//! probe changes: its timeouts, stages and verdict are the same; only whose turn it is does.
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
pub const SLOW_CONNECT: Duration = Duration::from_millis(250);

/// The pools of a run (`probe --all`) or of a daemon configuration.
#[derive(Debug)]
pub struct Limits {
    pools: Arc<Pools>,
}

#[derive(Debug)]
struct Pools {
    main: Arc<Semaphore>,
    /// New probes pass one at a time before they queue for a main place, so that a probe
    /// coming back from the slow pool queues behind at most one of them.
    turnstile: Semaphore,
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
            pools: Arc::new(Pools {
                main: Arc::new(Semaphore::new(main)),
                turnstile: Semaphore::new(1),
                slow: Arc::new(Semaphore::new(slow)),
            }),
        }
    }

    /// Waits for a main place (first come, first served, after returning probes).
    pub async fn acquire(&self) -> Place {
        let permit = {
            let _turn = self
                .pools
                .turnstile
                .acquire()
                .await
                .expect("the semaphore is never closed");
            main_place(&self.pools).await
        };
        Place {
            pools: Some(self.pools.clone()),
            state: Mutex::new(State {
                held: Held::Main { _permit: permit },
                running: 0,
                waiting: 0,
            }),
        }
    }
}

async fn main_place(pools: &Pools) -> OwnedSemaphorePermit {
    pools
        .main
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
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
    pools: Option<Arc<Pools>>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    held: Held,
    /// Targets whose session is running.
    running: usize,
    /// Of those, the ones waiting on a slow connect.
    waiting: usize,
}

/// Which pool a probe is counted in; the permit is given back when it is dropped.
#[derive(Debug)]
enum Held {
    Unbounded,
    Main { _permit: OwnedSemaphorePermit },
    Slow { _permit: OwnedSemaphorePermit },
}

impl Place {
    /// A place outside any bound, for a single probe (tests, the demo).
    pub fn unbounded() -> Place {
        Place {
            pools: None,
            state: Mutex::new(State {
                held: Held::Unbounded,
                running: 0,
                waiting: 0,
            }),
        }
    }

    /// Whether the probe is waiting in the slow pool.
    pub fn in_slow_pool(&self) -> bool {
        matches!(self.lock().held, Held::Slow { .. })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("place lock")
    }

    /// `n` more targets start their sessions.
    pub(crate) fn started(&self, n: usize) {
        self.update(|s| s.running += n);
    }

    /// A target's session ended.
    pub(crate) fn finished(&self) {
        self.update(|s| s.running = s.running.saturating_sub(1));
    }

    /// Awaits a target's connect, noting when it has become a slow one. Call
    /// [`Place::resume`] before the target works on.
    pub(crate) async fn connect<F: Future>(&self, connect: F) -> F::Output {
        if self.pools.is_none() {
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

    /// Takes a main place again if the probe gave its place away while it waited.
    pub(crate) async fn resume(&self) {
        let Some(pools) = &self.pools else { return };
        if !self.in_slow_pool() {
            return;
        }
        let permit = main_place(pools).await;
        let mut s = self.lock();
        if let Held::Slow { .. } = s.held {
            // Replacing the slow permit returns the slow place.
            s.held = Held::Main { _permit: permit };
        }
        // Otherwise another target of the probe took one first, and this one goes back.
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        change(&mut s);
        let all_waiting = s.running > 0 && s.waiting == s.running;
        if !all_waiting || !matches!(s.held, Held::Main { .. }) {
            return;
        }
        if let Some(pools) = &self.pools
            && let Ok(permit) = pools.slow.clone().try_acquire_owned()
        {
            // Replacing the main permit gives the main place to the next probe.
            s.held = Held::Slow { _permit: permit };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Instant, sleep};

    #[tokio::test(start_paused = true)]
    async fn a_slow_connect_gives_its_main_place_away() {
        let limits = Limits::with_pools(1, 4);
        let place = limits.acquire().await;
        place.started(1);
        let start = Instant::now();
        let waiting = tokio::time::timeout(
            SLOW_CONNECT * 3,
            place.connect(std::future::pending::<()>()),
        );
        let next = async {
            let _second = limits.acquire().await;
            Instant::now()
        };
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
        place.connect(sleep(SLOW_CONNECT / 2)).await;
        assert!(!place.in_slow_pool());
        assert_eq!(limits.pools.main.available_permits(), 0, "still held");
    }

    #[tokio::test(start_paused = true)]
    async fn one_busy_target_keeps_the_place() {
        let limits = Limits::with_pools(1, 4);
        let place = limits.acquire().await;
        place.started(2);
        place.connect(sleep(SLOW_CONNECT * 2)).await;
        assert!(!place.in_slow_pool(), "the other target was still busy");
        drop(place);

        let place = limits.acquire().await;
        place.started(2);
        let slow = place.connect(sleep(SLOW_CONNECT * 4));
        let other = async {
            sleep(SLOW_CONNECT * 2).await;
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
        let _taken = limits.pools.slow.clone().try_acquire_owned().unwrap();
        let place = limits.acquire().await;
        place.started(1);
        place.connect(sleep(SLOW_CONNECT * 2)).await;
        assert!(!place.in_slow_pool());
        assert_eq!(limits.pools.main.available_permits(), 0);
    }

    /// A late connect takes a main place again before it works, ahead of new probes but
    /// behind the one already queued.
    #[tokio::test(start_paused = true)]
    async fn a_late_connect_takes_a_main_place_again_first() {
        let limits = Limits::with_pools(1, 4);
        let late = limits.acquire().await;
        late.started(1);
        let order = Mutex::new(Vec::new());
        let late_probe = async {
            late.connect(sleep(SLOW_CONNECT * 2)).await;
            late.resume().await;
            order.lock().unwrap().push("late");
            sleep(SLOW_CONNECT).await;
            drop(late);
        };
        let new_probe = |name: &'static str, after: Duration| {
            let (limits, order) = (&limits, &order);
            async move {
                sleep(after).await;
                let _place = limits.acquire().await;
                order.lock().unwrap().push(name);
                sleep(SLOW_CONNECT * 2).await;
            }
        };
        tokio::join!(
            late_probe,
            new_probe("first", SLOW_CONNECT / 2),
            new_probe("second", SLOW_CONNECT * 3 / 2),
            new_probe("third", SLOW_CONNECT * 3 / 2),
        );
        // The late one connects at 2 (first holds the place until 3, second queued for it
        // at 1.5), so it comes after second but before third, which queued only at 3.
        assert_eq!(
            order.into_inner().unwrap(),
            ["first", "second", "late", "third"]
        );
        assert_eq!(limits.pools.slow.available_permits(), 4);
    }
}
