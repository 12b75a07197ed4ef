//! Awaitables for asyncio without taking the GIL on tokio's threads.
//!
//! A Redis decision finishes on a tokio worker. Handing its result to Python through
//! `loop.call_soon_threadsafe` would make that worker take the GIL, which the event loop
//! holds while it runs: under load every completion would wait out the interpreter's
//! switch interval. Instead each event loop has one [`Completions`]: finished operations
//! go into a lock-free channel, and the first one after the loop last looked writes to an
//! `eventfd` the loop watches (`loop.add_reader`). The loop then resolves every finished
//! future in one call ([`Completions::drain`]), on its own thread, with the GIL it holds.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::boundary::{INTERNAL_ERROR, guarded};

/// Turns a finished operation's Rust result into the future's result or exception.
pub(crate) type Resolve = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

struct Done {
    future: Py<PyAny>,
    resolve: Resolve,
}

/// The sending half, shared by the tasks of one event loop.
pub(crate) struct Waker {
    sender: UnboundedSender<Done>,
    eventfd: OwnedFd,
    /// Set once a wake-up is written and not yet drained: one `write` per batch.
    pending: AtomicBool,
}

impl Waker {
    /// Hands a finished operation to the loop (any thread, no GIL).
    pub(crate) fn finish(&self, future: Py<PyAny>, resolve: Resolve) {
        if self.sender.send(Done { future, resolve }).is_err() {
            return; // the loop's Completions is gone: nobody awaits this any more
        }
        // SeqCst: pairs with the SeqCst store in `drain`, so that a completion sent
        // after a drain cleared the flag always writes a new wake-up.
        if !self.pending.swap(true, Ordering::SeqCst) {
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }
}

/// The completions of one asyncio event loop (see the module docs).
#[pyclass(module = "backstop_admission._native")]
pub(crate) struct Completions {
    waker: Arc<Waker>,
    receiver: UnboundedReceiver<Done>,
    event_loop: Py<PyAny>,
}

impl Completions {
    /// The waker tasks use, and a new future of this loop.
    pub(crate) fn future<'py>(&self, py: Python<'py>) -> PyResult<(Arc<Waker>, Bound<'py, PyAny>)> {
        let future = self.event_loop.bind(py).call_method0("create_future")?;
        Ok((Arc::clone(&self.waker), future))
    }
}

#[pymethods]
impl Completions {
    #[new]
    fn new(py: Python<'_>, event_loop: Py<PyAny>) -> PyResult<Completions> {
        guarded("Completions", || {
            let eventfd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(|err| INTERNAL_ERROR.msg(py, format!("cannot create an eventfd: {err}")))?;
            let (sender, receiver) = unbounded_channel();
            Ok(Completions {
                waker: Arc::new(Waker {
                    sender,
                    eventfd,
                    pending: AtomicBool::new(false),
                }),
                receiver,
                event_loop,
            })
        })
    }

    /// The descriptor the loop watches.
    fn fileno(&self) -> i32 {
        self.waker.eventfd.as_raw_fd()
    }

    /// Resolves every finished future (the loop's reader callback).
    fn drain(&mut self, py: Python<'_>) -> PyResult<()> {
        guarded("Completions.drain", || {
            // SeqCst: see `Waker::finish`.
            self.waker.pending.store(false, Ordering::SeqCst);
            let mut counter = [0u8; 8];
            let _ = rustix::io::read(&self.waker.eventfd, &mut counter);
            while let Ok(done) = self.receiver.try_recv() {
                let future = done.future.bind(py);
                if future.call_method0("done")?.is_truthy()? {
                    continue; // cancelled: what it held is dropped (released) here
                }
                match (done.resolve)(py) {
                    Ok(value) => future.call_method1("set_result", (value,))?,
                    Err(err) => future.call_method1("set_exception", (err.into_value(py),))?,
                };
            }
            Ok(())
        })
    }
}
