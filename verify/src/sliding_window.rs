//! `sliding_window`: [`SlidingWindow`] on a [`ManualClock`] against the window's
//! reference, [`WindowModel`] (a `VecDeque` of recorded times and the rule).
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
use backstop_core::model::WindowModel;
use backstop_core::rate::{MAX_LIMIT, MAX_WINDOW, SlidingWindow};
use backstop_core::{ConfigError, Quota};

use crate::input::Input;
use crate::{Violation, ensure};

/// The clock never goes past this (2⁶² ns).
pub const TIME_CAP_NS: u64 = 1 << 62;

/// The longest sequence of operations one input drives (a limit on run time per input).
pub const MAX_OPS: usize = 4096;

/// What the constructor must say about a limit and window, independently of its code:
/// `None` when valid, else the field it must name.
pub(crate) fn invalid_field(limit: u32, window_ns: u64) -> Option<&'static str> {
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

/// One step of an input.
#[derive(Debug)]
enum Op {
    /// The clock moves on, ns.
    Advance(u64),
    /// The clock moves back, ns.
    Back(u64),
    TryAcquire,
    /// `try_acquire_at` a reading this many ns old.
    TryAcquireAt(u64),
    /// `acquire_timeout` with this timeout, ns.
    AcquireTimeout(u64),
    Available,
    Reconfigure(u32, u64),
    Reconfigured(u32, u64),
}

impl Op {
    /// The next step; its time steps are biased towards the edges of `window_ns`.
    fn decode(input: &mut Input<'_>, window_ns: u64) -> Op {
        match input.below(11) {
            0 | 1 => Op::Advance(step_ns(input, window_ns)),
            2 => Op::Back(step_ns(input, window_ns)),
            3..=5 => Op::TryAcquire,
            6 => Op::TryAcquireAt(u64::from(input.u16())),
            7 => Op::AcquireTimeout(step_ns(input, window_ns)),
            8 => Op::Available,
            9 => Op::Reconfigure(any_limit(input), any_window_ns(input)),
            _ => Op::Reconfigured(any_limit(input), any_window_ns(input)),
        }
    }
}

/// The shape, checked where every limiter's shape is: by [`Quota::new`].
fn quota(limit: u32, window_ns: u64) -> Result<Quota, ConfigError> {
    Quota::new(limit, Duration::from_nanos(window_ns))
}

/// The limiter under test and its model.
struct Run {
    clock: ManualClock,
    limiter: SlidingWindow<ManualClock>,
    model: WindowModel,
}

impl Run {
    /// The limiter of the input's limit and window (`None` when they are rightly
    /// refused).
    fn build(input: &mut Input<'_>) -> Result<Option<Run>, Violation> {
        let clock = ManualClock::new();
        let (limit, window_ns) = (any_limit(input), any_window_ns(input));
        let built = quota(limit, window_ns).map(|q| SlidingWindow::with_clock(q, clock.clone()));
        match (built, invalid_field(limit, window_ns)) {
            (Ok(limiter), None) => Ok(Some(Run {
                clock,
                limiter,
                model: WindowModel::new(limit, window_ns),
            })),
            (Err(e), Some(field)) => {
                ensure!(
                    e.field() == field,
                    "limit {limit}, window {window_ns} ns: error names {:?}, not {field:?}",
                    e.field()
                );
                Ok(None)
            }
            (Ok(_), Some(field)) => Err(Violation::new(format!(
                "limit {limit}, window {window_ns} ns accepted; {field} is out of range"
            ))),
            (Err(e), None) => Err(Violation::new(format!(
                "limit {limit}, window {window_ns} ns refused: {e}"
            ))),
        }
    }

    fn apply(&mut self, op: Op) -> Result<(), Violation> {
        let now_ns = self.clock.now_ns();
        match op {
            Op::Advance(step) => {
                if now_ns.saturating_add(step) < TIME_CAP_NS {
                    self.clock.advance(Duration::from_nanos(step));
                }
            }
            Op::Back(step) => self
                .clock
                .set(Duration::from_nanos(now_ns.saturating_sub(step))),
            Op::TryAcquire => {
                let got = self
                    .limiter
                    .try_acquire()
                    .map_err(|e| nanos(e.retry_after()));
                let want = self.model.try_acquire(now_ns);
                ensure!(
                    got == want,
                    "try_acquire at {now_ns} ns gave {got:?}, model {want:?}"
                );
            }
            Op::TryAcquireAt(age_ns) => {
                let at_ns = now_ns.saturating_sub(age_ns);
                let got = self
                    .limiter
                    .try_acquire_at(at_ns)
                    .map_err(|e| nanos(e.retry_after()));
                let want = self.model.try_acquire(at_ns);
                ensure!(
                    got == want,
                    "try_acquire_at({at_ns}) gave {got:?}, model {want:?}"
                );
            }
            Op::AcquireTimeout(timeout_ns) => self.acquire_timeout(now_ns, timeout_ns)?,
            Op::Available => {
                let (got, want) = (self.limiter.available(), self.model.available(now_ns));
                ensure!(
                    got == want,
                    "available at {now_ns} ns is {got}, model {want}"
                );
            }
            Op::Reconfigure(limit, window_ns) => self.reconfigure(limit, window_ns)?,
            Op::Reconfigured(limit, window_ns) => self.reconfigured(limit, window_ns)?,
        }
        Ok(())
    }

    /// `acquire_timeout` must move the clock by exactly the model's wait, or refuse
    /// without moving it.
    fn acquire_timeout(&mut self, now_ns: u64, timeout_ns: u64) -> Result<(), Violation> {
        if now_ns.saturating_add(timeout_ns) >= TIME_CAP_NS {
            return Ok(());
        }
        let got = self
            .limiter
            .acquire_timeout(Duration::from_nanos(timeout_ns))
            .map_err(|e| nanos(e.retry_after()));
        let want = match self.model.try_acquire(now_ns) {
            Err(wait_ns) if wait_ns <= timeout_ns => {
                let admitted = self.model.try_acquire(now_ns + wait_ns);
                ensure!(admitted.is_ok(), "model refuses after its own wait");
                Ok(now_ns + wait_ns)
            }
            Err(wait_ns) => Err(wait_ns),
            Ok(()) => Ok(now_ns),
        };
        let got = got.map(|()| self.clock.now_ns());
        ensure!(
            got == want,
            "acquire_timeout({timeout_ns} ns) at {now_ns} ns gave {got:?} (Ok: clock after), model {want:?}"
        );
        ensure!(
            want.is_ok() || self.clock.now_ns() == now_ns,
            "a refused acquire_timeout moved the clock"
        );
        Ok(())
    }

    /// In place: limits above the capacity must be refused, invalid ones with the field
    /// named.
    fn reconfigure(&mut self, limit: u32, window_ns: u64) -> Result<(), Violation> {
        let result = quota(limit, window_ns).and_then(|q| self.limiter.reconfigure(q));
        let refused_field = invalid_field(limit, window_ns)
            .or((limit > self.limiter.capacity()).then_some("limit"));
        match (result, refused_field) {
            (Ok(()), None) => ensure!(
                self.model.reconfigure(limit, window_ns),
                "reconfigure({limit}) accepted above the model's capacity"
            ),
            (Err(e), Some(field)) => ensure!(
                e.field() == field,
                "reconfigure({limit}, {window_ns} ns) names {:?}, not {field:?}",
                e.field()
            ),
            (result, _) => {
                return Err(Violation::new(format!(
                    "reconfigure({limit}, {window_ns} ns) gave {result:?}"
                )));
            }
        }
        Ok(())
    }

    /// Into a new limiter: invalid limits must be refused with the field named.
    fn reconfigured(&mut self, limit: u32, window_ns: u64) -> Result<(), Violation> {
        let result = quota(limit, window_ns).map(|q| self.limiter.reconfigured(q));
        match (result, invalid_field(limit, window_ns)) {
            (Ok(next), None) => {
                self.limiter = next;
                self.model = self.model.reconfigured(limit, window_ns);
            }
            (Err(e), Some(field)) => ensure!(
                e.field() == field,
                "reconfigured({limit}, {window_ns} ns) names {:?}, not {field:?}",
                e.field()
            ),
            (result, _) => {
                return Err(Violation::new(format!(
                    "reconfigured({limit}, {window_ns} ns) gave {:?}",
                    result.map(|_| ())
                )));
            }
        }
        Ok(())
    }
}

/// The `sliding_window` check.
///
/// # Errors
///
/// A [`Violation`] where the limiter and the model disagree.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let mut input = Input::new(data);
    let Some(mut run) = Run::build(&mut input)? else {
        return Ok(());
    };
    for op in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let step = Op::decode(&mut input, run.model.window_ns());
        run.apply(step)
            .map_err(|v| Violation::new(format!("op {op}: {v}")))?;
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
    fn empty_and_short_inputs_pass() {
        for data in [&[][..], &[3], &[3, 7, 3, 3, 3, 3]] {
            check(data).unwrap();
        }
    }
}
