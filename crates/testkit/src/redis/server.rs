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
    /// A config file read before the arguments (a sentinel's, which it rewrites).
    config: Option<std::path::PathBuf>,
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
        Self::start_inner(port, args, None)
    }

    fn start_inner(port: u16, args: &[&str], config: Option<&std::path::Path>) -> Option<Self> {
        let mut server = RedisServer {
            port,
            child: None,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            config: config.map(std::path::Path::to_path_buf),
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

    /// As [`start_on`](Self::start_on), reading `config` (a file) before the arguments:
    /// what a sentinel needs (`redis-server sentinel.conf --sentinel`).
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it cannot start.
    pub fn start_with_config(config: &std::path::Path, port: u16, args: &[&str]) -> Option<Self> {
        Self::start_inner(port, args, Some(config))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        if let Some(config) = &self.config {
            command.arg(config);
        }
        // A TLS-only server listens on its TLS port; its plain port stays closed.
        let tls = self.args.iter().any(|arg| arg == "--tls-port");
        let plain = if tls {
            "0".to_owned()
        } else {
            self.port.to_string()
        };
        command.args(["--port", &plain, "--bind", "127.0.0.1"]);
        // A sentinel keeps no data: persistence settings are not its to take.
        if !self.args.iter().any(|arg| arg == "--sentinel") {
            command.args(["--save", "", "--appendonly", "no"]);
        }
        let child = command
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

    /// The process id (to pause it with SIGSTOP, for instance), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
