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
///
/// On x86_64, where quanta reads the TSC, the counter is read inline and scaled with one
/// multiplication by quanta's own calibration (the same nanoseconds, to the unit, as
/// `quanta::Clock::delta_as_nanos`): a call into quanta per reading, its choice of clock
/// source and its variable shift were a third of an admission.
#[derive(Clone)]
pub struct QuantaClock {
    clock: quanta::Clock,
    /// The raw counter at creation; time is scaled from the raw delta, which skips the
    /// `Instant`/`Duration` round trip of `quanta::Clock::now`.
    epoch_raw: u64,
    /// Nanoseconds per counter tick as a fraction of 2⁶⁴, when the inline reading applies
    /// (see [`tsc`]); 0 when readings go through quanta.
    ns_per_tick_q64: u64,
}

impl QuantaClock {
    /// A clock whose epoch (time 0) is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let epoch_raw = clock.raw();
        let ns_per_tick_q64 = tsc::scale_of(&clock).unwrap_or(0);
        QuantaClock {
            clock,
            epoch_raw,
            ns_per_tick_q64,
        }
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
            .field("inline_tsc", &(self.ns_per_tick_q64 != 0))
            .finish()
    }
}

impl Clock for QuantaClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        if self.ns_per_tick_q64 != 0 {
            // A raw reading below the epoch (a TSC that differs between cores) counts as
            // 0, as in quanta.
            let ticks = tsc::read().saturating_sub(self.epoch_raw);
            return tsc::scale(ticks, self.ns_per_tick_q64);
        }
        self.clock.delta_as_nanos(self.epoch_raw, self.clock.raw())
    }
}

/// The time-stamp counter read inline, and quanta's scale of it as one multiplier.
mod tsc {
    /// The counter now. Only called where [`scale_of`] found that quanta reads it too.
    #[inline(always)]
    pub(super) fn read() -> u64 {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            // Safe to call in newer Rust; `unsafe` for the oldest toolchain supported.
            #[allow(unused_unsafe)]
            // SAFETY: RDTSC exists on every x86_64 CPU and only reads the counter (quanta
            // reads it the same way, without a fence).
            unsafe {
                std::arch::x86_64::_rdtsc()
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        unreachable!("no inline counter on this target")
    }

    /// `ticks` in nanoseconds: `ticks · ns_per_tick_q64 / 2⁶⁴`, rounded down.
    #[inline(always)]
    pub(super) fn scale(ticks: u64, ns_per_tick_q64: u64) -> u64 {
        ((u128::from(ticks) * u128::from(ns_per_tick_q64)) >> 64) as u64
    }

    /// The multiplier that turns `clock`'s raw readings into its nanoseconds, when `clock`
    /// reads this CPU's time-stamp counter and one 64-bit multiplier reproduces its
    /// scaling exactly (a counter faster than 1 GHz, which every x86_64 TSC is); `None`
    /// otherwise, and always off x86_64 and under Miri.
    pub(super) fn scale_of(clock: &quanta::Clock) -> Option<u64> {
        if !cfg!(all(target_arch = "x86_64", not(miri))) {
            return None;
        }
        // quanta reads the counter iff its raw reading falls between two of ours (the OS
        // clock it falls back to counts nanoseconds, far below the counter's ticks).
        let before = read();
        let raw = clock.raw();
        let after = read();
        if !(before <= raw && raw <= after) {
            return None;
        }
        // quanta scales a delta `d` to `d · factor >> shift` (`shift` ≤ 62 in practice);
        // that is `d · (factor << (64 − shift)) >> 64`, and the multiplier is read off
        // the scale of 2⁶² (0.25 ns per tick at most, or it does not fit).
        let q64 = clock.delta_as_nanos(0, 1 << 62).checked_mul(4)?;
        let reproduces = [
            1,
            3,
            1_000,
            999_999_937,
            1 << 32,
            (1 << 40) + 12_345,
            1 << 52,
        ]
        .into_iter()
        .all(|ticks| scale(ticks, q64) == clock.delta_as_nanos(0, ticks));
        reproduces.then_some(q64)
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
    fn the_inline_counter_reads_quantas_nanoseconds() {
        let clock = QuantaClock::new();
        if cfg!(all(target_arch = "x86_64", not(miri))) {
            assert_ne!(
                clock.ns_per_tick_q64, 0,
                "quanta reads the TSC on this machine"
            );
        }
        // The same scale as quanta's, tick for tick, over a range of deltas.
        for ticks in (0..64).map(|bit| (1u64 << bit) - 1).chain([12_345_678_901]) {
            if clock.ns_per_tick_q64 != 0 {
                assert_eq!(
                    tsc::scale(ticks, clock.ns_per_tick_q64),
                    clock.clock.delta_as_nanos(0, ticks),
                    "{ticks}"
                );
            }
        }
        // And the same reading, within the time between the two reads.
        let before = clock
            .clock
            .delta_as_nanos(clock.epoch_raw, clock.clock.raw());
        let ours = clock.now_ns();
        let after = clock
            .clock
            .delta_as_nanos(clock.epoch_raw, clock.clock.raw());
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
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
