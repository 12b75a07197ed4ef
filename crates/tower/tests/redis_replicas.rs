//! Two make_video processes started with `--redis` share one redis-server: a burst
//! spread over both is admitted exactly `limit` times in total, the rest 429 with
//! `Retry-After`. Without a redis-server the test fails when `CI=true`, and skips with a
//! message otherwise.

mod common;
#[path = "../../redis/tests/support/mod.rs"]
mod redis_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::make_video_bin;

const LIMIT: usize = 7;
const REQUESTS: usize = 30;

/// A make_video replica, killed however the test ends.
struct Replica {
    child: Child,
    addr: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_replica(config: &std::path::Path, url: &str, name: &str) -> Replica {
    let mut child = Command::new(make_video_bin())
        .args(["--port", "0", "--config", config.to_str().unwrap()])
        .args([
            "--redis",
            url,
            "--redis-name",
            name,
            "--redis-deadline",
            "2s",
        ])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start make_video");
    // Its first log line names the address; read on a thread so that a silent service
    // fails the test instead of hanging it.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut replica = Replica {
        child,
        addr: String::new(),
    };
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(20))
            .expect("make_video logged no address within 20 s");
        if let Some(addr) = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            replica.addr = addr.to_owned();
            // Keep draining its log so that it never blocks on a full pipe.
            std::thread::spawn(move || while log.recv().is_ok() {});
            return replica;
        }
    }
}

/// One `POST /make-video`: the status and the `Retry-After` value, if any.
fn post(addr: &str) -> (u16, Option<String>) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            b"POST /make-video HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"));
    let retry_after = reply.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_owned())
    });
    (status, retry_after)
}

#[test]
fn two_replicas_on_one_redis_admit_exactly_the_limit_in_total() {
    let Some((url, _server)) = redis_support::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("make_video.toml");
    std::fs::write(
        &config,
        format!(
            "temp_root = {:?}\nstage = \"0s\"\n[limits.rate]\nlimit = {LIMIT}\nwindow = \"60s\"\n\
             [limits.resources]\nenabled = false\n",
            dir.path().join("jobs")
        ),
    )
    .unwrap();
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
}
