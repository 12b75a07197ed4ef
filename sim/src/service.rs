//! The modelled service's admission: `K` replicas of a [`FrontDoor`] (backstop-core's
//! real [`Admission`]: rate limit → queue → job slots behind the resource gate, or a
//! store-backed door shared by every replica) on one [`ManualClock`], each fed resource
//! readings synchronously through a [`FakeProbe`].
//!
//! Requests go to the replicas round-robin in arrival order (see [`Service::try_admit`]).

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::resources::{FakeProbe, GateState, ResourceProbe, ResourceReading, StalePolicy};
use backstop_core::{Admission, Decision, FrontDoor, Limits, Refusal, RequestClass, WaitReason};

use backstop_sim_check::log::{GateReason, OverloadReason};

use crate::config::PerKeyConfig;

/// The gate never sees a reading older than this: the last reading is fed again (same
/// values, current time) before a start when it is older, so that the real gate's
/// staleness rule, meant for a stalled sampler thread, never fires on virtual time.
const REFRESH_NS: u64 = 3_600_000_000_000;

/// Why the service could not answer: the replay cannot go on deterministically.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A door that should answer at once (in process) did not.
    #[error("replica {replica}: the in-process front door did not answer at once")]
    NotReady {
        /// Which replica (0-based).
        replica: u32,
    },
    /// The shared store failed or missed its deadline (`store_unavailable`).
    #[error(
        "replica {replica}: the shared store did not answer ({what}); a replay needs every answer"
    )]
    StoreUnavailable {
        /// Which replica (0-based).
        replica: u32,
        /// What was being asked.
        what: &'static str,
    },
    /// A refusal or wait reason the simulator does not model.
    #[error("replica {replica}: unexpected answer {answer}")]
    Unexpected {
        /// Which replica (0-based).
        replica: u32,
        /// The answer's name.
        answer: &'static str,
    },
}

/// Runs a door's futures to completion on the simulator's one thread.
pub trait Executor {
    /// The future's output, or `None` when this executor cannot finish it.
    fn block_on<F: Future>(&mut self, future: F) -> Option<F::Output>;
}

/// For doors whose futures are ready at once ([`Admission`]'s): polls once, costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Immediate;

impl Executor for Immediate {
    #[inline]
    fn block_on<F: Future>(&mut self, future: F) -> Option<F::Output> {
        let future = pin!(future);
        match future.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    }
}

/// One replica as the simulator drives it: a [`FrontDoor`] whose resource gate the
/// simulator feeds (each replica has its own gate, as each process samples its own
/// machine; the simulator feeds every replica the same readings).
pub trait SimDoor: FrontDoor {
    /// Feeds a reading to the replica's resource gate, at virtual `now_ns`.
    fn observe_at(&self, reading: ResourceReading, now_ns: u64);

    /// The replica's resource gate's verdict at virtual `now_ns`.
    fn gate_state_at(&self, now_ns: u64) -> GateState;

    /// Ends a job: gives its slot back; `false` when that could not be confirmed.
    /// Dropping the permit does it for doors that free at once; a door that frees over
    /// the network waits here until the slot is free, so that the next start at the
    /// same instant sees it.
    fn finish(&self, permit: Self::Permit) -> impl Future<Output = bool> {
        drop(permit);
        std::future::ready(true)
    }

    /// How often, in virtual time, [`renew_at`](Self::renew_at) must run for the door's
    /// tickets and permits to stay held; `None`: never (nothing to renew).
    fn renew_every(&self) -> Option<Duration> {
        None
    }

    /// Renews what is due at virtual `now_ns` (a store's leases on the simulator's
    /// clock); `false` when that failed.
    fn renew_at(&self, now_ns: u64) -> impl Future<Output = bool> {
        let _ = now_ns;
        std::future::ready(true)
    }
}

impl<C: backstop_core::clock::Clock> SimDoor for Admission<C> {
    #[inline]
    fn observe_at(&self, reading: ResourceReading, now_ns: u64) {
        self.resource_gate().observe_at(reading, now_ns);
    }

    #[inline]
    fn gate_state_at(&self, now_ns: u64) -> GateState {
        self.resource_gate().state_at(now_ns)
    }
}

/// A started job's permit, or the ticket back when the job must wait.
pub type Started<D> = Result<Held<<D as FrontDoor>::Permit>, Held<<D as FrontDoor>::Ticket>>;

/// A ticket, or a permit, and the replica that gave it.
#[derive(Debug)]
pub struct Held<T> {
    /// The replica (0-based).
    pub replica: u32,
    /// What it holds.
    pub held: T,
}

/// The answer to one request.
#[derive(Debug)]
pub enum Admit<T> {
    /// Queued: the ticket holds the place.
    Admitted(T),
    /// 429 with the exact wait.
    RateLimited {
        /// Exact retry-after, ns.
        retry_after_ns: u64,
    },
    /// 503.
    Overloaded {
        /// Why.
        reason: OverloadReason,
        /// The service's retry hint, ns.
        retry_after_hint_ns: Option<u64>,
    },
}

/// The limits the simulator runs `limits` with: the gate is fed synchronously, so its
/// staleness rule is set as loose as it goes (and the last reading is fed again, unchanged,
/// once it is an hour old, so the gate never goes stale).
pub fn simulated_limits(limits: &Limits) -> Limits {
    let mut l = limits.clone();
    l.resources.sample_interval = Duration::from_secs(1);
    l.resources.max_sample_age = Duration::from_secs(24 * 3600);
    l.resources.on_stale = StalePolicy::FailClosed;
    l
}

/// Admission state of the modelled service: its replicas.
pub struct Service<D, X> {
    clock: ManualClock,
    replicas: Vec<D>,
    exec: X,
    /// The replica the next request goes to.
    next: usize,
    probe: FakeProbe,
    last_observed_ns: u64,
    closed: Option<GateReason>,
    /// How often, in virtual time, the replicas renew their leases (`None`: they have
    /// none), and the last time they did.
    renew_every_ns: Option<u64>,
    renewed_ns: u64,
}

impl<D: std::fmt::Debug, X> std::fmt::Debug for Service<D, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("replicas", &self.replicas)
            .field("closed", &self.closed)
            .finish()
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One in-process [`Admission`] with `limits` (and a per-client stage when `per_key` is
/// given), on `clock`.
///
/// # Errors
///
/// The limits are invalid.
pub fn in_process(
    limits: &Limits,
    per_key: Option<&PerKeyConfig>,
    clock: &ManualClock,
) -> Result<Admission<ManualClock>, backstop_core::ConfigError> {
    let mut admission = Admission::with_clock(simulated_limits(limits), clock.clone())?;
    if let Some(k) = per_key {
        admission = admission.with_per_key(k.quota()?, k.max_keys)?;
    }
    Ok(admission)
}

impl Service<Admission<ManualClock>, Immediate> {
    /// One in-process replica with `limits` (and a per-client stage when `per_key` is
    /// given), the gate open, the clock at 0.
    ///
    /// # Errors
    ///
    /// The limits are invalid.
    pub fn new(
        limits: &Limits,
        per_key: Option<&PerKeyConfig>,
    ) -> Result<Self, backstop_core::ConfigError> {
        let clock = ManualClock::new();
        let admission = in_process(limits, per_key, &clock)?;
        Ok(Service::with_replicas(clock, vec![admission], Immediate))
    }
}

impl<D: SimDoor, X: Executor> Service<D, X> {
    /// The service made of `replicas` (at least one), all on `clock`, whose futures
    /// `exec` runs.
    ///
    /// # Panics
    ///
    /// When `replicas` is empty (a programming error: callers build at least one).
    pub fn with_replicas(clock: ManualClock, replicas: Vec<D>, exec: X) -> Self {
        assert!(!replicas.is_empty(), "a service has at least one replica");
        let renew_every_ns = replicas
            .iter()
            .filter_map(SimDoor::renew_every)
            .min()
            .map(ns);
        Service {
            renew_every_ns,
            renewed_ns: 0,
            clock,
            replicas,
            exec,
            next: 0,
            probe: FakeProbe::new(ResourceReading {
                available_memory_bytes: u64::MAX,
                free_disk_bytes: None,
                memory_pressure_pct: None,
            }),
            last_observed_ns: 0,
            closed: None,
        }
    }

    /// Moves virtual time to `now_ns`, the replicas renewing their leases on the way at
    /// every `renew_every` (as a running replica's renewal task would on real time):
    /// a quiet stretch of virtual time does not cost a hold its lease.
    fn advance_to(&mut self, now_ns: u64) -> Result<(), ServiceError> {
        if let Some(every) = self.renew_every_ns {
            if self.renewed_ns == 0 {
                self.renewed_ns = now_ns;
            }
            while self.renewed_ns.saturating_add(every) <= now_ns {
                self.renewed_ns += every;
                self.clock.set(Duration::from_nanos(self.renewed_ns));
                for (index, door) in self.replicas.iter().enumerate() {
                    let replica = index as u32;
                    let renewed = self
                        .exec
                        .block_on(door.renew_at(self.renewed_ns))
                        .ok_or(ServiceError::NotReady { replica })?;
                    if !renewed {
                        return Err(ServiceError::StoreUnavailable {
                            replica,
                            what: "renew",
                        });
                    }
                }
            }
        }
        self.clock.set(Duration::from_nanos(now_ns));
        Ok(())
    }

    /// How many replicas.
    pub fn replicas(&self) -> NonZeroU32 {
        NonZeroU32::new(u32::try_from(self.replicas.len()).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN)
    }

    /// Rate limit first (429), then the client's own limit when configured and the
    /// request names its client (429, or 503 `too_many_keys`), then the queue (503), as
    /// the original does.
    ///
    /// The request goes to the next replica round-robin in arrival order: deterministic
    /// whatever the keys are called, every replica sees every K-th request (so
    /// consecutive requests, the ones that race for a window's last place, land on
    /// different replicas: the hardest case for a shared limit), and replicas stay
    /// evenly loaded even when one client sends half the traffic.
    #[inline]
    pub fn try_admit(
        &mut self,
        now_ns: u64,
        key: Option<&str>,
    ) -> Result<Admit<Held<D::Ticket>>, ServiceError> {
        self.advance_to(now_ns)?;
        let index = self.next;
        self.next = if index + 1 == self.replicas.len() {
            0
        } else {
            index + 1
        };
        let replica = index as u32;
        let door = &self.replicas[index];
        let decision = self
            .exec
            .block_on(door.admit(key, RequestClass::Normal))
            .ok_or(ServiceError::NotReady { replica })?;
        Ok(match decision {
            Decision::Admitted(held) => Admit::Admitted(Held { replica, held }),
            Decision::Refused(Refusal::RateLimited { retry_after, .. }) => Admit::RateLimited {
                retry_after_ns: ns(retry_after),
            },
            Decision::Refused(Refusal::Overloaded {
                reason,
                retry_after_hint,
            }) => Admit::Overloaded {
                reason: match reason {
                    backstop_core::OverloadReason::QueueFull => OverloadReason::QueueFull,
                    backstop_core::OverloadReason::TooManyKeys => OverloadReason::TooManyKeys,
                    backstop_core::OverloadReason::StoreUnavailable => {
                        return Err(ServiceError::StoreUnavailable {
                            replica,
                            what: "admit",
                        });
                    }
                    other => {
                        return Err(ServiceError::Unexpected {
                            replica,
                            answer: other.as_str(),
                        });
                    }
                },
                retry_after_hint_ns: Some(ns(retry_after_hint)),
            },
            // Every simulated request is of the normal class.
            Decision::Exempt => {
                return Err(ServiceError::Unexpected {
                    replica,
                    answer: "exempt",
                });
            }
        })
    }

    /// Starts the job holding `ticket`, on the replica that admitted it, if a slot is
    /// free and the gate is open; otherwise gives the ticket back.
    pub fn try_start(
        &mut self,
        now_ns: u64,
        ticket: Held<D::Ticket>,
    ) -> Result<Started<D>, ServiceError> {
        self.advance_to(now_ns)?;
        if now_ns.saturating_sub(self.last_observed_ns) > REFRESH_NS {
            self.feed(now_ns);
        }
        let replica = ticket.replica;
        let door = &self.replicas[replica as usize];
        let started = self
            .exec
            .block_on(door.start_job(ticket.held))
            .ok_or(ServiceError::NotReady { replica })?;
        match started {
            Ok(held) => Ok(Ok(Held { replica, held })),
            Err((held, WaitReason::NoFreeSlot | WaitReason::Resources(_))) => {
                Ok(Err(Held { replica, held }))
            }
            Err((_, WaitReason::StoreUnavailable)) => Err(ServiceError::StoreUnavailable {
                replica,
                what: "start_job",
            }),
            Err((_, other)) => Err(ServiceError::Unexpected {
                replica,
                answer: other.as_str(),
            }),
        }
    }

    /// Ends the job holding `permit` on its replica; its slot is free on return.
    pub fn finish(&mut self, permit: Held<D::Permit>) -> Result<(), ServiceError> {
        let replica = permit.replica;
        let door = &self.replicas[replica as usize];
        let freed = self
            .exec
            .block_on(door.finish(permit.held))
            .ok_or(ServiceError::NotReady { replica })?;
        if freed {
            Ok(())
        } else {
            Err(ServiceError::StoreUnavailable {
                replica,
                what: "finish",
            })
        }
    }

    fn feed(&mut self, now_ns: u64) {
        // The fake probe cannot fail; a failure would keep the last reading, as a sampler does.
        if let Ok(reading) = self.probe.read() {
            for door in &self.replicas {
                door.observe_at(reading, now_ns);
            }
        }
        self.last_observed_ns = now_ns;
    }

    /// A reading reaches every replica's gate at once (no sampler lag in virtual time).
    /// Returns the new state when it changed: `Some(None)` opened, `Some(Some(reason))`
    /// closed. Every gate has had the same readings at the same instants, so they agree;
    /// the first replica's verdict is the service's.
    pub fn observe(
        &mut self,
        now_ns: u64,
        memory_bytes: u64,
        free_disk_bytes: u64,
    ) -> Option<Option<GateReason>> {
        self.probe.set(ResourceReading {
            available_memory_bytes: memory_bytes,
            free_disk_bytes: Some(free_disk_bytes),
            memory_pressure_pct: None,
        });
        self.feed(now_ns);
        // The gate's own verdict, not its raw snapshot: the verdict honours
        // `resources.enabled = false` (a disabled gate never closes).
        let next = match self.replicas[0].gate_state_at(now_ns) {
            GateState::Open => None,
            GateState::LowDisk => Some(GateReason::LowDisk),
            // Low memory; the simulator feeds no pressure reading and refreshes the last
            // reading long before it goes stale, so nothing else can close the gate.
            _ => Some(GateReason::LowMemory),
        };
        let changed = next.is_some() != self.closed.is_some();
        self.closed = next;
        changed.then_some(next)
    }

    /// Whether the gate is open.
    pub fn gate_open(&self) -> bool {
        self.closed.is_none()
    }
}
