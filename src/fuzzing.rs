//! Entry points for the fuzz targets in `fuzz/` and for their regression tests:
//! each takes bytes as a client could send them, returns a value or an error, and
//! panics only when an invariant of the library breaks.

use crate::api::ApiError;
use crate::api::params::Params;
use crate::catalogue::{Catalogue, ObservationImportError, SEED_SITES};
use crate::import::{
    ImportError, ImportMode, ImportOptions, ImportReport, StreamError, for_each_feature,
    parse_sites,
};
use crate::model::SiteStats;
use crate::model::{FieldError, IdPolicy, LonLat, Observation, Site, Timestamp};
use crate::query::cql::{self, Geom, Record, Scalar};
use crate::query::{CollectionId, Kind};
use crate::store::{Provenance, SiteWrites, SqliteStore};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

/// A site batch: parsed whole, and every site that parses must come back
/// unchanged from its own Feature.
pub fn sites(data: &[u8]) -> Result<Vec<Site>, ImportError> {
    let text = String::from_utf8_lossy(data);
    let sites = parse_sites(&text, IdPolicy::Required)?;
    for site in &sites {
        let again = Site::from_feature(&site.to_feature(), IdPolicy::Required)
            .unwrap_or_else(|e| panic!("site {} does not read back: {e}", site.id));
        assert_eq!(&again, site, "site {} changes on a round trip", site.id);
    }
    Ok(sites)
}

/// An observation batch, streamed: each feature's result in order, or why the
/// stream is not a FeatureCollection. Every observation that parses must come
/// back unchanged from its own Feature.
pub fn observations(data: &[u8]) -> Result<Vec<Result<Observation, FieldError>>, StreamError> {
    let mut out = Vec::new();
    let streamed = for_each_feature(data, |i, feature| {
        if i != out.len() {
            return Err(format!("feature {i} arrived after {} others", out.len()));
        }
        let parsed = Observation::from_feature(&feature);
        if let Ok(o) = &parsed {
            let mut props = o.properties();
            props.retain(|_, v| !v.is_null());
            let written =
                json!({"type": "Feature", "geometry": o.place.to_geojson(), "properties": props});
            let again = Observation::from_feature(&written)
                .unwrap_or_else(|e| panic!("feature {i} does not read back: {e}"));
            assert_eq!(&again, o, "feature {i} changes on a round trip");
        }
        out.push(parsed);
        Ok::<(), String>(())
    });
    match streamed {
        Ok(n) => {
            assert_eq!(n, out.len(), "the stream miscounted its features");
            Ok(out)
        }
        Err(Ok(e)) => Err(e),
        Err(Err(broken)) => panic!("{broken}"),
    }
}

/// A query string as the item queries read it: `bbox`, `datetime`, the site
/// filters, and `filter` (in `filter-lang`) checked against every collection's
/// queryables and evaluated on sample records. The first refusal is returned;
/// a filter is refused when no collection takes it.
pub fn query(data: &[u8]) -> Result<(), ApiError> {
    let p = Params::parse(&String::from_utf8_lossy(data))?;
    let mut first: Option<ApiError> = None;
    let mut keep = |r: Result<(), ApiError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    keep(p.bbox().map(|b| {
        if let Some(b) = b {
            for [w, s, e, n] in b.pieces() {
                assert!(w <= e && s <= n, "a bbox piece is inverted: {b:?}");
            }
        }
    }));
    keep(p.datetime().map(|i| {
        if let Some(i) = i {
            assert!(i.start <= i.end, "an interval ends before it starts: {i:?}");
        }
    }));
    keep(p.filter().map(drop));
    keep(filter(&p));
    first.map_or(Ok(()), Err)
}

fn filter(p: &Params) -> Result<(), ApiError> {
    let lang = match p.typed("filter-lang")? {
        None => cql::Lang::Text,
        Some(l) => cql::Lang::parse(l).ok_or_else(|| ApiError::bad("filter-lang", l))?,
    };
    let Some(raw) = p.get("filter")? else {
        return Ok(());
    };
    // A filter is refused only when no collection takes it; the error is the
    // first collection's.
    let mut first = None;
    let mut taken = false;
    for c in CollectionId::ALL {
        match cql::parse(raw, lang, c.properties()) {
            Ok(expr) => {
                taken = true;
                for r in samples(c) {
                    expr.matches(&r);
                }
            }
            Err(e) => {
                first.get_or_insert(ApiError::bad("filter", e.to_string()));
            }
        }
    }
    match first {
        Some(e) if !taken => Err(e),
        _ => Ok(()),
    }
}

/// A record with a value of the right type for every queryable, or none at all.
struct Sample {
    props: HashMap<&'static str, Scalar>,
    geometry: Option<Geom<'static>>,
}

impl Record for Sample {
    fn property(&self, name: &str) -> Scalar {
        self.props.get(name).cloned().unwrap_or(Scalar::Null)
    }

    fn geometry(&self) -> Option<Geom<'_>> {
        self.geometry
    }
}

fn samples(c: CollectionId) -> Vec<Sample> {
    let at = Timestamp::parse("t", "2018-06-01T12:00:00Z").expect("a valid time");
    let props: HashMap<_, _> = c
        .queryables()
        .map(|q| {
            let v = match q.kind {
                Kind::String => Scalar::Str(
                    q.values
                        .and_then(|v| v().first().copied())
                        .unwrap_or("Yongbyon")
                        .to_string(),
                ),
                Kind::Integer | Kind::Number => Scalar::Num(3.0),
                Kind::Boolean => Scalar::Bool(true),
                Kind::Timestamp => Scalar::Time(at),
                Kind::Geometry | Kind::Strings | Kind::Objects(_) => Scalar::Null,
            };
            (q.name, v)
        })
        .collect();
    let area = &seed()[0].footprint;
    vec![
        Sample {
            props: props.clone(),
            geometry: Some(Geom::Area(area)),
        },
        Sample {
            props,
            geometry: Some(Geom::Point(
                LonLat::parse("p", 125.75, 39.8).expect("a valid point"),
            )),
        },
        Sample {
            props: HashMap::new(),
            geometry: None,
        },
    ]
}

/// The built-in catalogue, parsed once.
fn seed() -> &'static [Site] {
    static SEED: OnceLock<Vec<Site>> = OnceLock::new();
    SEED.get_or_init(|| parse_sites(SEED_SITES, IdPolicy::Required).expect("the seed parses"))
}

/// What an import can change, read back from the store.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    observations: BTreeMap<String, Vec<String>>,
    candidates: BTreeMap<String, Vec<String>>,
    stored_batches: BTreeSet<String>,
    all_batches: usize,
}

fn snapshot(cat: &Catalogue) -> Snapshot {
    let observations = cat
        .observations_matching(None, None, None, &[])
        .expect("observations read");
    let mut stats: SiteStats = SiteStats::new();
    for o in &observations {
        for s in &o.sites {
            stats.record(s.site_id.clone(), o.observed_at, 1);
        }
    }
    assert_eq!(
        *cat.observation_stats(),
        stats,
        "the live observation statistics differ from the store"
    );
    let batches = cat.batches(usize::MAX >> 1, None).expect("batches read");
    Snapshot {
        observations: observations
            .into_iter()
            .map(|o| {
                (
                    o.id,
                    o.sites.into_iter().map(|s| s.site_id.to_string()).collect(),
                )
            })
            .collect(),
        candidates: cat
            .candidates(None)
            .expect("candidates read")
            .into_iter()
            .map(|c| (c.id, c.observation_ids))
            .collect(),
        stored_batches: batches
            .iter()
            .filter(|b| b.stored)
            .map(|b| b.id.clone())
            .collect(),
        all_batches: batches.len(),
    }
}

/// The seed sites the import target starts with: those the seed observations
/// name, and one more.
const IMPORT_SITES: &[&str] = &[
    "yongbyon",
    "kangson",
    "punggye-ri",
    "sohae",
    "tonghae",
    "sino-ri",
    "sakkanmol",
];

/// A fresh in-memory catalogue holding a few seed sites and no observations.
fn catalogue() -> Catalogue {
    let mut store = SqliteStore::open_in_memory().expect("an in-memory store");
    let by = Provenance {
        actor: "fuzz".into(),
        reason: None,
    };
    let few: Vec<Site> = seed()
        .iter()
        .filter(|s| IMPORT_SITES.contains(&s.id.as_str()))
        .cloned()
        .collect();
    store.apply_sites(&few, &by).expect("the seed sites apply");
    Catalogue::from_store(store).expect("the catalogue opens").0
}

/// One import of a batch, checked against the store before and after.
fn checked_import(
    cat: &Catalogue,
    data: &[u8],
    mode: ImportMode,
    dry_run: bool,
) -> Result<ImportReport, ObservationImportError> {
    let before = snapshot(cat);
    let opts = ImportOptions {
        mode,
        dry_run,
        ..ImportOptions::default()
    };
    let result = cat.import_observations(data, "fuzz", &opts, |_, _| {});
    let after = snapshot(cat);
    let report = match result {
        Err(ObservationImportError::Unreadable(_)) => {
            assert_eq!(before, after, "an unreadable batch changed the store");
            return result;
        }
        Err(ObservationImportError::Store(e)) => panic!("the store failed: {e}"),
        Ok(r) => r,
    };
    let r = &report;
    assert_eq!(r.features, r.accepted + r.rejected + r.duplicates, "{r:?}");
    assert_eq!(r.accepted, r.matched + r.unmatched, "{r:?}");
    assert!(r.problems.len() <= r.rejected, "{r:?}");
    if dry_run || (mode == ImportMode::Atomic && r.rejected > 0) {
        assert!(!r.stored, "{r:?}");
    }
    if r.stored {
        assert_eq!(
            after.observations.len(),
            before.observations.len() + r.accepted,
            "{r:?}"
        );
        assert!(after.stored_batches.contains(&r.batch_id), "{r:?}");
        for (id, members) in &before.candidates {
            let now = &after.candidates[id];
            assert!(members.iter().all(|m| now.contains(m)), "{r:?}");
        }
        assert_eq!(
            after.candidates.len(),
            before.candidates.len() + r.candidates_created.len(),
            "{r:?}"
        );
    } else {
        let recorded = usize::from(!dry_run);
        assert_eq!(before.observations, after.observations, "{r:?}");
        assert_eq!(before.candidates, after.candidates, "{r:?}");
        assert_eq!(before.stored_batches, after.stored_batches, "{r:?}");
        assert_eq!(after.all_batches, before.all_batches + recorded, "{r:?}");
    }
    Ok(report)
}

/// The import pipeline end to end on a fresh catalogue of a few seed sites:
/// a dry run, then an atomic import, then a partial one of the same bytes, each
/// checked against what the store holds before and after. Returns the atomic
/// import's result.
pub fn import(data: &[u8]) -> Result<ImportReport, ObservationImportError> {
    let cat = catalogue();
    let dry = checked_import(&cat, data, ImportMode::Atomic, true);
    let atomic = checked_import(&cat, data, ImportMode::Atomic, false);
    let partial = checked_import(&cat, data, ImportMode::Partial, false);
    match (&dry, &atomic, &partial) {
        (Ok(d), Ok(a), Ok(p)) => {
            assert_eq!(
                (d.features, d.rejected),
                (a.features, a.rejected),
                "a dry run differs from the import"
            );
            if a.stored {
                assert!(p.already_imported_as.is_some() && !p.stored, "{p:?}");
            } else {
                assert_eq!(p.rejected, a.rejected, "{p:?}");
            }
        }
        (Err(_), Err(_), Err(_)) => {}
        _ => panic!("the same bytes read differently: {dry:?} {atomic:?} {partial:?}"),
    }
    atomic
}
