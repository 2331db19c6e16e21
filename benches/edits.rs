//! Edits on a large stored catalogue: one site replaced through the catalogue
//! (store commit and index delta), the index delta alone, and reads of the
//! past (an area as it was, the changes in an area) once many sites have
//! several revisions.
//!
//! The catalogue has a million synthetic sites by default
//! (`SITEWATCH_BENCH_SITES` changes it; runs of another size are grouped as
//! `edits_100k` and so on rather than `edits`, so criterion never compares
//! them with a baseline of a different size). Building it on disk takes a few
//! minutes and is done once, before anything is measured.
//!
//! For the reads of the past, the sites in a set of two-degree boxes, and
//! others at random, are edited in [`ROUNDS`] rounds after the import, so the
//! catalogue holds more revisions than sites and the boxes are busy with
//! history. `sites_as_of` is asked about the moment after the first round.

mod common;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sitewatch::catalogue::{Catalogue, ChangesQuery};
use sitewatch::index::SiteIndex;
use sitewatch::model::{BBox, IdPolicy, Site, SiteId, Timestamp};
use sitewatch::store::Provenance;
use sitewatch::synth::{self, Placement, SiteStream};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFAULT_SITES: usize = 1_000_000;
/// When criterion runs the benches once as tests (`cargo test --benches`).
const TEST_MODE_SITES: usize = 2_000;
const SEED: u64 = 42;
const EDIT_SEED: u64 = 4242;
/// Sites per import transaction while building the catalogue: a million
/// features in one JSON text would need gigabytes.
const IMPORT_CHUNK: usize = 100_000;
/// Two-degree boxes the area reads cycle through; every site whose centre is
/// in one of them is edited in each round.
const QUERY_BOXES: usize = 20;
const BOX_DEGREES: f64 = 2.0;
/// Sites edited in each round, the boxes' sites first and then others at random.
const EDITED_SITES: usize = 5_000;
/// Rounds of edits after the import: each edited site gets this many revisions
/// more.
const ROUNDS: usize = 3;
/// Sites in the index's recent layer before the one change is applied.
const RECENT_SIZES: [usize; 3] = [0, 1_000, 10_000];
/// The recent layer is merged into the base beyond this many sites: see
/// `RECENT_LIMIT` in src/index.rs (the larger of 4096 and a 64th of the base).
fn recent_capacity(n: usize) -> usize {
    4_096.max(n / 64)
}

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

fn by() -> Provenance {
    Provenance {
        actor: "bench".into(),
        reason: Some("benches/edits.rs".into()),
    }
}

fn id_of(i: usize) -> SiteId {
    SiteId::parse("id", &synth::site_id(i)).expect("synthetic ids are valid")
}

fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// Moves every `[lon, lat]` position in a GeoJSON geometry by `(dlon, dlat)`.
fn shift(v: &mut Value, dlon: f64, dlat: f64) {
    let Value::Array(items) = v else { return };
    if let [Value::Number(lon), Value::Number(lat)] = items.as_slice() {
        let (lon, lat) = (lon.as_f64().expect("f64"), lat.as_f64().expect("f64"));
        *v = json!([round7(lon + dlon), round7(lat + dlat)]);
    } else {
        items.iter_mut().for_each(|item| shift(item, dlon, dlat));
    }
}

/// The site moved by about a hundred metres, towards the equator and the
/// prime meridian so that repeated moves stay inside the valid ranges.
fn moved(site: &Site) -> Value {
    let mut f = site.to_feature();
    let c = site.footprint.lonlat_bounds();
    let (lon, lat) = ((c[0] + c[2]) / 2.0, (c[1] + c[3]) / 2.0);
    shift(
        &mut f["geometry"]["coordinates"],
        -lon.signum() * 0.001,
        -lat.signum() * 0.0005,
    );
    f
}

fn renamed(site: &Site, name: String) -> Value {
    let mut f = site.to_feature();
    f["properties"]["name"] = json!(name);
    f
}

fn round_name(id: &SiteId, round: usize) -> String {
    format!("Synthetic site {id}, edit round {round}")
}

fn feature_collection(features: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features}))
        .expect("serialisable")
}

/// Creates the catalogue at `path` from [`SiteStream`], a chunk of sites per
/// transaction, and returns where each site was placed.
fn build_catalogue(path: &Path, n: usize) -> Vec<Placement> {
    let (cat, _) = Catalogue::open_unseeded(path).expect("new catalogue");
    let mut placements = Vec::with_capacity(n);
    let mut stream = SiteStream::new(n, SEED);
    let started = Instant::now();
    loop {
        let features: Vec<Value> = stream
            .by_ref()
            .take(IMPORT_CHUNK)
            .map(|(site, at)| {
                placements.push(at);
                site.to_feature()
            })
            .collect();
        if features.is_empty() {
            break;
        }
        let count = features.len();
        let body = feature_collection(features);
        let report = cat
            .import_sites_from(body.as_slice(), &by())
            .expect("sites import");
        assert_eq!(report.created.len(), count, "every site is new");
        eprintln!(
            "  {} sites stored ({:.0?})",
            placements.len(),
            started.elapsed()
        );
    }
    assert_eq!(placements.len(), n, "the generator dropped sites");
    placements
}

/// Two-degree boxes centred on sites chosen at random (away from the
/// antimeridian, so that no box wraps), as `[west, south, east, north]`.
fn query_boxes(placements: &[Placement], rng: &mut impl Rng) -> Vec<[f64; 4]> {
    let half = BOX_DEGREES / 2.0;
    let mut boxes = Vec::with_capacity(QUERY_BOXES);
    while boxes.len() < QUERY_BOXES {
        let p = placements[rng.random_range(0..placements.len())];
        if p.lon.abs() < 180.0 - 2.0 * half {
            boxes.push([p.lon - half, p.lat - half, p.lon + half, p.lat + half]);
        }
    }
    boxes
}

/// The sites (1-based numbers) edited in each round: every site centred in a
/// query box, then others at random up to [`EDITED_SITES`] (or a quarter of a
/// small catalogue).
fn edited_sites(placements: &[Placement], boxes: &[[f64; 4]], rng: &mut impl Rng) -> Vec<usize> {
    let inside = |p: &Placement, [w, s, e, n]: &[f64; 4]| {
        (*w..=*e).contains(&p.lon) && (*s..=*n).contains(&p.lat)
    };
    let mut chosen: std::collections::BTreeSet<usize> = placements
        .iter()
        .enumerate()
        .filter(|(_, p)| boxes.iter().any(|b| inside(p, b)))
        .map(|(i, _)| i + 1)
        .collect();
    let wanted = EDITED_SITES.max(chosen.len()).min(placements.len() / 4);
    while chosen.len() < wanted {
        chosen.insert(rng.random_range(1..=placements.len()));
    }
    chosen.into_iter().collect()
}

/// One edit for the single-site bench: a random site, renamed or moved.
fn next_edit(
    cat: &Catalogue,
    n: usize,
    rng: &mut impl Rng,
    rename: bool,
    k: usize,
) -> (SiteId, Value) {
    let id = id_of(rng.random_range(1..=n));
    let index = cat.index();
    let site = index.get(&id).expect("every synthetic site is live");
    let feature = if rename {
        renamed(site, format!("Synthetic site {id}, renamed {k}"))
    } else {
        moved(site)
    };
    (id, feature)
}

fn edits_benches(c: &mut Criterion) {
    let n = site_count();
    let label = count_label(n);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    eprintln!("building a catalogue of {n} synthetic sites (seed {SEED})...");
    let placements = build_catalogue(&path, n);
    // Opened again so the index is one freshly built base layer, as after a
    // restart, whatever the import's deltas left.
    let started = Instant::now();
    let (mut cat, opened) = Catalogue::open_unseeded(&path).expect("opens");
    assert_eq!(opened.live_sites, n);
    eprintln!("opened with {n} sites in {:.1?}", started.elapsed());
    let fresh: Arc<SiteIndex> = cat.index();
    let mut rng = ChaCha8Rng::seed_from_u64(EDIT_SEED);

    let mut group = if n == DEFAULT_SITES {
        c.benchmark_group("edits")
    } else {
        c.benchmark_group(format!("edits_{label}"))
    };
    group.warm_up_time(Duration::from_secs(2));

    // 1. One site replaced through the catalogue: the store's transaction
    // (SQLite WAL, synchronous FULL, so one fsync per edit) and the index delta,
    // then the read that sees it. Only that is timed; the feature is made
    // before and the check runs after. Each edit adds a site to the index's
    // recent layer, and the delta costs the size of that layer, so each bench
    // starts from the catalogue opened afresh (an empty recent layer) and
    // says how far the layer grew.
    let mut edits = 0;
    {
        let (id, feature) = next_edit(&cat, n, &mut rng, true, 0);
        let site = cat.replace_site(&id, &feature, &by()).expect("replaces");
        assert_eq!(cat.index().get(&id), Some(&site), "the edit is visible");
        assert_eq!(site.name, format!("Synthetic site {id}, renamed 0"));
        assert_eq!(cat.revisions(&id).expect("reads").len(), 2);
        edits += 1;
    }
    group.sample_size(30);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(10));
    for (name, rename) in [("replace_site_rename", true), ("replace_site_move", false)] {
        drop(cat);
        cat = Catalogue::open_unseeded(&path).expect("opens again").0;
        let before = edits;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    edits += 1;
                    let (id, feature) = next_edit(&cat, n, &mut rng, rename, edits);
                    let start = Instant::now();
                    let site = cat.replace_site(&id, &feature, &by()).expect("replaces");
                    let seen = cat.index().get(&id).cloned();
                    timed += start.elapsed();
                    assert_eq!(seen.as_ref(), Some(&site), "the edit is visible");
                }
                timed
            })
        });
        eprintln!(
            "{name}: {} edits (warm-up included) from a freshly opened catalogue; the \
             recent layer grew from 0 to about that many sites (it merges into the base \
             beyond {})",
            edits - before,
            recent_capacity(n)
        );
    }

    // 2. The index delta alone, for one moved site, on the index as opened
    // (recent layer empty) and with sites already in the recent layer.
    let changed: Vec<(SiteId, Arc<Site>)> = (0..1_000)
        .map(|_| {
            let id = id_of(rng.random_range(1..=n));
            let site = fresh.get(&id).expect("live");
            let site = Site::from_feature(&moved(site), IdPolicy::Required).expect("valid");
            (id, Arc::new(site))
        })
        .collect();
    group.sample_size(50);
    group.sampling_mode(SamplingMode::Auto);
    group.measurement_time(Duration::from_secs(5));
    for recent in RECENT_SIZES {
        if recent >= recent_capacity(n) || recent > n / 2 {
            continue;
        }
        let written: Vec<(SiteId, Option<Arc<Site>>)> = (0..recent)
            .map(|_| {
                let id = id_of(rng.random_range(1..=n));
                let site = fresh.get(&id).expect("live").clone();
                (id, Some(site))
            })
            .collect();
        let base = fresh.with_changes(written);
        let (id, site) = &changed[0];
        let after = base.with_changes([(id.clone(), Some(site.clone()))]);
        assert_eq!(after.get(id), Some(site), "the change is visible");
        assert_eq!(after.len(), n);
        group.bench_function(
            format!("index_with_changes_1/recent_{}", count_label(recent)),
            |b| {
                let mut i = 0;
                b.iter(|| {
                    let (id, site) = &changed[i % changed.len()];
                    i += 1;
                    base.with_changes([(id.clone(), Some(site.clone()))])
                })
            },
        );
    }
    drop(fresh);

    // Several revisions for many sites: every site in the query boxes and
    // others at random, edited in rounds; `past` falls after the first.
    let boxes = query_boxes(&placements, &mut rng);
    let edited = edited_sites(&placements, &boxes, &mut rng);
    let mut past = None;
    let started = Instant::now();
    for round in 1..=ROUNDS {
        let index = cat.index();
        let features: Vec<Value> = edited
            .iter()
            .map(|&i| {
                let id = id_of(i);
                let site = index.get(&id).expect("live");
                let mut f = moved(site);
                f["properties"]["name"] = json!(round_name(&id, round));
                f
            })
            .collect();
        let report = cat
            .import_sites_from(feature_collection(features).as_slice(), &by())
            .expect("edit round");
        assert_eq!(
            report.updated.len(),
            edited.len(),
            "every edit is a revision"
        );
        if round == 1 {
            std::thread::sleep(Duration::from_millis(5));
            past = Some(Timestamp::now());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let past = past.expect("one round at least");
    let revisions = n + edits + ROUNDS * edited.len();
    eprintln!(
        "{} sites edited in {ROUNDS} rounds ({:.1?}): {revisions} revisions in all",
        edited.len(),
        started.elapsed()
    );

    // 3. An area as it was after the first round.
    {
        let [w, s, e, nn] = boxes[0];
        let then = cat.sites_as_of(past, Some(&[boxes[0]])).expect("reads");
        let now = cat.index();
        let mut checked = 0;
        for (i, p) in placements.iter().enumerate() {
            if (w..=e).contains(&p.lon) && (s..=nn).contains(&p.lat) {
                let id = id_of(i + 1);
                let old = then.get(&id).expect("in the box then");
                assert_eq!(old.name, round_name(&id, 1), "as of the first round");
                assert_eq!(now.get(&id).expect("live").name, round_name(&id, ROUNDS));
                checked += 1;
            }
        }
        assert!(checked > 0, "the box is centred on a site");
        eprintln!(
            "sites_as_of: {} sites in the first box, {checked} of them edited",
            then.len()
        );
    }
    group.sample_size(30);
    group.bench_function("sites_as_of_2deg_box", |b| {
        let mut i = 0;
        b.iter(|| {
            let rect = [boxes[i % boxes.len()]];
            i += 1;
            cat.sites_as_of(black_box(past), Some(&rect))
                .expect("reads")
        })
    });

    // 4. The newest changes in an area over ten years.
    let ten_years_back = chrono::Utc::now() - chrono::Duration::days(3_653);
    let since = Timestamp::parse(
        "since",
        &ten_years_back.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
    .expect("a time");
    let queries: Vec<ChangesQuery> = boxes
        .iter()
        .map(|b| ChangesQuery {
            bbox: Some(BBox::parse("bbox", b).expect("a box")),
            since: Some(since),
            limit: 100,
            ..ChangesQuery::default()
        })
        .collect();
    {
        let page = cat.changes(&queries[0]).expect("reads");
        assert!(!page.events.is_empty(), "the box has history");
        assert!(page.events.len() <= 100);
        eprintln!(
            "changes: {} events on the first page of the first box",
            page.events.len()
        );
    }
    group.sample_size(20);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("changes_2deg_box_10y_first_100", |b| {
        let mut i = 0;
        b.iter(|| {
            let q = &queries[i % queries.len()];
            i += 1;
            cat.changes(black_box(q)).expect("reads")
        })
    });
    group.finish();
}

criterion_group!(benches, edits_benches);
criterion_main!(benches);
