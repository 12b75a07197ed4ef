//! The in-process front door: `Admission`, `Ticket`, `Permit`.
//!
//! `try_admit` is backstop-core's decision (tens of nanoseconds) plus what Python needs
//! to call it and get an answer: argument parsing, one `Ticket` object, or one exception
//! when refused. Nothing else runs on that path: the GIL stays held (nothing blocks), no
//! lock is taken (the classes are `frozen` or borrowed through PyO3's cell flag), and
//! the key is read as the `str` Python already holds, not copied.

use backstop_core::jobs::{JobPermit, QueueTicket};
use backstop_core::resources::{Sampler, SysinfoProbe};
use backstop_core::{Admission as Door, Decision, Quota, RequestClass, WaitReason};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::boundary::{CONFIG_ERROR, INTERNAL_ERROR, JOB_MUST_WAIT, guarded};
use backstop_core::clock::Clock;

use crate::clock::{AnyClock, ManualClock};
use crate::fork::PerProcess;
use crate::limits::NativeLimits;
use crate::refusal::{HttpAnswer, http_answer, refusal_error, refusal_of};

/// The request class named by `priority`.
#[inline]
pub(crate) fn request_class(py: Python<'_>, priority: &str) -> PyResult<RequestClass> {
    match priority {
        "normal" => Ok(RequestClass::Normal),
        "critical" => Ok(RequestClass::Critical),
        "exempt" => Ok(RequestClass::Exempt),
        other => Err(CONFIG_ERROR.msg(
            py,
            format!(
                "invalid `priority` {other:?}: expected \"normal\", \"critical\" or \"exempt\""
            ),
        )),
    }
}

/// `JobMustWait` with the reason's stable name.
#[cold]
pub(crate) fn wait_error(py: Python<'_>, reason: &WaitReason) -> PyErr {
    JOB_MUST_WAIT.err(
        py,
        (format!("the job must wait: {reason}"), reason.as_str()),
    )
}

/// The native `Admission`.
#[pyclass(module = "backstop_admission._native", frozen)]
pub(crate) struct Admission {
    door: Door<AnyClock>,
    /// The resource sampler of this process (a forked child starts its own on its first
    /// job start); `None` when the gate is off or the clock is manual.
    sampler: PerProcess<Option<Sampler>>,
}

impl Admission {
    fn decide(&self, key: Option<&str>, class: RequestClass) -> Decision {
        self.door.admit(key, class)
    }

    /// Makes sure this process samples resources, when the gate needs readings.
    fn ensure_sampler(&self, py: Python<'_>) -> PyResult<()> {
        self.sampler.get_or_try_init(|| {
            let limits = self.door.limits();
            if !limits.resources.enabled || self.door.clock().is_virtual() {
                return Ok(None);
            }
            let probe = SysinfoProbe::from_limits(&limits.resources);
            self.door.spawn_sampler(probe).map(Some).map_err(|err| {
                INTERNAL_ERROR.msg(py, format!("cannot start the resource sampler: {err}"))
            })
        })?;
        Ok(())
    }
}

#[pymethods]
impl Admission {
    #[new]
    #[pyo3(signature = (limits, *, clock=None, per_client=None, max_clients=10_000))]
    fn new(
        py: Python<'_>,
        limits: &NativeLimits,
        clock: Option<&ManualClock>,
        per_client: Option<(u32, f64)>,
        max_clients: usize,
    ) -> PyResult<Admission> {
        guarded("Admission", || {
            let clock = match clock {
                Some(manual) => AnyClock::Manual(manual.clock.clone()),
                None => AnyClock::Real(backstop_core::clock::QuantaClock::new()),
            };
            let config = |e: backstop_core::ConfigError| CONFIG_ERROR.msg(py, e.to_string());
            let mut door = Door::with_clock(limits.limits(), clock).map_err(config)?;
            if let Some((limit, window_s)) = per_client {
                let window = crate::sweep::seconds(py, "per_client window", window_s)?;
                let quota = Quota::new(limit, window).map_err(|e| config(e.under("per_client")))?;
                door = door.with_per_key(quota, max_clients).map_err(config)?;
            }
            let admission = Admission {
                door,
                sampler: PerProcess::new(),
            };
            admission.ensure_sampler(py)?;
            Ok(admission)
        })
    }

    /// Decides one request: a `Ticket`, or `RateLimited` / `Overloaded` raised.
    #[pyo3(signature = (key=None, priority="normal"))]
    fn try_admit(slf: &Bound<'_, Self>, key: Option<&str>, priority: &str) -> PyResult<Ticket> {
        let py = slf.py();
        guarded("Admission.try_admit", || {
            let class = request_class(py, priority)?;
            match slf.get().decide(key, class) {
                Decision::Admitted(ticket) => Ok(Ticket {
                    ticket: Some(ticket),
                    admission: Some(slf.clone().unbind()),
                }),
                Decision::Exempt => Ok(Ticket {
                    ticket: None,
                    admission: None,
                }),
                Decision::Refused(refusal) => Err(refusal_error(py, &refusal)),
            }
        })
    }

    /// Applies new limits at once (tickets and permits kept, the window's history kept).
    fn reconfigure(&self, py: Python<'_>, limits: &NativeLimits) -> PyResult<()> {
        guarded("Admission.reconfigure", || {
            self.door
                .reconfigure(limits.limits())
                .map_err(|e| CONFIG_ERROR.msg(py, e.to_string()))?;
            self.ensure_sampler(py)
        })
    }

    /// The limits in force.
    fn limits(&self) -> NativeLimits {
        NativeLimits {
            limits: self.door.limits(),
        }
    }

    /// Every counter and gauge now, as plain numbers.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guarded("Admission.snapshot", || {
            crate::metrics::snapshot_dict(py, &self.door.metrics().snapshot())
        })
    }

    /// The answer the tower layer gives `refused` (a `Refused` this door raised for
    /// client `key`): status, headers, problem+json body.
    #[pyo3(signature = (refused, key=None))]
    fn refusal_response(
        &self,
        py: Python<'_>,
        refused: &Bound<'_, PyAny>,
        key: Option<&str>,
    ) -> PyResult<HttpAnswer> {
        guarded("Admission.refusal_response", || {
            let refusal = refusal_of(py, refused)?;
            Ok(http_answer(&self.door, key, &refusal))
        })
    }

    /// The metrics in the OpenMetrics text format (the Rust registry's families).
    fn render_prometheus(&self) -> String {
        self.door.metrics().render_prometheus()
    }
}

/// A place in the queue. `start()` turns it into a `Permit`; releasing it (or leaving
/// its `with` block, or dropping it) gives the place back, once.
#[pyclass(module = "backstop_admission._native")]
pub(crate) struct Ticket {
    ticket: Option<QueueTicket>,
    admission: Option<Py<Admission>>,
}

#[pymethods]
impl Ticket {
    /// Whether it still holds its place (not started, not released; false for an
    /// exempt request, which holds nothing).
    #[getter]
    fn held(&self) -> bool {
        self.ticket.is_some()
    }

    /// Starts the job: a `Permit` when a slot is free and the resource gate is open;
    /// otherwise `JobMustWait` (with `.reason`) is raised and the ticket keeps its place.
    fn start(&mut self, py: Python<'_>) -> PyResult<Permit> {
        guarded("Ticket.start", || {
            let (Some(ticket), Some(admission)) = (self.ticket.take(), self.admission.as_ref())
            else {
                return Err(CONFIG_ERROR.msg(
                    py,
                    "this ticket holds no place (released, started, or exempt)",
                ));
            };
            let admission = admission.get();
            if let Err(err) = admission.ensure_sampler(py) {
                self.ticket = Some(ticket);
                return Err(err);
            }
            match admission.door.start_job(ticket) {
                Ok(permit) => Ok(Permit {
                    permit: Some(permit),
                }),
                Err((ticket, reason)) => {
                    self.ticket = Some(ticket);
                    Err(wait_error(py, &reason))
                }
            }
        })
    }

    /// Gives the place back; true if this call released it.
    fn release(&mut self) -> bool {
        self.ticket.take().is_some()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.ticket.take();
        false
    }
}

/// A running job's slot, released once: by `release()`, at the end of its `with` block,
/// or when it is dropped.
#[pyclass(module = "backstop_admission._native")]
pub(crate) struct Permit {
    permit: Option<JobPermit>,
}

#[pymethods]
impl Permit {
    /// Whether it still holds its slot.
    #[getter]
    fn held(&self) -> bool {
        self.permit.is_some()
    }

    /// Gives the slot back; true if this call released it.
    fn release(&mut self) -> bool {
        self.permit.take().is_some()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.permit.take();
        false
    }
}
