//! `KeyedSlidingWindow` beside governor's keyed limiter (`RateLimiter::keyed`, DashMap
//! store), plus the map candidates the keyed limiter was chosen from, and bytes per key.
//!
//! Run: `cargo bench -p backstop-benches --bench keyed -- --warm-up-time 1 --measurement-time 3`.
//! Before criterion starts, the memory figures are printed (a counting allocator is
//! this binary's global allocator; it adds one relaxed atomic add per allocation to both
//! sides alike).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backstop_core::clock::{ManualClock, QuantaClock};
use backstop_core::rate::KeyedSlidingWindow;
use backstop_testkit::alloc::CountingAllocator;
use criterion::Criterion;
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn live_bytes() -> isize {
    CountingAllocator::live_bytes()
}

/// Hot keys: enough that the map is not trivially cached, few enough to stay hot.
const HOT_KEYS: u64 = 1024;
const MINUTE: Duration = Duration::from_secs(60);

fn governor_quota(limit: u32, window: Duration) -> Quota {
    Quota::with_period(window / limit)
        .unwrap()
        .allow_burst(NonZeroU32::new(limit).unwrap())
}

/// The map candidates: a hit on one of 1 024 keys.
fn map_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed/map_lookup");
    let papaya = papaya::HashMap::new();
    let scc = scc::HashIndex::new();
    let dashmap = dashmap::DashMap::new();
    for key in 0..HOT_KEYS {
        papaya.pin().insert(key, key);
        let _ = scc.insert_sync(key, key);
        dashmap.insert(key, key);
    }
    let mut key = 0;
    group.bench_function("papaya_get", |b| {
        b.iter(|| {
            key = (key + 1) % HOT_KEYS;
            let guard = papaya.guard();
            black_box(papaya.get(&key, &guard).copied())
        })
    });
    group.bench_function("scc_hashindex_peek", |b| {
        b.iter(|| {
            key = (key + 1) % HOT_KEYS;
            black_box(scc.peek_with(&key, |_, v| *v))
        })
    });
    group.bench_function("dashmap_get", |b| {
        b.iter(|| {
            key = (key + 1) % HOT_KEYS;
            black_box(dashmap.get(&key).map(|v| *v))
        })
    });
    group.finish();
}

/// Hot existing keys on the real clock at the original default (30 per minute): after
/// the first 30 per key, decisions are refusals, the common case under abuse. 16 keys
/// fit in cache on both sides; 1 024 keys of backstop (about 1 KiB each, the price of an
/// exact window) do not, while governor's (16 bytes each, inline in the map) still do.
fn hot_real_clock(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed/hot_30_per_min");
    for keys in [16u64, HOT_KEYS] {
        let backstop = KeyedSlidingWindow::<u64, QuantaClock>::new(
            backstop_core::Quota::new(30, MINUTE).unwrap(),
            4096,
        )
        .unwrap();
        let governor = RateLimiter::keyed(governor_quota(30, MINUTE));
        for key in 0..keys {
            let _ = backstop.try_acquire(&key);
            let _ = governor.check_key(&key);
        }
        for threads in [1u64, 2] {
            group.bench_function(format!("backstop_{keys}keys_{threads}t"), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads as usize, iters, |t, i| {
                        let _ = black_box(backstop.try_acquire(&((i + t * keys / 2) % keys)));
                    })
                })
            });
            group.bench_function(format!("governor_{keys}keys_{threads}t"), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads as usize, iters, |t, i| {
                        let _ = black_box(governor.check_key(&((i + t * keys / 2) % keys)));
                    })
                })
            });
        }
    }
    group.finish();
}

/// Hot existing keys that are always admitted: virtual time moves one window per lap
/// over the keys, so every decision is an admission (the ring's CAS path).
fn hot_admitted(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed/hot_admitted");
    let window = Duration::from_millis(1);
    let window_ns = window.as_nanos() as u64;
    for keys in [16u64, HOT_KEYS] {
        let backstop = KeyedSlidingWindow::<u64, _>::with_clock(
            backstop_core::Quota::new(30, window).unwrap(),
            4096,
            ManualClock::new(),
        )
        .unwrap();
        let clock = FakeRelativeClock::default();
        let governor = RateLimiter::dashmap_with_clock(governor_quota(30, window), clock.clone());
        let mut i = 0u64;
        group.bench_function(format!("backstop_{keys}keys_1t"), |b| {
            b.iter(|| {
                i += 1;
                let now_ns = (i / keys) * window_ns;
                black_box(backstop.try_acquire_at(&(i % keys), now_ns)).unwrap();
            })
        });
        let mut i = 0u64;
        group.bench_function(format!("governor_{keys}keys_1t"), |b| {
            b.iter(|| {
                i += 1;
                if i % keys == 0 {
                    clock.advance(window);
                }
                black_box(governor.check_key(&(i % keys))).unwrap();
            })
        });
    }
    group.finish();
}

/// Key churn: every request is a new key (an attacker rotating keys). Virtual time
/// moves 1 µs per request and windows last 1 ms, so about 1 000 keys are live at once;
/// backstop tracks at most 4 096 and reclaims, governor's map grows with every key (it
/// is rebuilt every 2¹⁷ keys here, so that the benchmark's memory stays bounded).
fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed/churn");
    const CHUNK: u64 = 1 << 17;
    let window = Duration::from_millis(1);
    group.bench_function("backstop", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = CHUNK.min(iters - done);
                let keyed = KeyedSlidingWindow::<u64, _>::with_clock(
                    backstop_core::Quota::new(30, window).unwrap(),
                    4096,
                    ManualClock::new(),
                )
                .unwrap();
                let start = Instant::now();
                for key in 0..n {
                    let _ = black_box(keyed.try_acquire_at(&key, key * 1_000));
                }
                elapsed += start.elapsed();
                done += n;
            }
            elapsed
        })
    });
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = CHUNK.min(iters - done);
                let clock = FakeRelativeClock::default();
                let governor =
                    RateLimiter::dashmap_with_clock(governor_quota(30, window), clock.clone());
                let start = Instant::now();
                for key in 0..n {
                    if key % 1024 == 0 {
                        clock.advance(Duration::from_micros(1024));
                    }
                    let _ = black_box(governor.check_key(&key));
                }
                elapsed += start.elapsed();
                done += n;
            }
            elapsed
        })
    });
    group.finish();
}

/// Runs `op(thread, i)` `iters` times on each of `threads` threads at once; the time
/// is the slowest thread's, so the result is time per operation per thread.
fn on_threads(threads: usize, iters: u64, op: impl Fn(u64, u64) + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (op, barrier) = (&op, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        op(t as u64, i);
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
    })
}

/// Bytes per key with the table full of hot keys, and heap after a million rotated keys.
fn memory_report() {
    const KEYS: u64 = 10_000;
    println!("keyed memory (u64 keys, counting allocator)");
    for limit in [4u32, 30] {
        let before = live_bytes();
        let keyed = KeyedSlidingWindow::<u64, _>::with_clock(
            backstop_core::Quota::new(limit, MINUTE).unwrap(),
            KEYS as usize,
            ManualClock::new(),
        )
        .unwrap();
        for key in 0..KEYS {
            keyed.try_acquire(&key).unwrap();
        }
        let backstop = (live_bytes() - before) as u64 / KEYS;
        drop(keyed);
        let before = live_bytes();
        let governor = RateLimiter::dashmap_with_clock(
            governor_quota(limit, MINUTE),
            FakeRelativeClock::default(),
        );
        for key in 0..KEYS {
            governor.check_key(&key).unwrap();
        }
        let peer = (live_bytes() - before) as u64 / KEYS;
        drop(governor);
        println!(
            "  limit {limit}: backstop {backstop} B/key (documented {}), governor {peer} B/key",
            KeyedSlidingWindow::<u64, ManualClock>::bytes_per_key(limit)
        );
    }

    const ROTATED: u64 = 1_000_000;
    let window = Duration::from_millis(1);
    let before = live_bytes();
    let keyed = KeyedSlidingWindow::<u64, _>::with_clock(
        backstop_core::Quota::new(30, window).unwrap(),
        4096,
        ManualClock::new(),
    )
    .unwrap();
    let mut peak = 0;
    for key in 0..ROTATED {
        let _ = keyed.try_acquire_at(&key, key * 1_000);
        if key % 4096 == 0 {
            peak = peak.max(live_bytes() - before);
        }
    }
    let backstop_end = live_bytes() - before;
    drop(keyed);
    let before = live_bytes();
    let clock = FakeRelativeClock::default();
    let governor = RateLimiter::dashmap_with_clock(governor_quota(30, window), clock.clone());
    for key in 0..ROTATED {
        if key % 1024 == 0 {
            clock.advance(Duration::from_micros(1024));
        }
        let _ = governor.check_key(&key);
    }
    let governor_end = live_bytes() - before;
    drop(governor);
    println!(
        "  after {ROTATED} rotated keys (1 per µs, 1 ms windows): backstop {} KiB (peak {} KiB, max_keys 4096), governor {} KiB (no retain_recent)",
        backstop_end / 1024,
        peak / 1024,
        governor_end / 1024
    );
}

fn main() {
    // Only under `cargo bench` (which passes `--bench`), not when tests run the target.
    if std::env::args().any(|arg| arg == "--bench") {
        memory_report();
    }
    let mut c = Criterion::default().configure_from_args();
    map_lookup(&mut c);
    hot_real_clock(&mut c);
    hot_admitted(&mut c);
    churn(&mut c);
    c.final_summary();
}
