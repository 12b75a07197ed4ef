//! Two threads contending on one limiter, interleaved peers, minimum over many rounds.
//! `cargo run --release -p backstop-benches --example rate_quick2`
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use backstop_benches::MutexVecDequeLimiter;
use backstop_core::rate::SlidingWindow;
use governor::{Quota, RateLimiter};

fn two_threads(f: Arc<dyn Fn() -> bool + Send + Sync>) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..15 {
        let barrier = Arc::new(Barrier::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (f, b) = (f.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    let start = Instant::now();
                    for _ in 0..500_000 {
                        black_box(f());
                    }
                    start.elapsed()
                })
            })
            .collect();
        let t = hs.into_iter().map(|h| h.join().unwrap()).max().unwrap();
        best = best.min(t.as_nanos() as f64 / 500_000.0);
    }
    best
}

fn main() {
    let bs = Arc::new(SlidingWindow::new(
        backstop_core::Quota::new(1024, Duration::from_micros(1)).unwrap(),
    ));
    let gov = Arc::new(RateLimiter::direct(
        Quota::with_period(Duration::from_nanos(1))
            .unwrap()
            .allow_burst(NonZeroU32::new(1024).unwrap()),
    ));
    let mx = Arc::new(MutexVecDequeLimiter::new(1024, Duration::from_micros(1)));
    for round in 0..3 {
        let a = {
            let l = bs.clone();
            two_threads(Arc::new(move || l.try_acquire().is_ok()))
        };
        let b = {
            let l = gov.clone();
            two_threads(Arc::new(move || l.check().is_ok()))
        };
        let c = {
            let l = mx.clone();
            two_threads(Arc::new(move || l.is_allowed()))
        };
        println!(
            "round {round}: 2-thread admit per decision: backstop {a:.1} governor {b:.1} mutex {c:.1} | vs governor {:.2} | mutex/backstop {:.2}",
            a / b,
            c / a
        );
    }
}
