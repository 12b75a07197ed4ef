//! `SlidingWindow` on a manual clock against the `VecDeque` model
//! (`backstop_verify::limits_toml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::limits_toml::check(data) {
        panic!("{violation}");
    }
});
