//! `Admission`'s per-client stage: global limit, then the client's limit, then the queue.

use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::{
    Admission, Decision, Limits, MetricsSnapshot, RateScope, Refusal, RequestClass,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Global: `global` per minute; queue: `queue`; per client: `per_key` per minute, at most
/// `max_keys` clients.
fn admission(global: u32, queue: u32, per_key: u32, max_keys: usize) -> Admission<ManualClock> {
    let mut limits = Limits::default();
    limits.rate.limit = global;
    limits.queue.max = queue;
    limits.resources.enabled = false;
    Admission::with_clock(limits, ManualClock::new())
        .unwrap()
        .with_per_key(Quota::new(per_key, MINUTE).unwrap(), max_keys)
        .unwrap()
}

fn refusal(decision: Decision) -> (u16, &'static str, Duration) {
    let refusal = decision.refusal().copied().expect("refused");
    (
        refusal.status_code(),
        refusal.as_str(),
        refusal.retry_after(),
    )
}

#[test]
fn bad_per_key_settings_name_the_field() {
    let admission = || Admission::with_clock(Limits::default(), ManualClock::new()).unwrap();
    assert_eq!(Quota::new(0, MINUTE).unwrap_err().field(), "limit");
    let each = Quota::new(1, MINUTE).unwrap();
    let err = admission().with_per_key(each, 0).unwrap_err();
    assert_eq!(err.field(), "max_keys");
}

#[test]
fn one_client_cannot_use_up_anothers_budget() {
    let admission = admission(100, 100, 2, 10);
    let mut tickets = Vec::new();
    for _ in 0..2 {
        tickets.push(
            admission
                .admit(Some("noisy"), RequestClass::Normal)
                .into_result()
                .unwrap(),
        );
    }
    assert_eq!(
        refusal(admission.admit(Some("noisy"), RequestClass::Normal)),
        (429, "rate_limited", MINUTE)
    );
    admission.clock().advance(Duration::from_secs(15));
    // Exactly when noisy's first request leaves its window.
    assert_eq!(
        refusal(admission.admit(Some("noisy"), RequestClass::Normal)).2,
        Duration::from_secs(45)
    );
    tickets.push(
        admission
            .admit(Some("quiet"), RequestClass::Normal)
            .into_result()
            .unwrap(),
    );
    // Without a key, no per-client stage.
    tickets.push(admission.try_admit().into_result().unwrap());
    let snapshot = admission.metrics().snapshot();
    assert_eq!(snapshot.admitted_total, 4);
    assert_eq!(snapshot.rate_limited_total, 2);
}

#[test]
fn a_client_refusal_does_not_use_the_global_window() {
    let admission = admission(3, 100, 1, 10);
    let _a = admission
        .admit(Some("a"), RequestClass::Normal)
        .into_result()
        .unwrap();
    // Refused by a's own limit: the shared window is not charged for it.
    for _ in 0..5 {
        assert_eq!(
            refusal(admission.admit(Some("a"), RequestClass::Normal)).0,
            429
        );
    }
    let _b = admission
        .admit(Some("b"), RequestClass::Normal)
        .into_result()
        .unwrap();
    let _c = admission
        .admit(Some("c"), RequestClass::Normal)
        .into_result()
        .unwrap();
    // Three passed the shared window: the fourth is refused there, and its client (new,
    // with room) is not charged, nor even tracked.
    assert_eq!(
        refusal(admission.admit(Some("d"), RequestClass::Normal)),
        (429, "rate_limited", MINUTE)
    );
    assert_eq!(admission.per_key().unwrap().len(), 3);
    assert_eq!(admission.per_key().unwrap().available("d"), 1);
}

/// One client sending at the global limit must not lock the others out
/// while it is itself refused by its own window.
#[test]
fn one_client_at_the_global_limit_does_not_lock_others_out() {
    let admission = admission(10, 1000, 2, 10);
    let mut tickets = Vec::new();
    // The noisy client sends the whole global budget and more: 2 pass, the rest are
    // its own 429s.
    for _ in 0..30 {
        if let Decision::Admitted(ticket) = admission.admit(Some("noisy"), RequestClass::Normal) {
            tickets.push(ticket);
        }
    }
    assert_eq!(tickets.len(), 2);
    // Everyone else still has the other 8 places of the shared window.
    for client in ["a", "b", "c", "d"] {
        for _ in 0..2 {
            tickets.push(
                admission
                    .admit(Some(client), RequestClass::Normal)
                    .into_result()
                    .unwrap()
                    .unwrap(),
            );
        }
    }
    assert_eq!(tickets.len(), 10);
    let refused = admission
        .admit(Some("e"), RequestClass::Normal)
        .refusal()
        .copied()
        .unwrap();
    assert!(matches!(
        refused,
        Refusal::RateLimited {
            scope: RateScope::Global,
            ..
        }
    ));
}

#[test]
fn a_full_client_table_answers_503_too_many_keys_with_a_hint() {
    let admission = admission(100, 100, 1, 2);
    let _a = admission
        .admit(Some("a"), RequestClass::Normal)
        .into_result()
        .unwrap();
    admission.clock().advance(Duration::from_secs(20));
    let _b = admission
        .admit(Some("b"), RequestClass::Normal)
        .into_result()
        .unwrap();
    // a's window empties 60 s after t = 0; it is t = 20 s.
    assert_eq!(
        refusal(admission.admit(Some("c"), RequestClass::Normal)),
        (503, "too_many_keys", Duration::from_secs(40))
    );
    let snapshot = admission.metrics().snapshot();
    assert_eq!(
        MetricsSnapshot::by_reason(&snapshot.overloaded_total, "too_many_keys"),
        1
    );
    admission.clock().advance(Duration::from_secs(40));
    let _c = admission
        .admit(Some("c"), RequestClass::Normal)
        .into_result()
        .unwrap();
    #[cfg(feature = "prometheus")]
    assert!(
        admission
            .metrics()
            .render_prometheus()
            .contains("too_many_keys")
    );
}

#[test]
fn the_queue_comes_last_and_a_queue_refusal_still_counts_for_the_client() {
    let admission = admission(100, 1, 2, 10);
    let ticket = admission
        .admit(Some("a"), RequestClass::Normal)
        .into_result()
        .unwrap();
    assert_eq!(
        refusal(admission.admit(Some("a"), RequestClass::Normal)),
        (503, "queue_full", queue_hint(&admission))
    );
    drop(ticket);
    // a's two requests are in its window, though only one got a place in the queue.
    assert_eq!(
        refusal(admission.admit(Some("a"), RequestClass::Normal)).0,
        429
    );
}

fn queue_hint(admission: &Admission<ManualClock>) -> Duration {
    admission.limits().queue.retry_after_hint
}

#[test]
fn exempt_requests_bypass_the_client_stage() {
    let admission = admission(1, 1, 1, 1);
    let _a = admission
        .admit(Some("a"), RequestClass::Normal)
        .into_result()
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            admission.admit(Some("a"), RequestClass::Exempt),
            Decision::Exempt
        ));
        assert!(matches!(
            admission.admit(Some("new"), RequestClass::Exempt),
            Decision::Exempt
        ));
    }
    assert_eq!(admission.per_key().unwrap().len(), 1);
}

#[test]
fn shadow_mode_counts_client_refusals_without_enforcing_them() {
    let mut limits = Limits::default();
    limits.rate.limit = 100;
    limits.queue.max = 100;
    limits.resources.enabled = false;
    limits.shadow = true;
    let admission = Admission::with_clock(limits, ManualClock::new())
        .unwrap()
        .with_per_key(Quota::new(1, MINUTE).unwrap(), 1)
        .unwrap();
    let mut tickets = Vec::new();
    for key in ["a", "a", "b"] {
        tickets.push(
            admission
                .admit(Some(key), RequestClass::Normal)
                .into_result()
                .unwrap(),
        );
    }
    let snapshot = admission.metrics().snapshot();
    assert_eq!(
        MetricsSnapshot::by_reason(&snapshot.shadow_refusals_total, "rate_limited"),
        1
    );
    assert_eq!(
        MetricsSnapshot::by_reason(&snapshot.shadow_refusals_total, "too_many_keys"),
        1
    );
    assert_eq!(snapshot.admitted_total, 3);
}

#[test]
fn client_overrides_through_the_stage() {
    let admission = admission(100, 100, 1, 10);
    admission
        .per_key()
        .unwrap()
        .set_limit("paying".to_string(), Quota::new(3, MINUTE).unwrap())
        .unwrap();
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(
            admission
                .admit(Some("paying"), RequestClass::Normal)
                .into_result()
                .unwrap(),
        );
    }
    assert_eq!(
        refusal(admission.admit(Some("paying"), RequestClass::Normal)).0,
        429
    );
    tickets.push(
        admission
            .admit(Some("free"), RequestClass::Normal)
            .into_result()
            .unwrap(),
    );
    assert_eq!(
        refusal(admission.admit(Some("free"), RequestClass::Normal)).0,
        429
    );
    // reconfigure leaves the client stage alone.
    let mut limits = admission.limits();
    limits.rate.limit = 50;
    admission.reconfigure(limits).unwrap();
    assert_eq!(
        refusal(admission.admit(Some("free"), RequestClass::Normal)).0,
        429
    );
    assert_eq!(
        admission.per_key().unwrap().quota_for("paying"),
        Quota::new(3, MINUTE).unwrap()
    );
}

#[test]
fn a_429_says_which_window_refused_and_the_metrics_count_each() {
    let admission = admission(2, 100, 1, 10);
    let _a = admission
        .admit(Some("a"), RequestClass::Normal)
        .into_result()
        .unwrap();
    let own = admission
        .admit(Some("a"), RequestClass::Normal)
        .refusal()
        .copied()
        .unwrap();
    assert!(
        matches!(
            own,
            Refusal::RateLimited {
                scope: RateScope::PerClient,
                ..
            }
        ),
        "{own:?}"
    );
    // New clients, each with room of its own, until the shared window is full.
    let shared = (0..3)
        .find_map(|i| {
            admission
                .admit(Some(format!("new-{i}").as_str()), RequestClass::Normal)
                .refusal()
                .copied()
        })
        .expect("the shared window fills");
    assert!(
        matches!(
            shared,
            Refusal::RateLimited {
                scope: RateScope::Global,
                ..
            }
        ),
        "{shared:?}"
    );
    let snapshot = admission.metrics().snapshot();
    assert_eq!(snapshot.rate_limited_total, 2);
    assert_eq!(
        snapshot.rate_limited_by_scope_total,
        vec![("global", 1), ("per_client", 1)]
    );
    assert!(
        admission
            .metrics()
            .render_prometheus()
            .contains("backstop_rate_limited_by_scope_total{scope=\"per_client\"} 1")
    );
}
