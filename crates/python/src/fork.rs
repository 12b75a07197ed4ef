//! What a forked child must not inherit: the tokio runtime's threads, Redis connections,
//! the resource sampler's thread. None of them survive `fork` (only the forking thread
//! does), and a lock one of them held is held forever in the child.
//!
//! The module registers [`after_fork_in_child`] with `os.register_at_fork` when it is
//! imported. It bumps a process generation; every per-process value
//! ([`PerProcess`]) remembers the generation it was made in and is made afresh when
//! asked in a later one. The parent's values are leaked in the child, never dropped:
//! dropping a runtime would wait for threads that do not exist there.
//!
//! Forks that bypass `os.fork` (a C extension calling `fork()` directly) are not seen;
//! `multiprocessing`, Celery's prefork pool (billiard), gunicorn and uvicorn all go
//! through `os.fork` or start a fresh interpreter (`spawn`).

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use pyo3::prelude::*;

/// Bumped in every child right after `os.fork`.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current process generation (0 in the process that imported the module first).
pub(crate) fn generation() -> u64 {
    // Relaxed: the hook runs in the child's only thread before any other starts.
    GENERATION.load(Ordering::Relaxed)
}

/// Registered with `os.register_at_fork(after_in_child=...)` at import.
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    // Relaxed: see `generation`.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers [`_after_fork_in_child`] (from the module's own attribute, so it is the
/// function object Python holds).
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let hook = module.getattr("_after_fork_in_child")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("after_in_child", hook)?;
    py.import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    Ok(())
}

struct Entry<T> {
    generation: u64,
    value: T,
}

/// A value made lazily, once per process: after a fork the child makes its own on first
/// use. Lock-free: the first caller of a generation to publish wins; a caller that
/// loses drops its own and uses the winner's.
pub(crate) struct PerProcess<T> {
    slot: AtomicPtr<Entry<T>>,
}

impl<T> PerProcess<T> {
    /// Empty: the value is made on first use.
    pub(crate) const fn new() -> PerProcess<T> {
        PerProcess {
            slot: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This process's value, made by `init` if there is none yet.
    pub(crate) fn get_or_try_init<E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        let generation = generation();
        // Acquire: pairs with the AcqRel publication below, so the value is seen built.
        let current = self.slot.load(Ordering::Acquire);
        if let Some(entry) = self.entry_of(current, generation) {
            return Ok(entry);
        }
        let fresh = Box::into_raw(Box::new(Entry {
            generation,
            value: init()?,
        }));
        // AcqRel: publishes `fresh` (Release) and reads a competitor's (Acquire).
        match self
            .slot
            .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // `current`, if any, is the parent's: leaked (see the module docs).
            // SAFETY: `fresh` is published and never freed while `self` lives.
            Ok(_) => Ok(unsafe { &(*fresh).value }),
            Err(winner) => {
                // SAFETY: `fresh` was never published; this is its only pointer.
                drop(unsafe { Box::from_raw(fresh) });
                match self.entry_of(winner, generation) {
                    Some(entry) => Ok(entry),
                    // Only a fork between our load and CAS makes the winner stale; the
                    // forking thread is the one running here, so that cannot happen.
                    None => unreachable!("a per-process value published by another generation"),
                }
            }
        }
    }

    fn entry_of(&self, entry: *mut Entry<T>, generation: u64) -> Option<&T> {
        if entry.is_null() {
            return None;
        }
        // Entries are published fully built (Release) and freed only by `Drop`, which
        // needs `&mut self`, so the pointee outlives `&self`.
        // SAFETY: non-null pointers in `slot` point to live, published entries.
        let entry = unsafe { &*entry };
        (entry.generation == generation).then_some(&entry.value)
    }
}

impl<T> Drop for PerProcess<T> {
    fn drop(&mut self) {
        let entry = *self.slot.get_mut();
        if entry.is_null() {
            return;
        }
        // SAFETY: `&mut self`: nobody else reads the entry; it was made by Box::into_raw.
        let entry = unsafe { Box::from_raw(entry) };
        if entry.generation != generation() {
            // The parent's: its threads are gone here, so it must not run its drop.
            std::mem::forget(entry);
        }
    }
}
