//! `admission`: [`Admission`] driven through arbitrary sequences of admit (normal,
//! critical, exempt), start job, drop a ticket, drop a permit, finish, reconfigure
//! (valid or not), a resource reading and moving the clock.
//!
//! The reference is the front door's model, [`AdmissionModel`] (the stage order of
//! `backstop_core::model::decide`, the shared and per-client windows, the job
//! counters); the tickets and permits themselves are held here. After every step:
//!
//! - each decision is the model's: 429 with the exact wait and the window that refused,
//!   503 `too_many_keys` (with a hint no later than the first client window emptying)
//!   when the client table is full of live windows, 503 `queue_full` exactly when the
//!   queue is at its bound for the request's priority, admitted otherwise (in shadow mode
//!   always admitted);
//! - `start_job` starts exactly when the gate lets it and a slot is free;
//! - the queue length and running count equal the tickets and permits held, and the
//!   metrics' totals equal what the model counted: nothing leaks, nothing is counted
//!   twice;
//! - a refused reconfiguration changes nothing.
//!
//! At the end everything is dropped and both counters must be back at zero.

use std::time::Duration;

use backstop_core::clock::{Clock, ManualClock};
use backstop_core::jobs::{JobBounds, JobPermit, QueueTicket};
use backstop_core::model::{AdmissionModel, Decided, KeyedModel, Refused};
use backstop_core::resources::ResourceReading;
use backstop_core::{
    Admission, ByteSize, Decision, Limits, MetricsSnapshot, OverloadReason, Quota, Refusal,
    RequestClass, WaitReason,
};

use crate::input::Input;
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
    limits.rate.window = Duration::from_millis(u64::from(input.below(4)) * 500);
    limits.queue.max = u32::from(input.below(6));
    limits.queue.critical_reserve = u32::from(input.below(3));
    limits.queue.retry_after_hint = Duration::from_millis(u64::from(input.u8()) * 10);
    limits.jobs.max = u32::from(input.below(5));
    limits.resources.enabled = input.bool();
    limits.resources.min_available_memory = ByteSize::mib(u64::from(input.below(8)));
    limits.resources.memory_margin = ByteSize::mib(u64::from(input.below(3)));
    limits.resources.min_free_disk = ByteSize(0);
    limits.resources.disk_margin = ByteSize(0);
    limits.resources.sample_interval = Duration::from_millis(100);
    limits.resources.max_sample_age = Duration::from_millis(100 + u64::from(input.below(4)) * 1000);
    limits
}

/// The rate shape and job bounds of `limits`, as the model takes them.
fn shape_and_bounds(limits: &Limits) -> ((u32, u64), JobBounds) {
    let bounds = JobBounds {
        max_queue: limits.queue.max,
        critical_reserve: limits.queue.critical_reserve,
        max_jobs: limits.jobs.max,
    };
    (
        (
            limits.rate.limit,
            u64::try_from(limits.rate.window.as_nanos()).unwrap_or(u64::MAX),
        ),
        bounds,
    )
}

/// One step of an input.
#[derive(Debug)]
enum Op {
    Admit(RequestClass, Option<u8>),
    /// Start the job of the ticket at this place.
    Start(u8),
    DropTicket(u8),
    DropPermit(u8),
    Reconfigure(Limits),
    /// Available memory, MiB.
    Memory(u64),
    /// The clock moves on, ms.
    Advance(u64),
    /// Nothing (a drop or start with nothing held).
    Idle,
}

impl Op {
    /// The next step; bytes for a held ticket or permit are read only when one is held.
    fn decode(input: &mut Input<'_>, run: &Run) -> Op {
        match input.below(12) {
            0..=3 => {
                let class = match input.below(6) {
                    0 => RequestClass::Exempt,
                    1 => RequestClass::Critical,
                    _ => RequestClass::Normal,
                };
                let key = match run.model.clients() {
                    Some(_) => Some(input.below(5)).filter(|&k| k < 4),
                    None => None,
                };
                Op::Admit(class, key)
            }
            4 | 5 if run.tickets.is_empty() => Op::Idle,
            4 | 5 => Op::Start(input.u8()),
            6 if run.tickets.is_empty() => Op::Idle,
            6 => Op::DropTicket(input.u8()),
            7 if run.permits.is_empty() => Op::Idle,
            7 => Op::DropPermit(input.u8()),
            8 => Op::Reconfigure(any_limits(input)),
            9 => Op::Memory(u64::from(input.below(12))),
            _ => Op::Advance(match input.below(4) {
                0 => u64::from(input.u16()),
                n => u64::from(n) * 250,
            }),
        }
    }
}

/// The door under test, its model, and what is held.
struct Run {
    clock: ManualClock,
    admission: Admission<ManualClock>,
    limits: Limits,
    model: AdmissionModel<u8>,
    tickets: Vec<QueueTicket>,
    permits: Vec<JobPermit>,
}

impl Run {
    /// The door of the input's limits (`None` when they are rightly refused), in three
    /// inputs of four with a per-client stage of up to 3 clients per window each.
    fn build(input: &mut Input<'_>) -> Result<Option<Run>, Violation> {
        let clock = ManualClock::new();
        let limits = any_limits(input);
        let admission = match Admission::with_clock(limits.clone(), clock.clone()) {
            Ok(admission) => admission,
            Err(e) => {
                ensure!(limits.validate().is_err(), "valid limits refused: {e}");
                return Ok(None);
            }
        };
        ensure!(
            limits.validate().is_ok(),
            "invalid limits accepted: {limits:?}"
        );
        let (shape, bounds) = shape_and_bounds(&limits);
        let mut model = AdmissionModel::new(shape, bounds);
        model.set_shadow(limits.shadow);
        let admission = if input.below(4) == 0 {
            admission
        } else {
            let limit = 1 + u32::from(input.below(3));
            let window_ms = 250 * (1 + u64::from(input.below(4)));
            let max_keys = 1 + usize::from(input.below(3));
            model = model.with_clients(KeyedModel::new((limit, window_ms * 1_000_000), max_keys));
            Quota::new(limit, Duration::from_millis(window_ms))
                .and_then(|quota| admission.with_per_key(quota, max_keys))
                .map_err(|e| Violation::new(format!("valid per-key limits refused: {e}")))?
        };
        Ok(Some(Run {
            clock,
            admission,
            limits,
            model,
            tickets: Vec::new(),
            permits: Vec::new(),
        }))
    }

    fn apply(&mut self, op: Op) -> Result<(), Violation> {
        match op {
            Op::Admit(class, key) => self.admit(class, key),
            Op::Start(at) => self.start(at),
            Op::DropTicket(at) => {
                let at = usize::from(at) % self.tickets.len();
                drop(self.tickets.swap_remove(at));
                self.model.jobs_mut().leave();
                Ok(())
            }
            Op::DropPermit(at) => {
                let at = usize::from(at) % self.permits.len();
                drop(self.permits.swap_remove(at));
                self.model.jobs_mut().finish();
                Ok(())
            }
            Op::Reconfigure(next) => self.reconfigure(next),
            Op::Memory(mib) => {
                let gate = self.admission.resource_gate();
                gate.observe(ResourceReading::memory_only(mib * MIB));
                ensure!(
                    self.limits.resources.enabled || gate.check().is_ok(),
                    "a disabled gate is closed"
                );
                Ok(())
            }
            Op::Advance(ms) => {
                self.clock.advance(Duration::from_millis(ms));
                Ok(())
            }
            Op::Idle => Ok(()),
        }
    }

    fn admit(&mut self, class: RequestClass, key: Option<u8>) -> Result<(), Violation> {
        let now_ns = self.clock.now_ns();
        let want = self.model.admit(class, key.as_ref(), now_ns);
        let client = key.map(|k| format!("client-{k}"));
        let decision = self.admission.admit(client.as_deref(), class);
        let got = match decision {
            Decision::Admitted(ticket) => {
                self.tickets.push(ticket);
                Decided::Admitted(())
            }
            Decision::Exempt => Decided::Exempt,
            Decision::Refused(refusal) => Decided::Refused(self.observed(refusal, want)?),
        };
        ensure!(
            got == want,
            "{class:?} at {now_ns} ns: {got:?}, model {want:?}"
        );
        Ok(())
    }

    /// A refusal as the model states it; a `too_many_keys` hint within the model's
    /// bound counts as the model's.
    fn observed(&self, refusal: Refusal, want: Decided<(), Refused>) -> Result<Refused, Violation> {
        Ok(match refusal {
            Refusal::RateLimited { retry_after, scope } => Refused::RateLimited {
                wait_ns: nanos(retry_after),
                scope,
            },
            Refusal::Overloaded {
                reason: OverloadReason::QueueFull,
                retry_after_hint,
            } => {
                let hint = self.limits.queue.retry_after_hint;
                ensure!(
                    retry_after_hint == hint,
                    "hint {retry_after_hint:?}, configured {hint:?}"
                );
                Refused::QueueFull
            }
            Refusal::Overloaded {
                reason: OverloadReason::TooManyKeys,
                retry_after_hint,
            } => match (nanos(retry_after_hint), want) {
                (hint_ns, Decided::Refused(Refused::TooManyKeys { latest_ns }))
                    if hint_ns > 0 && hint_ns <= latest_ns =>
                {
                    Refused::TooManyKeys { latest_ns }
                }
                (hint_ns, _) => Refused::TooManyKeys { latest_ns: hint_ns },
            },
            other => return Err(Violation::new(format!("unexpected refusal {other:?}"))),
        })
    }

    fn start(&mut self, at: u8) -> Result<(), Violation> {
        let at = usize::from(at) % self.tickets.len();
        let ticket = self.tickets.swap_remove(at);
        let shadow = self.model.shadow();
        let gate_closed = self.admission.resource_gate().check().is_err();
        let slot_free = self.model.jobs().slot_free();
        match self.admission.start_job(ticket) {
            Ok(permit) => {
                ensure!(!gate_closed || shadow, "job started through a closed gate");
                let jobs = self.model.jobs_mut();
                ensure!(
                    jobs.try_start(),
                    "job started with {} of {} slots taken",
                    jobs.running(),
                    jobs.bounds().max_jobs
                );
                self.permits.push(permit);
            }
            Err((ticket, reason)) => {
                let want_gate = gate_closed && !shadow;
                match reason {
                    WaitReason::Resources(_) => {
                        ensure!(want_gate, "waits on resources with the gate open")
                    }
                    WaitReason::NoFreeSlot => ensure!(
                        !want_gate && !slot_free,
                        "no free slot reported wrongly (gate closed {gate_closed}, slot free {slot_free})"
                    ),
                    other => return Err(Violation::new(format!("unexpected wait {other:?}"))),
                }
                self.tickets.push(ticket);
            }
        }
        Ok(())
    }

    fn reconfigure(&mut self, next: Limits) -> Result<(), Violation> {
        let before = self.admission.limits();
        match self.admission.reconfigure(next.clone()) {
            Ok(()) => {
                ensure!(next.validate().is_ok(), "invalid limits accepted: {next:?}");
                ensure!(
                    self.admission.limits() == next,
                    "limits() is not what was set"
                );
                let (shape, bounds) = shape_and_bounds(&next);
                ensure!(
                    self.model.reconfigure(shape, bounds, next.shadow),
                    "limits the model refuses accepted: {next:?}"
                );
                self.limits = next;
            }
            Err(e) => {
                ensure!(next.validate().is_err(), "valid limits refused: {e}");
                ensure!(
                    self.admission.limits() == before,
                    "a refused reconfigure changed the limits"
                );
            }
        }
        Ok(())
    }

    /// The counters and metrics against the model.
    fn counters_agree(&self) -> Result<(), Violation> {
        let (admission, jobs) = (&self.admission, self.model.jobs());
        let (queued, running) = (self.tickets.len() as u32, self.permits.len() as u32);
        ensure!(
            (queued, running) == (jobs.waiting(), jobs.running()),
            "tickets and permits held {:?}, model {:?}",
            (queued, running),
            (jobs.waiting(), jobs.running())
        );
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
            MetricsSnapshot::by_reason(&m.overloaded_total, "queue_full"),
            MetricsSnapshot::by_reason(&m.overloaded_total, "too_many_keys"),
            m.jobs_started_total,
            m.jobs_finished_total,
            m.queue_depth,
            m.jobs_active,
        );
        let c = self.model.counts();
        let want = (
            c.admitted,
            c.exempt,
            c.rate_limited,
            c.queue_full,
            c.too_many_keys,
            jobs.started(),
            jobs.finished(),
            queued,
            running,
        );
        ensure!(
            seen == want,
            "metrics (admitted, exempt, 429, queue_full, too_many_keys, started, finished, depth, active) = {seen:?}, model {want:?}"
        );
        Ok(())
    }

    /// Everything dropped: both counters back at zero.
    fn finish(mut self) -> Result<(), Violation> {
        let queue = self.admission.queue().clone();
        let slots = self.admission.slots().clone();
        for _ in self.tickets.drain(..) {
            self.model.jobs_mut().leave();
        }
        for _ in self.permits.drain(..) {
            self.model.jobs_mut().finish();
        }
        self.counters_agree()?;
        drop(self.admission);
        ensure!(
            queue.is_empty() && slots.active() == 0,
            "counters leaked: {} queued, {} running",
            queue.len(),
            slots.active()
        );
        Ok(())
    }
}

/// The `admission` check.
///
/// # Errors
///
/// A [`Violation`] where the controller and the model disagree.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let mut input = Input::new(data);
    let Some(mut run) = Run::build(&mut input)? else {
        return Ok(());
    };
    for op in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let step = Op::decode(&mut input, &run);
        run.apply(step)
            .and_then(|()| run.counters_agree())
            .map_err(|v| Violation::new(format!("op {op}: {v}")))?;
    }
    run.finish()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
