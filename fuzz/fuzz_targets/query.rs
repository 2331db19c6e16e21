//! A query string: `bbox`, `datetime`, the site filters and a CQL2 `filter`, parsed and evaluated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sitewatch::fuzzing::query(data);
});
