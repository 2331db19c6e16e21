//! Hostile input over HTTP and the server's security properties: every bad
//! request gets a 4xx problem document that names what is wrong, leaves the
//! catalogue as it was, and tells nothing of the server's insides.

use crate::helpers::{BIN, SEED_SITES, Server, ids};
use reqwest::blocking::{Body, Client, Response};
use serde_json::{Value, json};
use sitewatch::model::MAX_FOOTPRINT_VERTICES;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ITEMS: &str = "/api/collections/sites/items";
const OBSERVATIONS: &str = "/api/observations";
const TOKEN: &str = "hostile-test-token-5f1c9a";

// ---- what the catalogue holds ----------------------------------------------

/// What a client can see of the stored catalogue: sites, observations,
/// candidates and the batch log.
struct Snapshot {
    sites: Value,
    observations: Value,
    candidates: Value,
    batches: Vec<Value>,
}

fn snapshot(s: &Server) -> Snapshot {
    let features = |path: &str| s.geojson(path)["features"].clone();
    let batches = s.get_json("/api/batches?limit=1000", "application/json")["batches"]
        .as_array()
        .expect("batches")
        .clone();
    Snapshot {
        sites: features(&format!("{ITEMS}?limit=10000")),
        observations: features("/api/collections/observations/items?limit=10000"),
        candidates: features("/api/candidates"),
        batches,
    }
}

/// Asserts that nothing was stored since `before`. A batch refused for invalid
/// features is still logged as an attempt with `stored: false` (the audit
/// trail of what was sent); that is the only change allowed.
fn assert_unchanged(s: &Server, before: &Snapshot) {
    let after = snapshot(s);
    assert_eq!(after.sites, before.sites, "the sites changed");
    assert_eq!(
        after.observations, before.observations,
        "the observations changed"
    );
    assert_eq!(
        after.candidates, before.candidates,
        "the candidates changed"
    );
    for b in &before.batches {
        assert!(after.batches.contains(b), "batch {} changed", b["id"]);
    }
    for b in after.batches.iter().filter(|b| !before.batches.contains(b)) {
        assert_eq!(b["stored"], false, "batch {} was stored", b["id"]);
    }
}

// ---- requests and answers ----------------------------------------------------

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Sends `body` with `content_type` (none if `None`) and no token.
fn send(
    s: &Server,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client()
        .request(method, format!("{}{path}", s.base))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().expect("request")
}

fn post_geojson(s: &Server, path: &str, body: impl Into<Body>) -> Response {
    send(s, "POST", path, Some("application/geo+json"), body)
}

/// Words that would only appear in an answer that leaks how the server works.
const INTERNALS: &[&str] = &[
    "rusqlite",
    "sqlite",
    "select ",
    "insert into",
    "update ",
    ".rs:",
    "/work/",
    "/tmp/",
    "catalogue.db",
    "panicked",
    "backtrace",
];

/// Checks that an error body is a problem document with `status` that says
/// nothing of the server's insides, and returns it.
fn check_problem(status: u16, headers: &[(String, String)], body: &[u8]) -> Value {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let text = String::from_utf8_lossy(body);
    assert_eq!(
        header("content-type"),
        Some("application/problem+json"),
        "{status}: {text}"
    );
    assert_eq!(header("x-content-type-options"), Some("nosniff"));
    let lower = text.to_lowercase();
    for word in INTERNALS {
        assert!(!lower.contains(word), "{word:?} leaked: {text}");
    }
    let doc: Value = serde_json::from_slice(body).expect("a problem is JSON");
    assert_eq!(doc["status"], status, "{text}");
    assert!(
        doc["title"].is_string() && doc["detail"].is_string(),
        "{text}"
    );
    doc
}

/// Asserts the response is a problem with `status` and returns it.
fn problem(resp: Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.bytes().expect("body");
    assert_eq!(got, status, "{}", String::from_utf8_lossy(&body));
    check_problem(status, &headers, &body)
}

/// A 400 whose `parameter` is `param` and whose detail contains `says`.
fn bad_request(resp: Response, param: &str, says: &str) -> Value {
    let doc = problem(resp, 400);
    assert_eq!(doc["parameter"], param, "{doc}");
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains(says), "{says:?} not in {detail:?}");
    doc
}

/// An answer read off the socket as sent, for requests that an HTTP client
/// would tidy up first (dot segments, encoded slashes).
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        check_problem(status, &self.headers, &self.body)
    }
}

/// Sends one request exactly as written, `path` included, and reads the answer.
fn raw(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: answer[split + 4..].to_vec(),
    }
}

// ---- bodies ------------------------------------------------------------------

/// A site Feature with `ring` as its footprint's only ring, as JSON text so
/// that tests can put in what `serde_json` would never write.
fn site_with_ring(id: &str, ring: &str) -> String {
    format!(
        r#"{{"type":"Feature","id":"{id}","geometry":{{"type":"Polygon","coordinates":[{ring}]}},"properties":{{"name":"Hostile","country":"PRK","kind":"storage"}}}}"#
    )
}

/// A valid site Feature: a small square with its south-west corner at `lon, lat`.
fn site_at(id: &str, lon: f64, lat: f64) -> Value {
    let (e, n) = (lon + 0.01, lat + 0.01);
    json!({"type": "Feature", "id": id,
        "geometry": {"type": "Polygon", "coordinates": [[[lon, lat], [e, lat], [e, n], [lon, n], [lon, lat]]]},
        "properties": {"name": format!("Site {id}"), "country": "PRK", "kind": "storage"}})
}

/// An observation batch of one feature with `geometry` (JSON text).
fn batch_with_geometry(geometry: &str) -> String {
    format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","geometry":{geometry},"properties":{{"observed_at":"2024-05-01T00:00:00Z","sensor":"WV-3","finding":"other"}}}}]}}"#
    )
}

/// A closed ring of `n` distinct positions on a small circle, as JSON text.
fn circle_ring(n: usize) -> String {
    let mut out = String::with_capacity(n * 40);
    out.push('[');
    for i in 0..=n {
        let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "[{:.7},{:.7}]",
            127.0 + 0.05 * a.cos(),
            41.0 + 0.05 * a.sin()
        ));
    }
    out.push(']');
    out
}

/// The 422 report of a refused observation batch.
fn refused_batch(resp: Response) -> Value {
    let doc = problem(resp, 422);
    doc["report"].clone()
}

// ---- hostile bodies ----------------------------------------------------------

#[test]
fn a_body_over_max_body_is_a_413_problem_on_every_write_endpoint() {
    let s = Server::start_with(&["--max-body", "4096"]);
    let before = snapshot(&s);
    // Valid JSON, so only its size is wrong.
    let padding = "x".repeat(16 * 1024);
    let big = json!({"type": "FeatureCollection", "features": [], "padding": padding}).to_string();
    for (method, path) in [
        ("POST", OBSERVATIONS.to_string()),
        ("POST", ITEMS.to_string()),
        ("PUT", format!("{ITEMS}/yongbyon")),
        (
            "POST",
            "/api/candidates/no-such-candidate/promote".to_string(),
        ),
    ] {
        let declared = send(&s, method, &path, Some("application/geo+json"), big.clone());
        let doc = problem(declared, 413);
        assert!(
            doc["detail"].as_str().unwrap().contains("4096"),
            "{method} {path}: {doc}"
        );
        // Sent in chunks, with no length to refuse it by at once.
        let chunked = send(
            &s,
            method,
            &path,
            Some("application/geo+json"),
            Body::new(std::io::Cursor::new(big.clone().into_bytes())),
        );
        problem(chunked, 413);
    }
    assert_unchanged(&s, &before);
    // Under the limit, the same endpoint still reads its body.
    let small = json!({"type": "FeatureCollection", "features": []}).to_string();
    assert_eq!(
        post_geojson(&s, &format!("{OBSERVATIONS}?dry_run=true"), small)
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn json_nested_ten_thousand_deep_is_a_400_problem_and_the_server_stays_up() {
    let s = Server::start();
    let before = snapshot(&s);
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    for body in [&arrays, &objects, &site_with_ring("deep", &arrays)] {
        bad_request(
            post_geojson(&s, ITEMS, body.clone()),
            "body",
            "recursion limit",
        );
    }
    // In a batch: as a feature, in a member the reader skips, in a geometry.
    for body in [
        format!(r#"{{"type":"FeatureCollection","features":[{objects}]}}"#),
        format!(r#"{{"type":"FeatureCollection","features":[],"extra":{arrays}}}"#),
        batch_with_geometry(&format!(r#"{{"type":"Polygon","coordinates":{arrays}}}"#)),
    ] {
        bad_request(
            post_geojson(&s, OBSERVATIONS, body),
            "body",
            "recursion limit",
        );
    }
    assert_eq!(s.get("/healthz").status(), 200);
    assert_unchanged(&s, &before);
}

#[test]
fn a_footprint_over_the_vertex_limit_is_refused_naming_its_coordinates() {
    let s = Server::start();
    let before = snapshot(&s);
    let limit = MAX_FOOTPRINT_VERTICES.to_string();
    // One position over the limit (the ring is closed by repeating its first).
    let over = circle_ring(MAX_FOOTPRINT_VERTICES);
    let doc = bad_request(
        post_geojson(&s, ITEMS, site_with_ring("many-vertices", &over)),
        "geometry.coordinates",
        &limit,
    );
    assert!(doc["detail"].as_str().unwrap().contains("positions"));
    let polygon = format!(r#"{{"type":"Polygon","coordinates":[{over}]}}"#);
    let report = refused_batch(post_geojson(
        &s,
        OBSERVATIONS,
        batch_with_geometry(&polygon),
    ));
    assert_eq!(report["problems"][0]["field"], "geometry.coordinates");
    // A polygon of 10 million vertices is some 250 MB of JSON, which the body
    // limit refuses before parsing. 200,000 vertices fit under it and are far
    // past the vertex limit: checking such a ring for self-intersections would
    // take hours in a debug build, so a quick answer shows the count is checked
    // before anything else.
    let huge = site_with_ring("huge", &circle_ring(200_000));
    let started = Instant::now();
    bad_request(
        post_geojson(&s, ITEMS, huge),
        "geometry.coordinates",
        &limit,
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(s.get("/healthz").status(), 200);
    assert_unchanged(&s, &before);
}

#[test]
fn nan_and_infinite_coordinates_are_refused_as_strings_and_as_huge_exponents() {
    let s = Server::start();
    let before = snapshot(&s);
    for bad in [r#""NaN""#, r#""Infinity""#, r#""-Infinity""#, r#""1e999""#] {
        let ring = format!("[[127,41],[127.1,41],[127.1,{bad}],[127,41]]");
        bad_request(
            post_geojson(&s, ITEMS, site_with_ring("nan", &ring)),
            "geometry.coordinates[0][2]",
            "expected a number, found a string",
        );
        let point = format!(r#"{{"type":"Point","coordinates":[{bad},41]}}"#);
        let report = refused_batch(post_geojson(&s, OBSERVATIONS, batch_with_geometry(&point)));
        assert_eq!(report["problems"][0]["field"], "geometry.coordinates");
    }
    for bad in ["1e999", "-1e999", "1e400"] {
        let ring = format!("[[127,41],[127.1,41],[127.1,{bad}],[127,41]]");
        bad_request(
            post_geojson(&s, ITEMS, site_with_ring("huge", &ring)),
            "body",
            "number out of range",
        );
        let point = format!(r#"{{"type":"Point","coordinates":[{bad},41]}}"#);
        bad_request(
            post_geojson(&s, OBSERVATIONS, batch_with_geometry(&point)),
            "body",
            "number out of range",
        );
    }
    // Bare NaN and Infinity are not JSON at all.
    for bad in ["NaN", "Infinity"] {
        let ring = format!("[[127,41],[127.1,41],[127.1,{bad}],[127,41]]");
        bad_request(
            post_geojson(&s, ITEMS, site_with_ring("bare", &ring)),
            "body",
            "not valid JSON",
        );
    }
    assert_unchanged(&s, &before);
}

#[test]
fn self_intersecting_and_unclosed_rings_are_refused_naming_the_ring() {
    let s = Server::start();
    let before = snapshot(&s);
    let bowtie = "[[127,41],[127.1,41.1],[127.1,41],[127,41.1],[127,41]]";
    let unclosed = "[[127,41],[127.1,41],[127.1,41.1],[127,41.1]]";
    bad_request(
        post_geojson(&s, ITEMS, site_with_ring("bowtie", bowtie)),
        "geometry.coordinates",
        "self-intersection",
    );
    bad_request(
        post_geojson(&s, ITEMS, site_with_ring("open", unclosed)),
        "geometry.coordinates[0]",
        "not closed",
    );
    for (ring, field, says) in [
        (bowtie, "geometry.coordinates", "self-intersection"),
        (unclosed, "geometry.coordinates[0]", "not closed"),
    ] {
        let polygon = format!(r#"{{"type":"Polygon","coordinates":[{ring}]}}"#);
        let report = refused_batch(post_geojson(
            &s,
            OBSERVATIONS,
            batch_with_geometry(&polygon),
        ));
        assert_eq!(report["problems"][0]["field"], field, "{report}");
        assert!(
            report["problems"][0]["reason"]
                .as_str()
                .unwrap()
                .contains(says),
            "{report}"
        );
    }
    assert_unchanged(&s, &before);
}

#[test]
fn a_body_not_declared_as_json_is_a_415_problem() {
    let s = Server::start();
    let before = snapshot(&s);
    let site = site_at("typed", 127.0, 41.0).to_string();
    let batch = json!({"type": "FeatureCollection", "features": []}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonp"),
        None,
    ] {
        for (method, path, body) in [
            ("POST", ITEMS.to_string(), &site),
            ("PUT", format!("{ITEMS}/yongbyon"), &site),
            ("POST", OBSERVATIONS.to_string(), &batch),
        ] {
            let doc = problem(send(&s, method, &path, content_type, body.clone()), 415);
            assert!(
                doc["detail"]
                    .as_str()
                    .unwrap()
                    .contains("application/geo+json"),
                "{doc}"
            );
        }
    }
    assert_unchanged(&s, &before);
}

#[test]
fn invalid_utf8_in_a_body_is_a_400_problem() {
    let s = Server::start();
    let before = snapshot(&s);
    let site = site_at("utf8", 127.0, 41.0).to_string().into_bytes();
    let batch = batch_with_geometry(r#"{"type":"Point","coordinates":[127,41]}"#).into_bytes();
    // Bytes that are no UTF-8 inside a string value ("Site \xff\xfeutf8"), a
    // lone continuation byte, and a stray lead byte before the document.
    let inside = |body: &[u8], after: &[u8], bad: &[u8]| {
        let at = body
            .windows(after.len())
            .position(|w| w == after)
            .expect("marker")
            + after.len();
        [&body[..at], bad, &body[at..]].concat()
    };
    for body in [
        inside(&site, b"\"Site ", b"\xff\xfe"),
        inside(&site, b"\"Site ", b"\x80"),
        inside(&site, b"\"Site ", b"\xc3\x28"),
        [&b"\xff"[..], &site].concat(),
    ] {
        bad_request(
            post_geojson(&s, ITEMS, body.clone()),
            "body",
            "not valid JSON",
        );
        bad_request(
            send(
                &s,
                "PUT",
                &format!("{ITEMS}/yongbyon"),
                Some("application/json"),
                body,
            ),
            "body",
            "not valid JSON",
        );
    }
    for body in [
        inside(&batch, b"\"WV-3", b"\xff\xfe"),
        [&b"\xff"[..], &batch].concat(),
    ] {
        bad_request(
            post_geojson(&s, OBSERVATIONS, body),
            "body",
            "not valid JSON",
        );
    }
    assert_unchanged(&s, &before);
}

#[test]
fn a_repeated_key_is_refused_naming_the_key() {
    let s = Server::start();
    let before = snapshot(&s);
    let geometry =
        r#"{"type":"Polygon","coordinates":[[[127,41],[127.1,41],[127.1,41.1],[127,41]]]}"#;
    let props = r#"{"name":"Twice","country":"PRK","kind":"storage"}"#;
    for (body, key) in [
        (
            format!(
                r#"{{"type":"Feature","id":"first","id":"second","geometry":{geometry},"properties":{props}}}"#
            ),
            "id",
        ),
        (
            format!(
                r#"{{"type":"Feature","id":"p","geometry":{geometry},"properties":{props},"properties":{{"name":"Other","country":"PRK","kind":"reactor"}}}}"#
            ),
            "properties",
        ),
        (
            format!(
                r#"{{"type":"Feature","id":"n","geometry":{geometry},"properties":{{"name":"A","name":"B","country":"PRK","kind":"storage"}}}}"#
            ),
            "name",
        ),
    ] {
        bad_request(
            post_geojson(&s, ITEMS, body.clone()),
            "body",
            &format!("duplicate key \"{key}\""),
        );
        bad_request(
            send(
                &s,
                "PUT",
                &format!("{ITEMS}/yongbyon"),
                Some("application/json"),
                body,
            ),
            "body",
            &format!("duplicate key \"{key}\""),
        );
    }
    let batch = r#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[127,41]},"properties":{"observed_at":"2024-05-01T00:00:00Z","observed_at":"2025-05-01T00:00:00Z","sensor":"WV-3","finding":"other"}}]}"#;
    bad_request(
        post_geojson(&s, OBSERVATIONS, batch),
        "body",
        "duplicate key \"observed_at\"",
    );
    for (body, key) in [
        (r#"{"name":"A","name":"B"}"#, "name"),
        (r#"{"footprint":{"type":"Polygon","type":"Point"}}"#, "type"),
    ] {
        bad_request(
            send(
                &s,
                "POST",
                "/api/candidates/no-such-candidate/promote",
                Some("application/json"),
                body,
            ),
            "body",
            &format!("duplicate key \"{key}\""),
        );
    }
    let twice = r#"{"type":"FeatureCollection","features":[],"features":[]}"#;
    bad_request(
        post_geojson(&s, OBSERVATIONS, twice),
        "body",
        "features: given more than once",
    );
    assert_unchanged(&s, &before);
}

#[test]
fn a_million_empty_features_get_a_quick_422_with_a_capped_report() {
    let s = Server::start();
    let before = snapshot(&s);
    let n = 1_000_000;
    let mut body = Vec::with_capacity(n * 3 + 64);
    body.extend_from_slice(br#"{"type":"FeatureCollection","features":["#);
    for i in 0..n {
        body.extend_from_slice(if i == 0 { b"{}" } else { b",{}" });
    }
    body.extend_from_slice(b"]}");
    let started = Instant::now();
    let report = refused_batch(post_geojson(&s, OBSERVATIONS, body));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(report["features"], n);
    assert_eq!(report["rejected"], n);
    assert_eq!(report["stored"], false);
    assert_eq!(report["lists_truncated"], true);
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.len() <= 10_000,
        "{} problems listed",
        problems.len()
    );
    assert_eq!(problems[0]["field"], "type");
    assert_unchanged(&s, &before);
}

#[test]
fn ids_with_path_separators_or_sql_name_no_site_on_get_put_and_delete() {
    let s = Server::start();
    let before = snapshot(&s);
    let body = site_at("x", 127.0, 41.0).to_string();
    let json_header = [("Content-Type", "application/geo+json")];
    for id in [
        "..%2Fx",
        "..%2F..%2Fetc%2Fpasswd",
        "a%2Fb",
        "%2e%2e",
        "%2E%2E%2Fsites",
        "%27%3B%20DROP%20TABLE%20sites%3B--",
        "x%27%20OR%20%271%27%3D%271",
        "x%00y",
        "%FF%FE",
    ] {
        let path = format!("{ITEMS}/{id}");
        raw(&s.base, "GET", &path, &[], b"").problem(404);
        raw(&s.base, "PUT", &path, &json_header, body.as_bytes()).problem(404);
        raw(&s.base, "DELETE", &path, &json_header, b"{}").problem(404);
    }
    // Unencoded, they are paths with more segments, which no route takes.
    for path in [
        format!("{ITEMS}/../x"),
        format!("{ITEMS}/a/b"),
        format!("{ITEMS}/../../../etc/passwd"),
    ] {
        for method in ["GET", "DELETE"] {
            let r = raw(&s.base, method, &path, &[], b"");
            assert!(
                (400..500).contains(&r.status),
                "{method} {path}: {}",
                r.status
            );
            r.problem(r.status);
        }
    }
    // In a body, such an id is refused as the id it cannot be.
    for id in ["../x", "a/b", "'; DROP TABLE sites;--"] {
        bad_request(
            post_geojson(&s, ITEMS, site_at(id, 127.0, 41.0).to_string()),
            "id",
            "not a valid id",
        );
    }
    assert_unchanged(&s, &before);
    assert_eq!(
        ids(&s.geojson(ITEMS)).len(),
        SEED_SITES,
        "the sites table is intact"
    );
}

#[test]
fn a_limit_of_ten_to_the_twelfth_is_clamped_and_says_so() {
    let s = Server::start();
    let resp = s.get(&format!("{ITEMS}?limit=1000000000000"));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["sitewatch-limit-clamped"],
        "1000000000000 -> 10000"
    );
    let doc: Value = resp.json().unwrap();
    assert_eq!(
        doc["limitClamped"],
        json!({"requested": 1_000_000_000_000u64, "applied": 10_000})
    );
    assert_eq!(doc["numberReturned"], SEED_SITES as u64);
    for path in ["/api/batches", "/api/nearby?lon=125.75&lat=39.8&"] {
        let sep = if path.ends_with('&') { "" } else { "?" };
        let resp = s.get(&format!("{path}{sep}limit=1000000000000"));
        assert_eq!(resp.status(), 200, "{path}");
    }
    // Past what a 64-bit integer holds it is no count at all.
    bad_request(
        s.get(&format!("{ITEMS}?limit=100000000000000000000")),
        "limit",
        "limit",
    );
    bad_request(s.get(&format!("{ITEMS}?limit=-1")), "limit", "limit");
}

/// RFC 7946 §5.2: a bbox whose west is greater than its east crosses the
/// antimeridian, so it is accepted; a south greater than its north is never
/// meaningful and is refused.
#[test]
fn a_bbox_across_the_antimeridian_is_accepted_and_min_lat_over_max_lat_is_not() {
    let s = Server::start();
    for (id, lon) in [
        ("east-of-dateline", 175.0),
        ("west-of-dateline", -175.0),
        ("greenwich", 0.0),
    ] {
        let resp = post_geojson(&s, ITEMS, site_at(id, lon, 0.0).to_string());
        assert_eq!(resp.status(), 201, "{id}");
    }
    let mut found = ids(&s.geojson(&format!("{ITEMS}?bbox=170,-10,-170,10")));
    found.sort();
    assert_eq!(found, ["east-of-dateline", "west-of-dateline"]);
    let before = snapshot(&s);
    bad_request(
        s.get(&format!("{ITEMS}?bbox=170,10,-170,-10")),
        "bbox",
        "minLat 10 is greater than maxLat -10",
    );
    bad_request(s.get(&format!("{ITEMS}?bbox=0,10,1,-10")), "bbox", "minLat");
    bad_request(s.get(&format!("{ITEMS}?bbox=0,0,1")), "bbox", "4");
    bad_request(s.get(&format!("{ITEMS}?bbox=0,0,NaN,1")), "bbox", "bbox");
    assert_unchanged(&s, &before);
}

// ---- security ----------------------------------------------------------------

/// A server started by the test itself, for what [`Server`] does not offer:
/// another address, a log level, its log kept in a file.
struct Spawned {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Spawned {
    fn start(args: &[&str], log_level: &str, log: Stdio) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(BIN)
            .args(["serve", "--db"])
            .arg(dir.path().join("catalogue.db"))
            .args(args)
            .env("RUST_LOG", log_level)
            .env_remove("SITEWATCH_TOKEN")
            .env_remove("SITEWATCH_BIND")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn sitewatch serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address line");
        match line.trim().rsplit(' ').next() {
            Some(base) if base.starts_with("http://") => Ok(Self {
                child,
                base: base.to_string(),
                _dir: dir,
            }),
            _ => {
                let status = child.wait().expect("wait");
                Err(format!("the server did not start ({status})"))
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_with_token(
    base: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: String,
) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client()
        .request(method, format!("{base}{path}"))
        .header("content-type", "application/geo+json")
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().expect("request")
}

#[test]
fn writes_need_the_token_when_one_is_set() {
    let s = Server::start_with(&["--token", TOKEN]);
    let before = snapshot(&s);
    let site = site_at("tokened", 127.0, 41.0).to_string();
    let batch = batch_with_geometry(r#"{"type":"Point","coordinates":[127,41]}"#);
    let wrong_token = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    for auth in [
        None,
        Some("Bearer nope"),
        Some(wrong_token.as_str()),
        Some(basic.as_str()),
        Some("Bearer "),
    ] {
        for (method, path, body) in [
            ("POST", ITEMS.to_string(), &site),
            ("PUT", format!("{ITEMS}/yongbyon"), &site),
            ("DELETE", format!("{ITEMS}/yongbyon"), &String::new()),
            ("POST", OBSERVATIONS.to_string(), &batch),
            (
                "POST",
                "/api/candidates/c/dismiss".to_string(),
                &String::new(),
            ),
        ] {
            let resp = send_with_token(&s.base, method, &path, auth, body.clone());
            assert_eq!(
                resp.headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{method} {path} {auth:?}"
            );
            problem(resp, 401);
        }
    }
    assert_unchanged(&s, &before);
    let bearer = format!("Bearer {TOKEN}");
    let resp = send_with_token(&s.base, "POST", ITEMS, Some(&bearer), site);
    assert_eq!(resp.status(), 201);
}

#[test]
fn without_a_token_writes_are_taken_from_loopback_only() {
    // Refused outright on a public address with no token...
    let refused = Spawned::start(&["--bind", "0.0.0.0:0"], "error", Stdio::null());
    assert!(refused.is_err(), "served on 0.0.0.0 with no token");
    // ...and, when told to serve there anyway, the write rule stays as it is
    // with no token: a client that is not on loopback may read, not write.
    let s = Spawned::start(
        &["--bind", "0.0.0.0:0", "--insecure-open-writes"],
        "error",
        Stdio::null(),
    )
    .expect("server");
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let site = site_at("remote", 127.0, 41.0).to_string();
    let local = send_with_token(
        &s.base.replace("0.0.0.0", "127.0.0.1"),
        "POST",
        ITEMS,
        None,
        site.clone(),
    );
    assert_eq!(local.status(), 201);
    // An address of this machine that is not loopback: the route out, found
    // without sending anything.
    let outward = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("192.0.2.1:9").map(|_| u))
        .and_then(|u| u.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    let Some(ip) = outward else {
        eprintln!("skipped the remote write: this machine has no address but loopback");
        return;
    };
    let remote_base = format!("http://{ip}:{port}");
    let other = site_at("remote-2", 127.2, 41.0).to_string();
    let doc = problem(
        send_with_token(&remote_base, "POST", ITEMS, None, other),
        401,
    );
    assert!(
        doc["detail"].as_str().unwrap().contains("loopback"),
        "{doc}"
    );
}

#[test]
fn the_token_never_appears_in_the_log() {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let s = Spawned::start(
        &["--bind", "127.0.0.1:0", "--token", TOKEN],
        "debug",
        Stdio::from(log.reopen().expect("log handle")),
    )
    .expect("server");
    let bearer = format!("Bearer {TOKEN}");
    let site = site_at("logged", 127.0, 41.0).to_string();
    assert_eq!(
        send_with_token(&s.base, "POST", ITEMS, Some(&bearer), site.clone()).status(),
        201
    );
    let batch = batch_with_geometry(r#"{"type":"Point","coordinates":[127,41]}"#);
    assert_eq!(
        send_with_token(&s.base, "POST", OBSERVATIONS, Some(&bearer), batch).status(),
        201
    );
    let wrong = format!("Bearer {TOKEN}-wrong");
    assert_eq!(
        send_with_token(&s.base, "POST", ITEMS, Some(&wrong), site.clone()).status(),
        401
    );
    assert_eq!(
        send_with_token(
            &s.base,
            "PUT",
            &format!("{ITEMS}/logged"),
            Some(&bearer),
            "{".into()
        )
        .status(),
        400
    );
    drop(s);
    let text = std::fs::read_to_string(log.path()).expect("log");
    assert!(
        text.contains("POST"),
        "the log is empty or has no requests: {text}"
    );
    assert!(!text.contains(TOKEN), "the token is in the log:\n{text}");
}

#[test]
fn paths_cannot_escape_to_files_on_disk() {
    let s = Server::start();
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/..%2f..%2fCargo.toml",
        "/assets/..%2f..%2fCargo.toml",
        "/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/..%5c..%5cCargo.toml",
        "/assets/%2fetc%2fpasswd",
        "//etc/passwd",
        "/assets//etc/passwd",
        "/index.html/../../Cargo.toml",
    ] {
        let r = raw(&s.base, "GET", path, &[], b"");
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        r.problem(r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("root:") && !body.contains("[package]"),
            "{path} returned a file: {body}"
        );
    }
}

#[test]
fn every_response_says_nosniff_and_the_page_has_a_content_security_policy() {
    let s = Server::start();
    let page = s.get("/");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} not in {csp}");
    }
    for path in [
        ITEMS,
        "/api",
        "/api/collections/sites/items/yongbyon",
        "/api/batches",
        "/healthz",
        "/api/openapi.json",
    ] {
        let resp = s.get(path);
        assert_eq!(
            resp.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}: {}",
            resp.status()
        );
    }
    // Errors: not found, a bad parameter, a wrong method, an undocumented parameter.
    problem(s.get("/no/such/thing"), 404);
    problem(s.get(&format!("{ITEMS}/no-such-site")), 404);
    problem(s.get("/api/nearby?lon=1&lat=91"), 400);
    problem(send(&s, "PATCH", ITEMS, None, ""), 405);
    problem(s.get(&format!("{ITEMS}?no_such_parameter=1")), 400);
}

// ---- what a web page cannot borrow ------------------------------------------

/// Sends a request as a browser would on a page's behalf: to this server's
/// socket, naming whatever host the page was loaded from.
fn send_as(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client()
        .request(method, format!("{}{path}", s.base))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().expect("request")
}

/// Every `href` in a document's `links`.
fn hrefs(doc: &Value) -> Vec<String> {
    doc["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| l["href"].as_str().expect("href").to_string())
        .collect()
}

fn assert_healthy(s: &Server) {
    let started = Instant::now();
    assert_eq!(s.get("/healthz").status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/healthz took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_request_naming_a_foreign_host_is_a_421_for_reads_and_writes_alike() {
    let s = Server::start();
    let before = snapshot(&s);
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let rebound = format!("attacker.example:{port}");
    let json = ("Content-Type", "application/json");
    let doc = problem(send_as(&s, "GET", ITEMS, &[("Host", &rebound)], ""), 421);
    assert!(
        doc["detail"].as_str().unwrap().contains("--public-url"),
        "{doc}"
    );
    let yongbyon = format!("{ITEMS}/yongbyon");
    problem(
        send_as(&s, "DELETE", &yongbyon, &[("Host", &rebound), json], "{}"),
        421,
    );
    problem(send_as(&s, "GET", "/", &[("Host", &rebound)], ""), 421);
    // The port is part of the name: another port is another server.
    let other_port = format!("localhost:{}", port.parse::<u16>().unwrap() ^ 1);
    problem(send_as(&s, "GET", ITEMS, &[("Host", &other_port)], ""), 421);
    assert_unchanged(&s, &before);
    // Its own names still work, and health checks answer to any name.
    for own in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            send_as(&s, "GET", &yongbyon, &[("Host", &own)], "").status(),
            200,
            "{own}"
        );
    }
    let health = send_as(&s, "GET", "/healthz", &[("Host", &rebound)], "");
    assert_eq!(health.status(), 200);
    assert_healthy(&s);
}

#[test]
fn a_public_url_adds_a_name_the_server_answers_to() {
    let s = Server::start_with(&["--public-url", "http://sites.example.org:8000"]);
    let named = send_as(
        &s,
        "GET",
        &format!("{ITEMS}?limit=1"),
        &[("Host", "sites.example.org:8000")],
        "",
    );
    assert_eq!(named.status(), 200);
    let doc: Value = named.json().unwrap();
    for href in hrefs(&doc) {
        assert!(href.starts_with("http://sites.example.org:8000/"), "{href}");
    }
    problem(
        send_as(&s, "GET", ITEMS, &[("Host", "sites.example.org:8001")], ""),
        421,
    );
}

#[test]
fn a_write_not_declared_as_json_is_a_415_even_without_a_body() {
    let s = Server::start();
    let batch = std::fs::read(format!(
        "{}/tests/fixtures/observations/mixed.geojson",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let report: Value = post_geojson(&s, OBSERVATIONS, batch).json().unwrap();
    let cand = report["candidates_created"][0]
        .as_str()
        .expect("a candidate")
        .to_string();
    let before = snapshot(&s);
    let dismiss = format!("/api/candidates/{cand}/dismiss");
    let yongbyon = format!("{ITEMS}/yongbyon");
    // What a form on another site can send, and what a client that forgot sends.
    for (method, path, content_type, body) in [
        (
            "POST",
            &dismiss,
            Some("application/x-www-form-urlencoded"),
            "reason=x",
        ),
        (
            "POST",
            &dismiss,
            Some("multipart/form-data; boundary=b"),
            "",
        ),
        ("POST", &dismiss, Some("text/plain"), "{}"),
        ("POST", &dismiss, None, ""),
        ("DELETE", &yongbyon, None, ""),
        ("DELETE", &yongbyon, Some("text/plain"), "{}"),
    ] {
        let doc = problem(send(&s, method, path, content_type, body), 415);
        assert!(
            doc["detail"].as_str().unwrap().contains("Content-Type"),
            "{method} {path} {content_type:?}: {doc}"
        );
    }
    assert_unchanged(&s, &before);
    assert_healthy(&s);
    // No body means `{}` as application/json.
    let json = Some("application/json");
    assert_eq!(send(&s, "POST", &dismiss, json, "{}").status(), 200);
    assert_eq!(send(&s, "DELETE", &yongbyon, json, "{}").status(), 204);
}

#[test]
fn any_cors_origin_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--cors-origin",
            "*",
            "--db",
        ])
        .arg(dir.path().join("catalogue.db"))
        .env("RUST_LOG", "error")
        .env_remove("SITEWATCH_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sitewatch serve");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the server started with --cors-origin '*' and no token");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("--cors-origin '*'") && stderr.contains("--token"),
        "{stderr}"
    );
    // With a token it serves, and every origin may call it.
    let s = Server::start_with(&["--cors-origin", "*", "--token", TOKEN]);
    let resp = send_as(
        &s,
        "GET",
        ITEMS,
        &[("Origin", "https://anywhere.example")],
        "",
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://anywhere.example"
    );
}

#[test]
fn links_believe_forwarded_headers_only_from_a_trusted_proxy() {
    let forwarded: &[(&str, &str)] = &[
        ("X-Forwarded-Host", "sites.example.org"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "host=sites.example.org;proto=https"),
    ];
    let page = format!("{ITEMS}?limit=1");
    // Sent by anyone else, they are ignored: links name the host asked.
    let s = Server::start();
    let resp = send_as(&s, "GET", &page, forwarded, "");
    assert_eq!(resp.status(), 200);
    let links = hrefs(&resp.json().unwrap());
    assert!(links.iter().any(|h| h.contains("after=")), "{links:?}");
    for href in &links {
        assert!(href.starts_with(&format!("{}/", s.base)), "{href}");
    }
    // From a trusted proxy (the test itself, on 127.0.0.1), they are honoured,
    // for a host the server answers to...
    let proxied = Server::start_with(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--public-url",
        "https://sites.example.org",
    ]);
    let resp = send_as(&proxied, "GET", &page, forwarded, "");
    assert_eq!(resp.status(), 200);
    for href in hrefs(&resp.json().unwrap()) {
        assert!(href.starts_with("https://sites.example.org/"), "{href}");
    }
    // ...and a forwarded host it does not answer to is refused like a Host.
    problem(
        send_as(
            &proxied,
            "GET",
            &page,
            &[("X-Forwarded-Host", "attacker.example")],
            "",
        ),
        421,
    );
    // Without a token, a proxy's loopback address is not its client's.
    let before = snapshot(&proxied);
    let doc = problem(
        send_as(
            &proxied,
            "DELETE",
            &format!("{ITEMS}/yongbyon"),
            &[("Content-Type", "application/json")],
            "{}",
        ),
        401,
    );
    assert!(doc["detail"].as_str().unwrap().contains("proxy"), "{doc}");
    assert_unchanged(&proxied, &before);
    assert_healthy(&proxied);
}

/// A double-quoted name holding `'` once hid 22 unclosed groups from the
/// nesting check, and the CQL2 parser then took 16 s, doubling per group.
#[test]
fn a_filter_that_hid_its_depth_is_a_quick_400_and_healthz_answers_meanwhile() {
    let s = Server::start();
    let hidden = format!(
        "{ITEMS}?filter=\"a'b\" = 'x' AND {}name = 'x'",
        "(".repeat(22)
    );
    let or: Vec<String> = (0..100).map(|i| format!("name = 'x{i}'")).collect();
    let costly = format!(
        "{ITEMS}?filter={}{} OR{}",
        "(".repeat(10),
        or.join(" OR "),
        ")".repeat(10)
    );
    let started = Instant::now();
    bad_request(
        send(&s, "GET", &hidden, None, ""),
        "filter",
        "nest more than 10",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Two at a time, as two request threads would be taken, while /healthz is asked.
    let hostile: Vec<_> = [hidden, costly]
        .into_iter()
        .map(|path| {
            let base = s.base.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let resp = client()
                    .get(format!("{base}{path}"))
                    .send()
                    .expect("request");
                (resp.status().as_u16(), started.elapsed())
            })
        })
        .collect();
    assert_healthy(&s);
    for h in hostile {
        let (status, took) = h.join().expect("a hostile request");
        assert_eq!(status, 400);
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
    assert_healthy(&s);
}

/// Spatial filters used to test every record against any literal: a literal
/// over the vertex cap is refused, and one within it is answered from the
/// sites the tree finds, the same as the whole catalogue filtered.
#[test]
fn a_spatial_filter_over_the_vertex_cap_is_refused_and_one_within_is_answered() {
    let s = Server::start();
    let points = |n: usize| {
        (0..n)
            .map(|i| {
                format!(
                    "({} {})",
                    124.0 + (i % 10) as f64 * 0.6,
                    37.0 + (i / 10 % 10) as f64 * 0.5
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    bad_request(
        send(
            &s,
            "GET",
            &format!(
                "{ITEMS}?filter=S_DWITHIN(geometry,MULTIPOINT({}),1000)",
                points(1001)
            ),
            None,
            "",
        ),
        "filter",
        "more than 1000",
    );
    let filter = format!(
        "S_DWITHIN(geometry,MULTIPOINT({}),30,kilometers)",
        points(100)
    );
    // With a world-wide bbox the filter is evaluated on every site.
    let narrowed = s.geojson(&format!("{ITEMS}?filter={filter}&limit=1000"));
    let scanned = s.geojson(&format!(
        "{ITEMS}?filter={filter}&limit=1000&bbox=-180,-90,180,90"
    ));
    let ids = |doc: &Value| -> Vec<String> {
        doc["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!ids(&scanned).is_empty());
    assert_eq!(ids(&narrowed), ids(&scanned));
    assert_healthy(&s);
}

// ---- clients that stop reading ---------------------------------------------

/// Whether the kernel still holds the server's end of the connection from
/// `client_port` to `server_port` on the loopback address.
fn server_end_open(server_port: u16, client_port: u16) -> bool {
    let local = format!("0100007F:{server_port:04X}");
    let remote = format!("0100007F:{client_port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .expect("the kernel's TCP table")
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == local && f[2] == remote
        })
}

#[test]
fn a_client_that_stops_reading_a_reply_is_dropped_after_the_write_timeout() {
    let s = Server::start_with(&["--write-timeout", "1"]);
    let whole = s.get("/assets/app.js").bytes().expect("the script").len();
    assert!(
        whole > 256 * 1024,
        "the reply must outgrow the buffers: {whole}"
    );
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();

    // A small receive buffer closes the window after a few kilobytes.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut client: TcpStream = sock.into();
    let client_port = client.local_addr().unwrap().port();
    write!(
        client,
        "GET /assets/app.js HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    assert!(server_end_open(addr.port(), client_port));

    // The client reads nothing until the server has let the connection go.
    let deadline = Instant::now() + Duration::from_secs(90);
    while server_end_open(addr.port(), client_port) {
        assert!(
            Instant::now() < deadline,
            "the server still holds a connection its client stopped reading"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let ended = client.read_to_end(&mut got);
    assert!(
        got.len() < whole,
        "the whole reply arrived after the connection was dropped ({ended:?})"
    );

    // Clients that do read are not affected.
    assert_eq!(s.get("/assets/app.js").bytes().unwrap().len(), whole);
}
