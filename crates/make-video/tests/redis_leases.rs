//! A make-video replica paused (SIGSTOP) past its job slot's lease, under `max_jobs = 1`
//! shared through Redis: the other replica gets the slot once the lease ends, and the
//! paused one, resumed, is told at once and stops its job before its next stage (and
//! counts it). Without a redis-server the test fails when `CI=true`, and skips with a
//! message otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use backstop_testkit::redis as redis_support;
use rustix::process::{Pid, Signal, kill_process};

const MAKE_VIDEO: &str = env!("CARGO_BIN_EXE_make-video");

/// A replica and its log lines, killed (and resumed first) however the test ends.
struct Replica {
    child: Child,
    addr: String,
    log: Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.signal(Signal::CONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn start(config: &std::path::Path, url: &str, name: &str) -> Replica {
        let mut child = Command::new(MAKE_VIDEO)
            .args(["--port", "0", "--config", config.to_str().unwrap()])
            .args(["--redis", url, "--redis-name", name])
            .args(["--redis-deadline", "100ms", "--redis-lease", "900ms"])
            .env("RUST_LOG", "info,make_video=debug")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start make-video");
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
            log,
            seen: Vec::new(),
        };
        let line = replica.wait_for("listening on http://", Duration::from_secs(20));
        replica.addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned();
        replica
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32).unwrap()
    }

    fn signal(&self, signal: Signal) {
        let _ = kill_process(self.pid(), signal);
    }

    /// Reads log lines until one contains `needle` (the line), within `limit`.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no log line with {needle:?} within {limit:?}: {:#?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the replica exited: {:#?}", self.seen)
                }
            }
        }
    }

    /// Reads whatever lines are there now.
    fn drain(&mut self) {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
    }

    fn stages_started(&self) -> usize {
        self.seen
            .iter()
            .filter(|line| line.contains("stage started"))
            .count()
    }

    fn post(&self) -> u16 {
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"POST /make-video HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {reply:?}"))
    }

    fn metric(&self, name: &str) -> Option<u64> {
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
    }
}

#[test]
fn a_paused_replica_past_its_lease_is_told_and_stops_its_job_at_the_next_stage() {
    let Some((url, _server)) = redis_support::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("make_video.toml");
    std::fs::write(
        &config,
        format!(
            "temp_root = {:?}\nstages = [\"s1\", \"s2\", \"s3\", \"s4\", \"s5\", \"s6\", \"s7\", \"s8\"]\n\
             stage = \"300ms\"\n[limits.rate]\nlimit = 100\nwindow = \"60s\"\n\
             [limits.jobs]\nmax = 1\n[limits.resources]\nenabled = false\n",
            dir.path().join("jobs")
        ),
    )
    .unwrap();
    let name = redis_support::unique("paused");
    let mut paused = Replica::start(&config, &url, &name);
    let mut other = Replica::start(&config, &url, &name);

    assert_eq!(paused.post(), 202);
    paused.wait_for("stage started", Duration::from_secs(10));
    paused.signal(Signal::STOP);

    // The other replica's job waits for the only slot, and gets it once the paused
    // replica's lease has ended in Redis.
    assert_eq!(other.post(), 202);
    other.wait_for("stage started", Duration::from_secs(10));
    // Whatever the paused one logged before the pause is all it has logged.
    paused.drain();
    let started_before_pause = paused.stages_started();
    assert!((1..8).contains(&started_before_pause), "{:#?}", paused.seen);

    paused.signal(Signal::CONT);
    let stopped = paused.wait_for("job stopped before stage", Duration::from_secs(10));
    let next = format!("s{}", started_before_pause + 1);
    assert!(stopped.contains(&next), "stopped before {next}: {stopped}");
    // A stage of this job would have been logged before the job's end was.
    assert_eq!(
        paused.stages_started(),
        started_before_pause,
        "no stage started once the lease was lost: {:#?}",
        paused.seen
    );
    assert_eq!(paused.metric("makevideo_jobs_lost_lease_total"), Some(1));
    assert_eq!(other.metric("makevideo_jobs_lost_lease_total"), Some(0));
}
