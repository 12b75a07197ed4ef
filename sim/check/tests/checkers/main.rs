//! Each checker against hand-made logs: a clean log passes, and each way of breaking an
//! invariant is caught and named; arbitrary logs never panic the checkers.

use backstop_sim_check::check::{CheckParams, Checker, Invariant};
use backstop_sim_check::log::{
    GateReason, Outcome, Outcome::*, OverloadReason, Record as R, Record, Trigger,
};
use backstop_sim_check::trace::{Event, Request};

mod arbitrary;
mod cleanup;

fn params() -> CheckParams {
    CheckParams {
        rate_limit: 2,
        rate_window_us: 10,
        max_queue: 1,
        job_slots: 1,
        stages: 1,
        min_memory_bytes: 100,
        memory_margin_bytes: 10,
        min_disk_bytes: 100,
        disk_margin_bytes: 10,
        capacity_bytes: 10_000,
        pressure_bytes: 8_000,
        per_key: None,
    }
}

fn req(t_us: u64, id: u64, job_us: u64, files: u32, bytes: u64) -> Event {
    Event::Request(Request {
        t_us,
        id,
        key: None,
        job_us,
        files,
        bytes,
    })
}

fn dec(t_us: u64, id: u64, outcome: Outcome, retry_after_us: Option<u64>) -> Record {
    let reason = (outcome == Overloaded).then_some(OverloadReason::QueueFull);
    R::Decision {
        t_us,
        id,
        outcome,
        reason,
        retry_after_us,
    }
}

/// Feeds (input, records) steps; returns the first violated invariant.
fn run(p: CheckParams, steps: &[(Option<Event>, Vec<Record>)]) -> Option<Invariant> {
    let mut c = Checker::new(p);
    for (input, recs) in steps {
        if let Some(e) = input {
            c.expect_input(e);
        }
        for r in recs {
            c.on_record(r);
        }
    }
    c.finish().first.map(|v| v.invariant)
}

fn admit_and_run(t: u64, id: u64) -> (Option<Event>, Vec<Record>) {
    (
        Some(req(t, id, 1, 0, 0)),
        vec![dec(t, id, Admitted, None), R::JobStart { t_us: t, id }],
    )
}

fn end(t: u64, id: u64) -> (Option<Event>, Vec<Record>) {
    (
        None,
        vec![R::JobEnd {
            t_us: t + 1,
            id,
            crashed: false,
        }],
    )
}

#[test]
fn a_clean_log_passes() {
    let mut p = params();
    p.max_queue = 5;
    let steps = vec![
        admit_and_run(0, 1),
        end(0, 1),
        admit_and_run(5, 2),
        end(5, 2),
        (
            Some(req(9, 3, 1, 0, 0)),
            vec![dec(9, 3, RateLimited, Some(1))],
        ),
        admit_and_run(10, 4),
        end(10, 4),
    ];
    assert_eq!(run(p, &steps), None);
}

#[test]
fn too_many_passes_in_a_window_is_caught() {
    let mut p = params();
    p.max_queue = 5;
    p.job_slots = 5;
    let steps = vec![
        admit_and_run(0, 1),
        admit_and_run(5, 2),
        admit_and_run(9, 3),
    ];
    assert_eq!(run(p, &steps), Some(Invariant::RateSafety));
}

#[test]
fn false_or_inexact_429_is_caught() {
    let steps = vec![
        admit_and_run(0, 1),
        (
            Some(req(1, 2, 1, 0, 0)),
            vec![dec(1, 2, RateLimited, Some(9))],
        ),
    ];
    assert_eq!(run(params(), &steps), Some(Invariant::NoFalse429));
    let mut p = params();
    p.job_slots = 2;
    let steps = vec![
        admit_and_run(0, 1),
        admit_and_run(2, 2),
        (
            Some(req(3, 3, 1, 0, 0)),
            vec![dec(3, 3, RateLimited, Some(8))],
        ),
    ];
    assert_eq!(run(p, &steps), Some(Invariant::NoFalse429), "exact is 7");
}

fn keyed(t_us: u64, id: u64, key: u32) -> Event {
    Event::Request(Request {
        t_us,
        id,
        key: Some(key),
        job_us: 1,
        files: 0,
        bytes: 0,
    })
}

#[test]
fn per_client_limits_are_judged_per_client() {
    let mut p = params();
    p.rate_limit = 10;
    p.max_queue = 10;
    p.job_slots = 10;
    p.per_key = Some((1, 10));
    let admit = |t, id, key| {
        (
            Some(keyed(t, id, key)),
            vec![dec(t, id, Admitted, None), R::JobStart { t_us: t, id }],
        )
    };
    // Client 7 twice in one window: the second is its own 429, exact, and does not
    // count globally.
    let ok = vec![
        admit(0, 1, 7),
        (Some(keyed(2, 2, 7)), vec![dec(2, 2, RateLimited, Some(8))]),
        admit(3, 3, 8),
    ];
    assert_eq!(run(p.clone(), &ok), None);
    let inexact = vec![
        admit(0, 1, 7),
        (Some(keyed(2, 2, 7)), vec![dec(2, 2, RateLimited, Some(9))]),
    ];
    assert_eq!(run(p.clone(), &inexact), Some(Invariant::NoFalse429));
    let other_client = vec![
        admit(0, 1, 7),
        (Some(keyed(2, 2, 8)), vec![dec(2, 2, RateLimited, Some(8))]),
    ];
    assert_eq!(
        run(p.clone(), &other_client),
        Some(Invariant::NoFalse429),
        "client 8 had room"
    );
    let twice = vec![admit(0, 1, 7), admit(2, 2, 7)];
    assert_eq!(run(p, &twice), Some(Invariant::RateSafety));
}

#[test]
fn a_clients_own_429_does_not_use_the_global_window() {
    // Global 2 per 10, each client 1 per 10: client 7's refused second request leaves
    // the second global place to client 8, and a 429 for client 8 there is false.
    let mut p = params();
    p.max_queue = 10;
    p.job_slots = 10;
    p.per_key = Some((1, 10));
    let admit = |t, id, key| {
        (
            Some(keyed(t, id, key)),
            vec![dec(t, id, Admitted, None), R::JobStart { t_us: t, id }],
        )
    };
    let own_429 = |t, id| {
        (
            Some(keyed(t, id, 7)),
            vec![dec(t, id, RateLimited, Some(10 - t))],
        )
    };
    let fair = vec![admit(0, 1, 7), own_429(1, 2), own_429(2, 3), admit(3, 4, 8)];
    assert_eq!(run(p.clone(), &fair), None);
    let locked_out = vec![
        admit(0, 1, 7),
        own_429(1, 2),
        (Some(keyed(3, 4, 8)), vec![dec(3, 4, RateLimited, Some(7))]),
    ];
    assert_eq!(run(p, &locked_out), Some(Invariant::NoFalse429));
}

#[test]
fn queue_full_below_the_bound_is_caught() {
    let steps = vec![
        admit_and_run(0, 1),
        (Some(req(1, 2, 1, 0, 0)), vec![dec(1, 2, Overloaded, None)]),
    ];
    assert_eq!(run(params(), &steps), Some(Invariant::Queue));
}

#[test]
fn idle_slot_with_a_waiting_job_is_caught() {
    let steps = vec![
        (Some(req(0, 1, 1, 0, 0)), vec![dec(0, 1, Admitted, None)]),
        (
            Some(Event::Memory {
                t_us: 1,
                available_bytes: 1_000,
            }),
            vec![R::Memory {
                t_us: 1,
                available_bytes: 1_000,
            }],
        ),
    ];
    assert_eq!(run(params(), &steps), Some(Invariant::Jobs));
}

#[test]
fn out_of_order_start_is_caught() {
    let mut p = params();
    p.max_queue = 5;
    p.rate_limit = 10;
    let steps = vec![
        admit_and_run(0, 1),
        (Some(req(0, 2, 1, 0, 0)), vec![dec(0, 2, Admitted, None)]),
        (Some(req(0, 3, 1, 0, 0)), vec![dec(0, 3, Admitted, None)]),
        (
            None,
            vec![
                R::JobEnd {
                    t_us: 1,
                    id: 1,
                    crashed: false,
                },
                R::JobStart { t_us: 1, id: 3 },
            ],
        ),
    ];
    assert_eq!(run(p, &steps), Some(Invariant::Jobs));
}

#[test]
fn gate_left_open_on_low_memory_is_caught() {
    let steps = vec![
        (
            Some(Event::Memory {
                t_us: 0,
                available_bytes: 50,
            }),
            vec![R::Memory {
                t_us: 0,
                available_bytes: 50,
            }],
        ),
        admit_and_run(1, 1),
    ];
    assert_eq!(run(params(), &steps), Some(Invariant::Gate));
}

#[test]
fn missing_decision_is_caught() {
    let steps = vec![
        admit_and_run(0, 1),
        end(0, 1),
        (Some(req(3, 2, 1, 0, 0)), vec![]),
    ];
    assert_eq!(run(params(), &steps), Some(Invariant::Conservation));
}
