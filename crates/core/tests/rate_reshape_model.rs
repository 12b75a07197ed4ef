//! Exact under change: under any sequence of admissions and changes of shape (in
//! place, or into a larger limiter), no window of the shape in force ever holds more than
//! its limit, counting every admission made under any earlier shape.
//!
//! The model is the definition itself: every admission time ever, and the rule checked
//! after each admission against the shape it was made under. In-place changes must also
//! be exact the other way (the limiter admits whenever the definition does), since the
//! limiter remembers all it needs for them.

use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::rate::SlidingWindow;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Admit,
    /// In place when the limit fits the capacity, else into a larger limiter.
    Reshape(u32, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..40).prop_map(Op::Advance),
        6 => Just(Op::Admit),
        1 => (1u32..9, 1u64..60).prop_map(|(l, w)| Op::Reshape(l, w)),
    ]
}

/// How many of `admitted` lie in `(now − window, now]`.
fn in_window(admitted: &[u64], now: u64, window: u64) -> usize {
    admitted
        .iter()
        .filter(|&&t| t + window > now && t <= now)
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_window_of_the_shape_in_force_holds_more_than_its_limit(
        first in (1u32..5, 1u64..60),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let clock = ManualClock::new();
        let mut limiter =
            SlidingWindow::with_clock(Quota::new(first.0, Duration::from_nanos(first.1)).unwrap(), clock.clone());
        let (mut limit, mut window) = first;
        let mut admitted: Vec<u64> = Vec::new();
        // Whether every shape so far was applied in place (then the limiter is exact
        // both ways).
        let mut in_place = true;
        for op in ops {
            let now = clock.now_ns_for_test();
            match op {
                Op::Advance(d) => clock.advance(Duration::from_nanos(d)),
                Op::Reshape(l, w) => {
                    let quota = Quota::new(l, Duration::from_nanos(w)).unwrap();
                    if limiter.reconfigure(quota).is_err() {
                        limiter = limiter.reconfigured(quota);
                        in_place = false;
                    }
                    (limit, window) = (l, w);
                }
                Op::Admit => {
                    let room = in_window(&admitted, now, window) < limit as usize;
                    match limiter.try_acquire() {
                        Ok(()) => {
                            prop_assert!(room, "admitted at {now} with {limit} per {window} full: {admitted:?}");
                            admitted.push(now);
                        }
                        Err(_) => prop_assert!(
                            !room || !in_place,
                            "refused at {now} with room under {limit} per {window}: {admitted:?}"
                        ),
                    }
                }
            }
        }
    }
}

trait NowForTest {
    fn now_ns_for_test(&self) -> u64;
}

impl NowForTest for ManualClock {
    fn now_ns_for_test(&self) -> u64 {
        use backstop_core::clock::Clock;
        self.now_ns()
    }
}
