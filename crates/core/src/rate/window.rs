use std::fmt;
use std::time::Duration;

use super::memory::Memory;
use super::ring::AdmissionRing;
use super::ring::Sealing;
use super::{Quota, RateLimited, SEALABLE_TIME_NS};
use crate::ConfigError;
use crate::clock::{Clock, QuantaClock};

/// An exact sliding-window rate limiter, lock-free.
///
/// # Semantics
///
/// A request at time `t` is admitted iff fewer than `limit` requests were admitted in the
/// half-open window `(t − window, t]`. Equivalently, admission number `k` is allowed iff
/// admission `k − limit` happened at least `window` earlier. Nothing is approximated:
/// unlike GCRA or token buckets (which let up to `2·limit − 1` through in some window),
/// no window of length `window` ever holds more than `limit` admissions.
///
/// Time 0 of the clock is a real instant: the first `limit` requests at time 0 are
/// admitted. A refusal carries the exact [`retry_after`](RateLimited::retry_after).
///
/// # Concurrency
///
/// [`try_acquire`](Self::try_acquire) takes no lock: an admission is one 64-bit
/// compare-and-swap that claims the next slot of the ring and records its time together
/// (a slot's value only ever grows, so a swap prepared on a stale reading cannot succeed),
/// plus a plain store that moves the ring's head hint on. A thread preempted at any point
/// delays nobody. Admissions are linearised in the order of their
/// CASes; the recorded time of an admission is `max(its clock reading, the previous
/// admission's recorded time)`, so recorded times are monotone even when threads read
/// the clock in a different order than they admit.
///
/// # Exact under change
///
/// The limit and window can change while the limiter runs
/// ([`reconfigure`](Self::reconfigure) in place, [`reconfigured`](Self::reconfigured),
/// `Admission::reconfigure`). The contract: **after a change to `(L, W)` takes effect,
/// no window `(s − W, s]` of a decision made under `(L, W)` holds more than `L`
/// admissions**, counting every admission made under any earlier shape. A decision
/// racing the change is made under the old shape or the new one, never a mix.
///
/// To decide admission `k` the limiter needs admission `k − L`'s time. It remembers its
/// last `capacity` admissions (the limit it was built for, rounded up to a power of two),
/// so an in-place change (`L ≤ capacity`) is exact in both directions: it admits exactly
/// what the definition admits. A larger limit needs a larger limiter built from this
/// one; admissions older than the last `capacity` are then no longer known one by one,
/// but a *horizon* is: every one of them happened at or before both the oldest one
/// remembered and the last one minus the narrowest window the limiter has had (each
/// was older than a full window when it was forgotten). The new limiter counts them all
/// at the horizon. So it never admits more than the definition; it refuses more only when
/// the new window reaches back before the horizon (a wider window than the old, right
/// after the change), and only until the horizon leaves the new window. An admission
/// forgotten at exactly time 0 of the clock counts at 1 ns.
///
/// # Memory ordering
///
/// An admission publishes its recorded time with release semantics; every thread that
/// later reads the ring sees it before deciding. Refusals are decided from one acquire
/// load of the slot, and are correct at the instant of that load.
///
/// # Time that goes backwards
///
/// The check compares the caller's clock reading with the time the oldest admission in
/// the window leaves it. A reading that goes backwards can therefore only refuse more,
/// never release capacity early; it never panics.
///
/// A reading can also be merely *old*: a thread preempted between reading the clock and
/// deciding finds admissions recorded after its reading. [`try_acquire`](Self::try_acquire)
/// notices (its reading is older than the latest admission) and reads the clock once more
/// before refusing, so it is not refused for admissions made while it slept;
/// [`try_acquire_at`](Self::try_acquire_at) cannot re-read and judges the time it was
/// given, counting those later admissions too.
///
/// Readings at or past 2⁶² ns (146 years after the clock's epoch) count as that instant.
///
/// # Memory
///
/// One ring of 8-byte slots, two per unit of [`capacity`](Self::capacity) (the second
/// half is what lets the ring find its next slot without storing admission numbers), plus
/// a fixed part (the ring's head and shape, the clock):
/// [`SlidingWindow::bytes_for(limit)`](Self::bytes_for) bytes (about `16·limit + 128`).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use backstop_core::Quota;
/// use backstop_core::clock::ManualClock;
/// use backstop_core::rate::SlidingWindow;
///
/// // The original design's default: 30 requests per 60 s.
/// let clock = ManualClock::new();
/// let limiter = SlidingWindow::with_clock(Quota::new(30, Duration::from_secs(60))?, clock.clone());
/// for _ in 0..30 {
///     limiter.try_acquire().expect("within the limit");
/// }
/// let refused = limiter.try_acquire().unwrap_err();
/// assert_eq!(refused.retry_after(), Duration::from_secs(60));
///
/// clock.advance(refused.retry_after() - Duration::from_nanos(1));
/// assert!(limiter.try_acquire().is_err(), "one nanosecond early");
/// clock.advance(Duration::from_nanos(1));
/// assert!(limiter.try_acquire().is_ok(), "exactly on time");
/// # Ok::<(), backstop_core::ConfigError>(())
/// ```
pub struct SlidingWindow<C = QuantaClock> {
    ring: AdmissionRing,
    clock: C,
}

impl SlidingWindow<QuantaClock> {
    /// A limiter of `quota` on the default monotonic clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, QuantaClock::new())
    }
}

impl<C: Clock> SlidingWindow<C> {
    /// A limiter of `quota` on `clock`.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self::with_memory(quota, clock, &Memory::default())
    }

    fn with_memory(quota: Quota, clock: C, memory: &Memory) -> Self {
        SlidingWindow {
            ring: AdmissionRing::with_memory(quota.limit(), quota.window_ns(), memory),
            clock,
        }
    }

    /// Changes the limit and the window in place, for every thread at once. The ring
    /// remembers [`capacity`](Self::capacity) admissions whatever the limit, so nothing
    /// is forgotten: every decision after this call returns judges all of them by the new
    /// limit and window. Lowering the limit takes effect at once; raising it again within
    /// one window counts the admissions made under the lower one. The limit and window
    /// are one atomic value: a decision racing this call uses the old shape or the new
    /// one, never the limit of one and the window of the other.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backstop_core::Quota;
    /// use backstop_core::clock::ManualClock;
    /// use backstop_core::rate::SlidingWindow;
    ///
    /// let clock = ManualClock::new();
    /// let per_minute = |limit| Quota::new(limit, Duration::from_secs(60));
    /// let limiter = SlidingWindow::with_clock(per_minute(30)?, clock.clone());
    /// for _ in 0..10 {
    ///     limiter.try_acquire().unwrap();
    /// }
    /// limiter.reconfigure(per_minute(5)?)?;
    /// assert!(limiter.try_acquire().is_err(), "10 admissions already in the window");
    /// limiter.reconfigure(per_minute(12)?)?;
    /// assert_eq!(limiter.available(), 2, "the 10 still count");
    /// // Above the capacity (30 rounded up to a power of two) it takes a new ring:
    /// assert!(limiter.reconfigure(per_minute(33)?).is_err());
    /// let bigger = limiter.reconfigured(per_minute(33)?);
    /// assert_eq!(bigger.available(), 23);
    /// # Ok::<(), backstop_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `limit` when it is above [`capacity`](Self::capacity)
    /// (then use [`reconfigured`](Self::reconfigured)). On error nothing changes.
    pub fn reconfigure(&self, quota: Quota) -> Result<(), ConfigError> {
        let limit = quota.limit();
        self.ring
            .reshape(limit, quota.window_ns())
            .map_err(|capacity| {
                ConfigError::new(
                    "limit",
                    format!(
                        "{limit} is above this limiter's capacity of {capacity}; \
                         `reconfigured` makes a larger one"
                    ),
                )
            })
    }

    /// How many admissions this limiter remembers: its limit when made, rounded up to a
    /// power of two. The largest limit [`reconfigure`](Self::reconfigure) accepts.
    pub fn capacity(&self) -> u32 {
        // At most MAX_LIMIT (2^24): `limit` rounded up.
        u32::try_from(self.ring.capacity()).unwrap_or(u32::MAX)
    }

    /// A new limiter of `quota` that remembers this one's admissions, so that lowering
    /// the limit takes effect at once instead of handing out a fresh budget: everything
    /// this one remembers is carried over (as much as the new one has room for), and what
    /// it forgot counts at its horizon (see [Exact under change](Self#exact-under-change)).
    /// Admissions that race this call may be missed: this one stays usable.
    /// `Admission::reconfigure` grows its limiter without missing any (it closes the old
    /// one first). To change the limit in place (up to the
    /// [`capacity`](Self::capacity)), see [`reconfigure`](Self::reconfigure).
    ///
    /// ```
    /// use std::time::Duration;
    /// use backstop_core::Quota;
    /// use backstop_core::clock::ManualClock;
    /// use backstop_core::rate::SlidingWindow;
    ///
    /// let clock = ManualClock::new();
    /// let minute = Duration::from_secs(60);
    /// let wide = SlidingWindow::with_clock(Quota::new(30, minute)?, clock.clone());
    /// for _ in 0..10 {
    ///     wide.try_acquire().unwrap();
    /// }
    /// let narrow = wide.reconfigured(Quota::new(5, minute)?);
    /// assert!(narrow.try_acquire().is_err(), "10 admissions already in the window");
    /// # Ok::<(), backstop_core::ConfigError>(())
    /// ```
    pub fn reconfigured(&self, quota: Quota) -> Self
    where
        C: Clone,
    {
        Self::with_memory(quota, self.clock.clone(), &self.ring.remembered())
    }

    /// Closes this limiter for good and returns one of `quota` that starts from its
    /// whole, final history (see
    /// [`Admission::reconfigure`](crate::Admission::reconfigure)): no admission is lost
    /// (none lands here after the seal) or doubled (each one is in exactly one of the
    /// two). Callers keep the times they pass below [`SEALABLE_TIME_NS`].
    pub(crate) fn sealed_successor(&self, quota: Quota) -> Self
    where
        C: Clone,
    {
        let sealing = self.ring.seal(None);
        debug_assert!(matches!(sealing, Sealing::Sealed), "{sealing:?}");
        Self::with_memory(quota, self.clock.clone(), &self.ring.remembered())
    }

    /// Whether a request at `now_ns` (a reading of this limiter's clock) would be
    /// admitted, without admitting it: the refusal `try_acquire_at` would give, were
    /// nothing else admitted meanwhile.
    #[inline]
    pub(crate) fn would_admit_at(&self, now_ns: u64) -> Result<(), RateLimited> {
        match self.ring.wait_at(now_ns) {
            0 => Ok(()),
            wait_ns => Err(RateLimited::from_nanos(wait_ns)),
        }
    }

    /// Whether `refused` came from a sealed limiter
    /// ([`sealed_successor`](Self::sealed_successor)) rather than a full window: a sealed one refuses with a
    /// wait of at least 2⁶² ns, which no real window (at most [`MAX_WINDOW`](super::MAX_WINDOW)) gives
    /// for times below [`SEALABLE_TIME_NS`].
    #[inline]
    pub(crate) fn refusal_means_sealed(&self, refused: RateLimited) -> bool {
        refused.retry_after() >= Duration::from_nanos(SEALABLE_TIME_NS) && self.ring.is_sealed()
    }

    /// Admits one request now, or says exactly when to retry.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] when the window already holds `limit` admissions.
    #[inline]
    pub fn try_acquire(&self) -> Result<(), RateLimited> {
        self.try_acquire_from_reading(self.clock.now_ns())
    }

    /// Admits one request at `now_ns` (nanoseconds on this limiter's clock), for callers
    /// that already read the clock. A time earlier than admissions already recorded is
    /// treated as in [Time that goes backwards](Self#time-that-goes-backwards).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    #[inline]
    pub fn try_acquire_at(&self, now_ns: u64) -> Result<(), RateLimited> {
        self.ring
            .try_acquire_at(now_ns)
            .map_err(RateLimited::from_nanos)
    }

    /// As [`try_acquire_at`](Self::try_acquire_at) for a reading the caller took from
    /// this limiter's own clock: like [`try_acquire`](Self::try_acquire), it reads the
    /// clock once more before refusing when the reading turns out older than the latest
    /// admission. The front door uses it to share one reading between its stages.
    #[inline]
    pub(crate) fn try_acquire_from_reading(&self, now_ns: u64) -> Result<(), RateLimited> {
        self.ring
            .try_acquire_fresh(now_ns, || Some(self.clock.now_ns().min(SEALABLE_TIME_NS)))
            .map_err(RateLimited::from_nanos)
    }

    /// Blocks until admitted or until `timeout` has passed on this limiter's clock.
    ///
    /// Sleeps until the computed retry time (no polling), never past the deadline, and
    /// returns at once when the wait would end after it. Another thread may take the
    /// freed capacity first; then it waits again, within the same deadline.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the wait that would have been needed, when the deadline
    /// comes first.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), RateLimited> {
        let deadline_ns = self.clock.now_ns().saturating_add(nanos(timeout));
        loop {
            match self.attempt_before(deadline_ns) {
                Attempt::Admitted => return Ok(()),
                Attempt::GiveUp(refused) => return Err(refused),
                Attempt::Wait(wait) => self.clock.sleep(wait),
            }
        }
    }

    /// As [`acquire_timeout`](Self::acquire_timeout), waiting on tokio's timer instead
    /// of blocking the thread. On a clock whose [`sleep`](Clock::sleep) only moves virtual
    /// time ([`ManualClock`](crate::clock::ManualClock)), it moves the clock and yields.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an admission happens only inside a poll that then returns `Ok`, so
    /// dropping the future before it completes admits nothing.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    #[cfg(feature = "tokio")]
    pub async fn acquire_timeout_async(&self, timeout: Duration) -> Result<(), RateLimited> {
        let deadline_ns = self.clock.now_ns().saturating_add(nanos(timeout));
        loop {
            match self.attempt_before(deadline_ns) {
                Attempt::Admitted => return Ok(()),
                Attempt::GiveUp(refused) => return Err(refused),
                Attempt::Wait(wait) if self.clock.is_virtual() => {
                    self.clock.sleep(wait);
                    tokio::task::yield_now().await;
                }
                Attempt::Wait(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// One try of a timed wait that must end by `deadline_ns`.
    fn attempt_before(&self, deadline_ns: u64) -> Attempt {
        let now_ns = self.clock.now_ns();
        match self.ring.try_acquire_at(now_ns) {
            Ok(()) => Attempt::Admitted,
            Err(wait_ns) if wait_ns > deadline_ns.saturating_sub(now_ns) => {
                Attempt::GiveUp(RateLimited::from_nanos(wait_ns))
            }
            Err(wait_ns) => Attempt::Wait(Duration::from_nanos(wait_ns)),
        }
    }

    /// How many requests would be admitted now, were nothing else admitted meanwhile.
    ///
    /// Under concurrent admissions, a count that was true at some moment during the
    /// call; use it for reporting (`RateLimit-Remaining` headers), not for deciding.
    pub fn available(&self) -> u32 {
        self.ring.available_at(self.clock.now_ns())
    }

    /// As [`available`](Self::available), at `now_ns` on this limiter's clock.
    pub fn available_at(&self, now_ns: u64) -> u32 {
        self.ring.available_at(now_ns)
    }

    /// The most admissions in any window.
    pub fn limit(&self) -> u32 {
        // At most MAX_LIMIT: set from a validated u32.
        u32::try_from(self.ring.limit_and_window_ns().0).unwrap_or(u32::MAX)
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.ring.limit_and_window_ns().1)
    }

    /// The limit and the window in force, read together: never one from before a
    /// [`reconfigure`](Self::reconfigure) and the other from after it.
    pub fn quota(&self) -> Quota {
        let (limit, window_ns) = self.ring.limit_and_window_ns();
        // At most MAX_LIMIT: set from a quota.
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        Quota::from_checked(limit, window_ns)
    }

    /// The clock this limiter reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Bytes of memory a limiter of `limit` takes (the ring and its fixed part).
    pub fn bytes_for(limit: u32) -> usize {
        // The ring's bytes saturate for limits no ring could have (`u32::MAX` on 32 bits).
        (AdmissionRing::bytes_for(limit) - std::mem::size_of::<AdmissionRing>())
            .saturating_add(std::mem::size_of::<Self>())
    }

    /// Whether the limiter takes no lock on this machine: admissions are 64-bit atomics
    /// everywhere, and the limit and window, read together on every decision, are one
    /// real 128-bit atomic (true on x86_64 with CMPXCHG16B and on aarch64); false would
    /// mean a lock-based fallback for that pair.
    pub fn is_lock_free() -> bool {
        AdmissionRing::is_lock_free()
    }
}

impl<C: Clock> fmt::Debug for SlidingWindow<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlidingWindow")
            .field("limit", &self.limit())
            .field("window", &self.window())
            .field("available", &self.available())
            .finish()
    }
}

enum Attempt {
    Admitted,
    Wait(Duration),
    GiveUp(RateLimited),
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
