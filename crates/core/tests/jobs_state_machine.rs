//! The job counters against their reference (`backstop_core::model::JobsModel`, feature
//! `model`), under random sequences of enters, starts, acquires, drops in any order, and
//! bound changes.

use backstop_core::jobs::{self, JobBounds, JobPermit, Priority, QueueTicket};
use backstop_core::model::JobsModel;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Enter(Priority),
    Start(usize),
    Acquire,
    DropTicket(usize),
    DropPermit(usize),
    SetBounds(u32, u32, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![Just(Priority::Normal), Just(Priority::Critical)].prop_map(Op::Enter),
        3 => any::<usize>().prop_map(Op::Start),
        1 => Just(Op::Acquire),
        2 => any::<usize>().prop_map(Op::DropTicket),
        2 => any::<usize>().prop_map(Op::DropPermit),
        1 => (1u32..6, 0u32..6, 1u32..4).prop_map(|(q, r, j)| Op::SetBounds(q, r, j)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn counters_match_the_model_and_never_leak(ops in proptest::collection::vec(op(), 1..80)) {
        let bounds = JobBounds { max_queue: 3, critical_reserve: 1, max_jobs: 2 };
        let (queue, slots) = jobs::counters_with_totals(bounds).unwrap();
        let mut model = JobsModel::new(bounds);
        let mut tickets: Vec<QueueTicket> = Vec::new();
        let mut permits: Vec<JobPermit> = Vec::new();

        for op in ops {
            match op {
                Op::Enter(priority) => {
                    let bound = model.queue_bound(priority);
                    let expect = model.try_enter(priority);
                    match queue.try_enter_as(priority) {
                        Ok(ticket) => {
                            prop_assert!(expect, "entered past the bound");
                            tickets.push(ticket);
                        }
                        Err(full) => {
                            prop_assert!(!expect, "refused with room left");
                            prop_assert_eq!(full.max_queue, bound);
                        }
                    }
                }
                Op::Start(i) if !tickets.is_empty() => {
                    let ticket = tickets.swap_remove(i % tickets.len());
                    let expect = model.try_start();
                    match slots.try_start(ticket) {
                        Ok(permit) => {
                            prop_assert!(expect);
                            permits.push(permit);
                        }
                        Err(ticket) => {
                            prop_assert!(!expect);
                            tickets.push(ticket);
                        }
                    }
                }
                Op::Acquire => {
                    let expect = model.try_acquire();
                    match slots.try_acquire() {
                        Ok(permit) => {
                            prop_assert!(expect);
                            permits.push(permit);
                        }
                        Err(_) => prop_assert!(!expect),
                    }
                }
                Op::DropTicket(i) if !tickets.is_empty() => {
                    drop(tickets.swap_remove(i % tickets.len()));
                    model.leave();
                }
                Op::DropPermit(i) if !permits.is_empty() => {
                    drop(permits.swap_remove(i % permits.len()));
                    model.finish();
                }
                Op::SetBounds(max_queue, critical_reserve, max_jobs) => {
                    let new = JobBounds { max_queue, critical_reserve, max_jobs };
                    let accepted = model.set_bounds(new);
                    match queue.set_bounds(new) {
                        Ok(()) => prop_assert!(accepted),
                        Err(e) => {
                            prop_assert!(!accepted);
                            prop_assert_eq!(e.field(), "queue.critical_reserve");
                        }
                    }
                }
                _ => {}
            }
            prop_assert_eq!(queue.len(), model.waiting());
            prop_assert_eq!(slots.active(), model.running());
            prop_assert_eq!(queue.len() as usize, tickets.len());
            prop_assert_eq!(slots.active() as usize, permits.len());
            prop_assert_eq!(slots.started_total(), Some(model.started()));
            prop_assert_eq!(slots.finished_total(), Some(model.finished()));
        }
        drop(tickets);
        drop(permits);
        prop_assert_eq!((queue.len(), slots.active()), (0, 0), "nothing leaked");
        prop_assert_eq!(slots.started_total(), slots.finished_total());
    }
}

/// Real threads hammering one pair of counters: the bounds hold at every observation and
/// everything is released at the end (loom checks the small cases exhaustively).
#[test]
fn threads_never_see_counts_above_the_bounds() {
    let bounds = JobBounds {
        max_queue: 4,
        critical_reserve: 0,
        max_jobs: 2,
    };
    let (queue, slots) = jobs::counters_with_totals(bounds).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (queue, slots) = (queue.clone(), slots.clone());
            s.spawn(move || {
                for _ in 0..20_000 {
                    if let Ok(ticket) = queue.try_enter() {
                        assert!(queue.len() <= 4);
                        if let Ok(permit) = slots.try_start(ticket) {
                            assert!(slots.active() <= 2);
                            drop(permit);
                        }
                    }
                }
            });
        }
    });
    assert_eq!((queue.len(), slots.active()), (0, 0));
    assert_eq!(slots.started_total(), slots.finished_total());
    assert!(slots.started_total() > Some(0));
}
