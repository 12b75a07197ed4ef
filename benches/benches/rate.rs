//! The exact limiter side by side with governor (GCRA) and the original algorithm
//! (`Mutex<VecDeque<Instant>>`), per decision, on one thread and two contending threads.
//!
//! `cargo bench -p backstop-benches --bench rate`

// criterion_group! expands to an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use backstop_benches::MutexVecDequeLimiter;
use backstop_core::rate::SlidingWindow;
use criterion::{Criterion, criterion_group, criterion_main};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A config that never runs out on the admit path: 1024 per 1 µs (each slot comes round
/// again only after 1024 decisions, far more than 1 µs), small enough to stay in L1.
const ADMIT_LIMIT: u32 = 1024;
const ADMIT_WINDOW: Duration = Duration::from_micros(1);
/// A config that is always full on the deny path: 1 per hour, used up.
const DENY_WINDOW: Duration = Duration::from_secs(3600);

trait Limiter: Send + Sync + 'static {
    fn decide(&self) -> bool;
}

impl Limiter for SlidingWindow {
    #[inline]
    fn decide(&self) -> bool {
        self.try_acquire().is_ok()
    }
}

impl Limiter for DefaultDirectRateLimiter {
    #[inline]
    fn decide(&self) -> bool {
        self.check().is_ok()
    }
}

impl Limiter for MutexVecDequeLimiter {
    #[inline]
    fn decide(&self) -> bool {
        self.is_allowed()
    }
}

fn backstop(limit: u32, window: Duration) -> SlidingWindow {
    SlidingWindow::new(backstop_core::Quota::new(limit, window).unwrap())
}

fn governor(limit: u32, window: Duration) -> DefaultDirectRateLimiter {
    // GCRA's period has nanosecond resolution: at least 1 ns per cell.
    let period = (window / limit).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .unwrap()
        .allow_burst(NonZeroU32::new(limit).unwrap());
    RateLimiter::direct(quota)
}

fn mutex_port(limit: u32, window: Duration) -> MutexVecDequeLimiter {
    MutexVecDequeLimiter::new(limit as usize, window)
}

fn build<L: Limiter>(make: fn(u32, Duration) -> L, admit: bool) -> Arc<L> {
    if admit {
        Arc::new(make(ADMIT_LIMIT, ADMIT_WINDOW))
    } else {
        let limiter = make(1, DENY_WINDOW);
        assert!(limiter.decide(), "the single slot is used up first");
        assert!(!limiter.decide());
        Arc::new(limiter)
    }
}

/// Two threads each make `iters` decisions on one shared limiter; the time is the wall
/// time of the slower thread divided by `iters`, i.e. per decision per thread.
fn contended<L: Limiter>(limiter: &Arc<L>, iters: u64) -> Duration {
    let threads = 2;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (limiter, barrier) = (Arc::clone(limiter), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(limiter.decide());
                }
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap()
}

/// One peer on one path, single-threaded and with two threads.
fn peer<L: Limiter>(c: &mut Criterion, name: &str, make: fn(u32, Duration) -> L) {
    for (path, admit) in [("admit", true), ("deny", false)] {
        let limiter = build(make, admit);
        c.bench_function(&format!("rate/1_thread/{path}/{name}"), |b| {
            b.iter(|| black_box(limiter.decide()))
        });
        let limiter = build(make, admit);
        c.bench_function(&format!("rate/2_threads/{path}/{name}"), |b| {
            b.iter_custom(|iters| contended(&limiter, iters))
        });
    }
}

fn all(c: &mut Criterion) {
    peer(c, "backstop", backstop);
    peer(c, "governor", governor);
    peer(c, "mutex_vecdeque", mutex_port);
}

criterion_group!(benches, all);
criterion_main!(benches);
