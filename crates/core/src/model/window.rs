//! The sliding window's rule: admission `k` passes iff admission `k − limit` was
//! recorded at least `window` earlier. A `VecDeque` of recorded admission times and the
//! rule, nothing else. It changes shape mid-run the two ways the limiter does (in place
//! with [`reconfigure`](WindowModel::reconfigure), into a larger window with
//! [`reconfigured`](WindowModel::reconfigured)), keeping what the limiter keeps (see
//! [`SlidingWindow`](crate::rate::SlidingWindow)'s "Exact under change"). A third way is
//! the shared store's (backstop-redis): the shape comes with each decision and the memory
//! is a ring of exactly the largest limit asked ([`ring`](WindowModel::ring),
//! [`decide_in_ring`](WindowModel::decide_in_ring)).

use std::collections::VecDeque;

pub use crate::rate::memory::Memory;

/// The reference: the recorded times of the last `capacity` admissions, oldest first,
/// where the capacity is the first limit rounded up to a power of two (as documented for
/// [`SlidingWindow::capacity`](crate::rate::SlidingWindow::capacity)), and the horizon at
/// which admissions it was built without count.
///
/// Straight from the definition: admission `k` is allowed iff admission `k − limit`
/// was recorded at least `window` earlier. A recorded time is the later of the reading
/// and the previous recorded time, so a reading that goes backwards never frees room.
/// Admissions before the first remembered one count at the horizon (0: none).
#[derive(Debug, Clone)]
pub struct WindowModel {
    limit: usize,
    window_ns: u64,
    capacity: usize,
    remembered: VecDeque<u64>,
    /// Where admissions this window was built without count (0: there were none).
    horizon_ns: u64,
    /// Admissions made or kept since it was built.
    count: usize,
    /// The narrowest window it has had.
    narrowest_ns: u64,
}

impl WindowModel {
    /// An empty window of `limit` admissions per `window_ns`.
    pub fn new(limit: u32, window_ns: u64) -> Self {
        Self::with_history(limit, window_ns, &[])
    }

    /// A window of `limit` per `window_ns` that remembers the last `capacity` of
    /// `history` (recorded times, oldest first).
    pub fn with_history(limit: u32, window_ns: u64, history: &[u64]) -> Self {
        Self::with_memory(limit, window_ns, &Memory::of(history))
    }

    /// A window that remembers the newest of `memory`'s times it has room for; the ones
    /// left out raise the horizon to themselves.
    pub fn with_memory(limit: u32, window_ns: u64, memory: &Memory) -> Self {
        Self::with_memory_and_capacity(limit, window_ns, 0, memory)
    }

    /// As [`with_memory`](Self::with_memory), with room for at least `min_capacity`.
    pub fn with_memory_and_capacity(
        limit: u32,
        window_ns: u64,
        min_capacity: usize,
        memory: &Memory,
    ) -> Self {
        let capacity = min_capacity.max(limit as usize).next_power_of_two();
        let times = &memory.times_ns;
        let split = times.len().saturating_sub(capacity);
        let horizon = match (memory.horizon_ns, split.checked_sub(1).map(|i| times[i])) {
            (h, Some(t)) => Some(h.unwrap_or(0).max(t)),
            (h, None) => h,
        };
        // An admission forgotten at 0 counts at 1 ns (0 means "none forgotten").
        let horizon_ns = horizon.map_or(0, |h| h.max(1));
        let mut recorded = horizon_ns;
        let remembered: VecDeque<u64> = times[split..]
            .iter()
            .map(|&t| {
                recorded = recorded.max(t);
                recorded
            })
            .collect();
        WindowModel {
            limit: limit as usize,
            window_ns,
            capacity,
            count: remembered.len(),
            remembered,
            horizon_ns,
            narrowest_ns: window_ns,
        }
    }

    /// The window now, in nanoseconds.
    pub fn window_ns(&self) -> u64 {
        self.window_ns
    }

    /// How many admissions it remembers.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The recorded times of the last `limit` admissions, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = u64> + '_ {
        let skip = self.remembered.len().saturating_sub(self.limit);
        self.remembered.iter().copied().skip(skip)
    }

    /// When the window holds nothing any more: the last admission (or the horizon) plus
    /// the window; 0 when there is none.
    pub fn empty_from_ns(&self) -> u64 {
        match self.remembered.back() {
            Some(&t) => t.saturating_add(self.window_ns),
            None if self.horizon_ns == 0 => 0,
            None => self.horizon_ns.saturating_add(self.window_ns),
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// What [`try_acquire`](Self::try_acquire) would answer at `now_ns`, without
    /// recording anything: `Ok`, or the exact wait in nanoseconds.
    pub fn check(&self, now_ns: u64) -> Result<(), u64> {
        let len = self.remembered.len();
        let free_at = if len >= self.limit {
            // A limit of 0 admits nothing.
            self.remembered
                .get(len - self.limit)
                .map_or(u64::MAX, |&t| t.saturating_add(self.window_ns))
        } else if self.horizon_ns == 0 {
            0
        } else {
            self.horizon_ns.saturating_add(self.window_ns)
        };
        if free_at > now_ns {
            Err(free_at - now_ns)
        } else {
            Ok(())
        }
    }

    /// `Ok` and the admission recorded, or the exact wait in nanoseconds.
    pub fn try_acquire(&mut self, now_ns: u64) -> Result<(), u64> {
        self.check(now_ns)?;
        self.push(now_ns);
        Ok(())
    }

    /// Records an admission at `now_ns` whatever the rule says, and answers what the rule
    /// said ([`check`](Self::check)): for checkers that watch a limiter rather than drive
    /// it, so that an admission it should have refused still counts in later windows.
    ///
    /// ```
    /// use backstop_core::model::WindowModel;
    ///
    /// let mut window = WindowModel::new(1, 10);
    /// assert_eq!(window.record(0), Ok(()));
    /// // Refused by the rule (6 ns too early), counted anyway:
    /// assert_eq!(window.record(4), Err(6));
    /// assert_eq!(window.check(12), Err(2));
    /// assert_eq!(window.in_window(12), 1);
    /// ```
    pub fn record(&mut self, now_ns: u64) -> Result<(), u64> {
        let verdict = self.check(now_ns);
        self.push(now_ns);
        verdict
    }

    /// Records an admission: at the later of `now_ns` and the last recorded time.
    fn push(&mut self, now_ns: u64) {
        let last = self.remembered.back().copied().unwrap_or(self.horizon_ns);
        self.remembered.push_back(now_ns.max(last));
        self.count += 1;
        if self.remembered.len() > self.capacity {
            self.remembered.pop_front();
        }
    }

    /// How many of the admissions it remembers are still in the window at `now_ns`, that
    /// is recorded after `now_ns − window` (at most [`capacity`](Self::capacity): for
    /// messages, not for decisions).
    pub fn in_window(&self, now_ns: u64) -> usize {
        self.remembered
            .iter()
            .filter(|&&t| t.saturating_add(self.window_ns) > now_ns)
            .count()
    }

    /// How many admissions would pass at `now_ns`: tried on a copy, one by one.
    pub fn available(&self, now_ns: u64) -> u32 {
        let mut copy = self.clone();
        let mut admitted = 0;
        while admitted < self.limit && copy.try_acquire(now_ns).is_ok() {
            admitted += 1;
        }
        admitted as u32
    }

    /// The model of `reconfigure(limit, window)` in place: `false` (and nothing changed)
    /// when `limit` is above the capacity.
    pub fn reconfigure(&mut self, limit: u32, window_ns: u64) -> bool {
        if limit as usize > self.capacity {
            return false;
        }
        self.limit = limit as usize;
        self.window_ns = window_ns;
        self.narrowest_ns = self.narrowest_ns.min(window_ns);
        true
    }

    /// What it remembers: every forgotten admission was at least the narrowest window
    /// before the last one (its check found one as old), and before the oldest kept.
    pub fn remembered(&self) -> Memory {
        let times_ns: Vec<u64> = self.remembered.iter().copied().collect();
        let horizon_ns = if self.count <= self.capacity {
            (self.horizon_ns != 0).then_some(self.horizon_ns)
        } else {
            let oldest = times_ns[0];
            let last = *times_ns.last().unwrap_or(&oldest);
            Some(oldest.min(last.saturating_sub(self.narrowest_ns)))
        };
        Memory {
            horizon_ns,
            times_ns,
        }
    }

    /// The model of `reconfigured(limit, window)`: a new capacity, built from what this
    /// one remembers.
    pub fn reconfigured(&self, limit: u32, window_ns: u64) -> Self {
        WindowModel::with_memory(limit, window_ns, &self.remembered())
    }

    /// An empty window as a shared store keeps it: each decision names its shape
    /// ([`decide_in_ring`](Self::decide_in_ring)), and the window remembers exactly the
    /// largest limit it has been asked with (backstop-redis's ring).
    pub fn ring() -> Self {
        WindowModel {
            limit: 0,
            window_ns: 0,
            capacity: 0,
            remembered: VecDeque::new(),
            horizon_ns: 0,
            count: 0,
            narrowest_ns: u64::MAX,
        }
    }

    /// One decision of a [`ring`](Self::ring) under `(limit, window_ns)` at `now_ns`. A
    /// limit above the capacity first grows the ring to it; when admissions were
    /// forgotten and the ring is full then, the horizon becomes the oldest it holds or
    /// the newest minus the narrowest window an admission was made under, whichever is
    /// earlier (every forgotten admission was recorded at or before both: the admission
    /// that overwrote its slot needed it that far back). Then the rule, in this shape,
    /// over every admission the ring has made. A refusal changes nothing but that growth.
    ///
    /// ```
    /// use backstop_core::model::WindowModel;
    ///
    /// let mut ring = WindowModel::ring();
    /// assert_eq!(ring.decide_in_ring(2, 10, 0), Ok(()));
    /// assert_eq!(ring.decide_in_ring(2, 10, 1), Ok(()));
    /// assert_eq!(ring.decide_in_ring(2, 10, 10), Ok(()));
    /// // Two remembered (1 and 10), one forgotten (0): at 3, the horizon counts it at 1.
    /// assert_eq!(ring.decide_in_ring(3, 10, 10), Err(1));
    /// assert_eq!(ring.decide_in_ring(3, 10, 11), Ok(()));
    /// ```
    pub fn decide_in_ring(&mut self, limit: u32, window_ns: u64, now_ns: u64) -> Result<(), u64> {
        let limit_n = limit as usize;
        if limit_n > self.capacity {
            let held = self.remembered.len();
            if held == self.capacity && self.count > held {
                if let (Some(&oldest), Some(&newest)) =
                    (self.remembered.front(), self.remembered.back())
                {
                    let horizon = oldest.min(newest.saturating_sub(self.narrowest_ns));
                    self.horizon_ns = horizon.max(1);
                }
            }
            self.capacity = limit_n;
        }
        self.limit = limit_n;
        self.window_ns = window_ns;
        // Fewer admissions than the limit so far (the ring counts every one): free,
        // whatever the horizon.
        if self.count >= limit_n {
            self.check(now_ns)?;
        }
        self.push(now_ns);
        self.narrowest_ns = self.narrowest_ns.min(window_ns);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_follows_the_definition() {
        let mut model = WindowModel::new(2, 10);
        assert_eq!(model.try_acquire(0), Ok(()));
        assert_eq!(model.try_acquire(3), Ok(()));
        assert_eq!(model.try_acquire(9), Err(1));
        assert_eq!(model.available(10), 1);
        assert_eq!(model.try_acquire(10), Ok(()));
        // A stale reading is recorded at the latest time, so it frees nothing early.
        assert_eq!(model.try_acquire(5), Err(8));
        assert_eq!(model.reconfigured(1, 10).try_acquire(19), Err(1));
    }
}
