//! `RedisAdmission`: core's front door on the Redis stages. Several of them on one
//! redis-server share one limit, one queue and one set of slots, decide in `Admission`'s
//! order, and fail closed with 503 `store_unavailable`.

use backstop_testkit::redis as support;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::{
    Decision, FrontDoor, Limits, OverloadReason, RateScope, Refusal, RequestClass, WaitReason,
};
use backstop_redis::{RedisAdmission, RedisStore, StoreOptions};

/// Virtual time the doors agree on (the windows store microseconds since its epoch).
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

fn refusal<T>(decision: &Decision<T>) -> Option<Refusal> {
    decision.refusal().copied()
}

#[test]
fn two_doors_on_one_store_admit_exactly_the_limit_in_total() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
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
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
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
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
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
