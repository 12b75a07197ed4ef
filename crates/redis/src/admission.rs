//! [`RedisAdmission`]: core's front door on the Redis stages, so that every replica of a
//! service shares one rate window, one queue and one set of job slots.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use backstop_core::clock::Clock;
use backstop_core::jobs::{
    self as counters, JobPermit, JobSlots, Priority, QueueGate, QueueTicket,
};
use backstop_core::resources::{ResourceGate, ResourceProbe, Sampler};
use backstop_core::{
    ConfigError, Decision, FrontDoor, Limits, Metrics, OverloadReason, Quota, Refusal,
    RequestClass, WaitReason,
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
/// As `Admission`: shadow mode (`limits.shadow`: refusals counted as shadowed and let
/// through; the queue then counts up to core's `MAX_QUEUE`), live
/// [`reconfigure`](Self::reconfigure), and a client refused by the shared window
/// (other requests took its last places after the peek) is not charged in its own (its
/// admission there is given back). Differences: a client's window is a Redis key that
/// expires when idle, bounded only with [`with_max_keys`](Self::with_max_keys); a
/// rate limited refusal Redis gave is kept until its `retry_after`, so that asking again
/// before then is refused without a round trip (the refusal cache, dropped on
/// `reconfigure`).
///
/// It counts into core's [`Metrics`] ([`metrics`](Self::metrics)), so that it exports
/// the same families as `Admission`. Its queue and job gauges are this replica's share:
/// the places and slots it holds now (summed over the replicas, the shared ones, which
/// cost a round trip to read: [`RedisQueueGate::len`], [`RedisJobSlots::active`]).
pub struct RedisAdmission {
    store: RedisStore,
    window: RedisWindow,
    per_key: Option<RedisKeyedWindow>,
    name: String,
    queue: RedisQueueGate,
    slots: RedisJobSlots,
    gate: Arc<ResourceGate<Arc<dyn Clock>>>,
    /// The limits in force ([`reconfigure`](Self::reconfigure)).
    limits: ArcSwap<Limits>,
    /// Shadow mode: refusals are counted and let through (`limits.shadow`).
    shadow: AtomicBool,
    /// This replica's places and slots, counted as `Admission` counts its own: what the
    /// queue and job gauges of `metrics` read.
    held: (QueueGate, JobSlots),
    metrics: Arc<Metrics<Arc<dyn Clock>>>,
}

/// A place in the shared queue, held until its job starts or it is dropped. One pointer
/// wide, so that a layer can hand it over through a lock-free cell.
#[must_use = "dropping a ticket gives its queue place back"]
pub struct RedisTicket(Box<Ticket>);

struct Ticket {
    state: TicketState,
    /// The place in this replica's count; `None` when the count was full (only a replica
    /// holding places whose leases were lost can hold more than the shared bound).
    counted: Option<QueueTicket>,
}

enum TicketState {
    Held(RedisQueueTicket),
    /// The lease ran out while this replica held it (it stalled longer than the lease):
    /// the place is gone, and the job starts on a slot of its own.
    Lost,
}

impl RedisTicket {
    /// The shared ticket, unless its lease was lost.
    pub fn get(&self) -> Option<&RedisQueueTicket> {
        match &self.0.state {
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
        // Detached, the place is no longer this replica's: its count goes with the ticket.
        let Ticket { state, counted } = *self.0;
        match state {
            TicketState::Lost => Err(DetachError::Lost),
            TicketState::Held(ticket) => ticket.detach().await.map_err(|err| match err {
                DetachError::StoreUnavailable(back, cause) => {
                    let state = TicketState::Held(back);
                    let back = RedisTicket(Box::new(Ticket { state, counted }));
                    DetachError::StoreUnavailable(back, cause)
                }
                _ => DetachError::Lost,
            }),
        }
    }
}

impl fmt::Debug for RedisTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.state {
            TicketState::Held(ticket) => f.debug_tuple("RedisTicket").field(ticket).finish(),
            TicketState::Lost => f.write_str("RedisTicket(lost)"),
        }
    }
}

/// A running job's slot in the shared set, held (and renewed) until dropped: a
/// [`RedisJobPermit`] (it derefs to one) that also holds the slot's place in this
/// replica's job gauges.
#[must_use = "dropping a permit frees its job slot"]
pub struct RedisPermit {
    shared: RedisJobPermit,
    /// The slot in this replica's count, held for its drop; `None` as for
    /// [`RedisTicket`]'s.
    _counted: Option<JobPermit>,
}

/// The shared slot: [`RedisJobPermit`]'s lease, holder and watch.
impl std::ops::Deref for RedisPermit {
    type Target = RedisJobPermit;

    fn deref(&self) -> &RedisJobPermit {
        &self.shared
    }
}

impl fmt::Debug for RedisPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisPermit").field(&self.shared).finish()
    }
}

impl RedisAdmission {
    /// A front door named `name` (the Redis keys' name: replicas sharing limits use the
    /// same one) with `limits` (the same configuration as `Admission`'s), queue places
    /// and slots leased for [`DEFAULT_LEASE`] (at least three store deadlines).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `limits` as [`Limits::validate`], `rate.limit`
    /// above [`MAX_REDIS_LIMIT`](crate::MAX_REDIS_LIMIT), `name`,
    /// `failure_policy.share`.
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
        let window =
            RedisWindow::new(store, name, limits.rate.quota()?).map_err(|e| prefixed("rate", e))?;
        let config = GateConfig {
            bounds: limits.job_bounds(),
            lease,
            max_wait: limits.queue.max_wait,
        };
        let (queue, slots) = jobs::counters_with(store, name, config)?;
        let gate = Arc::new(ResourceGate::new(&limits.resources, fallback_clock(store))?);
        // This replica's share, timed on the gate's clock: its jobs' queue waits and run
        // times, as core's door times its own.
        let held = counters::counters_with_times(limits.job_bounds(), {
            let gate = Arc::clone(&gate);
            move || gate.clock().now_ns()
        })?;
        let metrics = Metrics::new(held.0.clone(), held.1.clone(), Arc::clone(&gate));
        metrics.set_rate_limit(limits.rate.quota()?);
        Ok(RedisAdmission {
            store: store.clone(),
            window,
            per_key: None,
            name: name.to_owned(),
            queue,
            slots,
            gate,
            shadow: AtomicBool::new(limits.shadow),
            limits: ArcSwap::from_pointee(limits),
            held,
            metrics: Arc::new(metrics),
        })
    }

    /// Adds the per-client stage: each client key may have `quota`, across every
    /// replica (as `Admission::with_per_key`, without its bound on tracked clients: an
    /// idle client's Redis key expires).
    ///
    /// # Errors
    ///
    /// As [`RedisKeyedWindow::new`], fields named `per_client.*`.
    pub fn with_per_key(mut self, quota: Quota) -> Result<Self, ConfigError> {
        let keyed = RedisKeyedWindow::new(&self.store, &self.name, quota)
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
        self.limits.load().queue.retry_after_hint
    }

    /// Applies new limits at once, as `Admission::reconfigure`: the shared window's
    /// limit and window (its history stays in Redis, see
    /// [`RedisWindow::reconfigure`]), the queue and job bounds (held places and slots are
    /// kept), detached tickets' `max_wait`, this replica's resource gate, shadow mode and
    /// the queue's retry hint. Every replica sharing the name should apply the same
    /// limits: each decision is judged by its own replica's.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); on error nothing changes.
    pub fn reconfigure(&self, limits: Limits) -> Result<(), ConfigError> {
        limits.validate()?;
        let quota = limits.rate.quota()?;
        crate::window::check_quota(quota).map_err(|e| prefixed("rate", e))?;
        // Everything below is checked above: no change fails half-way.
        self.window
            .reconfigure(quota)
            .map_err(|e| prefixed("rate", e))?;
        self.metrics.set_rate_limit(quota);
        self.queue.set_bounds(limits.job_bounds())?;
        self.queue.set_max_wait(limits.queue.max_wait)?;
        self.held.0.set_bounds(limits.job_bounds())?;
        self.gate.reconfigure(&limits.resources)?;
        // Relaxed: a lone flag; a request racing the change is judged either way.
        self.shadow.store(limits.shadow, Ordering::Relaxed);
        self.limits.store(Arc::new(limits));
        Ok(())
    }

    /// The decision, counted.
    async fn decide(&self, key: Option<&str>, class: RequestClass) -> Decision<RedisTicket> {
        let decision = match class {
            RequestClass::Exempt => Decision::Exempt,
            RequestClass::Normal => self.stages(key, Priority::Normal).await,
            RequestClass::Critical => self.stages(key, Priority::Critical).await,
        };
        self.metrics.record(&decision);
        decision
    }

    async fn stages(&self, key: Option<&str>, priority: Priority) -> Decision<RedisTicket> {
        // One deadline for the whole admission: every call below gives up at it.
        let give_up = self.store.give_up();
        // Relaxed: see `reconfigure`.
        let shadow = self.shadow.load(Ordering::Relaxed);
        match self.rate_stages(key, give_up, shadow).await {
            Ok(()) => self.queue_stage(priority, give_up, shadow).await,
            Err(refusal) => Decision::Refused(refusal),
        }
    }

    /// A stage refused: in shadow mode the refusal is counted as shadowed and the request
    /// goes on (`Ok`); otherwise it is returned (and counted with the decision).
    fn refuse_or_shadow(&self, refusal: Refusal, shadow: bool) -> Result<(), Refusal> {
        if shadow {
            self.metrics.record_shadowed(refusal);
            Ok(())
        } else {
            Err(refusal)
        }
    }

    /// The rate stages, in `Admission`'s order, within `give_up`.
    async fn rate_stages(
        &self,
        key: Option<&str>,
        give_up: Instant,
        shadow: bool,
    ) -> Result<(), Refusal> {
        let options = &self.store.inner.options;
        let mut global_shadowed = false;
        if let (Some(keyed), Some(key)) = (&self.per_key, key) {
            // 1. Would the shared window take it? Asked without charging it (a refusal
            //    the cache holds costs no round trip). Asked even when the client's own
            //    refusal is cached: which stage refuses decides the `retry_after`.
            let peeked = match self.window.peek_until(give_up).await {
                Ok(verdict) => verdict,
                Err(_) if options.failure_policy == FailurePolicy::FailClosed => {
                    Err(store_unavailable(options.unavailable_retry_hint))
                }
                // local_fallback: the shared window's fallback decides in step 3.
                Err(_) => Ok(()),
            };
            if let Err(refusal) = peeked {
                self.refuse_or_shadow(refusal, shadow)?;
                global_shadowed = true;
            }
            // 2. The client's own window, charged.
            if let Err(refusal) = keyed.acquire_until(key, give_up).await {
                self.refuse_or_shadow(refusal, shadow)?;
            } else if !global_shadowed {
                // 3. The shared window, charged. Refused here only when other requests
                //    took its last places since step 1: the client's admission is then
                //    given back, so that it is charged only for what passed.
                if let Err(refusal) = self.window.acquire_until(give_up).await {
                    if !shadow {
                        let _ = keyed.refund(key, give_up).await;
                    }
                    return self.refuse_or_shadow(refusal, shadow);
                }
                return Ok(());
            }
        }
        // 3. The shared window, charged (shadowed in step 1 already: counted once).
        match self.window.acquire_until(give_up).await {
            Err(refusal) if !global_shadowed => self.refuse_or_shadow(refusal, shadow),
            _ => Ok(()),
        }
    }

    /// The shared queue, and the place in this replica's count, within `give_up`. In
    /// shadow mode a full queue (or Redis failing) is counted as shadowed and the request
    /// takes a place below core's `MAX_QUEUE` instead, or none at all (its job then
    /// starts on a slot of its own).
    async fn queue_stage(
        &self,
        priority: Priority,
        give_up: Instant,
        shadow: bool,
    ) -> Decision<RedisTicket> {
        let refusal = match self.queue.try_enter_until(priority, give_up).await {
            Ok(ticket) => return Decision::Admitted(self.ticket(TicketState::Held(ticket))),
            Err(Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                ..
            }) => Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                retry_after_hint: self.retry_after_hint(),
            },
            Err(refusal) => refusal,
        };
        if let Err(refusal) = self.refuse_or_shadow(refusal, shadow) {
            return Decision::Refused(refusal);
        }
        match self
            .queue
            .try_enter_below(counters::MAX_QUEUE, give_up)
            .await
        {
            Ok(ticket) => Decision::Admitted(self.ticket(TicketState::Held(ticket))),
            Err(_) => Decision::Admitted(self.ticket(TicketState::Lost)),
        }
    }

    /// A ticket of this replica, counted.
    fn ticket(&self, state: TicketState) -> RedisTicket {
        RedisTicket(Box::new(Ticket {
            state,
            counted: self.held.0.try_enter_as(Priority::Critical).ok(),
        }))
    }

    async fn start(&self, ticket: RedisTicket) -> Result<RedisPermit, (RedisTicket, WaitReason)> {
        if let Err(shortage) = self.gate.check() {
            // Relaxed: see `reconfigure`.
            if !self.shadow.load(Ordering::Relaxed) {
                return Err(self.wait(ticket, WaitReason::Resources(shortage)));
            }
            self.metrics.record_shadowed_wait(shortage);
        }
        let Ticket { state, counted } = *ticket.0;
        let held = match state {
            TicketState::Held(held) => held,
            TicketState::Lost => return self.start_detached(counted).await,
        };
        let (back, reason) = match self.slots.try_start(held).await {
            Ok(permit) => return Ok(self.permit(permit, counted)),
            Err(StartError::NoFreeSlot(back)) => (back, WaitReason::NoFreeSlot),
            Err(StartError::StoreUnavailable(back, _)) => (back, WaitReason::StoreUnavailable),
            // The place expired: the job was admitted, so it still runs, on a slot of
            // its own.
            Err(StartError::LeaseLost) => return self.start_detached(counted).await,
        };
        let ticket = RedisTicket(Box::new(Ticket {
            state: TicketState::Held(back),
            counted,
        }));
        Err(self.wait(ticket, reason))
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
        let claimed = self.queue.claim(token).await?;
        Ok(self.ticket(TicketState::Held(claimed)))
    }

    /// A slot for a job whose queue place was lost.
    async fn start_detached(
        &self,
        counted: Option<QueueTicket>,
    ) -> Result<RedisPermit, (RedisTicket, WaitReason)> {
        match self.slots.try_acquire().await {
            Ok(permit) => Ok(self.permit(permit, counted)),
            Err(reason) => {
                let state = TicketState::Lost;
                Err(self.wait(RedisTicket(Box::new(Ticket { state, counted })), reason))
            }
        }
    }

    /// A permit of this replica: the ticket's counted place becomes a counted slot.
    fn permit(&self, shared: RedisJobPermit, counted: Option<QueueTicket>) -> RedisPermit {
        let slots = &self.held.1;
        let counted = match counted {
            Some(place) => slots.try_start(place).ok(),
            None => slots.try_acquire().ok(),
        };
        RedisPermit {
            shared,
            _counted: counted,
        }
    }

    fn wait(&self, ticket: RedisTicket, reason: WaitReason) -> (RedisTicket, WaitReason) {
        self.metrics.record_wait(reason);
        (ticket, reason)
    }

    /// Starts a thread that samples `probe` into this replica's resource gate every
    /// `resources.sample_interval`. Keep the [`Sampler`]: dropping it stops the thread.
    ///
    /// # Errors
    ///
    /// The OS error when the thread cannot be spawned.
    pub fn spawn_sampler<P: ResourceProbe + 'static>(&self, probe: P) -> std::io::Result<Sampler> {
        let interval = self.limits.load().resources.sample_interval;
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

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        Limits::clone(&self.limits.load())
    }

    /// This replica's counters: its decisions, its job waits, the places and slots it
    /// holds and its resource gate, as core's `Admission::metrics` (register them for a
    /// `/metrics` endpoint with `Metrics::register`).
    pub fn metrics(&self) -> &Arc<Metrics<Arc<dyn Clock>>> {
        &self.metrics
    }
}

/// `err` with its field under `section` (`rate.limit`), unless it is about the name.
fn prefixed(section: &str, err: ConfigError) -> ConfigError {
    if err.field() == "name" || err.field().starts_with("failure_policy") {
        return err;
    }
    ConfigError::new(format!("{section}.{}", err.field()), err.reason())
}

impl FrontDoor for RedisAdmission {
    type Ticket = RedisTicket;
    type Permit = RedisPermit;

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
    ) -> impl Future<Output = Result<RedisPermit, (RedisTicket, WaitReason)>> + Send {
        self.start(ticket)
    }

    fn rate_limit(&self) -> Quota {
        self.window.quota()
    }

    fn client_rate_limit(&self, _key: &str) -> Option<Quota> {
        self.per_key.as_ref().map(RedisKeyedWindow::quota)
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
