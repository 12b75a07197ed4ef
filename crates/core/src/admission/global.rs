//! [`GlobalWindow`]: the rate window every request of an [`Admission`](super::Admission)
//! shares, read with one load per request and grown without losing an admission.

// Shared with the reconfiguring thread only; outside loom's models.
use std::sync::Arc as StdArc;
use std::sync::{Mutex, PoisonError};

use crate::ConfigError;
use crate::clock::Clock;
use crate::rate::{Quota, RateLimited, SlidingWindow};
use crate::sync::{AtomicPtr, Ordering};

/// The shared [`SlidingWindow`], changed in place while a new limit fits its capacity
/// and replaced by seal, copy, publish when one does not (see
/// [`Admission::reconfigure`](super::Admission::reconfigure)).
pub(super) struct GlobalWindow<C: Clock> {
    /// The limiter in use: the last of `limiters`. Read with one load per request
    /// instead of a reference-counted swap, which cost a third of the decision.
    current: AtomicPtr<SlidingWindow<C>>,
    /// Every limiter this window has had, the one in use last. A limiter is replaced
    /// only when a new limit is above its capacity, which at least doubles each time, so
    /// there are at most 25 of them and the old ones together take less memory than the
    /// one in use. Kept to the end: a request may still be reading an old one. `Arc`s,
    /// not boxes: `current` points into them, and moving an `Arc` (into this Vec, or as
    /// the Vec grows) never touches or retags the limiter itself. The lock also
    /// serialises reshapes; requests never take it.
    limiters: Mutex<Vec<StdArc<SlidingWindow<C>>>>,
}

impl<C: Clock> GlobalWindow<C> {
    pub(super) fn new(limiter: SlidingWindow<C>) -> Self {
        let limiter = StdArc::new(limiter);
        GlobalWindow {
            // A shared pointer made without a `&mut`: `current()` only ever reads
            // through it.
            current: AtomicPtr::new(StdArc::as_ptr(&limiter).cast_mut()),
            limiters: Mutex::new(vec![limiter]),
        }
    }

    /// The limiter in use.
    #[inline]
    pub(super) fn current(&self) -> &SlidingWindow<C> {
        // Acquire: pairs with the Release store in `reshape`, so the limiter behind the
        // pointer is seen fully built.
        let limiter = self.current.load(Ordering::Acquire);
        // The pointer is always `Arc::as_ptr` of a limiter in `limiters`, which only
        // grows and is dropped with `self`; an `Arc`'s value never moves, and the pointer
        // was never derived from a `&mut`. Sharing it between threads is sound because
        // `GlobalWindow: Sync` needs `SlidingWindow<C>: Send + Sync` (its `limiters`).
        // SAFETY: the pointee outlives `&self` and is only ever used through `&`.
        unsafe { &*limiter }
    }

    /// The limiter that replaced `sealed` (see `reshape`): spins until the reshaping
    /// thread publishes it. Cold: only requests racing a growth past the limiter's
    /// capacity come here.
    #[cold]
    #[inline(never)]
    fn successor_of(&self, sealed: &SlidingWindow<C>) -> &SlidingWindow<C> {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            let limiter = self.current();
            if !std::ptr::eq(limiter, sealed) {
                return limiter;
            }
            backoff.snooze();
        }
    }

    /// One admission at `now_ns` (a reading of the limiter's clock), starting from
    /// `limiter` (a [`current`](Self::current) reading) and following it across a growth.
    #[inline]
    pub(super) fn acquire<'a>(
        &'a self,
        mut limiter: &'a SlidingWindow<C>,
        now_ns: u64,
    ) -> Result<(), RateLimited> {
        loop {
            match limiter.try_acquire_from_reading(now_ns) {
                Err(limited) if limiter.refusal_means_sealed(limited) => {
                    limiter = self.successor_of(limiter);
                }
                outcome => return outcome,
            }
        }
    }

    /// Whether a request at `now_ns` would be admitted, without admitting it; as
    /// [`acquire`](Self::acquire), across a growth.
    #[inline]
    pub(super) fn peek<'a>(
        &'a self,
        mut limiter: &'a SlidingWindow<C>,
        now_ns: u64,
    ) -> Result<(), RateLimited> {
        loop {
            match limiter.would_admit_at(now_ns) {
                Err(limited) if limiter.refusal_means_sealed(limited) => {
                    limiter = self.successor_of(limiter);
                }
                outcome => return outcome,
            }
        }
    }

    /// Gives the window `quota`: in place while its limit fits the limiter's capacity,
    /// else by seal, copy, publish.
    ///
    /// # Errors
    ///
    /// None that a caller sees: a limit above the capacity takes a larger limiter. The
    /// type is [`SlidingWindow::reconfigure`]'s.
    pub(super) fn reshape(&self, quota: Quota) -> Result<(), ConfigError>
    where
        C: Clone,
    {
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        let current = limiters.last().expect("made with one limiter");
        if quota.limit() <= current.capacity() {
            return current.reconfigure(quota);
        }
        // Seal, copy, publish: after the seal no admission lands in the old limiter, so
        // its history is final and the new one starts from all of it; requests that find
        // it sealed wait for the new one and decide there (`successor_of`). The quota was
        // checked when made, so nothing fails after the seal.
        let larger = StdArc::new(current.sealed_successor(quota));
        // Release: a request that loads the pointer sees the limiter fully built.
        self.current
            .store(StdArc::as_ptr(&larger).cast_mut(), Ordering::Release);
        limiters.push(larger);
        Ok(())
    }

    #[cfg(all(test, not(loom)))]
    fn capacities(&self) -> Vec<u32> {
        let limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        limiters.iter().map(|limiter| limiter.capacity()).collect()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn per_minute(limit: u32) -> Quota {
        Quota::new(limit, std::time::Duration::from_secs(60)).unwrap()
    }

    fn window(limit: u32) -> GlobalWindow<ManualClock> {
        GlobalWindow::new(SlidingWindow::with_clock(
            per_minute(limit),
            ManualClock::new(),
        ))
    }

    /// Run under Miri (`cargo +nightly miri test -p backstop-core --lib
    /// --no-default-features miri_`), this reads the limiter through the published
    /// pointer after growths that push new limiters into the Vec (moving the old ones as
    /// it reallocates): a pointer taken from `&mut *box` would break Stacked Borrows
    /// there; one from `Arc::as_ptr` does not.
    #[test]
    fn miri_the_limiter_pointer_stays_valid_across_growths() {
        let global = window(1);
        let mut admitted = 0;
        for limit in [2, 3, 5, 9] {
            global.reshape(per_minute(limit)).unwrap();
            while global.acquire(global.current(), 0).is_ok() {
                admitted += 1;
            }
        }
        // Every growth kept every admission: 9 in the window under the last limit.
        assert_eq!(admitted, 9);
        assert_eq!(global.current().limit(), 9);
    }

    #[test]
    fn limiters_are_replaced_only_when_the_capacity_must_double() {
        let global = window(1);
        for limit in (1..=1000).chain((1..=1000).rev()).chain(1..=1000) {
            global.reshape(per_minute(limit)).unwrap();
        }
        let capacities = global.capacities();
        assert_eq!(capacities, (0..=10).map(|i| 1 << i).collect::<Vec<u32>>());
        let old: u32 = capacities[..10].iter().sum();
        assert!(
            old < capacities[10],
            "old limiters take less than the one in use"
        );
        assert_eq!(global.current().limit(), 1000);
    }

    #[test]
    fn a_request_holding_a_sealed_limiter_decides_on_its_successor() {
        let global = window(1);
        let before = global.current();
        assert!(global.acquire(before, 0).is_ok());
        global.reshape(per_minute(2)).unwrap();
        // `before` is sealed now: the admission lands in the new limiter, which still
        // counts the first one.
        assert!(global.peek(before, 0).is_ok());
        assert!(global.acquire(before, 0).is_ok());
        assert!(global.acquire(before, 0).is_err());
        assert_eq!(global.current().available_at(0), 0);
    }
}
