//! What the benches share: how many sites to build, and whether criterion
//! runs them once as tests.

/// Criterion's own rule for running benches as tests (`cargo test --benches`,
/// or `--test`): then they run once, on a small catalogue.
pub fn test_mode() -> bool {
    let flag = |name: &str| std::env::args().any(|a| a == name);
    !flag("--bench") || flag("--test")
}

/// `SITEWATCH_BENCH_SITES` if set; otherwise `in_tests` when run as tests and
/// `default` when measured.
pub fn site_count(default: usize, in_tests: usize) -> usize {
    match std::env::var("SITEWATCH_BENCH_SITES") {
        Ok(raw) => raw.trim().parse().unwrap_or_else(|_| {
            panic!("SITEWATCH_BENCH_SITES must be a whole number of sites, got {raw:?}")
        }),
        Err(_) if test_mode() => in_tests,
        Err(_) => default,
    }
}
