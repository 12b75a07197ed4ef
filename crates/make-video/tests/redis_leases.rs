//! A make-video replica paused (SIGSTOP) past its job slot's lease, under `max_jobs = 1`
//! shared through Redis: the other replica gets the slot once the lease ends, and the
//! paused one, resumed, is told at once and stops its job before its next stage (and
//! counts it). Without a redis-server the test fails when `CI=true`, and skips with a
//! message otherwise.

mod common;

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use backstop_testkit::http;
use backstop_testkit::redis as redis_support;
use common::{Logged, Service};
use rustix::process::{Pid, Signal, kill_process};

/// A replica and its log lines, killed (and resumed first) however the test ends.
struct Replica {
    process: Logged,
    addr: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        // Resumed, so that the kill that follows (dropping `process`) ends it at once.
        self.signal(Signal::CONT);
    }
}

impl Deref for Replica {
    type Target = Logged;
    fn deref(&self) -> &Logged {
        &self.process
    }
}

impl DerefMut for Replica {
    fn deref_mut(&mut self) -> &mut Logged {
        &mut self.process
    }
}

impl Replica {
    fn start(config: &std::path::Path, url: &str, name: &str) -> Replica {
        let Service { process, addr } = Service::start(
            config,
            &[
                "--redis",
                url,
                "--redis-name",
                name,
                "--redis-deadline",
                "100ms",
                "--redis-lease",
                "900ms",
            ],
            "info,make_video=debug",
        );
        Replica { process, addr }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.process.child.id() as i32).unwrap()
    }

    fn signal(&self, signal: Signal) {
        let _ = kill_process(self.pid(), signal);
    }

    fn stages_started(&self) -> usize {
        self.seen
            .iter()
            .filter(|line| line.contains("stage started"))
            .count()
    }

    fn post(&self) -> u16 {
        http::request(&self.addr, "POST", "/make-video")
            .expect("an answer")
            .0
    }

    fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = http::request(&self.addr, "GET", "/metrics").expect("an answer");
        body.lines().find_map(|line| {
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
