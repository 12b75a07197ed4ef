//! Rotating through many more distinct keys than `max_keys` keeps memory bounded.
//!
//! A counting global allocator measures the bytes live on the heap; this file holds a
//! single test so that no other test allocates meanwhile.

use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::rate::{KeyedRefusal, KeyedSlidingWindow};
use backstop_testkit::alloc::CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn live_bytes() -> isize {
    CountingAllocator::live_bytes()
}

#[test]
fn rotating_ten_times_max_keys_keeps_memory_bounded() {
    const MAX_KEYS: usize = 1_000;
    const LIMIT: u32 = 4;
    let window = Duration::from_secs(1);
    let clock = ManualClock::new();
    let keyed =
        KeyedSlidingWindow::with_clock(Quota::new(LIMIT, window).unwrap(), MAX_KEYS, clock.clone())
            .unwrap();
    let before = live_bytes();

    // Fill the table once, to measure it full.
    for key in 0..MAX_KEYS as u64 {
        keyed.try_acquire(&key).unwrap();
    }
    let full = live_bytes() - before;
    let per_key = full as usize / MAX_KEYS;
    let documented = KeyedSlidingWindow::<u64, ManualClock>::bytes_per_key(LIMIT);
    assert!(
        per_key <= documented && per_key >= documented * 3 / 4,
        "measured {per_key} bytes per key, documented {}",
        KeyedSlidingWindow::<u64, ManualClock>::bytes_per_key(LIMIT)
    );

    // An attacker rotates through 10× max_keys new keys. While the table is live they
    // are refused; each time the windows empty, the next batch takes their room.
    let mut refused = 0;
    let mut peak = full;
    for round in 1..=10u64 {
        clock.advance(window);
        for i in 0..MAX_KEYS as u64 {
            let key = round * 1_000_000 + i;
            match keyed.try_acquire(&key) {
                Ok(()) => {}
                Err(KeyedRefusal::TooManyKeys(_)) => refused += 1,
                Err(other) => panic!("unexpected {other}"),
            }
            assert!(keyed.len() <= MAX_KEYS);
        }
        // As many again, refused: the table is full of this round's live keys.
        for i in 0..MAX_KEYS as u64 {
            let late = round * 1_000_000 + 500_000 + i;
            assert!(matches!(
                keyed.try_acquire(&late),
                Err(KeyedRefusal::TooManyKeys(_))
            ));
        }
        peak = peak.max(live_bytes() - before);
    }
    assert_eq!(
        refused, 0,
        "each round found the previous round's windows empty"
    );
    assert_eq!(keyed.len(), MAX_KEYS);
    // Bounded: the table churned 10× its size, and the heap is within 2× of one full
    // table (papaya frees removed entries in batches, so some garbage is in flight).
    assert!(
        peak <= 2 * full,
        "heap grew to {peak} bytes from {full} bytes for one full table"
    );
    eprintln!(
        "{per_key} bytes per key (documented {}), peak {peak} bytes over 10 rotations vs {full} full",
        KeyedSlidingWindow::<u64, ManualClock>::bytes_per_key(LIMIT)
    );
    drop(keyed);
    assert!(
        live_bytes() - before < full / 10,
        "dropping the limiter frees it"
    );
}
