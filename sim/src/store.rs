//! `--store URL`: the replicas share their limits through a store (Redis).

use crate::check::CheckParams;
use crate::config::SimConfig;
use crate::engine::{EventSource, RunOptions, RunOutput, SimError};

/// Whether `url` names a Redis the simulator can connect to, without connecting; the
/// error never repeats the URL (it may hold a password).
///
/// # Errors
///
/// A one-line reason.
pub fn validate_url(url: &str) -> Result<(), String> {
    let scheme_ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(
            "--store: malformed URL: expected redis://HOST[:PORT][/DB] or redis+unix://PATH"
                .to_owned(),
        );
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("--store: malformed URL: {}", e))
}

/// Replays `source` with `opts.replicas` replicas sharing the store at `url`.
pub(crate) fn run<S: EventSource>(
    config: &SimConfig,
    source: S,
    opts: RunOptions<'_>,
    url: &str,
) -> Result<RunOutput, SimError> {
    let _ = (config, source, opts, url, CheckParams::from(config));
    Err(SimError::Replicas(
        "--store: the shared-store front door is not wired into this build yet".to_owned(),
    ))
}
