//! One plain reference model per rule, for every checker outside the limiter's own code:
//! the window ([`WindowModel`]), the keyed limiter ([`KeyedModel`]), the job counters
//! ([`JobsModel`]) and the front door ([`AdmissionModel`], whose [`decide`] is the one
//! place the stage order is written). Behind the `model` feature, hidden from the docs:
//! not part of the limiter's API.
//!
//! Used by the proptests of backstop-core (`rate_model`, `keyed_model`,
//! `jobs_state_machine`, `admission_state_machine`), the Redis window tests, the fuzz
//! checks in `backstop-verify` (`sliding_window`, `keyed_window`, `admission`) and the
//! simulator's rate checkers (global and per-client windows, judged in the stage order
//! by [`rate_stages`]).
//!
//! [`WindowModel`]: crate::model::WindowModel
//! [`KeyedModel`]: crate::model::KeyedModel
//! [`JobsModel`]: crate::model::JobsModel
//! [`AdmissionModel`]: crate::model::AdmissionModel
//! [`decide`]: crate::model::decide
//! [`rate_stages`]: crate::model::rate_stages

mod admission;
mod jobs;
mod keyed;
mod window;

pub use admission::{AdmissionModel, Counts, Decided, Refused, Stages, decide, rate_stages};
pub use jobs::JobsModel;
pub use keyed::{KeyedModel, KeyedRefused, Shape, reshaped};
pub use window::{Memory, WindowModel};
