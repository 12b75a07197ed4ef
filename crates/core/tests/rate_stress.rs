//! Real threads on the real clock hammer one limiter across many windows; every admission
//! is recorded with the clock reading it was decided on, and the record must satisfy the
//! window invariant: no `limit + 1` admissions within any span shorter than `window`.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use backstop_core::clock::{Clock, QuantaClock};
use backstop_core::rate::SlidingWindow;

fn hammer(threads: usize, limit: u32, window: Duration, windows: u64) {
    let clock = QuantaClock::new();
    let limiter = Arc::new(SlidingWindow::with_clock(limit, window, clock.clone()).unwrap());
    let end_ns = window.as_nanos() as u64 * windows;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (limiter, clock, barrier) = (limiter.clone(), clock.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let (mut admitted, mut refused) = (Vec::new(), 0u64);
                loop {
                    let now = clock.now_ns();
                    if now > end_ns {
                        break;
                    }
                    match limiter.try_acquire_at(now) {
                        Ok(()) => admitted.push(now),
                        Err(_) => refused += 1,
                    }
                }
                (admitted, refused)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut refused = 0;
    for h in handles {
        let (a, r) = h.join().unwrap();
        all.extend(a);
        refused += r;
    }
    all.sort_unstable();
    let window_ns = window.as_nanos() as u64;
    let limit = limit as usize;
    for (i, pair) in all.windows(limit + 1).enumerate() {
        let span = pair[limit] - pair[0];
        assert!(
            span >= window_ns,
            "{} admissions within {span} ns (< {window_ns}) starting at #{i}",
            limit + 1
        );
    }
    // The test must actually have exercised both paths across many windows.
    assert!(refused > 0, "never refused");
    assert!(
        all.len() as u64 >= windows * limit as u64 / 4,
        "only {} admissions in {windows} windows",
        all.len()
    );
}

#[test]
fn two_threads_never_exceed_the_window() {
    hammer(2, 8, Duration::from_micros(500), 400);
}

#[test]
fn four_threads_limit_one() {
    hammer(4, 1, Duration::from_micros(200), 500);
}

#[test]
fn three_threads_large_limit() {
    hammer(3, 200, Duration::from_millis(2), 100);
}
