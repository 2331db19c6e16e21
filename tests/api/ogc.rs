//! OGC API - Features over the real server: the landing page and collections,
//! CQL2 filters with `bbox` and `datetime` against a brute-force filter over
//! seeded data, keyset paging while writes land, CSV, limits, CORS and errors.

use crate::helpers::{BIN, SEED_SITES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sitewatch::model::{IdPolicy, Place, Site, Timestamp};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Synthetic sites added to the seed catalogue, so that every collection is
/// larger than one page.
pub const SYNTHETIC_SITES: usize = 300;
const SEED: u64 = 20261127;

/// A server on a database this test prepared.
pub struct Catalogue {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Catalogue {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sitewatch serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the address line");
    let base = line.trim().rsplit(' ').next().expect("address").to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line:?}");
    (child, base)
}

/// Observations at synthetic sites and at two unmatched places (which become
/// candidates), with times spread over ten years.
fn observation_batch(sites: &[Site]) -> Value {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let findings = [
        "new_construction",
        "excavation",
        "vehicle_activity",
        "no_change",
    ];
    let sensors = ["WorldView-3", "Sentinel-2", "Pleiades"];
    let mut features = Vec::new();
    for (i, s) in sites.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let [lon, lat] = s.footprint.first_position();
        for k in 0..(1 + i % 3) {
            let t = 1_420_070_400 + rng.random_range(0..315_360_000_i64);
            features.push(json!({"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {
                "observed_at": chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339(),
                "sensor": sensors[(i + k) % 3], "finding": findings[rng.random_range(0..4)],
                "site_id": s.id.as_str(), "external_id": format!("syn-{i}-{k}"), "source": "test",
            }}));
        }
    }
    for (j, [lon, lat]) in [
        [-30.5, -40.25],
        [-30.5001, -40.2501],
        [60.0, -55.0],
        [60.0001, -55.0],
    ]
    .into_iter()
    .enumerate()
    {
        features.push(json!({"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"observed_at": format!("2024-0{}-15T10:00:00Z", j + 1), "sensor": "Sentinel-2",
                "finding": "excavation", "external_id": format!("far-{j}"), "source": "test"}}));
    }
    json!({"type": "FeatureCollection", "features": features})
}

impl Catalogue {
    /// The seed catalogue plus [`SYNTHETIC_SITES`] synthetic sites and their
    /// observations, served with `extra` arguments.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("c.db");
        let sites_file = dir.path().join("sites.geojson");
        std::fs::write(
            &sites_file,
            sitewatch::synth::feature_collection(SYNTHETIC_SITES, SEED).to_string(),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["import", "sites"])
            .arg(&sites_file)
            .arg("--db")
            .arg(&db)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let (child, base) = serve(&db, extra);
        let batch = observation_batch(&sitewatch::synth::sites(SYNTHETIC_SITES, SEED));
        let resp = reqwest::blocking::Client::new()
            .post(format!("{base}/api/observations"))
            .header("Content-Type", "application/geo+json")
            .body(batch.to_string())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().unwrap());
        Self { child, base, dir }
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        reqwest::blocking::get(url).expect("request")
    }

    pub fn json(&self, path: &str) -> Value {
        let resp = self.get(path);
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().expect("a JSON body")
    }

    /// Every feature of an items query, following `next` links; checks that
    /// pages neither repeat nor skip and that `numberMatched` holds throughout.
    pub fn all_pages(&self, path: &str) -> (Vec<Value>, usize) {
        let mut url = path.to_string();
        let mut features = Vec::new();
        let mut pages = 0;
        let mut matched = None;
        loop {
            let page = self.json(&url);
            pages += 1;
            assert_eq!(
                page["numberReturned"].as_u64().unwrap() as usize,
                page["features"].as_array().unwrap().len()
            );
            let m = page["numberMatched"].as_u64().unwrap();
            assert_eq!(
                *matched.get_or_insert(m),
                m,
                "numberMatched changed at {url}"
            );
            features.extend(page["features"].as_array().unwrap().iter().cloned());
            match link(&page, "next") {
                Some(next) => url = next,
                None => break,
            }
        }
        assert_eq!(features.len() as u64, matched.unwrap());
        let ids: BTreeSet<String> = features.iter().map(id_of).collect();
        assert_eq!(ids.len(), features.len(), "a feature came twice");
        (features, pages)
    }
}

pub fn link(doc: &Value, rel: &str) -> Option<String> {
    doc["links"]
        .as_array()?
        .iter()
        .find(|l| l["rel"] == rel)
        .map(|l| l["href"].as_str().unwrap().to_string())
}

fn id_of(f: &Value) -> String {
    f["id"].as_str().unwrap().to_string()
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
}

fn time(v: &Value) -> Option<Timestamp> {
    v.as_str().map(|t| Timestamp::parse("t", t).unwrap())
}

/// Whether a footprint meets a box in the lon/lat plane, tested on a grid of
/// points and the vertices (enough for the small synthetic footprints, which
/// are far smaller than the boxes used here).
fn vertices(f: &Value) -> Vec<[f64; 2]> {
    fn walk(v: &Value, out: &mut Vec<[f64; 2]>) {
        match v.as_array() {
            Some(a) if a.len() >= 2 && a[0].is_number() => {
                out.push([a[0].as_f64().unwrap(), a[1].as_f64().unwrap()])
            }
            Some(a) => a.iter().for_each(|x| walk(x, out)),
            None => {}
        }
    }
    let mut out = Vec::new();
    walk(&f["geometry"]["coordinates"], &mut out);
    out
}

fn in_box([lon, lat]: [f64; 2], [w, s, e, n]: [f64; 4]) -> bool {
    (w..=e).contains(&lon) && (s..=n).contains(&lat)
}

fn site_of(f: &Value) -> Site {
    Site::from_feature(f, IdPolicy::Required).expect("a served site parses")
}

fn ids(features: &[Value]) -> BTreeSet<String> {
    features.iter().map(id_of).collect()
}

#[test]
fn the_landing_page_conformance_and_collections_describe_the_service() {
    let c = Catalogue::start(&[]);
    let landing = c.json("/api");
    for rel in ["self", "service-desc", "service-doc", "conformance", "data"] {
        let href = link(&landing, rel).unwrap_or_else(|| panic!("no {rel} link"));
        assert_eq!(c.get(&href).status(), 200, "{rel} {href}");
    }
    let conf = c.json("/api/conformance");
    let classes: Vec<&str> = conf["conformsTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for needed in [
        "conf/core",
        "conf/geojson",
        "conf/oas30",
        "conf/filter",
        "conf/create-replace-delete",
        "ogcapi-features-4/1.0/conf/update",
        "ogcapi-features-5/1.0/conf/schemas",
    ] {
        assert!(classes.iter().any(|c| c.ends_with(needed)), "{needed}");
    }
    let cols = c.json("/api/collections");
    let names: Vec<&str> = cols["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sites", "observations", "candidates"]);
    for col in cols["collections"].as_array().unwrap() {
        let bbox = &col["extent"]["spatial"]["bbox"][0];
        assert_eq!(bbox.as_array().unwrap().len(), 4, "{col}");
        assert!(bbox[0].as_f64().unwrap() <= bbox[2].as_f64().unwrap());
        let interval = &col["extent"]["temporal"]["interval"][0];
        assert!(time(&interval[0]).unwrap() <= time(&interval[1]).unwrap());
        let id = col["id"].as_str().unwrap();
        assert_eq!(c.json(&format!("/api/collections/{id}"))["id"], id);
        let items = link(col, "items").unwrap();
        assert!(c.json(&items)["features"].is_array());
        let q = c.get(&format!("/api/collections/{id}/queryables"));
        assert_eq!(q.headers()["content-type"], "application/schema+json");
        let q: Value = q.json().unwrap();
        assert!(q["properties"]["geometry"].is_object());
    }
    // The seed and synthetic sites span Korea and the world.
    let sites = &cols["collections"][0]["extent"]["spatial"]["bbox"][0];
    assert!(sites[0].as_f64().unwrap() < 0.0 && sites[2].as_f64().unwrap() > 125.0);
    let missing = c.get("/api/collections/satellites");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let docs = c.get("/api/docs");
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text()
            .unwrap()
            .contains("/api/collections/sites/items")
    );
}

/// One CQL2 case: the query string, and the same predicate over a served
/// feature, written out by hand.
struct Case {
    query: String,
    expect: Box<dyn Fn(&Value) -> bool>,
}

#[test]
fn cql2_filters_with_bbox_and_datetime_match_a_brute_force_filter_over_seeded_sites() {
    let c = Catalogue::start(&[]);
    let (all, _) = c.all_pages("/api/collections/sites/items?limit=10000");
    assert_eq!(all.len(), SEED_SITES + SYNTHETIC_SITES);
    let observed = all
        .iter()
        .filter(|f| !f["properties"]["last_observed_at"].is_null())
        .count();
    assert!(observed > 100, "only {observed} sites were observed");

    let world = [-180.0, -60.0, 180.0, 10.0];
    let p = [20.0, 10.0];
    let radius = 3_000_000.0;
    let (t0, t1) = ("2018-01-01T00:00:00Z", "2021-06-30T00:00:00Z");
    let (t0v, t1v) = (
        Timestamp::parse("t", t0).unwrap(),
        Timestamp::parse("t", t1).unwrap(),
    );
    let last = |f: &Value| time(&f["properties"]["last_observed_at"]);
    let meets_world = move |f: &Value| vertices(f).iter().any(|v| in_box(*v, world));
    let near = move |f: &Value| site_of(f).footprint.shape().distance_m(p) <= radius;
    let in_window = move |f: &Value| last(f).is_some_and(|t| t0v <= t && t <= t1v);
    let prop = |f: &Value, k: &str| f["properties"][k].as_str().unwrap_or("").to_string();
    let square = "POLYGON((-20 -30, 40 -30, 40 20, -20 20, -20 -30))";
    let cases = vec![
        Case {
            query: format!(
                "bbox=-180,-60,180,10&datetime={t0}/{t1}&filter={}",
                enc(
                    "kind IN ('reactor', 'missile_base', 'test_site') AND NOT (status = 'unknown')"
                )
            ),
            expect: Box::new(move |f| {
                meets_world(f)
                    && in_window(f)
                    && ["reactor", "missile_base", "test_site"].contains(&prop(f, "kind").as_str())
                    && prop(f, "status") != "unknown"
            }),
        },
        Case {
            query: format!(
                "datetime=../{t1}&filter={}",
                enc(&format!(
                    "S_DWITHIN(geometry, POINT({} {}), {radius})",
                    p[0], p[1]
                ))
            ),
            expect: Box::new(move |f| near(f) && last(f).is_some_and(|t| t <= t1v)),
        },
        Case {
            query: format!(
                "filter-lang=cql2-json&datetime=../{t1}&filter={}",
                enc(
                    &json!({"op": "s_dwithin", "args": [{"property": "geometry"},
                    {"type": "Point", "coordinates": p}, radius]})
                    .to_string()
                )
            ),
            expect: Box::new(move |f| near(f) && last(f).is_some_and(|t| t <= t1v)),
        },
        Case {
            query: format!(
                "bbox=-180,-60,180,10&filter={}",
                enc(&format!(
                    "T_INTERSECTS(last_observed_at, INTERVAL('{t0}', '..')) OR observation_count >= 3"
                ))
            ),
            expect: Box::new(move |f| {
                meets_world(f)
                    && (last(f).is_some_and(|t| t >= t0v)
                        || f["properties"]["observation_count"].as_u64().unwrap() >= 3)
            }),
        },
        Case {
            query: format!(
                "datetime=2019-01-01T00:00:00Z/..&filter={}",
                enc(&format!(
                    "S_INTERSECTS(geometry, {square}) AND declaration <> 'declared' AND name LIKE 'Synthetic site syn-00001%'"
                ))
            ),
            expect: Box::new(move |f| {
                let sq = Place::parse(
                    "g",
                    &json!({"type": "Polygon", "coordinates": [[[-20, -30], [40, -30], [40, 20], [-20, 20], [-20, -30]]]}),
                )
                .unwrap();
                site_of(f).footprint.shape().intersects(sq.shape().unwrap())
                    && prop(f, "declaration") != "declared"
                    && prop(f, "name").starts_with("Synthetic site syn-00001")
                    && last(f).is_some_and(|t| {
                        t >= Timestamp::parse("t", "2019-01-01T00:00:00Z").unwrap()
                    })
            }),
        },
        Case {
            query: format!(
                "filter={}",
                enc("last_observed_at IS NULL AND country = 'PRK'")
            ),
            expect: Box::new(move |f| last(f).is_none() && prop(f, "country") == "PRK"),
        },
    ];
    for case in &cases {
        let want: BTreeSet<String> = all.iter().filter(|f| (case.expect)(f)).map(id_of).collect();
        let (got, _) = c.all_pages(&format!(
            "/api/collections/sites/items?limit=7&{}",
            case.query
        ));
        assert_eq!(ids(&got), want, "{}", case.query);
        assert!(!want.is_empty(), "the case matches nothing: {}", case.query);
        assert!(
            want.len() < all.len(),
            "the case matches everything: {}",
            case.query
        );
    }
}

#[test]
fn observation_filters_bbox_datetime_and_sorting_match_a_brute_force_filter() {
    let c = Catalogue::start(&[]);
    let (all, _) = c.all_pages("/api/collections/observations/items?limit=10000");
    assert!(all.len() > 300, "{}", all.len());
    // Without sortby, newest observed first, ties by id descending.
    let key = |f: &Value| (time(&f["properties"]["observed_at"]).unwrap(), id_of(f));
    assert!(
        all.windows(2).all(|w| key(&w[0]) > key(&w[1])),
        "not newest first"
    );
    let b = [-100.0, -60.0, 100.0, 30.0];
    let (t0, t1) = ("2017-01-01T00:00:00Z", "2022-12-31T23:59:59Z");
    let (t0v, t1v) = (
        Timestamp::parse("t", t0).unwrap(),
        Timestamp::parse("t", t1).unwrap(),
    );
    let query = format!(
        "bbox=-100,-60,100,30&datetime={t0}/{t1}&finding=excavation,vehicle_activity&filter={}&sortby=-observed_at&limit=3",
        enc("sensor <> 'Pleiades' AND S_DWITHIN(geometry, POINT(0 -15), 5000000)")
    );
    let want: Vec<&Value> = all
        .iter()
        .filter(|f| {
            let pr = &f["properties"];
            let pt = vertices(f)[0];
            let t = time(&pr["observed_at"]).unwrap();
            in_box(pt, b)
                && t0v <= t
                && t <= t1v
                && ["excavation", "vehicle_activity"].contains(&pr["finding"].as_str().unwrap())
                && pr["sensor"] != "Pleiades"
                && sitewatch::geodesy::geodesic_distance(pt, [0.0, -15.0]) <= 5_000_000.0
        })
        .collect();
    assert!(want.len() > 5, "{}", want.len());
    let (got, pages) = c.all_pages(&format!("/api/collections/observations/items?{query}"));
    assert!(pages > 1);
    assert_eq!(ids(&got), want.iter().map(|f| id_of(f)).collect());
    let times: Vec<Timestamp> = got
        .iter()
        .map(|f| time(&f["properties"]["observed_at"]).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "not newest first");
    // The collection's own order, paged through its indexes: the same
    // observations as the filter over every page, in the same order.
    let (t0, t1) = ("2018-01-01T00:00:00Z", "2022-12-31T23:59:59Z");
    for query in [
        format!("bbox=-100,-60,100,30&datetime={t0}/{t1}&limit=4"),
        format!("datetime={t0}/{t1}&finding=excavation&limit=5"),
        "bbox=170,-60,-170,60&limit=3".to_owned(),
        "limit=50".to_owned(),
    ] {
        // A box is tested exactly on the page only, so it has no count:
        // the `next` links are followed here without one.
        let mut got: Vec<Value> = Vec::new();
        let mut url = format!("/api/collections/observations/items?{query}");
        loop {
            let page = c.json(&url);
            got.extend(page["features"].as_array().unwrap().iter().cloned());
            match link(&page, "next") {
                Some(next) => url = next,
                None => break,
            }
        }
        let from = |k: &str| query.contains(k);
        let want: Vec<String> = all
            .iter()
            .filter(|f| {
                let pr = &f["properties"];
                let pt = vertices(f)[0];
                let t = time(&pr["observed_at"]).unwrap();
                let boxed = if from("bbox=170") {
                    pt[0] >= 170.0 || pt[0] <= -170.0
                } else {
                    !from("bbox") || in_box(pt, b)
                };
                boxed
                    && (!from("datetime")
                        || (Timestamp::parse("t", t0).unwrap() <= t
                            && t <= Timestamp::parse("t", t1).unwrap()))
                    && (!from("finding") || pr["finding"] == "excavation")
            })
            .map(id_of)
            .collect();
        assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), want, "{query}");
        if !from("bbox=170") {
            assert!(want.len() > 5, "{query}: {}", want.len());
        }
    }
    let one = &got[0];
    let single = c.json(&format!(
        "/api/collections/observations/items/{}",
        id_of(one)
    ));
    for key in ["id", "geometry", "properties"] {
        assert_eq!(single[key], one[key], "{key}");
    }
    assert_eq!(
        c.get("/api/collections/observations/items/obs-none")
            .status(),
        404
    );
}

#[test]
fn candidates_are_items_too_filtered_by_state_and_time() {
    let c = Catalogue::start(&[]);
    let doc =
        c.json("/api/collections/candidates/items?state=open&datetime=2000-01-01T00:00:00Z/..");
    assert_eq!(doc["numberMatched"], 2, "{doc}");
    let first = &doc["features"][0];
    assert_eq!(first["geometry"]["type"], "Point");
    let id = id_of(first);
    assert_eq!(
        c.json(&format!("/api/collections/candidates/items/{id}"))["id"],
        id.as_str()
    );
    let none = c.json("/api/collections/candidates/items?datetime=..%2F2001-01-01T00:00:00Z");
    assert_eq!(none["numberMatched"], 0);
    let far = c.json(&format!(
        "/api/collections/candidates/items?filter={}",
        enc("S_DWITHIN(geometry, POINT(60 -55), 1000) AND observation_count = 2")
    ));
    assert_eq!(far["numberMatched"], 1, "{far}");
}

#[test]
fn pages_follow_next_and_prev_links_and_stay_stable_while_sites_are_added() {
    let c = Catalogue::start(&[]);
    let (all, pages) = c.all_pages("/api/collections/sites/items");
    assert_eq!(all.len(), SEED_SITES + SYNTHETIC_SITES);
    assert_eq!(pages, 4, "100 per page by default");
    let first = c.json("/api/collections/sites/items?sortby=-name,country&limit=50");
    assert!(link(&first, "prev").is_none());
    let next = link(&first, "next").unwrap();
    let second = c.json(&next);
    // A site that sorts before the cursor lands between the two requests: the
    // next page is the same, and going back gives the first page again.
    let new_site = json!({"type": "Feature", "id": "zzz-new",
        "geometry": {"type": "Polygon", "coordinates": [[[10.0, 10.0], [10.01, 10.0], [10.01, 10.01], [10.0, 10.0]]]},
        "properties": {"name": "Zzz new site", "country": "FRA", "kind": "other"}});
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/collections/sites/items", c.base))
        .header("Content-Type", "application/geo+json")
        .body(new_site.to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let again = c.json(&next);
    assert_eq!(
        ids(again["features"].as_array().unwrap()),
        ids(second["features"].as_array().unwrap())
    );
    assert_eq!(
        again["numberMatched"],
        SEED_SITES as u64 + SYNTHETIC_SITES as u64 + 1
    );
    let back = c.json(&link(&again, "prev").unwrap());
    let back_ids: Vec<String> = back["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    let first_ids: Vec<String> = first["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    // The page before is the one the client saw first; the new site, which
    // sorts first by -name, heads a fresh first page.
    assert_eq!(back_ids, first_ids);
    let fresh = c.json("/api/collections/sites/items?sortby=-name,country&limit=50");
    assert_eq!(fresh["features"][0]["id"], "zzz-new");
    let names: Vec<String> = first["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.windows(2).all(|w| w[0] >= w[1]),
        "not sorted by -name"
    );
}

#[test]
fn items_come_as_csv_with_wkt_geometry_that_parses_back() {
    let c = Catalogue::start(&[]);
    let json = c.json("/api/collections/sites/items?bbox=124,37,131,43&limit=20");
    let resp = reqwest::blocking::Client::new()
        .get(format!(
            "{}/api/collections/sites/items?bbox=124,37,131,43&limit=20",
            c.base
        ))
        .header("Accept", "text/csv")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        resp.headers()["link"]
            .to_str()
            .unwrap()
            .contains("rel=\"next\"")
    );
    let text = resp.text().unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(headers.first().map(String::as_str), Some("id"));
    assert_eq!(headers.last().map(String::as_str), Some("wkt"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let features = json["features"].as_array().unwrap();
    assert_eq!(rows.len(), features.len());
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    for (row, f) in rows.iter().zip(features) {
        assert_eq!(&row[col("id")], f["id"].as_str().unwrap());
        assert_eq!(&row[col("name")], f["properties"]["name"].as_str().unwrap());
        let sources: Value = serde_json::from_str(&row[col("sources")]).unwrap();
        assert_eq!(sources, f["properties"]["sources"]);
        let wkt = &row[col("wkt")];
        let ring = wkt
            .strip_prefix("POLYGON ((")
            .or_else(|| wkt.strip_prefix("MULTIPOLYGON ((("))
            .unwrap_or_else(|| panic!("{wkt}"));
        let first: Vec<f64> = ring
            .split(',')
            .next()
            .unwrap()
            .split_whitespace()
            .map(|n| n.trim_end_matches(')').parse().unwrap())
            .collect();
        assert_eq!(first, vertices(f)[0].to_vec(), "{}", f["id"]);
    }
    let obs = c
        .get("/api/collections/observations/items?f=csv&limit=5")
        .text()
        .unwrap();
    let mut reader = csv::Reader::from_reader(obs.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r[r.len() - 1].starts_with("POINT (")));
}

#[test]
fn a_limit_above_the_maximum_is_clamped_and_the_answer_says_so() {
    let c = Catalogue::start(&[]);
    let resp = c.get("/api/collections/sites/items?limit=20000");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["sitewatch-limit-clamped"], "20000 -> 10000");
    let doc: Value = resp.json().unwrap();
    assert_eq!(
        doc["limitClamped"],
        json!({"requested": 20000, "applied": 10000})
    );
    assert_eq!(
        doc["numberReturned"],
        SEED_SITES as u64 + SYNTHETIC_SITES as u64
    );
    assert!(
        c.json("/api/collections/sites/items?limit=5")
            .get("limitClamped")
            .is_none()
    );
}

#[test]
fn bad_filters_and_unknown_parameters_are_problems_naming_the_parameter() {
    let c = Catalogue::start(&[]);
    for (query, param) in [
        ("filter=colour%20%3D%20'red'", "filter"),
        ("filter=kind%20%3D", "filter"),
        ("filter-lang=sql&filter=kind%3D'reactor'", "filter-lang"),
        ("sortby=colour", "sortby"),
        (
            "datetime=2020-01-01T00:00:00Z/2019-01-01T00:00:00Z",
            "datetime",
        ),
        ("datetime=yesterday", "datetime"),
        ("f=xml", "f"),
        ("colour=red", "colour"),
        ("crs=http://www.opengis.net/def/crs/EPSG/0/3857", "crs"),
        ("after=a&before=b", "before"),
        ("limit=0", "limit"),
    ] {
        let resp = c.get(&format!("/api/collections/sites/items?{query}"));
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().unwrap();
        assert_eq!(problem["parameter"], param, "{query}: {problem}");
    }
    let resp = reqwest::blocking::Client::new()
        .patch(format!("{}/api/collections/sites/items", c.base))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.headers()["allow"].to_str().unwrap().contains("POST"));
}

#[test]
fn cors_is_off_by_default_and_on_for_the_origins_named() {
    let dir = tempfile::tempdir().unwrap();
    let preflight = |base: &str| {
        reqwest::blocking::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("{base}/api/collections/sites/items"),
            )
            .header("Origin", "https://maps.example.org")
            .header("Access-Control-Request-Method", "GET")
            .send()
            .unwrap()
    };
    let plain_get = |base: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{base}/api/collections"))
            .header("Origin", "https://maps.example.org")
            .send()
            .unwrap()
    };
    let (mut off, base) = serve(&dir.path().join("a.db"), &[]);
    assert!(
        plain_get(&base)
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(
        preflight(&base)
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    off.kill().unwrap();
    off.wait().unwrap();
    let (mut on, base) = serve(
        &dir.path().join("b.db"),
        &["--cors-origin", "https://maps.example.org"],
    );
    let pre = preflight(&base);
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://maps.example.org"
    );
    assert_eq!(
        plain_get(&base).headers()["access-control-allow-origin"],
        "https://maps.example.org"
    );
    let other = reqwest::blocking::Client::new()
        .get(format!("{base}/api/collections"))
        .header("Origin", "https://evil.example.com")
        .send()
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    on.kill().unwrap();
    on.wait().unwrap();
}

/// Where a test's external program writes, kept with the catalogue.
pub fn scratch(c: &Catalogue, name: &str) -> PathBuf {
    c.dir.path().join(name)
}

#[test]
fn every_collection_links_a_schema_with_its_types_even_when_it_has_no_features() {
    let s = crate::helpers::Server::start();
    let empty = s.geojson("/api/collections/candidates/items");
    assert_eq!(empty["features"].as_array().unwrap().len(), 0);
    for id in ["sites", "observations", "candidates"] {
        let col = s.get_json(&format!("/api/collections/{id}"), "application/json");
        let href =
            link(&col, "http://www.opengis.net/def/rel/ogc/1.0/schema").expect("a schema link");
        let described: Vec<&str> = col["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                l["rel"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case("describedby")
            })
            .map(|l| l["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            described,
            ["application/schema+json", "application/xml"],
            "{id}"
        );
        let path = href
            .split_once("/api/")
            .map(|(_, p)| format!("/api/{p}"))
            .unwrap();
        let schema = s.get_json(&path, "application/schema+json");
        assert_eq!(schema["$id"], href.as_str());
        let props = schema["properties"].as_object().unwrap();
        assert_eq!(props["geometry"]["x-ogc-role"], "primary-geometry", "{id}");
        let times: Vec<&String> = props
            .iter()
            .filter(|(_, p)| p["format"] == "date-time")
            .map(|(k, _)| k)
            .collect();
        assert!(!times.is_empty(), "{id}");
        let xsd = s.get(&format!("{path}?f=xsd"));
        assert_eq!(xsd.headers()["content-type"], "application/xml");
        assert!(xsd.text().unwrap().contains("xs:dateTime"), "{id}");
    }
    let candidates = s.get_json(
        "/api/collections/candidates/schema",
        "application/schema+json",
    );
    assert_eq!(
        candidates["properties"]["geometry"]["format"],
        "geometry-point"
    );
    assert_eq!(
        candidates["properties"]["created_at"]["format"],
        "date-time"
    );
    assert_eq!(
        candidates["properties"]["created_at"]["x-ogc-role"],
        "primary-instant"
    );
    let sites = s.get_json("/api/collections/sites/schema", "application/schema+json");
    assert_eq!(
        sites["properties"]["last_observed_at"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        sites["properties"]["sources"]["items"]["properties"]["title"]["type"],
        "string"
    );
    assert_eq!(s.get("/api/collections/satellites/schema").status(), 404);
    assert_eq!(s.get("/api/collections/sites/schema?f=gml").status(), 400);
}
