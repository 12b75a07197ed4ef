//! Typed errors: what went wrong at connect time, and what a single store call met.

use std::time::Duration;

/// Why [`RedisStore::connect`](crate::RedisStore::connect) refused to hand out a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A [`StoreOptions`](crate::StoreOptions) field is out of range.
    #[error("bad store options: {0}")]
    BadOptions(#[from] backstop_core::ConfigError),
    /// The URL does not parse as one of the deployments' URLs (`redis://`, `rediss://`,
    /// `unix://`, `redis+cluster://`, `redis+sentinel://`, and their TLS forms).
    #[error("malformed Redis URL: {0}")]
    BadUrl(String),
    /// Nothing answered at the address within the connect deadline.
    #[error("Redis at {address} is unreachable: {cause}")]
    Unreachable {
        /// host:port as given.
        address: String,
        /// What the connection attempt met.
        cause: String,
    },
    /// A Redis Cluster node was given as a plain URL: with it, every decision would be
    /// refused with MOVED for the keys of other nodes.
    #[error(
        "Redis at {address} is a Redis Cluster node: connect with redis+cluster://{address} \
         (or rediss+cluster:// for TLS), listing one or more of its nodes"
    )]
    ClusterNode {
        /// The address given.
        address: String,
    },
    /// A Sentinel was given as a plain URL: it keeps no data.
    #[error(
        "Redis at {address} is a Sentinel: connect with redis+sentinel://{address}/<service>, \
         naming the primary's service"
    )]
    SentinelNode {
        /// The address given.
        address: String,
    },
    /// The TLS handshake failed (a certificate the CA given does not vouch for, a
    /// server that asks for a client certificate) or the TLS material is unusable.
    #[error("TLS with Redis at {address} failed: {cause}")]
    Tls {
        /// The address given (or the file that could not be read).
        address: String,
        /// What the handshake or the file met.
        cause: String,
    },
    /// The server refused the password or user.
    #[error("Redis refused the credentials: {0}")]
    Auth(String),
    /// The server is older than the scripts need.
    #[error("Redis {found} is too old: backstop-redis needs {needed} or newer")]
    TooOld {
        /// `redis_version` as the server reports it.
        found: String,
        /// The oldest version the scripts run on.
        needed: &'static str,
    },
    /// `maxmemory-policy` may evict keys that still hold admissions or leases.
    #[error(
        "Redis maxmemory-policy is `{policy}`, which may evict live limiter keys; set it to \
         `noeviction`, or opt into EvictionCheck::WarnOnly"
    )]
    EvictionPolicy {
        /// The policy found.
        policy: String,
    },
    /// Neither `CONFIG GET` nor `INFO memory` told the eviction policy.
    #[error(
        "cannot read Redis maxmemory-policy ({0}); opt into EvictionCheck::WarnOnly to run anyway"
    )]
    EvictionPolicyUnknown(String),
    /// Anything else the server answered during the checks.
    #[error("Redis error while connecting: {0}")]
    Other(String),
}

/// What one call to the store met. Every such call is refused or falls back according to
/// the [`FailurePolicy`](crate::FailurePolicy); the error itself is counted in
/// [`StoreMetrics`](crate::StoreMetrics) and returned by the `*_checked` methods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No answer within the deadline.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or is being re-established.
    #[error("Redis connection failed: {0}")]
    Connection(String),
    /// A key of another type sits where a limiter key should be.
    #[error("key `{key}` holds a value backstop did not write: {detail}")]
    WrongType {
        /// The key.
        key: String,
        /// The server's words.
        detail: String,
    },
    /// Any other error reply.
    #[error("Redis error: {0}")]
    Server(String),
    /// Not sent: calls failed so many times in a row that the breaker answers for Redis
    /// for a while (`StoreOptions::breaker_threshold`, `breaker_open_for`).
    #[error("not sent: the breaker is open after repeated store failures")]
    BreakerOpen,
    /// Not sent: Redis's `maxmemory-policy` became an evicting one while running, and the
    /// store refuses to run on it (`EvictionCheck::Refuse`).
    #[error("not sent: Redis's maxmemory-policy now evicts keys")]
    Evicting,
}

/// Whether `e` says this connection is of no more use: it broke, or the node it reaches
/// is not a writable primary (a failover demoted it, it is loading its data, or it lost
/// its primary).
pub(crate) fn needs_another_connection(e: &redis::RedisError) -> bool {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    let text = e.to_string();
    ["READONLY", "LOADING", "MASTERDOWN"]
        .iter()
        .any(|code| e.code() == Some(code) || text.contains(code))
}

impl StoreError {
    pub(crate) fn from_redis(err: &redis::RedisError, key: &str) -> Self {
        let text = err.to_string();
        if text.contains("WRONGTYPE") || text.contains("BACKSTOP_CORRUPT") {
            return StoreError::WrongType {
                key: key.to_owned(),
                detail: text,
            };
        }
        if err.is_timeout() {
            return StoreError::Timeout(Duration::ZERO);
        }
        if needs_another_connection(err) {
            return StoreError::Connection(text);
        }
        StoreError::Server(text)
    }
}
