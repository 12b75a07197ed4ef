//! [`Admission`]: the front door. One call per request decides 429, 503 or a place in
//! the queue; one call per job start decides whether a worker may begin it.

use std::fmt;
use std::sync::Mutex;
// Shared with the metrics and the sampler thread; outside loom's models.
use std::sync::Arc as StdArc;
use std::time::Duration;

use crate::ConfigError;
use crate::clock::{Clock, QuantaClock};
use crate::jobs::{self, JobPermit, JobSlots, MAX_QUEUE, Priority, QueueGate, QueueTicket};
use crate::limits::Limits;
use crate::metrics::{Metrics, Outcome};
use crate::rate::{KeyedRefusal, KeyedSlidingWindow, SlidingWindow};
use crate::resources::{ResourceGate, ResourceProbe, Sampler, Shortage};
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Who is asking, which decides what they are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RequestClass {
    /// Held to the rate limit and to the normal share of the queue.
    #[default]
    Normal,
    /// Held to the rate limit, and may use the queue room kept back for it
    /// (`queue.critical_reserve`).
    Critical,
    /// Health checks, admin calls: bypass the rate limit and the queue entirely, and are
    /// only counted.
    Exempt,
}

/// Why a request was refused with 503. The names ([`as_str`](Self::as_str)) are stable,
/// for logs and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverloadReason {
    /// The queue of waiting jobs is full.
    QueueFull,
    /// The per-client stage ([`Admission::with_per_key`]) tracks as many clients as it
    /// may, all with requests still in their windows, and this client is new.
    TooManyKeys,
    /// The shared store that keeps the limits of every replica (Redis) did not answer in
    /// time or failed, and its failure policy is to refuse (`fail_closed`). Only a
    /// [`FrontDoor`](crate::FrontDoor) backed by a store answers it.
    StoreUnavailable,
}

impl OverloadReason {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [OverloadReason; 3] = [
        OverloadReason::QueueFull,
        OverloadReason::TooManyKeys,
        OverloadReason::StoreUnavailable,
    ];

    /// `queue_full`, `too_many_keys` or `store_unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            OverloadReason::QueueFull => "queue_full",
            OverloadReason::TooManyKeys => "too_many_keys",
            OverloadReason::StoreUnavailable => "store_unavailable",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            OverloadReason::QueueFull => 0,
            OverloadReason::TooManyKeys => 1,
            OverloadReason::StoreUnavailable => 2,
        }
    }
}

impl fmt::Display for OverloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rate window refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateScope {
    /// The window all requests share (`rate.limit` per `rate.window_ms`).
    Global,
    /// The client's own window ([`Admission::with_per_key`]).
    PerClient,
}

impl RateScope {
    /// Every scope, in a fixed order (for metrics).
    pub const ALL: [RateScope; 2] = [RateScope::Global, RateScope::PerClient];

    /// `global` or `per_client`: stable, for logs, metrics labels and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            RateScope::Global => "global",
            RateScope::PerClient => "per_client",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            RateScope::Global => 0,
            RateScope::PerClient => 1,
        }
    }
}

impl fmt::Display for RateScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request, with what an HTTP layer needs to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Too many requests in a window (429).
    #[error("rate limited ({scope}): retry after {retry_after:?}")]
    RateLimited {
        /// Exactly when a retry would be admitted, were nothing else admitted meanwhile.
        retry_after: Duration,
        /// Which window refused: the shared one or the client's own.
        scope: RateScope,
    },
    /// The service is full (503).
    #[error("overloaded ({reason}): retry after about {retry_after_hint:?}")]
    Overloaded {
        /// Which bound was reached.
        reason: OverloadReason,
        /// A suggestion (`queue.retry_after_hint_ms`), not a promise.
        retry_after_hint: Duration,
    },
}

impl Refusal {
    /// 429 for [`RateLimited`](Self::RateLimited), 503 for [`Overloaded`](Self::Overloaded).
    pub fn status_code(&self) -> u16 {
        match self {
            Refusal::RateLimited { .. } => 429,
            Refusal::Overloaded { .. } => 503,
        }
    }

    /// How long the client should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        match *self {
            Refusal::RateLimited { retry_after, .. } => retry_after,
            Refusal::Overloaded {
                retry_after_hint, ..
            } => retry_after_hint,
        }
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up, for an HTTP
    /// `Retry-After` header (which cannot say less than a second).
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.retry_after();
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }

    /// `rate_limited`, or the [`OverloadReason`]'s name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Overloaded { reason, .. } => reason.as_str(),
        }
    }
}

/// The answer to [`Admission::try_admit`] (and to any [`FrontDoor`](crate::FrontDoor),
/// whose ticket type is `T`).
#[derive(Debug)]
#[must_use = "an admitted request holds a place in the queue until its ticket is dropped"]
pub enum Decision<T = QueueTicket> {
    /// Passed: the ticket holds the request's place in the queue until a worker starts
    /// it ([`Admission::start_job`]) or it is dropped.
    Admitted(T),
    /// An exempt request: nothing held, nothing to start.
    Exempt,
    /// Refused, with the status and wait to answer.
    Refused(Refusal),
}

impl<T> Decision<T> {
    /// The refusal, if refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Decision::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// `Ok(Some(ticket))` when admitted, `Ok(None)` when exempt, `Err` when refused.
    ///
    /// # Errors
    ///
    /// The [`Refusal`].
    pub fn into_result(self) -> Result<Option<T>, Refusal> {
        match self {
            Decision::Admitted(ticket) => Ok(Some(ticket)),
            Decision::Exempt => Ok(None),
            Decision::Refused(refusal) => Err(refusal),
        }
    }
}

/// Why a queued job may not start yet. The names ([`as_str`](Self::as_str)) are stable.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitReason {
    /// Every job slot is taken.
    #[error("no free job slot")]
    NoFreeSlot,
    /// The resource gate is closed.
    #[error("{0}")]
    Resources(Shortage),
    /// The shared store that keeps the job slots (Redis) did not answer in time or
    /// failed. Only a [`FrontDoor`](crate::FrontDoor) backed by a store answers it.
    #[error("the shared store is unavailable")]
    StoreUnavailable,
}

impl WaitReason {
    /// `no_free_slot`, the shortage's name (`low_memory`, `low_disk`,
    /// `memory_pressure`, `stale`), or `store_unavailable`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WaitReason::NoFreeSlot => "no_free_slot",
            WaitReason::Resources(shortage) => shortage.as_str(),
            WaitReason::StoreUnavailable => "store_unavailable",
        }
    }
}

/// What only reconfiguration and reporting touch, never the request path.
struct Settings<C: Clock> {
    limits: Limits,
    /// Every rate limiter this admission has had, the one in use last. A limiter is
    /// replaced only when a new limit is above its capacity, which at least doubles each
    /// time, so there are at most 25 of them and the old ones together take less memory
    /// than the one in use. Kept to the end: a request may still be reading an old one.
    /// `Arc`s, not boxes: `Admission::limiter` points into them, and moving an `Arc`
    /// (into this Vec, or as the Vec grows) never touches or retags the limiter itself.
    limiters: Vec<StdArc<SlidingWindow<C>>>,
}

/// The front door of a job-running service.
///
/// Per request, [`try_admit`](Self::try_admit) checks in order:
///
/// 1. the rate limit — refused with 429 ([`RateScope::Global`]) and an exact
///    `retry_after`;
/// 2. the queue — refused with 503 `queue_full` when `queue.max` jobs already wait.
///
/// When set up with [`with_per_key`](Self::with_per_key) and asked with
/// [`try_admit_for`](Self::try_admit_for), the client's own limit (a
/// [`KeyedSlidingWindow`]) comes **before** the shared one, so that a client refused by
/// its own window does not use up everyone's:
///
/// 1. would the shared window admit the request now? Asked without charging it; if not,
///    429 ([`RateScope::Global`]), and neither window is charged;
/// 2. the client's own window — 429 ([`RateScope::PerClient`]) with the client's exact
///    `retry_after`, or 503 `too_many_keys` when the client is new and every tracked
///    client still has requests in its window; **the shared window is not charged**;
/// 3. the shared window, charged — 429 ([`RateScope::Global`]) only if other requests
///    took its last places between steps 1 and 3; then, and only then, a request
///    refused by the shared window has used a place in its client's window;
/// 4. the queue, as above.
///
/// Guarantees: every window is exact by itself (never more than its limit in any of its
/// windows); a request refused by its client's window never counts in the shared one;
/// a request refused by the shared window counts in its client's window only when it
/// raced other admissions for the shared window's last places. A request that passes
/// the rate stages and is refused by the queue **still counts in both windows**, as in
/// the original design: a client hammering a full service uses up its own budget and is
/// soon answered 429, which tells it to slow down.
///
/// Per job, a worker calls [`start_job`](Self::start_job): the job starts only when a
/// slot is free and the [`ResourceGate`] is open; otherwise the ticket comes back and the
/// job stays queued. A shortage of memory or disk thus becomes backpressure: jobs wait,
/// the queue fills, and new clients get 503 before the machine falls over.
///
/// Everything on the request path is lock-free. Time comes from the clock `C`, so a
/// simulator drives it with a [`ManualClock`](crate::clock::ManualClock) and feeds the
/// gate with [`ResourceGate::observe`].
///
/// ```
/// use std::time::Duration;
/// use backstop_core::{Admission, Decision, Limits};
/// use backstop_core::clock::ManualClock;
///
/// let mut limits = Limits::default();
/// limits.rate.limit = 2;
/// limits.queue.max = 1;
/// limits.resources.enabled = false;
/// let admission = Admission::with_clock(limits, ManualClock::new())?;
///
/// let Decision::Admitted(ticket) = admission.try_admit() else { panic!("first request") };
/// // The queue holds one: the second request passes the rate limit but gets 503...
/// let refused = admission.try_admit().refusal().copied().unwrap();
/// assert_eq!((refused.status_code(), refused.as_str()), (503, "queue_full"));
/// // ...and still used up the window: the third gets 429.
/// let refused = admission.try_admit().refusal().copied().unwrap();
/// assert_eq!(refused.status_code(), 429);
/// assert_eq!(refused.retry_after(), Duration::from_secs(60));
///
/// let permit = admission.start_job(ticket).expect("a free slot");
/// drop(permit); // the job finished
/// assert_eq!(admission.metrics().snapshot().jobs_finished_total, 1);
/// # Ok::<(), backstop_core::ConfigError>(())
/// ```
pub struct Admission<C: Clock = QuantaClock> {
    /// The rate limiter in use: the last of `settings.limiters`. Read with one load per
    /// request instead of a reference-counted swap, which cost a third of the decision.
    limiter: AtomicPtr<SlidingWindow<C>>,
    retry_after_hint_ns: AtomicU64,
    shadow: AtomicBool,
    queue: QueueGate,
    slots: JobSlots,
    gate: StdArc<ResourceGate<C>>,
    metrics: StdArc<Metrics<C>>,
    /// The optional per-client stage.
    per_key: Option<KeyedSlidingWindow<String, C>>,
    clock: C,
    /// Also serialises reconfigurations.
    settings: Mutex<Settings<C>>,
}

impl Admission<QuantaClock> {
    /// An admission controller with `limits` on the default clock.
    ///
    /// # Errors
    ///
    /// As [`Limits::validate`].
    pub fn new(limits: Limits) -> Result<Self, ConfigError> {
        Self::with_clock(limits, QuantaClock::new())
    }
}

impl<C: Clock + Clone> Admission<C> {
    /// An admission controller with `limits` on `clock` (shared by the rate limiter and
    /// the resource gate).
    ///
    /// # Errors
    ///
    /// As [`Limits::validate`].
    pub fn with_clock(limits: Limits, clock: C) -> Result<Self, ConfigError> {
        limits.validate()?;
        let limiter = StdArc::new(SlidingWindow::with_clock(
            limits.rate.limit,
            limits.rate.window(),
            clock.clone(),
        )?);
        let (queue, slots) = jobs::counters_with_totals(limits.job_bounds())?;
        let gate = StdArc::new(ResourceGate::new(&limits.resources, clock.clone())?);
        let metrics = StdArc::new(Metrics::new(
            queue.clone(),
            slots.clone(),
            StdArc::clone(&gate),
        ));
        Ok(Admission {
            // A shared pointer made without a `&mut`: `limiter()` only ever reads through it.
            limiter: AtomicPtr::new(StdArc::as_ptr(&limiter).cast_mut()),
            retry_after_hint_ns: AtomicU64::new(hint_ns(&limits)),
            shadow: AtomicBool::new(limits.shadow),
            queue,
            slots,
            gate,
            metrics,
            per_key: None,
            clock,
            settings: Mutex::new(Settings {
                limits,
                limiters: vec![limiter],
            }),
        })
    }

    /// Adds the per-client stage: each client (a key given to
    /// [`try_admit_for`](Self::try_admit_for): an API key, a tenant, an address) may have
    /// `limit` requests per `window` admitted (checked before the shared rate limit, see
    /// [`Admission`]), and at most `max_keys` clients are tracked at once (see [`KeyedSlidingWindow`] for how clients
    /// whose windows are empty are reclaimed). Per-client overrides go through
    /// [`per_key`](Self::per_key). [`reconfigure`](Self::reconfigure) leaves this stage
    /// as it is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backstop_core::{Admission, Limits};
    /// use backstop_core::clock::ManualClock;
    ///
    /// let mut limits = Limits::default(); // 30 per minute for everyone together
    /// limits.resources.enabled = false;
    /// let admission = Admission::with_clock(limits, ManualClock::new())?
    ///     .with_per_key(2, Duration::from_secs(60), 10_000)?; // 2 per minute each
    ///
    /// let _first = admission.try_admit_for("alice").into_result().unwrap();
    /// let _second = admission.try_admit_for("alice").into_result().unwrap();
    /// let refused = admission.try_admit_for("alice").refusal().copied().unwrap();
    /// assert_eq!(refused.status_code(), 429); // alice's own limit...
    /// let _bob = admission.try_admit_for("bob").into_result().unwrap(); // ...not bob's
    /// # Ok::<(), backstop_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`KeyedSlidingWindow::new`]: `limit`, `window` or `max_keys` out of range.
    pub fn with_per_key(
        mut self,
        limit: u32,
        window: Duration,
        max_keys: usize,
    ) -> Result<Self, ConfigError> {
        self.per_key = Some(KeyedSlidingWindow::with_clock(
            limit,
            window,
            max_keys,
            self.clock.clone(),
        )?);
        Ok(self)
    }

    /// Applies new limits at once, without dropping tickets or permits and without
    /// forgetting the rate window's history: lowering the rate limit takes effect on the
    /// next request, and raising it again within one window still counts every admission
    /// made meanwhile.
    ///
    /// The rate limiter is changed in place ([`SlidingWindow::reconfigure`]) while the new
    /// limit fits its capacity (the highest limit it has had, rounded up to a power of
    /// two). A limit above that takes a new limiter, by seal, copy, publish: the old one
    /// is closed (one CAS; no admission lands in it afterwards), the new one is built from
    /// its whole final history (see
    /// [Exact under change](SlidingWindow#exact-under-change)) and published; a request
    /// that finds the old one closed spins (with backoff) until the new one is published
    /// and decides there. So no admission racing the growth is lost or counted twice. That
    /// wait, bounded by the copy of the history, is the one place a request can wait for
    /// another thread (the reconfiguring one): growth is not lock-free, everything else
    /// on the request path is. The old limiter is kept (unused) until the admission is
    /// dropped. So memory follows the highest limit ever set, about 16 bytes per unit, twice that at most with the old
    /// limiters; lowering a limit frees nothing.
    ///
    /// A request racing this call may be judged by old and new values of different
    /// limits; every request after it returns sees only the new ones.
    ///
    /// # Errors
    ///
    /// As [`Limits::validate`]; on error nothing changes.
    pub fn reconfigure(&self, limits: Limits) -> Result<(), ConfigError> {
        limits.validate()?;
        let mut settings = self
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (limit, window) = (limits.rate.limit, limits.rate.window());
        let current = settings.limiters.last().expect("made with one limiter");
        if limit > current.capacity() {
            // Seal, copy, publish: after the seal no admission lands in the old limiter,
            // so its history is final and the new one starts from all of it; requests
            // that find it sealed wait for the new one and decide there (`decide`).
            // Validated above, so nothing below fails after the seal.
            let larger = StdArc::new(current.sealed_successor(limit, window)?);
            // Release: a request that loads the pointer sees the limiter fully built.
            self.limiter
                .store(StdArc::as_ptr(&larger).cast_mut(), Ordering::Release);
            settings.limiters.push(larger);
        } else {
            current.reconfigure(limit, window)?;
        }
        self.queue.set_bounds(limits.job_bounds())?;
        self.gate.reconfigure(&limits.resources)?;
        // Relaxed: lone values; a request racing the change is judged by either.
        self.shadow.store(limits.shadow, Ordering::Relaxed);
        self.retry_after_hint_ns
            .store(hint_ns(&limits), Ordering::Relaxed);
        settings.limits = limits;
        Ok(())
    }
}

impl<C: Clock> Admission<C> {
    /// The rate limiter in use.
    #[inline]
    fn limiter(&self) -> &SlidingWindow<C> {
        // Acquire: pairs with the Release store in `reconfigure`, so the limiter behind
        // the pointer is seen fully built.
        let limiter = self.limiter.load(Ordering::Acquire);
        // The pointer is always `Arc::as_ptr` of a limiter in `settings.limiters`, which
        // only grows and is dropped with `self`; an `Arc`'s value never moves, and the
        // pointer was never derived from a `&mut`. Sharing it is sound because
        // `Admission: Sync` needs `C: Sync` (its `clock` field).
        // SAFETY: the pointee outlives `&self` and is only ever used through `&`.
        unsafe { &*limiter }
    }

    /// The limiter that replaced `sealed` (see `reconfigure`): spins until the
    /// reconfiguring thread publishes it. Cold: only requests racing a growth
    /// past the limiter's capacity come here.
    #[cold]
    #[inline(never)]
    fn successor_of(&self, sealed: &SlidingWindow<C>) -> &SlidingWindow<C> {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            let limiter = self.limiter();
            if !std::ptr::eq(limiter, sealed) {
                return limiter;
            }
            backoff.snooze();
        }
    }

    fn retry_after_hint(&self) -> Duration {
        // Relaxed: see `reconfigure`.
        Duration::from_nanos(self.retry_after_hint_ns.load(Ordering::Relaxed))
    }

    /// Decides a [`RequestClass::Normal`] request.
    #[inline]
    pub fn try_admit(&self) -> Decision {
        self.try_admit_as(RequestClass::Normal)
    }

    /// Decides a request of `class`.
    ///
    /// In shadow mode a request that would be refused is admitted anyway and counted in
    /// `shadow_refusals`; the queue then keeps counting past `queue.max`, up to the hard
    /// bound [`MAX_QUEUE`](crate::jobs::MAX_QUEUE), which is enforced even in shadow mode.
    #[inline]
    pub fn try_admit_as(&self, class: RequestClass) -> Decision {
        self.decide(None, class)
    }

    /// Decides a [`RequestClass::Normal`] request of client `key`, held to the client's
    /// own limit when the per-client stage is set up ([`with_per_key`](Self::with_per_key));
    /// without it, as [`try_admit`](Self::try_admit).
    #[inline]
    pub fn try_admit_for(&self, key: &str) -> Decision {
        self.decide(Some(key), RequestClass::Normal)
    }

    /// As [`try_admit_for`](Self::try_admit_for), for a request of `class`. Exempt
    /// requests bypass the per-client stage too.
    pub fn try_admit_for_as(&self, key: &str, class: RequestClass) -> Decision {
        self.decide(Some(key), class)
    }

    /// The per-client stage, if set up: to give a client its own limit
    /// ([`KeyedSlidingWindow::set_limit`]) or to reclaim idle clients
    /// ([`KeyedSlidingWindow::retain_recent`]).
    pub fn per_key(&self) -> Option<&KeyedSlidingWindow<String, C>> {
        self.per_key.as_ref()
    }

    /// One admission in the global window, following the limiter across a growth.
    #[inline]
    fn acquire_global<'a>(
        &'a self,
        mut limiter: &'a SlidingWindow<C>,
        now_ns: u64,
    ) -> Result<(), crate::rate::RateLimited> {
        loop {
            match limiter.try_acquire_from_reading(now_ns) {
                Err(limited) if limiter.refusal_means_sealed(limited) => {
                    limiter = self.successor_of(limiter);
                }
                outcome => return outcome,
            }
        }
    }

    /// Whether the global window would admit a request at `now_ns`, without admitting
    /// it, following the limiter across a growth.
    #[inline]
    fn peek_global<'a>(
        &'a self,
        mut limiter: &'a SlidingWindow<C>,
        now_ns: u64,
    ) -> Result<(), crate::rate::RateLimited> {
        loop {
            match limiter.would_admit_at(now_ns) {
                Err(limited) if limiter.refusal_means_sealed(limited) => {
                    limiter = self.successor_of(limiter);
                }
                outcome => return outcome,
            }
        }
    }

    // Inlined into each front door method: the call, its register saves and the
    // `Decision` returned through memory cost 2.5-3 ns of a 20 ns admission.
    #[inline]
    fn decide(&self, key: Option<&str>, class: RequestClass) -> Decision {
        let priority = match class {
            RequestClass::Exempt => {
                self.metrics.count(Outcome::Exempt);
                return Decision::Exempt;
            }
            RequestClass::Normal => Priority::Normal,
            RequestClass::Critical => Priority::Critical,
        };
        // Relaxed: see `reconfigure`.
        let shadow = self.shadow.load(Ordering::Relaxed);
        let limiter = self.limiter();

        // One clock reading for both rate stages (the per-client limiter shares the clock).
        // Below 2^62 (146 years), so that the global limiter can be sealed for a growth.
        let now_ns = self.clock.now_ns().min(crate::rate::SEALABLE_TIME_NS);

        // The rate stages (429; 503 `too_many_keys`), in the order documented on
        // `Admission`: a request refused by its client's window never reaches the
        // shared one.
        let global_refusal = |limited: crate::rate::RateLimited| Refusal::RateLimited {
            retry_after: limited.retry_after(),
            scope: RateScope::Global,
        };
        let mut shadow_counted_global = false;
        if let (Some(keyed), Some(key)) = (&self.per_key, key) {
            // 1. Would the shared window take it? Asked without charging it, so a client
            //    is not charged for a request the shared window refuses.
            if let Err(limited) = self.peek_global(limiter, now_ns) {
                let refusal = global_refusal(limited);
                if !shadow {
                    self.metrics.count(Outcome::Refused(refusal));
                    return Decision::Refused(refusal);
                }
                self.metrics.count_shadow(refusal.as_str());
                shadow_counted_global = true;
            }
            // 2. The client's own window (charged), or no room for a new client.
            if let Err(refused) = keyed.try_acquire_at(key, now_ns) {
                let refusal = match refused {
                    KeyedRefusal::RateLimited(limited) => Refusal::RateLimited {
                        retry_after: limited.retry_after(),
                        scope: RateScope::PerClient,
                    },
                    KeyedRefusal::TooManyKeys(too_many) => Refusal::Overloaded {
                        reason: OverloadReason::TooManyKeys,
                        // When a client's window empties; zero while a sweep is running,
                        // then the configured hint.
                        retry_after_hint: match too_many.retry_after() {
                            Duration::ZERO => self.retry_after_hint(),
                            hint => hint,
                        },
                    },
                };
                if !shadow {
                    self.metrics.count(Outcome::Refused(refusal));
                    return Decision::Refused(refusal);
                }
                self.metrics.count_shadow(refusal.as_str());
            }
        }
        // 3. The shared window (charged). With a client stage, refused here only when
        //    other requests took its last places since step 1.
        if let Err(limited) = self.acquire_global(limiter, now_ns) {
            let refusal = global_refusal(limited);
            if !shadow {
                self.metrics.count(Outcome::Refused(refusal));
                return Decision::Refused(refusal);
            }
            if !shadow_counted_global {
                self.metrics.count_shadow(refusal.as_str());
            }
        }

        // Stage 3: the queue (503).
        match self.queue.try_enter_as(priority) {
            Ok(ticket) => {
                self.metrics.count(Outcome::Admitted);
                Decision::Admitted(ticket)
            }
            Err(_) => {
                let refusal = Refusal::Overloaded {
                    reason: OverloadReason::QueueFull,
                    retry_after_hint: self.retry_after_hint(),
                };
                if shadow {
                    self.metrics.count_shadow(refusal.as_str());
                    if let Ok(ticket) = self.queue.try_enter_below(MAX_QUEUE) {
                        self.metrics.count(Outcome::Admitted);
                        return Decision::Admitted(ticket);
                    }
                }
                self.metrics.count(Outcome::Refused(refusal));
                Decision::Refused(refusal)
            }
        }
    }

    /// Starts the job of a queued request, if a slot is free and the resource gate is
    /// open (the original `can_start_job`).
    ///
    /// In shadow mode a closed resource gate is counted in `shadow_refusals` and the job
    /// starts anyway; the job slots are always enforced (they are the worker pool).
    ///
    /// # Errors
    ///
    /// The ticket back, still queued, and why the job must wait.
    pub fn start_job(&self, ticket: QueueTicket) -> Result<JobPermit, (QueueTicket, WaitReason)> {
        if let Err(shortage) = self.gate.check() {
            // Relaxed: see `reconfigure`.
            if !self.shadow.load(Ordering::Relaxed) {
                let reason = WaitReason::Resources(shortage);
                self.metrics.count_wait(reason);
                return Err((ticket, reason));
            }
            self.metrics.count_shadow(shortage.as_str());
        }
        self.slots.try_start(ticket).map_err(|ticket| {
            self.metrics.count_wait(WaitReason::NoFreeSlot);
            (ticket, WaitReason::NoFreeSlot)
        })
    }

    /// Starts a thread that samples `probe` into the resource gate every
    /// `resources.sample_interval_ms` (as configured now). Keep the [`Sampler`]: dropping
    /// it stops the thread.
    ///
    /// # Errors
    ///
    /// The OS error when the thread cannot be spawned.
    pub fn spawn_sampler<P>(&self, probe: P) -> std::io::Result<Sampler>
    where
        C: 'static,
        P: ResourceProbe + 'static,
    {
        let interval = self.limits().resources.sample_interval();
        Sampler::spawn(StdArc::clone(&self.gate), probe, interval)
    }

    /// The shared rate limit in force, `(limit, window)`, read without a lock (what an
    /// HTTP layer advertises in `RateLimit-Policy`). A read racing
    /// [`reconfigure`](Self::reconfigure) may see the old or the new limit.
    pub fn rate_limit(&self) -> (u32, Duration) {
        self.limiter().shape()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .limits
            .clone()
    }

    /// The resource gate, to feed readings into ([`ResourceGate::observe`]) or to ask its
    /// [`state`](ResourceGate::state).
    pub fn resource_gate(&self) -> &StdArc<ResourceGate<C>> {
        &self.gate
    }

    /// The queue of waiting jobs.
    pub fn queue(&self) -> &QueueGate {
        &self.queue
    }

    /// The running jobs.
    pub fn slots(&self) -> &JobSlots {
        &self.slots
    }

    /// The counters, for a `/metrics` endpoint.
    pub fn metrics(&self) -> &StdArc<Metrics<C>> {
        &self.metrics
    }

    /// The clock everything here reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> fmt::Debug for Admission<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("queue", &self.queue)
            .field("slots", &self.slots)
            .field("gate", &self.gate.state())
            // Relaxed: see `reconfigure`.
            .field("shadow", &self.shadow.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The configured 503 `Retry-After` hint in nanoseconds.
fn hint_ns(limits: &Limits) -> u64 {
    limits.queue.retry_after_hint_ms.saturating_mul(1_000_000)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Run under Miri (`cargo +nightly miri test -p backstop-core --lib
    /// --no-default-features miri_`), this reads the limiter through the published
    /// pointer after growths that push new limiters into the Vec (moving the old ones as
    /// it reallocates). With the pointer taken from `&mut *box`, Stacked Borrows reported
    /// those reads; from `Arc::as_ptr` they are sound.
    #[test]
    fn miri_the_limiter_pointer_stays_valid_across_growths() {
        let mut limits = Limits::default();
        limits.resources.enabled = false;
        limits.rate.limit = 1;
        let admission = Admission::with_clock(limits.clone(), ManualClock::new()).unwrap();
        let mut admitted = 0;
        for limit in [2, 3, 5, 9] {
            limits.rate.limit = limit;
            admission.reconfigure(limits.clone()).unwrap();
            while let Decision::Admitted(ticket) = admission.try_admit() {
                drop(ticket);
                admitted += 1;
            }
        }
        // Every growth kept every admission: 9 in the window under the last limit.
        assert_eq!(admitted, 9);
        assert_eq!(admission.limiter().limit(), 9);
    }

    #[test]
    fn limiters_are_replaced_only_when_the_capacity_must_double() {
        let mut limits = Limits::default();
        limits.resources.enabled = false;
        limits.rate.limit = 1;
        let admission = Admission::with_clock(limits.clone(), ManualClock::new()).unwrap();
        for limit in (1..=1000).chain((1..=1000).rev()).chain(1..=1000) {
            limits.rate.limit = limit;
            admission.reconfigure(limits.clone()).unwrap();
        }
        let settings = admission.settings.lock().unwrap();
        let capacities: Vec<u32> = settings.limiters.iter().map(|l| l.capacity()).collect();
        assert_eq!(capacities, (0..=10).map(|i| 1 << i).collect::<Vec<u32>>());
        let old: u32 = capacities[..10].iter().sum();
        assert!(
            old < capacities[10],
            "old limiters take less than the one in use"
        );
        assert_eq!(admission.limiter().limit(), 1000);
    }
}
