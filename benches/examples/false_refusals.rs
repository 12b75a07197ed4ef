#![allow(missing_docs)]
//! Two threads far below the limit: any refusal is a false one.
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop_core::Quota;
use backstop_core::clock::{Clock, QuantaClock};
use backstop_core::rate::SlidingWindow;

fn main() {
    let clock = QuantaClock::new();
    let limiter = Arc::new(SlidingWindow::with_clock(
        Quota::new(1 << 16, Duration::from_millis(1)).unwrap(),
        clock.clone(),
    ));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (l, c) = (limiter.clone(), clock.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let (mut ok, mut bad, mut worst) = (0u64, 0u64, 0u64);
                while start.elapsed() < Duration::from_secs(3) {
                    for _ in 0..1000 {
                        // At most one decision per 200 ns per thread: 10 000 per ms in
                        // all, far below the limit of 65 536 per ms.
                        let t0 = c.now_ns();
                        while c.now_ns() < t0 + 200 {
                            std::hint::spin_loop();
                        }
                        let now = c.now_ns();
                        match l.try_acquire_at(now) {
                            Ok(()) => ok += 1,
                            Err(e) => {
                                bad += 1;
                                worst = worst.max(e.retry_after().as_nanos() as u64);
                                let after = c.now_ns();
                                if bad < 5 {
                                    eprintln!(
                                        "refused at {now}: retry {:?}; decided {} us after the clock read",
                                        e.retry_after(),
                                        (after - now) / 1000
                                    );
                                }
                            }
                        }
                    }
                }
                (ok, bad, worst)
            })
        })
        .collect();
    for h in handles {
        println!("{:?}", h.join().unwrap());
    }
}
