//! Quick interleaved comparison for noisy machines: the minimum over many short runs of
//! each peer, runs interleaved so load affects all alike. `cargo run --release -p
//! backstop-benches --example rate_quick`
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backstop_core::rate::SlidingWindow;
use governor::{Quota, RateLimiter};

fn min_ns_per_op(mut f: impl FnMut() -> bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..200 {
        let start = Instant::now();
        for _ in 0..20_000 {
            black_box(f());
        }
        best = best.min(start.elapsed().as_nanos() as f64 / 20_000.0);
    }
    best
}

fn main() {
    let bs = SlidingWindow::new(backstop_core::Quota::new(1024, Duration::from_micros(1)).unwrap());
    let gov = RateLimiter::direct(
        Quota::with_period(Duration::from_nanos(1))
            .unwrap()
            .allow_burst(NonZeroU32::new(1024).unwrap()),
    );
    let bs_deny =
        SlidingWindow::new(backstop_core::Quota::new(1, Duration::from_secs(3600)).unwrap());
    bs_deny.try_acquire().unwrap();
    let gov_deny = RateLimiter::direct(Quota::per_hour(NonZeroU32::new(1).unwrap()));
    gov_deny.check().unwrap();
    let clock = quanta::Clock::new();
    for round in 0..3 {
        let a = min_ns_per_op(|| bs.try_acquire().is_ok());
        let b = min_ns_per_op(|| gov.check().is_ok());
        let c = min_ns_per_op(|| bs_deny.try_acquire().is_ok());
        let d = min_ns_per_op(|| gov_deny.check().is_ok());
        let e = min_ns_per_op(|| clock.now() > clock.now());
        let now_ns = std::cell::Cell::new(0u64);
        let f = min_ns_per_op(|| {
            now_ns.set(now_ns.get() + 1);
            bs.try_acquire_at(now_ns.get()).is_ok()
        });
        println!(
            "round {round}: admit backstop {a:.2} governor {b:.2} ratio {:.2} | deny backstop {c:.2} governor {d:.2} ratio {:.2} | 2 clock reads {e:.2} | try_acquire_at {f:.2} ratio {:.2}",
            a / b,
            c / d,
            f / b
        );
    }
}
