//! [`AdmissionService`]: decides each request before the inner service sees it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use backstop_core::clock::{Clock, QuantaClock};
use backstop_core::{Decision, Refusal, RequestClass};
use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use crate::body::AdmissionBody;
use crate::future::{Hold, ResponseFuture};
use crate::head::RequestHead;
use crate::layer::Shared;
use crate::response::{policy_value, refusal_response};
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
    C: Clock,
{
    type Response = Response<AdmissionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        if let Some(exempt) = &shared.exempt {
            if exempt(&RequestHead::of(&request)) {
                // Exempt requests are only counted; there is nothing to hold.
                let _ = shared.admission.try_admit_as(RequestClass::Exempt);
                return ResponseFuture::called(self.inner.call(request), Hold::Nothing, None);
            }
        }
        let decision = match &shared.key_by {
            None => shared.admission.try_admit(),
            Some(key_by) => {
                let key = key_by.extract(&RequestHead::of(&request));
                let decision = match &key {
                    Some(key) => shared.admission.try_admit_for(key),
                    None => shared.admission.try_admit(),
                };
                if let Decision::Refused(refusal) = &decision {
                    return ResponseFuture::refused(refuse(shared, key.as_deref(), refusal));
                }
                decision
            }
        };
        let policy = shared.policy_on_success.then(|| shared.policy.clone());
        match decision {
            Decision::Admitted(ticket) => {
                let hold = if shared.hand_over_ticket {
                    let ticket = AdmissionTicket::new(ticket);
                    request.extensions_mut().insert(ticket.clone());
                    Hold::Shared(ticket)
                } else {
                    Hold::Ticket(ticket)
                };
                ResponseFuture::called(self.inner.call(request), hold, policy)
            }
            Decision::Exempt => {
                ResponseFuture::called(self.inner.call(request), Hold::Nothing, policy)
            }
            Decision::Refused(refusal) => ResponseFuture::refused(refuse(shared, None, &refusal)),
        }
    }
}

// The refusal path is kept out of line: building a response is far costlier than the
// admit path, and inlined it would bloat `call` for every admitted request.
#[cold]
#[inline(never)]
fn refuse<C: Clock>(shared: &Shared<C>, key: Option<&str>, refusal: &Refusal) -> Response<Bytes> {
    // A 429 for a keyed request came from the client's own limit if that has nothing
    // left (the shared one is checked first, so when both are spent the shared one
    // refused; either way the client must wait, and `Retry-After` is the one that
    // refused).
    if let (Refusal::RateLimited { .. }, Some(key), Some(per_key)) =
        (refusal, key, shared.admission.per_key())
    {
        if per_key.available(key) == 0 {
            let (quota, window) = per_key.limit_for(key);
            let policy = policy_value("client", quota, window);
            return refusal_response(refusal, Some(("client", &policy)));
        }
    }
    refusal_response(refusal, Some(("default", &shared.policy)))
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
