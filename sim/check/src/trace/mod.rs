//! The trace format: JSON Lines of requests and resource readings, streamed.
//!
//! See `sim/README.md` for the format. [`TraceReader`] reads one line at a time, so memory
//! stays flat however long the trace (apart from one bit per request id, to reject
//! duplicates, and the interned client keys, both bounded). [`TraceWriter`] writes the
//! same lines; [`EventSource`] is what a replay or a check reads events from.

mod event;
mod keys;
mod reader;
mod source;
mod writer;

pub use event::{
    Event, MAX_BYTES_PER_JOB, MAX_FILES_PER_JOB, MAX_KEY_BYTES, MAX_KEYS, MAX_LINE_BYTES,
    MAX_TIME_US, Request,
};
pub use keys::{IdSet, KeyTable};
pub use reader::{TraceError, TraceReader};
pub use source::{EventSource, Events};
pub use writer::TraceWriter;
