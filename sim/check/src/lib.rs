//! backstop-sim-check: the simulator's formats and its invariant checkers, below the
//! engine that replays traces through backstop.
//!
//! - [`trace`]: the JSON Lines trace format, its streaming, validating reader and its
//!   writer, and [`EventSource`](trace::EventSource), what a replay or a check reads
//!   events from;
//! - [`log`]: the decision log a run writes, in processing order;
//! - [`layout`]: how a job's declared files are laid out over its stages, shared by the
//!   engine (which writes them) and the checkers (which model them);
//! - [`check`]: one checker per invariant and a dispatcher over them. They read only the
//!   trace and the log, so they judge any run, of the simulator or of anything else
//!   that writes the same log.
//!
//! ```
//! use backstop_sim_check::check::{CheckParams, check_log};
//! use backstop_sim_check::log::LogReader;
//! use backstop_sim_check::trace::TraceReader;
//!
//! let params = CheckParams {
//!     rate_limit: 1,
//!     rate_window_us: 1_000_000,
//!     max_queue: 10,
//!     job_slots: 1,
//!     stages: 1,
//!     min_memory_bytes: 0,
//!     memory_margin_bytes: 0,
//!     min_disk_bytes: 0,
//!     disk_margin_bytes: 0,
//!     capacity_bytes: 1 << 30,
//!     pressure_bytes: 1 << 29,
//!     per_key: None,
//! };
//! let trace = "{\"t_us\":0,\"type\":\"request\",\"id\":1,\"job_us\":5}\n\
//!              {\"t_us\":1,\"type\":\"request\",\"id\":2,\"job_us\":5}\n";
//! // The second request passed one request into a window of limit 1.
//! let log = "{\"t_us\":0,\"id\":1,\"event\":\"decision\",\"outcome\":\"admitted\",\"reason\":null,\"retry_after_us\":null}\n\
//!            {\"t_us\":0,\"id\":1,\"event\":\"job_start\"}\n\
//!            {\"t_us\":1,\"id\":2,\"event\":\"decision\",\"outcome\":\"admitted\",\"reason\":null,\"retry_after_us\":null}\n";
//! let summary = check_log(params, TraceReader::new(trace.as_bytes()), LogReader::new(log.as_bytes()))?;
//! let first = summary.first.expect("a violation");
//! assert_eq!((first.invariant.title(), first.record), ("1 rate safety", 3));
//! # Ok::<(), backstop_sim_check::check::CheckRunError>(())
//! ```

pub mod check;
pub mod layout;
pub mod log;
pub mod trace;
