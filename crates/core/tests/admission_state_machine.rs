//! `Admission` against the front door's reference (`backstop_core::model::AdmissionModel`,
//! feature `model`) under random sequences of requests of every class, clock moves, job
//! starts, drops in any order, resource readings and live reconfiguration.

use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::jobs::{JobBounds, JobPermit, QueueTicket};
use backstop_core::model::{AdmissionModel, Decided, Refused};
use backstop_core::resources::ResourceReading;
use backstop_core::{
    Admission, Decision, Limits, MetricsSnapshot, Refusal, RequestClass, WaitReason,
};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const WINDOW_MS: u64 = 1000;
const NS_PER_MS: u64 = 1_000_000;
const WINDOW_NS: u64 = WINDOW_MS * NS_PER_MS;

#[derive(Debug, Clone)]
enum Op {
    Admit(RequestClass),
    Advance(u64),
    Start(usize),
    DropTicket(usize),
    DropPermit(usize),
    Memory(u64),
    Reconfigure {
        rate: u32,
        queue: u32,
        reserve: u32,
        jobs: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![
            4 => Just(RequestClass::Normal),
            1 => Just(RequestClass::Critical),
            1 => Just(RequestClass::Exempt),
        ].prop_map(Op::Admit),
        2 => (0u64..400).prop_map(Op::Advance),
        3 => any::<usize>().prop_map(Op::Start),
        1 => any::<usize>().prop_map(Op::DropTicket),
        2 => any::<usize>().prop_map(Op::DropPermit),
        1 => (1500u64..2500).prop_map(Op::Memory),
        1 => (1u32..6, 1u32..5, 0u32..2, 1u32..3)
            .prop_map(|(rate, queue, reserve, jobs)| Op::Reconfigure { rate, queue, reserve, jobs }),
    ]
}

fn limits(rate: u32, queue: u32, reserve: u32, jobs: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = rate;
    limits.rate.window = Duration::from_millis(WINDOW_MS);
    limits.queue.max = queue;
    limits.queue.critical_reserve = reserve;
    limits.jobs.max = jobs;
    // Samples never go stale here: staleness has its own tests.
    limits.resources.max_sample_age = Duration::from_millis(24 * 3600 * 1000);
    limits
}

fn bounds(queue: u32, reserve: u32, jobs: u32) -> JobBounds {
    JobBounds {
        max_queue: queue,
        critical_reserve: reserve,
        max_jobs: jobs,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn admission_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let admission = Admission::with_clock(limits(3, 3, 1, 1), clock.clone()).unwrap();
        let gate = admission.resource_gate();
        gate.observe(ResourceReading::memory_only(4096 * MIB));
        let mut model: AdmissionModel<u8> = AdmissionModel::new((3, WINDOW_NS), bounds(3, 1, 1));
        // The gate's memory rule: closed below 2048 MiB, open again from 2048 + 256.
        let mut memory_low = false;
        let mut now_ms = 0u64;
        let mut tickets: Vec<QueueTicket> = Vec::new();
        let mut permits: Vec<JobPermit> = Vec::new();

        for op in ops {
            match op {
                Op::Admit(class) => {
                    let decision = admission.admit(None, class);
                    match model.admit(class, None, now_ms * NS_PER_MS) {
                        Decided::Exempt => prop_assert!(matches!(decision, Decision::Exempt)),
                        Decided::Admitted(()) => match decision {
                            Decision::Admitted(ticket) => tickets.push(ticket),
                            other => prop_assert!(false, "expected admission, got {:?}", other),
                        },
                        Decided::Refused(Refused::RateLimited { wait_ns, scope }) => prop_assert_eq!(
                            decision.refusal().copied(),
                            Some(Refusal::RateLimited { retry_after: Duration::from_nanos(wait_ns), scope })
                        ),
                        Decided::Refused(Refused::QueueFull) => prop_assert_eq!(
                            decision.refusal().map(|r| (r.status_code(), r.as_str())),
                            Some((503, "queue_full"))
                        ),
                        Decided::Refused(other) => prop_assert!(false, "no per-client stage, yet {:?}", other),
                    }
                }
                Op::Advance(ms) => {
                    now_ms += ms;
                    clock.advance(Duration::from_millis(ms));
                }
                Op::Start(i) if !tickets.is_empty() => {
                    let ticket = tickets.swap_remove(i % tickets.len());
                    match admission.start_job(ticket) {
                        Ok(permit) => {
                            prop_assert!(!memory_low && model.jobs_mut().try_start());
                            permits.push(permit);
                        }
                        Err((ticket, reason)) => {
                            let expected = if memory_low { "low_memory" } else { "no_free_slot" };
                            prop_assert_eq!(reason.as_str(), expected);
                            prop_assert!(memory_low || !model.jobs().slot_free());
                            prop_assert!(memory_low || reason == WaitReason::NoFreeSlot);
                            tickets.push(ticket);
                        }
                    }
                }
                Op::DropTicket(i) if !tickets.is_empty() => {
                    drop(tickets.swap_remove(i % tickets.len()));
                    model.jobs_mut().leave();
                }
                Op::DropPermit(i) if !permits.is_empty() => {
                    drop(permits.swap_remove(i % permits.len()));
                    model.jobs_mut().finish();
                }
                Op::Memory(mib) => {
                    gate.observe(ResourceReading::memory_only(mib * MIB));
                    memory_low = if memory_low { mib < 2048 + 256 } else { mib < 2048 };
                }
                Op::Reconfigure { rate, queue, reserve, jobs } => {
                    let result = admission.reconfigure(limits(rate, queue, reserve, jobs));
                    // In place while the rate fits the capacity, else a larger window
                    // built from what the old one remembers, as `Admission` does.
                    let accepted = model.reconfigure((rate, WINDOW_NS), bounds(queue, reserve, jobs), false);
                    prop_assert_eq!(result.is_ok(), accepted);
                    if let Err(err) = result {
                        prop_assert_eq!(err.field(), "queue.critical_reserve");
                    }
                }
                _ => {}
            }
            let m = admission.metrics().snapshot();
            let counts = model.counts();
            prop_assert_eq!((m.queue_depth, m.jobs_active), (model.jobs().waiting(), model.jobs().running()));
            prop_assert_eq!(m.admitted_total, counts.admitted);
            prop_assert_eq!(m.rate_limited_total, counts.rate_limited);
            prop_assert_eq!(m.exempt_total, counts.exempt);
            prop_assert_eq!(MetricsSnapshot::by_reason(&m.overloaded_total, "queue_full"), counts.queue_full);
        }
        drop(tickets);
        drop(permits);
        let m = admission.metrics().snapshot();
        prop_assert_eq!((m.queue_depth, m.jobs_active), (0, 0), "nothing leaked");
        prop_assert_eq!(m.jobs_started_total, m.jobs_finished_total);
    }
}
