//! Random small traces through the real engine: every checker must hold on every one.

use std::time::Duration;

use backstop_core::ByteSize;
use backstop_sim::config::{PerKeyConfig, SimConfig};
use backstop_sim::run::{RunOptions, run};
use backstop_sim_check::trace::{Event, Events, Request};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Request {
        gap_us: u64,
        job_us: u64,
        files: u32,
        bytes: u64,
        key: Option<u32>,
    },
    Memory {
        gap_us: u64,
        available_mib: u64,
    },
    Disk {
        gap_us: u64,
        used_gib: u64,
    },
}

/// Often zero, so that events share instants and jobs end as they start.
fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0u64..3_000_000]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (gap(), prop_oneof![Just(0u64), 0u64..20_000_000], 0u32..6, 0u64..(1 << 31), proptest::option::of(0u32..3))
            .prop_map(|(gap_us, job_us, files, bytes, key)| Step::Request { gap_us, job_us, files, bytes, key }),
        1 => (gap(), 0u64..4096).prop_map(|(gap_us, available_mib)| Step::Memory { gap_us, available_mib }),
        1 => (gap(), 0u64..20).prop_map(|(gap_us, used_gib)| Step::Disk { gap_us, used_gib }),
    ]
}

fn events(steps: &[Step]) -> Vec<Event> {
    let mut t_us = 0;
    let mut id = 0;
    steps
        .iter()
        .map(|s| match *s {
            Step::Request {
                gap_us,
                job_us,
                files,
                bytes,
                key,
            } => {
                t_us += gap_us;
                id += 1;
                Event::Request(Request {
                    t_us,
                    id,
                    key,
                    job_us,
                    files,
                    bytes,
                })
            }
            Step::Memory {
                gap_us,
                available_mib,
            } => {
                t_us += gap_us;
                Event::Memory {
                    t_us,
                    available_bytes: available_mib << 20,
                }
            }
            Step::Disk { gap_us, used_gib } => {
                t_us += gap_us;
                Event::Disk {
                    t_us,
                    used_bytes: used_gib << 30,
                }
            }
        })
        .collect()
}

/// (rate limit, queue, slots, stages, pressure threshold in percent, per-client limit
/// (0: off))
type Shape = (u32, u32, u32, u32, u32, u32);

fn config(seed: u64, (limit, queue, slots, stages, pressure_pct, per_key): Shape) -> SimConfig {
    let mut c = SimConfig {
        seed,
        crash_fraction: 0.3,
        ..SimConfig::default()
    };
    c.limits.rate.limit = limit;
    c.limits.rate.window = Duration::from_millis(5_000);
    c.limits.queue.max = queue;
    c.limits.jobs.max = slots;
    c.limits.resources.min_available_memory = ByteSize::mib(1024);
    c.limits.resources.memory_margin = ByteSize::mib(256);
    c.limits.resources.min_free_disk = ByteSize::mib(2048);
    c.limits.resources.disk_margin = ByteSize::mib(512);
    c.disk.capacity_bytes = 20 << 30;
    c.disk.stages = stages;
    c.sweep.pressure_threshold = f64::from(pressure_pct) / 100.0;
    c.sweep.interval = Duration::from_secs(30);
    c.sweep.max_age = Duration::from_secs(20);
    c.sweep.pressure_max_age = Duration::from_secs(5);
    c.sweep.pressure_cooldown = Duration::from_secs(2);
    // Two tracked clients for three keys: the third meets 503 too_many_keys at times.
    c.per_key = (per_key > 0).then(|| PerKeyConfig {
        limit: per_key,
        window: Duration::from_secs(4),
        max_keys: 2,
    });
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_invariant_holds_on_random_traces(
        steps in prop::collection::vec(step(), 1..120),
        seed in any::<u64>(),
        shape in (1u32..6, 1u32..5, 1u32..4, 1u32..4, 30u32..95, 0u32..3),
    ) {
        let evs = events(&steps);
        let requests = evs.iter().filter(|e| matches!(e, Event::Request(_))).count() as u64;
        let out = run(&config(seed, shape), Events(evs.into_iter()), RunOptions::default()).unwrap();
        prop_assert_eq!(out.check.first.clone(), None);
        let s = &out.report.sim;
        prop_assert_eq!(s.requests, requests);
        prop_assert_eq!(
            s.admitted + s.rate_limited + s.overloaded_queue_full + s.overloaded_too_many_keys,
            requests
        );
        prop_assert_eq!(s.jobs_completed + s.jobs_crashed + s.still_running, s.jobs_started);
        prop_assert_eq!(s.jobs_started + s.still_queued, s.admitted);
    }
}

#[test]
fn days_without_readings_never_leave_the_gate_stale() {
    // The real gate fails closed on a sample older than a day; in virtual time readings
    // may be days apart, and a job must still start. (Sweeps, which also refresh the gate,
    // are set further apart than the trace.)
    let mut rare_sweeps = SimConfig::default();
    rare_sweeps.sweep.interval = Duration::from_secs(50 * 86_400);
    let day_us = 86_400_000_000u64;
    let evs = vec![
        Event::Memory {
            t_us: 0,
            available_bytes: 8 << 30,
        },
        Event::Request(Request {
            t_us: 0,
            id: 1,
            key: None,
            job_us: 10,
            files: 1,
            bytes: 1,
        }),
        Event::Request(Request {
            t_us: 3 * day_us,
            id: 2,
            key: None,
            job_us: 10,
            files: 1,
            bytes: 1,
        }),
        Event::Request(Request {
            t_us: 40 * day_us,
            id: 3,
            key: None,
            job_us: 10,
            files: 0,
            bytes: 0,
        }),
    ];
    let out = run(&rare_sweeps, Events(evs.into_iter()), RunOptions::default()).unwrap();
    assert_eq!(out.check.first, None);
    assert_eq!(out.report.sim.jobs_started, 3);
    assert_eq!(
        out.report.sim.gate_closures_low_memory + out.report.sim.gate_closures_low_disk,
        0
    );
}
