//! The single-thread admit and deny paths of `SlidingWindow` and governor, each in its own
//! function that is never inlined, for an instruction count that no load can disturb:
//!
//! ```text
//! cargo build --release -p backstop-benches --example rate_count
//! valgrind --tool=callgrind --callgrind-out-file=rate.out target/release/examples/rate_count
//! callgrind_annotate --inclusive=yes rate.out | grep rate_count::
//! ```
//!
//! Each function makes `CALLS` decisions; its inclusive count divided by `CALLS` is the
//! instructions per decision (the loop's own few included, alike for both).
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use backstop_core::rate::SlidingWindow;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

const CALLS: u32 = 1_000_000;

#[inline(never)]
fn backstop_admit(limiter: &SlidingWindow) -> u32 {
    (0..CALLS)
        .filter(|_| black_box(limiter).try_acquire().is_ok())
        .count() as u32
}

#[inline(never)]
fn governor_admit(limiter: &DefaultDirectRateLimiter) -> u32 {
    (0..CALLS)
        .filter(|_| black_box(limiter).check().is_ok())
        .count() as u32
}

#[inline(never)]
fn backstop_deny(limiter: &SlidingWindow) -> u32 {
    (0..CALLS)
        .filter(|_| black_box(limiter).try_acquire().is_err())
        .count() as u32
}

#[inline(never)]
fn governor_deny(limiter: &DefaultDirectRateLimiter) -> u32 {
    (0..CALLS)
        .filter(|_| black_box(limiter).check().is_err())
        .count() as u32
}

fn main() {
    // As `rate_quick`: more room than the calls can fill, and a window already full.
    let admit =
        SlidingWindow::new(backstop_core::Quota::new(1024, Duration::from_micros(1)).unwrap());
    let gov = RateLimiter::direct(
        Quota::with_period(Duration::from_nanos(1))
            .unwrap()
            .allow_burst(NonZeroU32::new(1024).unwrap()),
    );
    let deny = SlidingWindow::new(backstop_core::Quota::new(1, Duration::from_secs(3600)).unwrap());
    deny.try_acquire().unwrap();
    let gov_deny = RateLimiter::direct(Quota::per_hour(NonZeroU32::new(1).unwrap()));
    gov_deny.check().unwrap();
    let counts = [
        backstop_admit(&admit),
        governor_admit(&gov),
        backstop_deny(&deny),
        governor_deny(&gov_deny),
    ];
    assert!(counts.iter().all(|&n| n == CALLS), "{counts:?}");
    println!("{CALLS} decisions per path: {counts:?}");
}
