//! `SlidingWindow` against the shared reference model (`backstop_core::model::WindowModel`,
//! feature `model`), on a manual clock: identical decisions and identical `retry_after`,
//! including steps of 0, admissions exactly at window edges, and changes of limit and
//! window in place (`reconfigure`).

use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::model::WindowModel;
use backstop_core::rate::SlidingWindow;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    TryAcquire,
    AcquireTimeout(u64),
    Available,
    /// `reconfigure(limit, window_ns)`; limits above the capacity must be refused.
    Reconfigure(u32, u64),
}

/// Steps biased towards the interesting ones: 0, just before, at, and just after a
/// window edge.
fn op(window_ns: u64) -> impl Strategy<Value = Op> {
    let step = prop_oneof![
        Just(0),
        Just(1),
        Just(window_ns - 1),
        Just(window_ns),
        Just(window_ns + 1),
        0..=window_ns / 4,
        0..3 * window_ns,
    ];
    prop_oneof![
        3 => step.prop_map(Op::Advance),
        6 => Just(Op::TryAcquire),
        1 => (0..2 * window_ns).prop_map(Op::AcquireTimeout),
        1 => Just(Op::Available),
        1 => (1u32..10, prop_oneof![Just(window_ns), 1..2 * window_ns])
            .prop_map(|(limit, window_ns)| Op::Reconfigure(limit, window_ns)),
    ]
}

fn case() -> impl Strategy<Value = (u32, u64, Vec<Op>)> {
    (1u32..6, prop_oneof![Just(2u64), 10u64..1_000]).prop_flat_map(|(limit, window_ns)| {
        (
            Just(limit),
            Just(window_ns),
            proptest::collection::vec(op(window_ns), 1..200),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn decisions_and_retry_after_match_the_reference((limit, window_ns, ops) in case()) {
        let clock = ManualClock::new();
        let window = Duration::from_nanos(window_ns);
        let limiter = SlidingWindow::with_clock(Quota::new(limit, window).unwrap(), clock.clone());
        let mut model = WindowModel::new(limit, window_ns);
        prop_assert_eq!(limiter.capacity() as usize, model.capacity());
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Advance(d) => {
                    now += d;
                    clock.advance(Duration::from_nanos(d));
                }
                Op::TryAcquire => {
                    let got = limiter.try_acquire().map_err(|e| e.retry_after().as_nanos() as u64);
                    prop_assert_eq!(got, model.try_acquire(now), "at {}", now);
                }
                Op::AcquireTimeout(timeout) => {
                    let expected = match model.try_acquire(now) {
                        Ok(()) => Ok(()),
                        Err(wait) if wait <= timeout => {
                            now += wait;
                            model.try_acquire(now)
                        }
                        Err(wait) => Err(wait),
                    };
                    let got = limiter
                        .acquire_timeout(Duration::from_nanos(timeout))
                        .map_err(|e| e.retry_after().as_nanos() as u64);
                    prop_assert_eq!(got, expected, "timeout {} at {}", timeout, now);
                    prop_assert_eq!(clock.now(), Duration::from_nanos(now));
                }
                Op::Available => {
                    prop_assert_eq!(limiter.available(), model.available(now), "at {}", now);
                }
                Op::Reconfigure(new_limit, new_window_ns) => {
                    let result = limiter
                        .reconfigure(Quota::new(new_limit, Duration::from_nanos(new_window_ns)).unwrap());
                    // Refused, and nothing changed, when above the capacity (the first
                    // limit rounded up to a power of two).
                    let fits = new_limit <= limit.next_power_of_two();
                    prop_assert_eq!(model.reconfigure(new_limit, new_window_ns), fits);
                    if fits {
                        prop_assert!(result.is_ok(), "{:?}", result);
                    } else {
                        let refused = result.unwrap_err();
                        prop_assert_eq!(refused.field(), "limit");
                    }
                    prop_assert_eq!(limiter.limit(), model.limit());
                    prop_assert_eq!(limiter.window(), Duration::from_nanos(model.window_ns()));
                }
            }
        }
    }
}
