//! [`RedisAdmission`]: core's front door on the Redis stages, so that every replica of a
//! service shares one rate window, one queue and one set of job slots.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backstop_core::clock::Clock;
use backstop_core::jobs::Priority;
use backstop_core::resources::{ResourceGate, ResourceProbe, Sampler};
use backstop_core::{
    ConfigError, Decision, FrontDoor, Limits, OverloadReason, RateScope, Refusal, RequestClass,
    WaitReason,
};

use crate::StartError;
use crate::detach::{ClaimError, DetachError};
use crate::jobs::{
    self, GateConfig, RedisJobPermit, RedisJobSlots, RedisQueueGate, RedisQueueTicket,
};
use crate::options::FailurePolicy;
use crate::refusal::store_unavailable;
use crate::store::RedisStore;
use crate::window::{RedisKeyedWindow, RedisWindow, fallback_clock};

/// The lease of queue places and job slots when none is given: long enough that a
/// replica's renewals (every third of it) ride out a short Redis hiccup, short enough
/// that a dead replica's places come back soon.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The front door of a service whose replicas share their limits through one Redis:
/// [`backstop_core::Admission`]'s decisions, in the same order and with the same
/// [`Refusal`]s, on [`RedisWindow`], [`RedisKeyedWindow`], [`RedisQueueGate`] and
/// [`RedisJobSlots`].
///
/// Per request ([`FrontDoor::admit`]):
///
/// 1. an exempt request is only counted;
/// 2. with a per-client stage ([`with_per_key`](Self::with_per_key)) and a client key:
///    the shared window is asked **without charging it** ([`RedisWindow::peek_checked`]),
///    then the client's window is charged (429 `per_client`: the shared one is not
///    charged), then the shared one (429 `global` only when other requests took its last
///    places meanwhile);
/// 3. without one: the shared window, charged;
/// 4. the shared queue (503 `queue_full`; critical requests may use the reserve).
///
/// When Redis fails or passes the store's deadline, the store's
/// [`FailurePolicy`] answers: 503 `store_unavailable` (`fail_closed`), or this replica's
/// share of each window (`local_fallback`; the queue and slots fail closed either way).
/// Under `local_fallback` a failed peek lets the request on to the client's window, so
/// during an outage a request the shared fallback refuses may have used a place in its
/// client's fallback window.
///
/// Per job ([`FrontDoor::start_job`]): this replica's own [`ResourceGate`] (memory and
/// disk are each machine's), then a shared slot, the ticket becoming a permit in one
/// script.
///
/// Differences from `Admission`: no shadow mode (refused at construction); a client's
/// window is a Redis key that expires when idle, so there is no bound on tracked clients
/// and no `too_many_keys` (except from the `local_fallback` window); limits are fixed at
/// construction (build another `RedisAdmission` to change them: the windows keep their
/// history in Redis).
///
/// Its counters are its own ([`AdmissionCounts`], the same names as core's
/// `MetricsSnapshot`): core's `Metrics` also carries live gauges of a local queue and
/// local slots, which a store-backed door does not have (the shared ones cost a round
/// trip to read: [`RedisQueueGate::len`], [`RedisJobSlots::active`]).
pub struct RedisAdmission {
    store: RedisStore,
    window: RedisWindow,
    per_key: Option<RedisKeyedWindow>,
    name: String,
    queue: RedisQueueGate,
    slots: RedisJobSlots,
    gate: Arc<ResourceGate<Arc<dyn Clock>>>,
    limits: Limits,
    counts: Arc<Counts>,
}

/// A place in the shared queue, held until its job starts or it is dropped. One pointer
/// wide, so that a layer can hand it over through a lock-free cell.
#[must_use = "dropping a ticket gives its queue place back"]
pub struct RedisTicket(Box<TicketState>);

enum TicketState {
    Held(RedisQueueTicket),
    /// The lease ran out while this replica held it (it stalled longer than the lease):
    /// the place is gone, and the job starts on a slot of its own.
    Lost,
}

impl RedisTicket {
    /// The shared ticket, unless its lease was lost.
    pub fn get(&self) -> Option<&RedisQueueTicket> {
        match &*self.0 {
            TicketState::Held(ticket) => Some(ticket),
            TicketState::Lost => None,
        }
    }

    /// Hands the ticket's queue place to another process: a token (an ASCII string, safe
    /// in JSON) that [`RedisAdmission::claim`] on a door of the same name, in any
    /// process, turns back into a ticket. The place is kept, unrenewed, for at most the
    /// limits' `queue.max_wait`; nobody claims it by then, it returns to the queue and
    /// the store counts it (`detached_unclaimed`). See [`RedisQueueTicket::detach`].
    ///
    /// # Errors
    ///
    /// [`DetachError::Lost`] when the place is gone (its lease was lost);
    /// [`DetachError::StoreUnavailable`], with the ticket back, when Redis failed.
    pub async fn detach(self) -> Result<String, DetachError<RedisTicket>> {
        match *self.0 {
            TicketState::Lost => Err(DetachError::Lost),
            TicketState::Held(ticket) => ticket.detach().await.map_err(|err| match err {
                DetachError::StoreUnavailable(back, cause) => {
                    DetachError::StoreUnavailable(RedisTicket::held(back), cause)
                }
                _ => DetachError::Lost,
            }),
        }
    }
}

impl fmt::Debug for RedisTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            TicketState::Held(ticket) => f.debug_tuple("RedisTicket").field(ticket).finish(),
            TicketState::Lost => f.write_str("RedisTicket(lost)"),
        }
    }
}

impl RedisAdmission {
    /// A front door named `name` (the Redis keys' name: replicas sharing limits use the
    /// same one) with `limits` (the same configuration as `Admission`'s), queue places
    /// and slots leased for [`DEFAULT_LEASE`] (at least three store deadlines).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `limits` as [`Limits::validate`], `shadow`
    /// (not supported), `rate.limit` above [`MAX_REDIS_LIMIT`](crate::MAX_REDIS_LIMIT),
    /// `name`, `failure_policy.share`.
    pub fn new(store: &RedisStore, name: &str, limits: Limits) -> Result<Self, ConfigError> {
        let lease = DEFAULT_LEASE.max(store.inner.options.deadline.saturating_mul(3));
        Self::with_lease(store, name, limits, lease)
    }

    /// As [`new`](Self::new), with queue places and slots leased for `lease`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); `lease` as [`jobs::counters`].
    pub fn with_lease(
        store: &RedisStore,
        name: &str,
        limits: Limits,
        lease: Duration,
    ) -> Result<Self, ConfigError> {
        limits.validate()?;
        if limits.shadow {
            return Err(ConfigError::new(
                "shadow",
                "shadow mode is not supported by the Redis front door",
            ));
        }
        let window = RedisWindow::new(store, name, limits.rate.limit, limits.rate.window())
            .map_err(|e| prefixed("rate", e))?;
        let config = GateConfig {
            bounds: limits.job_bounds(),
            lease,
            max_wait: limits.queue.max_wait,
        };
        let (queue, slots) = jobs::counters_with(store, name, config)?;
        let gate = Arc::new(ResourceGate::new(&limits.resources, fallback_clock(store))?);
        Ok(RedisAdmission {
            store: store.clone(),
            window,
            per_key: None,
            name: name.to_owned(),
            queue,
            slots,
            gate,
            limits,
            counts: Arc::new(Counts::default()),
        })
    }

    /// Adds the per-client stage: each client key may have `limit` admissions per
    /// `window`, across every replica (as `Admission::with_per_key`, without its bound on
    /// tracked clients: an idle client's Redis key expires).
    ///
    /// # Errors
    ///
    /// As [`RedisKeyedWindow::new`], fields named `per_client.*`.
    pub fn with_per_key(mut self, limit: u32, window: Duration) -> Result<Self, ConfigError> {
        let keyed = RedisKeyedWindow::new(&self.store, &self.name, limit, window)
            .map_err(|e| prefixed("per_client", e))?;
        self.per_key = Some(keyed);
        Ok(self)
    }

    /// Bounds the per-client stage to `max_keys` clients with a live key, as
    /// `Admission::with_per_key`'s `max_keys`: a new client beyond it is refused with
    /// 503 `too_many_keys` ([`RedisKeyedWindow::with_max_keys`], which says what it costs
    /// on a cluster).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `per_client.max_keys`, or when there is no per-client
    /// stage.
    pub fn with_max_keys(mut self, max_keys: u32) -> Result<Self, ConfigError> {
        let Some(keyed) = self.per_key.take() else {
            return Err(ConfigError::new(
                "per_client.max_keys",
                "needs a per-client stage (with_per_key) first",
            ));
        };
        self.per_key = Some(
            keyed
                .with_max_keys(max_keys)
                .map_err(|e| prefixed("per_client", e))?,
        );
        Ok(self)
    }

    fn retry_after_hint(&self) -> Duration {
        Duration::from_millis(self.limits.queue.retry_after_hint_ms)
    }

    fn refused(&self, refusal: Refusal) -> Decision<RedisTicket> {
        self.counts.refused(refusal);
        Decision::Refused(refusal)
    }

    async fn decide(&self, key: Option<&str>, class: RequestClass) -> Decision<RedisTicket> {
        let priority = match class {
            RequestClass::Exempt => {
                self.counts.exempt.fetch_add(1, Ordering::Relaxed);
                return Decision::Exempt;
            }
            RequestClass::Normal => Priority::Normal,
            RequestClass::Critical => Priority::Critical,
        };
        if let (Some(keyed), Some(key)) = (&self.per_key, key) {
            // 1. Would the shared window take it? Asked without charging it.
            match self.window.peek_checked().await {
                Ok(Ok(())) => {}
                Ok(Err(refusal)) => return self.refused(refusal),
                Err(_) => {
                    if self.store.inner.options.failure_policy == FailurePolicy::FailClosed {
                        let hint = self.store.inner.options.unavailable_retry_hint;
                        return self.refused(store_unavailable(hint));
                    }
                    // local_fallback: the shared window's fallback decides in step 3.
                }
            }
            // 2. The client's own window, charged.
            if let Err(refusal) = keyed.try_acquire(key).await {
                return self.refused(refusal);
            }
        }
        // 3. The shared window, charged.
        if let Err(refusal) = self.window.try_acquire().await {
            return self.refused(refusal);
        }
        // 4. The shared queue.
        match self.queue.try_enter_as(priority).await {
            Ok(ticket) => {
                self.counts.admitted.fetch_add(1, Ordering::Relaxed);
                Decision::Admitted(RedisTicket(Box::new(TicketState::Held(ticket))))
            }
            Err(Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                ..
            }) => self.refused(Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                retry_after_hint: self.retry_after_hint(),
            }),
            Err(refusal) => self.refused(refusal),
        }
    }

    async fn start(
        &self,
        ticket: RedisTicket,
    ) -> Result<RedisJobPermit, (RedisTicket, WaitReason)> {
        if let Err(shortage) = self.gate.check() {
            return Err(self.wait(ticket, WaitReason::Resources(shortage)));
        }
        let held = match *ticket.0 {
            TicketState::Held(held) => held,
            TicketState::Lost => return self.start_detached().await,
        };
        match self.slots.try_start(held).await {
            Ok(permit) => Ok(permit),
            Err(StartError::NoFreeSlot(back)) => {
                Err(self.wait(RedisTicket::held(back), WaitReason::NoFreeSlot))
            }
            Err(StartError::StoreUnavailable(back, _)) => {
                Err(self.wait(RedisTicket::held(back), WaitReason::StoreUnavailable))
            }
            // The place expired: the job was admitted, so it still runs, on a slot of
            // its own.
            Err(StartError::LeaseLost) => self.start_detached().await,
        }
    }

    /// Takes the queue place a [`RedisTicket::detach`] token names (detached by a door
    /// of the same name, in this process or another): a ticket of this process from now
    /// on, renewed here, which [`FrontDoor::start_job`] turns into a permit as any other.
    ///
    /// # Errors
    ///
    /// A [`ClaimError`]: malformed, of another name, expired (`queue.max_wait` passed),
    /// not held (claimed already, or forged), or Redis failed.
    pub async fn claim(&self, token: &str) -> Result<RedisTicket, ClaimError> {
        self.queue.claim(token).await.map(RedisTicket::held)
    }

    /// A slot for a job whose queue place was lost.
    async fn start_detached(&self) -> Result<RedisJobPermit, (RedisTicket, WaitReason)> {
        self.slots
            .try_acquire()
            .await
            .map_err(|reason| self.wait(RedisTicket::lost(), reason))
    }

    fn wait(&self, ticket: RedisTicket, reason: WaitReason) -> (RedisTicket, WaitReason) {
        self.counts.waited(reason);
        (ticket, reason)
    }

    /// Starts a thread that samples `probe` into this replica's resource gate every
    /// `resources.sample_interval_ms`. Keep the [`Sampler`]: dropping it stops the thread.
    ///
    /// # Errors
    ///
    /// The OS error when the thread cannot be spawned.
    pub fn spawn_sampler<P: ResourceProbe + 'static>(&self, probe: P) -> std::io::Result<Sampler> {
        let interval = self.limits.resources.sample_interval();
        Sampler::spawn(Arc::clone(&self.gate), probe, interval)
    }

    /// This replica's resource gate.
    pub fn resource_gate(&self) -> &Arc<ResourceGate<Arc<dyn Clock>>> {
        &self.gate
    }

    /// The shared queue (its length is one round trip away: [`RedisQueueGate::len`]).
    pub fn queue(&self) -> &RedisQueueGate {
        &self.queue
    }

    /// The shared job slots.
    pub fn slots(&self) -> &RedisJobSlots {
        &self.slots
    }

    /// The store, and through it the store's own counters (errors, timeouts, fallback).
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// The limits it was built with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// This replica's decisions so far.
    pub fn counts(&self) -> AdmissionCounts {
        self.counts.snapshot()
    }
}

/// `err` with its field under `section` (`rate.limit`), unless it is about the name.
fn prefixed(section: &str, err: ConfigError) -> ConfigError {
    if err.field() == "name" || err.field().starts_with("failure_policy") {
        return err;
    }
    ConfigError::new(format!("{section}.{}", err.field()), err.reason())
}

impl RedisTicket {
    fn held(ticket: RedisQueueTicket) -> Self {
        RedisTicket(Box::new(TicketState::Held(ticket)))
    }

    fn lost() -> Self {
        RedisTicket(Box::new(TicketState::Lost))
    }
}

impl FrontDoor for RedisAdmission {
    type Ticket = RedisTicket;
    type Permit = RedisJobPermit;

    fn admit(
        &self,
        key: Option<&str>,
        class: RequestClass,
    ) -> impl Future<Output = Decision<RedisTicket>> + Send {
        self.decide(key, class)
    }

    fn start_job(
        &self,
        ticket: RedisTicket,
    ) -> impl Future<Output = Result<RedisJobPermit, (RedisTicket, WaitReason)>> + Send {
        self.start(ticket)
    }

    fn rate_limit(&self) -> (u32, Duration) {
        (self.window.limit(), self.window.window())
    }

    fn client_rate_limit(&self, _key: &str) -> Option<(u32, Duration)> {
        self.per_key
            .as_ref()
            .map(|keyed| (keyed.limit(), keyed.window()))
    }
}

impl fmt::Debug for RedisAdmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdmission")
            .field("window", &self.window)
            .field("per_key", &self.per_key)
            .field("queue", &self.queue)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// Outcome counters. Relaxed everywhere: independent statistics read for reporting; no
/// other memory depends on them.
#[derive(Default)]
struct Counts {
    admitted: AtomicU64,
    exempt: AtomicU64,
    rate_limited: [AtomicU64; RateScope::ALL.len()],
    overloaded: [AtomicU64; OverloadReason::ALL.len()],
    waits: [AtomicU64; WAITS.len()],
}

/// Labels of `job_waits_total`, as core's.
const WAITS: [&str; 6] = [
    "no_free_slot",
    "low_memory",
    "low_disk",
    "memory_pressure",
    "stale",
    "store_unavailable",
];

impl Counts {
    fn refused(&self, refusal: Refusal) {
        match refusal {
            Refusal::RateLimited { scope, .. } => {
                let at = RateScope::ALL.iter().position(|s| *s == scope).unwrap_or(0);
                self.rate_limited[at].fetch_add(1, Ordering::Relaxed);
            }
            Refusal::Overloaded { reason, .. } => {
                let at = OverloadReason::ALL
                    .iter()
                    .position(|r| *r == reason)
                    .unwrap_or(0);
                self.overloaded[at].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn waited(&self, reason: WaitReason) {
        // An unknown name (a newer core) lands on the last label rather than panicking.
        let at = WAITS
            .iter()
            .position(|w| *w == reason.as_str())
            .unwrap_or(WAITS.len() - 1);
        self.waits[at].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> AdmissionCounts {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let by_scope: Vec<_> = RateScope::ALL
            .iter()
            .zip(&self.rate_limited)
            .map(|(s, c)| (s.as_str(), read(c)))
            .collect();
        AdmissionCounts {
            admitted_total: read(&self.admitted),
            exempt_total: read(&self.exempt),
            rate_limited_total: by_scope.iter().map(|(_, n)| n).sum(),
            rate_limited_by_scope_total: by_scope,
            overloaded_total: OverloadReason::ALL
                .iter()
                .zip(&self.overloaded)
                .map(|(r, c)| (r.as_str(), read(c)))
                .collect(),
            job_waits_total: WAITS
                .iter()
                .zip(&self.waits)
                .map(|(w, c)| (*w, read(c)))
                .collect(),
        }
    }
}

/// A [`RedisAdmission`]'s decisions so far, in this process: the same names and labels
/// as core's `MetricsSnapshot` (`backstop_admitted_total`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionCounts {
    /// Requests admitted (given a queue place).
    pub admitted_total: u64,
    /// Exempt requests, only counted.
    pub exempt_total: u64,
    /// 429s, either window.
    pub rate_limited_total: u64,
    /// 429s by window: `global`, `per_client`.
    pub rate_limited_by_scope_total: Vec<(&'static str, u64)>,
    /// 503s by reason: `queue_full`, `too_many_keys`, `store_unavailable`.
    pub overloaded_total: Vec<(&'static str, u64)>,
    /// Job starts that had to wait, by reason.
    pub job_waits_total: Vec<(&'static str, u64)>,
}
