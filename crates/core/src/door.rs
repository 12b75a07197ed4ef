//! [`FrontDoor`]: the questions an HTTP layer or a simulator asks, whoever keeps the
//! limits: this process ([`Admission`]) or a store shared by every replica (the
//! `backstop-redis` crate's `RedisAdmission`).

use std::future::{Future, ready};

use crate::admission::Admission;
use crate::clock::Clock;
use crate::decision::{Decision, RequestClass, WaitReason};
use crate::jobs::{JobPermit, QueueTicket};
use crate::rate::Quota;

/// A front door: admits requests (429 and 503 with the same [`Refusal`](crate::Refusal)s
/// whatever the backend) and starts their jobs.
///
/// The methods return futures because a shared store answers over the network; the
/// in-process [`Admission`] answers at once (its futures are `std::future::Ready`), so code written
/// against this trait costs nothing extra with it.
///
/// ```
/// use backstop_core::{Admission, Decision, FrontDoor, Limits, RequestClass};
/// use backstop_core::clock::ManualClock;
///
/// async fn serve_one<D: FrontDoor>(door: &D, client: &str) -> u16 {
///     match door.admit(Some(client), RequestClass::Normal).await {
///         Decision::Admitted(ticket) => match door.start_job(ticket).await {
///             Ok(_permit) => 200, // the job runs while the permit lives
///             Err((_ticket, _why)) => 202, // queued: a worker starts it later
///         },
///         Decision::Exempt => 200,
///         Decision::Refused(refusal) => refusal.status_code(),
///     }
/// }
///
/// let mut limits = Limits::default();
/// limits.resources.enabled = false;
/// let admission = Admission::with_clock(limits, ManualClock::new())?;
/// let status = futures_lite_block_on(serve_one(&admission, "alice"));
/// assert_eq!(status, 200);
/// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     // Admission's futures are ready at once: one poll finishes them.
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     match f.as_mut().poll(&mut cx) {
/// #         std::task::Poll::Ready(out) => out,
/// #         std::task::Poll::Pending => unreachable!("Admission never waits"),
/// #     }
/// # }
/// # Ok::<(), backstop_core::ConfigError>(())
/// ```
pub trait FrontDoor: Send + Sync {
    /// True when every future this door returns is ready on its first poll (the
    /// in-process [`Admission`]): a layer may then poll it once, inline, and skip the
    /// boxing and the clone of the inner service an awaited decision needs. A door that
    /// says so and is not ready is answered 503 `store_unavailable` by such a layer.
    const DECIDES_AT_ONCE: bool = false;

    /// What an admitted request holds: its place in the queue, given back on drop.
    type Ticket: Send + 'static;
    /// What a started job holds: its slot, given back on drop.
    type Permit: Send + 'static;

    /// Decides a request of `class`, from client `key` when there is one (held to the
    /// client's own limit when the door has a per-client stage). The order of the stages
    /// and what each refusal means are [`Admission`]'s.
    fn admit(
        &self,
        key: Option<&str>,
        class: RequestClass,
    ) -> impl Future<Output = Decision<Self::Ticket>> + Send;

    /// The decision now, without a future, from a door that
    /// [decides at once](Self::DECIDES_AT_ONCE); `None` from any other (the default).
    /// What an HTTP layer calls on its fast path: no future to poll, no panic path.
    #[inline]
    fn admit_at_once(
        &self,
        key: Option<&str>,
        class: RequestClass,
    ) -> Option<Decision<Self::Ticket>> {
        let _ = (key, class);
        None
    }

    /// Starts the job of a queued request when a slot is free and the resources allow;
    /// otherwise gives the ticket back with the reason, the job still queued.
    fn start_job(
        &self,
        ticket: Self::Ticket,
    ) -> impl Future<Output = Result<Self::Permit, (Self::Ticket, WaitReason)>> + Send;

    /// The shared rate limit in force, for `RateLimit-Policy`.
    fn rate_limit(&self) -> Quota;

    /// The limit in force for client `key`, when the door has a per-client stage.
    fn client_rate_limit(&self, key: &str) -> Option<Quota>;
}

impl<C: Clock> FrontDoor for Admission<C> {
    const DECIDES_AT_ONCE: bool = true;
    type Ticket = QueueTicket;
    type Permit = JobPermit;

    #[inline]
    fn admit(
        &self,
        key: Option<&str>,
        class: RequestClass,
    ) -> impl Future<Output = Decision> + Send {
        ready(Admission::admit(self, key, class))
    }

    #[inline]
    fn admit_at_once(&self, key: Option<&str>, class: RequestClass) -> Option<Decision> {
        Some(Admission::admit(self, key, class))
    }

    #[inline]
    fn start_job(
        &self,
        ticket: QueueTicket,
    ) -> impl Future<Output = Result<JobPermit, (QueueTicket, WaitReason)>> + Send {
        ready(Admission::start_job(self, ticket))
    }

    #[inline]
    fn rate_limit(&self) -> Quota {
        Admission::rate_limit(self)
    }

    fn client_rate_limit(&self, key: &str) -> Option<Quota> {
        self.per_key().map(|per_key| per_key.quota_for(key))
    }
}
