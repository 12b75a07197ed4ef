//! The tokio runtime that runs this process's Redis calls: made on first use, made again
//! in a forked child (see [`crate::fork`]).

use pyo3::prelude::*;
use tokio::runtime::{Builder, Runtime};

use crate::boundary::{INTERNAL_ERROR, guarded};
use crate::fork::PerProcess;

static RUNTIME: PerProcess<Runtime> = PerProcess::new();

/// This process's runtime. Two worker threads: a Redis decision is a few microseconds of
/// work around a round trip, and the callers are Python threads and event loops, which
/// never run on these threads.
pub(crate) fn runtime(py: Python<'_>) -> PyResult<&'static Runtime> {
    RUNTIME.get_or_try_init(|| {
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("backstop-tokio")
            .enable_all()
            .build()
            .map_err(|err| INTERNAL_ERROR.msg(py, format!("cannot start the tokio runtime: {err}")))
    })
}

/// Runs a trivial task on this process's runtime and returns the process id the task
/// saw: lets the tests check that a child forked after the runtime started gets a
/// working runtime of its own.
#[pyfunction]
pub(crate) fn _runtime_check(py: Python<'_>) -> PyResult<u32> {
    guarded("_runtime_check", || {
        let runtime = runtime(py)?;
        py.detach(|| runtime.block_on(async { tokio::spawn(async { std::process::id() }).await }))
            .map_err(|err| INTERNAL_ERROR.msg(py, format!("runtime task failed: {err}")))
    })
}
