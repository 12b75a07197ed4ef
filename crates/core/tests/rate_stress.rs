//! Real threads on the real clock hammer one limiter across many windows; every admission
//! is recorded with the clock reading it was decided on, and the record must satisfy the
//! window invariant: no `limit + 1` admissions within any span shorter than `window`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::{Clock, QuantaClock};
use backstop_core::rate::SlidingWindow;

/// Runs until `windows × limit` admissions were recorded (each needs a window to pass, so
/// that many windows went by), however loaded the machine is; the cap only stops a hang.
fn hammer(threads: usize, limit: u32, window: Duration, windows: u64) {
    let clock = QuantaClock::new();
    let limiter = Arc::new(SlidingWindow::with_clock(
        Quota::new(limit, window).unwrap(),
        clock.clone(),
    ));
    let target = windows * u64::from(limit);
    let admitted_total = Arc::new(AtomicU64::new(0));
    let cap_ns = Duration::from_secs(60).as_nanos() as u64;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (limiter, clock, barrier, total) = (
                limiter.clone(),
                clock.clone(),
                barrier.clone(),
                admitted_total.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let (mut admitted, mut refused) = (Vec::new(), 0u64);
                while total.load(Ordering::Relaxed) < target {
                    let now = clock.now_ns();
                    assert!(now < cap_ns, "no progress within the cap");
                    match limiter.try_acquire_at(now) {
                        Ok(()) => {
                            admitted.push(now);
                            total.fetch_add(1, Ordering::Relaxed);
                        }
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
    for (i, span) in all.windows(limit + 1).enumerate() {
        let span_ns = span[limit] - span[0];
        assert!(
            span_ns >= window_ns,
            "{} admissions within {span_ns} ns (< {window_ns}) starting at #{i}",
            limit + 1
        );
    }
    // Both paths were exercised, across at least `windows` windows.
    assert!(refused > 0, "never refused");
    assert!(all.len() as u64 >= target);
    assert!(all[all.len() - 1] - all[0] >= (windows - 1) * window_ns);
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
