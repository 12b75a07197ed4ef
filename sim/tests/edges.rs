//! Edges of the engine: each run here is small, hand-written and checked record by record.

mod common;

use backstop_sim::config::SimConfig;
use backstop_sim::report::RunOutput;
use backstop_sim::run::RunOptions;
use backstop_sim_check::trace::TraceReader;

/// Runs `trace` under `config`; returns the output and the decision log.
fn replay(config: &SimConfig, trace: &str) -> (RunOutput, String) {
    let (out, log) = common::run_logged(
        config,
        TraceReader::new(trace.as_bytes()),
        RunOptions::default(),
    );
    (out, String::from_utf8(log).expect("the log is UTF-8"))
}

/// The log's `gate` records.
fn gate_records(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("\"event\":\"gate\""))
        .collect()
}

#[test]
fn a_disabled_gate_never_closes_and_the_run_is_clean() {
    let mut config = SimConfig::default();
    config.limits.resources.enabled = false;
    // Memory and disk both far below the (ignored) thresholds, then a request that must
    // start at once.
    let trace = "{\"t_us\":0,\"type\":\"memory\",\"available_bytes\":1}\n\
                 {\"t_us\":0,\"type\":\"disk\",\"used_bytes\":107374182300}\n\
                 {\"t_us\":5,\"type\":\"request\",\"id\":1,\"job_us\":1000}\n";
    let (out, log) = replay(&config, trace);
    assert_eq!(out.check.first, None, "{:?}\n{log}", out.check.first);
    assert_eq!(gate_records(&log), Vec::<&str>::new(), "{log}");
    assert_eq!(out.report.sim.gate_closures_low_memory, 0);
    assert_eq!(out.report.sim.gate_closures_low_disk, 0);
    assert!(
        log.contains("{\"t_us\":5,\"id\":1,\"event\":\"job_start\"}"),
        "{log}"
    );
}

#[test]
fn a_disk_smaller_than_the_free_space_minimum_closes_the_gate_from_the_start() {
    let mut config = SimConfig::default();
    // 1 GiB of disk against a 5 GiB minimum: short before any reading or file.
    config.disk.capacity_bytes = 1 << 30;
    let trace = "{\"t_us\":0,\"type\":\"request\",\"id\":1,\"job_us\":1000}\n";
    let (out, log) = replay(&config, trace);
    assert_eq!(out.check.first, None, "{:?}\n{log}", out.check.first);
    let first = log.lines().next().expect("a record");
    assert_eq!(
        first, "{\"t_us\":0,\"event\":\"gate\",\"open\":false,\"reason\":\"low_disk\"}",
        "{log}"
    );
    // The job waits for ever: the gate never opens.
    assert!(!log.contains("job_start"), "{log}");
    assert_eq!(out.report.sim.gate_closures_low_disk, 1);
    assert_eq!(out.report.sim.still_queued, 1);
}

/// What one job did, read back from a decision log.
#[derive(Debug, Default, Clone)]
struct JobSeen {
    start_us: Option<u64>,
    end_us: Option<u64>,
    /// (stage, t_us, files) of each `files_written` record.
    stages: Vec<(u32, u64, u32)>,
}

/// Checks the documented stage rule on a log: a job writes exactly the stages due strictly
/// before it ends (stage `s` at `start + ⌊job_us·s/S⌋`, skipping stages without files),
/// each at its instant; ends come first at an instant, crashed or not.
fn assert_stage_rule(trace: &str, log: &str, stages: u32) {
    use backstop_sim_check::layout::{stage_files, stage_start_us};
    use std::collections::BTreeMap;
    let mut jobs: BTreeMap<u64, JobSeen> = BTreeMap::new();
    for line in log.lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
        let (Some(id), Some(t)) = (r["id"].as_u64(), r["t_us"].as_u64()) else {
            continue;
        };
        let job = jobs.entry(id).or_default();
        match r["event"].as_str() {
            Some("job_start") => job.start_us = Some(t),
            Some("job_end") => job.end_us = Some(t),
            Some("files_written") => job.stages.push((
                r["stage"].as_u64().unwrap() as u32,
                t,
                r["files"].as_u64().unwrap() as u32,
            )),
            _ => {}
        }
    }
    let mut checked = 0;
    for line in trace.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        if ev["type"] != "request" {
            continue;
        }
        let id = ev["id"].as_u64().unwrap();
        let job_us = ev["job_us"].as_u64().unwrap();
        let files = ev["files"].as_u64().unwrap_or(0) as u32;
        let seen = &jobs[&id];
        let (Some(start), Some(end)) = (seen.start_us, seen.end_us) else {
            continue;
        };
        let expected: Vec<(u32, u64, u32)> = (0..stages)
            .map(|s| (s, stage_start_us(start, job_us, stages, s)))
            .filter(|&(_, at)| at < end)
            .map(|(s, at)| (s, at, stage_files(files, stages, s).len() as u32))
            .filter(|&(_, _, n)| n > 0)
            .collect();
        assert_eq!(
            seen.stages, expected,
            "job {id} (job_us {job_us}, {files} files, start {start}, end {end})\n{log}"
        );
        checked += 1;
    }
    assert!(checked > 0, "some job ran");
}

/// Requests at 0, 1 s, 2 s, … of every length in `lengths` × file count in `files`.
fn grid_trace(lengths: &[u64], files: &[u32]) -> String {
    let mut trace = String::new();
    let mut id = 0;
    for &job_us in lengths {
        for &f in files {
            id += 1;
            trace.push_str(&format!(
                "{{\"t_us\":{},\"type\":\"request\",\"id\":{id},\"job_us\":{job_us},\"files\":{f},\"bytes\":{}}}\n",
                id * 1_000_000,
                u64::from(f) * 1000
            ));
        }
    }
    trace
}

/// One zero-length job of 12 files at 7 µs, crashing or not: the run is clean, the job
/// ends at its start instant as `crashed`, and no file is written. Returns the output.
fn zero_length_job(crashed: bool) -> RunOutput {
    let mut config = SimConfig {
        crash_fraction: if crashed { 1.0 } else { 0.0 },
        ..SimConfig::default()
    };
    config.limits.rate.limit = 1000;
    let trace =
        "{\"t_us\":7,\"type\":\"request\",\"id\":1,\"job_us\":0,\"files\":12,\"bytes\":1200}\n";
    let (out, log) = replay(&config, trace);
    assert_eq!(out.check.first, None, "{:?}\n{log}", out.check.first);
    let end = format!("{{\"t_us\":7,\"id\":1,\"event\":\"job_end\",\"crashed\":{crashed}}}");
    assert!(log.contains(&end), "{log}");
    assert!(!log.contains("files_written"), "{log}");
    out
}

#[test]
fn a_job_crashing_at_its_start_instant_writes_nothing() {
    // A zero-length job that crashes crashes at its start instant: the draw is in
    // [start, start + 0].
    let out = zero_length_job(true);
    assert_eq!(out.report.sim.temp_peak_bytes, 0);
}

#[test]
fn a_zero_length_job_writes_no_stage_at_all() {
    zero_length_job(false);
}

#[test]
fn every_job_writes_exactly_the_stages_due_before_it_ends() {
    let lengths = [0, 1, 2, 3, 5, 1000];
    let files = [0, 1, 2, 3, 12];
    let trace = grid_trace(&lengths, &files);
    for crash_fraction in [0.0, 0.5, 1.0] {
        for stages in [1, 3, 4] {
            let mut config = SimConfig {
                crash_fraction,
                ..SimConfig::default()
            };
            config.limits.rate.limit = 1000;
            config.disk.stages = stages;
            let (out, log) = replay(&config, &trace);
            assert_eq!(out.check.first, None, "{:?}\n{log}", out.check.first);
            assert_stage_rule(&trace, &log, stages);
        }
    }
}

#[test]
fn the_queue_series_holds_its_depth_through_minutes_without_arrivals() {
    let mut config = SimConfig {
        crash_fraction: 0.0,
        ..SimConfig::default()
    };
    config.limits.jobs.max = 1;
    config.limits.queue.max = 2;
    // One 10-minute job runs, two wait, a fourth is refused; then nothing arrives for 40
    // minutes while the queue drains one job every 10 minutes.
    let mut trace = String::new();
    for id in 1..=4 {
        trace.push_str(&format!(
            "{{\"t_us\":0,\"type\":\"request\",\"id\":{id},\"job_us\":600000000}}\n"
        ));
    }
    let (out, log) = replay(&config, &trace);
    assert_eq!(out.check.first, None, "{:?}\n{log}", out.check.first);
    assert_eq!(out.report.sim.overloaded_queue_full, 1);
    let depth: Vec<u64> = out.series.bins.iter().map(|b| b.queue_max).collect();
    // One-minute bins: 2 waiting for the first ten minutes, then 1, then none.
    let mut expected = vec![2; 11];
    expected.extend([1; 10]);
    expected.extend([0; 10]);
    assert_eq!(depth[..31], expected[..], "{depth:?}");
}
