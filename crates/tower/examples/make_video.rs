//! make_video: the original job service in miniature, on backstop.
//!
//! - `POST /make-video` is admitted by [`AdmissionLayer`] (429 over the rate limit, 503
//!   when the queue is full) and queues a job, answering 202 with its id;
//! - a dispatcher starts queued jobs, in order, through [`Admission::start_job`]: only
//!   when one of `jobs.max` slots is free and the resource gate is open; each job runs
//!   its stages in its own [`JobWorkspace`] under the temp root, which is removed when
//!   the job ends;
//! - a [`SweepSchedule`] cleans the temp root of leftovers (every 6 h, files older than
//!   24 h, and sooner when the disk fills);
//! - `GET /metrics` serves the OpenMetrics text of one prometheus-client registry (the
//!   service's own counters and backstop-core's, registered there), `GET /health` the
//!   gate's state and why; neither is behind admission, nor are 404 and 405 answers: only
//!   `POST /make-video` spends the rate budget or counts as admitted;
//! - logs go through `tracing-subscriber`, filtered by `RUST_LOG` (default `info`;
//!   `RUST_LOG=backstop_core=trace` shows every admission decision with its reason);
//! - with `--redis redis://host:port` the limits (rate, per client, queue, job slots) are
//!   kept in Redis by `backstop_redis::RedisAdmission` and shared by every replica
//!   started with the same URL; memory and disk stay each replica's own. When Redis
//!   fails, a replica answers 503 `store_unavailable`, or with `--redis-fallback-share`
//!   decides the rate limits on a local window holding that share of each limit.
//!
//! ```text
//! cargo run -p backstop-tower --example make_video -- --port 8080 [--config make_video.toml] [--redis redis://127.0.0.1:6379]
//! ```
//!
//! The configuration file (every key optional; `make_video --help` prints the same):
//!
//! ```toml
#![doc = include_str!("make_video.example.toml")]
//! ```
//!
//! A client that sends half a request head loses its connection after
//! `serve.header_read_timeout`, and so does a kept-alive connection that sends no next
//! request (it too is waiting for a request head); each such close is logged. At most
//! `serve.max_connections` are open at once, further clients wait in the listen backlog:
//! keep it below the process's file limit (`ulimit -n`) less the few dozen descriptors the
//! service itself uses.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_core::clock::{Clock, QuantaClock};
use backstop_core::resources::{Sampler, Shortage, SysinfoProbe};
use backstop_core::units::{self, HumanDuration, HumanSize};
use backstop_core::{Admission, ConfigError, FrontDoor, Limits, toml_config};
use backstop_redis::{FailurePolicy, RedisAdmission, RedisStore, StoreOptions};
use backstop_sweep::{JobWorkspace, ScheduleHandle, Sweep, SweepSchedule};
use backstop_tower::{AdmissionLayer, AdmissionTicket, KeyBy};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, Semaphore, mpsc};

/// Most stages a job may have.
const MAX_STAGES: usize = 16;
/// Longest simulated stage: a minute.
const MAX_STAGE_MS: u64 = 60_000;
/// Most bytes a stage may write: 64 MiB.
const MAX_STAGE_BYTES: u64 = 64 << 20;
/// How often a dispatcher blocked by the resource gate looks again.
const GATE_RETRY: Duration = Duration::from_millis(100);

/// The service's configuration, from TOML: durations as `"200ms"`, sizes as `"64KiB"`;
/// the older `stage_ms`, `stage_bytes`, `sweep_every_secs`, `sweep_older_than_secs` and
/// `per_client.window_ms` keys are legacy aliases.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "ConfigToml")]
pub struct Config {
    /// Where job workspaces live, and what the sweep cleans.
    pub temp_root: PathBuf,
    /// The stages of every job, in order.
    pub stages: Vec<String>,
    /// Simulated work per stage, in milliseconds.
    pub stage_ms: u64,
    /// Bytes each stage writes into its stage directory.
    pub stage_bytes: u64,
    /// Interval of the regular sweep, in seconds.
    pub sweep_every_secs: u64,
    /// Age past which the sweep removes a file, in seconds.
    pub sweep_older_than_secs: u64,
    /// Admission limits (rate, queue, jobs, resources).
    pub limits: Limits,
    /// A per-client limit on top, clients told apart by peer IP (none by default).
    pub per_client: Option<PerClient>,
    /// Connection bounds.
    pub serve: Serving,
}

/// The `[serve]` section: bounds on how long a connection may hold a file descriptor
/// without progress, and on how many are open at once.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "ServingToml")]
pub struct Serving {
    /// Time a client has to send a request head, from the moment the server waits for one
    /// (a new connection, or a kept-alive one between requests: the idle bound), in
    /// milliseconds.
    pub header_read_timeout_ms: u64,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// `[serve]` as written in TOML: the timeout in either spelling.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServingToml {
    header_read_timeout: Option<HumanDuration>,
    header_read_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
}

impl TryFrom<ServingToml> for Serving {
    type Error = String;
    fn try_from(raw: ServingToml) -> Result<Self, String> {
        let d = Serving::default();
        let timeout = raw
            .header_read_timeout
            .map(|v| units::whole_millis(v.0, "header_read_timeout"))
            .transpose()?;
        Ok(Serving {
            header_read_timeout_ms: units::one_of(
                timeout,
                raw.header_read_timeout_ms,
                "header_read_timeout",
                "header_read_timeout_ms",
            )?
            .unwrap_or(d.header_read_timeout_ms),
            max_connections: raw.max_connections.unwrap_or(d.max_connections),
        })
    }
}

/// Most connections `serve.max_connections` may allow.
const MAX_CONNECTIONS: usize = 1 << 16;

impl Default for Serving {
    fn default() -> Self {
        Serving {
            header_read_timeout_ms: 10_000,
            max_connections: 512,
        }
    }
}

impl Serving {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout_ms == 0 {
            return Err(ConfigError::new(
                "serve.header_read_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(ConfigError::new(
                "serve.max_connections",
                format_args!(
                    "must be 1 to {MAX_CONNECTIONS}, got {}",
                    self.max_connections
                ),
            ));
        }
        Ok(())
    }
}

/// The `[per_client]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "PerClientToml")]
pub struct PerClient {
    /// Requests each client may have admitted per window.
    pub limit: u32,
    /// The window, in milliseconds.
    pub window_ms: u64,
    /// Most clients tracked at once (503 for a new one beyond).
    pub max_clients: usize,
}

/// [`Config`] as written in TOML: each duration and size in either spelling.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigToml {
    temp_root: Option<PathBuf>,
    stages: Option<Vec<String>>,
    stage: Option<HumanDuration>,
    stage_ms: Option<u64>,
    stage_size: Option<HumanSize>,
    stage_bytes: Option<u64>,
    sweep_every: Option<HumanDuration>,
    sweep_every_secs: Option<u64>,
    sweep_older_than: Option<HumanDuration>,
    sweep_older_than_secs: Option<u64>,
    limits: Option<Limits>,
    per_client: Option<PerClient>,
    serve: Option<Serving>,
}

/// Whole seconds of `d`, for a field kept in seconds.
fn whole_secs(d: Duration, key: &str) -> Result<u64, String> {
    if d.subsec_nanos() != 0 {
        return Err(format!("`{key}` must be whole seconds"));
    }
    Ok(d.as_secs())
}

impl TryFrom<ConfigToml> for Config {
    type Error = String;
    fn try_from(raw: ConfigToml) -> Result<Self, String> {
        let d = Config::default();
        let stage = raw
            .stage
            .map(|v| units::whole_millis(v.0, "stage"))
            .transpose()?;
        let every = raw
            .sweep_every
            .map(|v| whole_secs(v.0, "sweep_every"))
            .transpose()?;
        let older = raw
            .sweep_older_than
            .map(|v| whole_secs(v.0, "sweep_older_than"))
            .transpose()?;
        Ok(Config {
            temp_root: raw.temp_root.unwrap_or(d.temp_root),
            stages: raw.stages.unwrap_or(d.stages),
            stage_ms: units::one_of(stage, raw.stage_ms, "stage", "stage_ms")?
                .unwrap_or(d.stage_ms),
            stage_bytes: units::one_of(
                raw.stage_size.map(|v| v.0),
                raw.stage_bytes,
                "stage_size",
                "stage_bytes",
            )?
            .unwrap_or(d.stage_bytes),
            sweep_every_secs: units::one_of(
                every,
                raw.sweep_every_secs,
                "sweep_every",
                "sweep_every_secs",
            )?
            .unwrap_or(d.sweep_every_secs),
            sweep_older_than_secs: units::one_of(
                older,
                raw.sweep_older_than_secs,
                "sweep_older_than",
                "sweep_older_than_secs",
            )?
            .unwrap_or(d.sweep_older_than_secs),
            limits: raw.limits.unwrap_or(d.limits),
            per_client: raw.per_client,
            serve: raw.serve.unwrap_or_default(),
        })
    }
}

/// `[per_client]` as written in TOML.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PerClientToml {
    limit: u32,
    window: Option<HumanDuration>,
    window_ms: Option<u64>,
    max_clients: usize,
}

impl TryFrom<PerClientToml> for PerClient {
    type Error = String;
    fn try_from(raw: PerClientToml) -> Result<Self, String> {
        let window = raw
            .window
            .map(|v| units::whole_millis(v.0, "window"))
            .transpose()?;
        Ok(PerClient {
            limit: raw.limit,
            window_ms: units::one_of(window, raw.window_ms, "window", "window_ms")?
                .ok_or("`window` is missing")?,
            max_clients: raw.max_clients,
        })
    }
}

impl Config {
    /// The admission these settings describe, on `clock`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad field.
    pub fn admission<C: Clock + Clone>(&self, clock: C) -> Result<Admission<C>, ConfigError> {
        let admission = Admission::with_clock(self.limits.clone(), clock)?;
        match &self.per_client {
            None => Ok(admission),
            Some(per) => admission
                .with_per_key(
                    per.limit,
                    Duration::from_millis(per.window_ms),
                    per.max_clients,
                )
                .map_err(|e| ConfigError::new(format!("per_client.{}", e.field()), e.reason())),
        }
    }

    /// The front door these settings describe, its limits kept in Redis (`store`) under
    /// `name`, shared by every replica using the same store and name. `per_client`'s
    /// `max_clients` does not apply: an idle client's Redis key expires.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad field.
    pub fn redis_admission(
        &self,
        store: &RedisStore,
        name: &str,
    ) -> Result<RedisAdmission, ConfigError> {
        let door = RedisAdmission::new(store, name, self.limits.clone())?;
        match &self.per_client {
            None => Ok(door),
            Some(per) => door.with_per_key(per.limit, Duration::from_millis(per.window_ms)),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            temp_root: std::env::temp_dir().join("makevideo"),
            stages: ["download", "render", "encode"].map(String::from).to_vec(),
            stage_ms: 200,
            stage_bytes: 64 << 10,
            sweep_every_secs: 6 * 3600,
            sweep_older_than_secs: 24 * 3600,
            limits: Limits::default(),
            per_client: None,
            serve: Serving::default(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key path, the line and the column, and the reason.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml_config::from_toml_str(text)?;
        config
            .validate()
            .map_err(|e| toml_config::locate(e, text))?;
        Ok(config)
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.stages.is_empty() || self.stages.len() > MAX_STAGES {
            return Err(ConfigError::new(
                "stages",
                format_args!(
                    "must name 1 to {MAX_STAGES} stages, got {}",
                    self.stages.len()
                ),
            ));
        }
        if let Some(bad) = self
            .stages
            .iter()
            .find(|s| s.is_empty() || s.contains('/') || *s == "." || *s == "..")
        {
            return Err(ConfigError::new(
                "stages",
                format_args!("{bad:?} is not a directory name"),
            ));
        }
        if self.stage_ms > MAX_STAGE_MS {
            return Err(ConfigError::new(
                "stage_ms",
                format_args!("must be at most {MAX_STAGE_MS}, got {}", self.stage_ms),
            ));
        }
        if self.stage_bytes > MAX_STAGE_BYTES {
            return Err(ConfigError::new(
                "stage_bytes",
                format_args!(
                    "must be at most {MAX_STAGE_BYTES}, got {}",
                    self.stage_bytes
                ),
            ));
        }
        if self.sweep_every_secs == 0 {
            return Err(ConfigError::new("sweep_every_secs", "must be at least 1"));
        }
        self.serve.validate()?;
        self.limits.validate().map_err(|e| {
            let field = format!("limits.{}", e.field());
            e.with_field(field)
        })
    }
}

/// What the service needs of its front door beyond [`FrontDoor`]: core's [`Admission`]
/// (this process's limits) or [`RedisAdmission`] (limits shared by every replica).
pub trait Door: FrontDoor + 'static {
    /// Starts sampling memory and disk into this replica's resource gate.
    fn spawn_sampler(&self, probe: SysinfoProbe) -> std::io::Result<Sampler>;
    /// Registers the door's metrics in `registry`, when it has a collector.
    fn register(&self, registry: &mut Registry);
    /// The resource gate's state name and verdict now.
    fn gate(&self) -> (&'static str, Result<(), Shortage>);
    /// Jobs waiting and running (across every replica for a shared door); `None` when
    /// the store did not answer.
    fn depth(&self) -> impl Future<Output = (Option<u64>, Option<u64>)> + Send;
    /// OpenMetrics lines the registry does not hold (before `# EOF`).
    fn extra_metrics(&self, _text: &mut String) {}
}

impl<C: Clock + 'static> Door for Admission<C> {
    fn spawn_sampler(&self, probe: SysinfoProbe) -> std::io::Result<Sampler> {
        Admission::spawn_sampler(self, probe)
    }
    fn register(&self, registry: &mut Registry) {
        self.metrics().register(registry);
    }
    fn gate(&self) -> (&'static str, Result<(), Shortage>) {
        let gate = self.resource_gate();
        (gate.state().as_str(), gate.check())
    }
    async fn depth(&self) -> (Option<u64>, Option<u64>) {
        (
            Some(u64::from(self.queue().len())),
            Some(u64::from(self.slots().active())),
        )
    }
}

impl Door for RedisAdmission {
    fn spawn_sampler(&self, probe: SysinfoProbe) -> std::io::Result<Sampler> {
        RedisAdmission::spawn_sampler(self, probe)
    }
    fn register(&self, _registry: &mut Registry) {}
    fn gate(&self) -> (&'static str, Result<(), Shortage>) {
        let gate = self.resource_gate();
        (gate.state().as_str(), gate.check())
    }
    async fn depth(&self) -> (Option<u64>, Option<u64>) {
        (
            self.queue().len().await.ok(),
            self.slots().active().await.ok(),
        )
    }
    fn extra_metrics(&self, text: &mut String) {
        use std::fmt::Write;
        let counts = self.counts();
        let store = self.store().metrics().snapshot();
        let mut counter = |name: &str, help: &str, values: &[(&str, &str, u64)]| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
            for (label, value, n) in values {
                if label.is_empty() {
                    let _ = writeln!(text, "{name}_total {n}");
                } else {
                    let _ = writeln!(text, "{name}_total{{{label}=\"{value}\"}} {n}");
                }
            }
        };
        counter(
            "backstop_admitted",
            "Requests admitted",
            &[("", "", counts.admitted_total)],
        );
        counter(
            "backstop_exempt",
            "Exempt requests",
            &[("", "", counts.exempt_total)],
        );
        let scoped: Vec<_> = counts
            .rate_limited_by_scope_total
            .iter()
            .map(|(scope, n)| ("scope", *scope, *n))
            .collect();
        counter("backstop_rate_limited_by_scope", "429s by window", &scoped);
        let overloaded: Vec<_> = counts
            .overloaded_total
            .iter()
            .map(|(reason, n)| ("reason", *reason, *n))
            .collect();
        counter("backstop_overloaded", "503s by reason", &overloaded);
        let waits: Vec<_> = counts
            .job_waits_total
            .iter()
            .map(|(reason, n)| ("reason", *reason, *n))
            .collect();
        counter("backstop_job_waits", "Job starts that waited", &waits);
        counter(
            "backstop_store_errors",
            "Redis calls that failed",
            &[("", "", store.store_errors)],
        );
        counter(
            "backstop_store_timeouts",
            "Redis calls past the deadline",
            &[("", "", store.timeouts)],
        );
        counter(
            "backstop_store_fallback_decisions",
            "Decisions by the local fallback window",
            &[("", "", store.fallback_decisions)],
        );
    }
}

/// A job waiting for a slot: its id and its place in the queue.
struct QueuedJob<T> {
    id: u64,
    ticket: T,
}

struct AppState<D: Door> {
    admission: Arc<D>,
    queued: mpsc::Sender<QueuedJob<D::Ticket>>,
    next_id: AtomicU64,
    /// The service's metrics: its own counters and backstop-core's collector.
    registry: Registry,
}

/// What the jobs did, beyond the admission's own counters: prometheus-client counters,
/// registered in the service's registry beside backstop-core's.
#[derive(Debug, Default)]
pub struct JobCounts {
    /// Jobs whose workspace or stages failed.
    pub failed: Counter,
    /// Bytes the jobs wrote.
    pub bytes_written: Counter,
}

impl JobCounts {
    /// Adds these counters to `registry` as `makevideo_*` families.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "makevideo_jobs_failed",
            "Jobs whose workspace or stages failed",
            self.failed.clone(),
        );
        registry.register(
            "makevideo_bytes_written",
            "Bytes the jobs wrote to their workspaces",
            self.bytes_written.clone(),
        );
    }
}

/// The running service: its router and the background work behind it. Dropping it stops
/// the sweep schedule and the resource sampler; the dispatcher stops with the runtime.
pub struct MakeVideo<D: Door = Admission<QuantaClock>> {
    router: Router,
    admission: Arc<D>,
    counts: Arc<JobCounts>,
    _schedule: ScheduleHandle,
    _sampler: Option<Sampler>,
}

impl<D: Door> MakeVideo<D> {
    /// Starts the dispatcher, the sweep schedule and (when the gate is enabled) the
    /// resource sampler, on the current tokio runtime. `job_gate`, when given, is a
    /// semaphore every job takes one permit of before its stages run: tests hold
    /// workers busy with it; the binary passes `None`.
    ///
    /// # Errors
    ///
    /// One line saying what could not be started.
    pub fn start(
        admission: Arc<D>,
        config: &Config,
        job_gate: Option<Arc<Semaphore>>,
    ) -> Result<Self, String> {
        config.validate().map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&config.temp_root)
            .map_err(|e| format!("cannot create {}: {e}", config.temp_root.display()))?;
        let schedule = SweepSchedule::new(
            Sweep::new(&config.temp_root)
                .older_than(Duration::from_secs(config.sweep_older_than_secs)),
        )
        .every(Duration::from_secs(config.sweep_every_secs))
        .start()
        .map_err(|e| e.to_string())?;
        let sampler = if config.limits.resources.enabled {
            let probe = SysinfoProbe::from_limits(&config.limits.resources);
            Some(
                admission
                    .spawn_sampler(probe)
                    .map_err(|e| format!("cannot start the resource sampler: {e}"))?,
            )
        } else {
            None
        };

        // The queue bound already limits how many jobs wait; the channel only carries
        // them to the dispatcher.
        let (queued, waiting) = mpsc::channel(config.limits.queue.max as usize);
        let counts = Arc::new(JobCounts::default());
        tokio::spawn(dispatch(
            Arc::clone(&admission),
            waiting,
            Arc::new(config.clone()),
            job_gate,
            Arc::clone(&counts),
        ));

        let layer = AdmissionLayer::new(Arc::clone(&admission))
            .hand_over_ticket(true)
            .policy_header_on_success(true);
        // Clients are told apart only when they have budgets of their own.
        let layer = match config.per_client {
            Some(_) => layer.key_by(KeyBy::PeerIp).map_err(|e| e.to_string())?,
            None => layer,
        };
        let mut registry = Registry::default();
        counts.register(&mut registry);
        admission.register(&mut registry);
        let state = Arc::new(AppState {
            admission: Arc::clone(&admission),
            queued,
            next_id: AtomicU64::new(1),
            registry,
        });
        // Admission guards the one route that creates work, through the method router's
        // `route_layer`: a 404 (the router's fallback) or a 405 (`GET /make-video`, the
        // method router's fallback) never reaches the layer, so it neither spends the
        // rate budget nor counts as admitted. `/health` and `/metrics` are not behind it.
        let router = Router::new()
            .route("/make-video", post(make_video::<D>).route_layer(layer))
            .route("/metrics", get(metrics::<D>))
            .route("/health", get(health::<D>))
            .with_state(state);
        Ok(MakeVideo {
            router,
            admission,
            counts,
            _schedule: schedule,
            _sampler: sampler,
        })
    }

    /// The routes, behind the admission layer.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The shared admission.
    pub fn admission(&self) -> &Arc<D> {
        &self.admission
    }

    /// What the jobs did.
    pub fn counts(&self) -> &Arc<JobCounts> {
        &self.counts
    }
}

/// Serves `router` on `listener` until the runtime stops, within `serving`'s bounds: a
/// connection is closed when its client takes longer than the header-read timeout to
/// send a request head (a new one, or the next one on a kept-alive connection), and at most
/// `max_connections` are open (the rest wait in the listen backlog). Every such close,
/// reaching the cap and every failed accept are logged to stderr.
///
/// # Errors
///
/// None while the runtime runs: accept errors (out of file descriptors, most likely) are
/// logged and retried after a pause.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    serving: Serving,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(serving.max_connections));
    loop {
        // Taken before accepting: at the cap, clients wait in the kernel's backlog and
        // hold no descriptor of ours.
        let place = match Arc::clone(&open).try_acquire_owned() {
            Ok(place) => place,
            Err(_) => {
                tracing::warn!(
                    max_connections = serving.max_connections,
                    "{} connections open, the most allowed; new ones wait",
                    serving.max_connections
                );
                Arc::clone(&open)
                    .acquire_owned()
                    .await
                    .map_err(std::io::Error::other)?
            }
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, most likely: open connections close within the
                // timeouts, so try again shortly rather than spin.
                tracing::warn!(%err, "accept failed; retrying in {ACCEPT_RETRY:?}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            serving.clone(),
            place,
        ));
    }
}

/// How long the accept loop waits after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// One connection, until it ends, fails or breaks a bound; `_place` is its place among
/// the `max_connections`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    serving: Serving,
    _place: tokio::sync::OwnedSemaphorePermit,
) {
    let header_read_timeout = Duration::from_millis(serving.header_read_timeout_ms);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        // What `KeyBy::PeerIp` and axum's `ConnectInfo` extractor read.
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        tower::ServiceExt::oneshot(router.clone(), request)
    });
    // hyper's header-read timer runs whenever the connection waits for a request head:
    // on a new connection and between kept-alive requests. A request whose body the
    // handler leaves unread is not waited for: hyper closes the connection after the
    // response instead.
    let ended = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
    match ended {
        Ok(()) => {}
        Err(err) if err.is_timeout() => tracing::info!(
            %peer,
            "closed the connection: no request head within {header_read_timeout:?} \
             (half-sent, or idle after a request)"
        ),
        Err(err) => tracing::info!(%peer, %err, "connection failed"),
    }
}

async fn make_video<D: Door>(
    State(state): State<Arc<AppState<D>>>,
    Extension(ticket): Extension<AdmissionTicket<D::Ticket>>,
) -> Response {
    let Some(ticket) = ticket.take() else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "queue place already taken",
        );
    };
    // Relaxed: a unique number is all that is needed.
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    match state.queued.try_send(QueuedJob { id, ticket }) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "job_id": id })),
        )
            .into_response(),
        // The ticket comes back in the error and is dropped: the place is freed.
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "the dispatcher is gone"),
    }
}

async fn metrics<D: Door>(State(state): State<Arc<AppState<D>>>) -> Response {
    let mut text = String::with_capacity(4096);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    let mut extra = String::new();
    state.admission.extra_metrics(&mut extra);
    if !extra.is_empty() {
        if let Some(body) = text.strip_suffix("# EOF\n") {
            text = format!("{body}{extra}# EOF\n");
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn health<D: Door>(State(state): State<Arc<AppState<D>>>) -> Response {
    let (gate, verdict) = state.admission.gate();
    let (status, reason) = match verdict {
        Ok(()) => (StatusCode::OK, None),
        Err(shortage) => (StatusCode::SERVICE_UNAVAILABLE, Some(shortage.to_string())),
    };
    let (queue_depth, jobs_active) = state.admission.depth().await;
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "gate": gate,
        "reason": reason,
        "queue_depth": queue_depth,
        "jobs_active": jobs_active,
    });
    (status, Json(body)).into_response()
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Starts queued jobs in order, each as soon as [`Admission::start_job`] allows.
async fn dispatch<D: Door>(
    admission: Arc<D>,
    mut waiting: mpsc::Receiver<QueuedJob<D::Ticket>>,
    config: Arc<Config>,
    job_gate: Option<Arc<Semaphore>>,
    counts: Arc<JobCounts>,
) {
    let slot_freed = Arc::new(Notify::new());
    while let Some(QueuedJob { id, mut ticket }) = waiting.recv().await {
        let permit = loop {
            // Registered before the attempt, so a job finishing in between is not missed.
            let freed = slot_freed.notified();
            match admission.start_job(ticket).await {
                Ok(permit) => break permit,
                Err((back, _why)) => {
                    ticket = back;
                    // A slot frees when a job ends; a closed resource gate has no event
                    // to wait for, so look again after a while.
                    tokio::select! {
                        () = freed => {}
                        () = tokio::time::sleep(GATE_RETRY) => {}
                    }
                }
            }
        };
        let config = Arc::clone(&config);
        let job_gate = job_gate.clone();
        let counts = Arc::clone(&counts);
        let slot_freed = Arc::clone(&slot_freed);
        tokio::spawn(async move {
            if let Some(gate) = job_gate {
                // A closed semaphore lets the job run.
                if let Ok(held) = gate.acquire().await {
                    held.forget();
                }
            }
            let run = tokio::task::spawn_blocking(move || run_job(id, &config));
            match run.await {
                Ok(Ok(bytes)) => {
                    counts.bytes_written.inc_by(bytes);
                }
                Ok(Err(err)) => {
                    tracing::warn!(job = id, %err, "job failed");
                    counts.failed.inc();
                }
                Err(_panicked) => {
                    tracing::warn!(job = id, "job panicked");
                    counts.failed.inc();
                }
            }
            drop(permit); // the slot is free...
            slot_freed.notify_one(); // ...and the dispatcher hears of it
        });
    }
}

/// One job: each stage writes its output into its own directory, works, and is cleaned
/// before the next; the workspace goes when the job ends, however it ends.
fn run_job(id: u64, config: &Config) -> Result<u64, String> {
    let name = format!("job-{}-{id}", std::process::id());
    let workspace = JobWorkspace::create(&config.temp_root, &name).map_err(|e| e.to_string())?;
    // A long job's files look old to the sweep; the lock keeps the sweep off them.
    workspace.lock_against_sweeps().map_err(|e| e.to_string())?;
    let mut bytes_written = 0;
    for stage in &config.stages {
        let dir = workspace.stage(stage).map_err(|e| e.to_string())?;
        let output = vec![0u8; config.stage_bytes as usize];
        std::fs::write(dir.join("output.bin"), &output)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        bytes_written += config.stage_bytes;
        std::thread::sleep(Duration::from_millis(config.stage_ms));
        workspace.finish_stage(stage).map_err(|e| e.to_string())?;
    }
    workspace.remove().map_err(|e| e.to_string())?;
    Ok(bytes_written)
}

/// What `--help` adds after the flags: the endpoints, the config keys, the logging.
const AFTER_HELP: &str = concat!(
    "Endpoints (on 127.0.0.1:PORT):\n",
    "  POST /make-video   queue a job: 202 {\"job_id\"}, 429 over the rate limit,\n",
    "                     503 when the queue is full (admission applies here)\n",
    "  GET  /metrics      OpenMetrics text: backstop_* and makevideo_* families\n",
    "  GET  /health       the resource gate's state and why (200 or 503)\n",
    "\n",
    "Logging: RUST_LOG filters (default info); RUST_LOG=backstop_core=trace logs every\n",
    "admission decision with its reason.\n",
    "\n",
    "Config keys (TOML, every key optional; defaults shown):\n",
    include_str!("make_video.example.toml"),
);

#[derive(clap::Parser)]
#[command(
    name = "make_video",
    version,
    about = "The make-video job service, behind backstop's admission control",
    after_help = AFTER_HELP
)]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// TOML configuration file (defaults for every key not given).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep the limits in this Redis (redis://[user:password@]host:port[/db]), shared
    /// by every replica started with the same URL: one rate limit, queue and set of job
    /// slots for all. When Redis fails or passes the deadline the replica answers 503
    /// store_unavailable (fail closed), unless --redis-fallback-share is given.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The most each Redis call may take (with --redis), e.g. "50ms", "1s".
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "50ms",
        value_parser = units::parse_duration,
        requires = "redis"
    )]
    redis_deadline: Duration,
    /// The name the replicas' Redis keys share (with --redis).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "make_video",
        requires = "redis"
    )]
    redis_name: String,
    /// When Redis fails or passes the deadline, decide the rate limits in this replica on
    /// its own window holding this share (above 0, at most 1) of each limit, instead of
    /// answering 503 store_unavailable. With K replicas, 1/K keeps the total near the
    /// limit. The queue and job slots still fail closed: a local count cannot see jobs
    /// held by other replicas.
    #[arg(long, value_name = "SHARE", requires = "redis", value_parser = parse_share)]
    redis_fallback_share: Option<f64>,
}

/// A share of a limit, as `FailurePolicy::validate` accepts it.
fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a number: {text:?}"))?;
    FailurePolicy::LocalFallback { share }
        .validate()
        .map(|()| share)
        .map_err(|e| e.reason().to_owned())
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(message) = run(args).await {
        eprintln!("make_video: {message}");
        std::process::exit(1);
    }
}

/// The service on either front door; kept for as long as it serves.
enum Running {
    Local(MakeVideo),
    Redis(MakeVideo<RedisAdmission>),
}

impl Running {
    fn router(&self) -> Router {
        match self {
            Running::Local(service) => service.router(),
            Running::Redis(service) => service.router(),
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_toml_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    let router = match &args.redis {
        None => {
            let admission = Arc::new(
                config
                    .admission(QuantaClock::new())
                    .map_err(|e| e.to_string())?,
            );
            Running::Local(MakeVideo::start(admission, &config, None)?)
        }
        Some(url) => {
            let options = StoreOptions {
                deadline: args.redis_deadline,
                failure_policy: match args.redis_fallback_share {
                    None => FailurePolicy::FailClosed,
                    Some(share) => FailurePolicy::LocalFallback { share },
                },
                ..StoreOptions::default()
            };
            let store = RedisStore::connect(url, options)
                .await
                .map_err(|e| format!("--redis {url}: {e}"))?;
            let door = config
                .redis_admission(&store, &args.redis_name)
                .map_err(|e| e.to_string())?;
            Running::Redis(MakeVideo::start(Arc::new(door), &config, None)?)
        }
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "make_video: listening on http://{addr}");
    serve(listener, router.router(), config.serve.clone())
        .await
        .map_err(|e| format!("server stopped: {e}"))
}
