//! `RedisAdmission`: core's front door on the Redis stages. Several of them on one
//! redis-server share one limit, one queue and one set of slots, decide in `Admission`'s
//! order, and fail closed with 503 `store_unavailable`. It does what the in-process
//! `Admission` does: shadow mode, live `reconfigure` of the shape and the bounds (exact
//! while callers race it), a client not charged for a request the shared window refused
//! (also under concurrency); and the refusal cache spares the round trips of a caller
//! asking again while it is limited, never refusing what Redis would admit.

mod common;
use common::runtime;

use backstop_testkit::redis as support;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::{
    Decision, FrontDoor, Limits, OverloadReason, RateScope, Refusal, RequestClass, WaitReason,
};
use backstop_core::{MetricsSnapshot, Quota};
use backstop_redis::{RedisAdmission, RedisKeyedWindow, RedisStore, StoreOptions};

/// Virtual time the doors agree on (the windows store microseconds since its epoch).
const T0: Duration = Duration::from_secs(1_700_000_000);

fn options() -> StoreOptions {
    StoreOptions {
        // Generous: these tests are about decisions, not deadlines (faults.rs is).
        deadline: Duration::from_secs(1),
        ..StoreOptions::default()
    }
}

fn limits(rate: u32, queue: u32, jobs: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = rate;
    limits.rate.window = Duration::from_millis(60_000);
    limits.queue.max = queue;
    limits.queue.retry_after_hint = Duration::from_millis(2_000);
    limits.jobs.max = jobs;
    limits.resources.enabled = false;
    limits
}

async fn store_on(url: &str, clock: &ManualClock) -> RedisStore {
    RedisStore::connect_with_clock(url, options(), Arc::new(clock.clone()))
        .await
        .expect("connect")
}

/// A store on a clock of its own, set to `T0`.
async fn store_at_t0(url: &str) -> (ManualClock, RedisStore) {
    let clock = ManualClock::new();
    clock.set(T0);
    let store = store_on(url, &clock).await;
    (clock, store)
}

fn refusal<T>(decision: &Decision<T>) -> Option<Refusal> {
    decision.refusal().copied()
}

#[test]
fn two_doors_on_one_store_admit_exactly_the_limit_in_total() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let (clock, store) = store_at_t0(&url).await;
        let name = support::unique("door-total");
        let a = RedisAdmission::new(&store, &name, limits(7, 100, 5)).unwrap();
        let b = RedisAdmission::new(&store, &name, limits(7, 100, 5)).unwrap();
        let (mut admitted, mut refused) = (0, Vec::new());
        for i in 0..20 {
            clock.advance(Duration::from_millis(100));
            let door = if i % 2 == 0 { &a } else { &b };
            match door.admit(None, RequestClass::Normal).await {
                Decision::Admitted(ticket) => {
                    drop(ticket);
                    admitted += 1;
                }
                other => refused.push(refusal(&other).expect("refused")),
            }
        }
        assert_eq!(admitted, 7, "one limit across both doors");
        assert_eq!(refused.len(), 13);
        // The first admission was at T0 + 100 ms, the last request at T0 + 2 s: the
        // window frees exactly 58.1 s later.
        assert_eq!(
            refused.last().copied(),
            Some(Refusal::RateLimited {
                retry_after: Duration::from_millis(58_100),
                scope: RateScope::Global,
            })
        );
        let counts = a.metrics().snapshot();
        let counts_b = b.metrics().snapshot();
        assert_eq!(counts.admitted_total + counts_b.admitted_total, 7);
        assert_eq!(counts.rate_limited_total + counts_b.rate_limited_total, 13);
        // One window later the budget is back, again shared.
        clock.advance(Duration::from_secs(60));
        let mut again = 0;
        for door in [&a, &b, &a, &b, &a, &b, &a, &b, &a, &b] {
            again += usize::from(matches!(
                door.admit(None, RequestClass::Normal).await,
                Decision::Admitted(_)
            ));
        }
        assert_eq!(again, 7);
        // Exempt requests pass and are only counted.
        assert!(matches!(
            a.admit(None, RequestClass::Exempt).await,
            Decision::Exempt
        ));
        assert_eq!(a.metrics().snapshot().exempt_total, 1);
    });
}

#[test]
fn a_client_refused_by_its_own_window_uses_none_of_the_shared_one() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let (clock, store) = store_at_t0(&url).await;
        let name = support::unique("door-order");
        // 5 per minute for everyone, 2 per two minutes for each client.
        let door = |store: &RedisStore| {
            RedisAdmission::new(store, &name, limits(5, 100, 5))
                .unwrap()
                .with_per_key(Quota::new(2, Duration::from_secs(120)).unwrap())
                .unwrap()
        };
        let (a, b) = (door(&store), door(&store));
        assert_eq!(
            a.client_rate_limit("x"),
            Some(Quota::new(2, Duration::from_secs(120)).unwrap())
        );
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(a.admit(Some("alice"), RequestClass::Normal).await);
        }
        // Alice's third, on either door: her own window refuses, with her exact wait.
        for door in [&a, &b] {
            let refused = refusal(&door.admit(Some("alice"), RequestClass::Normal).await);
            assert_eq!(
                refused,
                Some(Refusal::RateLimited {
                    retry_after: Duration::from_secs(120),
                    scope: RateScope::PerClient,
                })
            );
        }
        // Those refusals took nothing from the shared window: 3 places are left.
        for client in ["bob", "bob", "carol"] {
            assert!(matches!(
                b.admit(Some(client), RequestClass::Normal).await,
                Decision::Admitted(_)
            ));
        }
        // Full: dave is refused by the shared window, which is asked without charging
        // dave's own...
        let refused = refusal(&a.admit(Some("dave"), RequestClass::Normal).await).unwrap();
        assert_eq!(
            refused,
            Refusal::RateLimited {
                retry_after: Duration::from_secs(60),
                scope: RateScope::Global,
            }
        );
        // ...so once the shared window frees (60 s), dave has both of his 2 places in
        // his 120 s window: a charge at T0 would have left him one.
        clock.advance(Duration::from_secs(60));
        for _ in 0..2 {
            assert!(matches!(
                a.admit(Some("dave"), RequestClass::Normal).await,
                Decision::Admitted(_)
            ));
        }
        assert_eq!(
            refusal(&b.admit(Some("dave"), RequestClass::Normal).await).map(|r| r.as_str()),
            Some("rate_limited")
        );
        let by_scope = a.metrics().snapshot().rate_limited_by_scope_total;
        assert_eq!(by_scope, vec![("global", 1), ("per_client", 1)]);
        drop(held);
    });
}

#[test]
fn the_queue_and_the_slots_are_shared() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let (_, store) = store_at_t0(&url).await;
        let name = support::unique("door-jobs");
        let mut bounds = limits(100, 3, 1);
        bounds.queue.critical_reserve = 1;
        let a = RedisAdmission::new(&store, &name, bounds.clone()).unwrap();
        let b = RedisAdmission::new(&store, &name, bounds).unwrap();
        let first = a
            .admit(None, RequestClass::Normal)
            .await
            .into_result()
            .unwrap();
        let second = b
            .admit(None, RequestClass::Normal)
            .await
            .into_result()
            .unwrap();
        // Normal requests may use 3 - 1 places: the third normal one is refused with
        // the configured hint, a critical one takes the reserve.
        assert_eq!(
            refusal(&a.admit(None, RequestClass::Normal).await),
            Some(Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                retry_after_hint: Duration::from_secs(2),
            })
        );
        let critical = b
            .admit(None, RequestClass::Critical)
            .await
            .into_result()
            .unwrap();
        assert!(
            a.admit(None, RequestClass::Critical)
                .await
                .refusal()
                .is_some()
        );
        assert_eq!(a.queue().len().await.unwrap(), 3);
        // Each door's gauges are its own share: one place here, two there.
        let gauges = |door: &RedisAdmission| {
            let s = door.metrics().snapshot();
            (
                s.queue_depth,
                s.jobs_active,
                s.jobs_started_total,
                s.jobs_finished_total,
            )
        };
        assert_eq!((gauges(&a), gauges(&b)), ((1, 0, 0, 0), (2, 0, 0, 0)));

        // One slot across both doors.
        let permit = a.start_job(first.unwrap()).await.expect("a free slot");
        let (second, why) = b.start_job(second.unwrap()).await.unwrap_err();
        assert_eq!(why, WaitReason::NoFreeSlot);
        assert_eq!(b.slots().active().await.unwrap(), 1);
        assert_eq!((gauges(&a), gauges(&b)), ((0, 1, 1, 0), (2, 0, 0, 0)));
        drop(permit);
        assert_eq!(gauges(&a), (0, 0, 1, 1));
        // The release is sent in the background: the slot frees within moments.
        let mut ticket = second;
        let started = std::time::Instant::now();
        let permit = loop {
            match b.start_job(ticket).await {
                Ok(permit) => break permit,
                Err((back, WaitReason::NoFreeSlot)) => ticket = back,
                Err((_, other)) => panic!("{other}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "slot never freed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(b.metrics().snapshot().job_waits_total[0].0, "no_free_slot");
        assert!(b.metrics().snapshot().job_waits_total[0].1 >= 1);
        assert_eq!(gauges(&b), (1, 1, 1, 0));
        drop((permit, critical));
        assert_eq!(gauges(&b), (0, 0, 1, 1));
    });
}

#[test]
fn fail_closed_answers_503_store_unavailable_when_redis_is_gone() {
    let Some(mut server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(
            &server.url(),
            StoreOptions {
                deadline: Duration::from_millis(200),
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
        let door = RedisAdmission::new(&store, "gone", limits(10, 10, 1))
            .unwrap()
            .with_per_key(Quota::new(5, Duration::from_secs(60)).unwrap())
            .unwrap();
        let ticket = door
            .admit(Some("alice"), RequestClass::Normal)
            .await
            .into_result()
            .unwrap()
            .unwrap();
        server.kill();
        for key in [None, Some("alice")] {
            let refused = refusal(&door.admit(key, RequestClass::Normal).await).unwrap();
            assert_eq!(refused.status_code(), 503);
            assert_eq!(refused.as_str(), "store_unavailable");
            assert_eq!(
                refused.retry_after(),
                store.options().unavailable_retry_hint
            );
        }
        let (ticket, why) = door.start_job(ticket).await.unwrap_err();
        assert_eq!(why, WaitReason::StoreUnavailable);
        drop(ticket);
        let overloaded = door.metrics().snapshot().overloaded_total;
        assert!(
            overloaded.contains(&("store_unavailable", 2)),
            "{overloaded:?}"
        );
        assert!(
            door.metrics()
                .snapshot()
                .job_waits_total
                .contains(&("store_unavailable", 1))
        );
    });
}

#[test]
fn bad_limits_are_typed_errors() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let err = RedisAdmission::new(&store, "bad", limits(0, 5, 1)).unwrap_err();
        assert_eq!(err.field(), "rate.limit");
        let err = RedisAdmission::new(&store, "a{b", limits(5, 5, 1)).unwrap_err();
        assert_eq!(err.field(), "name");
    });
}

/// The label of a decision's refusal.
fn refusal_name<T>(decision: &Decision<T>) -> Option<&'static str> {
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
        let (_, store) = store_at_t0(&url).await;
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
            refusal_name(&door.admit(None, RequestClass::Normal).await),
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
        let (clock, store) = store_at_t0(&url).await;
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
            refusal_name(&door.admit(None, RequestClass::Normal).await),
            Some("rate_limited")
        );
        // Raised: two more (the three made still count), and the refusal cache dropped.
        door.reconfigure(limits(5, 10, 1)).unwrap();
        assert_eq!(door.rate_limit().limit(), 5);
        // The gauge (`backstop_rate_limit`) follows.
        let gauge = door.metrics().snapshot().rate_limit;
        assert_eq!(gauge.map(|quota| quota.limit()), Some(5), "{gauge:?}");
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
            refusal_name(&door.admit(None, RequestClass::Normal).await),
            Some("rate_limited")
        );
        // The queue bound: 5 held now; lowered to 5, a sixth is refused; raised, taken.
        door.reconfigure(limits(100, 5, 1)).unwrap();
        assert_eq!(
            refusal_name(&door.admit(None, RequestClass::Normal).await),
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
        let (_, store) = store_at_t0(&url).await;
        let door = Arc::new(
            RedisAdmission::new(&store, &support::unique("refund"), limits(10, 1000, 1))
                .unwrap()
                .with_per_key(Quota::new(100, Duration::from_secs(60)).unwrap())
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
    limits.rate.window = Duration::from_millis(window_ms);
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
                    Some((before == after).then_some((before.limit(), before.window())))
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
        let (clock, store) = store_at_t0(&url).await;
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

/// Commands the server ran for decisions, as `(scripts called, commands)`: every command
/// (those a script runs included) but the housekeeping a store does on its own (the
/// watch samples `TIME` and reads `CONFIG`; `INFO` is this count).
async fn decision_commands(conn: &mut backstop_redis::StoreConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let counts: Vec<(&str, u64)> = info
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| {
            !["info", "time", "config", "role", "ping", "hello", "client"]
                .iter()
                .any(|skip| name.starts_with(skip))
        })
        .filter_map(|(name, stats)| {
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name, calls.parse::<u64>().ok()?))
        })
        .collect();
    let scripts = counts
        .iter()
        .filter(|(name, _)| name.starts_with("eval"))
        .map(|(_, calls)| calls)
        .sum();
    (scripts, counts.iter().map(|(_, calls)| calls).sum())
}

/// Asks `ask` 100 times, 50 ms of virtual time apart, after a refusal that said
/// `retry_after`: each answer is `Err` with the time still to wait. Returns the scripts
/// and the commands the server ran meanwhile, and the answers the refusal cache gave.
async fn hammer<F, Fut>(
    store: &RedisStore,
    clock: &ManualClock,
    retry_after: Duration,
    ask: F,
) -> (u64, u64, u64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Duration>>,
{
    let mut conn = store.connection();
    let (before, commands) = (
        store.metrics().snapshot(),
        decision_commands(&mut conn).await,
    );
    for i in 1..=100 {
        clock.advance(Duration::from_millis(50));
        assert_eq!(
            ask().await,
            Some(retry_after - Duration::from_millis(50) * i)
        );
    }
    let after = store.metrics().snapshot();
    assert_eq!(
        after.store_decisions, before.store_decisions,
        "Redis decided nothing"
    );
    let now = decision_commands(&mut conn).await;
    (
        now.0 - commands.0,
        now.1 - commands.1,
        after.refusals_cached - before.refusals_cached,
    )
}

fn rate_limited<T>(decision: &Decision<T>) -> Option<Duration> {
    match decision.refusal() {
        Some(Refusal::RateLimited { retry_after, .. }) => Some(*retry_after),
        _ => None,
    }
}

/// A limited client hammering: after the first refusal, Redis is not asked again until
/// the `retry_after` it gave (the server's own count of commands says so), then it is,
/// and admits. Through the door's per-client stage each retry still peeks the shared
/// window (one read-only call): which stage refuses decides the `retry_after`.
#[test]
fn the_refusal_cache_spares_a_limited_clients_round_trips() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let (clock, store) = store_at_t0(&server.url()).await;
        let ten = Duration::from_secs(10);
        let mut shape = limits(2, 1000, 1);
        shape.rate.window = Duration::from_secs(10);
        // The door's shared window.
        let door = RedisAdmission::new(&store, "global", shape).unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            let Decision::Admitted(ticket) = door.admit(None, RequestClass::Normal).await else {
                panic!("admitted");
            };
            held.push(ticket);
        }
        let first = door.admit(None, RequestClass::Normal).await;
        assert_eq!(rate_limited(&first), Some(ten));
        let ask = || async { rate_limited(&door.admit(None, RequestClass::Normal).await) };
        assert_eq!(
            hammer(&store, &clock, ten, ask).await,
            (0, 0, 100),
            "0 calls"
        );
        clock.set(T0 + ten);
        assert!(matches!(
            door.admit(None, RequestClass::Normal).await,
            Decision::Admitted(_)
        ));
        // A client's window.
        clock.set(T0);
        let clients = RedisKeyedWindow::new(&store, "keyed", Quota::new(2, ten).unwrap()).unwrap();
        for _ in 0..2 {
            clients.try_acquire("bob").await.unwrap();
        }
        let refused = |answer: Result<(), Refusal>| match answer {
            Err(Refusal::RateLimited { retry_after, .. }) => Some(retry_after),
            _ => None,
        };
        assert_eq!(refused(clients.try_acquire("bob").await), Some(ten));
        let ask = || async { refused(clients.try_acquire("bob").await) };
        assert_eq!(
            hammer(&store, &clock, ten, ask).await,
            (0, 0, 100),
            "0 calls"
        );
        clock.set(T0 + ten);
        assert_eq!(clients.try_acquire("bob").await, Ok(()));
        // The door's per-client stage: one peek of the shared window per retry.
        clock.set(T0);
        let door = RedisAdmission::new(&store, "per-client", limits(1000, 1000, 1))
            .unwrap()
            .with_per_key(Quota::new(2, ten).unwrap())
            .unwrap();
        for _ in 0..2 {
            let Decision::Admitted(ticket) = door.admit(Some("bob"), RequestClass::Normal).await
            else {
                panic!("admitted");
            };
            held.push(ticket);
        }
        let first = door.admit(Some("bob"), RequestClass::Normal).await;
        assert_eq!(rate_limited(&first), Some(ten));
        let ask = || async { rate_limited(&door.admit(Some("bob"), RequestClass::Normal).await) };
        let (peeks, _, cached) = hammer(&store, &clock, ten, ask).await;
        assert_eq!((peeks, cached), (100, 100), "one read-only peek per retry");
        clock.set(T0 + ten);
        assert!(matches!(
            door.admit(Some("bob"), RequestClass::Normal).await,
            Decision::Admitted(_)
        ));
        drop(held);
    });
}

/// The cache never refuses what Redis would admit: two clients of a door whose shared
/// window (6 per 2 s) and client windows (2 per 1 s) both refuse, asked at irregular
/// times; every refusal answered from the cache is compared with Redis's own answer at
/// that instant (asked past every cache): Redis refuses too, with the same wait.
#[test]
fn every_cached_refusal_waits_exactly_what_redis_says() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let (clock, store) = store_at_t0(&url).await;
        let name = support::unique("exact");
        let mut shape = limits(6, 1000, 1);
        shape.rate.window = Duration::from_secs(2);
        let door = RedisAdmission::new(&store, &name, shape)
            .unwrap()
            .with_per_key(Quota::new(2, Duration::from_secs(1)).unwrap())
            .unwrap();
        let shared = common::window(&store, &name, 6, Duration::from_secs(2));
        let clients = RedisKeyedWindow::new(
            &store,
            &name,
            Quota::new(2, Duration::from_secs(1)).unwrap(),
        )
        .unwrap();
        let mut seed = 7u64;
        let mut cached = [0usize; 2];
        for _ in 0..400 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            clock.advance(Duration::from_micros((seed >> 33) % 150_000));
            let client = if seed & (1 << 20) == 0 { "ann" } else { "ben" };
            let before = store.metrics().snapshot().refusals_cached;
            let answer = door.admit(Some(client), RequestClass::Normal).await;
            if store.metrics().snapshot().refusals_cached == before {
                continue;
            }
            let Some(Refusal::RateLimited { retry_after, scope }) = answer.refusal().copied()
            else {
                panic!("a cached answer is a rate limit: {answer:?}");
            };
            let redis_says = match scope {
                RateScope::Global => shared.peek_checked().await.unwrap(),
                _ => clients.try_acquire_checked(client).await.unwrap(),
            };
            assert_eq!(
                redis_says,
                Err(Refusal::RateLimited { retry_after, scope }),
                "cached at {:?}",
                clock.now()
            );
            cached[usize::from(scope == RateScope::Global)] += 1;
        }
        assert!(cached[0] > 20 && cached[1] > 20, "{cached:?}");
    });
}
