//! The command line: flags, the config file, the choice of front door, and serving.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use backstop_core::clock::QuantaClock;
use backstop_core::{HumanDuration, UnitError};
use backstop_redis::{FailurePolicy, RedisAdmission, RedisStore, StoreOptions, TlsConfig};

use crate::config::Config;
use crate::server::serve;
use crate::service::MakeVideo;

/// What `--help` adds after the flags: the endpoints, the config keys, the logging.
const AFTER_HELP: &str = concat!(
    "Endpoints (on 127.0.0.1:PORT):\n",
    "  POST /make-video   queue a job: 202 {\"job_id\"}, 429 over the rate limit,\n",
    "                     503 when the queue is full (admission applies here)\n",
    "  GET  /metrics      backstop_* and makevideo_* families: OpenMetrics when\n",
    "                     asked for (Accept), else the classic text format\n",
    "  GET  /health       the resource gate's state and why (200 or 503)\n",
    "\n",
    "Logging: RUST_LOG filters (default info); RUST_LOG=backstop_core=trace logs every\n",
    "admission decision with its reason.\n",
    "\n",
    "Config keys (TOML, every key optional; defaults shown):\n",
    include_str!("../make-video.example.toml"),
);

#[derive(clap::Parser)]
#[command(
    name = "make-video",
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
    /// Keep the limits in this Redis (redis://[user:password@]host:port[/db]; rediss://
    /// for TLS; redis+cluster://host:port,... for Redis Cluster;
    /// redis+sentinel://host:port,.../service for the primary Sentinel names), shared
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
        value_parser = parse_duration,
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
    /// How long a queue place or job slot in Redis stays held without a renewal (with
    /// --redis; renewed every third of it). A job whose slot's lease is lost (this replica
    /// paused, or Redis unreachable, for longer) stops before its next stage.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration,
        requires = "redis"
    )]
    redis_lease: Duration,
    /// With a rediss:// URL: trust this CA (PEM) instead of the system's.
    #[arg(long, value_name = "FILE", requires = "redis")]
    redis_ca: Option<std::path::PathBuf>,
    /// With a rediss:// URL: this client certificate (PEM), for servers that ask for one.
    #[arg(long, value_name = "FILE", requires_all = ["redis", "redis_key"])]
    redis_cert: Option<std::path::PathBuf>,
    /// The key of --redis-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["redis", "redis_cert"])]
    redis_key: Option<std::path::PathBuf>,
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

/// The command line, parsed: `--help` and `--version` print and exit while parsing, a
/// bad flag prints clap's error and exits 2.
pub struct Cli {
    args: Args,
}

impl Cli {
    /// Parses the process's arguments.
    pub fn parse() -> Cli {
        Cli {
            args: <Args as clap::Parser>::parse(),
        }
    }

    /// Reads the config, builds the front door and serves until the runtime stops.
    ///
    /// # Errors
    ///
    /// One line saying what could not be read, connected, started or served.
    pub async fn run(self) -> Result<(), String> {
        run(self.args).await
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
            let store = if args.redis_ca.is_some() || args.redis_cert.is_some() {
                let tls = TlsConfig::from_files(
                    args.redis_ca.as_deref(),
                    args.redis_cert.as_deref(),
                    args.redis_key.as_deref(),
                )
                .map_err(|e| format!("--redis {url}: {e}"))?;
                RedisStore::connect_with_tls(url, options, &tls).await
            } else {
                RedisStore::connect(url, options).await
            }
            .map_err(|e| format!("--redis {url}: {e}"))?;
            let door = config
                .redis_admission(&store, &args.redis_name, args.redis_lease)
                .map_err(|e| e.to_string())?;
            Running::Redis(MakeVideo::start(Arc::new(door), &config, None)?)
        }
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "make-video: listening on http://{addr}");
    serve(listener, router.router(), config.serve.clone())
        .await
        .map_err(|e| format!("server stopped: {e}"))
}

/// A duration flag in the config's grammar (`"50ms"`, `"10s"`).
fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    text.parse::<HumanDuration>().map(Duration::from)
}
