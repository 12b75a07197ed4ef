//! Seeded scenario generators: traces produced on the fly, in time order, in O(1) memory.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use backstop_sim_check::trace::{Event, EventSource, MAX_TIME_US, Request, TraceError};

use crate::rng::{SimRng, Stream};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Resource readings (memory, disk) every this many microseconds.
const READING_US: u64 = 30_000_000;
/// Healthy available memory.
const BASE_MEMORY_BYTES: u64 = 8 * GIB;

/// A named traffic and resource pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The built-in day: diurnal traffic peaking above the rate limit, a flash crowd, a
    /// disk-pressure spike and a memory dip.
    Day,
    /// Poisson arrivals at a constant rate.
    Steady,
    /// On/off bursts: 5× the rate one fifth of the time, silence otherwise.
    Bursts,
    /// A 24-hour sine of traffic between 0.2× and 1.8× the rate.
    Diurnal,
    /// Steady traffic with a 10-minute spike at 20× the rate a third of the way in.
    FlashCrowd,
    /// Bursts of `limit` requests just before and at every window boundary.
    WindowEdge,
    /// 100 clients; client-0 sends half of all traffic.
    ManyClients,
    /// Steady traffic while background disk usage ramps from 50 % to 95 %.
    DiskFill,
    /// Steady traffic with available memory dipping to 1 GiB for 20 minutes mid-run.
    MemoryDip,
}

impl Scenario {
    /// Every scenario, in the order `--help` lists them.
    pub const ALL: [Scenario; 9] = [
        Scenario::Day,
        Scenario::Steady,
        Scenario::Bursts,
        Scenario::Diurnal,
        Scenario::FlashCrowd,
        Scenario::WindowEdge,
        Scenario::ManyClients,
        Scenario::DiskFill,
        Scenario::MemoryDip,
    ];

    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Day => "day",
            Scenario::Steady => "steady",
            Scenario::Bursts => "bursts",
            Scenario::Diurnal => "diurnal",
            Scenario::FlashCrowd => "flash-crowd",
            Scenario::WindowEdge => "window-edge",
            Scenario::ManyClients => "many-clients",
            Scenario::DiskFill => "disk-fill",
            Scenario::MemoryDip => "memory-dip",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario `{s}` (one of: {})", names.join(", "))
            })
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// The pattern.
    pub scenario: Scenario,
    /// Root seed.
    pub seed: u64,
    /// Length of the trace, virtual microseconds.
    pub duration_us: u64,
    /// Mean request rate, per second.
    pub rate_per_s: f64,
    /// The rate limit the window-edge adversary targets.
    pub rate_limit: u32,
    /// The window the window-edge adversary targets, microseconds.
    pub rate_window_us: u64,
    /// Disk capacity, for background usage as a fraction of it.
    pub disk_capacity_bytes: u64,
}

impl GenParams {
    /// Checks the parameters; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate_per_s.is_finite() && self.rate_per_s >= 0.0 && self.rate_per_s <= 1e7) {
            return Err(format!(
                "--rate {} must be within 0..=10000000 per second",
                self.rate_per_s
            ));
        }
        if self.duration_us == 0 || self.duration_us > MAX_TIME_US {
            return Err("--duration must be above 0 and at most 100 years".into());
        }
        if self.rate_window_us == 0 {
            return Err("the rate window must be above 0".into());
        }
        Ok(())
    }
}

/// A generated trace, one event at a time, in time order.
///
/// ```
/// use backstop_sim::scenario::{GenParams, Scenario, Generator};
/// let p = GenParams { scenario: Scenario::Steady, seed: 1, duration_us: 60_000_000,
///     rate_per_s: 2.0, rate_limit: 30, rate_window_us: 60_000_000, disk_capacity_bytes: 1 << 40 };
/// let a: Vec<_> = Generator::new(p.clone()).collect();
/// let b: Vec<_> = Generator::new(p).collect();
/// assert_eq!(a, b);
/// assert!(a.windows(2).all(|w| w[0].t_us() <= w[1].t_us()));
/// ```
#[derive(Debug, Clone)]
pub struct Generator {
    p: GenParams,
    arrivals: SimRng,
    durations: SimRng,
    disk: SimRng,
    memory: SimRng,
    keys: SimRng,
    /// Next candidate arrival, fractional microseconds (thinning keeps sub-µs precision).
    next_arrival_us: f64,
    next_id: u64,
    next_disk_us: u64,
    next_memory_us: u64,
    /// Window-edge adversary: the next boundary and how many of its burst are left.
    edge_boundary_us: u64,
    edge_left: u32,
    peak_rate_per_us: f64,
}

impl Generator {
    /// A generator for `p` (validate it first for a friendly error; a bad rate yields
    /// no requests).
    pub fn new(p: GenParams) -> Self {
        let peak = p.rate_per_s * peak_factor(p.scenario) / 1e6;
        let mut g = Generator {
            arrivals: SimRng::new(p.seed, Stream::Arrivals),
            durations: SimRng::new(p.seed, Stream::Durations),
            disk: SimRng::new(p.seed, Stream::Disk),
            memory: SimRng::new(p.seed, Stream::Memory),
            keys: SimRng::new(p.seed, Stream::Keys),
            next_arrival_us: 0.0,
            next_id: 1,
            next_disk_us: 0,
            next_memory_us: 0,
            edge_boundary_us: p.rate_window_us,
            edge_left: 0,
            peak_rate_per_us: if peak.is_finite() && peak > 0.0 {
                peak
            } else {
                0.0
            },
            p,
        };
        g.next_arrival_us = g.next_candidate(0.0);
        g
    }

    /// The parameters.
    pub fn params(&self) -> &GenParams {
        &self.p
    }

    /// The name of key index `k` in generated traces.
    pub fn key_name(k: u32) -> String {
        format!("client-{k}")
    }

    /// Accepted arrival after `from` (thinning of a non-homogeneous Poisson process).
    fn next_candidate(&mut self, from: f64) -> f64 {
        if self.peak_rate_per_us <= 0.0 {
            return f64::INFINITY;
        }
        let mut t = from;
        loop {
            t += self.arrivals.exponential(1.0 / self.peak_rate_per_us);
            if t >= self.p.duration_us as f64 {
                return f64::INFINITY;
            }
            let accept = rate_factor(self.p.scenario, t as u64, self.p.duration_us)
                / peak_factor(self.p.scenario);
            if accept >= 1.0 || self.arrivals.unit() < accept {
                return t;
            }
        }
    }

    fn request(&mut self, t_us: u64) -> Event {
        let id = self.next_id;
        self.next_id += 1;
        // Jobs of 30–150 s (mean 90 s, the original's typical video), 12 files of 10–90 MiB.
        let job_us = 30_000_000 + self.durations.below(120_000_001);
        let bytes = 10 * MIB + self.durations.below(80 * MIB + 1);
        let key = match self.p.scenario {
            Scenario::ManyClients => {
                if self.keys.chance(0.5) {
                    Some(0)
                } else {
                    Some(1 + self.keys.below(99) as u32)
                }
            }
            _ => None,
        };
        Event::Request(Request {
            t_us,
            id,
            key,
            job_us,
            files: 12,
            bytes,
        })
    }

    fn disk_used(&mut self, t_us: u64) -> u64 {
        let cap = self.p.disk_capacity_bytes as f64;
        let frac_t = t_us as f64 / self.p.duration_us as f64;
        let noise = (self.disk.unit() - 0.5) * 0.01;
        let frac = match self.p.scenario {
            Scenario::DiskFill => 0.5 + 0.45 * frac_t,
            Scenario::Day => {
                // A spike to 88 % from 14:00 to 15:00, peaking at 96 % for ten minutes.
                let h = t_us as f64 / 3.6e9;
                if (14.4..14.6).contains(&h) {
                    0.96
                } else if (14.0..15.0).contains(&h) {
                    0.88
                } else {
                    0.55
                }
            }
            _ => 0.5,
        };
        ((frac + noise).clamp(0.0, 1.0) * cap) as u64
    }

    fn memory_available(&mut self, t_us: u64) -> u64 {
        let noise = self.memory.below(256 * MIB);
        let mid = self.p.duration_us / 2;
        let dip = match self.p.scenario {
            Scenario::MemoryDip => t_us >= mid && t_us < mid + 1_200_000_000,
            // The day's dip: 20 minutes at 09:00.
            Scenario::Day => (32_400_000_000..33_600_000_000).contains(&t_us),
            _ => false,
        };
        if dip {
            GIB + noise
        } else {
            BASE_MEMORY_BYTES + noise
        }
    }
}

fn rate_factor(s: Scenario, t_us: u64, duration_us: u64) -> f64 {
    let day_phase = 2.0 * PI * (t_us % 86_400_000_000) as f64 / 86.4e9;
    match s {
        Scenario::Steady
        | Scenario::ManyClients
        | Scenario::DiskFill
        | Scenario::MemoryDip
        | Scenario::WindowEdge => 1.0,
        Scenario::Bursts => {
            // 2 minutes on, 8 off.
            if (t_us / 1_000_000) % 600 < 120 {
                5.0
            } else {
                0.0
            }
        }
        Scenario::Diurnal => 1.0 - 0.8 * day_phase.cos(),
        Scenario::FlashCrowd => {
            let start = duration_us / 3;
            if t_us >= start && t_us < start + 600_000_000 {
                20.0
            } else {
                1.0
            }
        }
        Scenario::Day => {
            let base = 1.0 - 0.8 * day_phase.cos();
            // A flash crowd at 18:00 for 10 minutes.
            if (64_800_000_000..65_400_000_000).contains(&t_us) {
                base + 10.0
            } else {
                base
            }
        }
    }
}

fn peak_factor(s: Scenario) -> f64 {
    match s {
        Scenario::Bursts => 5.0,
        Scenario::Diurnal => 1.8,
        Scenario::FlashCrowd => 20.0,
        Scenario::Day => 11.8,
        _ => 1.0,
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let end = self.p.duration_us;
        let disk_at = (self.next_disk_us < end).then_some(self.next_disk_us);
        let mem_at = (self.next_memory_us < end).then_some(self.next_memory_us);
        let edge_at = (self.p.scenario == Scenario::WindowEdge
            && self.p.rate_limit > 0
            && self.edge_boundary_us < end)
            .then(|| {
                let left = if self.edge_left == 0 {
                    2 * self.p.rate_limit
                } else {
                    self.edge_left
                };
                // Half the burst 1 ms before the boundary, half at it.
                if left > self.p.rate_limit {
                    self.edge_boundary_us.saturating_sub(1000)
                } else {
                    self.edge_boundary_us
                }
            });
        let arrival_at = self
            .next_arrival_us
            .is_finite()
            .then_some(self.next_arrival_us as u64);
        // Ties: disk, memory, adversary, arrivals.
        let min = [disk_at, mem_at, edge_at, arrival_at]
            .into_iter()
            .flatten()
            .min()?;
        if disk_at == Some(min) {
            self.next_disk_us += READING_US;
            let used_bytes = self.disk_used(min);
            return Some(Event::Disk {
                t_us: min,
                used_bytes,
            });
        }
        if mem_at == Some(min) {
            self.next_memory_us += READING_US;
            let available_bytes = self.memory_available(min);
            return Some(Event::Memory {
                t_us: min,
                available_bytes,
            });
        }
        if edge_at == Some(min) {
            if self.edge_left == 0 {
                self.edge_left = 2 * self.p.rate_limit;
            }
            self.edge_left -= 1;
            if self.edge_left == 0 {
                self.edge_boundary_us = self.edge_boundary_us.saturating_add(self.p.rate_window_us);
            }
            return Some(self.request(min));
        }
        self.next_arrival_us = self.next_candidate(self.next_arrival_us);
        Some(self.request(min))
    }
}

impl EventSource for Generator {
    #[inline]
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        Ok(self.next())
    }

    fn key_name(&self, k: u32) -> Option<String> {
        Some(Generator::key_name(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: Scenario) -> GenParams {
        GenParams {
            scenario: s,
            seed: 5,
            duration_us: 3_600_000_000,
            rate_per_s: 0.5,
            rate_limit: 30,
            rate_window_us: 60_000_000,
            disk_capacity_bytes: 100 * GIB,
        }
    }

    #[test]
    fn every_scenario_is_ordered_unique_and_bounded() {
        for s in Scenario::ALL {
            let mut last = 0;
            let mut ids = backstop_sim_check::trace::IdSet::new();
            let mut requests = 0;
            for e in Generator::new(params(s)) {
                assert!(e.t_us() >= last, "{s}");
                assert!(e.t_us() < 3_600_000_000, "{s}");
                last = e.t_us();
                if let Event::Request(r) = e {
                    assert!(ids.insert(r.id));
                    assert!((30_000_000..=150_000_000).contains(&r.job_us));
                    requests += 1;
                }
            }
            assert!(requests > 0, "{s} generated no requests");
        }
    }

    #[test]
    fn steady_rate_is_close_to_requested() {
        let n = Generator::new(params(Scenario::Steady))
            .filter(|e| matches!(e, Event::Request(_)))
            .count();
        // 0.5/s for an hour: 1800 expected, Poisson sd ≈ 42.
        assert!((1600..2000).contains(&n), "{n}");
    }

    #[test]
    fn window_edge_puts_two_limits_around_each_boundary() {
        let mut p = params(Scenario::WindowEdge);
        p.rate_per_s = 0.0;
        let times: Vec<u64> = Generator::new(p)
            .filter_map(|e| match e {
                Event::Request(r) => Some(r.t_us),
                _ => None,
            })
            .collect();
        assert_eq!(times.iter().filter(|&&t| t == 59_999_000).count(), 30);
        assert_eq!(times.iter().filter(|&&t| t == 60_000_000).count(), 30);
    }

    #[test]
    fn different_seeds_differ() {
        let a: Vec<_> = Generator::new(params(Scenario::Steady)).take(50).collect();
        let mut p = params(Scenario::Steady);
        p.seed = 6;
        let b: Vec<_> = Generator::new(p).take(50).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        assert!(
            "nope"
                .parse::<Scenario>()
                .unwrap_err()
                .contains("window-edge")
        );
    }
}
