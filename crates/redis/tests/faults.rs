//! Faults: bad input at connect time, an evicting policy, Redis killed mid-burst and
//! restarted, a slow Redis behind a delaying loopback proxy.

mod common;
use common::runtime;

use backstop_testkit::redis as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backstop_core::jobs::JobBounds;
use backstop_core::{OverloadReason, WaitReason};
use backstop_redis::{
    ConnectError, EvictionCheck, FailurePolicy, RedisStore, RedisWindow, Refusal, Source,
    StartError, StoreOptions, jobs,
};

/// The deadline of the fault tests: short, with room for a loaded machine.
const DEADLINE: Duration = Duration::from_millis(100);
/// What the tests allow past the deadline for scheduling on a loaded machine.
const SLACK: Duration = Duration::from_millis(400);

fn quick_connect() -> StoreOptions {
    StoreOptions {
        connect_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    }
}

#[test]
fn a_malformed_url_is_a_typed_error() {
    runtime().block_on(async {
        for url in ["http://127.0.0.1:6379", "redis://[::1", "not a url", ""] {
            let err = RedisStore::connect(url, quick_connect()).await.unwrap_err();
            assert!(matches!(err, ConnectError::BadUrl(_)), "{url}: {err:?}");
        }
    });
}

#[test]
fn a_closed_port_is_unreachable() {
    runtime().block_on(async {
        let url = format!("redis://127.0.0.1:{}", support::free_port());
        let started = Instant::now();
        let err = RedisStore::connect(&url, quick_connect())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by connect_timeout"
        );
    });
}

#[test]
fn a_wrong_or_missing_password_is_an_auth_error() {
    let Some(server) = support::RedisServer::start(&["--requirepass", "right-secret"]) else {
        return;
    };
    runtime().block_on(async {
        let wrong = format!("redis://:wrong-secret@127.0.0.1:{}", server.port);
        let err = RedisStore::connect(&wrong, quick_connect())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Auth(_)), "{err:?}");
        let err = RedisStore::connect(&server.url(), quick_connect())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Auth(_)), "no password: {err:?}");
        let right = format!("redis://:right-secret@127.0.0.1:{}", server.port);
        RedisStore::connect(&right, quick_connect())
            .await
            .expect("the right password");
    });
}

#[test]
fn an_evicting_policy_is_refused_or_warned_about() {
    let Some(server) = support::RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]) else {
        return;
    };
    runtime().block_on(async {
        let err = RedisStore::connect(&server.url(), quick_connect())
            .await
            .unwrap_err();
        match err {
            ConnectError::EvictionPolicy { policy } => assert_eq!(policy, "allkeys-lru"),
            other => panic!("expected an eviction refusal, got {other:?}"),
        }
        let warn = StoreOptions {
            eviction_check: EvictionCheck::WarnOnly,
            ..quick_connect()
        };
        let store = RedisStore::connect(&server.url(), warn).await.unwrap();
        assert!(store.eviction_warning().unwrap().contains("allkeys-lru"));
    });
    // volatile-* too: window keys carry TTLs.
    let Some(server) = support::RedisServer::start(&["--maxmemory-policy", "volatile-ttl"]) else {
        return;
    };
    runtime().block_on(async {
        let err = RedisStore::connect(&server.url(), quick_connect())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::EvictionPolicy { .. }),
            "{err:?}"
        );
    });
}

#[test]
fn an_eviction_policy_is_read_from_info_when_config_is_disabled() {
    let Some(server) = support::RedisServer::start(&[
        "--maxmemory-policy",
        "allkeys-lfu",
        "--rename-command",
        "CONFIG",
        "",
    ]) else {
        return;
    };
    runtime().block_on(async {
        let err = RedisStore::connect(&server.url(), quick_connect())
            .await
            .unwrap_err();
        match err {
            ConnectError::EvictionPolicy { policy } => assert_eq!(policy, "allkeys-lfu"),
            other => panic!("expected an eviction refusal, got {other:?}"),
        }
    });
}

/// Decisions on a window while the test kills and restarts Redis: each answers within
/// the deadline (plus scheduling slack), fails closed while Redis is away, and the store
/// recovers on its own afterwards.
#[test]
fn redis_killed_mid_burst_fails_closed_then_recovers() {
    let Some(mut server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        // fail_closed; a 100 ms deadline leaves room for a loaded CI machine.
        let options = StoreOptions {
            deadline: DEADLINE,
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&server.url(), options).await.unwrap();
        let window = Arc::new(common::window(
            &store,
            "killed",
            1000,
            Duration::from_secs(60),
        ));
        let burst = |window: Arc<RedisWindow>| async move {
            let mut worst = Duration::ZERO;
            let (mut admitted, mut unavailable) = (0, 0);
            for _ in 0..20 {
                let started = Instant::now();
                match window.try_acquire().await {
                    Ok(()) => admitted += 1,
                    Err(Refusal::Overloaded {
                        reason: OverloadReason::StoreUnavailable,
                        ..
                    }) => unavailable += 1,
                    Err(other) => panic!("unexpected {other:?}"),
                }
                worst = worst.max(started.elapsed());
            }
            (admitted, unavailable, worst)
        };
        let (admitted, _, _) = burst(Arc::clone(&window)).await;
        assert_eq!(admitted, 20, "healthy first");

        let tasks: Vec<_> = (0..8)
            .map(|_| tokio::spawn(burst(Arc::clone(&window))))
            .collect();
        server.kill();
        let mut unavailable_total = 0;
        for task in tasks {
            let (_, unavailable, worst) = task.await.unwrap();
            unavailable_total += unavailable;
            assert!(
                worst < DEADLINE + SLACK,
                "no hang past the deadline: {worst:?}"
            );
        }
        // After the kill, everything is refused; the burst raced the kill, so at least
        // the calls after it.
        let (admitted, unavailable, worst) = burst(Arc::clone(&window)).await;
        assert_eq!(
            (admitted, unavailable),
            (0, 20),
            "fail closed while Redis is down"
        );
        assert!(worst < DEADLINE + SLACK, "{worst:?}");
        // Every store_unavailable was one counted error or timeout, or a call the open
        // breaker answered at once, and nothing else was.
        let metrics = store.metrics().snapshot();
        assert_eq!(
            metrics.store_errors + metrics.timeouts + metrics.breaker_refused,
            unavailable_total + unavailable,
            "{metrics:?}"
        );

        server.restart();
        common::within(
            Duration::from_secs(10),
            "recovers on its own after Redis restarts",
            async || window.try_acquire().await.is_ok(),
        )
        .await;
    });
}

#[test]
fn a_slow_redis_passes_the_deadline_and_the_policy_decides() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let port = support::delaying_proxy(server.port, Arc::clone(&delay_ms)).await;
        let url = format!("redis://127.0.0.1:{port}");
        let strict_options = StoreOptions {
            deadline: DEADLINE,
            ..StoreOptions::default()
        };
        let closed = RedisStore::connect(&url, strict_options).await.unwrap();
        let fallback = RedisStore::connect(
            &url,
            StoreOptions {
                failure_policy: FailurePolicy::LocalFallback { share: 0.5 },
                ..strict_options
            },
        )
        .await
        .unwrap();
        let minute = Duration::from_secs(60);
        let strict = common::window(&closed, "slow-closed", 10, minute);
        let shared = common::window(&fallback, "slow-fallback", 10, minute);
        assert_eq!(strict.try_acquire_from().await, Ok(Source::Store));
        assert_eq!(shared.try_acquire_from().await, Ok(Source::Store));

        delay_ms.store(600, Ordering::Relaxed);
        let started = Instant::now();
        assert!(matches!(
            strict.try_acquire().await,
            Err(Refusal::Overloaded {
                reason: OverloadReason::StoreUnavailable,
                ..
            })
        ));
        assert!(
            started.elapsed() < DEADLINE + SLACK,
            "the deadline, not the delay"
        );
        // Local fallback: this replica's half of the limit (5), then exact 429s.
        for _ in 0..5 {
            assert_eq!(shared.try_acquire_from().await, Ok(Source::LocalFallback));
        }
        assert!(matches!(
            shared.try_acquire().await,
            Err(Refusal::RateLimited { .. })
        ));
        let metrics = fallback.metrics().snapshot();
        assert_eq!(metrics.fallback_decisions, 6);
        // Each a timeout, or (once five failed in a row) answered by the open breaker.
        assert!(
            metrics.timeouts + metrics.breaker_refused >= 6,
            "{metrics:?}"
        );

        delay_ms.store(0, Ordering::Relaxed);
        common::within(
            Duration::from_secs(10),
            "back on the store once Redis is fast again",
            async || strict.try_acquire_from().await == Ok(Source::Store),
        )
        .await;
    });
}

/// Batched callers hold no timer of their own: the batching task must answer each of
/// them by its deadline, also those that queue up behind a call already in flight.
#[test]
fn concurrent_callers_behind_a_slow_call_each_get_their_deadline() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let port = support::delaying_proxy(server.port, Arc::clone(&delay_ms)).await;
        let options = StoreOptions {
            deadline: DEADLINE,
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), options)
            .await
            .unwrap();
        let window = Arc::new(common::window(
            &store,
            "slow-batch",
            1000,
            Duration::from_secs(60),
        ));
        assert_eq!(window.try_acquire_from().await, Ok(Source::Store));
        delay_ms.store(2_000, Ordering::Relaxed);
        let mut callers = tokio::task::JoinSet::new();
        // Two waves: the second arrives while the first one's call is in flight.
        for wave in 0..2u32 {
            for _ in 0..16 {
                let window = Arc::clone(&window);
                callers.spawn(async move {
                    let started = Instant::now();
                    let answer = window.try_acquire().await;
                    (answer, started.elapsed())
                });
            }
            if wave == 0 {
                tokio::time::sleep(DEADLINE / 2).await;
            }
        }
        let mut answered = 0;
        while let Some(joined) = callers.join_next().await {
            let (answer, took) = joined.unwrap();
            assert!(
                matches!(
                    answer,
                    Err(Refusal::Overloaded {
                        reason: OverloadReason::StoreUnavailable,
                        ..
                    })
                ),
                "{answer:?}"
            );
            assert!(took < DEADLINE + SLACK, "answered after {took:?}");
            answered += 1;
        }
        assert_eq!(answered, 32);
        assert!(store.metrics().snapshot().timeouts >= 32);
    });
}

const BOUNDS: JobBounds = JobBounds {
    max_queue: 3,
    critical_reserve: 0,
    max_jobs: 1,
};

/// Waits (briefly, real time) for what the store does in the background.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 3 s");
}

/// A server, a store behind the delaying proxy (deadline [`DEADLINE`]) and one
/// straight to the server, for looking at what Redis holds.
async fn slow_and_direct(
    server: &support::RedisServer,
) -> (RedisStore, RedisStore, Arc<AtomicU64>) {
    let delay_ms = Arc::new(AtomicU64::new(0));
    let port = support::delaying_proxy(server.port, Arc::clone(&delay_ms)).await;
    let options = StoreOptions {
        deadline: DEADLINE,
        ..StoreOptions::default()
    };
    let slow = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), options)
        .await
        .unwrap();
    let direct = RedisStore::connect(&server.url(), options).await.unwrap();
    (slow, direct, delay_ms)
}

/// Enter.lua ran but answered after the deadline; the caller got
/// store_unavailable, so the place must not stay held for the whole lease.
#[test]
fn a_late_answer_to_enter_or_acquire_leaves_no_place_held() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let (slow, direct, delay_ms) = slow_and_direct(&server).await;
        let lease = Duration::from_secs(30);
        let (queue, slots) = jobs::counters(&slow, "late-enter", BOUNDS, lease).unwrap();
        let (seen_queue, seen_slots) =
            jobs::counters(&direct, "late-enter", BOUNDS, lease).unwrap();
        delay_ms.store(600, Ordering::Relaxed);
        assert!(matches!(
            queue.try_enter().await,
            Err(Refusal::Overloaded {
                reason: OverloadReason::StoreUnavailable,
                ..
            })
        ));
        assert!(matches!(
            slots.try_acquire().await,
            Err(WaitReason::StoreUnavailable)
        ));
        eventually("the queue place is given back", async || {
            seen_queue.len().await.unwrap() == 0
        })
        .await;
        eventually("the slot is given back", async || {
            seen_slots.active().await.unwrap() == 0
        })
        .await;
    });
}

/// Start.lua ran but answered after the deadline. A retry with the ticket
/// finds the slot it took (not LeaseLost); dropping a ticket instead frees the slot.
#[test]
fn a_late_answer_to_start_is_found_by_a_retry_or_freed_by_a_drop() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let (slow, direct, delay_ms) = slow_and_direct(&server).await;
        let lease = Duration::from_secs(30);
        let (queue, slots) = jobs::counters(&slow, "late-start", BOUNDS, lease).unwrap();
        let (seen_queue, seen_slots) =
            jobs::counters(&direct, "late-start", BOUNDS, lease).unwrap();

        let ticket = queue.try_enter().await.unwrap();
        delay_ms.store(600, Ordering::Relaxed);
        let mut ticket = match slots.try_start(ticket).await {
            Err(StartError::StoreUnavailable(ticket, _)) => ticket,
            other => panic!("expected store_unavailable, got {other:?}"),
        };
        assert_eq!(seen_slots.active().await.unwrap(), 1, "the script ran");
        delay_ms.store(0, Ordering::Relaxed);
        let permit = loop {
            match slots.try_start(ticket).await {
                Ok(permit) => break permit,
                Err(StartError::StoreUnavailable(back, _)) => {
                    ticket = back; // the proxy still drains delayed answers
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(other) => panic!("a retry must find its slot, got {other:?}"),
            }
        };
        assert_eq!(seen_slots.active().await.unwrap(), 1);
        drop(permit);
        eventually("the slot is freed", async || {
            seen_slots.active().await.unwrap() == 0
        })
        .await;

        let ticket = queue.try_enter().await.unwrap();
        delay_ms.store(600, Ordering::Relaxed);
        let ticket = match slots.try_start(ticket).await {
            Err(StartError::StoreUnavailable(ticket, _)) => ticket,
            other => panic!("expected store_unavailable, got {other:?}"),
        };
        drop(ticket);
        eventually("dropping the ticket frees the slot it took", async || {
            seen_slots.active().await.unwrap() == 0 && seen_queue.len().await.unwrap() == 0
        })
        .await;
    });
}

/// While every renewal fails (Redis slower than the deadline), the holder
/// learns its lease is gone once a whole lease has passed without a successful renewal.
#[test]
fn a_lease_whose_renewals_all_fail_is_reported_lost() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let (slow, _direct, delay_ms) = slow_and_direct(&server).await;
        let lease = DEADLINE * 3;
        let (queue, _slots) = jobs::counters(&slow, "unrenewed", BOUNDS, lease).unwrap();
        let ticket = queue.try_enter().await.unwrap();
        assert!(!ticket.is_lost());
        delay_ms.store(5_000, Ordering::Relaxed);
        // Real time: the renewals run on it, and all time out. The lease ends a lease
        // after the take was sent; lost() completes then.
        let taken = Instant::now();
        tokio::time::timeout(lease + SLACK, ticket.lost())
            .await
            .expect("told within the lease and some scheduling slack");
        assert!(taken.elapsed() >= lease - lease / 1000 - Duration::from_millis(1));
        assert!(
            ticket.is_lost(),
            "no renewal succeeded for a whole lease: the place may be someone else's"
        );
        assert_eq!(ticket.loss(), Some(backstop_redis::LeaseLoss::Unrenewed));
        assert!(
            slow.metrics().snapshot().lease_renewal_failures >= 2,
            "a second try"
        );
    });
}

/// A lease is judged from when its take was sent: with the answer 300 ms late, the
/// holder's lease still ends no later than Redis's (it was judged from the answer, and
/// so 300 ms too late, before).
#[test]
fn a_slow_take_is_judged_from_when_it_was_sent() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let port = support::delaying_proxy(server.port, Arc::clone(&delay_ms)).await;
        let options = StoreOptions {
            deadline: Duration::from_secs(1),
            ..StoreOptions::default()
        };
        let slow = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), options)
            .await
            .unwrap();
        let lease = Duration::from_secs(3);
        let (_queue, slots) = jobs::counters(&slow, "slow-take", BOUNDS, lease).unwrap();
        delay_ms.store(300, Ordering::Relaxed);
        let permit = slots.try_acquire().await.unwrap();
        let mut direct = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let asked = Instant::now();
        let here = permit.remaining();
        let (score, (secs, micros)): (u64, (u64, u64)) = redis::pipe()
            .cmd("ZSCORE")
            .arg("{backstop:slow-take}:slots")
            .arg(permit.holder())
            .cmd("TIME")
            .query_async(&mut direct)
            .await
            .unwrap();
        let in_redis = Duration::from_micros(score - (secs * 1_000_000 + micros));
        assert!(
            here <= in_redis + asked.elapsed(),
            "held here {here:?}, in Redis {in_redis:?}"
        );
        assert!(
            here <= lease - Duration::from_millis(300),
            "the 300 ms the answer took count against the lease: {here:?} left"
        );
    });
}

/// A lease shorter than three deadlines is a typed error.
#[test]
fn a_lease_below_three_deadlines_is_a_typed_error() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let options = StoreOptions {
            deadline: Duration::from_millis(50),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&server.url(), options).await.unwrap();
        let err = jobs::counters(&store, "short", BOUNDS, Duration::from_millis(149)).unwrap_err();
        assert_eq!(err.field(), "lease");
        assert!(jobs::counters(&store, "short", BOUNDS, Duration::from_millis(150)).is_ok());
    });
}

/// Out-of-range durations are refused before connecting; the whole connect
/// (connection and checks) is bounded by one connect_timeout.
#[test]
fn store_options_are_checked_and_connect_keeps_one_deadline() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let huge = StoreOptions {
            deadline: Duration::MAX,
            ..StoreOptions::default()
        };
        match RedisStore::connect(&server.url(), huge).await {
            Err(ConnectError::BadOptions(err)) => assert_eq!(err.field(), "deadline"),
            other => panic!("expected bad options, got {other:?}"),
        }
        let delay_ms = Arc::new(AtomicU64::new(400));
        let port = support::delaying_proxy(server.port, Arc::clone(&delay_ms)).await;
        let started = Instant::now();
        let result =
            RedisStore::connect(&format!("redis://127.0.0.1:{port}"), quick_connect()).await;
        let took = started.elapsed();
        assert!(
            matches!(result, Err(ConnectError::Unreachable { .. })),
            "{result:?}"
        );
        assert!(
            took < quick_connect().connect_timeout + SLACK,
            "one deadline for the whole connect: {took:?}"
        );
    });
}
