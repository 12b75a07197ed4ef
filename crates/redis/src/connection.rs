//! [`StoreConnection`]: how a store reaches Redis, whatever the deployment: one endpoint
//! (plain or TLS), a Redis Cluster, or a primary found through Sentinel.
//!
//! The deployment is named by the URL's scheme:
//!
//! | URL | deployment |
//! |---|---|
//! | `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS), `unix:///path` | one endpoint |
//! | `redis+cluster://[user:password@]host:port[,host:port…]`, `rediss+cluster://…` | Redis Cluster, through the nodes given |
//! | `redis+sentinel://host:port[,host:port…]/service[/db]`, `rediss+sentinel://…` | the primary Sentinel names for `service` |
//!
//! A user and password given in a cluster or sentinel URL are the data nodes' (the
//! sentinels are asked without them).
//!
//! One endpoint and Sentinel share one multiplexed connection ([`Managed`]): a call that
//! meets a dropped connection, or an answer saying the node is not a writable primary
//! (`READONLY`, `LOADING`, `MASTERDOWN`), drops it, and one task connects again (for
//! Sentinel: asks the sentinels for the primary again), loads the scripts and puts the
//! new connection in place; meanwhile calls fail at once (the failure policy answers).
//! A Cluster uses redis-rs's cluster connection, which follows slots and failovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, RedisFuture, RedisResult, Value};

use crate::error::{ConnectError, needs_another_connection};
use crate::scripts;

/// PEM material for TLS (`rediss://`): a CA to trust instead of the system's, and a
/// client certificate and key for servers that ask for one (`tls-auth-clients`).
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// The CA certificate(s) that signed the server's, PEM; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// This client's certificate, PEM (with `client_key_pem`).
    pub client_cert_pem: Option<Vec<u8>>,
    /// This client's private key, PEM (with `client_cert_pem`).
    pub client_key_pem: Option<Vec<u8>>,
}

impl TlsConfig {
    /// Reads the PEM files: a CA, and a client certificate and key, each optional.
    ///
    /// # Errors
    ///
    /// A [`ConnectError::Tls`] naming the file that cannot be read.
    pub fn from_files(
        ca: Option<&std::path::Path>,
        client_cert: Option<&std::path::Path>,
        client_key: Option<&std::path::Path>,
    ) -> Result<Self, ConnectError> {
        let read = |path: Option<&std::path::Path>| {
            path.map(|path| {
                std::fs::read(path).map_err(|e| ConnectError::Tls {
                    address: path.display().to_string(),
                    cause: format!("cannot read it: {e}"),
                })
            })
            .transpose()
        };
        Ok(TlsConfig {
            ca_pem: read(ca)?,
            client_cert_pem: read(client_cert)?,
            client_key_pem: read(client_key)?,
        })
    }

    fn certificates(&self) -> Result<redis::TlsCertificates, ConnectError> {
        let client_tls = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(ConnectError::Tls {
                    address: String::new(),
                    cause: "a client certificate needs its key, and a key its certificate".into(),
                });
            }
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert: self.ca_pem.clone(),
        })
    }
}

/// The deployment a URL names.
pub(crate) enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    Sentinel(SentinelTarget),
}

/// How to find the primary through Sentinel.
pub(crate) struct SentinelTarget {
    sentinels: Vec<redis::Client>,
    service: String,
    /// `redis` or `rediss`, the data nodes' user info and database.
    scheme: &'static str,
    auth: String,
    db: String,
    tls: Option<TlsConfig>,
    /// The connection to the sentinel that answered last.
    asked: ArcSwapOption<MultiplexedConnection>,
}

impl Target {
    /// Parses `url` (see the module's table), with `tls` for `rediss` schemes.
    pub(crate) fn parse(
        url: &str,
        tls: Option<&TlsConfig>,
    ) -> Result<(Self, String), ConnectError> {
        let bad = |why: String| ConnectError::BadUrl(why);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad(format!("{url:?} has no scheme")))?;
        let (base, deployment) = match scheme.split_once('+') {
            Some((base, kind @ ("cluster" | "sentinel"))) => (base, kind),
            _ => (scheme, "single"),
        };
        if deployment == "single" {
            let client = single_client(url, tls)?;
            let address = client.get_connection_info().addr().to_string();
            return Ok((Target::Single(client), address));
        }
        let scheme = match base {
            "redis" => "redis",
            "rediss" => "rediss",
            other => return Err(bad(format!("unknown scheme {other}+{deployment}"))),
        };
        let (auth, hosts_and_path) = match rest.rsplit_once('@') {
            Some((auth, after)) => (format!("{auth}@"), after),
            None => (String::new(), rest),
        };
        let (hosts, path) = hosts_and_path
            .split_once('/')
            .map_or((hosts_and_path, ""), |(h, p)| (h, p));
        let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
        if hosts.is_empty() {
            return Err(bad(format!("{url:?} names no host")));
        }
        let address = hosts.join(",");
        if deployment == "cluster" {
            if !path.is_empty() {
                return Err(bad(
                    "a cluster URL takes no path (Redis Cluster has one database)".into(),
                ));
            }
            let nodes: Vec<String> = hosts
                .iter()
                .map(|h| format!("{scheme}://{auth}{h}"))
                .collect();
            // Few retries of its own: the store's deadline bounds every call, and the
            // failure policy answers past it.
            let mut builder = redis::cluster::ClusterClient::builder(nodes).retries(2);
            if let Some(tls) = tls {
                builder = builder.certs(tls.certificates()?);
            }
            let client = builder.build().map_err(|e| bad(e.to_string()))?;
            return Ok((Target::Cluster(client), address));
        }
        let mut parts = path.split('/');
        let service = parts.next().unwrap_or_default();
        if service.is_empty() {
            return Err(bad(format!(
                "{url:?}: a sentinel URL names the service after the hosts: \
                 redis+sentinel://host:port[,host:port]/service[/db]"
            )));
        }
        let db = parts.next().unwrap_or_default().to_owned();
        // The sentinels themselves: plain or TLS like the data nodes, without the user info.
        let sentinels = hosts
            .iter()
            .map(|h| single_client(&format!("{scheme}://{h}"), tls))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            Target::Sentinel(SentinelTarget {
                sentinels,
                service: service.to_owned(),
                scheme,
                auth,
                db,
                tls: tls.cloned(),
                asked: ArcSwapOption::empty(),
            }),
            address,
        ))
    }
}

fn single_client(url: &str, tls: Option<&TlsConfig>) -> Result<redis::Client, ConnectError> {
    let bad = |e: redis::RedisError| ConnectError::BadUrl(e.to_string());
    match tls {
        Some(tls) if url.starts_with("rediss://") => {
            redis::Client::build_with_tls(url, tls.certificates()?).map_err(bad)
        }
        _ => redis::Client::open(url).map_err(bad),
    }
}

impl SentinelTarget {
    /// The primary's address (`host:port`) the first sentinel that answers names (the
    /// one that answered last is asked first, on the connection kept to it).
    async fn primary_address(&self, config: &AsyncConnectionConfig) -> RedisResult<String> {
        let ask = |mut conn: MultiplexedConnection| async move {
            let (host, port): (String, u16) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.service)
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(format!("{host}:{port}"))
        };
        if let Some(conn) = self.asked.load_full() {
            match ask((*conn).clone()).await {
                Ok(address) => return Ok(address),
                Err(_) => self.asked.store(None),
            }
        }
        let mut last = None;
        for sentinel in &self.sentinels {
            let conn = match sentinel
                .get_multiplexed_async_connection_with_config(config)
                .await
            {
                Ok(conn) => conn,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match ask(conn.clone()).await {
                Ok(address) => {
                    self.asked.store(Some(Arc::new(conn)));
                    return Ok(address);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no sentinel given"))
        }))
    }

    /// Connects to the primary at `address`.
    async fn connect_to(
        &self,
        address: &str,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        let db = if self.db.is_empty() {
            String::new()
        } else {
            format!("/{}", self.db)
        };
        let url = format!("{}://{}{address}{db}", self.scheme, self.auth);
        let client = single_client(&url, self.tls.as_ref()).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "primary",
                e.to_string(),
            ))
        })?;
        client
            .get_multiplexed_async_connection_with_config(config)
            .await
    }
}

/// How often a store on Sentinel asks which node is primary: a failover is followed
/// within this (and a reconnect) even when the old primary still answers as one.
pub(crate) const SENTINEL_POLL: Duration = Duration::from_millis(100);

/// One endpoint, or the primary Sentinel names: a multiplexed connection that is
/// replaced when it breaks or lands on a node that is not a writable primary.
pub(crate) struct Managed {
    target: Target,
    config: AsyncConnectionConfig,
    current: ArcSwapOption<MultiplexedConnection>,
    /// The primary the current connection reaches (Sentinel only).
    primary: ArcSwapOption<String>,
    reconnecting: AtomicBool,
    runtime: tokio::runtime::Handle,
    /// Counts each replacement (for the store's metrics).
    on_reconnect: Box<dyn Fn() + Send + Sync>,
}

impl Managed {
    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        match &self.target {
            Target::Single(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            }
            Target::Sentinel(sentinel) => {
                let address = sentinel.primary_address(&self.config).await?;
                let conn = sentinel.connect_to(&address, &self.config).await?;
                self.primary.store(Some(Arc::new(address)));
                Ok(conn)
            }
            Target::Cluster(_) => unreachable!("a cluster is not managed here"),
        }
    }

    /// On Sentinel: asks every [`SENTINEL_POLL`] which node is primary, and replaces the
    /// connection when it is another than the one reached (a failover while the old
    /// primary still answers as one). Ends with the store.
    fn watch_primary(self: &Arc<Self>) {
        let Target::Sentinel(_) = &self.target else {
            return;
        };
        let weak = Arc::downgrade(self);
        drop(self.runtime.spawn(async move {
            loop {
                tokio::time::sleep(SENTINEL_POLL).await;
                let Some(managed) = weak.upgrade() else {
                    return;
                };
                let Target::Sentinel(sentinel) = &managed.target else {
                    return;
                };
                let Ok(named) = sentinel.primary_address(&managed.config).await else {
                    continue;
                };
                let reached = managed.primary.load_full();
                if reached.as_deref() != Some(&named) {
                    tracing::info!(
                        primary = %named,
                        "backstop-redis: Sentinel names another primary; connecting to it"
                    );
                    managed.replace();
                }
            }
        }));
    }

    async fn send(self: &Arc<Self>, cmd: &Cmd) -> RedisResult<Value> {
        let Some(conn) = self.current.load_full() else {
            return Err(reconnecting());
        };
        let mut conn = (*conn).clone();
        let answer = conn.req_packed_command(cmd).await;
        if let Some(e) = failure(&answer) {
            if needs_another_connection(&e) {
                self.replace();
            }
        }
        answer
    }

    async fn send_pipeline(
        self: &Arc<Self>,
        pipeline: &redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let Some(conn) = self.current.load_full() else {
            return Err(reconnecting());
        };
        let mut conn = (*conn).clone();
        let answer = conn.req_packed_commands(pipeline, offset, count).await;
        let failed = match &answer {
            Err(e) => needs_another_connection(e),
            Ok(values) => values.iter().any(|value| {
                failure(&Ok(value.clone())).is_some_and(|e| needs_another_connection(&e))
            }),
        };
        if failed {
            self.replace();
        }
        answer
    }

    /// Drops the connection and starts the one task that makes the next (unless it is
    /// under way): connect (asking the sentinels again), load the scripts, put it in
    /// place; tried again with a growing pause (10 ms to 200 ms) until it succeeds.
    fn replace(self: &Arc<Self>) {
        // AcqRel: the winner alone replaces; what it stores is published by the ArcSwap.
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.current.store(None);
        let managed = Arc::clone(self);
        drop(self.runtime.spawn(async move {
            let mut pause = Duration::from_millis(10);
            loop {
                if let Ok(mut conn) = managed.connect().await {
                    if is_writable_primary(&mut conn).await && load_scripts(&mut conn).await.is_ok()
                    {
                        managed.current.store(Some(Arc::new(conn)));
                        (managed.on_reconnect)();
                        // Release: pairs with the AcqRel swap above.
                        managed.reconnecting.store(false, Ordering::Release);
                        tracing::info!("backstop-redis: connected again (a primary answers)");
                        return;
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }));
    }
}

/// The error in an answer: a failed call, or an error reply (which redis-rs hands on as
/// a value, and turns into an error only when the caller reads it).
fn failure(answer: &RedisResult<Value>) -> Option<redis::RedisError> {
    match answer {
        Err(e) => Some(e.clone()),
        Ok(Value::ServerError(e)) => Some(e.clone().into()),
        Ok(_) => None,
    }
}

fn reconnecting() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "backstop-redis: connecting again (the last connection broke or was not a writable primary)",
    ))
}

async fn is_writable_primary(conn: &mut MultiplexedConnection) -> bool {
    let role: RedisResult<Vec<Value>> = redis::cmd("ROLE").query_async(conn).await;
    matches!(role.as_deref(), Ok([Value::BulkString(role), ..]) if role == b"master")
}

/// Loads every script, so that the first decision on a new connection is one round
/// trip (not NOSCRIPT, a load and a retry).
pub(crate) async fn load_scripts(conn: &mut impl ConnectionLike) -> RedisResult<()> {
    for script in scripts::all() {
        script.prepare_invoke().load_async(conn).await?;
    }
    Ok(())
}

/// The connection of a store: cheap to clone, usable with every redis-rs command and
/// script (`query_async(&mut conn)`).
#[derive(Clone)]
pub struct StoreConnection(Link);

#[derive(Clone)]
enum Link {
    Managed(Arc<Managed>),
    Cluster(ClusterConnection),
}

impl StoreConnection {
    /// Connects to `target` within `config`'s timeouts; `on_reconnect` is called each
    /// time a managed connection is replaced.
    pub(crate) async fn open(
        target: Target,
        config: AsyncConnectionConfig,
        on_reconnect: Box<dyn Fn() + Send + Sync>,
    ) -> RedisResult<Self> {
        if let Target::Cluster(client) = &target {
            let conn = client.get_async_connection().await?;
            return Ok(StoreConnection(Link::Cluster(conn)));
        }
        let managed = Managed {
            target,
            config,
            current: ArcSwapOption::empty(),
            primary: ArcSwapOption::empty(),
            reconnecting: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
            on_reconnect,
        };
        let conn = managed.connect().await?;
        managed.current.store(Some(Arc::new(conn)));
        let managed = Arc::new(managed);
        managed.watch_primary();
        Ok(StoreConnection(Link::Managed(managed)))
    }

    /// Whether it reaches a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Link::Cluster(_))
    }

    /// `cmd` on every primary (one on a single endpoint, each shard's on a cluster):
    /// their answers.
    pub(crate) async fn on_every_primary(&mut self, cmd: &Cmd) -> RedisResult<Vec<Value>> {
        if !self.is_cluster() {
            return Ok(vec![cmd.query_async(self).await?]);
        }
        match &mut self.0 {
            Link::Managed(_) => unreachable!("checked above"),
            Link::Cluster(conn) => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::Special),
                ));
                let answer = conn.route_command(cmd.clone(), routing).await?;
                Ok(match answer {
                    Value::Map(pairs) => pairs.into_iter().map(|(_, value)| value).collect(),
                    Value::Array(items) => items
                        .into_iter()
                        .map(|item| match item {
                            Value::Array(mut pair) if pair.len() == 2 => pair.remove(1),
                            other => other,
                        })
                        .collect(),
                    other => vec![other],
                })
            }
        }
    }
}

impl ConnectionLike for StoreConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Link::Managed(managed) => {
                let managed = Arc::clone(managed);
                Box::pin(async move { managed.send(cmd).await })
            }
            Link::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Link::Managed(managed) => {
                let managed = Arc::clone(managed);
                Box::pin(async move { managed.send_pipeline(pipeline, offset, count).await })
            }
            Link::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Link::Managed(_) => 0,
            Link::Cluster(conn) => conn.get_db(),
        }
    }
}
