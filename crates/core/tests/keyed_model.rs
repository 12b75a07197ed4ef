//! `KeyedSlidingWindow` against a plain model: per tracked key, one shared reference
//! window (`backstop_core::model::WindowModel`, feature `model`).
//!
//! The model admits a request for key `k` at `t` as `k`'s `WindowModel` does (fewer than
//! `k`'s limit of its admissions in `(t − window, t]`), tracks at most `max_keys` keys,
//! drops a key only when its window is empty (when a new key needs room, or on
//! `retain_recent`), and refuses a new key when every tracked key is live. A limit
//! override that changes a tracked key's shape reshapes its window as the limiter does:
//! a window with at least the old one's room and everything it remembered. Decisions,
//! `retry_after`, the key count and what `retain_recent` reclaims must all match.

use std::collections::HashMap;
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::model::WindowModel;
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
    /// Tracked keys and their windows.
    tracked: HashMap<u8, WindowModel>,
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

    /// Drops every tracked key whose window is empty at `now_ns`; how many.
    fn reclaim(&mut self, now_ns: u64) -> usize {
        let before = self.tracked.len();
        self.tracked
            .retain(|_, window| window.empty_from_ns() > now_ns);
        before - self.tracked.len()
    }

    fn acquire(&mut self, key: u8, now_ns: u64) -> Decision {
        if !self.tracked.contains_key(&key) {
            if self.tracked.len() >= MAX_KEYS {
                self.reclaim(now_ns);
            }
            if self.tracked.len() >= MAX_KEYS {
                return Decision::TooManyKeys;
            }
            let window = WindowModel::new(self.limit(key), WINDOW_NS);
            self.tracked.insert(key, window);
        }
        match self.tracked.get_mut(&key).unwrap().try_acquire(now_ns) {
            Ok(()) => Decision::Admitted,
            Err(retry_after_ns) => Decision::RateLimited { retry_after_ns },
        }
    }

    /// After `key`'s override changed: a tracked key whose limit is no longer its
    /// window's is reshaped, as the limiter does (`Entry::reshaped`): at least the old
    /// window's room, everything it remembered, what it forgot at its horizon.
    fn conform(&mut self, key: u8) {
        let limit = self.limit(key);
        let Some(window) = self.tracked.get_mut(&key) else {
            return;
        };
        if window.limit() != limit {
            *window = WindowModel::with_memory_and_capacity(
                limit,
                WINDOW_NS,
                window.capacity(),
                &window.remembered(),
            );
        }
    }

    /// The earliest time a tracked key's window is empty.
    fn earliest_empty_ns(&self) -> u64 {
        self.tracked
            .values()
            .map(WindowModel::empty_from_ns)
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
                    prop_assert_eq!(keyed.retain_recent(), model.reclaim(now_ns), "step {}", step);
                }
                Op::SetLimit { key, limit } => {
                    let got = keyed.set_limit(key, limit, window);
                    if model.overrides.len() >= MAX_KEYS && !model.overrides.contains_key(&key) {
                        let err = got.unwrap_err();
                        prop_assert_eq!(err.field(), "overrides");
                    } else {
                        got.unwrap();
                        model.overrides.insert(key, limit);
                        model.conform(key);
                    }
                }
                Op::ClearLimit { key } => {
                    prop_assert_eq!(keyed.clear_limit(&key), model.overrides.remove(&key).is_some());
                    model.conform(key);
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
