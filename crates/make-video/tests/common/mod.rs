//! What several of the service's test files share: the binary run as a child process
//! with its log read line by line, and started on a free port ([`Service::start`]);
//! plain requests to it: `backstop_testkit::http`. Each test file is a crate of its own
//! and uses part of this.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The binary cargo built for these tests.
pub const MAKE_VIDEO: &str = env!("CARGO_BIN_EXE_make-video");

/// A child process whose stderr is read on a thread of its own, line by line: a full
/// pipe never blocks it, and a silent one fails the test instead of hanging it. Killed
/// and reaped however the test ends.
pub struct Logged {
    /// The process.
    pub child: Child,
    log: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Logged {
    /// Starts `command` with its stderr piped to the reader.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn spawn(command: &mut Command) -> Logged {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process");
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Logged {
            child,
            log,
            seen: Vec::new(),
        }
    }

    /// The next log line, or `None` when none comes within `limit` (or the process
    /// ended).
    pub fn next_line(&mut self, limit: Duration) -> Option<String> {
        let line = self.log.recv_timeout(limit).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads log lines until one contains `needle` (the line), within `limit`.
    ///
    /// # Panics
    ///
    /// When none does in time, or the process ends first, with every line read.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
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
                    panic!("the process exited: {:#?}", self.seen)
                }
            }
        }
    }

    /// Reads whatever lines are there now.
    pub fn drain(&mut self) {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
    }

    /// The address the service says it listens on (`listening on http://ADDR`), within
    /// `limit`.
    pub fn listening_addr(&mut self, limit: Duration) -> String {
        let line = self.wait_for("listening on http://", limit);
        address_in(&line).unwrap_or_else(|| panic!("no address in {line:?}"))
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// make-video listening on a free loopback port, killed however the test ends.
pub struct Service {
    /// The process and its log.
    pub process: Logged,
    /// Where it listens, `host:port`.
    pub addr: String,
}

impl Service {
    /// Starts make-video with `--port 0 --config CONFIG`, then `args`, logging at
    /// `rust_log` (`RUST_LOG`), and reads its log until it says where it listens.
    ///
    /// # Panics
    ///
    /// When it cannot start or names no address within 20 s.
    pub fn start(config: &Path, args: &[&str], rust_log: &str) -> Service {
        let mut process = Logged::spawn(
            Command::new(MAKE_VIDEO)
                .args(["--port", "0", "--config"])
                .arg(config)
                .args(args)
                .env("RUST_LOG", rust_log),
        );
        let addr = process.listening_addr(Duration::from_secs(20));
        Service { process, addr }
    }
}

/// The `host:port` after `http://` in a log line.
pub fn address_in(line: &str) -> Option<String> {
    let rest = line.split_once("http://")?.1;
    Some(rest.split_whitespace().next()?.to_owned())
}
