//! Quick interleaved comparison of the keyed limiters for noisy machines: the minimum
//! over many short runs of each peer, runs interleaved so that load affects all alike.
//! `cargo run --release -p backstop-benches --example keyed_quick`
#![allow(missing_docs)]

use std::cell::Cell;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backstop_core::clock::{ManualClock, QuantaClock};
use backstop_core::rate::KeyedSlidingWindow;
use backstop_core::{Admission, Limits, RequestClass};
use governor::clock::FakeRelativeClock;
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

/// Key churn: the minimum over runs of 20 000 new keys, 1 µs apart, into a limiter made
/// fresh (outside the timing) for each run.
fn min_ns_per_new_key<L>(make: impl Fn() -> L, mut admit: impl FnMut(&L, u64) -> bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..50 {
        let limiter = make();
        let start = Instant::now();
        for key in 0..20_000u64 {
            black_box(admit(&limiter, key));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / 20_000.0);
        drop(limiter);
    }
    best
}

fn quota(limit: u32, window: Duration) -> Quota {
    Quota::with_period(window / limit)
        .unwrap()
        .allow_burst(NonZeroU32::new(limit).unwrap())
}

fn main() {
    let minute = Duration::from_secs(60);
    let window = Duration::from_millis(1);
    let window_ns = window.as_nanos() as u64;
    for round in 0..3 {
        // About 1 000 keys live at once; backstop keeps at most 4 096.
        let a = min_ns_per_new_key(
            || {
                KeyedSlidingWindow::<u64, _>::with_clock(
                    backstop_core::Quota::new(30, window).unwrap(),
                    4096,
                    ManualClock::new(),
                )
                .unwrap()
            },
            |limiter, key| limiter.try_acquire_at(&key, key * 1_000).is_ok(),
        );
        let b = min_ns_per_new_key(
            || {
                let clock = FakeRelativeClock::default();
                (
                    RateLimiter::dashmap_with_clock(quota(30, window), clock.clone()),
                    clock,
                )
            },
            |(limiter, clock), key| {
                if key % 1024 == 0 {
                    clock.advance(Duration::from_micros(1024));
                }
                limiter.check_key(&key).is_ok()
            },
        );
        println!(
            "churn, round {round}: new key backstop {a:.1} governor {b:.1} ratio {:.2}",
            a / b
        );
    }
    // The front door end to end, admitted each time (the ticket dropped at once): the
    // global limit alone, and with the per-client stage for 16 clients.
    let mut limits = Limits::default();
    limits.rate.limit = 1 << 20;
    limits.rate.window = Duration::from_millis(1);
    limits.resources.enabled = false;
    let global = Admission::new(limits.clone()).unwrap();
    let per_key = Admission::new(limits)
        .unwrap()
        .with_per_key(backstop_core::Quota::new(4096, window).unwrap(), 64)
        .unwrap();
    let clients: Vec<String> = (0..16).map(|i| format!("client-{i}")).collect();
    let n = Cell::new(0usize);
    for round in 0..3 {
        let a = min_ns_per_op(|| global.try_admit().into_result().is_ok());
        let b = min_ns_per_op(|| {
            n.set(n.get() + 1);
            let key = &clients[n.get() % clients.len()];
            per_key
                .admit(Some(key.as_str()), RequestClass::Normal)
                .into_result()
                .is_ok()
        });
        println!(
            "admission, round {round}: try_admit {a:.1} admit(key) {b:.1} ratio {:.2}",
            b / a
        );
    }
    for keys in [16u64, 1024] {
        // Refusals on the real clock: every key has used its 30 per minute.
        let bs_deny = KeyedSlidingWindow::<u64, QuantaClock>::new(
            backstop_core::Quota::new(30, minute).unwrap(),
            4096,
        )
        .unwrap();
        let gov_deny = RateLimiter::keyed(quota(30, minute));
        for key in 0..keys {
            for _ in 0..30 {
                let _ = bs_deny.try_acquire(&key);
                let _ = gov_deny.check_key(&key);
            }
        }
        // Admissions on virtual time: one window per lap over the keys.
        let bs_admit = KeyedSlidingWindow::<u64, _>::with_clock(
            backstop_core::Quota::new(30, window).unwrap(),
            4096,
            ManualClock::new(),
        )
        .unwrap();
        let gov_clock = FakeRelativeClock::default();
        let gov_admit = RateLimiter::dashmap_with_clock(quota(30, window), gov_clock.clone());
        let papaya_map = papaya::HashMap::new();
        let dash_map = dashmap::DashMap::new();
        for key in 0..keys {
            papaya_map.pin().insert(key, [0u64; 2]);
            dash_map.insert(key, [0u64; 2]);
        }
        let (i, j) = (Cell::new(0u64), Cell::new(0u64));
        for round in 0..3 {
            let next = |c: &Cell<u64>| {
                c.set(c.get() + 1);
                c.get()
            };
            let a = min_ns_per_op(|| bs_deny.try_acquire(&(next(&i) % keys)).is_ok());
            let b = min_ns_per_op(|| gov_deny.check_key(&(next(&i) % keys)).is_ok());
            let c = min_ns_per_op(|| {
                let n = next(&j);
                bs_admit
                    .try_acquire_at(&(n % keys), (n / keys) * window_ns)
                    .is_ok()
            });
            let d = min_ns_per_op(|| {
                let n = next(&j);
                if n % keys == 0 {
                    gov_clock.advance(window);
                }
                gov_admit.check_key(&(n % keys)).is_ok()
            });
            // The maps alone: papaya's guarded get against dashmap's locked get.
            let e = min_ns_per_op(|| {
                let guard = papaya_map.guard();
                papaya_map.get(&(next(&i) % keys), &guard).is_some()
            });
            let f = min_ns_per_op(|| dash_map.get(&(next(&i) % keys)).is_some());
            println!(
                "{keys} keys, round {round}: deny backstop {a:.1} governor {b:.1} ratio {:.2} | admit backstop {c:.1} governor {d:.1} ratio {:.2} | lookup papaya {e:.1} dashmap {f:.1}",
                a / b,
                c / d
            );
        }
    }
}
