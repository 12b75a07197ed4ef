//! [`AdmissionTicket`]: a queue ticket handed to the handler through the request's
//! extensions.

use std::fmt;
use std::sync::Arc;

use backstop_core::jobs::QueueTicket;
use crossbeam_utils::atomic::AtomicCell;

// `take` must not hide a lock: a ticket is one `Arc`, so `Option<QueueTicket>` is one
// pointer wide and the cell is a plain atomic swap. (Every ticket type is checked where
// a cell is made, in `AdmissionTicket::new`.)
const _: () = assert!(AtomicCell::<Option<QueueTicket>>::is_lock_free());

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
/// `backstop_redis::RedisTicket` for a Redis-backed door. It must be one pointer wide
/// (checked when the layer is compiled), so that `take` is a lock-free swap.
pub struct AdmissionTicket<T = QueueTicket> {
    cell: Arc<AtomicCell<Option<T>>>,
}

impl<T> Clone for AdmissionTicket<T> {
    fn clone(&self) -> Self {
        AdmissionTicket {
            cell: Arc::clone(&self.cell),
        }
    }
}

impl<T> AdmissionTicket<T> {
    pub(crate) fn new(ticket: T) -> Self {
        const {
            assert!(
                AtomicCell::<Option<T>>::is_lock_free(),
                "a ticket handed over must be one pointer wide (box it)"
            );
        }
        AdmissionTicket {
            cell: Arc::new(AtomicCell::new(Some(ticket))),
        }
    }

    /// Takes the ticket out; `None` if it was taken already (by this or another clone).
    pub fn take(&self) -> Option<T> {
        self.cell.take()
    }
}

impl<T> fmt::Debug for AdmissionTicket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionTicket").finish_non_exhaustive()
    }
}
