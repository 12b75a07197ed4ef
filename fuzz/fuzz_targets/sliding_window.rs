//! SlidingWindow on a manual clock against the VecDeque model.
//! The check lives in `backstop_verify::sliding_window`, shared with the stable corpus replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::sliding_window::check(data) {
        panic!("{violation}");
    }
});
