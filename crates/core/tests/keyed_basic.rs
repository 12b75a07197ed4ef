//! `KeyedSlidingWindow`: per-key semantics, the key bound, reclaim and overrides.

use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::rate::{KeyedRefusal, KeyedSlidingWindow, MAX_KEYS};

const MINUTE: Duration = Duration::from_secs(60);

fn limiter(limit: u32, max_keys: usize) -> (KeyedSlidingWindow<u32, ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let limiter =
        KeyedSlidingWindow::with_clock(Quota::new(limit, MINUTE).unwrap(), max_keys, clock.clone())
            .unwrap();
    (limiter, clock)
}

fn retry_after(refusal: KeyedRefusal) -> (u16, Duration) {
    (refusal.status_code(), refusal.retry_after())
}

#[test]
fn config_errors_name_the_field() {
    let clock = ManualClock::new();
    let bad = [
        (0, MINUTE, 10, "limit"),
        (u32::MAX, MINUTE, 10, "limit"),
        (1, Duration::ZERO, 10, "window"),
        (1, Duration::from_secs(u64::MAX), 10, "window"),
        (1, MINUTE, 0, "max_keys"),
        (1, MINUTE, MAX_KEYS + 1, "max_keys"),
    ];
    // The shape is checked by `Quota`, the bound on keys by the limiter.
    for (limit, window, max_keys, field) in bad {
        let err = Quota::new(limit, window)
            .and_then(|quota| {
                KeyedSlidingWindow::<u32, _>::with_clock(quota, max_keys, clock.clone())
            })
            .unwrap_err();
        assert_eq!(err.field(), field, "{err}");
    }
}

#[test]
fn each_key_has_its_own_exact_window() {
    let (keyed, clock) = limiter(2, 10);
    keyed.try_acquire(&1).unwrap();
    clock.advance(Duration::from_secs(10));
    keyed.try_acquire(&1).unwrap();
    assert_eq!(
        retry_after(keyed.try_acquire(&1).unwrap_err()),
        (429, Duration::from_secs(50))
    );
    // Another key is untouched by key 1's use.
    assert_eq!(keyed.available(&2), 2);
    keyed.try_acquire(&2).unwrap();
    keyed.try_acquire(&2).unwrap();
    assert!(keyed.try_acquire(&2).is_err());

    clock.advance(Duration::from_secs(50) - Duration::from_nanos(1));
    assert!(keyed.try_acquire(&1).is_err(), "one nanosecond early");
    clock.advance(Duration::from_nanos(1));
    keyed.try_acquire(&1).unwrap();
    assert_eq!(keyed.available(&1), 0);
    assert_eq!(keyed.len(), 2);
}

#[test]
fn a_full_table_of_live_keys_refuses_new_keys_with_503() {
    let (keyed, clock) = limiter(1, 3);
    for key in 0..3 {
        keyed.try_acquire(&key).unwrap();
        clock.advance(Duration::from_secs(10));
    }
    let refused = keyed.try_acquire(&99).unwrap_err();
    assert!(matches!(refused, KeyedRefusal::TooManyKeys(_)));
    // Key 0's window empties 60 s after t = 0; it is t = 30 s.
    assert_eq!(retry_after(refused), (503, Duration::from_secs(30)));
    if let KeyedRefusal::TooManyKeys(too_many) = refused {
        assert_eq!(too_many.max_keys(), 3);
    }
    // Existing keys still decide as before, and none was evicted.
    assert!(matches!(
        keyed.try_acquire(&0),
        Err(KeyedRefusal::RateLimited(_))
    ));
    assert_eq!(keyed.len(), 3);

    clock.advance(Duration::from_secs(30) - Duration::from_nanos(1));
    assert!(matches!(
        keyed.try_acquire(&99),
        Err(KeyedRefusal::TooManyKeys(_))
    ));
    clock.advance(Duration::from_nanos(1));
    // Key 0 is empty now and is reclaimed for key 99; keys 1 and 2 are still live.
    keyed.try_acquire(&99).unwrap();
    assert_eq!(keyed.len(), 3);
    assert!(
        matches!(keyed.try_acquire(&1), Err(KeyedRefusal::RateLimited(_))),
        "key 1 kept its window"
    );
    // Key 0 comes back as a new key and finds no room: 1 and 2 and 99 are live.
    assert!(matches!(
        keyed.try_acquire(&0),
        Err(KeyedRefusal::TooManyKeys(_))
    ));
}

#[test]
fn retain_recent_reclaims_exactly_the_empty_windows() {
    let (keyed, clock) = limiter(5, 100);
    for key in 0..10 {
        keyed.try_acquire(&key).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    // t = 10 s: nothing is empty yet.
    assert_eq!(keyed.retain_recent(), 0);
    assert_eq!(keyed.len(), 10);
    // t = 64.5 s: keys 0..=4 admitted at 0..=4 s have left their windows.
    clock.advance(Duration::from_millis(54_500));
    assert_eq!(keyed.retain_recent(), 5);
    assert_eq!(keyed.len(), 5);
    // The survivors kept their windows: key 9 has used 1 of 5.
    assert_eq!(keyed.available(&9), 4);
    clock.advance(MINUTE);
    assert_eq!(keyed.retain_recent(), 5);
    assert!(keyed.is_empty());
}

#[test]
fn overrides_change_a_keys_limit_and_keep_its_history() {
    let (keyed, clock) = limiter(2, 10);
    keyed.set_limit(1, Quota::new(5, MINUTE).unwrap()).unwrap();
    assert_eq!(keyed.quota_for(&1), Quota::new(5, MINUTE).unwrap());
    assert_eq!(keyed.quota_for(&2), Quota::new(2, MINUTE).unwrap());
    for _ in 0..5 {
        keyed.try_acquire(&1).unwrap();
    }
    assert!(keyed.try_acquire(&1).is_err());

    // Lowering the limit takes effect at once: 5 admissions are in the window.
    clock.advance(Duration::from_secs(1));
    keyed.set_limit(1, Quota::new(3, MINUTE).unwrap()).unwrap();
    assert_eq!(
        retry_after(keyed.try_acquire(&1).unwrap_err()),
        (429, Duration::from_secs(59))
    );
    // Back to the default of 2: still over it.
    assert!(keyed.clear_limit(&1));
    assert!(!keyed.clear_limit(&1));
    assert_eq!(keyed.quota_for(&1), Quota::new(2, MINUTE).unwrap());
    assert!(keyed.try_acquire(&1).is_err());

    // Raising a key's limit gives it room now, counted against the same history.
    keyed.set_limit(2, Quota::new(1, MINUTE).unwrap()).unwrap();
    keyed.try_acquire(&2).unwrap();
    assert!(keyed.try_acquire(&2).is_err());
    keyed.set_limit(2, Quota::new(2, MINUTE).unwrap()).unwrap();
    keyed.try_acquire(&2).unwrap();
    assert!(keyed.try_acquire(&2).is_err());

    // A shorter window for a key frees it sooner.
    keyed
        .set_limit(2, Quota::new(2, Duration::from_secs(2)).unwrap())
        .unwrap();
    clock.advance(Duration::from_secs(2));
    keyed.try_acquire(&2).unwrap();
}

#[test]
fn overrides_are_bounded_by_max_keys() {
    let (keyed, _) = limiter(1, 2);
    keyed.set_limit(1, Quota::new(3, MINUTE).unwrap()).unwrap();
    keyed.set_limit(2, Quota::new(3, MINUTE).unwrap()).unwrap();
    keyed.set_limit(2, Quota::new(4, MINUTE).unwrap()).unwrap(); // replacing one is not a new one
    assert_eq!(
        keyed
            .set_limit(3, Quota::new(3, MINUTE).unwrap())
            .unwrap_err()
            .field(),
        "overrides"
    );
    assert!(keyed.clear_limit(&1));
    keyed.set_limit(3, Quota::new(3, MINUTE).unwrap()).unwrap();
}

#[test]
fn reclaim_after_a_window_does_not_hand_out_a_past_budget() {
    // A caller whose clock reading is older than a reclaim must not get a fresh budget
    // "in the past": its admission is recorded at the reclaim's time.
    let (keyed, clock) = limiter(1, 1);
    keyed.try_acquire_at(&1, 0).unwrap();
    clock.set(MINUTE);
    assert_eq!(keyed.retain_recent(), 1);
    // A stale reading: 30 s, while key 1's admission at 0 was in (−30 s, 30 s].
    keyed.try_acquire_at(&1, 30_000_000_000).unwrap();
    // Recorded at 60 s: the next admission waits until 120 s, i.e. 90 s from 30 s.
    let refused = keyed.try_acquire_at(&1, 30_000_000_000).unwrap_err();
    assert_eq!(refused.retry_after(), Duration::from_secs(90));
    assert_eq!(
        keyed
            .try_acquire_at(&1, 119_999_999_999)
            .unwrap_err()
            .retry_after(),
        Duration::from_nanos(1)
    );
    keyed.try_acquire_at(&1, 120_000_000_000).unwrap();
}

#[test]
fn huge_times_do_not_break_the_limiter() {
    let (keyed, _) = limiter(1, 2);
    keyed.try_acquire_at(&1, u64::MAX).unwrap();
    assert!(keyed.try_acquire_at(&1, u64::MAX).is_err());
    keyed.try_acquire_at(&2, u64::MAX - 1).unwrap();
    assert_eq!(keyed.retain_recent(), 0);
}

#[test]
fn string_keys_and_debug() {
    let keyed = KeyedSlidingWindow::<String>::new(Quota::new(1, MINUTE).unwrap(), 4).unwrap();
    keyed.try_acquire(&"alice".to_string()).unwrap();
    assert!(keyed.try_acquire(&"alice".to_string()).is_err());
    keyed.try_acquire(&"bob".to_string()).unwrap();
    let debug = format!("{keyed:?}");
    assert!(
        debug.contains("max_keys: 4") && debug.contains("keys: 2"),
        "{debug}"
    );
}

/// Found by the `keyed_window` fuzz target: narrowing a key's window and widening it
/// again within one window forgot admissions that the wide window still held.
#[test]
fn narrowing_then_widening_a_window_keeps_its_admissions() {
    use backstop_core::clock::ManualClock;
    use backstop_core::rate::KeyedSlidingWindow;
    use std::time::Duration;

    let ns = Duration::from_nanos;
    let clock = ManualClock::new();
    let keyed: KeyedSlidingWindow<u8, ManualClock> =
        KeyedSlidingWindow::with_clock(Quota::new(3, ns(32)).unwrap(), 16, clock.clone()).unwrap();
    clock.set(ns(16));
    keyed.try_acquire(&1).unwrap();
    clock.set(ns(40));
    keyed.try_acquire(&1).unwrap();
    keyed.set_limit(1, Quota::new(3, ns(24)).unwrap()).unwrap();
    keyed.set_limit(1, Quota::new(3, ns(32)).unwrap()).unwrap();
    // (8, 40] holds the admissions at 16 and 40: one more fits, not two.
    assert!(keyed.try_acquire(&1).is_ok());
    let refused = keyed.try_acquire(&1).unwrap_err();
    assert_eq!(refused.retry_after(), ns(8), "{refused:?}");
}

/// Widening keeps what the wide window holds: 1 per W, admissions at 0 and W; widening to 2 per 2W at W + 1 must
/// still count the admission at 0, which the 1-slot ring had forgotten.
#[test]
fn widening_an_override_counts_what_the_wide_window_holds() {
    let (keyed, clock) = limiter(1, 10);
    let w = MINUTE;
    keyed.try_acquire(&7).unwrap();
    clock.advance(w);
    keyed.try_acquire(&7).unwrap();
    clock.advance(Duration::from_nanos(1));
    keyed.set_limit(7, Quota::new(2, 2 * w).unwrap()).unwrap();
    assert!(
        keyed.try_acquire(&7).is_err(),
        "a third admission within one 2W window"
    );
    clock.set(2 * w + Duration::from_nanos(1));
    keyed.try_acquire(&7).unwrap();
    assert!(keyed.try_acquire(&7).is_err());
}
