//! The public contract of `SlidingWindow`: config errors, timed waits, reporting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use backstop_core::Quota;
use backstop_core::clock::{Clock, ManualClock};
use backstop_core::rate::{MAX_LIMIT, MAX_WINDOW, SlidingWindow};

const MINUTE: Duration = Duration::from_secs(60);

fn limiter(limit: u32, window: Duration) -> (SlidingWindow<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let limiter = SlidingWindow::with_clock(
        Quota::new(limit, window).expect("valid config"),
        clock.clone(),
    );
    (limiter, clock)
}

#[test]
fn config_errors_name_the_field_and_the_reason() {
    let cases = [
        (0, MINUTE, "limit", "must be 1 to 16777216, got 0"),
        (MAX_LIMIT + 1, MINUTE, "limit", "must be 1 to 16777216"),
        (30, Duration::ZERO, "window", "above zero"),
        (
            30,
            MAX_WINDOW + Duration::from_nanos(1),
            "window",
            "100 years",
        ),
    ];
    for (limit, window, field, reason) in cases {
        let err = Quota::new(limit, window).unwrap_err();
        assert_eq!(err.field(), field);
        assert!(err.reason().contains(reason), "{err}");
        assert!(err.to_string().starts_with(&format!("invalid `{field}`")));
    }
    let longest = SlidingWindow::new(Quota::new(1, MAX_WINDOW).unwrap());
    assert_eq!(longest.window(), MAX_WINDOW);
}

#[test]
fn accessors_report_the_config() {
    let (limiter, _) = limiter(30, MINUTE);
    assert_eq!(limiter.limit(), 30);
    assert_eq!(limiter.window(), MINUTE);
    assert_eq!(limiter.available(), 30);
    limiter.try_acquire().unwrap();
    assert_eq!(limiter.available(), 29);
    assert!(format!("{limiter:?}").contains("available: 29"));
}

#[test]
fn acquire_timeout_sleeps_exactly_until_the_retry_time() {
    let (limiter, clock) = limiter(2, MINUTE);
    limiter.try_acquire().unwrap();
    clock.advance(Duration::from_secs(15));
    limiter.try_acquire().unwrap();
    // Full until t = 60 s. A wait of 45 s fits a 50 s timeout: it sleeps exactly 45 s.
    assert_eq!(limiter.acquire_timeout(Duration::from_secs(50)), Ok(()));
    assert_eq!(clock.now(), MINUTE);
    // Next slot frees at 75 s: exactly the deadline is still in time.
    assert_eq!(limiter.acquire_timeout(Duration::from_secs(15)), Ok(()));
    assert_eq!(clock.now(), Duration::from_secs(75));
}

#[test]
fn acquire_timeout_returns_at_once_when_the_wait_exceeds_the_time_left() {
    let (limiter, clock) = limiter(1, MINUTE);
    limiter.try_acquire().unwrap();
    let refused = limiter
        .acquire_timeout(MINUTE - Duration::from_nanos(1))
        .unwrap_err();
    assert_eq!(refused.retry_after(), MINUTE);
    assert_eq!(clock.now(), Duration::ZERO, "it must not sleep at all");
    assert!(limiter.acquire_timeout(Duration::ZERO).is_err());
}

/// A manual clock whose first sleep lets a rival caller take the freed capacity of the
/// same limiter just before the sleeper retries.
struct RivalOnWake {
    clock: ManualClock,
    limiter: OnceLock<Weak<SlidingWindow<Arc<RivalOnWake>>>>,
    stolen: AtomicBool,
}

impl Clock for RivalOnWake {
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }
    fn sleep(&self, d: Duration) {
        self.clock.advance(d);
        if !self.stolen.swap(true, Ordering::SeqCst) {
            let limiter = self.limiter.get().and_then(Weak::upgrade).unwrap();
            assert!(limiter.try_acquire().is_ok(), "the rival takes the slot");
        }
    }
}

#[test]
fn acquire_timeout_waits_again_within_the_deadline_when_a_rival_wins() {
    let clock = Arc::new(RivalOnWake {
        clock: ManualClock::new(),
        limiter: OnceLock::new(),
        stolen: AtomicBool::new(false),
    });
    let limiter = Arc::new(SlidingWindow::with_clock(
        Quota::new(1, MINUTE).unwrap(),
        Arc::clone(&clock),
    ));
    clock.limiter.set(Arc::downgrade(&limiter)).unwrap();
    limiter.try_acquire().unwrap();
    // Free at 60 s, but the rival takes it then; free again at 120 s = the deadline.
    assert_eq!(limiter.acquire_timeout(2 * MINUTE), Ok(()));
    assert_eq!(clock.clock.now(), 2 * MINUTE);
    // With a deadline one nanosecond shorter, the second wait would overshoot: refused.
    let refused = limiter.acquire_timeout(MINUTE - Duration::from_nanos(1));
    assert_eq!(refused.unwrap_err().retry_after(), MINUTE);
}

#[test]
fn reconfigured_keeps_history_so_lowering_the_limit_bites_at_once() {
    let (wide, clock) = limiter(30, MINUTE);
    for _ in 0..10 {
        wide.try_acquire().unwrap();
        clock.advance(Duration::from_secs(1));
    }
    let narrow = wide.reconfigured(Quota::new(5, MINUTE).unwrap());
    let refused = narrow.try_acquire().unwrap_err();
    // The newest five were at 5..=9 s; the oldest of them leaves at 65 s; now is 10 s.
    assert_eq!(refused.retry_after(), Duration::from_secs(55));
    let raised = wide.reconfigured(Quota::new(12, MINUTE).unwrap());
    assert_eq!(raised.available(), 2);
}

#[test]
fn memory_is_sixteen_bytes_per_slot_plus_a_fixed_part() {
    // The ring rounds `limit` up to a power of two: 32 and 1024 slots.
    let small = SlidingWindow::<ManualClock>::bytes_for(30);
    let large = SlidingWindow::<ManualClock>::bytes_for(1000);
    assert_eq!(large - small, 16 * (1024 - 32));
    assert!(small < 1024, "{small}");
    assert!(SlidingWindow::<ManualClock>::is_lock_free());
}

#[cfg(feature = "tokio")]
mod async_wait {
    use super::*;

    #[tokio::test]
    async fn async_wait_on_a_manual_clock_moves_virtual_time() {
        let (limiter, clock) = limiter(1, MINUTE);
        limiter.try_acquire().unwrap();
        assert_eq!(limiter.acquire_timeout_async(MINUTE).await, Ok(()));
        assert_eq!(clock.now(), MINUTE);
        let refused = limiter.acquire_timeout_async(Duration::from_secs(1)).await;
        assert_eq!(refused.unwrap_err().retry_after(), MINUTE);
    }

    #[tokio::test]
    async fn async_wait_on_the_real_clock_admits_after_the_window() {
        let limiter = SlidingWindow::new(Quota::new(1, Duration::from_millis(5)).unwrap());
        limiter.try_acquire().unwrap();
        assert_eq!(
            limiter.acquire_timeout_async(Duration::from_secs(5)).await,
            Ok(())
        );
        assert_eq!(limiter.available(), 0);
    }

    #[tokio::test]
    async fn dropping_the_future_admits_nothing() {
        let limiter = SlidingWindow::new(Quota::new(1, MINUTE).unwrap());
        limiter.try_acquire().unwrap();
        // Polled (it computes a 60 s wait and sleeps), then dropped by the timeout.
        let timed = tokio::time::timeout(
            Duration::from_millis(1),
            limiter.acquire_timeout_async(MINUTE),
        )
        .await;
        assert!(timed.is_err(), "the wait should still be pending");
        // The dropped wait left no admission behind: the window holds exactly one.
        let history_len = 1 - limiter.available();
        assert_eq!(history_len, 1);
        assert!(limiter.try_acquire().is_err());
    }
}

/// A clock that replays a script of readings, then repeats the last.
struct Scripted(std::sync::Mutex<Vec<u64>>);

impl Clock for Scripted {
    fn now_ns(&self) -> u64 {
        let mut readings = self.0.lock().unwrap();
        if readings.len() > 1 {
            readings.remove(0)
        } else {
            readings[0]
        }
    }
}

#[test]
fn a_reading_older_than_the_latest_admission_is_read_again_before_refusing() {
    let s = 1_000_000_000;
    // Admissions at 0 s and 30 s; then a thread reads 20 s, is preempted, and decides
    // when the clock says 65 s: the admission at 0 s has left its window by then.
    let clock = Scripted(std::sync::Mutex::new(vec![0, 30 * s, 20 * s, 65 * s]));
    let limiter = SlidingWindow::with_clock(Quota::new(2, MINUTE).unwrap(), clock);
    limiter.try_acquire().unwrap();
    limiter.try_acquire().unwrap();
    assert_eq!(limiter.try_acquire(), Ok(()));
    // The same stale reading passed in explicitly cannot be re-read: it is refused.
    let again = SlidingWindow::with_clock(Quota::new(2, MINUTE).unwrap(), ManualClock::new());
    again.try_acquire_at(0).unwrap();
    again.try_acquire_at(30 * s).unwrap();
    assert_eq!(
        again.try_acquire_at(20 * s).unwrap_err().retry_after(),
        Duration::from_secs(40)
    );
    // A clock that really went backwards reads the same again: still refused.
    let backwards = Scripted(std::sync::Mutex::new(vec![0, 30 * s, 20 * s]));
    let limiter = SlidingWindow::with_clock(Quota::new(2, MINUTE).unwrap(), backwards);
    limiter.try_acquire().unwrap();
    limiter.try_acquire().unwrap();
    assert_eq!(
        limiter.try_acquire().unwrap_err().retry_after(),
        Duration::from_secs(40)
    );
}

/// A ring of capacity 1 (1 per W) forgets the admission at 0 when it
/// admits at W; a wider window built from it must still count that one.
#[test]
fn widening_past_the_capacity_still_counts_admissions_the_wide_window_holds() {
    let w = Duration::from_secs(60);
    let (limiter, clock) = limiter(1, w);
    limiter.try_acquire().unwrap();
    clock.advance(w);
    limiter.try_acquire().unwrap();
    clock.advance(Duration::from_nanos(1));
    let wider = limiter.reconfigured(Quota::new(2, 2 * w).unwrap());
    assert!(
        wider.try_acquire().is_err(),
        "(1 ns − W, W + 1 ns] already holds the admissions at 0 and W"
    );
    assert_eq!(wider.available(), 0);
    // Once the admission at 0 has left every 2W window (judged at the 1 ns horizon),
    // the budget is back.
    clock.set(2 * w + Duration::from_nanos(1));
    assert_eq!(wider.try_acquire(), Ok(()));
    assert!(wider.try_acquire().is_err());
}

/// The memory figure of a limit no ring could have saturates instead
/// of overflowing (panic in debug, wrong in release).
#[test]
fn bytes_for_the_largest_u32_does_not_overflow() {
    let huge = SlidingWindow::<ManualClock>::bytes_for(u32::MAX);
    let small = SlidingWindow::<ManualClock>::bytes_for(1);
    if usize::BITS >= 64 {
        // 2^32 slots of 16 bytes, plus the same fixed part as any other limit.
        assert_eq!(huge - small, (16usize << 32) - 16);
    } else {
        assert_eq!(huge, usize::MAX);
    }
    assert!(SlidingWindow::<ManualClock>::bytes_for((1 << 31) + 1) <= huge);
}
