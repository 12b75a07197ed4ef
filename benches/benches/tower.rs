//! Per-request overhead of `backstop_tower::AdmissionLayer` against tower's own stack
//! (`RateLimitLayer` + `ConcurrencyLimitLayer` + `LoadShedLayer`), in process, no
//! network: one `ready` + `call` + response per request, on an inner service that
//! answers at once.
//!
//! Both stacks admit every request (limits far above the rate reached), so the figures
//! are the cost of saying yes; `bare` is the inner service alone. On 2 threads each
//! thread drives its own service (sharing state: backstop's admission, tower's global
//! concurrency semaphore; tower's rate limit cannot be shared, it is per service) and the
//! slower thread's time per request is reported.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use backstop_core::{Admission, Limits};
use backstop_tower::AdmissionLayer;
use criterion::{Criterion, criterion_main};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use tower::limit::{GlobalConcurrencyLimitLayer, RateLimitLayer};
use tower::load_shed::LoadShedLayer;
use tower::{Layer, Service, ServiceBuilder};

/// Rate limit on the real clock: 64 Ki per 1 ms (a cache-resident ring), far above any
/// rate one thread reaches, so nothing is refused.
const RATE_LIMIT: u32 = 1 << 16;
/// Queue and concurrency room: never reached (one request in flight per thread).
const ROOM: u32 = 1 << 16;

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");

#[derive(Clone, Copy)]
struct Inner;

impl Service<Request<String>> for Inner {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        // Real responses carry headers; an empty map would make the layer's one header
        // pay for the map's first allocation.
        let mut response = Response::new(request.into_body());
        response.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
        ready(Ok(response))
    }
}

/// Polls a future that must be ready at once (every service here is).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a benchmarked service was not ready at once"),
    }
}

/// One request through `service`: ready, call, response.
fn request<S: Service<Request<String>>>(service: &mut S)
where
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    let response = now(service.call(Request::new(String::new()))).expect("answered");
    black_box(response);
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = RATE_LIMIT;
    limits.rate.window_ms = 1;
    limits.queue.max = ROOM;
    limits.jobs.max = ROOM;
    limits.resources.enabled = false;
    limits
}

/// tower's stack, as a service would build it to get 429-ish and 503-ish behaviour.
/// `RateLimit` is not `Clone`, so every thread builds its own (its own window: the flaw
/// backstop fixes); the concurrency limit is shared through `concurrency`. (Behind axum,
/// which clones services, the stack would also need a `BufferLayer`: a channel and a
/// worker task per request, not measured here, so these figures are tower's floor.)
fn tower_stack(
    concurrency: &GlobalConcurrencyLimitLayer,
) -> impl Service<Request<String>, Error = tower::BoxError> {
    ServiceBuilder::new()
        .layer(LoadShedLayer::new())
        .layer(concurrency.clone())
        .layer(RateLimitLayer::new(u64::MAX / 2, Duration::from_secs(1)))
        .service(Inner)
}

/// Runs `iters` requests on each of `threads` threads, each on its own clone made by
/// `make` inside a tokio context (tower's `RateLimit` needs one for its timer); returns
/// the slowest thread's time.
fn on_threads<S, F>(threads: usize, iters: u64, make: F) -> Duration
where
    S: Service<Request<String>>,
    S::Error: std::fmt::Debug,
    F: Fn() -> S + Sync,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("runtime");
                    let _context = runtime.enter();
                    let mut service = make();
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        request(&mut service);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _context = runtime.enter();

    let admission = Arc::new(Admission::new(limits()).expect("valid limits"));
    let layer = AdmissionLayer::new(Arc::clone(&admission));
    let layer_no_header =
        AdmissionLayer::new(Arc::clone(&admission)).policy_header_on_success(false);
    let backstop = layer.layer(Inner);
    let backstop_no_header = layer_no_header.layer(Inner);
    let concurrency = GlobalConcurrencyLimitLayer::new(ROOM as usize);

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("tower_layer/{threads}_thread"));
        group.bench_function("bare", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, || Inner))
        });
        group.bench_function("backstop_admission_layer", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, || backstop.clone()))
        });
        group.bench_function("backstop_admission_layer_no_policy_header", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, || backstop_no_header.clone()))
        });
        group.bench_function("tower_ratelimit_concurrency_loadshed", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, || tower_stack(&concurrency)))
        });
        group.finish();
    }
    // The figures are the cost of admitting: say how many were not.
    let snapshot = admission.metrics().snapshot();
    eprintln!(
        "tower bench: {} admitted, {} rate limited, {} refused as overloaded",
        snapshot.admitted_total,
        snapshot.rate_limited_total,
        snapshot
            .overloaded_total
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
    );
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    per_request(&mut c);
}

criterion_main!(benches);
