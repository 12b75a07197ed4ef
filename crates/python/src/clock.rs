//! The clock an `Admission` reads: the real one, or a `ManualClock` that tests move by
//! hand (to the nanosecond, for the edges of a window).

use std::time::Duration;

use backstop_core::clock::{Clock, ManualClock as CoreManualClock, QuantaClock};
use pyo3::prelude::*;

use crate::boundary::{CONFIG_ERROR, guarded};

/// Either clock behind one type, so one `Admission` class serves both. The branch is
/// predicted perfectly: an admission never changes clocks.
#[derive(Clone)]
pub(crate) enum AnyClock {
    Real(QuantaClock),
    Manual(CoreManualClock),
}

impl Clock for AnyClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        match self {
            AnyClock::Real(clock) => clock.now_ns(),
            AnyClock::Manual(clock) => clock.now_ns(),
        }
    }

    fn sleep(&self, duration: Duration) {
        match self {
            AnyClock::Real(clock) => clock.sleep(duration),
            AnyClock::Manual(clock) => clock.sleep(duration),
        }
    }

    fn is_virtual(&self) -> bool {
        matches!(self, AnyClock::Manual(_))
    }
}

/// A clock that moves only when told: `Admission(limits, clock=ManualClock())`.
#[pyclass(module = "backstop_admission._native", frozen)]
pub(crate) struct ManualClock {
    pub(crate) clock: CoreManualClock,
}

#[pymethods]
impl ManualClock {
    /// A clock at time 0.
    #[new]
    fn new() -> ManualClock {
        ManualClock {
            clock: CoreManualClock::new(),
        }
    }

    /// Nanoseconds since the clock's epoch.
    #[getter]
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Moves time forward by `ns` nanoseconds.
    fn advance_ns(&self, ns: u64) {
        self.clock.advance(Duration::from_nanos(ns));
    }

    /// Moves time forward by `seconds`.
    fn advance(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        guarded("ManualClock.advance", || {
            let by = Duration::try_from_secs_f64(seconds).map_err(|_| {
                CONFIG_ERROR.msg(py, format!("cannot advance a clock by {seconds} s"))
            })?;
            self.clock.advance(by);
            Ok(())
        })
    }

    /// Sets the time to `ns` nanoseconds since the epoch, forwards or backwards.
    fn set_ns(&self, ns: u64) {
        self.clock.set(Duration::from_nanos(ns));
    }
}
