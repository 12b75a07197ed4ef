//! `keyed_window`: [`KeyedSlidingWindow`] on a [`ManualClock`] against a map of
//! [`WindowModel`]s.
//!
//! Operations on a handful of keys and a tiny `max_keys`, so the table fills, sweeps and
//! refuses often: move the clock, `try_acquire`, `available`, `set_limit` (valid,
//! invalid, or one override too many), `clear_limit`, `retain_recent`. The model:
//!
//! - each tracked key has a window model of its quota (its override, else the default);
//!   an override change reshapes it, keeping its recent admissions except those already
//!   outside the new window;
//! - a new key is admitted while fewer than `max_keys` keys are tracked; when the table
//!   is full, every key whose window is empty is reclaimed first, and if none is, the
//!   key is refused with `TooManyKeys`, whose `retry_after` is positive and no later
//!   than the moment the first tracked window empties;
//! - `retain_recent` reclaims exactly the keys whose windows are empty;
//! - `len` is the number of tracked keys, never above `max_keys`.

use std::collections::BTreeMap;
use std::time::Duration;

use backstop_core::clock::{Clock, ManualClock};
use backstop_core::rate::{KeyedRefusal, KeyedSlidingWindow, MAX_LIMIT, MAX_WINDOW};

use crate::input::Input;
use crate::sliding_window::WindowModel;
use crate::{Violation, ensure};

/// The longest sequence of operations one input drives.
pub const MAX_OPS: usize = 4096;

/// Keys are `0..KEYS`.
const KEYS: u8 = 6;

/// A tracked key: the window model of its quota, and the admissions it carries beyond
/// its limit from an earlier, larger shape (kept for a later reshape).
#[derive(Debug, Clone)]
struct Tracked {
    window: WindowModel,
    quota: (u32, u64),
}

impl Tracked {
    fn new(quota: (u32, u64), history: &[u64]) -> Self {
        Tracked {
            window: WindowModel::with_history(quota.0, quota.1, history),
            quota,
        }
    }

    /// When the window is empty (0: empty now).
    fn empty_from_ns(&self) -> u64 {
        self.window.empty_from_ns()
    }

    /// The key in a new shape: everything its window remembers, in a window with at
    /// least as much room, the forgotten ones at its horizon.
    ///
    /// All of them, not just the last `limit`: a key whose window is narrowed (or whose
    /// limit is lowered) and widened again must still count the admissions the wide window
    /// holds. See VERIFICATION.md.
    fn reshaped(&self, quota: (u32, u64), _now_ns: u64) -> Self {
        Tracked {
            window: WindowModel::with_memory_and_capacity(
                quota.0,
                quota.1,
                self.window.capacity(),
                &self.window.remembered(),
            ),
            quota,
        }
    }
}

/// The keyed limiter's model (also the admission target's per-client stage).
pub(crate) struct Model {
    default: (u32, u64),
    max_keys: usize,
    tracked: BTreeMap<u8, Tracked>,
    overrides: BTreeMap<u8, (u32, u64)>,
}

impl Model {
    /// An empty table of `max_keys` with `default` (limit, window_ns) for every key.
    pub(crate) fn new(default: (u32, u64), max_keys: usize) -> Self {
        Model {
            default,
            max_keys,
            tracked: BTreeMap::new(),
            overrides: BTreeMap::new(),
        }
    }

    fn quota(&self, key: u8) -> (u32, u64) {
        self.overrides.get(&key).copied().unwrap_or(self.default)
    }

    /// Reclaims every key whose window is empty at `now_ns`; how many.
    fn sweep(&mut self, now_ns: u64) -> usize {
        let before = self.tracked.len();
        self.tracked.retain(|_, t| t.empty_from_ns() > now_ns);
        before - self.tracked.len()
    }

    /// `Err(Ok(wait))` for 429, `Err(Err(latest_retry))` for `TooManyKeys`.
    pub(crate) fn try_acquire(&mut self, key: u8, now_ns: u64) -> Result<(), Result<u64, u64>> {
        if !self.tracked.contains_key(&key) {
            if self.tracked.len() >= self.max_keys {
                self.sweep(now_ns);
            }
            if self.tracked.len() >= self.max_keys {
                let first = self.tracked.values().map(Tracked::empty_from_ns).min();
                return Err(Err(first.expect("a full table") - now_ns));
            }
            self.tracked.insert(key, Tracked::new(self.quota(key), &[]));
        }
        let tracked = self.tracked.get_mut(&key).expect("tracked");
        tracked.window.try_acquire(now_ns).map_err(Ok)
    }

    /// After an override change: a tracked key whose quota changed takes the new shape.
    fn reshape(&mut self, key: u8, now_ns: u64) {
        let quota = self.quota(key);
        if let Some(tracked) = self.tracked.get_mut(&key) {
            if tracked.quota != quota {
                *tracked = tracked.reshaped(quota, now_ns);
            }
        }
    }
}

fn invalid_field(limit: u32, window_ns: u64) -> Option<&'static str> {
    if limit == 0 || limit > MAX_LIMIT {
        Some("limit")
    } else if window_ns == 0 || u128::from(window_ns) > MAX_WINDOW.as_nanos() {
        Some("window")
    } else {
        None
    }
}

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

/// The `keyed_window` check.
///
/// # Errors
///
/// A [`Violation`] where the keyed limiter and the model disagree.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let mut input = Input::new(data);
    let clock = ManualClock::new();
    let default = any_quota(&mut input);
    let max_keys = usize::from(input.below(5));
    let built = KeyedSlidingWindow::<u8, ManualClock>::with_clock(
        default.0,
        Duration::from_nanos(default.1),
        max_keys,
        clock.clone(),
    );
    let want_error = invalid_field(default.0, default.1).or((max_keys == 0).then_some("max_keys"));
    let limiter = match (built, want_error) {
        (Ok(limiter), None) => limiter,
        (Err(e), Some(field)) => {
            ensure!(
                e.field() == field,
                "{default:?}, max_keys {max_keys}: error names {:?}, not {field:?}",
                e.field()
            );
            return Ok(());
        }
        (built, _) => {
            return Err(Violation::new(format!(
                "{default:?}, max_keys {max_keys}: gave {:?}, expected an error naming {want_error:?}",
                built.map(|_| ())
            )));
        }
    };
    let mut model = Model::new(default, max_keys);

    for op in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let now_ns = clock.now_ns();
        let key = input.below(KEYS);
        match input.below(10) {
            0 | 1 => {
                let step_ns = match input.below(4) {
                    0 => u64::from(input.u8()),
                    n => u64::from(n) * 8,
                };
                clock.advance(Duration::from_nanos(step_ns));
            }
            2..=5 => {
                let want = model.try_acquire(key, now_ns);
                match (limiter.try_acquire(&key), want) {
                    (Ok(()), Ok(())) => {}
                    (Err(KeyedRefusal::RateLimited(got)), Err(Ok(wait_ns))) => {
                        let got_ns = got.retry_after().as_nanos();
                        ensure!(
                            got_ns == u128::from(wait_ns),
                            "op {op}: key {key} at {now_ns} ns: retry after {got_ns} ns, model {wait_ns}"
                        );
                    }
                    (Err(KeyedRefusal::TooManyKeys(got)), Err(Err(latest_ns))) => {
                        let got_ns = got.retry_after().as_nanos();
                        ensure!(
                            got_ns > 0 && got_ns <= u128::from(latest_ns),
                            "op {op}: key {key} at {now_ns} ns: too many keys, retry after {got_ns} ns; the first window empties in {latest_ns}"
                        );
                        ensure!(
                            got.max_keys() == max_keys,
                            "op {op}: max_keys {} reported",
                            got.max_keys()
                        );
                    }
                    (got, want) => {
                        return Err(Violation::new(format!(
                            "op {op}: key {key} at {now_ns} ns: {got:?}, model {want:?} (Err(Ok) 429, Err(Err) too many keys); tracked {:?}",
                            model.tracked.keys().collect::<Vec<_>>()
                        )));
                    }
                }
            }
            6 => {
                let got = limiter.available(&key);
                let want = match model.tracked.get(&key) {
                    Some(tracked) => tracked.window.available(now_ns),
                    None => model.quota(key).0,
                };
                ensure!(
                    got == want,
                    "op {op}: available({key}) at {now_ns} ns is {got}, model {want}"
                );
            }
            7 => {
                let (limit, window_ns) = any_quota(&mut input);
                let result = limiter.set_limit(key, limit, Duration::from_nanos(window_ns));
                let too_many =
                    !model.overrides.contains_key(&key) && model.overrides.len() >= max_keys;
                let want_field =
                    invalid_field(limit, window_ns).or(too_many.then_some("overrides"));
                match (result, want_field) {
                    (Ok(()), None) => {
                        model.overrides.insert(key, (limit, window_ns));
                        model.reshape(key, now_ns);
                    }
                    (Err(e), Some(field)) => {
                        ensure!(
                            e.field() == field,
                            "op {op}: set_limit({key}, {limit}, {window_ns} ns) names {:?}, not {field:?}",
                            e.field()
                        );
                    }
                    (result, _) => {
                        return Err(Violation::new(format!(
                            "op {op}: set_limit({key}, {limit}, {window_ns} ns) gave {result:?}, expected an error naming {want_field:?}"
                        )));
                    }
                }
                let (got_limit, got_window) = limiter.limit_for(&key);
                let want = model.quota(key);
                ensure!(
                    (got_limit, got_window.as_nanos()) == (want.0, u128::from(want.1)),
                    "op {op}: limit_for({key}) is {got_limit}/{got_window:?}, model {want:?}"
                );
            }
            8 => {
                let had = model.overrides.remove(&key).is_some();
                ensure!(
                    limiter.clear_limit(&key) == had,
                    "op {op}: clear_limit({key}) should say {had}"
                );
                model.reshape(key, now_ns);
            }
            _ => {
                let (got, want) = (limiter.retain_recent(), model.sweep(now_ns));
                ensure!(
                    got == want,
                    "op {op}: retain_recent at {now_ns} ns reclaimed {got}, model {want}"
                );
            }
        }
        ensure!(
            limiter.len() == model.tracked.len(),
            "op {op}: len {} , model tracks {:?}",
            limiter.len(),
            model.tracked.keys().collect::<Vec<_>>()
        );
        ensure!(
            limiter.len() <= max_keys,
            "op {op}: len {} above max_keys {max_keys}",
            limiter.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reshape_keeps_what_any_later_window_may_hold() {
        let mut tracked = Tracked::new((3, 32), &[]);
        for t in [16, 40] {
            tracked.window.try_acquire(t).unwrap();
        }
        assert_eq!(tracked.empty_from_ns(), 72);
        // Narrowed at 40, the admission at 16 has left the 24 ns window but is still
        // within the 32 ns one the key had: it is remembered...
        let narrow = tracked.reshaped((3, 24), 40);
        assert_eq!(narrow.window.recent().collect::<Vec<_>>(), [16, 40]);
        assert_eq!(narrow.window.available(40), 2);
        // ...so widening again counts it.
        let wide = narrow.reshaped((3, 32), 40);
        assert_eq!(wide.window.available(40), 1);
        // Lowering the limit keeps the room, so raising it again counts both.
        let low = tracked.reshaped((1, 32), 40);
        assert_eq!(low.window.available(40), 0);
        assert_eq!(low.reshaped((3, 32), 40).window.available(40), 1);
    }
}
