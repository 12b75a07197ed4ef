//! Counters of what the store met: errors, timeouts, fallback decisions, leases, and how
//! long its calls took.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backstop_core::histogram::{DurationHistogram, HistogramSnapshot, ROUND_TRIP_BOUNDS_NS};

use crate::error::StoreError;

/// Counts kept by a [`RedisStore`](crate::RedisStore) and every stage made from it.
#[derive(Debug)]
pub struct StoreMetrics {
    store_errors: AtomicU64,
    timeouts: AtomicU64,
    fallback_decisions: AtomicU64,
    store_decisions: AtomicU64,
    lease_renewals: AtomicU64,
    lease_renewal_failures: AtomicU64,
    leases_reasserted: AtomicU64,
    leases_lost: AtomicU64,
    detached_unclaimed: AtomicU64,
    reconnects: AtomicU64,
    breaker_opened: AtomicU64,
    breaker_refused: AtomicU64,
    refusals_cached: AtomicU64,
    /// Set by the first failure after a success, cleared by the next success: what makes
    /// an outage one `warn` line and one recovery line, not a line per request.
    failing: AtomicBool,
    /// Calls Redis answered (with a value or an error), from sending to the answer.
    round_trip: DurationHistogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            store_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            fallback_decisions: AtomicU64::new(0),
            store_decisions: AtomicU64::new(0),
            lease_renewals: AtomicU64::new(0),
            lease_renewal_failures: AtomicU64::new(0),
            leases_reasserted: AtomicU64::new(0),
            leases_lost: AtomicU64::new(0),
            detached_unclaimed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            breaker_opened: AtomicU64::new(0),
            breaker_refused: AtomicU64::new(0),
            refusals_cached: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            round_trip: DurationHistogram::new(&ROUND_TRIP_BOUNDS_NS),
        }
    }
}

/// A copy of [`StoreMetrics`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreMetricsSnapshot {
    /// Calls that failed with an error (connection, wrong type, server error).
    pub store_errors: u64,
    /// Calls that passed their deadline.
    pub timeouts: u64,
    /// Decisions made by the in-process fallback window.
    pub fallback_decisions: u64,
    /// Decisions Redis made.
    pub store_decisions: u64,
    /// Lease renewals that succeeded (re-assertions included).
    pub lease_renewals: u64,
    /// Lease renewals that failed or passed the deadline (tried again).
    pub lease_renewal_failures: u64,
    /// Leases re-asserted after Redis lost their member (a restart without persistence).
    pub leases_reasserted: u64,
    /// Tickets and permits whose lease was lost (their holders were told).
    pub leases_lost: u64,
    /// Detached tickets nobody claimed within `max_wait`, counted by the process whose
    /// script found them expired (sum over the replicas for the total).
    pub detached_unclaimed: u64,
    /// Connections replaced: broken, or reaching a node that was no longer a writable
    /// primary (a failover), and connected again.
    pub reconnects: u64,
    /// Times the breaker opened (calls failed `breaker_threshold` times in a row).
    pub breaker_opened: u64,
    /// Calls the open breaker answered without sending them.
    pub breaker_refused: u64,
    /// Rate limited refusals answered from the refusal cache, without a round trip.
    pub refusals_cached: u64,
}

impl StoreMetrics {
    // Relaxed everywhere: independent counters read for reporting; no other memory
    // depends on them.
    pub(crate) fn error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts `err` as an error or a timeout; the first failure after a success is logged
    /// at `warn`, the ones after it at `debug` (the counters hold them all).
    pub(crate) fn failed(&self, err: &StoreError) {
        match err {
            StoreError::Timeout(_) => self.timeout(),
            _ => self.error(),
        }
        // Relaxed: a lone flag that only chooses the log level; nothing is published
        // through it.
        if self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!("redis store call failed: {err}");
        } else {
            tracing::warn!(
                "redis store call failed: {err}; the failure policy decides until it answers \
                 again (further failures are counted, logged at debug)"
            );
        }
    }
    /// A call answered: logs the end of an outage once.
    pub(crate) fn answered(&self) {
        // Relaxed: as in `failed`. The load keeps the common path a shared read.
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("redis store answering again");
        }
    }
    pub(crate) fn fallback(&self) {
        self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn decided(&self, count: u64) {
        self.store_decisions.fetch_add(count, Ordering::Relaxed);
    }
    pub(crate) fn lease_renewed(&self) {
        self.lease_renewals.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn lease_renewal_failed(&self) {
        self.lease_renewal_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn lease_reasserted(&self) {
        self.leases_reasserted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn lease_lost(&self) {
        self.leases_lost.fetch_add(1, Ordering::Relaxed);
    }
    /// One call Redis answered, `took` from sending it.
    pub(crate) fn round_trip(&self, took: Duration) {
        self.round_trip.observe(took);
    }
    pub(crate) fn breaker_opened(&self) {
        self.breaker_opened.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn breaker_refused(&self) {
        self.breaker_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn refusal_cached(&self) {
        self.refusals_cached.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn unclaimed(&self, count: u64) {
        if count > 0 {
            self.detached_unclaimed.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> StoreMetricsSnapshot {
        StoreMetricsSnapshot {
            store_errors: self.store_errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            fallback_decisions: self.fallback_decisions.load(Ordering::Relaxed),
            store_decisions: self.store_decisions.load(Ordering::Relaxed),
            lease_renewals: self.lease_renewals.load(Ordering::Relaxed),
            lease_renewal_failures: self.lease_renewal_failures.load(Ordering::Relaxed),
            leases_reasserted: self.leases_reasserted.load(Ordering::Relaxed),
            leases_lost: self.leases_lost.load(Ordering::Relaxed),
            detached_unclaimed: self.detached_unclaimed.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            breaker_opened: self.breaker_opened.load(Ordering::Relaxed),
            breaker_refused: self.breaker_refused.load(Ordering::Relaxed),
            refusals_cached: self.refusals_cached.load(Ordering::Relaxed),
        }
    }

    /// Whether the store's last call failed (no call has answered since).
    pub fn failing(&self) -> bool {
        // Relaxed: as in `failed`.
        self.failing.load(Ordering::Relaxed)
    }

    /// How long the calls Redis answered took, from sending to the answer.
    pub fn round_trips(&self) -> HistogramSnapshot {
        self.round_trip.snapshot()
    }
}
