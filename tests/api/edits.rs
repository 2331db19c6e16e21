//! Site edits over HTTP: create, replace, retire, with write authority, and
//! reads of the record as of a moment and with retired sites.

use crate::helpers::{SEED_SITES, Server, ids};
use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use sitewatch::model::Timestamp;
use std::time::Duration;

const ITEMS: &str = "/api/collections/sites/items";

/// A valid site north-east of Pyongyang, far enough from every seed site that
/// only it lies in `TEST_BBOX`.
fn feature(id: Option<&str>, status: &str) -> Value {
    let mut f = json!({"type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[127.30, 40.70], [127.32, 40.70], [127.32, 40.72], [127.30, 40.72], [127.30, 40.70]]]},
        "properties": {"name": "Edited test site", "country": "PRK", "kind": "storage",
                       "declaration": "undeclared", "status": status, "confidence": "low"}});
    if let Some(id) = id {
        f["id"] = json!(id);
    }
    f
}

const TEST_BBOX: &str = "bbox=127.29,40.69,127.33,40.73";

/// Sends a write with a GeoJSON body, if any, and a bearer token, if any.
fn send(
    s: &Server,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Response {
    let mut req = reqwest::blocking::Client::new().request(method, format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = match body {
        Some(b) => req
            .header("content-type", "application/geo+json")
            .body(b.to_string()),
        // Every write declares JSON, so a form on another site cannot forge one.
        None => req.header("content-type", "application/json").body("{}"),
    };
    req.send().expect("request")
}

fn write(s: &Server, method: Method, path: &str, body: Option<&Value>) -> Response {
    send(s, method, path, body, None)
}

/// Sends a body exactly as given, with `content_type` if any.
fn send_raw(s: &Server, path: &str, content_type: Option<&str>, body: &str) -> Response {
    let mut req = reqwest::blocking::Client::new()
        .post(format!("{}{path}", s.base))
        .body(body.to_string());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().expect("request")
}

/// Asserts a problem+json response with `status` and returns its body.
fn problem(resp: Response, status: u16) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().expect("problem body");
    assert_eq!(body["status"], status, "{body}");
    body
}

/// A moment strictly between the requests before and after it, as RFC 3339.
fn moment() -> String {
    std::thread::sleep(Duration::from_millis(20));
    let t = Timestamp::now().to_rfc3339();
    std::thread::sleep(Duration::from_millis(20));
    t
}

fn matched(s: &Server, query: &str) -> u64 {
    s.geojson(&format!("{ITEMS}?{query}"))["numberMatched"]
        .as_u64()
        .expect("numberMatched")
}

#[test]
fn a_created_site_is_found_by_id_by_bbox_and_by_nearby() {
    let s = Server::start();
    let resp = write(&s, Method::POST, ITEMS, Some(&feature(None, "active")));
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let created: Value = resp.json().unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("site-"), "{id}");
    assert_eq!(location, format!("{ITEMS}/{id}"));
    assert_eq!(created["properties"]["status"], "active");

    assert_eq!(s.geojson(&location), created);
    let in_box = s.geojson(&format!("{ITEMS}?{TEST_BBOX}"));
    assert_eq!(ids(&in_box), [id.as_str()]);
    let near = s.geojson("/api/nearby?lon=127.31&lat=40.71&limit=1");
    assert_eq!(ids(&near), [id.as_str()]);
    assert_eq!(near["features"][0]["properties"]["distance_m"], 0.0);
    assert_eq!(matched(&s, ""), SEED_SITES as u64 + 1);

    let named = write(
        &s,
        Method::POST,
        ITEMS,
        Some(&feature(Some("test-named"), "active")),
    );
    assert_eq!(named.status(), 201);
    assert_eq!(
        named.headers()["location"],
        "/api/collections/sites/items/test-named"
    );
}

#[test]
fn creating_an_id_that_exists_is_409_and_changes_nothing() {
    let s = Server::start();
    let before = s.geojson(&format!("{ITEMS}/yongbyon"));
    let body = problem(
        write(
            &s,
            Method::POST,
            ITEMS,
            Some(&feature(Some("yongbyon"), "active")),
        ),
        409,
    );
    assert!(
        body["detail"].as_str().unwrap().contains("yongbyon"),
        "{body}"
    );
    assert_eq!(s.geojson(&format!("{ITEMS}/yongbyon")), before);
    assert_eq!(matched(&s, ""), SEED_SITES as u64);
}

#[test]
fn a_replaced_site_reads_as_before_the_replace_when_asked_as_of_a_moment_before_it() {
    let s = Server::start();
    let item = format!("{ITEMS}/test-edit");
    let before_create = moment();
    let resp = write(
        &s,
        Method::POST,
        ITEMS,
        Some(&feature(Some("test-edit"), "active")),
    );
    assert_eq!(resp.status(), 201);
    let between = moment();
    let resp = write(
        &s,
        Method::PUT,
        &format!("{item}?reason=satellite%20imagery"),
        Some(&feature(None, "inactive")),
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let replaced: Value = resp.json().unwrap();
    assert_eq!(
        (&replaced["id"], &replaced["properties"]["status"]),
        (&json!("test-edit"), &json!("inactive"))
    );

    assert_eq!(s.geojson(&item)["properties"]["status"], "inactive");
    let then = s.geojson(&format!("{item}?as_of={between}"));
    assert_eq!(then["properties"]["status"], "active");
    let then_items = s.geojson(&format!("{ITEMS}?as_of={between}&{TEST_BBOX}"));
    assert_eq!(ids(&then_items), ["test-edit"]);
    assert_eq!(then_items["features"][0]["properties"]["status"], "active");
    let filtered = s.geojson(&format!(
        "{ITEMS}?as_of={between}&status=inactive&{TEST_BBOX}"
    ));
    assert!(ids(&filtered).is_empty());

    problem(s.get(&format!("{item}?as_of={before_create}")), 404);
    assert_eq!(
        matched(&s, &format!("as_of={before_create}")),
        SEED_SITES as u64
    );
    assert_eq!(
        matched(&s, &format!("as_of={between}")),
        SEED_SITES as u64 + 1
    );
}

#[test]
fn the_past_followed_page_by_page_is_the_past_read_by_area() {
    let s = Server::start();
    let item = format!("{ITEMS}/test-edit");
    let resp = write(
        &s,
        Method::POST,
        ITEMS,
        Some(&feature(Some("test-edit"), "active")),
    );
    assert_eq!(resp.status(), 201);
    let then = moment();
    let resp = write(&s, Method::PUT, &item, Some(&feature(None, "inactive")));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        write(&s, Method::DELETE, &format!("{ITEMS}/yongbyon"), None).status(),
        204
    );

    // The whole world as an area: read by the revisions' boxes, in one page.
    let by_area = s.geojson(&format!(
        "{ITEMS}?as_of={then}&bbox=-180,-90,180,90&limit=1000"
    ));
    // Without an area: read in id order from each cursor, seven at a time.
    let mut url = format!("{ITEMS}?as_of={then}&limit=7");
    let mut paged: Vec<Value> = Vec::new();
    for _ in 0..20 {
        let page = s.geojson(&url);
        assert!(page["features"].as_array().unwrap().len() <= 7);
        paged.extend(page["features"].as_array().unwrap().iter().cloned());
        match page["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
        {
            Some(next) => {
                let href = next["href"].as_str().unwrap();
                url = href[href.find("/api/").unwrap()..].to_owned();
            }
            None => break,
        }
    }
    assert_eq!(
        paged.len(),
        SEED_SITES + 1,
        "the seed sites and the new one, Yongbyon not yet retired"
    );
    assert_eq!(&Value::from(paged.clone()), &by_area["features"]);
    let edited = paged.iter().find(|f| f["id"] == "test-edit").unwrap();
    assert_eq!(edited["properties"]["status"], "active");
    // A filter applies to the past page by page too.
    let inactive = s.geojson(&format!("{ITEMS}?as_of={then}&status=inactive&limit=7"));
    assert!(ids(&inactive).iter().all(|id| id != "test-edit"));
}

#[test]
fn a_replacement_must_name_the_site_in_its_path_and_the_site_must_be_live() {
    let s = Server::start();
    let item = format!("{ITEMS}/test-edit");
    write(
        &s,
        Method::POST,
        ITEMS,
        Some(&feature(Some("test-edit"), "active")),
    );
    let body = problem(
        write(
            &s,
            Method::PUT,
            &item,
            Some(&feature(Some("other"), "inactive")),
        ),
        400,
    );
    assert_eq!(body["parameter"], "id");
    assert_eq!(s.geojson(&item)["properties"]["status"], "active");
    problem(s.get(&format!("{ITEMS}/other")), 404);

    problem(
        write(
            &s,
            Method::PUT,
            &format!("{ITEMS}/nowhere"),
            Some(&feature(None, "active")),
        ),
        404,
    );
    problem(s.get(&format!("{ITEMS}/nowhere")), 404);
}

#[test]
fn a_retired_site_leaves_every_query_but_stays_in_the_record() {
    let s = Server::start();
    let item = format!("{ITEMS}/yongbyon");
    let original = s.geojson(&item);
    let near_yongbyon = "/api/nearby?lon=125.754&lat=39.8&limit=1";
    let yongbyon_box = "bbox=125.70,39.75,125.80,39.85";
    let before = moment();

    let resp = write(&s, Method::DELETE, &item, None);
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().unwrap().is_empty());

    problem(s.get(&item), 404);
    assert_eq!(matched(&s, ""), SEED_SITES as u64 - 1);
    assert!(!ids(&s.geojson(&format!("{ITEMS}?{yongbyon_box}"))).contains(&"yongbyon".into()));
    assert_ne!(ids(&s.geojson(near_yongbyon)), ["yongbyon"]);

    let retired = s.geojson(&format!("{item}?include_retired=true"));
    assert_eq!(retired["properties"]["retired"], true);
    assert_eq!(retired["geometry"], original["geometry"]);
    let with_retired = s.geojson(&format!("{ITEMS}?include_retired=true&{yongbyon_box}"));
    assert!(ids(&with_retired).contains(&"yongbyon".into()));
    for f in with_retired["features"].as_array().unwrap() {
        assert_eq!(
            f["properties"]["retired"],
            f["id"] == "yongbyon",
            "{}",
            f["id"]
        );
    }
    assert_eq!(matched(&s, "include_retired=true"), SEED_SITES as u64);

    assert_eq!(s.geojson(&format!("{item}?as_of={before}")), original);
    assert_eq!(matched(&s, &format!("as_of={before}")), SEED_SITES as u64);
    let as_then = s.geojson(&format!("{item}?as_of={before}&include_retired=true"));
    assert_eq!(as_then["properties"]["retired"], false);

    problem(write(&s, Method::DELETE, &item, None), 404);
    problem(write(&s, Method::PUT, &item, Some(&original)), 404);
    let restored = write(&s, Method::POST, ITEMS, Some(&original));
    assert_eq!(restored.status(), 201);
    assert_eq!(s.geojson(&item), original);
    assert_eq!(ids(&s.geojson(near_yongbyon)), ["yongbyon"]);
}

#[test]
fn writes_without_the_servers_token_are_401_and_store_nothing() {
    let s = Server::start_with(&["--token", "s3cret"]);
    let yongbyon = format!("{ITEMS}/yongbyon");
    let original = s.geojson(&yongbyon);
    let mut changed = original.clone();
    changed["properties"]["status"] = json!("abandoned");
    for token in [None, Some("wrong"), Some("s3cret-and-more")] {
        let attempts = [
            send(
                &s,
                Method::POST,
                ITEMS,
                Some(&feature(Some("test-auth"), "active")),
                token,
            ),
            send(&s, Method::PUT, &yongbyon, Some(&changed), token),
            send(&s, Method::DELETE, &yongbyon, None, token),
        ];
        for resp in attempts {
            assert_eq!(resp.headers()["www-authenticate"], "Bearer", "{token:?}");
            problem(resp, 401);
        }
    }
    problem(s.get(&format!("{ITEMS}/test-auth")), 404);
    assert_eq!(s.geojson(&yongbyon), original);
    assert_eq!(matched(&s, ""), SEED_SITES as u64);

    let token = Some("s3cret");
    let created = send(
        &s,
        Method::POST,
        ITEMS,
        Some(&feature(Some("test-auth"), "active")),
        token,
    );
    assert_eq!(created.status(), 201);
    let replaced = send(&s, Method::PUT, &yongbyon, Some(&changed), token);
    assert_eq!(replaced.status(), 200);
    assert_eq!(s.geojson(&yongbyon)["properties"]["status"], "abandoned");
    let retired = send(
        &s,
        Method::DELETE,
        &format!("{ITEMS}/test-auth"),
        None,
        token,
    );
    assert_eq!(retired.status(), 204);
    problem(s.get(&format!("{ITEMS}/test-auth")), 404);
}

#[test]
fn an_invalid_body_is_refused_naming_the_field_and_stores_nothing() {
    let s = Server::start();
    let mut volcano = feature(Some("test-bad"), "active");
    volcano["properties"]["kind"] = json!("volcano");
    let mut open_ring = feature(Some("test-bad"), "active");
    open_ring["geometry"]["coordinates"][0][4] = json!([127.30, 40.705]);
    let mut bad_country = feature(Some("test-bad"), "active");
    bad_country["properties"]["country"] = json!("Korea");
    for (body, field) in [
        (&volcano, "properties.kind"),
        (&open_ring, "geometry.coordinates[0]"),
        (&bad_country, "properties.country"),
        (
            &json!({"type": "FeatureCollection", "features": []}),
            "type",
        ),
    ] {
        let p = problem(write(&s, Method::POST, ITEMS, Some(body)), 400);
        assert_eq!(p["parameter"], field, "{p}");
    }
    let p = problem(
        send_raw(&s, ITEMS, Some("application/json"), "{\"type\": \"Feat"),
        400,
    );
    assert_eq!(p["parameter"], "body");
    problem(
        send_raw(
            &s,
            ITEMS,
            Some("text/plain"),
            &feature(None, "active").to_string(),
        ),
        415,
    );
    problem(
        send_raw(&s, ITEMS, None, &feature(None, "active").to_string()),
        415,
    );
    problem(s.get(&format!("{ITEMS}/test-bad")), 404);

    let yongbyon = format!("{ITEMS}/yongbyon");
    let original = s.geojson(&yongbyon);
    let mut bad_replace = original.clone();
    bad_replace["properties"]["status"] = json!("busy");
    let p = problem(write(&s, Method::PUT, &yongbyon, Some(&bad_replace)), 400);
    assert_eq!(p["parameter"], "properties.status");
    assert_eq!(s.geojson(&yongbyon), original);
    assert_eq!(matched(&s, ""), SEED_SITES as u64);
}

#[test]
fn ids_with_path_separators_or_sql_are_not_found_and_never_a_server_error() {
    let s = Server::start();
    let body = feature(None, "active");
    for raw in [
        "..%2F..%2Fetc",
        "x'%3B%20DROP%20TABLE%20sites%3B--",
        "yongbyon'%20OR%20'1'%3D'1",
        "a%20b",
        ".hidden",
        "a/b",
    ] {
        let path = format!("{ITEMS}/{raw}");
        for resp in [
            write(&s, Method::PUT, &path, Some(&body)),
            write(&s, Method::DELETE, &path, None),
            s.get(&path),
            s.get(&format!("{path}?include_retired=true")),
        ] {
            problem(resp, 404);
        }
    }
    assert_eq!(matched(&s, ""), SEED_SITES as u64);
    assert_eq!(s.geojson(&format!("{ITEMS}/yongbyon"))["id"], "yongbyon");
}

#[test]
fn as_of_must_be_an_rfc3339_time_and_include_retired_true_or_false() {
    let s = Server::start();
    for (path, param) in [
        (format!("{ITEMS}?as_of=yesterday"), "as_of"),
        (format!("{ITEMS}/yongbyon?as_of=2024-01-01"), "as_of"),
        (format!("{ITEMS}?include_retired=yes"), "include_retired"),
        (
            format!("{ITEMS}/yongbyon?include_retired=1"),
            "include_retired",
        ),
    ] {
        let p = problem(s.get(&path), 400);
        assert_eq!(p["parameter"], param, "{path}: {p}");
    }
    let long_ago = s.geojson(&format!("{ITEMS}?as_of=2000-01-01T00:00:00Z"));
    assert_eq!(long_ago["numberMatched"], 0);
    let offset = s.geojson(&format!(
        "{ITEMS}/yongbyon?as_of=2999-01-01T09:00:00%2B09:00"
    ));
    assert_eq!(offset["id"], "yongbyon");
}
