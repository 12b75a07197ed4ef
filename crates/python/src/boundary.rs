//! The edge between Rust and Python: every call from Python passes through [`guarded`],
//! and every error leaves as one of the exceptions of `backstop_admission.errors`.
//!
//! PyO3 turns a panic into `pyo3_runtime.PanicException`, a `BaseException` that
//! `except Exception` does not catch and that names no backstop type. A panic here is a
//! bug in backstop, never the caller's input, so it becomes
//! `backstop_admission.errors.InternalError` (a `RuntimeError`) with the panic's message
//! and where it happened. `catch_unwind` costs nothing on the path that does not panic.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The module that defines the exception classes (pure Python, so they carry
/// docstrings, type hints and attributes the way Python users expect).
pub(crate) const ERRORS_MODULE: &str = "backstop_admission.errors";

/// One exception class of [`ERRORS_MODULE`], imported once per interpreter.
pub(crate) struct ErrorClass {
    name: &'static str,
    class: PyOnceLock<Py<PyType>>,
}

impl ErrorClass {
    const fn new(name: &'static str) -> ErrorClass {
        ErrorClass {
            name,
            class: PyOnceLock::new(),
        }
    }

    /// The class itself.
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyType>> {
        self.class.import(py, ERRORS_MODULE, self.name)
    }

    /// An error of this class built from `args` (its constructor's arguments).
    pub(crate) fn err<'py, A>(&self, py: Python<'py>, args: A) -> PyErr
    where
        A: pyo3::call::PyCallArgs<'py>,
    {
        match self.get(py).and_then(|class| class.call1(args)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(err) => err,
        }
    }

    /// An error of this class with a message only.
    pub(crate) fn msg(&self, py: Python<'_>, message: impl Into<String>) -> PyErr {
        self.err(py, (message.into(),))
    }
}

/// A bad value in a configuration (TOML, keyword arguments, a URL, a share).
pub(crate) static CONFIG_ERROR: ErrorClass = ErrorClass::new("ConfigError");
/// The shared store could not be reached or used.
pub(crate) static STORE_ERROR: ErrorClass = ErrorClass::new("StoreError");
/// A detached ticket's token that cannot be claimed.
pub(crate) static TOKEN_ERROR: ErrorClass = ErrorClass::new("TokenError");
/// A sweep that could not start.
pub(crate) static SWEEP_ERROR: ErrorClass = ErrorClass::new("SweepError");
/// A job workspace operation that failed.
pub(crate) static WORKSPACE_ERROR: ErrorClass = ErrorClass::new("WorkspaceError");
/// A job that may not start yet.
pub(crate) static JOB_MUST_WAIT: ErrorClass = ErrorClass::new("JobMustWait");
/// A panic inside backstop.
pub(crate) static INTERNAL_ERROR: ErrorClass = ErrorClass::new("InternalError");

/// Runs `f`, the body of one call from Python, turning a panic into `InternalError`.
///
/// `what` names the call for the message (e.g. `"sweep"`).
#[inline]
pub(crate) fn guarded<T>(what: &'static str, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(panic_error(what, payload.as_ref())),
    }
}

#[cold]
#[inline(never)]
fn panic_error(what: &'static str, payload: &(dyn Any + Send)) -> PyErr {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    let message = format!(
        "internal error in backstop_admission ({what}): {detail}; this is a bug in backstop, \
         not in the caller's input; the operation did not complete"
    );
    Python::attach(|py| INTERNAL_ERROR.msg(py, message))
}

/// Panics with `message`, inside the boundary: lets the tests prove that a Rust panic
/// reaches Python as `InternalError`, never as `PanicException`.
#[pyfunction]
pub(crate) fn _panic_for_tests(message: String) -> PyResult<()> {
    guarded("_panic_for_tests", || panic!("{message}"))
}
