//! One redis-server process on a loopback port, without persistence.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::real_part;

/// How long a starting redis-server may take to listen.
const START_BOUND: Duration = Duration::from_secs(10);

/// A redis-server child process, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// The loopback port it listens on (kept across [`restart`](Self::restart)).
    pub port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a redis-server without persistence on a free loopback port, with `args`
    /// added (e.g. `["--maxmemory-policy", "allkeys-lru"]`); `None` (after printing why)
    /// when none can be had outside CI.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it cannot start.
    pub fn start(args: &[&str]) -> Option<Self> {
        Self::start_on(super::free_port(), args)
    }

    /// As [`start`](Self::start), on `port`.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it cannot start.
    pub fn start_on(port: u16, args: &[&str]) -> Option<Self> {
        let mut server = RedisServer {
            port,
            child: None,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(why) => real_part::unavailable(
                "redis-server",
                &why,
                "install Debian's redis-server or set BACKSTOP_REDIS_URL",
            ),
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
        while started.elapsed() < START_BOUND {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "redis-server did not listen on port {} within {START_BOUND:?}",
            self.port
        ))
    }

    /// Its URL, `redis://127.0.0.1:PORT`.
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
    ///
    /// # Panics
    ///
    /// When it does not listen again within the bound.
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
