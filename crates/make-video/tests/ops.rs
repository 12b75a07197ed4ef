//! The reference service as an operator meets it: its `/metrics` read by Prometheus's
//! own OpenMetrics parser (through `promtool`) and checked against what the clients saw,
//! and the binary's `--help`, `--version` and config errors.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/promtool.sh` installs it);
//! without it the scrape test fails under `CI=true` and is skipped, with a message,
//! elsewhere. The binary tests run the `make-video` binary cargo built for them.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::{ByteSize, Limits};
use backstop_testkit::prometheus::Promtool;
use bytes::Bytes;
use common::{Logged, MAKE_VIDEO, address_in};
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use make_video::{Config, MakeVideo, Serving, serve};

/// The most the scrape test may take.
const BOUND: Duration = Duration::from_secs(20);

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_match_what_the_clients_saw() {
    let Some(promtool) = Promtool::find() else {
        return;
    };
    tokio::time::timeout(BOUND, async {
        let temp = tempfile::tempdir().unwrap();
        let mut limits = Limits::default();
        limits.rate.limit = 3;
        limits.resources.enabled = false;
        let config = Config {
            temp_root: temp.path().join("makevideo"),
            stage: Duration::ZERO,
            stage_size: ByteSize::kib(1),
            limits,
            ..Config::default()
        };
        let admission = Arc::new(config.admission(ManualClock::new()).unwrap());
        let service = MakeVideo::start(Arc::clone(&admission), &config, None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, service.router(), Serving::default()));
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let send = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(format!("{base}{path}"))
                .body(Empty::new())
                .unwrap();
            client.request(request)
        };

        let (mut accepted, mut too_many, mut health) = (0, 0, 0);
        for _ in 0..7 {
            match send(Method::POST, "/make-video")
                .await
                .unwrap()
                .status()
                .as_u16()
            {
                202 => accepted += 1,
                429 => too_many += 1,
                other => panic!("unexpected {other}"),
            }
        }
        for _ in 0..2 {
            let status = send(Method::GET, "/health").await.unwrap().status();
            assert_eq!(status, 200);
            health += 1;
        }
        assert_eq!((accepted, too_many), (3, 4), "the rate limit is 3");

        let scrape = |accept: Option<&'static str>| {
            let mut request = Request::builder().uri(format!("{base}/metrics"));
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let response = client.request(request.body(Empty::new()).unwrap());
            async move {
                let response = response.await.unwrap();
                assert_eq!(response.status(), 200);
                let content_type = response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (content_type, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let (content_type, text) = scrape(Some(PROMETHEUS_ACCEPT)).await;
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );

        let parsed = promtool
            .parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("promtool could not parse the scrape:\n{e}\n{text}"));
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE backstop_admitted counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT backstop_resource_sample_age_seconds seconds\n"),
            "{text}"
        );

        // The counts, as Prometheus's parser read them, are what the clients saw.
        assert_eq!(parsed["backstop_admitted_total"], f64::from(accepted));
        assert_eq!(parsed["backstop_rate_limited_total"], f64::from(too_many));
        // Health checks and scrapes are not behind admission at all: nothing is exempt.
        assert_eq!(health, 2);
        assert_eq!(parsed["backstop_exempt_total"], 0.0);
        assert_eq!(
            parsed["backstop_overloaded_total{reason=\"queue_full\"}"],
            0.0
        );
        assert_eq!(parsed["backstop_resource_gate_state{state=\"open\"}"], 1.0);
        assert_eq!(parsed["backstop_resource_gate_state{state=\"stale\"}"], 0.0);
        assert_eq!(parsed["makevideo_jobs_failed_total"], 0.0);
        // And every sample the text holds reached the parser's store.
        let written = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(parsed.len(), written, "{parsed:?}");
        assert_eq!(
            sample(&text, "backstop_admitted_total"),
            f64::from(accepted)
        );
        // The sweep schedule's families are in the same registry.
        assert_eq!(parsed["backstop_sweep_runs_total{outcome=\"failed\"}"], 0.0);
        assert_eq!(parsed["backstop_sweep_interval_seconds"], 6.0 * 3600.0);

        // Any other reader gets the classic text format, which promtool's linter (the
        // classic parser, with Prometheus's naming rules) passes without a remark, and
        // which holds the same series (the jobs may have moved on between the scrapes).
        let (content_type, classic) = scrape(None).await;
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let (status, said) = promtool.check_metrics(&classic);
        assert_eq!(
            status,
            Some(0),
            "promtool check metrics:\n{said}\n{classic}"
        );
        assert_eq!(said, "", "promtool check metrics has remarks:\n{classic}");
        assert!(
            classic.contains("# TYPE backstop_admitted_total counter\n"),
            "{classic}"
        );
        let samples = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(samples(&classic), samples(&text));
    })
    .await
    .expect("bounded in time");
}

/// The `Accept` header Prometheus sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn run_make_video(args: &[&str]) -> Output {
    Command::new(MAKE_VIDEO)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run make-video")
}

#[test]
fn help_names_every_config_key_and_endpoint() {
    let out = run_make_video(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "POST /make-video",
        "GET  /metrics",
        "GET  /health",
        "RUST_LOG",
        "--version",
    ] {
        assert!(help.contains(needle), "no {needle:?} in\n{help}");
    }
    // Every key of the example config, which the docs also show.
    let example = include_str!("../make-video.example.toml");
    for line in example.lines() {
        let line = line.trim();
        if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                help.contains(&format!("\n{key} = ")),
                "no key {key:?} in --help"
            );
        } else if line.starts_with('[') {
            let header = line.split_whitespace().next().unwrap();
            assert!(help.contains(header), "no {header} in --help");
        }
    }
    // ... and that file is a valid configuration, every key included.
    let config = Config::from_toml_str(example).unwrap();
    assert_eq!(config.stage, Duration::from_millis(200));
    assert_eq!(config.stage_size, ByteSize::kib(64));
    assert_eq!(config.limits.resources.min_free_disk, ByteSize::gib(5));
    assert_eq!(
        config.per_client.map(|p| p.window),
        Some(Duration::from_secs(60))
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = run_make_video(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("make-video {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn config_errors_name_the_key_and_the_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        (
            "stages = [\"a\"]\n[limits.rate]\nlimit = = 3\n",
            "at line 3, column 9: extra `=`, expected nothing, in `limit = = 3`",
        ),
        (
            "[limits.rate]\nlimit = 3\nwindow = \"sixty\"\n",
            "invalid `limits.rate.window` at line 3, column 10: not a duration",
        ),
        (
            "stage = \"1s\"\nstage_ms = 5\n",
            "invalid `stage_ms` at line 2, column 1: unknown field `stage_ms`",
        ),
        (
            "stage = \"2m\"\n",
            "invalid `stage` at line 1, column 1: must be at most 1m",
        ),
        (
            "[per_client]\nlimit = 0\nwindow = \"1s\"\nmax_clients = 1\n",
            "invalid `per_client.limit` at line 2, column 1: must be 1 to 16777216, got 0",
        ),
        (
            "[limits.jobs]\nmax = 0\n",
            "invalid `limits.jobs.max` at line 2, column 1: must be 1 to",
        ),
        (
            "[per_client]\nlimit = 1\nwindw = \"1s\"\nmax_clients = 1\n",
            "invalid `per_client.windw` at line 3, column 1: unknown field",
        ),
    ] {
        let path = dir.path().join("make_video.toml");
        std::fs::write(&path, text).unwrap();
        let out = run_make_video(&["--config", path.to_str().unwrap(), "--port", "0"]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(says), "{text}\n{stderr}");
        assert!(stderr.contains("make_video.toml"), "{stderr}");
    }
}

#[test]
fn durations_and_sizes_read_as_text() {
    let config = Config::from_toml_str(
        "stage = \"250ms\"\nstage_size = \"1MiB\"\nsweep_every = \"6h\"\n\
         sweep_older_than = \"1d\"\n[per_client]\nlimit = 2\nwindow = \"30s\"\nmax_clients = 9\n\
         [serve]\nheader_read_timeout = \"2s\"\n",
    )
    .unwrap();
    assert_eq!(config.stage, Duration::from_millis(250));
    assert_eq!(config.stage_size, ByteSize::mib(1));
    assert_eq!(config.sweep_every, Duration::from_secs(6 * 3600));
    assert_eq!(config.sweep_older_than, Duration::from_secs(86_400));
    assert_eq!(config.serve.header_read_timeout, Duration::from_secs(2));
    let quota = config.per_client.unwrap().quota().unwrap();
    assert_eq!(
        (quota.limit(), quota.window()),
        (2, Duration::from_secs(30))
    );
}

#[test]
fn rust_log_shows_each_decision_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("make_video.toml");
    std::fs::write(
        &config,
        format!(
            "temp_root = {:?}\nstage = \"0s\"\n[limits.rate]\nlimit = 1\n[limits.resources]\nenabled = false\n",
            dir.path().join("jobs")
        ),
    )
    .unwrap();
    let mut service = Logged::spawn(
        Command::new(MAKE_VIDEO)
            .args(["--port", "0", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info,backstop_core=trace")
            .env_remove("NO_COLOR"),
    );
    // The sweeper may log first (a pressure sweep at start when the host's disk is
    // fuller than its threshold).
    let line = service.wait_for("listening on http://", Duration::from_secs(10));
    let addr = address_in(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
    assert!(line.contains("INFO"), "{line}");
    let mut next_line = || {
        service
            .next_line(Duration::from_secs(10))
            .expect("make-video logged nothing within 10 s")
    };
    for _ in 0..2 {
        // What it answers is beside the point here: the log lines are.
        let _ = backstop_testkit::http::request(&addr, "POST", "/make-video");
    }
    // The decisions, in request order (other lines, if any, are skipped).
    let mut logged = Vec::new();
    while logged.len() < 2 {
        let line = next_line();
        if line.contains("backstop_core::admission") {
            logged.push(line);
        }
    }
    drop(service);
    assert!(
        logged[0].contains("TRACE") && logged[0].contains("decision=\"admitted\""),
        "{logged:?}"
    );
    assert!(
        logged[1].contains("decision=\"refused\" reason=\"rate_limited\" status=429"),
        "{logged:?}"
    );
}
