//! [`RedisStore::connect`] and its variants: the connection opened and checked within
//! one deadline, then the store started and its watch with it.

use std::sync::Arc;

use backstop_core::clock::Clock;
use redis::AsyncConnectionConfig;
use tokio::time::Instant;

use crate::checks;
use crate::connection::{StoreConnection, Target, TlsConfig};
use crate::error::ConnectError;
use crate::metrics::StoreMetrics;
use crate::options::StoreOptions;
use crate::store::RedisStore;
use crate::watch;

impl RedisStore {
    /// Connects to `url`, checks the server (every primary of a cluster: version,
    /// `maxmemory-policy`, that it is the deployment the URL says), loads the scripts,
    /// and starts the batching task on the current tokio runtime. Decisions use Redis's
    /// own clock (`TIME`). The URL's scheme names the deployment:
    /// `redis://[user:password@]host:port[/db]` (one endpoint; `rediss://` for TLS with
    /// the system's roots), `redis+cluster://host:port[,host:port…]` (Redis Cluster),
    /// `redis+sentinel://host:port[,host:port…]/service[/db]` (the primary Sentinel
    /// names); see [`StoreConnection`].
    ///
    /// # Errors
    ///
    /// A [`ConnectError`] naming the cause: malformed URL, unreachable host, refused
    /// credentials, a Cluster node or a Sentinel given as a plain URL, a failed TLS
    /// handshake, a Redis older than 5.0, an evicting `maxmemory-policy`, options out of
    /// range. The whole of it (connection and checks) takes at most `connect_timeout`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the batching task needs one).
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, ConnectError> {
        Self::connect_inner(url, options, None, None).await
    }

    /// As [`connect`](Self::connect), but every decision is made at `clock`'s time
    /// (microseconds: `now_ns / 1000`) instead of Redis's, for tests and the simulator.
    /// Replicas sharing keys must then share the clock's epoch.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_clock(
        url: &str,
        options: StoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConnectError> {
        Self::connect_inner(url, options, None, Some(clock)).await
    }

    /// As [`connect`](Self::connect), with TLS material for a `rediss` URL (a CA of
    /// your own, a client certificate and key).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); [`ConnectError::Tls`] when the handshake fails
    /// (a server certificate the CA does not vouch for).
    pub async fn connect_with_tls(
        url: &str,
        options: StoreOptions,
        tls: &TlsConfig,
    ) -> Result<Self, ConnectError> {
        Self::connect_inner(url, options, Some(tls), None).await
    }

    async fn connect_inner(
        url: &str,
        options: StoreOptions,
        tls: Option<&TlsConfig>,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Self, ConnectError> {
        options.validate()?;
        // One deadline for the whole connect: the connection and the checks together.
        let give_up = Instant::now() + options.connect_timeout;
        let metrics = Arc::new(StoreMetrics::default());
        let (mut conn, address) = open(url, &options, tls, &metrics, give_up).await?;
        let eviction_warning = match tokio::time::timeout_at(
            give_up,
            checks::at_connect(&mut conn, &address, &options),
        )
        .await
        {
            Err(_) => {
                return Err(ConnectError::Unreachable {
                    address,
                    cause: format!("no answer within {:?}", options.connect_timeout),
                });
            }
            Ok(result) => result?,
        };
        let store =
            RedisStore::start(conn, options, metrics, clock, eviction_warning, give_up).await;
        watch::spawn(&store);
        Ok(store)
    }
}

/// The connection to `url` and the address it names, within `give_up`; its
/// reconnections counted in `metrics`.
async fn open(
    url: &str,
    options: &StoreOptions,
    tls: Option<&TlsConfig>,
    metrics: &Arc<StoreMetrics>,
    give_up: Instant,
) -> Result<(StoreConnection, String), ConnectError> {
    let (target, address) = Target::parse(url, tls)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(None);
    let on_reconnect = {
        let metrics = Arc::clone(metrics);
        Box::new(move || metrics.reconnected())
    };
    match tokio::time::timeout_at(give_up, StoreConnection::open(target, config, on_reconnect))
        .await
    {
        Err(_) => Err(ConnectError::Unreachable {
            address,
            cause: format!("no connection within {:?}", options.connect_timeout),
        }),
        Ok(Err(e)) => Err(checks::classify_connect_error(&e, address)),
        Ok(Ok(conn)) => Ok((conn, address)),
    }
}
