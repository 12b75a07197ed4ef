//! Lock-free counters of every admission outcome.
//!
//! The counters stay plain atomics on the admit path; the exporters in `metrics_export`
//! (a prometheus-client collector, the `metrics` facade) read them when scraped.

use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::clock::{Clock, QuantaClock};
use crate::decision::{Decision, OverloadReason, RateScope, Refusal, WaitReason};
use crate::histogram::HistogramSnapshot;
use crate::jobs::{JobSlots, QueueGate};
use crate::rate::Quota;
use crate::resources::{GateState, GateThresholds, ResourceGate, ResourceSnapshot, Shortage};
use crate::sync::{AtomicU64, Ordering};

// The labels below come from the enums themselves (`OverloadReason::ALL`,
// `GateState::ALL`, ...), and each `*_index` maps a value to the position of its label,
// so that a new reason gets its own counter and its own name.

/// A shortage's position among the shortage labels: every gate state but `open`.
const SHORTAGES: usize = GateState::ALL.len() - 1;
const _: () = assert!(GateState::Open.index() == 0);

fn shortage_index(shortage: Shortage) -> usize {
    shortage.state().index() - 1
}

fn shortage_labels() -> impl Iterator<Item = &'static str> {
    GateState::ALL[1..].iter().map(|state| state.as_str())
}

/// Labels of `backstop_shadow_refusals_total`: `rate_limited`, every overload reason,
/// every shortage.
const SHADOW_REASONS: usize = 1 + OverloadReason::ALL.len() + SHORTAGES;

fn shadow_labels() -> impl Iterator<Item = &'static str> {
    std::iter::once(Refusal::RATE_LIMITED)
        .chain(OverloadReason::ALL.iter().map(|reason| reason.as_str()))
        .chain(shortage_labels())
}

/// What shadow mode let through: a refusal, or a job start the resource gate held.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shadowed {
    Refusal(Refusal),
    Wait(Shortage),
}

impl Shadowed {
    fn index(self) -> usize {
        match self {
            Shadowed::Refusal(Refusal::RateLimited { .. }) => 0,
            Shadowed::Refusal(Refusal::Overloaded { reason, .. }) => 1 + reason.index(),
            Shadowed::Wait(shortage) => 1 + OverloadReason::ALL.len() + shortage_index(shortage),
        }
    }

    #[cfg(feature = "tracing")]
    fn as_str(self) -> &'static str {
        match self {
            Shadowed::Refusal(refusal) => refusal.as_str(),
            Shadowed::Wait(shortage) => shortage.as_str(),
        }
    }
}

/// Labels of `backstop_job_waits_total`: `no_free_slot`, every shortage,
/// `store_unavailable`.
const WAIT_REASONS: usize = 1 + SHORTAGES + 1;

fn wait_labels() -> impl Iterator<Item = &'static str> {
    std::iter::once(WaitReason::NoFreeSlot.as_str())
        .chain(shortage_labels())
        .chain(std::iter::once(WaitReason::StoreUnavailable.as_str()))
}

fn wait_index(reason: WaitReason) -> usize {
    match reason {
        WaitReason::NoFreeSlot => 0,
        WaitReason::Resources(shortage) => 1 + shortage_index(shortage),
        WaitReason::StoreUnavailable => 1 + SHORTAGES,
    }
}

/// What one admission decision counts as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Admitted,
    Exempt,
    Refused(Refusal),
}

/// The counters of a front door: outcomes per reason, and live views of its queue, job
/// slots and resource gate. Every [`FrontDoor`](crate::FrontDoor) counts into one, so
/// that every door exports the same families: [`Admission`](crate::Admission) into its
/// own, a door outside this crate (`backstop_redis::RedisAdmission`) with
/// [`record`](Self::record) and [`record_wait`](Self::record_wait).
///
/// Counting is one relaxed atomic add per decision, each counter on its own cache line
/// (threads admitting at once would otherwise fight over one line for every count).
pub struct Metrics<C: Clock = QuantaClock> {
    admitted: CachePadded<AtomicU64>,
    exempt: CachePadded<AtomicU64>,
    rate_limited: CachePadded<AtomicU64>,
    rate_limited_by_scope: [CachePadded<AtomicU64>; RateScope::ALL.len()],
    overloaded: [CachePadded<AtomicU64>; OverloadReason::ALL.len()],
    shadow_refusals: [CachePadded<AtomicU64>; SHADOW_REASONS],
    job_waits: [CachePadded<AtomicU64>; WAIT_REASONS],
    /// The global rate limit in force and its window (0: not told), for the budget
    /// gauges.
    rate_limit: AtomicU64,
    rate_window_ns: AtomicU64,
    queue: QueueGate,
    slots: JobSlots,
    gate: StdArc<ResourceGate<C>>,
}

fn counter() -> CachePadded<AtomicU64> {
    CachePadded::new(AtomicU64::new(0))
}

fn bump(counter: &AtomicU64) {
    // Relaxed: counters are statistics, read for reporting; no other memory hangs on them.
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    // Relaxed: see `bump`.
    counter.load(Ordering::Relaxed)
}

impl<C: Clock> Metrics<C> {
    /// Counters whose gauges read `queue`, `slots` (made by
    /// [`jobs::counters_with_totals`](crate::jobs::counters_with_totals), for the started
    /// and finished totals) and `gate`. A door whose queue and slots live elsewhere gives
    /// this replica's share of them: the tickets and permits it holds.
    pub fn new(queue: QueueGate, slots: JobSlots, gate: StdArc<ResourceGate<C>>) -> Self {
        Metrics {
            admitted: counter(),
            exempt: counter(),
            rate_limited: counter(),
            rate_limited_by_scope: std::array::from_fn(|_| counter()),
            overloaded: std::array::from_fn(|_| counter()),
            shadow_refusals: std::array::from_fn(|_| counter()),
            job_waits: std::array::from_fn(|_| counter()),
            rate_limit: AtomicU64::new(0),
            rate_window_ns: AtomicU64::new(0),
            queue,
            slots,
            gate,
        }
    }

    /// Tells the metrics the global rate limit in force, which `backstop_rate_limit` and
    /// `backstop_rate_window_seconds` report, so that a dashboard can show the share of
    /// the budget spent. [`Admission`](crate::Admission) calls it when made and when
    /// reconfigured; another door when its limit is set.
    pub fn set_rate_limit(&self, quota: Quota) {
        // Relaxed: two gauges read at scrape time; a scrape racing a change may pair the
        // old limit with the new window for one reading.
        self.rate_limit
            .store(u64::from(quota.limit()), Ordering::Relaxed);
        self.rate_window_ns.store(
            u64::try_from(quota.window().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts one decision (and, with the `tracing` feature, logs it at `trace` level
    /// with its reason, under the target `backstop_core::admission`).
    #[inline]
    pub(crate) fn count(&self, outcome: Outcome) {
        #[cfg(feature = "tracing")]
        trace_decision(outcome);
        match outcome {
            Outcome::Admitted => bump(&self.admitted),
            Outcome::Exempt => bump(&self.exempt),
            Outcome::Refused(Refusal::RateLimited { scope, .. }) => {
                bump(&self.rate_limited);
                bump(&self.rate_limited_by_scope[scope.index()]);
            }
            Outcome::Refused(Refusal::Overloaded { reason, .. }) => {
                bump(&self.overloaded[reason.index()])
            }
        }
    }

    /// Counts what shadow mode let through.
    pub(crate) fn count_shadow(&self, shadowed: Shadowed) {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "backstop_core::admission",
            decision = "shadow_refusal",
            reason = shadowed.as_str(),
            "shadow mode let a refusal through"
        );
        bump(&self.shadow_refusals[shadowed.index()]);
    }

    /// Counts a decision made by a door outside this crate, as [`Admission`]'s own are
    /// counted (and traced, with the `tracing` feature).
    ///
    /// [`Admission`]: crate::Admission
    #[inline]
    pub fn record<T>(&self, decision: &Decision<T>) {
        self.count(match decision {
            Decision::Admitted(_) => Outcome::Admitted,
            Decision::Exempt => Outcome::Exempt,
            Decision::Refused(refusal) => Outcome::Refused(*refusal),
        });
    }

    /// Counts a refusal shadow mode let through, for a door outside this crate (as
    /// [`Admission`]'s own are counted).
    ///
    /// [`Admission`]: crate::Admission
    pub fn record_shadowed(&self, refusal: Refusal) {
        self.count_shadow(Shadowed::Refusal(refusal));
    }

    /// Counts a closed resource gate shadow mode let a job start past, for a door outside
    /// this crate.
    pub fn record_shadowed_wait(&self, shortage: crate::resources::Shortage) {
        self.count_shadow(Shadowed::Wait(shortage));
    }

    /// Counts a job that could not start yet, and why.
    pub fn record_wait(&self, reason: WaitReason) {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "backstop_core::admission",
            decision = "job_waits",
            reason = reason.as_str(),
            "a queued job cannot start yet"
        );
        bump(&self.job_waits[wait_index(reason)]);
    }

    /// Every counter and gauge now. Each value is exact at some moment during the call;
    /// different values may come from slightly different moments.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let bounds = self.queue.bounds();
        let now_ns = self.gate.clock().now_ns();
        let resources = self.gate.snapshot();
        MetricsSnapshot {
            admitted_total: read(&self.admitted),
            exempt_total: read(&self.exempt),
            rate_limited_total: read(&self.rate_limited),
            rate_limited_by_scope_total: RateScope::ALL
                .iter()
                .map(|s| (s.as_str(), read(&self.rate_limited_by_scope[s.index()])))
                .collect(),
            overloaded_total: OverloadReason::ALL
                .iter()
                .map(|r| (r.as_str(), read(&self.overloaded[r.index()])))
                .collect(),
            shadow_refusals_total: shadow_labels()
                .zip(&self.shadow_refusals)
                .map(|(l, c)| (l, read(c)))
                .collect(),
            job_waits_total: wait_labels()
                .zip(&self.job_waits)
                .map(|(l, c)| (l, read(c)))
                .collect(),
            // Made with totals (see `new`).
            jobs_started_total: self.slots.started_total().unwrap_or(0),
            jobs_finished_total: self.slots.finished_total().unwrap_or(0),
            queue_depth: self.queue.len(),
            queue_max: bounds.max_queue,
            jobs_active: self.slots.active(),
            jobs_max: bounds.max_jobs,
            // `None` until told, or if a scrape raced the first telling.
            rate_limit: u32::try_from(read(&self.rate_limit))
                .ok()
                .and_then(|limit| {
                    Quota::new(limit, Duration::from_nanos(read(&self.rate_window_ns))).ok()
                }),
            queue_waits: self.slots.queue_waits(),
            run_times: self.slots.run_times(),
            thresholds: self.gate.thresholds(),
            gate_state: self.gate.state_at(now_ns),
            resource_sample_age_ns: now_ns.saturating_sub(resources.taken_at_ns),
            resources,
            resource_readings_total: self.gate.readings_total(),
            probe_failures_total: self.gate.probe_failures_total(),
        }
    }
}

/// One admission decision at `trace` level: what was decided and why.
#[cfg(feature = "tracing")]
#[inline]
fn trace_decision(outcome: Outcome) {
    const TARGET: &str = "backstop_core::admission";
    match outcome {
        Outcome::Admitted => tracing::trace!(target: TARGET, decision = "admitted", "admitted"),
        Outcome::Exempt => tracing::trace!(target: TARGET, decision = "exempt", "exempt"),
        Outcome::Refused(refusal) => {
            let (status, retry_after) = match refusal {
                Refusal::RateLimited { retry_after, .. } => (429u16, retry_after),
                Refusal::Overloaded {
                    retry_after_hint, ..
                } => (503, retry_after_hint),
            };
            tracing::trace!(
                target: TARGET,
                decision = "refused",
                reason = refusal.as_str(),
                status,
                retry_after_ms = retry_after.as_millis() as u64,
                "refused"
            );
        }
    }
}

impl<C: Clock> fmt::Debug for Metrics<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// The values of [`Metrics`] at one call.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Requests given a queue ticket.
    pub admitted_total: u64,
    /// Exempt requests.
    pub exempt_total: u64,
    /// Requests refused with 429.
    pub rate_limited_total: u64,
    /// The same, by the window that refused (`global`, `per_client`).
    pub rate_limited_by_scope_total: Vec<(&'static str, u64)>,
    /// Requests refused with 503, by reason (`queue_full`, `too_many_keys`).
    pub overloaded_total: Vec<(&'static str, u64)>,
    /// Refusals and waits that shadow mode let through, by reason.
    pub shadow_refusals_total: Vec<(&'static str, u64)>,
    /// Times a job could not start yet, by reason (`no_free_slot`, `low_memory`, …).
    pub job_waits_total: Vec<(&'static str, u64)>,
    /// Jobs started.
    pub jobs_started_total: u64,
    /// Jobs finished.
    pub jobs_finished_total: u64,
    /// Jobs waiting now.
    pub queue_depth: u32,
    /// The queue bound.
    pub queue_max: u32,
    /// Jobs running now.
    pub jobs_active: u32,
    /// The job slot bound.
    pub jobs_max: u32,
    /// The global rate limit and its window, when the door told them
    /// ([`Metrics::set_rate_limit`]).
    pub rate_limit: Option<Quota>,
    /// How long started jobs waited in the queue, when the job counters time them
    /// ([`jobs::counters_with_times`](crate::jobs::counters_with_times)).
    pub queue_waits: Option<HistogramSnapshot>,
    /// How long finished jobs ran, likewise.
    pub run_times: Option<HistogramSnapshot>,
    /// The resource gate's thresholds.
    pub thresholds: GateThresholds,
    /// The resource gate's state now.
    pub gate_state: GateState,
    /// The last resource decision and reading.
    pub resources: ResourceSnapshot,
    /// Age of that reading, in nanoseconds.
    pub resource_sample_age_ns: u64,
    /// Readings fed to the gate.
    pub resource_readings_total: u64,
    /// Failed probe reads.
    pub probe_failures_total: u64,
}

impl MetricsSnapshot {
    /// The count for `reason` in one of the by-reason lists (0 if absent).
    pub fn by_reason(list: &[(&'static str, u64)], reason: &str) -> u64 {
        list.iter()
            .find(|(l, _)| *l == reason)
            .map_or(0, |(_, v)| *v)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shortages() -> [Shortage; SHORTAGES] {
        [
            Shortage::Memory {
                available_bytes: 0,
                required_bytes: 1,
            },
            Shortage::Disk {
                free_bytes: 0,
                required_bytes: 1,
            },
            Shortage::MemoryPressure {
                some_avg10_pct: 1.0,
                max_pct: 0.0,
            },
            Shortage::Stale {
                age: Duration::ZERO,
                max_age: Duration::ZERO,
            },
        ]
    }

    /// Every value lands on the counter that carries its own name, and every counter
    /// has a value.
    fn assert_one_to_one(labels: &[&str], named: &[(usize, &str)]) {
        let mut positions: Vec<usize> = named.iter().map(|(at, _)| *at).collect();
        positions.sort_unstable();
        assert_eq!(
            positions,
            (0..labels.len()).collect::<Vec<_>>(),
            "{labels:?}"
        );
        for (at, name) in named {
            assert_eq!(labels[*at], *name);
        }
    }

    #[test]
    fn every_shadowed_refusal_and_wait_has_its_own_label() {
        let labels: Vec<_> = shadow_labels().collect();
        assert_eq!(labels.len(), SHADOW_REASONS);
        let mut named = vec![];
        let limited = Refusal::RateLimited {
            retry_after: Duration::ZERO,
            scope: RateScope::PerClient,
        };
        named.push((Shadowed::Refusal(limited).index(), limited.as_str()));
        for reason in OverloadReason::ALL {
            let refusal = Refusal::Overloaded {
                reason,
                retry_after_hint: Duration::ZERO,
            };
            named.push((Shadowed::Refusal(refusal).index(), reason.as_str()));
        }
        for shortage in shortages() {
            named.push((Shadowed::Wait(shortage).index(), shortage.as_str()));
        }
        assert_one_to_one(&labels, &named);
    }

    #[test]
    fn every_wait_reason_has_its_own_label() {
        let labels: Vec<_> = wait_labels().collect();
        assert_eq!(labels.len(), WAIT_REASONS);
        let reasons = [WaitReason::NoFreeSlot, WaitReason::StoreUnavailable]
            .into_iter()
            .chain(shortages().map(WaitReason::Resources));
        let named: Vec<_> = reasons.map(|r| (wait_index(r), r.as_str())).collect();
        assert_one_to_one(&labels, &named);
    }
}
