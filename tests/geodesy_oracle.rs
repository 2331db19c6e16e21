//! The index against an outside oracle: proximity answers computed by PostGIS 3.3
//! `geography` on the WGS84 spheroid for 2,000 small sites (see
//! `tests/fixtures/geodesy/README.md`).
//!
//! Two independent implementations of geodesic distance to a polygon agree only to
//! a tolerance, so distances must match within 0.1 % or 1 m, whichever is larger;
//! a site that close to the radius may fall on either side of it, and sites whose
//! distances are that close may come in either order.
//!
//! `cargo test --test geodesy_oracle -- --nocapture` prints the largest errors seen.

use serde_json::Value;
use sitewatch::index::{Filter, SiteIndex};
use sitewatch::model::{IdPolicy, LonLat, Meters, Site};
use std::collections::HashMap;
use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/geodesy");

fn tolerance(metres: f64) -> f64 {
    (metres * 1e-3).max(1.0)
}

fn read_json(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load_index() -> SiteIndex {
    let fc = read_json("sites.geojson");
    let sites: Vec<Arc<Site>> = fc["features"]
        .as_array()
        .expect("a FeatureCollection")
        .iter()
        .map(|f| {
            Site::from_feature(f, IdPolicy::Required)
                .map(Arc::new)
                .unwrap_or_else(|e| panic!("fixture site {}: {e}", f["id"]))
        })
        .collect();
    assert_eq!(sites.len(), 2_000);
    SiteIndex::build(sites)
}

struct Query {
    number: usize,
    kind: String,
    point: LonLat,
    radius_m: f64,
    k: usize,
    within: Vec<(String, f64)>,
    nearest: Vec<(String, f64)>,
}

impl Query {
    fn describe(&self) -> String {
        format!(
            "query #{} ({}, lon {}, lat {}, radius {} m, k {})",
            self.number,
            self.kind,
            self.point.lon(),
            self.point.lat(),
            self.radius_m,
            self.k
        )
    }
}

fn id_distances(v: &Value) -> Vec<(String, f64)> {
    v.as_array()
        .expect("a list of [id, metres]")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().expect("an id").to_owned(),
                pair[1].as_f64().expect("metres"),
            )
        })
        .collect()
}

fn load_queries() -> Vec<Query> {
    let expected = read_json("expected.json");
    let queries: Vec<Query> = expected["queries"]
        .as_array()
        .expect("a list of queries")
        .iter()
        .enumerate()
        .map(|(number, q)| Query {
            number,
            kind: q["kind"].as_str().unwrap_or("?").to_owned(),
            point: LonLat::parse(
                "query",
                q["lon"].as_f64().expect("lon"),
                q["lat"].as_f64().expect("lat"),
            )
            .expect("an in-range query point"),
            radius_m: q["radius_m"].as_f64().expect("radius_m"),
            k: q["k"].as_u64().expect("k") as usize,
            within: id_distances(&q["within"]),
            nearest: id_distances(&q["nearest"]),
        })
        .collect();
    assert!(!queries.is_empty());
    queries
}

/// The largest disagreements with the oracle, and where they happened.
#[derive(Default)]
struct Errors {
    compared: usize,
    max_abs: f64,
    max_abs_at: String,
    max_rel: f64,
    max_rel_at: String,
}

impl Errors {
    /// Records one distance and says whether it is within tolerance.
    fn record(&mut self, at: impl Fn() -> String, got: f64, want: f64) -> bool {
        self.compared += 1;
        let abs = (got - want).abs();
        if abs > self.max_abs {
            self.max_abs = abs;
            self.max_abs_at = at();
        }
        if want > 0.0 && abs / want > self.max_rel {
            self.max_rel = abs / want;
            self.max_rel_at = at();
        }
        abs <= tolerance(want)
    }

    fn report(&self, what: &str) {
        eprintln!(
            "{what}: {} distances compared with PostGIS; max absolute error {:.6} m ({}); \
             max relative error {:.3e} ({})",
            self.compared, self.max_abs, self.max_abs_at, self.max_rel, self.max_rel_at
        );
    }
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} disagreements with PostGIS:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn nearby_finds_the_sites_postgis_finds_within_the_radius_at_the_same_distances() {
    let index = load_index();
    let mut errors = Errors::default();
    let mut problems = Vec::new();
    let mut edge_cases = 0;
    for q in load_queries() {
        let radius = Meters::parse("radius_m", q.radius_m).expect("a valid radius");
        let got = index.nearby(q.point, radius, &Filter::default(), usize::MAX);
        let got: HashMap<&str, f64> = got
            .iter()
            .map(|h| (h.site.id.as_str(), h.distance.get()))
            .collect();
        let edge = q.radius_m - tolerance(q.radius_m);

        for (id, want) in &q.within {
            match got.get(id.as_str()) {
                Some(&d) => {
                    let at = || format!("{}, site {id}: {d} m vs {want} m", q.describe());
                    if !errors.record(at, d, *want) {
                        problems.push(format!("distance off: {}", at()));
                    }
                }
                None if *want >= edge => edge_cases += 1,
                None => problems.push(format!(
                    "missing: {}, site {id} at {want} m per PostGIS",
                    q.describe()
                )),
            }
        }
        let known: HashMap<&str, f64> = q
            .within
            .iter()
            .chain(&q.nearest)
            .map(|(id, d)| (id.as_str(), *d))
            .collect();
        for (&id, &d) in &got {
            if q.within.iter().any(|(w, _)| w == id) {
                continue;
            }
            if let Some(&want) = known.get(id) {
                let at = || format!("{}, site {id}: {d} m vs {want} m", q.describe());
                if !errors.record(at, d, want) {
                    problems.push(format!("distance off: {}", at()));
                }
            }
            if d >= edge {
                edge_cases += 1;
            } else {
                problems.push(format!(
                    "extra: {}, site {id} at {d} m, beyond the radius per PostGIS{}",
                    q.describe(),
                    known.get(id).map_or(String::new(), |w| format!(" ({w} m)"))
                ));
            }
        }
    }
    errors.report("nearby");
    eprintln!("nearby: {edge_cases} sites within tolerance of the radius fell on the other side");
    assert_no_problems("nearby", &problems);
}

#[test]
fn nearest_finds_the_sites_postgis_ranks_nearest_up_to_near_ties() {
    let index = load_index();
    let mut errors = Errors::default();
    let mut problems = Vec::new();
    let mut near_ties = 0;
    for q in load_queries() {
        let got = index.nearest(q.point, q.k, &Filter::default());
        let oracle = &q.nearest;
        assert!(oracle.len() >= q.k, "{}: short oracle list", q.describe());
        if got.len() != q.k {
            problems.push(format!("{}: {} results", q.describe(), got.len()));
            continue;
        }
        for (rank, hit) in got.iter().enumerate() {
            let (id, d) = (hit.site.id.as_str(), hit.distance.get());
            let Some(j) = oracle.iter().position(|(o, _)| o == id) else {
                problems.push(format!(
                    "unexpected: {}, rank {rank} is site {id} at {d} m, not among PostGIS's {} nearest \
                     (rank {rank} there is {} at {} m)",
                    q.describe(),
                    oracle.len(),
                    oracle[rank].0,
                    oracle[rank].1
                ));
                continue;
            };
            if j != rank {
                near_ties += 1;
            }
            let want = oracle[j].1;
            let at = || format!("{}, site {id}: {d} m vs {want} m", q.describe());
            if !errors.record(at, d, want) {
                problems.push(format!("distance off: {}", at()));
            }
            // The site PostGIS ranks j may stand at `rank` only if the two ranks'
            // distances are a near-tie; this also lets the k-th be any of the next
            // three that tie with it.
            let rank_want = oracle[rank].1;
            if (want - rank_want).abs() > tolerance(rank_want) {
                problems.push(format!(
                    "misranked: {}, rank {rank} is site {id} ({d} m), which PostGIS ranks {j} \
                     at {want} m; its rank {rank} is {} at {rank_want} m",
                    q.describe(),
                    oracle[rank].0
                ));
            }
        }
    }
    errors.report("nearest");
    eprintln!("nearest: {near_ties} results ranked differently from PostGIS within a near-tie");
    assert_no_problems("nearest", &problems);
}
