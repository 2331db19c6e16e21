//! Index build and query times on a synthetic catalogue of a million sites.
//!
//! `SITEWATCH_BENCH_SITES=100000 cargo bench --bench index` runs on fewer sites for
//! a quick look. Such runs are grouped as `index_100k` rather than `index`, so
//! criterion never compares them with a baseline of a different size.

mod common;

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sitewatch::index::{Filter, SiteIndex};
use sitewatch::model::{BBox, LonLat, Meters, Site};
use sitewatch::synth;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_SITES: usize = 1_000_000;
/// Criterion runs each bench just once, to see that it works, when run without
/// `--bench` (as by `cargo test --benches`, in a debug build) or with `--test`;
/// generating a million sites there would take minutes for nothing.
const TEST_MODE_SITES: usize = 10_000;
const SEED: u64 = 42;
const QUERY_SEED: u64 = 4242;
const QUERIES: usize = 1_000;

fn site_count() -> usize {
    common::site_count(DEFAULT_SITES, TEST_MODE_SITES)
}

/// `1m`, `100k` or the plain number, for bench names.
fn count_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Query points spread like the sites, so most queries land among them.
fn query_points() -> Vec<LonLat> {
    let mut rng = ChaCha8Rng::seed_from_u64(QUERY_SEED);
    (0..QUERIES)
        .map(|_| {
            let lon = rng.random_range(-180.0..180.0);
            let lat = rng.random_range(synth::LAT_RANGE.0..synth::LAT_RANGE.1);
            LonLat::parse("query", lon, lat).expect("drawn inside the valid ranges")
        })
        .collect()
}

/// A one-degree box with its south-west corner at each query point; boxes that
/// would pass 180° wrap across the antimeridian as RFC 7946 boxes do.
fn query_boxes(points: &[LonLat]) -> Vec<BBox> {
    points
        .iter()
        .map(|p| {
            let east = if p.lon() + 1.0 > 180.0 {
                p.lon() + 1.0 - 360.0
            } else {
                p.lon() + 1.0
            };
            BBox::parse("bbox", &[p.lon(), p.lat(), east, p.lat() + 1.0])
                .expect("corners are in range and south < north")
        })
        .collect()
}

/// Cycles through `items`, one per call, so every iteration asks something new.
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T {
    let mut i = 0;
    move || {
        let item = &items[i % items.len()];
        i += 1;
        item
    }
}

fn index_benches(c: &mut Criterion) {
    let n = site_count();
    let label = count_label(n);
    eprintln!("generating {n} synthetic sites (seed {SEED})...");
    let sites: Vec<Arc<Site>> = synth::sites(n, SEED).into_iter().map(Arc::new).collect();
    assert_eq!(sites.len(), n, "the generator dropped sites");
    let index = SiteIndex::build(sites.iter().cloned());
    let points = query_points();
    let boxes = query_boxes(&points);
    let filter = Filter::default();
    let radius = Meters::parse("radius_m", 10_000.0).expect("a positive constant");

    let mut group = if n == DEFAULT_SITES {
        c.benchmark_group("index")
    } else {
        c.benchmark_group(format!("index_{label}"))
    };

    // A build of a million sites takes about a second: criterion's default of 100
    // samples would need minutes, and ten of equal size give a stable median.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(format!("build_{label}"), |b| {
        b.iter_batched(|| sites.clone(), SiteIndex::build, BatchSize::PerIteration)
    });

    group.sample_size(100);
    group.sampling_mode(SamplingMode::Auto);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("nearby_10km", |b| {
        let mut next = cycle(&points);
        b.iter(|| index.nearby(*next(), black_box(radius), &filter, usize::MAX))
    });
    group.bench_function("nearest_10", |b| {
        let mut next = cycle(&points);
        b.iter(|| index.nearest(*next(), black_box(10), &filter))
    });
    group.bench_function("bbox_1deg", |b| {
        let mut next = cycle(&boxes);
        b.iter(|| index.bbox(next(), &filter))
    });
    group.finish();
}

criterion_group!(benches, index_benches);
criterion_main!(benches);
