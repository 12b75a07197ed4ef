//! make-video: the original job service in miniature, on backstop: the reference service.
//!
//! - `POST /make-video` is admitted by [`AdmissionLayer`] (429 over the rate limit, 503
//!   when the queue is full) and queues a job, answering 202 with its id;
//! - a dispatcher starts queued jobs, in order, through [`Admission::start_job`]: only
//!   when one of `jobs.max` slots is free and the resource gate is open; each job runs
//!   its stages in its own [`JobWorkspace`] under the temp root, which is removed when
//!   the job ends;
//! - a [`SweepSchedule`] cleans the temp root of leftovers (every 6 h, files older than
//!   24 h, and sooner when the disk fills);
//! - `GET /metrics` serves one prometheus-client registry (the service's own counters,
//!   backstop-core's and its sweep schedule's, registered there) as OpenMetrics to
//!   Prometheus and in the classic text format to other readers ([`exposition`]),
//!   `GET /health` the
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
//! cargo run -p make-video -- --port 8080 [--config make-video.toml] [--redis redis://127.0.0.1:6379]
//! ```
//!
//! The configuration file (every key optional; `make-video --help` prints the same):
//!
//! ```toml
#![doc = include_str!("../make-video.example.toml")]
//! ```
//!
//! A client that sends half a request head loses its connection after
//! `serve.header_read_timeout`, and so does a kept-alive connection that sends no next
//! request (it too is waiting for a request head); each such close is logged. At most
//! `serve.max_connections` are open at once, further clients wait in the listen backlog:
//! keep it below the process's file limit (`ulimit -n`) less the few dozen descriptors the
//! service itself uses.
//!
//! The library is the service by concern, for the binary (`src/main.rs`) and the tests:
//! [`config`] (the TOML file), [`door`] (the front door: this process's limits or
//! Redis's), [`exposition`] (the metrics formats), [`jobs`] (the dispatcher and the jobs it runs), [`handlers`] (the routes),
//! [`service`] (the router with its background work), [`server`] (the accept loop and
//! its connection bounds) and [`cli`] (the command line).
//!
//! [`AdmissionLayer`]: backstop_tower::AdmissionLayer
//! [`Admission::start_job`]: backstop_core::Admission::start_job
//! [`JobWorkspace`]: backstop_sweep::JobWorkspace
//! [`SweepSchedule`]: backstop_sweep::SweepSchedule

pub mod cli;
pub mod config;
pub mod door;
pub mod exposition;
pub mod handlers;
pub mod jobs;
pub mod server;
pub mod service;

pub use config::{Config, PerClient, Serving};
pub use door::Door;
pub use jobs::JobCounts;
pub use server::serve;
pub use service::MakeVideo;
