//! The lock-free ring of admission times behind [`SlidingWindow`](super::SlidingWindow).
//!
//! # The algorithm
//!
//! Admissions are numbered in the order they are granted. Admission `k` may happen at time
//! `t` iff admission `k − limit` happened at or before `t − window`; that is the
//! sliding-window rule (at most `limit` admissions in any window `(t − W, t]`), provided
//! admission times are monotone in `k`.
//!
//! The ring remembers the last `C` admissions (its *capacity*: the limit it was built for,
//! rounded up to a power of two) in `P = 2C` slots of one 64-bit word each, so that a slot
//! index is a mask, not a division. Slot `s` holds the recorded time of the latest
//! admission `a` with `a mod P == s` (numbers are never stored: see below). Slots start
//! with *virtual* admissions, which left every window long ago.
//!
//! To admit at `now`, a thread finds the next admission's slot `k` (from `head`, a hint
//! that may lag or lead), checks the slot of admission `k − limit` (`t + window <= now`),
//! and swaps slot `k` from the time it read there (admission `k − P`'s) to its own, in
//! **one** 64-bit compare-and-swap. That CAS is the admission: claiming the slot and
//! publishing its time are a single step, so no thread can be preempted between them and
//! let a later thread see a stale slot. The claimer then moves the `head` hint on; a
//! thread that finds it stale just scans forward, so a preempted claimer blocks nobody
//! (lock-free).
//!
//! ## Finding the next slot without admission numbers
//!
//! Read around the ring from the next slot `k`, the values are those of admissions
//! `k − P, …, k − 1`: non-decreasing, since recorded times are monotone in the number.
//! And the last is strictly above the first: admission `k − 1` was checked against
//! admission `k − 1 − limit`, at least one window (≥ 1 ns) before it, and `k − P` is no
//! later than that one because `P > limit`. So the values drop exactly once around the
//! ring, into the next slot: slot `k` is next iff `slot[k − 1] > slot[k]`. A claim reads
//! both, and its CAS on slot `k` proves the pair was current at that instant: any claim of
//! `k` in between would have raised slot `k` (below), and the previous slot cannot move
//! until `k` is claimed.
//!
//! The encoding keeps that order for every kind of value, within one word:
//! - a real admission recorded at `t`: `2t + 2`;
//! - a virtual one that counts as an admission at `h` (a *horizon*, below): `2h + 1`; at
//!   `h = 0` it is free at once (nothing was forgotten);
//! - [`FILLER`] (0): the slot the first admission claims, below everything;
//! - [`SEALED`] and above (`u64::MAX − 1` over a real admission, `u64::MAX` over any
//!   other): a closed ring, above everything.
//!
//! So a virtual admission sits just below a real one at the same time, and the time of
//! any value `s > 1` is `(s − 1) / 2`.
//!
//! The traps and how each is closed:
//! - *claim then publish*: one CAS does both (above).
//! - *ABA on recycled slots*: a slot's value strictly grows with every claim. The claim
//!   of `a + P` over `a` passed its check against `a + P − limit`, no earlier than `a`
//!   (`limit ≤ P`), so it records a time at least one window (≥ 1 ns) after `a`'s. A CAS
//!   that expects a value read before a claim can therefore never succeed after it, and no
//!   admission number is needed to tell the two apart, nor a 16-byte number-and-time
//!   pair to swap.
//! - *a stale or leading head*: any index is a correct place to start; the scan finds the
//!   drop within `P` slots, and no decision depends on what head said.
//! - *reads that are not a snapshot*: a claim's reads (the next slot, the previous one, the
//!   checked one) are validated by its CAS, as above; the readers that do not claim
//!   (`wait_at`, `available_at`, `tail`, `recent`) re-read the next slot after their other
//!   loads and start again if it moved.
//! - *torn reads*: every slot is one 64-bit word.
//! - *timestamps not monotone across threads*: a thread that read the clock before
//!   another thread's admission records `t_k = max(now, t_{k−1})`, so recorded times
//!   are monotone in `k`, and the rule above stays exact; the check itself uses the
//!   caller's `now`, so a stale or backwards clock can only refuse, never release.
//! - *wrap-around*: `head` counts with wrapping arithmetic (only its index modulo `P`
//!   matters); times past [`SEALABLE_TIME_NS`] (2⁶², 146 years) count as it, so a value
//!   never reaches [`SEALED`] and `time + window` never overflows.
//! - *a sealed ring*: [`SEALED`] is above every value, so sealing is a claim like any other
//!   for the ABA argument, and every reader checks for it before it claims or reports.
//!
//! Slots hold times, not expiries, and the ring remembers `C` admissions whatever the
//! limit, so [`reshape`](AdmissionRing::reshape) can change the limit (up to `C`) and the
//! window in place: every decision after it judges the whole remembered history by the
//! new shape. The shape `(limit, window)` is **one** atomic value (a 128-bit pair, read
//! with one load per decision): two atomics read apart could pair the old limit with the
//! new window, a shape looser than either.
//!
//! # What a ring forgets, and what it assumes
//!
//! A ring remembers its last `C` admissions; the other half of its slots holds older ones
//! it has *forgotten* (only the newest of those is ever looked at, to tell whether anything
//! was forgotten at all). They are never needed by its own rule (the check looks back
//! `limit <= C`), but a larger ring built from it ([`remembered`](AdmissionRing::remembered),
//! [`with_memory`](AdmissionRing::with_memory)) looks back further. So a ring built from
//! another keeps its *virtual* slots at a *horizon*: a time at or after every admission its
//! source forgot. A virtual slot at time 0 is free at once (nothing was forgotten); one at
//! a horizon `h` counts as an admission at `h`. Forgotten admissions really happened at or
//! before `h`, so judging them at `h` never admits more than the exact rule would; it
//! refuses more only while a window of the new shape reaches back past `h` (see
//! [`SlidingWindow`](super::SlidingWindow#exact-under-change)). The horizon is tight:
//! an admission `j` is forgotten when admission `j + C` is claimed, whose check found
//! admission `j + C − limit` (so `j` too) at least one window before it; hence every
//! forgotten admission is at or before `last − narrowest window the ring ever had`, and
//! at or before the oldest one remembered.

use crossbeam_utils::Backoff;

use super::SEALABLE_TIME_NS;
use super::memory::Memory;
use crate::sync::{AtomicPair, AtomicU64, Ordering};

/// The slot the next admission of a new ring claims: below every other value, so that the
/// ring has its one drop from the start.
const FILLER: u64 = 0;

/// A slot closed by [`AdmissionRing::seal`] holds this (over a real admission) or
/// `u64::MAX` (over any other): above every live value (the largest is
/// `real_at(SEALABLE_TIME_NS)`), so no admission will ever claim it, and still telling
/// whether the admission it closed over was real (`remembered` asks that of the slot
/// before the remembered ones, which is the sealed one when the capacity is 1).
const SEALED: u64 = u64::MAX - 1;

const _: () = assert!(super::MAX_WINDOW.as_nanos() < SEALABLE_TIME_NS as u128);
const _: () = assert!(real_at(SEALABLE_TIME_NS) < SEALED);

/// The value of a real admission recorded at `t_ns` (at most [`SEALABLE_TIME_NS`]).
#[inline(always)]
const fn real_at(t_ns: u64) -> u64 {
    2 * t_ns + 2
}

/// The value of a virtual admission that counts as one at `h_ns` (free at once for 0).
#[inline(always)]
const fn virtual_at(h_ns: u64) -> u64 {
    2 * h_ns + 1
}

/// Whether a value is, or was sealed over, a real admission (not a virtual one or the
/// filler).
#[inline(always)]
fn is_real(value: u64) -> bool {
    value & 1 == 0 && value != FILLER
}

/// What sealing a slot that holds `value` leaves in it.
#[inline(always)]
fn sealed_over(value: u64) -> u64 {
    if is_real(value) { SEALED } else { u64::MAX }
}

/// The recorded time of a live value above 1 (real or virtual).
#[inline(always)]
fn time_of(value: u64) -> u64 {
    (value - 1) >> 1
}

/// When the admission held in `value` leaves a window of `window_ns`: at once for the
/// filler and a virtual admission at 0.
#[inline(always)]
fn expiry(value: u64, window_ns: u64) -> u64 {
    if value <= virtual_at(0) {
        0
    } else {
        time_of(value) + window_ns
    }
}

/// The value a real admission after `latest` (a live value above the filler) records,
/// at the later of `now_ns` and `latest`'s time.
#[inline(always)]
fn recorded_after(latest: u64, now_ns: u64) -> u64 {
    // A virtual `2h + 1` becomes the real `2h + 2`; a real value stays.
    real_at(now_ns).max((latest + 1) & !1)
}

/// The wait a sealed ring refuses with: at least 2⁶³ ns for readings up to
/// [`SEALABLE_TIME_NS`], far above any real wait.
#[inline(always)]
fn sealed_wait(now_ns: u64) -> u64 {
    u64::MAX - now_ns
}

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

/// Where the next admission goes, as one scan found it.
#[derive(Clone, Copy)]
enum Next {
    /// Slot `k` is next: it holds `oldest`, slot `k − 1` holds `latest` (the last
    /// admission, real or virtual), and `latest > oldest`.
    At { k: u64, oldest: u64, latest: u64 },
    /// The ring is sealed; slot `k` holds [`SEALED`] or above.
    Sealed { k: u64 },
}

enum Tail {
    Settled {
        k: u64,
        oldest: u64,
        empty_from_ns: u64,
    },
    Moving,
    Sealed,
}

pub(crate) struct AdmissionRing {
    /// Where the next scan for the next admission's slot starts: usually that slot,
    /// briefly behind it while a claimer has not yet moved it. Written by every admitting
    /// thread, and not padded: every decision reads the fields beside it too, so one line
    /// holds what a decision needs besides its slots (a keyed table of many rings is
    /// bound by the lines it touches: 1 024 keys decide 3 ns faster than with the head on
    /// a line of its own), and under contention the line moves between cores once per
    /// admission either way.
    head: AtomicU64,
    /// `P = 2C` slots, one word each (see the module docs for the encoding).
    slots: Box<[AtomicU64]>,
    /// `slots.len() - 1`; `slots.len()` is a power of two.
    mask: u64,
    /// `(lookback, window_ns)`, one value: the limit (admission `k` is checked against
    /// admission `k - lookback`; at most the capacity) and the window's length. Read
    /// with one load per call, so a call racing `reshape` uses the old shape or the new
    /// one, never half of each.
    shape: AtomicPair,
    /// The narrowest window this ring has had (see "What a ring forgets" above). Only
    /// `reshape` and `remembered` touch it.
    narrowest_window_ns: AtomicU64,
    /// The time of the virtual admissions the ring was built with (see above).
    virtual_ns: u64,
}

/// A ring's slots as one call holds them.
#[derive(Clone, Copy)]
struct Slots<'a> {
    slots: &'a [AtomicU64],
    /// `slots.len() - 1`; the length is a power of two.
    mask: u64,
}

impl<'a> Slots<'a> {
    /// The slot of admission number `k` (any number: only `k mod P` matters).
    #[inline(always)]
    fn at(self, k: u64) -> &'a AtomicU64 {
        let index = (k & self.mask) as usize;
        debug_assert!(index < self.slots.len());
        // Unchecked: the bounds check costs 0.15 ns of a 9.5 ns admission.
        // SAFETY: `mask` is `slots.len() - 1`, the length a power of two (both fixed in
        // `with_memory_and_capacity`), so `k & mask` is below the length.
        unsafe { self.slots.get_unchecked(index) }
    }
}

/// What one call reads of a ring's shape (see [`AdmissionRing::reshape`]).
#[derive(Clone, Copy)]
struct Shape {
    lookback: u64,
    window_ns: u64,
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
        let virtual_ns = horizon_ns.map_or(0, |h| h.clamp(1, SEALABLE_TIME_NS));
        // Replay the kept history into slots 0, 1, …; the slot after it is the next
        // admission's (the filler), the rest hold virtual admissions at the horizon.
        let mut recorded_ns = virtual_ns;
        let slots = (0..2 * capacity)
            .map(|j| match kept.get(j as usize) {
                Some(&t) => {
                    recorded_ns = recorded_ns.max(t.min(SEALABLE_TIME_NS));
                    AtomicU64::new(real_at(recorded_ns))
                }
                None if j == kept.len() as u64 => AtomicU64::new(FILLER),
                None => AtomicU64::new(virtual_at(virtual_ns)),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        AdmissionRing {
            head: AtomicU64::new(kept.len() as u64),
            slots,
            mask: 2 * capacity - 1,
            shape: AtomicPair::new(u64::from(limit), window_ns),
            narrowest_window_ns: AtomicU64::new(window_ns),
            virtual_ns,
        }
    }

    /// How many admissions the ring remembers: the largest limit it can take.
    pub(crate) fn capacity(&self) -> u64 {
        self.slots.len() as u64 / 2
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

    /// The slot of admission number `k` (any number: only `k mod P` matters).
    #[inline(always)]
    fn slot(&self, k: u64) -> &AtomicU64 {
        self.slots().at(k)
    }

    /// The slots and their mask, to keep in registers across a decision's atomic loads
    /// (the compiler reloads fields of `self` after each).
    #[inline(always)]
    fn slots(&self) -> Slots<'_> {
        Slots {
            slots: &self.slots,
            mask: self.mask,
        }
    }

    /// Finds the next admission's slot, scanning forward from slot `k` (see "Finding the
    /// next slot" in the module docs): true at the moment of its last load.
    #[inline(always)]
    fn scan(&self, mut k: u64) -> Next {
        loop {
            // Acquire, both: pairs with the AcqRel CAS of the claim (or seal) read, so its
            // time is whole and every claim before it is visible.
            let oldest = self.slot(k).load(Ordering::Acquire);
            let latest = self.slot(k.wrapping_sub(1)).load(Ordering::Acquire);
            if latest > oldest {
                if latest >= SEALED {
                    return Next::Sealed {
                        k: k.wrapping_sub(1),
                    };
                }
                return Next::At { k, oldest, latest };
            }
            if oldest >= SEALED {
                return Next::Sealed { k };
            }
            // Claimed already (head lags): move past it.
            k = k.wrapping_add(1);
        }
    }

    /// The next admission's slot, scanning from `head`.
    #[inline]
    fn next(&self) -> Next {
        self.scan(self.head())
    }

    /// Where a scan starts. Any slot is a correct start; decisions rest on the slots'
    /// own loads. Acquire: pairs with the Release store in `publish_head`, so the claim
    /// that moved head is visible to a scan that starts after it (else, on a weakly
    /// ordered CPU, the scan could pass the next slot and go round the ring).
    #[inline(always)]
    fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
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
    ///
    /// The common case (head names the next slot, no race, no stale reading) is decided
    /// here, inline in the caller; everything else goes to [`Self::try_acquire_slow`],
    /// which starts the same decision over from the same slot.
    #[inline(always)]
    pub(crate) fn try_acquire_fresh(
        &self,
        now_ns: u64,
        reread: impl FnOnce() -> Option<u64>,
    ) -> Result<(), u64> {
        let now_ns = now_ns.min(SEALABLE_TIME_NS);
        let shape = self.shape();
        let slots = self.slots();
        let k = self.head();
        // Acquire, all three: as in `scan`.
        let oldest = slots.at(k).load(Ordering::Acquire);
        let latest = slots.at(k.wrapping_sub(1)).load(Ordering::Acquire);
        if latest > oldest && latest < SEALED {
            // Slot k is next (see `scan`); its check is against admission k − limit.
            let checked = slots
                .at(k.wrapping_sub(shape.lookback))
                .load(Ordering::Acquire);
            let free_at = expiry(checked, shape.window_ns);
            if free_at <= now_ns {
                // Monotone recorded times: never before the latest admission. AcqRel on
                // success: publishes the claim to whoever acquires this slot next.
                // Relaxed on failure: the slow path re-reads with Acquire.
                let claim = recorded_after(latest, now_ns);
                if slots
                    .at(k)
                    .compare_exchange(oldest, claim, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.publish_head(k.wrapping_add(1));
                    return Ok(());
                }
            } else if latest <= real_at(now_ns) {
                // Refused, and the reading is not older than the latest admission.
                return Err(free_at - now_ns);
            }
        }
        self.try_acquire_slow(now_ns, shape, k, reread)
    }

    /// [`try_acquire_fresh`](Self::try_acquire_fresh) from slot `k` on, when the first
    /// pass did not decide: head lagged, a claim raced ours, the ring is sealed, or the
    /// reading is older than the latest admission.
    #[cold]
    #[inline(never)]
    fn try_acquire_slow(
        &self,
        mut now_ns: u64,
        shape: Shape,
        mut k: u64,
        reread: impl FnOnce() -> Option<u64>,
    ) -> Result<(), u64> {
        let Shape {
            lookback,
            window_ns,
        } = shape;
        let mut reread = Some(reread);
        let backoff = Backoff::new();
        loop {
            let (oldest, latest) = match self.scan(k) {
                Next::At {
                    k: at,
                    oldest,
                    latest,
                } => {
                    k = at;
                    (oldest, latest)
                }
                Next::Sealed { .. } => return Err(sealed_wait(now_ns)),
            };
            // Admission k is next. Its window check is against admission k − limit.
            // Acquire: as in `scan`.
            let checked = self.slot(k.wrapping_sub(lookback)).load(Ordering::Acquire);
            let free_at = expiry(checked, window_ns);
            if free_at > now_ns {
                // Refused, unless the reading is staler than the latest admission.
                if latest > real_at(now_ns) {
                    if let Some(fresh_ns) = reread.take().and_then(|reread| reread()) {
                        now_ns = fresh_ns.min(SEALABLE_TIME_NS);
                        continue;
                    }
                }
                return Err(free_at - now_ns);
            }
            // As in `try_acquire_fresh`: monotone recorded times; AcqRel on success
            // publishes the claim, Relaxed on failure since we loop and re-read.
            let claim = recorded_after(latest, now_ns);
            if self
                .slot(k)
                .compare_exchange(oldest, claim, Ordering::AcqRel, Ordering::Relaxed)
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
        let now_ns = now_ns.min(SEALABLE_TIME_NS);
        let Shape {
            lookback,
            window_ns,
        } = self.shape();
        loop {
            let (k, oldest) = match self.next() {
                Next::At { k, oldest, .. } => (k, oldest),
                // As `try_acquire_fresh` refuses it.
                Next::Sealed { .. } => return sealed_wait(now_ns),
            };
            // Acquire: as in `scan`.
            let checked = self.slot(k.wrapping_sub(lookback)).load(Ordering::Acquire);
            if !self.still_next(k, oldest) {
                continue; // a claim landed meanwhile
            }
            return expiry(checked, window_ns).saturating_sub(now_ns);
        }
    }

    /// Whether slot `k` still holds `oldest`: then no admission was claimed since it was
    /// read, and the loads made in between read admissions that were current (a slot
    /// before `k` changes only after `k` is claimed).
    #[inline]
    fn still_next(&self, k: u64, oldest: u64) -> bool {
        // Acquire: a load after the ones it vouches for, which an Acquire load keeps
        // after them; a claim they saw is ordered before this load, so it sees slot k's
        // claim too (values never repeat).
        self.slot(k).load(Ordering::Acquire) == oldest
    }

    /// Moves the head hint up to `next` unless it is already there.
    #[inline(always)]
    fn publish_head(&self, next: u64) {
        // A load and a plain store instead of a CAS: the hint may lag (another claimer can
        // store a smaller value between our load and store), and a lagging hint costs
        // readers a short forward scan, never a wrong decision. Relaxed load: only an
        // optimisation; Release store: see `head`.
        if self.head.load(Ordering::Relaxed).wrapping_sub(next) > u64::MAX / 2 {
            self.head.store(next, Ordering::Release);
        }
    }

    /// How many admissions `now_ns` would allow, were nothing else admitted.
    ///
    /// Exact when no other thread is admitting; under concurrency, a count that was true
    /// at some moment during the call.
    pub(crate) fn available_at(&self, now_ns: u64) -> u32 {
        // Admissions k − limit .. k − 1 are the last `limit` (virtual ones at 0 are free).
        // Their expiries are non-decreasing, so the free ones are a prefix: binary
        // search for its length.
        let now_ns = now_ns.min(SEALABLE_TIME_NS);
        let Shape {
            lookback,
            window_ns,
        } = self.shape();
        loop {
            let (k, oldest) = match self.next() {
                Next::At { k, oldest, .. } => (k, oldest),
                Next::Sealed { .. } => return 0,
            };
            let free_at = |i: u64| {
                // Acquire: as in `scan`.
                let value = self
                    .slot(k.wrapping_sub(lookback).wrapping_add(i))
                    .load(Ordering::Acquire);
                expiry(value, window_ns)
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
            if self.still_next(k, oldest) {
                return lo as u32;
            }
        }
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
        let capacity = self.capacity();
        let (times_ns, before_oldest) = self.snapshot(capacity);
        let horizon_ns = if !is_real(before_oldest) {
            // Nothing real came before the oldest remembered: only virtual admissions,
            // which stand for what this ring's source forgot (0: nothing).
            (self.virtual_ns != 0).then_some(self.virtual_ns)
        } else {
            // Real: older admissions were forgotten, each at least the narrowest window
            // before the last admission (module docs).
            // Relaxed: `reshape` lowers it before publishing a shape, and the slots'
            // Acquire loads in `snapshot` order us after every admission that used one.
            let narrowest_ns = self.narrowest_window_ns.load(Ordering::Relaxed);
            let oldest_ns = times_ns.first().copied().unwrap_or(0);
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
    #[cfg(test)]
    pub(crate) fn recent(&self, count: u64) -> Vec<u64> {
        self.snapshot(count.min(self.capacity())).0
    }

    /// The recorded times of the real admissions among the last `count` (at most the
    /// capacity), oldest first, and the value of the admission just before them, read
    /// as one snapshot (final for a sealed ring).
    fn snapshot(&self, count: u64) -> (Vec<u64>, u64) {
        loop {
            let (k, oldest) = match self.next() {
                Next::At { k, oldest, .. } => (k, Some(oldest)),
                Next::Sealed { k } => (k, None),
            };
            let first = k.wrapping_sub(count);
            // Acquire: as in `scan`.
            let before = self.slot(first.wrapping_sub(1)).load(Ordering::Acquire);
            let times_ns = (0..count)
                .filter_map(|i| {
                    // Acquire: as above.
                    let value = self.slot(first.wrapping_add(i)).load(Ordering::Acquire);
                    // Virtual admissions never happened.
                    is_real(value).then(|| time_of(value))
                })
                .collect();
            if oldest.is_none_or(|oldest| self.still_next(k, oldest)) {
                return (times_ns, before);
            }
        }
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
    /// admission can claim the sealed slot, so the next admission never moves.
    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self.next(), Next::Sealed { .. })
    }

    /// Closes the ring for good, if its window is empty at `empty_at_ns` (or whatever it
    /// holds, for `None`): afterwards every [`try_acquire_at`](Self::try_acquire_at) is
    /// refused with a wait of at least 2⁶², and [`remembered`](Self::remembered) is final.
    ///
    /// Sealing is one CAS on the slot that the next admission `k` would claim, from the
    /// very value that admission's claim CAS expects, to [`SEALED`] (or above); so exactly one of the
    /// two wins, and an admission either happened before the seal (then the emptiness
    /// check saw it, or the CAS fails) or never happens. The sealed slot held admission
    /// `k − P`, which the ring had already forgotten, so nothing it remembers is lost;
    /// every reader refuses (or reports) on sight of the sealed value, whatever limit it
    /// read.
    pub(crate) fn seal(&self, empty_at_ns: Option<u64>) -> Sealing {
        loop {
            let (k, oldest, empty_from_ns) = match self.tail() {
                Tail::Settled {
                    k,
                    oldest,
                    empty_from_ns,
                } => (k, oldest, empty_from_ns),
                Tail::Moving => continue,
                Tail::Sealed => return Sealing::AlreadySealed,
            };
            if let Some(now_ns) = empty_at_ns {
                if empty_from_ns > now_ns {
                    return Sealing::Live { empty_from_ns };
                }
            }
            // AcqRel on success: the seal is ordered after every admission it saw, and
            // published to admitters that acquire this slot. Relaxed on failure: we loop
            // and re-read with Acquire.
            if self
                .slot(k)
                .compare_exchange(
                    oldest,
                    sealed_over(oldest),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Sealing::Sealed;
            }
        }
    }

    /// The next admission's slot and value, and the last admission's free time, read
    /// consistently; `Moving` when a claim landed between the reads.
    fn tail(&self) -> Tail {
        match self.next() {
            Next::Sealed { .. } => Tail::Sealed,
            Next::At { k, oldest, latest } if self.still_next(k, oldest) => Tail::Settled {
                k,
                oldest,
                empty_from_ns: expiry(latest, self.shape().window_ns),
            },
            Next::At { .. } => Tail::Moving,
        }
    }

    /// Whether the shape's 128-bit load and store are real atomics on this platform (the
    /// slots are 64-bit words, lock-free everywhere this crate builds).
    pub(crate) fn is_lock_free() -> bool {
        AtomicPair::is_lock_free()
    }

    /// Bytes of memory one ring for `limit` takes: its slots (twice `limit` rounded up to
    /// a power of two, of 8 bytes each) and the struct with its head.
    /// Saturates at `usize::MAX` where the ring could not exist (`u32::MAX` on a 32-bit
    /// target).
    pub(crate) fn bytes_for(limit: u32) -> usize {
        let capacity = match limit {
            0 => Some(0),
            // In u64: u32::MAX rounds up to 2^32, past u32.
            _ => usize::try_from(u64::from(limit).next_power_of_two()).ok(),
        };
        capacity
            .and_then(|c| c.checked_mul(2 * std::mem::size_of::<AtomicU64>()))
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

    /// A fresh ring whose head counter starts at `head` (its next slot is `head mod P`),
    /// so that tests can cross the counter's wrap-around without 2⁶⁴ calls.
    fn with_head_for_test(limit: u32, window_ns: u64, head: u64) -> Self {
        let ring = Self::with_history(limit, window_ns, &[]);
        for s in 0..=ring.mask {
            let value = if s == head & ring.mask {
                FILLER
            } else {
                virtual_at(0)
            };
            ring.slots[s as usize].store(value, Ordering::SeqCst);
        }
        ring.head.store(head, Ordering::SeqCst);
        ring
    }

    /// Every slot's value, read around the ring from the next slot, and how many times
    /// the values drop along the way (back to the next slot included).
    fn values_from_next(&self) -> (Vec<u64>, usize) {
        let Next::At { k, .. } = self.next() else {
            panic!("sealed");
        };
        let values: Vec<u64> = (0..=self.mask)
            .map(|i| self.slot(k.wrapping_add(i)).load(Ordering::SeqCst))
            .collect();
        let mut drops = values.windows(2).filter(|w| w[1] < w[0]).count();
        drops += usize::from(values[0] < values[values.len() - 1]);
        (values, drops)
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
    fn the_head_counter_wraps_around_without_losing_its_place() {
        for limit in [1u32, 3, 7] {
            let ring = AdmissionRing::with_head_for_test(limit, W, u64::MAX - 5);
            let mut now = 0;
            for _ in 0..40 {
                for _ in 0..limit {
                    assert_eq!(ring.try_acquire_at(now), Ok(()));
                }
                assert_eq!(ring.try_acquire_at(now), Err(W), "limit {limit}");
                now += W;
            }
            assert!(ring.head.load(Ordering::SeqCst) < 1 << 10, "wrapped");
        }
    }

    #[test]
    fn a_head_anywhere_finds_the_same_next_slot() {
        // The head is only where a scan starts: wherever it points, every decision is the
        // one a correct head gives.
        for offset in [1u64, 3, 5, 7, 8, 100, u64::MAX - 2] {
            let ring = AdmissionRing::with_history(3, W, &[]);
            let reference = AdmissionRing::with_history(3, W, &[]);
            for now in [0, 0, 10, 10, W, W + 10, W + 10, 2 * W, 3 * W, 3 * W] {
                let head = ring.head.load(Ordering::SeqCst);
                ring.head.store(head.wrapping_add(offset), Ordering::SeqCst);
                assert_eq!(
                    ring.try_acquire_at(now),
                    reference.try_acquire_at(now),
                    "offset {offset}, now {now}"
                );
                assert_eq!(ring.history(), reference.history());
            }
        }
    }

    #[test]
    fn the_values_drop_once_around_the_ring_into_the_next_slot() {
        // What finding the next slot relies on, after every kind of step: admissions
        // (bursts at one instant, stale readings), reshapes, rings built from memory.
        let mut rings = vec![
            AdmissionRing::with_history(1, W, &[]),
            AdmissionRing::with_history(4, W, &[]),
            AdmissionRing::with_history(3, W, &[5, 5, 5, 5, 5]),
            AdmissionRing::with_memory(
                2,
                W,
                &Memory {
                    horizon_ns: Some(7),
                    times_ns: vec![7, 9],
                },
            ),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 0..2_000u64 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let ring = &rings[(seed >> 60) as usize % rings.len()];
            let now = (step * W / 7).saturating_sub((seed >> 40) % 50);
            if (seed >> 20) % 8 == 0 {
                let limit = 1 + (seed >> 8) as u32 % ring.capacity() as u32;
                ring.reshape(limit, 1 + (seed >> 30) % (2 * W)).unwrap();
            } else {
                let _ = ring.try_acquire_at(now);
            }
            let (values, drops) = ring.values_from_next();
            assert_eq!(drops, 1, "step {step}: {values:?}");
            assert!(values.iter().all(|&v| v < SEALED));
            if step % 500 == 499 {
                let limit = ring.capacity() as u32 * 2;
                let rebuilt = AdmissionRing::with_memory(limit, W, &ring.remembered());
                assert_eq!(rebuilt.values_from_next().1, 1);
                rings.push(rebuilt);
            }
        }
    }

    #[test]
    fn a_claim_prepared_before_a_full_lap_cannot_land() {
        // The ABA trap: a thread reads the next slot, is preempted while the ring goes
        // round once, and then tries its CAS with the value it read. The slot is the
        // next one again, but holds a later time, so the CAS fails.
        let ring = AdmissionRing::with_history(1, W, &[]);
        let Next::At { k, oldest, .. } = ring.next() else {
            unreachable!("not sealed")
        };
        for i in 0..=ring.mask {
            assert_eq!(ring.try_acquire_at(i * W), Ok(()));
        }
        let Next::At { k: again, .. } = ring.next() else {
            unreachable!("not sealed")
        };
        assert_eq!(again & ring.mask, k & ring.mask, "back at the same slot");
        let stale =
            ring.slot(k)
                .compare_exchange(oldest, real_at(0), Ordering::SeqCst, Ordering::SeqCst);
        assert!(stale.is_err());
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
    fn times_past_the_last_recordable_one_count_as_it() {
        let last = SEALABLE_TIME_NS;
        let ring = AdmissionRing::with_history(1, W, &[]);
        assert_eq!(ring.try_acquire_at(u64::MAX - 10), Ok(()));
        assert_eq!(ring.history(), vec![last]);
        // Later readings count as the same instant: one window from it, never a panic.
        assert_eq!(ring.try_acquire_at(u64::MAX), Err(W));
        assert_eq!(ring.try_acquire_at(last - 1), Err(W + 1));
        assert!(!ring.is_sealed());
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
    fn bytes_are_sixteen_per_admission_remembered_plus_the_head() {
        // Two 8-byte slots per unit of capacity.
        assert_eq!(
            AdmissionRing::bytes_for(1000) - AdmissionRing::bytes_for(0),
            16 * 1024
        );
        assert_eq!(
            AdmissionRing::bytes_for(1024) - AdmissionRing::bytes_for(1),
            16 * 1023
        );
        // Miri runs portable-atomic's fallback, which is not lock-free.
        assert!(
            cfg!(miri) || AdmissionRing::is_lock_free(),
            "128-bit shape loads expected on this CPU"
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
            // Whoever passed is recorded at its own reading, so the next admission waits
            // a full window from that.
            let recorded = ring.recent(1);
            assert!(recorded == [W] || recorded == [W + 1], "{recorded:?}");
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
            // The latest admission is found whatever head says, and the next one is
            // judged against it.
            assert_eq!(ring.recent(1), [10 * W]);
            assert_eq!(ring.try_acquire_at(11 * W - 1), Err(1));
        });
    }

    /// The ABA trap of one-word slots: limit 1 is two slots, so admissions at 0, W and 2W
    /// go round the ring once. A thread preempted between reading the next slot and its
    /// CAS may find that slot claimed again by the time it runs: its CAS must fail (a
    /// slot's value only grows). Whatever the order, no two admissions fall within one
    /// window, and every refusal waits exactly for an admission made before it.
    #[test]
    fn loom_a_claim_prepared_before_a_lap_never_lands() {
        loom::model(|| {
            let ring = Arc::new(AdmissionRing::with_history(1, W, &[]));
            let nows = [0, W, 2 * W];
            let outcomes = race(&ring, &nows);
            let mut admitted: Vec<u64> = nows
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.is_ok())
                .map(|(&now, _)| now)
                .collect();
            admitted.sort_unstable();
            assert!(!admitted.is_empty(), "{outcomes:?}");
            assert!(
                admitted.windows(2).all(|w| w[1] - w[0] >= W),
                "{outcomes:?}"
            );
            for (&now, outcome) in nows.iter().zip(&outcomes) {
                if let Err(wait) = *outcome {
                    assert!(
                        admitted.iter().any(|&t| t + W > now && t + W - now == wait),
                        "{now}: {outcomes:?}"
                    );
                }
            }
            assert_eq!(ring.recent(1), [*admitted.last().unwrap()]);
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
    fn sealing_a_ring_whose_limit_is_its_capacity_keeps_every_time() {
        // limit 2 = capacity 2: the admission the next one is checked against is kept.
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
        let rebuilt = AdmissionRing::with_memory(2, W, &ring.remembered());
        assert_eq!(rebuilt.try_acquire_at(3 * W - 1), Err(1));
        assert_eq!(rebuilt.try_acquire_at(3 * W), Ok(()));
        assert_eq!(rebuilt.try_acquire_at(3 * W), Err(W));
    }

    #[test]
    fn a_sealed_ring_of_capacity_one_still_says_it_forgot() {
        // With two slots, the slot before the remembered admission is the next one, which
        // the seal closes: the sealed value must still say a real admission was there.
        let ring = AdmissionRing::with_history(1, W, &[]);
        ring.try_acquire_at(0).unwrap();
        ring.try_acquire_at(W).unwrap();
        assert_eq!(ring.seal(None), Sealing::Sealed);
        assert_eq!(
            ring.remembered(),
            Memory {
                horizon_ns: Some(0),
                times_ns: vec![W],
            }
        );
        let fresh = AdmissionRing::with_history(1, W, &[]);
        fresh.try_acquire_at(0).unwrap();
        assert_eq!(fresh.seal(None), Sealing::Sealed);
        assert_eq!(fresh.remembered(), Memory::of(&[0]), "nothing forgotten");
    }

    #[test]
    fn remembered_says_whether_anything_was_forgotten() {
        let ring = AdmissionRing::with_history(2, W, &[]);
        ring.try_acquire_at(10).unwrap();
        ring.try_acquire_at(20).unwrap();
        assert_eq!(
            ring.remembered(),
            Memory::of(&[10, 20]),
            "none forgotten yet"
        );
        ring.try_acquire_at(W + 10).unwrap();
        // The one at 10 is forgotten: at or before the oldest kept and the last minus
        // the window.
        assert_eq!(
            ring.remembered(),
            Memory {
                horizon_ns: Some(10),
                times_ns: vec![20, W + 10],
            }
        );
        // A ring built with a horizon reports it until it forgets a real admission.
        let rebuilt = AdmissionRing::with_memory(
            2,
            W,
            &Memory {
                horizon_ns: Some(5),
                times_ns: vec![7],
            },
        );
        assert_eq!(rebuilt.remembered().horizon_ns, Some(5));
        rebuilt.try_acquire_at(W + 7).unwrap();
        assert_eq!(
            rebuilt.remembered(),
            Memory {
                horizon_ns: Some(5),
                times_ns: vec![7, W + 7],
            }
        );
        // Now the one at 7 is forgotten; the model's bound for it is the later of the two.
        rebuilt.try_acquire_at(2 * W + 7).unwrap();
        assert_eq!(rebuilt.remembered().horizon_ns, Some(W + 7));
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
