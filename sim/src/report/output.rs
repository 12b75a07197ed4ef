//! What a run reports: the deterministic section (counts, waits, disk, sweeps, the
//! checkers' verdict) and the wall-clock one, as a terminal table and as JSON.

use std::fmt::Write as _;

use backstop_sim_check::check::CheckSummary;
use serde::Serialize;

use super::series::Series;
use crate::config::SimConfig;

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
        let mut o = String::new();
        self.text_requests(&mut o);
        self.sim.text_service(&mut o);
        self.text_wall(&mut o);
        let checks = &self.sim.checks;
        let _ = match &checks.first {
            None => writeln!(
                o,
                "  invariants          all 6 held over {} decision-log records",
                checks.records
            ),
            Some(v) => writeln!(
                o,
                "  INVARIANT VIOLATED   {v} ({} violation(s) in all)",
                checks.violations
            ),
        };
        o
    }

    /// The title and the requests' table.
    fn text_requests(&self, o: &mut String) {
        let (s, w) = (&self.sim, &self.wall);
        let hours = s.simulated_us as f64 / 3.6e9;
        let _ = writeln!(o, "backstop-sim report — {} (seed {})", s.source, s.seed);
        let _ = writeln!(
            o,
            "simulated {:.2} h in {:.2} s wall ({:.0}× real time)",
            hours, w.elapsed_s, w.speedup
        );
        let _ = writeln!(o);
        let _ = writeln!(o, "  {:<28}{:>14}{:>14}", "requests", "count", "per hour");
        let mut row = |name: &str, n: u64, rate: f64| {
            let _ = writeln!(o, "  {name:<28}{n:>14}{rate:>14.1}");
        };
        let per_h = |n: u64| if hours > 0.0 { n as f64 / hours } else { 0.0 };
        row("received", s.requests, s.per_hour.requests);
        row("admitted", s.admitted, s.per_hour.admitted);
        row("429 rate_limited", s.rate_limited, s.per_hour.rate_limited);
        let full = s.overloaded_queue_full;
        row("503 queue_full", full, per_h(full));
        let too_many = s.overloaded_too_many_keys;
        if too_many > 0 {
            row("503 too_many_keys", too_many, per_h(too_many));
        }
        let _ = writeln!(o);
    }

    /// The wall-clock lines.
    fn text_wall(&self, o: &mut String) {
        let w = &self.wall;
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
    }
}

impl SimSection {
    /// The service's lines: waits, jobs, the gate, the disk, the sweeps.
    fn text_service(&self, o: &mut String) {
        let s = self;
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

/// The result of a run.
#[derive(Debug)]
pub struct RunOutput {
    /// The report (its `wall` section is the only part that varies between runs).
    pub report: Report,
    /// Time series for charts.
    pub series: Series,
    /// The checkers' verdict.
    pub check: CheckSummary,
}

/// The report as pretty JSON without its wall-clock section: what determinism promises.
pub fn deterministic_json(report: &Report) -> String {
    serde_json::to_string_pretty(&report.deterministic()).expect("report serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_us(1_500_000), "1.5 s");
        assert_eq!(fmt_bytes(5 << 30), "5.0 GiB");
        assert_eq!(fmt_bytes(12), "12 B");
    }
}
