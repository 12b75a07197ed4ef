//! The lock-free ring of admission times behind [`SlidingWindow`](super::SlidingWindow).
//!
//! # The algorithm
//!
//! Admissions are numbered 0, 1, 2, … in the order they are granted. Admission `k` may
//! happen at time `t` iff admission `k − limit` happened at or before `t − window`; that
//! is the sliding-window rule (at most `limit` admissions in any window `(t − W, t]`),
//! provided admission times are monotone in `k`.
//!
//! The ring has `limit` slots. Slot `k % limit` holds the pair `(k, free_at)`: the number
//! of the next admission that will use it, and the earliest time that admission may
//! happen (`time of admission k − limit + window`; 0 for the first lap). `head` is the
//! number of the next admission, or one behind it while a claimer has not yet moved it.
//!
//! To admit at time `now`, a thread reads `head = k`, reads slot `k % limit`, and if the
//! slot says `(k, free_at)` with `free_at <= now`, it swaps that pair for
//! `(k + limit, t_k + window)` in **one** 128-bit compare-and-swap. That CAS is the
//! admission: claiming the number and publishing its time are a single step, so no
//! thread can be preempted between them and let a later thread see a stale slot. Then
//! `head` moves from `k` to `k + 1`; any thread that finds the slot already claimed
//! (`k + limit`) helps move it, so a preempted claimer blocks nobody (lock-free).
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

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicPair, AtomicU64, Ordering};

/// Set in a slot's free time by [`AdmissionRing::seal`]: no admission will ever claim
/// that slot. Real free times stay below it (times below 2⁶², windows below 2⁶²).
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
        free_at: u64,
        empty_from_ns: u64,
    },
    Moving,
    Sealed,
}

pub(crate) struct AdmissionRing {
    /// Written by every admitting thread; padded so it does not share a line with the
    /// ring's first slots or the fields read on every call.
    head: CachePadded<AtomicU64>,
    slots: Box<[AtomicPair]>,
    window_ns: u64,
}

impl AdmissionRing {
    /// A ring with `limit` slots (validated `>= 1` by the caller) that remembers
    /// `history`, the recorded times of the most recent admissions, oldest first; only the
    /// last `limit` of them matter. An empty history gives a fresh ring.
    pub(crate) fn with_history(limit: u32, window_ns: u64, history: &[u64]) -> Self {
        debug_assert!(limit >= 1);
        let len = u64::from(limit);
        let kept = &history[history.len().saturating_sub(limit as usize)..];
        // Replay the kept history as admissions 0.. so the ring's invariants hold: slot k
        // of a used lap holds (k + len, recorded time + window), times non-decreasing.
        let mut recorded_ns = 0u64;
        let slots = (0..len)
            .map(|k| match kept.get(k as usize) {
                Some(&t) => {
                    recorded_ns = recorded_ns.max(t);
                    AtomicPair::new(k + len, recorded_ns.saturating_add(window_ns))
                }
                None => AtomicPair::new(k, 0),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        AdmissionRing {
            head: CachePadded::new(AtomicU64::new(kept.len() as u64)),
            slots,
            window_ns,
        }
    }

    #[inline(always)]
    fn slot(&self, k: u64) -> &AtomicPair {
        let len = self.slots.len() as u64;
        let index = (k % len) as usize;
        debug_assert!(index < self.slots.len());
        &self.slots[index]
    }

    /// Admits at `now_ns`, or says in how many nanoseconds a retry would be admitted if
    /// nothing else is admitted meanwhile.
    #[inline]
    pub(crate) fn try_acquire_at(&self, now_ns: u64) -> Result<(), u64> {
        let len = self.slots.len() as u64;
        loop {
            // Acquire: pairs with the AcqRel CASes on `head`, so every slot claim that
            // moved head to `k` is visible below.
            let k = self.head.load(Ordering::Acquire);
            let slot = self.slot(k);
            // Acquire: pairs with the AcqRel slot CAS, so a claimed pair's time is whole.
            let (next, free_at) = slot.load(Ordering::Acquire);
            if next != k {
                // Admission k is claimed but head still says k: help move it.
                debug_assert!(next.wrapping_sub(k) < u64::MAX / 2, "slot behind head");
                self.advance_head(k);
                continue;
            }
            if free_at > now_ns {
                return Err(free_at - now_ns);
            }
            let previous_ns = if k == 0 {
                0
            } else {
                // Acquire, as above: admission k − 1 was claimed before head reached k.
                let (prev_next, prev_free_at) = self.slot(k - 1).load(Ordering::Acquire);
                if prev_next != (k - 1).wrapping_add(len) {
                    continue; // head moved on under us: our view is stale.
                }
                prev_free_at.saturating_sub(self.window_ns)
            };
            let recorded_ns = now_ns.max(previous_ns);
            let claim = (
                k.wrapping_add(len),
                recorded_ns.saturating_add(self.window_ns),
            );
            // AcqRel on success: publishes the claim to whoever acquires head or this slot
            // next. Relaxed on failure: we only loop and re-read with Acquire.
            if slot
                .compare_exchange((k, free_at), claim, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.advance_head(k);
                return Ok(());
            }
        }
    }

    /// Moves head from `k` to `k + 1` unless someone already did.
    #[inline(always)]
    fn advance_head(&self, k: u64) {
        // AcqRel on success: releases the slot claim to threads that acquire head, and
        // continues the release sequence. Relaxed on failure: another thread moved it,
        // and we re-read head with Acquire before using it.
        let _ =
            self.head
                .compare_exchange(k, k.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// How many admissions `now_ns` would allow, were nothing else admitted.
    ///
    /// Exact when no other thread is admitting; under concurrency, a count that was true
    /// at some moment during the call, or off by the admissions that raced it.
    pub(crate) fn available_at(&self, now_ns: u64) -> u32 {
        // The ring, read from head's slot onwards, holds the free_at times of the last
        // `limit` admissions, oldest first (0 for slots never used): non-decreasing, so
        // the free slots are a prefix; binary search for its length.
        let len = self.slots.len() as u64;
        let k = self.head.load(Ordering::Acquire);
        let free_at = |i: u64| self.slot(k.wrapping_add(i)).load(Ordering::Acquire).1;
        let (mut lo, mut hi) = (0u64, len);
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
    pub(crate) fn history(&self) -> Vec<u64> {
        let len = self.slots.len() as u64;
        let k = self.head.load(Ordering::Acquire);
        (0..len)
            .filter_map(|i| {
                let (next, free_at) = self.slot(k.wrapping_add(i)).load(Ordering::Acquire);
                // Slots not yet used on any lap hold their first-lap number, below `len`.
                // A sealed slot keeps its free time under the seal bit.
                (next >= len).then(|| (free_at & !SEAL_BIT).saturating_sub(self.window_ns))
            })
            .collect()
    }

    /// The time from which the window holds no admissions: the free time of the last
    /// admission, or 0 when there was none; `u64::MAX` ("never") for a sealed ring.
    /// Under concurrent admissions, a time that was true at some moment during the call;
    /// later admissions only move it later.
    pub(crate) fn empty_from_ns(&self) -> u64 {
        loop {
            match self.settled_tail() {
                Tail::Settled { empty_from_ns, .. } => return empty_from_ns,
                // settled_tail helped the claim move head; read again.
                Tail::Moving => continue,
                Tail::Sealed => return u64::MAX,
            }
        }
    }

    /// Whether [`seal`](Self::seal) has closed this ring. Once true it stays true: no
    /// admission can claim the sealed slot, so head never moves again.
    pub(crate) fn is_sealed(&self) -> bool {
        let k = self.head.load(Ordering::Acquire);
        let (next, free_at) = self.slot(k).load(Ordering::Acquire);
        next == k && free_at & SEAL_BIT != 0
    }

    /// Closes the ring for good, if its window is empty at `empty_at_ns` (or whatever it
    /// holds, for `None`): afterwards every [`try_acquire_at`](Self::try_acquire_at) is
    /// refused with a wait above 2⁶², and [`history`](Self::history) is final.
    ///
    /// Sealing is one CAS on the slot that the next admission would claim, setting
    /// [`SEAL_BIT`] in its free time. It and that admission's claim CAS the same
    /// expected pair, so exactly one of them wins: an admission either happened before
    /// the seal (and the emptiness check saw it, or the CAS fails) or never happens. The
    /// seal bit makes the slot look busy forever to admitters, so [`try_acquire_at`] needs
    /// no change. Times the caller passes must stay below 2⁶² (callers clamp), so that a
    /// real free time (`time + window < 2⁶³`) never has the bit set.
    ///
    /// [`try_acquire_at`]: Self::try_acquire_at
    pub(crate) fn seal(&self, empty_at_ns: Option<u64>) -> Sealing {
        loop {
            let (k, free_at, empty_from_ns) = match self.settled_tail() {
                Tail::Settled {
                    k,
                    free_at,
                    empty_from_ns,
                } => (k, free_at, empty_from_ns),
                Tail::Moving => continue,
                Tail::Sealed => return Sealing::AlreadySealed,
            };
            if let Some(now_ns) = empty_at_ns {
                if empty_from_ns > now_ns {
                    return Sealing::Live { empty_from_ns };
                }
            }
            debug_assert!(
                free_at & SEAL_BIT == 0,
                "a real free time with the seal bit"
            );
            // AcqRel on success: the seal is ordered after every admission it saw, and
            // published to admitters that acquire this slot. Relaxed on failure: we loop
            // and re-read with Acquire.
            if self
                .slot(k)
                .compare_exchange(
                    (k, free_at),
                    (k, free_at | SEAL_BIT),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Sealing::Sealed;
            }
        }
    }

    /// Head's slot and the last admission's free time, read consistently; helps a
    /// claimer that has not yet moved head, as admitters do.
    fn settled_tail(&self) -> Tail {
        let len = self.slots.len() as u64;
        // Acquire, as in try_acquire_at: every claim that moved head to k is visible.
        let k = self.head.load(Ordering::Acquire);
        let (next, free_at) = self.slot(k).load(Ordering::Acquire);
        if next != k {
            self.advance_head(k);
            return Tail::Moving;
        }
        if free_at & SEAL_BIT != 0 {
            return Tail::Sealed;
        }
        let empty_from_ns = if k == 0 {
            0
        } else {
            let (prev_next, prev_free_at) = self.slot(k - 1).load(Ordering::Acquire);
            if prev_next != (k - 1).wrapping_add(len) {
                return Tail::Moving; // head moved on under us.
            }
            prev_free_at & !SEAL_BIT
        };
        Tail::Settled {
            k,
            free_at,
            empty_from_ns,
        }
    }

    /// Whether the 128-bit operations are real atomics on this platform.
    pub(crate) fn is_lock_free() -> bool {
        AtomicPair::is_lock_free()
    }

    /// Bytes of memory one ring of `limit` slots takes, including the padded head.
    pub(crate) fn bytes_for(limit: u32) -> usize {
        std::mem::size_of::<Self>() + limit as usize * std::mem::size_of::<AtomicPair>()
    }
}
