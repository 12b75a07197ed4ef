//! What sweeps did, summed for monitoring: runs by outcome, removals, bytes freed, skips
//! and errors by reason, run durations, and when the last sweep succeeded.
//!
//! [`SweepTotals`] is the plain sum; [`SweepMetrics`] shares one between a
//! [`SweepSchedule`](crate::SweepSchedule)'s thread and whoever reads it (a
//! prometheus-client registry, see `metrics_export`); the `backstop-sweep` CLI keeps one
//! in a node_exporter textfile across its runs (see `textfile`). One table,
//! [`SweepTotals::families`], names every family once, so the registry and the textfile
//! publish the same names.
//!
//! Sweeps run every few hours, not per request: a mutex guards the totals.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::error::SweepError;
use crate::report::{ErrorCounts, SkipCounts, SweepReport};

/// How a sweep ended, the `outcome` label of `backstop_sweep_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// It ran and every entry it meant to handle was handled.
    Clean,
    /// It ran, but some entries failed (see `backstop_sweep_entry_errors_total`). It
    /// still counts as a success: it cleaned what it could.
    Partial,
    /// It could not run (root missing or refused, bad exclude, no threads).
    Failed,
}

impl RunOutcome {
    /// Every outcome, in label order.
    pub const ALL: [RunOutcome; 3] = [RunOutcome::Clean, RunOutcome::Partial, RunOutcome::Failed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Clean => "clean",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
        }
    }

    /// The outcome of a run's result.
    pub fn of(result: &Result<SweepReport, SweepError>) -> RunOutcome {
        match result {
            Err(_) => RunOutcome::Failed,
            Ok(report) if report.has_failures() => RunOutcome::Partial,
            Ok(_) => RunOutcome::Clean,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Labels of `backstop_sweep_removed_total`.
const REMOVED_KINDS: [&str; 3] = ["file", "symlink", "dir"];
/// Labels of `backstop_sweep_skipped_total`, in [`SkipCounts`]' field order.
const SKIP_REASONS: [&str; 8] = [
    "excluded",
    "other_filesystem",
    "symlink_target",
    "special_file",
    "too_young",
    "locked",
    "replaced",
    "goal_reached",
];
/// Labels of `backstop_sweep_entry_errors_total`, in [`ErrorCounts`]' field order.
const ERROR_KINDS: [&str; 5] = ["permission_denied", "vanished", "busy", "moved", "other"];

/// Upper bounds of `backstop_sweep_duration_seconds`' buckets: a small temp root takes
/// well under a second, a million files tens of seconds, a slow disk under pressure
/// minutes; past an hour something is wrong.
pub const DURATION_BUCKETS_SECONDS: [f64; 11] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

fn skip_counts(s: &SkipCounts) -> [u64; SKIP_REASONS.len()] {
    [
        s.excluded,
        s.other_filesystem,
        s.symlink_target,
        s.special_file,
        s.too_young,
        s.locked,
        s.replaced,
        s.goal_reached,
    ]
}

fn error_counts(e: &ErrorCounts) -> [u64; ERROR_KINDS.len()] {
    [e.permission_denied, e.vanished, e.busy, e.moved, e.other]
}

/// Seconds since the Unix epoch (0 for a time before it).
pub(crate) fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The sum of what a series of sweeps did.
///
/// Dry runs are not recorded: they free nothing and prove nothing about the real runs.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use backstop_sweep::{RunOutcome, Sweep, SweepTotals};
///
/// let dir = tempfile::tempdir()?;
/// let mut totals = SweepTotals::default();
/// let result = Sweep::new(dir.path()).run();
/// let finished = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// totals.record(&result, finished);
/// totals.record(&Sweep::new(dir.path().join("missing")).run(), finished);
/// assert_eq!(totals.runs(RunOutcome::Clean), 1);
/// assert_eq!(totals.runs(RunOutcome::Failed), 1);
/// assert_eq!(totals.last_success_unix_seconds(), Some(1_700_000_000.0));
/// assert!(totals.to_textfile().contains("backstop_sweep_runs_total{outcome=\"failed\"} 1\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepTotals {
    pub(crate) runs: [u64; RunOutcome::ALL.len()],
    pub(crate) removed: [u64; REMOVED_KINDS.len()],
    pub(crate) bytes_freed: u64,
    pub(crate) skipped: [u64; SKIP_REASONS.len()],
    pub(crate) errors: [u64; ERROR_KINDS.len()],
    /// Runs per duration bucket (not cumulative); the last is the `+Inf` bucket.
    pub(crate) duration_buckets: [u64; DURATION_BUCKETS_SECONDS.len() + 1],
    pub(crate) duration_sum_seconds: f64,
    pub(crate) last_success_unix_seconds: Option<f64>,
    pub(crate) start_unix_seconds: Option<f64>,
    pub(crate) interval_seconds: Option<f64>,
}

impl SweepTotals {
    /// Adds one run that ended at `finished_at`. A run that ran (clean or partial) moves
    /// the last-success time; a failed one only counts as failed.
    pub fn record(&mut self, result: &Result<SweepReport, SweepError>, finished_at: SystemTime) {
        let report = match result {
            Ok(report) if report.dry_run => return,
            Ok(report) => report,
            Err(_) => {
                self.runs[RunOutcome::Failed.index()] += 1;
                return;
            }
        };
        self.runs[RunOutcome::of(result).index()] += 1;
        let removed = [
            report.files_removed,
            report.symlinks_removed,
            report.dirs_removed,
        ];
        add_each(&mut self.removed, &removed);
        self.bytes_freed += report.bytes_freed;
        add_each(&mut self.skipped, &skip_counts(&report.skipped));
        add_each(&mut self.errors, &error_counts(&report.errors));
        self.observe_duration(report.elapsed());
        self.last_success_unix_seconds = Some(unix_seconds(finished_at));
    }

    fn observe_duration(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|upper| seconds <= *upper)
            .unwrap_or(DURATION_BUCKETS_SECONDS.len());
        self.duration_buckets[bucket] += 1;
        self.duration_sum_seconds += seconds;
    }

    /// Sets when the sweeper began (a schedule's start, or the first CLI run that
    /// wrote a textfile) and how often it is meant to sweep: what
    /// `backstop_sweep_schedule_start_timestamp_seconds` and
    /// `backstop_sweep_interval_seconds` report, so that an alert can tell a sweep
    /// that is overdue from one that is not due yet.
    pub fn set_schedule(&mut self, started_at: SystemTime, every: Duration) {
        self.start_unix_seconds = Some(unix_seconds(started_at));
        self.interval_seconds = Some(every.as_secs_f64());
    }

    /// As [`set_schedule`](Self::set_schedule), but a start already known stays: a
    /// command run by a timer sets its interval every run, its start on the first.
    pub fn continue_schedule(&mut self, first_run: SystemTime, every: Duration) {
        let start = self.start_unix_seconds;
        self.set_schedule(first_run, every);
        self.start_unix_seconds = start.or(self.start_unix_seconds);
    }

    /// Sweeps that ended with `outcome`.
    pub fn runs(&self, outcome: RunOutcome) -> u64 {
        self.runs[outcome.index()]
    }

    /// Bytes freed over all runs.
    pub fn bytes_freed(&self) -> u64 {
        self.bytes_freed
    }

    /// The end of the last run that ran (clean or partial), in seconds since the epoch.
    pub fn last_success_unix_seconds(&self) -> Option<f64> {
        self.last_success_unix_seconds
    }

    /// When the sweeper began, in seconds since the epoch (see [`set_schedule`](Self::set_schedule)).
    pub fn start_unix_seconds(&self) -> Option<f64> {
        self.start_unix_seconds
    }

    /// Every family, valued from these totals.
    pub(crate) fn families(&self) -> Vec<Family> {
        let mut out = vec![
            counters(
                "backstop_sweep_runs",
                "Sweeps, by outcome: clean, partial (some entries failed), failed (did not run).",
                "outcome",
                &RunOutcome::ALL.map(RunOutcome::as_str),
                &self.runs,
            ),
            counters(
                "backstop_sweep_removed",
                "Entries sweeps removed, by kind.",
                "kind",
                &REMOVED_KINDS,
                &self.removed,
            ),
            Family {
                name: "backstop_sweep_freed",
                help: "Disk space sweeps freed (blocks of removed files whose every link went).",
                unit: Some("bytes"),
                label: None,
                samples: Samples::Counters(vec![(None, self.bytes_freed)]),
            },
            counters(
                "backstop_sweep_skipped",
                "Entries sweeps left in place, by reason.",
                "reason",
                &SKIP_REASONS,
                &self.skipped,
            ),
            counters(
                "backstop_sweep_entry_errors",
                "Entries sweeps could not handle, by kind (a sweep goes on past them).",
                "kind",
                &ERROR_KINDS,
                &self.errors,
            ),
            self.duration_family(),
        ];
        out.extend(self.time_gauges());
        out
    }

    /// The histogram of sweep durations.
    fn duration_family(&self) -> Family {
        Family {
            name: "backstop_sweep_duration",
            help: "Wall time of sweeps that ran.",
            unit: Some("seconds"),
            label: None,
            samples: Samples::Histogram {
                buckets: DURATION_BUCKETS_SECONDS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(self.duration_buckets)
                    .collect(),
                sum: self.duration_sum_seconds,
            },
        }
    }

    /// The gauges in seconds that have a value: the last success, the start, the interval.
    fn time_gauges(&self) -> impl Iterator<Item = Family> {
        [
            (
                "backstop_sweep_last_success_timestamp",
                "End of the last sweep that ran (clean or partial), in Unix time.",
                self.last_success_unix_seconds,
            ),
            (
                "backstop_sweep_schedule_start_timestamp",
                "When the sweeper began (the schedule's start, or the first CLI run that wrote \
                 this file), in Unix time.",
                self.start_unix_seconds,
            ),
            (
                "backstop_sweep_interval",
                "How often a sweep is due.",
                self.interval_seconds,
            ),
        ]
        .into_iter()
        .filter_map(|(name, help, value)| {
            Some(Family {
                name,
                help,
                unit: Some("seconds"),
                label: None,
                samples: Samples::Gauge(value?),
            })
        })
    }
}

fn add_each<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (total, n) in into.iter_mut().zip(from) {
        *total = total.saturating_add(*n);
    }
}

fn counters(
    name: &'static str,
    help: &'static str,
    label: &'static str,
    labels: &[&'static str],
    values: &[u64],
) -> Family {
    Family {
        name,
        help,
        unit: None,
        label: Some(label),
        samples: Samples::Counters(
            labels
                .iter()
                .map(|l| Some(*l))
                .zip(values.iter().copied())
                .collect(),
        ),
    }
}

/// One metric family: `name` without the unit and `_total` suffixes, which the
/// exporters add (`backstop_sweep_freed` + `bytes` → `backstop_sweep_freed_bytes_total`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<&'static str>,
    /// The label key of a counter family with one series per label value.
    pub label: Option<&'static str>,
    pub samples: Samples,
}

impl Family {
    /// The name with its unit: what a gauge or histogram is called, and a counter
    /// before `_total`.
    pub fn full_name(&self) -> String {
        match self.unit {
            Some(unit) => format!("{}_{unit}", self.name),
            None => self.name.to_owned(),
        }
    }
}

/// A family's values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Samples {
    /// Counters, by label value (`None`: the family has no label).
    Counters(Vec<(Option<&'static str>, u64)>),
    /// One gauge.
    Gauge(f64),
    /// Observations per bucket upper bound (not cumulative; the last bound is
    /// infinite), and their sum.
    Histogram { buckets: Vec<(f64, u64)>, sum: f64 },
}

/// A [`SweepTotals`] shared between the thread that sweeps and the readers: a
/// [`SweepSchedule`](crate::SweepSchedule) records every run here, and a registry
/// reads it at each scrape ([`register`](Self::register), feature `prometheus`).
#[derive(Debug, Default)]
pub struct SweepMetrics {
    totals: Mutex<SweepTotals>,
}

impl SweepMetrics {
    /// The totals now.
    pub fn totals(&self) -> SweepTotals {
        self.lock().clone()
    }

    /// Adds one run (see [`SweepTotals::record`]).
    pub fn record(&self, result: &Result<SweepReport, SweepError>, finished_at: SystemTime) {
        self.lock().record(result, finished_at);
    }

    /// Sets the start and interval (see [`SweepTotals::set_schedule`]).
    pub fn set_schedule(&self, started_at: SystemTime, every: Duration) {
        self.lock().set_schedule(started_at, every);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SweepTotals> {
        // A panic while holding the lock leaves plain numbers, still worth reporting.
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sweep;

    fn report(elapsed_us: u64) -> SweepReport {
        let dir = tempfile::tempdir().unwrap();
        let mut report = Sweep::new(dir.path()).run().unwrap();
        report.elapsed_us = elapsed_us;
        report
    }

    #[test]
    fn label_lists_follow_the_report_fields() {
        let skipped = SkipCounts {
            excluded: 1,
            other_filesystem: 2,
            symlink_target: 3,
            special_file: 4,
            too_young: 5,
            locked: 6,
            replaced: 7,
            goal_reached: 8,
        };
        assert_eq!(skip_counts(&skipped), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(skipped.total(), 36, "a new SkipCounts field needs a label");
        let errors = ErrorCounts {
            permission_denied: 1,
            vanished: 2,
            busy: 3,
            moved: 4,
            other: 5,
        };
        assert_eq!(error_counts(&errors), [1, 2, 3, 4, 5]);
        assert_eq!(errors.total(), 15, "a new ErrorCounts field needs a label");
    }

    #[test]
    fn runs_are_summed_by_outcome_and_only_runs_that_ran_move_the_last_success() {
        let mut totals = SweepTotals::default();
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut partial = report(2_500_000);
        partial.errors.permission_denied = 2;
        partial.files_removed = 3;
        partial.bytes_freed = 4096;
        partial.skipped.too_young = 5;
        totals.record(&Ok(report(50_000)), at(100));
        totals.record(&Ok(partial), at(200));
        totals.record(
            &Err(SweepError::RootNotDirectory { path: "/x".into() }),
            at(300),
        );
        let mut dry = report(1);
        dry.dry_run = true;
        dry.files_removed = 99;
        totals.record(&Ok(dry), at(400));

        assert_eq!(totals.runs, [1, 1, 1]);
        assert_eq!(totals.removed, [3, 0, 0]);
        assert_eq!(totals.bytes_freed, 4096);
        assert_eq!(totals.skipped[4], 5);
        assert_eq!(totals.errors[0], 2);
        assert_eq!(totals.last_success_unix_seconds, Some(200.0));
        // 0.05 s in the first bucket (≤ 0.1), 2.5 s in the fourth (≤ 5).
        assert_eq!(totals.duration_buckets[0], 1);
        assert_eq!(totals.duration_buckets[3], 1);
        assert_eq!(totals.duration_buckets.iter().sum::<u64>(), 2);
        assert!((totals.duration_sum_seconds - 2.55).abs() < 1e-9);
    }

    #[test]
    fn a_run_past_the_last_bound_lands_in_the_infinite_bucket() {
        let mut totals = SweepTotals::default();
        totals.record(&Ok(report(7_200_000_000)), SystemTime::now());
        assert_eq!(*totals.duration_buckets.last().unwrap(), 1);
    }
}
