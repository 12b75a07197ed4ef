//! [`AdmissionLayer`]: wraps a service in [`AdmissionService`].

use std::fmt;
use std::sync::Arc;

use backstop_core::clock::QuantaClock;
use backstop_core::{Admission, FrontDoor};
use tower_layer::Layer;

use crate::head::RequestHead;
use crate::key::KeyBy;
use crate::service::{AdmissionService, Settings};

/// A layer asked for something its admission cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// [`AdmissionLayer::key_by`] on a front door without a per-client stage.
    #[error(
        "key_by needs a per-client stage: build the admission with Admission::with_per_key \
         (or RedisAdmission::with_per_key)"
    )]
    NoPerClientStage,
}

/// Answers 429 and 503 in front of any `Service<http::Request<B>>`, from one shared
/// front door `D`: the in-process [`Admission`] (the default), or any other
/// [`FrontDoor`], such as `backstop_redis::RedisAdmission`, whose limits every replica
/// of a service shares.
///
/// The in-process door decides at once ([`FrontDoor::DECIDES_AT_ONCE`]): the decision is
/// made inside `call`, and the response future is the inner one plus the ticket. A
/// store-backed door's decision is awaited by the response future, which then calls a
/// clone of the inner service (the tower pattern: the clone taken in `call` is the one
/// `poll_ready` readied), so the inner service must be `Clone + Send + 'static`.
///
/// Per request, in order:
///
/// 1. an [exempt](Self::exempt) request (`/health`, `/metrics`) passes, counted as
///    exempt;
/// 2. [`FrontDoor::admit`], with [`key_by`](Self::key_by) the request's client: 429 with an exact wait rounded
///    up to whole seconds in `Retry-After` (the shared limit, then the client's own), 503
///    (`Retry-After` when `queue.retry_after_hint` is set, or when the per-client stage
///    says when a client's room frees), or a queue ticket, held by the response future
///    until it completes or is dropped.
///
/// Refusals carry a short `application/problem+json` body; 429s carry the IETF draft's
/// `RateLimit-Policy` (`"default";q=<limit>;w=<window s>`) and `RateLimit`
/// (`"default";r=0;t=<retry after s>`) headers; admitted responses carry
/// `RateLimit-Policy` when [asked to](Self::policy_header_on_success). The policy
/// states the limit in force when the request was decided
/// ([`Admission::rate_limit`], no lock), so it follows [`Admission::reconfigure`]; a
/// 429 names the limit that refused ([`RateScope`](backstop_core::RateScope) in the
/// refusal).
///
/// Clones of the layer, and every service it makes, share one admission state.
///
/// Every request the layer sees is judged, so put it only in front of the routes that
/// create work: in front of a whole router it also judges the router's 404 and 405
/// answers, and 30 requests for `/favicon.ico` would spend a budget of 30 and count as
/// admitted jobs. In axum, use the method router's `route_layer`
/// (`post(handler).route_layer(layer)`): `Router::layer` wraps the 404 fallback, and
/// `Router::route_layer` still wraps each route's 405 fallback.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use backstop_core::{Admission, Limits};
/// use backstop_core::clock::ManualClock;
/// use backstop_tower::AdmissionLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut limits = Limits::default();
/// limits.rate.limit = 1;
/// limits.resources.enabled = false;
/// let clock = ManualClock::new();
/// let admission = Arc::new(Admission::with_clock(limits, clock.clone())?);
///
/// let mut service = ServiceBuilder::new()
///     .layer(AdmissionLayer::new(admission).exempt(|head| head.path() == "/health"))
///     .service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
///     });
///
/// let ok = service.ready().await?.call(http::Request::new(String::new())).await?;
/// assert_eq!(ok.status(), 200);
/// clock.advance(Duration::from_millis(500));
/// let refused = service.ready().await?.call(http::Request::new(String::new())).await?;
/// assert_eq!(refused.status(), 429);
/// assert_eq!(refused.headers()["retry-after"], "60"); // 59.5 s, rounded up
///
/// let health = http::Request::get("/health").body(String::new())?;
/// assert_eq!(service.ready().await?.call(health).await?.status(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct AdmissionLayer<D = Admission<QuantaClock>> {
    settings: Arc<Settings<D>>,
}

impl<D: FrontDoor> AdmissionLayer<D> {
    /// A layer in front of `door` (an [`Admission`], or another [`FrontDoor`]).
    pub fn new(door: Arc<D>) -> Self {
        AdmissionLayer {
            settings: Arc::new(Settings {
                door,
                exempt: None,
                key_by: None,
                hand_over_ticket: false,
                policy_on_success: false,
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Settings<D>)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// Lets requests for which `exempt` is true through without a rate check or a queue
    /// place (health checks, metrics scrapes); they are counted as exempt.
    pub fn exempt(self, exempt: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.edit(|settings| settings.exempt = Some(Arc::new(exempt)))
    }

    /// Finds each request's client with `key_by` and holds it to the admission's
    /// per-client stage ([`Admission::with_per_key`]): a client over its own limit gets
    /// 429 (policy `"client"`), a new client when the stage tracks as many as it may gets
    /// 503. Requests without a key are held to the shared limits only.
    ///
    /// # Errors
    ///
    /// [`LayerError::NoPerClientStage`] when the admission has no per-client stage: the
    /// keys would have nothing to hold them to.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use backstop_core::{Admission, Limits};
    /// use backstop_tower::{AdmissionLayer, KeyBy, LayerError};
    ///
    /// let mut limits = Limits::default();
    /// limits.resources.enabled = false;
    /// let admission = Arc::new(Admission::new(limits)?);
    /// let keyed = AdmissionLayer::new(admission).key_by(KeyBy::PeerIp);
    /// assert_eq!(keyed.unwrap_err(), LayerError::NoPerClientStage);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_by(self, key_by: KeyBy) -> Result<Self, LayerError> {
        // Any key: a door with a per-client stage has a limit for every client.
        if self.settings.door.client_rate_limit("").is_none() {
            return Err(LayerError::NoPerClientStage);
        }
        Ok(self.edit(|settings| settings.key_by = Some(key_by)))
    }

    /// Puts an [`AdmissionTicket`](crate::AdmissionTicket) in each admitted request's
    /// extensions (default off), for handlers that queue a job and hand its place to a
    /// worker. Costs two allocations per admitted request.
    pub fn hand_over_ticket(self, on: bool) -> Self {
        self.edit(|settings| settings.hand_over_ticket = on)
    }

    /// Whether admitted responses carry `RateLimit-Policy` too (default false: 429s
    /// always carry it). One more header insert per admitted response, stating the limit
    /// in force: it costs more than the admission decision itself (see
    /// `benches/results/tower.md`).
    pub fn policy_header_on_success(self, on: bool) -> Self {
        self.edit(|settings| settings.policy_on_success = on)
    }

    /// The shared front door.
    pub fn admission(&self) -> &Arc<D> {
        &self.settings.door
    }
}

impl<D> Clone for AdmissionLayer<D> {
    fn clone(&self) -> Self {
        AdmissionLayer {
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<D: fmt::Debug> fmt::Debug for AdmissionLayer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionLayer")
            .field("admission", &self.settings.door)
            .field("exempt", &self.settings.exempt.is_some())
            .field("key_by", &self.settings.key_by)
            .field("hand_over_ticket", &self.settings.hand_over_ticket)
            .finish()
    }
}

impl<S, D> Layer<S> for AdmissionLayer<D> {
    type Service = AdmissionService<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService::new(inner, Arc::clone(&self.settings))
    }
}
