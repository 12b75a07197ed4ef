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
            if free_at == u64::MAX {
                // An expiry that saturated: `time + window` went past the end of u64
                // nanoseconds (≈ 484 years after the clock's epoch). Never free again.
                return Err(u64::MAX);
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
                (next >= len).then(|| free_at.saturating_sub(self.window_ns))
            })
            .collect()
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

#[cfg(all(test, not(loom)))]
impl AdmissionRing {
    /// Moves head back by one, as if the last claimer were preempted between its slot CAS
    /// and moving head.
    fn rewind_head_for_test(&self) {
        self.head.fetch_sub(1, Ordering::SeqCst);
    }

    /// A ring whose admission numbers start at `first`: as if `first` admissions had
    /// happened long ago. Lets tests cross numbering boundaries without 2³² calls.
    fn starting_at_for_test(limit: u32, window_ns: u64, first: u64) -> Self {
        let len = u64::from(limit);
        let slots = (0..len)
            .map(|i| {
                // The admission number that slot i serves next: the first k >= first with
                // k % len == i.
                let k = first + (i + len - first % len) % len;
                AtomicPair::new(k, 0)
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        AdmissionRing {
            head: CachePadded::new(AtomicU64::new(first)),
            slots,
            window_ns,
        }
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
            let mut now = 0;
            for _ in 0..40 {
                for _ in 0..limit {
                    assert_eq!(ring.try_acquire_at(now), Ok(()));
                }
                assert_eq!(ring.try_acquire_at(now), Err(W), "limit {limit}");
                now += W;
            }
            assert!(ring.head.load(Ordering::SeqCst) > 1 << 32);
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
            16_000
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
            let (k, free_at) = ring
                .slot(ring.head.load(Ordering::SeqCst))
                .load(Ordering::SeqCst);
            assert_eq!(k, 2);
            assert!(free_at == 2 * W || free_at == 2 * W + 1);
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
            assert_eq!(ring.head.load(Ordering::SeqCst), admitted as u64);
        });
    }
}
