//! Rate limiting: the 429 answer.
//!
//! [`SlidingWindow`] is an exact sliding-window limiter kept in a lock-free ring of
//! admission times. [`KeyedSlidingWindow`] gives every key (client, tenant) its own exact
//! window, in memory bounded by `max_keys`. Both are built from a [`Quota`], the one
//! check of a rate shape.

mod keyed;
pub(crate) mod memory;
mod quota;
mod ring;
mod window;

pub use keyed::{KeyedRefusal, KeyedSlidingWindow, MAX_KEYS, TooManyKeys};
pub use quota::{MAX_LIMIT, MAX_WINDOW, Quota};
pub use window::SlidingWindow;

use std::time::Duration;

/// The latest time a ring records: readings at or past it (2⁶² ns, 146 years after a
/// clock's epoch) count as it, so that a slot's value stays below a sealed one and
/// `time + window` never overflows. A sealed ring refuses with a wait of at least 2⁶³.
pub(crate) const SEALABLE_TIME_NS: u64 = 1 << 62;

const _: () = assert!(MAX_WINDOW.as_nanos() < SEALABLE_TIME_NS as u128);

/// A request was refused because its window already holds `limit` admissions (HTTP 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("rate limited: retry after {:?}", self.retry_after())]
pub struct RateLimited {
    /// Kept as nanoseconds, the unit the window decides in: a refusal is often dropped
    /// unread, and the `Duration` is built only when asked for.
    retry_after_ns: u64,
}

impl RateLimited {
    /// A refusal that will clear after `retry_after` (at most `u64::MAX` nanoseconds,
    /// about 584 years; longer waits are kept as that).
    pub fn new(retry_after: Duration) -> Self {
        RateLimited {
            retry_after_ns: u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// A refusal that will clear after `retry_after_ns` nanoseconds.
    #[inline]
    pub(crate) fn from_nanos(retry_after_ns: u64) -> Self {
        RateLimited { retry_after_ns }
    }

    /// Exactly how long until the oldest admission in the window leaves it.
    ///
    /// A retry at `now + retry_after` is admitted if nothing else was admitted meanwhile;
    /// a retry one nanosecond earlier is not.
    #[inline]
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.retry_after_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_its_wait_to_the_nanosecond_and_saturates_past_u64() {
        let wait = Duration::new(59, 999_999_999);
        assert_eq!(RateLimited::new(wait).retry_after(), wait);
        assert_eq!(RateLimited::from_nanos(59_999_999_999).retry_after(), wait);
        assert_eq!(
            RateLimited::new(Duration::MAX).retry_after(),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(
            RateLimited::new(wait).to_string(),
            "rate limited: retry after 59.999999999s"
        );
    }
}
