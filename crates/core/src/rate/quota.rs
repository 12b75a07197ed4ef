//! [`Quota`]: a rate shape, `limit` admissions per `window`, checked once.

use std::fmt;
use std::time::Duration;

use crate::ConfigError;

/// The largest `limit` a [`Quota`] may have: 2²⁴ admissions, a 256 MiB ring.
pub const MAX_LIMIT: u32 = 1 << 24;

/// The longest `window` a [`Quota`] may have: 100 years (365-day years), so that
/// `time + window` always fits a limiter's 64-bit nanosecond timestamps.
pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

const _: () = assert!(MAX_WINDOW.as_nanos() < (u64::MAX / 4) as u128);

/// A rate shape: at most `limit` admissions in any window of length `window`.
///
/// The one place a shape is checked: every limiter ([`SlidingWindow`](super::SlidingWindow),
/// [`KeyedSlidingWindow`](super::KeyedSlidingWindow), the Redis windows) and the
/// configuration ([`Limits`](crate::Limits)) take one, so a limit of 0 or a window of
/// zero is refused here, with one message, and nowhere else.
///
/// ```
/// use std::time::Duration;
/// use backstop_core::Quota;
///
/// let quota = Quota::new(30, Duration::from_secs(60))?;
/// assert_eq!((quota.limit(), quota.window()), (30, Duration::from_secs(60)));
/// assert_eq!(quota.to_string(), "30 per 1m");
///
/// let err = Quota::new(0, Duration::from_secs(60)).unwrap_err();
/// assert_eq!(err.to_string(), "invalid `limit`: must be 1 to 16777216, got 0");
/// assert_eq!(Quota::new(1, Duration::ZERO).unwrap_err().field(), "window");
/// # Ok::<(), backstop_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    /// At most `MAX_WINDOW`, so it fits.
    window_ns: u64,
}

impl Quota {
    /// `limit` admissions per `window`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `limit` when it is 0 or above [`MAX_LIMIT`], or `window`
    /// when it is zero or longer than [`MAX_WINDOW`].
    pub fn new(limit: u32, window: Duration) -> Result<Quota, ConfigError> {
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ConfigError::new(
                "limit",
                format_args!("must be 1 to {MAX_LIMIT}, got {limit}"),
            ));
        }
        if window.is_zero() || window > MAX_WINDOW {
            return Err(ConfigError::new(
                "window",
                format_args!("must be above zero and at most 100 years, got {window:?}"),
            ));
        }
        Ok(Quota {
            limit,
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
        })
    }

    /// The most admissions in any window.
    #[inline]
    pub const fn limit(self) -> u32 {
        self.limit
    }

    /// The window's length.
    #[inline]
    pub const fn window(self) -> Duration {
        Duration::from_nanos(self.window_ns)
    }

    /// A quota made of a limit and window that were a quota's: what a limiter reads
    /// back from its ring.
    #[inline]
    pub(crate) fn from_checked(limit: u32, window_ns: u64) -> Quota {
        debug_assert!((1..=MAX_LIMIT).contains(&limit), "{limit}");
        debug_assert!(window_ns >= 1 && u128::from(window_ns) <= MAX_WINDOW.as_nanos());
        Quota { limit, window_ns }
    }

    /// The window in nanoseconds, the unit limiters decide in.
    #[inline]
    pub(crate) const fn window_ns(self) -> u64 {
        self.window_ns
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {}",
            self.limit,
            humantime::format_duration(self.window())
        )
    }
}
