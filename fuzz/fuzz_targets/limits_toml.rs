//! Limits::from_toml_str never panics; what it accepts round-trips.
//! The check lives in `backstop_verify::limits_toml`, shared with the stable corpus replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::limits_toml::check(data) {
        panic!("{violation}");
    }
});
