//! Several replicas: requests spread round-robin, tickets started on the replica that
//! gave them, and the checkers judging the combined stream. Without Redis: replicas
//! sharing one in-process `Admission` (a store in all but name) must decide exactly as
//! one replica does; replicas each keeping their own limits must be caught.

mod common;

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use backstop_core::clock::ManualClock;
use backstop_core::jobs::{JobPermit, QueueTicket};
use backstop_core::resources::{GateState, ResourceReading};
use backstop_core::{Admission, Decision, FrontDoor, Quota, RequestClass, WaitReason};
use backstop_sim::config::SimConfig;
use backstop_sim::replay::{Replay, replay};
use backstop_sim::report::RunOutput;
use backstop_sim::run::{RunOptions, run};
use backstop_sim::scenario::{Generator, Scenario};
use backstop_sim::service::{Immediate, Service, SimDoor, in_process};
use backstop_sim_check::check::Invariant;

/// A replica: a handle on an `Admission` that may be shared, counting what it is asked.
struct Replica {
    admission: Arc<Admission<ManualClock>>,
    asked: Arc<AtomicU64>,
}

impl FrontDoor for Replica {
    type Ticket = QueueTicket;
    type Permit = JobPermit;

    fn admit(
        &self,
        key: Option<&str>,
        class: RequestClass,
    ) -> impl Future<Output = Decision<QueueTicket>> + Send {
        // Relaxed: a count read after the run, on this thread.
        self.asked.fetch_add(1, Ordering::Relaxed);
        FrontDoor::admit(&*self.admission, key, class)
    }

    fn start_job(
        &self,
        ticket: QueueTicket,
    ) -> impl Future<Output = Result<JobPermit, (QueueTicket, WaitReason)>> + Send {
        FrontDoor::start_job(&*self.admission, ticket)
    }

    fn rate_limit(&self) -> Quota {
        FrontDoor::rate_limit(&*self.admission)
    }

    fn client_rate_limit(&self, key: &str) -> Option<Quota> {
        FrontDoor::client_rate_limit(&*self.admission, key)
    }
}

impl SimDoor for Replica {
    fn observe_at(&self, reading: ResourceReading, now_ns: u64) {
        SimDoor::observe_at(&*self.admission, reading, now_ns);
    }

    fn gate_state_at(&self, now_ns: u64) -> GateState {
        SimDoor::gate_state_at(&*self.admission, now_ns)
    }
}

use common::{HOUR_US, busy as config, gen_params};

fn generator(c: &SimConfig, scenario: Scenario) -> Generator {
    Generator::new(gen_params(c, scenario, 2 * HOUR_US, 0.2))
}

/// Runs `k` replicas; `shared` makes them handles on one `Admission`, else each has its
/// own. Returns the log, the output and how many requests each replica was asked.
fn run_k(k: usize, shared: bool, scenario: Scenario) -> (Vec<u8>, RunOutput, Vec<u64>) {
    let c = config();
    let clock = ManualClock::new();
    let one = Arc::new(in_process(&c.limits, c.per_key.as_ref(), &clock).unwrap());
    let asked: Vec<Arc<AtomicU64>> = (0..k).map(|_| Arc::default()).collect();
    let replicas = asked
        .iter()
        .map(|asked| Replica {
            admission: if shared {
                Arc::clone(&one)
            } else {
                Arc::new(in_process(&c.limits, c.per_key.as_ref(), &clock).unwrap())
            },
            asked: Arc::clone(asked),
        })
        .collect();
    let service = Service::with_replicas(clock, replicas, Immediate);
    let mut log = Vec::new();
    let out = replay(
        &c,
        generator(&c, scenario),
        Replay {
            decisions_out: Some(&mut log),
            source_label: scenario.name().into(),
            ..Replay::default()
        },
        service,
    )
    .unwrap();
    let asked = asked.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    (log, out, asked)
}

#[test]
fn replicas_sharing_one_admission_decide_as_one_replica() {
    for scenario in [Scenario::WindowEdge, Scenario::Bursts] {
        let c = config();
        let mut one_log = Vec::new();
        let one = run(
            &c,
            generator(&c, scenario),
            RunOptions {
                decisions_out: Some(&mut one_log),
                source_label: scenario.name().into(),
                ..RunOptions::default()
            },
        )
        .unwrap();
        let (log, out, asked) = run_k(3, true, scenario);
        assert_eq!(out.check.first, None, "{scenario}");
        assert!(
            one_log == log,
            "{scenario}: 3 shared replicas decided otherwise"
        );
        assert_eq!(one.report.sim.admitted, out.report.sim.admitted);
        assert!(
            one.report.sim.rate_limited > 0,
            "{scenario}: the trace must reach the limit"
        );
        // Round-robin in arrival order: the counts differ by at most one, the first
        // replicas taking the remainder.
        let total: u64 = asked.iter().sum();
        assert_eq!(total, one.report.sim.requests);
        let base = total / 3;
        let expected: Vec<u64> = (0..3).map(|i| base + u64::from(i < total % 3)).collect();
        assert_eq!(asked, expected, "{scenario}");
    }
}

#[test]
fn replicas_keeping_their_own_limits_are_caught_by_the_checkers() {
    let (_, out, _) = run_k(3, false, Scenario::WindowEdge);
    let first = out
        .check
        .first
        .expect("3 separate limits break the global one");
    assert!(
        matches!(
            first.invariant,
            Invariant::RateSafety | Invariant::Queue | Invariant::Jobs
        ),
        "{first}"
    );
    assert!(out.check.violations > 0);
}

#[test]
fn more_than_one_replica_needs_a_store() {
    let c = config();
    let err = run(
        &c,
        generator(&c, Scenario::Steady),
        RunOptions {
            replicas: NonZeroU32::new(2).unwrap(),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs --store"), "{err}");
    let err = run(
        &c,
        generator(&c, Scenario::Steady),
        RunOptions {
            store: Some("http://127.0.0.1:6379".into()),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("malformed URL"), "{err}");
}
