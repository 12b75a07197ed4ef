//! `SlidingWindow` on a manual clock against the `VecDeque` model
//! (`backstop_verify::sweep_tree`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::sweep_tree::check(data) {
        panic!("{violation}");
    }
});
