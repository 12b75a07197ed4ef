//! What a running store keeps an eye on, from one background task: Redis's clock (so
//! that a script can be told its caller's deadline on it) and the eviction policy
//! (checked again while running, not only at connect).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::checks;
use crate::options::EvictionCheck;
use crate::store::{EVICTION_OK, EVICTION_REFUSED, EVICTION_WARNED, RedisStore};

/// How often Redis's clock is sampled (at most; `recheck_every` when shorter).
const CLOCK_EVERY: Duration = Duration::from_secs(1);

/// Starts the task; it ends with the store (it holds it weakly).
pub(crate) fn spawn(store: &RedisStore) {
    let weak = Arc::downgrade(&store.inner);
    let options = store.inner.options;
    let injected = store.inner.clock.is_some();
    let clock_every = CLOCK_EVERY.min(options.recheck_every);
    drop(store.inner.runtime.spawn(async move {
        let mut since_check = Duration::ZERO;
        loop {
            tokio::time::sleep(clock_every).await;
            since_check += clock_every;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let store = RedisStore { inner };
            let mut conn = store.connection();
            if !injected {
                let give_up = store.give_up();
                let _ =
                    tokio::time::timeout_at(give_up, store.inner.time.sample_from(&mut conn)).await;
            }
            if since_check >= options.recheck_every {
                since_check = Duration::ZERO;
                let give_up = store.give_up();
                if let Ok(found) =
                    tokio::time::timeout_at(give_up, checks::evicting_policy(&mut conn)).await
                {
                    eviction_found(&store, found.ok().flatten());
                }
            }
        }
    }));
}

/// Acts on a running check of the eviction policy: `policy` is the evicting one found,
/// or `None` when every primary is `noeviction` again. Says so once per change.
fn eviction_found(store: &RedisStore, policy: Option<String>) {
    let refuse = store.inner.options.eviction_check == EvictionCheck::Refuse;
    let now = match (&policy, refuse) {
        (None, _) => EVICTION_OK,
        (Some(_), false) => EVICTION_WARNED,
        (Some(_), true) => EVICTION_REFUSED,
    };
    // Relaxed: a state read on its own by `RedisStore::guard`.
    let before = store.inner.eviction.swap(now, Ordering::Relaxed);
    if before == now {
        return;
    }
    match policy {
        Some(policy) if refuse => tracing::error!(
            "{}; the store refuses to run on it: every call fails at once (the failure \
             policy answers) until it is `noeviction` again",
            checks::eviction_warning(&policy)
        ),
        Some(policy) => tracing::warn!("{}", checks::eviction_warning(&policy)),
        None => tracing::info!("backstop-redis: maxmemory-policy is `noeviction` again"),
    }
}
