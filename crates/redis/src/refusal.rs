//! The refusals a Redis-backed stage answers with: core's, plus one of its own.

use std::fmt;
use std::time::Duration;

use backstop_core::{OverloadReason, RateScope};

/// A refused request. The first two variants mirror [`backstop_core::Refusal`] exactly;
/// [`StoreUnavailable`](Self::StoreUnavailable) is new, and is what `fail_closed`
/// answers while Redis is down or slow (see the crate's Integration plan: core's
/// `OverloadReason` would gain `StoreUnavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Too many requests in the window (429).
    #[error("rate limited ({scope:?}): retry after {retry_after:?}")]
    RateLimited {
        /// Exactly when a retry would be admitted, were nothing else admitted meanwhile
        /// (to the microsecond: the store's time resolution).
        retry_after: Duration,
        /// Which window refused: the shared one or the client's own.
        scope: RateScope,
    },
    /// A shared bound was reached (503).
    #[error("overloaded ({reason}): retry after about {retry_after_hint:?}")]
    Overloaded {
        /// Which bound.
        reason: OverloadReason,
        /// A suggestion, not a promise.
        retry_after_hint: Duration,
    },
    /// Redis did not answer in time or failed, and the policy is `fail_closed` (503).
    #[error("store unavailable: retry after about {retry_after_hint:?}")]
    StoreUnavailable {
        /// A suggestion, not a promise.
        retry_after_hint: Duration,
    },
}

impl Refusal {
    /// 429 for [`RateLimited`](Self::RateLimited), 503 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            Refusal::RateLimited { .. } => 429,
            _ => 503,
        }
    }

    /// How long the client should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        match *self {
            Refusal::RateLimited { retry_after, .. } => retry_after,
            Refusal::Overloaded {
                retry_after_hint, ..
            }
            | Refusal::StoreUnavailable { retry_after_hint } => retry_after_hint,
        }
    }

    /// `rate_limited`, the overload reason's name, or `store_unavailable`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Overloaded { reason, .. } => reason.as_str(),
            Refusal::StoreUnavailable { .. } => "store_unavailable",
        }
    }

    /// The same refusal as core's type, when core has one for it.
    pub fn to_core(&self) -> Option<backstop_core::Refusal> {
        match *self {
            Refusal::RateLimited { retry_after, scope } => {
                Some(backstop_core::Refusal::RateLimited { retry_after, scope })
            }
            Refusal::Overloaded {
                reason,
                retry_after_hint,
            } => Some(backstop_core::Refusal::Overloaded {
                reason,
                retry_after_hint,
            }),
            Refusal::StoreUnavailable { .. } => None,
        }
    }
}

impl From<backstop_core::Refusal> for Refusal {
    fn from(refusal: backstop_core::Refusal) -> Self {
        match refusal {
            backstop_core::Refusal::RateLimited { retry_after, scope } => {
                Refusal::RateLimited { retry_after, scope }
            }
            backstop_core::Refusal::Overloaded {
                reason,
                retry_after_hint,
            } => Refusal::Overloaded {
                reason,
                retry_after_hint,
            },
        }
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
