//! The shared window against a real redis-server: the in-process `SlidingWindow` is the
//! model, on one `ManualClock` injected into both.

mod common;
use common::{options, runtime};

use backstop_testkit::redis as support;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::model::WindowModel;
use backstop_core::rate::SlidingWindow;
use backstop_core::{OverloadReason, RateScope};
use backstop_redis::{RedisKeyedWindow, RedisStore, RedisWindow, Refusal, StoreError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A decision for key `k`.
    Acquire(usize),
    /// Virtual time moves on by this many microseconds.
    Advance(u64),
    /// Virtual time moves to the last refusal's retry time, ± 1 µs.
    ToRetry(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3).prop_map(Op::Acquire),
        2 => prop_oneof![Just(0u64), Just(1), 1..5_000_000u64].prop_map(Op::Advance),
        2 => (-1i64..=1).prop_map(Op::ToRetry),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random decisions from three keys on injected time: Redis and the in-process
    /// model agree on every admit/deny and every retry_after, window edges ± 1 µs
    /// included.
    #[test]
    fn redis_window_matches_the_in_process_model(
        limit in 1u32..6,
        window_s in 1u64..4,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let Some((url, _server)) = support::shared() else { return Ok(()) };
        keyed_matches_the_model(&url, limit, window_s, &ops)?;
    }
}

/// The body of the property: decisions from three client keys of one keyed window on
/// `url`, each against an in-process `SlidingWindow` on the same clock.
fn keyed_matches_the_model(
    url: &str,
    limit: u32,
    window_s: u64,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let rt = runtime();
    let clock = ManualClock::new();
    // Start far from zero: Redis-side times are microseconds since an epoch.
    clock.set(Duration::from_secs(1_700_000_000));
    let window = Duration::from_secs(window_s);
    rt.block_on(async {
        let store = RedisStore::connect_with_clock(url, options(), Arc::new(clock.clone()))
            .await
            .expect("connect");
        let name = support::unique("prop");
        let shared =
            RedisKeyedWindow::new(&store, &name, Quota::new(limit, window).unwrap()).unwrap();
        let models: Vec<_> = (0..3)
            .map(|_| SlidingWindow::with_clock(Quota::new(limit, window).unwrap(), clock.clone()))
            .collect();
        let mut last_retry = Duration::ZERO;
        for op in ops {
            match *op {
                Op::Acquire(k) => {
                    let client = format!("client-{k}");
                    let got = shared
                        .try_acquire_checked(&client)
                        .await
                        .expect("store answers");
                    let want = models[k].try_acquire().map_err(|r| Refusal::RateLimited {
                        retry_after: r.retry_after(),
                        scope: RateScope::PerClient,
                    });
                    prop_assert_eq!(got, want, "key {} at {:?}", k, clock.now());
                    if let Err(refusal) = got {
                        last_retry = refusal.retry_after();
                    }
                }
                Op::Advance(us) => clock.advance(Duration::from_micros(us)),
                Op::ToRetry(delta) => {
                    let to = last_retry.as_micros() as i64 + delta;
                    if to > 0 {
                        clock.advance(Duration::from_micros(to as u64));
                    }
                }
            }
        }
        Ok(())
    })
}

/// The same property on a 3-primary Redis Cluster: the three clients' keys hash to
/// slots of different nodes, and each still matches the model. One cluster for every
/// case.
#[test]
fn redis_window_matches_the_in_process_model_on_the_cluster() {
    let Some((url, _cluster)) = support::shared_cluster() else {
        return;
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let cases = (1u32..6, 1u64..4, proptest::collection::vec(op(), 1..80));
    runner
        .run(&cases, |(limit, window_s, ops)| {
            keyed_matches_the_model(&url, limit, window_s, &ops)
        })
        .unwrap();
}

#[derive(Debug, Clone)]
enum ShapeOp {
    Acquire,
    /// Virtual time moves on by this many microseconds.
    Advance(u64),
    /// Virtual time steps back by this many microseconds.
    Back(u64),
    /// The window is used with another limit and window from here on.
    Reshape(u32, u64),
}

fn shape_op() -> impl Strategy<Value = ShapeOp> {
    prop_oneof![
        6 => Just(ShapeOp::Acquire),
        2 => prop_oneof![Just(1u64), 1..3_000_000u64].prop_map(ShapeOp::Advance),
        1 => prop_oneof![Just(1u64), 1..3_000_000u64].prop_map(ShapeOp::Back),
        1 => (1u32..6, prop_oneof![Just(1_000_000u64), Just(3_000_000), Just(500_000)])
            .prop_map(|(limit, window)| ShapeOp::Reshape(limit, window)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The limit and the window change mid-run and the clock steps back: the script
    /// agrees with the store's rule on every decision and every retry_after.
    #[test]
    fn redis_window_matches_the_store_rule_across_reshapes_and_clock_steps(
        limit in 1u32..6,
        ops in proptest::collection::vec(shape_op(), 1..80),
    ) {
        let Some((url, _server)) = support::shared() else { return Ok(()) };
        let rt = runtime();
        let clock = ManualClock::new();
        let t0 = Duration::from_secs(1_700_000_000);
        clock.set(t0);
        rt.block_on(async {
            let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
                .await
                .expect("connect");
            let name = support::unique("reshape-prop");
            let mut shape = (limit, 2_000_000u64);
            // The store's rule: a ring of its largest limit, the shape given per call.
            let mut model = WindowModel::ring();
            for op in &ops {
                match *op {
                    ShapeOp::Acquire => {
                        let window = common::window(&store, &name, shape.0, Duration::from_micros(shape.1));
                        let got = window.try_acquire_checked().await.expect("store answers");
                        let now_us = clock.now().as_micros() as u64;
                        let want = model
                            .decide_in_ring(shape.0, shape.1 * 1_000, now_us * 1_000)
                            .map_err(|wait_ns| Refusal::RateLimited {
                                retry_after: Duration::from_micros(wait_ns / 1_000),
                                scope: RateScope::Global,
                            });
                        prop_assert_eq!(got, want, "shape {:?} at {:?}", shape, clock.now());
                    }
                    ShapeOp::Advance(us) => clock.advance(Duration::from_micros(us)),
                    ShapeOp::Back(us) => {
                        let to = clock.now().saturating_sub(Duration::from_micros(us)).max(t0);
                        clock.set(to);
                    }
                    ShapeOp::Reshape(limit, window_us) => shape = (limit, window_us),
                }
            }
            Ok(())
        })?;
    }

    /// The clock steps back: the script agrees with the in-process SlidingWindow.
    #[test]
    fn redis_window_matches_the_in_process_model_when_the_clock_steps_back(
        limit in 1u32..6,
        ops in proptest::collection::vec(shape_op(), 1..80),
    ) {
        let Some((url, _server)) = support::shared() else { return Ok(()) };
        let rt = runtime();
        let clock = ManualClock::new();
        let t0 = Duration::from_secs(1_700_000_000);
        clock.set(t0);
        let window = Duration::from_secs(2);
        rt.block_on(async {
            let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
                .await
                .expect("connect");
            let shared = common::window(&store, &support::unique("back-prop"), limit, window);
            let model = SlidingWindow::with_clock(Quota::new(limit, window).unwrap(), clock.clone());
            for op in &ops {
                match *op {
                    ShapeOp::Acquire => {
                        let got = shared.try_acquire_checked().await.expect("store answers");
                        let want = model.try_acquire().map_err(|r| Refusal::RateLimited {
                            retry_after: r.retry_after(),
                            scope: RateScope::Global,
                        });
                        prop_assert_eq!(got, want, "at {:?}", clock.now());
                    }
                    ShapeOp::Advance(us) => clock.advance(Duration::from_micros(us)),
                    ShapeOp::Back(us) => {
                        let to = clock.now().saturating_sub(Duration::from_micros(us)).max(t0);
                        clock.set(to);
                    }
                    ShapeOp::Reshape(..) => {}
                }
            }
            Ok(())
        })?;
    }
}

/// A window of `limit` per `window` under a fresh name on a store that reads `clock`,
/// which is set far from zero first (Redis-side times are microseconds since an epoch).
async fn window_on(
    url: &str,
    clock: &ManualClock,
    name: &str,
    limit: u32,
    window: Duration,
) -> (RedisStore, RedisWindow) {
    clock.set(Duration::from_secs(1_700_000_000));
    let store = RedisStore::connect_with_clock(url, options(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let window = common::window(&store, &support::unique(name), limit, window);
    (store, window)
}

#[test]
fn the_edge_of_the_window_is_exact_to_the_microsecond() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    let clock = ManualClock::new();
    rt.block_on(async {
        let (_store, window) = window_on(&url, &clock, "edge", 30, Duration::from_secs(60)).await;
        for _ in 0..30 {
            window.try_acquire().await.expect("within the limit");
        }
        let refused = window.try_acquire().await.unwrap_err();
        assert_eq!(
            refused,
            Refusal::RateLimited {
                retry_after: Duration::from_secs(60),
                scope: RateScope::Global,
            }
        );
        clock.advance(Duration::from_secs(60) - Duration::from_micros(1));
        assert_eq!(
            window.try_acquire().await,
            Err(Refusal::RateLimited {
                retry_after: Duration::from_micros(1),
                scope: RateScope::Global,
            }),
            "one microsecond early"
        );
        clock.advance(Duration::from_micros(1));
        assert_eq!(window.try_acquire().await, Ok(()), "exactly on time");
        assert!(window.try_acquire().await.is_ok(), "all 30 left together");
    });
}

#[test]
fn concurrent_callers_on_redis_time_admit_exactly_the_limit() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let window = Arc::new(common::window(
            &store,
            &support::unique("burst"),
            100,
            Duration::from_secs(600),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let window = Arc::clone(&window);
            tasks.spawn(async move {
                let mut admitted = 0;
                for _ in 0..5 {
                    match window.try_acquire().await {
                        Ok(()) => admitted += 1,
                        Err(Refusal::RateLimited { retry_after, .. }) => {
                            assert!(retry_after <= Duration::from_secs(600));
                        }
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                admitted
            });
        }
        let mut total = 0;
        while let Some(admitted) = tasks.join_next().await {
            total += admitted.unwrap();
        }
        assert_eq!(total, 100);
        // Every call answered by Redis, or by the refusal cache once Redis refused (at
        // most 64 calls were in flight then).
        let counts = store.metrics().snapshot();
        assert!(
            counts.store_decisions + counts.refusals_cached >= 320,
            "{counts:?}"
        );
        assert!(counts.refusals_cached >= 220 - 64, "{counts:?}");
    });
}

#[test]
fn a_window_key_vanishes_with_its_window_and_is_compact() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let window = common::window(&store, &support::unique("ttl"), 30, Duration::from_secs(60));
        for _ in 0..30 {
            window.try_acquire().await.unwrap();
        }
        let mut conn = store.connection();
        let len: u64 = redis::cmd("STRLEN")
            .arg(window.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(len, 54 + 8 * 30, "a header and 8 bytes per admission");
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(window.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl_ms > 59_000 && ttl_ms <= 60_002,
            "expires with its window: {ttl_ms}"
        );

        // A short window, on Redis's own expiry (real time, bounded: 200 ms): the key is
        // there while its newest admission counts, and gone just after it leaves.
        let short_us = 200_000u64;
        let short = common::window(
            &store,
            &support::unique("ttl-short"),
            2,
            Duration::from_micros(short_us),
        );
        short.try_acquire().await.unwrap();
        short.try_acquire().await.unwrap();
        let newest = newest_admission_us(&mut conn, short.key()).await;
        let leaves_us = newest + short_us;
        let redis_now_us = async |conn: &mut backstop_redis::StoreConnection| -> u64 {
            let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
            secs * 1_000_000 + micros
        };
        // Just before: 20 ms before the newest admission leaves, the key is still there.
        let before = leaves_us - 20_000;
        let now = redis_now_us(&mut conn).await;
        tokio::time::sleep(Duration::from_micros(before.saturating_sub(now))).await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(short.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        let checked_at = redis_now_us(&mut conn).await;
        if checked_at < leaves_us {
            assert_eq!(exists, 1, "present while its newest admission counts");
        }
        // Just after: 20 ms after it leaves (the +1 ms margin included), it is gone.
        let now = redis_now_us(&mut conn).await;
        tokio::time::sleep(Duration::from_micros(
            (leaves_us + 20_000).saturating_sub(now),
        ))
        .await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(short.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            exists, 0,
            "gone once its newest admission has left the window"
        );
    });
}

/// Reads the newest admission time (µs) from a window key's header (`lua/layout.lua`).
async fn newest_admission_us(conn: &mut backstop_redis::StoreConnection, key: &str) -> u64 {
    let blob: Vec<u8> = redis::cmd("GETRANGE")
        .arg(key)
        .arg(14)
        .arg(21)
        .query_async(conn)
        .await
        .unwrap();
    u64::from_be_bytes(blob[..8].try_into().unwrap())
}

/// The same key used with a longer window after a shorter one must not lose
/// its admissions when the shorter window's expiry comes (limit + 1 otherwise).
#[test]
fn a_longer_window_keeps_the_key_alive_and_never_admits_limit_plus_one() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let name = support::unique("lengthen");
        let short = common::window(&store, &name, 3, Duration::from_millis(300));
        let long = common::window(&store, &name, 3, Duration::from_secs(60));
        for _ in 0..3 {
            short.try_acquire().await.unwrap();
        }
        assert!(long.try_acquire().await.is_err(), "3 in the long window");
        // Past the short window's expiry (real time: this is Redis's own TTL).
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..3 {
            assert!(
                long.try_acquire().await.is_err(),
                "the 3 admissions still count in the 60 s window"
            );
        }
        let mut conn = store.connection();
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(long.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl_ms > 58_000,
            "expiry follows the window in force: {ttl_ms}"
        );
    });
}

/// The key's expiry is at or after the moment its newest admission leaves
/// the window, to the microsecond (PEXPIRE counts from a millisecond taken before TIME).
#[test]
fn a_window_key_never_expires_before_its_newest_admission_leaves() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let window_us = 60_000_000u64;
        let window = common::window(
            &store,
            &support::unique("expiry"),
            5,
            Duration::from_micros(window_us),
        );
        let mut conn = store.connection();
        for _ in 0..5 {
            window.try_acquire().await.unwrap();
            let newest = newest_admission_us(&mut conn, window.key()).await;
            let expire_ms: u64 = redis::cmd("PEXPIRETIME")
                .arg(window.key())
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(
                expire_ms * 1000 >= newest + window_us,
                "expires at {expire_ms} ms, newest admission leaves at {} µs",
                newest + window_us
            );
        }
    });
}

/// On an injected clock the key gets no TTL from virtual time.
#[test]
fn an_injected_clock_sets_no_ttl() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    let clock = ManualClock::new();
    rt.block_on(async {
        let (store, window) = window_on(&url, &clock, "virtual", 2, Duration::from_secs(1)).await;
        window.try_acquire().await.unwrap();
        let mut conn = store.connection();
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(window.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(ttl_ms, -1, "no real-time expiry from virtual time");
    });
}

/// A global window `a:b` and client `b` of keyed window `a` are two windows.
#[test]
fn global_and_keyed_window_names_never_collide() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let base = support::unique("collide");
        let minute = Duration::from_secs(60);
        let global = common::window(&store, &format!("{base}:b"), 1, minute);
        let keyed = RedisKeyedWindow::new(&store, &base, Quota::new(1, minute).unwrap()).unwrap();
        let keyed_ab =
            RedisKeyedWindow::new(&store, &format!("{base}:a"), Quota::new(1, minute).unwrap())
                .unwrap();
        assert_ne!(global.key(), keyed.key_for("b"));
        assert_ne!(keyed.key_for("a:b"), keyed_ab.key_for("b"));
        global.try_acquire().await.unwrap();
        assert_eq!(keyed.try_acquire("b").await, Ok(()), "its own window");
        keyed.try_acquire("a:b").await.unwrap();
        assert_eq!(keyed_ab.try_acquire("b").await, Ok(()), "its own window");
    });
}

#[test]
fn a_key_of_another_type_is_a_typed_error_and_never_an_admission() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let name = support::unique("wrongtype");
        let window = common::window(&store, &name, 5, Duration::from_secs(60));
        let mut conn = store.connection();
        let _: i64 = redis::cmd("RPUSH")
            .arg(window.key())
            .arg("x")
            .query_async(&mut conn)
            .await
            .unwrap();
        let err = window.try_acquire_checked().await.unwrap_err();
        assert!(matches!(err, StoreError::WrongType { .. }), "{err:?}");
        assert!(matches!(
            window.try_acquire().await,
            Err(Refusal::Overloaded {
                reason: OverloadReason::StoreUnavailable,
                ..
            })
        ));
        // A string someone else wrote: not ours either.
        let _: () = redis::cmd("SET")
            .arg(window.key())
            .arg("hello")
            .query_async(&mut conn)
            .await
            .unwrap();
        let err = window.try_acquire_checked().await.unwrap_err();
        assert!(matches!(err, StoreError::WrongType { .. }), "{err:?}");
        let value: String = redis::cmd("GET")
            .arg(window.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value, "hello", "left untouched");
        assert!(store.metrics().snapshot().store_errors >= 3);
    });
}

#[test]
fn a_changed_limit_keeps_the_recent_admissions() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let rt = runtime();
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(1_700_000_000));
    rt.block_on(async {
        let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let name = support::unique("reshape");
        let minute = Duration::from_secs(60);
        let wide = common::window(&store, &name, 30, minute);
        for _ in 0..10 {
            wide.try_acquire().await.unwrap();
        }
        let narrow = common::window(&store, &name, 5, minute);
        assert!(
            narrow.try_acquire().await.is_err(),
            "10 admissions already in the window"
        );
        let wider = common::window(&store, &name, 12, minute);
        // A refusal writes nothing: the 10 still count, as in SlidingWindow::reconfigure.
        for _ in 0..2 {
            wider.try_acquire().await.unwrap();
        }
        assert!(wider.try_acquire().await.is_err());
    });
}
