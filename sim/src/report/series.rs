//! [`Series`]: the bounded time series the charts draw.

use backstop_sim_check::log::{Outcome, Trigger};

/// One time bin of the charts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bin {
    /// Admitted in the bin.
    pub admitted: u64,
    /// 429s.
    pub rate_limited: u64,
    /// 503s.
    pub overloaded: u64,
    /// Deepest queue in the bin, counting the depth it opened with.
    pub queue_max: u64,
    /// Highest disk usage in the bin, counting the usage it opened with.
    pub disk_max: u64,
}

/// The most bins a series keeps; beyond, neighbours merge and the bin width doubles.
pub const MAX_BINS: usize = 1440;
/// The most sweep marks kept for charts.
pub const MAX_SWEEP_MARKS: usize = 10_000;

/// Bounded time series for the charts.
#[derive(Debug, Clone)]
pub struct Series {
    /// Width of one bin, µs.
    pub bin_us: u64,
    /// The bins from time 0.
    pub bins: Vec<Bin>,
    /// (time, trigger, files removed) of sweeps.
    pub sweeps: Vec<(u64, Trigger, u64)>,
    /// The queue depth and disk usage last recorded: levels hold between samples, so a
    /// new bin opens with them (a full queue with no arrival for a minute is still full).
    queue_now: u64,
    disk_now: u64,
}

impl Default for Series {
    fn default() -> Self {
        Self::new()
    }
}

impl Series {
    /// Empty, one-minute bins.
    pub fn new() -> Self {
        Series {
            bin_us: 60_000_000,
            bins: Vec::new(),
            sweeps: Vec::new(),
            queue_now: 0,
            disk_now: 0,
        }
    }

    #[inline]
    fn bin(&mut self, t_us: u64) -> &mut Bin {
        let mut i = (t_us / self.bin_us) as usize;
        while i >= MAX_BINS {
            self.merge();
            i = (t_us / self.bin_us) as usize;
        }
        if i >= self.bins.len() {
            let opening = Bin {
                queue_max: self.queue_now,
                disk_max: self.disk_now,
                ..Bin::default()
            };
            self.bins.resize(i + 1, opening);
        }
        &mut self.bins[i]
    }

    fn merge(&mut self) {
        let merged = self
            .bins
            .chunks(2)
            .map(|c| {
                c.iter().fold(Bin::default(), |a, b| Bin {
                    admitted: a.admitted + b.admitted,
                    rate_limited: a.rate_limited + b.rate_limited,
                    overloaded: a.overloaded + b.overloaded,
                    queue_max: a.queue_max.max(b.queue_max),
                    disk_max: a.disk_max.max(b.disk_max),
                })
            })
            .collect();
        self.bins = merged;
        self.bin_us *= 2;
    }

    /// A decision at `t_us`.
    #[inline]
    pub fn decision(&mut self, t_us: u64, outcome: Outcome) {
        let b = self.bin(t_us);
        match outcome {
            Outcome::Admitted => b.admitted += 1,
            Outcome::RateLimited => b.rate_limited += 1,
            Outcome::Overloaded => b.overloaded += 1,
        }
    }

    /// Queue depth at `t_us`.
    #[inline]
    pub fn queue(&mut self, t_us: u64, depth: u64) {
        let b = self.bin(t_us);
        b.queue_max = b.queue_max.max(depth);
        self.queue_now = depth;
    }

    /// Disk usage at `t_us`.
    pub fn disk(&mut self, t_us: u64, used: u64) {
        let b = self.bin(t_us);
        b.disk_max = b.disk_max.max(used);
        self.disk_now = used;
    }

    /// A sweep at `t_us`.
    pub fn sweep(&mut self, t_us: u64, trigger: Trigger, files: u64) {
        if self.sweeps.len() < MAX_SWEEP_MARKS {
            self.sweeps.push((t_us, trigger, files));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_stays_bounded_and_keeps_totals() {
        let mut s = Series::new();
        for m in 0..10_000u64 {
            s.decision(m * 60_000_000, Outcome::Admitted);
        }
        assert!(s.bins.len() <= MAX_BINS);
        assert_eq!(s.bins.iter().map(|b| b.admitted).sum::<u64>(), 10_000);
        assert_eq!(s.bin_us, 60_000_000 * 8);
    }

    #[test]
    fn levels_hold_across_bins_without_samples() {
        let mut s = Series::new();
        s.queue(0, 100);
        s.disk(0, 7);
        // Nothing for ten minutes, then the queue drains.
        s.queue(10 * 60_000_000, 0);
        assert_eq!(s.bins.len(), 11);
        assert!(
            s.bins.iter().all(|b| b.queue_max == 100 && b.disk_max == 7),
            "{:?}",
            s.bins
        );
        s.queue(11 * 60_000_000, 3);
        assert_eq!(s.bins[11].queue_max, 3, "a bin opens at the last level, 0");
    }
}
