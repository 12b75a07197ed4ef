//! The run report: counts, waits (HdrHistogram), disk and sweeps; a terminal table and
//! JSON. Everything but the `wall` section is deterministic.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::CheckSummary;
use crate::config::SimConfig;
use crate::log::{GateReason, Outcome, OverloadReason, Trigger};
use crate::trace::MAX_TIME_US;

/// Totals of one kind of sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SweepTotals {
    /// Sweeps run.
    pub runs: u64,
    /// Temp files they removed.
    pub files_removed: u64,
    /// Their declared bytes.
    pub bytes_freed: u64,
}

/// Queue wait percentiles, µs (arrival to job start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Waits {
    /// Jobs that started.
    pub jobs: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Longest.
    pub max_us: u64,
}

/// Per-hour rates of simulated time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PerHour {
    /// Requests.
    pub requests: f64,
    /// Admitted.
    pub admitted: f64,
    /// 429.
    pub rate_limited: f64,
    /// 503.
    pub overloaded: f64,
}

/// The deterministic part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimSection {
    /// The input (trace path or scenario).
    pub source: String,
    /// Root seed.
    pub seed: u64,
    /// The whole configuration of the run (with the seed in force). Its
    /// `limits.resources.disk_path` reads `-`: free disk comes from the trace, and the
    /// default (the machine's temp dir) would make reports differ between machines.
    pub config: SimConfig,
    /// Virtual time of the last event, µs.
    pub simulated_us: u64,
    /// Requests.
    pub requests: u64,
    /// Admitted into the queue.
    pub admitted: u64,
    /// 429.
    pub rate_limited: u64,
    /// 503 `queue_full`.
    pub overloaded_queue_full: u64,
    /// 503 `too_many_keys`.
    pub overloaded_too_many_keys: u64,
    /// Rates per simulated hour.
    pub per_hour: PerHour,
    /// Queue waits.
    pub queue_wait: Waits,
    /// Deepest the queue got.
    pub max_queue_depth: u64,
    /// Jobs started.
    pub jobs_started: u64,
    /// Jobs that ended normally.
    pub jobs_completed: u64,
    /// Jobs that crashed, leaving files.
    pub jobs_crashed: u64,
    /// Admitted jobs still queued at the end (gate closed for good).
    pub still_queued: u64,
    /// Jobs still running at the end.
    pub still_running: u64,
    /// Gate closures for low memory.
    pub gate_closures_low_memory: u64,
    /// Gate closures for low disk.
    pub gate_closures_low_disk: u64,
    /// Virtual time the gate spent closed, µs.
    pub gate_closed_us: u64,
    /// Peak disk usage (background + temp), bytes.
    pub disk_peak_bytes: u64,
    /// ...as a percentage of capacity.
    pub disk_peak_percent: f64,
    /// Peak temp bytes present.
    pub temp_peak_bytes: u64,
    /// Scheduled sweeps.
    pub sweeps_schedule: SweepTotals,
    /// Pressure sweeps.
    pub sweeps_pressure: SweepTotals,
    /// The checkers' verdict.
    pub checks: CheckSummary,
}

/// Wall-clock figures: they vary from run to run and are excluded from determinism.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WallSection {
    /// Seconds the run took.
    pub elapsed_s: f64,
    /// Trace events replayed.
    pub trace_events: u64,
    /// ...per wall second.
    pub events_per_s: f64,
    /// Simulated seconds per wall second.
    pub speedup: f64,
    /// Wall seconds spent inside sweeps.
    pub sweep_s: f64,
    /// Files the real sweeper removed.
    pub sweep_files_removed: u64,
    /// ...per second of sweeping.
    pub sweep_files_per_s: f64,
    /// Decision-log lines written.
    pub decisions_written: u64,
}

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Deterministic figures.
    pub sim: SimSection,
    /// Wall-clock figures.
    pub wall: WallSection,
}

impl Report {
    /// The part that the same seed, config and trace always reproduce byte for byte.
    pub fn deterministic(&self) -> &SimSection {
        &self.sim
    }

    /// The terminal table.
    pub fn render_text(&self) -> String {
        let s = &self.sim;
        let w = &self.wall;
        let mut o = String::new();
        let hours = s.simulated_us as f64 / 3.6e9;
        let _ = writeln!(o, "backstop-sim report — {} (seed {})", s.source, s.seed);
        let _ = writeln!(
            o,
            "simulated {:.2} h in {:.2} s wall ({:.0}× real time)",
            hours, w.elapsed_s, w.speedup
        );
        let _ = writeln!(o);
        let _ = writeln!(o, "  {:<28}{:>14}{:>14}", "requests", "count", "per hour");
        let row = |o: &mut String, name: &str, n: u64, rate: f64| {
            let _ = writeln!(o, "  {name:<28}{n:>14}{rate:>14.1}");
        };
        row(&mut o, "received", s.requests, s.per_hour.requests);
        row(&mut o, "admitted", s.admitted, s.per_hour.admitted);
        row(
            &mut o,
            "429 rate_limited",
            s.rate_limited,
            s.per_hour.rate_limited,
        );
        let per_h = |n: u64| if hours > 0.0 { n as f64 / hours } else { 0.0 };
        row(
            &mut o,
            "503 queue_full",
            s.overloaded_queue_full,
            per_h(s.overloaded_queue_full),
        );
        if s.overloaded_too_many_keys > 0 {
            row(
                &mut o,
                "503 too_many_keys",
                s.overloaded_too_many_keys,
                per_h(s.overloaded_too_many_keys),
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "  queue wait          p50 {}   p99 {}   max {}   (max depth {})",
            fmt_us(s.queue_wait.p50_us),
            fmt_us(s.queue_wait.p99_us),
            fmt_us(s.queue_wait.max_us),
            s.max_queue_depth
        );
        let _ = writeln!(
            o,
            "  jobs                started {}   completed {}   crashed {}   left queued {}   left running {}",
            s.jobs_started, s.jobs_completed, s.jobs_crashed, s.still_queued, s.still_running
        );
        let _ = writeln!(
            o,
            "  resource gate       closed {}× low memory, {}× low disk, {} closed in all",
            s.gate_closures_low_memory,
            s.gate_closures_low_disk,
            fmt_us(s.gate_closed_us)
        );
        let _ = writeln!(
            o,
            "  disk                peak {} ({:.1} % of capacity), temp files peak {}",
            fmt_bytes(s.disk_peak_bytes),
            s.disk_peak_percent,
            fmt_bytes(s.temp_peak_bytes)
        );
        for (name, t) in [
            ("scheduled sweeps", s.sweeps_schedule),
            ("pressure sweeps", s.sweeps_pressure),
        ] {
            let _ = writeln!(
                o,
                "  {name:<20}{} runs, {} files, {} removed",
                t.runs,
                t.files_removed,
                fmt_bytes(t.bytes_freed)
            );
        }
        let _ = writeln!(
            o,
            "  sweeper (wall)      {} files in {:.3} s = {:.0} files/s",
            w.sweep_files_removed, w.sweep_s, w.sweep_files_per_s
        );
        let _ = writeln!(
            o,
            "  replay (wall)       {} events, {:.2} M events/s",
            w.trace_events,
            w.events_per_s / 1e6
        );
        let _ = writeln!(o);
        match &s.checks.first {
            None => {
                let _ = writeln!(
                    o,
                    "  invariants          all 6 held over {} decision-log records",
                    s.checks.records
                );
            }
            Some(v) => {
                let _ = writeln!(
                    o,
                    "  INVARIANT VIOLATED   {v} ({} violation(s) in all)",
                    s.checks.violations
                );
            }
        }
        o
    }
}

/// `1.25 s`, `3 m 20 s` and so on.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else if us < 120_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else if us < 7_200_000_000 {
        format!("{:.1} min", us as f64 / 6e7)
    } else {
        format!("{:.1} h", us as f64 / 3.6e9)
    }
}

/// `12.3 GiB` and so on.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

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

/// One time bin of the charts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bin {
    /// Admitted in the bin.
    pub admitted: u64,
    /// 429s.
    pub rate_limited: u64,
    /// 503s.
    pub overloaded: u64,
    /// Deepest queue in the bin, counting the depth it opened with.
    pub queue_max: u64,
    /// Highest disk usage in the bin, counting the usage it opened with.
    pub disk_max: u64,
}

/// The most bins a series keeps; beyond, neighbours merge and the bin width doubles.
pub const MAX_BINS: usize = 1440;
/// The most sweep marks kept for charts.
pub const MAX_SWEEP_MARKS: usize = 10_000;

/// Bounded time series for the charts.
#[derive(Debug, Clone)]
pub struct Series {
    /// Width of one bin, µs.
    pub bin_us: u64,
    /// The bins from time 0.
    pub bins: Vec<Bin>,
    /// (time, trigger, files removed) of sweeps.
    pub sweeps: Vec<(u64, Trigger, u64)>,
    /// The queue depth and disk usage last recorded: levels hold between samples, so a
    /// new bin opens with them (a full queue with no arrival for a minute is still full).
    queue_now: u64,
    disk_now: u64,
}

impl Default for Series {
    fn default() -> Self {
        Self::new()
    }
}

impl Series {
    /// Empty, one-minute bins.
    pub fn new() -> Self {
        Series {
            bin_us: 60_000_000,
            bins: Vec::new(),
            sweeps: Vec::new(),
            queue_now: 0,
            disk_now: 0,
        }
    }

    #[inline]
    fn bin(&mut self, t_us: u64) -> &mut Bin {
        let mut i = (t_us / self.bin_us) as usize;
        while i >= MAX_BINS {
            self.merge();
            i = (t_us / self.bin_us) as usize;
        }
        if i >= self.bins.len() {
            let opening = Bin {
                queue_max: self.queue_now,
                disk_max: self.disk_now,
                ..Bin::default()
            };
            self.bins.resize(i + 1, opening);
        }
        &mut self.bins[i]
    }

    fn merge(&mut self) {
        let merged = self
            .bins
            .chunks(2)
            .map(|c| {
                c.iter().fold(Bin::default(), |a, b| Bin {
                    admitted: a.admitted + b.admitted,
                    rate_limited: a.rate_limited + b.rate_limited,
                    overloaded: a.overloaded + b.overloaded,
                    queue_max: a.queue_max.max(b.queue_max),
                    disk_max: a.disk_max.max(b.disk_max),
                })
            })
            .collect();
        self.bins = merged;
        self.bin_us *= 2;
    }

    /// A decision at `t_us`.
    #[inline]
    pub fn decision(&mut self, t_us: u64, outcome: Outcome) {
        let b = self.bin(t_us);
        match outcome {
            Outcome::Admitted => b.admitted += 1,
            Outcome::RateLimited => b.rate_limited += 1,
            Outcome::Overloaded => b.overloaded += 1,
        }
    }

    /// Queue depth at `t_us`.
    #[inline]
    pub fn queue(&mut self, t_us: u64, depth: u64) {
        let b = self.bin(t_us);
        b.queue_max = b.queue_max.max(depth);
        self.queue_now = depth;
    }

    /// Disk usage at `t_us`.
    pub fn disk(&mut self, t_us: u64, used: u64) {
        let b = self.bin(t_us);
        b.disk_max = b.disk_max.max(used);
        self.disk_now = used;
    }

    /// A sweep at `t_us`.
    pub fn sweep(&mut self, t_us: u64, trigger: Trigger, files: u64) {
        if self.sweeps.len() < MAX_SWEEP_MARKS {
            self.sweeps.push((t_us, trigger, files));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_stays_bounded_and_keeps_totals() {
        let mut s = Series::new();
        for m in 0..10_000u64 {
            s.decision(m * 60_000_000, Outcome::Admitted);
        }
        assert!(s.bins.len() <= MAX_BINS);
        assert_eq!(s.bins.iter().map(|b| b.admitted).sum::<u64>(), 10_000);
        assert_eq!(s.bin_us, 60_000_000 * 8);
    }

    #[test]
    fn levels_hold_across_bins_without_samples() {
        let mut s = Series::new();
        s.queue(0, 100);
        s.disk(0, 7);
        // Nothing for ten minutes, then the queue drains.
        s.queue(10 * 60_000_000, 0);
        assert_eq!(s.bins.len(), 11);
        assert!(
            s.bins.iter().all(|b| b.queue_max == 100 && b.disk_max == 7),
            "{:?}",
            s.bins
        );
        s.queue(11 * 60_000_000, 3);
        assert_eq!(s.bins[11].queue_max, 3, "a bin opens at the last level, 0");
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_us(1_500_000), "1.5 s");
        assert_eq!(fmt_bytes(5 << 30), "5.0 GiB");
        assert_eq!(fmt_bytes(12), "12 B");
    }
}
