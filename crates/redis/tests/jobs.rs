//! The shared queue and job slots against a real redis-server, on injected time.

mod common;
use common::{options, runtime};

use backstop_testkit::redis as support;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::WaitReason;
use backstop_core::clock::ManualClock;
use backstop_core::jobs::{JobBounds, Priority};
use backstop_redis::{RedisStore, StartError, StoreOptions, jobs};

const BOUNDS: JobBounds = JobBounds {
    max_queue: 3,
    critical_reserve: 1,
    max_jobs: 1,
};

/// Waits (briefly, real time) for spawned releases to reach Redis.
async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 1 s");
}

#[test]
fn a_ticket_becomes_a_permit_in_one_step_and_bounds_hold() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(1_700_000_000));
        let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let (queue, slots) = jobs::counters(
            &store,
            &support::unique("jobs"),
            BOUNDS,
            Duration::from_secs(10),
        )
        .unwrap();
        let first = queue.try_enter().await.unwrap();
        let second = queue.try_enter().await.unwrap();
        let refused = queue.try_enter().await.unwrap_err();
        assert_eq!(
            refused.as_str(),
            "queue_full",
            "the reserve is for critical requests"
        );
        let critical = queue.try_enter_as(Priority::Critical).await.unwrap();
        assert!(queue.try_enter_as(Priority::Critical).await.is_err());
        assert_eq!(queue.len().await.unwrap(), 3);

        let running = slots.try_start(first).await.unwrap();
        assert_eq!(
            (queue.len().await.unwrap(), slots.active().await.unwrap()),
            (2, 1)
        );
        let second = match slots.try_start(second).await {
            Err(StartError::NoFreeSlot(ticket)) => ticket,
            other => panic!("expected no free slot, got {other:?}"),
        };
        // As core's JobSlots: every slot taken is "no free slot" (a wait), not a full
        // queue.
        let no_slot = slots.try_acquire().await.unwrap_err();
        assert_eq!(no_slot.as_str(), "no_free_slot");
        assert_eq!(no_slot, WaitReason::NoFreeSlot);
        drop(running);
        eventually(async || slots.active().await.unwrap() == 0).await;
        let _running = slots.try_start(second).await.unwrap();
        drop(critical);
        eventually(async || queue.len().await.unwrap() == 0).await;
        assert_eq!(slots.active().await.unwrap(), 1);
    });
}

#[test]
fn a_lease_not_renewed_frees_its_place_exactly_at_the_lease_time() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let t0 = Duration::from_secs(1_700_000_000);
        clock.set(t0);
        let options = StoreOptions {
            deadline: Duration::from_millis(100),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect_with_clock(&url, options, Arc::new(clock.clone()))
            .await
            .unwrap();
        let lease = Duration::from_millis(300);
        let name = support::unique("lease");
        let (queue, _slots) = jobs::counters(&store, &name, BOUNDS, lease).unwrap();
        let mut ticket = queue.try_enter().await.unwrap();
        let _other = queue.try_enter().await.unwrap();
        // As a replica that stalls: no renewal past this point (the ticket is kept, so
        // nothing releases it either).
        ticket.stop_renewing_for_tests();
        // Half a lease of virtual time, and the renewals due then: a renewal would now
        // move the lease to t0 + 1.5 leases. The other one's does.
        clock.advance(lease / 2);
        store.renew_leases().await;
        clock.set(t0 + lease - Duration::from_micros(1));
        assert!(
            queue.try_enter().await.is_err(),
            "still held 1 µs before the lease ends"
        );
        clock.advance(Duration::from_micros(1));
        assert!(
            queue.try_enter().await.is_ok(),
            "the unrenewed place is back exactly at the lease time"
        );
        drop(ticket);
    });
}

#[test]
fn bad_job_settings_are_typed_errors() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let err = jobs::counters(&store, "x", BOUNDS, Duration::from_millis(1)).unwrap_err();
        assert_eq!(err.field(), "lease");
        let err = jobs::counters(&store, "a}b", BOUNDS, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.field(), "name");
        let bounds = JobBounds {
            max_queue: 0,
            ..BOUNDS
        };
        assert_eq!(
            jobs::counters(&store, "x", bounds, Duration::from_secs(1))
                .unwrap_err()
                .field(),
            "queue.max"
        );
    });
}
