//! backstop-sim: deterministic replay of traffic and disk-pressure traces through backstop.
pub mod config;
pub mod log;
pub mod rng;
pub mod scenario;
pub mod trace;
