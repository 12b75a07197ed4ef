//! Admission driven by arbitrary admit / start / drop / reconfigure / reading / clock
//! steps, against plain counters and a rate model.
//! The check lives in `backstop_verify::admission`, shared with the stable corpus replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::admission::check(data) {
        panic!("{violation}");
    }
});
