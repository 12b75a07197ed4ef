use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{ProbeError, ResourceProbe, ResourceReading};
use crate::sync::Arc;

/// A probe that reports whatever it is told to, for tests and simulations.
///
/// Clones share one state, so a test keeps a clone while a [`Sampler`](super::Sampler)
/// owns another. Not a hot path: its state sits behind a mutex.
///
/// ```
/// use backstop_core::resources::{FakeProbe, ResourceProbe, ResourceReading};
///
/// let mut probe = FakeProbe::new(ResourceReading::memory_only(1 << 30));
/// let control = probe.clone();
/// control.set(ResourceReading::memory_only(1 << 20));
/// assert_eq!(probe.read().unwrap().available_memory_bytes, 1 << 20);
/// control.set_failing(true);
/// assert!(probe.read().is_err());
/// assert_eq!(control.reads(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct FakeProbe {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    read_done: Condvar,
}

#[derive(Debug)]
struct State {
    reading: ResourceReading,
    failing: bool,
    panicking: bool,
    reads: u64,
}

impl FakeProbe {
    /// A probe that reports `reading` until told otherwise.
    pub fn new(reading: ResourceReading) -> Self {
        FakeProbe {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    reading,
                    failing: false,
                    panicking: false,
                    reads: 0,
                }),
                read_done: Condvar::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock (set_panicking) leaves the state consistent.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports `reading` from the next read on.
    pub fn set(&self, reading: ResourceReading) {
        self.state().reading = reading;
    }

    /// Makes reads fail (true) or succeed again (false).
    pub fn set_failing(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// Makes the next read panic, as a buggy probe would.
    pub fn set_panicking(&self) {
        self.state().panicking = true;
    }

    /// Reads made so far, failed ones included.
    pub fn reads(&self) -> u64 {
        self.state().reads
    }

    /// Blocks until at least `reads` reads have been made, or `timeout` (real time)
    /// passed; returns whether they were. Lets a test wait for a sampler's progress
    /// instead of sleeping for a guessed time.
    pub fn wait_for_reads(&self, reads: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        while state.reads < reads {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .read_done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl ResourceProbe for FakeProbe {
    fn read(&mut self) -> Result<ResourceReading, ProbeError> {
        let mut state = self.state();
        state.reads += 1;
        self.shared.read_done.notify_all();
        if state.panicking {
            state.panicking = false;
            drop(state);
            panic!("FakeProbe told to panic");
        }
        if state.failing {
            return Err(ProbeError::new(
                "fake probe",
                std::io::Error::other("told to fail"),
            ));
        }
        Ok(state.reading)
    }
}
