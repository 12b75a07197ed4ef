//! 429 and 503 for tower and axum services, in one layer.
//!
//! [`AdmissionLayer`] puts a shared [`backstop_core::Admission`] in front of any
//! `Service<http::Request<B>>`: an exact sliding-window rate limit answered with 429 and
//! a `Retry-After` rounded *up* to whole seconds, a bounded job queue answered with 503,
//! the IETF draft's `RateLimit-Policy` / `RateLimit` headers and a short problem-details
//! body. All clones share one state (unlike tower's `RateLimit`, which keeps a fixed
//! window per service clone), and a refused request is answered at once (unlike
//! `ConcurrencyLimit`, which queues it).
//!
//! - per-client limits: the admission's per-client stage
//!   ([`Admission::with_per_key`](backstop_core::Admission::with_per_key)) with the
//!   client found by [`AdmissionLayer::key_by`] (a header, the peer address or a
//!   closure: [`KeyBy`]);
//! - exempt requests (`/health`, `/metrics`) by a predicate: [`AdmissionLayer::exempt`];
//! - the queue place lives as long as the response future, also when the client goes
//!   away; a handler that queues work may take it ([`AdmissionTicket`]);
//! - the response type is the inner service's own: admitted responses pass through
//!   untouched and refusals are written in the same body type ([`RefusalBody`]: `String`,
//!   `Vec<u8>`, `Bytes`, `Full<Bytes>`, boxed bodies, axum's `Body`; any other body
//!   through [`AdmissionBody`]).
//!
//! - any front door: the in-process `Admission` (the default, decided inside `call`) or
//!   a store-backed one such as `backstop_redis::RedisAdmission`, whose decision the
//!   response future awaits, so that every replica of a service shares its limits
//!   ([`AdmissionLayer`]`<D: FrontDoor>`).
//!
//! The `make-video` package (`crates/make-video`) is a complete axum service built on it
//! (`--redis URL` runs it on Redis).
//!
//! # Features
//!
//! - `axum` (default): [`KeyBy::PeerIp`] also reads axum's `ConnectInfo<SocketAddr>`.

mod body;
mod future;
mod head;
mod key;
mod layer;
mod response;
mod service;
mod ticket;

pub use body::{AdmissionBody, RefusalBody};
pub use future::ResponseFuture;
pub use head::RequestHead;
pub use key::{KeyBy, MAX_KEY_BYTES};
pub use layer::{AdmissionLayer, LayerError};
pub use response::{RATELIMIT, RATELIMIT_POLICY, refusal_response_for};
pub use service::AdmissionService;
pub use ticket::AdmissionTicket;
