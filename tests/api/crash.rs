//! Killing the importer or the server at any moment leaves the database as
//! before or as after each write, and SIGTERM lets the server finish first.

use crate::helpers::BIN;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------
// The server: killed with SIGKILL at random moments, and stopped with SIGTERM.

/// A `sitewatch serve` on a database the test owns, so that it can be killed
/// and started again on the same file (the helpers' server owns its database).
pub struct Daemon {
    child: std::process::Child,
    pub base: String,
}

impl Daemon {
    pub fn start(db: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(db)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sitewatch serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the address line");
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "unexpected first line {line:?}"
        );
        Self { child, base }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// SIGTERM, then waits up to `limit` for the process to exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A client for the tests' writes; a killed server fails its requests at once.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// An observation batch of `n` points whose `source` is `marker`, on a
/// meridian of its own in the South Pacific (column `column`), 2 km apart: no
/// site is near, no two points cluster, and `marker_bbox(column, n)` holds
/// exactly this batch.
pub fn observation_batch(marker: &str, column: usize, n: usize) -> String {
    let lon = column_lon(column);
    let features: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon, -50.0 + i as f64 * 0.02]},
                "properties": {"observed_at": "2025-03-01T00:00:00Z", "sensor": "test",
                               "finding": "vehicle_activity", "source": marker}})
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features}).to_string()
}

/// Columns 0.02 degrees (at least 1.4 km) apart, from the antimeridian east.
fn column_lon(column: usize) -> f64 {
    -179.0 + (column % 17_000) as f64 * 0.02
}

/// The box that holds the first `n` points of column `column` and nothing else.
pub fn marker_bbox(column: usize, n: usize) -> String {
    let lon = column_lon(column);
    format!(
        "{},{},{},{}",
        lon - 0.001,
        -50.001,
        lon + 0.001,
        -50.0 + (n as f64 - 0.5) * 0.02
    )
}

/// A site the tests create and edit: a small square in Mongolia, away from the
/// seed sites and the observation lines.
pub fn site_feature(id: &str, name: &str, slot: usize) -> Value {
    let lon = 100.0 + (slot % 100) as f64 * 0.1;
    let lat = 45.0 + (slot / 100) as f64 * 0.1;
    json!({"type": "Feature", "id": id,
        "geometry": {"type": "Polygon", "coordinates": [[[lon, lat], [lon + 0.01, lat], [lon + 0.01, lat + 0.01], [lon, lat + 0.01], [lon, lat]]]},
        "properties": {"name": name, "country": "MNG", "kind": "storage",
                       "declaration": "unknown", "status": "active", "confidence": "low"}})
}

pub const ITEMS: &str = "/api/collections/sites/items";

/// One write the client sent.
#[derive(Debug, Clone)]
enum Write {
    Batch { marker: String, n: usize },
    Create { id: String, name: String },
    Update { id: String, name: String },
    Retire { id: String },
}

/// What the database must hold: every site the test wrote, with its name and
/// whether it is retired, and every batch with its size.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    sites: BTreeMap<String, (String, bool)>,
    batches: BTreeMap<String, usize>,
}

impl Model {
    fn apply(&mut self, w: &Write) {
        match w {
            Write::Batch { marker, n } => {
                self.batches.insert(marker.clone(), *n);
            }
            Write::Create { id, name } | Write::Update { id, name } => {
                self.sites.insert(id.clone(), (name.clone(), false));
            }
            Write::Retire { id } => {
                if let Some(s) = self.sites.get_mut(id) {
                    s.1 = true;
                }
            }
        }
    }

    /// The sites and batches the test wrote, as the database holds them now.
    fn read(db: &Path, markers: &[String]) -> Self {
        let conn = rusqlite::Connection::open(db).expect("open db");
        let mut stmt = conn
            .prepare(
                "SELECT id, json_extract(feature, '$.properties.name'), retired FROM sites WHERE id LIKE 'crash-%'",
            )
            .unwrap();
        let sites = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get::<_, i64>(2)? != 0)))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut batches = BTreeMap::new();
        for m in markers {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM observations WHERE source = ?1",
                    [m],
                    |r| r.get(0),
                )
                .unwrap();
            if n > 0 {
                batches.insert(m.clone(), n as usize);
            }
        }
        Self { sites, batches }
    }
}

/// How the server answered a write.
#[derive(Debug)]
pub enum Outcome {
    /// A 2xx, read in full.
    Acknowledged,
    /// An answer that was not a 2xx: the server refused or failed the write.
    Refused(String),
    /// No answer: the server went away (it was killed).
    NoAnswer,
}

/// Sends one write and reads the whole answer: a write counts as acknowledged
/// only once its answer has arrived, as a client would see it.
fn send(http: &Client, base: &str, w: &Write, body: Option<String>) -> Outcome {
    let req = match w {
        Write::Batch { .. } => http.post(format!("{base}/api/observations")),
        Write::Create { .. } => http.post(format!("{base}{ITEMS}")),
        Write::Update { id, .. } => http.put(format!("{base}{ITEMS}/{id}")),
        Write::Retire { id } => http.delete(format!("{base}{ITEMS}/{id}")),
    };
    let req = match body {
        Some(b) => req.header("content-type", "application/geo+json").body(b),
        None => req,
    };
    let Ok(resp) = req.send() else {
        return Outcome::NoAnswer;
    };
    let status = resp.status();
    match resp.text() {
        Err(_) => Outcome::NoAnswer,
        Ok(_) if status.is_success() => Outcome::Acknowledged,
        Ok(text) => Outcome::Refused(format!("{status}: {text}")),
    }
}

/// Picks the next write from what the model says is there.
fn next_write(rng: &mut ChaCha8Rng, model: &Model, round: usize, k: usize) -> Write {
    let live: Vec<&String> = model
        .sites
        .iter()
        .filter(|(_, s)| !s.1)
        .map(|(id, _)| id)
        .collect();
    let roll = rng.random_range(0..100);
    if roll < 45 || (live.is_empty() && roll >= 70) {
        Write::Batch {
            marker: format!("crash-r{round}-w{k}"),
            n: rng.random_range(20..=600),
        }
    } else if roll < 70 || live.is_empty() {
        Write::Create {
            id: format!("crash-{round}-{k}"),
            name: format!("Site made in round {round}"),
        }
    } else if roll < 90 {
        Write::Update {
            id: live[rng.random_range(0..live.len())].clone(),
            name: format!("Renamed in round {round}, write {k}"),
        }
    } else {
        Write::Retire {
            id: live[rng.random_range(0..live.len())].clone(),
        }
    }
}

/// The body a write sends.
fn body_of(w: &Write, model: &Model, columns: &mut usize) -> Option<String> {
    match w {
        Write::Batch { marker, n } => {
            *columns += 1;
            Some(observation_batch(marker, *columns, *n))
        }
        Write::Create { id, name } => Some(site_feature(id, name, model.sites.len()).to_string()),
        Write::Update { id, name } => {
            let slot = model.sites.keys().position(|k| k == id).unwrap_or(0);
            let mut f = site_feature(id, name, slot);
            f.as_object_mut().unwrap().remove("id");
            Some(f.to_string())
        }
        Write::Retire { .. } => None,
    }
}

#[test]
fn a_server_killed_at_random_moments_keeps_every_acknowledged_write_and_no_half_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut rng = ChaCha8Rng::seed_from_u64(0x5173_c4a5);
    let started = Instant::now();
    let mut model = Model::default();
    let mut markers: Vec<String> = Vec::new();
    let mut batch_columns = 0;
    let mut seed_sites = None;
    let (mut rounds, mut mid_import, mut landed_unacked, mut acked_total) = (0, 0, 0, 0);
    // A bounded number of rounds, and stop early rather than run long on a slow machine.
    while rounds < 8 && (rounds < 4 || started.elapsed() < Duration::from_secs(16)) {
        let server = Daemon::start(&db);
        // The restarted server serves what the model says is live.
        let health: Value = client()
            .get(format!("{}/healthz", server.base))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let live = model.sites.values().filter(|s| !s.1).count() as u64;
        let seeded = *seed_sites.get_or_insert(health["sites"].as_u64().unwrap());
        assert_eq!(
            health["sites"],
            seeded + live,
            "round {rounds}: healthz after restart"
        );

        // The writer runs the writes one after another and reports each.
        let kill_after = Duration::from_millis(rng.random_range(150..1500));
        let mut writer_rng = ChaCha8Rng::seed_from_u64(rng.random());
        let (tx, rx) = mpsc::channel::<(Write, Outcome)>();
        let base = server.base.clone();
        let mut plan = model.clone();
        let mut columns = batch_columns;
        let round = rounds;
        let writer = std::thread::spawn(move || {
            let http = client();
            for k in 0.. {
                let w = next_write(&mut writer_rng, &plan, round, k);
                let body = body_of(&w, &plan, &mut columns);
                let outcome = send(&http, &base, &w, body);
                let answered = matches!(outcome, Outcome::Acknowledged);
                plan.apply(&w);
                if tx.send((w, outcome)).is_err() || !answered {
                    return columns;
                }
            }
            columns
        });
        std::thread::sleep(kill_after);
        server.kill();
        batch_columns = writer.join().expect("writer thread");

        let mut in_flight = None;
        for (w, outcome) in rx.try_iter() {
            if let Write::Batch { marker, .. } = &w {
                markers.push(marker.clone());
            }
            match outcome {
                Outcome::Acknowledged => {
                    model.apply(&w);
                    acked_total += 1;
                }
                Outcome::Refused(e) => panic!("round {rounds}: {w:?} was refused: {e}"),
                Outcome::NoAnswer => in_flight = Some(w),
            }
        }

        let out = Command::new(BIN)
            .args(["check", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {rounds}: check failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let found = Model::read(&db, &markers);
        // The write in flight at the kill landed whole or not at all.
        if let Some(w) = in_flight {
            if matches!(w, Write::Batch { .. }) {
                mid_import += 1;
            }
            let mut landed = model.clone();
            landed.apply(&w);
            if found == landed {
                landed_unacked += 1;
                model = landed;
            }
        }
        assert_eq!(
            found, model,
            "round {rounds}: the database differs from the acknowledged writes"
        );
        rounds += 1;
    }
    eprintln!(
        "crash: {rounds} kill-and-restart rounds in {:.1} s, {acked_total} acknowledged writes, \
         {mid_import} kills during an import, {landed_unacked} unacknowledged writes that landed whole",
        started.elapsed().as_secs_f64()
    );
    assert!(rounds >= 4);
    assert!(
        mid_import > 0,
        "no kill landed during an import; make the batches bigger"
    );
    assert!(!model.batches.is_empty() && !model.sites.is_empty());
}

#[test]
fn sigterm_lets_the_import_in_flight_finish_and_the_server_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut server = Daemon::start(&db);
    let n = 1500;
    let body = observation_batch("sigterm-batch", 1, n);
    let url = format!("{}/api/observations", server.base);
    let import = std::thread::spawn(move || {
        client()
            .post(url)
            .header("content-type", "application/geo+json")
            .body(body)
            .send()
            .map(|r| (r.status().as_u16(), Instant::now()))
            .map_err(|e| e.to_string())
    });
    // Long enough for the request to be in the server, well before it is done.
    std::thread::sleep(Duration::from_millis(400));
    let sent_at = Instant::now();
    let status = server.terminate(Duration::from_secs(25));
    let took = sent_at.elapsed();
    let answer = import.join().unwrap();
    if let Ok((_, answered_at)) = &answer {
        assert!(
            *answered_at > sent_at,
            "the import was answered before SIGTERM; make the batch bigger"
        );
    }
    let status = status.expect("the server did not exit within 25 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    eprintln!("sigterm: exited {status} after {took:?}; the import got {answer:?}");
    let out = Command::new(BIN)
        .args(["check", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stored = Model::read(&db, &["sigterm-batch".to_string()]);
    let count = stored.batches.get("sigterm-batch").copied().unwrap_or(0);
    // Graceful shutdown finishes what is in flight: the client gets its answer
    // and the whole batch is there.
    assert_eq!(
        answer.map(|(status, _)| status),
        Ok(201),
        "the import in flight was not answered"
    );
    assert_eq!(count, n, "the batch is not whole");
    // A new server starts on the database and serves the batch.
    let again = Daemon::start(&db);
    let changes: Value = client()
        .get(format!(
            "{}/api/changes?type=observation&limit=1000&bbox={}",
            again.base,
            marker_bbox(1, 20)
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(changes["numberReturned"], 20);
}
