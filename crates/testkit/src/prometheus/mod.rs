//! Real Prometheus tooling for tests, from Debian's `prometheus` package
//! (`.ci/promtool.sh` installs it): [`promtool`], Prometheus's own parsers and linters
//! run on a text, and [`server`], a Prometheus server on a free loopback port queried
//! through its HTTP API. Without them a test fails under `CI=true` and skips with a
//! message elsewhere ([`real_part`](crate::real_part)).

pub mod promtool;
pub mod server;

pub use promtool::Promtool;
pub use server::Prometheus;
