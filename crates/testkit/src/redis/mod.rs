//! Real Redis for tests: the shared server `.ci/redis.sh` starts (its URL in
//! `BACKSTOP_REDIS_URL`), or private redis-server processes on free loopback ports.
//! Without a redis-server binary a test fails under `CI=true` and skips with a message
//! elsewhere ([`real_part`](crate::real_part)).
//!
//! One file per arrangement: [`server`] is one standalone node; an arrangement of several
//! nodes (a cluster, sentinels, TLS) goes in a file of its own beside it, started through
//! the same [`RedisServer`] processes and the same CI rule.
//!
//! ```
//! // A test that needs Redis: the shared server, or a private one it holds.
//! let Some((url, _server)) = backstop_testkit::redis::shared() else {
//!     return; // outside CI, without redis-server: skipped, and said so
//! };
//! assert!(url.starts_with("redis://"));
//! // Keys under a name nobody else uses, even on a server other tests share.
//! let name = backstop_testkit::redis::unique("window");
//! assert!(name.starts_with("window-"));
//! assert_ne!(name, backstop_testkit::redis::unique("window"));
//! ```

pub mod cluster;
// tokio has no network under loom's cfg, with which core's unit tests (and so this
// crate) are built for the model checks; nothing there needs a proxy.
#[cfg(not(loom))]
pub mod proxy;
pub mod sentinel;
pub mod server;
pub mod tls;

pub use cluster::RedisCluster;
#[cfg(not(loom))]
pub use proxy::delaying_proxy;
pub use sentinel::RedisSentinels;
pub use server::RedisServer;
pub use tls::TlsRedis;

use std::net::TcpListener;

/// The environment variable that names the shared server (`.ci/redis.sh` exports it).
pub const URL_VAR: &str = "BACKSTOP_REDIS_URL";

/// A server to share: `BACKSTOP_REDIS_URL` when set (CI), else a private one held by the
/// returned guard (drop it when done). `None`, after printing why, when there is none
/// outside CI.
///
/// # Panics
///
/// Under `CI=true` when no server can be had.
pub fn shared() -> Option<(String, Option<RedisServer>)> {
    if let Ok(url) = std::env::var(URL_VAR) {
        if !url.is_empty() {
            return Some((url, None));
        }
    }
    let server = RedisServer::start(&[])?;
    Some((server.url(), Some(server)))
}

/// The environment variable that names the shared Redis Cluster (`.ci/redis.sh` exports
/// it: `redis+cluster://127.0.0.1:P1,…`).
pub const CLUSTER_URL_VAR: &str = "BACKSTOP_REDIS_CLUSTER_URL";

/// A Redis Cluster to share: `BACKSTOP_REDIS_CLUSTER_URL` when set (CI), else a private
/// 3-primary cluster held by the returned guard. `None`, after printing why, when there
/// is none outside CI.
///
/// # Panics
///
/// Under `CI=true` when no cluster can be had.
pub fn shared_cluster() -> Option<(String, Option<RedisCluster>)> {
    if let Ok(url) = std::env::var(CLUSTER_URL_VAR) {
        if !url.is_empty() {
            return Some((url, None));
        }
    }
    let cluster = RedisCluster::start(3)?;
    Some((cluster.url(), Some(cluster)))
}

/// A loopback port nobody listens on right now.
///
/// # Panics
///
/// When no loopback port can be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a local address").port()
}

/// A name no other test (or earlier run against a shared server) uses: `prefix`, the
/// process id, the wall time and a counter.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        // Relaxed: only uniqueness is needed, which the atomic add gives alone.
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
