//! The decision log: what the simulator decided, in processing order, as JSON Lines.
//!
//! The checkers read only this (and the trace), so they can judge any run, or any other
//! implementation that writes the same log.

mod reader;
mod record;
mod vocab;

pub use reader::{LogError, LogReader};
pub use record::Record;
pub use vocab::{GateReason, Outcome, OverloadReason, Trigger};
