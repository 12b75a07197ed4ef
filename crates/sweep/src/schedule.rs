//! A background thread that sweeps on an interval and under disk pressure.

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::SweepError;
use crate::report::SweepReport;
use crate::sweep::Sweep;

/// Default sweep interval: every 6 hours, as the original cron job.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(6 * 60 * 60);
/// Default disk-use fraction above which a pressure sweep runs.
pub const DEFAULT_PRESSURE_THRESHOLD: f64 = 0.80;
/// Default interval between disk-use checks.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(60);
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

/// Sweeps a root every [`every`](Self::every) (default 6 h) and, whenever its filesystem
/// is fuller than [`pressure_threshold`](Self::pressure_threshold) (default 80 %), runs a
/// pressure sweep with a byte goal that brings it back under.
///
/// Each run is reported through [`on_report`](Self::on_report) and `tracing`. The
/// interval sweep uses the [`Sweep`] as configured; the pressure sweep uses it with
/// [`Sweep::byte_goal`] set and [`Sweep::older_than`] lowered to
/// [`pressure_older_than`](Self::pressure_older_than). Without [`Sweep::now`], each run
/// judges ages against the clock at its start.
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
    on_report: Option<Callback>,
}

impl fmt::Debug for SweepSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SweepSchedule")
            .field("sweep", &self.sweep)
            .field("every", &self.every)
            .field("pressure_threshold", &self.pressure_threshold)
            .field("check_every", &self.check_every)
            .field("pressure_older_than", &self.pressure_older_than)
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
            on_report: None,
        }
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
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("backstop-sweep-schedule".into())
            .spawn(move || self.run(&rx))
            .map_err(ScheduleError::Spawn)?;
        Ok(ScheduleHandle {
            tx,
            thread: Some(thread),
        })
    }

    fn run(mut self, rx: &mpsc::Receiver<Command>) {
        let mut next_sweep = Instant::now() + self.every;
        let mut next_check = Instant::now();
        loop {
            let wake = next_sweep.min(next_check);
            match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Command::Trigger) => self.sweep_once(Trigger::Manual, self.sweep.clone()),
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if now >= next_sweep {
                        self.sweep_once(Trigger::Interval, self.sweep.clone());
                        next_sweep = Instant::now() + self.every;
                    }
                    if now >= next_check {
                        self.check_pressure();
                        next_check = Instant::now() + self.check_every;
                    }
                }
            }
        }
    }

    fn check_pressure(&mut self) {
        let usage = match rustix::fs::statvfs(self.sweep.root()) {
            Ok(usage) => usage,
            Err(errno) => {
                tracing::warn!(root = %self.sweep.root().display(), "cannot read disk usage: {}", std::io::Error::from(errno));
                return;
            }
        };
        let used = usage
            .f_blocks
            .saturating_sub(usage.f_bfree)
            .saturating_mul(usage.f_frsize);
        let capacity = used.saturating_add(usage.f_bavail.saturating_mul(usage.f_frsize));
        if let Some((used_fraction, byte_goal)) =
            pressure_goal(used, capacity, self.pressure_threshold)
        {
            let sweep = self
                .sweep
                .clone()
                .older_than(self.pressure_older_than)
                .byte_goal(byte_goal);
            self.sweep_once(
                Trigger::Pressure {
                    used_fraction,
                    byte_goal,
                },
                sweep,
            );
        }
    }

    fn sweep_once(&mut self, trigger: Trigger, sweep: Sweep) {
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
        if let Some(callback) = self.on_report.as_mut() {
            callback(trigger, &result);
        }
    }
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
}

impl ScheduleHandle {
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
}
