//! Real redis-server processes for the tests: the shared one `.ci/redis.sh` starts
//! (`BACKSTOP_REDIS_URL`), or private ones on free loopback ports. Without a
//! redis-server binary a test fails when `CI=true`, and skips with a message otherwise.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a redis-server without persistence on a free loopback port, with `args`
    /// added; `None` (after printing why) when none can be had outside CI.
    pub fn start(args: &[&str]) -> Option<Self> {
        let port = free_port();
        Self::start_on(port, args)
    }

    fn start_on(port: u16, args: &[&str]) -> Option<Self> {
        let mut server = RedisServer {
            port,
            child: None,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(why) => unavailable(&why),
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "redis-server did not listen on port {} within 10 s",
            self.port
        ))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server restarts on its port");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server to share: `BACKSTOP_REDIS_URL` when set (CI), else a private one held by the
/// returned guard. `None` (after printing why) when there is none outside CI.
pub fn shared() -> Option<(String, Option<RedisServer>)> {
    if let Ok(url) = std::env::var("BACKSTOP_REDIS_URL") {
        if !url.is_empty() {
            return Some((url, None));
        }
    }
    let server = RedisServer::start(&[])?;
    Some((server.url(), Some(server)))
}

fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("CI=true and no redis-server: {why}");
    }
    eprintln!(
        "SKIPPED: no redis-server ({why}); install Debian's redis-server or set BACKSTOP_REDIS_URL"
    );
    None
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a local address").port()
}

/// A name no other test (or earlier run against a shared server) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
