//! [`EventSource`]: where a replay or a check takes its trace events from: a file
//! ([`TraceReader`]), events in memory ([`Events`]) or a generator.

use std::io::BufRead;

use super::event::Event;
use super::reader::{TraceError, TraceReader};

/// Where trace events come from: a file or a generator.
pub trait EventSource {
    /// The next event in time order, `None` at the end.
    fn next_event(&mut self) -> Result<Option<Event>, TraceError>;

    /// The name of interned client key `k`, for the per-client stage; `None` names it
    /// `key-<k>`.
    fn key_name(&self, k: u32) -> Option<String> {
        let _ = k;
        None
    }
}

impl<R: BufRead> EventSource for TraceReader<R> {
    #[inline]
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        TraceReader::next_event(self)
    }

    fn key_name(&self, k: u32) -> Option<String> {
        self.keys().name(k).map(str::to_owned)
    }
}

/// Events already in memory (any iterator), e.g. for benchmarks.
///
/// The iterator must yield events in time order with unique request ids; unlike
/// [`TraceReader`] it is not validated.
#[derive(Debug, Clone)]
pub struct Events<I>(pub I);

impl<I: Iterator<Item = Event>> EventSource for Events<I> {
    #[inline]
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        Ok(self.0.next())
    }
}
