//! [`GateShared`]: what every queue place, job slot and lease of one named gate shares:
//! its keys in Redis, its bounds, the lease length, and the store they live on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use backstop_core::jobs::{JobBounds, Priority};
use tokio::time::Instant;

use crate::error::StoreError;
use crate::refusal::{Refusal, store_unavailable};
use crate::store::RedisStore;

/// One gate's shared state: the queue (`{backstop:<name>}:queue`), the slots (`…:slots`)
/// and the gate's epoch and fencing counter (`…:gate`), under one hash tag.
pub(crate) struct GateShared {
    pub(crate) store: RedisStore,
    pub(crate) name: String,
    pub(crate) queue_key: Arc<str>,
    pub(crate) slots_key: Arc<str>,
    pub(crate) gate_key: Arc<str>,
    /// The bounds in force ([`RedisQueueGate::set_bounds`](crate::RedisQueueGate::set_bounds)).
    pub(crate) bounds: ArcSwap<JobBounds>,
    pub(crate) lease_us: u64,
    /// How long a detached place waits unclaimed ([`RedisQueueGate::set_max_wait`](crate::RedisQueueGate::set_max_wait)).
    pub(crate) max_wait_us: AtomicU64,
    pub(crate) retry_hint: Duration,
}

impl GateShared {
    pub(crate) fn holder(&self) -> String {
        // One counter per process, not per gate: two gates of one name on one store
        // (two front doors) must never hand out the same holder id.
        static NEXT_HOLDER: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness matters, which fetch_add gives at any ordering.
        let n = NEXT_HOLDER.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.store.inner.replica_id)
    }

    /// A lease script's call on this gate: its three keys, the time, a number unique
    /// to the call and the caller's deadline on Redis's clock (none for a renewal) —
    /// the prelude's arguments, `lua/lease.lua`.
    pub(crate) fn invocation<'a>(
        &self,
        script: &'a redis::Script,
        give_up: Option<Instant>,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.key(&*self.queue_key);
        invocation
            .key(&*self.slots_key)
            .key(&*self.gate_key)
            .arg(self.store.now_arg())
            .arg(self.store.unique_call_id())
            .arg(give_up.map_or(String::new(), |at| self.store.deadline_arg(at)));
        invocation
    }

    /// A take that reached Redis after its caller's deadline (the script took nothing):
    /// counted as the timeout it is.
    pub(crate) fn late(&self) -> StoreError {
        let err = StoreError::Timeout(self.store.inner.options.deadline);
        self.store.count(&err);
        err
    }

    /// Best effort, detached: removes `holder` from the queue and the slots. A call that
    /// failed or passed its deadline may still have run in Redis, and holder ids are
    /// unique, so removing it from both sets can only free what nobody holds.
    pub(crate) fn release(&self, holder: String) {
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

    pub(crate) fn unavailable(&self) -> Refusal {
        store_unavailable(self.store.inner.options.unavailable_retry_hint)
    }

    pub(crate) fn queue_bound(&self, priority: Priority) -> u32 {
        let bounds = self.bounds.load();
        match priority {
            Priority::Normal => bounds.max_queue - bounds.critical_reserve,
            Priority::Critical => bounds.max_queue,
        }
    }
}
