//! Killing the importer at any moment leaves the database as before or as after.

use crate::helpers::BIN;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A batch big enough that importing it takes a while, so a kill lands mid-way.
fn write_big_batch(path: &std::path::Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(f, r#"{{"type":"FeatureCollection","features":["#).unwrap();
    for i in 0..n {
        if i > 0 {
            write!(f, ",").unwrap();
        }
        // Spread over the Korean peninsula: some inside seed footprints, most not.
        let lon = 124.5 + (i % 997) as f64 * 0.005;
        let lat = 37.5 + (i % 991) as f64 * 0.005;
        write!(
            f,
            r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{lon:.5},{lat:.5}]}},"properties":{{"observed_at":"2025-01-{:02}T00:00:00Z","sensor":"test","finding":"vehicle_activity","source":"crash-test","external_id":"c{i}"}}}}"#,
            1 + i % 28
        )
        .unwrap();
    }
    write!(f, "]}}").unwrap();
}

fn counts(db: &std::path::Path) -> (i64, i64, String) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let obs: i64 = conn
        .query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
        .unwrap();
    let batches: i64 = conn
        .query_row("SELECT count(*) FROM batches WHERE stored = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    (obs, batches, integrity)
}

#[test]
fn a_kill_mid_import_leaves_the_database_as_before_or_as_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let batch = dir.path().join("big.geojson");
    let n = 60_000;
    write_big_batch(&batch, n);
    // Create and seed the database first.
    assert!(
        Command::new(BIN)
            .args(["export", "sites", "--db"])
            .arg(&db)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let (before, before_batches, ok) = counts(&db);
    assert_eq!(ok, "ok");
    let mut killed_mid_way = 0;
    for delay_ms in [150u64, 400, 900] {
        let mut child = Command::new(BIN)
            .args(["import", "observations", "--db"])
            .arg(&db)
            .arg(&batch)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let (obs, batches, integrity) = counts(&db);
        assert_eq!(integrity, "ok", "after a kill at {delay_ms} ms");
        let as_before = obs == before && batches == before_batches;
        let as_after = obs == before + n as i64 && batches == before_batches + 1;
        assert!(
            as_before || as_after,
            "kill at {delay_ms} ms left {obs} observations in {batches} batches (before: {before} in {before_batches})"
        );
        if as_before && !finished {
            killed_mid_way += 1;
        }
        if as_after {
            break;
        }
    }
    assert!(
        killed_mid_way > 0,
        "no kill landed during an import; make the batch bigger"
    );
}
