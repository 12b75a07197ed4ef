//! [`AdmissionService`]: decides each request before the inner service sees it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use backstop_core::clock::{Clock, QuantaClock};
use backstop_core::{Decision, RateScope, Refusal, RequestClass};
use http::{Request, Response};
use tower_service::Service;

use crate::body::RefusalBody;
use crate::future::{Hold, ResponseFuture};
use crate::head::RequestHead;
use crate::layer::Shared;
use crate::response::{Policy, policy_value, refusal_response};
use crate::ticket::AdmissionTicket;

/// The service [`AdmissionLayer`](crate::AdmissionLayer) makes; see there for what it
/// answers. Clones share one admission state.
///
/// `poll_ready` is the inner service's: a refused request does not call the inner
/// service, so capacity the inner `poll_ready` reserved stays reserved for the next call
/// (as with tower's `LoadShed`).
pub struct AdmissionService<S, C: Clock = QuantaClock> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S, C: Clock> AdmissionService<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<C>>) -> Self {
        AdmissionService { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for AdmissionService<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: RefusalBody,
    C: Clock,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
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
        match settle(shared, shared.admission.try_admit(), None) {
            Ok((hold, policy)) => ResponseFuture::called(self.inner.call(request), hold, policy),
            Err(refused) => ResponseFuture::refused(refused),
        }
    }
}

/// A looked-at request, what its future holds and its policy header, or the response to
/// a refused one.
type Looked<B> = Result<(Request<B>, Hold, Option<Policy>), Box<Response<String>>>;

/// The decision for a layer that looks at requests (an exempt predicate, a client key,
/// a ticket to put in the extensions). Out of line, taking and giving back the request
/// by value, so that the borrows stay here.
#[inline(never)]
fn look<C: Clock, B>(shared: &Shared<C>, mut request: Request<B>) -> Looked<B> {
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
fn admit<C: Clock, B>(shared: &Shared<C>, request: &Request<B>) -> Admitted {
    if let Some(exempt) = &shared.exempt {
        if exempt(&RequestHead::of(request)) {
            // Exempt requests are only counted; there is nothing to hold.
            let _ = shared.admission.try_admit_as(RequestClass::Exempt);
            return Ok((Hold::Nothing, None));
        }
    }
    match &shared.key_by {
        None => settle(shared, shared.admission.try_admit(), None),
        Some(key_by) => {
            let key = key_by.extract(&RequestHead::of(request));
            let decision = match &key {
                Some(key) => shared.admission.try_admit_for(key),
                None => shared.admission.try_admit(),
            };
            settle(shared, decision, key.as_deref())
        }
    }
}

/// What an admitted request's future holds and the policy header for its response, or
/// the response to a refused one.
type Admitted = Result<(Hold, Option<Policy>), Box<Response<String>>>;

/// `decision` for a request of client `key`, as [`Admitted`].
#[inline]
fn settle<C: Clock>(shared: &Shared<C>, decision: Decision, key: Option<&str>) -> Admitted {
    // The limit in force now, so the header follows `Admission::reconfigure`.
    let policy = shared.policy_on_success.then(|| {
        let (quota, window) = shared.admission.rate_limit();
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
fn refuse<C: Clock>(
    shared: &Shared<C>,
    key: Option<&str>,
    refusal: &Refusal,
) -> Box<Response<String>> {
    // The refusal says which limit refused; that limit is read as it stands now.
    let (name, quota, window) = match (refusal, key, shared.admission.per_key()) {
        (Refusal::Overloaded { .. }, ..) => return Box::new(refusal_response(refusal, None)),
        (
            Refusal::RateLimited {
                scope: RateScope::PerClient,
                ..
            },
            Some(key),
            Some(per_key),
        ) => {
            let (quota, window) = per_key.limit_for(key);
            ("client", quota, window)
        }
        (Refusal::RateLimited { .. }, ..) => {
            let (quota, window) = shared.admission.rate_limit();
            ("default", quota, window)
        }
    };
    let policy = policy_value(name, quota, window);
    Box::new(refusal_response(refusal, Some((name, &policy))))
}

impl<S: Clone, C: Clock> Clone for AdmissionService<S, C> {
    fn clone(&self) -> Self {
        AdmissionService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C: Clock> fmt::Debug for AdmissionService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionService")
            .field("inner", &self.inner)
            .field("admission", &self.shared.admission)
            .finish_non_exhaustive()
    }
}
