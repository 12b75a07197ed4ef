//! `Admission::try_admit` against the rate limiter alone, interleaved: each round times
//! a batch of every variant in turn, and the minimum and median per variant over the
//! rounds are reported, so load from other processes affects all alike. The criterion version is
//! `front_door/*` in `benches/admission.rs`.
//! `cargo run --release -p backstop-benches --example front_door_quick`
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use backstop_core::Quota;
use backstop_core::jobs::{self, JobBounds};
use backstop_core::rate::SlidingWindow;
use backstop_core::{Admission, Decision, Limits};

/// Above the ~100 k decisions per ms one thread reaches, so nothing is refused.
const LIMIT: u32 = 1 << 18;
const BATCH: u32 = 20_000;
const ROUNDS: usize = 300;

/// A named operation to time.
type Variant<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn ns_per_op(f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..BATCH {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(BATCH)
}

fn main() {
    let window = Duration::from_millis(1);
    let limiter = SlidingWindow::new(Quota::new(LIMIT, window).expect("valid"));
    let stages_limiter = SlidingWindow::new(Quota::new(LIMIT, window).expect("valid"));
    let (queue, _slots) = jobs::counters(JobBounds {
        max_queue: 1 << 16,
        critical_reserve: 0,
        max_jobs: 1,
    })
    .expect("valid bounds");
    let mut limits = Limits::default();
    limits.rate.limit = LIMIT;
    limits.rate.window = Duration::from_millis(1);
    limits.queue.max = 1 << 16;
    let admission = Admission::new(limits).expect("valid");

    let mut variants: Vec<Variant<'_>> = vec![
        (
            "SlidingWindow::try_acquire",
            Box::new(|| limiter.try_acquire().expect("never full")),
        ),
        (
            "limiter + queue, called directly",
            Box::new(|| {
                stages_limiter.try_acquire().expect("never full");
                drop(black_box(queue.try_enter().expect("room")));
            }),
        ),
        (
            "Admission::try_admit",
            Box::new(|| match admission.try_admit() {
                Decision::Admitted(ticket) => drop(black_box(ticket)),
                other => panic!("refused in a bench: {other:?}"),
            }),
        ),
    ];
    let mut samples = vec![Vec::with_capacity(ROUNDS); variants.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in variants.iter_mut().enumerate() {
            samples[i].push(ns_per_op(f.as_mut()));
        }
    }
    let stat = |i: usize, q: f64| {
        let mut s = samples[i].clone();
        s.sort_by(f64::total_cmp);
        s[((s.len() - 1) as f64 * q) as usize]
    };
    println!(
        "ns per call over {ROUNDS} interleaved batches: minimum, median (ratio to the limiter alone)"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let (min, median) = (stat(i, 0.0), stat(i, 0.5));
        println!(
            "{name:<34} min {min:>6.2} ({:.2}×)  median {median:>6.2} ({:.2}×)",
            min / stat(0, 0.0),
            median / stat(0, 0.5)
        );
    }
}
