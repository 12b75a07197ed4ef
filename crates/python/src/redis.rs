//! `RedisAdmission`: backstop-redis's shared front door for Python, with awaitable methods
//! for asyncio (FastAPI) and blocking ones for threads and Celery (the GIL released while
//! they wait), tickets that detach to a token and are claimed in another process, and
//! permits whose lease the store renews in the background.
//!
//! The store (connection, batching task, lease renewals) lives on this process's runtime
//! and is made per process: a forked child connects again on first use.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use backstop_core::resources::{Sampler, SysinfoProbe};
use backstop_core::{Decision, FrontDoor, Limits, Quota, RequestClass, WaitReason};
use backstop_redis::{
    ClaimError, ConnectError, DetachError, FailurePolicy, RedisAdmission as Door, RedisStore,
    StoreOptions,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::OnceCell;

use crate::admission::{request_class, wait_error};
use crate::boundary::{CONFIG_ERROR, INTERNAL_ERROR, STORE_ERROR, TOKEN_ERROR, guarded};
use crate::bridge::Completions;
use crate::fork::PerProcess;
use crate::limits::NativeLimits;
use crate::refusal::{HttpAnswer, http_answer, refusal_error, refusal_of};
use crate::runtime::runtime;
use crate::sweep::seconds;

/// What `connect` was given: enough to connect again in a forked child.
struct Config {
    url: String,
    name: String,
    limits: Limits,
    options: StoreOptions,
    lease: Option<Duration>,
    per_client: Option<(u32, Duration)>,
}

/// A connected door and this process's resource sampler.
struct Live {
    door: Door,
    _sampler: Option<Sampler>,
}

/// Why connecting failed: the configuration, or the store.
enum ConnectFailure {
    Config(String),
    Store(String),
}

impl ConnectFailure {
    fn into_err(self, py: Python<'_>) -> PyErr {
        match self {
            ConnectFailure::Config(message) => CONFIG_ERROR.msg(py, message),
            ConnectFailure::Store(message) => STORE_ERROR.msg(py, message),
        }
    }
}

pub(crate) struct Shared {
    config: Config,
    live: PerProcess<OnceCell<Arc<Live>>>,
}

impl Shared {
    /// This process's door, connecting on first use.
    async fn door(self: &Arc<Self>) -> Result<Arc<Live>, ConnectFailure> {
        let cell = self
            .live
            .get_or_try_init(|| Ok::<_, std::convert::Infallible>(OnceCell::new()))
            .unwrap_or_else(|never| match never {});
        cell.get_or_try_init(|| connect(&self.config))
            .await
            .map(Arc::clone)
    }

    /// The door, if this process has connected (refusals come from it, so it has).
    fn connected(&self) -> Option<&Arc<Live>> {
        self.live
            .get_or_try_init(|| Ok::<_, std::convert::Infallible>(OnceCell::new()))
            .ok()?
            .get()
    }
}

async fn connect(config: &Config) -> Result<Arc<Live>, ConnectFailure> {
    let store = RedisStore::connect(&config.url, config.options)
        .await
        .map_err(|err| match err {
            ConnectError::BadOptions(_) | ConnectError::BadUrl(_) => {
                ConnectFailure::Config(err.to_string())
            }
            other => ConnectFailure::Store(other.to_string()),
        })?;
    let limits = config.limits.clone();
    let config_err = |e: backstop_core::ConfigError| ConnectFailure::Config(e.to_string());
    let mut door = match config.lease {
        Some(lease) => Door::with_lease(&store, &config.name, limits, lease),
        None => Door::new(&store, &config.name, limits),
    }
    .map_err(config_err)?;
    if let Some((limit, window)) = config.per_client {
        let quota = Quota::new(limit, window).map_err(|e| config_err(e.under("per_client")))?;
        door = door.with_per_key(quota).map_err(config_err)?;
    }
    let sampler = if config.limits.resources.enabled {
        let probe = SysinfoProbe::from_limits(&config.limits.resources);
        Some(door.spawn_sampler(probe).map_err(|err| {
            ConnectFailure::Store(format!("cannot start the resource sampler: {err}"))
        })?)
    } else {
        None
    };
    Ok(Arc::new(Live {
        door,
        _sampler: sampler,
    }))
}

/// A future whose panic becomes an `Err`, so that an awaiting Python future is always
/// resolved.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default())),
        }
    }
}

/// Runs `work` on the runtime and returns an asyncio future of the running loop that
/// `resolve` completes with its output.
fn awaitable<'py, T, W>(
    py: Python<'py>,
    what: &'static str,
    work: W,
    resolve: impl FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    W: Future<Output = T> + Send + 'static,
{
    let completions = py
        .import("backstop_admission._bridge")?
        .getattr("completions")?
        .call0()?;
    let completions = completions.cast::<Completions>()?.borrow();
    let (waker, future) = completions.future(py)?;
    let target = future.clone().unbind();
    runtime(py)?.spawn(async move {
        let out = CatchUnwind(Box::pin(work)).await;
        waker.finish(
            target,
            Box::new(move |py| match out {
                Ok(out) => resolve(py, out),
                Err(panic) => Err(INTERNAL_ERROR.msg(
                    py,
                    format!(
                        "internal error in backstop_admission ({what}): {panic}; this is a \
                         bug in backstop, not in the caller's input"
                    ),
                )),
            }),
        );
    });
    Ok(future)
}

/// Runs `work` on the runtime, blocking this thread with the GIL released.
fn blocking<T: Send, W: Future<Output = T> + Send>(py: Python<'_>, work: W) -> PyResult<T> {
    let runtime = runtime(py)?;
    Ok(py.detach(|| runtime.block_on(work)))
}

fn failure_policy(py: Python<'_>, failure: &str, share: Option<f64>) -> PyResult<FailurePolicy> {
    let policy = match (failure, share) {
        ("fail_closed", None) => FailurePolicy::FailClosed,
        ("local_fallback", Some(share)) => FailurePolicy::LocalFallback { share },
        ("local_fallback", None) => {
            return Err(CONFIG_ERROR.msg(py, "`failure=\"local_fallback\"` needs a `share`"));
        }
        ("fail_closed", Some(_)) => {
            return Err(CONFIG_ERROR.msg(py, "`share` is only for `failure=\"local_fallback\"`"));
        }
        (other, _) => {
            return Err(CONFIG_ERROR.msg(
                py,
                format!(
                    "invalid `failure` {other:?}: expected \"fail_closed\" or \"local_fallback\""
                ),
            ));
        }
    };
    policy
        .validate()
        .map_err(|e| CONFIG_ERROR.msg(py, e.to_string()))?;
    Ok(policy)
}

/// The outcome of one admission, as Python sees it.
fn ticket_or_refusal(
    py: Python<'_>,
    shared: Arc<Shared>,
    decision: Result<(Decision<backstop_redis::RedisTicket>, Arc<Live>), ConnectFailure>,
) -> PyResult<Py<PyAny>> {
    let (decision, _) = decision.map_err(|f| f.into_err(py))?;
    let ticket = match decision {
        Decision::Admitted(ticket) => Some(ticket),
        Decision::Exempt => None,
        Decision::Refused(refusal) => return Err(refusal_error(py, &refusal)),
    };
    let owner = Owner::here();
    Ok(Py::new(
        py,
        RedisTicket {
            ticket,
            shared,
            owner,
        },
    )?
    .into_any())
}

/// The native `RedisAdmission`.
#[pyclass(module = "backstop_admission._native", frozen)]
pub(crate) struct RedisAdmission {
    shared: Arc<Shared>,
}

#[pymethods]
impl RedisAdmission {
    /// Connects (blocking, GIL released): checks the server and loads the scripts.
    #[staticmethod]
    #[pyo3(signature = (url, name, limits, *, failure="fail_closed", share=None,
        deadline=0.05, connect_timeout=2.0, lease=None, per_client=None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        url: String,
        name: String,
        limits: &NativeLimits,
        failure: &str,
        share: Option<f64>,
        deadline: f64,
        connect_timeout: f64,
        lease: Option<f64>,
        per_client: Option<(u32, f64)>,
    ) -> PyResult<RedisAdmission> {
        guarded("RedisAdmission.connect", || {
            let options = StoreOptions {
                deadline: seconds(py, "deadline", deadline)?,
                connect_timeout: seconds(py, "connect_timeout", connect_timeout)?,
                failure_policy: failure_policy(py, failure, share)?,
                ..StoreOptions::default()
            };
            let config = Config {
                url,
                name,
                limits: limits.limits(),
                options,
                lease: lease.map(|s| seconds(py, "lease", s)).transpose()?,
                per_client: per_client
                    .map(|(limit, w)| Ok::<_, PyErr>((limit, seconds(py, "per_client window", w)?)))
                    .transpose()?,
            };
            let shared = Arc::new(Shared {
                config,
                live: PerProcess::new(),
            });
            let connecting = Arc::clone(&shared);
            blocking(py, async move { connecting.door().await })?.map_err(|f| f.into_err(py))?;
            Ok(RedisAdmission { shared })
        })
    }

    /// Decides one request (awaitable): a `RedisTicket`, or `RateLimited` / `Overloaded`.
    #[pyo3(signature = (key=None, priority="normal"))]
    fn try_admit<'py>(
        &self,
        py: Python<'py>,
        key: Option<String>,
        priority: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        guarded("RedisAdmission.try_admit", || {
            let class = request_class(py, priority)?;
            let shared = Arc::clone(&self.shared);
            let deciding = Arc::clone(&self.shared);
            awaitable(
                py,
                "RedisAdmission.try_admit",
                admit(deciding, key, class),
                move |py, out| ticket_or_refusal(py, shared, out),
            )
        })
    }

    /// As `try_admit`, blocking this thread (GIL released) instead of awaiting.
    #[pyo3(signature = (key=None, priority="normal"))]
    fn try_admit_blocking(
        &self,
        py: Python<'_>,
        key: Option<String>,
        priority: &str,
    ) -> PyResult<Py<PyAny>> {
        guarded("RedisAdmission.try_admit_blocking", || {
            let class = request_class(py, priority)?;
            let out = blocking(py, admit(Arc::clone(&self.shared), key, class))?;
            ticket_or_refusal(py, Arc::clone(&self.shared), out)
        })
    }

    /// Takes the queue place a detached token names (awaitable): a `RedisTicket` of this
    /// process, or `TokenError` (malformed, forged, of another name, expired, claimed).
    fn claim<'py>(&self, py: Python<'py>, token: String) -> PyResult<Bound<'py, PyAny>> {
        guarded("RedisAdmission.claim", || {
            let shared = Arc::clone(&self.shared);
            awaitable(
                py,
                "RedisAdmission.claim",
                claim(Arc::clone(&self.shared), token),
                move |py, out| claimed(py, shared, out),
            )
        })
    }

    /// As `claim`, blocking (GIL released).
    fn claim_blocking(&self, py: Python<'_>, token: String) -> PyResult<Py<PyAny>> {
        guarded("RedisAdmission.claim_blocking", || {
            let out = blocking(py, claim(Arc::clone(&self.shared), token))?;
            claimed(py, Arc::clone(&self.shared), out)
        })
    }

    /// This replica's counters: its decisions, its job waits, the places and slots it
    /// holds, its resource gate (empty before the store is connected).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guarded("RedisAdmission.snapshot", || {
            match self.shared.connected() {
                Some(live) => crate::metrics::snapshot_dict(py, &live.door.metrics().snapshot()),
                None => Ok(PyDict::new(py)),
            }
        })
    }

    /// The counters in the OpenMetrics text format: core's families, as the in-process
    /// door's, and the store's.
    fn render_prometheus(&self) -> String {
        self.shared
            .connected()
            .map(|live| crate::metrics::render_redis(&live.door))
            .unwrap_or_else(|| "# EOF\n".to_owned())
    }

    /// The answer the tower layer gives `refused` (raised by this door for `key`).
    #[pyo3(signature = (refused, key=None))]
    fn refusal_response(
        &self,
        py: Python<'_>,
        refused: &Bound<'_, PyAny>,
        key: Option<&str>,
    ) -> PyResult<HttpAnswer> {
        guarded("RedisAdmission.refusal_response", || {
            let refusal = refusal_of(py, refused)?;
            let live = self.shared.connected().ok_or_else(|| {
                INTERNAL_ERROR.msg(py, "no connection in this process yet; nothing was refused")
            })?;
            Ok(http_answer(&live.door, key, &refusal))
        })
    }
}

async fn admit(
    shared: Arc<Shared>,
    key: Option<String>,
    class: RequestClass,
) -> Result<(Decision<backstop_redis::RedisTicket>, Arc<Live>), ConnectFailure> {
    let live = shared.door().await?;
    let decision = live.door.admit(key.as_deref(), class).await;
    Ok((decision, live))
}

async fn claim(
    shared: Arc<Shared>,
    token: String,
) -> Result<Result<backstop_redis::RedisTicket, ClaimError>, ConnectFailure> {
    let live = shared.door().await?;
    Ok(live.door.claim(&token).await)
}

fn claimed(
    py: Python<'_>,
    shared: Arc<Shared>,
    out: Result<Result<backstop_redis::RedisTicket, ClaimError>, ConnectFailure>,
) -> PyResult<Py<PyAny>> {
    let ticket = out.map_err(|f| f.into_err(py))?.map_err(|err| match err {
        ClaimError::StoreUnavailable(_) => STORE_ERROR.msg(py, err.to_string()),
        other => TOKEN_ERROR.msg(py, format!("cannot claim this ticket: {other}")),
    })?;
    Ok(Py::new(
        py,
        RedisTicket {
            ticket: Some(ticket),
            shared,
            owner: Owner::here(),
        },
    )?
    .into_any())
}

/// The process a ticket or permit was made in. Its lease is renewed there (by that
/// process's runtime), and that process still holds it after a fork: a forked child's
/// copy must not start, detach or release it (the place or slot would then have two
/// owners, and a release by one would free what the other runs). The child's copy is
/// inert: using it raises, dropping it forgets it without touching Redis or the
/// parent's runtime, whose threads do not exist in the child. A place moves to another
/// process by `detach()` and `claim(token)`.
#[derive(Clone, Copy)]
struct Owner {
    generation: u64,
    pid: u32,
}

impl Owner {
    fn here() -> Owner {
        Owner {
            generation: crate::fork::generation(),
            pid: std::process::id(),
        }
    }

    fn is_here(self) -> bool {
        self.generation == crate::fork::generation()
    }

    fn check(self, py: Python<'_>, what: &str) -> PyResult<()> {
        if self.is_here() {
            return Ok(());
        }
        Err(CONFIG_ERROR.msg(
            py,
            format!(
                "this {what} was made in process {} before a fork; it stays that process's \
                 (which renews its lease and releases it), so this process cannot use it: \
                 hand a place over with detach() there and claim(token) here",
                self.pid
            ),
        ))
    }

    /// Takes `value` out of a copy that is not this process's, forgetting it.
    fn forget_foreign<T>(self, value: &mut Option<T>) {
        if !self.is_here() {
            std::mem::forget(value.take());
        }
    }
}

/// A place in the shared queue, held (and its lease renewed) by this process until it is
/// started, detached or released.
#[pyclass(module = "backstop_admission._native")]
pub(crate) struct RedisTicket {
    ticket: Option<backstop_redis::RedisTicket>,
    shared: Arc<Shared>,
    owner: Owner,
}

impl Drop for RedisTicket {
    fn drop(&mut self) {
        self.owner.forget_foreign(&mut self.ticket);
    }
}

type StartOutcome = Result<
    (
        Result<backstop_redis::RedisPermit, (backstop_redis::RedisTicket, WaitReason)>,
        Arc<Live>,
    ),
    ConnectFailure,
>;

impl RedisTicket {
    fn take(&mut self, py: Python<'_>) -> PyResult<backstop_redis::RedisTicket> {
        self.owner.check(py, "ticket")?;
        self.ticket.take().ok_or_else(|| {
            CONFIG_ERROR.msg(
                py,
                "this ticket holds no place (released, started, detached or exempt)",
            )
        })
    }

    /// A permit, or the ticket back in `slf` and `JobMustWait`.
    fn started(py: Python<'_>, slf: &Py<RedisTicket>, out: StartOutcome) -> PyResult<Py<PyAny>> {
        let (result, _) = out.map_err(|f| f.into_err(py))?;
        match result {
            Ok(permit) => Ok(Py::new(
                py,
                RedisPermit {
                    permit: Some(permit),
                    owner: Owner::here(),
                },
            )?
            .into_any()),
            Err((ticket, reason)) => {
                slf.borrow_mut(py).ticket = Some(ticket);
                Err(wait_error(py, &reason))
            }
        }
    }

    fn detached(
        py: Python<'_>,
        slf: &Py<RedisTicket>,
        out: Result<String, DetachError<backstop_redis::RedisTicket>>,
    ) -> PyResult<Py<PyAny>> {
        match out {
            Ok(token) => Ok(token.into_pyobject(py)?.into_any().unbind()),
            Err(DetachError::StoreUnavailable(ticket, cause)) => {
                slf.borrow_mut(py).ticket = Some(ticket);
                Err(STORE_ERROR.msg(py, format!("cannot detach the ticket: {cause}")))
            }
            Err(other) => Err(TOKEN_ERROR.msg(py, format!("cannot detach the ticket: {other}"))),
        }
    }
}

async fn start(shared: Arc<Shared>, ticket: backstop_redis::RedisTicket) -> StartOutcome {
    let live = shared.door().await?;
    let result = live.door.start_job(ticket).await;
    Ok((result, live))
}

#[pymethods]
impl RedisTicket {
    /// Whether it still holds its place (false in a forked child: the parent holds it).
    #[getter]
    fn held(&self) -> bool {
        self.ticket.is_some() && self.owner.is_here()
    }

    /// Starts the job (awaitable): a `RedisPermit`, or `JobMustWait` with the ticket kept.
    fn start<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        guarded("RedisTicket.start", || {
            let (ticket, shared) = {
                let mut this = slf.borrow_mut();
                (this.take(py)?, Arc::clone(&this.shared))
            };
            let me = slf.clone().unbind();
            awaitable(
                py,
                "RedisTicket.start",
                start(shared, ticket),
                move |py, out| RedisTicket::started(py, &me, out),
            )
        })
    }

    /// As `start`, blocking (GIL released).
    fn start_blocking(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        guarded("RedisTicket.start_blocking", || {
            let (ticket, shared) = {
                let mut this = slf.borrow_mut();
                (this.take(py)?, Arc::clone(&this.shared))
            };
            let out = blocking(py, start(shared, ticket))?;
            RedisTicket::started(py, &slf.clone().unbind(), out)
        })
    }

    /// Hands the place to another process (awaitable): a JSON-safe token that
    /// `RedisAdmission.claim` turns back into a ticket within `queue.max_wait`.
    fn detach<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        guarded("RedisTicket.detach", || {
            let ticket = slf.borrow_mut().take(py)?;
            let me = slf.clone().unbind();
            awaitable(py, "RedisTicket.detach", ticket.detach(), move |py, out| {
                RedisTicket::detached(py, &me, out)
            })
        })
    }

    /// As `detach`, blocking (GIL released).
    fn detach_blocking(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        guarded("RedisTicket.detach_blocking", || {
            let ticket = slf.borrow_mut().take(py)?;
            let out = blocking(py, ticket.detach())?;
            RedisTicket::detached(py, &slf.clone().unbind(), out)
        })
    }

    /// Gives the place back (in the background); true if this call released it.
    fn release(&mut self) -> bool {
        self.owner.forget_foreign(&mut self.ticket);
        self.ticket.take().is_some()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.release();
        false
    }
}

/// A running job's shared slot; its lease is renewed in the background until released.
#[pyclass(module = "backstop_admission._native")]
pub(crate) struct RedisPermit {
    permit: Option<backstop_redis::RedisPermit>,
    owner: Owner,
}

impl Drop for RedisPermit {
    fn drop(&mut self) {
        self.owner.forget_foreign(&mut self.permit);
    }
}

#[pymethods]
impl RedisPermit {
    /// Whether it still holds its slot (false in a forked child: the parent holds it).
    #[getter]
    fn held(&self) -> bool {
        self.permit.is_some() && self.owner.is_here()
    }

    /// True once the lease was found gone or unrenewed for a whole lease: the slot may
    /// be someone else's now.
    #[getter]
    fn lost(&self) -> bool {
        self.permit.as_ref().is_some_and(|permit| permit.is_lost())
    }

    /// The fencing token of this take (grows with every take of the gate).
    #[getter]
    fn fencing_token(&self) -> Option<u64> {
        self.permit.as_ref().map(|permit| permit.fencing_token())
    }

    /// Gives the slot back (in the background); true if this call released it.
    fn release(&mut self) -> bool {
        self.owner.forget_foreign(&mut self.permit);
        self.permit.take().is_some()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.release();
        false
    }
}
