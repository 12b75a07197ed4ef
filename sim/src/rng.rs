//! Seeds: one root `u64`, one independent stream per source of randomness.
//!
//! Every stream is a [`Pcg64`] (PCG XSL RR 128/64, `Lcg128Xsl64`): a named, pinned algorithm
//! whose output never changes between releases, unlike `StdRng`. Sub-seeds are derived from
//! the root with SplitMix64 so that adding draws to one stream never shifts another.

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64;

/// The independent random streams of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Request arrival times.
    Arrivals = 1,
    /// Job durations, file counts and sizes.
    Durations = 2,
    /// Which started jobs crash, and when.
    Crashes = 3,
    /// Background disk usage.
    Disk = 4,
    /// Available memory.
    Memory = 5,
    /// Client keys.
    Keys = 6,
}

/// SplitMix64's finaliser: a bijective mix with full avalanche.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream with the few draws the simulator needs.
#[derive(Debug, Clone)]
pub struct SimRng {
    inner: Pcg64,
}

impl SimRng {
    /// The stream `stream` of the run seeded with `root_seed`.
    ///
    /// ```
    /// use backstop_sim::rng::{SimRng, Stream};
    /// let mut a = SimRng::new(7, Stream::Arrivals);
    /// let mut b = SimRng::new(7, Stream::Arrivals);
    /// let mut c = SimRng::new(7, Stream::Crashes);
    /// let x = a.next_u64();
    /// assert_eq!(x, b.next_u64());
    /// assert_ne!(x, c.next_u64());
    /// ```
    pub fn new(root_seed: u64, stream: Stream) -> Self {
        let sub_seed = splitmix64(root_seed ^ splitmix64(stream as u64));
        SimRng {
            inner: Pcg64::seed_from_u64(sub_seed),
        }
    }

    /// 64 uniformly random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `n == 0` gives 0. Lemire's multiply-shift, bias below 2^-64 · n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An exponential draw with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() lies in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_output_for_seed_zero() {
        // Pins the algorithm: if a dependency update changes the stream, this fails.
        let mut rng = SimRng::new(0, Stream::Arrivals);
        let first = rng.next_u64();
        let mut again = SimRng::new(0, Stream::Arrivals);
        assert_eq!(first, again.next_u64());
        assert_eq!(first, PINNED_ARRIVALS_SEED0);
    }

    const PINNED_ARRIVALS_SEED0: u64 = 9_437_614_435_252_068_506;

    #[test]
    fn below_stays_in_range() {
        let mut rng = SimRng::new(3, Stream::Keys);
        for n in [1u64, 2, 7, 1000] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn exponential_mean_is_close() {
        let mut rng = SimRng::new(11, Stream::Durations);
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| rng.exponential(5.0)).sum();
        let mean = sum / n as f64;
        assert!((mean - 5.0).abs() < 0.1, "mean {mean}");
    }
}
