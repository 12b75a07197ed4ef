//! Test support shared by backstop's crates, written once: a dev-dependency only
//! (`publish = false`).
//!
//! - [`redis`]: real redis-server processes, the shared one CI starts or private ones;
//! - [`prometheus`]: promtool's parsers and linters, and a real Prometheus server;
//! - [`http`]: one plain HTTP request to a real server;
//! - [`real_part`]: the rule for every real part a test needs (a server, a tool): under
//!   `CI=true` a missing one fails the test, elsewhere the test skips with a message;
//! - [`capture`]: a `tracing-subscriber` writer that keeps what was logged, to assert on;
//! - [`alloc`]: a counting global allocator, for tests and benches that measure bytes.
//!
//! It depends on no workspace crate, so that any crate's tests (backstop-core's too) can
//! use it without building a second copy of themselves.

pub mod alloc;
pub mod capture;
pub mod http;
pub mod prometheus;
pub mod real_part;
pub mod redis;
