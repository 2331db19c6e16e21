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

// ---- versions: ETag, If-Match, PATCH ----------------------------------------

/// Sends `body` with `content_type`, and `If-Match` if given.
fn edit(
    s: &Server,
    method: Method,
    path: &str,
    content_type: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Response {
    let mut req = reqwest::blocking::Client::new()
        .request(method, format!("{}{path}", s.base))
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    req.send().expect("request")
}

/// A site as one client reads it: its Feature and its ETag.
fn fetch(s: &Server, id: &str) -> (Value, String) {
    let resp = s.get(&format!("{ITEMS}/{id}"));
    assert_eq!(resp.status(), 200);
    let tag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong ETag: {tag}"
    );
    (resp.json().unwrap(), tag)
}

#[test]
fn a_stale_replacement_is_refused_and_the_site_keeps_the_first_edit_and_its_sources() {
    let s = Server::start();
    let (first, first_tag) = fetch(&s, "yongbyon");
    let (mut second, second_tag) = fetch(&s, "yongbyon");
    assert_eq!(first_tag, second_tag);
    let sources = first["properties"]["sources"].clone();
    assert!(sources.as_array().unwrap().len() >= 2, "{sources}");

    // The first analyst renames the site, naming the version read.
    let patch = json!({"properties": {"name": "Yongbyon, renamed by the first analyst"}});
    let resp = edit(
        &s,
        Method::PATCH,
        &format!("{ITEMS}/yongbyon"),
        "application/merge-patch+json",
        &patch,
        Some(&first_tag),
    );
    assert_eq!(resp.status(), 200);
    let new_tag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_tag, first_tag);

    // The second sends back the whole feature, with the sources it could not
    // read, against the version it read: refused, nothing changed.
    second["properties"]["sources"] = Value::Null;
    second["properties"]["status"] = json!("inactive");
    let resp = edit(
        &s,
        Method::PUT,
        &format!("{ITEMS}/yongbyon"),
        "application/geo+json",
        &second,
        Some(&second_tag),
    );
    let p = problem(resp, 412);
    assert!(p["detail"].as_str().unwrap().contains("yongbyon"), "{p}");

    let (now, now_tag) = fetch(&s, "yongbyon");
    assert_eq!(now_tag, new_tag);
    assert_eq!(
        now["properties"]["name"],
        "Yongbyon, renamed by the first analyst"
    );
    assert_eq!(now["properties"]["sources"], sources);
    assert_eq!(now["properties"]["status"], first["properties"]["status"]);
    // A retirement naming the old version is refused too.
    let resp = reqwest::blocking::Client::new()
        .delete(format!("{}{ITEMS}/yongbyon", s.base))
        .header("content-type", "application/json")
        .header("if-match", &first_tag)
        .body("{}")
        .send()
        .unwrap();
    problem(resp, 412);
    assert_eq!(s.get(&format!("{ITEMS}/yongbyon")).status(), 200);
}

#[test]
fn a_patch_changes_only_what_it_names_and_a_wildcard_or_no_if_match_edits_any_version() {
    let s = Server::start();
    let (before, _) = fetch(&s, "yongbyon");
    let resp = edit(
        &s,
        Method::PATCH,
        &format!("{ITEMS}/yongbyon"),
        "application/merge-patch+json",
        &json!({"properties": {"notes": "seen from the north"}}),
        None,
    );
    assert_eq!(resp.status(), 200);
    let after: Value = resp.json().unwrap();
    assert_eq!(after["properties"]["notes"], "seen from the north");
    for key in ["name", "sources", "kind", "status", "alt_names"] {
        assert_eq!(after["properties"][key], before["properties"][key], "{key}");
    }
    assert_eq!(after["geometry"], before["geometry"]);
    // `null` removes a member, as RFC 7396 says.
    let resp = edit(
        &s,
        Method::PATCH,
        &format!("{ITEMS}/yongbyon"),
        "application/merge-patch+json",
        &json!({"properties": {"notes": null}}),
        Some("*"),
    );
    assert_eq!(resp.status(), 200);
    assert!(fetch(&s, "yongbyon").0["properties"]["notes"].is_null());
    // A patch that leaves an invalid site names the field; one of no site is 404.
    let resp = edit(
        &s,
        Method::PATCH,
        &format!("{ITEMS}/yongbyon"),
        "application/merge-patch+json",
        &json!({"properties": {"kind": "volcano"}}),
        None,
    );
    assert_eq!(problem(resp, 400)["parameter"], "properties.kind");
    let resp = edit(
        &s,
        Method::PATCH,
        &format!("{ITEMS}/no-such-site"),
        "application/merge-patch+json",
        &json!({}),
        None,
    );
    problem(resp, 404);
    let resp = edit(
        &s,
        Method::PATCH,
        &format!("{ITEMS}/yongbyon"),
        "text/plain",
        &json!({}),
        None,
    );
    problem(resp, 415);
}

#[test]
fn a_server_that_requires_if_match_refuses_edits_without_one() {
    let s = Server::start_with(&["--require-if-match"]);
    let (_, tag) = fetch(&s, "yongbyon");
    let patch = json!({"properties": {"name": "Renamed"}});
    let path = format!("{ITEMS}/yongbyon");
    let p = problem(
        edit(
            &s,
            Method::PATCH,
            &path,
            "application/merge-patch+json",
            &patch,
            None,
        ),
        428,
    );
    assert!(p["detail"].as_str().unwrap().contains("If-Match"), "{p}");
    problem(
        edit(
            &s,
            Method::PUT,
            &path,
            "application/geo+json",
            &feature(None, "active"),
            None,
        ),
        428,
    );
    assert_eq!(fetch(&s, "yongbyon").1, tag);
    let resp = edit(
        &s,
        Method::PATCH,
        &path,
        "application/merge-patch+json",
        &patch,
        Some(&tag),
    );
    assert_eq!(resp.status(), 200);
}

#[test]
fn options_says_what_each_resource_takes_and_head_answers_every_get() {
    let s = Server::start();
    let client = reqwest::blocking::Client::new();
    let allow = |path: &str| {
        let resp = client
            .request(Method::OPTIONS, format!("{}{path}", s.base))
            .send()
            .unwrap();
        assert!(
            resp.status() == 200 || resp.status() == 204,
            "{path}: {}",
            resp.status()
        );
        resp.headers()["allow"].to_str().unwrap().to_owned()
    };
    let item = allow(&format!("{ITEMS}/yongbyon"));
    for m in ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        assert!(item.split(", ").any(|x| x == m), "{m} not in {item}");
    }
    let items = allow(ITEMS);
    assert!(items.split(", ").any(|x| x == "POST"), "{items}");
    assert!(!allow("/api/collections/observations/items").contains("POST"));
    for path in [
        "/api",
        "/api/collections",
        ITEMS,
        &format!("{ITEMS}/yongbyon"),
        "/api/collections/candidates/schema",
        "/healthz",
    ] {
        let get = s.get(path);
        let head = client.head(format!("{}{path}", s.base)).send().unwrap();
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "{path}"
        );
        assert_eq!(head.bytes().unwrap().len(), 0, "{path}");
    }
    let head = client
        .head(format!("{}{ITEMS}/yongbyon", s.base))
        .send()
        .unwrap();
    assert_eq!(head.headers()["etag"], fetch(&s, "yongbyon").1.as_str());
}

#[test]
fn of_many_edits_naming_the_same_version_at_once_exactly_one_is_made() {
    let s = Server::start();
    let (_, tag) = fetch(&s, "yongbyon");
    let path = format!("{ITEMS}/yongbyon");
    // Whatever order they arrive in, the first to write changes the version
    // every other names.
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (s, path, tag) = (&s, &path, &tag);
                scope.spawn(move || {
                    let name = format!("Yongbyon, edit {i}");
                    let patch = json!({"properties": {"name": name}});
                    let status = edit(
                        s,
                        Method::PATCH,
                        path,
                        "application/merge-patch+json",
                        &patch,
                        Some(tag),
                    )
                    .status()
                    .as_u16();
                    (status, name)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made: Vec<&String> = answers
        .iter()
        .filter(|(st, _)| *st == 200)
        .map(|(_, n)| n)
        .collect();
    assert_eq!(made.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|(st, _)| *st == 200 || *st == 412),
        "{answers:?}"
    );
    assert_eq!(
        fetch(&s, "yongbyon").0["properties"]["name"],
        made[0].as_str()
    );
}
