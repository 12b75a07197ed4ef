//! Two make-video processes started with `--redis` share one redis-server: a burst
//! spread over both is admitted exactly `limit` times in total, the rest 429 with
//! `Retry-After`. Without a redis-server the test fails when `CI=true`, and skips with a
//! message otherwise.

mod common;

use std::process::Command;

use backstop_testkit::http;
use backstop_testkit::redis as redis_support;
use common::{MAKE_VIDEO, Service};

const LIMIT: usize = 7;
const REQUESTS: usize = 30;

/// A make-video replica on limits kept in Redis under `name`.
fn start_replica(config: &std::path::Path, url: &str, name: &str) -> Service {
    start_replica_with(config, url, name, &[])
}

fn start_replica_with(config: &std::path::Path, url: &str, name: &str, extra: &[&str]) -> Service {
    let args = [
        "--redis",
        url,
        "--redis-name",
        name,
        "--redis-deadline",
        "2s",
    ];
    Service::start(config, &[&args[..], extra].concat(), "info")
}

/// One `POST /make-video`: the status and the `Retry-After` value, if any.
fn post(addr: &str) -> (u16, Option<String>) {
    let (status, retry_after, _) = post_reply(addr);
    (status, retry_after)
}

/// One `POST /make-video`: the status, the `Retry-After` value if any, the body.
fn post_reply(addr: &str) -> (u16, Option<String>, String) {
    let answer = http::fetch(addr, "POST", "/make-video").expect("an answer");
    let retry_after = answer.header("retry-after").map(str::to_owned);
    (answer.status, retry_after, answer.body)
}

/// `GET /metrics`: each sample line's name (with its labels) and value.
fn metrics(addr: &str) -> Vec<(String, f64)> {
    let answer = http::fetch(addr, "GET", "/metrics").expect("an answer");
    answer
        .body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A limits file: `limit` requests a minute, resources not checked.
fn write_config(dir: &std::path::Path, limit: usize) -> std::path::PathBuf {
    let config = dir.join("make_video.toml");
    std::fs::write(
        &config,
        format!(
            "temp_root = {:?}\nstage = \"0s\"\n[limits.rate]\nlimit = {limit}\nwindow = \"60s\"\n\
             [limits.resources]\nenabled = false\n",
            dir.join("jobs")
        ),
    )
    .unwrap();
    config
}

#[test]
fn two_replicas_on_one_redis_admit_exactly_the_limit_in_total() {
    let Some((url, _server)) = redis_support::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), LIMIT);
    let name = redis_support::unique("make-video");
    let replicas = [
        start_replica(&config, &url, &name),
        start_replica(&config, &url, &name),
    ];
    // The burst: every request at once, alternating between the replicas.
    let answers: Vec<(usize, u16, Option<String>)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let addr = replicas[i % 2].addr.clone();
                scope.spawn(move || {
                    let (status, retry_after) = post(&addr);
                    (i % 2, status, retry_after)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let admitted = answers
        .iter()
        .filter(|(_, status, _)| matches!(status, 200 | 202))
        .count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|(_, status, _)| *status == 429)
        .collect();
    assert_eq!(
        admitted, LIMIT,
        "one limit across both replicas: {answers:?}"
    );
    assert_eq!(
        limited.len(),
        REQUESTS - LIMIT,
        "the rest are 429: {answers:?}"
    );
    for (_, _, retry_after) in &limited {
        let seconds: u64 = retry_after
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("429 without Retry-After: {answers:?}"));
        assert!((1..=60).contains(&seconds), "{seconds}");
    }
    // Both replicas answered some of each: the limit really is shared, not one
    // replica's alone.
    for replica in 0..2 {
        assert!(
            answers.iter().any(|(r, s, _)| *r == replica && *s == 429),
            "replica {replica} refused nothing: {answers:?}"
        );
    }
    // Each replica exports the in-process door's families, counting its own share.
    let scraped: Vec<_> = replicas.iter().map(|r| metrics(&r.addr)).collect();
    let total = |name: &str| -> f64 {
        scraped
            .iter()
            .map(|samples| {
                let found = samples.iter().find(|(n, _)| n == name);
                found
                    .unwrap_or_else(|| panic!("no {name} in {samples:?}"))
                    .1
            })
            .sum()
    };
    assert_eq!(total("backstop_admitted_total"), LIMIT as f64);
    assert_eq!(
        total("backstop_rate_limited_total"),
        (REQUESTS - LIMIT) as f64
    );
    assert_eq!(
        total("backstop_rate_limited_by_scope_total{scope=\"global\"}"),
        (REQUESTS - LIMIT) as f64
    );
    assert_eq!(
        total("backstop_queue_max"),
        200.0,
        "100 each, the shared bound"
    );
    for gauge in [
        "backstop_jobs_started_total",
        "backstop_jobs_active",
        "backstop_queue_depth",
    ] {
        assert!(total(gauge) <= LIMIT as f64, "{gauge}");
    }
}

/// With `--redis-fallback-share 0.5` and Redis gone, a replica decides the rate limit on
/// its own window of half the limit: that many requests pass it (and are then refused
/// 503 `store_unavailable` by the queue, which has no local fallback), the rest are 429.
/// Without the flag every request is 503 `store_unavailable`. Never an admission.
#[test]
fn with_a_fallback_share_a_replica_limits_on_its_own_while_redis_is_down() {
    let Some(mut server) = redis_support::RedisServer::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 6);
    let name = redis_support::unique("fallback");
    let url = server.url();
    let fallback = start_replica_with(&config, &url, &name, &["--redis-fallback-share", "0.5"]);
    let closed = start_replica(&config, &url, &name);
    server.kill();

    let answers: Vec<(u16, Option<String>, String)> =
        (0..8).map(|_| post_reply(&fallback.addr)).collect();
    let statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
    assert_eq!(
        statuses,
        [503, 503, 503, 429, 429, 429, 429, 429],
        "3 of 6 pass the local window, the queue fails closed: {answers:?}"
    );
    for (status, retry_after, reply) in &answers {
        if *status == 503 {
            assert!(reply.contains("store_unavailable"), "{reply}");
        } else {
            let seconds: u64 = retry_after.as_deref().unwrap().parse().unwrap();
            assert!((1..=60).contains(&seconds), "{reply}");
        }
    }
    for _ in 0..4 {
        let (status, _, reply) = post_reply(&closed.addr);
        assert_eq!(status, 503, "fail closed: {reply}");
        assert!(reply.contains("store_unavailable"), "{reply}");
    }
}

/// A share outside (0, 1] is one readable line and a non-zero exit, before any Redis
/// is contacted.
#[test]
fn a_fallback_share_out_of_range_is_refused_at_start() {
    for share in ["0", "1.5", "half"] {
        let output = Command::new(MAKE_VIDEO)
            .args(["--port", "0", "--redis", "redis://127.0.0.1:1"])
            .args(["--redis-fallback-share", share])
            .output()
            .expect("run make-video");
        assert!(!output.status.success(), "share {share} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--redis-fallback-share"),
            "share {share}: {stderr}"
        );
    }
}
