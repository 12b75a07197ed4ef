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
use crate::key::KeyBy;
use crate::response::{Policy, refusal_response_for};
use crate::ticket::AdmissionTicket;

type ExemptFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// What every service of one [`AdmissionLayer`](crate::AdmissionLayer) shares: the
/// front door and how requests are judged.
pub(crate) struct Settings<D> {
    pub(crate) door: Arc<D>,
    pub(crate) exempt: Option<Arc<ExemptFn>>,
    /// How to find the client, when the admission has a per-client stage.
    pub(crate) key_by: Option<KeyBy>,
    pub(crate) hand_over_ticket: bool,
    /// Whether admitted responses carry `RateLimit-Policy` too.
    pub(crate) policy_on_success: bool,
}

// By hand: a derive would ask for `D: Clone`, and only `Arc`s are cloned.
impl<D> Clone for Settings<D> {
    fn clone(&self) -> Self {
        Settings {
            door: Arc::clone(&self.door),
            exempt: self.exempt.clone(),
            key_by: self.key_by.clone(),
            hand_over_ticket: self.hand_over_ticket,
            policy_on_success: self.policy_on_success,
        }
    }
}

/// The service [`AdmissionLayer`](crate::AdmissionLayer) makes; see there for what it
/// answers. Clones share one front door.
///
/// `poll_ready` is the inner service's: a refused request does not call the inner
/// service, so capacity the inner `poll_ready` reserved stays reserved for the next call
/// (as with tower's `LoadShed`).
pub struct AdmissionService<S, D = Admission<QuantaClock>> {
    inner: S,
    settings: Arc<Settings<D>>,
}

impl<S, D> AdmissionService<S, D> {
    pub(crate) fn new(inner: S, settings: Arc<Settings<D>>) -> Self {
        AdmissionService { inner, settings }
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
        let settings = &*self.settings;
        // Both paths build the response future here, inline: a future written by an
        // out-of-line function (through a pointer) would stay in memory and be moved
        // with `memcpy` calls.
        if settings.exempt.is_some() || settings.key_by.is_some() || settings.hand_over_ticket {
            return match look(settings, request) {
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
            settings,
            at_once(&*settings.door, None, RequestClass::Normal),
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
        let settings = Arc::clone(&self.settings);
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::awaiting(Box::pin(async move {
            match look_awaited(&settings, request).await {
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
    settings: &Settings<D>,
    mut request: Request<B>,
) -> Looked<B, D::Ticket> {
    let exempt = settings
        .exempt
        .as_ref()
        .is_some_and(|exempt| exempt(&RequestHead::of(&request)));
    if exempt {
        // Exempt requests are only counted; there is nothing to hold.
        let _ = settings.door.admit(None, RequestClass::Exempt).await;
        return Ok((request, Hold::Nothing, None));
    }
    let key: Option<String> = settings
        .key_by
        .as_ref()
        .and_then(|key_by| key_by.extract(&RequestHead::of(&request)))
        .map(std::borrow::Cow::into_owned);
    let decision = settings
        .door
        .admit(key.as_deref(), RequestClass::Normal)
        .await;
    let (hold, policy) = settle(settings, decision, key.as_deref())?;
    let hold = match hold {
        Hold::Ticket(ticket) if settings.hand_over_ticket => {
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
fn look<D: FrontDoor, B>(settings: &Settings<D>, mut request: Request<B>) -> Looked<B, D::Ticket> {
    let (hold, policy) = admit(settings, &request)?;
    let hold = match hold {
        Hold::Ticket(ticket) if settings.hand_over_ticket => {
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
fn admit<D: FrontDoor, B>(settings: &Settings<D>, request: &Request<B>) -> Admitted<D::Ticket> {
    if let Some(exempt) = &settings.exempt {
        if exempt(&RequestHead::of(request)) {
            // Exempt requests are only counted; there is nothing to hold.
            let _ = at_once(&*settings.door, None, RequestClass::Exempt);
            return Ok((Hold::Nothing, None));
        }
    }
    match &settings.key_by {
        None => settle(
            settings,
            at_once(&*settings.door, None, RequestClass::Normal),
            None,
        ),
        Some(key_by) => {
            let key = key_by.extract(&RequestHead::of(request));
            let decision = at_once(&*settings.door, key.as_deref(), RequestClass::Normal);
            settle(settings, decision, key.as_deref())
        }
    }
}

/// What an admitted request's future holds and the policy header for its response, or
/// the response to a refused one.
type Admitted<T> = Result<(Hold<T>, Option<Policy>), Box<Response<String>>>;

/// `decision` for a request of client `key`, as [`Admitted`].
#[inline]
fn settle<D: FrontDoor>(
    settings: &Settings<D>,
    decision: Decision<D::Ticket>,
    key: Option<&str>,
) -> Admitted<D::Ticket> {
    // The limit in force now, so the header follows `Admission::reconfigure`.
    let policy = settings
        .policy_on_success
        .then(|| Policy::new(settings.door.rate_limit()));
    match decision {
        Decision::Admitted(ticket) => Ok((Hold::Ticket(ticket), policy)),
        Decision::Exempt => Ok((Hold::Nothing, policy)),
        Decision::Refused(refusal) => Err(refuse(settings, key, &refusal)),
    }
}

// The refusal path is kept out of line: building a response is far costlier than the
// admit path, and inlined it would bloat `call` for every admitted request.
#[cold]
#[inline(never)]
fn refuse<D: FrontDoor>(
    settings: &Settings<D>,
    key: Option<&str>,
    refusal: &Refusal,
) -> Box<Response<String>> {
    // The refusal says which limit refused; that limit is read as it stands now.
    Box::new(refusal_response_for(&*settings.door, key, refusal))
}

impl<S: Clone, D> Clone for AdmissionService<S, D> {
    fn clone(&self) -> Self {
        AdmissionService {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S: fmt::Debug, D: fmt::Debug> fmt::Debug for AdmissionService<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionService")
            .field("inner", &self.inner)
            .field("admission", &self.settings.door)
            .finish_non_exhaustive()
    }
}
