//! The simulator's request path (rate limit → queue → dispatch, with the inline checkers)
//! in simulated requests per second, beside the bare limiter on the same timestamps.
//!
//! `cargo bench -p backstop-benches --bench sim`

// criterion_group! expands to an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::rate::SlidingWindow;
use backstop_sim::config::SimConfig;
use backstop_sim::run::{RunOptions, run};
use backstop_sim::scenario::{GenParams, Generator, Scenario};
use backstop_sim_check::trace::{Event, Events};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Simulated requests per iteration: 1 000 requests/s for 200 s of virtual time (2 000 s
/// end to end).
const RATE_PER_S: f64 = 1000.0;
const DURATION_US: u64 = 200_000_000;

fn params(duration_us: u64) -> GenParams {
    let c = SimConfig::default();
    GenParams {
        scenario: Scenario::Steady,
        seed: 1,
        duration_us,
        rate_per_s: RATE_PER_S,
        rate_limit: c.limits.rate.limit,
        rate_window_us: c.rate_window_us(),
        disk_capacity_bytes: c.disk.capacity_bytes,
    }
}

fn request_path(c: &mut Criterion) {
    let config = SimConfig::default();
    // Pre-generated, so only the engine is measured; no files: the request path alone.
    let events: Vec<Event> = Generator::new(params(DURATION_US))
        .map(|e| match e {
            Event::Request(mut r) => {
                r.files = 0;
                r.bytes = 0;
                Event::Request(r)
            }
            other => other,
        })
        .collect();
    let requests = events
        .iter()
        .filter(|e| matches!(e, Event::Request(_)))
        .count() as u64;
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(requests));
    g.sample_size(10);

    g.bench_function("request_path_checked", |b| {
        b.iter(|| {
            let out = run(
                &config,
                Events(events.iter().copied()),
                RunOptions::default(),
            )
            .unwrap();
            assert_eq!(out.check.violations, 0);
            black_box(out.report.sim.admitted)
        })
    });

    g.bench_function("request_path_with_decision_log", |b| {
        b.iter(|| {
            let mut sink = std::io::sink();
            let out = run(
                &config,
                Events(events.iter().copied()),
                RunOptions {
                    decisions_out: Some(&mut sink),
                    ..RunOptions::default()
                },
            )
            .unwrap();
            black_box(out.report.sim.admitted)
        })
    });

    // The peer: the bare limiter deciding the same requests at the same instants.
    let times: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some(r.t_us * 1000),
            _ => None,
        })
        .collect();
    g.bench_function("bare_limiter_same_requests", |b| {
        b.iter(|| {
            let limiter = SlidingWindow::with_clock(
                Quota::new(config.limits.rate.limit, Duration::from_secs(60)).unwrap(),
                backstop_core::clock::ManualClock::new(),
            );
            let mut admitted = 0u64;
            for &t in &times {
                admitted += u64::from(limiter.try_acquire_at(t).is_ok());
            }
            black_box(admitted)
        })
    });
    g.finish();

    // End to end as the binary runs: generator, engine, checkers, and the temp files of
    // every admitted job (12 per job, through JobWorkspace), over a longer stretch so the
    // per-run setup (scratch dir, sweeper thread pool) is amortised.
    let long_us = 10 * DURATION_US;
    let long_requests = Generator::new(params(long_us))
        .filter(|e| matches!(e, Event::Request(_)))
        .count() as u64;
    let mut g = c.benchmark_group("sim_end_to_end");
    g.throughput(Throughput::Elements(long_requests));
    g.sample_size(10);
    g.bench_function("generated_stream_with_temp_files", |b| {
        b.iter(|| {
            let out = run(
                &config,
                Generator::new(params(long_us)),
                RunOptions::default(),
            )
            .unwrap();
            black_box(out.report.sim.admitted)
        })
    });
    g.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
