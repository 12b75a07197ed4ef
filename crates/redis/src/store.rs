//! [`RedisStore`]: one multiplexed, self-reconnecting connection per process, checked at
//! connect time, and the batching task that coalesces concurrent window decisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use backstop_core::clock::Clock;
use redis::AsyncConnectionConfig;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::checks;
use crate::connection::{StoreConnection, Target, TlsConfig};
use crate::error::{ConnectError, StoreError};
use crate::lease::LeaseState;
use crate::metrics::StoreMetrics;
use crate::options::StoreOptions;
use crate::scripts;

/// The most decisions queued for the batching task; callers beyond it wait for room
/// (within their deadline).
const MAX_PENDING: usize = 4096;
/// The most decisions one script call makes.
const MAX_BATCH: usize = 512;

/// A connection to one Redis deployment (one endpoint, a Cluster, or the primary
/// Sentinel names: [`StoreConnection`]) shared by every stage made from it. Cheap to
/// clone.
///
/// Every call from every stage goes over one multiplexed connection (replaced when it
/// breaks or reaches a node that is no longer a writable primary); concurrent
/// window decisions are coalesced by a batching task into one script call per key, so
/// 64 callers of one key cost one round trip, not 64. No lock is held across a round
/// trip: callers hand their request to the task over a channel and await a oneshot.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    pub(crate) conn: StoreConnection,
    pub(crate) options: StoreOptions,
    pub(crate) metrics: Arc<StoreMetrics>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) requests: mpsc::Sender<Pending>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) replica_id: String,
    pub(crate) eviction_warning: Option<String>,
    /// Window decisions under way in this process. A caller that finds none sends its
    /// script call itself (one hop less than the batching task: the latency of a lone
    /// caller is one round trip); callers that find others under way go through the
    /// batching task and are coalesced.
    pub(crate) in_flight: AtomicUsize,
    /// The lease clock's zero on real time (see [`crate::lease`]).
    origin: std::time::Instant,
    next_lease_id: AtomicU64,
    /// Random at connect: with `next_lease_id`, numbers no other call of any process
    /// uses (the epochs of `lua/lease.lua`).
    call_id_base: u64,
    /// Leases held on an injected clock, renewed by [`RedisStore::renew_leases`] (on
    /// Redis's clock each lease has a task of its own and is not listed here).
    leases: papaya::HashMap<u64, Arc<LeaseState>>,
}

/// Counts a decision in [`StoreInner::in_flight`] for as long as it lives, also when its
/// future is dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Relaxed: a heuristic count choosing a path; no memory depends on it.
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One window decision waiting for the batching task.
pub(crate) struct Pending {
    pub(crate) key: Arc<str>,
    pub(crate) limit: u32,
    pub(crate) window_us: u64,
    pub(crate) registry: Option<Registry>,
    pub(crate) now_us: Option<u64>,
    /// The caller's deadline: the batching task answers by then, so the caller needs no
    /// timer of its own.
    pub(crate) give_up: Instant,
    pub(crate) reply: oneshot::Sender<Result<i64, StoreError>>,
}

/// The registry of a keyed name with `max_keys`: the sorted set of its clients' live
/// keys (see `lua/window.lua`).
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    pub(crate) key: Arc<str>,
    pub(crate) max_keys: u32,
}

/// The window script's call: `count` decisions on `key`.
fn window_invocation(
    key: &str,
    limit: u32,
    window_us: u64,
    now_us: Option<u64>,
    count: usize,
    registry: Option<&Registry>,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = scripts::WINDOW.key(key);
    invocation
        .arg(limit)
        .arg(window_us)
        .arg(now_us.map_or(String::new(), |now| now.to_string()))
        .arg(count);
    if let Some(registry) = registry {
        // The client's member in the registry is its window key.
        invocation
            .key(&*registry.key)
            .arg(registry.max_keys)
            .arg(key);
    }
    invocation
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("options", &self.inner.options)
            .field("injected_clock", &self.inner.clock.is_some())
            .field("metrics", &self.inner.metrics.snapshot())
            .finish()
    }
}

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
        let give_up = tokio::time::Instant::now() + options.connect_timeout;
        let (target, address) = Target::parse(url, tls)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(None);
        let metrics = Arc::new(StoreMetrics::default());
        let on_reconnect = {
            let metrics = Arc::clone(&metrics);
            Box::new(move || metrics.reconnected())
        };
        let mut conn = match tokio::time::timeout_at(
            give_up,
            StoreConnection::open(target, config, on_reconnect),
        )
        .await
        {
            Err(_) => {
                return Err(ConnectError::Unreachable {
                    address,
                    cause: format!("no connection within {:?}", options.connect_timeout),
                });
            }
            Ok(Err(e)) => return Err(checks::classify_connect_error(&e, address)),
            Ok(Ok(conn)) => conn,
        };
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

        let (requests, receiver) = mpsc::channel(MAX_PENDING);
        let runtime = tokio::runtime::Handle::current();
        runtime.spawn(batch_loop(
            receiver,
            conn.clone(),
            options.deadline,
            Arc::clone(&metrics),
        ));
        Ok(RedisStore {
            inner: Arc::new(StoreInner {
                conn,
                options,
                metrics,
                clock,
                requests,
                runtime,
                replica_id: replica_id(),
                eviction_warning,
                in_flight: AtomicUsize::new(0),
                origin: std::time::Instant::now(),
                next_lease_id: AtomicU64::new(0),
                call_id_base: random_u64(),
                leases: papaya::HashMap::new(),
            }),
        })
    }

    /// The counters of errors, timeouts and fallback decisions of every stage made from
    /// this store.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// The settings it was made with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The warning given at connect time under
    /// [`EvictionCheck::WarnOnly`](crate::EvictionCheck::WarnOnly), if any.
    pub fn eviction_warning(&self) -> Option<&str> {
        self.inner.eviction_warning.as_deref()
    }

    /// A clone of the connection, for callers that want to run their own commands.
    pub fn connection(&self) -> StoreConnection {
        self.inner.conn.clone()
    }

    /// The time to send to a script: the injected clock's microseconds, or `None` for
    /// Redis's own `TIME`.
    pub(crate) fn now_us(&self) -> Option<u64> {
        self.inner.clock.as_ref().map(|clock| clock.now_ns() / 1000)
    }

    /// The time argument of a script: the injected clock's microseconds, or empty for
    /// Redis's own `TIME`.
    pub(crate) fn now_arg(&self) -> String {
        self.now_us().map_or(String::new(), |now| now.to_string())
    }

    /// The lease clock, in microseconds: the injected clock, else this process's
    /// monotonic clock since the store was made (see [`crate::lease`]).
    pub(crate) fn lease_now_us(&self) -> u64 {
        match &self.inner.clock {
            Some(clock) => clock.now_ns() / 1000,
            None => u64::try_from(self.inner.origin.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// Sleeps until the lease clock (real time) reads `us`.
    pub(crate) async fn sleep_until_lease_us(&self, us: u64) {
        let at = self.inner.origin + Duration::from_micros(us);
        tokio::time::sleep_until(Instant::from_std(at)).await;
    }

    pub(crate) fn next_lease_id(&self) -> u64 {
        // Relaxed: uniqueness only.
        self.inner.next_lease_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A number no other lease script call uses, of any process (64 random bits at
    /// connect plus a counter).
    pub(crate) fn unique_call_id(&self) -> u64 {
        self.inner.call_id_base.wrapping_add(self.next_lease_id())
    }

    pub(crate) fn register_lease(&self, id: u64, lease: Arc<LeaseState>) {
        self.inner.leases.pin().insert(id, lease);
    }

    pub(crate) fn unregister_lease(&self, id: u64) {
        if self.inner.clock.is_some() {
            self.inner.leases.pin().remove(&id);
        }
    }

    /// On an injected clock: renews every lease held from this store that is due at the
    /// clock's time now, and marks lost those whose lease has ended. The simulator (or a
    /// test) calls it as its virtual time advances, at least every third of a lease: the
    /// leases then hold exactly as on real time, whatever the speed of the replay. On
    /// Redis's clock it does nothing (each lease renews itself on real time). Renewals
    /// are sent one after another, in the order the leases were taken.
    pub async fn renew_leases(&self) {
        if self.inner.clock.is_none() {
            return;
        }
        let mut held: Vec<(u64, Arc<LeaseState>)> = self
            .inner
            .leases
            .pin()
            .iter()
            .map(|(id, lease)| (*id, Arc::clone(lease)))
            .collect();
        held.sort_unstable_by_key(|(id, _)| *id);
        for (_, lease) in held {
            lease.renew_if_due().await;
        }
    }

    /// Runs `call` within the deadline, counting errors and timeouts.
    pub(crate) async fn call<T>(
        &self,
        key: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let deadline = self.inner.options.deadline;
        let sent = Instant::now();
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => {
                self.inner.metrics.round_trip(sent.elapsed());
                self.inner.metrics.answered();
                Ok(value)
            }
            Ok(Err(e)) => {
                if !e.is_timeout() {
                    self.inner.metrics.round_trip(sent.elapsed());
                }
                let err = StoreError::from_redis(&e, key);
                self.count(&err);
                Err(match err {
                    StoreError::Timeout(_) => StoreError::Timeout(deadline),
                    other => other,
                })
            }
            Err(_) => {
                let err = StoreError::Timeout(deadline);
                self.count(&err);
                Err(err)
            }
        }
    }

    pub(crate) fn count(&self, err: &StoreError) {
        self.inner.metrics.failed(err);
    }

    /// One window decision, sent directly when no other is under way in this process,
    /// else through the batching task: `Ok(0)` admitted, `Ok(wait_us)` refused, `Ok(-1)`
    /// refused for too many keys of a name with a registry, within the deadline.
    pub(crate) async fn decide(
        &self,
        key: &Arc<str>,
        limit: u32,
        window_us: u64,
        registry: Option<&Registry>,
    ) -> Result<i64, StoreError> {
        let deadline = self.inner.options.deadline;
        // Relaxed: see `InFlight`.
        let alone = self.inner.in_flight.fetch_add(1, Ordering::Relaxed) == 0;
        let _in_flight = InFlight(&self.inner.in_flight);
        if alone {
            let mut conn = self.inner.conn.clone();
            let invocation = window_invocation(key, limit, window_us, self.now_us(), 1, registry);
            let wait_us: i64 = self.call(key, invocation.invoke_async(&mut conn)).await?;
            self.inner.metrics.decided(1);
            return Ok(wait_us);
        }
        // Through the batching task. No timer per caller: the task answers every request
        // by its `give_up` (see `batch_loop`); only a full channel is waited on with one.
        let give_up = Instant::now() + deadline;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            key: Arc::clone(key),
            limit,
            window_us,
            registry: registry.cloned(),
            now_us: self.now_us(),
            give_up,
            reply,
        };
        let sent = match self.inner.requests.try_send(pending) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(pending)) => {
                match tokio::time::timeout_at(give_up, self.inner.requests.send(pending)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(stopped()),
                    Err(_) => Err(StoreError::Timeout(deadline)),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(stopped()),
        };
        let outcome = match sent {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(StoreError::Connection(
                    "the batching task dropped a request".into(),
                ))
            }),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(wait_us) => {
                self.inner.metrics.answered();
                Ok(wait_us)
            }
            Err(err) => {
                let err = match err {
                    StoreError::Timeout(_) => StoreError::Timeout(deadline),
                    other => other,
                };
                self.count(&err);
                Err(err)
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Connection("the batching task has stopped".into())
}

/// 64 bits from the OS generator (the time and an address if it fails: still distinct
/// between processes, if guessable).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ u64::from(std::process::id()).rotate_left(40);
    }
    u64::from_le_bytes(bytes)
}

/// A name for this process's leases: pid, start time and an address, so two replicas
/// (or two stores in one process) never share holder ids.
fn replica_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let marker = Box::new(0u8);
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        &*marker as *const u8 as usize
    )
}

/// The decisions of one script call: one key, one shape, one time.
struct Group {
    key: Arc<str>,
    limit: u32,
    window_us: u64,
    registry: Option<Registry>,
    now_us: Option<u64>,
    /// The earliest deadline among its callers: the call gives up then.
    give_up: Instant,
    replies: Vec<oneshot::Sender<Result<i64, StoreError>>>,
}

impl Group {
    fn takes(&self, pending: &Pending) -> bool {
        (Arc::ptr_eq(&self.key, &pending.key) || self.key == pending.key)
            && self.limit == pending.limit
            && self.window_us == pending.window_us
            && self.now_us == pending.now_us
    }
}

/// Groups what is pending into one script call per (key, shape, time) and sends the
/// calls together on the multiplexed connection; the next batch forms while this one is
/// in flight, so batches grow with the load and a lone caller waits for nobody.
///
/// Every request is answered by its `give_up`: one already past it is answered with a
/// timeout unsent, and a call gives up at the earliest `give_up` of its group. Requests
/// are taken in the order sent, so the batch in flight (whose callers came earlier)
/// gives up no later than any request waiting behind it.
async fn batch_loop(
    mut receiver: mpsc::Receiver<Pending>,
    conn: StoreConnection,
    deadline: Duration,
    metrics: Arc<StoreMetrics>,
) {
    let mut buffer = Vec::with_capacity(MAX_BATCH);
    let mut groups: Vec<Group> = Vec::new();
    // Index of `groups` by (key, shape, time), built only when a batch has several keys.
    let mut index: HashMap<(Arc<str>, u32, u64, Option<u64>), usize> = HashMap::new();
    loop {
        // Let the callers just answered run first: most ask again at once, and then join
        // this batch instead of making the next one (batches about twice as large under
        // load, so half the round trips per decision).
        tokio::task::yield_now().await;
        if receiver.recv_many(&mut buffer, MAX_BATCH).await == 0 {
            return; // every store handle is gone
        }
        let now = Instant::now();
        for pending in buffer.drain(..) {
            if pending.reply.is_closed() {
                continue; // its caller gave up: deciding now could only waste an admission
            }
            if pending.give_up <= now {
                let _ = pending.reply.send(Err(StoreError::Timeout(deadline)));
                continue;
            }
            let at = match groups.last() {
                Some(last) if last.takes(&pending) => Some(groups.len() - 1),
                _ if groups.len() < 4 => groups.iter().position(|group| group.takes(&pending)),
                _ => {
                    if index.is_empty() {
                        for (at, group) in groups.iter().enumerate() {
                            index.insert(
                                (
                                    Arc::clone(&group.key),
                                    group.limit,
                                    group.window_us,
                                    group.now_us,
                                ),
                                at,
                            );
                        }
                    }
                    index
                        .get(&(
                            Arc::clone(&pending.key),
                            pending.limit,
                            pending.window_us,
                            pending.now_us,
                        ))
                        .copied()
                }
            };
            match at {
                Some(at) => {
                    let group = &mut groups[at];
                    group.give_up = group.give_up.min(pending.give_up);
                    group.replies.push(pending.reply);
                }
                None => {
                    if !index.is_empty() {
                        index.insert(
                            (
                                Arc::clone(&pending.key),
                                pending.limit,
                                pending.window_us,
                                pending.now_us,
                            ),
                            groups.len(),
                        );
                    }
                    groups.push(Group {
                        key: pending.key,
                        limit: pending.limit,
                        window_us: pending.window_us,
                        registry: pending.registry,
                        now_us: pending.now_us,
                        give_up: pending.give_up,
                        replies: vec![pending.reply],
                    });
                }
            }
        }
        index.clear();
        if groups.len() == 1 {
            // The common case under load (one hot key): no task to spawn.
            if let Some(group) = groups.pop() {
                run_group(group, conn.clone(), deadline, &metrics).await;
            }
            continue;
        }
        let mut calls = tokio::task::JoinSet::new();
        for group in groups.drain(..) {
            let conn = conn.clone();
            let metrics = Arc::clone(&metrics);
            calls.spawn(async move { run_group(group, conn, deadline, &metrics).await });
        }
        while calls.join_next().await.is_some() {}
    }
}

/// One script call deciding every request of `group`, answered to each caller.
async fn run_group(
    group: Group,
    mut conn: StoreConnection,
    deadline: Duration,
    metrics: &StoreMetrics,
) {
    let Group {
        key,
        limit,
        window_us,
        registry,
        now_us,
        give_up,
        replies,
    } = group;
    let invocation = window_invocation(
        &key,
        limit,
        window_us,
        now_us,
        replies.len(),
        registry.as_ref(),
    );
    // One decision answers a bare integer, several an array (see window.lua).
    let sent = Instant::now();
    let result: Result<Vec<i64>, StoreError> = match tokio::time::timeout_at(give_up, async {
        if replies.len() == 1 {
            invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|wait| vec![wait])
        } else {
            invocation.invoke_async::<Vec<i64>>(&mut conn).await
        }
    })
    .await
    {
        Ok(Ok(values)) => {
            metrics.round_trip(sent.elapsed());
            Ok(values)
        }
        Ok(Err(e)) => {
            if !e.is_timeout() {
                metrics.round_trip(sent.elapsed());
            }
            Err(StoreError::from_redis(&e, &key))
        }
        Err(_) => Err(StoreError::Timeout(deadline)),
    };
    match result {
        Ok(values) if values.len() == replies.len() => {
            metrics.decided(replies.len() as u64);
            for (reply, wait_us) in replies.into_iter().zip(values) {
                let _ = reply.send(Ok(wait_us));
            }
        }
        Ok(values) => {
            let err = StoreError::Server(format!(
                "window script answered {} values for {} decisions",
                values.len(),
                replies.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
