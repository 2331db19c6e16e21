//! The queries handed down to the store's indexes answer exactly what a scan of
//! the same data answers: the catalogue at a past moment in an area, the
//! changes in an area (followed page by page through their cursors), and
//! observation pages in id order with boxes, windows and findings.

use proptest::prelude::*;
use serde_json::{Value, json};
use sitewatch::catalogue::{Catalogue, ChangesQuery, EventKind};
use sitewatch::import::{ImportMode, ImportOptions};
use sitewatch::index::{Filter, footprint_meets_bbox};
use sitewatch::model::{BBox, Declaration, Finding, IdPolicy, Site, SiteId, Timestamp};
use sitewatch::store::{Before, Provenance, SqliteStore};
use sitewatch::synth::{ObservationPlan, ObservationStream, SiteStream};
use std::sync::{Arc, LazyLock};

const SITES: usize = 3_000;

struct Fixture {
    cat: Catalogue,
    /// Moments between groups of edits, oldest first.
    moments: Vec<Timestamp>,
}

fn by() -> Provenance {
    Provenance {
        actor: "test".into(),
        reason: None,
    }
}

/// A catalogue of synthetic sites, edited and retired in groups with a moment
/// noted between groups, and observations over ten years.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let (cat, _) = Catalogue::from_store(SqliteStore::open_in_memory().unwrap()).unwrap();
    let (sites, placements): (Vec<Site>, Vec<_>) = SiteStream::new(SITES, 7).unzip();
    let fc = json!({"type": "FeatureCollection",
        "features": sites.iter().map(|s| s.to_feature()).collect::<Vec<_>>()});
    cat.import_sites(&fc.to_string(), &by()).unwrap();
    let mut moments = vec![Timestamp::now()];
    for group in 0..6 {
        for k in 0..40 {
            let i = (group * 211 + k * 37) % SITES;
            let site = &sites[i];
            if k % 7 == 0 {
                let _ = cat.retire_site(&site.id, &by());
            } else {
                // Moved to where another site is, so that areas change.
                let mut moved = sites[(i * 13 + group) % SITES].to_feature();
                moved["id"] = json!(site.id);
                moved["properties"]["name"] = json!(format!("moved {group}"));
                let _ = cat.replace_site(&site.id, &moved, &by());
            }
        }
        moments.push(Timestamp::now());
    }
    let plan = ObservationPlan {
        observations: 4_000,
        batch_size: 4_000,
        busiest_site_events: 0,
        off_site_share: 0.2,
        seed: 3,
    };
    let features: Vec<Value> = ObservationStream::new(plan, &placements).collect();
    let batch = json!({"type": "FeatureCollection", "features": features}).to_string();
    // Observations that name a retired site are refused; the rest are stored.
    let opts = ImportOptions {
        mode: ImportMode::Partial,
        ..ImportOptions::default()
    };
    let report = cat
        .import_observations(batch.as_bytes(), "test", &opts, |_, _| {})
        .unwrap();
    assert!(report.stored, "{}", report.summary);
    Fixture { cat, moments }
});

fn bbox(w: f64, s: f64, dw: f64, dh: f64) -> BBox {
    let e = if w + dw > 180.0 {
        w + dw - 360.0
    } else {
        w + dw
    };
    BBox::parse("bbox", &[w, s, e, (s + dh).min(90.0)]).unwrap()
}

fn ids(sites: &[Arc<Site>]) -> Vec<SiteId> {
    sites.iter().map(|s| s.id.clone()).collect()
}

/// Every event of a changes query, following `next` until the end.
fn all_changes(cat: &Catalogue, mut q: ChangesQuery) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let page = cat.changes(&q).unwrap();
        out.extend(page.events);
        match page.next {
            Some(c) => q.after = Some(c),
            None => return out,
        }
    }
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_past_of_an_area_read_by_index_is_the_past_read_whole(
        w in -180.0f64..180.0, s in -60.0f64..60.0, dw in 1.0f64..60.0, dh in 1.0f64..40.0,
        pick in 0usize..7, retired in any::<bool>(),
    ) {
        let f = &*FIXTURE;
        let t = f.moments[pick % f.moments.len()];
        let b = bbox(w, s, dw, dh);
        let all = Filter::default();
        let whole = if retired {
            f.cat.retired_sites(Some(t), None).unwrap()
        } else {
            f.cat.sites_as_of(t, None).unwrap()
        };
        let area = b.pieces();
        let by_index = if retired {
            f.cat.retired_sites(Some(t), Some(&area)).unwrap()
        } else {
            f.cat.sites_as_of(t, Some(&area)).unwrap()
        };
        prop_assert_eq!(ids(&by_index.bbox(&b, &all)), ids(&whole.bbox(&b, &all)));
        // The sites read by index are each as recorded then, not as now.
        for site in by_index.all(&all) {
            prop_assert_eq!(Some(site), whole.get(&site.id));
        }
    }

    #[test]
    fn the_past_read_page_by_page_in_id_order_is_the_past_read_whole(
        pick in 0usize..8, retired in any::<bool>(), page in 1usize..400, start in 0usize..2000,
    ) {
        let f = &*FIXTURE;
        // The moments between the edits, and now.
        let t = f.moments.get(pick).copied();
        let whole = match (retired, t) {
            (false, Some(t)) => f.cat.sites_as_of(t, None).unwrap(),
            (false, None) => (*f.cat.index()).clone(),
            (true, t) => f.cat.retired_sites(t, None).unwrap(),
        };
        let all = Filter::default();
        // The page starts after the site at `start`, or at the beginning.
        let start = start % (whole.len() + 1);
        let want: Vec<Arc<Site>> = whole.all(&all).skip(start).cloned().collect();
        let mut after = start.checked_sub(1).and_then(|i| whole.all(&all).nth(i)).map(|s| s.id.clone());
        let mut got = Vec::new();
        loop {
            let chunk = f.cat.sites_at_page(t, retired, after.as_ref(), page).unwrap();
            prop_assert!(chunk.len() <= page);
            let done = chunk.len() < page;
            after = chunk.last().map(|s| s.id.clone()).or(after);
            got.extend(chunk);
            if done {
                break;
            }
        }
        prop_assert_eq!(ids(&got), ids(&want));
        // Each as recorded then, not as now.
        prop_assert_eq!(got, want);
    }

    #[test]
    fn revisions_in_an_area_followed_page_by_page_are_those_of_a_scan(
        w in -180.0f64..180.0, s in -60.0f64..60.0, dw in 1.0f64..90.0, dh in 1.0f64..60.0,
        limit in 1usize..40, windowed in any::<bool>(),
    ) {
        let f = &*FIXTURE;
        let b = bbox(w, s, dw, dh);
        let (since, until) = if windowed { (Some(f.moments[1]), Some(f.moments[4])) } else { (None, None) };
        let q = |bbox: Option<BBox>, limit| ChangesQuery {
            bbox, since, until, kinds: vec![EventKind::Revision], limit, ..ChangesQuery::default()
        };
        let got = all_changes(&f.cat, q(Some(b), limit));
        let want: Vec<Value> = all_changes(&f.cat, q(None, 1000))
            .into_iter()
            .filter(|e| {
                let feature = json!({"type": "Feature", "id": e["properties"]["site_id"], "geometry": e["geometry"],
                    "properties": {"name": "x", "country": "ZZZ", "kind": "other"}});
                let site = Site::from_feature(&feature, IdPolicy::Required).unwrap();
                footprint_meets_bbox(&site.footprint, &b)
            })
            .collect();
        prop_assert_eq!(event_ids(&got), event_ids(&want));
    }

    #[test]
    fn every_kind_at_once_followed_page_by_page_is_one_page_of_all_and_each_kind_read_alone(
        w in -180.0f64..180.0, s in -60.0f64..60.0, dw in 1.0f64..120.0, dh in 1.0f64..60.0,
        limit in 1usize..40, boxed in any::<bool>(), windowed in any::<bool>(), declared in 0usize..3,
    ) {
        let f = &*FIXTURE;
        let b = bbox(w, s, dw, dh);
        let (since, until) = if windowed { (Some(f.moments[1]), None) } else { (None, None) };
        let declaration = match declared {
            0 => vec![],
            1 => vec![Declaration::Undeclared],
            _ => vec![Declaration::Declared],
        };
        let q = |kinds: Vec<EventKind>, limit| ChangesQuery {
            bbox: boxed.then_some(b), since, until, declaration: declaration.clone(), kinds, limit,
            ..ChangesQuery::default()
        };
        // Pages of a few events, each stream read only as far as its page
        // needs, against one page that reads every stream to its end.
        let paged = all_changes(&f.cat, q(vec![], limit));
        let whole = f.cat.changes(&q(vec![], 100_000)).unwrap();
        prop_assert!(whole.next.is_none());
        prop_assert_eq!(event_ids(&paged), event_ids(&whole.events));
        let times: Vec<&str> = paged.iter().map(|e| e["properties"]["time"].as_str().unwrap()).collect();
        prop_assert!(times.windows(2).all(|t| t[0] >= t[1]), "newest first");
        let mut alone: Vec<String> = [EventKind::Observation, EventKind::Revision, EventKind::Candidate]
            .into_iter()
            .flat_map(|k| event_ids(&all_changes(&f.cat, q(vec![k], 1000))))
            .collect();
        let mut together = event_ids(&paged);
        alone.sort();
        together.sort();
        prop_assert_eq!(together, alone);
    }

    #[test]
    fn observations_in_an_area_followed_page_by_page_are_those_of_a_scan(
        w in -180.0f64..180.0, s in -60.0f64..60.0, dw in 1.0f64..90.0, dh in 1.0f64..60.0,
        limit in 1usize..60, windowed in any::<bool>(), found in any::<bool>(),
    ) {
        let f = &*FIXTURE;
        let b = bbox(w, s, dw, dh);
        let since = windowed.then(|| Timestamp::parse("t", "2018-01-01T00:00:00Z").unwrap());
        let until = windowed.then(|| Timestamp::parse("t", "2021-06-30T00:00:00Z").unwrap());
        let finding = if found { vec![Finding::ALL[0], Finding::ALL[2]] } else { vec![] };
        let q = |bbox: Option<BBox>, limit| ChangesQuery {
            bbox, since, until, finding: finding.clone(), kinds: vec![EventKind::Observation], limit,
            ..ChangesQuery::default()
        };
        let got = all_changes(&f.cat, q(Some(b), limit));
        let rects = b.pieces();
        let want: Vec<Value> = all_changes(&f.cat, q(None, 1000))
            .into_iter()
            .filter(|e| {
                let [ow, os, oe, on] = sitewatch::model::geojson_bounds(&e["geometry"]).unwrap();
                rects.iter().any(|[w, s, e, n]| oe >= *w && ow <= *e && on >= *s && os <= *n)
            })
            .collect();
        prop_assert_eq!(event_ids(&got), event_ids(&want));
    }

    #[test]
    fn observation_pages_newest_first_are_the_scan_sorted_newest_first(
        w in -180.0f64..180.0, s in -60.0f64..60.0, dw in 1.0f64..120.0, dh in 1.0f64..80.0,
        limit in 1usize..200, boxed in any::<bool>(), windowed in any::<bool>(),
    ) {
        let f = &*FIXTURE;
        let b = bbox(w, s, dw, dh);
        let rects = b.pieces();
        let rects = boxed.then_some(rects.as_slice());
        let since = windowed.then(|| Timestamp::parse("t", "2017-03-01T00:00:00Z").unwrap());
        let until = windowed.then(|| Timestamp::parse("t", "2023-01-31T00:00:00Z").unwrap());
        let mut want = f.cat.observations_matching(rects, since, until, &[]).unwrap();
        want.sort_by(|a, b| (b.observed_at, &b.id).cmp(&(a.observed_at, &a.id)));
        let mut got = Vec::new();
        let mut before: Option<Before> = None;
        loop {
            let page = f.cat.observations_newest(rects, since, until, &[], before.as_ref(), limit).unwrap();
            prop_assert!(page.len() <= limit);
            let done = page.len() < limit;
            before = page.last().map(|o| Before { time: o.observed_at.to_rfc3339(), id: o.id.clone() });
            got.extend(page);
            if done {
                break;
            }
        }
        let got: Vec<&str> = got.iter().map(|o| o.id.as_str()).collect();
        let want_ids: Vec<&str> = want.iter().map(|o| o.id.as_str()).collect();
        prop_assert_eq!(&got, &want_ids);
        let count = f.cat.count_observations(rects, since, until, &[], 10_000).unwrap();
        if !boxed || b.pieces().len() == 1 {
            prop_assert_eq!(count, Some(want_ids.len()));
        }
    }
}

/// A filter's spatial conjunct around `site`, in CQL2 text: a point, a
/// MULTIPOINT, a square or a BBOX, met or within `metres`.
fn spatial_filter(site: &Site, shape: usize, metres: f64, offset: f64, and_kind: bool) -> String {
    let [w, s, e, n] = site.footprint.lonlat_bounds();
    let (lon, lat) = (
        ((w + e) / 2.0 + offset).clamp(-179.0, 179.0),
        ((s + n) / 2.0).clamp(-80.0, 80.0),
    );
    let square = |r: f64| {
        format!(
            "POLYGON(({a} {b}, {c} {b}, {c} {d}, {a} {d}, {a} {b}))",
            a = lon - r,
            b = lat - r,
            c = lon + r,
            d = lat + r
        )
    };
    let geometry = match shape % 4 {
        0 => format!("POINT({lon} {lat})"),
        1 => format!("MULTIPOINT(({lon} {lat}), ({} {}))", lon + 0.3, lat - 0.2),
        2 => square(0.05 + offset.abs()),
        _ => format!(
            "BBOX({}, {}, {}, {})",
            lon - 0.5,
            lat - 0.5,
            lon + 0.5,
            lat + 0.5
        ),
    };
    let test = if shape % 4 == 3 || (shape / 4).is_multiple_of(2) {
        format!("S_INTERSECTS(geometry, {geometry})")
    } else {
        format!("S_DWITHIN(geometry, {geometry}, {metres})")
    };
    if and_kind {
        format!("kind <> 'reactor' AND {test}")
    } else {
        test
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The tree's candidates for a spatial conjunct, filtered, are what the
    /// filter keeps of every live site.
    #[test]
    fn a_spatial_filter_narrowed_by_the_tree_keeps_what_a_scan_keeps(
        pick in 0usize..SITES, shape in 0usize..8, metres in 0.0f64..200_000.0,
        offset in -0.2f64..0.2, and_kind in any::<bool>(),
    ) {
        use sitewatch::query::cql::{self, Lang, Record};
        use sitewatch::query::{CollectionId, SiteRecord};
        let index = FIXTURE.cat.index();
        let all = Filter::default();
        let site = index.all(&all).nth(pick % index.len()).unwrap().clone();
        let text = spatial_filter(&site, shape, metres, offset, and_kind);
        let expr = cql::parse(&text, Lang::Text, CollectionId::Sites.properties()).unwrap();
        let keeps = |s: &Arc<Site>| {
            let r = SiteRecord { site: s.clone(), retired: false, stats: None };
            expr.matches(&r as &dyn Record)
        };
        let need = cql::required_place(&expr).expect("a spatial conjunct");
        let narrowed: Vec<Arc<Site>> =
            cql::sites_for(&index, need).into_iter().filter(|s| keeps(s)).collect();
        let scanned: Vec<Arc<Site>> = index.all(&all).filter(|s| keeps(s)).cloned().collect();
        prop_assert_eq!(ids(&narrowed), ids(&scanned), "{}", text);
    }
}
