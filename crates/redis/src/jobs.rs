//! [`RedisQueueGate`] and [`RedisJobSlots`]: `QueueGate` / `JobSlots` shared by every
//! replica, every ticket and permit a lease ([`crate::lease`] states the rule).
//!
//! A queue place or a job slot is a member of a sorted set (holder id → lease end in
//! microseconds); every script prunes expired members before counting, so a replica
//! that dies holding places leaks them for at most the lease time. The queue, the slots
//! and the gate's epoch and fencing counter share a hash tag (`{backstop:<name>}:queue`,
//! `…:slots`, `…:gate`), so every script touches one slot (Redis Cluster-ready).
//!
//! A ticket can cross processes: [`RedisQueueTicket::detach`] turns it into a token (a
//! short ASCII string) that keeps its place, unrenewed, for at most `max_wait`;
//! [`RedisQueueGate::claim`] in any process on the same name takes the place back as an
//! ordinary ticket. Nobody claims it in time: the place returns to the queue and the
//! store's `detached_unclaimed` counter counts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use backstop_core::jobs::{JobBounds, Priority};
use backstop_core::{ConfigError, OverloadReason, WaitReason};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::detach::{self, ClaimError, DetachError, TicketToken};
use crate::error::StoreError;
use crate::gate::GateShared;
use crate::lease::{Lease, LeaseLoss, LeaseWatch, Set, Taken};
use crate::refusal::Refusal;
use crate::scripts;
use crate::store::RedisStore;

/// The code a lease script answers when it reached Redis after its caller's deadline
/// (`lua/lease.lua`): it took nothing.
const LATE: i64 = -2;

/// The shortest lease accepted: renewals run every third of it. A lease must also be at
/// least three store deadlines, so that a renewal that waits out its deadline still
/// lands before the next is due.
pub const MIN_LEASE: Duration = Duration::from_millis(30);

/// The longest lease accepted.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// How long a detached ticket keeps its place when none is configured: long enough for
/// a task queue to hand it to a worker, short enough that abandoned places come back.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// What a gate is made with ([`counters_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// The queue and slot bounds.
    pub bounds: JobBounds,
    /// The lease of every place and slot ([`MIN_LEASE`] to [`MAX_LEASE`], and at least
    /// three store deadlines).
    pub lease: Duration,
    /// How long a detached ticket keeps its place unclaimed (1 ms to [`MAX_LEASE`]).
    pub max_wait: Duration,
}

fn check_max_wait(max_wait: Duration) -> Result<(), ConfigError> {
    if (Duration::from_millis(1)..=MAX_LEASE).contains(&max_wait) {
        return Ok(());
    }
    Err(ConfigError::new(
        "queue.max_wait",
        format_args!("must be 1 ms to 24 h, got {max_wait:?}"),
    ))
}

/// Makes a shared queue gate and its job slots, named `name`, with `bounds` and
/// `lease`, detached tickets keeping their place for [`DEFAULT_MAX_WAIT`]. Queue and
/// slots fail closed whatever the store's policy: a local count cannot see places held
/// by other replicas.
///
/// # Errors
///
/// As [`counters_with`].
pub fn counters(
    store: &RedisStore,
    name: &str,
    bounds: JobBounds,
    lease: Duration,
) -> Result<(RedisQueueGate, RedisJobSlots), ConfigError> {
    counters_with(
        store,
        name,
        GateConfig {
            bounds,
            lease,
            max_wait: DEFAULT_MAX_WAIT,
        },
    )
}

/// As [`counters`], with every setting of [`GateConfig`].
///
/// # Errors
///
/// A [`ConfigError`] for bad bounds, a bad name, a lease outside [`MIN_LEASE`] to
/// [`MAX_LEASE`] or below three times the store's deadline, or a `max_wait` outside
/// 1 ms to [`MAX_LEASE`].
pub fn counters_with(
    store: &RedisStore,
    name: &str,
    config: GateConfig,
) -> Result<(RedisQueueGate, RedisJobSlots), ConfigError> {
    let GateConfig {
        bounds,
        lease,
        max_wait,
    } = config;
    bounds.validate()?;
    crate::window::validate_name(name)?;
    if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
        return Err(ConfigError::new(
            "lease",
            format_args!("must be {MIN_LEASE:?} to 24 h, got {lease:?}"),
        ));
    }
    let deadline = store.inner.options.deadline;
    if lease < deadline.saturating_mul(3) {
        return Err(ConfigError::new(
            "lease",
            format_args!(
                "must be at least 3 × the store deadline ({:?}), got {lease:?}",
                deadline.saturating_mul(3)
            ),
        ));
    }
    check_max_wait(max_wait)?;
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let shared = Arc::new(GateShared {
        store: store.clone(),
        name: name.to_owned(),
        queue_key: format!("{{backstop:{name}}}:queue").into(),
        slots_key: format!("{{backstop:{name}}}:slots").into(),
        gate_key: format!("{{backstop:{name}}}:gate").into(),
        bounds: ArcSwap::from_pointee(bounds),
        lease_us: micros(lease),
        max_wait_us: AtomicU64::new(micros(max_wait)),
        retry_hint: Duration::from_secs(1),
    });
    Ok((
        RedisQueueGate {
            shared: Arc::clone(&shared),
        },
        RedisJobSlots { shared },
    ))
}

/// The shared bounded queue: [`try_enter`](Self::try_enter) hands out a
/// [`RedisQueueTicket`] while fewer than `max_queue` are held across every replica.
#[derive(Clone)]
pub struct RedisQueueGate {
    shared: Arc<GateShared>,
}

/// The shared job slots: a ticket becomes a [`RedisJobPermit`] in one atomic step.
#[derive(Clone)]
pub struct RedisJobSlots {
    shared: Arc<GateShared>,
}

impl std::fmt::Debug for RedisQueueGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueGate")
            .field("key", &self.shared.queue_key)
            .field("bounds", &**self.shared.bounds.load())
            .finish()
    }
}

impl std::fmt::Debug for RedisJobSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobSlots")
            .field("key", &self.shared.slots_key)
            .field("bounds", &**self.shared.bounds.load())
            .finish()
    }
}

impl RedisQueueGate {
    /// A place in the queue for a normal request.
    ///
    /// # Errors
    ///
    /// [`Refusal::Overloaded`] (`queue_full`), or 503 `store_unavailable`.
    pub async fn try_enter(&self) -> Result<RedisQueueTicket, Refusal> {
        self.try_enter_as(Priority::Normal).await
    }

    /// A place in the queue; critical requests may use the reserve.
    ///
    /// # Errors
    ///
    /// As [`try_enter`](Self::try_enter).
    pub async fn try_enter_as(&self, priority: Priority) -> Result<RedisQueueTicket, Refusal> {
        self.try_enter_until(priority, self.shared.store.give_up())
            .await
    }

    /// As [`try_enter_as`](Self::try_enter_as), within `give_up` (an admission's one
    /// deadline).
    pub(crate) async fn try_enter_until(
        &self,
        priority: Priority,
        give_up: Instant,
    ) -> Result<RedisQueueTicket, Refusal> {
        let bound = self.shared.queue_bound(priority);
        self.enter_queue(bound, priority, give_up).await
    }

    /// A place while fewer than `bound` are held, for a ticket of `priority`.
    async fn enter_queue(
        &self,
        bound: u32,
        priority: Priority,
        give_up: Instant,
    ) -> Result<RedisQueueTicket, Refusal> {
        let shared = &self.shared;
        let full = Refusal::Overloaded {
            reason: OverloadReason::QueueFull,
            retry_after_hint: shared.retry_hint,
        };
        let lease = enter(
            shared,
            Set::Queue,
            bound,
            (full, shared.unavailable()),
            give_up,
        )
        .await?;
        Ok(RedisQueueTicket { lease, priority })
    }

    /// Takes the queue place a [`RedisQueueTicket::detach`] token names, in this
    /// process: an ordinary ticket from now on, renewed here, with a fresh fencing token.
    /// Any gate of the same name on the same Redis may claim it, once.
    ///
    /// # Errors
    ///
    /// A [`ClaimError`]: the token is malformed or of another gate, it expired (its
    /// place went back to the queue), nobody holds its place (claimed already, or never
    /// handed out: a forged token), or Redis failed (nothing was taken then, unless the
    /// answer was what failed: a claim that ran is undone when its lease runs out).
    pub async fn claim(&self, token: &str) -> Result<RedisQueueTicket, ClaimError> {
        let shared = &self.shared;
        let parsed = TicketToken::parse(token)?;
        if parsed.gate != shared.name {
            return Err(ClaimError::OtherGate {
                token_gate: parsed.gate,
                this_gate: shared.name.clone(),
            });
        }
        let holder = shared.holder();
        let sent = shared.store.lease_now_us();
        let mut conn = shared.store.connection();
        let give_up = shared.store.give_up();
        let mut invocation = shared.invocation(&scripts::CLAIM, Some(give_up));
        invocation
            .arg(parsed.member())
            .arg(&holder)
            .arg(shared.lease_us);
        let answer: Result<(i64, u64, u64, u64, u64), StoreError> = shared
            .store
            .call_until(
                give_up,
                &shared.queue_key,
                invocation.invoke_async(&mut conn),
            )
            .await;
        match answer {
            Ok((1, fencing_token, epoch, _now, abandoned)) => {
                shared.store.inner.metrics.unclaimed(abandoned);
                let bound = shared.queue_bound(parsed.priority);
                let taken = Taken {
                    fencing_token,
                    epoch,
                };
                let lease = Lease::hold(shared, Set::Queue, holder, bound, taken, sent);
                Ok(RedisQueueTicket {
                    lease,
                    priority: parsed.priority,
                })
            }
            Ok((LATE, ..)) => Err(ClaimError::StoreUnavailable(shared.late())),
            Ok((_, _, _, now, abandoned)) => {
                shared.store.inner.metrics.unclaimed(abandoned);
                if now >= parsed.until_us {
                    Err(ClaimError::Expired {
                        ago: Duration::from_micros(now - parsed.until_us),
                    })
                } else {
                    Err(ClaimError::NotHeld)
                }
            }
            Err(err) => {
                shared.release(holder);
                Err(ClaimError::StoreUnavailable(err))
            }
        }
    }

    /// Tickets held now across every replica (expired leases not counted).
    ///
    /// # Errors
    ///
    /// The [`StoreError`].
    pub async fn len(&self) -> Result<u64, StoreError> {
        count_live(&self.shared, &self.shared.queue_key).await
    }

    /// Whether no ticket is held across the replicas.
    ///
    /// # Errors
    ///
    /// The [`StoreError`].
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len().await? == 0)
    }

    /// The gate's name (its Redis keys' hash tag).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The queue and slot bounds in force.
    pub fn bounds(&self) -> JobBounds {
        **self.shared.bounds.load()
    }

    /// Changes the bounds from the next take on, for this gate and its slots (every
    /// replica must do the same: each take is judged by its caller's bounds). Held
    /// places and slots are kept: a lower bound refuses new ones until enough are
    /// released.
    ///
    /// # Errors
    ///
    /// As [`JobBounds::validate`]; on error nothing changes.
    pub fn set_bounds(&self, bounds: JobBounds) -> Result<(), ConfigError> {
        bounds.validate()?;
        self.shared.bounds.store(Arc::new(bounds));
        Ok(())
    }

    /// Changes how long a detached ticket keeps its place unclaimed, for tickets
    /// detached from now on.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `queue.max_wait` outside 1 ms to [`MAX_LEASE`].
    pub fn set_max_wait(&self, max_wait: Duration) -> Result<(), ConfigError> {
        check_max_wait(max_wait)?;
        let micros = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        // Relaxed: see `detach`.
        self.shared.max_wait_us.store(micros, Ordering::Relaxed);
        Ok(())
    }

    /// A place while fewer than `bound` are held, whatever the configured bounds (what
    /// shadow mode takes once the configured bound refused), within `give_up`.
    pub(crate) async fn try_enter_below(
        &self,
        bound: u32,
        give_up: Instant,
    ) -> Result<RedisQueueTicket, Refusal> {
        self.enter_queue(bound, Priority::Critical, give_up).await
    }
}

async fn count_live(shared: &GateShared, key: &Arc<str>) -> Result<u64, StoreError> {
    let mut conn = shared.store.connection();
    let now = shared.store.now_arg();
    let min = if now.is_empty() {
        // Redis's clock: count what has not expired by its TIME.
        let (secs, micros): (u64, u64) = shared
            .store
            .call(key, redis::cmd("TIME").query_async(&mut conn))
            .await?;
        format!("({}", secs * 1_000_000 + micros)
    } else {
        format!("({now}")
    };
    shared
        .store
        .call(
            key,
            redis::cmd("ZCOUNT")
                .arg(&**key)
                .arg(min)
                .arg("+inf")
                .query_async(&mut conn),
        )
        .await
}

/// Takes a lease in `set` (the queue or the slots) while fewer than `bound` are held:
/// the lease, or `full`, or `unavailable` when Redis failed, passed `give_up` or was
/// reached after it (the place, which the script may have taken all the same, is then
/// given back).
async fn enter<E>(
    shared: &Arc<GateShared>,
    set: Set,
    bound: u32,
    (full, unavailable): (E, E),
    give_up: Instant,
) -> Result<Lease, E> {
    let holder = shared.holder();
    let sent = shared.store.lease_now_us();
    let mut conn = shared.store.connection();
    let mut invocation = shared.invocation(&scripts::ENTER, Some(give_up));
    invocation
        .arg(set.arg())
        .arg(bound)
        .arg(&holder)
        .arg(shared.lease_us);
    let taken: Result<(i64, u64, u64, u64), StoreError> = shared
        .store
        .call_until(
            give_up,
            &shared.queue_key,
            invocation.invoke_async(&mut conn),
        )
        .await;
    match taken {
        Ok((LATE, ..)) => {
            shared.late();
            Err(unavailable)
        }
        Ok((code, fencing_token, epoch, abandoned)) => {
            shared.store.inner.metrics.unclaimed(abandoned);
            if code != 1 {
                return Err(full);
            }
            let taken = Taken {
                fencing_token,
                epoch,
            };
            Ok(Lease::hold(shared, set, holder, bound, taken, sent))
        }
        Err(_) => {
            shared.release(holder);
            Err(unavailable)
        }
    }
}

/// Why a ticket did not become a permit.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Every slot is taken across the replicas; the ticket is handed back.
    #[error("no free job slot")]
    NoFreeSlot(RedisQueueTicket),
    /// The ticket's lease had expired (this replica stalled longer than the lease): its
    /// place is gone.
    #[error("the ticket's lease expired")]
    LeaseLost,
    /// Redis failed or passed the deadline; the ticket is handed back. The call may still
    /// have taken a slot: trying again with the ticket finds it, and dropping the ticket
    /// frees it.
    #[error("store unavailable: {1}")]
    StoreUnavailable(RedisQueueTicket, StoreError),
}

impl RedisJobSlots {
    /// Turns `ticket` into a permit when one of `max_jobs` slots is free across every
    /// replica: one script removes the ticket and takes the slot together.
    ///
    /// # Errors
    ///
    /// [`StartError`], with the ticket back where it still holds a place.
    pub async fn try_start(&self, ticket: RedisQueueTicket) -> Result<RedisJobPermit, StartError> {
        let shared = &self.shared;
        let max_jobs = shared.bounds.load().max_jobs;
        let sent = shared.store.lease_now_us();
        let mut conn = shared.store.connection();
        let give_up = shared.store.give_up();
        let mut invocation = shared.invocation(&scripts::START, Some(give_up));
        invocation
            .arg(max_jobs)
            .arg(ticket.lease.holder())
            .arg(shared.lease_us);
        let started: Result<(i64, u64, u64, u64), StoreError> = shared
            .store
            .call_until(
                give_up,
                &shared.queue_key,
                invocation.invoke_async(&mut conn),
            )
            .await;
        match started {
            Ok((LATE, ..)) => Err(StartError::StoreUnavailable(ticket, shared.late())),
            Ok((code, fencing_token, epoch, abandoned)) => {
                shared.store.inner.metrics.unclaimed(abandoned);
                match code {
                    1 => {
                        let holder = ticket.lease.disarm();
                        let taken = Taken {
                            fencing_token,
                            epoch,
                        };
                        Ok(RedisJobPermit {
                            lease: Lease::hold(shared, Set::Slots, holder, max_jobs, taken, sent),
                        })
                    }
                    0 => Err(StartError::NoFreeSlot(ticket)),
                    _ => {
                        ticket.lease.disarm();
                        Err(StartError::LeaseLost)
                    }
                }
            }
            // The script may have run all the same: a retry finds the slot (start.lua is
            // idempotent), and dropping the ticket frees both the place and the slot.
            Err(err) => Err(StartError::StoreUnavailable(ticket, err)),
        }
    }

    /// A slot without a ticket (for jobs that never queued), as core's
    /// `JobSlots::try_acquire`: a full set of slots is a wait, not a refusal.
    ///
    /// # Errors
    ///
    /// [`WaitReason::NoFreeSlot`] when every slot is taken across the replicas, or
    /// [`WaitReason::StoreUnavailable`] when Redis failed or passed the deadline.
    pub async fn try_acquire(&self) -> Result<RedisJobPermit, WaitReason> {
        let shared = &self.shared;
        let lease = enter(
            shared,
            Set::Slots,
            shared.bounds.load().max_jobs,
            (WaitReason::NoFreeSlot, WaitReason::StoreUnavailable),
            shared.store.give_up(),
        )
        .await?;
        Ok(RedisJobPermit { lease })
    }

    /// Permits held now across every replica (expired leases not counted).
    ///
    /// # Errors
    ///
    /// The [`StoreError`].
    pub async fn active(&self) -> Result<u64, StoreError> {
        count_live(&self.shared, &self.shared.slots_key).await
    }
}

/// A place in the shared queue, held (and renewed) until started, detached or dropped.
#[must_use = "dropping a ticket gives its queue place back"]
pub struct RedisQueueTicket {
    lease: Lease,
    priority: Priority,
}

/// A running job's slot, held (and renewed) until dropped. While its lease holds, the
/// slot is this job's alone; once it is lost ([`is_lost`](Self::is_lost),
/// [`lost`](Self::lost), [`cancellation`](Self::cancellation)) the job should stop at
/// its next step: its slot may be someone else's.
#[must_use = "dropping a permit frees its job slot"]
pub struct RedisJobPermit {
    lease: Lease,
}

impl RedisQueueTicket {
    /// True once the lease is lost ([`crate::lease`]): no renewal succeeded within the
    /// lease (this replica stalled, or Redis was away or slower than the deadline), or
    /// Redis answered that the place is gone. From then on, for good.
    pub fn is_lost(&self) -> bool {
        self.lease.watch().is_lost()
    }

    /// Why the lease was lost, once it is.
    pub fn loss(&self) -> Option<LeaseLoss> {
        self.lease.watch().loss()
    }

    /// Completes when the lease is lost (at once when it is already).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + use<> {
        self.lease.watch().lost()
    }

    /// A view of the lease (`Clone`, `Send`).
    pub fn watch(&self) -> LeaseWatch {
        self.lease.watch()
    }

    /// The fencing token of the take (larger than every earlier take's on this gate).
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// How much longer the lease holds without another renewal (zero once lost).
    pub fn remaining(&self) -> Duration {
        self.lease.remaining()
    }

    /// The priority it entered with.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Hands the place over to whichever process claims it: the place stays in the
    /// queue, unrenewed, for at most the gate's `max_wait`, under the returned token (an
    /// ASCII string: JSON-, URL- and shell-safe; unguessable). [`RedisQueueGate::claim`]
    /// on the same name takes it; nobody claims it in time: the place returns and the
    /// store counts it (`detached_unclaimed`).
    ///
    /// # Errors
    ///
    /// [`DetachError::Lost`] when the place is gone already;
    /// [`DetachError::StoreUnavailable`] with the ticket back when Redis failed (if the
    /// detach ran all the same, the ticket's next renewal finds its place gone and
    /// reports it lost, and the place waits, unclaimed, for `max_wait`).
    pub async fn detach(self) -> Result<String, DetachError<RedisQueueTicket>> {
        if self.is_lost() {
            let _ = self.lease.disarm();
            return Err(DetachError::Lost);
        }
        let shared = Arc::clone(&self.lease.state().gate);
        let member = detach::new_member();
        let mut conn = shared.store.connection();
        let give_up = shared.store.give_up();
        let mut invocation = shared.invocation(&scripts::DETACH, Some(give_up));
        invocation
            .arg(self.lease.holder())
            .arg(member.as_str())
            // Relaxed: a lone setting; a detach racing a change uses either.
            .arg(shared.max_wait_us.load(Ordering::Relaxed));
        let answer: Result<(i64, u64, u64), StoreError> = shared
            .store
            .call_until(
                give_up,
                &shared.queue_key,
                invocation.invoke_async(&mut conn),
            )
            .await;
        match answer {
            Ok((LATE, ..)) => {
                let err = shared.late();
                Err(DetachError::StoreUnavailable(self, err))
            }
            Ok((code, until_us, abandoned)) => {
                shared.store.inner.metrics.unclaimed(abandoned);
                let _ = self.lease.disarm();
                if code != 1 {
                    return Err(DetachError::Lost);
                }
                Ok(TicketToken::new(&shared.name, &member, until_us, self.priority).encode())
            }
            Err(err) => Err(DetachError::StoreUnavailable(self, err)),
        }
    }

    /// Stops renewing this lease, as a replica that stalls or dies would; for tests of
    /// what happens to an unrenewed lease. Dropping still releases it.
    #[doc(hidden)]
    pub fn stop_renewing_for_tests(&mut self) {
        self.lease.stop_renewing();
    }

    /// The holder id stored in Redis.
    pub fn holder(&self) -> &str {
        self.lease.holder()
    }
}

impl RedisJobPermit {
    /// As [`RedisQueueTicket::is_lost`]: once true, the slot may be someone else's.
    pub fn is_lost(&self) -> bool {
        self.lease.watch().is_lost()
    }

    /// Why the lease was lost, once it is.
    pub fn loss(&self) -> Option<LeaseLoss> {
        self.lease.watch().loss()
    }

    /// Completes when the lease is lost (at once when it is already): race it against
    /// the job to stop the job then.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + use<> {
        self.lease.watch().lost()
    }

    /// A token cancelled when the lease is lost, to hand to the job (cancelling it does
    /// not give up the slot; dropping the permit does).
    pub fn cancellation(&self) -> CancellationToken {
        self.lease.watch().cancellation()
    }

    /// A view of the lease to hand to the job (`Clone`, `Send`): what it checks between
    /// its steps.
    pub fn watch(&self) -> LeaseWatch {
        self.lease.watch()
    }

    /// The fencing token of the take (larger than every earlier take's on this gate):
    /// pass it with every write the job makes elsewhere.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// How much longer the lease holds without another renewal (zero once lost).
    pub fn remaining(&self) -> Duration {
        self.lease.remaining()
    }

    /// Stops renewing this lease, as a replica that stalls or dies would; for tests of
    /// what happens to an unrenewed lease. Dropping still releases it.
    #[doc(hidden)]
    pub fn stop_renewing_for_tests(&mut self) {
        self.lease.stop_renewing();
    }

    /// The holder id stored in Redis.
    pub fn holder(&self) -> &str {
        self.lease.holder()
    }
}

impl std::fmt::Debug for RedisQueueTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueTicket")
            .field("holder", &self.lease.holder())
            .field("fencing_token", &self.lease.fencing_token())
            .finish()
    }
}

impl std::fmt::Debug for RedisJobPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobPermit")
            .field("holder", &self.lease.holder())
            .field("fencing_token", &self.lease.fencing_token())
            .finish()
    }
}
