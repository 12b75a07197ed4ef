//! The resource gate fed directly on a manual clock: hysteresis, staleness and its
//! policies, reconfiguration.

use std::time::Duration;

use backstop_core::ByteSize;
use backstop_core::clock::ManualClock;
use backstop_core::resources::{
    GateState, ResourceGate, ResourceLimits, ResourceReading, Shortage, StalePolicy,
};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

fn plenty() -> ResourceReading {
    ResourceReading {
        available_memory_bytes: 64 * 1024 * MIB,
        free_disk_bytes: Some(100 * 1024 * MIB),
        memory_pressure_pct: Some(0.0),
    }
}

fn gate(limits: ResourceLimits) -> (ResourceGate<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (ResourceGate::new(&limits, clock.clone()).unwrap(), clock)
}

#[test]
fn opens_before_the_first_reading_then_goes_stale_and_fails_closed() {
    let (gate, clock) = gate(ResourceLimits::default());
    assert_eq!(gate.state(), GateState::Open);
    assert!(gate.check().is_ok());
    clock.advance(Duration::from_millis(5000));
    assert!(
        gate.check().is_ok(),
        "exactly the maximum age is still fresh"
    );
    clock.advance(Duration::from_nanos(1));
    assert_eq!(
        gate.check(),
        Err(Shortage::Stale {
            age: Duration::from_nanos(5_000_000_001),
            max_age: Duration::from_secs(5)
        })
    );
    assert_eq!(gate.state(), GateState::Stale);
    let change = gate.observe(plenty());
    assert_eq!(
        (change.before, change.after),
        (GateState::Stale, GateState::Open)
    );
    assert!(change.changed());
    assert!(gate.check().is_ok());
}

#[test]
fn fail_open_starts_jobs_but_still_reports_stale() {
    let (gate, clock) = gate(ResourceLimits {
        on_stale: StalePolicy::FailOpen,
        ..ResourceLimits::default()
    });
    gate.observe(plenty());
    clock.advance(Duration::from_secs(60));
    assert!(gate.check().is_ok());
    assert_eq!(gate.state(), GateState::Stale);
}

#[test]
fn a_stale_shortage_still_fails_open_but_a_fresh_one_closes() {
    let (gate, clock) = gate(ResourceLimits {
        on_stale: StalePolicy::FailOpen,
        ..ResourceLimits::default()
    });
    gate.observe(ResourceReading::memory_only(MIB));
    assert_eq!(gate.state(), GateState::LowMemory);
    assert!(gate.check().is_err());
    clock.advance(Duration::from_secs(6));
    assert_eq!(gate.state(), GateState::Stale);
    assert!(
        gate.check().is_ok(),
        "fail open: staleness wins over the old shortage"
    );
}

#[test]
fn each_resource_closes_with_its_own_state_and_numbers() {
    let (gate, _clock) = gate(ResourceLimits {
        max_memory_pressure_pct: Some(20.0),
        ..ResourceLimits::default()
    });
    let mut reading = plenty();
    reading.free_disk_bytes = Some(MIB);
    assert_eq!(gate.observe(reading).after, GateState::LowDisk);
    assert_eq!(
        gate.check(),
        Err(Shortage::Disk {
            free_bytes: MIB,
            required_bytes: (5120 + 512) * MIB
        })
    );
    reading = plenty();
    reading.memory_pressure_pct = Some(25.0);
    assert_eq!(gate.observe(reading).after, GateState::MemoryPressure);
    reading.memory_pressure_pct = Some(16.0);
    assert_eq!(
        gate.observe(reading).after,
        GateState::MemoryPressure,
        "within the margin"
    );
    reading.memory_pressure_pct = Some(15.0);
    let change = gate.observe(reading);
    assert_eq!(
        (change.before, change.after),
        (GateState::MemoryPressure, GateState::Open)
    );
    assert_eq!(gate.snapshot().reading, Some(reading));
    assert_eq!(gate.readings_total(), 4);
}

#[test]
fn disabled_gate_never_closes() {
    let (gate, clock) = gate(ResourceLimits {
        enabled: false,
        ..ResourceLimits::default()
    });
    gate.observe(ResourceReading::memory_only(0));
    clock.advance(Duration::from_secs(3600));
    assert!(gate.check().is_ok());
    assert_eq!(gate.state(), GateState::Open);
}

#[test]
fn reconfigure_redecides_the_last_reading_and_rejects_bad_limits() {
    let (gate, _clock) = gate(ResourceLimits::default());
    gate.observe(ResourceReading::memory_only(3000 * MIB));
    assert!(gate.check().is_ok());
    gate.reconfigure(&ResourceLimits {
        min_available_memory: ByteSize::mib(4096),
        ..ResourceLimits::default()
    })
    .unwrap();
    assert_eq!(gate.state(), GateState::LowMemory);
    let err = gate
        .reconfigure(&ResourceLimits {
            memory_margin: ByteSize::mib(5000),
            ..ResourceLimits::default()
        })
        .unwrap_err();
    assert_eq!(err.field(), "resources.memory_margin");
    assert_eq!(
        gate.state(),
        GateState::LowMemory,
        "a rejected config changes nothing"
    );
}

#[test]
fn clock_going_backwards_never_makes_a_sample_stale() {
    let (gate, clock) = gate(ResourceLimits::default());
    clock.set(Duration::from_secs(100));
    gate.observe(plenty());
    clock.set(Duration::from_secs(1));
    assert_eq!(gate.state(), GateState::Open);
}

proptest! {
    /// Memory readings in any order: the gate's state matches a two-state model with
    /// hysteresis, and it never changes state on a reading inside the margin band.
    #[test]
    fn memory_hysteresis_matches_the_model(readings in proptest::collection::vec(1500u64..2600, 1..60)) {
        let (gate, _clock) = gate(ResourceLimits::default());
        let mut closed = false;
        for mib in readings {
            let change = gate.observe(ResourceReading::memory_only(mib * MIB));
            let was_closed = closed;
            closed = if closed { mib < 2048 + 256 } else { mib < 2048 };
            if (2048..2048 + 256).contains(&mib) {
                prop_assert_eq!(closed, was_closed, "no flapping inside the band");
            }
            let expected = if closed { GateState::LowMemory } else { GateState::Open };
            prop_assert_eq!(change.after, expected);
            prop_assert_eq!(gate.check().is_err(), closed);
        }
    }
}
