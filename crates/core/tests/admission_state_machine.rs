//! `Admission` against a plain reference model under random sequences of requests of
//! every class, clock moves, job starts, drops in any order, resource readings and live
//! reconfiguration. Its rate window is the shared one (`backstop_core::model::WindowModel`,
//! feature `model`).

use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::jobs::{JobPermit, QueueTicket};
use backstop_core::model::WindowModel;
use backstop_core::resources::ResourceReading;
use backstop_core::{
    Admission, Decision, Limits, MetricsSnapshot, RateScope, Refusal, RequestClass, WaitReason,
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
    limits.rate.window_ms = WINDOW_MS;
    limits.queue.max = queue;
    limits.queue.critical_reserve = reserve;
    limits.jobs.max = jobs;
    // Samples never go stale here: staleness has its own tests.
    limits.resources.max_sample_age_ms = 24 * 3600 * 1000;
    limits
}

/// The whole policy, written as plainly as possible.
struct Model {
    /// The global rate window, with its limit.
    window: WindowModel,
    queue: u32,
    reserve: u32,
    jobs: u32,
    waiting: u32,
    running: u32,
    memory_low: bool,
    admitted: u64,
    rate_limited: u64,
    queue_full: u64,
    exempt: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn admission_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let admission = Admission::with_clock(limits(3, 3, 1, 1), clock.clone()).unwrap();
        let gate = admission.resource_gate();
        gate.observe(ResourceReading::memory_only(4096 * MIB));
        let mut model = Model {
            window: WindowModel::new(3, WINDOW_NS), queue: 3, reserve: 1, jobs: 1,
            waiting: 0, running: 0, memory_low: false,
            admitted: 0, rate_limited: 0, queue_full: 0, exempt: 0,
        };
        let mut now_ms = 0u64;
        let mut tickets: Vec<QueueTicket> = Vec::new();
        let mut permits: Vec<JobPermit> = Vec::new();

        for op in ops {
            match op {
                Op::Admit(class) => {
                    let decision = admission.try_admit_as(class);
                    if class == RequestClass::Exempt {
                        prop_assert!(matches!(decision, Decision::Exempt));
                        model.exempt += 1;
                        continue;
                    }
                    let bound = if class == RequestClass::Critical { model.queue } else { model.queue - model.reserve };
                    // Past the rate limit, the admission counts in the window even if the
                    // queue refuses it.
                    if let Err(retry_ns) = model.window.try_acquire(now_ms * NS_PER_MS) {
                        prop_assert_eq!(
                            decision.refusal().copied(),
                            Some(Refusal::RateLimited { retry_after: Duration::from_nanos(retry_ns), scope: RateScope::Global })
                        );
                        model.rate_limited += 1;
                    } else if model.waiting < bound {
                        match decision {
                            Decision::Admitted(ticket) => tickets.push(ticket),
                            other => prop_assert!(false, "expected admission, got {:?}", other),
                        }
                        model.waiting += 1;
                        model.admitted += 1;
                    } else {
                        prop_assert_eq!(decision.refusal().map(|r| (r.status_code(), r.as_str())), Some((503, "queue_full")));
                        model.queue_full += 1;
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
                            prop_assert!(!model.memory_low && model.running < model.jobs);
                            permits.push(permit);
                            model.waiting -= 1;
                            model.running += 1;
                        }
                        Err((ticket, reason)) => {
                            let expected = if model.memory_low { "low_memory" } else { "no_free_slot" };
                            prop_assert_eq!(reason.as_str(), expected);
                            prop_assert!(model.memory_low || model.running >= model.jobs);
                            prop_assert!(model.memory_low || reason == WaitReason::NoFreeSlot);
                            tickets.push(ticket);
                        }
                    }
                }
                Op::DropTicket(i) if !tickets.is_empty() => {
                    drop(tickets.swap_remove(i % tickets.len()));
                    model.waiting -= 1;
                }
                Op::DropPermit(i) if !permits.is_empty() => {
                    drop(permits.swap_remove(i % permits.len()));
                    model.running -= 1;
                }
                Op::Memory(mib) => {
                    gate.observe(ResourceReading::memory_only(mib * MIB));
                    model.memory_low = if model.memory_low { mib < 2048 + 256 } else { mib < 2048 };
                }
                Op::Reconfigure { rate, queue, reserve, jobs } => {
                    let result = admission.reconfigure(limits(rate, queue, reserve, jobs));
                    if reserve < queue {
                        prop_assert!(result.is_ok());
                        // In place while the rate fits the capacity, else a larger window
                        // built from what the old one remembers, as `Admission` does.
                        if !model.window.reconfigure(rate, WINDOW_NS) {
                            model.window = model.window.reconfigured(rate, WINDOW_NS);
                        }
                        model.queue = queue;
                        model.reserve = reserve;
                        model.jobs = jobs;
                    } else {
                        let err = result.unwrap_err();
                        prop_assert_eq!(err.field(), "queue.critical_reserve");
                    }
                }
                _ => {}
            }
            let m = admission.metrics().snapshot();
            prop_assert_eq!((m.queue_depth, m.jobs_active), (model.waiting, model.running));
            prop_assert_eq!(m.admitted_total, model.admitted);
            prop_assert_eq!(m.rate_limited_total, model.rate_limited);
            prop_assert_eq!(m.exempt_total, model.exempt);
            prop_assert_eq!(MetricsSnapshot::by_reason(&m.overloaded_total, "queue_full"), model.queue_full);
        }
        drop(tickets);
        drop(permits);
        let m = admission.metrics().snapshot();
        prop_assert_eq!((m.queue_depth, m.jobs_active), (0, 0), "nothing leaked");
        prop_assert_eq!(m.jobs_started_total, m.jobs_finished_total);
    }
}
