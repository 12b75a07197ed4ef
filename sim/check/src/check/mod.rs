//! The invariant checkers. They read only the trace and the decision log, so they judge
//! any run (`backstop-sim check`) and, inline, every run of the engine.
//!
//! One module per invariant, numbered as in `sim/README.md`: `rate_safety` (1),
//! `no_false_429` (2), `queue` (3), `jobs` and `gate` (4), `cleanup` (5), `conservation`
//! (6), and `log_consistency` for a log that contradicts itself. Each judges a record
//! against `state`, the service as the log tells it before the record (the rate windows,
//! in the reference models of `backstop_core::model`, are in `passes`); the dispatcher
//! ([`Checker`]) sends each record to the checkers it can break, in a fixed order, then
//! lets the state take it.

mod cleanup;
mod conservation;
mod dispatch;
mod findings;
mod gate;
mod jobs;
mod log_consistency;
mod no_false_429;
mod params;
mod passes;
mod queue;
mod rate_safety;
mod state;

pub use dispatch::{CheckRunError, Checker, check_log};
pub use findings::{CheckSummary, Invariant, Violation};
pub use params::CheckParams;
