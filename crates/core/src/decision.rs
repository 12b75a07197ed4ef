//! The vocabulary of a front door's answers: who asks ([`RequestClass`]), what is
//! decided ([`Decision`]), why a request is refused ([`Refusal`], [`RateScope`],
//! [`OverloadReason`]) and why a job waits ([`WaitReason`]).
//!
//! Below the front doors and the metrics that count their answers, so that both name
//! them without naming each other.

use std::time::Duration;

use crate::jobs::QueueTicket;
use crate::label::labelled;
use crate::resources::Shortage;

/// Who is asking, which decides what they are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RequestClass {
    /// Held to the rate limit and to the normal share of the queue.
    #[default]
    Normal,
    /// Held to the rate limit, and may use the queue room kept back for it
    /// (`queue.critical_reserve`).
    Critical,
    /// Health checks, admin calls: bypass the rate limit and the queue entirely, and are
    /// only counted.
    Exempt,
}

labelled! {
    /// Why a request was refused with 503. The names ([`as_str`](Self::as_str)) are
    /// stable, for logs and metrics labels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum OverloadReason {
        /// The queue of waiting jobs is full.
        QueueFull => "queue_full",
        /// The per-client stage ([`Admission::with_per_key`](crate::Admission::with_per_key))
        /// tracks as many clients as it may, all with requests still in their windows, and
        /// this client is new.
        TooManyKeys => "too_many_keys",
        /// The shared store that keeps the limits of every replica (Redis) did not answer
        /// in time or failed, and its failure policy is to refuse (`fail_closed`). Only a
        /// [`FrontDoor`](crate::FrontDoor) backed by a store answers it.
        StoreUnavailable => "store_unavailable",
    }
}

labelled! {
    /// Which rate window refused a request. The names are stable, for logs, metrics
    /// labels and headers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum RateScope {
        /// The window all requests share (`rate.limit` per `rate.window`).
        Global => "global",
        /// The client's own window
        /// ([`Admission::with_per_key`](crate::Admission::with_per_key)).
        PerClient => "per_client",
    }
}

/// A refused request, with what an HTTP layer needs to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Too many requests in a window (429).
    #[error("rate limited ({scope}): retry after {retry_after:?}")]
    RateLimited {
        /// Exactly when a retry would be admitted, were nothing else admitted meanwhile.
        retry_after: Duration,
        /// Which window refused: the shared one or the client's own.
        scope: RateScope,
    },
    /// The service is full (503).
    #[error("overloaded ({reason}): retry after about {retry_after_hint:?}")]
    Overloaded {
        /// Which bound was reached.
        reason: OverloadReason,
        /// A suggestion (`queue.retry_after_hint`), not a promise.
        retry_after_hint: Duration,
    },
}

impl Refusal {
    /// 429 for [`RateLimited`](Self::RateLimited), 503 for [`Overloaded`](Self::Overloaded).
    pub fn status_code(&self) -> u16 {
        match self {
            Refusal::RateLimited { .. } => 429,
            Refusal::Overloaded { .. } => 503,
        }
    }

    /// How long the client should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        match *self {
            Refusal::RateLimited { retry_after, .. } => retry_after,
            Refusal::Overloaded {
                retry_after_hint, ..
            } => retry_after_hint,
        }
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up, for an HTTP
    /// `Retry-After` header (which cannot say less than a second).
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.retry_after();
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }

    /// The name of every 429, whatever its scope.
    pub(crate) const RATE_LIMITED: &'static str = "rate_limited";

    /// `rate_limited`, or the [`OverloadReason`]'s name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => Refusal::RATE_LIMITED,
            Refusal::Overloaded { reason, .. } => reason.as_str(),
        }
    }
}

/// The answer to [`Admission::admit`](crate::Admission::admit) (and to any
/// [`FrontDoor`](crate::FrontDoor), whose ticket type is `T`).
#[derive(Debug)]
#[must_use = "an admitted request holds a place in the queue until its ticket is dropped"]
pub enum Decision<T = QueueTicket> {
    /// Passed: the ticket holds the request's place in the queue until a worker starts
    /// it ([`Admission::start_job`](crate::Admission::start_job)) or it is dropped.
    Admitted(T),
    /// An exempt request: nothing held, nothing to start.
    Exempt,
    /// Refused, with the status and wait to answer.
    Refused(Refusal),
}

impl<T> Decision<T> {
    /// The refusal, if refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Decision::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// `Ok(Some(ticket))` when admitted, `Ok(None)` when exempt, `Err` when refused.
    ///
    /// # Errors
    ///
    /// The [`Refusal`].
    pub fn into_result(self) -> Result<Option<T>, Refusal> {
        match self {
            Decision::Admitted(ticket) => Ok(Some(ticket)),
            Decision::Exempt => Ok(None),
            Decision::Refused(refusal) => Err(refusal),
        }
    }
}

/// Why a queued job may not start yet. The names ([`as_str`](Self::as_str)) are stable.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitReason {
    /// Every job slot is taken.
    #[error("no free job slot")]
    NoFreeSlot,
    /// The resource gate is closed.
    #[error("{0}")]
    Resources(Shortage),
    /// The shared store that keeps the job slots (Redis) did not answer in time or
    /// failed. Only a [`FrontDoor`](crate::FrontDoor) backed by a store answers it.
    #[error("the shared store is unavailable")]
    StoreUnavailable,
}

impl WaitReason {
    /// `no_free_slot`, the shortage's name (`low_memory`, `low_disk`,
    /// `memory_pressure`, `stale`), or `store_unavailable`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WaitReason::NoFreeSlot => "no_free_slot",
            WaitReason::Resources(shortage) => shortage.as_str(),
            WaitReason::StoreUnavailable => "store_unavailable",
        }
    }
}
