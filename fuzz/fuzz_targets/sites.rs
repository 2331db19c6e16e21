//! A site batch: `parse_sites`, then each site's round trip through its Feature.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sitewatch::fuzzing::sites(data);
});
