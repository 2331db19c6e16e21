//! Site items over HTTP: bbox, filters, paging, single items, unknown paths.

use crate::helpers::{SEED_SITES, Server, ids, seed};
use std::collections::BTreeSet;

#[test]
fn items_page_through_the_whole_catalogue_in_id_order_without_repeats() {
    let s = Server::start();
    let mut url = "/api/collections/sites/items?limit=7".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let doc = s.geojson(&url);
        assert_eq!(doc["numberMatched"], SEED_SITES as u64);
        seen.extend(ids(&doc));
        pages += 1;
        let next = doc["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
            .map(|l| l["href"].as_str().unwrap().to_string());
        match next {
            Some(href) => url = href.strip_prefix(&s.base).unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(pages, SEED_SITES.div_ceil(7));
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    let seed_ids: Vec<String> = seed()["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(seen, seed_ids);
}

#[test]
fn a_bbox_returns_the_sites_whose_footprints_it_meets() {
    let s = Server::start();
    let doc = s.geojson("/api/collections/sites/items?bbox=125.70,39.75,125.80,39.85");
    assert!(ids(&doc).contains(&"yongbyon".to_string()));
    assert!(!ids(&doc).contains(&"punggye-ri".to_string()));
    let empty = s.geojson("/api/collections/sites/items?bbox=-40,0,-30,10");
    assert_eq!(empty["features"].as_array().unwrap().len(), 0);
    let across = s.geojson("/api/collections/sites/items?bbox=170,-10,-170,10");
    assert_eq!(across["numberMatched"], 0);
    let korea = s.geojson("/api/collections/sites/items?bbox=124,37,131,43&kind=launch_site");
    assert!(ids(&korea).contains(&"sohae".to_string()));
    assert!(
        korea["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["properties"]["kind"] == "launch_site")
    );
}

#[test]
fn a_site_is_served_as_a_geojson_feature_and_an_unknown_one_is_404() {
    let s = Server::start();
    let f = s.geojson("/api/collections/sites/items/punggye-ri");
    assert_eq!(f["type"], "Feature");
    assert_eq!(f["id"], "punggye-ri");
    assert_eq!(f["properties"]["declaration"], "acknowledged");
    assert!(!f["properties"]["sources"].as_array().unwrap().is_empty());
    for path in [
        "/api/collections/sites/items/nowhere",
        "/api/collections/sites/items/..%2F..%2Fetc",
        "/no/such/path",
    ] {
        let resp = s.get(path);
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
}

#[test]
fn intersects_takes_a_geojson_polygon() {
    let s = Server::start();
    let poly = r#"{"type":"Polygon","coordinates":[[[125.70,39.75],[125.80,39.75],[125.80,39.85],[125.70,39.85],[125.70,39.75]]]}"#;
    let doc = s.geojson(&format!(
        "/api/collections/sites/items?intersects={}",
        urlencode(poly)
    ));
    assert_eq!(ids(&doc), ["yongbyon"]);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn health_reports_the_number_of_live_sites() {
    let s = Server::start();
    let h = s.get_json("/healthz", "application/json");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["sites"], SEED_SITES as u64);
}

#[test]
fn position_quality_filters_alike_as_a_parameter_and_in_cql2_and_every_seed_site_has_one() {
    let s = Server::start();
    let all = s.geojson("/api/collections/sites/items?limit=1000");
    let mut loose: Vec<String> = all["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            let q = f["properties"]["position_quality"].as_str().unwrap();
            assert_ne!(q, "unknown", "{}", f["id"]);
            q == "approximate" || q == "unverified"
        })
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    loose.sort();
    assert!(loose.contains(&"inp-pyongyang".to_string()), "{loose:?}");
    let by_param =
        s.geojson("/api/collections/sites/items?position_quality=approximate,unverified");
    assert_eq!(ids(&by_param), loose);
    let cql = urlencode("position_quality IN ('approximate','unverified')");
    let by_cql = s.geojson(&format!("/api/collections/sites/items?filter={cql}"));
    assert_eq!(ids(&by_cql), loose);
    let near = s.geojson("/api/nearby?lon=125.75&lat=39.0&limit=3&position_quality=verified");
    for f in near["features"].as_array().unwrap() {
        assert_eq!(
            f["properties"]["position_quality"], "verified",
            "{}",
            f["id"]
        );
    }
}
