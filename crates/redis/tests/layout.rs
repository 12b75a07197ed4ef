//! The window's layout in Redis: a fresh key costs its header and one slot, a decision
//! reads and writes only what it needs whatever the limit, limits that alternate cost
//! no rebuild, the expiry never shrinks, keys of the earlier layout are read on, and a
//! spray of client keys neither fills Redis nor passes `max_keys`.

mod common;
use common::{options, runtime};

use backstop_testkit::redis as support;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::{OverloadReason, RateScope};
use backstop_redis::{RedisKeyedWindow, RedisStore, Refusal};

const T0: Duration = Duration::from_secs(1_700_000_000);
const HEADER: u64 = 54;

/// A store on `server` that reads `clock`, set to `T0` first.
async fn store_at_t0(server: &support::RedisServer, clock: &ManualClock) -> RedisStore {
    clock.set(T0);
    RedisStore::connect_with_clock(&server.url(), options(), Arc::new(clock.clone()))
        .await
        .unwrap()
}

async fn strlen(store: &RedisStore, key: &str) -> u64 {
    let mut conn = store.connection();
    redis::cmd("STRLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Calls of `command` made so far (`INFO commandstats`), scripts' own calls included.
async fn calls_of(store: &RedisStore, command: &str) -> u64 {
    let mut conn = store.connection();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_fresh_key_costs_its_header_and_one_slot_whatever_the_limit() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        for limit in [30, 65_536, 1 << 20, backstop_redis::MAX_REDIS_LIMIT] {
            let name = support::unique("fresh");
            let window = common::window(&store, &name, limit, Duration::from_secs(60));
            window.try_acquire().await.unwrap();
            let one = strlen(&store, window.key()).await;
            assert_eq!(one, HEADER + 8, "limit {limit}");
            assert!(one <= 64, "at most 64 bytes after one admission");
            window.try_acquire().await.unwrap();
            window.try_acquire().await.unwrap();
            assert_eq!(
                strlen(&store, window.key()).await,
                HEADER + 24,
                "limit {limit}"
            );
        }
    });
}

#[test]
fn a_decision_touches_only_the_header_and_its_slots_also_when_two_limits_alternate() {
    // A private server: the command counts are the server's.
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let store = store_at_t0(&server, &clock).await;
        let big = common::window(&store, "alternate", 65_536, Duration::from_secs(1));
        let small = common::window(&store, "alternate", 30, Duration::from_secs(1));
        big.try_acquire().await.unwrap(); // creates the key: one SET
        let before = (calls_of(&store, "set").await, calls_of(&store, "get").await);
        let mut admitted = (0, 0);
        for round in 0..400 {
            clock.advance(Duration::from_millis(10));
            let (window, count) = if round % 2 == 0 {
                (&small, &mut admitted.0)
            } else {
                (&big, &mut admitted.1)
            };
            if window.try_acquire().await.is_ok() {
                *count += 1;
            }
        }
        assert!(admitted.0 > 0 && admitted.1 > 0, "{admitted:?}");
        assert!(
            admitted.0 < 200,
            "the small limit refuses some: {admitted:?}"
        );
        let after = (calls_of(&store, "set").await, calls_of(&store, "get").await);
        assert_eq!(
            before, after,
            "no whole-value read or write: the two limits share one ring"
        );
        // The ring holds what was admitted, not 65 536 slots.
        let slots = (strlen(&store, big.key()).await - HEADER) / 8;
        assert_eq!(slots, 1 + admitted.0 + admitted.1);
    });
}

#[test]
fn a_refusal_at_a_huge_limit_reads_one_slot() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let store = store_at_t0(&server, &clock).await;
        let limit = 100_000;
        let window = common::window(&store, "huge", limit, Duration::from_secs(60));
        // Fill it through batches: many concurrent callers at one instant.
        let window = Arc::new(window);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let window = Arc::clone(&window);
            calls.spawn(async move {
                let mut admitted = 0u32;
                while window.try_acquire().await.is_ok() {
                    admitted += 1;
                }
                admitted
            });
        }
        let mut admitted = 0;
        while let Some(n) = calls.join_next().await {
            admitted += n.unwrap();
        }
        assert_eq!(admitted, limit, "exactly the limit");
        let ranges = calls_of(&store, "getrange").await;
        match window.try_acquire_checked().await.unwrap() {
            Err(Refusal::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(60));
            }
            other => panic!("refused, got {other:?}"),
        }
        assert_eq!(
            calls_of(&store, "getrange").await - ranges,
            2,
            "the header and one slot"
        );
    });
}

#[test]
fn raising_the_limit_after_the_ring_wrapped_copies_it_once_and_stays_exact() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let store = store_at_t0(&server, &clock).await;
        let window = Duration::from_secs(10);
        let three = common::window(&store, "raise", 3, window);
        let five = common::window(&store, "raise", 5, window);
        // Seven admissions of limit 3, one every 4 s: the ring wrapped.
        for _ in 0..7 {
            three.try_acquire().await.unwrap();
            clock.advance(Duration::from_secs(4));
        }
        let sets = calls_of(&store, "set").await;
        // Now at 28 s: the last three were at 16, 20, 24 s. Limit 5 within 10 s: the
        // window (18, 28] holds two; three more are allowed, the fourth is refused until
        // the one at 20 s leaves.
        for _ in 0..3 {
            five.try_acquire().await.unwrap();
        }
        match five.try_acquire().await {
            Err(Refusal::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(2));
            }
            other => panic!("refused, got {other:?}"),
        }
        assert_eq!(
            calls_of(&store, "set").await - sets,
            1,
            "one copy of the ring"
        );
    });
}

#[test]
fn the_expiry_never_shrinks_and_follows_the_longest_window() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let name = support::unique("expiry");
        let long = common::window(&store, &name, 3, Duration::from_secs(60));
        let short = common::window(&store, &name, 3, Duration::from_millis(300));
        let mut conn = store.connection();
        let expiry = async |conn: &mut backstop_redis::StoreConnection| -> i64 {
            redis::cmd("PEXPIRETIME")
                .arg(long.key())
                .query_async(conn)
                .await
                .unwrap()
        };
        short.try_acquire().await.unwrap();
        let first = expiry(&mut conn).await;
        long.try_acquire().await.unwrap();
        let mut last = expiry(&mut conn).await;
        assert!(last >= first + 59_000, "the longer window moved it on");
        // Whatever the shorter window does now (an admission, refusals), the expiry
        // only moves later.
        for _ in 0..4 {
            let _ = short.try_acquire().await;
            let now = expiry(&mut conn).await;
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
        assert!(long.try_acquire().await.is_err(), "3 in the 60 s window");
    });
}

/// A rolling deploy: replicas with a 1 s window and replicas with a 3 s window share one
/// name (limit 4) while calls arrive at random times. Every decision, under either
/// window, is exact for that window over all admissions.
#[test]
fn two_replica_sets_with_different_windows_on_one_name_stay_exact_for_each() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let name = support::unique("rolling");
        let old = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let new = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let limit = 4;
        let windows_us = [1_000_000u64, 3_000_000];
        let sets = [
            common::window(&old, &name, limit, Duration::from_micros(windows_us[0])),
            common::window(&new, &name, limit, Duration::from_micros(windows_us[1])),
        ];
        let mut admitted_us: Vec<u64> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut judged = [0u32; 2];
        for _ in 0..600 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            clock.advance(Duration::from_micros(seed % 1_200_000));
            let set = (seed >> 32) as usize % 2;
            let now_us = clock.now().as_micros() as u64;
            if sets[set].try_acquire().await.is_ok() {
                admitted_us.push(now_us);
                let w = windows_us[set];
                let in_window = admitted_us.iter().filter(|&&t| t + w > now_us).count();
                assert!(
                    in_window <= limit as usize,
                    "{in_window} admissions in the {w} µs window ending at {now_us}"
                );
                judged[set] += 1;
            }
        }
        assert!(judged[0] > 50 && judged[1] > 50, "{judged:?}");
    });
}

/// A key written in the layout before this one (a 24-byte header and a full ring) is
/// read as it is, judged exactly, and rewritten in the current layout on its next write.
#[test]
fn a_key_in_the_earlier_layout_is_judged_and_rewritten() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let name = support::unique("v1");
        let window = common::window(&store, &name, 3, Duration::from_secs(10));
        // Four admissions in the earlier layout: n = 4, limit 3, window 10 s; the ring
        // holds the last three at T0 + 1, 2, 3 s (admission 3 in slot 0).
        let t0_us = T0.as_micros() as u64;
        let mut blob = Vec::new();
        for word in [4u64, 3, 10_000_000] {
            blob.extend_from_slice(&word.to_be_bytes());
        }
        for t in [3u64, 1, 2] {
            blob.extend_from_slice(&(t0_us + t * 1_000_000).to_be_bytes());
        }
        let mut conn = store.connection();
        let _: () = redis::cmd("SET")
            .arg(window.key())
            .arg(blob)
            .query_async(&mut conn)
            .await
            .unwrap();
        clock.set(T0 + Duration::from_secs(5));
        match window.peek_checked().await.unwrap() {
            Err(Refusal::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(6), "peek reads it too");
            }
            other => panic!("refused, got {other:?}"),
        }
        assert_eq!(
            window.try_acquire_checked().await.unwrap(),
            Err(Refusal::RateLimited {
                retry_after: Duration::from_secs(6),
                scope: RateScope::Global
            })
        );
        clock.set(T0 + Duration::from_secs(11));
        window.try_acquire().await.unwrap();
        let magic: Vec<u8> = redis::cmd("GETRANGE")
            .arg(window.key())
            .arg(0)
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(magic, b"w2", "rewritten in the current layout");
        clock.set(T0 + Duration::from_secs(11) + Duration::from_micros(1));
        assert!(
            window.try_acquire().await.is_err(),
            "2, 3 and 11 s: 3 in 10 s"
        );
    });
}

/// 10 000 one-request clients on a 6 MB Redis: each costs its key's overhead, a header
/// and one slot (at a per-client limit of 1000, the full ring of the earlier layout
/// filled this Redis after about 540). With `max_keys`, a new client beyond it is
/// refused with `too_many_keys`; known clients and other names go on.
#[test]
fn a_spray_of_client_keys_costs_a_header_and_a_slot_each_and_max_keys_bounds_it() {
    let Some(server) =
        support::RedisServer::start(&["--maxmemory", "6mb", "--maxmemory-policy", "noeviction"])
    else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), options()).await.unwrap();
        let mut conn = store.connection();
        let used = async |conn: &mut backstop_redis::StoreConnection| -> u64 {
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(conn)
                .await
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let keyed = Arc::new(
            RedisKeyedWindow::new(
                &store,
                "spray",
                Quota::new(1000, Duration::from_secs(60)).unwrap(),
            )
            .unwrap(),
        );
        // What a key costs Redis with a 1-byte value and an expiry (names as long as the
        // windows' ones): the key's overhead.
        let before = used(&mut conn).await;
        let mut plain = redis::pipe();
        for client in 0..10_000 {
            let name = keyed
                .key_for(&format!("client-{client}"))
                .replace("spray", "plain");
            plain
                .cmd("SET")
                .arg(name)
                .arg("x")
                .arg("PX")
                .arg(60_000)
                .ignore();
        }
        let _: () = plain.query_async(&mut conn).await.unwrap();
        let overhead = (used(&mut conn).await - before) / 10_000;
        // Gone again: the 6 MB are for the windows.
        let mut gone = redis::pipe();
        for client in 0..10_000 {
            let name = keyed
                .key_for(&format!("client-{client}"))
                .replace("spray", "plain");
            gone.cmd("DEL").arg(name).ignore();
        }
        let _: () = gone.query_async(&mut conn).await.unwrap();
        let before = used(&mut conn).await;
        spray(&keyed, 0..10_000).await;
        let per_key = (used(&mut conn).await - before) / 10_000;
        assert_eq!(strlen(&store, &keyed.key_for("client-1")).await, HEADER + 8);
        // The value's 62 bytes, in the allocator's next size class up with the string's
        // own header (80 bytes) and an object of its own (a 1-byte value shares one).
        assert!(
            per_key <= overhead + HEADER + 8 + 34,
            "{per_key} bytes per key against {overhead} for a key with a 1-byte value"
        );
        eprintln!(
            "a one-admission client key: {per_key} bytes, a key with a 1-byte value {overhead}"
        );

        // Another name on the same Redis is unaffected.
        let other = common::window(&store, "other", 10, Duration::from_secs(60));
        other.try_acquire().await.unwrap();

        // With max_keys 1000: the 1001st new client is refused, known ones go on.
        let bounded = Arc::new(
            RedisKeyedWindow::new(
                &store,
                "bounded",
                Quota::new(2, Duration::from_secs(60)).unwrap(),
            )
            .unwrap()
            .with_max_keys(1000)
            .unwrap(),
        );
        spray(&bounded, 0..1000).await;
        match bounded.try_acquire("client-1000").await {
            Err(Refusal::Overloaded {
                reason: OverloadReason::TooManyKeys,
                retry_after_hint,
            }) => assert!(
                retry_after_hint <= Duration::from_secs(61),
                "{retry_after_hint:?}"
            ),
            other => panic!("expected too_many_keys, got {other:?}"),
        }
        bounded
            .try_acquire_checked("client-7")
            .await
            .expect("the store answers")
            .expect("a known client");
        assert!(matches!(
            bounded.try_acquire("client-7").await,
            Err(Refusal::RateLimited { .. })
        ));
        let exists: u64 = redis::cmd("EXISTS")
            .arg(bounded.key_for("client-1000"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(exists, 0, "the refused client got no key");
    });
}

/// One request from each client in `range`, 64 at a time; every one admitted.
async fn spray(keyed: &Arc<RedisKeyedWindow>, range: std::ops::Range<u32>) {
    let mut calls = tokio::task::JoinSet::new();
    for lane in 0..64 {
        let keyed = Arc::clone(keyed);
        let range = range.clone();
        calls.spawn(async move {
            for client in range.skip(lane).step_by(64) {
                keyed
                    .try_acquire(&format!("client-{client}"))
                    .await
                    .expect("a one-request client is admitted");
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
}
