//! What several of the simulator's test files share: a small, busy configuration, a
//! generator over it, a run that keeps its decision log, the report and page a run
//! renders, and the binary. Each test file is a crate of its own and uses part of this.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use backstop_sim::config::SimConfig;
use backstop_sim::report::{RunOutput, deterministic_json};
use backstop_sim::run::{RunOptions, run};
use backstop_sim::scenario::{GenParams, Scenario};
use backstop_sim_check::trace::EventSource;

/// An hour of virtual time, in microseconds.
pub const HOUR_US: u64 = 3_600_000_000;

/// Small and busy: sweeps, crashes and pressure all happen within two hours.
pub fn busy() -> SimConfig {
    let mut c = SimConfig {
        crash_fraction: 0.2,
        ..SimConfig::default()
    };
    c.limits.queue.max = 10;
    c.limits.jobs.max = 2;
    c.disk.capacity_bytes = 20 << 30;
    c.sweep.interval = Duration::from_secs(1800);
    c.sweep.max_age = Duration::from_secs(1200);
    c.sweep.pressure_max_age = Duration::from_secs(120);
    c
}

/// `scenario` over `config` (its seed, rate limit and disk) for `duration_us` of virtual
/// time at `rate_per_s`; override a field with `GenParams { seed, ..gen_params(…) }`.
pub fn gen_params(
    config: &SimConfig,
    scenario: Scenario,
    duration_us: u64,
    rate_per_s: f64,
) -> GenParams {
    GenParams {
        scenario,
        seed: config.seed,
        duration_us,
        rate_per_s,
        rate_limit: config.limits.rate.limit,
        rate_window_us: config.rate_window_us(),
        disk_capacity_bytes: config.disk.capacity_bytes,
    }
}

/// Runs `source` under `config` with `options` (their log and progress hooks aside),
/// keeping the decision log.
///
/// # Panics
///
/// When the run fails to complete.
pub fn run_logged<S: EventSource>(
    config: &SimConfig,
    source: S,
    options: RunOptions<'_>,
) -> (RunOutput, Vec<u8>) {
    let RunOptions {
        scratch_parent,
        source_label,
        replicas,
        store,
        decisions_out: _,
        progress: _,
    } = options;
    let mut log = Vec::new();
    let out = run(
        config,
        source,
        RunOptions {
            decisions_out: Some(&mut log),
            scratch_parent,
            progress: None,
            source_label,
            replicas,
            store,
        },
    )
    .expect("run completes");
    (out, log)
}

/// The run's deterministic report (JSON) and its HTML page, charts included.
pub fn report_and_page(out: &RunOutput, config: &SimConfig) -> (String, String) {
    let report = deterministic_json(&out.report);
    let charts = backstop_sim::charts::render(&out.series, config).expect("charts render");
    let html = backstop_sim::html::render(&out.report, &charts);
    (report, html)
}

/// The `backstop-sim` binary on `args`, run in `dir` with its scratch directory there.
pub fn sim(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backstop-sim"))
        .args(args)
        .current_dir(dir)
        .env("BACKSTOP_SIM_SCRATCH", dir.join("scratch"))
        .output()
        .expect("binary runs")
}
