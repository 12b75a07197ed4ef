//! `--replicas K --store redis://…` against a real redis-server (`BACKSTOP_REDIS_URL`, or
//! a private one on a free port): K `RedisAdmission` replicas on virtual time decide
//! exactly as one in-process `Admission` does, the checkers pass, the global limit holds
//! across replicas, and the bytes out are the same run after run. Without redis-server
//! these fail under `CI=true` and skip with a message otherwise.

mod common;

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::Duration;

use backstop_testkit::redis as support;

use backstop_sim::config::{PerKeyConfig, SimConfig};
use backstop_sim::report::RunOutput;
use backstop_sim::run::{RunOptions, run};
use backstop_sim::scenario::{Generator, Scenario};
use backstop_sim_check::trace::{Event, Events, Request};
use common::{busy as config, gen_params, report_and_page, run_logged, sim};

fn keyed() -> SimConfig {
    let mut c = config();
    // Never full of clients: the Redis door has no bound on tracked clients (an idle
    // client's key expires), so `too_many_keys` would be the one place they differ.
    c.per_key = Some(PerKeyConfig {
        limit: 3,
        window: Duration::from_secs(60),
        max_keys: 100_000,
    });
    c
}

fn generator(c: &SimConfig, scenario: Scenario, minutes: u64, rate: f64) -> Generator {
    Generator::new(gen_params(c, scenario, minutes * 60_000_000, rate))
}

fn replay(
    c: &SimConfig,
    source: Generator,
    replicas: u32,
    store: Option<&str>,
) -> (Vec<u8>, RunOutput) {
    let (out, log) = run_logged(
        c,
        source,
        RunOptions {
            source_label: "store test".into(),
            replicas: NonZeroU32::new(replicas).unwrap(),
            store: store.map(str::to_owned),
            ..RunOptions::default()
        },
    );
    (log, out)
}

/// The most passes (admitted, or refused by the queue after the window counted them)
/// in any window `(t − W, t]` of the log, counted here and not by the checkers.
fn most_passes_in_a_window(log: &[u8], window_us: u64) -> usize {
    let mut recent: VecDeque<u64> = VecDeque::new();
    let mut most = 0;
    for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let passed = v["event"] == "decision"
            && (v["outcome"] == "admitted"
                || (v["outcome"] == "overloaded" && v["reason"] == "queue_full"));
        if !passed {
            continue;
        }
        let t = v["t_us"].as_u64().unwrap();
        while recent.front().is_some_and(|&old| old + window_us <= t) {
            recent.pop_front();
        }
        recent.push_back(t);
        most = most.max(recent.len());
    }
    most
}

#[test]
fn three_replicas_on_redis_decide_as_one_in_process() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    for (name, c, scenario, minutes, rate) in [
        ("window-edge", config(), Scenario::WindowEdge, 120, 0.2),
        ("bursts", config(), Scenario::Bursts, 120, 0.2),
        // Fast enough that the clients other than the one capped by its own window
        // still fill the shared window.
        (
            "many-clients, per client",
            keyed(),
            Scenario::ManyClients,
            30,
            2.0,
        ),
    ] {
        let (one_log, one) = replay(&c, generator(&c, scenario, minutes, rate), 1, None);
        let (log, out) = replay(&c, generator(&c, scenario, minutes, rate), 3, Some(&url));
        assert_eq!(out.check.first, None, "{name}: {:?}", out.check.first);
        assert!(out.check.records > 1000, "{name}: a busy trace");
        let limit = c.limits.rate.limit as usize;
        let most = most_passes_in_a_window(&log, c.rate_window_us());
        assert!(
            most <= limit,
            "{name}: {most} passes in one window across 3 replicas, limit {limit}"
        );
        assert_eq!(most, limit, "{name}: the trace must reach the limit");
        assert!(out.report.sim.rate_limited > 0, "{name}");
        assert_eq!(out.report.sim.admitted, one.report.sim.admitted, "{name}");
        assert!(
            log == one_log,
            "{name}: 3 replicas on Redis decided otherwise than 1 in process"
        );
    }
}

#[test]
fn same_seed_gives_the_same_bytes_twice_on_redis() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let c = keyed();
    let once = || {
        let (log, out) = replay(&c, generator(&c, Scenario::Day, 360, 0.2), 3, Some(&url));
        assert_eq!(out.check.first, None, "{:?}", out.check.first);
        let (report, html) = report_and_page(&out, &c);
        (log, report, html)
    };
    let (log_a, report_a, html_a) = once();
    let (log_b, report_b, html_b) = once();
    assert!(!log_a.is_empty());
    assert!(log_a == log_b, "decision logs differ");
    assert_eq!(report_a, report_b);
    assert!(html_a == html_b, "pages differ");
}

/// Leases are renewed on virtual time: a 30-hour job (its slot's lease is 10 minutes)
/// keeps its slot to the end, and the job queued behind it under `max_jobs = 1` starts
/// only then.
#[test]
fn a_hold_longer_than_the_lease_is_renewed_on_virtual_time() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let mut c = config();
    c.limits.jobs.max = 1;
    let hour = 3_600_000_000u64;
    let req = |t_us, id, job_us| {
        Event::Request(Request {
            t_us,
            id,
            key: None,
            job_us,
            files: 0,
            bytes: 0,
        })
    };
    let events = vec![req(0, 1, 30 * hour), req(25 * hour, 2, 1_000_000)];
    let out = run(
        &c,
        Events(events.into_iter()),
        RunOptions {
            replicas: NonZeroU32::new(2).unwrap(),
            store: Some(url),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(out.check.first, None);
    assert_eq!(out.report.sim.admitted, 2);
}

#[test]
fn cli_runs_a_builtin_scenario_on_three_replicas() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = |out: &'static str| {
        vec![
            "run",
            "--scenario",
            "day",
            "--duration",
            "6h",
            "--rate",
            "0.1",
            "--seed",
            "7",
            "--decisions-out",
            out,
        ]
    };
    let mut three = args("three.jsonl");
    three.extend(["--replicas", "3", "--store", &url]);
    let o = sim(&three, d);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("3 replicas sharing a Redis store"),
        "{stdout}"
    );
    assert!(
        stdout.contains("invariants          all 6 held"),
        "{stdout}"
    );
    let mut one = args("one.jsonl");
    one.push("--quiet");
    let o = sim(&one, d);
    assert_eq!(o.status.code(), Some(0));
    let (a, b) = (
        std::fs::read(d.join("one.jsonl")).unwrap(),
        std::fs::read(d.join("three.jsonl")).unwrap(),
    );
    assert!(
        a == b,
        "the day on 3 Redis replicas decides as on 1 in process"
    );

    // Nobody listening: one line, exit 2, no partial decision log.
    let port = support::free_port().to_string();
    let dead = format!("redis://127.0.0.1:{port}");
    let mut bad = args("dead.jsonl");
    bad.extend(["--replicas", "2", "--store", &dead, "--quiet"]);
    let o = sim(&bad, d);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--store: connecting"), "{err}");
    assert!(!d.join("dead.jsonl").exists());
}
