//! backstop-sim: deterministic replay of traffic and disk-pressure traces through the real
//! backstop components, with invariant checkers, a report and charts.
//!
//! The pieces, in the order a run uses them (`sim/README.md` has the precise semantics):
//!
//! - [`trace`]: the JSON Lines trace format and its streaming, validating reader;
//!   [`scenario`]: seeded generators of traces; [`rng`]: the pinned random streams.
//! - [`config`]: the TOML configuration (backstop-core's `Limits`, disk, sweeps).
//! - [`engine`]: the single-threaded discrete-event loop on virtual time, driving
//!   [`service`] (backstop-core's `Admission`) and [`disk`] (backstop-sweep's
//!   `JobWorkspace` and `Sweep` on real temp files laid out by [`layout`]).
//! - [`log`]: the decision log; [`check`]: the invariant checkers, which read only the trace
//!   and the log; [`report`] and [`charts`]: what a run prints and draws; [`html`]: the
//!   self-contained page that holds both.
//!
//! ```
//! use backstop_sim::config::SimConfig;
//! use backstop_sim::engine::{run, RunOptions};
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
//! # Ok::<(), backstop_sim::engine::SimError>(())
//! ```

pub mod charts;
pub mod check;
pub mod config;
pub mod disk;
pub mod engine;
pub mod html;
pub mod layout;
pub mod log;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod service;
pub mod store;
pub mod trace;
