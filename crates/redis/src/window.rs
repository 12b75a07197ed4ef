//! [`RedisWindow`] and [`RedisKeyedWindow`]: `SlidingWindow`'s contract, shared by every
//! replica through one Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use tokio::time::Instant;

use backstop_core::clock::{Clock, QuantaClock};
use backstop_core::rate::{KeyedSlidingWindow, SlidingWindow};
use backstop_core::{ConfigError, Quota, RateScope};

use crate::error::StoreError;
use crate::options::FailurePolicy;
use crate::refusal::{Refusal, Source, store_unavailable};
use crate::refused::{Refused, RefusedClients};
use crate::store::{RedisStore, Registry};

/// The largest limit a Redis window accepts: core's [`MAX_LIMIT`](backstop_core::rate::MAX_LIMIT),
/// 2²⁴ admissions. The ring grows one slot per admission (a 128 MiB string only once
/// 2²⁴ admissions are in it), and a decision reads and writes only the slots it needs,
/// so the cost of a decision does not grow with the limit.
pub const MAX_REDIS_LIMIT: u32 = backstop_core::rate::MAX_LIMIT;

/// Keys the in-process fallback of a [`RedisKeyedWindow`] tracks at most.
pub const FALLBACK_MAX_KEYS: usize = 1 << 16;

/// A quota as the store keeps it: the window in microseconds, Redis's `TIME` resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    quota: Quota,
    limit: u32,
    window_us: u64,
}

impl Shape {
    fn new(quota: Quota) -> Result<Self, ConfigError> {
        let window = quota.window();
        // Whole microseconds only: a window that is rounded would no longer be the
        // contract the caller asked for.
        if window.subsec_nanos() % 1000 != 0 {
            return Err(ConfigError::new(
                "window",
                format_args!("must be a whole number of microseconds, got {window:?}"),
            ));
        }
        Ok(Shape {
            quota,
            limit: quota.limit(),
            window_us: u64::try_from(window.as_micros()).unwrap_or(u64::MAX),
        })
    }

    /// This replica's share of the quota, for its in-process fallback window.
    fn local(&self, share: f64) -> Result<Quota, ConfigError> {
        Quota::new(local_limit(self.limit, share), self.quota.window())
    }
}

/// Checks a quota as [`RedisWindow::new`] would (whole microseconds).
pub(crate) fn check_quota(quota: Quota) -> Result<(), ConfigError> {
    Shape::new(quota).map(|_| ())
}

/// The name of a key: one hash tag per script call, so every script touches one slot
/// and runs unchanged on Redis Cluster.
pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 200 || name.contains(['{', '}']) {
        return Err(ConfigError::new(
            "name",
            format_args!("must be 1 to 200 bytes without braces, got {name:?}"),
        ));
    }
    Ok(())
}

fn local_limit(limit: u32, share: f64) -> u32 {
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // At most `limit`, at least 1: a replica alone may still serve someone.
    ((f64::from(limit) * share).floor() as u32).clamp(1, limit)
}

pub(crate) fn fallback_clock(store: &RedisStore) -> Arc<dyn Clock> {
    store
        .inner
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(QuantaClock::new()))
}

/// One exact sliding window shared by every replica: never `limit + 1` admissions in any
/// window `(t − window, t]` of Redis's clock, with an exact `retry_after`.
///
/// # Semantics
///
/// Those of [`backstop_core::rate::SlidingWindow`], decided inside Redis by one script
/// on Redis's own clock (`TIME`), so clock skew between replicas cannot break them.
/// Times are microseconds (Redis's `TIME` resolution): `window` must be whole
/// microseconds, and `retry_after` is exact to the microsecond.
///
/// # Storage
///
/// One string per window, key `{backstop:w:<name>}:window`: a 54-byte header and a ring
/// of 8-byte admission times that grows one slot per admission up to the largest limit
/// the key has had (`lua/layout.lua`); a decision reads and writes only the header and the
/// slots it needs. On Redis's clock the key expires once its newest admission has left
/// the longest window it was used with (never sooner, whoever calls); on an injected
/// clock it has no expiry.
///
/// # Failure
///
/// A call that errs or passes the store's deadline answers by the store's
/// [`FailurePolicy`]: `store_unavailable`, or this replica's share of the limit on an
/// in-process window. Never an admission Redis did not make, beyond that share.
///
/// # Cancel safety
///
/// Dropping the future before it completes may still count an admission in Redis (it
/// was sent): that can only refuse more later, never admit more.
pub struct RedisWindow {
    store: RedisStore,
    key: Arc<str>,
    /// The shape and its fallback, replaced whole by [`reconfigure`](Self::reconfigure).
    state: ArcSwap<WindowState>,
}

/// What a window decides by: its shape, the local window that stands in for Redis under
/// `local_fallback`, and the refusals Redis gave under this shape (a change of shape
/// starts with none: a racing decision's refusal lands in the state it was made by).
struct WindowState {
    shape: Shape,
    fallback: Option<Arc<Fallback<LocalWindow>>>,
    refused: Refused,
}

/// The in-process window of a `local_fallback`.
type LocalWindow = SlidingWindow<Arc<dyn Clock>>;

/// A window's in-process fallback (`local_fallback`): the local window of this
/// replica's share, and until when (the fallback clock, ns) it still has a say after it
/// last decided. For one window after an outage, a decision Redis admits stands only if
/// the local window admits it too (and is counted there): the admissions made locally
/// while Redis was away, which Redis never saw, still hold this replica back.
struct Fallback<W> {
    local: W,
    clock: Arc<dyn Clock>,
    strict_until_ns: AtomicU64,
}

impl<W> Fallback<W> {
    fn new(local: W, clock: Arc<dyn Clock>) -> Self {
        Fallback {
            local,
            clock,
            strict_until_ns: AtomicU64::new(0),
        }
    }

    /// A fallback decision now: the local window has a say for `window` from now.
    fn decided_locally(&self, window: Duration) {
        let until = self
            .clock
            .now_ns()
            .saturating_add(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX));
        // Relaxed: a time read on its own; fetch_max never moves it back.
        self.strict_until_ns.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether the local window still has a say.
    fn strict(&self) -> bool {
        // Relaxed: see `decided_locally`.
        let until = self.strict_until_ns.load(Ordering::Relaxed);
        until != 0 && self.clock.now_ns() < until
    }
}

impl std::fmt::Debug for RedisWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shape = self.state.load().shape;
        f.debug_struct("RedisWindow")
            .field("key", &self.key)
            .field("limit", &shape.limit)
            .field("window_us", &shape.window_us)
            .finish()
    }
}

impl RedisWindow {
    /// A window of `quota`, stored under `{backstop:w:<name>}:window`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `window` (not whole microseconds), `name` or
    /// `failure_policy.share`.
    pub fn new(store: &RedisStore, name: &str, quota: Quota) -> Result<Self, ConfigError> {
        validate_name(name)?;
        let shape = Shape::new(quota)?;
        let policy = store.inner.options.failure_policy;
        policy.validate()?;
        let fallback = match policy {
            FailurePolicy::FailClosed => None,
            FailurePolicy::LocalFallback { share } => Some(Arc::new(Fallback::new(
                SlidingWindow::with_clock(shape.local(share)?, fallback_clock(store)),
                fallback_clock(store),
            ))),
        };
        Ok(RedisWindow {
            store: store.clone(),
            key: format!("{{backstop:w:{name}}}:window").into(),
            state: ArcSwap::from_pointee(WindowState {
                shape,
                fallback,
                refused: Refused::default(),
            }),
        })
    }

    /// Changes the quota from the next decision on, in this process (the
    /// history stays in Redis: lowering the limit takes effect at once, and the key
    /// remembers what the larger of the limits needs; see the crate's README). The
    /// refusal cache is dropped; a `local_fallback` window is reshaped alike (one larger
    /// than it was made for is built anew from what it remembers).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `window` (not whole microseconds); on error nothing
    /// changes.
    pub fn reconfigure(&self, quota: Quota) -> Result<(), ConfigError> {
        let shape = Shape::new(quota)?;
        let current = self.state.load_full();
        let fallback = match (&current.fallback, self.store.inner.options.failure_policy) {
            (Some(fallback), FailurePolicy::LocalFallback { share }) => {
                let local = shape.local(share)?;
                if fallback.local.reconfigure(local).is_ok() {
                    Some(Arc::clone(fallback))
                } else {
                    let grown = Fallback::new(
                        fallback.local.reconfigured(local),
                        Arc::clone(&fallback.clock),
                    );
                    // Relaxed: as in `decided_locally`.
                    grown.strict_until_ns.store(
                        fallback.strict_until_ns.load(Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    Some(Arc::new(grown))
                }
            }
            _ => None,
        };
        self.state.store(Arc::new(WindowState {
            shape,
            fallback,
            refused: Refused::default(),
        }));
        Ok(())
    }

    /// Admits one request, or says exactly when to retry; on a store failure, the policy.
    ///
    /// # Errors
    ///
    /// [`Refusal::RateLimited`], or 503 `store_unavailable` under `fail_closed`.
    pub async fn try_acquire(&self) -> Result<(), Refusal> {
        self.try_acquire_from().await.map(|_| ())
    }

    /// As [`try_acquire`](Self::try_acquire), also saying who decided.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    pub async fn try_acquire_from(&self) -> Result<Source, Refusal> {
        self.acquire_until(self.store.give_up()).await
    }

    /// As [`try_acquire_from`](Self::try_acquire_from), within `give_up` (an admission's
    /// one deadline). A refusal Redis gave holds until its `retry_after` without asking
    /// again (the refusal cache, `crate::refused`).
    pub(crate) async fn acquire_until(&self, give_up: Instant) -> Result<Source, Refusal> {
        let state = self.state.load_full();
        if let Some(refusal) = self.cached_in(&state) {
            return Err(refusal);
        }
        let sent_us = self.store.lease_now_us();
        match self.checked_until(&state.shape, give_up).await {
            Ok(Ok(())) => self
                .after_store_admitted(&state, give_up)
                .await
                .map(|()| Source::Store),
            Ok(Err(refusal)) => {
                state.refused.keep(sent_us, &refusal);
                Err(refusal)
            }
            Err(_) => self.on_failure(&state),
        }
    }

    fn cached_in(&self, state: &WindowState) -> Option<Refusal> {
        let retry_after = state.refused.wait(self.store.lease_now_us())?;
        self.store.inner.metrics.refusal_cached();
        Some(Refusal::RateLimited {
            retry_after,
            scope: RateScope::Global,
        })
    }

    /// The store's own answer: `Err` when Redis failed or passed the deadline, so that
    /// the caller sees the cause. (Counted in the metrics either way; Redis is asked
    /// whatever the refusal cache holds.)
    ///
    /// # Errors
    ///
    /// The [`StoreError`].
    pub async fn try_acquire_checked(&self) -> Result<Result<(), Refusal>, StoreError> {
        let shape = self.state.load().shape;
        self.checked_until(&shape, self.store.give_up()).await
    }

    async fn checked_until(
        &self,
        shape: &Shape,
        give_up: Instant,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let wait_us = self
            .store
            .decide(&self.key, shape.limit, shape.window_us, None, give_up)
            .await?;
        Ok(verdict(wait_us, RateScope::Global))
    }

    /// Redis admitted: within a window after a fallback decision, the local window must
    /// admit too; when it does not, Redis's admission is given back.
    async fn after_store_admitted(
        &self,
        state: &WindowState,
        give_up: Instant,
    ) -> Result<(), Refusal> {
        match &state.fallback {
            Some(fallback) if fallback.strict() => match fallback.local.try_acquire() {
                Ok(()) => Ok(()),
                Err(refused) => {
                    let _ = self.refund(give_up).await;
                    state.refused.forget();
                    Err(Refusal::RateLimited {
                        retry_after: refused.retry_after(),
                        scope: RateScope::Global,
                    })
                }
            },
            _ => Ok(()),
        }
    }

    /// Gives one admission back (`lua/refund.lua`): a later stage refused the request.
    pub(crate) async fn refund(&self, give_up: Instant) -> Result<(), StoreError> {
        let shape = self.state.load().shape;
        refund(&self.store, &self.key, &shape, give_up).await
    }

    /// Whether the window would admit one request now, **without** admitting it (a
    /// read-only script on the same key, so on the same hash slot): `Ok(Ok(()))` when it
    /// would, `Ok(Err(refusal))` with the exact wait when not. What a front door with a
    /// per-client stage asks before charging the client's window.
    ///
    /// # Errors
    ///
    /// The [`StoreError`] when Redis failed or passed the deadline (counted in the
    /// store's metrics).
    pub async fn peek_checked(&self) -> Result<Result<(), Refusal>, StoreError> {
        self.peek_until(self.store.give_up()).await
    }

    /// As [`peek_checked`](Self::peek_checked), within `give_up`, answered by the
    /// refusal cache while a refusal holds (and a refusal it finds kept there).
    pub(crate) async fn peek_until(
        &self,
        give_up: Instant,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let state = self.state.load_full();
        if let Some(refusal) = self.cached_in(&state) {
            return Ok(Err(refusal));
        }
        let shape = state.shape;
        let sent_us = self.store.lease_now_us();
        let mut conn = self.store.connection();
        let mut invocation = crate::scripts::PEEK.key(&*self.key);
        invocation
            .arg(shape.limit)
            .arg(shape.window_us)
            .arg(self.store.now_arg());
        let wait_us: i64 = self
            .store
            .call_until(give_up, &self.key, invocation.invoke_async(&mut conn))
            .await?;
        let verdict = verdict(wait_us, RateScope::Global);
        if let Err(refusal) = &verdict {
            state.refused.keep(sent_us, refusal);
        }
        Ok(verdict)
    }

    fn on_failure(&self, state: &WindowState) -> Result<Source, Refusal> {
        let hint = self.store.inner.options.unavailable_retry_hint;
        match &state.fallback {
            None => Err(store_unavailable(hint)),
            Some(fallback) => {
                self.store.inner.metrics.fallback();
                fallback.decided_locally(state.shape.quota.window());
                fallback
                    .local
                    .try_acquire()
                    .map(|()| Source::LocalFallback)
                    .map_err(|refused| Refusal::RateLimited {
                        retry_after: refused.retry_after(),
                        scope: RateScope::Global,
                    })
            }
        }
    }

    /// The key in Redis.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The quota in force (one value, also while [`reconfigure`](Self::reconfigure)
    /// runs).
    pub fn quota(&self) -> Quota {
        self.state.load().shape.quota
    }
}

/// Gives one admission of the window at `key` back.
async fn refund(
    store: &RedisStore,
    key: &str,
    shape: &Shape,
    give_up: Instant,
) -> Result<(), StoreError> {
    let mut conn = store.connection();
    let mut invocation = crate::scripts::REFUND.key(key);
    invocation
        .arg(shape.limit)
        .arg(shape.window_us)
        .arg(store.now_arg());
    let _: i64 = store
        .call_until(give_up, key, invocation.invoke_async(&mut conn))
        .await?;
    Ok(())
}

/// A script's answer as a decision: 0 admitted, `wait_us` > 0 rate limited for that
/// long, <= -2 too many keys for a keyed name with `max_keys` (until one expires, in
/// `-wait_us - 1`). (-1, a decision that arrived late, is an error before this.)
fn verdict(wait_us: i64, scope: RateScope) -> Result<(), Refusal> {
    let wait = Duration::from_micros(if wait_us < 0 {
        wait_us.unsigned_abs() - 1
    } else {
        wait_us.unsigned_abs()
    });
    match wait_us {
        0 => Ok(()),
        1.. => Err(Refusal::RateLimited {
            retry_after: wait,
            scope,
        }),
        _ => Err(Refusal::Overloaded {
            reason: backstop_core::OverloadReason::TooManyKeys,
            retry_after_hint: wait,
        }),
    }
}

/// A window per client key (API key, tenant, address), all of one shape, shared by every
/// replica: `KeyedSlidingWindow`'s contract on Redis. Each client's window is its own
/// key, `{backstop:kw:<name length>:<name>:<client>}:window`, so clients spread over a
/// cluster's slots and idle clients cost nothing (their key expires). The `w:` / `kw:`
/// prefixes and the name's length keep every (name, client) pair apart from every
/// other, and from every [`RedisWindow`].
pub struct RedisKeyedWindow {
    store: RedisStore,
    name: String,
    shape: Shape,
    /// With `max_keys`: the name's registry of live client keys.
    registry: Option<Registry>,
    /// The refusals Redis gave, per client (`crate::refused`).
    refused: RefusedClients,
    fallback: Option<Fallback<KeyedSlidingWindow<String, Arc<dyn Clock>>>>,
}

impl std::fmt::Debug for RedisKeyedWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyedWindow")
            .field("name", &self.name)
            .field("limit", &self.shape.limit)
            .field("window_us", &self.shape.window_us)
            .finish()
    }
}

/// The largest `max_keys` of a [`RedisKeyedWindow`]: 2²⁴ clients with a live key.
pub const MAX_KEYS: u32 = 1 << 24;

/// The longest client key accepted, in bytes.
pub const MAX_CLIENT_KEY_BYTES: usize = 512;

impl RedisKeyedWindow {
    /// Windows of `quota` for each client of `name`.
    ///
    /// # Errors
    ///
    /// As [`RedisWindow::new`].
    pub fn new(store: &RedisStore, name: &str, quota: Quota) -> Result<Self, ConfigError> {
        validate_name(name)?;
        let shape = Shape::new(quota)?;
        let policy = store.inner.options.failure_policy;
        policy.validate()?;
        let fallback = match policy {
            FailurePolicy::FailClosed => None,
            FailurePolicy::LocalFallback { share } => Some(Fallback::new(
                KeyedSlidingWindow::with_clock(
                    shape.local(share)?,
                    FALLBACK_MAX_KEYS,
                    fallback_clock(store),
                )?,
                fallback_clock(store),
            )),
        };
        Ok(RedisKeyedWindow {
            store: store.clone(),
            name: name.to_owned(),
            shape,
            registry: None,
            refused: RefusedClients::default(),
            fallback,
        })
    }

    /// Bounds the clients of this name with a live key to `max_keys` (1 to
    /// [`MAX_KEYS`]): a new client beyond it is refused with 503 `too_many_keys`, as
    /// core's `KeyedSlidingWindow`, until idle clients' keys expire. Every replica must
    /// use the same bound for the name. The clients' keys then share one hash tag (the
    /// count is kept beside them, in a sorted set of the live keys, updated by the same
    /// script): on Redis Cluster such a name lives on one node, where without a bound
    /// its clients spread over all of them.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `max_keys`.
    pub fn with_max_keys(mut self, max_keys: u32) -> Result<Self, ConfigError> {
        if max_keys == 0 || max_keys > MAX_KEYS {
            return Err(ConfigError::new(
                "max_keys",
                format_args!("must be 1 to {MAX_KEYS}, got {max_keys}"),
            ));
        }
        self.registry = Some(Registry {
            key: format!("{}:clients", self.bounded_tag()).into(),
            max_keys,
        });
        Ok(self)
    }

    /// The hash tag every key of a bounded name shares.
    fn bounded_tag(&self) -> String {
        format!("{{backstop:kn:{}:{}}}", self.name.len(), self.name)
    }

    /// The bound on clients with a live key, when there is one.
    pub fn max_keys(&self) -> Option<u32> {
        self.registry.as_ref().map(|registry| registry.max_keys)
    }

    /// The Redis key of `client`'s window. Braces in the client key become `_` so that
    /// the hash tag stays the first `{…}`; two client keys that differ only there share
    /// one window, which can only refuse more, never admit more. Without `max_keys` each
    /// client has a hash tag of its own (clients spread over a cluster's slots); with
    /// it, the name's tag.
    pub fn key_for(&self, client: &str) -> String {
        let client: String = client
            .chars()
            .map(|c| if c == '{' || c == '}' { '_' } else { c })
            .collect();
        if self.registry.is_some() {
            return format!("{}:c:{client}", self.bounded_tag());
        }
        format!(
            "{{backstop:kw:{}:{}:{client}}}:window",
            self.name.len(),
            self.name
        )
    }

    /// Admits one request from `client`, or says exactly when to retry.
    ///
    /// # Errors
    ///
    /// [`Refusal::RateLimited`]; 503 `store_unavailable` under `fail_closed`; a
    /// client key longer than [`MAX_CLIENT_KEY_BYTES`] is refused as rate limited for
    /// the whole window (it cannot be stored).
    pub async fn try_acquire(&self, client: &str) -> Result<(), Refusal> {
        self.try_acquire_from(client).await.map(|_| ())
    }

    /// As [`try_acquire`](Self::try_acquire), also saying who decided.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    pub async fn try_acquire_from(&self, client: &str) -> Result<Source, Refusal> {
        self.acquire_until(client, self.store.give_up()).await
    }

    /// As [`try_acquire_from`](Self::try_acquire_from), within `give_up` (an
    /// admission's one deadline). A refusal Redis gave `client` holds until its
    /// `retry_after` without asking again (the refusal cache, `crate::refused`).
    pub(crate) async fn acquire_until(
        &self,
        client: &str,
        give_up: Instant,
    ) -> Result<Source, Refusal> {
        if let Some(refusal) = self.cached(client) {
            return Err(refusal);
        }
        let sent_us = self.store.lease_now_us();
        match self.checked_until(client, give_up).await {
            Ok(Ok(())) => self
                .after_store_admitted(client, give_up)
                .await
                .map(|()| Source::Store),
            Ok(Err(refusal)) => {
                if client.len() <= MAX_CLIENT_KEY_BYTES {
                    let now_us = self.store.lease_now_us();
                    self.refused.keep(client, sent_us, now_us, &refusal);
                }
                Err(refusal)
            }
            Err(_) => self.on_failure(client),
        }
    }

    /// The refusal of `client` the cache holds now, if any (counted as answered from
    /// it).
    fn cached(&self, client: &str) -> Option<Refusal> {
        let retry_after = self.refused.wait(client, self.store.lease_now_us())?;
        self.store.inner.metrics.refusal_cached();
        Some(Refusal::RateLimited {
            retry_after,
            scope: RateScope::PerClient,
        })
    }

    /// The store's own answer, as [`RedisWindow::try_acquire_checked`].
    ///
    /// # Errors
    ///
    /// The [`StoreError`].
    pub async fn try_acquire_checked(
        &self,
        client: &str,
    ) -> Result<Result<(), Refusal>, StoreError> {
        self.checked_until(client, self.store.give_up()).await
    }

    /// Redis admitted: within a window after a fallback decision, the local window must
    /// admit too (see [`RedisWindow`]'s); when it does not, Redis's admission is given
    /// back.
    async fn after_store_admitted(&self, client: &str, give_up: Instant) -> Result<(), Refusal> {
        match &self.fallback {
            Some(fallback) if fallback.strict() => match fallback.local.try_acquire(client) {
                Ok(()) => Ok(()),
                Err(refused) if refused.status_code() == 429 => {
                    let _ = self.refund(client, give_up).await;
                    Err(Refusal::RateLimited {
                        retry_after: refused.retry_after(),
                        scope: RateScope::PerClient,
                    })
                }
                // The local table is full of other clients: Redis's word stands.
                Err(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Gives one of `client`'s admissions back (`lua/refund.lua`): a later stage refused
    /// the request.
    pub(crate) async fn refund(&self, client: &str, give_up: Instant) -> Result<(), StoreError> {
        if client.len() > MAX_CLIENT_KEY_BYTES {
            return Ok(());
        }
        let given = refund(&self.store, &self.key_for(client), &self.shape, give_up).await;
        // Whether or not Redis answered: a place may be free again.
        self.refused.forget(client);
        given
    }

    async fn checked_until(
        &self,
        client: &str,
        give_up: Instant,
    ) -> Result<Result<(), Refusal>, StoreError> {
        if client.len() > MAX_CLIENT_KEY_BYTES {
            return Ok(Err(Refusal::RateLimited {
                retry_after: Duration::from_micros(self.shape.window_us),
                scope: RateScope::PerClient,
            }));
        }
        let key: Arc<str> = self.key_for(client).into();
        let wait_us = self
            .store
            .decide(
                &key,
                self.shape.limit,
                self.shape.window_us,
                self.registry.as_ref(),
                give_up,
            )
            .await?;
        Ok(verdict(wait_us, RateScope::PerClient))
    }

    fn on_failure(&self, client: &str) -> Result<Source, Refusal> {
        let hint = self.store.inner.options.unavailable_retry_hint;
        match &self.fallback {
            None => Err(store_unavailable(hint)),
            Some(fallback) => {
                self.store.inner.metrics.fallback();
                fallback.decided_locally(self.shape.quota.window());
                match fallback.local.try_acquire(client) {
                    Ok(()) => Ok(Source::LocalFallback),
                    Err(refused) if refused.status_code() == 429 => Err(Refusal::RateLimited {
                        retry_after: refused.retry_after(),
                        scope: RateScope::PerClient,
                    }),
                    Err(_) => Err(store_unavailable(hint)),
                }
            }
        }
    }

    /// The quota each client's window keeps.
    pub fn quota(&self) -> Quota {
        self.shape.quota
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_validated_by_field() {
        let shape = |ns| Shape::new(Quota::new(1, Duration::from_nanos(ns)).unwrap());
        assert_eq!(shape(1500).unwrap_err().field(), "window");
        assert_eq!(shape(1).unwrap_err().field(), "window");
        assert_eq!(shape(60_000_000_000).unwrap().window_us, 60_000_000);
        assert_eq!(validate_name("a{b").unwrap_err().field(), "name");
        assert!(validate_name("api").is_ok());
    }

    #[test]
    fn a_local_share_is_at_least_one_and_at_most_the_limit() {
        assert_eq!(local_limit(30, 1.0 / 3.0), 10);
        assert_eq!(local_limit(30, 0.0001), 1);
        assert_eq!(local_limit(30, 1.0), 30);
        assert_eq!(local_limit(30, f64::NAN), 1);
    }
}
