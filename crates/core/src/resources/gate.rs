use std::fmt;
// arc-swap is not loom-aware and works on std's Arc; the gate is outside loom's models.
use std::sync::Arc as StdArc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::limits::{StalePolicy, Thresholds};
use super::{ResourceLimits, ResourceReading};
use crate::ConfigError;
use crate::clock::{Clock, QuantaClock};
use crate::label::labelled;
use crate::sync::{AtomicU64, Ordering};

labelled! {
    /// Whether jobs may start, and if not, why. The names ([`as_str`](Self::as_str)) are
    /// stable, for logs and metrics labels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum GateState {
        /// Every watched resource is above its threshold.
        Open => "open",
        /// Available memory is short.
        LowMemory => "low_memory",
        /// Free disk space is short.
        LowDisk => "low_disk",
        /// Memory pressure is too high.
        MemoryPressure => "memory_pressure",
        /// No sample for longer than the maximum sample age.
        Stale => "stale",
    }
}

/// Why the gate is closed: which resource, how much there is and how much is required
/// to reopen.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Shortage {
    /// Too little available memory.
    #[error("low memory: {available_bytes} bytes available, {required_bytes} required")]
    Memory {
        /// Available now.
        available_bytes: u64,
        /// Needed to reopen: the threshold, plus the margin once closed.
        required_bytes: u64,
    },
    /// Too little free disk space.
    #[error("low disk: {free_bytes} bytes free, {required_bytes} required")]
    Disk {
        /// Free now.
        free_bytes: u64,
        /// Needed to reopen: the threshold, plus the margin once closed.
        required_bytes: u64,
    },
    /// Too much memory pressure.
    #[error("memory pressure: {some_avg10_pct}% stalled, at most {max_pct}% allowed")]
    MemoryPressure {
        /// PSI `some avg10` now, percent.
        some_avg10_pct: f64,
        /// Needed to reopen: at most the threshold, minus the margin once closed.
        max_pct: f64,
    },
    /// The last sample is too old to trust.
    #[error("resource sample is stale: {age:?} old, at most {max_age:?} allowed")]
    Stale {
        /// Age of the last sample.
        age: Duration,
        /// The configured maximum age.
        max_age: Duration,
    },
}

impl Shortage {
    /// The gate state this shortage puts the gate in.
    pub fn state(&self) -> GateState {
        match self {
            Shortage::Memory { .. } => GateState::LowMemory,
            Shortage::Disk { .. } => GateState::LowDisk,
            Shortage::MemoryPressure { .. } => GateState::MemoryPressure,
            Shortage::Stale { .. } => GateState::Stale,
        }
    }

    /// The stable snake_case name of [`state`](Self::state).
    pub fn as_str(&self) -> &'static str {
        self.state().as_str()
    }
}

/// Which thresholds are currently closed: the hysteresis state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Closed {
    memory: bool,
    disk: bool,
    pressure: bool,
}

/// The gate's decision after one reading, apart from staleness (which depends on when it
/// is read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceSnapshot {
    /// The reading behind the decision; `None` before the first one.
    pub reading: Option<ResourceReading>,
    /// When it was taken, in nanoseconds on the gate's clock (the gate's creation time
    /// before the first reading).
    pub taken_at_ns: u64,
    /// Why the reading closes the gate, if it does.
    pub shortage: Option<Shortage>,
    closed: Closed,
}

/// The thresholds a gate closes at, as an operator compares readings against them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateThresholds {
    /// Whether the gate is consulted at all; when not, nothing closes it.
    pub enabled: bool,
    /// Jobs wait while available memory is below this.
    pub min_available_memory_bytes: u64,
    /// Jobs wait while free disk space is below this.
    pub min_free_disk_bytes: u64,
    /// Jobs wait while memory pressure (PSI `some avg10`, percent) is above this, if set.
    pub max_memory_pressure_pct: Option<f64>,
}

/// What the gate publishes: the decision and the thresholds it was made with, swapped as
/// one unit so that a check never mixes old thresholds with a new decision.
#[derive(Debug)]
struct Published {
    snapshot: ResourceSnapshot,
    thresholds: Thresholds,
}

/// A reading's verdict under `thresholds`, given which thresholds were closed before.
///
/// Pure: the whole hysteresis rule, tested apart from any atomics.
fn evaluate(
    previous: Closed,
    reading: &ResourceReading,
    thresholds: &Thresholds,
) -> (Closed, Option<Shortage>) {
    // A closed threshold needs the margin on top to reopen.
    let memory_need = if previous.memory {
        thresholds.memory_reopen_bytes
    } else {
        thresholds.min_memory_bytes
    };
    let memory = reading.available_memory_bytes < memory_need;

    let disk_need = if previous.disk {
        thresholds.disk_reopen_bytes
    } else {
        thresholds.min_disk_bytes
    };
    let disk = reading.free_disk_bytes.is_some_and(|free| free < disk_need);

    let pressure_max = if previous.pressure {
        thresholds.pressure_reopen_pct
    } else {
        thresholds.max_pressure_pct
    };
    let pressure = matches!(
        (reading.memory_pressure_pct, pressure_max),
        (Some(now), Some(max)) if now > max
    );

    let closed = Closed {
        memory,
        disk,
        pressure,
    };
    // Report the first closed resource; after a reopen the required amount is what it
    // takes to stay open next time, the bare threshold.
    let shortage = if memory {
        Some(Shortage::Memory {
            available_bytes: reading.available_memory_bytes,
            required_bytes: thresholds.memory_reopen_bytes,
        })
    } else if disk {
        Some(Shortage::Disk {
            free_bytes: reading.free_disk_bytes.unwrap_or(0),
            required_bytes: thresholds.disk_reopen_bytes,
        })
    } else if pressure {
        Some(Shortage::MemoryPressure {
            some_avg10_pct: reading.memory_pressure_pct.unwrap_or(0.0),
            max_pct: thresholds.pressure_reopen_pct.unwrap_or(0.0),
        })
    } else {
        None
    };
    (closed, shortage)
}

/// A change of state reported by [`ResourceGate::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateTransition {
    /// The state just before the reading (stale if the previous one was too old).
    pub before: GateState,
    /// The state the reading put the gate in.
    pub after: GateState,
}

impl GateTransition {
    /// Whether the state changed.
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// Decides whether jobs may start, from the latest resource reading.
///
/// [`check`](Self::check) is lock-free and wait-free for readers: one atomic load of an
/// immutable snapshot (through `arc-swap`) and one clock read for staleness. Readings
/// come in through [`observe`](Self::observe), from a [`Sampler`](super::Sampler) thread
/// or directly from a caller's own loop.
///
/// Before its first reading the gate is open, and it goes stale once the maximum sample
/// age has passed since it was created.
pub struct ResourceGate<C: Clock = QuantaClock> {
    current: ArcSwap<Published>,
    clock: C,
    readings_total: AtomicU64,
    probe_failures_total: AtomicU64,
}

impl ResourceGate<QuantaClock> {
    /// A gate with `limits` on the default clock.
    ///
    /// # Errors
    ///
    /// As [`ResourceLimits::validate`].
    pub fn with_limits(limits: &ResourceLimits) -> Result<Self, ConfigError> {
        Self::new(limits, QuantaClock::new())
    }
}

impl<C: Clock> ResourceGate<C> {
    /// A gate with `limits`, timing samples on `clock`.
    ///
    /// # Errors
    ///
    /// As [`ResourceLimits::validate`].
    pub fn new(limits: &ResourceLimits, clock: C) -> Result<Self, ConfigError> {
        limits.validate()?;
        let published = Published {
            snapshot: ResourceSnapshot {
                reading: None,
                taken_at_ns: clock.now_ns(),
                shortage: None,
                closed: Closed::default(),
            },
            thresholds: limits.thresholds(),
        };
        Ok(ResourceGate {
            current: ArcSwap::from_pointee(published),
            clock,
            readings_total: AtomicU64::new(0),
            probe_failures_total: AtomicU64::new(0),
        })
    }

    /// `Ok` when jobs may start now.
    ///
    /// # Errors
    ///
    /// The [`Shortage`] that closes the gate: a resource below its threshold, or
    /// [`Shortage::Stale`] when the last sample is too old and the policy fails closed.
    #[inline]
    pub fn check(&self) -> Result<(), Shortage> {
        self.check_at(self.clock.now_ns())
    }

    /// As [`check`](Self::check), at `now_ns` on the gate's clock.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    #[inline]
    pub fn check_at(&self, now_ns: u64) -> Result<(), Shortage> {
        let current = self.current.load();
        match Self::verdict(&current, now_ns) {
            Some(Shortage::Stale { .. })
                if current.thresholds.on_stale == StalePolicy::FailOpen =>
            {
                Ok(())
            }
            Some(shortage) => Err(shortage),
            None => Ok(()),
        }
    }

    /// The gate's state now; [`GateState::Stale`] also under [`StalePolicy::FailOpen`].
    pub fn state(&self) -> GateState {
        self.state_at(self.clock.now_ns())
    }

    /// As [`state`](Self::state), at `now_ns`.
    pub fn state_at(&self, now_ns: u64) -> GateState {
        Self::verdict(&self.current.load(), now_ns).map_or(GateState::Open, |s| s.state())
    }

    /// The shortage, stale or not, ignoring the stale policy; `None` when disabled.
    #[inline]
    fn verdict(current: &Published, now_ns: u64) -> Option<Shortage> {
        let thresholds = &current.thresholds;
        if !thresholds.enabled {
            return None;
        }
        // A clock that went backwards makes the sample look fresh, never older.
        let age_ns = now_ns.saturating_sub(current.snapshot.taken_at_ns);
        if age_ns > thresholds.max_age_ns {
            return Some(Shortage::Stale {
                age: Duration::from_nanos(age_ns),
                max_age: Duration::from_nanos(thresholds.max_age_ns),
            });
        }
        current.snapshot.shortage
    }

    /// Feeds a reading taken now, and reports the state before and after it.
    pub fn observe(&self, reading: ResourceReading) -> GateTransition {
        self.observe_at(reading, self.clock.now_ns())
    }

    /// Feeds a reading taken at `now_ns` on the gate's clock.
    pub fn observe_at(&self, reading: ResourceReading, now_ns: u64) -> GateTransition {
        // Relaxed: a statistic.
        self.readings_total.fetch_add(1, Ordering::Relaxed);
        let previous = self.current.rcu(|current| {
            let (closed, shortage) =
                evaluate(current.snapshot.closed, &reading, &current.thresholds);
            Published {
                snapshot: ResourceSnapshot {
                    reading: Some(reading),
                    taken_at_ns: now_ns,
                    shortage,
                    closed,
                },
                thresholds: current.thresholds,
            }
        });
        GateTransition {
            before: Self::verdict(&previous, now_ns).map_or(GateState::Open, |s| s.state()),
            after: self.state_at(now_ns),
        }
    }

    /// Counts a failed probe read; the gate keeps its last reading meanwhile.
    pub fn record_probe_failure(&self) {
        // Relaxed: a statistic.
        self.probe_failures_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Readings observed so far.
    pub fn readings_total(&self) -> u64 {
        // Relaxed: a statistic.
        self.readings_total.load(Ordering::Relaxed)
    }

    /// Probe failures recorded so far.
    pub fn probe_failures_total(&self) -> u64 {
        // Relaxed: a statistic.
        self.probe_failures_total.load(Ordering::Relaxed)
    }

    /// The latest decision (without staleness, which [`state`](Self::state) adds).
    pub fn snapshot(&self) -> ResourceSnapshot {
        self.current.load().snapshot
    }

    /// Applies new thresholds at once, re-deciding the last reading under them (from the
    /// open state: a threshold raised past the reading closes the gate now).
    ///
    /// # Errors
    ///
    /// As [`ResourceLimits::validate`]; on error nothing changes.
    pub fn reconfigure(&self, limits: &ResourceLimits) -> Result<(), ConfigError> {
        limits.validate()?;
        let thresholds = limits.thresholds();
        self.current.rcu(|current| {
            let mut snapshot = current.snapshot;
            if let Some(reading) = snapshot.reading {
                let (closed, shortage) = evaluate(snapshot.closed, &reading, &thresholds);
                snapshot.closed = closed;
                snapshot.shortage = shortage;
            }
            StdArc::new(Published {
                snapshot,
                thresholds,
            })
        });
        Ok(())
    }

    /// The thresholds in force (the reopening margins aside).
    pub fn thresholds(&self) -> GateThresholds {
        let thresholds = self.current.load().thresholds;
        GateThresholds {
            enabled: thresholds.enabled,
            min_available_memory_bytes: thresholds.min_memory_bytes,
            min_free_disk_bytes: thresholds.min_disk_bytes,
            max_memory_pressure_pct: thresholds.max_pressure_pct,
        }
    }

    /// The clock samples are timed on.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> fmt::Debug for ResourceGate<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceGate")
            .field("state", &self.state())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn thresholds() -> Thresholds {
        ResourceLimits {
            max_memory_pressure_pct: Some(40.0),
            ..ResourceLimits::default()
        }
        .thresholds()
    }

    fn reading(memory_mib: u64, disk_mib: Option<u64>, pressure: Option<f64>) -> ResourceReading {
        ResourceReading {
            available_memory_bytes: memory_mib * MIB,
            free_disk_bytes: disk_mib.map(|d| d * MIB),
            memory_pressure_pct: pressure,
        }
    }

    #[test]
    fn each_threshold_closes_below_and_reopens_only_past_its_margin() {
        let t = thresholds();
        let open = Closed::default();
        // Memory: 2048 MiB threshold, 256 margin.
        assert!(!evaluate(open, &reading(2048, None, None), &t).0.memory);
        assert!(evaluate(open, &reading(2047, None, None), &t).0.memory);
        let closed = Closed {
            memory: true,
            ..open
        };
        assert!(evaluate(closed, &reading(2303, None, None), &t).0.memory);
        assert!(!evaluate(closed, &reading(2304, None, None), &t).0.memory);
        // Disk: 5120 MiB, 512 margin; unmeasured disk never closes.
        assert!(!evaluate(open, &reading(4096, None, None), &t).0.disk);
        assert!(evaluate(open, &reading(4096, Some(5119), None), &t).0.disk);
        let closed = Closed { disk: true, ..open };
        assert!(
            evaluate(closed, &reading(4096, Some(5631), None), &t)
                .0
                .disk
        );
        assert!(
            !evaluate(closed, &reading(4096, Some(5632), None), &t)
                .0
                .disk
        );
        // Pressure: 40 %, 5 margin.
        assert!(
            !evaluate(open, &reading(4096, None, Some(40.0)), &t)
                .0
                .pressure
        );
        assert!(
            evaluate(open, &reading(4096, None, Some(40.5)), &t)
                .0
                .pressure
        );
        let closed = Closed {
            pressure: true,
            ..open
        };
        assert!(
            evaluate(closed, &reading(4096, None, Some(35.5)), &t)
                .0
                .pressure
        );
        assert!(
            !evaluate(closed, &reading(4096, None, Some(35.0)), &t)
                .0
                .pressure
        );
    }

    #[test]
    fn shortage_reports_what_is_there_and_what_reopens() {
        let t = thresholds();
        let (_, shortage) = evaluate(Closed::default(), &reading(1000, Some(1), Some(99.0)), &t);
        assert_eq!(
            shortage,
            Some(Shortage::Memory {
                available_bytes: 1000 * MIB,
                required_bytes: 2304 * MIB
            }),
            "memory is reported first"
        );
        let (_, shortage) = evaluate(Closed::default(), &reading(9000, Some(100), None), &t);
        assert_eq!(
            shortage,
            Some(Shortage::Disk {
                free_bytes: 100 * MIB,
                required_bytes: 5632 * MIB
            })
        );
        let (_, shortage) = evaluate(Closed::default(), &reading(9000, None, Some(50.0)), &t);
        assert_eq!(
            shortage,
            Some(Shortage::MemoryPressure {
                some_avg10_pct: 50.0,
                max_pct: 35.0
            })
        );
        assert_eq!(shortage.unwrap().as_str(), "memory_pressure");
    }

    #[test]
    fn pressure_is_ignored_without_a_threshold() {
        let t = ResourceLimits::default().thresholds();
        let (closed, shortage) = evaluate(Closed::default(), &reading(4096, None, Some(100.0)), &t);
        assert!(!closed.pressure);
        assert_eq!(shortage, None);
    }
}
