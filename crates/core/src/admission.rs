//! [`Admission`]: the front door. One call per request decides 429, 503 or a place in
//! the queue; one call per job start decides whether a worker may begin it.

mod global;

use std::fmt;
use std::sync::Mutex;
// Shared with the metrics and the sampler thread; outside loom's models.
use std::sync::Arc as StdArc;
use std::time::Duration;

use crate::ConfigError;
use crate::clock::{Clock, QuantaClock};
use crate::decision::{Decision, OverloadReason, RateScope, Refusal, RequestClass, WaitReason};
use crate::jobs::{self, JobPermit, JobSlots, MAX_QUEUE, Priority, QueueGate, QueueTicket};
use crate::limits::Limits;
use crate::metrics::{Metrics, Outcome, Shadowed};
use crate::rate::{KeyedRefusal, KeyedSlidingWindow, Quota, RateLimited, SlidingWindow};
use crate::resources::{ResourceGate, ResourceProbe, Sampler};
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use global::GlobalWindow;

/// The front door of a job-running service.
///
/// Per request, [`admit`](Self::admit) checks in order:
///
/// 1. the rate limit — refused with 429 ([`RateScope::Global`]) and an exact
///    `retry_after`;
/// 2. the queue — refused with 503 `queue_full` when `queue.max` jobs already wait.
///
/// When set up with [`with_per_key`](Self::with_per_key) and asked for a client key,
/// the client's own limit (a
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
    /// The shared rate window.
    global: GlobalWindow<C>,
    retry_after_hint_ns: AtomicU64,
    shadow: AtomicBool,
    queue: QueueGate,
    slots: JobSlots,
    gate: StdArc<ResourceGate<C>>,
    metrics: StdArc<Metrics<C>>,
    /// The optional per-client stage.
    per_key: Option<KeyedSlidingWindow<String, C>>,
    clock: C,
    /// The limits in force. The lock, never taken by a request, also serialises
    /// reconfigurations.
    limits: Mutex<Limits>,
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
    pub fn with_clock(limits: Limits, clock: C) -> Result<Self, ConfigError>
    where
        // The job counters keep a clone of the clock, to time jobs on.
        C: 'static,
    {
        limits.validate()?;
        let quota = limits.rate.quota()?;
        let limiter = SlidingWindow::with_clock(quota, clock.clone());
        let (queue, slots) = jobs::counters_with_times(limits.job_bounds(), {
            let clock = clock.clone();
            move || clock.now_ns()
        })?;
        let gate = StdArc::new(ResourceGate::new(&limits.resources, clock.clone())?);
        let metrics = StdArc::new(Metrics::new(
            queue.clone(),
            slots.clone(),
            StdArc::clone(&gate),
        ));
        metrics.set_rate_limit(quota);
        Ok(Admission {
            global: GlobalWindow::new(limiter),
            retry_after_hint_ns: AtomicU64::new(hint_ns(&limits)),
            shadow: AtomicBool::new(limits.shadow),
            queue,
            slots,
            gate,
            metrics,
            per_key: None,
            clock,
            limits: Mutex::new(limits),
        })
    }

    /// Adds the per-client stage: each client (a key given to [`admit`](Self::admit): an
    /// API key, a tenant, an address) may have `limit` requests per `window` admitted
    /// (checked before the shared rate limit, see [`Admission`]), and at most `max_keys`
    /// clients are tracked at once (see [`KeyedSlidingWindow`] for how clients whose
    /// windows are empty are reclaimed). Per-client overrides go through
    /// [`per_key`](Self::per_key). [`reconfigure`](Self::reconfigure) leaves this stage
    /// as it is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backstop_core::{Admission, Limits, Quota, RequestClass};
    /// use backstop_core::clock::ManualClock;
    ///
    /// let mut limits = Limits::default(); // 30 per minute for everyone together
    /// limits.resources.enabled = false;
    /// let each = Quota::new(2, Duration::from_secs(60))?; // 2 per minute each
    /// let admission = Admission::with_clock(limits, ManualClock::new())?
    ///     .with_per_key(each, 10_000)?;
    ///
    /// let alice = || admission.admit(Some("alice"), RequestClass::Normal);
    /// let _first = alice().into_result().unwrap();
    /// let _second = alice().into_result().unwrap();
    /// let refused = alice().refusal().copied().unwrap();
    /// assert_eq!(refused.status_code(), 429); // alice's own limit...
    /// let bob = admission.admit(Some("bob"), RequestClass::Normal);
    /// assert!(bob.into_result().is_ok()); // ...not bob's
    /// # Ok::<(), backstop_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`KeyedSlidingWindow::new`]: `max_keys` out of range.
    pub fn with_per_key(mut self, quota: Quota, max_keys: usize) -> Result<Self, ConfigError> {
        let keyed = KeyedSlidingWindow::with_clock(quota, max_keys, self.clock.clone())?;
        self.per_key = Some(keyed);
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
        let mut in_force = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let quota = limits.rate.quota()?;
        self.global.reshape(quota)?;
        self.queue.set_bounds(limits.job_bounds())?;
        self.gate.reconfigure(&limits.resources)?;
        self.metrics.set_rate_limit(quota);
        // Relaxed: lone values; a request racing the change is judged by either.
        self.shadow.store(limits.shadow, Ordering::Relaxed);
        self.retry_after_hint_ns
            .store(hint_ns(&limits), Ordering::Relaxed);
        *in_force = limits;
        Ok(())
    }
}

impl<C: Clock> Admission<C> {
    fn retry_after_hint(&self) -> Duration {
        // Relaxed: see `reconfigure`.
        Duration::from_nanos(self.retry_after_hint_ns.load(Ordering::Relaxed))
    }

    /// Decides a request of `class`, from client `key` when there is one: held to the
    /// client's own limit when the per-client stage is set up
    /// ([`with_per_key`](Self::with_per_key)); without a key or without the stage, to the
    /// shared limits only. Exempt requests bypass every stage and are only counted. The
    /// answer [`FrontDoor::admit`](crate::FrontDoor::admit) gives, at once.
    ///
    /// In shadow mode a request that would be refused is admitted anyway and counted in
    /// `shadow_refusals`; the queue then keeps counting past `queue.max`, up to the hard
    /// bound [`MAX_QUEUE`](crate::jobs::MAX_QUEUE), which is enforced even in shadow mode.
    //
    // Inlined into each caller: the call, its register saves and the `Decision` returned
    // through memory cost 2.5-3 ns of a 20 ns admission.
    #[inline]
    pub fn admit(&self, key: Option<&str>, class: RequestClass) -> Decision {
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
        match self.rate_stages(key, shadow) {
            Ok(now_ns) => self.queue_stage(priority, shadow, now_ns),
            Err(refusal) => Decision::Refused(refusal),
        }
    }

    /// [`admit`](Self::admit) for a [`RequestClass::Normal`] request without a client
    /// key: the call of a service that only has shared limits.
    #[inline]
    pub fn try_admit(&self) -> Decision {
        self.admit(None, RequestClass::Normal)
    }

    /// The per-client stage, if set up: to give a client its own limit
    /// ([`KeyedSlidingWindow::set_limit`]) or to reclaim idle clients
    /// ([`KeyedSlidingWindow::retain_recent`]).
    pub fn per_key(&self) -> Option<&KeyedSlidingWindow<String, C>> {
        self.per_key.as_ref()
    }

    /// A stage refused: in shadow mode the refusal is counted as shadowed and the request
    /// goes on (`Ok`); otherwise it is counted and returned.
    #[inline]
    fn refuse_or_shadow(&self, refusal: Refusal, shadow: bool) -> Result<(), Refusal> {
        if shadow {
            self.metrics.count_shadow(Shadowed::Refusal(refusal));
            Ok(())
        } else {
            self.metrics.count(Outcome::Refused(refusal));
            Err(refusal)
        }
    }

    /// The rate stages (429; 503 `too_many_keys`), in the order documented on
    /// [`Admission`]: a request refused by its client's window never reaches the shared
    /// one. A refusal comes back counted; a pass, with the time the stages read (the
    /// ticket's issue time).
    #[inline]
    fn rate_stages(&self, key: Option<&str>, shadow: bool) -> Result<u64, Refusal> {
        let limiter = self.global.current();
        // One clock reading for both rate stages (the per-client limiter shares the
        // clock). Below 2^62 (146 years), so that the global limiter can be sealed for a
        // growth.
        let now_ns = self.clock.now_ns().min(crate::rate::SEALABLE_TIME_NS);
        let mut global_shadowed = false;
        if let (Some(keyed), Some(key)) = (&self.per_key, key) {
            // 1. Would the shared window take it? Asked without charging it, so a client
            //    is not charged for a request the shared window refuses.
            if let Err(limited) = self.global.peek(limiter, now_ns) {
                self.refuse_or_shadow(global_refusal(limited), shadow)?;
                global_shadowed = true;
            }
            // 2. The client's own window (charged), or no room for a new client.
            if let Err(refused) = keyed.try_acquire_at(key, now_ns) {
                self.refuse_or_shadow(self.client_refusal(refused), shadow)?;
            }
        }
        // 3. The shared window (charged). With a client stage, refused here only when
        //    other requests took its last places since step 1.
        match self.global.acquire(limiter, now_ns) {
            // Shadowed in step 1 already: counted once.
            Err(limited) if !global_shadowed => {
                self.refuse_or_shadow(global_refusal(limited), shadow)?
            }
            _ => {}
        }
        Ok(now_ns)
    }

    /// The client's window refused: 429 with its exact wait, or 503 `too_many_keys`.
    #[inline]
    fn client_refusal(&self, refused: KeyedRefusal) -> Refusal {
        match refused {
            KeyedRefusal::RateLimited(limited) => Refusal::RateLimited {
                retry_after: limited.retry_after(),
                scope: RateScope::PerClient,
            },
            KeyedRefusal::TooManyKeys(too_many) => Refusal::Overloaded {
                reason: OverloadReason::TooManyKeys,
                // When a client's window empties; zero while a sweep is running, then
                // the configured hint.
                retry_after_hint: match too_many.retry_after() {
                    Duration::ZERO => self.retry_after_hint(),
                    hint => hint,
                },
            },
        }
    }

    /// The queue (503 `queue_full`); in shadow mode up to [`MAX_QUEUE`] only. A ticket is
    /// issued at `now_ns`, the time the rate stages read: the clock is not read again.
    #[inline]
    fn queue_stage(&self, priority: Priority, shadow: bool, now_ns: u64) -> Decision {
        let ticket = match self.queue.try_enter_at(priority, now_ns) {
            Ok(ticket) => ticket,
            Err(_) => {
                let refusal = Refusal::Overloaded {
                    reason: OverloadReason::QueueFull,
                    retry_after_hint: self.retry_after_hint(),
                };
                if let Err(refusal) = self.refuse_or_shadow(refusal, shadow) {
                    return Decision::Refused(refusal);
                }
                match self.queue.try_enter_below(MAX_QUEUE, now_ns) {
                    Ok(ticket) => ticket,
                    Err(_) => {
                        self.metrics.count(Outcome::Refused(refusal));
                        return Decision::Refused(refusal);
                    }
                }
            }
        };
        self.metrics.count(Outcome::Admitted);
        Decision::Admitted(ticket)
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
                self.metrics.record_wait(reason);
                return Err((ticket, reason));
            }
            self.metrics.count_shadow(Shadowed::Wait(shortage));
        }
        self.slots.try_start(ticket).map_err(|ticket| {
            self.metrics.record_wait(WaitReason::NoFreeSlot);
            (ticket, WaitReason::NoFreeSlot)
        })
    }

    /// Starts a thread that samples `probe` into the resource gate every
    /// `resources.sample_interval` (as configured now). Keep the [`Sampler`]: dropping
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
        let interval = self.limits().resources.sample_interval;
        Sampler::spawn(StdArc::clone(&self.gate), probe, interval)
    }

    /// The shared rate limit in force, read without a lock (what an HTTP layer
    /// advertises in `RateLimit-Policy`). A read racing
    /// [`reconfigure`](Self::reconfigure) may see the old or the new limit.
    pub fn rate_limit(&self) -> Quota {
        self.global.current().quota()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

fn global_refusal(limited: RateLimited) -> Refusal {
    Refusal::RateLimited {
        retry_after: limited.retry_after(),
        scope: RateScope::Global,
    }
}

/// The configured 503 `Retry-After` hint in nanoseconds.
fn hint_ns(limits: &Limits) -> u64 {
    // At most an hour (`Limits::validate`).
    u64::try_from(limits.queue.retry_after_hint.as_nanos()).unwrap_or(u64::MAX)
}
