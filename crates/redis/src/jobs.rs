//! [`RedisQueueGate`] and [`RedisJobSlots`]: `QueueGate` / `JobSlots` shared by every
//! replica, every ticket and permit a lease.
//!
//! A queue place or a job slot is a member of a sorted set (holder id → lease deadline
//! in microseconds); every script prunes expired members before counting, so a replica
//! that dies holding places leaks them for at most the lease time. A held ticket or
//! permit renews its lease every third of the lease from a background task. The queue
//! and the slots of one gate share a hash tag (`{backstop:<name>}:queue`, `…:slots`), so
//! the ticket → permit script touches one slot (Redis Cluster-ready).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backstop_core::jobs::{JobBounds, Priority};
use backstop_core::{ConfigError, OverloadReason};

use crate::error::StoreError;
use crate::refusal::Refusal;
use crate::scripts;
use crate::store::RedisStore;

/// The shortest lease accepted: renewals run every third of it. A lease must also be at
/// least three store deadlines, so that a renewal that waits out its deadline still
/// lands before the lease ends.
pub const MIN_LEASE: Duration = Duration::from_millis(30);

struct GateShared {
    store: RedisStore,
    queue_key: Arc<str>,
    slots_key: Arc<str>,
    bounds: JobBounds,
    lease_us: u64,
    retry_hint: Duration,
}

impl GateShared {
    fn holder(&self) -> String {
        // One counter per process, not per gate: two gates of one name on one store
        // (two front doors) must never hand out the same holder id.
        static NEXT_HOLDER: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness matters, which fetch_add gives at any ordering.
        let n = NEXT_HOLDER.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.store.inner.replica_id)
    }

    fn now_arg(&self) -> String {
        self.store
            .now_us()
            .map_or(String::new(), |now| now.to_string())
    }

    /// Best effort, detached: removes `holder` from the queue and the slots. A call that
    /// failed or passed its deadline may still have run in Redis, and holder ids are
    /// unique, so removing it from both sets can only free what nobody holds.
    fn release(&self, holder: String) {
        let mut conn = self.store.connection();
        let keys = [Arc::clone(&self.queue_key), Arc::clone(&self.slots_key)];
        let deadline = self.store.inner.options.deadline;
        // Detached: nobody awaits the release.
        drop(self.store.inner.runtime.spawn(async move {
            let mut release = redis::pipe();
            for key in &keys {
                release.cmd("ZREM").arg(&**key).arg(&holder).ignore();
            }
            let _ = tokio::time::timeout(
                deadline.saturating_mul(4),
                release.query_async::<()>(&mut conn),
            )
            .await;
        }));
    }

    fn unavailable(&self) -> Refusal {
        crate::refusal::store_unavailable(self.store.inner.options.unavailable_retry_hint)
    }
}

/// Makes a shared queue gate and its job slots, named `name`, with `bounds` and
/// `lease`. Queue and slots fail closed whatever the store's policy: a local count
/// cannot see places held by other replicas.
///
/// # Errors
///
/// A [`ConfigError`] for bad bounds, a bad name, or a lease below [`MIN_LEASE`] or
/// below three times the store's deadline.
pub fn counters(
    store: &RedisStore,
    name: &str,
    bounds: JobBounds,
    lease: Duration,
) -> Result<(RedisQueueGate, RedisJobSlots), ConfigError> {
    bounds.validate()?;
    if name.is_empty() || name.len() > 200 || name.contains(['{', '}']) {
        return Err(ConfigError::new(
            "name",
            format_args!("must be 1 to 200 bytes without braces, got {name:?}"),
        ));
    }
    if lease < MIN_LEASE || lease > Duration::from_secs(24 * 3600) {
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
    let shared = Arc::new(GateShared {
        store: store.clone(),
        queue_key: format!("{{backstop:{name}}}:queue").into(),
        slots_key: format!("{{backstop:{name}}}:slots").into(),
        bounds,
        lease_us: u64::try_from(lease.as_micros()).unwrap_or(u64::MAX),
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
            .field("bounds", &self.shared.bounds)
            .finish()
    }
}

impl std::fmt::Debug for RedisJobSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobSlots")
            .field("key", &self.shared.slots_key)
            .field("bounds", &self.shared.bounds)
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
        let shared = &self.shared;
        let bound = match priority {
            Priority::Normal => shared.bounds.max_queue - shared.bounds.critical_reserve,
            Priority::Critical => shared.bounds.max_queue,
        };
        let holder = shared.holder();
        let mut conn = shared.store.connection();
        let mut invocation = scripts::ENTER.key(&*shared.queue_key);
        invocation
            .arg(bound)
            .arg(&holder)
            .arg(shared.lease_us)
            .arg(shared.now_arg());
        let taken: Result<(i64, u64), StoreError> = shared
            .store
            .call(&shared.queue_key, invocation.invoke_async(&mut conn))
            .await;
        match taken {
            Ok((1, _)) => Ok(RedisQueueTicket {
                lease: Lease::hold(shared, Arc::clone(&shared.queue_key), holder),
            }),
            Ok(_) => Err(Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                retry_after_hint: shared.retry_hint,
            }),
            Err(_) => {
                // The script may have run all the same: take the place back.
                shared.release(holder);
                Err(shared.unavailable())
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
}

async fn count_live(shared: &GateShared, key: &Arc<str>) -> Result<u64, StoreError> {
    let mut conn = shared.store.connection();
    let now = shared.now_arg();
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
        let mut conn = shared.store.connection();
        let mut invocation = scripts::START.key(&*shared.queue_key);
        invocation
            .key(&*shared.slots_key)
            .arg(shared.bounds.max_jobs)
            .arg(&ticket.lease.holder)
            .arg(shared.lease_us)
            .arg(shared.now_arg());
        let started: Result<i64, StoreError> = shared
            .store
            .call(&shared.queue_key, invocation.invoke_async(&mut conn))
            .await;
        match started {
            Ok(1) => {
                let holder = ticket.lease.disarm();
                Ok(RedisJobPermit {
                    lease: Lease::hold(shared, Arc::clone(&shared.slots_key), holder),
                })
            }
            Ok(0) => Err(StartError::NoFreeSlot(ticket)),
            Ok(_) => {
                ticket.lease.disarm();
                Err(StartError::LeaseLost)
            }
            // The script may have run all the same: a retry finds the slot (start.lua is
            // idempotent), and dropping the ticket frees both the place and the slot.
            Err(err) => Err(StartError::StoreUnavailable(ticket, err)),
        }
    }

    /// A slot without a ticket (for jobs that never queued).
    ///
    /// # Errors
    ///
    /// [`Refusal::Overloaded`] (`queue_full`: no slot), or 503 `store_unavailable`.
    pub async fn try_acquire(&self) -> Result<RedisJobPermit, Refusal> {
        let shared = &self.shared;
        let holder = shared.holder();
        let mut conn = shared.store.connection();
        let mut invocation = scripts::ENTER.key(&*shared.slots_key);
        invocation
            .arg(shared.bounds.max_jobs)
            .arg(&holder)
            .arg(shared.lease_us)
            .arg(shared.now_arg());
        let taken: Result<(i64, u64), StoreError> = shared
            .store
            .call(&shared.slots_key, invocation.invoke_async(&mut conn))
            .await;
        match taken {
            Ok((1, _)) => Ok(RedisJobPermit {
                lease: Lease::hold(shared, Arc::clone(&shared.slots_key), holder),
            }),
            Ok(_) => Err(Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                retry_after_hint: shared.retry_hint,
            }),
            Err(_) => {
                // The script may have run all the same: take the place back.
                shared.release(holder);
                Err(shared.unavailable())
            }
        }
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

/// A held member of a sorted set, renewed in the background until dropped.
struct Lease {
    shared: Arc<GateShared>,
    holder: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// A renewal found the lease gone.
    lost: Arc<AtomicBool>,
    /// When the lease was taken (this process's monotonic clock).
    born: Instant,
    /// Microseconds after `born` at which the last successful renewal (or the take)
    /// was sent: the lease runs at least `lease` past it, and at most that long unless
    /// a renewal succeeds again.
    last_ok_us: Arc<AtomicU64>,
    armed: bool,
}

impl Lease {
    fn hold(shared: &Arc<GateShared>, key: Arc<str>, holder: String) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let born = Instant::now();
        let last_ok_us = Arc::new(AtomicU64::new(0));
        let every = Duration::from_micros(shared.lease_us / 3);
        let renewer = {
            let shared = Arc::clone(shared);
            let key = Arc::clone(&key);
            let holder = holder.clone();
            let lost = Arc::clone(&lost);
            let last_ok_us = Arc::clone(&last_ok_us);
            shared.store.inner.runtime.clone().spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let sent = micros_since(born);
                    let mut conn = shared.store.connection();
                    let mut invocation = scripts::RENEW.key(&*key);
                    invocation
                        .arg(&holder)
                        .arg(shared.lease_us)
                        .arg(shared.now_arg());
                    let renewed: Result<i64, StoreError> = shared
                        .store
                        .call(&key, invocation.invoke_async(&mut conn))
                        .await;
                    match renewed {
                        Ok(0) => {
                            // Relaxed: a flag read for reporting only.
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        // Relaxed: a time read for reporting only.
                        Ok(_) => last_ok_us.store(sent, Ordering::Relaxed),
                        // An error: try again at the next tick; `is_lost` reports the
                        // lease gone once no renewal has succeeded for a whole lease.
                        Err(_) => {}
                    }
                }
            })
        };
        Lease {
            shared: Arc::clone(shared),
            holder,
            renewer: Some(renewer),
            lost,
            born,
            last_ok_us,
            armed: true,
        }
    }

    /// Whether the lease is (or may be) gone: a renewal found it expired, or none has
    /// succeeded for a whole lease (Redis away or slow), so it has expired in Redis and
    /// its place may be someone else's.
    fn is_lost(&self) -> bool {
        // Relaxed (both): values read for reporting only.
        if self.lost.load(Ordering::Relaxed) {
            return true;
        }
        let last_ok = self.last_ok_us.load(Ordering::Relaxed);
        micros_since(self.born).saturating_sub(last_ok) >= self.shared.lease_us
    }

    /// Stops renewing and forgets the member without releasing it (it moved or is gone).
    fn disarm(mut self) -> String {
        self.armed = false;
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        std::mem::take(&mut self.holder)
    }

    /// Stops the renewals, as a replica that stalls or dies would (tests only).
    fn stop_renewing(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

fn micros_since(born: Instant) -> u64 {
    u64::try_from(born.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if !self.armed {
            return;
        }
        // Released by a spawned ZREM, from both sets (a ticket whose start answered too
        // late may hold a slot too). If the runtime has shut down the task never runs,
        // and the member stays until its lease expires: capacity comes back within the
        // lease time either way.
        self.shared.release(std::mem::take(&mut self.holder));
    }
}

/// A place in the shared queue, held (and renewed) until started or dropped.
#[must_use = "dropping a ticket gives its queue place back"]
pub struct RedisQueueTicket {
    lease: Lease,
}

/// A running job's slot, held (and renewed) until dropped.
#[must_use = "dropping a permit frees its job slot"]
pub struct RedisJobPermit {
    lease: Lease,
}

impl RedisQueueTicket {
    /// True when a renewal found the lease already expired (this replica stalled longer
    /// than the lease), or when no renewal has succeeded for a whole lease (Redis away or
    /// slower than the deadline): the place may have gone to someone else.
    pub fn is_lost(&self) -> bool {
        self.lease.is_lost()
    }

    /// Stops renewing this lease, as a replica that stalls or dies would; for tests of
    /// what happens to an unrenewed lease. Dropping still releases it.
    #[doc(hidden)]
    pub fn stop_renewing_for_tests(&mut self) {
        self.lease.stop_renewing();
    }

    /// The holder id stored in Redis.
    pub fn holder(&self) -> &str {
        &self.lease.holder
    }
}

impl RedisJobPermit {
    /// As [`RedisQueueTicket::is_lost`].
    pub fn is_lost(&self) -> bool {
        self.lease.is_lost()
    }

    /// Stops renewing this lease, as a replica that stalls or dies would; for tests of
    /// what happens to an unrenewed lease. Dropping still releases it.
    #[doc(hidden)]
    pub fn stop_renewing_for_tests(&mut self) {
        self.lease.stop_renewing();
    }

    /// The holder id stored in Redis.
    pub fn holder(&self) -> &str {
        &self.lease.holder
    }
}

impl std::fmt::Debug for RedisQueueTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueTicket")
            .field("holder", &self.lease.holder)
            .finish()
    }
}

impl std::fmt::Debug for RedisJobPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobPermit")
            .field("holder", &self.lease.holder)
            .finish()
    }
}
