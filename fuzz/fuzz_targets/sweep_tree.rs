//! A real temp tree swept against the documented model; nothing outside the root touched.
//! The check lives in `backstop_verify::sweep_tree`, shared with the stable corpus replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::sweep_tree::check(data) {
        panic!("{violation}");
    }
});
