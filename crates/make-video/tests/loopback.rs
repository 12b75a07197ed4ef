//! The reference service on loopback, driven by a real HTTP
//! client (hyper), with exact counts.
//!
//! The service's `Admission` runs on a `ManualClock`, so the rate window is moved by the
//! test, never waited for. The only waits are for the service's own tasks (a dispatcher
//! picking up jobs), bounded by a deadline. Every test is bounded: at most a few dozen
//! requests, and `BOUND` of wall time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::{Admission, ByteSize, Limits, MetricsSnapshot};
use bytes::Bytes;
use common::{Logged, MAKE_VIDEO};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use make_video::{Config, MakeVideo, PerClient, Serving, serve};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The most any one test may take.
const BOUND: Duration = Duration::from_secs(20);

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

struct Harness {
    client: Client<HttpConnector, Empty<Bytes>>,
    addr: std::net::SocketAddr,
    base: String,
    clock: ManualClock,
    admission: Arc<Admission<ManualClock>>,
    service: MakeVideo<Admission<ManualClock>>,
    temp: tempfile::TempDir,
}

impl Harness {
    async fn start(limits: Limits, job_gate: Option<Arc<Semaphore>>) -> Harness {
        Harness::start_with(limits, None, job_gate).await
    }

    async fn start_with(
        limits: Limits,
        per_client: Option<PerClient>,
        job_gate: Option<Arc<Semaphore>>,
    ) -> Harness {
        Harness::start_config(limits, per_client, Serving::default(), job_gate).await
    }

    async fn start_config(
        limits: Limits,
        per_client: Option<PerClient>,
        serving: Serving,
        job_gate: Option<Arc<Semaphore>>,
    ) -> Harness {
        let clock = ManualClock::new();
        let temp = tempfile::tempdir().unwrap();
        let config = Config {
            temp_root: temp.path().join("makevideo"),
            stage: Duration::ZERO,
            stage_size: ByteSize::kib(1),
            limits,
            per_client,
            serve: serving,
            ..Config::default()
        };
        let admission = Arc::new(config.admission(clock.clone()).unwrap());
        let service = MakeVideo::start(Arc::clone(&admission), &config, job_gate).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        tokio::spawn(serve(listener, service.router(), config.serve.clone()));
        let client = client();
        Harness {
            client,
            addr,
            base,
            clock,
            admission,
            service,
            temp,
        }
    }

    async fn send(&self, method: Method, path: &str) -> Reply {
        send(&self.client, &self.base, method, path).await
    }

    /// `n` POSTs to /make-video at once, on separate connections as the pool sees fit.
    async fn burst(&self, n: usize) -> Vec<Reply> {
        let mut set = JoinSet::new();
        for _ in 0..n {
            let client = self.client.clone();
            let base = self.base.clone();
            set.spawn(async move { send(&client, &base, Method::POST, "/make-video").await });
        }
        let mut replies = Vec::with_capacity(n);
        while let Some(reply) = set.join_next().await {
            replies.push(reply.unwrap());
        }
        replies
    }

    /// One sample of `/metrics`, by name and labels as written.
    async fn metric(&self, sample: &str) -> f64 {
        let reply = self.send(Method::GET, "/metrics").await;
        assert_eq!(reply.status, 200);
        reply
            .body
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {sample} in\n{}", reply.body))
            .parse()
            .unwrap()
    }

    /// Waits, for at most five seconds, until the service's background tasks get there.
    async fn until(&self, what: &str, done: impl Fn(&Admission<ManualClock>) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done(&self.admission) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.admission
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A client opening a fresh connection per request: a pooled one left idle past the
/// service's header read timeout is closed by the service while the client may pick it
/// for the next request (hyper then fails it as an incomplete message).
fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

async fn send(
    client: &Client<HttpConnector, Empty<Bytes>>,
    base: &str,
    method: Method,
    path: &str,
) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.expect("loopback request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn limits(rate: u32, queue: u32, jobs: u32) -> Limits {
    let mut limits = Limits::default();
    limits.rate.limit = rate;
    limits.rate.window = Duration::from_secs(60);
    limits.queue.max = queue;
    limits.queue.retry_after_hint = Duration::from_millis(1500);
    limits.jobs.max = jobs;
    limits.resources.enabled = false;
    limits
}

fn count(replies: &[Reply], status: u16) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on a {}", reply.status))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_n_per_window_accepted_the_rest_429_then_accepted_again() {
    tokio::time::timeout(BOUND, async {
        let service = Harness::start(limits(8, 64, 4), None).await;

        // A burst at t = 0: exactly the limit gets through.
        let replies = service.burst(20).await;
        assert_eq!((count(&replies, 202), count(&replies, 429)), (8, 12));
        for reply in replies.iter().filter(|r| r.status == 429) {
            assert_eq!(header(reply, "retry-after"), "60");
            assert_eq!(header(reply, "ratelimit-policy"), "\"default\";q=8;w=60");
            assert_eq!(header(reply, "ratelimit"), "\"default\";r=0;t=60");
            assert_eq!(header(reply, "content-type"), "application/problem+json");
            assert!(reply.body.contains("\"status\":429"), "{}", reply.body);
        }
        for reply in replies.iter().filter(|r| r.status == 202) {
            assert!(reply.body.contains("\"job_id\":"), "{}", reply.body);
            assert_eq!(header(reply, "ratelimit-policy"), "\"default\";q=8;w=60");
        }

        // 10.3 s later the wait is 49.7 s: Retry-After rounds it up.
        service.clock.advance(Duration::from_millis(10_300));
        let replies = service.burst(5).await;
        assert_eq!(count(&replies, 429), 5);
        assert!(replies.iter().all(|r| header(r, "retry-after") == "50"));

        // Exactly when the burst leaves the window, the limit is available again.
        service.clock.advance(Duration::from_millis(49_700));
        let replies = service.burst(10).await;
        assert_eq!((count(&replies, 202), count(&replies, 429)), (8, 2));

        // Every job ran and cleaned up after itself.
        service
            .until("16 jobs to finish", |a| {
                a.metrics().snapshot().jobs_finished_total == 16
            })
            .await;
        assert_eq!(service.metric("backstop_admitted_total").await, 16.0);
        assert_eq!(service.metric("backstop_rate_limited_total").await, 19.0);
        assert_eq!(service.metric("backstop_jobs_started_total").await, 16.0);
        assert_eq!(service.metric("backstop_jobs_finished_total").await, 16.0);
        assert_eq!(service.metric("makevideo_jobs_failed_total").await, 0.0);
        assert_eq!(
            service.metric("makevideo_bytes_written_total").await,
            (16 * 3 * 1024) as f64
        );
        assert_eq!(service.metric("backstop_queue_depth").await, 0.0);
        // The scrapes are not behind admission at all.
        assert_eq!(service.metric("backstop_exempt_total").await, 0.0);
        let leftovers = std::fs::read_dir(service.temp.path().join("makevideo"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0, "job workspaces are removed");
        assert_eq!(service.service.counts().failed.get(), 0);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_method_not_allowed_spend_no_rate_budget() {
    tokio::time::timeout(BOUND, async {
        let service = Harness::start(limits(2, 64, 4), None).await;
        // A browser's favicon requests and a wrong method: 404s and 405s, many more than
        // the rate limit.
        for _ in 0..32 {
            assert_eq!(service.send(Method::GET, "/favicon.ico").await.status, 404);
        }
        for _ in 0..4 {
            assert_eq!(service.send(Method::GET, "/make-video").await.status, 405);
        }
        // The work-creating route still has its whole budget.
        for _ in 0..2 {
            let reply = service.send(Method::POST, "/make-video").await;
            assert_eq!(reply.status, 202, "{}", reply.body);
        }
        let reply = service.send(Method::POST, "/make-video").await;
        assert_eq!(reply.status, 429);
        assert_eq!(header(&reply, "ratelimit-policy"), "\"default\";q=2;w=60");
        assert_eq!(service.metric("backstop_admitted_total").await, 2.0);
        assert_eq!(service.metric("backstop_rate_limited_total").await, 1.0);
        assert_eq!(service.metric("backstop_exempt_total").await, 0.0);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_blocked_and_queue_full_gives_503_until_jobs_finish() {
    tokio::time::timeout(BOUND, async {
        let gate = Arc::new(Semaphore::new(0));
        let service = Harness::start(limits(1000, 3, 2), Some(Arc::clone(&gate))).await;

        // Two jobs take both slots and block there.
        for _ in 0..2 {
            assert_eq!(service.send(Method::POST, "/make-video").await.status, 202);
        }
        service
            .until("both workers busy", |a| {
                a.slots().active() == 2 && a.queue().is_empty()
            })
            .await;
        // Three more fill the queue.
        for _ in 0..3 {
            assert_eq!(service.send(Method::POST, "/make-video").await.status, 202);
        }
        let replies = service.burst(4).await;
        assert_eq!(count(&replies, 503), 4);
        for reply in &replies {
            assert_eq!(header(reply, "retry-after"), "2"); // the 1.5 s hint, rounded up
            assert!(reply.body.contains("queue_full"), "{}", reply.body);
            assert!(reply.headers.get("ratelimit").is_none());
        }

        // Health and metrics are not behind admission: they answer while the service is full.
        let health = service.send(Method::GET, "/health").await;
        assert_eq!(health.status, 200);
        assert!(health.body.contains("\"gate\":\"open\""), "{}", health.body);
        assert!(health.body.contains("\"queue_depth\":3"), "{}", health.body);
        assert_eq!(service.metric("backstop_admitted_total").await, 5.0);
        assert_eq!(
            service
                .metric("backstop_overloaded_total{reason=\"queue_full\"}")
                .await,
            4.0
        );
        assert_eq!(service.metric("backstop_jobs_active").await, 2.0);
        assert_eq!(service.metric("backstop_queue_depth").await, 3.0);
        assert!(
            service
                .metric("backstop_job_waits_total{reason=\"no_free_slot\"}")
                .await
                >= 1.0
        );

        // Let every job run: the queue drains and the service accepts again.
        gate.add_permits(5);
        service
            .until("5 jobs to finish", |a| {
                a.metrics().snapshot().jobs_finished_total == 5
            })
            .await;
        assert_eq!(service.send(Method::POST, "/make-video").await.status, 202);
        assert_eq!(service.metric("backstop_admitted_total").await, 6.0);
        assert_eq!(service.metric("backstop_rate_limited_total").await, 0.0);
        gate.add_permits(1);
        service
            .until("the last job to finish", |a| {
                a.metrics().snapshot().jobs_finished_total == 6
            })
            .await;
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_limit_by_peer_address() {
    tokio::time::timeout(BOUND, async {
        let per_client = PerClient {
            limit: 3,
            window: Duration::from_secs(20),
            max_clients: 16,
        };
        let service = Harness::start_with(limits(100, 64, 4), Some(per_client), None).await;
        // Every request comes from 127.0.0.1: one client, held to its own 3 per 20 s.
        let replies = service.burst(7).await;
        assert_eq!((count(&replies, 202), count(&replies, 429)), (3, 4));
        for reply in replies.iter().filter(|r| r.status == 429) {
            assert_eq!(header(reply, "retry-after"), "20");
            assert_eq!(header(reply, "ratelimit-policy"), "\"client\";q=3;w=20");
        }
        service.clock.advance(Duration::from_secs(20));
        let replies = service.burst(4).await;
        assert_eq!((count(&replies, 202), count(&replies, 429)), (3, 1));
        assert_eq!(service.metric("backstop_admitted_total").await, 6.0);
        assert_eq!(service.metric("backstop_rate_limited_total").await, 5.0);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_resource_gate_holds_jobs_back_and_health_says_why() {
    tokio::time::timeout(BOUND, async {
        let mut limits = limits(100, 8, 2);
        // The real sampler runs; a threshold no machine meets closes the gate on its first
        // reading (the manual clock never lets that reading go stale).
        limits.resources.enabled = true;
        limits.resources.min_available_memory = ByteSize::mib(1 << 30);
        limits.resources.memory_margin = ByteSize::mib(0);
        limits.resources.disk_path = std::env::temp_dir();
        let service = Harness::start(limits, None).await;
        service
            .until("the sampler's first reading", |a| {
                a.resource_gate().readings_total() >= 1
            })
            .await;

        let health = service.send(Method::GET, "/health").await;
        assert_eq!(health.status, 503, "{}", health.body);
        assert!(
            health.body.contains("\"gate\":\"low_memory\""),
            "{}",
            health.body
        );
        assert!(health.body.contains("low memory"), "{}", health.body);

        // Requests are still admitted (the queue has room), but no job starts.
        assert_eq!(service.send(Method::POST, "/make-video").await.status, 202);
        service
            .until("the dispatcher to find the gate closed", |a| {
                MetricsSnapshot::by_reason(&a.metrics().snapshot().job_waits_total, "low_memory")
                    >= 1
            })
            .await;
        assert_eq!(service.metric("backstop_jobs_active").await, 0.0);
        assert_eq!(service.metric("backstop_queue_depth").await, 1.0);
        assert_eq!(service.metric("backstop_jobs_started_total").await, 0.0);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_field() {
    let err = Config::from_toml_str("stages = []\n").unwrap_err();
    assert_eq!(err.field(), "stages");
    let err = Config::from_toml_str("[limits.rate]\nlimit = 0\n").unwrap_err();
    assert_eq!(err.field(), "limits.rate.limit");
    let config = Config::from_toml_str("stage = \"5ms\"\n[limits.queue]\nmax = 7\n").unwrap();
    assert_eq!(
        (config.stage, config.limits.queue.max),
        (Duration::from_millis(5), 7)
    );
    let err = Config::from_toml_str("[per_client]\nlimit = 0\nwindow = \"1s\"\nmax_clients = 10\n")
        .unwrap_err();
    assert_eq!(err.field(), "per_client.limit");
    let config =
        Config::from_toml_str("[per_client]\nlimit = 1\nwindow = \"1s\"\nmax_clients = 0\n")
            .unwrap();
    let err = config.admission(ManualClock::new()).unwrap_err();
    assert_eq!(err.field(), "per_client.max_keys");
    let err = Config::from_toml_str("[serve]\nmax_connections = 0\n").unwrap_err();
    assert_eq!(err.field(), "serve.max_connections");
    let err = Config::from_toml_str("[serve]\nheader_read_timeout = \"0s\"\n").unwrap_err();
    assert_eq!(err.field(), "serve.header_read_timeout");
}

/// Half a request: a request line and one header, never the blank line that ends the head.
const HALF_A_REQUEST: &[u8] = b"POST /make-video HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// Connects to `addr` and sends `bytes`, then nothing more.
async fn half_sent(addr: std::net::SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the server closes `stream` (or resets it), giving back what it sent; fails
/// after `bound`.
async fn until_closed(stream: &mut tokio::net::TcpStream, bound: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(bound, stream.read_to_end(&mut received)).await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
        Err(_) => panic!("the server kept the connection open past {bound:?}"),
    }
    String::from_utf8_lossy(&received).into_owned()
}

fn serving(header_read_timeout_ms: u64, max_connections: usize) -> Serving {
    Serving {
        header_read_timeout: Duration::from_millis(header_read_timeout_ms),
        max_connections,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_after_the_header_read_timeout() {
    tokio::time::timeout(BOUND, async {
        let service =
            Harness::start_config(limits(100, 64, 4), None, serving(1000, 64), None).await;
        let sent_at = tokio::time::Instant::now();
        let mut stalled = Vec::new();
        for _ in 0..40 {
            stalled.push(half_sent(service.addr, HALF_A_REQUEST).await);
        }
        // While forty clients hold half a request, a whole one is answered at once.
        let reply = service.send(Method::POST, "/make-video").await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert!(
            sent_at.elapsed() < Duration::from_millis(1000),
            "answered before any close"
        );
        // Then every stalled client is closed, none before its second was up.
        for stream in &mut stalled {
            until_closed(stream, Duration::from_secs(5)).await;
        }
        assert!(sent_at.elapsed() >= Duration::from_millis(1000));
        // The service answers as before.
        assert_eq!(service.send(Method::POST, "/make-video").await.status, 202);
        assert_eq!(service.metric("backstop_admitted_total").await, 2.0);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_clients_wait_for_a_place_instead_of_failing() {
    tokio::time::timeout(BOUND, async {
        let service = Harness::start_config(limits(100, 64, 4), None, serving(300, 4), None).await;
        let started = tokio::time::Instant::now();
        let mut stalled = Vec::new();
        for _ in 0..4 {
            stalled.push(half_sent(service.addr, HALF_A_REQUEST).await);
        }
        // Every place is held: the whole request waits in the backlog until a stalled
        // client is closed (300 ms at the soonest), then is answered.
        let reply = service.send(Method::POST, "/make-video").await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "answered past the cap"
        );
        for stream in &mut stalled {
            until_closed(stream, Duration::from_secs(5)).await;
        }
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_that_sends_nothing_more_is_closed() {
    tokio::time::timeout(BOUND, async {
        let service = Harness::start_config(limits(100, 64, 4), None, serving(300, 64), None).await;
        // One whole request on a kept-alive connection, then silence.
        let mut idle = half_sent(
            service.addr,
            b"POST /make-video HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        let sent_at = tokio::time::Instant::now();
        let answer = until_closed(&mut idle, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        assert!(sent_at.elapsed() >= Duration::from_millis(300));
    })
    .await
    .expect("bounded in time");
}

/// Slow clients at the descriptor limit: the real binary under `ulimit -n 64`, 70 clients that each
/// send half a request. Without a header-read timeout they hold every descriptor it may
/// open, forever, and it answers nobody; with one, a whole request behind them is answered
/// once the stalled ones are closed, and each close is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_half_sent_clients_do_not_lock_out_the_binary_under_ulimit_64() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("make-video.toml");
    std::fs::write(
        &config,
        format!(
            "temp_root = {:?}\nstage = \"0s\"\n[limits.resources]\nenabled = false\n\
             [serve]\nheader_read_timeout = \"300ms\"\nmax_connections = 32\n",
            temp.path().join("makevideo")
        ),
    )
    .unwrap();
    let mut service = Logged::spawn(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$0\" --port 0 --config \"$1\"")
            .arg(MAKE_VIDEO)
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null()),
    );
    // A tracing line: `<time> INFO make_video::cli: make-video: listening on http://<addr> …`,
    // possibly after others (a sweep at start-up logs too).
    let addr: std::net::SocketAddr = service.listening_addr(BOUND).parse().unwrap();

    tokio::time::timeout(BOUND, async {
        let mut stalled = Vec::new();
        for _ in 0..70 {
            stalled.push(half_sent(addr, HALF_A_REQUEST).await);
        }
        let client = client();
        let reply = send(
            &client,
            &format!("http://{addr}"),
            Method::POST,
            "/make-video",
        )
        .await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        for stream in &mut stalled {
            until_closed(stream, Duration::from_secs(10)).await;
        }
    })
    .await
    .expect("a whole request is answered behind 70 half-sent ones");

    // A close is logged just after the socket is closed: wait for the lines, boundedly.
    let closes = |log: &[String]| {
        log.iter()
            .filter(|line| line.contains("no request head within"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while closes(&service.seen) < 70 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if service.next_line(left).is_none() {
            break;
        }
    }
    let log = &service.seen;
    assert!(
        closes(log) >= 70,
        "{} closes logged:\n{}",
        closes(log),
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|line| line.contains("connections open, the most allowed")),
        "{}",
        log.join("\n")
    );
}
