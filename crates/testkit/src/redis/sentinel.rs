//! A primary, a replica and three sentinels watching them, all private redis-server
//! processes on loopback: what a store follows through a failover.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use super::RedisServer;
use crate::real_part;

/// The service name the sentinels know the primary by.
pub const SERVICE: &str = "backstop";

/// How long the sentinels may take to see both nodes.
const READY_BOUND: Duration = Duration::from_secs(20);

/// The arrangement, stopped on drop.
#[derive(Debug)]
pub struct RedisSentinels {
    /// The node that is primary at the start.
    pub primary: RedisServer,
    /// Its replica at the start.
    pub replica: RedisServer,
    /// Three sentinels (quorum 2).
    pub sentinels: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisSentinels {
    /// Starts the primary, the replica and the sentinels, and waits until the sentinels
    /// know the replica; `None` (after printing why) when it cannot start outside CI.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it cannot start.
    pub fn start() -> Option<Self> {
        match Self::try_start() {
            Ok(set) => Some(set),
            Err(why) => real_part::unavailable(
                "redis-server in sentinel mode",
                &why,
                "install Debian's redis-server",
            ),
        }
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let primary = RedisServer::start(&[]).ok_or("the primary did not start")?;
        let primary_port = primary.port.to_string();
        let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &primary_port])
            .ok_or("the replica did not start")?;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = super::free_port();
            let path = dir.path().join(format!("sentinel-{port}.conf"));
            let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
            write!(
                file,
                "sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 5000\n\
                 sentinel parallel-syncs {SERVICE} 1\n\
                 dir {}\n",
                dir.path().display()
            )
            .map_err(|e| e.to_string())?;
            let sentinel = RedisServer::start_with_config(&path, port, &["--sentinel"])
                .ok_or("a sentinel did not start")?;
            sentinels.push(sentinel);
        }
        let set = RedisSentinels {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        set.wait_until_ready()?;
        Ok(set)
    }

    /// Waits until the replica has synced and every sentinel lists it.
    fn wait_until_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        let replica = format!("127.0.0.1:{}", self.replica.port);
        let mut waiting: Vec<u16> = self.sentinels.iter().map(|s| s.port).collect();
        while !waiting.is_empty() {
            waiting.retain(|port| {
                let out = redis_cli(*port, &["sentinel", "replicas", SERVICE]);
                !(out.contains("127.0.0.1") && out.contains(&self.replica.port.to_string()))
            });
            let synced = redis_cli(self.replica.port, &["info", "replication"])
                .contains("master_link_status:up");
            if waiting.is_empty() && synced {
                return Ok(());
            }
            if started.elapsed() > READY_BOUND {
                return Err(format!(
                    "the sentinels did not see replica {replica} within {READY_BOUND:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The store URL: `redis+sentinel://` every sentinel, `/backstop`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// Asks a sentinel to fail over now (the replica becomes primary, the primary its
    /// replica), and waits until the sentinels name the new primary.
    ///
    /// # Panics
    ///
    /// When the sentinels do not name another primary within 20 s.
    pub fn fail_over(&self) {
        let before = self.primary_port();
        let answer = redis_cli(self.sentinels[0].port, &["sentinel", "failover", SERVICE]);
        assert!(
            answer.contains("OK"),
            "SENTINEL FAILOVER answered {answer:?}"
        );
        let started = Instant::now();
        while self.primary_port() == before {
            assert!(
                started.elapsed() < READY_BOUND,
                "no new primary within {READY_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port of the primary the first sentinel names now.
    pub fn primary_port(&self) -> u16 {
        let out = redis_cli(
            self.sentinels[0].port,
            &["sentinel", "get-master-addr-by-name", SERVICE],
        );
        out.lines()
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}
