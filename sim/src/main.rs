//! backstop-sim: for now, a short demonstration of the exact limiter on virtual time.
//! The simulator proper replaces it.

use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::rate::SlidingWindow;

fn main() {
    if let Err(e) = run() {
        eprintln!("backstop-sim: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), backstop_core::ConfigError> {
    let clock = ManualClock::new();
    let limiter = SlidingWindow::with_clock(30, Duration::from_secs(60), clock.clone())?;
    println!("backstop demo: 30 requests per 60 s, one request every second for 3 minutes");
    let (mut admitted, mut refused) = (0, 0);
    for second in 0..180u64 {
        clock.set(Duration::from_secs(second));
        match limiter.try_acquire() {
            Ok(()) => admitted += 1,
            Err(e) => {
                refused += 1;
                if refused == 1 {
                    println!(
                        "first 429 at t={second}s, retry after {:?}",
                        e.retry_after()
                    );
                }
            }
        }
    }
    println!("admitted {admitted}, refused {refused} (429)");
    Ok(())
}
