//! [`AdmissionTicket`]: a queue ticket handed to the handler through the request's
//! extensions.

use std::fmt;
use std::sync::Arc;

use backstop_core::jobs::QueueTicket;
use crossbeam_utils::atomic::AtomicCell;

/// The queue place of an admitted request, put in its extensions when the layer is built
/// with [`AdmissionLayer::hand_over_ticket`](crate::AdmissionLayer::hand_over_ticket).
///
/// The response future holds a clone: until a handler [`take`](Self::take)s the ticket,
/// it is released when the response future completes or is dropped (the client went
/// away). A handler that queues a job takes the ticket and passes it to the worker,
/// which starts the job with [`Admission::start_job`](backstop_core::Admission::start_job);
/// the job then stays queued whatever happens to the connection.
///
/// `T` is the front door's ticket: core's [`QueueTicket`] by default,
/// `backstop_redis::RedisTicket` for a Redis-backed door.
pub struct AdmissionTicket<T = QueueTicket> {
    // Boxed, so that the cell holds one pointer whatever the ticket's size (core's
    // carries its issue time beside its counters' pointer) and `take` is one atomic swap,
    // never the lock `AtomicCell` falls back to for wider values. The box costs one
    // allocation beside the `Arc`'s, and only when tickets are handed over.
    cell: Arc<AtomicCell<Option<Box<T>>>>,
}

const _: () = assert!(AtomicCell::<Option<Box<QueueTicket>>>::is_lock_free());

impl<T> Clone for AdmissionTicket<T> {
    fn clone(&self) -> Self {
        AdmissionTicket {
            cell: Arc::clone(&self.cell),
        }
    }
}

impl<T> AdmissionTicket<T> {
    pub(crate) fn new(ticket: T) -> Self {
        AdmissionTicket {
            cell: Arc::new(AtomicCell::new(Some(Box::new(ticket)))),
        }
    }

    /// Takes the ticket out; `None` if it was taken already (by this or another clone).
    pub fn take(&self) -> Option<T> {
        self.cell.take().map(|ticket| *ticket)
    }
}

impl<T> fmt::Debug for AdmissionTicket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionTicket").finish_non_exhaustive()
    }
}
