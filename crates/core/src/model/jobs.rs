//! The job counters' rules ([`jobs`](crate::jobs)): a queue bounded per priority (the
//! critical reserve is kept back from normal requests), job slots, and the totals of
//! jobs started and finished. Plain counters: a ticket or permit dropped in any order
//! gives its place back.

use crate::jobs::{JobBounds, MAX_JOBS, MAX_QUEUE, Priority};

/// The job counters' reference.
///
/// ```
/// use backstop_core::jobs::{JobBounds, Priority};
/// use backstop_core::model::JobsModel;
///
/// let bounds = JobBounds { max_queue: 2, critical_reserve: 1, max_jobs: 1 };
/// let mut jobs = JobsModel::new(bounds);
/// assert!(jobs.try_enter(Priority::Normal));
/// assert!(!jobs.try_enter(Priority::Normal), "the last place is kept for critical ones");
/// assert!(jobs.try_enter(Priority::Critical));
/// assert!(jobs.try_start());
/// assert!(!jobs.try_start(), "one slot");
/// jobs.finish();
/// assert_eq!((jobs.waiting(), jobs.running(), jobs.started(), jobs.finished()), (1, 0, 1, 1));
/// ```
#[derive(Debug, Clone)]
pub struct JobsModel {
    bounds: JobBounds,
    waiting: u32,
    running: u32,
    started: u64,
    finished: u64,
}

impl JobsModel {
    /// Empty counters with `bounds`.
    pub fn new(bounds: JobBounds) -> Self {
        JobsModel {
            bounds,
            waiting: 0,
            running: 0,
            started: 0,
            finished: 0,
        }
    }

    /// The bounds in force.
    pub fn bounds(&self) -> JobBounds {
        self.bounds
    }

    /// How many may wait at `priority`: the queue less the critical reserve for normal
    /// requests.
    pub fn queue_bound(&self, priority: Priority) -> u32 {
        match priority {
            Priority::Normal => self.bounds.max_queue - self.bounds.critical_reserve,
            Priority::Critical => self.bounds.max_queue,
        }
    }

    /// Jobs waiting.
    pub fn waiting(&self) -> u32 {
        self.waiting
    }

    /// Jobs running.
    pub fn running(&self) -> u32 {
        self.running
    }

    /// Jobs started in all.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Jobs finished in all.
    pub fn finished(&self) -> u64 {
        self.finished
    }

    /// Whether a slot is free.
    pub fn slot_free(&self) -> bool {
        self.running < self.bounds.max_jobs
    }

    /// A place in the queue at `priority`: `false` when it holds its bound.
    pub fn try_enter(&mut self, priority: Priority) -> bool {
        let room = self.waiting < self.queue_bound(priority);
        if room {
            self.waiting += 1;
        }
        room
    }

    /// A place in the queue whatever its bound (shadow mode admits past it).
    pub fn enter_unbounded(&mut self) {
        self.waiting += 1;
    }

    /// A queued job starts: `false` (it stays queued) when no slot is free.
    pub fn try_start(&mut self) -> bool {
        if !self.slot_free() {
            return false;
        }
        self.waiting -= 1;
        self.running += 1;
        self.started += 1;
        true
    }

    /// A job starts without having queued: `false` when no slot is free.
    pub fn try_acquire(&mut self) -> bool {
        if !self.slot_free() {
            return false;
        }
        self.running += 1;
        self.started += 1;
        true
    }

    /// A queued job gives its place up (its ticket dropped).
    pub fn leave(&mut self) {
        self.waiting -= 1;
    }

    /// A running job finishes (its permit dropped).
    pub fn finish(&mut self) {
        self.running -= 1;
        self.finished += 1;
    }

    /// New bounds: `false` (and nothing changed) when a bound is 0 or above its maximum,
    /// or the reserve leaves normal requests no room. Jobs already waiting or running
    /// keep their places.
    pub fn set_bounds(&mut self, bounds: JobBounds) -> bool {
        let JobBounds {
            max_queue,
            critical_reserve,
            max_jobs,
        } = bounds;
        let valid = (1..=MAX_QUEUE).contains(&max_queue)
            && critical_reserve < max_queue
            && (1..=MAX_JOBS).contains(&max_jobs);
        if !valid {
            return false;
        }
        self.bounds = bounds;
        true
    }
}
