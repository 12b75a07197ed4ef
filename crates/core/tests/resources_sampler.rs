//! The sampler thread with a fake probe. Tests wait for the probe's read count, never
//! for a guessed time.

use std::sync::Arc;
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::resources::{
    FakeProbe, GateState, ResourceGate, ResourceLimits, ResourceReading, Sampler,
};

const MIB: u64 = 1 << 20;
/// A safety net against a hung thread, not a wait for a window.
const PATIENCE: Duration = Duration::from_secs(30);

fn setup() -> (Arc<ResourceGate<ManualClock>>, ManualClock, FakeProbe) {
    let clock = ManualClock::new();
    let gate = Arc::new(ResourceGate::new(&ResourceLimits::default(), clock.clone()).unwrap());
    let probe = FakeProbe::new(ResourceReading::memory_only(8192 * MIB));
    (gate, clock, probe)
}

#[test]
fn publishes_readings_and_follows_the_probe() {
    let (gate, _clock, probe) = setup();
    let sampler =
        Sampler::spawn(Arc::clone(&gate), probe.clone(), Duration::from_millis(1)).unwrap();
    // Read n+1 begins only after reading n was published.
    assert!(probe.wait_for_reads(2, PATIENCE));
    assert_eq!(gate.state(), GateState::Open);
    assert_eq!(
        gate.snapshot().reading.map(|r| r.available_memory_bytes),
        Some(8192 * MIB)
    );

    probe.set(ResourceReading::memory_only(100 * MIB));
    let seen = probe.reads();
    assert!(probe.wait_for_reads(seen + 2, PATIENCE));
    assert_eq!(gate.state(), GateState::LowMemory);
    assert!(sampler.is_running());
    assert!(sampler.stop(), "stopped cleanly");
}

#[test]
fn probe_failures_are_counted_and_the_gate_then_goes_stale() {
    let (gate, clock, probe) = setup();
    probe.set_failing(true);
    let _sampler =
        Sampler::spawn(Arc::clone(&gate), probe.clone(), Duration::from_millis(1)).unwrap();
    assert!(probe.wait_for_reads(3, PATIENCE));
    assert!(gate.probe_failures_total() >= 2);
    assert_eq!(gate.readings_total(), 0);
    clock.advance(Duration::from_secs(6));
    assert_eq!(gate.state(), GateState::Stale);
    assert!(gate.check().is_err(), "fails closed by default");
}

#[test]
fn a_panicking_probe_ends_the_thread_and_the_gate_fails_closed() {
    let (gate, clock, probe) = setup();
    probe.set_panicking();
    let sampler =
        Sampler::spawn(Arc::clone(&gate), probe.clone(), Duration::from_millis(1)).unwrap();
    assert!(probe.wait_for_reads(1, PATIENCE));
    assert!(!sampler.stop(), "the thread died of the panic");
    clock.advance(Duration::from_secs(6));
    assert!(gate.check().is_err());
}

#[test]
fn dropping_the_sampler_stops_it_without_waiting_out_the_interval() {
    let (gate, _clock, probe) = setup();
    // An hour's interval: dropping must wake the thread, or this test hangs.
    let sampler =
        Sampler::spawn(Arc::clone(&gate), probe.clone(), Duration::from_secs(3600)).unwrap();
    assert!(
        probe.wait_for_reads(1, PATIENCE),
        "the first reading is taken at once"
    );
    drop(sampler);
    assert_eq!(probe.reads(), 1);
}
