#![doc = include_str!("../README.md")]

mod admission;
mod checks;
mod connect;
mod connection;
mod detach;
mod error;
mod gate;
pub mod jobs;
pub mod lease;
mod metrics;
#[cfg(feature = "prometheus")]
mod metrics_export;
mod options;
mod refusal;
mod refused;
mod scripts;
mod store;
mod watch;
mod window;

pub use admission::{DEFAULT_LEASE, RedisAdmission, RedisPermit, RedisTicket};
pub use connection::{StoreConnection, TlsConfig};
pub use detach::{ClaimError, DetachError};
pub use error::{ConnectError, StoreError};
pub use jobs::{
    GateConfig, RedisJobPermit, RedisJobSlots, RedisQueueGate, RedisQueueTicket, StartError,
};
pub use lease::{LeaseLoss, LeaseWatch};
pub use metrics::{StoreMetrics, StoreMetricsSnapshot};
pub use options::{EvictionCheck, FailurePolicy, MAX_STORE_DEADLINE, StoreOptions};
pub use refusal::{Refusal, Source};
pub use refused::CACHED_CLIENTS;
pub use store::RedisStore;
pub use window::{
    FALLBACK_MAX_KEYS, MAX_CLIENT_KEY_BYTES, MAX_KEYS, MAX_REDIS_LIMIT, RedisKeyedWindow,
    RedisWindow,
};
