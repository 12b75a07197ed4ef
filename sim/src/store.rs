//! `--store URL`: the replicas keep their limits in one Redis, each a
//! `backstop_redis::RedisAdmission` on one `RedisStore` that reads the simulator's
//! virtual clock (`RedisStore::connect_with_clock`).
//!
//! A run's keys carry a name of its own (`backstop-sim-<pid>-<time>-<n>`): runs sharing a
//! server never see each other's windows, queue or slots; the name is not in any output,
//! so the bytes out do not depend on it. The keys are deleted at the start (a name is
//! never reused, but a crashed run's leftovers are cleared all the same) and at the end
//! (under an injected clock the window keys have no TTL).

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backstop_core::clock::{Clock, ManualClock};
use backstop_core::resources::{GateState, ResourceReading};
use backstop_core::{Decision, FrontDoor, Quota, RequestClass, WaitReason};
use backstop_redis::{RedisAdmission, RedisPermit, RedisStore, RedisTicket, StoreOptions};

use crate::config::SimConfig;
use crate::error::SimError;
use crate::report::RunOutput;
use crate::service::{Executor, Service, SimDoor, simulated_limits};

/// The lease of every queue place and job slot. On the simulator's clock the store
/// renews nothing by itself: the simulator has the replicas renew their leases as
/// virtual time passes ([`RENEW_EVERY`]), so that a hold lasts as long as its job, as on
/// real time. Ten minutes keeps the renewals of a simulated day to a few thousand.
pub const LEASE: Duration = Duration::from_secs(600);

/// How often, in virtual time, the replicas renew: twice per renewal period (a third of
/// the lease), so that each renewal is sent at most a sixth of a lease late.
pub const RENEW_EVERY: Duration = Duration::from_secs(100);

/// Each store call's deadline: generous, since a replay needs every answer and a missed
/// deadline (503 `store_unavailable`) stops it.
const DEADLINE: Duration = Duration::from_secs(5);

/// Whether `url` names a Redis the simulator can connect to, without connecting; the
/// error never repeats the URL (it may hold a password).
///
/// # Errors
///
/// A one-line reason.
pub fn validate_url(url: &str) -> Result<(), String> {
    let scheme_ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(
            "--store: malformed URL: expected redis://HOST[:PORT][/DB] or redis+unix://PATH"
                .to_owned(),
        );
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("--store: malformed URL: {e}"))
}

/// Runs the door's futures on a current-thread tokio runtime (the store's connection
/// and its background tasks live there and run while the simulator waits).
pub(crate) struct Tokio<'r>(&'r tokio::runtime::Runtime);

impl Executor for Tokio<'_> {
    fn block_on<F: Future>(&mut self, future: F) -> Option<F::Output> {
        Some(self.0.block_on(future))
    }
}

/// One replica: a [`RedisAdmission`], and what the simulator needs to know that a
/// finished job's slot is free.
pub(crate) struct StoreReplica {
    door: RedisAdmission,
    store: RedisStore,
    slots_key: Arc<str>,
}

impl FrontDoor for StoreReplica {
    type Ticket = RedisTicket;
    type Permit = RedisPermit;

    fn admit(
        &self,
        key: Option<&str>,
        class: RequestClass,
    ) -> impl Future<Output = Decision<RedisTicket>> + Send {
        self.door.admit(key, class)
    }

    fn start_job(
        &self,
        ticket: RedisTicket,
    ) -> impl Future<Output = Result<RedisPermit, (RedisTicket, WaitReason)>> + Send {
        self.door.start_job(ticket)
    }

    fn rate_limit(&self) -> Quota {
        self.door.rate_limit()
    }

    fn client_rate_limit(&self, key: &str) -> Option<Quota> {
        self.door.client_rate_limit(key)
    }
}

impl SimDoor for StoreReplica {
    fn observe_at(&self, reading: ResourceReading, now_ns: u64) {
        self.door.resource_gate().observe_at(reading, now_ns);
    }

    fn gate_state_at(&self, now_ns: u64) -> GateState {
        self.door.resource_gate().state_at(now_ns)
    }

    /// A dropped permit frees its slot from a detached task, which may reach Redis after
    /// the next start. The simulator removes the holder itself first and waits for the
    /// answer, so that a start at the same virtual instant finds the slot free, as with
    /// the in-process door. Holder ids are never reused: the detached removal that
    /// follows finds nothing to remove.
    fn finish(&self, permit: RedisPermit) -> impl Future<Output = bool> {
        let holder = permit.holder().to_owned();
        drop(permit);
        let mut conn = self.store.connection();
        let key = Arc::clone(&self.slots_key);
        async move {
            let mut zrem = redis::cmd("ZREM");
            zrem.arg(&*key).arg(&holder);
            let removed = zrem.query_async::<u64>(&mut conn);
            matches!(tokio::time::timeout(DEADLINE, removed).await, Ok(Ok(_)))
        }
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(RENEW_EVERY)
    }

    /// Renews this replica's leases due at the virtual time (the store reads the
    /// simulator's clock): `RedisStore::renew_leases`. A lease lost in it (Redis did not
    /// answer) shows at the next start or finish.
    fn renew_at(&self, _now_ns: u64) -> impl Future<Output = bool> {
        let store = self.store.clone();
        async move {
            store.renew_leases().await;
            true
        }
    }
}

/// A name no other run uses, on this machine or another sharing the server.
fn run_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Relaxed: only uniqueness matters.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("backstop-sim-{}-{nanos:x}-{n}", std::process::id())
}

/// Deletes every key of run `name` (its windows, per-client windows, queue and slots;
/// see `crates/redis/README.md` for the key names). `name` holds no glob characters.
async fn delete_keys(store: &RedisStore, name: &str) -> redis::RedisResult<()> {
    let mut conn = store.connection();
    for pattern in [
        format!("{{backstop:{name}}}:*"),
        format!("{{backstop:w:{name}}}:*"),
        format!("{{backstop:kw:{}:{name}:*", name.len()),
    ] {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

fn store_error(what: &str, e: impl std::fmt::Display) -> SimError {
    SimError::Replicas(format!("--store: {what}: {e}"))
}

/// A run's hold on the store: the connection on its runtime, the virtual clock it
/// decides on, the run's name. [`close`](Self::close) deletes the run's keys.
pub(crate) struct StoreRun {
    runtime: tokio::runtime::Runtime,
    clock: ManualClock,
    store: RedisStore,
    name: String,
    config: SimConfig,
    replicas: NonZeroU32,
}

impl StoreRun {
    /// Connects to the store at `url` on a virtual clock and clears the run's keys.
    pub(crate) fn open(
        config: &SimConfig,
        url: &str,
        replicas: NonZeroU32,
    ) -> Result<Self, SimError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| store_error("starting the runtime", e))?;
        let clock = ManualClock::new();
        let options = StoreOptions {
            deadline: DEADLINE,
            connect_timeout: DEADLINE,
            ..StoreOptions::default()
        };
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let store = runtime
            .block_on(RedisStore::connect_with_clock(url, options, shared))
            .map_err(|e| store_error("connecting", e))?;
        let name = run_name();
        runtime
            .block_on(delete_keys(&store, &name))
            .map_err(|e| store_error("clearing the run's keys", e))?;
        Ok(StoreRun {
            runtime,
            clock,
            store,
            name,
            config: config.clone(),
            replicas,
        })
    }

    /// The replicas, each a `RedisAdmission` on the one store, on the virtual clock.
    pub(crate) fn service(&self) -> Result<Service<StoreReplica, Tokio<'_>>, SimError> {
        let limits = simulated_limits(&self.config.limits);
        let slots_key: Arc<str> = format!("{{backstop:{}}}:slots", self.name).into();
        let replicas = (0..self.replicas.get())
            .map(|_| {
                let mut door =
                    RedisAdmission::with_lease(&self.store, &self.name, limits.clone(), LEASE)?;
                if let Some(k) = &self.config.per_key {
                    door = door.with_per_key(k.quota()?)?;
                }
                Ok(StoreReplica {
                    door,
                    store: self.store.clone(),
                    slots_key: Arc::clone(&slots_key),
                })
            })
            .collect::<Result<Vec<_>, backstop_core::ConfigError>>()?;
        let exec = Tokio(&self.runtime);
        Ok(Service::with_replicas(self.clock.clone(), replicas, exec))
    }

    /// Deletes the run's keys whatever the run's outcome (tickets still held were
    /// dropped with the service; their releases, if they run at all, touch keys about
    /// to go), then gives the outcome.
    pub(crate) fn close(self, out: Result<RunOutput, SimError>) -> Result<RunOutput, SimError> {
        let cleared = self.runtime.block_on(delete_keys(&self.store, &self.name));
        let out = out?;
        cleared.map_err(|e| store_error("deleting the run's keys", e))?;
        Ok(out)
    }
}
