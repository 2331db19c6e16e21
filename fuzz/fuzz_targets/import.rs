//! The observation import end to end on a fresh catalogue, checking the store after each run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sitewatch::fuzzing::import(data);
});
