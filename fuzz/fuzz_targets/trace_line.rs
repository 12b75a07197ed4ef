//! The simulator's trace reader never panics; what it accepts round-trips through the writer.
//! The check lives in `backstop_verify::trace_line`, shared with the stable corpus replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = backstop_verify::trace_line::check(data) {
        panic!("{violation}");
    }
});
