//! The run report: [`Stats`] accumulates it while the engine runs, [`Report`] is what a
//! run outputs (a terminal table and JSON; everything but its `wall` section is
//! deterministic), [`Series`] the bounded time series the charts draw.

mod output;
mod series;
mod stats;

pub use output::{
    PerHour, Report, RunOutput, SimSection, SweepTotals, Waits, WallSection, deterministic_json,
    fmt_bytes, fmt_us,
};
pub use series::{Bin, MAX_BINS, MAX_SWEEP_MARKS, Series};
pub use stats::Stats;
