//! The lock-free ring of admission times behind [`SlidingWindow`](super::SlidingWindow).
//!
//! # The algorithm
//!
//! Admissions are numbered in the order they are granted. Admission `k` may happen at time
//! `t` iff admission `k − limit` happened at or before `t − window`; that is the
//! sliding-window rule (at most `limit` admissions in any window `(t − W, t]`), provided
//! admission times are monotone in `k`.
//!
//! The ring has `P` slots, at least `limit` and a power of two so that a slot index is a
//! mask, not a 64-bit division (two divisions cost about as much as the rest of an
//! admission). Slot `s` holds the pair `(a, t)` for the latest admission `a` with
//! `a mod P == s`: its number and its recorded time. Numbering starts at `P`; slots
//! start with "virtual" admissions `0..P` at time 0, which left every window long ago.
//!
//! To admit at `now`, a thread finds the next number `k` (from `head`, a hint that may
//! lag, scanning past claimed slots), checks the slot of admission `k − limit`
//! (`t + window <= now`), and swaps slot `k mod P` from `(k − P, …)` to `(k, t_k)` in
//! **one** 128-bit compare-and-swap. That CAS is the admission:
//! claiming the number and publishing its time are a single step, so no thread can be
//! preempted between them and let a later thread see a stale slot. The claimer then
//! moves the `head` hint on; a thread that finds it lagging just scans forward, so a
//! preempted claimer blocks nobody (lock-free).
//!
//! The traps and how each is closed:
//! - *claim then publish*: one CAS does both (above).
//! - *ABA on recycled slots*: slots carry full 64-bit admission numbers; at 10⁹
//!   admissions per second they wrap after 584 years.
//! - *torn reads*: pairs are read and written as one 128-bit atomic.
//! - *timestamps not monotone across threads*: a thread that read the clock before
//!   another thread's admission records `t_k = max(now, t_{k−1})`, so recorded times
//!   are monotone in `k`, and the rule above stays exact; the check itself uses the
//!   caller's `now`, so a stale or backwards clock can only refuse, never release.
//! - *counter wrap-around*: admission numbers use wrapping arithmetic; times saturate.
//!
//! Slots hold times, not expiries, and the ring remembers `P` admissions whatever the
//! limit, so [`reshape`](AdmissionRing::reshape) can change the limit (up to `P`) and the
//! window in place: every decision after it judges the whole remembered history by the
//! new shape. The shape `(limit, window)` is **one** atomic value (a 128-bit pair, read
//! with one load per decision): two atomics read apart could pair the old limit with the
//! new window, a shape looser than either.
//!
//! # What a ring forgets, and what it assumes
//!
//! A ring remembers its last `P` admissions. The ones it has overwritten (*forgotten*)
//! are never needed by its own rule (the check looks back `limit <= P`), but a larger
//! ring built from it ([`remembered`](AdmissionRing::remembered),
//! [`with_memory`](AdmissionRing::with_memory)) looks back further. So a ring built from
//! another keeps its *virtual* slots (the numbers below its first real admission) at a
//! *horizon*: a time at or after every admission its source forgot. A virtual slot at
//! time 0 is free at once (nothing was forgotten); one at a horizon `h` counts as an
//! admission at `h`. Forgotten admissions really happened at or before `h`, so judging
//! them at `h` never admits more than the exact rule would; it refuses more only while a
//! window of the new shape reaches back past `h` (see
//! [`SlidingWindow`](super::SlidingWindow#exact-under-change)). The horizon is tight:
//! an admission `j` is forgotten when admission `j + P` is claimed, whose check found
//! admission `j + P − limit` (so `j` too) at least one window before it; hence every
//! forgotten admission is at or before `last − narrowest window the ring ever had`, and
//! at or before the oldest one remembered.

use crossbeam_utils::{Backoff, CachePadded};

use super::memory::Memory;
use crate::sync::{AtomicPair, AtomicU64, Ordering};

/// Set in a slot's time by [`AdmissionRing::seal`]: no admission will ever claim that
/// slot. Rings that may be sealed are only given times below 2⁶², so that their real
/// times stay below this bit and a sealed one is free only after 2⁶³.
pub(crate) const SEAL_BIT: u64 = 1 << 63;

const _: () = assert!(super::MAX_WINDOW.as_nanos() < (1u128 << 62));

/// What [`AdmissionRing::seal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sealing {
    /// This call sealed the ring.
    Sealed,
    /// Someone sealed it before.
    AlreadySealed,
    /// The window still holds admissions; it is empty from `empty_from_ns` on, unless
    /// more are admitted.
    Live { empty_from_ns: u64 },
}

enum Tail {
    Settled {
        k: u64,
        current: (u64, u64),
        empty_from_ns: u64,
    },
    Moving,
    Sealed,
}

pub(crate) struct AdmissionRing {
    /// A hint of the next admission number: never ahead of it, briefly behind it while
    /// a claimer has not yet moved it. Written by every admitting thread; padded so it
    /// does not share a line with the slots or the read-only fields.
    head: CachePadded<AtomicU64>,
    slots: Box<[AtomicPair]>,
    /// `slots.len() - 1`; `slots.len()` is a power of two.
    mask: u64,
    /// `(lookback, window_ns)`, one value: the limit (admission `k` is checked against
    /// admission `k - lookback`; at most `slots.len()`) and the window's length. Read
    /// with one load per call, so a call racing `reshape` uses the old shape or the new
    /// one, never half of each.
    shape: AtomicPair,
    /// The narrowest window this ring has had (see "What a ring forgets" above). Only
    /// `reshape` and `remembered` touch it.
    narrowest_window_ns: AtomicU64,
    /// The time of the virtual admissions the ring was built with (see above).
    virtual_ns: u64,
}

/// What one call reads of a ring's shape (see [`AdmissionRing::reshape`]).
#[derive(Clone, Copy)]
struct Shape {
    lookback: u64,
    window_ns: u64,
}

/// When admission `a`, recorded at `t`, leaves a window of `window_ns`: never for a time
/// past the end of `u64` nanoseconds (`u64::MAX`), at once for a virtual admission (a
/// number below the slot count `capacity`, time 0).
#[inline(always)]
fn expiry(a: u64, t: u64, capacity: u64, window_ns: u64) -> u64 {
    if t == 0 && a < capacity {
        0
    } else {
        t.saturating_add(window_ns)
    }
}

impl AdmissionRing {
    /// A ring for `limit` (validated `>= 1` by the caller) that remembers `history`, the
    /// recorded times of the most recent admissions, oldest first, and nothing before
    /// them. An empty history gives a fresh ring.
    #[cfg(test)]
    pub(crate) fn with_history(limit: u32, window_ns: u64, history: &[u64]) -> Self {
        Self::with_memory(limit, window_ns, &Memory::of(history))
    }

    /// A ring for `limit` (validated `>= 1` by the caller) with room for `limit` rounded
    /// up to a power of two, that remembers the newest of `memory`'s admissions it has
    /// room for and judges all others at the horizon (see the module docs).
    pub(crate) fn with_memory(limit: u32, window_ns: u64, memory: &Memory) -> Self {
        Self::with_memory_and_capacity(limit, window_ns, u64::from(limit), memory)
    }

    /// As [`with_memory`](Self::with_memory), with room for at least `min_capacity`
    /// (rounded up to a power of two) admissions.
    pub(crate) fn with_memory_and_capacity(
        limit: u32,
        window_ns: u64,
        min_capacity: u64,
        memory: &Memory,
    ) -> Self {
        debug_assert!(limit >= 1);
        let capacity = min_capacity.max(u64::from(limit)).next_power_of_two();
        let history = &memory.times_ns;
        let split = history.len().saturating_sub(capacity as usize);
        let (dropped, kept) = history.split_at(split);
        // Admissions left out join the forgotten ones: the horizon moves up to them.
        let horizon_ns = match (memory.horizon_ns, dropped.last()) {
            (h, Some(&t)) => Some(h.unwrap_or(0).max(t)),
            (h, None) => h,
        };
        // A virtual slot at 0 means "nothing forgotten"; an admission forgotten at 0 is
        // judged at 1 ns instead (later, so never admitting more).
        let virtual_ns = horizon_ns.map_or(0, |h| h.max(1));
        // Replay the kept history as admissions P, P+1, …: slot j < kept.len() holds
        // real admission P + j, the other slots their virtual admission j.
        let mut recorded_ns = virtual_ns;
        let slots = (0..capacity)
            .map(|j| match kept.get(j as usize) {
                Some(&t) => {
                    recorded_ns = recorded_ns.max(t);
                    AtomicPair::new(capacity + j, recorded_ns)
                }
                None => AtomicPair::new(j, virtual_ns),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        AdmissionRing {
            head: CachePadded::new(AtomicU64::new(capacity + kept.len() as u64)),
            slots,
            mask: capacity - 1,
            shape: AtomicPair::new(u64::from(limit), window_ns),
            narrowest_window_ns: AtomicU64::new(window_ns),
            virtual_ns,
        }
    }

    /// How many admissions the ring remembers: the largest limit it can take.
    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The limit and window now, read as one value.
    #[inline(always)]
    fn shape(&self) -> Shape {
        // Relaxed: one value, so never torn; the ring's slots carry the synchronisation,
        // and a call racing `reshape` is allowed the old shape or the new one.
        let (lookback, window_ns) = self.shape.load(Ordering::Relaxed);
        Shape {
            lookback,
            window_ns,
        }
    }

    /// The limit and the window in nanoseconds now.
    pub(crate) fn limit_and_window_ns(&self) -> (u64, u64) {
        let shape = self.shape();
        (shape.lookback, shape.window_ns)
    }

    /// Changes the limit and the window in place, as one value: every call that starts
    /// after this returns judges all remembered admissions by them. A call racing it uses
    /// the old shape or the new one, never the limit of one and the window of the other.
    /// Not for rings that may be sealed.
    ///
    /// # Errors
    ///
    /// The ring's capacity, when `limit` (validated `>= 1`) is above it.
    pub(crate) fn reshape(&self, limit: u32, window_ns: u64) -> Result<(), u64> {
        if u64::from(limit) > self.capacity() {
            return Err(self.capacity());
        }
        // Before the shape, so that no admission is ever judged by a window narrower than
        // this records. Relaxed: read only by `remembered`, whose callers order it.
        self.narrowest_window_ns
            .fetch_min(window_ns, Ordering::Relaxed);
        // Relaxed: see `shape`.
        self.shape
            .store((u64::from(limit), window_ns), Ordering::Relaxed);
        Ok(())
    }

    #[inline(always)]
    fn slot(&self, k: u64) -> &AtomicPair {
        let index = (k & self.mask) as usize;
        debug_assert!(index < self.slots.len());
        // Bounds-checked all the same: the mask keeps it in range, so the check is
        // free to predict and no unsafe is needed.
        &self.slots[index]
    }

    /// The number of the next admission, at the moment of the last load: `head`, or the
    /// first number past it whose slot is not yet claimed.
    #[inline]
    fn next_admission(&self) -> u64 {
        // Acquire: pairs with the Release store of head, so every claim below it is
        // visible and the scan starts from a consistent place.
        let mut k = self.head.load(Ordering::Acquire);
        loop {
            // Acquire: pairs with the AcqRel slot CAS of the claim we read.
            let (a, _) = self.slot(k).load(Ordering::Acquire);
            if a == k {
                k = k.wrapping_add(1); // claimed; head lags
            } else if a.wrapping_sub(k) < u64::MAX / 2 {
                k = a.wrapping_add(1); // claimed laps ahead: head lags by more than P
            } else {
                return k;
            }
        }
    }

    /// Admits at `now_ns`, or says in how many nanoseconds a retry would be admitted if
    /// nothing else is admitted meanwhile.
    #[inline]
    pub(crate) fn try_acquire_at(&self, now_ns: u64) -> Result<(), u64> {
        self.try_acquire_fresh(now_ns, || None)
    }

    /// As [`try_acquire_at`](Self::try_acquire_at), but when `now_ns` turns out to be
    /// older than the latest admission (the caller was preempted between reading its
    /// clock and deciding, so admissions made meanwhile would refuse it), asks `reread`
    /// once for a fresh reading and decides on that instead. A reading that is merely
    /// old is then not refused for admissions that happened after it; a clock that really
    /// went backwards reads the same again and is refused as before.
    #[inline]
    pub(crate) fn try_acquire_fresh(
        &self,
        mut now_ns: u64,
        reread: impl FnOnce() -> Option<u64>,
    ) -> Result<(), u64> {
        let capacity = self.mask + 1;
        let Shape {
            lookback,
            window_ns,
        } = self.shape();
        let mut reread = Some(reread);
        let backoff = Backoff::new();
        // Acquire: pairs with the Release store of head; see `next_admission`.
        let mut k = self.head.load(Ordering::Acquire);
        loop {
            let slot = self.slot(k);
            // Acquire: pairs with the AcqRel slot CAS, so a claimed pair's time is whole
            // and every claim before it is visible.
            let current = slot.load(Ordering::Acquire);
            let (a, _) = current;
            if a != k.wrapping_sub(capacity) {
                // Claimed already (head lags): move past it. Several laps ahead: jump.
                // Behind (impossible while claims stay contiguous): re-read the slot.
                debug_assert!(a.wrapping_sub(k) < u64::MAX / 2, "slot behind head");
                k = if a == k {
                    k.wrapping_add(1)
                } else {
                    a.wrapping_add(1)
                };
                continue;
            }
            if lookback != capacity && current.1 >= SEAL_BIT {
                // Sealed (see `seal`; the only addition for it here), or admission k − P
                // recorded 2^63 ns (292 years) after the clock's epoch or later: such
                // times count as the end of time. (With `lookback == capacity` the check
                // below is against this very slot and refuses a sealed one anyway.)
                return Err(match u64::MAX - now_ns {
                    0 => u64::MAX,
                    wait_ns => wait_ns,
                });
            }
            // Admission k is next. Its window check is against admission k − limit.
            let (c, c_ns) = if lookback == capacity {
                current
            } else {
                self.slot(k.wrapping_sub(lookback)).load(Ordering::Acquire)
            };
            if c != k.wrapping_sub(lookback) {
                continue; // overwritten: k was claimed meanwhile; re-read.
            }
            let free_at = expiry(c, c_ns, capacity, window_ns);
            if free_at > now_ns {
                // Refused, unless the reading is staler than the latest admission.
                let (p, latest_ns) = self.slot(k.wrapping_sub(1)).load(Ordering::Acquire);
                if p == k.wrapping_sub(1) && latest_ns > now_ns {
                    if let Some(fresh_ns) = reread.take().and_then(|reread| reread()) {
                        now_ns = fresh_ns;
                        continue;
                    }
                }
                return Err(free_at - now_ns);
            }
            if free_at == u64::MAX {
                // An expiry that saturated: `time + window` went past the end of u64
                // nanoseconds (≈ 484 years after the clock's epoch). Never free again.
                return Err(u64::MAX);
            }
            let (p, previous_ns) = self.slot(k.wrapping_sub(1)).load(Ordering::Acquire);
            if p != k.wrapping_sub(1) {
                continue; // not yet visible, or overwritten: re-read.
            }
            // Monotone recorded times (a virtual previous admission is at time 0).
            let claim = (k, now_ns.max(previous_ns));
            // AcqRel on success: publishes the claim to whoever acquires this slot next.
            // Relaxed on failure: we only loop and re-read with Acquire.
            if slot
                .compare_exchange(current, claim, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.publish_head(k.wrapping_add(1));
                return Ok(());
            }
            // Lost the race for k: let the winner finish with the line before we pull it
            // back (re-reading at once only bounces the cache line between the two).
            backoff.spin();
        }
    }

    /// How long until an admission at `now_ns` would pass, were nothing else admitted:
    /// 0 if it would pass now. Admits nothing; true at the moment of its last load.
    pub(crate) fn wait_at(&self, now_ns: u64) -> u64 {
        let capacity = self.mask + 1;
        let Shape {
            lookback,
            window_ns,
        } = self.shape();
        loop {
            let k = self.next_admission();
            // Acquire: pairs with the AcqRel slot CASes, as in `try_acquire_fresh`.
            let current = self.slot(k).load(Ordering::Acquire);
            if current.0 != k.wrapping_sub(capacity) {
                continue; // a claim landed meanwhile
            }
            if current.1 >= SEAL_BIT {
                // Sealed (or the end of time): as `try_acquire_fresh` refuses it.
                return match u64::MAX - now_ns {
                    0 => u64::MAX,
                    wait_ns => wait_ns,
                };
            }
            let (c, c_ns) = self.slot(k.wrapping_sub(lookback)).load(Ordering::Acquire);
            if c != k.wrapping_sub(lookback) {
                continue;
            }
            let free_at = expiry(c, c_ns, capacity, window_ns);
            return match free_at {
                u64::MAX => u64::MAX,
                free_at => free_at.saturating_sub(now_ns),
            };
        }
    }

    /// Moves the head hint up to `next` unless it is already there.
    #[inline(always)]
    fn publish_head(&self, next: u64) {
        // A load and a plain store instead of a CAS: the hint may only lag (another
        // claimer can store a smaller value between our load and store), and a lagging
        // hint costs readers a short forward scan, never a wrong decision. Relaxed load:
        // only an optimisation; Release store: pairs with the Acquire loads of head so a
        // reader that starts from `next` sees our claim.
        if self.head.load(Ordering::Relaxed).wrapping_sub(next) > u64::MAX / 2 {
            self.head.store(next, Ordering::Release);
        }
    }

    /// How many admissions `now_ns` would allow, were nothing else admitted.
    ///
    /// Exact when no other thread is admitting; under concurrency, a count that was true
    /// at some moment during the call, or off by the admissions that raced it.
    pub(crate) fn available_at(&self, now_ns: u64) -> u32 {
        // Admissions k − limit .. k − 1 are the last `limit` (virtual ones free at 0).
        // Their expiries are non-decreasing, so the free ones are a prefix: binary
        // search for its length.
        let capacity = self.mask + 1;
        let Shape {
            lookback,
            window_ns,
        } = self.shape();
        let k = self.next_admission();
        let free_at = |i: u64| {
            let (a, t) = self
                .slot(k.wrapping_sub(lookback).wrapping_add(i))
                .load(Ordering::Acquire);
            expiry(a, t, capacity, window_ns)
        };
        let (mut lo, mut hi) = (0u64, lookback);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if free_at(mid) <= now_ns {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo as u32
    }

    /// The recorded times of the last `limit` admissions, oldest first (fewer if fewer
    /// happened). A snapshot for resizing; exact when nothing admits concurrently.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn history(&self) -> Vec<u64> {
        self.recent(self.shape().lookback)
    }

    /// Everything this ring knows of its admissions, to build another ring from
    /// ([`with_memory`](Self::with_memory)): the times it remembers and a horizon for
    /// the ones it forgot (see the module docs). Final for a sealed ring; for a live one,
    /// a snapshot that misses admissions racing it.
    pub(crate) fn remembered(&self) -> Memory {
        let capacity = self.mask + 1;
        let k = self.next_admission();
        let times_ns = self.recent(capacity);
        let oldest = k.wrapping_sub(capacity);
        // Acquire: pairs with the AcqRel slot CASes, as in `recent`.
        let (a, t) = self.slot(oldest).load(Ordering::Acquire);
        // A seal keeps the time under the seal bit (see `seal`).
        let oldest_ns = t & !SEAL_BIT;
        let horizon_ns = if a <= capacity {
            // Virtual, or the first real admission: only virtual ones came before, which
            // stand for what this ring's source forgot (0: nothing).
            (self.virtual_ns != 0).then_some(self.virtual_ns)
        } else {
            // Real: older admissions were overwritten, each at least the narrowest
            // window before the last admission (module docs).
            // Relaxed: `reshape` lowers it before publishing a shape, and the slots'
            // Acquire loads above order us after every admission that used one.
            let narrowest_ns = self.narrowest_window_ns.load(Ordering::Relaxed);
            let last_ns = times_ns.last().copied().unwrap_or(oldest_ns);
            Some(oldest_ns.min(last_ns.saturating_sub(narrowest_ns)))
        };
        Memory {
            horizon_ns,
            times_ns,
        }
    }

    /// The recorded times of the last `count` (at most the capacity) admissions, oldest
    /// first, as [`history`](Self::history).
    pub(crate) fn recent(&self, count: u64) -> Vec<u64> {
        let capacity = self.mask + 1;
        let count = count.min(capacity);
        let k = self.next_admission();
        (0..count)
            .filter_map(|i| {
                let number = k.wrapping_sub(count).wrapping_add(i);
                let (a, t) = self.slot(number).load(Ordering::Acquire);
                // Virtual admissions (numbers below P) never happened.
                // A sealed slot keeps its time under the seal bit (see `seal`).
                (a == number && a >= capacity).then_some(t & !SEAL_BIT)
            })
            .collect()
    }

    /// The time from which the window holds no admissions: when the last admission
    /// leaves it (0 when there was none), or `u64::MAX` ("never") for a sealed ring.
    /// Under concurrent admissions, a time that was true at some moment during the call;
    /// later admissions only move it later.
    pub(crate) fn empty_from_ns(&self) -> u64 {
        loop {
            match self.tail() {
                Tail::Settled { empty_from_ns, .. } => return empty_from_ns,
                Tail::Moving => continue, // a claim landed meanwhile: read again.
                Tail::Sealed => return u64::MAX,
            }
        }
    }

    /// Whether [`seal`](Self::seal) has closed this ring. Once true it stays true: no
    /// admission can claim the sealed slot, so the next admission number never moves.
    pub(crate) fn is_sealed(&self) -> bool {
        loop {
            match self.tail() {
                Tail::Settled { .. } => return false,
                Tail::Moving => continue,
                Tail::Sealed => return true,
            }
        }
    }

    /// Closes the ring for good, if its window is empty at `empty_at_ns` (or whatever it
    /// holds, for `None`): afterwards every [`try_acquire_at`](Self::try_acquire_at) is
    /// refused with a wait of at least 2⁶², and [`history`](Self::history) is final.
    ///
    /// Sealing is one CAS on the slot that the next admission `k` would claim, from the
    /// very value that admission's claim CAS expects; so exactly one of the two wins, and
    /// an admission either happened before the seal (then the emptiness check saw it, or
    /// the CAS fails) or never happens. The sealed value keeps the slot's number, so
    /// admitters still take `k` for the next admission, and sets [`SEAL_BIT`] in its
    /// time, which keeps the time for [`remembered`](Self::remembered) (callers keep
    /// times below 2⁶², so real times stay below 2⁶³):
    /// - when `limit` is the slot count, that time is the one admission `k` is checked
    ///   against, now in the far future;
    /// - otherwise `try_acquire_at` refuses a time with the seal bit on sight (its one
    ///   addition for sealing), whatever limit it read: a call that read a shape older
    ///   than the one in force at the seal still finds the ring closed.
    pub(crate) fn seal(&self, empty_at_ns: Option<u64>) -> Sealing {
        loop {
            let (k, current, empty_from_ns) = match self.tail() {
                Tail::Settled {
                    k,
                    current,
                    empty_from_ns,
                } => (k, current, empty_from_ns),
                Tail::Moving => continue,
                Tail::Sealed => return Sealing::AlreadySealed,
            };
            if let Some(now_ns) = empty_at_ns {
                if empty_from_ns > now_ns {
                    return Sealing::Live { empty_from_ns };
                }
            }
            let sealed_ns = current.1 | SEAL_BIT;
            // AcqRel on success: the seal is ordered after every admission it saw, and
            // published to admitters that acquire this slot. Relaxed on failure: we loop
            // and re-read with Acquire.
            if self
                .slot(k)
                .compare_exchange(
                    current,
                    (current.0, sealed_ns),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Sealing::Sealed;
            }
        }
    }

    /// The next admission's number and slot value, and the last admission's free time,
    /// read consistently; `Moving` when a claim landed between the reads.
    fn tail(&self) -> Tail {
        let capacity = self.mask + 1;
        let k = self.next_admission();
        // Acquire: pairs with the AcqRel slot CASes (claims and seals).
        let current = self.slot(k).load(Ordering::Acquire);
        if current.0 != k.wrapping_sub(capacity) {
            return Tail::Moving;
        }
        if current.1 & SEAL_BIT != 0 {
            return Tail::Sealed;
        }
        // Acquire: as above. Admission k − 1 is real or virtual (free at 0).
        let (p, last_ns) = self.slot(k.wrapping_sub(1)).load(Ordering::Acquire);
        if p != k.wrapping_sub(1) {
            return Tail::Moving;
        }
        Tail::Settled {
            k,
            current,
            empty_from_ns: expiry(p, last_ns & !SEAL_BIT, capacity, self.shape().window_ns),
        }
    }

    /// Whether the 128-bit operations are real atomics on this platform.
    pub(crate) fn is_lock_free() -> bool {
        AtomicPair::is_lock_free()
    }

    /// Bytes of memory one ring for `limit` takes: its slots (`limit` rounded up to a
    /// power of two) and the struct with its padded head.
    /// Saturates at `usize::MAX` where the ring could not exist (`u32::MAX` on a 32-bit
    /// target).
    pub(crate) fn bytes_for(limit: u32) -> usize {
        let capacity = match limit {
            0 => Some(0),
            // In u64: u32::MAX rounds up to 2^32, past u32.
            _ => usize::try_from(u64::from(limit).next_power_of_two()).ok(),
        };
        capacity
            .and_then(|c| c.checked_mul(std::mem::size_of::<AtomicPair>()))
            .and_then(|slots| slots.checked_add(std::mem::size_of::<Self>()))
            .unwrap_or(usize::MAX)
    }
}

#[cfg(all(test, not(loom)))]
impl AdmissionRing {
    /// Moves head back by one, as if the last claimer were preempted between its slot CAS
    /// and moving head.
    fn rewind_head_for_test(&self) {
        self.head.fetch_sub(1, Ordering::SeqCst);
    }

    /// A ring whose next admission number is `first` (at least the capacity): as if
    /// admissions up to `first - 1` had happened at time 0. Lets tests cross numbering
    /// boundaries without 2³² calls.
    fn starting_at_for_test(limit: u32, window_ns: u64, first: u64) -> Self {
        let mut ring = Self::with_history(limit, window_ns, &[]);
        assert!(first > ring.mask);
        for s in 0..=ring.mask {
            // The latest number below `first` that maps to slot s.
            let a = first - 1 - ((first - 1 - s) & ring.mask);
            ring.slots[s as usize] = AtomicPair::new(a, 0);
        }
        ring.head.store(first, Ordering::SeqCst);
        ring
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const W: u64 = 1_000;

    #[test]
    fn first_limit_admissions_at_time_zero_pass() {
        let ring = AdmissionRing::with_history(3, W, &[]);
        for _ in 0..3 {
            assert_eq!(ring.try_acquire_at(0), Ok(()));
        }
        assert_eq!(ring.try_acquire_at(0), Err(W));
    }

    #[test]
    fn window_edge_is_half_open() {
        let ring = AdmissionRing::with_history(1, W, &[]);
        assert_eq!(ring.try_acquire_at(10), Ok(()));
        assert_eq!(ring.try_acquire_at(10 + W - 1), Err(1));
        assert_eq!(ring.try_acquire_at(10 + W), Ok(()));
    }

    #[test]
    fn a_claim_whose_head_move_was_preempted_is_not_reused() {
        let ring = AdmissionRing::with_history(2, W, &[]);
        assert_eq!(ring.try_acquire_at(0), Ok(()));
        assert_eq!(ring.try_acquire_at(0), Ok(()));
        // The second claimer "stalls" before moving head: head still names its slot.
        ring.rewind_head_for_test();
        // A later thread must see the slot already claimed, help, and still refuse.
        assert_eq!(ring.try_acquire_at(W - 1), Err(1));
        assert_eq!(ring.try_acquire_at(W), Ok(()));
        assert_eq!(ring.try_acquire_at(W), Ok(()));
        assert_eq!(ring.try_acquire_at(W), Err(W));
    }

    #[test]
    fn numbers_cross_the_32_bit_boundary_without_aba() {
        // A 32-bit lap counter would alias slot states here; full-width numbers do not.
        for limit in [1u32, 3, 7] {
            let first = (1u64 << 32) - 5;
            let ring = AdmissionRing::starting_at_for_test(limit, W, first);
            assert_eq!(ring.try_acquire_at(W - 1), Err(1), "the last ones are at 0");
            let mut now = W;
            for _ in 0..40 {
                for _ in 0..limit {
                    assert_eq!(ring.try_acquire_at(now), Ok(()));
                }
                assert_eq!(ring.try_acquire_at(now), Err(W), "limit {limit}");
                now += W;
            }
            assert!(ring.next_admission() > 1 << 32);
        }
    }

    #[test]
    fn stale_readings_are_recorded_monotone() {
        // limit 2 per 10. A thread that read the clock at 100 admits first; one that
        // read it at 0 (and was then preempted) admits second: in real time both happened
        // at >= 100, so the second must be recorded at 100, not 0.
        let ring = AdmissionRing::with_history(2, 10, &[]);
        assert_eq!(ring.try_acquire_at(100), Ok(()));
        assert_eq!(ring.try_acquire_at(0), Ok(()));
        assert_eq!(ring.try_acquire_at(109), Err(1));
        assert_eq!(ring.try_acquire_at(110), Ok(()));
        // Another stale reader: were the second admission recorded at 0 (free at 10), it
        // would pass, and three admissions would fall within 10 ns of real time.
        assert_eq!(ring.try_acquire_at(50), Err(60));
        assert_eq!(ring.try_acquire_at(110), Ok(()));
        assert_eq!(ring.try_acquire_at(110), Err(10));
    }

    #[test]
    fn a_clock_going_backwards_never_releases_capacity() {
        let ring = AdmissionRing::with_history(2, W, &[]);
        assert_eq!(ring.try_acquire_at(500), Ok(()));
        assert_eq!(ring.try_acquire_at(500), Ok(()));
        assert_eq!(ring.try_acquire_at(0), Err(W + 500));
        assert_eq!(ring.try_acquire_at(1_499), Err(1));
        assert_eq!(ring.try_acquire_at(1_500), Ok(()));
        // Backwards again after an admission: still refused, no underflow.
        assert_eq!(ring.try_acquire_at(3), Err(1_497));
    }

    #[test]
    fn times_near_the_end_of_u64_saturate_without_panicking() {
        let ring = AdmissionRing::with_history(1, W, &[]);
        assert_eq!(ring.try_acquire_at(u64::MAX - 10), Ok(()));
        assert_eq!(ring.try_acquire_at(u64::MAX - 1), Err(1));
        // The expiry saturated at u64::MAX: the end of representable time never frees it.
        assert_eq!(ring.try_acquire_at(u64::MAX), Err(u64::MAX));
    }

    #[test]
    fn available_counts_free_slots() {
        let ring = AdmissionRing::with_history(4, W, &[]);
        assert_eq!(ring.available_at(0), 4);
        ring.try_acquire_at(0).unwrap();
        ring.try_acquire_at(10).unwrap();
        ring.try_acquire_at(20).unwrap();
        assert_eq!(ring.available_at(20), 1);
        assert_eq!(ring.available_at(W), 2);
        assert_eq!(ring.available_at(W + 20), 4);
    }

    #[test]
    fn history_round_trips_and_keeps_the_newest() {
        let ring = AdmissionRing::with_history(3, W, &[]);
        for t in [1, 2, 3] {
            assert_eq!(ring.try_acquire_at(t), Ok(()));
        }
        assert_eq!(ring.history(), vec![1, 2, 3]);
        let smaller = AdmissionRing::with_history(2, W, &ring.history());
        assert_eq!(smaller.history(), vec![2, 3]);
        assert_eq!(smaller.try_acquire_at(W + 1), Err(1));
        assert_eq!(smaller.try_acquire_at(W + 2), Ok(()));
    }

    #[test]
    fn bytes_are_sixteen_per_slot_plus_the_head() {
        assert_eq!(
            AdmissionRing::bytes_for(1000) - AdmissionRing::bytes_for(0),
            16 * 1024
        );
        assert_eq!(
            AdmissionRing::bytes_for(1024) - AdmissionRing::bytes_for(1),
            16 * 1023
        );
        assert!(
            AdmissionRing::is_lock_free(),
            "128-bit CAS expected on this CPU"
        );
    }
}

/// Loom models of the ring. Run with
/// `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p backstop-core --release --lib -- loom`.
/// Three threads and limits of 1–3 keep the state space small enough to explore fully
/// at a preemption bound of 2.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    use crate::sync::Arc;

    const W: u64 = 100;

    /// Runs one `try_acquire_at(now)` per entry of `nows`, each on its own thread, and
    /// returns the outcomes in thread order.
    fn race(ring: &Arc<AdmissionRing>, nows: &[u64]) -> Vec<Result<(), u64>> {
        let handles: Vec<_> = nows
            .iter()
            .map(|&now| {
                let ring = Arc::clone(ring);
                thread::spawn(move || ring.try_acquire_at(now))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn loom_three_threads_never_exceed_a_limit_of_two() {
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(2, W, &[]));
            let outcomes = race(&ring, &[0, 0, 0]);
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            assert_eq!(admitted, 2, "{outcomes:?}");
            for refused in outcomes.iter().filter_map(|o| o.err()) {
                assert_eq!(refused, W);
            }
        });
    }

    #[test]
    fn loom_none_refuses_while_a_slot_is_free() {
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(3, W, &[]));
            let outcomes = race(&ring, &[0, 5, 9]);
            assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
            // Full now; the oldest admission was whichever thread claimed first.
            let retry = ring.try_acquire_at(50).unwrap_err();
            assert!([W - 50, W + 5 - 50, W + 9 - 50].contains(&retry), "{retry}");
        });
    }

    #[test]
    fn loom_mixed_clock_readings_keep_the_window() {
        // limit 1: after one old admission at 0 (free again at W), three threads with
        // readings before and after W race. Exactly one with a reading >= W may pass,
        // and none with a reading < W.
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(1, W, &[0]));
            let nows = [W - 1, W, W + 1];
            let outcomes = race(&ring, &nows);
            assert!(outcomes[0].is_err());
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            assert_eq!(admitted, 1, "{outcomes:?}");
            // Whoever passed, the next admission waits a full window from its record.
            let (k, recorded_ns) = ring
                .slot(ring.head.load(Ordering::SeqCst))
                .load(Ordering::SeqCst);
            assert_eq!(k, 2);
            assert!(recorded_ns == W || recorded_ns == W + 1);
        });
    }

    /// A reshape is one atomic value: 2 per 100 ns with admissions at 0 and 60;
    /// `reshape(1, 50)` races an admission at 70. The old shape refuses (the one at 0 is
    /// in (−30, 70]), the new one refuses (the one at 60 is in (20, 70]); only the torn
    /// shape "limit 2, window 50" admits.
    #[test]
    fn loom_a_reshape_is_never_seen_half_done() {
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(2, W, &[0, 60]));
            let reshaper = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.reshape(1, 50))
            };
            let outcome = ring.try_acquire_at(70);
            assert_eq!(reshaper.join().unwrap(), Ok(()));
            let wait = outcome.expect_err("both shapes refuse at 70");
            assert!(
                wait == 30 || wait == 40,
                "old shape: 30, new: 40; got {wait}"
            );
        });
    }

    /// Loosening: 1 per 2W with an admission at 0, widened to 2 per W while two threads
    /// admit at W. Each is judged by one whole shape: under the old one both are refused,
    /// under the new one both pass. Whatever the interleaving, no window of the shape in
    /// force at the end holds more than its limit, and the next decision is exact.
    #[test]
    fn loom_loosening_racing_admissions_keeps_the_window() {
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(2, 2 * W, &[0]));
            ring.reshape(1, 2 * W).unwrap();
            let reshaper = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.reshape(2, W))
            };
            let outcomes = race(&ring, &[W, W]);
            assert_eq!(reshaper.join().unwrap(), Ok(()));
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            for refused in outcomes.iter().filter_map(|o| o.err()) {
                // Old shape (1 per 2W): the latest admission, at 0 or at W, leaves 2W
                // after it. The new shape (2 per W) refuses neither.
                assert!(refused == W || refused == 2 * W, "{outcomes:?}");
            }
            // (0, W] under 2 per W: the admissions at W, at most 2.
            assert!(admitted <= 2, "{outcomes:?}");
            // Every admission at W is remembered once (the ring holds the last two).
            let at_w = ring.recent(2).iter().filter(|&&t| t == W).count();
            assert_eq!(at_w, admitted, "{outcomes:?}");
            let expected = if admitted == 2 { Err(W) } else { Ok(()) };
            assert_eq!(ring.try_acquire_at(W), expected, "{outcomes:?}");
        });
    }

    /// Tightening: 2 per W tightened to 1 per W while two threads admit at 0 and at W/2.
    /// Each judged by one whole shape; afterwards the new shape holds exactly.
    #[test]
    fn loom_tightening_racing_admissions_keeps_the_window() {
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(2, W, &[]));
            let reshaper = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.reshape(1, W))
            };
            let outcomes = race(&ring, &[0, W / 2]);
            assert_eq!(reshaper.join().unwrap(), Ok(()));
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            // Under either shape the first one passes; the second passes only by the old.
            assert!(admitted >= 1, "{outcomes:?}");
            assert_eq!(ring.recent(2).len(), admitted);
            let latest = *ring.recent(2).last().unwrap();
            // 1 per W from now on: the latest admission bars (latest, latest + W).
            assert_eq!(ring.try_acquire_at(latest + W - 1), Err(1));
            assert_eq!(ring.try_acquire_at(latest + W), Ok(()));
        });
    }

    #[test]
    fn loom_reshape_racing_admissions_counts_every_one() {
        // limit 2 per W, narrowed to 1 per 2W while two threads admit at 0: each is
        // judged by the old shape or the new, so one or both pass; afterwards every one
        // that passed is remembered and judged by the new shape.
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(2, W, &[]));
            let reshaper = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.reshape(1, 2 * W))
            };
            let outcomes = race(&ring, &[0, 0]);
            assert_eq!(reshaper.join().unwrap(), Ok(()));
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            assert!(admitted >= 1, "{outcomes:?}");
            assert_eq!(ring.recent(2).len(), admitted);
            assert_eq!(ring.try_acquire_at(W), Err(W), "the new window holds them");
            assert_eq!(ring.try_acquire_at(2 * W), Ok(()));
        });
    }

    /// Growth past the capacity by seal, copy, publish (what
    /// `Admission::reconfigure` does) while two threads admit. A ring of 1 per W grows to
    /// 2 per W. An admitter that finds the old ring sealed waits for the new one and
    /// decides there. No admission is lost (every one is in the new ring's history) or
    /// doubled (the count there is exactly the number admitted), and the new limit holds.
    #[test]
    fn loom_growth_by_seal_loses_and_doubles_nothing() {
        use loom::sync::Mutex;

        // The grower holds `new` locked from before the seal until the new ring is in
        // (standing for `Admission`'s wait for the published pointer, which would spin).
        struct Swap {
            old: AdmissionRing,
            new: Mutex<Option<Arc<AdmissionRing>>>,
        }
        fn admit(swap: &Swap, now: u64) -> Result<(), u64> {
            match swap.old.try_acquire_at(now) {
                Err(wait) if wait >= SEALED_WAIT && swap.old.is_sealed() => {}
                outcome => return outcome,
            }
            let new = swap.new.lock().unwrap().clone().expect("published");
            new.try_acquire_at(now)
        }
        const SEALED_WAIT: u64 = 1 << 62;

        loom::model(|| {
            let swap = Arc::new(Swap {
                old: AdmissionRing::with_history(1, W, &[]),
                new: Mutex::new(None),
            });
            let grower = {
                let swap = Arc::clone(&swap);
                thread::spawn(move || {
                    let mut new = swap.new.lock().unwrap();
                    assert_eq!(swap.old.seal(None), Sealing::Sealed);
                    let ring = AdmissionRing::with_memory(2, W, &swap.old.remembered());
                    *new = Some(Arc::new(ring));
                })
            };
            let admitters: Vec<_> = [0, 0]
                .into_iter()
                .map(|now| {
                    let swap = Arc::clone(&swap);
                    thread::spawn(move || admit(&swap, now))
                })
                .collect();
            let outcomes: Vec<_> = admitters.into_iter().map(|h| h.join().unwrap()).collect();
            grower.join().unwrap();
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            assert!(
                admitted >= 1,
                "the first to decide always passes: {outcomes:?}"
            );
            let new = swap.new.lock().unwrap().clone().unwrap();
            assert_eq!(new.recent(2).len(), admitted, "{outcomes:?}");
            // 2 per W from now on, counting both rings' admissions once each.
            let expected = if admitted == 2 { Err(W) } else { Ok(()) };
            assert_eq!(new.try_acquire_at(0), expected, "{outcomes:?}");
        });
    }

    #[test]
    fn loom_preempted_claimer_is_helped() {
        // limit 1 with two admissions in a row at distant times: the second thread may run
        // while the first has claimed but not yet moved head, and must help, not spin.
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(1, W, &[]));
            let outcomes = race(&ring, &[0, 10 * W]);
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            // Either order: 0 then 10W (both pass), or 10W then 0 (0 refused).
            assert!(admitted >= 1, "{outcomes:?}");
            // Every admission is counted once in the numbering, whatever head says.
            let first = ring.mask + 1;
            assert_eq!(ring.next_admission(), first + admitted as u64);
            assert!(ring.head.load(Ordering::SeqCst) <= first + admitted as u64);
        });
    }
}

/// `seal`, `is_sealed` and `empty_from_ns`, which the keyed limiter's reclaim relies on.
#[cfg(all(test, not(loom)))]
mod seal_tests {
    use super::*;

    const W: u64 = 1_000;

    #[test]
    fn seal_only_an_empty_window_when_asked_to_check() {
        let ring = AdmissionRing::with_history(2, W, &[]);
        assert_eq!(ring.empty_from_ns(), 0, "never used: empty from the start");
        ring.try_acquire_at(10).unwrap();
        ring.try_acquire_at(20).unwrap();
        assert_eq!(ring.empty_from_ns(), 20 + W);
        assert_eq!(
            ring.seal(Some(20 + W - 1)),
            Sealing::Live {
                empty_from_ns: 20 + W
            }
        );
        assert!(!ring.is_sealed());
        assert_eq!(ring.seal(Some(20 + W)), Sealing::Sealed);
        assert!(ring.is_sealed());
        assert_eq!(ring.seal(Some(20 + W)), Sealing::AlreadySealed);
        assert_eq!(ring.empty_from_ns(), u64::MAX);
    }

    #[test]
    fn a_sealed_ring_refuses_forever_and_keeps_its_history() {
        let ring = AdmissionRing::with_history(3, W, &[]);
        for t in [1, 2, 3, 4] {
            let _ = ring.try_acquire_at(t * W);
        }
        assert_eq!(ring.seal(None), Sealing::Sealed);
        for now in [0, 5 * W, 1 << 61] {
            let wait = ring.try_acquire_at(now).unwrap_err();
            assert!(wait >= 1 << 62, "a sealed ring looks busy for ever: {wait}");
        }
        // The history is what it was: the last three admissions.
        assert_eq!(ring.history(), vec![2 * W, 3 * W, 4 * W]);
    }

    #[test]
    fn sealing_a_ring_whose_limit_is_its_slot_count_keeps_every_time() {
        // limit 2 = 2 slots: the sealed slot is the one the next admission is checked
        // against, and it still holds the oldest admission of the last two.
        let ring = AdmissionRing::with_history(2, W, &[]);
        for t in [1, 2, 3] {
            ring.try_acquire_at(t * W).unwrap();
        }
        assert_eq!(ring.seal(None), Sealing::Sealed);
        assert!(ring.is_sealed());
        for now in [0, 10 * W, 1 << 61] {
            assert!(ring.try_acquire_at(now).unwrap_err() >= 1 << 62);
        }
        assert_eq!(ring.history(), vec![2 * W, 3 * W]);
        // A ring rebuilt from it decides as the sealed one would have.
        let rebuilt = AdmissionRing::with_history(2, W, &ring.history());
        assert_eq!(rebuilt.try_acquire_at(3 * W - 1), Err(1));
        assert_eq!(rebuilt.try_acquire_at(3 * W), Ok(()));
        assert_eq!(rebuilt.try_acquire_at(3 * W), Err(W));
    }

    #[test]
    fn sealing_does_not_change_a_saturated_sliding_window() {
        // The one line added to try_acquire_at for sealing refuses what the existing
        // check refuses anyway, with the same wait: a saturated expiry.
        let ring = AdmissionRing::with_history(3, W, &[]);
        ring.try_acquire_at(u64::MAX - 1).unwrap();
        for _ in 0..3 {
            let _ = ring.try_acquire_at(u64::MAX - 1);
        }
        assert_eq!(ring.try_acquire_at(u64::MAX - 1), Err(1));
        assert_eq!(ring.try_acquire_at(u64::MAX), Err(u64::MAX));
    }

    #[test]
    fn seal_and_empty_from_help_a_preempted_claimer() {
        let ring = AdmissionRing::with_history(2, W, &[]);
        ring.try_acquire_at(0).unwrap();
        ring.try_acquire_at(5).unwrap();
        ring.rewind_head_for_test();
        // Head lags the second claim: the tail must count it, not read a stale one.
        assert_eq!(ring.empty_from_ns(), 5 + W);
        assert_eq!(
            ring.seal(Some(W)),
            Sealing::Live {
                empty_from_ns: 5 + W
            }
        );
        assert_eq!(ring.seal(Some(5 + W)), Sealing::Sealed);
    }
}
