//! `SlidingWindow` on a manual clock against the `VecDeque` model
//! (`backstop_verify::admission`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::admission::check(data) {
        panic!("{violation}");
    }
});
