//! Real threads hammering shared keys while sweeps and reshapes run: per key, exactly
//! the limit is admitted at one instant, whatever reclaim and overrides do meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::rate::KeyedSlidingWindow;

const THREADS: usize = 4;
const KEYS: u32 = 8;
const LIMIT: u32 = 10;

#[test]
fn exactly_the_limit_per_key_under_concurrent_sweeps_and_reshapes() {
    let clock = ManualClock::new();
    let keyed = Arc::new(
        KeyedSlidingWindow::with_clock(
            Quota::new(LIMIT, Duration::from_secs(1)).unwrap(),
            64,
            clock.clone(),
        )
        .unwrap(),
    );
    let admitted: Arc<Vec<AtomicU32>> = Arc::new((0..KEYS).map(|_| AtomicU32::new(0)).collect());
    thread::scope(|scope| {
        for t in 0..THREADS {
            let keyed = &keyed;
            let admitted = &admitted;
            scope.spawn(move || {
                for i in 0..2_000u32 {
                    let key = (i + t as u32) % KEYS;
                    if keyed.try_acquire(&key).is_ok() {
                        // Relaxed: a tally read after the scope joins.
                        admitted[key as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Sweeps find every live window non-empty (time stands still), and reshapes to
        // the same limit rebuild entries under the admitters' feet.
        scope.spawn(|| {
            for i in 0..200u32 {
                keyed.retain_recent();
                keyed
                    .set_limit(i % KEYS, Quota::new(LIMIT, Duration::from_secs(1)).unwrap())
                    .unwrap();
            }
        });
    });
    for (key, count) in admitted.iter().enumerate() {
        assert_eq!(count.load(Ordering::Relaxed), LIMIT, "key {key}");
    }
    assert_eq!(keyed.len(), KEYS as usize);
}
