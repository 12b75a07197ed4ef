//! `RedisAdmission` does what the in-process `Admission` does: shadow mode, live
//! `reconfigure` of the shape and the bounds, a client not charged for a request the
//! shared window refused (also under concurrency); and the refusal cache spares the
//! round trips of a client asking again while it is limited, never refusing what Redis
//! would admit.

use std::sync::Arc;
use std::time::Duration;

use backstop_core::MetricsSnapshot;
use backstop_core::clock::ManualClock;
use backstop_core::{Decision, FrontDoor, Limits, Quota, RateScope, Refusal, RequestClass};
use backstop_redis::{RedisAdmission, RedisKeyedWindow, RedisStore, RedisWindow, StoreOptions};
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
    limits.rate.window = Duration::from_secs(60);
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
        assert_eq!(door.rate_limit().limit(), 5);
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
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&server.url(), &clock).await;
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
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("exact");
        let mut shape = limits(6, 1000, 1);
        shape.rate.window = Duration::from_secs(2);
        let door = RedisAdmission::new(&store, &name, shape)
            .unwrap()
            .with_per_key(Quota::new(2, Duration::from_secs(1)).unwrap())
            .unwrap();
        let shared = RedisWindow::new(
            &store,
            &name,
            Quota::new(6, Duration::from_secs(2)).unwrap(),
        )
        .unwrap();
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
