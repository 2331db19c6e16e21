//! Moving a catalogue into PostgreSQL/PostGIS with `sitewatch migrate`, against a
//! cluster of its own in a temporary folder. Without PostgreSQL and PostGIS the
//! tests say why and skip, except under CI, where `.ci/run` installs them.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/pg_cluster.rs"]
mod pg_cluster;
use pg_cluster::Cluster;
#[path = "support/node.rs"]
mod node;
use node::Node;

const BIN: &str = env!("CARGO_BIN_EXE_sitewatch");

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

    // The observations' extent, which each side keeps rather than computes,
    // arrives with them.
    {
        use sitewatch::store::ObservationReads;
        let moved = sitewatch::store::postgres::PgStore::connect(&pg.url())
            .unwrap()
            .observation_extent()
            .unwrap();
        assert!(moved.is_some());
        let kept = sitewatch::store::SqliteStore::open(&db)
            .unwrap()
            .observation_extent()
            .unwrap();
        assert_eq!(moved, kept);

        // Live sites bring their packed forms, which a node reads at start,
        // and read as the same sites as SQLite's.
        use sitewatch::store::SiteReads;
        let pg_store = sitewatch::store::postgres::PgStore::connect(&pg.url()).unwrap();
        let unpacked = count(
            &mut pg.client(),
            "SELECT count(*) FROM sites WHERE NOT retired AND packed IS NULL",
        );
        assert_eq!(unpacked, 0);
        let lite = sitewatch::store::SqliteStore::open(&db).unwrap();
        assert_eq!(pg_store.live_sites().unwrap(), lite.live_sites().unwrap());
        assert_eq!(
            pg_store.retired_sites().unwrap(),
            lite.retired_sites().unwrap()
        );
    }

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
fn a_postgres_url_that_cannot_be_reached_is_named_without_its_password() {
    let out = sitewatch(&[
        "nearby",
        "--db",
        "postgres://ana:s3cret@db.invalid/sites",
        "--lon",
        "0",
        "--lat",
        "0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres://ana@db.invalid/sites"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("s3cret"), "the password is not echoed: {err}");
    assert!(
        !Path::new("postgres:").exists(),
        "no file was made of the URL"
    );
}

#[test]
fn check_of_a_postgres_url_says_how_to_compare_one_instead() {
    let out = sitewatch(&["check", "--db", "postgres://ana:s3cret@db.invalid/sites"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--against"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

fn ids(collection: &Value) -> Vec<&str> {
    collection["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect()
}

#[test]
fn a_server_on_postgis_seeds_edits_imports_and_keeps_it_all_across_a_restart() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.postgres_url();
    let items = "/api/collections/sites/items";
    let s = Node::start(BIN, &url, &[]);
    assert_eq!(s.get(&format!("{items}?limit=1"))["numberMatched"], 42);

    let site = json!({"type": "Feature", "id": "pg-test-site",
        "geometry": {"type": "Polygon", "coordinates": [[[127.30, 40.70], [127.32, 40.70], [127.32, 40.72], [127.30, 40.72], [127.30, 40.70]]]},
        "properties": {"name": "A site on PostGIS", "country": "PRK", "kind": "storage",
                       "declaration": "undeclared", "status": "active", "confidence": "low"}});
    let (status, created) = s.send(reqwest::Method::POST, items, &site);
    assert_eq!(status, 201, "{created}");
    let mut renamed = created.clone();
    renamed["properties"]["name"] = json!("A site on PostGIS, renamed");
    let (status, body) = s.send(
        reqwest::Method::PUT,
        &format!("{items}/pg-test-site"),
        &renamed,
    );
    assert_eq!(status, 200, "{body}");
    let near = s.get("/api/nearby?lon=127.31&lat=40.71&limit=1");
    assert_eq!(ids(&near), ["pg-test-site"]);
    assert_eq!(near["features"][0]["properties"]["distance_m"], 0.0);

    let batch = std::fs::read(format!(
        "{}/tests/fixtures/observations/mixed.geojson",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/observations", s.base))
        .header("content-type", "application/geo+json")
        .body(batch)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let report: Value = resp.json().unwrap();
    assert_eq!(report["accepted"], 4, "{report}");
    assert_eq!(report["matched"], 2, "{report}");
    assert_eq!(report["candidates_created"].as_array().unwrap().len(), 1);
    let observations = s.get("/api/collections/observations/items?limit=1000");
    drop(s);

    // Everything is in the database, not in the node: a new node sees it all.
    let s = Node::start(BIN, &url, &[]);
    assert_eq!(s.get(&format!("{items}?limit=1"))["numberMatched"], 43);
    let history = s.get("/api/sites/pg-test-site/history");
    let names: Vec<&str> = history["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names.len(), 2, "{history}");
    // The same observations, page links (which name the node) aside.
    let without_links = |page: &Value| -> Vec<Value> {
        page["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| json!([f["id"], f["geometry"], f["properties"]]))
            .collect()
    };
    let again = s.get("/api/collections/observations/items?limit=1000");
    assert_eq!(again["numberMatched"], observations["numberMatched"]);
    assert!(
        without_links(&again) == without_links(&observations),
        "the observations differ after the restart"
    );

    // And PostGIS answers on the same tables.
    let mut client = cluster.client();
    let within: i64 = client
        .query_one(
            "SELECT count(*) FROM sites WHERE NOT retired AND ST_DWithin(footprint, ST_MakePoint(127.31, 40.71)::geography, 1)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(within, 1);
}

#[test]
fn gen_loads_a_new_postgres_database_and_refuses_one_that_holds_a_catalogue() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.new_database("generated");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    let out = out.to_str().unwrap();
    let args = [
        "gen",
        "--sites",
        "300",
        "--observations",
        "500",
        "--out",
        out,
        "--db",
        &url,
    ];
    ok(sitewatch(&args));
    let mut client = cluster.client_of("generated");
    assert_eq!(count(&mut client, "SELECT count(*) FROM sites"), 300);
    assert_eq!(count(&mut client, "SELECT count(*) FROM observations"), 500);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM sites WHERE id = 'yongbyon'"
        ),
        0,
        "without the built-in seed"
    );

    let again = sitewatch(&args);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds a catalogue"), "{err}");
    assert_eq!(count(&mut client, "SELECT count(*) FROM sites"), 300);
}

/// A certificate authority of the test's own, as PEM, and its issuer.
fn authority(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

#[test]
fn a_server_that_takes_only_tls_is_reached_as_sslmode_says_with_its_certificate_checked() {
    let ca = authority("sitewatch test authority");
    let stranger = authority("someone else");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let Some(pg) = Cluster::start_tls(&cert.pem(), &key.serialize_pem()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ca.pem");
    let theirs = dir.path().join("other.pem");
    std::fs::write(&ours, ca.pem()).unwrap();
    std::fs::write(&theirs, stranger.pem()).unwrap();
    let port = pg.tcp_port();
    let url =
        |host: &str, query: String| format!("postgresql://postgres@{host}:{port}/postgres?{query}");
    let root = |f: &Path| format!("sslrootcert={}", f.display());
    let encrypted = |u: &str| -> Result<bool, String> {
        let mut c = sitewatch::store::postgres::connect(u).map_err(|e| e.to_string())?;
        Ok(c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0))
    };

    // Encrypted, the certificate taken as it comes (libpq's require and prefer).
    assert_eq!(
        encrypted(&url("localhost", "sslmode=require".into())),
        Ok(true)
    );
    assert_eq!(encrypted(&url("127.0.0.1", String::new())), Ok(true));
    // The server refuses a connection without TLS.
    assert!(encrypted(&url("127.0.0.1", "sslmode=disable".into())).is_err());
    // Checked against our authority, with the name, then the chain only.
    let full = format!("sslmode=verify-full&{}", root(&ours));
    assert_eq!(encrypted(&url("localhost", full.clone())), Ok(true));
    let wrong_name = encrypted(&url("127.0.0.1", full)).unwrap_err();
    assert!(wrong_name.contains("certificate"), "{wrong_name}");
    let ca_only = format!("sslmode=verify-ca&{}", root(&ours));
    assert_eq!(encrypted(&url("127.0.0.1", ca_only)), Ok(true));
    // Another authority's certificate is not trusted, in any verifying mode.
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = encrypted(&url(
            "localhost",
            format!("sslmode={mode}&{}", root(&theirs)),
        ))
        .unwrap_err();
        assert!(e.contains("certificate"), "{mode}: {e}");
    }

    // On the local socket there is no TLS, whatever sslmode says, as with libpq.
    let socket = format!("{}&sslmode=verify-full&{}", pg.postgres_url(), root(&ours));
    assert_eq!(encrypted(&socket), Ok(false));

    // The real binary, writing a catalogue over a verified connection.
    let db = url("localhost", format!("sslmode=verify-full&{}", root(&ours)));
    ok(sitewatch(&[
        "gen",
        "--sites",
        "25",
        "--out",
        dir.path().join("gen").to_str().unwrap(),
        "--db",
        &db,
    ]));
    let mut c = sitewatch::store::postgres::connect(&db).unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM sites"), 25);
}
