//! One replica in process decides exactly as the simulator did before it learnt about
//! replicas: the decision log, the deterministic report and the HTML page of a few runs
//! hash to the values the pre-replica simulator (commit d636168) produced. A change that
//! alters any of them on purpose must re-pin them (`BACKSTOP_SIM_PRINT_GOLDEN=1` prints
//! the new values) and say why in its commit.

mod common;

use std::time::Duration;

use backstop_sim::config::{PerKeyConfig, SimConfig};
use backstop_sim::run::RunOptions;
use backstop_sim::scenario::{Generator, Scenario};
use common::{HOUR_US, busy, gen_params, report_and_page, run_logged};

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn keyed() -> SimConfig {
    let mut c = busy();
    c.per_key = Some(PerKeyConfig {
        limit: 3,
        window: Duration::from_secs(60),
        max_keys: 50,
    });
    c
}

/// (log hash, report hash, page hash, decision-log lines).
fn hashes(config: &SimConfig, scenario: Scenario, hours: u64, rate: f64) -> (u64, u64, u64, usize) {
    let params = gen_params(config, scenario, hours * HOUR_US, rate);
    let (out, log) = run_logged(
        config,
        Generator::new(params),
        RunOptions {
            source_label: scenario.name().into(),
            ..RunOptions::default()
        },
    );
    assert_eq!(out.check.first, None, "{scenario}: {:?}", out.check.first);
    let (report, html) = report_and_page(&out, config);
    let lines = log.iter().filter(|&&b| b == b'\n').count();
    (
        fnv(&log, FNV_OFFSET),
        fnv(report.as_bytes(), FNV_OFFSET),
        fnv(html.as_bytes(), FNV_OFFSET),
        lines,
    )
}

#[test]
fn one_replica_in_process_matches_the_pre_replica_simulator() {
    let runs: [(&str, SimConfig, Scenario, u64, f64); 4] = [
        ("day", SimConfig::default(), Scenario::Day, 24, 0.05),
        ("window-edge", busy(), Scenario::WindowEdge, 2, 0.2),
        ("many-clients keyed", keyed(), Scenario::ManyClients, 3, 0.5),
        ("disk-fill", busy(), Scenario::DiskFill, 6, 0.05),
    ];
    let print = std::env::var_os("BACKSTOP_SIM_PRINT_GOLDEN").is_some();
    let mut got = Vec::new();
    for (name, config, scenario, hours, rate) in &runs {
        let h = hashes(config, *scenario, *hours, *rate);
        if print {
            println!(
                "(\"{name}\", {:#018x}, {:#018x}, {:#018x}, {}),",
                h.0, h.1, h.2, h.3
            );
        }
        got.push((*name, h.0, h.1, h.2, h.3));
    }
    let expected: [(&str, u64, u64, u64, usize); 4] = GOLDEN;
    for (g, e) in got.iter().zip(expected.iter()) {
        assert_eq!(
            g, e,
            "(name, log, report, page, log lines) differ from the pre-replica simulator"
        );
    }
}

/// Printed by the pre-replica simulator (commit d636168).
const GOLDEN: [(&str, u64, u64, u64, usize); 4] = [
    (
        "day",
        0x2f3ddfc4a057796d,
        0x47fa5b2dfae54c0a,
        0xed853fba09a823a1,
        28247,
    ),
    (
        "window-edge",
        0x1a795ea5b5ab5224,
        0x0ff16a88365d5cb9,
        0xb5e7c499ef393824,
        10435,
    ),
    (
        "many-clients keyed",
        0xad9b8d0d68840b22,
        0xabff84d124e90895,
        0xafc442f3b814c78e,
        7967,
    ),
    (
        "disk-fill",
        0x6837ccda2bd03ab6,
        0x81c41566b38a3a6b,
        0xdff5d37144e3f3bf,
        4555,
    ),
];
