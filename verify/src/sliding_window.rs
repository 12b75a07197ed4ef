//! `sliding_window`: [`SlidingWindow`] on a [`ManualClock`] against a `VecDeque` model.
//!
//! Operations: move the clock forwards or back, `try_acquire`, `try_acquire_at` with a
//! stale reading, `acquire_timeout`, `available`, `reconfigure` in place (limits above
//! the capacity must be refused) and `reconfigured` (including invalid limits, which
//! must be refused with the field named). Every decision, every
//! `retry_after` and every `available` must equal the model's; `acquire_timeout` must
//! move the clock by exactly the model's wait.
//!
//! The clock stays below [`TIME_CAP_NS`] (2⁶² ns, 146 years): the limiter promises exact
//! answers only while `time + window` fits in 64 bits, which [`MAX_WINDOW`] guarantees
//! for every time below 2⁶³.

use std::time::Duration;

use backstop_core::clock::{Clock, ManualClock};
use backstop_core::rate::{MAX_LIMIT, MAX_WINDOW, SlidingWindow};

use crate::input::Input;
use crate::{Violation, ensure};

/// The clock never goes past this (2⁶² ns).
pub const TIME_CAP_NS: u64 = 1 << 62;

/// The longest sequence of operations one input drives (a limit on run time per input).
pub const MAX_OPS: usize = 4096;

/// The shared reference model (one for every checker; see `backstop_core::model`).
pub use backstop_core::model::{Memory, WindowModel};

/// What the constructor must say about a limit and window, independently of its code:
/// `None` when valid, else the field it must name.
fn invalid_field(limit: u32, window_ns: u64) -> Option<&'static str> {
    if limit == 0 || limit > MAX_LIMIT {
        Some("limit")
    } else if window_ns == 0 || u128::from(window_ns) > MAX_WINDOW.as_nanos() {
        Some("window")
    } else {
        None
    }
}

/// A limit: mostly tiny (edges are hit often), sometimes 0 or just past [`MAX_LIMIT`].
fn any_limit(input: &mut Input<'_>) -> u32 {
    match input.below(16) {
        0 => 0,
        1 => MAX_LIMIT + 1 + u32::from(input.u8()),
        2 => 1 + u32::from(input.u16() % 512),
        n => u32::from(n) - 2,
    }
}

/// A window: small so edges recur, or a second, or anything, or out of range.
fn any_window_ns(input: &mut Input<'_>) -> u64 {
    match input.below(8) {
        0 => 0,
        1 => 1,
        2 => 1_000_000_000,
        3 => u64::try_from(MAX_WINDOW.as_nanos()).expect("fits") + u64::from(input.u8()),
        4 => u64::from(input.u32()),
        _ => 1 + u64::from(input.u8()),
    }
}

/// A step of time, biased towards the window's edges.
fn step_ns(input: &mut Input<'_>, window_ns: u64) -> u64 {
    match input.below(8) {
        0 => 0,
        1 => 1,
        2 => window_ns.saturating_sub(1),
        3 => window_ns,
        4 => window_ns.saturating_add(1),
        5 => u64::from(input.u32()),
        _ => u64::from(input.u8()),
    }
}

/// The `sliding_window` check.
///
/// # Errors
///
/// A [`Violation`] where the limiter and the model disagree.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let mut input = Input::new(data);
    let clock = ManualClock::new();
    let (limit, window_ns) = (any_limit(&mut input), any_window_ns(&mut input));
    let built = SlidingWindow::with_clock(limit, Duration::from_nanos(window_ns), clock.clone());
    let (mut limiter, mut model) = match (built, invalid_field(limit, window_ns)) {
        (Ok(limiter), None) => (limiter, WindowModel::new(limit, window_ns)),
        (Err(e), Some(field)) => {
            ensure!(
                e.field() == field,
                "limit {limit}, window {window_ns} ns: error names {:?}, not {field:?}",
                e.field()
            );
            return Ok(());
        }
        (Ok(_), Some(field)) => {
            return Err(Violation::new(format!(
                "limit {limit}, window {window_ns} ns accepted; {field} is out of range"
            )));
        }
        (Err(e), None) => {
            return Err(Violation::new(format!(
                "limit {limit}, window {window_ns} ns refused: {e}"
            )));
        }
    };

    for op in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let now_ns = clock.now_ns();
        match input.below(11) {
            0 | 1 => {
                let step = step_ns(&mut input, model.window_ns());
                if now_ns.saturating_add(step) < TIME_CAP_NS {
                    clock.advance(Duration::from_nanos(step));
                }
            }
            2 => clock.set(Duration::from_nanos(
                now_ns.saturating_sub(step_ns(&mut input, model.window_ns())),
            )),
            3..=5 => {
                let got = limiter.try_acquire().map_err(|e| nanos(e.retry_after()));
                let want = model.try_acquire(now_ns);
                ensure!(
                    got == want,
                    "op {op}: try_acquire at {now_ns} ns gave {got:?}, model {want:?}"
                );
            }
            6 => {
                let at_ns = now_ns.saturating_sub(u64::from(input.u16()));
                let got = limiter
                    .try_acquire_at(at_ns)
                    .map_err(|e| nanos(e.retry_after()));
                let want = model.try_acquire(at_ns);
                ensure!(
                    got == want,
                    "op {op}: try_acquire_at({at_ns}) gave {got:?}, model {want:?}"
                );
            }
            7 => {
                let timeout_ns = step_ns(&mut input, model.window_ns());
                if now_ns.saturating_add(timeout_ns) >= TIME_CAP_NS {
                    continue;
                }
                let got = limiter
                    .acquire_timeout(Duration::from_nanos(timeout_ns))
                    .map_err(|e| nanos(e.retry_after()));
                let want = match model.try_acquire(now_ns) {
                    Err(wait_ns) if wait_ns <= timeout_ns => {
                        let admitted = model.try_acquire(now_ns + wait_ns);
                        ensure!(
                            admitted.is_ok(),
                            "op {op}: model refuses after its own wait"
                        );
                        Ok(now_ns + wait_ns)
                    }
                    Err(wait_ns) => Err(wait_ns),
                    Ok(()) => Ok(now_ns),
                };
                let got = got.map(|()| clock.now_ns());
                ensure!(
                    got == want,
                    "op {op}: acquire_timeout({timeout_ns} ns) at {now_ns} ns gave {got:?} (Ok: clock after), model {want:?}"
                );
                if want.is_err() {
                    ensure!(
                        clock.now_ns() == now_ns,
                        "op {op}: a refused acquire_timeout moved the clock"
                    );
                }
            }
            8 => {
                let (got, want) = (limiter.available(), model.available(now_ns));
                ensure!(
                    got == want,
                    "op {op}: available at {now_ns} ns is {got}, model {want}"
                );
            }
            9 => {
                let (new_limit, new_window_ns) = (any_limit(&mut input), any_window_ns(&mut input));
                let result = limiter.reconfigure(new_limit, Duration::from_nanos(new_window_ns));
                let refused_field = invalid_field(new_limit, new_window_ns)
                    .or((new_limit > limiter.capacity()).then_some("limit"));
                match (result, refused_field) {
                    (Ok(()), None) => {
                        ensure!(
                            model.reconfigure(new_limit, new_window_ns),
                            "op {op}: reconfigure({new_limit}) accepted above the model's capacity"
                        );
                    }
                    (Err(e), Some(field)) => {
                        ensure!(
                            e.field() == field,
                            "op {op}: reconfigure({new_limit}, {new_window_ns} ns) names {:?}, not {field:?}",
                            e.field()
                        );
                    }
                    (result, _) => {
                        return Err(Violation::new(format!(
                            "op {op}: reconfigure({new_limit}, {new_window_ns} ns) gave {result:?}"
                        )));
                    }
                }
            }
            _ => {
                let (new_limit, new_window_ns) = (any_limit(&mut input), any_window_ns(&mut input));
                let result = limiter.reconfigured(new_limit, Duration::from_nanos(new_window_ns));
                match (result, invalid_field(new_limit, new_window_ns)) {
                    (Ok(next), None) => {
                        limiter = next;
                        model = model.reconfigured(new_limit, new_window_ns);
                    }
                    (Err(e), Some(field)) => {
                        ensure!(
                            e.field() == field,
                            "op {op}: reconfigured({new_limit}, {new_window_ns} ns) names {:?}, not {field:?}",
                            e.field()
                        );
                    }
                    (result, _) => {
                        return Err(Violation::new(format!(
                            "op {op}: reconfigured({new_limit}, {new_window_ns} ns) gave {:?}",
                            result.map(|_| ())
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_follows_the_definition() {
        let mut model = WindowModel::new(2, 10);
        assert_eq!(model.try_acquire(0), Ok(()));
        assert_eq!(model.try_acquire(3), Ok(()));
        assert_eq!(model.try_acquire(9), Err(1));
        assert_eq!(model.available(10), 1);
        assert_eq!(model.try_acquire(10), Ok(()));
        // A stale reading is recorded at the latest time, so it frees nothing early.
        assert_eq!(model.try_acquire(5), Err(8));
        assert_eq!(model.reconfigured(1, 10).try_acquire(19), Err(1));
    }

    #[test]
    fn empty_and_short_inputs_pass() {
        for data in [&[][..], &[3], &[3, 7, 3, 3, 3, 3]] {
            check(data).unwrap();
        }
    }
}
