//! [`RedisStore`]: one multiplexed, self-reconnecting connection per process, checked at
//! connect time, and the batching task that coalesces concurrent window decisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use backstop_core::clock::Clock;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::connection::StoreConnection;
use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::options::StoreOptions;
use crate::scripts;

/// [`StoreInner::eviction`]: every primary is `noeviction`.
pub(crate) const EVICTION_OK: u8 = 0;
/// [`StoreInner::eviction`]: an evicting policy, warned about.
pub(crate) const EVICTION_WARNED: u8 = 1;
/// [`StoreInner::eviction`]: an evicting policy the store refuses to run on.
pub(crate) const EVICTION_REFUSED: u8 = 2;

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
    /// This process's clock against Redis's (shared with the batching task).
    pub(crate) time: Arc<RedisTime>,
    /// Failures in a row, and until when (lease clock, µs) the breaker answers for Redis.
    failures_in_a_row: AtomicU32,
    breaker_open_until_us: AtomicU64,
    /// What the last running check found of the `maxmemory-policy`: [`EVICTION_OK`],
    /// [`EVICTION_WARNED`], or [`EVICTION_REFUSED`] (an evicting one under
    /// [`EvictionCheck::Refuse`](crate::EvictionCheck): calls then fail at once).
    pub(crate) eviction: AtomicU8,
    next_lease_id: AtomicU64,
    /// Random at connect: with `next_lease_id`, numbers no other call of any process
    /// uses (the epochs of `lua/lease.lua`).
    call_id_base: u64,
    /// Leases held on an injected clock, renewed by [`RedisStore::renew_leases`] (on
    /// Redis's clock each lease has a task of its own and is not listed here).
    leases: papaya::HashMap<u64, Arc<dyn Renewable>>,
}

/// A lease renewed on an injected clock by [`RedisStore::renew_leases`] (`crate::lease`
/// says how): the store keeps them without knowing what they hold.
pub(crate) trait Renewable: Send + Sync {
    /// Renews when due on the store's clock; marks the lease lost when it ended.
    fn renew_if_due(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// This process's clock against Redis's: the lease clock's zero, and how far Redis's
/// `TIME` is ahead of it, so that a caller's deadline can be told to a script on Redis's
/// clock.
pub(crate) struct RedisTime {
    /// The lease clock's zero on real time (see [`crate::lease`]).
    pub(crate) origin: std::time::Instant,
    /// Redis's `TIME` minus the lease clock, in µs, from the last sample (`i64::MIN`: no
    /// sample yet, or time injected). A sample takes the lease clock when the answer
    /// arrives, after Redis read its clock: the offset is low by up to one round trip,
    /// so deadlines told to Redis are early by as much, never late.
    offset_us: AtomicI64,
}

impl RedisTime {
    fn new() -> Self {
        RedisTime {
            origin: std::time::Instant::now(),
            offset_us: AtomicI64::new(i64::MIN),
        }
    }

    /// The lease clock (real time) now, in µs.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records a `TIME` answer (`redis_us`) that arrived now.
    /// Samples Redis's `TIME` over `conn`.
    pub(crate) async fn sample_from(&self, conn: &mut StoreConnection) {
        let answer: redis::RedisResult<(u64, u64)> = redis::cmd("TIME").query_async(conn).await;
        if let Ok((secs, micros)) = answer {
            self.sample(secs * 1_000_000 + micros);
        }
    }

    fn sample(&self, redis_us: u64) {
        let offset = i64::try_from(redis_us).unwrap_or(i64::MAX) - self.now_us() as i64;
        // Relaxed: one number read on its own; a stale one only moves a deadline by the
        // time between two samples' clock drift.
        self.offset_us.store(offset, Ordering::Relaxed);
    }

    /// `give_up` on Redis's clock, as a script argument: empty when not known yet.
    pub(crate) fn deadline_arg(&self, give_up: Instant) -> String {
        // Relaxed: see `sample`.
        let offset = self.offset_us.load(Ordering::Relaxed);
        if offset == i64::MIN {
            return String::new();
        }
        let local = give_up
            .into_std()
            .saturating_duration_since(self.origin)
            .as_micros();
        let redis = i64::try_from(local)
            .unwrap_or(i64::MAX)
            .saturating_add(offset);
        redis.max(0).to_string()
    }
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

/// What the window script answers for a decision that reached Redis after its deadline
/// (nothing was counted).
pub(crate) const LATE: i64 = -1;

/// The window script's call: `count` decisions on `key`.
struct WindowCall<'a> {
    key: &'a str,
    limit: u32,
    window_us: u64,
    /// The injected clock's time, or `None` for Redis's.
    now_us: Option<u64>,
    /// The earliest deadline of the decisions on Redis's clock, or empty.
    deadline: String,
    count: usize,
    registry: Option<&'a Registry>,
}

impl WindowCall<'_> {
    fn invocation(&self) -> redis::ScriptInvocation<'static> {
        let mut invocation = scripts::WINDOW.key(self.key);
        invocation
            .arg(self.limit)
            .arg(self.window_us)
            .arg(self.now_us.map_or(String::new(), |now| now.to_string()))
            .arg(self.count)
            .arg(&self.deadline);
        if let Some(registry) = self.registry {
            // The client's member in the registry is its window key.
            invocation
                .key(&*registry.key)
                .arg(registry.max_keys)
                .arg(self.key);
        }
        invocation
    }
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
    /// A store on `conn`, checked, with the batching task started on the current tokio
    /// runtime (the watch is the caller's: `crate::connect`). Redis's clock is sampled
    /// first, within `give_up`, unless time is injected.
    pub(crate) async fn start(
        mut conn: StoreConnection,
        options: StoreOptions,
        metrics: Arc<StoreMetrics>,
        clock: Option<Arc<dyn Clock>>,
        eviction_warning: Option<String>,
        give_up: Instant,
    ) -> Self {
        let time = Arc::new(RedisTime::new());
        if clock.is_none() {
            // The first sample of Redis's clock, within the connect's deadline.
            let _ = tokio::time::timeout_at(give_up, time.sample_from(&mut conn)).await;
        }
        let (requests, receiver) = mpsc::channel(MAX_PENDING);
        let runtime = tokio::runtime::Handle::current();
        runtime.spawn(batch_loop(
            receiver,
            conn.clone(),
            options.deadline,
            Arc::clone(&metrics),
            Arc::clone(&time),
        ));
        RedisStore {
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
                time,
                failures_in_a_row: AtomicU32::new(0),
                breaker_open_until_us: AtomicU64::new(0),
                eviction: AtomicU8::new(EVICTION_OK),
                next_lease_id: AtomicU64::new(0),
                call_id_base: random_u64(),
                leases: papaya::HashMap::new(),
            }),
        }
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
            None => self.inner.time.now_us(),
        }
    }

    /// `give_up` as a script argument on Redis's clock: empty on an injected clock (its
    /// virtual time says nothing of when a caller gives up) or before Redis's clock was
    /// sampled.
    pub(crate) fn deadline_arg(&self, give_up: Instant) -> String {
        if self.inner.clock.is_some() {
            return String::new();
        }
        self.inner.time.deadline_arg(give_up)
    }

    /// Sleeps until the lease clock (real time) reads `us`.
    pub(crate) async fn sleep_until_lease_us(&self, us: u64) {
        let at = self.inner.time.origin + Duration::from_micros(us);
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

    pub(crate) fn register_lease(&self, id: u64, lease: Arc<dyn Renewable>) {
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
        let mut held: Vec<(u64, Arc<dyn Renewable>)> = self
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
        self.call_until(self.give_up(), key, call).await
    }

    /// The deadline of a call starting now: the store's deadline from now.
    pub(crate) fn give_up(&self) -> Instant {
        Instant::now() + self.inner.options.deadline
    }

    /// Whether calls may go to Redis now: not while the breaker is open, nor while a
    /// running check finds an evicting policy it must refuse. Fails at once otherwise.
    pub(crate) fn guard(&self) -> Result<(), StoreError> {
        // Relaxed (both): flags read on their own; a stale read lets one more call
        // through, or fails one more at once.
        if self.inner.eviction.load(Ordering::Relaxed) == EVICTION_REFUSED {
            return Err(StoreError::Evicting);
        }
        let open_until = self.inner.breaker_open_until_us.load(Ordering::Relaxed);
        if open_until != 0 && self.inner.time.now_us() < open_until {
            self.inner.metrics.breaker_refused();
            return Err(StoreError::BreakerOpen);
        }
        Ok(())
    }

    /// As [`call`](Self::call), giving up at `give_up` (one admission's deadline shared
    /// by its calls), and not at all while [`guard`](Self::guard) says no.
    pub(crate) async fn call_until<T>(
        &self,
        give_up: Instant,
        key: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.guard()?;
        self.call_unguarded(give_up, key, call).await
    }

    /// A call the breaker does not stop (lease renewals: the lease needs them most when
    /// Redis is failing), within `give_up`.
    pub(crate) async fn call_unguarded<T>(
        &self,
        give_up: Instant,
        key: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let deadline = self.inner.options.deadline;
        let sent = Instant::now();
        match tokio::time::timeout_at(give_up, call).await {
            Ok(Ok(value)) => {
                self.inner.metrics.round_trip(sent.elapsed());
                self.succeeded();
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
        let threshold = self.inner.options.breaker_threshold;
        // Relaxed: a count on its own; races only open the breaker one failure early
        // or late.
        let in_a_row = self.inner.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold > 0 && in_a_row >= threshold {
            let until = self.inner.time.now_us()
                + u64::try_from(self.inner.options.breaker_open_for.as_micros()).unwrap_or(0);
            // Relaxed: see `guard`.
            let before = self
                .inner
                .breaker_open_until_us
                .swap(until, Ordering::Relaxed);
            if before < self.inner.time.now_us() {
                self.inner.metrics.breaker_opened();
                tracing::warn!(
                    failures = in_a_row,
                    "backstop-redis: {in_a_row} store calls failed in a row; the failure \
                     policy answers at once for {:?}",
                    self.inner.options.breaker_open_for
                );
            }
        }
    }

    /// A call answered: the breaker's count starts again.
    pub(crate) fn succeeded(&self) {
        self.inner.metrics.answered();
        // Relaxed: see `count`. The load keeps the common path a shared read.
        if self.inner.failures_in_a_row.load(Ordering::Relaxed) != 0 {
            self.inner.failures_in_a_row.store(0, Ordering::Relaxed);
        }
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
        give_up: Instant,
    ) -> Result<i64, StoreError> {
        self.guard()?;
        // Relaxed: see `InFlight`.
        let alone = self.inner.in_flight.fetch_add(1, Ordering::Relaxed) == 0;
        let _in_flight = InFlight(&self.inner.in_flight);
        let call = WindowCall {
            key,
            limit,
            window_us,
            now_us: self.now_us(),
            deadline: self.deadline_arg(give_up),
            count: 1,
            registry,
        };
        if alone {
            self.decide_alone(call, give_up).await
        } else {
            self.decide_batched(call, key, give_up).await
        }
    }

    /// One decision sent directly.
    async fn decide_alone(
        &self,
        call: WindowCall<'_>,
        give_up: Instant,
    ) -> Result<i64, StoreError> {
        let mut conn = self.inner.conn.clone();
        let wait_us: i64 = self
            .call_unguarded(give_up, call.key, call.invocation().invoke_async(&mut conn))
            .await?;
        if wait_us == LATE {
            let err = StoreError::Timeout(self.inner.options.deadline);
            self.count(&err);
            return Err(err);
        }
        self.inner.metrics.decided(1);
        Ok(wait_us)
    }

    /// One decision through the batching task. No timer per caller: the task answers
    /// every request by its `give_up` (see `batch_loop`); only a full channel is waited
    /// on with one.
    async fn decide_batched(
        &self,
        call: WindowCall<'_>,
        key: &Arc<str>,
        give_up: Instant,
    ) -> Result<i64, StoreError> {
        let deadline = self.inner.options.deadline;
        let WindowCall {
            limit,
            window_us,
            now_us,
            registry,
            ..
        } = call;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            key: Arc::clone(key),
            limit,
            window_us,
            registry: registry.cloned(),
            now_us,
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
                self.succeeded();
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
    time: Arc<RedisTime>,
) {
    let mut buffer = Vec::with_capacity(MAX_BATCH);
    let mut batch = Batch::default();
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
            batch.add(pending);
        }
        batch.index.clear();
        let groups = &mut batch.groups;
        if groups.len() == 1 {
            // The common case under load (one hot key): no task to spawn.
            if let Some(group) = groups.pop() {
                run_group(group, conn.clone(), deadline, &metrics, &time).await;
            }
            continue;
        }
        let mut calls = tokio::task::JoinSet::new();
        for group in groups.drain(..) {
            let conn = conn.clone();
            let metrics = Arc::clone(&metrics);
            let time = Arc::clone(&time);
            calls.spawn(async move { run_group(group, conn, deadline, &metrics, &time).await });
        }
        while calls.join_next().await.is_some() {}
    }
}

/// What a group is found by: its key, shape and time.
type GroupKey = (Arc<str>, u32, u64, Option<u64>);

/// The groups of one batch, and their index by [`GroupKey`] (built only when a batch has
/// several keys).
#[derive(Default)]
struct Batch {
    groups: Vec<Group>,
    index: HashMap<GroupKey, usize>,
}

impl Batch {
    /// Adds `pending` to its group, or to a new one.
    fn add(&mut self, pending: Pending) {
        let groups = &mut self.groups;
        let key_of =
            |key: &Arc<str>, limit, window_us, now_us| (Arc::clone(key), limit, window_us, now_us);
        let at = match groups.last() {
            Some(last) if last.takes(&pending) => Some(groups.len() - 1),
            _ if groups.len() < 4 => groups.iter().position(|group| group.takes(&pending)),
            _ => {
                if self.index.is_empty() {
                    for (at, g) in groups.iter().enumerate() {
                        let key = key_of(&g.key, g.limit, g.window_us, g.now_us);
                        self.index.insert(key, at);
                    }
                }
                let p = &pending;
                let key = key_of(&p.key, p.limit, p.window_us, p.now_us);
                self.index.get(&key).copied()
            }
        };
        if let Some(at) = at {
            let group = &mut groups[at];
            group.give_up = group.give_up.min(pending.give_up);
            group.replies.push(pending.reply);
            return;
        }
        if !self.index.is_empty() {
            let p = &pending;
            let key = key_of(&p.key, p.limit, p.window_us, p.now_us);
            self.index.insert(key, groups.len());
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

/// One script call deciding every request of `group`, answered to each caller.
async fn run_group(
    group: Group,
    mut conn: StoreConnection,
    deadline: Duration,
    metrics: &StoreMetrics,
    time: &RedisTime,
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
    let invocation = WindowCall {
        key: &key,
        limit,
        window_us,
        now_us,
        // The earliest deadline of the group: a batch that reaches Redis later counts
        // nothing (its callers asked within one round trip of each other).
        deadline: match now_us {
            Some(_) => String::new(),
            None => time.deadline_arg(give_up),
        },
        count: replies.len(),
        registry: registry.as_ref(),
    }
    .invocation();
    let result = send_group(invocation, &mut conn, replies.len(), give_up, &key, metrics)
        .await
        .map_err(|err| match err {
            StoreError::Timeout(_) => StoreError::Timeout(deadline),
            other => other,
        });
    answer_group(replies, result, deadline, metrics);
}

/// Sends a group's call, within `give_up`: the answer for each of its `count` decisions.
async fn send_group(
    invocation: redis::ScriptInvocation<'_>,
    conn: &mut StoreConnection,
    count: usize,
    give_up: Instant,
    key: &str,
    metrics: &StoreMetrics,
) -> Result<Vec<i64>, StoreError> {
    // One decision answers a bare integer, several an array (see window.lua).
    let sent = Instant::now();
    match tokio::time::timeout_at(give_up, async {
        if count == 1 {
            invocation
                .invoke_async::<i64>(conn)
                .await
                .map(|wait| vec![wait])
        } else {
            invocation.invoke_async::<Vec<i64>>(conn).await
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
            Err(StoreError::from_redis(&e, key))
        }
        Err(_) => Err(StoreError::Timeout(Duration::ZERO)),
    }
}

/// Answers each caller of a group from the call's `result`.
fn answer_group(
    replies: Vec<oneshot::Sender<Result<i64, StoreError>>>,
    result: Result<Vec<i64>, StoreError>,
    deadline: Duration,
    metrics: &StoreMetrics,
) {
    match result {
        Ok(values) if values.first() == Some(&LATE) => {
            for reply in replies {
                let _ = reply.send(Err(StoreError::Timeout(deadline)));
            }
        }
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
