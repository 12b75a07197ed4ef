//! Time, only through the [`Clock`] trait.
//!
//! Every decision in backstop reads time from a `Clock`, never from the OS directly, so
//! tests, benchmarks and the simulator can drive it with [`ManualClock`] and get the same
//! answers every run.

use std::fmt;
use std::time::Duration;

use crate::sync::{Arc, AtomicU64, Ordering};

/// A source of time in nanoseconds since the clock's own epoch.
///
/// Real clocks are monotone. A clock that goes backwards anyway (a [`ManualClock`] that is
/// `set` back, or a buggy source) must never make a backstop component release capacity
/// early or panic: each component documents how it treats time that goes backwards.
pub trait Clock: Send + Sync {
    /// Nanoseconds since this clock's epoch.
    fn now_ns(&self) -> u64;

    /// Waits for `duration` of this clock's time.
    ///
    /// Real clocks block the thread; [`ManualClock`] advances itself instead, so blocking
    /// APIs run instantly and deterministically on virtual time.
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    /// True when [`sleep`](Self::sleep) moves this clock's own time rather than waiting,
    /// so async waits call it instead of a timer.
    fn is_virtual(&self) -> bool {
        false
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
    fn sleep(&self, duration: Duration) {
        (**self).sleep(duration)
    }
    fn is_virtual(&self) -> bool {
        (**self).is_virtual()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
    fn sleep(&self, duration: Duration) {
        (**self).sleep(duration)
    }
    fn is_virtual(&self) -> bool {
        (**self).is_virtual()
    }
}

/// The default clock: monotonic nanoseconds since the clock was created, read from the
/// CPU's time-stamp counter through [`quanta`] where that is reliable (about as cheap as a
/// clock read gets), and from the OS monotonic clock otherwise.
///
/// Every read is fresh: no cached, periodically refreshed time, because a clock that is
/// stale by its refresh period would let `limit + 1` requests through a real window.
#[derive(Clone)]
pub struct QuantaClock {
    clock: quanta::Clock,
    /// The raw counter at creation; time is scaled from the raw delta, which skips the
    /// `Instant`/`Duration` round trip of `quanta::Clock::now`.
    epoch_raw: u64,
}

impl QuantaClock {
    /// A clock whose epoch (time 0) is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let epoch_raw = clock.raw();
        QuantaClock { clock, epoch_raw }
    }
}

impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for QuantaClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantaClock")
            .field("now_ns", &self.now_ns())
            .finish()
    }
}

impl Clock for QuantaClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        // A raw reading below the epoch (a TSC that differs between cores) counts as 0.
        self.clock.delta_as_nanos(self.epoch_raw, self.clock.raw())
    }
}

/// A clock that moves only when told to. Clones share one time.
///
/// Starts at 0, which is a real instant: components treat it like any other time.
///
/// ```
/// use std::time::Duration;
/// use backstop_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(shared.now_ns(), 1_500_000_000);
/// shared.set(Duration::from_nanos(7));
/// assert_eq!(clock.now(), Duration::from_nanos(7));
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    now_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time 0.
    pub fn new() -> Self {
        ManualClock {
            now_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves time forward by `by` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, by: Duration) {
        let by_ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // A test clock, not a hot path: SeqCst keeps its reasoning trivial.
        let _ = self
            .now_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by_ns))
            });
    }

    /// Sets the time, forwards or backwards (saturating at `u64::MAX` nanoseconds).
    pub fn set(&self, to: Duration) {
        let to_ns = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.now_ns.store(to_ns, Ordering::SeqCst);
    }

    /// The current time since the epoch.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns())
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now_ns", &self.now_ns())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }

    fn is_virtual(&self) -> bool {
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn quanta_clock_is_monotone_and_starts_near_zero() {
        let clock = QuantaClock::new();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        assert!(a < Duration::from_secs(5).as_nanos() as u64);
    }

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let clock = ManualClock::new();
        clock.set(Duration::from_nanos(u64::MAX - 1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ns(), u64::MAX);
        clock.set(Duration::MAX);
        assert_eq!(clock.now_ns(), u64::MAX);
    }

    #[test]
    fn manual_clock_sleep_advances_time() {
        let clock = ManualClock::new();
        clock.sleep(Duration::from_secs(3));
        assert_eq!(clock.now(), Duration::from_secs(3));
    }
}
