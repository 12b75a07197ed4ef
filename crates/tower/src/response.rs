//! The answers the layer writes itself: 429 and 503 with `Retry-After`, the IETF
//! draft's `RateLimit-Policy` / `RateLimit` headers and a problem-details body.

use std::cell::RefCell;
use std::time::Duration;

use backstop_core::{FrontDoor, Quota, RateScope, Refusal};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Response, StatusCode};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the quota a client is held
/// to.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers): what is left of the quota now.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// A `RateLimit-Policy` value: `"name";q=<limit>;w=<window seconds, rounded up>`.
pub(crate) fn policy_value(name: &str, quota: Quota) -> HeaderValue {
    Policy::new(quota).value(name)
}

/// A limit as `RateLimit-Policy` states it: the quota and the window in whole seconds,
/// rounded up (saturating at `u32::MAX` s, 136 years). Two words and `Copy`: a response
/// future carries it, read from the limit in force when the request was decided, and
/// writes the header only when the response is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    quota: u32,
    window_secs: u32,
}

impl Policy {
    pub(crate) fn new(quota: Quota) -> Self {
        Policy {
            quota: quota.limit(),
            window_secs: u32::try_from(whole_secs_up(quota.window())).unwrap_or(u32::MAX),
        }
    }

    /// The `"default"` header value, for admitted responses: from a one-entry cache per
    /// thread, keyed by the policy, so it follows a reconfigured limit and keeps one value
    /// per thread at most. Formatting a value per response measured several times the
    /// layer's whole cost on the benchmark machine; a clone of the thread's own value
    /// bumps a reference count that other threads rarely touch.
    pub(crate) fn default_value(self) -> HeaderValue {
        thread_local! {
            static LAST: RefCell<Option<(Policy, HeaderValue)>> = const { RefCell::new(None) };
        }
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some((policy, value)) if *policy == self => value.clone(),
                _ => {
                    let value = self.value("default");
                    *last = Some((self, value.clone()));
                    value
                }
            }
        })
    }

    /// The header value for the policy called `name` (one allocation, no shared state).
    pub(crate) fn value(self, name: &str) -> HeaderValue {
        let text = format!("\"{name}\";q={};w={}", self.quota, self.window_secs);
        // Only ASCII digits and the fixed policy names go in.
        HeaderValue::from_maybe_shared(Bytes::from(text))
            .unwrap_or(HeaderValue::from_static("\"default\""))
    }
}

/// `wait` in whole seconds, rounded up: a client told to come back after `n` seconds
/// must not be refused again for coming back then.
pub(crate) fn whole_secs_up(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The response the layer gives a request of client `key` that `door` refused: 429 or
/// 503, `Retry-After`, the `RateLimit-Policy` / `RateLimit` headers of the limit that
/// refused (read as it stands now) and the problem-details body. Public so that other
/// HTTP stacks in front of the same door (the Python package's ASGI middleware) answer
/// byte for byte as the layer does.
pub fn refusal_response_for<D: FrontDoor>(
    door: &D,
    key: Option<&str>,
    refusal: &Refusal,
) -> Response<String> {
    let per_key = key.and_then(|key| door.client_rate_limit(key));
    let (name, quota) = match (refusal, per_key) {
        (Refusal::Overloaded { .. }, ..) => return refusal_response(refusal, None),
        (
            Refusal::RateLimited {
                scope: RateScope::PerClient,
                ..
            },
            Some(quota),
        ) => ("client", quota),
        (Refusal::RateLimited { .. }, ..) => ("default", door.rate_limit()),
    };
    let policy = policy_value(name, quota);
    refusal_response(refusal, Some((name, &policy)))
}

/// The response to `refusal`. `policy` names the limit that refused a 429 (`"default"`
/// for the shared one, `"client"` for a per-client one) and its `RateLimit-Policy`
/// value.
pub(crate) fn refusal_response(
    refusal: &Refusal,
    policy: Option<(&str, &HeaderValue)>,
) -> Response<String> {
    let secs = refusal.retry_after_secs();
    let (status, title, detail) = match refusal {
        Refusal::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            format!("rate limit reached; retry after {secs} s"),
        ),
        Refusal::Overloaded { .. } if secs > 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            format!("{}; retry after about {secs} s", refusal.as_str()),
        ),
        Refusal::Overloaded { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            refusal.as_str().to_owned(),
        ),
    };
    let body = format!(
        "{{\"type\":\"about:blank\",\"title\":\"{title}\",\"status\":{},\"detail\":\"{detail}\",\"reason\":\"{}\"}}",
        status.as_u16(),
        refusal.as_str()
    );
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, PROBLEM_JSON);
    // A 503 without a hint (`retry_after_hint = "0s"`) says nothing about when to retry.
    if secs > 0 || matches!(refusal, Refusal::RateLimited { .. }) {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if let (Refusal::RateLimited { .. }, Some((name, policy))) = (refusal, policy) {
        headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
        let now = format!("\"{name}\";r=0;t={secs}");
        if let Ok(value) = HeaderValue::try_from(now) {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::OverloadReason;

    fn quota(limit: u32, window: Duration) -> Quota {
        Quota::new(limit, window).unwrap()
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_secs_up(Duration::ZERO), 0);
        assert_eq!(whole_secs_up(Duration::from_nanos(1)), 1);
        assert_eq!(whole_secs_up(Duration::from_secs(2)), 2);
        assert_eq!(whole_secs_up(Duration::from_millis(49_700)), 50);
    }

    #[test]
    fn a_429_carries_retry_after_and_both_ratelimit_headers() {
        let policy = policy_value("default", quota(8, Duration::from_millis(60_000)));
        let refusal = Refusal::RateLimited {
            retry_after: Duration::from_millis(49_700),
            scope: backstop_core::RateScope::Global,
        };
        let response = refusal_response(&refusal, Some(("default", &policy)));
        assert_eq!(response.status(), 429);
        let h = response.headers();
        assert_eq!(h[RETRY_AFTER], "50");
        assert_eq!(h[&RATELIMIT_POLICY], "\"default\";q=8;w=60");
        assert_eq!(h[&RATELIMIT], "\"default\";r=0;t=50");
        assert_eq!(h[CONTENT_TYPE], "application/problem+json");
        let body = response.body();
        assert!(body.contains("\"status\":429"), "{body}");
        assert!(body.contains("\"reason\":\"rate_limited\""), "{body}");
    }

    #[test]
    fn a_503_has_retry_after_only_with_a_hint() {
        let with_hint = Refusal::Overloaded {
            reason: OverloadReason::QueueFull,
            retry_after_hint: Duration::from_millis(1500),
        };
        let response = refusal_response(&with_hint, None);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert!(response.headers().get(&RATELIMIT).is_none());
        let body = response.body();
        assert!(body.contains("\"reason\":\"queue_full\""), "{body}");

        let without = Refusal::Overloaded {
            reason: OverloadReason::QueueFull,
            retry_after_hint: Duration::ZERO,
        };
        let response = refusal_response(&without, None);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn policy_window_rounds_up_to_a_second() {
        assert_eq!(
            policy_value("client", quota(3, Duration::from_millis(1500))),
            "\"client\";q=3;w=2"
        );
        assert_eq!(
            Policy::new(quota(30, Duration::from_secs(60))).value("default"),
            "\"default\";q=30;w=60"
        );
        // The per-thread cache follows a changed policy.
        let (a, b) = (
            Policy::new(quota(2, Duration::from_secs(60))),
            Policy::new(quota(5, Duration::from_secs(120))),
        );
        assert_eq!(a.default_value(), "\"default\";q=2;w=60");
        assert_eq!(a.default_value(), "\"default\";q=2;w=60");
        assert_eq!(b.default_value(), "\"default\";q=5;w=120");
        assert_eq!(a.default_value(), "\"default\";q=2;w=60");
        assert_eq!(
            Policy::new(quota(1, backstop_core::rate::MAX_WINDOW)).value("default"),
            "\"default\";q=1;w=3153600000"
        );
    }
}
