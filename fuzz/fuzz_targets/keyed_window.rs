//! KeyedSlidingWindow against a map of window models, including reclaim and overrides.
//! The check lives in `backstop_verify::keyed_window`, shared with the stable corpus replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::keyed_window::check(data) {
        panic!("{violation}");
    }
});
