//! The Lua scripts, one file each under `lua/`, run with EVALSHA (redis-rs loads a
//! script again on `NOSCRIPT`, e.g. after Redis restarts).
//!
//! Scripts rather than Redis 7 functions: functions need 7.0 and a `FUNCTION LOAD` that
//! persists with the data set, while scripts run unchanged on 5.0 and later (the oldest
//! version whose scripts may call `TIME` before writing without extra setup; the scripts
//! still call `redis.replicate_commands()` on 5 and 6, and skip it from 7.0, where
//! `redis.REDIS_VERSION_NUM` exists and effects replication is the only kind).
//! A function call saves too little server time over EVALSHA of the same body to require
//! 7.0 for (the measurement is in `benches/results/redis.md`).

use std::sync::LazyLock;

use redis::Script;

/// The files under `lua/` given, in order, as one script: the scripts share their
/// preludes' code instead of copies of it.
macro_rules! script_after {
    ($($part:literal),+) => {
        LazyLock::new(|| Script::new(concat!($(include_str!($part), "\n"),+)))
    };
}

/// The sliding window: `count` decisions for one key in one call. Its common decisions
/// (`lua/common.lua`: a refusal, one admission) are taken before `lua/ring.lua` builds
/// its helpers, a large share of these calls' time inside Redis.
pub(crate) static WINDOW: LazyLock<Script> = script_after!(
    "lua/layout.lua",
    "lua/common.lua",
    "lua/ring.lua",
    "lua/window.lua"
);
/// Give one admission of a window back.
pub(crate) static REFUND: LazyLock<Script> =
    script_after!("lua/layout.lua", "lua/ring.lua", "lua/refund.lua");
/// The read-only "would it admit now?" of a window.
pub(crate) static PEEK: LazyLock<Script> =
    script_after!("lua/layout.lua", "lua/ring.lua", "lua/peek.lua");
/// A lease script: the shared prelude (`lua/lease.lua`: the time, pruning, the gate's
/// epoch and fencing tokens) followed by the script's own body.
macro_rules! lease_script {
    ($body:literal) => {
        script_after!("lua/lease.lua", $body)
    };
}

/// Take a lease in a bounded set (a queue place, or a slot without a ticket).
pub(crate) static ENTER: LazyLock<Script> = lease_script!("lua/enter.lua");
/// Ticket to permit, atomically.
pub(crate) static START: LazyLock<Script> = lease_script!("lua/start.lua");
/// Extend a held lease, or re-assert one Redis lost.
pub(crate) static RENEW: LazyLock<Script> = lease_script!("lua/renew.lua");
/// Hand a queue place over to whichever process claims it.
pub(crate) static DETACH: LazyLock<Script> = lease_script!("lua/detach.lua");
/// Take a detached queue place.
pub(crate) static CLAIM: LazyLock<Script> = lease_script!("lua/claim.lua");

/// Every script a store loads at connect, so that the first decision after a deploy or
/// a Redis restart costs one round trip, not a NOSCRIPT and a load.
pub(crate) fn all() -> [&'static Script; 8] {
    [
        &WINDOW, &PEEK, &REFUND, &ENTER, &START, &RENEW, &DETACH, &CLAIM,
    ]
}

/// The oldest Redis the scripts run on.
pub(crate) const MIN_VERSION: (u32, u32) = (5, 0);
/// [`MIN_VERSION`] as text, for errors.
pub(crate) const MIN_VERSION_TEXT: &str = "5.0";

/// The version from `INFO server`'s `redis_version:` line, as (major, minor).
pub(crate) fn parse_version(info: &str) -> Option<(u32, u32, String)> {
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?
        .trim();
    let mut parts = line.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, line.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(parse_version(info), Some((7, 0, "7.0.15".into())));
        assert_eq!(
            parse_version("redis_version:4.0.9\r\n").map(|v| (v.0, v.1)),
            Some((4, 0))
        );
        assert!((4, 0) < MIN_VERSION && (7, 0) >= MIN_VERSION);
        assert_eq!(parse_version("nothing here"), None);
    }
}
