//! Edges a review found: each run here is small, hand-written and checked record by record.

use backstop_sim::config::SimConfig;
use backstop_sim::engine::{RunOptions, RunOutput, run};
use backstop_sim::trace::TraceReader;

/// Runs `trace` under `config`; returns the output and the decision log.
fn replay(config: &SimConfig, trace: &str) -> (RunOutput, String) {
    let mut log = Vec::new();
    let out = run(
        config,
        TraceReader::new(trace.as_bytes()),
        RunOptions {
            decisions_out: Some(&mut log),
            ..RunOptions::default()
        },
    )
    .expect("run completes");
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
