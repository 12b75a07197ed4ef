//! Per-client fairness: an exact sliding window for every key, in bounded memory.
//!
//! # How it is built
//!
//! Each key maps to an *entry*: one lock-free admission ring (the same ring as
//! [`SlidingWindow`](super::SlidingWindow)) plus the `(limit, window)` it was built for.
//! A decision for a key that already has an entry is a lock-free map lookup followed by
//! the ring's compare-and-swap; nothing else is written.
//!
//! ## The map: papaya
//!
//! The hot path must take no lock, so dashmap (a read-write lock per shard, taken even
//! to read) is out. The lock-free candidates were papaya and scc's `HashIndex`.
//! Measured side by side (`benches/benches/keyed.rs`, group `keyed/map_lookup`, and
//! `benches/examples/keyed_quick.rs`; figures in `benches/results/keyed.md`), their
//! lookups and dashmap's cost about the same on the shared build machine (papaya's and
//! dashmap's level at 15–16 ns in the interleaved comparison; scc's faster in two
//! criterion runs of three, slower in the third); none reads without an atomic write (papaya's
//! guard ends with a swap, scc's begins with one, dashmap locks a shard). papaya was
//! chosen for what the limiter needs:
//!
//! - papaya allocates every entry once and never moves it, so a value may hold its
//!   atomics inline: every thread that finds the key works on the same ring. scc moves
//!   entries bitwise into the new array when it resizes while lock-free readers may
//!   still hold the old copy, so each ring would need its own box (one more dependent
//!   load and allocation per key, eating the lookup's advantage).
//! - reclaim needs "remove (or replace) only if the key still maps to *this* entry" as
//!   one linearisable step; papaya has it (`remove_if`, `compute`), and a stable address
//!   is the entry's identity.
//! - papaya frees removed entries only after every reader that may hold them has moved
//!   on, and keeps no tombstones that grow under churn (the 10× rotation test bounds
//!   the heap).
//!
//! Under loom a modelled map stands in for papaya (see `keyed/table.rs`).
//!
//! ## Reclaim without losing a window
//!
//! An entry may be reclaimed only while its window is empty, and an admission must never
//! land in an entry that is being reclaimed (a new entry for the same key would then
//! start from a fresh budget). Both are settled by one compare-and-swap on the ring:
//! reclaim *seals* the ring by CASing the very slot that the next admission would claim,
//! with the same expected value, after checking that the last admission has left the
//! window. Exactly one of the two CASes wins. If the admission wins, the seal fails and
//! the key stays; if the seal wins, the admission finds a sealed ring, and whichever
//! thread sees a sealed entry first replaces it in the map with a new entry rebuilt from
//! the sealed ring's (final) history, or the sweeper removes it; the map's
//! "only if it is still this entry" operations make exactly one of those happen. No
//! thread ever waits for another.
//!
//! Clock readings taken on different threads are not ordered with the sweep: a thread
//! that read its clock just before a sweep reclaimed a key at a later time could admit
//! into a fresh entry "in the past". To close that, a sweep raises a watermark to its
//! own time before sealing anything, and an entry created afterwards records no
//! admission earlier than the watermark it saw (a time that had already come, so still a
//! time within the caller's call).
//!
//! ## The bound
//!
//! At most `max_keys` entries exist; a reservation counter is raised before an insert
//! and lowered by a failed insert or a reclaim. When a new key finds the table full, one
//! thread sweeps it (the others are refused at once, without waiting), sealing and
//! removing every entry whose window is empty. Each sweep also records the earliest time
//! at which any live entry's window will be empty; before that time no entry can be
//! reclaimed (admissions only push that time later, and entries created since lower the
//! record themselves), so a new key is refused with [`TooManyKeys`] *without* a sweep
//! until then, and the refusal says how long that is. A sweep is O(keys), run at most
//! once per such moment.
//!
//! ## Overrides
//!
//! [`set_limit`](KeyedSlidingWindow::set_limit) records a key's own `(limit, window)`
//! and then reshapes the key's entry, if it has one: seals it whatever it holds, and
//! replaces it with an entry of the new shape whose ring has at least the sealed ring's
//! room and everything it remembered, with what it forgot counted at its horizon
//! (`ring.rs`): lowering a limit takes effect at once, and no later shape, however wide,
//! is judged without an admission it may hold. So a key's memory follows the highest
//! limit it has had. An entry created while an
//! override changes re-checks the override after it is in the map; a SeqCst fence on both
//! sides means at least one of the two sees the other's write.

mod table;

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::memory::Memory;
use super::ring::{AdmissionRing, Sealing};
use super::{MAX_WINDOW, Quota, RateLimited};
use crate::ConfigError;
use crate::clock::{Clock, QuantaClock};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use table::{Guard, Table};

// `crate::sync` has no fence yet; this is the same std/loom switch.
#[cfg(loom)]
use loom::sync::atomic::fence;
#[cfg(not(loom))]
use std::sync::atomic::fence;

/// The largest `max_keys` a [`KeyedSlidingWindow`] accepts: 2²⁶ keys.
pub const MAX_KEYS: usize = 1 << 26;

/// Times at or above this are treated as this (2⁶² ns, 146 years), as the ring itself
/// does (`SEALABLE_TIME_NS`), so that waits from real windows stay far below a sealed
/// ring's.
const MAX_TIME_NS: u64 = 1 << 62;

/// A refusal wait at least this long may mean a sealed ring (a sealed ring's waits are
/// at least 2⁶³; real ones come within `MAX_WINDOW` of a time below 2⁶²).
const SEALED_WAIT_NS: u64 = 1 << 62;

const _: () = assert!(MAX_WINDOW.as_nanos() < MAX_TIME_NS as u128);

/// Why a [`KeyedSlidingWindow`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyedRefusal {
    /// The key's window already holds its limit (HTTP 429).
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The key is new and the table is full of keys with recent admissions (HTTP 503).
    #[error(transparent)]
    TooManyKeys(#[from] TooManyKeys),
}

impl KeyedRefusal {
    /// The HTTP status this refusal maps to: 429 for [`RateLimited`], 503 for
    /// [`TooManyKeys`].
    pub fn status_code(&self) -> u16 {
        match self {
            KeyedRefusal::RateLimited(_) => 429,
            KeyedRefusal::TooManyKeys(_) => 503,
        }
    }

    /// How long to wait before retrying: exact for [`RateLimited`], a hint for
    /// [`TooManyKeys`].
    pub fn retry_after(&self) -> Duration {
        match self {
            KeyedRefusal::RateLimited(refused) => refused.retry_after(),
            KeyedRefusal::TooManyKeys(refused) => refused.retry_after(),
        }
    }
}

/// A new key was refused because all `max_keys` entries hold admissions still in their
/// windows (a 503-class refusal: the service, not the client, is out of room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("too many keys: all {max_keys} have recent admissions; retry after {retry_after:?}")]
pub struct TooManyKeys {
    max_keys: usize,
    retry_after: Duration,
}

impl TooManyKeys {
    /// The table's bound.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// When the first entry's window will be empty, so that a retry may find room; zero
    /// when another thread is sweeping the table right now.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// One key's window.
struct Entry {
    ring: AdmissionRing,
    quota: Quota,
    /// No admission is recorded before this: the reclaim watermark when the entry was
    /// made (see the module docs).
    floor_ns: u64,
}

enum Refused {
    /// Retry after this many nanoseconds.
    Wait(u64),
    /// The entry is sealed: find or make the key's current entry.
    Sealed,
}

impl Entry {
    fn new(quota: Quota, floor_ns: u64) -> Self {
        Entry {
            ring: AdmissionRing::with_memory(quota.limit(), quota.window_ns(), &Memory::default()),
            quota,
            floor_ns,
        }
    }

    /// An entry of shape `quota` that remembers everything `sealed` remembered: its ring
    /// never has fewer slots than the sealed one (so lowering a limit and raising it
    /// again forgets nothing), and the admissions the sealed ring forgot are judged at
    /// its horizon (see `ring.rs`).
    fn reshaped(sealed: &Entry, quota: Quota, floor_ns: u64, now_ns: u64) -> Self {
        // Final: nothing is admitted into a sealed ring.
        let memory = sealed.ring.remembered();
        let capacity = sealed.ring.capacity().max(u64::from(quota.limit()));
        Entry {
            ring: AdmissionRing::with_memory_and_capacity(
                quota.limit(),
                quota.window_ns(),
                capacity,
                &memory,
            ),
            quota,
            // A caller with an older clock reading must not record an admission before
            // the reshape.
            floor_ns: floor_ns.max(now_ns),
        }
    }

    #[inline]
    fn try_acquire_at(&self, now_ns: u64) -> Result<(), Refused> {
        let at_ns = now_ns.max(self.floor_ns);
        match self.ring.try_acquire_at(at_ns) {
            Ok(()) => Ok(()),
            Err(wait_ns) if wait_ns >= SEALED_WAIT_NS && self.ring.is_sealed() => {
                Err(Refused::Sealed)
            }
            // From the caller's own clock reading, which the floor may be ahead of.
            Err(wait_ns) => Err(Refused::Wait(wait_ns.saturating_add(at_ns - now_ns))),
        }
    }
}

/// Exact sliding windows per key (per client, per tenant, per IP), lock-free on the hot
/// path, in memory bounded by `max_keys`.
///
/// # Semantics
///
/// Every key gets exactly the semantics of a [`SlidingWindow`](super::SlidingWindow): a
/// request for key `k` at time `t` is admitted iff fewer than `k`'s limit were admitted
/// for `k` in `(t − window, t]`, and a refusal carries the exact `retry_after`. Keys
/// share nothing but the table: one noisy client cannot use another's budget.
///
/// Every key has the default `(limit, window)` given at construction unless
/// [`set_limit`](Self::set_limit) gave it its own (e.g. a paying tier); overrides change
/// at runtime and keep the key's recent admissions.
///
/// # Memory is bounded
///
/// At most `max_keys` keys have a window at any time. A key whose window is empty holds
/// nothing worth keeping and may be reclaimed: lazily, when a new key finds the table
/// full, and on demand by [`retain_recent`](Self::retain_recent). A key whose window
/// still holds admissions is never evicted (that would hand its owner a fresh budget):
/// when every entry is live, a new key is refused with [`TooManyKeys`] (503), whose
/// `retry_after` says when the first window empties. Memory is therefore at most
/// `max_keys ×` [`bytes_per_key`](Self::bytes_per_key)`(limit)` plus the map's table,
/// however many distinct keys arrive; overrides are bounded by `max_keys` too.
///
/// # Concurrency
///
/// A decision for a key that has a window is one lock-free map lookup and the ring's
/// admission CAS; it writes nothing else shared. The first request of a key inserts
/// its entry; two threads racing to insert the same key create exactly one window (the
/// map's insert-if-absent decides, and the loser uses the winner's). Reclaim seals a
/// ring with a CAS that races the admission CAS on the same slot, so an admission is
/// either seen by the reclaim (which then keeps the key) or refused by the seal (and
/// retried on the key's next entry): no admission is ever lost, and nobody waits for a
/// preempted reclaimer. The module source explains the protocol.
///
/// # Memory ordering
///
/// As for `SlidingWindow`: admissions publish their time with release semantics and
/// decisions read it with acquire semantics. Map operations are papaya's: an entry is
/// fully built before any thread can find it.
///
/// # Time
///
/// Time that goes backwards only refuses more, as in `SlidingWindow`. One addition:
/// after a reclaim at time `t`, a new entry records no admission before `t`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use backstop_core::Quota;
/// use backstop_core::clock::ManualClock;
/// use backstop_core::rate::{KeyedRefusal, KeyedSlidingWindow};
///
/// let clock = ManualClock::new();
/// let minute = Duration::from_secs(60);
/// // 2 requests per minute per client, at most 2 clients tracked at once.
/// let limiter = KeyedSlidingWindow::with_clock(Quota::new(2, minute)?, 2, clock.clone())?;
/// limiter.set_limit("paying", Quota::new(3, minute)?)?;
///
/// for _ in 0..2 {
///     limiter.try_acquire(&"free").unwrap();
/// }
/// let refused = limiter.try_acquire(&"free").unwrap_err();
/// assert_eq!((refused.status_code(), refused.retry_after()), (429, minute));
///
/// for _ in 0..3 {
///     limiter.try_acquire(&"paying").unwrap(); // its own budget, and a larger one
/// }
///
/// // Both tracked keys hold admissions in their windows: a third client must wait.
/// let refused = limiter.try_acquire(&"new").unwrap_err();
/// assert!(matches!(refused, KeyedRefusal::TooManyKeys(_)));
/// assert_eq!((refused.status_code(), refused.retry_after()), (503, minute));
///
/// // A minute later both windows are empty; they are reclaimed to make room.
/// clock.advance(minute);
/// limiter.try_acquire(&"new").unwrap();
/// assert!(limiter.len() <= 2);
/// # Ok::<(), backstop_core::ConfigError>(())
/// ```
pub struct KeyedSlidingWindow<K, C = QuantaClock> {
    entries: Table<K, Entry>,
    overrides: Table<K, Quota>,
    default: Quota,
    clock: C,
    max_keys: usize,
    /// Entries in the table plus inserts in flight; never above `max_keys`. Padded: every
    /// new key and every reclaim writes it, while lookups read the fields above.
    keys: CachePadded<AtomicUsize>,
    override_count: AtomicUsize,
    /// No entry's window can be empty before this time (see the module docs);
    /// `u64::MAX` while a sweep recomputes it.
    sweep_from_ns: CachePadded<AtomicU64>,
    /// Claimed by the one thread that runs a lazy sweep.
    sweeping: AtomicBool,
    /// The latest time at which a sweep reclaimed (the watermark in the module docs).
    reclaimed_at_ns: AtomicU64,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedSlidingWindow<K, QuantaClock> {
    /// A keyed limiter of `quota` for each key, tracking at most `max_keys` keys, on the
    /// default monotonic clock.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `max_keys` when it is 0 or above [`MAX_KEYS`].
    pub fn new(quota: Quota, max_keys: usize) -> Result<Self, ConfigError> {
        Self::with_clock(quota, max_keys, QuantaClock::new())
    }
}

// The map hands out `&Entry` here and `Arc<Entry>` under loom; the borrows that the
// second needs are no-ops for the first.
#[cfg_attr(not(loom), allow(clippy::needless_borrow, clippy::borrow_deref_ref))]
impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> KeyedSlidingWindow<K, C> {
    /// As [`new`](KeyedSlidingWindow::new), on `clock`.
    ///
    /// # Errors
    ///
    /// As [`new`](KeyedSlidingWindow::new).
    pub fn with_clock(default: Quota, max_keys: usize, clock: C) -> Result<Self, ConfigError> {
        if max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if max_keys > MAX_KEYS {
            return Err(ConfigError::new(
                "max_keys",
                format!("{max_keys} is above the maximum of {MAX_KEYS}"),
            ));
        }
        Ok(KeyedSlidingWindow {
            entries: Table::new(),
            overrides: Table::new(),
            default,
            clock,
            max_keys,
            keys: CachePadded::new(AtomicUsize::new(0)),
            override_count: AtomicUsize::new(0),
            sweep_from_ns: CachePadded::new(AtomicU64::new(0)),
            sweeping: AtomicBool::new(false),
            reclaimed_at_ns: AtomicU64::new(0),
        })
    }

    /// Admits one request for `key` now, or says why not. `key` may be any borrowed
    /// form of `K` (`&str` for `String` keys); it is copied only when it is new.
    ///
    /// # Errors
    ///
    /// [`KeyedRefusal::RateLimited`] when `key`'s window holds its limit;
    /// [`KeyedRefusal::TooManyKeys`] when `key` is new and every tracked key still has
    /// admissions in its window.
    #[inline]
    pub fn try_acquire<Q>(&self, key: &Q) -> Result<(), KeyedRefusal>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.try_acquire_at(key, self.clock.now_ns())
    }

    /// As [`try_acquire`](Self::try_acquire), at `now_ns` on this limiter's clock.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    #[inline]
    pub fn try_acquire_at<Q>(&self, key: &Q, now_ns: u64) -> Result<(), KeyedRefusal>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now_ns = now_ns.min(MAX_TIME_NS);
        let guard = self.entries.guard();
        loop {
            let Some(entry) = self.entries.get(key, &guard) else {
                match self.acquire_new(key, now_ns, &guard) {
                    Some(decided) => return decided,
                    None => continue,
                }
            };
            match entry.try_acquire_at(now_ns) {
                Ok(()) => return Ok(()),
                Err(Refused::Wait(wait_ns)) => return Err(refused(wait_ns)),
                Err(Refused::Sealed) => {
                    if self.rebuild(key, &entry, now_ns, &guard) {
                        self.conform_after_install(key);
                    }
                }
            }
        }
    }

    /// The first request of a key: reserve room, insert an entry, admit into it. `None`
    /// when another thread's entry won the insert, or a sweep sealed ours: look again.
    #[cold]
    fn acquire_new<Q>(
        &self,
        key: &Q,
        now_ns: u64,
        guard: &Guard<'_>,
    ) -> Option<Result<(), KeyedRefusal>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Err(refused) = self.reserve_key(now_ns) {
            return Some(Err(refused.into()));
        }
        // Relaxed: a stale zero is caught by the check after the install below.
        let quota = if self.override_count.load(Ordering::Relaxed) == 0 {
            self.default
        } else {
            self.quota_for(key)
        };
        // Acquire: pairs with the sweep's AcqRel fetch_max, made before it sealed the
        // entry whose removal let this key be inserted again.
        let floor_ns = self.reclaimed_at_ns.load(Ordering::Acquire);
        let entry = Entry::new(quota, floor_ns);
        let Ok(entry) = self.entries.try_insert(key.to_owned(), entry, guard) else {
            // Another thread's entry for this key won: give the room back and use it.
            // Relaxed: the counter publishes nothing; its RMW order alone keeps the bound.
            self.keys.fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        let decided = entry.try_acquire_at(now_ns);
        self.record_empty_from(&entry);
        // SeqCst: as in conform_after_install.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence. A set_limit raises the count before its own
        // fence and look at the entries, so either we see the count or it sees our
        // entry (and reshapes it).
        if quota != self.default || self.override_count.load(Ordering::Relaxed) != 0 {
            self.conform(key);
        }
        match decided {
            Ok(()) => Some(Ok(())),
            Err(Refused::Wait(wait_ns)) => Some(Err(refused(wait_ns))),
            Err(Refused::Sealed) => None,
        }
    }

    /// Takes one unit of room, sweeping once if the table is full and a window may have
    /// emptied.
    fn reserve_key(&self, now_ns: u64) -> Result<(), TooManyKeys> {
        let mut swept = false;
        // Relaxed throughout: the counter publishes no data; the bound holds because
        // all changes to it are RMWs in one total order.
        let mut keys = self.keys.load(Ordering::Relaxed);
        loop {
            if keys >= self.max_keys {
                if swept {
                    return Err(self.too_many_keys(now_ns));
                }
                self.lazy_sweep(now_ns)?;
                swept = true;
                keys = self.keys.load(Ordering::Relaxed);
                continue;
            }
            match self.keys.compare_exchange_weak(
                keys,
                keys + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => keys = actual,
            }
        }
    }

    fn too_many_keys(&self, now_ns: u64) -> TooManyKeys {
        // Acquire: pairs with the sweep's and installers' AcqRel updates.
        let from_ns = self.sweep_from_ns.load(Ordering::Acquire);
        let retry_after_ns = if from_ns == u64::MAX {
            0 // a sweep is recomputing it right now.
        } else {
            from_ns.saturating_sub(now_ns)
        };
        TooManyKeys {
            max_keys: self.max_keys,
            retry_after: Duration::from_nanos(retry_after_ns),
        }
    }

    /// Sweeps the full table if some window may have emptied and nobody else is
    /// sweeping; otherwise refuses at once.
    #[cold]
    fn lazy_sweep(&self, now_ns: u64) -> Result<(), TooManyKeys> {
        // Acquire: as in too_many_keys.
        let from_ns = self.sweep_from_ns.load(Ordering::Acquire);
        // `u64::MAX` means unknown (a sweep is recomputing it, or found only entries
        // other threads were replacing): sweep rather than trust it.
        if from_ns != u64::MAX && now_ns < from_ns {
            return Err(self.too_many_keys(now_ns));
        }
        // Acquire on success: the previous sweeper's table changes are visible.
        if self.sweeping.swap(true, Ordering::Acquire) {
            return Err(self.too_many_keys(now_ns));
        }
        self.sweep(now_ns);
        // Release: hands this sweep's changes to the next sweeper.
        self.sweeping.store(false, Ordering::Release);
        Ok(())
    }

    /// Reclaims every key whose window is empty now, and returns how many it reclaimed.
    ///
    /// Keys with admissions still in their windows are kept, whatever the table's size.
    /// Safe to call from any thread at any time (a maintenance task might call it every
    /// few windows); it takes no lock and makes no admission wait. O(keys).
    pub fn retain_recent(&self) -> usize {
        self.sweep(self.clock.now_ns().min(MAX_TIME_NS))
    }

    fn sweep(&self, now_ns: u64) -> usize {
        // Before any seal (see the module docs). AcqRel: pairs with acquire_new's load.
        self.reclaimed_at_ns.fetch_max(now_ns, Ordering::AcqRel);
        // Entries installed from now on lower this themselves; the walk below covers
        // the ones installed before. Release: pairs with the Acquire loads of readers.
        self.sweep_from_ns.store(u64::MAX, Ordering::Release);
        let guard = self.entries.guard();
        let mut earliest_ns = u64::MAX;
        let mut reclaimed = 0;
        self.entries.for_each(&guard, |key, entry| {
            match entry.ring.seal(Some(now_ns)) {
                Sealing::Sealed => {
                    // Fails only if an admitter already replaced the sealed entry with a
                    // rebuilt one: then the key stays, and so does its room.
                    if self.entries.remove_if_is(key, &*entry, &guard) {
                        // Relaxed: as in reserve_key.
                        self.keys.fetch_sub(1, Ordering::Relaxed);
                        reclaimed += 1;
                    }
                }
                Sealing::Live { empty_from_ns } => earliest_ns = earliest_ns.min(empty_from_ns),
                // Being reshaped or reclaimed by another thread, whose new entry (if
                // any) records its own time.
                Sealing::AlreadySealed => {}
            }
        });
        // AcqRel: ordered with the installers' fetch_min on the same atomic.
        self.sweep_from_ns.fetch_min(earliest_ns, Ordering::AcqRel);
        reclaimed
    }

    /// Lowers the sweep bound to a newly installed entry's empty time.
    fn record_empty_from(&self, entry: &Entry) {
        // AcqRel: ordered with the sweep's store and fetch_min on the same atomic.
        self.sweep_from_ns
            .fetch_min(entry.ring.empty_from_ns(), Ordering::AcqRel);
    }

    /// Replaces `sealed`, if it is still `key`'s entry, with an entry of the key's
    /// current shape that keeps the sealed ring's history; whether this call did.
    #[cold]
    fn rebuild<Q>(&self, key: &Q, sealed: &Entry, now_ns: u64, guard: &Guard<'_>) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let quota = self.quota_for(key);
        // Acquire: as in acquire_new.
        let floor_ns = self.reclaimed_at_ns.load(Ordering::Acquire);
        let make = || Entry::reshaped(sealed, quota, floor_ns, now_ns);
        match self
            .entries
            .replace_if_is(key.to_owned(), sealed, make, guard)
        {
            Some(entry) => {
                self.record_empty_from(&entry);
                true
            }
            None => false,
        }
    }

    /// After installing an entry: if an override changed meanwhile, reshape.
    fn conform_after_install<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // SeqCst: the install above and set_limit's override write each come before a
        // fence and a read of the other's map; so at least one side sees the other.
        fence(Ordering::SeqCst);
        self.conform(key);
    }

    /// Makes `key`'s entry, if any, have the key's current shape.
    fn conform<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let guard = self.entries.guard();
        while let Some(entry) = self.entries.get(key, &guard) {
            if entry.quota == self.quota_for(key) && !entry.ring.is_sealed() {
                return;
            }
            entry.ring.seal(None);
            let now_ns = self.clock.now_ns().min(MAX_TIME_NS);
            self.rebuild(key, &entry, now_ns, &guard);
        }
    }

    /// `key`'s quota: its own if [`set_limit`](Self::set_limit) gave it one, else the
    /// default.
    pub fn quota_for<Q>(&self, key: &Q) -> Quota
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.overrides.guard();
        match self.overrides.get(key, &guard) {
            Some(quota) => *quota,
            None => self.default,
        }
    }

    /// Gives `key` its own `quota` (e.g. a paying tier), now and until
    /// [`clear_limit`](Self::clear_limit). The key's recent admissions carry over: if
    /// its window already holds more than the new limit, it is refused at once.
    ///
    /// Admissions of `key` that race this call are kept (none is lost), but may briefly
    /// be judged by the old shape.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `overrides` when `max_keys` keys already have their own
    /// limits.
    pub fn set_limit(&self, key: K, quota: Quota) -> Result<(), ConfigError> {
        let guard = self.overrides.guard();
        loop {
            if let Some(current) = self.overrides.get(&key, &guard) {
                let current: *const Quota = &*current;
                if self
                    .overrides
                    .replace_if_is(key.clone(), current, || quota, &guard)
                    .is_some()
                {
                    break;
                }
                continue;
            }
            // Relaxed: a bound only, as for `keys`.
            if self.override_count.fetch_add(1, Ordering::Relaxed) >= self.max_keys {
                self.override_count.fetch_sub(1, Ordering::Relaxed);
                return Err(ConfigError::new(
                    "overrides",
                    format!(
                        "{} keys already have their own limit (at most max_keys)",
                        self.max_keys
                    ),
                ));
            }
            if self
                .overrides
                .try_insert(key.clone(), quota, &guard)
                .is_ok()
            {
                break;
            }
            self.override_count.fetch_sub(1, Ordering::Relaxed);
        }
        self.conform_after_install(&key);
        Ok(())
    }

    /// Returns `key` to the default limit; whether it had its own. Its recent
    /// admissions carry over, as in [`set_limit`](Self::set_limit).
    pub fn clear_limit<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let guard = self.overrides.guard();
        let had = self.overrides.remove(key, &guard);
        if had {
            // Relaxed: a bound only, as for `keys`.
            self.override_count.fetch_sub(1, Ordering::Relaxed);
        }
        self.conform_after_install(key);
        had
    }

    /// How many requests `key` would be admitted now, were nothing else admitted
    /// meanwhile (its full limit when it has no window). Under concurrency, a count
    /// that was true at some moment during the call; for headers, not for deciding.
    pub fn available<Q>(&self, key: &Q) -> u32
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now_ns = self.clock.now_ns().min(MAX_TIME_NS);
        let guard = self.entries.guard();
        match self.entries.get(key, &guard) {
            Some(entry) if !entry.ring.is_sealed() => {
                entry.ring.available_at(now_ns.max(entry.floor_ns))
            }
            _ => self.quota_for(key).limit(),
        }
    }

    /// How many keys have a window now (including inserts in flight): a count that was
    /// true at some moment during the call. Never above [`max_keys`](Self::max_keys).
    pub fn len(&self) -> usize {
        // Relaxed: a report only.
        self.keys.load(Ordering::Relaxed)
    }

    /// Whether no key has a window (as racy as [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys that may have a window at once.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The clock this limiter reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Bytes one key's window takes at `limit`, as measured by the counting allocator of
    /// `tests/keyed_memory.rs`: papaya's allocation of the key beside its entry (128
    /// bytes for a `u64` key), the ring's slots (two of 8 bytes per unit of `limit`
    /// rounded up to a power of two), and about 40 bytes of papaya's table
    /// (pointer and tag per slot, kept at most about a quarter full).
    /// For a `u64` key and the default 30 per minute: 680 bytes.
    pub fn bytes_per_key(limit: u32) -> usize {
        const TABLE_BYTES_PER_KEY: usize = 40;
        std::mem::size_of::<(K, Entry)>() + AdmissionRing::bytes_for(limit) + TABLE_BYTES_PER_KEY
            - std::mem::size_of::<AdmissionRing>()
    }
}

fn refused(wait_ns: u64) -> KeyedRefusal {
    KeyedRefusal::RateLimited(RateLimited::from_nanos(wait_ns))
}

impl<K, C> fmt::Debug for KeyedSlidingWindow<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedSlidingWindow")
            .field("limit", &self.default.limit())
            .field("window", &self.default.window())
            .field("max_keys", &self.max_keys)
            .field("keys", &self.keys.load(Ordering::Relaxed))
            .finish()
    }
}

/// Model-checked races: run with
/// `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p backstop-core --release --lib --target-dir target/loom -- loom`.
/// Two threads each, limit 1 or 2: the smallest cases in which an insert, a reclaim or a
/// reshape can race an admission. A preemption bound of 2 covers every interleaving in
/// which each thread is interrupted at most twice, enough to put the racing CAS or map
/// operation between any read and write of the other thread, at a cost loom can finish.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::sync::Arc;

    const WINDOW: Duration = Duration::from_nanos(10);

    fn quota(limit: u32) -> Quota {
        Quota::new(limit, WINDOW).unwrap()
    }

    fn keyed(limit: u32, max_keys: usize) -> Arc<KeyedSlidingWindow<u32, ManualClock>> {
        Arc::new(
            KeyedSlidingWindow::with_clock(quota(limit), max_keys, ManualClock::new()).unwrap(),
        )
    }

    #[test]
    fn loom_two_threads_inserting_one_key_make_one_window() {
        loom::model(|| {
            let keyed = keyed(1, 4);
            let other = keyed.clone();
            let thread = loom::thread::spawn(move || other.try_acquire_at(&7, 0).is_ok());
            let here = keyed.try_acquire_at(&7, 0).is_ok();
            let there = thread.join().unwrap();
            assert!(here ^ there, "exactly one admission: one window");
            assert_eq!(keyed.len(), 1);
        });
    }

    #[test]
    fn loom_reclaim_racing_an_admission_loses_no_window() {
        loom::model(|| {
            let keyed = keyed(1, 4);
            keyed.try_acquire_at(&1, 0).unwrap();
            keyed.clock().set(WINDOW); // key 1's window is empty now
            let sweeper = keyed.clone();
            let thread = loom::thread::spawn(move || sweeper.retain_recent());
            keyed.try_acquire_at(&1, 10).unwrap();
            thread.join().unwrap();
            // Whatever the order, the admission at 10 is in key 1's window.
            assert!(matches!(
                keyed.try_acquire_at(&1, 10),
                Err(KeyedRefusal::RateLimited(_))
            ));
            assert_eq!(keyed.len(), 1);
        });
    }

    #[test]
    fn loom_lazy_reclaim_racing_the_old_key() {
        loom::model(|| {
            let keyed = keyed(1, 1);
            keyed.try_acquire_at(&1, 0).unwrap();
            let newcomer = keyed.clone();
            let thread = loom::thread::spawn(move || newcomer.try_acquire_at(&2, 10).is_ok());
            let old_admitted = keyed.try_acquire_at(&1, 10).is_ok();
            let new_admitted = thread.join().unwrap();
            assert!(old_admitted ^ new_admitted, "one key fits, and it is live");
            assert_eq!(keyed.len(), 1);
            let winner = if old_admitted { 1 } else { 2 };
            assert!(matches!(
                keyed.try_acquire_at(&winner, 10),
                Err(KeyedRefusal::RateLimited(_))
            ));
        });
    }

    #[test]
    fn loom_override_racing_a_new_keys_insert_applies() {
        loom::model(|| {
            let keyed = keyed(2, 2);
            let admin = keyed.clone();
            let thread = loom::thread::spawn(move || admin.set_limit(1, quota(1)).unwrap());
            keyed.try_acquire_at(&1, 0).unwrap(); // a new key: always room
            thread.join().unwrap();
            // Whichever came first, key 1's window now has limit 1 and one admission.
            assert!(keyed.try_acquire_at(&1, 0).is_err());
        });
    }

    #[test]
    fn loom_reshape_racing_an_admission_keeps_it() {
        loom::model(|| {
            let keyed = keyed(2, 2);
            keyed.try_acquire_at(&1, 0).unwrap();
            let admin = keyed.clone();
            let thread = loom::thread::spawn(move || admin.set_limit(1, quota(1)).unwrap());
            let raced = keyed.try_acquire_at(&1, 0).is_ok();
            thread.join().unwrap();
            assert_eq!(keyed.quota_for(&1).limit(), 1);
            assert!(
                keyed.try_acquire_at(&1, 0).is_err(),
                "limit 1, one admission"
            );
            // Back to 2: room iff the raced admission did not happen.
            keyed.clear_limit(&1);
            assert_eq!(keyed.try_acquire_at(&1, 0).is_ok(), !raced);
        });
    }
}
