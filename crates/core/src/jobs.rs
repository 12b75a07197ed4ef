//! Job counters: the bounded queue of waiting jobs and the bounded set of running ones.
//!
//! A request that passed the rate limiter takes a [`QueueTicket`] from the [`QueueGate`]
//! (or is refused with 503 when `max_queue` jobs already wait). A worker later turns the
//! ticket into a [`JobPermit`] through [`JobSlots::try_start`] when one of `max_jobs`
//! slots is free. Both are RAII guards: dropping one, also during a panic's unwind,
//! releases it exactly once.
//!
//! # One word for both counts
//!
//! The number waiting and the number running live in one 64-bit atomic (waiting in the
//! low half, running in the high half), so the hand-off from ticket to permit is a single
//! compare-and-swap: there is no instant at which a job is counted both waiting and
//! running, or neither. Bounds are enforced by compare-and-swap loops, never by
//! add-then-undo, so no reader ever sees a count above its bound, even transiently.
//!
//! ```
//! use backstop_core::jobs::{self, JobBounds};
//!
//! let (queue, slots) = jobs::counters(JobBounds { max_queue: 2, critical_reserve: 0, max_jobs: 1 })?;
//! let first = queue.try_enter().expect("room in the queue");
//! let second = queue.try_enter().expect("room in the queue");
//! assert!(queue.try_enter().is_err(), "two waiting is the bound");
//!
//! let running = slots.try_start(first).expect("a free slot");
//! assert_eq!((queue.len(), slots.active()), (1, 1));
//! // No slot left: the job stays queued and the ticket comes back.
//! let second = slots.try_start(second).unwrap_err();
//! drop(running);
//! let _running = slots.try_start(second).expect("the slot was freed");
//! assert_eq!((queue.len(), slots.active()), (0, 1));
//! # Ok::<(), backstop_core::ConfigError>(())
//! ```

use std::fmt;
use std::mem::ManuallyDrop;

use crossbeam_utils::CachePadded;

use crate::ConfigError;
use crate::histogram::HistogramSnapshot;
use crate::job_times::{JobTimes, UNKNOWN_NS};
use std::ptr::NonNull;

use crate::sync::{Arc, AtomicU32, AtomicU64, Ordering, fence};

/// The largest `max_queue` accepted: a bound on memory held by waiting requests.
pub const MAX_QUEUE: u32 = 1 << 20;

/// The largest `max_jobs` accepted.
pub const MAX_JOBS: u32 = 1 << 20;

/// One job waiting, in the packed count word.
const WAITING_ONE: u64 = 1;
/// One job running, in the packed count word.
const RUNNING_ONE: u64 = 1 << 32;

/// Set in the packed count word when the last handle ([`QueueGate`], [`JobSlots`] and
/// their clones) is gone: from then on the word only falls, and whoever brings it to
/// exactly `CLOSED` frees the state (see [`JobState`]).
const CLOSED: u64 = 1 << 31;

// Both halves must hold their bound with room to spare, so that no arithmetic on one half
// ever carries into the other, and the waiting half must leave the closed bit alone.
const _: () = assert!((MAX_QUEUE as u64) < CLOSED && (MAX_JOBS as u64) < u32::MAX as u64);

#[inline(always)]
fn waiting(word: u64) -> u32 {
    (word & (CLOSED - 1)) as u32
}

#[inline(always)]
fn running(word: u64) -> u32 {
    (word >> 32) as u32
}

/// How much room a queued request may use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Ordinary requests: they may fill the queue up to `max_queue - critical_reserve`.
    #[default]
    Normal,
    /// Requests that may also use the `critical_reserve` kept back from `Normal` ones.
    Critical,
}

/// The bounds of a pair of job counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobBounds {
    /// Most jobs waiting at once, 1 to [`MAX_QUEUE`].
    pub max_queue: u32,
    /// Queue room only [`Priority::Critical`] requests may use; below `max_queue`.
    pub critical_reserve: u32,
    /// Most jobs running at once, 1 to [`MAX_JOBS`].
    pub max_jobs: u32,
}

impl JobBounds {
    /// Checks each bound, naming the field (`queue.max`, `queue.critical_reserve`,
    /// `jobs.max`, as in [`Limits`](crate::Limits)) that is out of range.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero or too large bound, or a reserve that leaves no room
    /// for normal requests.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_queue == 0 || self.max_queue > MAX_QUEUE {
            return Err(ConfigError::new(
                "queue.max",
                format_args!("must be 1 to {MAX_QUEUE}, got {}", self.max_queue),
            ));
        }
        if self.critical_reserve >= self.max_queue {
            return Err(ConfigError::new(
                "queue.critical_reserve",
                format_args!(
                    "must be below queue.max ({}) so normal requests have room, got {}",
                    self.max_queue, self.critical_reserve
                ),
            ));
        }
        if self.max_jobs == 0 || self.max_jobs > MAX_JOBS {
            return Err(ConfigError::new(
                "jobs.max",
                format_args!("must be 1 to {MAX_JOBS}, got {}", self.max_jobs),
            ));
        }
        Ok(())
    }
}

/// The state a queue gate, its job slots and every ticket and permit share.
///
/// Tickets and permits hold a plain pointer to it, not an `Arc`: they are already
/// counted in `counts`, and a second (reference) count would cost two more atomic
/// read-modify-writes per admission. The handles share an [`Owner`]; when the last one
/// goes it sets [`CLOSED`] in `counts`, and the state is freed by whoever leaves `counts`
/// at exactly `CLOSED`: that owner (no ticket or permit out) or the last ticket or permit
/// dropped after it. No ticket or permit is made without a handle, so after `CLOSED` the
/// word only falls and exactly one party sees it reach `CLOSED`.
pub(crate) struct JobState {
    /// Waiting jobs in the low 32 bits, running jobs in the high 32 bits. Padded: every
    /// admission and every job start and finish writes it, from any thread.
    counts: CachePadded<AtomicU64>,
    /// Bounds, read on every attempt and written only on reconfiguration.
    max_queue: AtomicU32,
    normal_max_queue: AtomicU32,
    max_jobs: AtomicU32,
    /// Lifetime totals, kept only when asked for ([`counters_with_totals`]): each costs
    /// an atomic add per job start or finish, which bare counters need not pay.
    totals: Option<Totals>,
    /// The clock and histograms of jobs' queue waits and run times, kept only when asked
    /// for ([`counters_with_times`]).
    times: Option<JobTimes>,
    /// Tests count how often a state is freed: exactly once, whoever goes last.
    #[cfg(test)]
    frees: Option<Arc<AtomicU32>>,
}

#[cfg(test)]
impl Drop for JobState {
    fn drop(&mut self) {
        if let Some(frees) = &self.frees {
            frees.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Jobs started and finished, apart from the hot word so that reading them for a scrape
/// never slows an admission.
struct Totals {
    started: CachePadded<AtomicU64>,
    finished: CachePadded<AtomicU64>,
}

impl JobState {
    fn new(bounds: JobBounds, with_totals: bool, times: Option<JobTimes>) -> Self {
        JobState {
            counts: CachePadded::new(AtomicU64::new(0)),
            max_queue: AtomicU32::new(bounds.max_queue),
            normal_max_queue: AtomicU32::new(bounds.max_queue - bounds.critical_reserve),
            max_jobs: AtomicU32::new(bounds.max_jobs),
            totals: with_totals.then(|| Totals {
                started: CachePadded::new(AtomicU64::new(0)),
                finished: CachePadded::new(AtomicU64::new(0)),
            }),
            times,
            #[cfg(test)]
            frees: None,
        }
    }

    #[inline]
    fn queue_bound(&self, priority: Priority) -> u32 {
        // Relaxed: a bound is a lone value; during a reconfiguration an attempt may see the
        // old or the new one, and either is a bound the operator asked for.
        match priority {
            Priority::Normal => self.normal_max_queue.load(Ordering::Relaxed),
            Priority::Critical => self.max_queue.load(Ordering::Relaxed),
        }
    }

    /// Adds one waiting job if fewer than `bound` wait; its ticket carries `entered_at_ns`.
    #[inline]
    fn enter_below(this: &Owner, bound: u32, entered_at_ns: u64) -> Result<QueueTicket, QueueFull> {
        let state = this.state;
        let this = this.state();
        // Relaxed throughout: a ticket guards no other memory, and read-modify-writes of
        // one atomic are totally ordered whatever their ordering, which is all the bound
        // needs.
        let mut word = this.counts.load(Ordering::Relaxed);
        loop {
            if waiting(word) >= bound {
                return Err(QueueFull { max_queue: bound });
            }
            match this.counts.compare_exchange_weak(
                word,
                word + WAITING_ONE,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(QueueTicket {
                        state,
                        entered_at_ns,
                    });
                }
                Err(now) => word = now,
            }
        }
    }

    /// Moves one job from waiting to running if a slot is free; the caller holds a ticket.
    #[inline]
    fn start(&self) -> bool {
        self.add_running(RUNNING_ONE - WAITING_ONE)
    }

    /// Adds one running job without a ticket if a slot is free.
    #[inline]
    fn acquire(&self) -> bool {
        self.add_running(RUNNING_ONE)
    }

    /// Adds `delta` to the counts word if a slot is free: one more running job, and, for
    /// a start, one fewer waiting in the same CAS.
    #[inline]
    fn add_running(&self, delta: u64) -> bool {
        let max_jobs = self.max_jobs.load(Ordering::Relaxed); // Relaxed: see queue_bound.
        // Relaxed: only a first guess for the CAS, which rereads on failure.
        let mut word = self.counts.load(Ordering::Relaxed);
        loop {
            debug_assert!(
                delta == RUNNING_ONE || waiting(word) >= 1,
                "a ticket is outstanding"
            );
            if running(word) >= max_jobs {
                return false;
            }
            // Acquire on success pairs with the Release of a finished permit's drop, as
            // with a semaphore: a job sees what the jobs that freed its slot did.
            match self.counts.compare_exchange_weak(
                word,
                word.wrapping_add(delta),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.count_start();
                    return true;
                }
                Err(now) => word = now,
            }
        }
    }

    #[inline]
    fn count_start(&self) {
        if let Some(totals) = &self.totals {
            // Relaxed: a statistic, read only for reporting.
            totals.started.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (waiting, running) at one instant.
    fn counts(&self) -> (u32, u32) {
        // Relaxed: a report of one moment; both halves come from the same load.
        let word = self.counts.load(Ordering::Relaxed);
        (waiting(word), running(word))
    }

    fn set_bounds(&self, bounds: JobBounds) -> Result<(), ConfigError> {
        bounds.validate()?;
        // Relaxed: see queue_bound. Each bound is independently a valid one.
        self.max_queue.store(bounds.max_queue, Ordering::Relaxed);
        self.normal_max_queue.store(
            bounds.max_queue - bounds.critical_reserve,
            Ordering::Relaxed,
        );
        self.max_jobs.store(bounds.max_jobs, Ordering::Relaxed);
        Ok(())
    }

    fn bounds(&self) -> JobBounds {
        // Relaxed: see queue_bound.
        let max_queue = self.max_queue.load(Ordering::Relaxed);
        let normal = self.normal_max_queue.load(Ordering::Relaxed);
        JobBounds {
            max_queue,
            critical_reserve: max_queue.saturating_sub(normal),
            max_jobs: self.max_jobs.load(Ordering::Relaxed),
        }
    }
}

/// A new queue gate and the job slots its tickets are started on.
///
/// # Errors
///
/// As [`JobBounds::validate`].
pub fn counters(bounds: JobBounds) -> Result<(QueueGate, JobSlots), ConfigError> {
    new_counters(bounds, false, None)
}

/// As [`counters`], also keeping lifetime totals of jobs started and finished
/// ([`JobSlots::started_total`]), for metrics; each start and finish then costs one more
/// relaxed atomic add. [`Admission`](crate::Admission) uses these.
///
/// # Errors
///
/// As [`JobBounds::validate`].
pub fn counters_with_totals(bounds: JobBounds) -> Result<(QueueGate, JobSlots), ConfigError> {
    new_counters(bounds, true, None)
}

/// As [`counters_with_totals`], also timing every job on `clock` (nanoseconds): how long
/// it waited, from its ticket to its start, and how long it ran, from its start to its
/// permit's drop ([`JobSlots::queue_waits`], [`JobSlots::run_times`]). The clock is read
/// when a ticket is issued ([`QueueGate::try_enter_as`]), when a job starts and when it
/// finishes; the histograms are written only at the start and the finish.
/// [`Admission`](crate::Admission) uses these, and gives each ticket the time its rate
/// decision read instead of reading the clock again.
///
/// ```
/// use backstop_core::clock::{Clock, ManualClock};
/// use backstop_core::jobs::{self, JobBounds};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let time = clock.clone();
/// let bounds = JobBounds { max_queue: 4, critical_reserve: 0, max_jobs: 1 };
/// let (queue, slots) = jobs::counters_with_times(bounds, move || time.now_ns())?;
/// let ticket = queue.try_enter()?;
/// clock.advance(Duration::from_secs(3)); // waits 3 s
/// let permit = slots.try_start(ticket).expect("a free slot");
/// clock.advance(Duration::from_secs(40)); // runs 40 s
/// drop(permit);
/// let waits = slots.queue_waits().unwrap();
/// assert_eq!((waits.count(), waits.sum_seconds), (1, 3.0));
/// let runs = slots.run_times().unwrap();
/// assert_eq!((runs.count(), runs.sum_seconds), (1, 40.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`JobBounds::validate`].
pub fn counters_with_times(
    bounds: JobBounds,
    clock: impl Fn() -> u64 + Send + Sync + 'static,
) -> Result<(QueueGate, JobSlots), ConfigError> {
    new_counters(bounds, true, Some(JobTimes::new(clock)))
}

fn new_counters(
    bounds: JobBounds,
    with_totals: bool,
    times: Option<JobTimes>,
) -> Result<(QueueGate, JobSlots), ConfigError> {
    bounds.validate()?;
    Ok(from_state(JobState::new(bounds, with_totals, times)))
}

/// Counters whose state counts its frees into `frees`, for tests.
#[cfg(test)]
fn counting_frees(bounds: JobBounds, frees: &Arc<AtomicU32>) -> (QueueGate, JobSlots) {
    let mut state = JobState::new(bounds, true, None);
    state.frees = Some(Arc::clone(frees));
    from_state(state)
}

fn from_state(state: JobState) -> (QueueGate, JobSlots) {
    let state = NonNull::from(Box::leak(Box::new(state)));
    let owner = Arc::new(Owner { state });
    (
        QueueGate {
            state: Arc::clone(&owner),
        },
        JobSlots { state: owner },
    )
}

/// What the handles share: the state, freed (see [`JobState`]) when the last handle and
/// the last ticket or permit are gone.
struct Owner {
    state: NonNull<JobState>,
}

// SAFETY: `JobState` is only atomics and plain data read through `&`, so it may be shared
// and sent between threads; the pointer stays valid while an `Owner` lives (see `state`).
unsafe impl Send for Owner {}
// SAFETY: as for `Send`.
unsafe impl Sync for Owner {}

impl Owner {
    #[inline(always)]
    fn state(&self) -> &JobState {
        // SAFETY: the state is freed only after `CLOSED` is set, which happens in this
        // owner's drop; until then it lives, and it is only ever used through `&`.
        unsafe { self.state.as_ref() }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // AcqRel: Release so our uses of the state happen before a later freer's Acquire
        // fence; Acquire so that, if we free, every ticket's and permit's last use (their
        // Release decrements) happens before.
        let before = self.state().counts.fetch_or(CLOSED, Ordering::AcqRel);
        debug_assert_eq!(before & CLOSED, 0, "closed twice");
        if before == 0 {
            // SAFETY: nothing is out and no handle is left, so nothing can reach the
            // state any more; it came from `Box::leak` in `new_counters`.
            drop(unsafe { Box::from_raw(self.state.as_ptr()) });
        }
    }
}

/// Takes `one` (a waiting or running job) off the count word of `state`, freeing the
/// state when that leaves exactly [`CLOSED`]. `state` must not be used after.
///
/// # Safety
///
/// `state` is valid, and the caller holds the ticket or permit that `one` counts.
#[inline(always)]
unsafe fn release(state: NonNull<JobState>, one: u64) {
    // SAFETY: the caller's ticket or permit keeps `counts` above `CLOSED` until this
    // decrement, so the state is live here.
    let counts = unsafe { &state.as_ref().counts };
    // Release: our uses of the state (and, for a permit, the job's work: see `JobSlots`)
    // happen before the next start's Acquire CAS and before whoever frees the state.
    if counts.fetch_sub(one, Ordering::Release) == CLOSED | one {
        // Acquire: pairs with every other party's Release above, so their uses of the
        // state happen before it is freed.
        fence(Ordering::Acquire);
        // SAFETY: the last handle is gone (`CLOSED`) and this was the last ticket or
        // permit, so no one else can reach the state; it came from `Box::leak`.
        drop(unsafe { Box::from_raw(state.as_ptr()) });
    }
}

/// The bounded count of jobs waiting to start (503 `queue_full` beyond it).
///
/// Clones share one count.
///
/// # Memory ordering
///
/// Entering and leaving the queue synchronise nothing but the count itself: a ticket is
/// a place in line, not a lock.
#[derive(Clone)]
pub struct QueueGate {
    state: Arc<Owner>,
}

impl QueueGate {
    /// Takes a place in the queue for a [`Priority::Normal`] request.
    ///
    /// # Errors
    ///
    /// [`QueueFull`] when `max_queue - critical_reserve` jobs already wait.
    #[inline]
    pub fn try_enter(&self) -> Result<QueueTicket, QueueFull> {
        self.try_enter_as(Priority::Normal)
    }

    /// Takes a place in the queue for a request of `priority`.
    ///
    /// # Errors
    ///
    /// [`QueueFull`] when the queue holds as many jobs as `priority` may fill it with.
    #[inline]
    pub fn try_enter_as(&self, priority: Priority) -> Result<QueueTicket, QueueFull> {
        let state = self.state.state();
        let now_ns = state.times.as_ref().map_or(UNKNOWN_NS, JobTimes::now_ns);
        JobState::enter_below(&self.state, state.queue_bound(priority), now_ns)
    }

    /// As [`try_enter_as`](Self::try_enter_as), the ticket issued at `now_ns` (a time
    /// the caller already read on the counters' clock).
    #[inline]
    pub(crate) fn try_enter_at(
        &self,
        priority: Priority,
        now_ns: u64,
    ) -> Result<QueueTicket, QueueFull> {
        JobState::enter_below(
            &self.state,
            self.state.state().queue_bound(priority),
            now_ns,
        )
    }

    /// Takes a place while fewer than `bound` wait, whatever the configured bound (for
    /// shadow mode, which must keep counting past the bound it does not enforce), issued
    /// at `now_ns`.
    #[inline]
    pub(crate) fn try_enter_below(
        &self,
        bound: u32,
        now_ns: u64,
    ) -> Result<QueueTicket, QueueFull> {
        JobState::enter_below(&self.state, bound, now_ns)
    }

    /// How many jobs wait. There was a moment during the call when exactly this many
    /// waited; by the time it returns others may have come or gone.
    pub fn len(&self) -> u32 {
        self.state.state().counts().0
    }

    /// Whether no job waited at some moment during the call.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current bounds (shared with the job slots).
    pub fn bounds(&self) -> JobBounds {
        self.state.state().bounds()
    }

    /// Changes the bounds of this queue and its job slots at once, without touching
    /// tickets or permits already out. Lowering a bound below the current count refuses
    /// new entries (or starts) until enough have left.
    ///
    /// # Errors
    ///
    /// As [`JobBounds::validate`]; on error nothing changes.
    pub fn set_bounds(&self, bounds: JobBounds) -> Result<(), ConfigError> {
        self.state.state().set_bounds(bounds)
    }
}

impl fmt::Debug for QueueGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueGate")
            .field("len", &self.len())
            .field("bounds", &self.bounds())
            .finish()
    }
}

/// The bounded count of running jobs.
///
/// Clones share one count.
///
/// # Memory ordering
///
/// As with a semaphore: everything a job did before its [`JobPermit`] was dropped
/// happens before whatever the job that then takes the freed slot does.
#[derive(Clone)]
pub struct JobSlots {
    state: Arc<Owner>,
}

impl JobSlots {
    /// Starts the queued job of `ticket` if a slot is free: one atomic step takes it out
    /// of the queue and into a slot.
    ///
    /// # Errors
    ///
    /// The same ticket back, still queued, when all slots are taken.
    #[inline]
    pub fn try_start(&self, ticket: QueueTicket) -> Result<JobPermit, QueueTicket> {
        if self.state.state != ticket.state {
            // A ticket from another pair of counters cannot move between them; it stays
            // where it was rather than corrupting either count.
            return Err(ticket);
        }
        if !self.state.state().start() {
            return Err(ticket);
        }
        // The count moved from waiting to running in one step: the permit takes the
        // ticket's place, and the ticket's drop (which would count it out) never runs.
        let ticket = ManuallyDrop::new(ticket);
        let started_at_ns = match &self.state.state().times {
            Some(times) => times.start(ticket.entered_at_ns),
            None => UNKNOWN_NS,
        };
        Ok(JobPermit {
            state: ticket.state,
            started_at_ns,
        })
    }

    /// Takes a slot for a job that never queued (internal work).
    ///
    /// # Errors
    ///
    /// [`NoFreeSlot`] when all slots are taken.
    #[inline]
    pub fn try_acquire(&self) -> Result<JobPermit, NoFreeSlot> {
        let state = self.state.state();
        if state.acquire() {
            Ok(JobPermit {
                state: self.state.state,
                started_at_ns: state.times.as_ref().map_or(UNKNOWN_NS, JobTimes::now_ns),
            })
        } else {
            Err(NoFreeSlot {
                max_jobs: self.state.state().bounds().max_jobs,
            })
        }
    }

    /// How many jobs run; racy in the same way as [`QueueGate::len`].
    pub fn active(&self) -> u32 {
        self.state.state().counts().1
    }

    /// Jobs started so far; `None` unless made by [`counters_with_totals`].
    pub fn started_total(&self) -> Option<u64> {
        let totals = self.state.state().totals.as_ref()?;
        // Relaxed: a statistic.
        Some(totals.started.load(Ordering::Relaxed))
    }

    /// Jobs finished (permits dropped) so far; `None` unless made by
    /// [`counters_with_totals`].
    pub fn finished_total(&self) -> Option<u64> {
        let totals = self.state.state().totals.as_ref()?;
        // Relaxed: a statistic.
        Some(totals.finished.load(Ordering::Relaxed))
    }

    /// The current bounds (shared with the queue).
    pub fn bounds(&self) -> JobBounds {
        self.state.state().bounds()
    }

    /// How long the jobs started so far waited in the queue; `None` unless made by
    /// [`counters_with_times`].
    pub fn queue_waits(&self) -> Option<HistogramSnapshot> {
        Some(self.state.state().times.as_ref()?.queue_waits())
    }

    /// How long the jobs finished so far ran; `None` unless made by
    /// [`counters_with_times`].
    pub fn run_times(&self) -> Option<HistogramSnapshot> {
        Some(self.state.state().times.as_ref()?.run_times())
    }
}

impl fmt::Debug for JobSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSlots")
            .field("active", &self.active())
            .field("bounds", &self.bounds())
            .finish()
    }
}

/// A place in the queue. Dropping it leaves the queue; [`JobSlots::try_start`] turns it
/// into a [`JobPermit`].
///
/// `Send + 'static`: it owns a reference to the counters, so it can travel with the
/// request to whichever task or thread runs the job.
#[must_use = "dropping a ticket leaves the queue at once"]
pub struct QueueTicket {
    /// Valid while the ticket is counted (see [`JobState`]).
    state: NonNull<JobState>,
    /// When it was issued, on the counters' clock ([`UNKNOWN_NS`] without one).
    entered_at_ns: u64,
}

// SAFETY: the state is only atomics and plain data used through `&`, and stays valid
// while the ticket is counted, whichever thread holds it.
unsafe impl Send for QueueTicket {}
// SAFETY: as for `Send`; a `&QueueTicket` gives no access to the state.
unsafe impl Sync for QueueTicket {}

impl Drop for QueueTicket {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this ticket is counted in the state's word, so the state is valid, and
        // the ticket is never used again.
        unsafe { release(self.state, WAITING_ONE) }
    }
}

impl fmt::Debug for QueueTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueTicket").finish_non_exhaustive()
    }
}

/// A running job's slot. Dropping it, also on unwind, frees the slot.
#[must_use = "dropping a permit frees the slot at once"]
pub struct JobPermit {
    /// Valid while the permit is counted (see [`JobState`]).
    state: NonNull<JobState>,
    /// When the job started, on the counters' clock ([`UNKNOWN_NS`] without one).
    started_at_ns: u64,
}

// SAFETY: as for `QueueTicket`.
unsafe impl Send for JobPermit {}
// SAFETY: as for `QueueTicket`.
unsafe impl Sync for JobPermit {}

impl Drop for JobPermit {
    fn drop(&mut self) {
        // SAFETY: this permit is counted in the state's word, so the state is valid until
        // `release` below.
        let state = unsafe { self.state.as_ref() };
        if let Some(totals) = &state.totals {
            // Relaxed: a statistic. Counted before the slot is freed: after that the
            // state may be gone.
            totals.finished.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(times) = &state.times {
            // Timed before the slot is freed, for the same reason.
            times.finish(self.started_at_ns);
        }
        // `release` decrements with Release: everything this job did happens before the
        // next start (see JobSlots).
        // SAFETY: as above; the permit is never used again.
        unsafe { release(self.state, RUNNING_ONE) }
    }
}

impl fmt::Debug for JobPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobPermit").finish_non_exhaustive()
    }
}

/// The queue already holds as many jobs as the request's priority may fill it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("queue full: {max_queue} jobs waiting")]
pub struct QueueFull {
    /// The bound that was reached.
    pub max_queue: u32,
}

/// Every job slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("no free job slot: {max_jobs} jobs running")]
pub struct NoFreeSlot {
    /// The bound that was reached.
    pub max_jobs: u32,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn pair(max_queue: u32, critical_reserve: u32, max_jobs: u32) -> (QueueGate, JobSlots) {
        counters_with_totals(JobBounds {
            max_queue,
            critical_reserve,
            max_jobs,
        })
        .unwrap()
    }

    #[test]
    fn critical_requests_use_the_reserve_normal_ones_cannot() {
        let (queue, _slots) = pair(3, 1, 1);
        let _a = queue.try_enter().unwrap();
        let _b = queue.try_enter().unwrap();
        assert_eq!(queue.try_enter().unwrap_err(), QueueFull { max_queue: 2 });
        let _c = queue.try_enter_as(Priority::Critical).unwrap();
        assert_eq!(
            queue.try_enter_as(Priority::Critical).unwrap_err(),
            QueueFull { max_queue: 3 }
        );
        assert_eq!(queue.len(), 3);
    }

    #[test]
    fn a_ticket_from_other_counters_is_handed_back_untouched() {
        let (queue_a, _slots_a) = pair(2, 0, 2);
        let (_queue_b, slots_b) = pair(2, 0, 2);
        let ticket = queue_a.try_enter().unwrap();
        let ticket = slots_b.try_start(ticket).unwrap_err();
        assert_eq!((queue_a.len(), slots_b.active()), (1, 0));
        drop(ticket);
        assert_eq!(queue_a.len(), 0);
    }

    #[test]
    fn lowering_bounds_keeps_what_is_out_and_refuses_new_entries() {
        let (queue, slots) = pair(4, 0, 2);
        let tickets: Vec<_> = (0..4).map(|_| queue.try_enter().unwrap()).collect();
        queue
            .set_bounds(JobBounds {
                max_queue: 2,
                critical_reserve: 0,
                max_jobs: 1,
            })
            .unwrap();
        assert_eq!(queue.len(), 4, "nothing dropped");
        assert!(queue.try_enter().is_err());
        let mut tickets = tickets.into_iter();
        let _p = slots.try_start(tickets.next().unwrap()).unwrap();
        assert!(slots.try_start(tickets.next().unwrap()).is_err());
        drop(tickets);
        assert_eq!(queue.len(), 0);
        assert!(queue.try_enter().is_ok());
    }

    #[test]
    fn invalid_bounds_name_their_field_and_change_nothing() {
        let (queue, _slots) = pair(4, 1, 2);
        let cases = [
            ((0, 0, 1), "queue.max"),
            ((MAX_QUEUE + 1, 0, 1), "queue.max"),
            ((4, 4, 1), "queue.critical_reserve"),
            ((4, 0, 0), "jobs.max"),
            ((4, 0, MAX_JOBS + 1), "jobs.max"),
        ];
        for ((max_queue, critical_reserve, max_jobs), field) in cases {
            let err = queue
                .set_bounds(JobBounds {
                    max_queue,
                    critical_reserve,
                    max_jobs,
                })
                .unwrap_err();
            assert_eq!(err.field(), field);
        }
        assert_eq!(
            queue.bounds(),
            JobBounds {
                max_queue: 4,
                critical_reserve: 1,
                max_jobs: 2
            }
        );
    }

    #[test]
    fn guards_release_exactly_once_on_unwind() {
        let (queue, slots) = pair(2, 0, 2);
        let ticket = queue.try_enter().unwrap();
        let permit = slots.try_start(queue.try_enter().unwrap()).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _ticket = ticket;
            let _permit = permit;
            panic!("job failed");
        }));
        assert!(result.is_err());
        assert_eq!((queue.len(), slots.active()), (0, 0));
        assert_eq!(
            (slots.started_total(), slots.finished_total()),
            (Some(1), Some(1))
        );
    }

    #[test]
    fn bare_counters_keep_no_totals() {
        let bounds = JobBounds {
            max_queue: 1,
            critical_reserve: 0,
            max_jobs: 1,
        };
        let (_queue, slots) = counters(bounds).unwrap();
        drop(slots.try_acquire().unwrap());
        assert_eq!(
            (slots.started_total(), slots.finished_total()),
            (None, None)
        );
    }

    #[test]
    fn the_state_is_freed_once_by_whoever_goes_last() {
        let bounds = JobBounds {
            max_queue: 4,
            critical_reserve: 0,
            max_jobs: 2,
        };
        // Each order in which the two handles, a queued ticket, a started permit and an
        // acquired permit can go: the state must outlive all of them and be freed once.
        for order in 0..120u32 {
            let frees = Arc::new(AtomicU32::new(0));
            let (queue, slots) = counting_frees(bounds, &frees);
            let ticket = queue.try_enter().unwrap();
            let started = slots.try_start(queue.try_enter().unwrap()).unwrap();
            let acquired = slots.try_acquire().unwrap();
            let mut parts: Vec<Box<dyn FnOnce()>> = vec![
                Box::new(move || drop(queue)),
                Box::new(move || drop(slots)),
                Box::new(move || drop(ticket)),
                Box::new(move || drop(started)),
                Box::new(move || drop(acquired)),
            ];
            let mut code = order;
            for left in (1..=5u32).rev() {
                let next = parts.remove((code % left) as usize);
                code /= left;
                assert_eq!(frees.load(Ordering::SeqCst), 0, "freed while in use");
                next();
            }
            assert_eq!(frees.load(Ordering::SeqCst), 1, "order {order}");
        }
    }

    #[test]
    fn tickets_and_permits_are_send_and_static() {
        fn assert_send_static<T: Send + 'static>() {}
        assert_send_static::<QueueTicket>();
        assert_send_static::<JobPermit>();
        assert_send_static::<QueueGate>();
        assert_send_static::<JobSlots>();
    }
}

/// Model checks of the counters: `LOOM_MAX_PREEMPTIONS=2` is enough for these two- and
/// three-thread races (each thread does at most three atomic steps) and keeps the run to
/// seconds.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    fn pair(max_queue: u32, max_jobs: u32) -> (QueueGate, JobSlots) {
        counters_with_totals(JobBounds {
            max_queue,
            critical_reserve: 0,
            max_jobs,
        })
        .unwrap()
    }

    #[test]
    fn loom_the_state_is_freed_once_by_whoever_goes_last() {
        loom::model(|| {
            let frees = Arc::new(AtomicU32::new(0));
            let bounds = JobBounds {
                max_queue: 2,
                critical_reserve: 0,
                max_jobs: 1,
            };
            let (queue, slots) = counting_frees(bounds, &frees);
            let ticket = queue.try_enter().unwrap();
            let permit = slots.try_acquire().unwrap();
            // A ticket and a permit dropped on two threads while the handles go here.
            let t1 = thread::spawn(move || drop(ticket));
            let t2 = thread::spawn(move || drop(permit));
            drop(queue);
            drop(slots);
            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(frees.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn loom_queue_never_exceeds_its_bound() {
        loom::model(|| {
            let (queue, _slots) = pair(1, 1);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let queue = queue.clone();
                    thread::spawn(move || {
                        let ticket = queue.try_enter();
                        assert!(queue.len() <= 1);
                        ticket.is_ok()
                    })
                })
                .collect();
            let admitted = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&ok| ok)
                .count();
            assert!(admitted >= 1, "the first to try always gets in");
            assert_eq!(queue.len(), 0, "every ticket was dropped");
        });
    }

    #[test]
    fn loom_hand_off_never_exceeds_slots_nor_loses_a_job() {
        loom::model(|| {
            let (queue, slots) = pair(2, 1);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let queue = queue.clone();
                    let slots = slots.clone();
                    thread::spawn(move || {
                        let ticket = queue.try_enter().expect("room for both");
                        match slots.try_start(ticket) {
                            Ok(permit) => {
                                let (waiting, running) = slots.state.state().counts();
                                drop(permit);
                                assert!(running <= 1);
                                assert!(waiting + running <= 2);
                                true
                            }
                            Err(ticket) => {
                                // Still counted as waiting while we hold it.
                                assert!(queue.len() >= 1);
                                drop(ticket);
                                false
                            }
                        }
                    })
                })
                .collect();
            let started = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&ok| ok)
                .count();
            assert!(started >= 1);
            assert_eq!((queue.len(), slots.active()), (0, 0));
            assert_eq!(slots.started_total(), Some(started as u64));
            assert_eq!(slots.finished_total(), Some(started as u64));
        });
    }

    #[test]
    fn loom_permit_release_is_seen_by_the_next_start() {
        loom::model(|| {
            let (queue, slots) = pair(2, 1);
            let data = Arc::new(AtomicU32::new(0));
            let first = slots.try_acquire().unwrap();
            let t = {
                let data = Arc::clone(&data);
                thread::spawn(move || {
                    // Relaxed on purpose: the permit's Release/Acquire must order it.
                    data.store(7, Ordering::Relaxed);
                    drop(first);
                })
            };
            let ticket = queue.try_enter().unwrap();
            if let Ok(_permit) = slots.try_start(ticket) {
                assert_eq!(data.load(Ordering::Relaxed), 7);
            }
            t.join().unwrap();
        });
    }
}
