//! Admission control against its peers, in one run:
//!
//! - `counters/*`: `QueueGate` enter+drop and `JobSlots` acquire+drop against
//!   `tokio::sync::Semaphore::try_acquire` (+ the owned variant, which like our tickets
//!   holds an `Arc`) and a `Mutex<usize>`, on 1 and 2 threads.
//! - `resource_check/*`: `ResourceGate::check` against refreshing sysinfo and `statvfs`
//!   on every check (what the original did with psutil).
//! - `front_door/*`: `Admission::try_admit` (+ dropping the ticket) against
//!   `SlidingWindow::try_acquire` alone, and against the limiter and queue called
//!   directly (what the front door adds: the config swap's load and the metrics).
//!
//! Multi-thread figures are the wall time of one operation per thread: each of the `n`
//! threads does `iters` operations, all start together, and the slowest thread's time
//! is reported.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use backstop_core::Quota;
use backstop_core::clock::{Clock, ManualClock};
use backstop_core::jobs::{self, JobBounds};
use backstop_core::rate::SlidingWindow;
use backstop_core::resources::{ResourceGate, ResourceLimits, ResourceReading};
use backstop_core::{Admission, Decision, Limits};
use criterion::{Criterion, criterion_main};
use tokio::sync::Semaphore;

/// Bounds high enough that no benchmarked operation is ever refused.
const ROOM: u32 = 1 << 16;

/// Runs `op` `iters` times on each of `threads` threads started together; returns the
/// slowest thread's time.
fn on_threads<F>(threads: usize, iters: u64, op: F) -> Duration
where
    F: Fn() + Sync,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        op();
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn counters(c: &mut Criterion) {
    let bounds = JobBounds {
        max_queue: ROOM,
        critical_reserve: 0,
        max_jobs: ROOM,
    };
    let (queue, slots) = jobs::counters(bounds).expect("valid bounds");
    let semaphore = Arc::new(Semaphore::new(ROOM as usize));
    let mutex = Mutex::new(0usize);

    let queue_op = || drop(black_box(queue.try_enter().expect("room")));
    let slots_op = || drop(black_box(slots.try_acquire().expect("room")));
    // What `Admission` uses: the same counters keeping started/finished totals.
    let (_queue_t, slots_totals) = jobs::counters_with_totals(bounds).expect("valid bounds");
    let slots_totals_op = || drop(black_box(slots_totals.try_acquire().expect("room")));
    let tokio_op = || drop(black_box(semaphore.try_acquire().expect("room")));
    let tokio_owned_op = || {
        drop(black_box(
            Arc::clone(&semaphore).try_acquire_owned().expect("room"),
        ))
    };
    let mutex_op = || {
        {
            let mut n = mutex.lock().expect("not poisoned");
            assert!(*n < ROOM as usize);
            *n += 1;
        }
        black_box(());
        *mutex.lock().expect("not poisoned") -= 1;
    };

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("counters/{threads}_threads"));
        group.bench_function("QueueGate::try_enter+drop", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, queue_op))
        });
        group.bench_function("JobSlots::try_acquire+drop", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, slots_op))
        });
        group.bench_function("JobSlots(with totals)::try_acquire+drop", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, slots_totals_op))
        });
        group.bench_function("tokio::Semaphore::try_acquire+drop", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, tokio_op))
        });
        group.bench_function("tokio::Semaphore::try_acquire_owned+drop", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, tokio_owned_op))
        });
        group.bench_function("Mutex<usize> inc+dec", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, mutex_op))
        });
        group.finish();
    }
}

/// The original's way: refresh the OS figures on every check.
struct RefreshEveryCheck {
    system: sysinfo::System,
    disk_path: PathBuf,
    min_memory_bytes: u64,
    min_disk_bytes: u64,
}

impl RefreshEveryCheck {
    fn check(&mut self) -> bool {
        self.system
            .refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
        let memory = self.system.available_memory();
        let disk = rustix::fs::statvfs(&self.disk_path)
            .map(|s| s.f_bavail * s.f_frsize)
            .unwrap_or(0);
        memory >= self.min_memory_bytes && disk >= self.min_disk_bytes
    }
}

fn resource_check(c: &mut Criterion) {
    let limits = ResourceLimits::default();
    let gate = ResourceGate::with_limits(&limits).expect("valid limits");
    gate.observe(ResourceReading {
        available_memory_bytes: 8 << 30,
        free_disk_bytes: Some(50 << 30),
        memory_pressure_pct: None,
    });
    let mut peer = RefreshEveryCheck {
        system: sysinfo::System::new(),
        disk_path: limits.disk_path.clone(),
        min_memory_bytes: limits.min_available_memory.bytes(),
        min_disk_bytes: limits.min_free_disk.bytes(),
    };

    let mut group = c.benchmark_group("resource_check");
    group.bench_function("ResourceGate::check", |b| {
        b.iter(|| black_box(gate.check()).is_ok())
    });
    group.bench_function("sysinfo refresh+statvfs per check", |b| {
        b.iter(|| black_box(peer.check()))
    });
    group.finish();
}

/// Rate limit of the front-door benches on the manual clock: 1024 per 1 ms, a ring of
/// 16 KiB that stays in L1; the clock moves 1 ms every 1024 decisions so that no request
/// is ever refused.
const FRONT_LIMIT: u32 = 1024;

/// Rate limit of the front-door benches on the real clock: 256 Ki per 1 ms (a 4 MiB ring,
/// walked sequentially), above the ~100 k decisions per ms one thread reaches on an idle
/// core, so nothing is refused. (64 Ki per ms was refused once the machine was quiet.)
const FRONT_LIMIT_REAL: u32 = 1 << 18;

fn front_limits(limit: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = limit;
    limits.rate.window = Duration::from_millis(1);
    limits.queue.max = ROOM;
    limits
}

fn bare_queue() -> jobs::QueueGate {
    jobs::counters(JobBounds {
        max_queue: ROOM,
        critical_reserve: 0,
        max_jobs: 1,
    })
    .expect("valid bounds")
    .0
}

fn admit(admission: &Admission<impl Clock + 'static>) {
    match admission.try_admit() {
        Decision::Admitted(ticket) => drop(black_box(ticket)),
        other => panic!("refused in a bench: {other:?}"),
    }
}

fn front_door(c: &mut Criterion) {
    let window = Duration::from_millis(1);

    // On the manual clock: the decision logic alone, clock reads nearly free.
    let clock = ManualClock::new();
    let tick = {
        let clock = clock.clone();
        let mut n = 0u32;
        move || {
            n += 1;
            if n == FRONT_LIMIT {
                n = 0;
                clock.advance(window);
            }
        }
    };
    let limiter = SlidingWindow::with_clock(
        Quota::new(FRONT_LIMIT, window).expect("valid"),
        clock.clone(),
    );
    let stages_limiter = SlidingWindow::with_clock(
        Quota::new(FRONT_LIMIT, window).expect("valid"),
        clock.clone(),
    );
    let stages_queue = bare_queue();
    let admission = Admission::with_clock(front_limits(FRONT_LIMIT), clock.clone()).expect("valid");

    let mut group = c.benchmark_group("front_door/manual_clock");
    let mut t = tick.clone();
    group.bench_function("SlidingWindow::try_acquire", |b| {
        b.iter(|| {
            t();
            limiter.try_acquire().expect("never full")
        })
    });
    let mut t = tick.clone();
    group.bench_function("SlidingWindow+QueueGate (stages alone)+drop", |b| {
        b.iter(|| {
            t();
            stages_limiter.try_acquire().expect("never full");
            drop(black_box(stages_queue.try_enter().expect("room")));
        })
    });
    let mut t = tick;
    group.bench_function("Admission::try_admit+drop", |b| {
        b.iter(|| {
            t();
            admit(&admission)
        })
    });
    group.finish();

    // On the real clock, as a service runs it.
    let limiter = SlidingWindow::new(Quota::new(FRONT_LIMIT_REAL, window).expect("valid"));
    let stages_limiter = SlidingWindow::new(Quota::new(FRONT_LIMIT_REAL, window).expect("valid"));
    let stages_queue = bare_queue();
    let admission = Admission::new(front_limits(FRONT_LIMIT_REAL)).expect("valid");
    let mut group = c.benchmark_group("front_door/real_clock");
    group.bench_function("SlidingWindow::try_acquire", |b| {
        b.iter(|| limiter.try_acquire().expect("never full"))
    });
    group.bench_function("SlidingWindow+QueueGate (stages alone)+drop", |b| {
        b.iter(|| {
            stages_limiter.try_acquire().expect("never full");
            drop(black_box(stages_queue.try_enter().expect("room")));
        })
    });
    group.bench_function("Admission::try_admit+drop", |b| {
        b.iter(|| admit(&admission))
    });
    group.finish();
}

mod group {
    // criterion_group! generates an undocumented pub fn.
    #![allow(missing_docs)]
    use super::{counters, front_door, resource_check};
    use criterion::criterion_group;

    criterion_group!(benches, counters, resource_check, front_door);
}
criterion_main!(group::benches);
