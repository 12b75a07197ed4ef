//! The modelled service's admission: backstop-core's real [`Admission`] (rate limit →
//! queue → job slots behind the resource gate) on a [`ManualClock`], fed resource readings
//! synchronously through a [`FakeProbe`].

use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::jobs::{JobPermit, QueueTicket};
use backstop_core::resources::{
    FakeProbe, GateState, ResourceGate, ResourceProbe, ResourceReading, StalePolicy,
};
use backstop_core::{Admission, Decision, Limits, Refusal};

use crate::config::PerKeyConfig;
use crate::log::{GateReason, OverloadReason};

/// The gate never sees a reading older than this: the last reading is fed again (same
/// values, current time) before a start when it is older, so that the real gate's
/// staleness rule, meant for a stalled sampler thread, never fires on virtual time.
const REFRESH_NS: u64 = 3_600_000_000_000;

/// The answer to one request.
#[derive(Debug)]
pub enum Admit {
    /// Queued: the ticket holds the place.
    Admitted(QueueTicket),
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
    l.resources.sample_interval_ms = 1000;
    l.resources.max_sample_age_ms = 24 * 3600 * 1000;
    l.resources.on_stale = StalePolicy::FailClosed;
    l
}

/// Admission state of the modelled service.
pub struct Service {
    clock: ManualClock,
    admission: Admission<ManualClock>,
    probe: FakeProbe,
    last_observed_ns: u64,
    closed: Option<GateReason>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("admission", &self.admission)
            .field("closed", &self.closed)
            .finish()
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Service {
    /// A service with `limits` (and a per-client stage when `per_key` is given), the gate
    /// open, the clock at 0.
    pub fn new(
        limits: &Limits,
        per_key: Option<&PerKeyConfig>,
    ) -> Result<Self, backstop_core::ConfigError> {
        let clock = ManualClock::new();
        let mut admission = Admission::with_clock(simulated_limits(limits), clock.clone())?;
        if let Some(k) = per_key {
            admission = admission.with_per_key(k.limit, k.window, k.max_keys)?;
        }
        Ok(Service {
            clock,
            admission,
            probe: FakeProbe::new(ResourceReading {
                available_memory_bytes: u64::MAX,
                free_disk_bytes: None,
                memory_pressure_pct: None,
            }),
            last_observed_ns: 0,
            closed: None,
        })
    }

    /// Rate limit first (429), then the client's own limit when configured and the
    /// request names its client (429, or 503 `too_many_keys`), then the queue (503), as
    /// the original does.
    #[inline]
    pub fn try_admit(&mut self, now_ns: u64, key: Option<&str>) -> Admit {
        self.clock.set(Duration::from_nanos(now_ns));
        let decision = match key {
            Some(k) => self.admission.try_admit_for(k),
            None => self.admission.try_admit(),
        };
        match decision {
            Decision::Admitted(ticket) => Admit::Admitted(ticket),
            Decision::Refused(Refusal::RateLimited { retry_after, .. }) => Admit::RateLimited {
                retry_after_ns: ns(retry_after),
            },
            Decision::Refused(Refusal::Overloaded {
                reason,
                retry_after_hint,
            }) => Admit::Overloaded {
                reason: match reason {
                    backstop_core::OverloadReason::TooManyKeys => OverloadReason::TooManyKeys,
                    _ => OverloadReason::QueueFull,
                },
                retry_after_hint_ns: Some(ns(retry_after_hint)),
            },
            // Every simulated request is of the normal class.
            Decision::Exempt => unreachable!("normal requests are never exempt"),
        }
    }

    /// Starts the job holding `ticket` if a slot is free and the gate is open; otherwise
    /// gives the ticket back.
    pub fn try_start(
        &mut self,
        now_ns: u64,
        ticket: QueueTicket,
    ) -> Result<JobPermit, QueueTicket> {
        self.clock.set(Duration::from_nanos(now_ns));
        if now_ns.saturating_sub(self.last_observed_ns) > REFRESH_NS {
            self.feed(now_ns);
        }
        self.admission
            .start_job(ticket)
            .map_err(|(ticket, _)| ticket)
    }

    /// Jobs waiting.
    pub fn queued(&self) -> u32 {
        self.admission.queue().len()
    }

    /// Jobs running.
    pub fn running(&self) -> u32 {
        self.admission.slots().active()
    }

    fn gate(&self) -> &ResourceGate<ManualClock> {
        self.admission.resource_gate()
    }

    fn feed(&mut self, now_ns: u64) {
        // The fake probe cannot fail; a failure would keep the last reading, as a sampler does.
        if let Ok(reading) = self.probe.read() {
            self.gate().observe_at(reading, now_ns);
        }
        self.last_observed_ns = now_ns;
    }

    /// A reading reaches the gate at once (no sampler lag in virtual time). Returns the
    /// new state when it changed: `Some(None)` opened, `Some(Some(reason))` closed.
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
        let next = self.gate().snapshot().shortage.map(|s| match s.state() {
            GateState::LowDisk => GateReason::LowDisk,
            _ => GateReason::LowMemory,
        });
        let changed = next.is_some() != self.closed.is_some();
        self.closed = next;
        changed.then_some(next)
    }

    /// Whether the gate is open.
    pub fn gate_open(&self) -> bool {
        self.closed.is_none()
    }
}
