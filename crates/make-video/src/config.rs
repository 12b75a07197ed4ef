//! The service's configuration: the TOML file, its defaults and its checks.

use std::path::PathBuf;
use std::time::Duration;

use backstop_core::{ByteSize, ConfigError, Limits, Quota, parse_toml};

/// Most stages a job may have.
const MAX_STAGES: usize = 16;
/// Longest simulated stage: a minute.
const MAX_STAGE: Duration = Duration::from_secs(60);
/// Most bytes a stage may write: 64 MiB.
const MAX_STAGE_SIZE: ByteSize = ByteSize::mib(64);

/// `#[serde(with = "text")]`: a `Duration` written as text (`"200ms"`, `"6h"`), in
/// backstop-core's grammar.
mod text {
    use std::time::Duration;

    use backstop_core::HumanDuration;
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        HumanDuration::deserialize(d).map(Duration::from)
    }
}

/// The service's configuration, from TOML: durations as `"200ms"`, sizes as `"64KiB"`,
/// one spelling per key.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where job workspaces live, and what the sweep cleans.
    pub temp_root: PathBuf,
    /// The stages of every job, in order.
    pub stages: Vec<String>,
    /// Simulated work per stage (at most a minute).
    #[serde(with = "text")]
    pub stage: Duration,
    /// Bytes each stage writes into its stage directory (at most 64 MiB).
    pub stage_size: ByteSize,
    /// Interval of the regular sweep (at least a second).
    #[serde(with = "text")]
    pub sweep_every: Duration,
    /// Age past which the sweep removes a file.
    #[serde(with = "text")]
    pub sweep_older_than: Duration,
    /// Admission limits (rate, queue, jobs, resources).
    pub limits: Limits,
    /// A per-client limit on top, clients told apart by peer IP (none by default).
    pub per_client: Option<PerClient>,
    /// Connection bounds.
    pub serve: Serving,
}

/// The `[serve]` section: bounds on how long a connection may hold a file descriptor
/// without progress, and on how many are open at once.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Serving {
    /// Time a client has to send a request head, from the moment the server waits for one
    /// (a new connection, or a kept-alive one between requests: the idle bound).
    #[serde(with = "text")]
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Most connections `serve.max_connections` may allow.
const MAX_CONNECTIONS: usize = 1 << 16;

impl Default for Serving {
    fn default() -> Self {
        Serving {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

impl Serving {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "serve.header_read_timeout",
                format_args!("must be at least 1ms, got {:?}", self.header_read_timeout),
            ));
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(ConfigError::new(
                "serve.max_connections",
                format_args!(
                    "must be 1 to {MAX_CONNECTIONS}, got {}",
                    self.max_connections
                ),
            ));
        }
        Ok(())
    }
}

/// The `[per_client]` section: every key is required.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerClient {
    /// Requests each client may have admitted per window.
    pub limit: u32,
    /// The window.
    #[serde(with = "text")]
    pub window: Duration,
    /// Most clients tracked at once (503 for a new one beyond).
    pub max_clients: usize,
}

impl PerClient {
    /// Each client's quota, checked.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`], the field named `per_client.limit` or `per_client.window`.
    pub fn quota(&self) -> Result<Quota, ConfigError> {
        Quota::new(self.limit, self.window).map_err(|e| e.under("per_client"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            temp_root: std::env::temp_dir().join("makevideo"),
            stages: ["download", "render", "encode"].map(String::from).to_vec(),
            stage: Duration::from_millis(200),
            stage_size: ByteSize::kib(64),
            sweep_every: Duration::from_secs(6 * 3600),
            sweep_older_than: Duration::from_secs(24 * 3600),
            limits: Limits::default(),
            per_client: None,
            serve: Serving::default(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key path, the line and the column, and the reason.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        parse_toml(text, Config::validate)
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.stages.is_empty() || self.stages.len() > MAX_STAGES {
            return Err(ConfigError::new(
                "stages",
                format_args!(
                    "must name 1 to {MAX_STAGES} stages, got {}",
                    self.stages.len()
                ),
            ));
        }
        if let Some(bad) = self
            .stages
            .iter()
            .find(|s| s.is_empty() || s.contains('/') || *s == "." || *s == "..")
        {
            return Err(ConfigError::new(
                "stages",
                format_args!("{bad:?} is not a directory name"),
            ));
        }
        if self.stage > MAX_STAGE {
            return Err(ConfigError::new(
                "stage",
                format_args!("must be at most 1m, got {:?}", self.stage),
            ));
        }
        if self.stage_size > MAX_STAGE_SIZE {
            return Err(ConfigError::new(
                "stage_size",
                format_args!("must be at most {MAX_STAGE_SIZE}, got {}", self.stage_size),
            ));
        }
        if self.sweep_every < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "sweep_every",
                format_args!("must be at least 1s, got {:?}", self.sweep_every),
            ));
        }
        if let Some(per_client) = &self.per_client {
            per_client.quota()?;
        }
        self.serve.validate()?;
        self.limits.validate().map_err(|e| e.under("limits"))
    }
}
