//! The native module `backstop_admission._native` of the Python package
//! `backstop-admission`. It is private: the public API is the pure-Python package
//! beside it (`crates/python/python/backstop_admission/`), with docstrings, type hints
//! and the exception classes, over these functions and classes.
//!
//! Every entry point runs inside `boundary::guarded` (a panic becomes
//! `InternalError`), releases the GIL only where it blocks (a sweep, a lock, a Redis
//! round trip) and keeps per-process state in `fork::PerProcess` values, made again
//! in a forked child.

mod admission;
mod boundary;
mod bridge;
mod clock;
mod fork;
mod limits;
mod metrics;
mod redis;
mod refusal;
mod runtime;
mod sweep;
mod workspace;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_native")]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_function(wrap_pyfunction!(fork::_after_fork_in_child, module)?)?;
    module.add_function(wrap_pyfunction!(boundary::_panic_for_tests, module)?)?;
    module.add_function(wrap_pyfunction!(runtime::_runtime_check, module)?)?;
    module.add_function(wrap_pyfunction!(sweep::sweep, module)?)?;
    module.add_class::<workspace::NativeWorkspace>()?;
    module.add_class::<limits::NativeLimits>()?;
    module.add_class::<clock::ManualClock>()?;
    module.add_class::<admission::Admission>()?;
    module.add_class::<admission::Ticket>()?;
    module.add_class::<admission::Permit>()?;
    module.add_class::<bridge::Completions>()?;
    module.add_class::<redis::RedisAdmission>()?;
    module.add_class::<redis::RedisTicket>()?;
    module.add_class::<redis::RedisPermit>()?;
    fork::register(module)?;
    Ok(())
}
