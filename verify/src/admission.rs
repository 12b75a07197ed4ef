//! `admission`: [`Admission`] driven through arbitrary sequences of admit (normal,
//! critical, exempt), start job, drop a ticket, drop a permit, finish, reconfigure
//! (valid or not), a resource reading and moving the clock.
//!
//! The model holds the tickets and permits themselves plus plain counters, and a
//! [`WindowModel`] for the rate stage. After every step:
//!
//! - each decision is the model's: 429 with the exact wait (the shared window asked
//!   without charging it, then the client's own window, then the shared one charged), 503 `too_many_keys` when the client table is full of live windows,
//!   503 `queue_full` exactly when the queue is at its bound for the request's priority,
//!   admitted otherwise (in shadow mode always admitted);
//! - `start_job` starts exactly when the gate lets it and a slot is free;
//! - the queue length and running count equal the tickets and permits held, and the
//!   metrics' totals equal what the model counted: nothing leaks, nothing is counted
//!   twice;
//! - a refused reconfiguration changes nothing.
//!
//! At the end everything is dropped and both counters must be back at zero.

use std::time::Duration;

use backstop_core::clock::{Clock, ManualClock};
use backstop_core::jobs::{JobPermit, QueueTicket};
use backstop_core::resources::ResourceReading;
use backstop_core::{
    Admission, Decision, Limits, OverloadReason, Refusal, RequestClass, WaitReason,
};

use crate::input::Input;
use crate::keyed_window::Model as KeyedModel;
use crate::sliding_window::WindowModel;
use crate::{Violation, ensure};

/// The longest sequence of operations one input drives.
pub const MAX_OPS: usize = 2048;

const MIB: u64 = 1 << 20;

/// Small limits, so every bound is reached; sometimes invalid ones.
fn any_limits(input: &mut Input<'_>) -> Limits {
    let mut limits = Limits {
        shadow: input.u8() % 8 == 0,
        ..Limits::default()
    };
    limits.rate.limit = u32::from(input.below(6));
    limits.rate.window_ms = u64::from(input.below(4)) * 500;
    limits.queue.max = u32::from(input.below(6));
    limits.queue.critical_reserve = u32::from(input.below(3));
    limits.queue.retry_after_hint_ms = u64::from(input.u8()) * 10;
    limits.jobs.max = u32::from(input.below(5));
    limits.resources.enabled = input.bool();
    limits.resources.min_available_memory_mib = u64::from(input.below(8));
    limits.resources.memory_margin_mib = u64::from(input.below(3));
    limits.resources.min_free_disk_mib = 0;
    limits.resources.disk_margin_mib = 0;
    limits.resources.sample_interval_ms = 100;
    limits.resources.max_sample_age_ms = 100 + u64::from(input.below(4)) * 1000;
    limits
}

/// What the model expects of one admission.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Admitted,
    Exempt,
    RateLimited(u64),
    /// With the latest `retry_after` allowed: when the first client's window empties.
    TooManyKeys(u64),
    QueueFull,
}

/// The model: tickets and permits held, the rate window, and what metrics must say.
struct Model {
    limits: Limits,
    rate: WindowModel,
    per_key: Option<KeyedModel>,
    tickets: Vec<QueueTicket>,
    permits: Vec<JobPermit>,
    admitted: u64,
    exempt: u64,
    rate_limited: u64,
    queue_full: u64,
    too_many_keys: u64,
    started: u64,
    finished: u64,
}

impl Model {
    fn new(limits: Limits, per_key: Option<KeyedModel>) -> Self {
        Model {
            rate: WindowModel::new(limits.rate.limit, window_ns(&limits)),
            per_key,
            limits,
            tickets: Vec::new(),
            permits: Vec::new(),
            admitted: 0,
            exempt: 0,
            rate_limited: 0,
            queue_full: 0,
            too_many_keys: 0,
            started: 0,
            finished: 0,
        }
    }

    fn decide(&mut self, class: RequestClass, key: Option<u8>, now_ns: u64) -> Expected {
        let queue_bound = match class {
            RequestClass::Exempt => {
                self.exempt += 1;
                return Expected::Exempt;
            }
            RequestClass::Normal => self.limits.queue.max - self.limits.queue.critical_reserve,
            RequestClass::Critical => self.limits.queue.max,
        };
        if let (Some(keyed), Some(key)) = (&mut self.per_key, key) {
            // The client's window first, after asking the shared one without charging it:
            // a request its client's window refuses does not count in the shared one.
            if let Err(wait_ns) = self.rate.clone().try_acquire(now_ns) {
                if !self.limits.shadow {
                    self.rate_limited += 1;
                    return Expected::RateLimited(wait_ns);
                }
            }
            match keyed.try_acquire(key, now_ns) {
                Ok(()) => {}
                Err(_) if self.limits.shadow => {}
                Err(Ok(wait_ns)) => {
                    self.rate_limited += 1;
                    return Expected::RateLimited(wait_ns);
                }
                Err(Err(latest_ns)) => {
                    self.too_many_keys += 1;
                    return Expected::TooManyKeys(latest_ns);
                }
            }
        }
        if let Err(wait_ns) = self.rate.try_acquire(now_ns) {
            if !self.limits.shadow {
                self.rate_limited += 1;
                return Expected::RateLimited(wait_ns);
            }
        }
        // Shadow mode admits up to the hard bound, far above anything reached here.
        if self.tickets.len() as u32 >= queue_bound && !self.limits.shadow {
            self.queue_full += 1;
            return Expected::QueueFull;
        }
        self.admitted += 1;
        Expected::Admitted
    }
}

fn window_ns(limits: &Limits) -> u64 {
    limits.rate.window_ms * 1_000_000
}

/// The `admission` check.
///
/// # Errors
///
/// A [`Violation`] where the controller and the model disagree.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let mut input = Input::new(data);
    let clock = ManualClock::new();
    let limits = any_limits(&mut input);
    let admission = match Admission::with_clock(limits.clone(), clock.clone()) {
        Ok(admission) => admission,
        Err(e) => {
            ensure!(limits.validate().is_err(), "valid limits refused: {e}");
            return Ok(());
        }
    };
    ensure!(
        limits.validate().is_ok(),
        "invalid limits accepted: {limits:?}"
    );
    // The per-client stage in three inputs of four: up to 3 clients per window each.
    let (admission, per_key) = if input.below(4) == 0 {
        (admission, None)
    } else {
        let limit = 1 + u32::from(input.below(3));
        let window_ms = 250 * (1 + u64::from(input.below(4)));
        let max_keys = 1 + usize::from(input.below(3));
        let admission = admission
            .with_per_key(limit, Duration::from_millis(window_ms), max_keys)
            .map_err(|e| Violation::new(format!("valid per-key limits refused: {e}")))?;
        let model = KeyedModel::new((limit, window_ms * 1_000_000), max_keys);
        (admission, Some(model))
    };
    let mut model = Model::new(limits, per_key);

    for op in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let now_ns = clock.now_ns();
        match input.below(12) {
            0..=3 => {
                let class = match input.below(6) {
                    0 => RequestClass::Exempt,
                    1 => RequestClass::Critical,
                    _ => RequestClass::Normal,
                };
                let key = match model.per_key {
                    Some(_) => Some(input.below(5)).filter(|&k| k < 4),
                    None => None,
                };
                let want = model.decide(class, key, now_ns);
                let decision = match key {
                    Some(k) => admission.try_admit_for_as(&format!("client-{k}"), class),
                    None => admission.try_admit_as(class),
                };
                let got = match decision {
                    Decision::Admitted(ticket) => {
                        model.tickets.push(ticket);
                        Expected::Admitted
                    }
                    Decision::Exempt => Expected::Exempt,
                    Decision::Refused(Refusal::RateLimited { retry_after, .. }) => {
                        Expected::RateLimited(
                            u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX),
                        )
                    }
                    Decision::Refused(Refusal::Overloaded {
                        reason: OverloadReason::QueueFull,
                        retry_after_hint,
                    }) => {
                        let hint = Duration::from_millis(model.limits.queue.retry_after_hint_ms);
                        ensure!(
                            retry_after_hint == hint,
                            "op {op}: hint {retry_after_hint:?}, configured {hint:?}"
                        );
                        Expected::QueueFull
                    }
                    Decision::Refused(Refusal::Overloaded {
                        reason: OverloadReason::TooManyKeys,
                        retry_after_hint,
                    }) => {
                        let hint_ns =
                            u64::try_from(retry_after_hint.as_nanos()).unwrap_or(u64::MAX);
                        match want {
                            Expected::TooManyKeys(latest_ns)
                                if hint_ns > 0 && hint_ns <= latest_ns =>
                            {
                                Expected::TooManyKeys(latest_ns)
                            }
                            _ => Expected::TooManyKeys(hint_ns),
                        }
                    }
                    Decision::Refused(other) => {
                        return Err(Violation::new(format!(
                            "op {op}: unexpected refusal {other:?}"
                        )));
                    }
                };
                ensure!(
                    got == want,
                    "op {op}: {class:?} at {now_ns} ns: {got:?}, model {want:?}"
                );
            }
            4 | 5 => {
                if model.tickets.is_empty() {
                    continue;
                }
                let at = usize::from(input.u8()) % model.tickets.len();
                let ticket = model.tickets.swap_remove(at);
                let gate_closed = admission.resource_gate().check().is_err();
                let slot_free = (model.permits.len() as u32) < model.limits.jobs.max;
                match admission.start_job(ticket) {
                    Ok(permit) => {
                        ensure!(
                            !gate_closed || model.limits.shadow,
                            "op {op}: job started through a closed gate"
                        );
                        ensure!(
                            slot_free,
                            "op {op}: job started with {} of {} slots taken",
                            model.permits.len(),
                            model.limits.jobs.max
                        );
                        model.permits.push(permit);
                        model.started += 1;
                    }
                    Err((ticket, reason)) => {
                        let want_gate = gate_closed && !model.limits.shadow;
                        match reason {
                            WaitReason::Resources(_) => {
                                ensure!(want_gate, "op {op}: waits on resources with the gate open")
                            }
                            WaitReason::NoFreeSlot => ensure!(
                                !want_gate && !slot_free,
                                "op {op}: no free slot reported wrongly (gate closed {gate_closed}, slot free {slot_free})"
                            ),
                            other => {
                                return Err(Violation::new(format!(
                                    "op {op}: unexpected wait {other:?}"
                                )));
                            }
                        }
                        model.tickets.push(ticket);
                    }
                }
            }
            6 => {
                if !model.tickets.is_empty() {
                    let at = usize::from(input.u8()) % model.tickets.len();
                    drop(model.tickets.swap_remove(at));
                }
            }
            7 => {
                if !model.permits.is_empty() {
                    let at = usize::from(input.u8()) % model.permits.len();
                    drop(model.permits.swap_remove(at));
                    model.finished += 1;
                }
            }
            8 => {
                let next = any_limits(&mut input);
                let before = admission.limits();
                match admission.reconfigure(next.clone()) {
                    Ok(()) => {
                        ensure!(
                            next.validate().is_ok(),
                            "op {op}: invalid limits accepted: {next:?}"
                        );
                        ensure!(
                            admission.limits() == next,
                            "op {op}: limits() is not what was set"
                        );
                        let (limit, window_ns) = (next.rate.limit, window_ns(&next));
                        if !model.rate.reconfigure(limit, window_ns) {
                            model.rate = model.rate.reconfigured(limit, window_ns);
                        }
                        model.limits = next;
                    }
                    Err(e) => {
                        ensure!(
                            next.validate().is_err(),
                            "op {op}: valid limits refused: {e}"
                        );
                        ensure!(
                            admission.limits() == before,
                            "op {op}: a refused reconfigure changed the limits"
                        );
                    }
                }
            }
            9 => {
                let reading = ResourceReading::memory_only(u64::from(input.below(12)) * MIB);
                admission.resource_gate().observe(reading);
                if !model.limits.resources.enabled {
                    ensure!(
                        admission.resource_gate().check().is_ok(),
                        "op {op}: a disabled gate is closed"
                    );
                }
            }
            _ => {
                let step_ms = match input.below(4) {
                    0 => u64::from(input.u16()),
                    n => u64::from(n) * 250,
                };
                clock.advance(Duration::from_millis(step_ms));
            }
        }
        counters_agree(&admission, &model).map_err(|v| Violation::new(format!("op {op}: {v}")))?;
    }

    let queue = admission.queue().clone();
    let slots = admission.slots().clone();
    model.finished += model.permits.len() as u64;
    model.tickets.clear();
    model.permits.clear();
    counters_agree(&admission, &model)?;
    drop(admission);
    ensure!(
        queue.is_empty() && slots.active() == 0,
        "counters leaked: {} queued, {} running",
        queue.len(),
        slots.active()
    );
    Ok(())
}

/// The counters and metrics against the model.
fn counters_agree(admission: &Admission<ManualClock>, model: &Model) -> Result<(), Violation> {
    let (queued, running) = (model.tickets.len() as u32, model.permits.len() as u32);
    ensure!(
        admission.queue().len() == queued,
        "queue length {}, tickets held {queued}",
        admission.queue().len()
    );
    ensure!(
        admission.slots().active() == running,
        "running {}, permits held {running}",
        admission.slots().active()
    );
    let m = admission.metrics().snapshot();
    let seen = (
        m.admitted_total,
        m.exempt_total,
        m.rate_limited_total,
        backstop_core::MetricsSnapshot::by_reason(&m.overloaded_total, "queue_full"),
        backstop_core::MetricsSnapshot::by_reason(&m.overloaded_total, "too_many_keys"),
        m.jobs_started_total,
        m.jobs_finished_total,
        m.queue_depth,
        m.jobs_active,
    );
    let want = (
        model.admitted,
        model.exempt,
        model.rate_limited,
        model.queue_full,
        model.too_many_keys,
        model.started,
        model.finished,
        queued,
        running,
    );
    ensure!(
        seen == want,
        "metrics (admitted, exempt, 429, queue_full, too_many_keys, started, finished, depth, active) = {seen:?}, model {want:?}"
    );
    Ok(())
}
