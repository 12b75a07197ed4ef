//! [`AdmissionService`]: decides each request before the inner service sees it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use backstop_core::clock::QuantaClock;
use backstop_core::{Admission, Decision, FrontDoor, OverloadReason, Refusal, RequestClass};
use http::{Request, Response};
use tower_service::Service;

use crate::body::RefusalBody;
use crate::future::{Hold, ResponseFuture};
use crate::head::RequestHead;
use crate::layer::Shared;
use crate::response::{Policy, refusal_response_for};
use crate::ticket::AdmissionTicket;

/// The service [`AdmissionLayer`](crate::AdmissionLayer) makes; see there for what it
/// answers. Clones share one front door.
///
/// `poll_ready` is the inner service's: a refused request does not call the inner
/// service, so capacity the inner `poll_ready` reserved stays reserved for the next call
/// (as with tower's `LoadShed`).
pub struct AdmissionService<S, D = Admission<QuantaClock>> {
    inner: S,
    shared: Arc<Shared<D>>,
}

impl<S, D> AdmissionService<S, D> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<D>>) -> Self {
        AdmissionService { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, D, ReqBody, ResBody> Service<Request<ReqBody>> for AdmissionService<S, D>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: RefusalBody,
    D: FrontDoor + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, D::Ticket>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !D::DECIDES_AT_ONCE {
            return self.call_awaited(request);
        }
        let shared = &*self.shared;
        // Both paths build the response future here, inline: a future written by an
        // out-of-line function (through a pointer) would stay in memory and be moved
        // with `memcpy` calls.
        if shared.exempt.is_some() || shared.key_by.is_some() || shared.hand_over_ticket {
            return match look(shared, request) {
                Ok((request, hold, policy)) => {
                    ResponseFuture::called(self.inner.call(request), hold, policy)
                }
                Err(refused) => ResponseFuture::refused(refused),
            };
        }
        // The plain path never borrows the request: a request the inner service receives
        // after a borrow that escaped (into a predicate, a key lookup) is copied first, a
        // few hundred bytes.
        match settle(
            shared,
            at_once(&*shared.door, None, RequestClass::Normal),
            None,
        ) {
            Ok((hold, policy)) => ResponseFuture::called(self.inner.call(request), hold, policy),
            Err(refused) => ResponseFuture::refused(refused),
        }
    }
}

impl<S, D> AdmissionService<S, D> {
    /// A store-backed door: the response future awaits the decision, then calls the
    /// inner service: the clone readied by `poll_ready`, a fresh clone left in its place.
    #[inline(never)]
    fn call_awaited<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, D::Ticket>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: RefusalBody,
        D: FrontDoor + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::awaiting(Box::pin(async move {
            match look_awaited(&shared, request).await {
                Ok((request, hold, policy)) => {
                    ResponseFuture::called(inner.call(request), hold, policy).await
                }
                Err(refused) => ResponseFuture::<S::Future, D::Ticket>::refused(refused).await,
            }
        }))
    }
}

/// The decision of a door that [decides at once](FrontDoor::DECIDES_AT_ONCE), taken
/// without a future ([`FrontDoor::admit_at_once`]). A door that says so but gives none
/// is answered 503 `store_unavailable` rather than waited for or panicked on.
#[inline(always)]
fn at_once<D: FrontDoor>(door: &D, key: Option<&str>, class: RequestClass) -> Decision<D::Ticket> {
    match door.admit_at_once(key, class) {
        Some(decision) => decision,
        None => not_ready(),
    }
}

#[cold]
#[inline(never)]
fn not_ready<T>() -> Decision<T> {
    Decision::Refused(Refusal::Overloaded {
        reason: OverloadReason::StoreUnavailable,
        retry_after_hint: std::time::Duration::from_secs(1),
    })
}

/// As [`look`], for a door whose decision is awaited.
async fn look_awaited<D: FrontDoor, B>(
    shared: &Shared<D>,
    mut request: Request<B>,
) -> Looked<B, D::Ticket> {
    let exempt = shared
        .exempt
        .as_ref()
        .is_some_and(|exempt| exempt(&RequestHead::of(&request)));
    if exempt {
        // Exempt requests are only counted; there is nothing to hold.
        let _ = shared.door.admit(None, RequestClass::Exempt).await;
        return Ok((request, Hold::Nothing, None));
    }
    let key: Option<String> = shared
        .key_by
        .as_ref()
        .and_then(|key_by| key_by.extract(&RequestHead::of(&request)))
        .map(std::borrow::Cow::into_owned);
    let decision = shared
        .door
        .admit(key.as_deref(), RequestClass::Normal)
        .await;
    let (hold, policy) = settle(shared, decision, key.as_deref())?;
    let hold = match hold {
        Hold::Ticket(ticket) if shared.hand_over_ticket => {
            let ticket = AdmissionTicket::new(ticket);
            request.extensions_mut().insert(ticket.clone());
            Hold::Shared(ticket)
        }
        hold => hold,
    };
    Ok((request, hold, policy))
}

/// A looked-at request, what its future holds and its policy header, or the response to
/// a refused one.
type Looked<B, T> = Result<(Request<B>, Hold<T>, Option<Policy>), Box<Response<String>>>;

/// The decision for a layer that looks at requests (an exempt predicate, a client key,
/// a ticket to put in the extensions). Out of line, taking and giving back the request
/// by value, so that the borrows stay here.
#[inline(never)]
fn look<D: FrontDoor, B>(shared: &Shared<D>, mut request: Request<B>) -> Looked<B, D::Ticket> {
    let (hold, policy) = admit(shared, &request)?;
    let hold = match hold {
        Hold::Ticket(ticket) if shared.hand_over_ticket => {
            let ticket = AdmissionTicket::new(ticket);
            request.extensions_mut().insert(ticket.clone());
            Hold::Shared(ticket)
        }
        hold => hold,
    };
    Ok((request, hold, policy))
}

/// The decision for `request`, with its exempt predicate and client key: what its
/// response future holds and the policy header to put on its response, or the refusal
/// to answer instead.
fn admit<D: FrontDoor, B>(shared: &Shared<D>, request: &Request<B>) -> Admitted<D::Ticket> {
    if let Some(exempt) = &shared.exempt {
        if exempt(&RequestHead::of(request)) {
            // Exempt requests are only counted; there is nothing to hold.
            let _ = at_once(&*shared.door, None, RequestClass::Exempt);
            return Ok((Hold::Nothing, None));
        }
    }
    match &shared.key_by {
        None => settle(
            shared,
            at_once(&*shared.door, None, RequestClass::Normal),
            None,
        ),
        Some(key_by) => {
            let key = key_by.extract(&RequestHead::of(request));
            let decision = at_once(&*shared.door, key.as_deref(), RequestClass::Normal);
            settle(shared, decision, key.as_deref())
        }
    }
}

/// What an admitted request's future holds and the policy header for its response, or
/// the response to a refused one.
type Admitted<T> = Result<(Hold<T>, Option<Policy>), Box<Response<String>>>;

/// `decision` for a request of client `key`, as [`Admitted`].
#[inline]
fn settle<D: FrontDoor>(
    shared: &Shared<D>,
    decision: Decision<D::Ticket>,
    key: Option<&str>,
) -> Admitted<D::Ticket> {
    // The limit in force now, so the header follows `Admission::reconfigure`.
    let policy = shared.policy_on_success.then(|| {
        let (quota, window) = shared.door.rate_limit();
        Policy::new(quota, window)
    });
    match decision {
        Decision::Admitted(ticket) => Ok((Hold::Ticket(ticket), policy)),
        Decision::Exempt => Ok((Hold::Nothing, policy)),
        Decision::Refused(refusal) => Err(refuse(shared, key, &refusal)),
    }
}

// The refusal path is kept out of line: building a response is far costlier than the
// admit path, and inlined it would bloat `call` for every admitted request.
#[cold]
#[inline(never)]
fn refuse<D: FrontDoor>(
    shared: &Shared<D>,
    key: Option<&str>,
    refusal: &Refusal,
) -> Box<Response<String>> {
    // The refusal says which limit refused; that limit is read as it stands now.
    Box::new(refusal_response_for(&*shared.door, key, refusal))
}

impl<S: Clone, D> Clone for AdmissionService<S, D> {
    fn clone(&self) -> Self {
        AdmissionService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, D: fmt::Debug> fmt::Debug for AdmissionService<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionService")
            .field("inner", &self.inner)
            .field("admission", &self.shared.door)
            .finish_non_exhaustive()
    }
}
