//! Proximity over HTTP, compared with a brute-force scan of the seed catalogue.

use crate::helpers::{Server, ids, seed};
use sitewatch::model::{IdPolicy, Site};

fn seed_sites() -> Vec<Site> {
    seed()["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Site::from_feature(f, IdPolicy::Required).unwrap())
        .collect()
}

/// Every seed site's distance from a point, nearest first, ties by id.
fn brute(lon: f64, lat: f64) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = seed_sites()
        .iter()
        .map(|s| (s.id.to_string(), s.footprint.shape().distance_m([lon, lat])))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    all
}

fn answers(doc: &serde_json::Value) -> Vec<(String, f64)> {
    doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["properties"]["distance_m"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn assert_same(got: &[(String, f64)], want: &[(String, f64)]) {
    assert_eq!(got.len(), want.len(), "got {got:?}\nwant {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 0.01, "{} at {} vs {}", g.0, g.1, w.1);
    }
}

#[test]
fn nearby_at_a_point_inside_yongbyon_returns_yongbyon_first_at_zero_metres() {
    let s = Server::start();
    let doc = s.geojson("/api/nearby?lon=125.754&lat=39.8");
    let got = answers(&doc);
    assert_eq!(got[0], ("yongbyon".to_string(), 0.0));
    assert_eq!(got.len(), 10);
    assert_same(&got, &brute(125.754, 39.8)[..10]);
}

#[test]
fn nearby_with_a_radius_returns_exactly_the_sites_within_it_sorted_by_distance() {
    let s = Server::start();
    for (lon, lat, r) in [
        (125.5, 39.9, 30_000.0),
        (127.5, 39.1, 50_000.0),
        (129.0, 41.3, 5_000.0),
        (0.0, 0.0, 100_000.0),
    ] {
        let doc = s.geojson(&format!("/api/nearby?lon={lon}&lat={lat}&radius_m={r}"));
        let want: Vec<_> = brute(lon, lat)
            .into_iter()
            .filter(|(_, d)| *d <= r)
            .collect();
        assert_same(&answers(&doc), &want);
    }
}

#[test]
fn nearby_filters_by_declaration_and_kind() {
    let s = Server::start();
    let doc = s.geojson(
        "/api/nearby?lon=125.754&lat=39.8&limit=50&declaration=undeclared&kind=missile_base",
    );
    let sites = seed_sites();
    let expected = sites
        .iter()
        .filter(|s| s.declaration.as_str() == "undeclared" && s.kind.as_str() == "missile_base")
        .count();
    assert!(expected > 3);
    assert_eq!(doc["features"].as_array().unwrap().len(), expected);
    for f in doc["features"].as_array().unwrap() {
        assert_eq!(f["properties"]["declaration"], "undeclared");
        assert_eq!(f["properties"]["kind"], "missile_base");
    }
}

#[test]
fn every_reported_point_in_the_reference_lies_inside_its_seed_footprint() {
    let s = Server::start();
    let csv = include_str!("../fixtures/dprk_sites.csv");
    let mut checked = 0;
    for line in csv.lines().skip(1) {
        // id is the first column and lat/lon are the first purely numeric pair after the names.
        let id = line.split(',').next().unwrap();
        let Some((lat, lon)) = reported_point(line) else {
            continue;
        };
        let doc = s.geojson(&format!("/api/nearby?lon={lon}&lat={lat}&limit=1"));
        assert_eq!(ids(&doc), [id], "reported point of {id}");
        assert_eq!(doc["features"][0]["properties"]["distance_m"], 0.0, "{id}");
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} reference points checked");
}

/// The `lat,lon` columns of a reference row (CSV fields 4 and 5, quotes respected).
fn reported_point(line: &str) -> Option<(f64, f64)> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    Some((fields.get(3)?.parse().ok()?, fields.get(4)?.parse().ok()?))
}

#[test]
fn bad_parameters_get_400_problem_json_naming_the_parameter() {
    let s = Server::start();
    for (query, param) in [
        ("/api/nearby?lon=125&lat=91", "lat"),
        ("/api/nearby?lon=125&lat=39&radius_m=-5", "radius_m"),
        ("/api/nearby?lon=125&lat=39&limit=abc", "limit"),
        ("/api/nearby?lat=39", "lon"),
        ("/api/nearby?lon=125&lat=39&kind=volcano", "kind"),
        ("/api/collections/sites/items?bbox=1,2,3", "bbox"),
        ("/api/collections/sites/items?bbox=0,10,1,5", "bbox"),
        ("/api/collections/sites/items?limit=0", "limit"),
        (
            "/api/collections/sites/items?intersects=%7B%22type%22%3A%22Polygon%22%7D",
            "intersects.coordinates",
        ),
    ] {
        let resp = s.get(query);
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["parameter"], param, "{query}: {body}");
        assert_eq!(body["status"], 400);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(param.split('.').next().unwrap()),
            "{query}: {body}"
        );
    }
}
