//! `keyed_window`: [`KeyedSlidingWindow`] on a [`ManualClock`] against the keyed
//! limiter's reference, [`KeyedModel`] (a table of per-key window models).
//!
//! Operations on a handful of keys and a tiny `max_keys`, so the table fills, sweeps and
//! refuses often: move the clock, `try_acquire`, `available`, `set_limit` (valid,
//! invalid, or one override too many), `clear_limit`, `retain_recent`. The model:
//!
//! - each tracked key has a window model of its quota (its override, else the default);
//!   an override change reshapes it, keeping everything it remembers in a window with at
//!   least as much room (what it forgot counts at its horizon);
//! - a new key is admitted while fewer than `max_keys` keys are tracked; when the table
//!   is full, every key whose window is empty is reclaimed first, and if none is, the
//!   key is refused with `TooManyKeys`, whose `retry_after` is positive and no later
//!   than the moment the first tracked window empties;
//! - `retain_recent` reclaims exactly the keys whose windows are empty;
//! - `len` is the number of tracked keys, never above `max_keys`.

use std::time::Duration;

use backstop_core::clock::{Clock, ManualClock};
use backstop_core::model::{KeyedModel, KeyedRefused};
use backstop_core::rate::{KeyedRefusal, KeyedSlidingWindow, MAX_LIMIT, MAX_WINDOW};
use backstop_core::{ConfigError, Quota};

use crate::input::Input;
use crate::sliding_window::invalid_field;
use crate::{Violation, ensure};

/// The longest sequence of operations one input drives.
pub const MAX_OPS: usize = 4096;

/// Keys are `0..KEYS`.
const KEYS: u8 = 6;

fn any_quota(input: &mut Input<'_>) -> (u32, u64) {
    let limit = match input.below(16) {
        0 => 0,
        1 => MAX_LIMIT + 1,
        n => u32::from(n % 4) + 1,
    };
    let window_ns = match input.below(16) {
        0 => 0,
        1 => u64::try_from(MAX_WINDOW.as_nanos()).expect("fits") + 1,
        n => u64::from(n) * 8,
    };
    (limit, window_ns)
}

/// One step of an input, on one key.
#[derive(Debug)]
enum Op {
    /// The clock moves on, ns.
    Advance(u64),
    Acquire,
    Available,
    SetLimit((u32, u64)),
    ClearLimit,
    RetainRecent,
}

impl Op {
    fn decode(input: &mut Input<'_>) -> Op {
        match input.below(10) {
            0 | 1 => Op::Advance(match input.below(4) {
                0 => u64::from(input.u8()),
                n => u64::from(n) * 8,
            }),
            2..=5 => Op::Acquire,
            6 => Op::Available,
            7 => Op::SetLimit(any_quota(input)),
            8 => Op::ClearLimit,
            _ => Op::RetainRecent,
        }
    }
}

/// The shape, checked where every limiter's shape is: by [`Quota::new`].
fn quota((limit, window_ns): (u32, u64)) -> Result<Quota, ConfigError> {
    Quota::new(limit, Duration::from_nanos(window_ns))
}

/// The limiter under test and its model.
struct Run {
    clock: ManualClock,
    limiter: KeyedSlidingWindow<u8, ManualClock>,
    model: KeyedModel<u8>,
    max_keys: usize,
}

impl Run {
    /// The limiter of the input's default quota and `max_keys` (`None` when they are
    /// rightly refused).
    fn build(input: &mut Input<'_>) -> Result<Option<Run>, Violation> {
        let clock = ManualClock::new();
        let default = any_quota(input);
        let max_keys = usize::from(input.below(5));
        let built = quota(default).and_then(|q| {
            KeyedSlidingWindow::<u8, ManualClock>::with_clock(q, max_keys, clock.clone())
        });
        let want_error =
            invalid_field(default.0, default.1).or((max_keys == 0).then_some("max_keys"));
        match (built, want_error) {
            (Ok(limiter), None) => Ok(Some(Run {
                clock,
                limiter,
                model: KeyedModel::new(default, max_keys),
                max_keys,
            })),
            (Err(e), Some(field)) => {
                ensure!(
                    e.field() == field,
                    "{default:?}, max_keys {max_keys}: error names {:?}, not {field:?}",
                    e.field()
                );
                Ok(None)
            }
            (built, _) => Err(Violation::new(format!(
                "{default:?}, max_keys {max_keys}: gave {:?}, expected an error naming {want_error:?}",
                built.map(|_| ())
            ))),
        }
    }

    fn apply(&mut self, key: u8, op: Op) -> Result<(), Violation> {
        let now_ns = self.clock.now_ns();
        match op {
            Op::Advance(step_ns) => self.clock.advance(Duration::from_nanos(step_ns)),
            Op::Acquire => self.acquire(key, now_ns)?,
            Op::Available => {
                let (got, want) = (
                    self.limiter.available(&key),
                    self.model.available(&key, now_ns),
                );
                ensure!(
                    got == want,
                    "available({key}) at {now_ns} ns is {got}, model {want}"
                );
            }
            Op::SetLimit(quota) => self.set_limit(key, quota)?,
            Op::ClearLimit => {
                let had = self.model.clear_limit(&key);
                ensure!(
                    self.limiter.clear_limit(&key) == had,
                    "clear_limit({key}) should say {had}"
                );
            }
            Op::RetainRecent => {
                let (got, want) = (
                    self.limiter.retain_recent(),
                    self.model.retain_recent(now_ns),
                );
                ensure!(
                    got == want,
                    "retain_recent at {now_ns} ns reclaimed {got}, model {want}"
                );
            }
        }
        Ok(())
    }

    fn acquire(&mut self, key: u8, now_ns: u64) -> Result<(), Violation> {
        let want = self.model.try_acquire(&key, now_ns);
        match (self.limiter.try_acquire(&key), want) {
            (Ok(()), Ok(())) => {}
            (Err(KeyedRefusal::RateLimited(got)), Err(KeyedRefused::RateLimited { wait_ns })) => {
                let got_ns = got.retry_after().as_nanos();
                ensure!(
                    got_ns == u128::from(wait_ns),
                    "key {key} at {now_ns} ns: retry after {got_ns} ns, model {wait_ns}"
                );
            }
            (Err(KeyedRefusal::TooManyKeys(got)), Err(KeyedRefused::TooManyKeys { latest_ns })) => {
                let got_ns = got.retry_after().as_nanos();
                ensure!(
                    got_ns > 0 && got_ns <= u128::from(latest_ns),
                    "key {key} at {now_ns} ns: too many keys, retry after {got_ns} ns; the first window empties in {latest_ns}"
                );
                ensure!(
                    got.max_keys() == self.max_keys,
                    "max_keys {} reported",
                    got.max_keys()
                );
            }
            (got, want) => {
                return Err(Violation::new(format!(
                    "key {key} at {now_ns} ns: {got:?}, model {want:?}; tracked {:?}",
                    self.model.tracked().collect::<Vec<_>>()
                )));
            }
        }
        Ok(())
    }

    fn set_limit(&mut self, key: u8, (limit, window_ns): (u32, u64)) -> Result<(), Violation> {
        let result = quota((limit, window_ns)).and_then(|q| self.limiter.set_limit(key, q));
        // The model takes the override unless a field is out of range.
        let want_field = match invalid_field(limit, window_ns) {
            Some(field) => Some(field),
            None if self.model.set_limit(&key, (limit, window_ns)) => None,
            None => Some("overrides"),
        };
        match (result, want_field) {
            (Ok(()), None) => {}
            (Err(e), Some(field)) => ensure!(
                e.field() == field,
                "set_limit({key}, {limit}, {window_ns} ns) names {:?}, not {field:?}",
                e.field()
            ),
            (result, _) => {
                return Err(Violation::new(format!(
                    "set_limit({key}, {limit}, {window_ns} ns) gave {result:?}, expected an error naming {want_field:?}"
                )));
            }
        }
        let got = self.limiter.quota_for(&key);
        let want = self.model.shape(&key);
        ensure!(
            (got.limit(), got.window().as_nanos()) == (want.0, u128::from(want.1)),
            "quota_for({key}) is {got}, model {want:?}"
        );
        Ok(())
    }

    /// The table's size against the model's, and its bound.
    fn table_agrees(&self) -> Result<(), Violation> {
        ensure!(
            self.limiter.len() == self.model.len(),
            "len {}, model tracks {:?}",
            self.limiter.len(),
            self.model.tracked().collect::<Vec<_>>()
        );
        ensure!(
            self.limiter.len() <= self.max_keys,
            "len {} above max_keys {}",
            self.limiter.len(),
            self.max_keys
        );
        Ok(())
    }
}

/// The `keyed_window` check.
///
/// # Errors
///
/// A [`Violation`] where the keyed limiter and the model disagree.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let mut input = Input::new(data);
    let Some(mut run) = Run::build(&mut input)? else {
        return Ok(());
    };
    for op in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let key = input.below(KEYS);
        let step = Op::decode(&mut input);
        run.apply(key, step)
            .and_then(|()| run.table_agrees())
            .map_err(|v| Violation::new(format!("op {op}: {v}")))?;
    }
    Ok(())
}
