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

/// The inner service behind `Admission::try_admit` called directly, with the ticket
/// dropped after the response: the decision's cost without the layer around it.
struct DecideOnly(Arc<Admission>);

impl Service<Request<String>> for DecideOnly {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        let decision = black_box(self.0.try_admit());
        let response = Inner.call(request);
        drop(decision);
        response
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
    limits.rate.window = Duration::from_millis(1);
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
                    let runtime = timer_runtime();
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

/// A current-thread tokio runtime with a timer, which tower's `RateLimit` needs.
fn timer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn per_request(c: &mut Criterion) {
    let runtime = timer_runtime();
    let _context = runtime.enter();

    let admission = Arc::new(Admission::new(limits()).expect("valid limits"));
    let layer = AdmissionLayer::new(Arc::clone(&admission));
    let layer_header = AdmissionLayer::new(Arc::clone(&admission)).policy_header_on_success(true);
    let backstop = layer.layer(Inner);
    let backstop_header = layer_header.layer(Inner);
    let concurrency = GlobalConcurrencyLimitLayer::new(ROOM as usize);

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("tower_layer/{threads}_thread"));
        group.bench_function("bare", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, || Inner))
        });
        // What the layer adds to the inner service beyond the decision itself.
        group.bench_function("admission_try_admit_alone", |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    let admission = Arc::clone(&admission);
                    DecideOnly(admission)
                })
            })
        });
        group.bench_function("backstop_admission_layer", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, || backstop.clone()))
        });
        group.bench_function("backstop_admission_layer_policy_header", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, || backstop_header.clone()))
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

/// The same comparison interleaved: round after round, every variant runs one batch, and
/// the median of its per-request times over the rounds is reported. On a shared, noisy
/// machine the load drifts over seconds; sequential criterion groups then compare
/// variants measured under different loads, interleaved batches do not.
fn interleaved() {
    const ROUNDS: usize = 101;
    const BATCH: u64 = 10_000;
    let runtime = timer_runtime();
    let _context = runtime.enter();
    let admission = Arc::new(Admission::new(limits()).expect("valid limits"));
    let backstop = AdmissionLayer::new(Arc::clone(&admission)).layer(Inner);
    let backstop_header = AdmissionLayer::new(Arc::clone(&admission))
        .policy_header_on_success(true)
        .layer(Inner);
    let backstop_exempt = AdmissionLayer::new(Arc::clone(&admission))
        .exempt(|head| head.path() == "/health")
        .layer(Inner);
    // The ticket put in the request's extensions (a handler that queues the job would
    // take it), released when the response future completes.
    let backstop_hand_over = AdmissionLayer::new(Arc::clone(&admission))
        .hand_over_ticket(true)
        .layer(Inner);
    // One admission per thread, as tower's `RateLimit` has one window per clone: what
    // the layer costs when no state is shared between cores (not what a service wants:
    // its limits would multiply by the thread count).
    let unshared: Vec<_> = (0..2)
        .map(|_| {
            AdmissionLayer::new(Arc::new(Admission::new(limits()).expect("valid limits")))
                .layer(Inner)
        })
        .collect();
    let next_unshared = std::sync::atomic::AtomicUsize::new(0);
    let concurrency = GlobalConcurrencyLimitLayer::new(ROOM as usize);
    let names = [
        "bare",
        "admission_try_admit_alone",
        "backstop_admission_layer",
        "backstop_admission_layer_policy_header",
        "backstop_admission_layer_exempt_predicate",
        "backstop_admission_layer_hand_over_ticket",
        "backstop_admission_layer_unshared",
        "tower_ratelimit_concurrency_loadshed",
    ];
    for threads in [1, 2] {
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); names.len()];
        for _ in 0..ROUNDS {
            let times = [
                on_threads(threads, BATCH, || Inner),
                on_threads(threads, BATCH, || DecideOnly(Arc::clone(&admission))),
                on_threads(threads, BATCH, || backstop.clone()),
                on_threads(threads, BATCH, || backstop_header.clone()),
                on_threads(threads, BATCH, || backstop_exempt.clone()),
                on_threads(threads, BATCH, || backstop_hand_over.clone()),
                on_threads(threads, BATCH, || {
                    let i = next_unshared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    unshared[i % unshared.len()].clone()
                }),
                on_threads(threads, BATCH, || tower_stack(&concurrency)),
            ];
            for (sample, time) in samples.iter_mut().zip(times) {
                sample.push(time.as_nanos() as f64 / BATCH as f64);
            }
        }
        let medians: Vec<f64> = samples
            .iter_mut()
            .map(|s| {
                s.sort_by(f64::total_cmp);
                s[s.len() / 2]
            })
            .collect();
        let tower = medians[names.len() - 1];
        let bare = medians[0];
        println!(
            "interleaved, {threads} thread(s), {ROUNDS} rounds of {BATCH} requests, median ns/request:"
        );
        for (name, median) in names.iter().zip(&medians) {
            println!(
                "  {name:<45} {median:>8.1} ns   overhead over bare {:>7.1} ns   / tower {:.2}x   overhead / tower overhead {:.2}x",
                median - bare,
                median / tower,
                (median - bare) / (tower - bare),
            );
        }
    }
}

/// One variant alone for a few seconds, for `perf record`
/// (`BACKSTOP_TOWER_PROFILE=<variant name>`, on `BACKSTOP_TOWER_PROFILE_THREADS` threads,
/// default 1): the interleaved mode mixes every variant.
fn profile(name: &str) {
    let threads: usize = std::env::var("BACKSTOP_TOWER_PROFILE_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    const REQUESTS: u64 = 30_000_000;
    let runtime = timer_runtime();
    let _context = runtime.enter();
    let admission = Arc::new(Admission::new(limits()).expect("valid limits"));
    let concurrency = GlobalConcurrencyLimitLayer::new(ROOM as usize);
    let time = match name {
        "bare" => on_threads(threads, REQUESTS, || Inner),
        "admission_try_admit_alone" => {
            on_threads(threads, REQUESTS, || DecideOnly(Arc::clone(&admission)))
        }
        "backstop_admission_layer" => on_threads(threads, REQUESTS, || {
            AdmissionLayer::new(Arc::clone(&admission)).layer(Inner)
        }),
        "tower_ratelimit_concurrency_loadshed" => {
            on_threads(threads, REQUESTS, || tower_stack(&concurrency))
        }
        other => panic!("no variant {other}"),
    };
    println!(
        "{name}, {threads} thread(s): {:.1} ns/request (slowest thread)",
        time.as_nanos() as f64 / REQUESTS as f64
    );
}

fn benches() {
    if let Some(name) = std::env::var_os("BACKSTOP_TOWER_PROFILE") {
        profile(&name.to_string_lossy());
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    per_request(&mut c);
    if std::env::var_os("BACKSTOP_TOWER_INTERLEAVED").is_some() {
        interleaved();
    }
}

criterion_main!(benches);
