//! `KeyedSlidingWindow` against a plain model: per key, a `VecDeque` of admission times.
//!
//! The model admits a request for key `k` at `t` iff fewer than `k`'s limit of its
//! admissions fall in `(t − window, t]`, tracks at most `max_keys` keys, drops a key
//! only when its window is empty (when a new key needs room, or on `retain_recent`),
//! and refuses a new key when every tracked key is live. Decisions, `retry_after`, the
//! key count and what `retain_recent` reclaims must all match.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::rate::{KeyedRefusal, KeyedSlidingWindow};
use proptest::prelude::*;

const WINDOW_NS: u64 = 1_000;
const DEFAULT_LIMIT: u32 = 2;
const MAX_KEYS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Acquire { key: u8, advance_ns: u64 },
    RetainRecent { advance_ns: u64 },
    SetLimit { key: u8, limit: u32 },
    ClearLimit { key: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    // Small key space and steps of up to a window: keys collide, windows fill and empty.
    let advance = prop_oneof![Just(0u64), 0..=WINDOW_NS, Just(WINDOW_NS)];
    prop_oneof![
        8 => (0u8..6, advance.clone()).prop_map(|(key, advance_ns)| Op::Acquire { key, advance_ns }),
        1 => advance.prop_map(|advance_ns| Op::RetainRecent { advance_ns }),
        1 => (0u8..6, 1u32..5).prop_map(|(key, limit)| Op::SetLimit { key, limit }),
        1 => (0u8..6).prop_map(|key| Op::ClearLimit { key }),
    ]
}

#[derive(Default)]
struct Model {
    /// Tracked keys and their admissions still in the window, oldest first.
    tracked: HashMap<u8, VecDeque<u64>>,
    overrides: HashMap<u8, u32>,
}

enum Decision {
    Admitted,
    RateLimited { retry_after_ns: u64 },
    TooManyKeys,
}

impl Model {
    fn limit(&self, key: u8) -> u32 {
        self.overrides.get(&key).copied().unwrap_or(DEFAULT_LIMIT)
    }

    fn expire(&mut self, now_ns: u64) {
        for times in self.tracked.values_mut() {
            while times.front().is_some_and(|&t| t + WINDOW_NS <= now_ns) {
                times.pop_front();
            }
        }
    }

    fn reclaim(&mut self) -> usize {
        let before = self.tracked.len();
        self.tracked.retain(|_, times| !times.is_empty());
        before - self.tracked.len()
    }

    fn acquire(&mut self, key: u8, now_ns: u64) -> Decision {
        self.expire(now_ns);
        if !self.tracked.contains_key(&key) {
            if self.tracked.len() >= MAX_KEYS {
                self.reclaim();
            }
            if self.tracked.len() >= MAX_KEYS {
                return Decision::TooManyKeys;
            }
            self.tracked.insert(key, VecDeque::new());
        }
        let limit = self.limit(key) as usize;
        let times = self.tracked.get_mut(&key).unwrap();
        if times.len() < limit {
            times.push_back(now_ns);
            Decision::Admitted
        } else {
            // Room comes when the limit-th most recent admission leaves the window.
            let oldest_that_counts = times[times.len() - limit];
            Decision::RateLimited {
                retry_after_ns: oldest_that_counts + WINDOW_NS - now_ns,
            }
        }
    }

    /// The earliest time a tracked key's window is empty.
    fn earliest_empty_ns(&self) -> u64 {
        self.tracked
            .values()
            .map(|times| times.back().map_or(0, |&t| t + WINDOW_NS))
            .min()
            .unwrap_or(0)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn keyed_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let window = Duration::from_nanos(WINDOW_NS);
        let keyed = KeyedSlidingWindow::with_clock(DEFAULT_LIMIT, window, MAX_KEYS, clock.clone())
            .unwrap();
        let mut model = Model::default();
        let mut now_ns = 0u64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Acquire { key, advance_ns } => {
                    now_ns += advance_ns;
                    clock.set(Duration::from_nanos(now_ns));
                    let got = keyed.try_acquire(&key);
                    match (model.acquire(key, now_ns), got) {
                        (Decision::Admitted, Ok(())) => {}
                        (Decision::RateLimited { retry_after_ns }, Err(KeyedRefusal::RateLimited(r))) => {
                            prop_assert_eq!(r.retry_after(), Duration::from_nanos(retry_after_ns), "step {}", step);
                        }
                        (Decision::TooManyKeys, Err(KeyedRefusal::TooManyKeys(refused))) => {
                            // A hint that is never later than the first room.
                            let room_in_ns = model.earliest_empty_ns() - now_ns;
                            prop_assert!(refused.retry_after() <= Duration::from_nanos(room_in_ns),
                                "step {}: hint {:?} after room in {}ns", step, refused.retry_after(), room_in_ns);
                        }
                        (_, got) => prop_assert!(false, "step {}: key {} at {}: model and limiter disagree: {:?}", step, key, now_ns, got),
                    }
                }
                Op::RetainRecent { advance_ns } => {
                    now_ns += advance_ns;
                    clock.set(Duration::from_nanos(now_ns));
                    model.expire(now_ns);
                    prop_assert_eq!(keyed.retain_recent(), model.reclaim(), "step {}", step);
                }
                Op::SetLimit { key, limit } => {
                    let got = keyed.set_limit(key, limit, window);
                    if model.overrides.len() >= MAX_KEYS && !model.overrides.contains_key(&key) {
                        let err = got.unwrap_err();
                        prop_assert_eq!(err.field(), "overrides");
                    } else {
                        got.unwrap();
                        model.overrides.insert(key, limit);
                    }
                }
                Op::ClearLimit { key } => {
                    prop_assert_eq!(keyed.clear_limit(&key), model.overrides.remove(&key).is_some());
                }
            }
            prop_assert_eq!(keyed.len(), model.tracked.len(), "step {}", step);
            prop_assert!(keyed.len() <= MAX_KEYS);
            for key in 0..6u8 {
                let limit = model.limit(key);
                prop_assert_eq!(keyed.limit_for(&key), (limit, window));
            }
        }
    }
}
