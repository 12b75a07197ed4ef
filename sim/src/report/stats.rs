//! [`Stats`]: the report accumulated while the engine runs.

use std::time::Duration;

use backstop_sim_check::check::CheckSummary;
use backstop_sim_check::log::{GateReason, Outcome, OverloadReason, Trigger};
use backstop_sim_check::trace::MAX_TIME_US;
use hdrhistogram::Histogram;

use super::output::{PerHour, Report, SimSection, SweepTotals, Waits, WallSection};
use crate::config::SimConfig;

/// Accumulates the report while the engine runs.
#[derive(Debug)]
pub struct Stats {
    requests: u64,
    admitted: u64,
    rate_limited: u64,
    queue_full: u64,
    too_many_keys: u64,
    waits: Histogram<u64>,
    max_queue_depth: u64,
    jobs_started: u64,
    jobs_completed: u64,
    jobs_crashed: u64,
    closures_memory: u64,
    closures_disk: u64,
    closed_since_us: Option<u64>,
    closed_us: u64,
    disk_peak_bytes: u64,
    temp_peak_bytes: u64,
    schedule: SweepTotals,
    pressure: SweepTotals,
    sweep_wall: Duration,
    sweep_files_real: u64,
    /// Decision-log lines written.
    pub decisions_written: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty.
    pub fn new() -> Self {
        Stats {
            requests: 0,
            admitted: 0,
            rate_limited: 0,
            queue_full: 0,
            too_many_keys: 0,
            waits: Histogram::new_with_max(MAX_TIME_US, 3).expect("valid histogram bounds"),
            max_queue_depth: 0,
            jobs_started: 0,
            jobs_completed: 0,
            jobs_crashed: 0,
            closures_memory: 0,
            closures_disk: 0,
            closed_since_us: None,
            closed_us: 0,
            disk_peak_bytes: 0,
            temp_peak_bytes: 0,
            schedule: SweepTotals::default(),
            pressure: SweepTotals::default(),
            sweep_wall: Duration::ZERO,
            sweep_files_real: 0,
            decisions_written: 0,
        }
    }

    /// A request was answered.
    #[inline]
    pub fn decision(&mut self, outcome: Outcome, reason: Option<OverloadReason>) {
        self.requests += 1;
        match (outcome, reason) {
            (Outcome::Admitted, _) => self.admitted += 1,
            (Outcome::RateLimited, _) => self.rate_limited += 1,
            (Outcome::Overloaded, Some(OverloadReason::TooManyKeys)) => self.too_many_keys += 1,
            (Outcome::Overloaded, _) => self.queue_full += 1,
        }
    }

    /// The queue reached `depth`.
    #[inline]
    pub fn queue_depth(&mut self, depth: u64) {
        self.max_queue_depth = self.max_queue_depth.max(depth);
    }

    /// A job started after waiting `wait_us`.
    pub fn job_started(&mut self, wait_us: u64) {
        self.jobs_started += 1;
        // Saturates at the histogram's bound (100 years) rather than failing.
        self.waits.saturating_record(wait_us);
    }

    /// A job ended.
    pub fn job_ended(&mut self, crashed: bool) {
        if crashed {
            self.jobs_crashed += 1;
        } else {
            self.jobs_completed += 1;
        }
    }

    /// The gate changed: `None` opened, `Some(reason)` closed.
    pub fn gate_change(&mut self, t_us: u64, change: Option<GateReason>) {
        match change {
            Some(GateReason::LowMemory) => self.closures_memory += 1,
            Some(GateReason::LowDisk) => self.closures_disk += 1,
            None => {}
        }
        match change {
            Some(_) => self.closed_since_us = Some(t_us),
            None => {
                if let Some(since) = self.closed_since_us.take() {
                    self.closed_us += t_us - since;
                }
            }
        }
    }

    /// Disk usage observed.
    pub fn disk_peak(&mut self, used: u64, temp: u64) {
        self.disk_peak_bytes = self.disk_peak_bytes.max(used);
        self.temp_peak_bytes = self.temp_peak_bytes.max(temp);
    }

    /// A sweep ran.
    pub fn sweep(
        &mut self,
        trigger: Trigger,
        files: u64,
        bytes: u64,
        files_real: u64,
        wall: Duration,
    ) {
        let t = match trigger {
            Trigger::Schedule => &mut self.schedule,
            Trigger::Pressure => &mut self.pressure,
        };
        t.runs += 1;
        t.files_removed += files;
        t.bytes_freed += bytes;
        self.sweep_wall += wall;
        self.sweep_files_real += files_real;
    }

    /// The final report.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &self,
        cfg: &SimConfig,
        source: &str,
        end_us: u64,
        still_queued: u64,
        still_running: u64,
        checks: &CheckSummary,
        wall: Duration,
        trace_events: u64,
    ) -> Report {
        let hours = end_us as f64 / 3.6e9;
        let per_h = |n: u64| if hours > 0.0 { n as f64 / hours } else { 0.0 };
        let closed_us = self.closed_us + self.closed_since_us.map_or(0, |s| end_us - s);
        let wall_s = wall.as_secs_f64().max(1e-9);
        let sweep_s = self.sweep_wall.as_secs_f64();
        Report {
            sim: SimSection {
                source: source.to_owned(),
                seed: cfg.seed,
                config: {
                    let mut c = cfg.clone();
                    c.limits.resources.disk_path = "-".into();
                    c
                },
                simulated_us: end_us,
                requests: self.requests,
                admitted: self.admitted,
                rate_limited: self.rate_limited,
                overloaded_queue_full: self.queue_full,
                overloaded_too_many_keys: self.too_many_keys,
                per_hour: PerHour {
                    requests: per_h(self.requests),
                    admitted: per_h(self.admitted),
                    rate_limited: per_h(self.rate_limited),
                    overloaded: per_h(self.queue_full + self.too_many_keys),
                },
                queue_wait: Waits {
                    jobs: self.waits.len(),
                    p50_us: self.waits.value_at_quantile(0.5),
                    p99_us: self.waits.value_at_quantile(0.99),
                    max_us: self.waits.max(),
                },
                max_queue_depth: self.max_queue_depth,
                jobs_started: self.jobs_started,
                jobs_completed: self.jobs_completed,
                jobs_crashed: self.jobs_crashed,
                still_queued,
                still_running,
                gate_closures_low_memory: self.closures_memory,
                gate_closures_low_disk: self.closures_disk,
                gate_closed_us: closed_us,
                disk_peak_bytes: self.disk_peak_bytes,
                disk_peak_percent: self.disk_peak_bytes as f64 * 100.0
                    / cfg.disk.capacity_bytes as f64,
                temp_peak_bytes: self.temp_peak_bytes,
                sweeps_schedule: self.schedule,
                sweeps_pressure: self.pressure,
                checks: checks.clone(),
            },
            wall: WallSection {
                elapsed_s: wall.as_secs_f64(),
                trace_events,
                events_per_s: trace_events as f64 / wall_s,
                speedup: end_us as f64 / 1e6 / wall_s,
                sweep_s,
                sweep_files_removed: self.sweep_files_real,
                sweep_files_per_s: if sweep_s > 0.0 {
                    self.sweep_files_real as f64 / sweep_s
                } else {
                    0.0
                },
                decisions_written: self.decisions_written,
            },
        }
    }
}
