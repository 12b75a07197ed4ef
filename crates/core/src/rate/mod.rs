//! Rate limiting: the 429 answer.
//!
//! [`SlidingWindow`] is an exact sliding-window limiter kept in a lock-free ring of
//! admission times. [`KeyedSlidingWindow`] gives every key (client, tenant) its own exact
//! window, in memory bounded by `max_keys`.

mod keyed;
mod ring;
mod window;

pub use keyed::{KeyedRefusal, KeyedSlidingWindow, MAX_KEYS, TooManyKeys};
pub use window::{MAX_LIMIT, MAX_WINDOW, SlidingWindow};

use std::time::Duration;

/// Times at or above this (2⁶² ns, 146 years after a clock's epoch) are treated as this
/// wherever a ring may be sealed, so that its times stay below the seal bit.
pub(crate) const SEALABLE_TIME_NS: u64 = 1 << 62;

const _: () = assert!(MAX_WINDOW.as_nanos() < SEALABLE_TIME_NS as u128);

/// A request was refused because its window already holds `limit` admissions (HTTP 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("rate limited: retry after {retry_after:?}")]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    /// A refusal that will clear after `retry_after`.
    pub fn new(retry_after: Duration) -> Self {
        RateLimited { retry_after }
    }

    /// Exactly how long until the oldest admission in the window leaves it.
    ///
    /// A retry at `now + retry_after` is admitted if nothing else was admitted meanwhile;
    /// a retry one nanosecond earlier is not.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}
