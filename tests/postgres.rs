//! Moving a catalogue into PostgreSQL/PostGIS with `sitewatch migrate`, against a
//! cluster of its own in a temporary folder. Without PostgreSQL and PostGIS the
//! tests say why and skip, except under CI, where `.ci/run` installs them.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sitewatch");

/// A PostgreSQL cluster listening only on a socket in its own folder, stopped
/// when dropped.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// Runs a PostgreSQL program: as the `postgres` user when we are root, since
/// PostgreSQL will not run as root.
fn as_pg(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Cluster {
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).max())
            .filter(|b| b.join("initdb").is_file());
        let postgis = std::fs::read_dir("/usr/share/postgresql").is_ok_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().join("extension/postgis.control").is_file())
        });
        let Some(bin) = bin.filter(|_| postgis) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs these tests: .ci/run installs postgresql-15-postgis-3"
            );
            eprintln!(
                "skipped: PostgreSQL with PostGIS is not installed (Debian: postgresql-15-postgis-3)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // The postgres user must reach the folder and own the cluster's.
        Command::new("chmod")
            .arg("755")
            .arg(dir.path())
            .status()
            .unwrap();
        let _ = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status();
        let ok = as_pg(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let ok = as_pg(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p 5432 -k {} -c listen_addresses='' -c fsync=off",
                dir.path().display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        Some(Self { bin, dir })
    }

    fn url(&self) -> String {
        format!(
            "host={} port=5432 user=postgres dbname=postgres",
            self.dir.path().display()
        )
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn sitewatch(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sitewatch")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A seeded catalogue with one site renamed and a candidate formed by two
/// unmatched observations on two days.
fn catalogue(dir: &Path) -> PathBuf {
    let db = dir.join("c.db");
    let db_arg = db.to_str().unwrap();
    let sites: Value =
        serde_json::from_slice(&ok(sitewatch(&["export", "sites", "--db", db_arg])).stdout)
            .unwrap();
    let mut yongbyon = sites["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "yongbyon")
        .unwrap()
        .clone();
    yongbyon["properties"]["name"] = json!("Yongbyon (renamed)");
    let edit = dir.join("edit.geojson");
    std::fs::write(
        &edit,
        json!({"type": "FeatureCollection", "features": [yongbyon]}).to_string(),
    )
    .unwrap();
    ok(sitewatch(&[
        "import",
        "sites",
        "--db",
        db_arg,
        "--reason",
        "renamed",
        edit.to_str().unwrap(),
    ]));
    let point = |lon: f64, day: u32| {
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, 41.7]},
            "properties": {"observed_at": format!("2025-03-{day:02}T00:00:00Z"), "sensor": "s", "finding": "excavation"}})
    };
    let batch = dir.join("batch.geojson");
    std::fs::write(
        &batch,
        json!({"type": "FeatureCollection", "features": [point(127.5, 1), point(127.501, 2)]})
            .to_string(),
    )
    .unwrap();
    ok(sitewatch(&[
        "import",
        "observations",
        "--db",
        db_arg,
        batch.to_str().unwrap(),
    ]));
    db
}

fn count(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn a_catalogue_moved_into_postgis_keeps_its_history_and_answers_proximity_as_sitewatch_does() {
    let Some(pg) = Cluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = catalogue(dir.path());
    let out = ok(sitewatch(&[
        "migrate",
        "--from",
        db.to_str().unwrap(),
        "--to",
        &pg.url(),
    ]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("each table holds what SQLite did"), "{said}");

    let mut client = pg.client();
    let sqlite = rusqlite::Connection::open(&db).unwrap();
    for table in [
        "sites",
        "site_revisions",
        "batches",
        "candidates",
        "observations",
        "observation_sites",
        "change_log",
    ] {
        let there: i64 = sqlite
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert!(there > 0, "{table} is empty in the test's catalogue");
        assert_eq!(
            count(&mut client, &format!("SELECT count(*) FROM {table}")),
            there,
            "{table}"
        );
    }
    // The edit is history there too: two revisions, the second naming its change.
    let revisions = client
        .query(
            "SELECT revision, feature -> 'properties' ->> 'name', diff::text, reason
             FROM site_revisions WHERE site_id = 'yongbyon' ORDER BY revision",
            &[],
        )
        .unwrap();
    assert_eq!(revisions.len(), 2);
    assert_eq!(revisions[1].get::<_, String>(1), "Yongbyon (renamed)");
    assert!(revisions[1].get::<_, String>(2).contains("name"));
    assert_eq!(
        revisions[1].get::<_, Option<String>>(3).as_deref(),
        Some("renamed")
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM candidates c JOIN observations o ON o.candidate_id = c.id"
        ),
        2
    );

    // PostGIS on the moved footprints finds what sitewatch finds, at the same distances.
    for (lon, lat) in [
        (125.75, 39.8),
        (129.08, 41.28),
        (124.7, 39.66),
        (126.0, 38.5),
    ] {
        let radius = 60_000.0;
        let near: Value = serde_json::from_slice(
            &ok(sitewatch(&[
                "nearby",
                "--db",
                db.to_str().unwrap(),
                "--lon",
                &lon.to_string(),
                "--lat",
                &lat.to_string(),
                "--radius-m",
                "60000",
            ]))
            .stdout,
        )
        .unwrap();
        let mine: Vec<(String, f64)> = near["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_owned(),
                    f["properties"]["distance_m"].as_f64().unwrap(),
                )
            })
            .collect();
        let theirs: Vec<(String, f64)> = client
            .query(
                "SELECT id, ST_Distance(footprint, ST_MakePoint($1, $2)::geography)
                 FROM sites WHERE NOT retired AND ST_DWithin(footprint, ST_MakePoint($1, $2)::geography, $3)",
                &[&lon, &lat, &radius],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let near_edge = |d: f64| (d - radius).abs() < 1.0;
        for (id, d) in &mine {
            match theirs.iter().find(|(t, _)| t == id) {
                Some((_, e)) => assert!((d - e).abs() < 0.5, "{id}: {d} m here, {e} m in PostGIS"),
                None => assert!(
                    near_edge(*d),
                    "{id} at {d} m is missing from PostGIS's answer"
                ),
            }
        }
        for (id, e) in &theirs {
            assert!(
                mine.iter().any(|(m, _)| m == id) || near_edge(*e),
                "{id} at {e} m only in PostGIS's answer"
            );
        }
        assert!(
            !mine.is_empty(),
            "({lon}, {lat}) should have sites within 60 km"
        );
    }

    // A second move into the same database is refused and changes nothing.
    let again = sitewatch(&["migrate", "--from", db.to_str().unwrap(), "--to", &pg.url()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a catalogue"));
    assert_eq!(count(&mut client, "SELECT count(*) FROM batches"), 2);
}

#[test]
fn check_against_postgres_finds_both_sides_agree_then_names_each_row_changed_on_one_side() {
    let Some(pg) = Cluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = catalogue(dir.path());
    let file = db.to_str().unwrap();
    ok(sitewatch(&["migrate", "--from", file, "--to", &pg.url()]));
    let out = ok(sitewatch(&["check", "--db", file, "--against", &pg.url()]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("hold the same catalogue"), "{said}");
    assert!(!said.contains("difference"), "{said}");
    assert!(
        said.contains("observations:"),
        "every table is compared: {said}"
    );

    // One value per kind of column, changed on the PostgreSQL side only.
    let mut client = pg.client();
    client
        .batch_execute(
            "UPDATE sites SET feature = jsonb_set(feature, '{properties,name}', '\"Renamed in SQL\"')
              WHERE id = 'punggye-ri';
             UPDATE site_revisions SET recorded_at = recorded_at + interval '1 second'
              WHERE site_id = 'yongbyon' AND revision = 2;
             UPDATE observation_sites SET distance_m = distance_m + 0.5
              WHERE observation_id = (SELECT min(observation_id) FROM observation_sites);
             DELETE FROM change_log WHERE seq = (SELECT max(seq) FROM change_log);
             INSERT INTO catalogue_meta (key, value) VALUES ('zz-added', 'x');
             UPDATE sites SET footprint = ST_Buffer(footprint, 10) WHERE id = 'sohae';",
        )
        .unwrap();
    let out = sitewatch(&["check", "--db", file, "--against", &pg.url()]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "sites punggye-ri: feature differ",
        "site_revisions yongbyon, 2: recorded_at differ",
        "observation_sites ",
        "distance_m differ",
        "change_log ",
        "only in SQLite",
        "catalogue_meta zz-added: only in PostgreSQL",
        "sites.footprint sohae: the PostGIS column does not hold the feature's geometry",
        "sites.footprint: 1 row(s) not the feature's geometry",
        "site_revisions.footprint: the feature's geometry in every row",
    ] {
        assert!(said.contains(expected), "{expected:?} in:\n{said}");
    }
    assert!(
        !said.contains("sites yongbyon"),
        "a row left alone is not reported: {said}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("do not hold the same catalogue"), "{err}");
}

#[test]
fn a_postgres_url_where_a_file_is_expected_is_refused_with_what_to_do() {
    let out = sitewatch(&[
        "nearby",
        "--db",
        "postgres://ana:s3cret@db.example/sites",
        "--lon",
        "0",
        "--lat",
        "0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sitewatch migrate"), "{err}");
    assert!(!err.contains("s3cret"), "the password is not echoed: {err}");
    assert!(
        !Path::new("postgres:").exists(),
        "no file was made of the URL"
    );
}
