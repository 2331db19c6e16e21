//! An observation batch through the streaming reader and `Observation::from_feature`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sitewatch::fuzzing::observations(data);
});
