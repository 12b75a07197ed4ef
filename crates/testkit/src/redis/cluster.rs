//! A Redis Cluster of private redis-server processes on loopback: `n` primaries, no
//! replicas, every slot assigned (`redis-cli --cluster create`).

use std::process::Command;
use std::time::{Duration, Instant};

use super::RedisServer;
use crate::real_part;

/// How long the cluster may take to agree on its slots.
const READY_BOUND: Duration = Duration::from_secs(20);

/// A running cluster, stopped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    /// Its nodes, each a primary.
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `primaries` nodes (at least 3, as Redis Cluster asks) and joins them;
    /// `None` (after printing why) when it cannot start outside CI.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it cannot start.
    pub fn start(primaries: usize) -> Option<Self> {
        match Self::try_start(primaries.max(3)) {
            Ok(cluster) => Some(cluster),
            Err(why) => real_part::unavailable(
                "Redis Cluster",
                &why,
                "install Debian's redis-server (redis-cli comes with it) or set \
                 BACKSTOP_REDIS_CLUSTER_URL",
            ),
        }
    }

    fn try_start(primaries: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let mut nodes = Vec::new();
        for _ in 0..primaries {
            let port = bus_free_port()?;
            let config = dir.path().join(format!("nodes-{port}.conf"));
            let node = RedisServer::start_on(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config.to_str().ok_or("a temp path that is not UTF-8")?,
                    "--cluster-node-timeout",
                    "2000",
                    "--dir",
                    dir.path().to_str().ok_or("a temp path that is not UTF-8")?,
                ],
            )
            .ok_or("a cluster node did not start")?;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&created.stdout)
            ));
        }
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// Waits until every node says `cluster_state:ok`.
    fn wait_until_ok(&self) -> Result<(), String> {
        let started = Instant::now();
        for node in &self.nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .map_err(|e| format!("cannot run redis-cli: {e}"))?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                if started.elapsed() > READY_BOUND {
                    return Err(format!("the cluster was not ok within {READY_BOUND:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The store URL of the cluster: `redis+cluster://` and every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}

/// A loopback port free now whose cluster bus port (the port + 10 000) is free too.
fn bus_free_port() -> Result<u16, String> {
    for _ in 0..100 {
        let port = super::free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
    Err("no loopback port with a free cluster bus port".into())
}
