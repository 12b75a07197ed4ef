//! backstop-sim: deterministic replay of traffic and disk-pressure traces through the real
//! backstop components, with invariant checkers, a report and charts.
//!
//! The trace and decision-log formats and the checkers are the package below,
//! `backstop-sim-check` (they read only the trace and the log). This package drives the
//! service; the pieces, in the order a run uses them (`sim/README.md` has the precise
//! semantics):
//!
//! - [`scenario`]: seeded generators of traces; [`rng`]: the pinned random streams.
//! - [`config`]: the TOML configuration (backstop-core's `Limits`, disk, sweeps), and
//!   [`params`]: what of it the checkers need.
//! - [`run`]: a run as its options ask for it: the replicas' limits in process or in a
//!   shared Redis ([`store`]), chosen there and nowhere else.
//! - [`replay`]: the single-threaded event loop on virtual time, handing each event to
//!   [`engine`], which drives [`service`] (backstop-core's `Admission`, or replicas of
//!   a store-backed door) and [`disk`] (backstop-sweep's `JobWorkspace` and `Sweep` on
//!   real temp files), and writes every decision through the checkers.
//! - [`report`] and [`charts`]: what a run prints and draws; [`html`]: the self-contained
//!   page that holds both; [`error`]: why a run could not complete.
//!
//! ```
//! use backstop_sim::config::SimConfig;
//! use backstop_sim::run::{RunOptions, run};
//! use backstop_sim::scenario::{GenParams, Generator, Scenario};
//!
//! let config = SimConfig::default();
//! let params = GenParams {
//!     scenario: Scenario::WindowEdge,
//!     seed: 7,
//!     duration_us: 5 * 60_000_000,
//!     rate_per_s: 0.1,
//!     rate_limit: config.limits.rate.limit,
//!     rate_window_us: config.rate_window_us(),
//!     disk_capacity_bytes: config.disk.capacity_bytes,
//! };
//! let out = run(&config, Generator::new(params), RunOptions::default())?;
//! // Bursts of 30 just before and at each minute boundary: the exact window refuses
//! // the second half of every pair of bursts, and every checker agrees it was right.
//! assert!(out.report.sim.rate_limited >= 30);
//! assert_eq!(out.check.violations, 0);
//! # Ok::<(), backstop_sim::error::SimError>(())
//! ```

pub mod charts;
pub mod config;
pub mod disk;
pub mod engine;
pub mod error;
pub mod html;
pub mod params;
pub mod replay;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod service;
pub mod store;
