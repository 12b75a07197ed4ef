//! The service's configuration: the TOML file, its defaults and its checks.

use std::path::PathBuf;
use std::time::Duration;

use backstop_core::units::{self, HumanDuration, HumanSize};
use backstop_core::{ConfigError, Limits, toml_config};

/// Most stages a job may have.
const MAX_STAGES: usize = 16;
/// Longest simulated stage: a minute.
const MAX_STAGE_MS: u64 = 60_000;
/// Most bytes a stage may write: 64 MiB.
const MAX_STAGE_BYTES: u64 = 64 << 20;

/// The service's configuration, from TOML: durations as `"200ms"`, sizes as `"64KiB"`;
/// the older `stage_ms`, `stage_bytes`, `sweep_every_secs`, `sweep_older_than_secs` and
/// `per_client.window_ms` keys are legacy aliases.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "ConfigToml")]
pub struct Config {
    /// Where job workspaces live, and what the sweep cleans.
    pub temp_root: PathBuf,
    /// The stages of every job, in order.
    pub stages: Vec<String>,
    /// Simulated work per stage, in milliseconds.
    pub stage_ms: u64,
    /// Bytes each stage writes into its stage directory.
    pub stage_bytes: u64,
    /// Interval of the regular sweep, in seconds.
    pub sweep_every_secs: u64,
    /// Age past which the sweep removes a file, in seconds.
    pub sweep_older_than_secs: u64,
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
#[serde(try_from = "ServingToml")]
pub struct Serving {
    /// Time a client has to send a request head, from the moment the server waits for one
    /// (a new connection, or a kept-alive one between requests: the idle bound), in
    /// milliseconds.
    pub header_read_timeout_ms: u64,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// `[serve]` as written in TOML: the timeout in either spelling.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServingToml {
    header_read_timeout: Option<HumanDuration>,
    header_read_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
}

impl TryFrom<ServingToml> for Serving {
    type Error = String;
    fn try_from(raw: ServingToml) -> Result<Self, String> {
        let d = Serving::default();
        let timeout = raw
            .header_read_timeout
            .map(|v| units::whole_millis(v.0, "header_read_timeout"))
            .transpose()?;
        Ok(Serving {
            header_read_timeout_ms: units::one_of(
                timeout,
                raw.header_read_timeout_ms,
                "header_read_timeout",
                "header_read_timeout_ms",
            )?
            .unwrap_or(d.header_read_timeout_ms),
            max_connections: raw.max_connections.unwrap_or(d.max_connections),
        })
    }
}

/// Most connections `serve.max_connections` may allow.
const MAX_CONNECTIONS: usize = 1 << 16;

impl Default for Serving {
    fn default() -> Self {
        Serving {
            header_read_timeout_ms: 10_000,
            max_connections: 512,
        }
    }
}

impl Serving {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout_ms == 0 {
            return Err(ConfigError::new(
                "serve.header_read_timeout_ms",
                "must be at least 1",
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

/// The `[per_client]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "PerClientToml")]
pub struct PerClient {
    /// Requests each client may have admitted per window.
    pub limit: u32,
    /// The window, in milliseconds.
    pub window_ms: u64,
    /// Most clients tracked at once (503 for a new one beyond).
    pub max_clients: usize,
}

/// [`Config`] as written in TOML: each duration and size in either spelling.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigToml {
    temp_root: Option<PathBuf>,
    stages: Option<Vec<String>>,
    stage: Option<HumanDuration>,
    stage_ms: Option<u64>,
    stage_size: Option<HumanSize>,
    stage_bytes: Option<u64>,
    sweep_every: Option<HumanDuration>,
    sweep_every_secs: Option<u64>,
    sweep_older_than: Option<HumanDuration>,
    sweep_older_than_secs: Option<u64>,
    limits: Option<Limits>,
    per_client: Option<PerClient>,
    serve: Option<Serving>,
}

/// Whole seconds of `d`, for a field kept in seconds.
fn whole_secs(d: Duration, key: &str) -> Result<u64, String> {
    if d.subsec_nanos() != 0 {
        return Err(format!("`{key}` must be whole seconds"));
    }
    Ok(d.as_secs())
}

impl TryFrom<ConfigToml> for Config {
    type Error = String;
    fn try_from(raw: ConfigToml) -> Result<Self, String> {
        let d = Config::default();
        let stage = raw
            .stage
            .map(|v| units::whole_millis(v.0, "stage"))
            .transpose()?;
        let every = raw
            .sweep_every
            .map(|v| whole_secs(v.0, "sweep_every"))
            .transpose()?;
        let older = raw
            .sweep_older_than
            .map(|v| whole_secs(v.0, "sweep_older_than"))
            .transpose()?;
        Ok(Config {
            temp_root: raw.temp_root.unwrap_or(d.temp_root),
            stages: raw.stages.unwrap_or(d.stages),
            stage_ms: units::one_of(stage, raw.stage_ms, "stage", "stage_ms")?
                .unwrap_or(d.stage_ms),
            stage_bytes: units::one_of(
                raw.stage_size.map(|v| v.0),
                raw.stage_bytes,
                "stage_size",
                "stage_bytes",
            )?
            .unwrap_or(d.stage_bytes),
            sweep_every_secs: units::one_of(
                every,
                raw.sweep_every_secs,
                "sweep_every",
                "sweep_every_secs",
            )?
            .unwrap_or(d.sweep_every_secs),
            sweep_older_than_secs: units::one_of(
                older,
                raw.sweep_older_than_secs,
                "sweep_older_than",
                "sweep_older_than_secs",
            )?
            .unwrap_or(d.sweep_older_than_secs),
            limits: raw.limits.unwrap_or(d.limits),
            per_client: raw.per_client,
            serve: raw.serve.unwrap_or_default(),
        })
    }
}

/// `[per_client]` as written in TOML.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PerClientToml {
    limit: u32,
    window: Option<HumanDuration>,
    window_ms: Option<u64>,
    max_clients: usize,
}

impl TryFrom<PerClientToml> for PerClient {
    type Error = String;
    fn try_from(raw: PerClientToml) -> Result<Self, String> {
        let window = raw
            .window
            .map(|v| units::whole_millis(v.0, "window"))
            .transpose()?;
        Ok(PerClient {
            limit: raw.limit,
            window_ms: units::one_of(window, raw.window_ms, "window", "window_ms")?
                .ok_or("`window` is missing")?,
            max_clients: raw.max_clients,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            temp_root: std::env::temp_dir().join("makevideo"),
            stages: ["download", "render", "encode"].map(String::from).to_vec(),
            stage_ms: 200,
            stage_bytes: 64 << 10,
            sweep_every_secs: 6 * 3600,
            sweep_older_than_secs: 24 * 3600,
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
        let config: Config = toml_config::from_toml_str(text)?;
        config
            .validate()
            .map_err(|e| toml_config::locate(e, text))?;
        Ok(config)
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
        if self.stage_ms > MAX_STAGE_MS {
            return Err(ConfigError::new(
                "stage_ms",
                format_args!("must be at most {MAX_STAGE_MS}, got {}", self.stage_ms),
            ));
        }
        if self.stage_bytes > MAX_STAGE_BYTES {
            return Err(ConfigError::new(
                "stage_bytes",
                format_args!(
                    "must be at most {MAX_STAGE_BYTES}, got {}",
                    self.stage_bytes
                ),
            ));
        }
        if self.sweep_every_secs == 0 {
            return Err(ConfigError::new("sweep_every_secs", "must be at least 1"));
        }
        self.serve.validate()?;
        self.limits.validate().map_err(|e| {
            let field = format!("limits.{}", e.field());
            e.with_field(field)
        })
    }
}
