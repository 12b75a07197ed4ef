//! What a store checks of the server: at connect (the deployment is the one the URL
//! names, the version, the eviction policy; the scripts loaded), and the eviction
//! policy again while it runs.

use redis::Value;

use crate::connection::StoreConnection;
use crate::error::ConnectError;
use crate::options::{EvictionCheck, StoreOptions};
use crate::scripts;

/// The checks at connect, on every primary; the eviction warning under
/// [`EvictionCheck::WarnOnly`].
pub(crate) async fn at_connect(
    conn: &mut StoreConnection,
    address: &str,
    options: &StoreOptions,
) -> Result<Option<String>, ConnectError> {
    let infos = conn
        .on_every_primary(redis::cmd("INFO").arg("server"))
        .await
        .map_err(|e| classify_connect_error(&e, address.to_owned()))?;
    for info in texts(infos) {
        let mode = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_mode:"))
            .map(str::trim);
        match mode {
            Some("cluster") if !conn.is_cluster() => {
                return Err(ConnectError::ClusterNode {
                    address: address.to_owned(),
                });
            }
            Some("sentinel") => {
                return Err(ConnectError::SentinelNode {
                    address: address.to_owned(),
                });
            }
            _ => {}
        }
        let (major, minor, found) = scripts::parse_version(&info)
            .ok_or_else(|| ConnectError::Other("INFO server has no redis_version".into()))?;
        if (major, minor) < scripts::MIN_VERSION {
            return Err(ConnectError::TooOld {
                found,
                needed: scripts::MIN_VERSION_TEXT,
            });
        }
    }
    let warning = match evicting_policy(conn).await? {
        None => None,
        Some(policy) => match options.eviction_check {
            EvictionCheck::Refuse => return Err(ConnectError::EvictionPolicy { policy }),
            EvictionCheck::WarnOnly => {
                let text = eviction_warning(&policy);
                tracing::warn!("{text}");
                eprintln!("WARNING: {text}");
                Some(text)
            }
        },
    };
    crate::connection::load_scripts(conn)
        .await
        .map_err(|e| ConnectError::Other(format!("SCRIPT LOAD failed: {e}")))?;
    Ok(warning)
}

pub(crate) fn eviction_warning(policy: &str) -> String {
    format!(
        "backstop-redis: maxmemory-policy is `{policy}`: Redis may evict limiter keys that \
         still hold admissions, and then admit too many"
    )
}

/// The first evicting `maxmemory-policy` among the primaries, or `None` when every one
/// is `noeviction`.
pub(crate) async fn evicting_policy(
    conn: &mut StoreConnection,
) -> Result<Option<String>, ConnectError> {
    for policy in eviction_policies(conn).await? {
        if policy != "noeviction" {
            return Ok(Some(policy));
        }
    }
    Ok(None)
}

/// Each primary's `maxmemory-policy`: `CONFIG GET`, or `INFO memory` where CONFIG is
/// disabled (managed Redis services often rename it).
async fn eviction_policies(conn: &mut StoreConnection) -> Result<Vec<String>, ConnectError> {
    let config = conn
        .on_every_primary(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"))
        .await;
    let config_error = match config {
        Ok(answers) => {
            let policies: Vec<String> = answers
                .into_iter()
                .filter_map(|answer| {
                    let pair: Vec<String> = redis::from_redis_value(answer).ok()?;
                    pair.get(1).cloned()
                })
                .collect();
            if !policies.is_empty() {
                return Ok(policies);
            }
            "CONFIG GET answered no policy".to_owned()
        }
        Err(e) => format!("CONFIG GET failed: {e}"),
    };
    let infos = conn
        .on_every_primary(redis::cmd("INFO").arg("memory"))
        .await
        .map_err(|e| {
            ConnectError::EvictionPolicyUnknown(format!("{config_error}; INFO memory failed: {e}"))
        })?;
    texts(infos)
        .iter()
        .map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("maxmemory_policy:"))
                .map(|policy| policy.trim().to_owned())
                .ok_or_else(|| {
                    ConnectError::EvictionPolicyUnknown(format!(
                        "{config_error}; INFO memory has no maxmemory_policy"
                    ))
                })
        })
        .collect()
}

/// The text answers among `values` (INFO's bulk or verbatim strings).
fn texts(values: Vec<Value>) -> Vec<String> {
    values
        .into_iter()
        .filter_map(|value| redis::from_redis_value::<String>(value).ok())
        .collect()
}

pub(crate) fn classify_connect_error(e: &redis::RedisError, address: String) -> ConnectError {
    let text = e.to_string();
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("invalid password")
        || text.contains("invalid username-password")
    {
        return ConnectError::Auth(text);
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("unknownissuer")
    {
        return ConnectError::Tls {
            address,
            cause: text,
        };
    }
    if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() {
        return ConnectError::Unreachable {
            address,
            cause: text,
        };
    }
    ConnectError::Other(text)
}
