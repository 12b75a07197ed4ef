//! `RedisAdmission` does what the in-process `Admission` does: shadow mode, live
//! `reconfigure` of the shape and the bounds, a client not charged for a request the
//! shared window refused (also under concurrency).

use std::sync::Arc;
use std::time::Duration;

use backstop_core::MetricsSnapshot;
use backstop_core::clock::ManualClock;
use backstop_core::{Decision, FrontDoor, Limits, RateScope, Refusal, RequestClass};
use backstop_redis::{RedisAdmission, RedisStore, StoreOptions};
use backstop_testkit::redis as support;

const T0: Duration = Duration::from_secs(1_700_000_000);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn options() -> StoreOptions {
    StoreOptions {
        deadline: Duration::from_secs(1),
        ..StoreOptions::default()
    }
}

fn limits(rate: u32, queue: u32, jobs: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = rate;
    limits.rate.window_ms = 60_000;
    limits.queue.max = queue;
    limits.jobs.max = jobs;
    limits.resources.enabled = false;
    limits
}

async fn store_on(url: &str, clock: &ManualClock) -> RedisStore {
    RedisStore::connect_with_clock(url, options(), Arc::new(clock.clone()))
        .await
        .expect("connect")
}

fn refusal<T>(decision: &Decision<T>) -> Option<&'static str> {
    decision.refusal().map(Refusal::as_str)
}

fn shadowed(snapshot: &MetricsSnapshot, label: &str) -> u64 {
    MetricsSnapshot::by_reason(&snapshot.shadow_refusals_total, label)
}

#[test]
fn shadow_mode_counts_refusals_and_lets_them_through() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let mut shadow = limits(2, 1, 1);
        shadow.shadow = true;
        let door = RedisAdmission::new(&store, &support::unique("shadow"), shadow).unwrap();
        let mut tickets = Vec::new();
        for _ in 0..5 {
            match door.admit(None, RequestClass::Normal).await {
                Decision::Admitted(ticket) => tickets.push(ticket),
                other => panic!("shadow mode lets every request through: {other:?}"),
            }
        }
        let snapshot = door.metrics().snapshot();
        assert_eq!(snapshot.admitted_total, 5);
        assert_eq!(shadowed(&snapshot, "rate_limited"), 3, "{snapshot:?}");
        assert_eq!(shadowed(&snapshot, "queue_full"), 4, "{snapshot:?}");
        // Shadow off again (live): the same requests are refused.
        door.reconfigure(limits(2, 1, 1)).unwrap();
        assert_eq!(
            refusal(&door.admit(None, RequestClass::Normal).await),
            Some("rate_limited")
        );
    });
}

#[test]
fn reconfigure_changes_the_shape_and_the_bounds_live_keeping_the_history() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let door =
            RedisAdmission::new(&store, &support::unique("reconf"), limits(3, 10, 1)).unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            clock.advance(Duration::from_millis(1));
            let Decision::Admitted(ticket) = door.admit(None, RequestClass::Normal).await else {
                panic!("admitted");
            };
            held.push(ticket);
        }
        assert_eq!(
            refusal(&door.admit(None, RequestClass::Normal).await),
            Some("rate_limited")
        );
        // Raised: two more (the three made still count), and the refusal cache dropped.
        door.reconfigure(limits(5, 10, 1)).unwrap();
        assert_eq!(door.rate_limit().0, 5);
        for _ in 0..2 {
            let Decision::Admitted(ticket) = door.admit(None, RequestClass::Normal).await else {
                panic!("admitted after raising the limit");
            };
            held.push(ticket);
        }
        assert!(
            door.admit(None, RequestClass::Normal)
                .await
                .refusal()
                .is_some()
        );
        // Lowered below what the window holds: refused at once.
        door.reconfigure(limits(2, 10, 1)).unwrap();
        // Half a window on, the tickets' leases renewed on the way (virtual time).
        for _ in 0..10 {
            clock.advance(Duration::from_secs(3));
            store.renew_leases().await;
        }
        assert_eq!(
            refusal(&door.admit(None, RequestClass::Normal).await),
            Some("rate_limited")
        );
        // The queue bound: 5 held now; lowered to 5, a sixth is refused; raised, taken.
        door.reconfigure(limits(100, 5, 1)).unwrap();
        assert_eq!(
            refusal(&door.admit(None, RequestClass::Normal).await),
            Some("queue_full")
        );
        door.reconfigure(limits(100, 6, 1)).unwrap();
        assert!(matches!(
            door.admit(None, RequestClass::Normal).await,
            Decision::Admitted(_)
        ));
        // A bad change changes nothing.
        let err = door.reconfigure(limits(0, 6, 1)).unwrap_err();
        assert_eq!(err.field(), "rate.limit");
        assert_eq!(door.limits().rate.limit, 100);
        drop(held);
    });
}

/// 64 requests of one client at once, its own limit 100, the shared limit 10: many pass
/// the shared window's peek together and are charged in the client's window, then the
/// shared window refuses all but 10. Those are given back: the client's window holds
/// exactly the 10 admitted.
#[test]
fn a_client_refused_by_the_shared_window_is_not_charged_also_under_concurrency() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let door = Arc::new(
            RedisAdmission::new(&store, &support::unique("refund"), limits(10, 1000, 1))
                .unwrap()
                .with_per_key(100, Duration::from_secs(60))
                .unwrap(),
        );
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let door = Arc::clone(&door);
            calls.spawn(async move {
                match door.admit(Some("alice"), RequestClass::Normal).await {
                    Decision::Admitted(ticket) => {
                        drop(ticket);
                        Ok(())
                    }
                    other => Err(other.refusal().copied().unwrap()),
                }
            });
        }
        let mut admitted = 0;
        let mut scopes = Vec::new();
        while let Some(done) = calls.join_next().await {
            match done.unwrap() {
                Ok(()) => admitted += 1,
                Err(Refusal::RateLimited { scope, .. }) => scopes.push(scope),
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(admitted, 10);
        assert!(scopes.iter().all(|s| *s == RateScope::Global), "{scopes:?}");
        // The client's window: 10 admissions held, not one per request charged.
        let mut conn = store.connection();
        let key = format!(
            "{{backstop:kw:{}:{}:alice}}:window",
            door.queue().name().len(),
            door.queue().name()
        );
        let n: Vec<u8> = redis::cmd("GETRANGE")
            .arg(&key)
            .arg(6)
            .arg(13)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(u64::from_be_bytes(n.try_into().unwrap()), 10);
    });
}

/// The shapes the racing test moves between: limit and window both change, up and down.
const SHAPES: [(u32, u64); 4] = [(5, 1_000), (12, 600), (3, 2_000), (8, 300)];

fn shaped((limit, window_ms): (u32, u64)) -> Limits {
    let mut limits = limits(limit, 1000, 1);
    limits.rate.window_ms = window_ms;
    limits
}

/// One phase of the racing test: `callers` admits at once at one instant of virtual
/// time, `reconfigure` to `next` (if any) racing them. Each admission comes back with
/// the shape it was decided under when that is known: the shape in force before and
/// after the call was the same (one swap per phase, so the decision saw it too).
async fn race_phase(
    door: &Arc<RedisAdmission>,
    callers: usize,
    next: Option<Limits>,
) -> Vec<Option<(u32, Duration)>> {
    let mut calls = tokio::task::JoinSet::new();
    let mut change = None;
    for caller in 0..callers {
        if caller == callers / 2 {
            if let Some(limits) = next.clone() {
                let door = Arc::clone(door);
                change = Some(tokio::spawn(async move { door.reconfigure(limits) }));
            }
        }
        let door = Arc::clone(door);
        calls.spawn(async move {
            let before = door.rate_limit();
            let decision = door.admit(None, RequestClass::Normal).await;
            let after = door.rate_limit();
            match decision {
                Decision::Admitted(ticket) => {
                    drop(ticket);
                    Some((before == after).then_some(before))
                }
                Decision::Refused(Refusal::RateLimited { .. }) => None,
                other => panic!("only rate limited refusals here: {other:?}"),
            }
        });
    }
    if let Some(change) = change {
        change.await.unwrap().unwrap();
    }
    let mut admitted = Vec::new();
    while let Some(done) = calls.join_next().await {
        admitted.extend(done.unwrap());
    }
    admitted
}

/// Exact under change: 16 callers admit at each instant while every other instant a
/// `reconfigure` to another shape races them. Every decision whose shape is known is
/// checked against the window of that shape, counting every admission made before
/// (under any shape); at the instants without a change, the window is filled to exactly
/// its limit (no over-refusal either, once the ring has room for the largest limit).
#[test]
fn reconfigure_racing_admits_never_admits_limit_plus_one_in_any_window() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("race");
        let door = Arc::new(RedisAdmission::new(&store, &name, shaped(SHAPES[0])).unwrap());
        let step = Duration::from_millis(100);
        // (phase, recorded time in µs) of every admission.
        let mut times: Vec<(usize, u64)> = Vec::new();
        let mut current = 0;
        let (mut checked, mut ambiguous) = (0, 0);
        for phase in 0..80 {
            let now = T0 + step * phase as u32;
            clock.set(now);
            let now_us = now.as_micros() as u64;
            let racing = phase % 2 == 1;
            let before = current;
            if racing {
                current = (current + 1) % SHAPES.len();
            }
            let next = racing.then(|| shaped(SHAPES[current]));
            let admitted = race_phase(&door, 16, next).await;
            let in_window = |window_ms: u64| {
                times
                    .iter()
                    .filter(|&&(_, t)| t + window_ms * 1000 > now_us)
                    .count()
            };
            let shape_of = |i: usize| {
                let (limit, window_ms) = SHAPES[i];
                (limit, Duration::from_millis(window_ms))
            };
            let shapes = if racing {
                vec![before, current]
            } else {
                vec![current]
            };
            for i in shapes {
                let (limit, window) = shape_of(i);
                let known = admitted
                    .iter()
                    .filter(|s| **s == Some((limit, window)))
                    .count();
                if known > 0 {
                    let held = in_window(window.as_millis() as u64) + known;
                    assert!(
                        held <= limit as usize,
                        "phase {phase}: {held} admissions in a window of {window:?} under \
                         limit {limit}"
                    );
                    checked += known;
                }
            }
            if !racing {
                let (limit, window) = shape_of(current);
                assert!(admitted.iter().all(|s| *s == Some((limit, window))));
                // Filled to exactly the limit (or nothing more, when a wider shape left
                // more than that in it), once the ring has room for the largest limit.
                if phase >= 2 * SHAPES.len() {
                    let held = in_window(window.as_millis() as u64);
                    assert_eq!(
                        held + admitted.len(),
                        held.max(limit as usize),
                        "phase {phase}: the window is filled exactly"
                    );
                }
            }
            ambiguous += admitted.iter().filter(|s| s.is_none()).count();
            times.extend(std::iter::repeat_n((phase, now_us), admitted.len()));
        }
        assert_eq!(checked + ambiguous, times.len());
        assert!(checked > times.len() / 2, "{checked} of {}", times.len());
    });
}
