//! Lock-free admission control for job-running services.
//!
//! backstop answers the two questions a service under load must answer on every request,
//! without taking a lock:
//!
//! - **429**: has this client sent too much? [`rate::SlidingWindow`] is an *exact*
//!   sliding-window limiter: never more than `limit` admissions in any window of length
//!   `window`, with an exact `retry_after`.
//! - **503**: is the service full, or short of memory or disk?
//!
//! Time comes only through the [`clock::Clock`] trait, so tests and the simulator drive
//! everything on virtual time with [`clock::ManualClock`].
//!
//! A rate shape is a [`Quota`] (`limit` per `window`), checked once when it is made;
//! limiters built from one cannot fail.
//!
//! ```
//! use std::time::Duration;
//! use backstop_core::Quota;
//! use backstop_core::clock::ManualClock;
//! use backstop_core::rate::SlidingWindow;
//!
//! let clock = ManualClock::new();
//! let limiter = SlidingWindow::with_clock(Quota::new(2, Duration::from_secs(60))?, clock.clone());
//! assert!(limiter.try_acquire().is_ok());
//! clock.advance(Duration::from_secs(10));
//! assert!(limiter.try_acquire().is_ok());
//! // Two admissions in the last minute: the third must wait until the first leaves.
//! let refused = limiter.try_acquire().unwrap_err();
//! assert_eq!(refused.retry_after(), Duration::from_secs(50));
//! # Ok::<(), backstop_core::ConfigError>(())
//! ```

mod admission;
pub mod clock;
mod config_error;
mod decision;
mod door;
pub mod histogram;
mod job_times;
pub mod jobs;
mod label;
mod limits;
mod metrics;
#[cfg(any(feature = "prometheus", feature = "metrics"))]
mod metrics_export;
pub mod rate;
pub mod resources;
mod sync;
#[cfg(feature = "toml")]
mod toml_config;
mod units;

/// The reference models of the rules (feature `model`), for checkers.
#[cfg(feature = "model")]
#[doc(hidden)]
pub mod model;

pub use admission::Admission;
pub use config_error::ConfigError;
pub use decision::{Decision, OverloadReason, RateScope, Refusal, RequestClass, WaitReason};
pub use door::FrontDoor;
pub use limits::{JobLimits, Limits, QueueLimits, RateLimits};
pub use metrics::{Metrics, MetricsSnapshot};
pub use rate::Quota;
#[cfg(feature = "toml")]
pub use toml_config::parse_toml;
pub use units::{ByteSize, HumanDuration, UnitError};
