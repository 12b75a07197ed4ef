//! Peers that backstop is measured against, kept beside the benchmarks so every bench
//! compares the same code.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The original design's limiter (Python `SlidingWindowRateLimiter`), ported as written:
/// a `Mutex<VecDeque<Instant>>`, old entries popped on every call.
pub struct MutexVecDequeLimiter {
    limit: usize,
    window: Duration,
    admitted: Mutex<VecDeque<Instant>>,
}

impl MutexVecDequeLimiter {
    /// `limit` admissions per `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        MutexVecDequeLimiter {
            limit,
            window,
            admitted: Mutex::new(VecDeque::with_capacity(limit)),
        }
    }

    /// True if admitted.
    pub fn is_allowed(&self) -> bool {
        let mut admitted = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while admitted
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.window)
        {
            admitted.pop_front();
        }
        if admitted.len() >= self.limit {
            return false;
        }
        admitted.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_admits_limit_then_refuses() {
        let limiter = MutexVecDequeLimiter::new(3, Duration::from_secs(60));
        assert!((0..3).all(|_| limiter.is_allowed()));
        assert!(!limiter.is_allowed());
    }
}
