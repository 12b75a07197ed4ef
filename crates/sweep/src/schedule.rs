//! A background thread that sweeps on an interval and under disk pressure.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::error::SweepError;
use crate::metrics::SweepMetrics;
use crate::report::SweepReport;
use crate::sweep::Sweep;

/// Default sweep interval: every 6 hours, as the original cron job.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(6 * 60 * 60);
/// Default disk-use fraction above which a pressure sweep runs.
pub const DEFAULT_PRESSURE_THRESHOLD: f64 = 0.80;
/// Default interval between disk-use checks.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(60);
/// Default longest wait between pressure sweeps that could not meet their goal.
pub const DEFAULT_MAX_PRESSURE_BACKOFF: Duration = Duration::from_secs(60 * 60);
/// Default minimum age of a file a pressure sweep may delete: an hour, so that files
/// still being written are not taken, however full the disk.
pub const DEFAULT_PRESSURE_OLDER_THAN: Duration = Duration::from_secs(60 * 60);

/// Why a sweep ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The interval elapsed.
    Interval,
    /// [`ScheduleHandle::trigger`] asked for it.
    Manual,
    /// The filesystem was fuller than the threshold.
    Pressure {
        /// Fraction of the filesystem in use when checked (`used / (used + available)`).
        used_fraction: f64,
        /// Bytes the sweep was asked to free to get back under the threshold.
        byte_goal: u64,
    },
}

/// A schedule could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A setting is out of range.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The setting, e.g. `pressure_threshold`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The thread could not be spawned.
    #[error("cannot spawn the sweep schedule thread: {0}")]
    Spawn(#[source] std::io::Error),
}

type Callback = Box<dyn FnMut(Trigger, &Result<SweepReport, SweepError>) + Send>;
/// Reads `(used bytes, capacity in bytes)` of the filesystem holding a root.
type DiskUsage = Box<dyn FnMut(&Path) -> std::io::Result<(u64, u64)> + Send>;

/// Sweeps a root every [`every`](Self::every) (default 6 h) and, whenever its filesystem
/// is fuller than [`pressure_threshold`](Self::pressure_threshold) (default 80 %), runs a
/// pressure sweep with a byte goal that brings it back under.
///
/// Each run is reported through [`on_report`](Self::on_report) and `tracing`, and counted
/// in [`metrics`](Self::metrics) (runs by outcome, removals, bytes freed, skips, the
/// last success; before the run's report is handed to `on_report`). The
/// interval sweep uses the [`Sweep`] as configured; the pressure sweep uses it with
/// [`Sweep::byte_goal`] set and [`Sweep::older_than`] lowered to
/// [`pressure_older_than`](Self::pressure_older_than). Without [`Sweep::now`], each run
/// judges ages against the clock at its start.
///
/// When the disk is filled by something outside the root, a pressure sweep cannot meet
/// its goal, and repeating it at every check only rescans the tree. So after a pressure
/// sweep that misses its goal (or fails), the next one waits twice
/// [`check_every`](Self::check_every), then twice that, up to
/// [`max_pressure_backoff`](Self::max_pressure_backoff) (default 1 h). Entering this
/// backoff is logged once (`warn`); a sweep that meets its goal, or a check that finds
/// the disk back under the threshold, ends it (logged once, `info`).
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use backstop_sweep::{Sweep, SweepSchedule, Trigger};
///
/// let dir = tempfile::tempdir()?;
/// let (tx, rx) = mpsc::channel();
/// let handle = SweepSchedule::new(Sweep::new(dir.path()))
///     .every(Duration::from_secs(6 * 3600))
///     .pressure_threshold(1.0) // never: the disk is never more than full
///     .on_report(move |trigger, result| {
///         let _ = tx.send((trigger, result.as_ref().map(|r| r.files_removed).ok()));
///     })
///     .start()?;
/// handle.trigger();
/// let (trigger, files_removed) = rx.recv()?;
/// assert_eq!(trigger, Trigger::Manual);
/// assert_eq!(files_removed, Some(0));
/// handle.shutdown(); // waits for a sweep in progress, then joins the thread
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SweepSchedule {
    sweep: Sweep,
    every: Duration,
    pressure_threshold: f64,
    check_every: Duration,
    pressure_older_than: Duration,
    max_pressure_backoff: Duration,
    on_report: Option<Callback>,
    disk_usage: DiskUsage,
    metrics: Arc<SweepMetrics>,
}

impl fmt::Debug for SweepSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SweepSchedule")
            .field("sweep", &self.sweep)
            .field("every", &self.every)
            .field("pressure_threshold", &self.pressure_threshold)
            .field("check_every", &self.check_every)
            .field("pressure_older_than", &self.pressure_older_than)
            .field("max_pressure_backoff", &self.max_pressure_backoff)
            .finish_non_exhaustive()
    }
}

impl SweepSchedule {
    /// A schedule running `sweep` with the defaults.
    pub fn new(sweep: Sweep) -> SweepSchedule {
        SweepSchedule {
            sweep,
            every: DEFAULT_EVERY,
            pressure_threshold: DEFAULT_PRESSURE_THRESHOLD,
            check_every: DEFAULT_CHECK_EVERY,
            pressure_older_than: DEFAULT_PRESSURE_OLDER_THAN,
            max_pressure_backoff: DEFAULT_MAX_PRESSURE_BACKOFF,
            on_report: None,
            disk_usage: Box::new(statvfs_usage),
            metrics: Arc::default(),
        }
    }

    /// What this schedule's sweeps did, summed: register it in a registry
    /// (`metrics().register(&mut registry)`, feature `prometheus`) before or after
    /// [`start`](Self::start). The schedule's start and interval are set when it starts.
    pub fn metrics(&self) -> Arc<SweepMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Longest wait between pressure sweeps that keep missing their goal (see the type
    /// docs; default 1 h).
    pub fn max_pressure_backoff(mut self, max: Duration) -> SweepSchedule {
        self.max_pressure_backoff = max;
        self
    }

    /// Reads the disk usage with `usage` (returning used bytes and capacity) instead of
    /// `statvfs` on the root: for quotas, or to test the pressure logic.
    pub fn disk_usage(
        mut self,
        usage: impl FnMut(&Path) -> std::io::Result<(u64, u64)> + Send + 'static,
    ) -> SweepSchedule {
        self.disk_usage = Box::new(usage);
        self
    }

    /// Interval between regular sweeps; the first runs one interval after the start.
    pub fn every(mut self, every: Duration) -> SweepSchedule {
        self.every = every;
        self
    }

    /// Disk-use fraction (0.0–1.0) above which a pressure sweep runs.
    pub fn pressure_threshold(mut self, fraction: f64) -> SweepSchedule {
        self.pressure_threshold = fraction;
        self
    }

    /// Interval between disk-use checks; the first check is at the start.
    pub fn check_every(mut self, every: Duration) -> SweepSchedule {
        self.check_every = every;
        self
    }

    /// Minimum age of a file a pressure sweep may delete.
    pub fn pressure_older_than(mut self, age: Duration) -> SweepSchedule {
        self.pressure_older_than = age;
        self
    }

    /// Called on the schedule's thread after every run.
    pub fn on_report(
        mut self,
        callback: impl FnMut(Trigger, &Result<SweepReport, SweepError>) + Send + 'static,
    ) -> SweepSchedule {
        self.on_report = Some(Box::new(callback));
        self
    }

    /// Validates the settings and starts the thread.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] for a zero interval or a threshold outside 0.0–1.0;
    /// [`ScheduleError::Spawn`] if the thread cannot start.
    pub fn start(self) -> Result<ScheduleHandle, ScheduleError> {
        if self.every.is_zero() {
            return Err(invalid("every", "must be greater than zero"));
        }
        if self.check_every.is_zero() {
            return Err(invalid("check_every", "must be greater than zero"));
        }
        if !(0.0..=1.0).contains(&self.pressure_threshold) {
            return Err(invalid(
                "pressure_threshold",
                format!(
                    "must be a fraction from 0.0 to 1.0, got {}",
                    self.pressure_threshold
                ),
            ));
        }
        self.metrics.set_schedule(SystemTime::now(), self.every);
        let metrics = Arc::clone(&self.metrics);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("backstop-sweep-schedule".into())
            .spawn(move || Runner::new(self).run(&rx))
            .map_err(ScheduleError::Spawn)?;
        Ok(ScheduleHandle {
            tx,
            thread: Some(thread),
            metrics,
        })
    }
}

/// The schedule's state, driven by a clock measured from its start: the thread feeds it
/// real time, tests a manual one.
struct Runner {
    schedule: SweepSchedule,
    next_sweep: Duration,
    next_check: Duration,
    /// While pressure sweeps miss their goal: the current wait between them, and the
    /// earliest time of the next one.
    backoff: Option<(Duration, Duration)>,
    /// Times the backoff was entered (each logged once).
    backoffs_entered: u64,
}

impl Runner {
    fn new(schedule: SweepSchedule) -> Runner {
        Runner {
            next_sweep: schedule.every,
            next_check: Duration::ZERO,
            backoff: None,
            backoffs_entered: 0,
            schedule,
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Command>) {
        let origin = Instant::now();
        loop {
            let wake = self.next_wake();
            match rx.recv_timeout(wake.saturating_sub(origin.elapsed())) {
                Ok(Command::Trigger) => {
                    let sweep = self.schedule.sweep.clone();
                    self.sweep_once(Trigger::Manual, sweep);
                }
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => self.tick(origin.elapsed()),
            }
        }
    }

    /// When the next timer is due.
    fn next_wake(&self) -> Duration {
        self.next_sweep.min(self.next_check)
    }

    /// Runs what is due at `now`.
    fn tick(&mut self, now: Duration) {
        if now >= self.next_sweep {
            let sweep = self.schedule.sweep.clone();
            self.sweep_once(Trigger::Interval, sweep);
            self.next_sweep = now + self.schedule.every;
        }
        if now >= self.next_check {
            self.check_pressure(now);
            self.next_check = now + self.schedule.check_every;
        }
    }

    fn check_pressure(&mut self, now: Duration) {
        let root = self.schedule.sweep.root().to_path_buf();
        let (used, capacity) = match (self.schedule.disk_usage)(&root) {
            Ok(usage) => usage,
            Err(err) => {
                tracing::warn!(root = %root.display(), "cannot read disk usage: {err}");
                return;
            }
        };
        let Some((used_fraction, byte_goal)) =
            pressure_goal(used, capacity, self.schedule.pressure_threshold)
        else {
            if self.backoff.take().is_some() {
                tracing::info!(root = %root.display(), "disk usage back under the threshold; pressure sweeps no longer held back");
            }
            return;
        };
        if let Some((_, not_before)) = self.backoff {
            if now < not_before {
                return;
            }
        }
        let sweep = self
            .schedule
            .sweep
            .clone()
            .older_than(self.schedule.pressure_older_than)
            .byte_goal(byte_goal);
        let met = self.sweep_once(
            Trigger::Pressure {
                used_fraction,
                byte_goal,
            },
            sweep,
        );
        if met {
            if self.backoff.take().is_some() {
                tracing::info!(root = %root.display(), "a pressure sweep met its goal; no longer held back");
            }
            return;
        }
        let wait = match self.backoff {
            None => {
                self.backoffs_entered += 1;
                let wait = (self.schedule.check_every * 2).min(self.schedule.max_pressure_backoff);
                tracing::warn!(
                    root = %root.display(),
                    used_fraction,
                    "a pressure sweep could not free enough under the root (the space is used \
                     elsewhere, or by young or locked files); backing off: next pressure sweep in \
                     {wait:?}, doubling up to {:?} while this lasts",
                    self.schedule.max_pressure_backoff
                );
                wait
            }
            Some((wait, _)) => {
                let wait = (wait * 2).min(self.schedule.max_pressure_backoff);
                tracing::debug!(root = %root.display(), "pressure sweep still short of its goal; next in {wait:?}");
                wait
            }
        };
        self.backoff = Some((wait, now + wait));
    }

    /// Runs one sweep and reports it; true when it ran and met its byte goal (if any).
    fn sweep_once(&mut self, trigger: Trigger, sweep: Sweep) -> bool {
        let result = sweep.run();
        match &result {
            Ok(report) => tracing::info!(
                root = %sweep.root().display(),
                ?trigger,
                files_removed = report.files_removed,
                dirs_removed = report.dirs_removed,
                bytes_freed = report.bytes_freed,
                skipped = report.skipped.total(),
                errors = report.errors.total(),
                "{}",
                report.summary_line()
            ),
            Err(err) => tracing::error!(?trigger, "sweep failed: {err}"),
        }
        self.schedule.metrics.record(&result, SystemTime::now());
        if let Some(callback) = self.schedule.on_report.as_mut() {
            callback(trigger, &result);
        }
        result.is_ok_and(|report| report.goal_met())
    }
}

/// `(used, capacity)` of the filesystem holding `root`, as `df` counts them.
fn statvfs_usage(root: &Path) -> std::io::Result<(u64, u64)> {
    let usage = rustix::fs::statvfs(root)?;
    let used = usage
        .f_blocks
        .saturating_sub(usage.f_bfree)
        .saturating_mul(usage.f_frsize);
    let capacity = used.saturating_add(usage.f_bavail.saturating_mul(usage.f_frsize));
    Ok((used, capacity))
}

/// `Some((used_fraction, bytes to free))` when `used / capacity` exceeds `threshold`.
fn pressure_goal(used: u64, capacity: u64, threshold: f64) -> Option<(f64, u64)> {
    if capacity == 0 {
        return None;
    }
    let used_fraction = used as f64 / capacity as f64;
    if used_fraction <= threshold {
        return None;
    }
    let allowed = (threshold * capacity as f64).floor() as u64;
    Some((used_fraction, used.saturating_sub(allowed).max(1)))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid {
        field,
        reason: reason.into(),
    }
}

enum Command {
    Trigger,
    Shutdown,
}

/// A running [`SweepSchedule`]. Dropping it shuts the schedule down as
/// [`shutdown`](Self::shutdown) does.
#[derive(Debug)]
pub struct ScheduleHandle {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<SweepMetrics>,
}

impl ScheduleHandle {
    /// What the schedule's sweeps did (see [`SweepSchedule::metrics`]).
    pub fn metrics(&self) -> Arc<SweepMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Asks for a regular sweep now (after the one in progress, if any).
    pub fn trigger(&self) {
        // A send fails only if the thread is gone, and then there is nothing to trigger.
        let _ = self.tx.send(Command::Trigger);
    }

    /// Stops the schedule: a sweep in progress finishes (none is left half done), no
    /// new one starts, and the thread is joined.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the sweep schedule thread panicked");
            }
        }
    }
}

impl Drop for ScheduleHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_goal_brings_use_back_to_the_threshold() {
        assert_eq!(pressure_goal(70, 100, 0.8), None);
        assert_eq!(pressure_goal(80, 100, 0.8), None);
        let (fraction, goal) = pressure_goal(95, 100, 0.8).unwrap();
        assert!((fraction - 0.95).abs() < 1e-9);
        assert_eq!(goal, 15);
        assert_eq!(pressure_goal(0, 0, 0.5), None);
        assert_eq!(pressure_goal(1, 100, 0.0).map(|(_, g)| g), Some(1));
    }

    #[test]
    fn bad_settings_are_rejected_with_the_field() {
        let sweep = Sweep::new("/nonexistent-root-for-validation");
        for (schedule, field) in [
            (
                SweepSchedule::new(sweep.clone()).every(Duration::ZERO),
                "every",
            ),
            (
                SweepSchedule::new(sweep.clone()).check_every(Duration::ZERO),
                "check_every",
            ),
            (
                SweepSchedule::new(sweep.clone()).pressure_threshold(1.5),
                "pressure_threshold",
            ),
            (
                SweepSchedule::new(sweep.clone()).pressure_threshold(f64::NAN),
                "pressure_threshold",
            ),
        ] {
            match schedule.start() {
                Err(ScheduleError::Invalid { field: got, .. }) => assert_eq!(got, field),
                other => panic!("expected an error for {field}, got {other:?}"),
            }
        }
    }

    /// Each run is in the metrics before `on_report` hears of it: the start and the
    /// interval from the moment the schedule starts, then the run, its removals and the
    /// last success.
    #[test]
    fn every_run_is_counted_before_it_is_reported() {
        use crate::{AgeBy, RunOutcome};
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("old"), vec![1u8; 8192]).unwrap();
        let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
        filetime::set_file_mtime(root.path().join("old"), two_days_ago.into()).unwrap();
        let (tx, rx) = mpsc::channel();
        let schedule = SweepSchedule::new(Sweep::new(root.path()).age_by(AgeBy::Mtime))
            .every(Duration::from_secs(3600))
            .pressure_threshold(1.0);
        let metrics = schedule.metrics();
        let before_start = SystemTime::now();
        let handle = schedule
            .on_report({
                let metrics = Arc::clone(&metrics);
                move |_, _| tx.send(metrics.totals()).unwrap()
            })
            .start()
            .unwrap();
        let at_start = handle.metrics().totals();
        assert_eq!(at_start.runs(RunOutcome::Clean), 0);
        assert_eq!(at_start.last_success_unix_seconds(), None);
        let start = at_start.start_unix_seconds().unwrap();
        assert!(start >= crate::metrics::unix_seconds(before_start));
        assert!(
            at_start
                .to_textfile()
                .contains("backstop_sweep_interval_seconds 3600.0\n")
        );

        handle.trigger();
        let seen = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(seen.runs(RunOutcome::Clean), 1);
        assert!(seen.bytes_freed() >= 8192, "{seen:?}");
        assert!(seen.last_success_unix_seconds().unwrap() >= start);
        assert!(!root.path().join("old").exists());
        handle.shutdown();
    }

    /// The disk is 95 % full with data outside the (empty) root: every pressure sweep
    /// frees nothing. On a manual clock over three hours, pressure sweeps must back off
    /// exponentially (not run at every one-minute check), the backoff is entered (and
    /// logged) once, and when usage drops and rises again, sweeps resume at once.
    #[test]
    fn pressure_from_outside_the_root_backs_off_and_recovers() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};

        let root = tempfile::tempdir().unwrap();
        let used_percent = Arc::new(AtomicU64::new(95));
        let clock_secs = Arc::new(AtomicU64::new(0));
        let sweeps_at = Arc::new(Mutex::new(Vec::new()));
        let schedule = SweepSchedule::new(Sweep::new(root.path()))
            .every(Duration::from_secs(24 * 3600))
            .check_every(Duration::from_secs(60))
            .max_pressure_backoff(Duration::from_secs(3600))
            .disk_usage({
                let used_percent = Arc::clone(&used_percent);
                move |_| Ok((used_percent.load(Ordering::SeqCst), 100))
            })
            .on_report({
                let (clock_secs, sweeps_at) = (Arc::clone(&clock_secs), Arc::clone(&sweeps_at));
                move |trigger, result| {
                    assert!(matches!(trigger, Trigger::Pressure { .. }), "{trigger:?}");
                    assert!(!result.as_ref().unwrap().goal_met());
                    sweeps_at
                        .lock()
                        .unwrap()
                        .push(clock_secs.load(Ordering::SeqCst));
                }
            });
        let mut runner = Runner::new(schedule);
        let run_until = |runner: &mut Runner, end: u64| loop {
            let wake = runner.next_wake();
            if wake.as_secs() > end {
                break;
            }
            clock_secs.store(wake.as_secs(), Ordering::SeqCst);
            runner.tick(wake);
        };

        run_until(&mut runner, 3 * 3600);
        assert_eq!(
            *sweeps_at.lock().unwrap(),
            [0, 120, 360, 840, 1800, 3720, 7320],
            "waits of 2, 4, 8, 16, 32 minutes, then the 1 h cap"
        );
        assert_eq!(
            runner.backoffs_entered, 1,
            "entering the backoff is logged once"
        );

        // Usage drops: the next check ends the backoff, without a sweep.
        used_percent.store(50, Ordering::SeqCst);
        run_until(&mut runner, 3 * 3600 + 120);
        assert!(runner.backoff.is_none());
        assert_eq!(sweeps_at.lock().unwrap().len(), 7);
        // It rises again: a pressure sweep at the very next check, then a new backoff.
        used_percent.store(95, Ordering::SeqCst);
        run_until(&mut runner, 3 * 3600 + 180);
        assert_eq!(sweeps_at.lock().unwrap().last(), Some(&(3 * 3600 + 180)));
        assert_eq!(runner.backoffs_entered, 2);
    }
}
