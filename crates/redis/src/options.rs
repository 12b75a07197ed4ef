//! How a store behaves when Redis is slow, down, or set up to evict keys.

use std::time::Duration;

/// What a stage answers when Redis does not answer in time or fails. Never fail open.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum FailurePolicy {
    /// Refuse with 503 `store_unavailable` (the default).
    #[default]
    FailClosed,
    /// Decide in this process, on an in-process `SlidingWindow` holding `share` (0 to 1)
    /// of the limit, at least 1. With `K` replicas a share of `1/K` keeps the total near
    /// the limit while Redis is away. Queue and slot stages have no local fallback: they
    /// fail closed under either policy, because a local count cannot see jobs held
    /// elsewhere.
    LocalFallback {
        /// The fraction of each limit this replica may admit on its own.
        share: f64,
    },
}

impl FailurePolicy {
    /// Checks a `LocalFallback` share: above 0 and at most 1 (NaN is refused).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](backstop_core::ConfigError) for `failure_policy.share`.
    pub fn validate(&self) -> Result<(), backstop_core::ConfigError> {
        match *self {
            FailurePolicy::LocalFallback { share } if !(share > 0.0 && share <= 1.0) => {
                Err(backstop_core::ConfigError::new(
                    "failure_policy.share",
                    format_args!("must be above 0 and at most 1, got {share}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What [`RedisStore::connect`](crate::RedisStore::connect) does when `maxmemory-policy`
/// lets Redis evict keys: any `allkeys-*` policy, and any `volatile-*` one (window keys
/// carry a TTL so that idle ones vanish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionCheck {
    /// Refuse to connect with [`ConnectError::EvictionPolicy`](crate::ConnectError) (the
    /// default): an evicted window forgets admissions and would admit too many.
    #[default]
    Refuse,
    /// Connect anyway and log a warning (through `tracing`, and on standard error).
    WarnOnly,
}

/// Settings of a [`RedisStore`](crate::RedisStore).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreOptions {
    /// The most any one Redis call may take before the policy applies (default 50 ms).
    pub deadline: Duration,
    /// The most [`connect`](crate::RedisStore::connect) may take (default 2 s).
    pub connect_timeout: Duration,
    /// What to answer when Redis fails (default [`FailurePolicy::FailClosed`]).
    pub failure_policy: FailurePolicy,
    /// What to do about an evicting `maxmemory-policy`.
    pub eviction_check: EvictionCheck,
    /// The `Retry-After` suggested with `store_unavailable` (default 1 s).
    pub unavailable_retry_hint: Duration,
    /// Calls failing in a row that open the breaker (default 5; 0: never): for
    /// `breaker_open_for` the failure policy then answers at once, without a call.
    pub breaker_threshold: u32,
    /// How long an open breaker answers for Redis before calls are tried again (default
    /// 1 s, at most [`MAX_STORE_DEADLINE`]).
    pub breaker_open_for: Duration,
    /// How often a running store samples Redis's clock (for deadlines told to the
    /// scripts) and reads the eviction policy again (default 10 s; the clock also every
    /// second).
    pub recheck_every: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            deadline: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(2),
            failure_policy: FailurePolicy::FailClosed,
            eviction_check: EvictionCheck::Refuse,
            unavailable_retry_hint: Duration::from_secs(1),
            breaker_threshold: 5,
            breaker_open_for: Duration::from_secs(1),
            recheck_every: Duration::from_secs(10),
        }
    }
}

/// The longest deadline or connect timeout accepted: a limiter that waits longer than
/// this for its store is no longer protecting anything.
pub const MAX_STORE_DEADLINE: Duration = Duration::from_secs(60);

impl StoreOptions {
    /// Checks each duration (`deadline`, `connect_timeout`, `breaker_open_for` and
    /// `recheck_every` must be 1 ms to [`MAX_STORE_DEADLINE`]) and the failure policy's
    /// share
    /// ([`FailurePolicy::validate`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](backstop_core::ConfigError) naming the field.
    pub fn validate(&self) -> Result<(), backstop_core::ConfigError> {
        for (field, value) in [
            ("deadline", self.deadline),
            ("connect_timeout", self.connect_timeout),
            ("breaker_open_for", self.breaker_open_for),
            ("recheck_every", self.recheck_every),
        ] {
            if value < Duration::from_millis(1) || value > MAX_STORE_DEADLINE {
                return Err(backstop_core::ConfigError::new(
                    field,
                    format_args!("must be 1 ms to {MAX_STORE_DEADLINE:?}, got {value:?}"),
                ));
            }
        }
        self.failure_policy.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_out_of_range_are_typed_errors() {
        assert!(StoreOptions::default().validate().is_ok());
        let huge = StoreOptions {
            deadline: Duration::MAX,
            ..StoreOptions::default()
        };
        assert_eq!(huge.validate().unwrap_err().field(), "deadline");
        let zero = StoreOptions {
            connect_timeout: Duration::ZERO,
            ..StoreOptions::default()
        };
        assert_eq!(zero.validate().unwrap_err().field(), "connect_timeout");
    }

    #[test]
    fn a_fallback_share_outside_zero_to_one_is_a_typed_error() {
        for share in [0.0, -0.5, 1.5, f64::NAN] {
            let options = StoreOptions {
                failure_policy: FailurePolicy::LocalFallback { share },
                ..StoreOptions::default()
            };
            let error = options.validate().unwrap_err();
            assert_eq!(error.field(), "failure_policy.share", "{share}");
        }
        for share in [0.5, 1.0, f64::MIN_POSITIVE] {
            assert!(FailurePolicy::LocalFallback { share }.validate().is_ok());
        }
        assert!(FailurePolicy::FailClosed.validate().is_ok());
    }
}
