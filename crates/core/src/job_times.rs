//! What job counters made by [`jobs::counters_with_times`](crate::jobs::counters_with_times)
//! time: how long each job waited in the queue (from its ticket to its start) and how
//! long it ran (from its start to its permit's drop), on the clock they were given.
//!
//! The times are taken where the counters already are: a ticket carries the time it was
//! issued, a permit the time it started, each in its own eight bytes (no shared write).
//! The histograms are observed when a job starts and when it finishes, never when a
//! request is admitted; a ticket issued by [`Admission`](crate::Admission) carries the
//! time its rate decision already read.

use crate::histogram::{DurationHistogram, HistogramSnapshot, JOB_SECONDS_BOUNDS_NS};

/// A time not taken: the ticket or permit came from counters without a clock, or was
/// made where no time was at hand. Nothing is observed for it. (Clock readings stay
/// below 2^62; see `rate::SEALABLE_TIME_NS`.)
pub(crate) const UNKNOWN_NS: u64 = u64::MAX;

/// The clock and the two histograms of one pair of job counters.
pub(crate) struct JobTimes {
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    queue_wait: DurationHistogram,
    run: DurationHistogram,
}

impl JobTimes {
    pub(crate) fn new(clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        JobTimes {
            clock: Box::new(clock),
            queue_wait: DurationHistogram::new(&JOB_SECONDS_BOUNDS_NS),
            run: DurationHistogram::new(&JOB_SECONDS_BOUNDS_NS),
        }
    }

    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        (self.clock)()
    }

    /// A job whose ticket was issued at `entered_at_ns` starts: its wait is observed, and
    /// the start time returned for its permit.
    pub(crate) fn start(&self, entered_at_ns: u64) -> u64 {
        let now_ns = self.now_ns();
        if entered_at_ns != UNKNOWN_NS {
            // A clock that went backwards counts as no wait, not as ~584 years.
            self.queue_wait
                .observe_ns(now_ns.saturating_sub(entered_at_ns));
        }
        now_ns
    }

    /// A job that started at `started_at_ns` finishes: its run time is observed.
    pub(crate) fn finish(&self, started_at_ns: u64) {
        if started_at_ns != UNKNOWN_NS {
            self.run
                .observe_ns(self.now_ns().saturating_sub(started_at_ns));
        }
    }

    pub(crate) fn queue_waits(&self) -> HistogramSnapshot {
        self.queue_wait.snapshot()
    }

    pub(crate) fn run_times(&self) -> HistogramSnapshot {
        self.run.snapshot()
    }
}
