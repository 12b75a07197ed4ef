//! With the `tracing` feature, every decision is a `trace` event with its reason, and a
//! failing resource probe a `warn`.
#![cfg(feature = "tracing")]

use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::resources::{FakeProbe, ResourceReading};
use backstop_core::{Admission, Limits};
use backstop_testkit::capture::Captured;

fn subscriber(out: &Captured) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(out.clone())
        .finish()
}

#[test]
fn every_decision_is_traced_with_its_reason() {
    let out = Captured::default();
    // One limiter refuses by rate, the other by a full queue.
    let mut limits = Limits::default();
    limits.rate.limit = 1;
    let by_rate = Admission::with_clock(limits.clone(), ManualClock::new()).unwrap();
    limits.rate.limit = 10;
    limits.queue.max = 1;
    let by_queue = Admission::with_clock(limits, ManualClock::new()).unwrap();
    tracing::subscriber::with_default(subscriber(&out), || {
        let _a = by_rate.try_admit().into_result().unwrap();
        assert!(by_rate.try_admit().refusal().is_some());
        let _b = by_queue.try_admit().into_result().unwrap();
        assert!(by_queue.try_admit().refusal().is_some());
    });
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("TRACE backstop_core::admission")),
        "{text}"
    );
    assert!(lines[0].contains("decision=\"admitted\""), "{text}");
    assert!(
        lines[1].contains(
            "decision=\"refused\" reason=\"rate_limited\" status=429 retry_after_ms=60000"
        ),
        "{text}"
    );
    assert!(lines[2].contains("decision=\"admitted\""), "{text}");
    assert!(
        lines[3].contains("decision=\"refused\" reason=\"queue_full\" status=503"),
        "{text}"
    );
}

#[test]
fn a_failing_probe_is_a_warning() {
    let out = Captured::default();
    // The sampler logs from its own thread: a global subscriber, the only one in this
    // test binary that sets one.
    tracing::subscriber::set_global_default(subscriber(&out)).unwrap();
    let mut limits = Limits::default();
    limits.resources.sample_interval = Duration::from_millis(1);
    limits.resources.max_sample_age = Duration::from_millis(1000);
    let admission = Admission::with_clock(limits, ManualClock::new()).unwrap();
    let probe = FakeProbe::new(ResourceReading::memory_only(8 << 30));
    probe.set_failing(true);
    let sampler = admission.spawn_sampler(probe.clone()).unwrap();
    assert!(probe.wait_for_reads(2, Duration::from_secs(10)));
    drop(sampler);
    let text = out.text();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("resource probe failed")),
        "{text}"
    );
}
