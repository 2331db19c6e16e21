//! Observation batches through the real server and the CLI: atomic, idempotent,
//! the same report either way, candidates, history and changes.

use crate::helpers::{BIN, SEED_SITES, Server};
use serde_json::Value;
use std::process::Command;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/observations/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn post_batch(s: &Server, query: &str, file: &str) -> (u16, Value) {
    let body = std::fs::read(fixture(file)).unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/observations{query}", s.base))
        .header("Content-Type", "application/geo+json")
        .body(body)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

/// The parts of a report that do not depend on when or how it was sent.
fn comparable(report: &Value) -> Value {
    let mut r = report.clone();
    for key in ["batch_id", "origin", "candidates_created", "summary"] {
        r.as_object_mut().unwrap().remove(key);
    }
    r["candidates_created_count"] = report["candidates_created"]
        .as_array()
        .map_or(0, Vec::len)
        .into();
    r
}

fn cli_import(db: &std::path::Path, file: &str, extra: &[&str]) -> (bool, Value) {
    let out = Command::new(BIN)
        .args(["import", "observations", &fixture(file), "--db"])
        .arg(db)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).expect("the CLI prints the JSON report"),
    )
}

fn history(s: &Server, site: &str) -> Vec<Value> {
    s.geojson(&format!("/api/sites/{site}/history"))["features"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn the_cli_and_http_give_the_same_report_for_the_same_batch() {
    let s = Server::start();
    let (status, http) = post_batch(&s, "", "mixed.geojson");
    assert_eq!(status, 201);
    let dir = tempfile::tempdir().unwrap();
    let (ok, cli) = cli_import(&dir.path().join("c.db"), "mixed.geojson", &[]);
    assert!(ok);
    assert_eq!(comparable(&http), comparable(&cli));
    assert_eq!(http["accepted"], 4);
    assert_eq!(http["matched"], 2);
    assert_eq!(http["unmatched"], 2);
    assert_eq!(http["candidates_created"].as_array().unwrap().len(), 1);
}

#[test]
fn a_batch_with_bad_features_stores_nothing_and_names_each_one() {
    let s = Server::start();
    let before = history(&s, "yongbyon").len();
    let (status, problem) = post_batch(&s, "", "one-bad.geojson");
    assert_eq!(status, 422);
    let report = &problem["report"];
    assert_eq!(report["stored"], false);
    let problems: Vec<(u64, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["index"].as_u64().unwrap(), p["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        problems,
        [(1, "properties.finding"), (2, "properties.site_id")]
    );
    assert_eq!(
        history(&s, "yongbyon").len(),
        before,
        "the valid feature must not be stored"
    );
    let batches = s.get_json("/api/batches", "application/json");
    assert_eq!(batches["batches"][0]["stored"], false);
    assert_eq!(batches["batches"][0]["rejected"], 2);

    // The same through the CLI: a non-zero exit and the same problems.
    let dir = tempfile::tempdir().unwrap();
    let (ok, cli) = cli_import(&dir.path().join("c.db"), "one-bad.geojson", &[]);
    assert!(!ok);
    assert_eq!(cli["problems"], report["problems"]);
}

#[test]
fn partial_mode_stores_the_valid_features_and_a_dry_run_stores_nothing() {
    let s = Server::start();
    let before = history(&s, "yongbyon").len();
    let (status, dry) = post_batch(&s, "?mode=partial&dry_run=true", "one-bad.geojson");
    assert_eq!(
        (status, &dry["stored"], &dry["accepted"]),
        (200, &Value::Bool(false), &Value::from(1))
    );
    assert_eq!(history(&s, "yongbyon").len(), before);
    let (status, partial) = post_batch(&s, "?mode=partial", "one-bad.geojson");
    assert_eq!(status, 201);
    assert_eq!(
        (partial["accepted"].as_u64(), partial["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    let after = history(&s, "yongbyon");
    assert_eq!(after.len(), before + 1);
    assert!(
        after
            .iter()
            .any(|e| e["properties"]["external_id"] == "bad-batch-1")
    );
}

#[test]
fn importing_the_same_batch_twice_stores_it_once() {
    let s = Server::start();
    let (first, _) = post_batch(&s, "", "mixed.geojson");
    assert_eq!(first, 201);
    let count = history(&s, "yongbyon").len();
    let (status, again) = post_batch(&s, "", "mixed.geojson");
    assert_eq!(status, 200);
    assert_eq!(again["stored"], false);
    assert!(again["already_imported_as"].is_string());
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 4);
    assert_eq!(history(&s, "yongbyon").len(), count);
    assert_eq!(
        s.geojson("/api/candidates")["features"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_feature_already_imported_under_its_external_id_is_a_duplicate() {
    let s = Server::start();
    post_batch(&s, "", "mixed.geojson");
    // Different bytes (so not the same batch), but one feature's (source, external_id) repeats.
    let (status, r) = post_batch(&s, "", "repeat-one.geojson");
    assert_eq!(status, 201);
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(r["duplicate_features"][0]["external_id"], "fx-1");
}

#[test]
fn unmatched_activity_on_two_days_becomes_a_candidate_listed_with_its_observations() {
    let s = Server::start();
    let (_, r) = post_batch(&s, "", "mixed.geojson");
    let id = r["candidates_created"][0].as_str().unwrap().to_string();
    let list = s.geojson("/api/candidates?state=open");
    let c = &list["features"][0];
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["properties"]["declaration"], "undeclared");
    assert_eq!(c["properties"]["observation_count"], 2);
    assert_eq!(c["geometry"]["type"], "Point");
    let lon = c["geometry"]["coordinates"][0].as_f64().unwrap();
    assert!(
        (127.0..127.003).contains(&lon),
        "centre of the cluster, got {lon}"
    );
}

#[test]
fn a_site_history_lists_revisions_and_observations_in_time_order() {
    let s = Server::start();
    post_batch(&s, "", "mixed.geojson");
    let events = history(&s, "punggye-ri");
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["properties"]["time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "history must be in time order");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["properties"]["event"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"revision") && kinds.contains(&"observation"));
    let created = events
        .iter()
        .find(|e| e["properties"]["event"] == "revision")
        .unwrap();
    assert_eq!(created["properties"]["change"], "created");
    assert!(
        created["properties"]["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["field"] == "geometry")
    );
    // The seed batch's 2018 portal demolition, and this batch's named observation.
    assert!(events.iter().any(|e| {
        e["properties"]["finding"] == "demolition"
            && e["properties"]["time"]
                .as_str()
                .unwrap()
                .starts_with("2018-05")
    }));
    assert!(
        events
            .iter()
            .any(|e| e["properties"]["external_id"] == "fx-2")
    );
    assert_eq!(s.get("/api/sites/no-such-site/history").status(), 404);
}

#[test]
fn changes_in_an_area_come_newest_first_and_page_without_gaps_or_repeats() {
    let s = Server::start();
    post_batch(&s, "", "mixed.geojson");
    let all = s.geojson("/api/changes?bbox=124,37,131,43&limit=1000");
    let all_ids: Vec<String> = all["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        all_ids.len() > 40,
        "seed revisions and observations, got {}",
        all_ids.len()
    );
    let times: Vec<&str> = all["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let mut paged = Vec::new();
    let mut url = "/api/changes?bbox=124,37,131,43&limit=7".to_string();
    loop {
        let page = s.geojson(&url);
        paged.extend(
            page["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_string()),
        );
        match page["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
        {
            Some(l) => {
                url = l["href"]
                    .as_str()
                    .unwrap()
                    .strip_prefix(&s.base)
                    .unwrap()
                    .to_string()
            }
            None => break,
        }
    }
    assert_eq!(paged, all_ids);

    let window = s.geojson("/api/changes?bbox=129.0,41.2,129.2,41.4&since=2018-01-01T00:00:00Z&until=2018-12-31T00:00:00Z&finding=demolition");
    let f = window["features"].as_array().unwrap();
    assert!(!f.is_empty());
    assert!(f.iter().all(|e| {
        e["properties"]["finding"] == "demolition"
            && e["properties"]["time"]
                .as_str()
                .unwrap()
                .starts_with("2018")
    }));
    let none = s.geojson("/api/changes?bbox=-10,-10,-5,-5");
    assert_eq!(none["numberReturned"], 0);
    assert_eq!(s.get("/api/changes?since=yesterday").status(), 400);
}

#[test]
fn writes_without_authority_get_401_and_store_nothing() {
    let s = Server::start_with(&["--token", "s3cret"]);
    let body = std::fs::read(fixture("mixed.geojson")).unwrap();
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/api/observations", s.base);
    for auth in [None, Some("Bearer wrong")] {
        let mut req = client
            .post(&url)
            .header("Content-Type", "application/geo+json")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(s.geojson("/api/candidates")["numberReturned"], 0);
    let ok = client
        .post(&url)
        .header("Content-Type", "application/geo+json")
        .header("Authorization", "Bearer s3cret")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(ok.status(), 201);
}

#[test]
fn a_body_that_is_not_json_is_refused_with_415() {
    let s = Server::start();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/observations", s.base))
        .header("Content-Type", "text/csv")
        .body("a,b")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/observations", s.base))
        .header("Content-Type", "application/json")
        .body(r#"{"type":"Feature"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["parameter"], "body");
}

#[test]
fn a_promoted_candidate_becomes_a_site_that_keeps_its_observations() {
    let s = Server::start();
    let (_, r) = post_batch(&s, "", "mixed.geojson");
    let cand = r["candidates_created"][0].as_str().unwrap().to_string();
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!(
            "{}/api/candidates/{cand}/promote?reason=analyst+review",
            s.base
        ))
        .header("Content-Type", "application/json")
        .body(
            r#"{"name": "Valley works near 40.5N 127E", "kind": "missile_base", "country": "PRK"}"#,
        )
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let site: Value = resp.json().unwrap();
    let id = site["id"].as_str().unwrap().to_string();
    assert_eq!(site["properties"]["declaration"], "undeclared");
    assert_eq!(site["properties"]["kind"], "missile_base");
    // It is in the catalogue, answers proximity, and carries its observations.
    let item = s.geojson(&format!("/api/collections/sites/items/{id}"));
    assert_eq!(item["properties"]["observation_count"], 2);
    assert_eq!(
        item["properties"]["last_observed_at"],
        "2024-04-10T03:00:00.000000Z"
    );
    let near = s.geojson("/api/nearby?lon=127.0015&lat=40.501&limit=1");
    assert_eq!(near["features"][0]["id"], id.as_str());
    assert_eq!(near["features"][0]["properties"]["distance_m"], 0.0);
    let events = history(&s, &id);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["properties"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "observation").count(), 2);
    let created = events
        .iter()
        .find(|e| e["properties"]["event"] == "revision")
        .unwrap();
    assert_eq!(created["properties"]["change"], "created");
    assert_eq!(created["properties"]["reason"], "analyst review");
    // The candidate is no longer open, and cannot be promoted twice.
    assert_eq!(s.geojson("/api/candidates?state=open")["numberReturned"], 0);
    assert_eq!(
        s.geojson(&format!("/api/candidates/{cand}"))["properties"]["state"],
        "promoted"
    );
    let again = client
        .post(format!("{}/api/candidates/{cand}/promote", s.base))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(again.status(), 404);
}

#[test]
fn a_dismissed_candidate_leaves_the_open_list() {
    let s = Server::start();
    let (_, r) = post_batch(&s, "", "mixed.geojson");
    let cand = r["candidates_created"][0].as_str().unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!(
            "{}/api/candidates/{cand}/dismiss?reason=cloud+shadow",
            s.base
        ))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.geojson("/api/candidates?state=open")["numberReturned"], 0);
    assert_eq!(
        s.geojson("/api/candidates?state=dismissed")["features"][0]["properties"]["note"],
        "cloud shadow"
    );
}

#[test]
fn sites_carry_when_they_were_last_observed_and_can_be_filtered_by_staleness() {
    let s = Server::start();
    let before = s.geojson("/api/collections/sites/items/yongbyon");
    let count = before["properties"]["observation_count"].as_u64().unwrap();
    assert!(count > 0, "the seed batch observes Yongbyon");
    post_batch(&s, "", "mixed.geojson");
    let after = s.geojson("/api/collections/sites/items/yongbyon");
    assert_eq!(
        after["properties"]["observation_count"].as_u64().unwrap(),
        count + 1
    );
    // The new 2024 observation is older than the seed's latest (2025), which stays the latest.
    assert_eq!(
        after["properties"]["last_observed_at"],
        before["properties"]["last_observed_at"]
    );
    assert!(before["properties"]["last_observed_at"].as_str().unwrap() > "2024-03-01");
    // Sites nobody has looked at since 2024 include those never observed; Punggye-ri (observed 2024-03-02) is not among them.
    let stale =
        s.geojson("/api/collections/sites/items?observed_before=2024-01-01T00:00:00Z&limit=100");
    let stale_ids: Vec<&str> = stale["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(!stale_ids.contains(&"punggye-ri"));
    // Three at a time, following `next`: the same sites in the same order,
    // and the same count on every page.
    let mut paged: Vec<String> = Vec::new();
    let mut url =
        "/api/collections/sites/items?observed_before=2024-01-01T00:00:00Z&limit=3".to_owned();
    loop {
        let page = s.geojson(&url);
        assert_eq!(page["numberMatched"], stale["numberMatched"], "{url}");
        for f in page["features"].as_array().unwrap() {
            paged.push(f["id"].as_str().unwrap().to_owned());
        }
        let next = page["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next");
        match next {
            Some(l) => url = l["href"].as_str().unwrap().replace(&s.base, ""),
            None => break,
        }
    }
    assert_eq!(paged, stale_ids);
    assert!(stale_ids.len() > 3);
    assert!(
        stale["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["properties"]["last_observed_at"].is_null()
                || f["properties"]["last_observed_at"].as_str().unwrap() < "2024-01-01")
    );
    let fresh = s.geojson("/api/collections/sites/items?observed_since=2024-01-01T00:00:00Z");
    let fresh_ids: Vec<&str> = fresh["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(fresh_ids.contains(&"punggye-ri"));
    assert_eq!(
        stale["numberMatched"].as_u64().unwrap() + fresh["numberMatched"].as_u64().unwrap(),
        SEED_SITES as u64
    );
    // A retired site leaves the count of those it matched, and comes back
    // to it when restored.
    let gone = fresh_ids.iter().find(|id| **id != "punggye-ri").unwrap();
    let matched = |q: &str| {
        s.geojson(&format!("/api/collections/sites/items?{q}"))["numberMatched"]
            .as_u64()
            .unwrap()
    };
    let since = "observed_since=2024-01-01T00:00:00Z";
    let was = matched(since);
    let items = format!("{}/api/collections/sites/items", s.base);
    let feature = s.geojson(&format!("/api/collections/sites/items/{gone}"));
    let http = reqwest::blocking::Client::new();
    // Every write declares JSON, as a cross-site form cannot.
    let retired = http
        .delete(format!("{items}/{gone}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(retired.status(), 204);
    assert_eq!(matched(since), was - 1);
    // Posting a retired site's id again restores it.
    let restored = http
        .post(&items)
        .header("content-type", "application/geo+json")
        .body(serde_json::to_string(&feature).unwrap())
        .send()
        .unwrap()
        .status();
    assert_eq!(restored, 201);
    assert_eq!(matched(since), was);
}

#[test]
fn a_batch_with_times_before_the_first_satellite_or_in_the_future_stores_nothing() {
    let s = Server::start();
    let before = history(&s, "yongbyon").len();
    let (status, problem) = post_batch(&s, "", "out-of-time.geojson");
    assert_eq!(status, 422);
    let report = &problem["report"];
    assert_eq!(report["stored"], false);
    let problems: Vec<(u64, &str, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["index"].as_u64().unwrap(),
                p["field"].as_str().unwrap(),
                p["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            (
                1,
                "properties.observed_at",
                "\"0001-01-01T00:00:00Z\" is before 1957-10-04, when the first satellite was launched"
            ),
            (
                2,
                "properties.observed_at",
                "\"9999-12-31T23:59:59Z\" is more than a day in the future"
            ),
        ]
    );
    assert_eq!(history(&s, "yongbyon").len(), before);

    let dir = tempfile::tempdir().unwrap();
    let (ok, cli) = cli_import(&dir.path().join("c.db"), "out-of-time.geojson", &[]);
    assert!(!ok);
    assert_eq!(cli["problems"], report["problems"]);
}

#[test]
fn text_a_spreadsheet_would_run_comes_back_inert_in_csv_while_numbers_and_wkt_stay() {
    let s = Server::start();
    let client = reqwest::blocking::Client::new();
    let site = serde_json::json!({"type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[-77.05, -12.05], [-77.03, -12.05], [-77.03, -12.03], [-77.05, -12.03], [-77.05, -12.05]]]},
        "properties": {"name": "=HYPERLINK(\"http://x\")", "country": "PER", "kind": "storage"}});
    let created = client
        .post(format!("{}/api/collections/sites/items", s.base))
        .header("Content-Type", "application/geo+json")
        .body(site.to_string())
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let batch = serde_json::json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-77.04, -12.04]},
         "properties": {"observed_at": "2024-05-01T02:10:00Z", "sensor": "@SUM(1+1)",
                        "finding": "other", "description": "-2+3"}}]});
    let imported = client
        .post(format!("{}/api/observations", s.base))
        .header("Content-Type", "application/geo+json")
        .body(batch.to_string())
        .send()
        .unwrap();
    assert_eq!(imported.status(), 201);

    let rows = |collection: &str| {
        let text = s
            .get(&format!(
                "/api/collections/{collection}/items?f=csv&bbox=-78,-13,-76,-11"
            ))
            .text()
            .unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1, "{text}");
        headers
            .iter()
            .map(str::to_owned)
            .zip(rows[0].iter().map(str::to_owned))
            .collect::<std::collections::HashMap<String, String>>()
    };
    let site = rows("sites");
    assert_eq!(site["name"], "'=HYPERLINK(\"http://x\")");
    assert_eq!(site["observation_count"], "1");
    let wkt = &site["wkt"];
    let ring = wkt
        .strip_prefix("POLYGON ((")
        .and_then(|r| r.strip_suffix("))"))
        .unwrap_or_else(|| panic!("{wkt}"));
    let vertices: Vec<Vec<f64>> = ring
        .split(", ")
        .map(|p| p.split(' ').map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(vertices[0], [-77.05, -12.05]);
    assert_eq!(vertices.len(), 5);

    let observation = rows("observations");
    assert_eq!(observation["sensor"], "'@SUM(1+1)");
    assert_eq!(observation["description"], "'-2+3");
    assert_eq!(observation["wkt"], "POINT (-77.04 -12.04)");
}
