//! A lock-free histogram of durations with fixed bucket bounds, for the times a scrape
//! reports as a Prometheus histogram: how long jobs waited in the queue and ran, how
//! long a store call took.
//!
//! An observation is two relaxed atomic adds (its bucket, the sum); the bucket is found
//! by a search over at most a few dozen bounds. It is meant for events that happen once
//! per job or per store call, never for the admission path, which counts with plain
//! counters only.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// Bucket upper bounds for jobs lasting seconds to an hour, in nanoseconds: from 10 ms
/// (a job that starts at once) to an hour, about two per decade and a half, with
/// `+Inf` after the last.
pub const JOB_SECONDS_BOUNDS_NS: [u64; 17] = [
    10_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
    300_000_000_000,
    600_000_000_000,
    1_200_000_000_000,
    1_800_000_000_000,
    3_600_000_000_000,
];

/// Bucket upper bounds for a network round trip, in nanoseconds: 100 µs (loopback) to
/// a second (well past any deadline worth setting).
pub const ROUND_TRIP_BOUNDS_NS: [u64; 13] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Counts of durations per bucket, and their sum.
///
/// ```
/// use std::time::Duration;
/// use backstop_core::histogram::{DurationHistogram, JOB_SECONDS_BOUNDS_NS};
///
/// let waits = DurationHistogram::new(&JOB_SECONDS_BOUNDS_NS);
/// waits.observe(Duration::from_millis(5));
/// waits.observe(Duration::from_secs(2));
/// waits.observe(Duration::from_secs(7200));
/// let snapshot = waits.snapshot();
/// assert_eq!(snapshot.count(), 3);
/// assert_eq!(snapshot.buckets[0], (0.01, 1)); // 5 ms: in the first bucket
/// assert_eq!(snapshot.buckets[6], (2.5, 1)); // 2 s: at most 2.5 s
/// assert_eq!(*snapshot.buckets.last().unwrap(), (f64::INFINITY, 1)); // past an hour
/// assert!((snapshot.sum_seconds - 7202.005).abs() < 1e-9);
/// ```
pub struct DurationHistogram {
    bounds_ns: &'static [u64],
    /// One more than `bounds_ns`: the last counts what passed every bound.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    /// A histogram with these upper bounds (ascending, in nanoseconds) and `+Inf`.
    ///
    /// # Panics
    ///
    /// If `bounds_ns` is not strictly ascending: the bounds are constants of the caller,
    /// not input.
    pub fn new(bounds_ns: &'static [u64]) -> Self {
        assert!(
            bounds_ns.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must ascend strictly"
        );
        DurationHistogram {
            bounds_ns,
            counts: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, duration: Duration) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.observe_ns(ns);
    }

    /// Counts one duration given in nanoseconds.
    pub fn observe_ns(&self, ns: u64) {
        let bucket = self.bounds_ns.partition_point(|bound| *bound < ns);
        // Relaxed: statistics read at scrape time; nothing else is published through
        // them, and a scrape may see an observation's bucket before its sum (each value
        // is exact at some moment of the scrape).
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets = self
            .bounds_ns
            .iter()
            .map(|ns| *ns as f64 / 1e9)
            .chain([f64::INFINITY])
            .zip(self.counts.iter())
            // Relaxed: see `observe_ns`.
            .map(|(upper, count)| (upper, count.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            buckets,
            // Relaxed: see `observe_ns`.
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl std::fmt::Debug for DurationHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurationHistogram")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A [`DurationHistogram`]'s counts at one call.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations in this bucket)`, not cumulative; the last
    /// bound is infinite.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of every observation, in seconds.
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// Writes these counts as one prometheus-client histogram (the metric a collector's
    /// `encode_descriptor(.., MetricType::Histogram)` returned), in seconds.
    ///
    /// # Errors
    ///
    /// The encoder's.
    #[cfg(feature = "prometheus")]
    pub fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> std::fmt::Result {
        // prometheus-client marks the infinite bucket with `f64::MAX`.
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .map(|(upper, n)| (if upper.is_finite() { *upper } else { f64::MAX }, *n))
            .collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_seconds,
            self.count(),
            &buckets,
            None,
        )
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_duration_on_a_bound_counts_in_that_bucket() {
        let h = DurationHistogram::new(&ROUND_TRIP_BOUNDS_NS);
        h.observe_ns(ROUND_TRIP_BOUNDS_NS[0]);
        h.observe_ns(ROUND_TRIP_BOUNDS_NS[0] + 1);
        h.observe(Duration::ZERO);
        h.observe(Duration::MAX);
        let s = h.snapshot();
        assert_eq!(s.buckets[0].1, 2, "0 and exactly 100 µs");
        assert_eq!(s.buckets[1].1, 1, "just past 100 µs");
        assert_eq!(s.buckets.last().unwrap().1, 1);
        assert_eq!(s.count(), 4);
        assert_eq!(s.buckets.len(), ROUND_TRIP_BOUNDS_NS.len() + 1);
    }

    #[test]
    #[should_panic(expected = "ascend")]
    fn bounds_out_of_order_are_a_programming_error() {
        static BAD: [u64; 2] = [2, 1];
        let _ = DurationHistogram::new(&BAD);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Arc;

    /// Two threads observing at once: both counted, in their buckets, and in the sum.
    /// Two threads and two operations each: the state space is tiny at any bound.
    #[test]
    fn loom_concurrent_observations_are_all_counted() {
        loom::model(|| {
            static BOUNDS: [u64; 2] = [10, 20];
            let h = Arc::new(DurationHistogram::new(&BOUNDS));
            let other = {
                let h = Arc::clone(&h);
                loom::thread::spawn(move || h.observe_ns(15))
            };
            h.observe_ns(5);
            other.join().unwrap();
            let s = h.snapshot();
            assert_eq!(
                s.buckets.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
                [1, 1, 0]
            );
            assert!((s.sum_seconds - 20e-9).abs() < 1e-15);
        });
    }
}
