use std::fmt;
use std::sync::Arc as StdArc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{ResourceGate, ResourceProbe};
use crate::clock::Clock;

/// A thread that reads a [`ResourceProbe`] every interval and feeds the gate.
///
/// The first reading is taken at once. The interval is real time (the thread sleeps on
/// the OS clock): a sampler watches the real machine; simulations on virtual time call
/// [`ResourceGate::observe`] themselves instead.
///
/// Stop protocol: dropping the sampler (or [`stop`](Self::stop)) wakes the thread at
/// once and joins it. If the probe panics, the thread ends, no more readings arrive, and
/// the gate goes stale after its maximum sample age: it fails closed by default, which
/// is the safe answer when the machine's own measurements break.
pub struct Sampler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `probe` into `gate` every `interval`.
    ///
    /// # Errors
    ///
    /// The OS error when the thread cannot be spawned.
    pub fn spawn<C, P>(
        gate: StdArc<ResourceGate<C>>,
        mut probe: P,
        interval: Duration,
    ) -> std::io::Result<Sampler>
    where
        C: Clock + 'static,
        P: ResourceProbe + 'static,
    {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("backstop-sampler".into())
            .spawn(move || {
                loop {
                    match probe.read() {
                        Ok(reading) => {
                            gate.observe(reading);
                        }
                        Err(error) => {
                            #[cfg(feature = "tracing")]
                            tracing::warn!(%error, "resource probe failed; the gate keeps its last reading");
                            #[cfg(not(feature = "tracing"))]
                            let _ = error;
                            gate.record_probe_failure();
                        }
                    }
                    // Wakes early, and ends, when the Sampler is dropped.
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Sampler {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Whether the thread is still sampling (false once the probe panicked).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread and waits for it; returns false when it had died of a panic.
    pub fn stop(mut self) -> bool {
        self.shutdown()
    }

    fn shutdown(&mut self) -> bool {
        drop(self.stop.take());
        self.thread.take().is_none_or(|t| t.join().is_ok())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("running", &self.is_running())
            .finish()
    }
}
