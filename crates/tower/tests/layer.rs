//! AdmissionLayer in process, on a manual clock: statuses, headers, shared state, the
//! queue place's lifetime, exempt requests and per-client limits.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::{Admission, Limits};
use backstop_tower::{
    AdmissionLayer, AdmissionTicket, KeyBy, LayerError, MAX_KEY_BYTES, RATELIMIT, RATELIMIT_POLICY,
    RequestHead,
};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt, service_fn};

fn limits(rate: u32, queue: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = rate;
    limits.rate.window = Duration::from_millis(60_000);
    limits.queue.max = queue;
    limits.queue.retry_after_hint = Duration::from_millis(1500);
    limits.resources.enabled = false;
    limits
}

fn admission(rate: u32, queue: u32) -> (Arc<Admission<ManualClock>>, ManualClock) {
    let clock = ManualClock::new();
    let admission = Admission::with_clock(limits(rate, queue), clock.clone()).expect("valid");
    (Arc::new(admission), clock)
}

fn ok_service() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new("ok".into())) })
}

fn get(path: &str) -> Request<String> {
    Request::get(path).body(String::new()).expect("request")
}

/// `service` once it is ready (these services always become ready).
async fn ready<S, B>(service: &mut S) -> &mut S
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    ServiceExt::ready(service).await.expect("ready")
}

/// One request through `service`, once it is ready: its response.
async fn send<S, B, R>(service: &mut S, request: Request<B>) -> Response<R>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: std::fmt::Debug,
{
    ready(service)
        .await
        .call(request)
        .await
        .expect("a response")
}

/// Polls `future` once, without a runtime: everything here is ready or pending for good.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn exactly_limit_admitted_then_429_with_retry_after_rounded_up() {
    let (admission, clock) = admission(3, 100);
    let mut service = AdmissionLayer::new(Arc::clone(&admission))
        .policy_header_on_success(true)
        .layer(ok_service());
    for _ in 0..3 {
        let response = send(&mut service, get("/")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[&RATELIMIT_POLICY],
            "\"default\";q=3;w=60"
        );
        assert!(response.headers().get(&RATELIMIT).is_none());
    }
    clock.advance(Duration::from_millis(10_300));
    let response = send(&mut service, get("/")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // 60 s - 10.3 s = 49.7 s: a client told 49 would be refused again.
    assert_eq!(response.headers()["retry-after"], "50");
    assert_eq!(response.headers()[&RATELIMIT], "\"default\";r=0;t=50");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = std::str::from_utf8(&body).unwrap();
    assert!(
        body.contains("\"status\":429") && body.contains("rate_limited"),
        "{body}"
    );

    // The window moves on: at 60 s the first admissions leave it.
    clock.advance(Duration::from_millis(49_700));
    let response = send(&mut service, get("/")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let snapshot = admission.metrics().snapshot();
    assert_eq!(
        (snapshot.admitted_total, snapshot.rate_limited_total),
        (4, 1)
    );
}

#[tokio::test]
async fn clones_of_layer_and_service_share_one_state() {
    let (admission, _clock) = admission(2, 100);
    let layer = AdmissionLayer::new(admission);
    let mut first = layer.clone().layer(ok_service());
    let mut second = layer.layer(ok_service());
    let mut third = second.clone();
    let response = send(&mut first, get("/")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get(&RATELIMIT_POLICY).is_none(),
        "opt-in on success"
    );
    assert_eq!(send(&mut second, get("/")).await.status(), 200);
    assert_eq!(send(&mut third, get("/")).await.status(), 429);
}

/// An inner service whose responses never come: requests stay in flight.
fn pending_service() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<String>| std::future::pending())
}

#[test]
fn queue_place_is_held_by_the_response_future_and_freed_when_the_client_goes_away() {
    let (admission, _clock) = admission(100, 2);
    let mut service = AdmissionLayer::new(Arc::clone(&admission)).layer(pending_service());
    let first = service.call(get("/"));
    let second = service.call(get("/"));
    assert_eq!(admission.queue().len(), 2);

    // The queue is full: 503 with the hint rounded up, without calling the inner service.
    let mut third = pin!(service.call(get("/")));
    let Poll::Ready(Ok(refused)) = poll_once(third.as_mut()) else {
        panic!("a refusal is ready at once")
    };
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "2");
    assert!(refused.headers().get(&RATELIMIT).is_none());

    let mut first = Box::pin(first);
    assert!(poll_once(first.as_mut()).is_pending());
    drop(first); // the server drops the request: the client hung up
    assert_eq!(admission.queue().len(), 1);
    drop(second);
    assert_eq!(admission.queue().len(), 0);
    let snapshot = admission.metrics().snapshot();
    assert_eq!(snapshot.admitted_total, 2);
    assert_eq!(
        snapshot.overloaded_total,
        vec![
            ("queue_full", 1),
            ("too_many_keys", 0),
            ("store_unavailable", 0)
        ]
    );
}

/// A layer that looks at requests (here an exempt predicate) takes another path through
/// `call`: the queue place must be held and given back the same way on it.
#[test]
fn queue_place_is_held_on_the_path_that_looks_at_requests_too() {
    let (admission, _clock) = admission(100, 1);
    let mut service = AdmissionLayer::new(Arc::clone(&admission))
        .exempt(|head| head.path() == "/health")
        .layer(pending_service());
    let mut first = Box::pin(service.call(get("/")));
    assert!(poll_once(first.as_mut()).is_pending());
    assert_eq!(admission.queue().len(), 1);

    let mut refused = pin!(service.call(get("/")));
    let Poll::Ready(Ok(refused)) = poll_once(refused.as_mut()) else {
        panic!("a refusal is ready at once")
    };
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    // An exempt request needs no queue place, even with the queue full.
    let health = service.call(get("/health"));
    assert_eq!(admission.queue().len(), 1);
    drop(health);

    drop(first);
    assert_eq!(admission.queue().len(), 0);
    let snapshot = admission.metrics().snapshot();
    assert_eq!((snapshot.admitted_total, snapshot.exempt_total), (1, 1));
}

#[tokio::test]
async fn queue_place_goes_back_when_the_response_is_ready() {
    let (admission, _clock) = admission(100, 1);
    let mut service = AdmissionLayer::new(Arc::clone(&admission)).layer(ok_service());
    for _ in 0..5 {
        let future = ready(&mut service).await.call(get("/"));
        assert_eq!(admission.queue().len(), 1);
        let response = future.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(admission.queue().len(), 0);
    }
}

#[tokio::test]
async fn a_handler_may_take_the_ticket_and_start_the_job_itself() {
    let (admission, _clock) = admission(100, 1);
    let tickets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&tickets);
    let inner = service_fn(move |req: Request<String>| {
        let kept = Arc::clone(&kept);
        async move {
            let ticket = req
                .extensions()
                .get::<AdmissionTicket>()
                .expect("handed over");
            let taken = ticket.take().expect("first take");
            assert!(ticket.take().is_none(), "a ticket is taken once");
            kept.lock().unwrap().push(taken);
            Ok::<_, Infallible>(Response::new(String::from("queued")))
        }
    });
    let mut service = AdmissionLayer::new(Arc::clone(&admission))
        .hand_over_ticket(true)
        .layer(inner);
    assert_eq!(send(&mut service, get("/")).await.status(), 200);
    // The response is done, but the job is still queued: the handler kept the ticket.
    assert_eq!(admission.queue().len(), 1);
    assert_eq!(send(&mut service, get("/")).await.status(), 503);
    let ticket = tickets.lock().unwrap().pop().unwrap();
    let permit = admission.start_job(ticket).expect("a free slot");
    assert_eq!(
        (admission.queue().len(), admission.slots().active()),
        (0, 1)
    );
    drop(permit);
    assert_eq!(admission.metrics().snapshot().jobs_finished_total, 1);
}

#[tokio::test]
async fn exempt_requests_pass_a_full_service_and_are_counted() {
    let (admission, _clock) = admission(1, 100);
    let mut service = AdmissionLayer::new(Arc::clone(&admission))
        .exempt(|head| head.path() == "/health")
        .layer(ok_service());
    assert_eq!(send(&mut service, get("/")).await.status(), 200);
    assert_eq!(send(&mut service, get("/")).await.status(), 429);
    for _ in 0..3 {
        let response = send(&mut service, get("/health")).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get(&RATELIMIT_POLICY).is_none());
    }
    let snapshot = admission.metrics().snapshot();
    assert_eq!(
        (
            snapshot.admitted_total,
            snapshot.rate_limited_total,
            snapshot.exempt_total
        ),
        (1, 1, 3)
    );
}

#[tokio::test]
async fn per_client_stage_by_header_keeps_clients_apart() {
    let clock = ManualClock::new();
    let admission = Admission::with_clock(limits(100, 100), clock.clone())
        .unwrap()
        .with_per_key(Quota::new(2, Duration::from_secs(10)).unwrap(), 2)
        .unwrap();
    let admission = Arc::new(admission);
    let mut service = AdmissionLayer::new(Arc::clone(&admission))
        .key_by(KeyBy::header(http::HeaderName::from_static("x-api-key")))
        .unwrap()
        .layer(ok_service());
    let keyed = |key: &str| {
        Request::get("/")
            .header("x-api-key", key)
            .body(String::new())
            .unwrap()
    };
    clock.advance(Duration::from_millis(300));
    let mut statuses = Vec::new();
    for key in ["a", "a", "a", "b", "b", "b", "c"] {
        let response = send(&mut service, keyed(key)).await;
        let status = response.status().as_u16();
        if status != 200 {
            assert_eq!(response.headers()["retry-after"], "10", "{status}");
        }
        if status == 429 {
            assert_eq!(response.headers()[&RATELIMIT_POLICY], "\"client\";q=2;w=10");
            assert_eq!(response.headers()[&RATELIMIT], "\"client\";r=0;t=10");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429, 200, 200, 429, 503]);
    // Requests without the header are held to the shared limit only.
    for _ in 0..5 {
        let response = send(&mut service, get("/")).await;
        assert_eq!(response.status(), 200);
    }
    let snapshot = admission.metrics().snapshot();
    assert_eq!(
        (snapshot.admitted_total, snapshot.rate_limited_total),
        (9, 2)
    );
    assert_eq!(
        snapshot.overloaded_total,
        vec![
            ("queue_full", 0),
            ("too_many_keys", 1),
            ("store_unavailable", 0)
        ]
    );
    // A 429 from the shared limit names the shared policy, keyed or not.
    let (shared_only, _clock) = admission_pair(1);
    let mut service = AdmissionLayer::new(shared_only)
        .key_by(KeyBy::header(http::HeaderName::from_static("x-api-key")))
        .unwrap()
        .layer(ok_service());
    assert_eq!(send(&mut service, keyed("a")).await.status(), 200);
    let response = send(&mut service, keyed("b")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers()[&RATELIMIT_POLICY],
        "\"default\";q=1;w=60"
    );
}

/// An admission with a per-client stage roomier than its shared limit.
fn admission_pair(rate: u32) -> (Arc<Admission<ManualClock>>, ManualClock) {
    let clock = ManualClock::new();
    let admission = Admission::with_clock(limits(rate, 100), clock.clone())
        .unwrap()
        .with_per_key(Quota::new(50, Duration::from_secs(60)).unwrap(), 100)
        .unwrap();
    (Arc::new(admission), clock)
}

#[test]
fn keys_by_peer_address_header_and_closure() {
    let peer: std::net::SocketAddr = "10.0.0.7:5555".parse().unwrap();
    let mut request = get("/x");
    request.extensions_mut().insert(peer);
    let head = RequestHead::of(&request);
    assert_eq!(KeyBy::PeerIp.extract(&head).as_deref(), Some("10.0.0.7"));

    let mut request = get("/x");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let head = RequestHead::of(&request);
    assert_eq!(KeyBy::PeerIp.extract(&head).as_deref(), Some("10.0.0.7"));
    assert_eq!(KeyBy::PeerIp.extract(&RequestHead::of(&get("/"))), None);

    let by_path = KeyBy::from_fn(|head| Some(head.path().to_owned()));
    assert_eq!(by_path.extract(&head).as_deref(), Some("/x"));

    let long = "k".repeat(1000);
    let request = Request::get("/")
        .header("x-api-key", &long)
        .body(())
        .unwrap();
    let key = KeyBy::header(http::HeaderName::from_static("x-api-key"))
        .extract(&RequestHead::of(&request));
    assert_eq!(key.as_deref(), Some(&long[..MAX_KEY_BYTES]));
}

#[tokio::test]
async fn the_policy_header_follows_reconfigure() {
    let (admission, clock) = admission(2, 100);
    let mut service = AdmissionLayer::new(Arc::clone(&admission))
        .policy_header_on_success(true)
        .layer(ok_service());
    let response = send(&mut service, get("/")).await;
    assert_eq!(
        response.headers()[&RATELIMIT_POLICY],
        "\"default\";q=2;w=60"
    );

    let mut wider = limits(5, 100);
    wider.rate.window = Duration::from_millis(120_000);
    admission.reconfigure(wider).unwrap();
    // The same service, built before the change, states the new limit...
    let response = send(&mut service, get("/")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[&RATELIMIT_POLICY],
        "\"default\";q=5;w=120"
    );
    // ...on its 429s too.
    let mut narrower = limits(1, 100);
    narrower.rate.window = Duration::from_millis(30_000);
    admission.reconfigure(narrower).unwrap();
    clock.advance(Duration::from_millis(100));
    let response = send(&mut service, get("/")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers()[&RATELIMIT_POLICY],
        "\"default\";q=1;w=30"
    );
}

#[test]
fn key_by_without_a_per_client_stage_is_an_error() {
    let (admission, _clock) = admission(2, 100);
    let refused = AdmissionLayer::new(admission)
        .key_by(KeyBy::PeerIp)
        .unwrap_err();
    assert_eq!(refused, LayerError::NoPerClientStage);
    assert!(refused.to_string().contains("with_per_key"), "{refused}");
    let (with_stage, _clock) = admission_pair(2);
    assert!(
        AdmissionLayer::new(with_stage)
            .key_by(KeyBy::PeerIp)
            .is_ok()
    );
}

/// When the shared limit and the client's own are both spent, the 429 names the limit
/// that refused, and its `Retry-After` is that limit's wait: guessing from the client's
/// remaining room would name the client's limit beside the shared limit's wait.
#[tokio::test]
async fn a_429_names_the_limit_that_refused() {
    let clock = ManualClock::new();
    // Shared: 2 per 60 s. Each client: 1 per 20 s.
    let admission = Admission::with_clock(limits(2, 100), clock.clone())
        .unwrap()
        .with_per_key(Quota::new(1, Duration::from_secs(20)).unwrap(), 16)
        .unwrap();
    let mut service = AdmissionLayer::new(Arc::new(admission))
        .key_by(KeyBy::header(http::HeaderName::from_static("x-api-key")))
        .unwrap()
        .layer(ok_service());
    let keyed = |key: &str| {
        Request::get("/")
            .header("x-api-key", key)
            .body(String::new())
            .unwrap()
    };
    for key in ["a", "b"] {
        let response = send(&mut service, keyed(key)).await;
        assert_eq!(response.status(), 200);
    }
    // "a" has spent its own limit and the shared one is spent: either may refuse.
    let response = send(&mut service, keyed("a")).await;
    assert_eq!(response.status(), 429);
    let said = (
        response.headers()["retry-after"].to_str().unwrap(),
        response.headers()[&RATELIMIT_POLICY].to_str().unwrap(),
    );
    assert!(
        said == ("60", "\"default\";q=2;w=60") || said == ("20", "\"client\";q=1;w=20"),
        "{said:?}"
    );
}

/// A front door whose decisions are awaited (as a store-backed one's are): core's
/// admission behind one yield.
struct Awaited(Admission<ManualClock>);

impl backstop_core::FrontDoor for Awaited {
    type Ticket = backstop_core::jobs::QueueTicket;
    type Permit = backstop_core::jobs::JobPermit;

    fn admit(
        &self,
        key: Option<&str>,
        class: backstop_core::RequestClass,
    ) -> impl Future<Output = backstop_core::Decision> + Send {
        let decision = backstop_core::FrontDoor::admit(&self.0, key, class);
        async move {
            tokio::task::yield_now().await;
            decision.await
        }
    }

    fn start_job(
        &self,
        ticket: Self::Ticket,
    ) -> impl Future<Output = Result<Self::Permit, (Self::Ticket, backstop_core::WaitReason)>> + Send
    {
        backstop_core::FrontDoor::start_job(&self.0, ticket)
    }

    fn rate_limit(&self) -> Quota {
        self.0.rate_limit()
    }

    fn client_rate_limit(&self, key: &str) -> Option<Quota> {
        backstop_core::FrontDoor::client_rate_limit(&self.0, key)
    }
}

#[tokio::test]
async fn an_awaited_door_decides_before_the_inner_service_is_called() {
    let clock = ManualClock::new();
    let door = Arc::new(Awaited(
        Admission::with_clock(limits(2, 100), clock.clone()).expect("valid"),
    ));
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let inner = {
        let calls = Arc::clone(&calls);
        service_fn(move |_req: Request<String>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
        })
    };
    let mut service = AdmissionLayer::new(Arc::clone(&door))
        .exempt(|head| head.path() == "/health")
        .layer(inner);
    // Not decided in `call`: the first poll waits for the door, and the inner service
    // has not been called yet.
    let mut first = Box::pin(ready(&mut service).await.call(get("/")));
    assert!(poll_once(first.as_mut()).is_pending());
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(door.0.queue().len(), 1, "the ticket is held while it waits");
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    assert_eq!(door.0.queue().len(), 0, "and given back with the response");
    clock.advance(Duration::from_millis(500));
    let second = send(&mut service, get("/")).await;
    assert_eq!(second.status(), StatusCode::OK);
    let refused = send(&mut service, get("/")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "60"); // 59.5 s rounded up
    assert_eq!(refused.headers()[&RATELIMIT_POLICY], "\"default\";q=2;w=60");
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    let health = ready(&mut service).await.call(get("/health")).await;
    assert_eq!(health.unwrap().status(), StatusCode::OK);
    let snapshot = door.0.metrics().snapshot();
    assert_eq!(
        (
            snapshot.admitted_total,
            snapshot.rate_limited_total,
            snapshot.exempt_total
        ),
        (2, 1, 1)
    );
}
