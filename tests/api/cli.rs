//! The command line: import, nearby and export against a temp database.

use crate::helpers::BIN;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn run(db: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sitewatch")
}

fn stdout_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/sites/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn nearby_on_a_new_database_seeds_it_and_prints_geojson_or_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let doc = stdout_json(&run(
        &db,
        &[
            "nearby", "--lon", "129.0862", "--lat", "41.28", "--limit", "2",
        ],
    ));
    assert_eq!(doc["features"][0]["id"], "punggye-ri");
    assert_eq!(doc["features"][0]["properties"]["distance_m"], 0.0);
    let table = run(
        &db,
        &[
            "nearby", "--lon", "129.0862", "--lat", "41.28", "--limit", "2", "--format", "table",
        ],
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().nth(1).unwrap().contains("punggye-ri"));
}

#[test]
fn importing_a_site_twice_stores_it_once_and_a_change_makes_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let first = stdout_json(&run(
        &db,
        &["import", "sites", &fixture("new-site.geojson")],
    ));
    assert_eq!(first["created"], serde_json::json!(["test-new-site"]));
    let again = stdout_json(&run(
        &db,
        &["import", "sites", &fixture("new-site.geojson")],
    ));
    assert_eq!(again["unchanged"], 1);
    assert_eq!(again["created"].as_array().unwrap().len(), 0);
    // Re-importing the exported catalogue changes nothing.
    let export = run(&db, &["export", "sites"]);
    let exported = dir.path().join("export.geojson");
    std::fs::write(&exported, &export.stdout).unwrap();
    let round = stdout_json(&run(&db, &["import", "sites", exported.to_str().unwrap()]));
    assert_eq!(round["unchanged"], 36);
    // A changed status is an update.
    let changed = std::fs::read_to_string(fixture("new-site.geojson"))
        .unwrap()
        .replace("\"status\": \"unknown\"", "\"status\": \"active\"");
    let changed_path = dir.path().join("changed.geojson");
    std::fs::write(&changed_path, changed).unwrap();
    let upd = stdout_json(&run(
        &db,
        &["import", "sites", changed_path.to_str().unwrap()],
    ));
    assert_eq!(upd["updated"], serde_json::json!(["test-new-site"]));
}

#[test]
fn an_invalid_batch_stores_nothing_and_names_each_bad_feature() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let before = run(&db, &["export", "sites"]).stdout;
    let out = run(
        &db,
        &["import", "sites", &fixture("bad-two-features.geojson")],
    );
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(
        (rejected[0]["index"].as_u64(), rejected[0]["field"].as_str()),
        (Some(1), Some("geometry.coordinates[0]"))
    );
    assert_eq!(
        (rejected[1]["index"].as_u64(), rejected[1]["field"].as_str()),
        (Some(2), Some("properties.kind"))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was stored"));
    assert_eq!(
        run(&db, &["export", "sites"]).stdout,
        before,
        "the valid feature must not have been stored"
    );
}

#[test]
fn export_writes_every_seed_site_as_geojson() {
    let dir = tempfile::tempdir().unwrap();
    let doc = stdout_json(&run(&dir.path().join("c.db"), &["export", "sites"]));
    assert_eq!(doc["type"], "FeatureCollection");
    assert_eq!(doc["features"].as_array().unwrap().len(), 35);
}
