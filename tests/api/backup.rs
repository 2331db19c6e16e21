//! `sitewatch backup` while the server writes, and `sitewatch check` on good
//! and damaged databases.

use crate::crash::{Daemon, ITEMS, client, observation_batch, site_feature};
use crate::helpers::BIN;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn sitewatch(args: &[&str], db: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "error")
        .output()
        .expect("run sitewatch")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How many observations with this `source` the database holds.
fn observations_from(conn: &rusqlite::Connection, source: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM observations WHERE source = ?1",
        [source],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_backup_taken_while_the_server_writes_passes_check_and_holds_every_earlier_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let copy = dir.path().join("copy.db");
    let server = Daemon::start(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let (base, halt, count) = (server.base.clone(), stop.clone(), written.clone());
    let n = 300;
    // Alternately imports a batch and creates a site; returns each
    // acknowledged write (batch column or site number) with when it was answered.
    let writer = std::thread::spawn(move || {
        let http = client();
        let mut acked = Vec::new();
        for k in 1.. {
            if halt.load(Ordering::SeqCst) {
                break;
            }
            let resp = if k % 2 == 1 {
                http.post(format!("{base}/api/observations"))
                    .header("content-type", "application/geo+json")
                    .body(observation_batch(&format!("backup-{k}"), k, n))
                    .send()
            } else {
                http.post(format!("{base}{ITEMS}"))
                    .header("content-type", "application/geo+json")
                    .body(site_feature(&format!("backup-{k}"), "Backed up", k).to_string())
                    .send()
            };
            let status = resp.expect("write").status();
            assert!(status.is_success(), "write {k}: {status}");
            acked.push((k, Instant::now()));
            count.fetch_add(1, Ordering::SeqCst);
        }
        acked
    });
    // Some writes first, however loaded the machine is, and more in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let began = Instant::now();
    let out = Command::new(BIN)
        .args(["backup", "--db"])
        .arg(&db)
        .arg(&copy)
        .output()
        .unwrap();
    let ended = Instant::now();
    assert!(out.status.success(), "{}", text(&out));
    // `check` reads one snapshot, so the live database passes while it is written.
    let live = sitewatch(&["check"], &db);
    assert!(live.status.success(), "{}", text(&live));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().unwrap();
    let during = acked
        .iter()
        .filter(|(_, t)| *t > began && *t < ended)
        .count();
    eprintln!(
        "backup: took {:?} while {} writes were acknowledged, {during} of them during it",
        ended - began,
        acked.len()
    );

    let check = sitewatch(&["check"], &copy);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("ok: no problems found"));

    // Every write acknowledged before the backup began is in it, and every
    // batch in it is whole.
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let earlier: Vec<usize> = acked
        .iter()
        .filter(|(_, t)| *t < began)
        .map(|(k, _)| *k)
        .collect();
    assert!(earlier.len() >= 2, "too few writes before the backup");
    for k in 1..=acked.len() + 1 {
        let name = format!("backup-{k}");
        let present = if k % 2 == 1 {
            let found = observations_from(&conn, &name);
            assert!(found == 0 || found == n as i64, "{name}: {found} of {n}");
            found > 0
        } else {
            conn.query_row("SELECT count(*) FROM sites WHERE id = ?1", [&name], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                == 1
        };
        if earlier.contains(&k) {
            assert!(present, "{name} was acknowledged before the backup began");
        }
    }
    drop(conn);

    // The copy serves as a catalogue of its own.
    let restored = Daemon::start(&copy);
    let site = format!("backup-{}", earlier.iter().rfind(|k| *k % 2 == 0).unwrap());
    let resp = client()
        .get(format!("{}{ITEMS}/{site}", restored.base))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{site} in the restored catalogue");
}

#[test]
fn a_backup_does_not_replace_an_existing_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let copy = dir.path().join("copy.db");
    assert!(sitewatch(&["export", "sites"], &db).status.success());
    std::fs::write(&copy, "an older backup").unwrap();
    let refused = Command::new(BIN)
        .args(["backup", "--db"])
        .arg(&db)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--force"), "{}", text(&refused));
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "an older backup");
    let forced = Command::new(BIN)
        .args(["backup", "--force", "--db"])
        .arg(&db)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(sitewatch(&["check"], &copy).status.success());
}

#[test]
fn check_passes_a_new_database_and_lists_each_problem_of_a_damaged_one_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    assert!(sitewatch(&["export", "sites"], &db).status.success());
    let clean = sitewatch(&["check"], &db);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(
        text(&clean).contains("ok: no problems found"),
        "{}",
        text(&clean)
    );

    // Damage it behind the program's back: a site loses its only revision,
    // and another's stored footprint stops being a valid polygon.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DELETE FROM site_revisions WHERE site_id = 'punggye-ri';
         UPDATE site_revisions SET feature = json_set(feature, '$.geometry.coordinates[0]', json('[[1,1],[2,2]]'))
          WHERE site_id = 'sohae' AND revision = (SELECT revision FROM sites WHERE id = 'sohae');",
    )
    .unwrap();
    drop(conn);
    let damaged = sitewatch(&["check"], &db);
    let report = text(&damaged);
    assert_eq!(damaged.status.code(), Some(1), "{report}");
    assert!(
        report.contains("site punggye-ri: has no revisions"),
        "{report}"
    );
    assert!(report.contains("site sohae:"), "{report}");
    assert!(report.contains("problem(s)"), "{report}");
}

#[test]
fn check_refuses_a_missing_database_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("absent.db");
    let out = sitewatch(&["check"], &db);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    assert!(!db.exists());
}
