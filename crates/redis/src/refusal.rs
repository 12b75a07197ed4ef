//! The refusals a Redis-backed stage answers with: core's own [`Refusal`], so that a
//! service answers the same 429s and 503s whichever backend keeps its limits. What
//! `fail_closed` answers while Redis is down or slow is 503
//! [`OverloadReason::StoreUnavailable`] (`store_unavailable`).

use std::fmt;
use std::time::Duration;

use backstop_core::OverloadReason;
pub use backstop_core::Refusal;

/// 503 `store_unavailable`, suggesting a retry after `retry_after_hint`.
pub(crate) fn store_unavailable(retry_after_hint: Duration) -> Refusal {
    Refusal::Overloaded {
        reason: OverloadReason::StoreUnavailable,
        retry_after_hint,
    }
}

/// Where a decision came from, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Decided by Redis.
    Store,
    /// Decided by the in-process fallback window (`local_fallback`).
    LocalFallback,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Store => "store",
            Source::LocalFallback => "local_fallback",
        })
    }
}
