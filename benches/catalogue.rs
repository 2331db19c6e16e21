//! The catalogue beyond the index: opening a stored catalogue (load and index
//! build), a busy site's history, changes in an area over a month, importing
//! observations, and writing GeoJSON.
//!
//! The catalogue has 100,000 synthetic sites by default (`SITEWATCH_BENCH_SITES`
//! changes it; `cargo bench --bench index` measures the index at a million), the
//! first of them with 10,000 observations, and 50,000 more observations spread
//! over the others and over ten years.

mod common;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use sitewatch::catalogue::{Catalogue, ChangesQuery, HistoryQuery, Order};
use sitewatch::import::ImportOptions;
use sitewatch::index::Filter;
use sitewatch::model::{BBox, LonLat, SiteId, Timestamp};
use sitewatch::render;
use sitewatch::synth::{self, ObservationPlan, ObservationStream, Placement, SiteStream};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_SITES: usize = 100_000;
/// When criterion runs the benches once as tests (`cargo test --benches`).
const TEST_MODE_SITES: usize = 2_000;
const SEED: u64 = 42;
const BUSY_EVENTS: usize = 10_000;
const OTHER_OBSERVATIONS: usize = 50_000;
const IMPORT_BATCH: usize = 5_000;

fn site_count() -> usize {
    common::site_count(DEFAULT_SITES, TEST_MODE_SITES)
}

/// A FeatureCollection of observations over the catalogue, as an import reads it.
fn batch(plan: ObservationPlan, placements: &[Placement]) -> Vec<u8> {
    let features: Vec<Value> = ObservationStream::new(plan, placements).collect();
    serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features}))
        .expect("serialisable")
}

fn plan(observations: usize, busiest: usize, seed: u64) -> ObservationPlan {
    ObservationPlan {
        observations,
        batch_size: observations,
        busiest_site_events: busiest,
        off_site_share: 0.1,
        seed,
    }
}

fn catalogue_benches(c: &mut Criterion) {
    let n = site_count();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    eprintln!("building a catalogue of {n} sites with {BUSY_EVENTS} events on one...");
    let (sites, placements): (Vec<_>, Vec<_>) = SiteStream::new(n, SEED).unzip();
    let fc = json!({"type": "FeatureCollection",
        "features": sites.iter().map(|s| s.to_feature()).collect::<Vec<_>>()});
    let (cat, _) = Catalogue::open_unseeded(&path).expect("new catalogue");
    let by = sitewatch::store::Provenance {
        actor: "bench".into(),
        reason: None,
    };
    cat.import_sites(&fc.to_string(), &by)
        .expect("sites import");
    drop(fc);
    let opts = ImportOptions::default();
    for (i, (events, busiest)) in [(BUSY_EVENTS, BUSY_EVENTS), (OTHER_OBSERVATIONS, 0)]
        .into_iter()
        .enumerate()
    {
        let body = batch(plan(events, busiest, SEED + i as u64), &placements);
        let r = cat
            .import_observations(body.as_slice(), "bench", &opts, |_, _| {})
            .expect("observations import");
        assert!(r.stored, "{}", r.summary);
    }
    let busy = SiteId::parse("id", &synth::site_id(1)).expect("a valid id");

    let mut group = c.benchmark_group("catalogue");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("open_and_build_index", |b| {
        b.iter(|| Catalogue::open(&path).expect("opens"))
    });

    group.sample_size(50);
    group.sampling_mode(SamplingMode::Auto);
    group.measurement_time(Duration::from_secs(5));
    for (name, limit) in [
        ("history_10k_events_first_100", 100),
        ("history_10k_events_all", 10_000),
    ] {
        group.bench_function(name, |b| {
            let q = HistoryQuery {
                order: Order::NewestFirst,
                limit,
                ..HistoryQuery::default()
            };
            b.iter(|| {
                cat.site_history(&busy, &q)
                    .expect("reads")
                    .expect("known site")
            })
        });
    }
    group.bench_function("changes_20deg_area_one_month", |b| {
        let q = ChangesQuery {
            bbox: Some(BBox::parse("bbox", &[0.0, 0.0, 20.0, 20.0]).expect("a box")),
            since: Some(Timestamp::parse("since", "2020-06-01T00:00:00Z").expect("a time")),
            until: Some(Timestamp::parse("until", "2020-07-01T00:00:00Z").expect("a time")),
            limit: 100,
            ..ChangesQuery::default()
        };
        b.iter(|| cat.changes(black_box(&q)).expect("reads"))
    });

    let index = cat.index();
    let page: Vec<Arc<_>> = index.all(&Filter::default()).take(100).cloned().collect();
    let point = LonLat::parse("p", placements[0].lon, placements[0].lat).expect("a point");
    let hits = index.nearest(point, 100, &Filter::default());
    let stats = cat.observation_stats();
    group.throughput(Throughput::Elements(100));
    group.bench_function("geojson_page_of_100_sites", |b| {
        b.iter(|| render::sites_collection(page.iter(), Map::new()).to_string())
    });
    group.bench_function("geojson_100_nearby_hits", |b| {
        b.iter(|| render::hits_json(&hits, &Map::new(), &stats))
    });

    group.sample_size(10);
    group.throughput(Throughput::Elements(IMPORT_BATCH as u64));
    let mut seed = 1_000;
    group.bench_function("import_observations", |b| {
        b.iter_batched(
            || {
                seed += 1;
                batch(plan(IMPORT_BATCH, 0, seed), &placements)
            },
            |body| {
                let r = cat
                    .import_observations(body.as_slice(), "bench", &opts, |_, _| {})
                    .expect("imports");
                assert!(r.stored, "{}", r.summary);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, catalogue_benches);
criterion_main!(benches);
