//! The command line: import, nearby and export against a temp database.

use crate::helpers::{BIN, SEED_SITES};
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
    assert_eq!(round["unchanged"], SEED_SITES + 1);
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

/// The text of `n` synthetic sites from `sitewatch gen`, made in `dir`.
fn generated_sites(dir: &Path, n: usize, seed: u64) -> Vec<u8> {
    let made = Command::new(BIN)
        .args(["gen", "--sites", &n.to_string(), "--observations", "0"])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(dir.join("gen"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::read(dir.join("gen/sites.geojson")).unwrap()
}

/// Runs `sitewatch import sites -` with `body` on standard input.
fn import_from_stdin(db: &Path, body: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["import", "sites", "-", "--db"])
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sitewatch");
    // Written from a thread: the command answers before reading it all when
    // it fails, and a full pipe must not block this test.
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn a_large_batch_read_while_it_is_written_stores_nothing_when_its_last_feature_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    // Large enough that the first sites are written in bulk before the bad
    // last one is read.
    let n = 30_000;
    let text = generated_sites(dir.path(), n, 3);
    let mut doc: Value = serde_json::from_slice(&text).unwrap();
    let before = run(&db, &["export", "sites"]).stdout;

    let last = n - 1;
    doc["features"][last]["properties"]["kind"] = "volcano".into();
    let out = import_from_stdin(&db, doc.to_string().as_bytes());
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stored"], false);
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["index"].as_u64(), Some(last as u64));
    assert_eq!(rejected[0]["field"], "properties.kind");
    assert_eq!(run(&db, &["export", "sites"]).stdout, before);

    let out = import_from_stdin(&db, &text);
    let report = stdout_json(&out);
    assert_eq!(report["created"].as_array().unwrap().len(), n);
    let all = stdout_json(&run(&db, &["export", "sites"]));
    assert_eq!(all["features"].as_array().unwrap().len(), n + SEED_SITES);
}

#[test]
fn an_import_killed_while_it_writes_straight_into_the_file_leaves_the_catalogue_as_before() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let text = generated_sites(dir.path(), 30_000, 4);
    let before = run(&db, &["export", "sites"]).stdout;

    let mut child = Command::new(BIN)
        .args(["import", "sites", "-", "--db"])
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Most of the file, never the end: the import cannot finish, and once
    // the rollback journal is there it is writing into the file itself.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&text[..text.len() * 2 / 3]).unwrap();
    stdin.flush().unwrap();
    let journal = dir.path().join("c.db-journal");
    while !journal.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended early"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);

    assert_eq!(run(&db, &["export", "sites"]).stdout, before);
    let check = run(&db, &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let report = stdout_json(&import_from_stdin(&db, &text));
    assert_eq!(report["created"].as_array().unwrap().len(), 30_000);
}

#[test]
fn export_writes_every_seed_site_as_geojson() {
    let dir = tempfile::tempdir().unwrap();
    let doc = stdout_json(&run(&dir.path().join("c.db"), &["export", "sites"]));
    assert_eq!(doc["type"], "FeatureCollection");
    assert_eq!(doc["features"].as_array().unwrap().len(), SEED_SITES);
}

/// Runs a command that must end by itself (a refused `serve` among them),
/// killing it if it is still running after a while.
fn run_to_end(db: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sitewatch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("sitewatch {args:?} did not end: it should have refused to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn refused(o: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted: {stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_existing_empty_database_file_is_refused_not_made_a_new_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::write(dir.path().join("c.db-wal"), [7u8; 100]).unwrap();
    let says = format!(
        "{} is an empty file (0 bytes), not a catalogue",
        db.display()
    );
    refused(&run_to_end(&db, &["serve", "--bind", "127.0.0.1:0"]), &says);
    let import = run(&db, &["import", "sites", &fixture("new-site.geojson")]);
    refused(&import, &says);
    refused(&import, "c.db-wal beside it holds 100 bytes");
    refused(&run(&db, &["export", "sites"]), &says);
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    assert_eq!(
        std::fs::read(dir.path().join("c.db-wal")).unwrap(),
        [7u8; 100]
    );
    // A path with no file yet is still a new catalogue.
    std::fs::remove_file(&db).unwrap();
    std::fs::remove_file(dir.path().join("c.db-wal")).unwrap();
    let doc = stdout_json(&run(&db, &["export", "sites"]));
    assert_eq!(doc["features"].as_array().unwrap().len(), SEED_SITES);
}

#[test]
fn a_read_only_database_is_refused_by_commands_that_write_and_read_by_those_that_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    stdout_json(&run(&db, &["export", "sites"]));
    set_mode(&db, 0o444);
    let says = format!("{} is read-only", db.display());
    refused(&run_to_end(&db, &["serve", "--bind", "127.0.0.1:0"]), &says);
    refused(
        &run(&db, &["import", "sites", &fixture("new-site.geojson")]),
        &says,
    );
    let batch = format!(
        "{}/tests/fixtures/observations/mixed.geojson",
        env!("CARGO_MANIFEST_DIR")
    );
    refused(&run(&db, &["import", "observations", &batch]), &says);
    let doc = stdout_json(&run(&db, &["export", "sites"]));
    assert_eq!(doc["features"].as_array().unwrap().len(), SEED_SITES);
    let near = stdout_json(&run(
        &db,
        &[
            "nearby", "--lon", "129.0862", "--lat", "41.28", "--limit", "1",
        ],
    ));
    assert_eq!(near["features"][0]["id"], "punggye-ri");
    assert!(run(&db, &["check"]).status.success());
    set_mode(&db, 0o644);

    // A folder SQLite cannot keep its journal in is refused the same way.
    set_mode(dir.path(), 0o555);
    let serve = run_to_end(&db, &["serve", "--bind", "127.0.0.1:0"]);
    let export = run(&db, &["export", "sites"]);
    set_mode(dir.path(), 0o755);
    refused(&serve, &format!("{} is read-only", dir.path().display()));
    assert_eq!(
        stdout_json(&export)["features"].as_array().unwrap().len(),
        SEED_SITES
    );
}
