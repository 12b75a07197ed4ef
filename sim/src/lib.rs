//! backstop-sim: deterministic replay of traffic and disk-pressure traces through backstop.
pub mod charts;
pub mod check;
pub mod config;
pub mod disk;
pub mod engine;
pub mod layout;
pub mod log;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod service;
pub mod trace;
