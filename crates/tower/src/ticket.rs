//! [`AdmissionTicket`]: a queue ticket handed to the handler through the request's
//! extensions.

use std::fmt;
use std::sync::Arc;

use backstop_core::jobs::QueueTicket;
use crossbeam_utils::atomic::AtomicCell;

// `take` must not hide a lock: a ticket is one `Arc`, so `Option<QueueTicket>` is one
// pointer wide and the cell is a plain atomic swap.
const _: () = assert!(AtomicCell::<Option<QueueTicket>>::is_lock_free());

/// The queue place of an admitted request, put in its extensions when the layer is built
/// with [`AdmissionLayer::hand_over_ticket`](crate::AdmissionLayer::hand_over_ticket).
///
/// The response future holds a clone: until a handler [`take`](Self::take)s the ticket,
/// it is released when the response future completes or is dropped (the client went
/// away). A handler that queues a job takes the ticket and passes it to the worker,
/// which starts the job with [`Admission::start_job`](backstop_core::Admission::start_job);
/// the job then stays queued whatever happens to the connection.
#[derive(Clone)]
pub struct AdmissionTicket {
    cell: Arc<AtomicCell<Option<QueueTicket>>>,
}

impl AdmissionTicket {
    pub(crate) fn new(ticket: QueueTicket) -> Self {
        AdmissionTicket {
            cell: Arc::new(AtomicCell::new(Some(ticket))),
        }
    }

    /// Takes the ticket out; `None` if it was taken already (by this or another clone).
    pub fn take(&self) -> Option<QueueTicket> {
        self.cell.take()
    }
}

impl fmt::Debug for AdmissionTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionTicket").finish_non_exhaustive()
    }
}
