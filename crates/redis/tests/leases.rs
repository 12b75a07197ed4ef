//! Leases that fence: fencing tokens, a lease judged from when its take was sent, told
//! lost before Redis frees the place, renewed on virtual time, re-asserted after Redis
//! lost its data; tickets detached in one door and claimed in another.

mod common;
use common::runtime;

use backstop_testkit::redis as support;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::jobs::JobBounds;
use backstop_core::{Decision, FrontDoor, Limits, RequestClass};
use backstop_redis::{
    ClaimError, DetachError, GateConfig, LeaseLoss, RedisAdmission, RedisStore, StoreOptions, jobs,
};

const T0: Duration = Duration::from_secs(1_700_000_000);
const LEASE: Duration = Duration::from_secs(3);
const BOUNDS: JobBounds = JobBounds {
    max_queue: 4,
    critical_reserve: 0,
    max_jobs: 1,
};

fn options() -> StoreOptions {
    StoreOptions {
        deadline: Duration::from_millis(500),
        ..StoreOptions::default()
    }
}

async fn store_on(url: &str, clock: &ManualClock) -> RedisStore {
    RedisStore::connect_with_clock(url, options(), Arc::new(clock.clone()))
        .await
        .expect("connect")
}

/// Deletes every key of gate `name`, as a Redis restarted without persistence would.
async fn forget_gate(store: &RedisStore, name: &str) {
    let mut conn = store.connection();
    let keys: Vec<String> = ["queue", "slots", "gate"]
        .iter()
        .map(|k| format!("{{backstop:{name}}}:{k}"))
        .collect();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[test]
fn fencing_tokens_rise_with_every_take_and_start_at_redis_time() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("fence");
        let (queue, slots) = jobs::counters(&store, &name, BOUNDS, LEASE).unwrap();
        let first = queue.try_enter().await.unwrap();
        let second = queue.try_enter().await.unwrap();
        let t0_us = T0.as_micros() as u64;
        assert!(first.fencing_token() >= t0_us, "at least Redis's time");
        assert!(second.fencing_token() > first.fencing_token());
        let permit = slots.try_start(first).await.unwrap();
        assert!(permit.fencing_token() > second.fencing_token());
        drop(permit);
        // Redis loses the gate (a restart without persistence), and time went on: the
        // tokens still rise.
        forget_gate(&store, &name).await;
        clock.advance(Duration::from_millis(1));
        let third = queue.try_enter().await.unwrap();
        assert!(third.fencing_token() > second.fencing_token());
    });
}

#[test]
fn a_lease_is_told_lost_before_redis_frees_its_place() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let (_queue, slots) =
            jobs::counters(&store, &support::unique("told"), BOUNDS, LEASE).unwrap();
        let permit = slots.try_acquire().await.unwrap();
        let cancel = permit.cancellation();
        let lost = permit.lost();
        // Nobody renews (no renew_leases on this virtual clock): the lease ends here at
        // T0 + LEASE − LEASE/1000, and in Redis at T0 + LEASE.
        let told_at = LEASE - LEASE / 1000;
        clock.set(T0 + told_at - Duration::from_micros(1));
        assert!(!permit.is_lost() && !cancel.is_cancelled());
        assert_eq!(permit.remaining(), Duration::from_micros(1));
        clock.set(T0 + told_at);
        assert!(permit.is_lost(), "told at the end of the lease here");
        assert_eq!(permit.loss(), Some(LeaseLoss::Unrenewed));
        assert!(cancel.is_cancelled(), "the job's token is cancelled");
        tokio::time::timeout(Duration::from_secs(1), lost)
            .await
            .expect("lost() completes");
        // Redis still holds the slot: nobody else runs yet.
        assert!(slots.try_acquire().await.is_err());
        clock.set(T0 + LEASE);
        let other = slots.try_acquire().await.expect("freed at the lease's end");
        assert!(other.fencing_token() > permit.fencing_token());
        // Lost for good, also when asked later.
        assert!(permit.is_lost());
        assert_eq!(store.metrics().snapshot().leases_lost, 1);
    });
}

#[test]
fn renewals_on_virtual_time_keep_a_lease_for_many_leases() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let (_queue, slots) =
            jobs::counters(&store, &support::unique("renewed"), BOUNDS, LEASE).unwrap();
        let permit = slots.try_acquire().await.unwrap();
        // Ten leases of virtual time in steps of a quarter lease: each renew_leases
        // renews what is due (a renewal every third of a lease at most).
        for _ in 0..40 {
            clock.advance(LEASE / 4);
            store.renew_leases().await;
            assert!(!permit.is_lost());
            assert!(slots.try_acquire().await.is_err(), "the slot stays held");
        }
        let renewals = store.metrics().snapshot().lease_renewals;
        assert!((30..=40).contains(&renewals), "{renewals} renewals");
        // Stop renewing: lost within one lease.
        clock.advance(LEASE);
        store.renew_leases().await;
        assert!(permit.is_lost());
    });
}

#[test]
fn a_member_redis_lost_is_reasserted_when_there_is_room_else_reported_lost() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("reassert");
        let (_queue, slots) = jobs::counters(&store, &name, BOUNDS, LEASE).unwrap();
        let permit = slots.try_acquire().await.unwrap();
        forget_gate(&store, &name).await;
        assert_eq!(slots.active().await.unwrap(), 0, "Redis forgot the slot");
        clock.advance(LEASE / 2);
        store.renew_leases().await;
        assert!(!permit.is_lost());
        assert_eq!(slots.active().await.unwrap(), 1, "re-asserted");
        assert_eq!(store.metrics().snapshot().leases_reasserted, 1);
        assert!(
            slots.try_acquire().await.is_err(),
            "and it bounds others again"
        );

        // Lost again, and this time another holder takes the only slot first.
        forget_gate(&store, &name).await;
        let other = slots.try_acquire().await.unwrap();
        clock.advance(LEASE / 2);
        store.renew_leases().await;
        assert!(permit.is_lost());
        assert_eq!(permit.loss(), Some(LeaseLoss::NoRoom));
        assert!(!other.is_lost());
    });
}

#[test]
fn a_member_removed_while_redis_kept_its_data_is_lost_not_reasserted() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("gone");
        let (_queue, slots) = jobs::counters(&store, &name, BOUNDS, LEASE).unwrap();
        let permit = slots.try_acquire().await.unwrap();
        let mut conn = store.connection();
        let _: () = redis::cmd("ZREM")
            .arg(format!("{{backstop:{name}}}:slots"))
            .arg(permit.holder())
            .query_async(&mut conn)
            .await
            .unwrap();
        clock.advance(LEASE / 2);
        store.renew_leases().await;
        assert_eq!(permit.loss(), Some(LeaseLoss::Gone));
        assert_eq!(slots.active().await.unwrap(), 0, "not put back");
    });
}

fn door_limits(max_wait: Duration) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = 100;
    limits.queue.max = 2;
    limits.jobs.max = 1;
    limits.queue.max_wait = max_wait;
    limits.resources.enabled = false;
    limits
}

async fn admitted(door: &RedisAdmission) -> backstop_redis::RedisTicket {
    match door.admit(None, RequestClass::Normal).await {
        Decision::Admitted(ticket) => ticket,
        other => panic!("expected a ticket, got {:?}", other.refusal()),
    }
}

#[test]
fn a_detached_ticket_is_claimed_once_by_another_door_and_starts_there() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let name = support::unique("detach");
        let web = store_on(&url, &clock).await;
        let worker = store_on(&url, &clock).await;
        let limits = door_limits(Duration::from_secs(60));
        let web_door = RedisAdmission::with_lease(&web, &name, limits.clone(), LEASE).unwrap();
        let worker_door = RedisAdmission::with_lease(&worker, &name, limits, LEASE).unwrap();

        let ticket = admitted(&web_door).await;
        let taken_with = ticket.get().unwrap().fencing_token();
        let token = ticket.detach().await.unwrap();
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.'),
            "{token}"
        );
        assert!(serde_json_safe(&token));
        // The place is still held while detached (nobody renews it).
        assert_eq!(web_door.queue().len().await.unwrap(), 1);
        clock.advance(LEASE * 5);
        web.renew_leases().await;
        assert_eq!(
            web_door.queue().len().await.unwrap(),
            1,
            "kept for max_wait"
        );

        let claimed = worker_door.claim(&token).await.unwrap();
        assert!(claimed.get().unwrap().fencing_token() > taken_with);
        assert_eq!(
            worker_door.claim(&token).await.unwrap_err(),
            ClaimError::NotHeld,
            "once"
        );
        let permit = match worker_door.start_job(claimed).await {
            Ok(permit) => permit,
            Err((_, why)) => panic!("the claimed ticket starts: {why:?}"),
        };
        assert_eq!(worker_door.queue().len().await.unwrap(), 0);
        assert_eq!(worker_door.slots().active().await.unwrap(), 1);
        // The worker's store renews the permit on its own clock.
        for _ in 0..6 {
            clock.advance(LEASE / 3);
            worker.renew_leases().await;
        }
        assert!(!permit.is_lost());
        assert_eq!(worker_door.slots().active().await.unwrap(), 1);
    });
}

/// A JSON string with the token in it parses back to the token.
fn serde_json_safe(token: &str) -> bool {
    let json = format!("\"{token}\"");
    !token.contains(['"', '\\']) && json.len() == token.len() + 2
}

#[test]
fn an_unclaimed_detached_ticket_returns_its_place_and_is_counted() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("unclaimed");
        let max_wait = Duration::from_secs(30);
        let door = RedisAdmission::with_lease(&store, &name, door_limits(max_wait), LEASE).unwrap();
        let token = admitted(&door).await.detach().await.unwrap();
        let _second = admitted(&door).await;
        assert!(
            door.admit(None, RequestClass::Normal)
                .await
                .refusal()
                .is_some(),
            "the queue of 2 is full"
        );
        // The held ticket is renewed on the way (the detached place is not).
        for _ in 0..29 {
            clock.advance(Duration::from_secs(1));
            store.renew_leases().await;
        }
        clock.set(T0 + max_wait - Duration::from_micros(1));
        store.renew_leases().await;
        assert!(
            door.admit(None, RequestClass::Normal)
                .await
                .refusal()
                .is_some()
        );
        clock.advance(Duration::from_micros(1));
        let _third = admitted(&door).await; // the detached place came back
        assert_eq!(store.metrics().snapshot().detached_unclaimed, 1);
        match door.claim(&token).await {
            Err(ClaimError::Expired { ago }) => assert_eq!(ago, Duration::ZERO),
            other => panic!("expected expired, got {other:?}"),
        }
    });
}

#[test]
fn forged_foreign_and_malformed_tokens_are_typed_errors() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("forged");
        let limits = door_limits(Duration::from_secs(60));
        let door = RedisAdmission::with_lease(&store, &name, limits.clone(), LEASE).unwrap();
        let other = support::unique("other");
        let other_door = RedisAdmission::with_lease(&store, &other, limits, LEASE).unwrap();
        let token = admitted(&door).await.detach().await.unwrap();

        // Same shape, another random id: no place answers to it.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[2] = "0123456789abcdef0123456789abcdef".into();
        assert_eq!(
            door.claim(&parts.join(".")).await.unwrap_err(),
            ClaimError::NotHeld
        );
        match other_door.claim(&token).await {
            Err(ClaimError::OtherGate {
                token_gate,
                this_gate,
            }) => assert_eq!((token_gate, this_gate), (name.clone(), other.clone())),
            got => panic!("expected another gate, got {got:?}"),
        }
        for bad in ["", "hello", "bst1.x.y.z.n", &token[..token.len() - 1]] {
            assert!(
                matches!(door.claim(bad).await, Err(ClaimError::Malformed(_))),
                "{bad:?}"
            );
        }
        // The genuine one still works after all that.
        assert!(door.claim(&token).await.is_ok());
    });
}

#[test]
fn a_ticket_whose_place_is_gone_cannot_be_detached() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = store_on(&url, &clock).await;
        let name = support::unique("detach-lost");
        let (queue, _slots) = jobs::counters_with(
            &store,
            &name,
            GateConfig {
                bounds: BOUNDS,
                lease: LEASE,
                max_wait: Duration::from_secs(60),
            },
        )
        .unwrap();
        let ticket = queue.try_enter().await.unwrap();
        clock.advance(LEASE);
        assert!(matches!(ticket.detach().await, Err(DetachError::Lost)));
        assert_eq!(queue.len().await.unwrap(), 0);
    });
}
