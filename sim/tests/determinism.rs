//! Same seed, config and trace → byte-identical decision log, report (minus the
//! wall-clock section), charts and HTML page; every scenario runs clean.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

mod common;

use backstop_sim::run::{RunOptions, run};
use backstop_sim::scenario::{GenParams, Generator, Scenario};
use common::{HOUR_US, busy, gen_params, report_and_page, run_logged};

/// Two hours of `scenario` at 0.05 requests a second, from `seed`.
fn params(scenario: Scenario, seed: u64, config: &backstop_sim::config::SimConfig) -> GenParams {
    GenParams {
        seed,
        ..gen_params(config, scenario, 2 * HOUR_US, 0.05)
    }
}

/// (decision log bytes, deterministic report JSON, HTML page, hash of all three).
fn run_once(scenario: Scenario, seed: u64) -> (Vec<u8>, String, String, u64) {
    let mut config = busy();
    config.seed = seed;
    let (out, log) = run_logged(
        &config,
        Generator::new(params(scenario, seed, &config)),
        RunOptions {
            source_label: scenario.name().into(),
            ..RunOptions::default()
        },
    );
    assert_eq!(
        out.check.first, None,
        "{scenario} seed {seed}: {:?}",
        out.check.first
    );
    let (report, html) = report_and_page(&out, &config);
    let mut h = DefaultHasher::new();
    log.hash(&mut h);
    report.hash(&mut h);
    html.hash(&mut h);
    (log, report, html, h.finish())
}

#[test]
fn same_seed_gives_identical_log_and_report() {
    let (log_a, report_a, html_a, hash_a) = run_once(Scenario::DiskFill, 42);
    let (log_b, report_b, html_b, hash_b) = run_once(Scenario::DiskFill, 42);
    assert_eq!(hash_a, hash_b);
    assert!(log_a == log_b, "decision logs differ");
    assert_eq!(report_a, report_b);
    assert!(html_a == html_b, "HTML pages differ");
    assert_eq!(
        html_a.matches("<svg").count(),
        3,
        "the page holds the charts"
    );
    assert!(log_a.len() > 1000, "the run did something");
    let text = String::from_utf8(log_a).unwrap();
    assert!(
        text.contains("\"trigger\":\"pressure\""),
        "disk-fill triggers pressure sweeps"
    );
    assert!(text.contains("\"crashed\":true"));
    assert!(text.contains("\"event\":\"file_removed\""));
}

#[test]
fn another_seed_gives_another_log() {
    let (_, _, html_a, a) = run_once(Scenario::Steady, 1);
    let (_, _, html_b, b) = run_once(Scenario::Steady, 2);
    assert_ne!(a, b);
    assert_ne!(html_a, html_b);
}

#[test]
fn every_scenario_runs_clean() {
    for s in Scenario::ALL {
        let (log, report, _, _) = run_once(s, 7);
        assert!(!log.is_empty(), "{s}");
        assert!(report.contains("\"violations\": 0"), "{s}: {report}");
    }
}

fn run_report(scenario: Scenario) -> backstop_sim::report::SimSection {
    let config = busy();
    let out = run(
        &config,
        Generator::new(params(scenario, 11, &config)),
        RunOptions::default(),
    )
    .expect("run completes");
    assert_eq!(out.check.first, None, "{scenario}");
    out.report.sim
}

#[test]
fn scenarios_exercise_what_they_claim() {
    let dip = run_report(Scenario::MemoryDip);
    assert!(dip.gate_closures_low_memory >= 1, "{dip:?}");
    assert!(
        dip.gate_closed_us >= 1_000_000_000,
        "closed for most of the 20-minute dip"
    );
    let fill = run_report(Scenario::DiskFill);
    assert!(fill.sweeps_pressure.runs >= 1, "{fill:?}");
    assert!(fill.sweeps_pressure.files_removed >= 1, "{fill:?}");
    let edge = run_report(Scenario::WindowEdge);
    assert!(
        edge.rate_limited >= 30,
        "the second half of each burst is refused: {edge:?}"
    );
    let crowd = run_report(Scenario::FlashCrowd);
    assert!(crowd.overloaded_queue_full >= 1, "{crowd:?}");
    assert_eq!(crowd.max_queue_depth, 10);
}

#[test]
fn per_client_limits_hold_back_the_abusive_client() {
    let mut config = busy();
    // A generous global limit, a tight one per client: client-0 sends half the traffic.
    config.limits.rate.limit = 1000;
    config.per_key = Some(backstop_sim::config::PerKeyConfig {
        limit: 2,
        window: std::time::Duration::from_secs(60),
        max_keys: 1000,
    });
    let mut p = params(Scenario::ManyClients, 3, &config);
    p.rate_per_s = 0.5;
    let (out, _log) = run_logged(&config, Generator::new(p), RunOptions::default());
    assert_eq!(out.check.first, None, "{:?}", out.check.first);
    // 0.25/s from client-0 against 2 per minute: most of its requests are refused.
    assert!(out.report.sim.rate_limited > 1000, "{:?}", out.report.sim);
    assert!(out.report.sim.admitted > 0);
}
