//! Refusals as Python exceptions: `RateLimited` / `Overloaded` raised for a core
//! `Refusal`, and a `Refused` read back into one to answer it over HTTP.
//!
//! Under a burst nearly every call is refused, so the exception is the hot path's
//! answer, and making it costs more than the decision. Three things keep it cheap, none
//! of them visible from Python:
//! - no `retry_after` float is made: `Refused.retry_after` computes it from
//!   `retry_after_ns` when it is read;
//! - the instance is made by the class's `tp_new` alone. The classes define no
//!   `__new__` or `__init__` of their own (checked when a class is first used; a class
//!   that does is called as usual), so `BaseException.__init__` would only set `args`
//!   a second time;
//! - each kind of refusal reuses one `args` tuple while no exception holds it any more
//!   (its reference count is 1: only this module's), changing only its
//!   `retry_after_ns`, as CPython's `enumerate` and `zip` reuse their result tuples. An
//!   exception still alive (kept by the caller, or being handled elsewhere) keeps its
//!   tuple unchanged: the next refusal makes a fresh one.

use std::time::Duration;

use backstop_core::{OverloadReason, RateScope, Refusal};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};

use crate::boundary::{CONFIG_ERROR, ERRORS_MODULE};

/// Where `Refused`'s arguments keep `retry_after_ns`:
/// `(message, retry_after, reason, scope, retry_after_ns)`.
const NS_ARG: usize = 4;

/// One `args` tuple per kind of refusal: each rate scope, then each overload reason.
const KINDS: usize = RateScope::ALL.len() + OverloadReason::ALL.len();
static ARGS: [PyOnceLock<Py<PyTuple>>; KINDS] = [const { PyOnceLock::new() }; KINDS];

/// `RateLimited` or `Overloaded`, and how to make one.
struct RefusalClass {
    name: &'static str,
    class: PyOnceLock<(Py<PyType>, Option<ffi::newfunc>)>,
}

static RATE_LIMITED: RefusalClass = RefusalClass::new("RateLimited");
static OVERLOADED: RefusalClass = RefusalClass::new("Overloaded");

impl RefusalClass {
    const fn new(name: &'static str) -> RefusalClass {
        RefusalClass {
            name,
            class: PyOnceLock::new(),
        }
    }

    /// An instance with `args`, as calling the class would make it.
    fn instance<'py>(
        &self,
        py: Python<'py>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (class, new) = self.class.get_or_try_init(py, || import(py, self.name))?;
        let Some(new) = new else {
            return class.bind(py).call1(args);
        };
        // `new` returns a new reference, or null with a Python exception set.
        // SAFETY: `new` is this heap type's own `tp_new` slot, called as `type_call`
        // calls it: the type, a tuple of positional arguments, no keywords.
        unsafe {
            let made = new(class.as_ptr().cast(), args.as_ptr(), std::ptr::null_mut());
            Bound::from_owned_ptr_or_err(py, made)
        }
    }
}

/// The class, and its `tp_new` when that alone makes a whole instance: a heap type
/// with no `__new__` or `__init__` of its own below `Exception`.
fn import(py: Python<'_>, name: &str) -> PyResult<(Py<PyType>, Option<ffi::newfunc>)> {
    let class = py
        .import(ERRORS_MODULE)?
        .getattr(name)?
        .cast_into::<PyType>()?;
    let exception = py.get_type::<pyo3::exceptions::PyException>();
    let mut plain = true;
    for base in class.getattr("__mro__")?.cast_into::<PyTuple>()? {
        if base.is(&exception) {
            break;
        }
        let own = base.getattr("__dict__")?;
        plain &= !own.contains("__new__")? && !own.contains("__init__")?;
    }
    // SAFETY: a type object's flags are readable at any time with the GIL held.
    let heap =
        unsafe { ffi::PyType_GetFlags(class.as_ptr().cast()) } & ffi::Py_TPFLAGS_HEAPTYPE != 0;
    let new = if plain && heap {
        // SAFETY: `PyType_GetSlot` on a heap type is in the limited API since 3.4; the
        // `Py_tp_new` slot holds a `newfunc` (null when the type cannot be instantiated).
        let slot = unsafe { ffi::PyType_GetSlot(class.as_ptr().cast(), ffi::Py_tp_new) };
        // SAFETY: a non-null `Py_tp_new` slot is a `newfunc`.
        (!slot.is_null()).then(|| unsafe { std::mem::transmute::<_, ffi::newfunc>(slot) })
    } else {
        None
    };
    Ok((class.unbind(), new))
}

/// Which of [`ARGS`], which class, and the reason and scope of `refusal`.
fn kind_of(refusal: &Refusal) -> (usize, &'static RefusalClass, Option<RateScope>) {
    match *refusal {
        Refusal::RateLimited { scope, .. } => {
            let index = RateScope::ALL.iter().position(|s| *s == scope);
            (index.unwrap_or(0), &RATE_LIMITED, Some(scope))
        }
        Refusal::Overloaded { reason, .. } => {
            let index = OverloadReason::ALL.iter().position(|r| *r == reason);
            (RateScope::ALL.len() + index.unwrap_or(0), &OVERLOADED, None)
        }
    }
}

/// The arguments of a refusal of this kind waiting `wait_ns`: the kind's reusable
/// tuple when no exception holds it, else a fresh one.
fn refusal_args<'py>(
    py: Python<'py>,
    refusal: &Refusal,
    index: usize,
    scope: Option<RateScope>,
    wait_ns: u64,
) -> PyResult<Bound<'py, PyTuple>> {
    let wait_ns = wait_ns.into_pyobject(py)?;
    let reusable = ARGS[index].get_or_try_init(py, || {
        let reason = PyString::intern(py, refusal.as_str());
        let scope = scope.map(|s| PyString::intern(py, s.as_str()));
        let message = PyString::intern(py, "");
        Ok::<_, PyErr>(
            PyTuple::new(
                py,
                [
                    message.into_any(),
                    py.None().into_bound(py),
                    reason.into_any(),
                    scope.map_or_else(|| py.None().into_bound(py), Bound::into_any),
                    wait_ns.clone().into_any(),
                ],
            )?
            .unbind(),
        )
    })?;
    let reusable = reusable.bind(py);
    // SAFETY: reading the reference count of a live object, with the GIL held (an abi3
    // module is only loaded by builds with a GIL, so no other thread changes it now).
    if unsafe { ffi::Py_REFCNT(reusable.as_ptr()) } == 1 {
        // `PyTuple_SetItem` takes `wait_ns`'s reference and drops the one it replaces.
        // SAFETY: the tuple is referenced by `ARGS` alone (count 1, the GIL held), so
        // nothing can see it change: `PyTuple_SetItem`'s own condition.
        let status = unsafe {
            ffi::PyTuple_SetItem(
                reusable.as_ptr(),
                NS_ARG as ffi::Py_ssize_t,
                wait_ns.into_ptr(),
            )
        };
        if status == 0 {
            return Ok(reusable.clone());
        }
        return Err(PyErr::fetch(py));
    }
    let mut items: Vec<Bound<'py, PyAny>> = reusable.iter().take(NS_ARG).collect();
    items.push(wait_ns.into_any());
    PyTuple::new(py, items)
}

/// `RateLimited` or `Overloaded` for `refusal`, with its attributes. Out of line: the
/// admitting path stays as small as it was without it.
#[cold]
pub(crate) fn refusal_error(py: Python<'_>, refusal: &Refusal) -> PyErr {
    let wait_ns = u64::try_from(refusal.retry_after().as_nanos()).unwrap_or(u64::MAX);
    let (index, class, scope) = kind_of(refusal);
    match refusal_args(py, refusal, index, scope, wait_ns).and_then(|args| class.instance(py, args))
    {
        Ok(instance) => PyErr::from_value(instance),
        Err(err) => err,
    }
}

/// The `Refusal` a `Refused` exception describes (its `reason`, `scope` and
/// `retry_after_ns`), for answering it over HTTP.
pub(crate) fn refusal_of(py: Python<'_>, refused: &Bound<'_, PyAny>) -> PyResult<Refusal> {
    let reason: String = refused.getattr("reason")?.extract()?;
    let wait = Duration::from_nanos(refused.getattr("retry_after_ns")?.extract()?);
    if reason == "rate_limited" {
        let scope: Option<String> = refused.getattr("scope")?.extract()?;
        let scope = RateScope::ALL
            .into_iter()
            .find(|s| Some(s.as_str()) == scope.as_deref())
            .unwrap_or(RateScope::Global);
        return Ok(Refusal::RateLimited {
            retry_after: wait,
            scope,
        });
    }
    let reason = OverloadReason::ALL
        .into_iter()
        .find(|r| r.as_str() == reason)
        .ok_or_else(|| CONFIG_ERROR.msg(py, format!("not a refusal reason: {reason:?}")))?;
    Ok(Refusal::Overloaded {
        reason,
        retry_after_hint: wait,
    })
}

/// An HTTP answer: status, headers, body.
pub(crate) type HttpAnswer = (u16, Vec<(String, String)>, String);

/// The tower layer's answer to `refusal` from `door`, as plain parts.
pub(crate) fn http_answer<D: backstop_core::FrontDoor>(
    door: &D,
    key: Option<&str>,
    refusal: &Refusal,
) -> HttpAnswer {
    let response = backstop_tower::refusal_response_for(door, key, refusal);
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    (response.status().as_u16(), headers, response.into_body())
}
