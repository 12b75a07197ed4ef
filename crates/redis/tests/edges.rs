//! Failure edges: one deadline per admission, decisions that reach Redis after their
//! callers gave up counting nothing, the breaker, the eviction policy changed while
//! running, and `local_fallback`'s bound at both edges of an outage.

mod common;
use common::runtime;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backstop_core::clock::ManualClock;
use backstop_core::{Decision, FrontDoor, Limits, OverloadReason, Quota, RequestClass};
use backstop_redis::{
    EvictionCheck, FailurePolicy, RedisAdmission, RedisStore, Refusal, Source, StoreError,
    StoreOptions,
};
use backstop_testkit::redis::{RedisServer, delaying_proxy};

/// What the tests allow past a deadline for scheduling on a loaded machine.
const SLACK: Duration = Duration::from_millis(400);

fn limits(rate: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = rate;
    limits.resources.enabled = false;
    limits
}

/// An admission with a per-client stage makes four calls (peek, the client's window,
/// the shared window, the queue). Each answered in 700 ms, under a 1 s deadline: one
/// deadline for the whole admission refuses it at 1 s (each call's own deadline would
/// have admitted it after 2.8 s). The deadline is long so that the undelayed first
/// admission fits in it also on a loaded machine.
#[test]
fn an_admission_has_one_deadline_for_all_its_calls() {
    let Some(server) = RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let port = delaying_proxy(server.port, Arc::clone(&delay_ms)).await;
        let deadline = Duration::from_millis(1000);
        let options = StoreOptions {
            deadline,
            breaker_threshold: 0,
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), options)
            .await
            .unwrap();
        let door = RedisAdmission::new(&store, "one-deadline", limits(100))
            .unwrap()
            .with_per_key(Quota::new(10, Duration::from_secs(60)).unwrap())
            .unwrap();
        assert!(matches!(
            door.admit(Some("alice"), RequestClass::Normal).await,
            Decision::Admitted(_)
        ));
        delay_ms.store(700, Ordering::Relaxed);
        let started = Instant::now();
        let decision = door.admit(Some("alice"), RequestClass::Normal).await;
        let took = started.elapsed();
        assert_eq!(
            decision.refusal().map(|r| r.as_str()),
            Some("store_unavailable"),
            "{took:?}"
        );
        assert!(took < deadline + SLACK, "one deadline: {took:?}");
    });
}

/// Redis stops running writes for 2 s (CLIENT PAUSE WRITE) while 32 callers with a
/// 100 ms deadline keep asking: every one is told 503, and when Redis runs the scripts
/// it was sent, past their deadline, they count nothing.
#[test]
fn decisions_that_reach_redis_after_their_callers_gave_up_count_nothing() {
    let Some(server) = RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let options = StoreOptions {
            deadline: Duration::from_millis(100),
            breaker_threshold: 0,
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&server.url(), options).await.unwrap();
        let window = Arc::new(common::window(
            &store,
            "stalled",
            100_000,
            Duration::from_secs(60),
        ));
        window.try_acquire().await.unwrap();
        let mut admin = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(2000)
            .arg("WRITE")
            .query_async(&mut admin)
            .await
            .unwrap();
        let told_admitted = Arc::new(AtomicU64::new(0));
        let stalled_until = Instant::now() + Duration::from_millis(1800);
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (window, told_admitted) = (Arc::clone(&window), Arc::clone(&told_admitted));
            callers.spawn(async move {
                let mut refused = 0u64;
                while Instant::now() < stalled_until {
                    match window.try_acquire().await {
                        Ok(()) => {
                            told_admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => refused += 1,
                    }
                }
                refused
            });
        }
        let mut refused = 0;
        while let Some(n) = callers.join_next().await {
            refused += n.unwrap();
        }
        assert!(refused >= 32, "{refused}");
        // Wait out the pause: then Redis runs what it was sent, each past its deadline.
        let _: () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async(&mut admin)
            .await
            .unwrap();
        let _: String = redis::cmd("PING").query_async(&mut admin).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n: Vec<u8> = redis::cmd("GETRANGE")
            .arg(window.key())
            .arg(6)
            .arg(13)
            .query_async(&mut admin)
            .await
            .unwrap();
        let counted = u64::from_be_bytes(n.try_into().unwrap());
        assert_eq!(
            counted,
            1 + told_admitted.load(Ordering::Relaxed),
            "Redis counted only what callers were told was admitted ({refused} refused)"
        );
    });
}

#[test]
fn an_open_breaker_answers_at_once_then_lets_calls_through_again() {
    let Some(server) = RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let port = delaying_proxy(server.port, Arc::clone(&delay_ms)).await;
        let options = StoreOptions {
            deadline: Duration::from_millis(50),
            breaker_threshold: 3,
            breaker_open_for: Duration::from_millis(500),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), options)
            .await
            .unwrap();
        let window = common::window(&store, "breaker", 1000, Duration::from_secs(60));
        window.try_acquire().await.unwrap();
        delay_ms.store(300, Ordering::Relaxed);
        for _ in 0..3 {
            assert!(matches!(
                window.try_acquire_checked().await,
                Err(StoreError::Timeout(_))
            ));
        }
        // Open: answered without a call, at once.
        let started = Instant::now();
        assert_eq!(
            window.try_acquire_checked().await,
            Err(StoreError::BreakerOpen)
        );
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "{:?}",
            started.elapsed()
        );
        let metrics = store.metrics().snapshot();
        assert_eq!((metrics.breaker_opened, metrics.breaker_refused), (1, 1));
        // Past the open time, Redis is asked again; a success closes it.
        delay_ms.store(0, Ordering::Relaxed);
        let reopen = Instant::now() + Duration::from_secs(10);
        loop {
            match window.try_acquire_checked().await {
                Ok(Ok(())) => break,
                Err(StoreError::BreakerOpen | StoreError::Timeout(_)) => {
                    assert!(Instant::now() < reopen, "never closed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("{other:?}"),
            }
        }
        window.try_acquire().await.unwrap();
    });
}

/// The eviction policy turns evicting while the store runs: under `Refuse`, calls fail
/// at once (the policy answers) until it is `noeviction` again.
#[test]
fn an_eviction_policy_changed_while_running_is_noticed() {
    let Some(server) = RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let options = StoreOptions {
            recheck_every: Duration::from_millis(50),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&server.url(), options).await.unwrap();
        let window = common::window(&store, "evicting", 1000, Duration::from_secs(60));
        window.try_acquire().await.unwrap();
        let mut admin = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let set = async |admin: &mut redis::aio::MultiplexedConnection, policy: &str| {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg(policy)
                .query_async(admin)
                .await
                .unwrap();
        };
        set(&mut admin, "allkeys-lru").await;
        let until = Instant::now() + Duration::from_secs(5);
        while window.try_acquire_checked().await != Err(StoreError::Evicting) {
            assert!(Instant::now() < until, "the running check never saw it");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(matches!(
            window.try_acquire().await,
            Err(Refusal::Overloaded {
                reason: OverloadReason::StoreUnavailable,
                ..
            })
        ));
        set(&mut admin, "noeviction").await;
        let until = Instant::now() + Duration::from_secs(5);
        while window.try_acquire_checked().await != Ok(Ok(())) {
            assert!(Instant::now() < until, "never back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Warned about only, under WarnOnly: calls go on.
        let warn = RedisStore::connect(
            &server.url(),
            StoreOptions {
                eviction_check: EvictionCheck::WarnOnly,
                ..options
            },
        )
        .await
        .unwrap();
        let window = common::window(&warn, "evicting-warned", 10, Duration::from_secs(60));
        set(&mut admin, "allkeys-lru").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        window.try_acquire().await.unwrap();
    });
}

/// Admissions (virtual µs) made anywhere: the most in any window of `window_us`.
fn most_in_a_window(times: &[u64], window_us: u64) -> usize {
    times
        .iter()
        .map(|&end| {
            times
                .iter()
                .filter(|&&t| t <= end && t + window_us > end)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Two replicas with `local_fallback` share 0.5, limit 10 per 10 s, on injected time;
/// Redis is killed, and started again (empty) once the outage has outlasted a window.
/// The README's bound: at most L + K·⌊s·L⌋ = 20 in any window (Redis's 10 before the
/// outage, each replica's 5 after it began), and at most K·⌊s·L⌋ = 10 in windows after
/// an outage longer than a window (the stricter answer of local and Redis for a window
/// after recovery: without it, Redis, which saw none of the local admissions, would
/// admit 10 more). Every decision is tried at each step, so each bound is reached.
#[test]
fn local_fallback_stays_within_its_stated_bound_at_both_edges_of_an_outage() {
    let Some(mut server) = RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let t0 = Duration::from_secs(1_700_000_000);
        clock.set(t0);
        let options = StoreOptions {
            deadline: Duration::from_millis(500),
            breaker_threshold: 0,
            failure_policy: FailurePolicy::LocalFallback { share: 0.5 },
            ..StoreOptions::default()
        };
        let window = Duration::from_secs(10);
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let store =
                RedisStore::connect_with_clock(&server.url(), options, Arc::new(clock.clone()))
                    .await
                    .unwrap();
            let w = common::window(&store, "outage", 10, window);
            replicas.push((store, w));
        }
        let mut admitted: Vec<u64> = Vec::new();
        let mut by_source = [0usize; 2];
        let step = |admitted: &mut Vec<u64>, by_source: &mut [usize; 2], source: Source| {
            admitted.push(clock.now().as_micros() as u64);
            by_source[usize::from(source == Source::LocalFallback)] += 1;
        };
        // Before: the whole limit through Redis at 9 s (no more asked: a refusal would be
        // cached, and hold through the outage's start, which is tighter still).
        clock.set(t0 + Duration::from_secs(9));
        for _ in 0..5 {
            for (_, w) in &replicas {
                if let Ok(source) = w.try_acquire_from().await {
                    step(&mut admitted, &mut by_source, source);
                }
            }
        }
        assert_eq!(by_source, [10, 0]);
        // The outage begins at 9.5 s: each replica decides on its own half.
        server.kill();
        clock.set(t0 + Duration::from_millis(9_500));
        for _ in 0..12 {
            for (_, w) in &replicas {
                if let Ok(source) = w.try_acquire_from().await {
                    step(&mut admitted, &mut by_source, source);
                }
            }
        }
        let start_edge = most_in_a_window(&admitted, window.as_micros() as u64);
        // At 20 s, still down: the local windows are free again.
        clock.set(t0 + Duration::from_secs(20));
        for _ in 0..12 {
            for (_, w) in &replicas {
                if let Ok(source) = w.try_acquire_from().await {
                    step(&mut admitted, &mut by_source, source);
                }
            }
        }
        assert_eq!(by_source, [10, 20]);
        // Redis back (empty) at 25 s, the outage longer than a window.
        server.restart();
        for (store, _) in &replicas {
            let until = Instant::now() + Duration::from_secs(10);
            let mut conn = store.connection();
            while redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_err()
            {
                assert!(Instant::now() < until, "the store reconnects");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        clock.set(t0 + Duration::from_secs(25));
        for _ in 0..12 {
            for (_, w) in &replicas {
                if let Ok(source) = w.try_acquire_from().await {
                    step(&mut admitted, &mut by_source, source);
                }
            }
        }
        let after = &admitted[20..];
        let recovery_edge = most_in_a_window(after, window.as_micros() as u64);
        // And once the local admissions have left the window, Redis alone decides again.
        clock.set(t0 + Duration::from_secs(31));
        let mut later = 0;
        for _ in 0..12 {
            for (_, w) in &replicas {
                if w.try_acquire_from().await == Ok(Source::Store) {
                    later += 1;
                }
            }
        }
        eprintln!(
            "local_fallback, K = 2, s = 0.5, L = 10: at most {start_edge} in a window at the \
             outage's start, {recovery_edge} around its end, {later} once it has passed"
        );
        assert_eq!(start_edge, 20, "L + K·⌊sL⌋ at the start edge, reached");
        assert_eq!(
            recovery_edge, 10,
            "K·⌊sL⌋ at the end of an outage longer than a window"
        );
        assert_eq!(
            later, 10,
            "the whole limit once the outage is a window behind"
        );
    });
}
