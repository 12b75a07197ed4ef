//! The modelled service's admission: the real `backstop_core` rate limiter on virtual time,
//! and the queue, job slots and resource gate.
//!
//! Interim seam: until backstop-core's `Admission`/`QueueGate`/`JobSlots`/`ResourceGate`
//! land, the queue and slot counts and the gate are kept here with the semantics those
//! types document; the engine talks only to [`Service`], so swapping them in touches this
//! file alone.

use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::rate::SlidingWindow;

use crate::config::SimConfig;
use crate::log::{GateReason, OverloadReason};

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Queued.
    Admitted,
    /// 429 with the exact wait.
    RateLimited {
        /// Exact retry-after, ns.
        retry_after_ns: u64,
    },
    /// 503.
    Overloaded {
        /// Why.
        reason: OverloadReason,
        /// A hint, if the service offers one.
        retry_after_hint_ns: Option<u64>,
    },
}

/// Resource thresholds with hysteresis.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    min_memory_bytes: u64,
    memory_reopen_bytes: u64,
    min_disk_bytes: u64,
    disk_reopen_bytes: u64,
}

/// Admission state of the modelled service.
#[derive(Debug)]
pub struct Service {
    clock: ManualClock,
    limiter: SlidingWindow<ManualClock>,
    max_queue: u32,
    queued: u32,
    job_slots: u32,
    running: u32,
    thresholds: Thresholds,
    memory_bytes: u64,
    free_disk_bytes: u64,
    closed: Option<GateReason>,
}

impl Service {
    /// A service with `config`'s limits, the gate open, the clock at 0.
    pub fn new(config: &SimConfig) -> Result<Self, backstop_core::ConfigError> {
        let l = &config.limits;
        let clock = ManualClock::new();
        let limiter = SlidingWindow::with_clock(l.rate_limit, l.rate_window, clock.clone())?;
        Ok(Service {
            clock,
            limiter,
            max_queue: l.max_queue,
            queued: 0,
            job_slots: l.job_slots,
            running: 0,
            thresholds: Thresholds {
                min_memory_bytes: l.min_memory_bytes,
                memory_reopen_bytes: l.min_memory_bytes.saturating_add(l.memory_margin_bytes),
                min_disk_bytes: l.min_disk_bytes,
                disk_reopen_bytes: l.min_disk_bytes.saturating_add(l.disk_margin_bytes),
            },
            memory_bytes: u64::MAX,
            free_disk_bytes: config.disk.capacity_bytes,
            closed: None,
        })
    }

    /// Rate limit first (429), then the queue (503), as the original does. A request the
    /// limiter passed still counts in its window when the queue refuses it.
    #[inline]
    pub fn try_admit(&mut self, now_ns: u64) -> Admit {
        self.clock.set(Duration::from_nanos(now_ns));
        if let Err(e) = self.limiter.try_acquire() {
            return Admit::RateLimited {
                retry_after_ns: e.retry_after().as_nanos() as u64,
            };
        }
        if self.queued >= self.max_queue {
            return Admit::Overloaded {
                reason: OverloadReason::QueueFull,
                retry_after_hint_ns: None,
            };
        }
        self.queued += 1;
        Admit::Admitted
    }

    /// Turns the oldest queued job into a running one, if a slot is free and the gate is
    /// open.
    pub fn try_start(&mut self) -> bool {
        if self.queued == 0 || self.running >= self.job_slots || self.closed.is_some() {
            return false;
        }
        self.queued -= 1;
        self.running += 1;
        true
    }

    /// A running job ended.
    pub fn finish(&mut self) {
        debug_assert!(self.running > 0);
        self.running -= 1;
    }

    /// Jobs waiting.
    pub fn queued(&self) -> u32 {
        self.queued
    }

    /// Jobs running.
    pub fn running(&self) -> u32 {
        self.running
    }

    /// Feeds the gate a reading at once (no sampler lag in virtual time). Returns the new
    /// state when it changed: `Some(None)` opened, `Some(Some(reason))` closed.
    pub fn observe(
        &mut self,
        memory_bytes: u64,
        free_disk_bytes: u64,
    ) -> Option<Option<GateReason>> {
        self.memory_bytes = memory_bytes;
        self.free_disk_bytes = free_disk_bytes;
        let t = self.thresholds;
        let short = if memory_bytes < t.min_memory_bytes {
            Some(GateReason::LowMemory)
        } else if free_disk_bytes < t.min_disk_bytes {
            Some(GateReason::LowDisk)
        } else {
            None
        };
        let next = match (self.closed, short) {
            (_, Some(r)) => Some(r),
            // Closed: reopen only when every reading clears threshold + margin.
            (Some(r), None)
                if memory_bytes < t.memory_reopen_bytes
                    || free_disk_bytes < t.disk_reopen_bytes =>
            {
                Some(r)
            }
            (_, None) => None,
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
