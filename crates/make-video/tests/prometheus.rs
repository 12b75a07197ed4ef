//! make-video under load, scraped by a real Prometheus server (Debian's `prometheus`
//! package, started here on a free loopback port, scraping every second and evaluating
//! `dist/prometheus`'s rules every second):
//!
//! - every expression of every panel of `dist/grafana/backstop.json` parses and returns
//!   series through the HTTP query API;
//! - the counts Prometheus holds equal the 202s, 429s and 503s the load client saw;
//! - `BackstopQueueNearlyFull` is pending or firing while a burst keeps the queue full,
//!   and inactive once it has drained. The alerts are loaded from a copy of
//!   `backstop.alerts.yml` whose every `for:` is 2 s (see [`SHORT_FOR`]): the same
//!   expressions, on the test's clock;
//! - the sweep's last-success timestamp moves after a sweep.
//!
//! Two services are scraped: one on its own limits, one on limits kept in a real
//! redis-server (`--redis`); both export the same families, the second its store's too.
//!
//! Under `CI=true` the test fails when Prometheus or redis-server cannot start; elsewhere
//! it skips with a message. `.ci/promtool.sh` installs Prometheus, `.ci/redis.sh` starts
//! the shared redis-server.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backstop_testkit::http;
use backstop_testkit::prometheus::Prometheus;
use common::Service;
use serde_json::Value;

/// The `for:` every alert gets in the test's copy of the rules.
const SHORT_FOR: &str = "2s";

/// What the dashboard's template variables stand for in the test: every job and
/// instance, and Grafana's rate interval.
const VARIABLES: [(&str, &str); 5] = [
    ("$__rate_interval", "1m"),
    ("$sweep_instance", ".+"),
    ("$sweep_job", ".+"),
    ("$instance", ".+"),
    ("$job", ".+"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The wall clock, in Unix seconds (Prometheus's timestamps).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Polls `check` every 100 ms until it gives a value, for at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a load client saw, by status.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Seen {
    accepted: u64,
    rate_limited: u64,
    overloaded: u64,
}

impl Seen {
    /// Posts until one is refused with 503 (the queue is full), at most 25 times.
    fn fill(&mut self, addr: &str) {
        let overloaded = self.overloaded;
        for _ in 0..25 {
            self.post(addr);
            if self.overloaded > overloaded {
                return;
            }
        }
    }

    fn post(&mut self, addr: &str) {
        let (status, body) = http::request(addr, "POST", "/make-video").unwrap();
        match status {
            202 => self.accepted += 1,
            429 => self.rate_limited += 1,
            503 => self.overloaded += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
}

/// A service whose queue (20 places, 2 slots, jobs of 1 s) a burst keeps full,
/// whose rate limit (300 a minute: every request the rate window lets through counts,
/// 503s too) a quick run of requests then exhausts, and which sweeps every second.
fn write_config(dir: &Path, name: &str) -> PathBuf {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "temp_root = {:?}\nstages = [\"render\"]\nstage = \"1s\"\nstage_size = \"4KiB\"\n\
             sweep_every = \"1s\"\n\
             [limits.rate]\nlimit = 300\nwindow = \"60s\"\n\
             [limits.queue]\nmax = 20\n[limits.jobs]\nmax = 2\n\
             [limits.resources]\nmin_available_memory = \"1MiB\"\nmemory_margin = \"0MiB\"\n\
             min_free_disk = \"1MiB\"\ndisk_margin = \"0MiB\"\n",
            dir.join(format!("{name}-jobs"))
        ),
    )
    .unwrap();
    config
}

/// The alerting rules with every `for:` set to [`SHORT_FOR`].
fn alerts_with_short_for() -> String {
    let rules =
        std::fs::read_to_string(repo().join("dist/prometheus/backstop.alerts.yml")).unwrap();
    let mut changed = 0;
    let text: String = rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                changed += 1;
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}for: {SHORT_FOR}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    assert!(changed > 0, "no `for:` in the alerting rules");
    text
}

/// Every expression of every panel of the dashboard, with the variables filled in.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dist/grafana/backstop.json")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"].as_str().unwrap().to_owned();
            for (variable, value) in VARIABLES {
                expr = expr.replace(variable, value);
            }
            assert!(
                !expr.contains('$'),
                "a variable the test does not know: {expr}"
            );
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

/// The Prometheus config: both services scraped every second, the rules every second.
fn prometheus_config(dir: &Path, local: &Service, shared: &Service) -> String {
    let rules = dir.join("backstop.rules.yml");
    std::fs::copy(repo().join("dist/prometheus/backstop.rules.yml"), &rules).unwrap();
    let alerts = dir.join("backstop.alerts.yml");
    std::fs::write(&alerts, alerts_with_short_for()).unwrap();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules:?}\n  - {alerts:?}\n\
         scrape_configs:\n\
         \x20 - job_name: {LOCAL}\n    static_configs:\n      - targets: [{:?}]\n\
         \x20 - job_name: {SHARED}\n    static_configs:\n      - targets: [{:?}]\n",
        local.addr, shared.addr
    )
}

/// The scrape jobs: make-video on its own limits, and on limits kept in Redis.
const LOCAL: &str = "make-video-local";
const SHARED: &str = "make-video-redis";

/// Every 100 ms the queue is filled until a request is refused (503), so that it stays
/// at least 90 % full between two fillings however slowly they come (the two slots'
/// jobs, finishing together, free 2 places of 20), until `BackstopQueueNearlyFull`
/// fires; then it drains (20 jobs, 2 at a time, 1 s each) until the alert is resolved.
/// The rule's states, in order.
fn burst_until_the_queue_alert_fires_and_resolves(
    prometheus: &Prometheus,
    addr: &str,
    seen: &mut Seen,
) -> Vec<String> {
    let mut states: Vec<String> = vec![];
    let mut note = |state: String| {
        if states.last() != Some(&state) {
            states.push(state);
        }
    };
    wait_for(
        Duration::from_secs(60),
        "BackstopQueueNearlyFull firing",
        || {
            seen.fill(addr);
            let (rule, _) = prometheus.alert_state("BackstopQueueNearlyFull");
            note(rule.clone());
            (rule == "firing").then_some(())
        },
    );
    assert!(seen.overloaded > 0, "the queue never filled: {seen:?}");
    wait_for(
        Duration::from_secs(60),
        "BackstopQueueNearlyFull resolved",
        || {
            let (rule, active) = prometheus.alert_state("BackstopQueueNearlyFull");
            note(rule.clone());
            (rule == "inactive" && active.is_empty()).then_some(())
        },
    );
    states
}

/// Prometheus's counts of `job` from its first scrape that began after `load_ended`
/// (Unix seconds), when every answer of the load had been sent.
fn counts_of(prometheus: &Prometheus, job: &str, load_ended: f64) -> Seen {
    let job = format!("job=\"{job}\"");
    wait_for(Duration::from_secs(20), "a scrape after the load", || {
        let scraped = prometheus.one(&format!("timestamp(up{{{job}}})"));
        (scraped > load_ended).then_some(())
    });
    Seen {
        accepted: prometheus.one(&format!("backstop_admitted_total{{{job}}}")) as u64,
        rate_limited: prometheus.one(&format!("backstop_rate_limited_total{{{job}}}")) as u64,
        overloaded: prometheus.one(&format!("sum(backstop_overloaded_total{{{job}}})")) as u64,
    }
}

/// The `backstop_*` family names `job` exports.
fn families_of(prometheus: &Prometheus, job: &str) -> std::collections::BTreeSet<String> {
    prometheus
        .query(&format!(
            "count by (__name__) ({{job=\"{job}\", __name__=~\"backstop_.*\"}})"
        ))
        .unwrap()
        .into_iter()
        .map(|(labels, _)| labels["__name__"].clone())
        .collect()
}

/// The dashboard's panels whose expressions return nothing; a parse error panics.
fn panels_without_series(prometheus: &Prometheus) -> Vec<String> {
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_expressions() {
        match prometheus.query(&expr) {
            Ok(series) if series.is_empty() => empty.push(format!("{panel}: {expr}")),
            Ok(_) => {}
            Err(e) => panic!("panel {panel:?}: {e}"),
        }
    }
    empty
}

#[test]
fn a_real_prometheus_scrapes_make_video_under_load() {
    let Some((url, _redis)) = backstop_testkit::redis::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local = Service::start(&write_config(dir.path(), "local"), &[], "info");
    let name = backstop_testkit::redis::unique("prometheus");
    let shared_args = [
        "--redis",
        &url,
        "--redis-name",
        &name,
        "--redis-deadline",
        "2s",
    ];
    let shared = Service::start(&write_config(dir.path(), "shared"), &shared_args, "info");
    let Some(prometheus) =
        Prometheus::start(dir.path(), &prometheus_config(dir.path(), &local, &shared))
    else {
        return;
    };
    let started = Instant::now();
    wait_for(Duration::from_secs(30), "both targets up", || {
        let up = prometheus.query("up == 1").ok()?;
        (up.len() == 2).then_some(())
    });
    let sweep = format!("backstop_sweep_last_success_timestamp_seconds{{job=\"{LOCAL}\"}}");
    let first_sweep = wait_for(Duration::from_secs(30), "a sweep", || {
        prometheus.query(&sweep).ok()?.first().map(|(_, v)| *v)
    });

    // Jobs through the Redis door too, so that its histograms and store calls count;
    // few enough (5 places of 20) that its queue alert stays inactive and the states
    // below are the burst's alone.
    let mut seen_shared = Seen::default();
    for _ in 0..5 {
        seen_shared.post(&shared.addr);
    }
    let mut seen = Seen::default();
    let states =
        burst_until_the_queue_alert_fires_and_resolves(&prometheus, &local.addr, &mut seen);
    assert_eq!(states, ["inactive", "pending", "firing", "inactive"]);
    // Then the rest of the rate budget (every request the rate window let through counts,
    // 503s too): 429s.
    for _ in 0..=300 {
        if seen.rate_limited >= 5 {
            break;
        }
        seen.post(&local.addr);
    }
    assert_eq!(
        seen.rate_limited, 5,
        "the rate limit never refused: {seen:?}"
    );
    let load_ended = started.elapsed();
    let load_ended_unix = unix_now();

    assert_eq!(
        counts_of(&prometheus, LOCAL, load_ended_unix),
        seen,
        "{LOCAL}: Prometheus against the client"
    );
    assert_eq!(
        counts_of(&prometheus, SHARED, load_ended_unix),
        seen_shared,
        "{SHARED}: Prometheus against the client"
    );
    // Both doors export the same families; the Redis one adds its store's.
    let local_families = families_of(&prometheus, LOCAL);
    let shared_families = families_of(&prometheus, SHARED);
    let only_shared: Vec<_> = shared_families.difference(&local_families).collect();
    assert!(
        local_families.is_subset(&shared_families),
        "{local_families:?} vs {shared_families:?}"
    );
    assert!(
        only_shared
            .iter()
            .all(|name| name.starts_with("backstop_store_")),
        "{only_shared:?}"
    );

    let empty = panels_without_series(&prometheus);
    assert!(
        empty.is_empty(),
        "panels without series:\n{}",
        empty.join("\n")
    );
    let last_sweep = prometheus.one(&sweep);
    assert!(
        last_sweep > first_sweep,
        "the last success moves: {first_sweep} -> {last_sweep}"
    );
    eprintln!(
        "{LOCAL}: {seen:?}; {SHARED}: {seen_shared:?}; BackstopQueueNearlyFull: {states:?}; \
         last sweep {first_sweep} -> {last_sweep}; load over at {load_ended:?}, {:?} in all",
        started.elapsed()
    );
}
