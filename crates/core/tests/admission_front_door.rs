//! `Admission` end to end on a manual clock: the order of stages, exempt and critical
//! classes, shadow mode, job starts against slots and the resource gate, live reload.

use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::jobs::QueueTicket;
use backstop_core::resources::{GateState, ResourceReading, Shortage};
use backstop_core::{
    Admission, Decision, Limits, MetricsSnapshot, OverloadReason, RateScope, Refusal, RequestClass,
    WaitReason,
};
use backstop_core::{ByteSize, Quota};

const MIB: u64 = 1 << 20;

fn limits(rate: u32, queue: u32, jobs: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = rate;
    limits.rate.window = Duration::from_millis(10_000);
    limits.queue.max = queue;
    limits.jobs.max = jobs;
    limits.resources.enabled = false;
    limits
}

fn admission(limits: Limits) -> (Admission<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (Admission::with_clock(limits, clock.clone()).unwrap(), clock)
}

fn ticket(decision: Decision) -> QueueTicket {
    match decision {
        Decision::Admitted(ticket) => ticket,
        other => panic!("expected admission, got {other:?}"),
    }
}

fn refusal(decision: Decision) -> Refusal {
    match decision {
        Decision::Refused(refusal) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_original_ones() {
    let limits = Limits::default();
    assert_eq!(
        (limits.rate.limit, limits.rate.window),
        (30, Duration::from_secs(60))
    );
    assert_eq!((limits.queue.max, limits.jobs.max), (100, 5));
    assert_eq!(limits.resources.min_available_memory, ByteSize::mib(2048));
    assert_eq!(limits.resources.min_free_disk, ByteSize::gib(5));
    assert!(!limits.shadow);
    limits.validate().unwrap();
}

#[test]
fn rate_limit_comes_first_with_an_exact_retry_after() {
    let (admission, clock) = admission(limits(2, 10, 1));
    let _a = ticket(admission.try_admit());
    clock.advance(Duration::from_secs(3));
    let _b = ticket(admission.try_admit());
    let refused = refusal(admission.try_admit());
    assert_eq!(
        refused,
        Refusal::RateLimited {
            retry_after: Duration::from_secs(7),
            scope: RateScope::Global,
        }
    );
    assert_eq!(
        (refused.status_code(), refused.retry_after_secs()),
        (429, 7)
    );
    assert_eq!(refused.as_str(), "rate_limited");
    assert_eq!(admission.queue().len(), 2, "a 429 takes no queue place");
    clock.advance(Duration::from_secs(7));
    let _c = ticket(admission.try_admit());
}

#[test]
fn a_full_queue_gives_503_and_the_request_still_counts_in_the_window() {
    let mut l = limits(3, 1, 1);
    l.queue.retry_after_hint = Duration::from_millis(2500);
    let (admission, _clock) = admission(l);
    let held = ticket(admission.try_admit());
    let refused = refusal(admission.try_admit());
    assert_eq!(
        refused,
        Refusal::Overloaded {
            reason: OverloadReason::QueueFull,
            retry_after_hint: Duration::from_millis(2500)
        }
    );
    assert_eq!(
        (refused.status_code(), refused.retry_after_secs()),
        (503, 3)
    );
    drop(held);
    // Two admissions used the window even though one was refused by the queue.
    let _t = ticket(admission.try_admit());
    assert_eq!(refusal(admission.try_admit()).status_code(), 429);
    let m = admission.metrics().snapshot();
    assert_eq!((m.admitted_total, m.rate_limited_total), (2, 1));
    assert_eq!(
        MetricsSnapshot::by_reason(&m.overloaded_total, "queue_full"),
        1
    );
}

#[test]
fn exempt_requests_bypass_everything_and_are_counted() {
    let (admission, _clock) = admission(limits(1, 1, 1));
    let _t = ticket(admission.try_admit());
    for _ in 0..5 {
        assert!(matches!(
            admission.admit(None, RequestClass::Exempt),
            Decision::Exempt
        ));
    }
    assert_eq!(refusal(admission.try_admit()).status_code(), 429);
    let m = admission.metrics().snapshot();
    assert_eq!((m.exempt_total, m.admitted_total, m.queue_depth), (5, 1, 1));
}

#[test]
fn critical_requests_use_the_reserved_room() {
    let mut l = limits(100, 3, 1);
    l.queue.critical_reserve = 1;
    let (admission, _clock) = admission(l);
    let _a = ticket(admission.try_admit());
    let _b = ticket(admission.try_admit());
    assert_eq!(refusal(admission.try_admit()).as_str(), "queue_full");
    let _c = ticket(admission.admit(None, RequestClass::Critical));
    assert_eq!(
        refusal(admission.admit(None, RequestClass::Critical)).as_str(),
        "queue_full"
    );
}

#[test]
fn jobs_wait_for_a_slot_and_keep_their_place() {
    let (admission, _clock) = admission(limits(10, 5, 1));
    let first = ticket(admission.try_admit());
    let second = ticket(admission.try_admit());
    let running = admission.start_job(first).unwrap();
    let (second, reason) = admission.start_job(second).unwrap_err();
    assert_eq!(reason, WaitReason::NoFreeSlot);
    assert_eq!(reason.as_str(), "no_free_slot");
    assert_eq!(
        (admission.queue().len(), admission.slots().active()),
        (1, 1)
    );
    drop(running);
    let _running = admission.start_job(second).unwrap();
    let m = admission.metrics().snapshot();
    assert_eq!((m.jobs_started_total, m.jobs_finished_total), (2, 1));
    assert_eq!(
        MetricsSnapshot::by_reason(&m.job_waits_total, "no_free_slot"),
        1
    );
}

#[test]
fn a_resource_shortage_holds_jobs_back_and_the_queue_fills_to_503() {
    let mut l = limits(100, 2, 4);
    l.resources.enabled = true;
    let (admission, _clock) = admission(l);
    let gate = admission.resource_gate();
    let change = gate.observe(ResourceReading::memory_only(512 * MIB));
    assert_eq!(change.after, GateState::LowMemory);

    let a = ticket(admission.try_admit());
    let (a, reason) = admission.start_job(a).unwrap_err();
    assert_eq!(reason.as_str(), "low_memory");
    assert!(
        matches!(reason, WaitReason::Resources(Shortage::Memory { available_bytes, .. }) if available_bytes == 512 * MIB)
    );
    let _b = ticket(admission.try_admit());
    assert_eq!(
        refusal(admission.try_admit()).status_code(),
        503,
        "backpressure reached clients"
    );

    gate.observe(ResourceReading::memory_only(4096 * MIB));
    let _permit = admission.start_job(a).unwrap();
    assert_eq!(admission.slots().active(), 1);
}

#[test]
fn a_stale_gate_holds_jobs_back_by_default() {
    let mut l = limits(100, 2, 4);
    l.resources.enabled = true;
    let (admission, clock) = admission(l);
    admission
        .resource_gate()
        .observe(ResourceReading::memory_only(8192 * MIB));
    clock.advance(Duration::from_secs(6));
    let t = ticket(admission.try_admit());
    let (_t, reason) = admission.start_job(t).unwrap_err();
    assert_eq!(reason.as_str(), "stale");
}

#[test]
fn a_spawned_sampler_feeds_the_admission_gate() {
    use backstop_core::resources::FakeProbe;
    let mut l = limits(100, 2, 4);
    l.resources.enabled = true;
    l.resources.sample_interval = Duration::from_millis(1);
    let (admission, _clock) = admission(l);
    let probe = FakeProbe::new(ResourceReading::memory_only(MIB));
    let sampler = admission.spawn_sampler(probe.clone()).unwrap();
    // The second read starts only after the first reading was published.
    assert!(probe.wait_for_reads(2, Duration::from_secs(30)));
    assert_eq!(admission.resource_gate().state(), GateState::LowMemory);
    let t = ticket(admission.try_admit());
    let (_t, reason) = admission.start_job(t).unwrap_err();
    assert_eq!(reason.as_str(), "low_memory");
    assert!(sampler.stop());
}

#[test]
fn shadow_mode_counts_refusals_without_enforcing_them() {
    let mut l = limits(1, 1, 1);
    l.shadow = true;
    l.resources.enabled = true;
    let (admission, _clock) = admission(l);
    admission
        .resource_gate()
        .observe(ResourceReading::memory_only(MIB));
    let tickets: Vec<_> = (0..3).map(|_| ticket(admission.try_admit())).collect();
    assert_eq!(
        admission.queue().len(),
        3,
        "the queue counts past its bound in shadow mode"
    );
    let mut tickets = tickets.into_iter();
    let _permit = admission.start_job(tickets.next().unwrap()).unwrap();
    // Job slots are the worker pool: enforced even in shadow mode.
    let (_t, reason) = admission.start_job(tickets.next().unwrap()).unwrap_err();
    assert_eq!(reason, WaitReason::NoFreeSlot);

    let m = admission.metrics().snapshot();
    assert_eq!(
        MetricsSnapshot::by_reason(&m.shadow_refusals_total, "rate_limited"),
        2
    );
    assert_eq!(
        MetricsSnapshot::by_reason(&m.shadow_refusals_total, "queue_full"),
        2
    );
    assert_eq!(
        MetricsSnapshot::by_reason(&m.shadow_refusals_total, "low_memory"),
        2
    );
    assert_eq!((m.rate_limited_total, m.admitted_total), (0, 3));
}

#[test]
fn reconfigure_lowers_the_limit_at_once_and_keeps_tickets_and_permits() {
    let (admission, clock) = admission(limits(10, 10, 2));
    let t1 = ticket(admission.try_admit());
    let t2 = ticket(admission.try_admit());
    let permit = admission.start_job(t1).unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(1));
        drop(ticket(admission.try_admit()));
    }
    // Five admissions in the window; a limit of 4 must refuse at once.
    admission.reconfigure(limits(4, 10, 1)).unwrap();
    let refused = refusal(admission.try_admit());
    assert_eq!(refused.status_code(), 429);
    assert_eq!(
        refused.retry_after(),
        Duration::from_secs(7),
        "the history was kept"
    );
    assert_eq!(
        (admission.queue().len(), admission.slots().active()),
        (1, 1)
    );
    assert_eq!(admission.limits().rate.limit, 4);
    // One job slot now, taken by the surviving permit.
    let (t2, reason) = admission.start_job(t2).unwrap_err();
    assert_eq!(reason, WaitReason::NoFreeSlot);
    drop(permit);
    let _p = admission.start_job(t2).unwrap();
}

#[test]
fn lowering_the_limit_and_raising_it_again_forgets_no_admission() {
    let (admission, clock) = admission(limits(8, 100, 1));
    for _ in 0..8 {
        drop(ticket(admission.try_admit()));
        clock.advance(Duration::from_secs(1));
    }
    admission.reconfigure(limits(2, 100, 1)).unwrap();
    assert_eq!(refusal(admission.try_admit()).status_code(), 429);
    admission.reconfigure(limits(8, 100, 1)).unwrap();
    // All eight (at 0 s … 7 s) are still in the 10 s window: the first leaves it at 10 s.
    assert_eq!(
        refusal(admission.try_admit()).retry_after(),
        Duration::from_secs(2)
    );
    clock.advance(Duration::from_secs(2));
    drop(ticket(admission.try_admit()));
    assert_eq!(refusal(admission.try_admit()).status_code(), 429);
}

#[test]
fn raising_the_limit_past_the_capacity_keeps_the_window() {
    let (admission, clock) = admission(limits(4, 100, 1));
    for _ in 0..4 {
        drop(ticket(admission.try_admit()));
        clock.advance(Duration::from_secs(1));
    }
    // 4 is the capacity (a power of two already): 6 takes a larger limiter, which carries
    // the four admissions over.
    admission.reconfigure(limits(6, 100, 1)).unwrap();
    drop(ticket(admission.try_admit()));
    drop(ticket(admission.try_admit()));
    assert_eq!(
        refusal(admission.try_admit()).retry_after(),
        Duration::from_secs(6),
        "the first admission, at 0 s, leaves the window at 10 s"
    );
    // And back down in place on the larger one.
    admission.reconfigure(limits(5, 100, 1)).unwrap();
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        refusal(admission.try_admit()).retry_after(),
        Duration::from_secs(1),
        "five still in the window: those at 1, 2, 3 s and the two at 4 s"
    );
}

#[test]
fn reconfiguring_while_other_threads_admit_stays_sound() {
    // Two threads decide while the limit moves up and down across the limiter's
    // capacity (so limiters are replaced under them). Afterwards, with the window
    // emptied, the last configuration holds exactly.
    let (admission, clock) = admission(limits(1, 1 << 16, 1));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let decided = std::thread::scope(|s| {
        let deciders: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut decided = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        drop(admission.try_admit());
                        decided += 1;
                    }
                    decided
                })
            })
            .collect();
        for round in 0..200u32 {
            let rate = [1, 3, 17, 2, 64, 5][round as usize % 6] + round;
            admission.reconfigure(limits(rate, 1 << 16, 1)).unwrap();
            clock.advance(Duration::from_millis(7));
            std::thread::yield_now();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        deciders.into_iter().map(|d| d.join().unwrap()).sum::<u64>()
    });
    let metrics = admission.metrics().snapshot();
    assert_eq!(
        metrics.admitted_total
            + metrics.rate_limited_total
            + metrics.overloaded_total.iter().map(|(_, n)| n).sum::<u64>(),
        decided
    );
    clock.advance(Duration::from_secs(10));
    admission.reconfigure(limits(50, 1 << 16, 1)).unwrap();
    for _ in 0..50 {
        drop(ticket(admission.try_admit()));
    }
    assert_eq!(refusal(admission.try_admit()).status_code(), 429);
}

#[test]
fn a_rejected_reconfiguration_changes_nothing() {
    let (admission, _clock) = admission(limits(3, 3, 3));
    let mut bad = limits(1, 1, 1);
    bad.jobs.max = 0;
    assert_eq!(admission.reconfigure(bad).unwrap_err().field(), "jobs.max");
    assert_eq!(admission.limits(), limits(3, 3, 3));
    assert_eq!(admission.queue().bounds().max_queue, 3);
}

#[test]
fn front_door_types_fit_an_http_layer() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>() {}
    send_sync_static::<Admission>();
    send_sync_static::<Admission<ManualClock>>();
    send_static::<QueueTicket>();
    send_static::<Decision>();
    send_sync_static::<Refusal>();
}

#[test]
fn many_admissions_on_one_thread_never_mix_their_configurations() {
    // More admissions than the per-thread cache has slots, interleaved, some dropped and
    // replaced (a new one may land at a freed address): each keeps its own limit.
    let mut admissions: Vec<_> = (1..=6u32)
        .map(|rate| admission(limits(rate, 100, 1)).0)
        .collect();
    for round in 0..3u32 {
        for (i, admission) in admissions.iter().enumerate() {
            let d = admission.try_admit();
            let rate = i as u32 + 1;
            assert_eq!(
                d.refusal().is_none(),
                round < rate,
                "admission {i}, round {round}"
            );
        }
    }
    admissions.truncate(3);
    admissions.extend((0..3).map(|_| admission(limits(1, 100, 1)).0));
    for admission in &admissions[3..] {
        assert!(
            admission.try_admit().refusal().is_none(),
            "a fresh admission"
        );
        assert_eq!(
            admission.try_admit().refusal().map(|r| r.status_code()),
            Some(429)
        );
    }
}

#[test]
fn a_reconfiguration_is_seen_by_other_threads() {
    let (admission, _clock) = admission(limits(100, 100, 1));
    std::thread::scope(|s| {
        s.spawn(|| drop(admission.try_admit())).join().unwrap();
        admission.reconfigure(limits(1, 100, 1)).unwrap();
        s.spawn(|| {
            assert_eq!(admission.limits().rate.limit, 1);
            assert_eq!(
                admission.try_admit().refusal().map(|r| r.status_code()),
                Some(429)
            );
        })
        .join()
        .unwrap();
    });
}

#[test]
fn decisions_stay_small() {
    // A decision is returned on every request: keep it to a few words.
    assert!(
        std::mem::size_of::<Decision>() <= 32,
        "{}",
        std::mem::size_of::<Decision>()
    );
    // A ticket is the counters' pointer and its issue time (for the queue-wait
    // histogram): two words, still passed in registers.
    assert_eq!(
        std::mem::size_of::<QueueTicket>(),
        2 * std::mem::size_of::<usize>()
    );
}

#[test]
fn tickets_move_to_other_threads() {
    let (admission, _clock) = admission(limits(10, 10, 2));
    let t = ticket(admission.try_admit());
    let t = std::thread::spawn(move || t).join().unwrap();
    assert_eq!(admission.queue().len(), 1);
    drop(t);
    assert_eq!(admission.queue().len(), 0);
}

#[test]
fn stable_names_for_logs() {
    assert_eq!(OverloadReason::QueueFull.as_str(), "queue_full");
    assert_eq!(OverloadReason::TooManyKeys.as_str(), "too_many_keys");
    let names: Vec<_> = GateState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        ["open", "low_memory", "low_disk", "memory_pressure", "stale"]
    );
}

/// A manual clock whose next reading can be made stale once, as if the reading thread
/// were preempted between reading the clock and deciding.
#[derive(Clone)]
struct OnceStale {
    clock: ManualClock,
    stale_ns: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl backstop_core::clock::Clock for OnceStale {
    fn now_ns(&self) -> u64 {
        match self
            .stale_ns
            .swap(u64::MAX, std::sync::atomic::Ordering::SeqCst)
        {
            u64::MAX => self.clock.now_ns(),
            stale => stale,
        }
    }
}

#[test]
fn a_stale_reading_is_read_again_before_a_429() {
    let clock = OnceStale {
        clock: ManualClock::new(),
        stale_ns: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
    };
    // 2 per 10 s; admissions at 0 s and 6 s.
    let admission = Admission::with_clock(limits(2, 10, 1), clock.clone()).unwrap();
    let _first = ticket(admission.try_admit());
    clock.clock.set(Duration::from_secs(6));
    let _second = ticket(admission.try_admit());
    // At 11 s the admission at 0 s has left the window, but this request's reading says
    // 3 s (older than the admission at 6 s): it must be read again, not refused.
    clock.clock.set(Duration::from_secs(11));
    clock
        .stale_ns
        .store(3_000_000_000, std::sync::atomic::Ordering::SeqCst);
    let _third = ticket(admission.try_admit());
    // A fresh reading that finds the window full is refused as usual.
    let refused = refusal(admission.try_admit());
    assert_eq!(refused.retry_after(), Duration::from_secs(5));
}

#[test]
fn a_rate_refusal_says_which_stage_refused_and_rate_limit_follows_reconfigure() {
    use backstop_core::RateScope;
    let (admission, _clock) = admission(limits(2, 100, 10));
    let admission = admission
        .with_per_key(Quota::new(1, Duration::from_secs(10)).unwrap(), 8)
        .unwrap();
    let _a = ticket(admission.admit(Some("a"), RequestClass::Normal));
    // "a" has spent its own limit; the shared one has room.
    match refusal(admission.admit(Some("a"), RequestClass::Normal)) {
        Refusal::RateLimited { scope, .. } => assert_eq!(scope, RateScope::PerClient),
        other => panic!("{other:?}"),
    }
    // New clients, each with room of its own, until the shared limit refuses one.
    let mut held = Vec::new();
    let refused = (0..3)
        .find_map(|client| {
            match admission.admit(Some(format!("k{client}").as_str()), RequestClass::Normal) {
                Decision::Admitted(ticket) => {
                    held.push(ticket);
                    None
                }
                Decision::Refused(refusal) => Some(refusal),
                Decision::Exempt => panic!("not exempt"),
            }
        })
        .expect("the shared limit of 2 refuses within 3 new clients");
    match refused {
        Refusal::RateLimited { scope, .. } => assert_eq!(scope, RateScope::Global),
        other => panic!("{other:?}"),
    }

    let quota = |limit, secs| Quota::new(limit, Duration::from_secs(secs)).unwrap();
    assert_eq!(admission.rate_limit(), quota(2, 10));
    let mut wider = limits(5, 100, 10);
    wider.rate.window = Duration::from_millis(30_000);
    admission.reconfigure(wider).unwrap();
    assert_eq!(admission.rate_limit(), quota(5, 30));
}

/// Widening keeps what the wide window holds: `Limits` 1 per 60 s → 2 per 120 s must keep counting the admission
/// the one-slot limiter forgot.
#[test]
fn widening_the_rate_limit_counts_what_the_wide_window_holds() {
    let mut limits = Limits::default();
    limits.resources.enabled = false;
    limits.rate.limit = 1;
    limits.rate.window = Duration::from_millis(60_000);
    let clock = ManualClock::new();
    let admission = Admission::with_clock(limits.clone(), clock.clone()).unwrap();
    let mut tickets = vec![admission.try_admit().into_result().unwrap()];
    clock.advance(Duration::from_secs(60));
    tickets.push(admission.try_admit().into_result().unwrap());
    clock.advance(Duration::from_nanos(1));
    limits.rate.limit = 2;
    limits.rate.window = Duration::from_millis(120_000);
    admission.reconfigure(limits).unwrap();
    let refused = admission.try_admit().refusal().copied();
    assert_eq!(refused.map(|r| r.status_code()), Some(429), "{refused:?}");
}
