//! The resource gate: jobs wait, instead of crashing the machine, when memory or disk
//! runs short.
//!
//! A [`ResourceProbe`] reads what is available ([`SysinfoProbe`] on a real machine,
//! [`FakeProbe`] in tests and simulations). A [`Sampler`] thread reads it every interval
//! and feeds the reading to a [`ResourceGate`], which decides, with hysteresis, whether
//! jobs may start and publishes that decision as an immutable snapshot. Workers call
//! [`ResourceGate::check`], which reads the snapshot without a lock.
//!
//! Callers that have no thread to spare (the simulator's event loop) call
//! [`ResourceGate::observe`] themselves; the sampler does nothing more.
//!
//! ```
//! use backstop_core::clock::ManualClock;
//! use backstop_core::resources::{GateState, ResourceGate, ResourceLimits, ResourceReading};
//!
//! const MIB: u64 = 1 << 20;
//! let gate = ResourceGate::new(&ResourceLimits::default(), ManualClock::new())?;
//! // 1 GiB available, below the 2048 MiB default: jobs must wait.
//! let change = gate.observe(ResourceReading::memory_only(1024 * MIB));
//! assert_eq!((change.before, change.after), (GateState::Open, GateState::LowMemory));
//! assert!(gate.check().is_err());
//! // Just above 2048 MiB is not enough to reopen: the 256 MiB margin stops flapping.
//! gate.observe(ResourceReading::memory_only(2100 * MIB));
//! assert_eq!(gate.state(), GateState::LowMemory);
//! gate.observe(ResourceReading::memory_only(2304 * MIB));
//! assert!(gate.check().is_ok());
//! # Ok::<(), backstop_core::ConfigError>(())
//! ```

mod fake;
mod gate;
mod limits;
mod probe;
mod sampler;
#[cfg(feature = "sysinfo")]
mod sysinfo_probe;

pub use fake::FakeProbe;
pub use gate::{
    GateState, GateThresholds, GateTransition, ResourceGate, ResourceSnapshot, Shortage,
};
pub use limits::{ResourceLimits, StalePolicy};
pub use probe::{ProbeError, ResourceProbe, ResourceReading};
pub use sampler::Sampler;
#[cfg(feature = "sysinfo")]
pub use sysinfo_probe::{CgroupMemory, SysinfoProbe};
