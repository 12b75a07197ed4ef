//! [`AdmissionLayer`]: wraps a service in [`AdmissionService`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use backstop_core::Admission;
use backstop_core::clock::{Clock, QuantaClock};
use http::HeaderValue;
use tower_layer::Layer;

use crate::head::RequestHead;
use crate::key::{ClientLimit, KeyBy};
use crate::response::static_policy_value;
use crate::service::AdmissionService;

type ExemptFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// A per-client limiter and how to find the client.
#[derive(Clone)]
pub(crate) struct PerClient {
    pub(crate) key_by: KeyBy,
    pub(crate) limit: Arc<dyn ClientLimit>,
}

/// Refusals by the per-client limiter, which the shared [`Admission`]'s metrics do not
/// see.
#[derive(Debug, Default)]
pub(crate) struct ClientCounts {
    pub(crate) rate_limited: AtomicU64,
    pub(crate) overloaded: AtomicU64,
}

/// Everything a layer's services share.
pub(crate) struct Shared<C: Clock> {
    pub(crate) admission: Arc<Admission<C>>,
    pub(crate) exempt: Option<Arc<ExemptFn>>,
    pub(crate) per_client: Option<PerClient>,
    pub(crate) hand_over_ticket: bool,
    /// `RateLimit-Policy` of the shared limit; also put on admitted responses unless
    /// turned off.
    pub(crate) policy: HeaderValue,
    pub(crate) policy_on_success: bool,
    pub(crate) client_counts: Arc<ClientCounts>,
}

/// Answers 429 and 503 in front of any `Service<http::Request<B>>`, from one shared
/// [`Admission`].
///
/// Per request, in order:
///
/// 1. an [exempt](Self::exempt) request (`/health`, `/metrics`) passes, counted as
///    exempt;
/// 2. with a [per-client limit](Self::per_client), a keyed request over its own budget
///    gets 429 (or 503 when the limiter has no room for another client). It comes first
///    so that one client's excess does not use up the shared window;
/// 3. [`Admission::try_admit`]: 429 with an exact wait rounded up to whole seconds in
///    `Retry-After`, 503 (`Retry-After` when `queue.retry_after_hint_ms` is set), or a
///    queue ticket, held by the response future until it completes or is dropped.
///
/// Refusals carry a short `application/problem+json` body; 429s carry the IETF draft's
/// `RateLimit-Policy` (`"default";q=<limit>;w=<window s>`) and `RateLimit`
/// (`"default";r=0;t=<retry after s>`) headers; admitted responses carry
/// `RateLimit-Policy` when [asked to](Self::policy_header_on_success). The policy
/// is read from the admission's limits when the layer is built: after
/// [`Admission::reconfigure`], build a new layer to update it.
///
/// Clones of the layer, and every service it makes, share one admission state.
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
pub struct AdmissionLayer<C: Clock = QuantaClock> {
    shared: Arc<Shared<C>>,
}

impl<C: Clock> AdmissionLayer<C> {
    /// A layer in front of `admission`.
    pub fn new(admission: Arc<Admission<C>>) -> Self {
        let limits = admission.limits();
        AdmissionLayer {
            shared: Arc::new(Shared {
                policy: static_policy_value("default", limits.rate.limit, limits.rate.window()),
                admission,
                exempt: None,
                per_client: None,
                hand_over_ticket: false,
                policy_on_success: false,
                client_counts: Arc::default(),
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Shared<C>)) -> Self {
        change(Arc::make_mut(&mut self.shared));
        self
    }

    /// Lets requests for which `exempt` is true through without a rate check or a queue
    /// place (health checks, metrics scrapes); they are counted as exempt.
    pub fn exempt(self, exempt: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.edit(|shared| shared.exempt = Some(Arc::new(exempt)))
    }

    /// Holds every client, as found by `key_by`, to `limit` before the shared admission.
    /// Requests without a key are held to the shared limits only.
    pub fn per_client(self, key_by: KeyBy, limit: impl ClientLimit) -> Self {
        self.edit(|shared| {
            shared.per_client = Some(PerClient {
                key_by,
                limit: Arc::new(limit),
            });
        })
    }

    /// Puts an [`AdmissionTicket`](crate::AdmissionTicket) in each admitted request's
    /// extensions (default off), for handlers that queue a job and hand its place to a
    /// worker. Costs two allocations per admitted request.
    pub fn hand_over_ticket(self, on: bool) -> Self {
        self.edit(|shared| shared.hand_over_ticket = on)
    }

    /// Whether admitted responses carry `RateLimit-Policy` too (default false: 429s
    /// always carry it). One more header insert per admitted response, measured at
    /// about 60 ns on the benchmark machine, more than the admission decision itself.
    pub fn policy_header_on_success(self, on: bool) -> Self {
        self.edit(|shared| shared.policy_on_success = on)
    }

    /// The shared admission.
    pub fn admission(&self) -> &Arc<Admission<C>> {
        &self.shared.admission
    }

    /// Requests the per-client limiter refused with 429 (the shared admission's metrics
    /// count only its own refusals).
    pub fn client_rate_limited_total(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared
            .client_counts
            .rate_limited
            .load(Ordering::Relaxed)
    }

    /// Requests the per-client limiter refused with 503.
    pub fn client_overloaded_total(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared.client_counts.overloaded.load(Ordering::Relaxed)
    }

    /// The admission's metrics in the Prometheus text format, with the per-client
    /// refusals as `backstop_client_refusals_total{status=...}`.
    pub fn render_prometheus(&self) -> String {
        let mut text = self.shared.admission.metrics().render_prometheus();
        text.push_str(
            "# HELP backstop_client_refusals_total Requests refused by the per-client limit.\n\
             # TYPE backstop_client_refusals_total counter\n",
        );
        text.push_str(&format!(
            "backstop_client_refusals_total{{status=\"429\"}} {}\n\
             backstop_client_refusals_total{{status=\"503\"}} {}\n",
            self.client_rate_limited_total(),
            self.client_overloaded_total()
        ));
        text
    }
}

// By hand: a derive would ask for `C: Clone`, and only `Arc`s are cloned.
impl<C: Clock> Clone for Shared<C> {
    fn clone(&self) -> Self {
        Shared {
            admission: Arc::clone(&self.admission),
            exempt: self.exempt.clone(),
            per_client: self.per_client.clone(),
            hand_over_ticket: self.hand_over_ticket,
            policy: self.policy.clone(),
            policy_on_success: self.policy_on_success,
            client_counts: Arc::clone(&self.client_counts),
        }
    }
}

impl<C: Clock> Clone for AdmissionLayer<C> {
    fn clone(&self) -> Self {
        AdmissionLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Clock> fmt::Debug for AdmissionLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionLayer")
            .field("admission", &self.shared.admission)
            .field("exempt", &self.shared.exempt.is_some())
            .field(
                "per_client",
                &self.shared.per_client.as_ref().map(|p| &p.key_by),
            )
            .field("hand_over_ticket", &self.shared.hand_over_ticket)
            .finish()
    }
}

impl<S, C: Clock> Layer<S> for AdmissionLayer<C> {
    type Service = AdmissionService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService::new(inner, Arc::clone(&self.shared))
    }
}
