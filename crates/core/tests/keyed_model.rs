//! `KeyedSlidingWindow` against the keyed limiter's reference
//! (`backstop_core::model::KeyedModel`, feature `model`): per tracked key, one reference
//! window.
//!
//! The model admits a request for key `k` at `t` as `k`'s `WindowModel` does (fewer than
//! `k`'s limit of its admissions in `(t − window, t]`), tracks at most `max_keys` keys,
//! drops a key only when its window is empty (when a new key needs room, or on
//! `retain_recent`), and refuses a new key when every tracked key is live. A limit
//! override that changes a tracked key's shape reshapes its window as the limiter does:
//! a window with at least the old one's room and everything it remembered. Decisions,
//! `retry_after`, the key count and what `retain_recent` reclaims must all match.

use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::model::{KeyedModel, KeyedRefused};
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn keyed_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let window = Duration::from_nanos(WINDOW_NS);
        let keyed = KeyedSlidingWindow::with_clock(Quota::new(DEFAULT_LIMIT, window).unwrap(), MAX_KEYS, clock.clone()).unwrap();
        let mut model = KeyedModel::new((DEFAULT_LIMIT, WINDOW_NS), MAX_KEYS);
        let mut now_ns = 0u64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Acquire { key, advance_ns } => {
                    now_ns += advance_ns;
                    clock.set(Duration::from_nanos(now_ns));
                    let got = keyed.try_acquire(&key);
                    match (model.try_acquire(&key, now_ns), got) {
                        (Ok(()), Ok(())) => {}
                        (Err(KeyedRefused::RateLimited { wait_ns }), Err(KeyedRefusal::RateLimited(r))) => {
                            prop_assert_eq!(r.retry_after(), Duration::from_nanos(wait_ns), "step {}", step);
                        }
                        (Err(KeyedRefused::TooManyKeys { latest_ns }), Err(KeyedRefusal::TooManyKeys(refused))) => {
                            // A hint that is never later than the first room.
                            prop_assert!(refused.retry_after() <= Duration::from_nanos(latest_ns),
                                "step {}: hint {:?} after room in {}ns", step, refused.retry_after(), latest_ns);
                        }
                        (_, got) => prop_assert!(false, "step {}: key {} at {}: model and limiter disagree: {:?}", step, key, now_ns, got),
                    }
                }
                Op::RetainRecent { advance_ns } => {
                    now_ns += advance_ns;
                    clock.set(Duration::from_nanos(now_ns));
                    prop_assert_eq!(keyed.retain_recent(), model.retain_recent(now_ns), "step {}", step);
                }
                Op::SetLimit { key, limit } => {
                    let got = keyed.set_limit(key, Quota::new(limit, window).unwrap());
                    if model.set_limit(&key, (limit, WINDOW_NS)) {
                        got.unwrap();
                    } else {
                        let err = got.unwrap_err();
                        prop_assert_eq!(err.field(), "overrides");
                    }
                }
                Op::ClearLimit { key } => {
                    prop_assert_eq!(keyed.clear_limit(&key), model.clear_limit(&key));
                }
            }
            prop_assert_eq!(keyed.len(), model.len(), "step {}", step);
            prop_assert!(keyed.len() <= MAX_KEYS);
            for key in 0..6u8 {
                let (limit, _) = model.shape(&key);
                prop_assert_eq!(keyed.quota_for(&key), Quota::new(limit, window).unwrap());
            }
        }
    }
}
