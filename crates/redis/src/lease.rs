//! Leases: how a queue place or a job slot held in Redis stays held, and how its holder
//! learns that it is not.
//!
//! # The rule
//!
//! A lease of length `L` taken (or renewed) by a call **sent** at `t` on this process's
//! clock holds here until `t + L − L/1000`. Redis ends the same lease at `t' + L` on its
//! own clock, where `t'` is when the script ran, after the call was sent; so this process
//! gives a lease up first unless its clock runs more than 0.1 % faster than Redis's.
//! While the lease holds, its place is this holder's alone: a permit bounds running jobs
//! exactly as long as its lease holds.
//!
//! Renewals run at a fixed rate, every `L/3` after the take (a slow one does not shift
//! the next); a renewal that fails is tried again half a period later, so up to four
//! tries are sent before a lease whose renewals all fail ends (`L/3`, `L/2`, `2L/3`,
//! `5L/6` after the take, each answered within the store's deadline, at most `L/3`). When none has succeeded
//! by the end, or Redis answers that the member is gone, the lease is **lost**: for
//! good (a later answer does not bring it back), `is_lost()` is true from that instant
//! (it reads the clock, it does not wait for a task), the lease's cancellation token is
//! cancelled and its `lost()` future completes (within the runtime's timer tick of the
//! end, or when the renewal's answer arrives). A paused process learns it on the first
//! check after it resumes: `is_lost()` compares the clock, which ran on while it slept.
//!
//! A member that vanished because Redis lost its data (a restart without persistence, a
//! failover to a replica that never saw it; told apart by the gate's epoch, see
//! `lua/lease.lua`) is re-asserted by the next renewal if there is room, and the lease
//! goes on; if there is none, it is lost.
//!
//! Each take answers a **fencing token**: a number per gate, larger than every token
//! handed out before it (and at least Redis's time in microseconds, so it keeps rising
//! when Redis lost the gate). A job that writes elsewhere passes it along, and the other
//! store refuses a write with a token smaller than one it has seen.
//!
//! # Clocks
//!
//! On Redis's clock the renewals run on a tokio task and real time. On an injected clock
//! (tests, the simulator) a lease is judged and renewed on that clock:
//! [`RedisStore::renew_leases`](crate::RedisStore::renew_leases) renews every lease due
//! at the clock's time, so virtual time decides, not the speed of the replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::gate::GateShared;
use crate::scripts;
use crate::store::Renewable;

/// Which sorted set of a gate a lease is a member of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Set {
    Queue,
    Slots,
}

impl Set {
    /// Its name in the lease scripts' arguments.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Set::Queue => "q",
            Set::Slots => "s",
        }
    }
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseLoss {
    /// No renewal succeeded within the lease: this process stalled (a pause, a starved
    /// runtime), or Redis was away or slower than the deadline. Redis may have given the
    /// place to someone else.
    Unrenewed,
    /// Redis answered that the member is gone: it expired there and was pruned, or it was
    /// handed over (a detach whose answer was lost).
    Gone,
    /// Redis lost its data and every place was taken when the holder tried to re-assert
    /// its own.
    NoRoom,
}

impl LeaseLoss {
    fn code(self) -> u8 {
        match self {
            LeaseLoss::Unrenewed => 1,
            LeaseLoss::Gone => 2,
            LeaseLoss::NoRoom => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(LeaseLoss::Unrenewed),
            2 => Some(LeaseLoss::Gone),
            3 => Some(LeaseLoss::NoRoom),
            _ => None,
        }
    }

    /// A label for logs and metrics: `unrenewed`, `gone`, `no_room`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseLoss::Unrenewed => "unrenewed",
            LeaseLoss::Gone => "gone",
            LeaseLoss::NoRoom => "no_room",
        }
    }
}

impl std::fmt::Display for LeaseLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a take answered: the fencing token and the gate's epoch then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    pub(crate) fencing_token: u64,
    pub(crate) epoch: u64,
}

/// What the holder and its renewals share.
pub(crate) struct LeaseState {
    pub(crate) gate: Arc<GateShared>,
    pub(crate) set: Set,
    pub(crate) holder: String,
    /// The bound a re-asserted member must fit under (the one it was taken under).
    bound: u32,
    fencing_token: u64,
    /// The gate's epoch this lease's member belongs to.
    epoch: AtomicU64,
    /// Lease-clock microseconds at which the lease ends here (see the module's rule).
    held_until_us: AtomicU64,
    /// When the next renewal is due (injected clocks; the task keeps its own schedule).
    next_renewal_us: AtomicU64,
    /// A [`LeaseLoss`] code, 0 while held. Set once.
    loss: AtomicU8,
    lost: CancellationToken,
}

/// What one renewal found.
enum Renewal {
    Held,
    Lost(LeaseLoss),
    Failed,
}

impl LeaseState {
    fn lease_us(&self) -> u64 {
        self.gate.lease_us
    }

    /// The end of a lease taken or renewed by a call sent at `sent_us`.
    fn end_after(&self, sent_us: u64) -> u64 {
        let lease = self.lease_us();
        sent_us.saturating_add(lease - lease / 1000)
    }

    /// The renewals' period: a third of the lease.
    fn period_us(&self) -> u64 {
        (self.lease_us() / 3).max(1)
    }

    pub(crate) fn loss(&self) -> Option<LeaseLoss> {
        // Acquire: pairs with the AcqRel swap in `mark_lost`, so a reader that sees the
        // loss also sees the cancellation that follows it ordered after (no data hangs on
        // it otherwise).
        LeaseLoss::from_code(self.loss.load(Ordering::Acquire))
    }

    /// Whether the lease is lost now: marked so, or past its end on the clock (which
    /// marks it, so that the cancellation follows the first look that finds it over).
    pub(crate) fn is_lost(&self) -> bool {
        if self.loss().is_some() {
            return true;
        }
        // Relaxed: a time stamp; `fetch_max` in `extend` keeps it monotone.
        if self.gate.store.lease_now_us() >= self.held_until_us.load(Ordering::Relaxed) {
            self.mark_lost(LeaseLoss::Unrenewed);
            return true;
        }
        false
    }

    /// Marks the lease lost (the first reason wins), cancels its token, counts it.
    pub(crate) fn mark_lost(&self, why: LeaseLoss) {
        // AcqRel: see `loss`.
        if self
            .loss
            .compare_exchange(0, why.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.gate.store.inner.metrics.lease_lost();
            tracing::warn!(
                holder = %self.holder,
                reason = %why,
                "backstop-redis: a lease was lost; its holder is told (is_lost, lost(), the \
                 cancellation token)"
            );
            self.lost.cancel();
        }
    }

    fn extend(&self, sent_us: u64) {
        // Relaxed: a time stamp read on its own; fetch_max never moves it back.
        self.held_until_us
            .fetch_max(self.end_after(sent_us), Ordering::Relaxed);
    }

    /// One renewal, sent now.
    async fn renew_once(&self) -> Renewal {
        let store = &self.gate.store;
        let sent = store.lease_now_us();
        // Relaxed: a time stamp (see `is_lost`).
        if sent >= self.held_until_us.load(Ordering::Relaxed) {
            return Renewal::Lost(LeaseLoss::Unrenewed);
        }
        let mut conn = store.connection();
        let mut invocation = self.gate.invocation(&scripts::RENEW, None);
        invocation
            .arg(self.set.arg())
            .arg(&self.holder)
            .arg(self.lease_us())
            .arg(self.bound)
            // Relaxed: only this lease's renewals write it, one at a time.
            .arg(self.epoch.load(Ordering::Relaxed));
        // Not stopped by the breaker: a lease needs its renewals most when Redis fails.
        let answer: Result<(i64, u64, u64), StoreError> = store
            .call_unguarded(
                store.give_up(),
                &self.gate.queue_key,
                invocation.invoke_async(&mut conn),
            )
            .await;
        match answer {
            Ok((code, epoch, abandoned)) => {
                store.inner.metrics.unclaimed(abandoned);
                match code {
                    1 | 2 => {
                        if code == 2 {
                            // Relaxed: as above.
                            self.epoch.store(epoch, Ordering::Relaxed);
                            store.inner.metrics.lease_reasserted();
                        }
                        store.inner.metrics.lease_renewed();
                        self.extend(sent);
                        Renewal::Held
                    }
                    -1 => Renewal::Lost(LeaseLoss::NoRoom),
                    _ => Renewal::Lost(LeaseLoss::Gone),
                }
            }
            Err(_) => {
                store.inner.metrics.lease_renewal_failed();
                Renewal::Failed
            }
        }
    }

    /// Renews when due on the store's (injected) clock; marks the lease lost when it
    /// ended. See [`RedisStore::renew_leases`](crate::RedisStore::renew_leases).
    async fn renew_when_due(&self) {
        if self.is_lost() {
            return;
        }
        let now = self.gate.store.lease_now_us();
        // Relaxed: a time stamp kept by this lease's renewals only.
        let due = self.next_renewal_us.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let period = self.period_us();
        match self.renew_once().await {
            Renewal::Held => {
                // Fixed rate: the next tick of the take's schedule after now.
                let behind = (now - due) / period + 1;
                self.next_renewal_us
                    .store(due + behind * period, Ordering::Relaxed);
            }
            Renewal::Lost(why) => self.mark_lost(why),
            // Tried again half a period later.
            Renewal::Failed => self
                .next_renewal_us
                .store(now + period / 2, Ordering::Relaxed),
        }
    }
}

impl Renewable for LeaseState {
    fn renew_if_due(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.renew_when_due())
    }
}

/// Renews `state` on real time until it is lost or the task is aborted (its holder let
/// go of it): every period after the take, and half a period after a failed renewal.
async fn renew_on_real_time(state: Arc<LeaseState>, taken_us: u64) {
    let period = state.period_us();
    let mut tick = taken_us + period;
    let mut retry: Option<u64> = None;
    loop {
        let due = retry.map_or(tick, |at| at.min(tick));
        // Relaxed: a time stamp (see `is_lost`).
        let end = state.held_until_us.load(Ordering::Relaxed);
        state.gate.store.sleep_until_lease_us(due.min(end)).await;
        if state.is_lost() {
            return;
        }
        let now = state.gate.store.lease_now_us();
        if now < due {
            continue; // woke for the end, which a renewal has moved on meanwhile
        }
        retry = None;
        match state.renew_once().await {
            Renewal::Held => {}
            Renewal::Lost(why) => {
                state.mark_lost(why);
                return;
            }
            Renewal::Failed => retry = Some(now + period / 2),
        }
        while tick <= now {
            tick += period;
        }
    }
}

/// A view of a lease that any thread or task can keep (it is `Clone`): whether the lease
/// still holds, a future and a token for when it is lost, its fencing token. It does not
/// hold the lease: dropping the ticket or permit still releases it (a watch then reads
/// it as it was at the release, never lost by it).
///
/// What a job that runs on another thread checks between its steps: `is_lost()` reads
/// the clock, so it is right also when the thread resumes from a pause before any task
/// has had time to run.
#[derive(Clone)]
pub struct LeaseWatch {
    state: Arc<LeaseState>,
}

impl LeaseWatch {
    /// True once the lease is lost (the module's rule): from then on, for good.
    pub fn is_lost(&self) -> bool {
        self.state.is_lost()
    }

    /// Why it was lost, once it is.
    pub fn loss(&self) -> Option<LeaseLoss> {
        if self.state.is_lost() {
            self.state.loss()
        } else {
            None
        }
    }

    /// Completes when the lease is lost (at once when it is already).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + use<> {
        self.state.is_lost();
        self.state.lost.clone().cancelled_owned()
    }

    /// A token cancelled when the lease is lost; cancelling it does not give the lease up.
    pub fn cancellation(&self) -> CancellationToken {
        self.state.is_lost();
        self.state.lost.child_token()
    }

    /// The fencing token of the take.
    pub fn fencing_token(&self) -> u64 {
        self.state.fencing_token
    }
}

impl std::fmt::Debug for LeaseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseWatch")
            .field("holder", &self.state.holder)
            .field("fencing_token", &self.state.fencing_token)
            .field("loss", &self.state.loss())
            .finish()
    }
}

/// A held member of a gate's queue or slots: renewed until dropped, released on drop
/// unless it moved on (a ticket that started, or was detached).
pub(crate) struct Lease {
    state: Arc<LeaseState>,
    /// The key of this lease in the store's registry (injected clocks).
    id: u64,
    renewer: Option<tokio::task::JoinHandle<()>>,
    armed: bool,
}

impl Lease {
    /// A lease on `holder` in `set` of `gate`, taken by a call sent at `sent_us` on the
    /// lease clock.
    pub(crate) fn hold(
        gate: &Arc<GateShared>,
        set: Set,
        holder: String,
        bound: u32,
        taken: Taken,
        sent_us: u64,
    ) -> Self {
        let state = Arc::new(LeaseState {
            gate: Arc::clone(gate),
            set,
            holder,
            bound,
            fencing_token: taken.fencing_token,
            epoch: AtomicU64::new(taken.epoch),
            held_until_us: AtomicU64::new(0),
            next_renewal_us: AtomicU64::new(0),
            loss: AtomicU8::new(0),
            lost: CancellationToken::new(),
        });
        state.extend(sent_us);
        let period = state.period_us();
        // Relaxed: not yet shared.
        state
            .next_renewal_us
            .store(sent_us + period, Ordering::Relaxed);
        let store = &gate.store;
        let id = store.next_lease_id();
        let renewer = if store.inner.clock.is_some() {
            store.register_lease(id, Arc::clone(&state) as Arc<dyn Renewable>);
            None
        } else {
            Some(
                store
                    .inner
                    .runtime
                    .spawn(renew_on_real_time(Arc::clone(&state), sent_us)),
            )
        };
        Lease {
            state,
            id,
            renewer,
            armed: true,
        }
    }

    pub(crate) fn state(&self) -> &Arc<LeaseState> {
        &self.state
    }

    pub(crate) fn watch(&self) -> LeaseWatch {
        LeaseWatch {
            state: Arc::clone(&self.state),
        }
    }

    pub(crate) fn holder(&self) -> &str {
        &self.state.holder
    }

    pub(crate) fn fencing_token(&self) -> u64 {
        self.state.fencing_token
    }

    /// How much longer the lease holds here, on the lease clock (zero once lost).
    pub(crate) fn remaining(&self) -> Duration {
        if self.state.is_lost() {
            return Duration::ZERO;
        }
        // Relaxed: a time stamp.
        let end = self.state.held_until_us.load(Ordering::Relaxed);
        Duration::from_micros(end.saturating_sub(self.state.gate.store.lease_now_us()))
    }

    /// Stops renewing and forgets the member without releasing it (it moved or is gone).
    pub(crate) fn disarm(mut self) -> String {
        self.armed = false;
        self.stop_renewing();
        self.state.holder.clone()
    }

    /// Stops the renewals, as a replica that stalls or dies would (tests only).
    pub(crate) fn stop_renewing(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.state.gate.store.unregister_lease(self.id);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_renewing();
        if self.armed {
            // Released by a spawned ZREM, from both sets (a ticket whose start answered
            // too late may hold a slot too). If the runtime has shut down the task never
            // runs, and the member stays until its lease expires: capacity comes back
            // within the lease time either way.
            self.state.gate.release(self.state.holder.clone());
        }
    }
}
