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

/// A batch of at least `min_bytes`, and how many features it holds: points
/// spread over the Korean peninsula, some inside seed footprints, most not.
fn big_batch(min_bytes: usize) -> (Vec<u8>, usize) {
    let mut out = br#"{"type":"FeatureCollection","features":["#.to_vec();
    let mut n = 0;
    while out.len() < min_bytes {
        if n > 0 {
            out.push(b',');
        }
        let lon = 124.5 + (n % 997) as f64 * 0.005;
        let lat = 37.5 + (n % 991) as f64 * 0.005;
        write!(
            out,
            r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{lon:.5},{lat:.5}]}},"properties":{{"observed_at":"2025-01-{:02}T00:00:00Z","sensor":"test","finding":"vehicle_activity","source":"crash-test","external_id":"c{n}"}}}}"#,
            1 + n % 28
        )
        .unwrap();
        n += 1;
    }
    out.extend_from_slice(b"]}");
    (out, n)
}

/// More bytes than a pipe holds: a write of this many bytes into a pipe returns
/// only once the reader has taken some of them. On Linux a new pipe holds 16
/// pages (64 KiB with 4 KiB pages, 1 MiB with 64 KiB ones) and grows only when
/// its owner asks, up to `/proc/sys/fs/pipe-max-size` (1 MiB unless set
/// otherwise); neither is more than the larger of 1 MiB and that setting.
fn more_than_a_pipe_holds() -> usize {
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(0);
    max.max(1 << 20) + 1
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

/// Whether another connection holds the database's write lock, i.e. has a
/// write transaction open: taking the lock ourselves is refused at once.
fn write_lock_is_held(db: &Path) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::ZERO).unwrap();
    match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
        Ok(()) => false,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            true
        }
        Err(e) => panic!("probing the write lock: {e}"),
    }
}

/// `sitewatch import observations --db DB -`, its batch fed through a pipe the
/// test holds, so the test decides how much of the batch the importer has.
fn importer(db: &Path) -> std::process::Child {
    Command::new(BIN)
        .args(["import", "observations", "--db"])
        .arg(db)
        .arg("-")
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_kill_mid_import_leaves_the_database_as_before_or_as_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
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
    let pipe = more_than_a_pipe_holds();
    let (batch, n) = big_batch(3 * pipe);
    let as_before_or_after = |when: &str| {
        let (obs, batches, integrity) = counts(&db);
        assert_eq!(integrity, "ok", "after a kill {when}");
        let as_before = obs == before && batches == before_batches;
        let as_after = obs == before + n as i64 && batches == before_batches + 1;
        assert!(
            as_before || as_after,
            "a kill {when} left {obs} observations in {batches} batches (before: {before} in {before_batches})"
        );
        as_after
    };

    // Killed while the import is known to be in flight: the importer reads its
    // input only inside the batch's transaction, and it has taken more than a
    // pipe holds, yet it cannot finish, because the rest of the batch is held
    // back. Nothing of the batch may be left.
    for cut in [pipe, 2 * pipe] {
        let mut child = importer(&db);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&batch[..cut]).unwrap_or_else(|e| {
            panic!("the importer stopped reading after under {cut} bytes: {e}")
        });
        assert!(
            write_lock_is_held(&db),
            "the importer has read {cut} bytes but holds no write transaction"
        );
        assert_eq!(child.try_wait().unwrap(), None, "the importer exited early");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        drop(stdin);
        let when = format!("after {cut} of {} bytes", batch.len());
        assert!(!as_before_or_after(&when), "a kill {when} stored the batch");
        assert!(!write_lock_is_held(&db));
    }

    // Killed as soon as the whole batch is sent: wherever that lands (reading,
    // committing, or done), the batch is all there or not there at all.
    let mut child = importer(&db);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&batch).unwrap();
    drop(stdin);
    child.kill().ok();
    child.wait().unwrap();
    if !as_before_or_after("at the end of the input") {
        // Not committed yet when killed: run it to the end.
        let mut child = importer(&db);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&batch).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success(), "the import failed");
        assert!(
            as_before_or_after("after a whole import"),
            "the batch was not stored"
        );
    }
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

    /// SIGTERM: the server finishes what is in flight and exits.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
                "SELECT s.id, json_extract(r.feature, '$.properties.name'), s.retired FROM sites s
                 JOIN site_revisions r ON r.site_id = s.id AND r.revision = s.revision
                 WHERE s.id LIKE 'crash-%'",
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
        None => req.header("content-type", "application/json").body("{}"),
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
    // Random moments may all miss the imports on a fast machine, so the last
    // kill is made during one: the request is taken and half its body sent
    // when the server dies, and nothing of that batch may be left.
    let server = Daemon::start(&db);
    let marker = "killed-mid-request".to_string();
    let body = observation_batch(&marker, batch_columns, 1500);
    let (_stream, _) = post_half_a_batch(&server.base, &body);
    server.kill();
    mid_import += 1;
    markers.push(marker);
    assert_eq!(
        Model::read(&db, &markers),
        model,
        "a kill during a request's body left part of it"
    );
    eprintln!(
        "crash: {rounds} kill-and-restart rounds in {:.1} s, {acked_total} acknowledged writes, \
         {mid_import} kills during an import, {landed_unacked} unacknowledged writes that landed whole",
        started.elapsed().as_secs_f64()
    );
    assert!(rounds >= 4);
    assert!(!model.batches.is_empty() && !model.sites.is_empty());
}

/// Reads from `stream` until the end of one HTTP response head; returns the
/// head and whatever came after it.
/// Posts an observation batch by hand and sends only the first half of its
/// body, so that the server holds the request and cannot answer before the
/// test lets it. Returns the connection and what was read after the head.
fn post_half_a_batch(base: &str, body: &str) -> (std::net::TcpStream, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    // Only a guard against a hung server; nothing waits for it to pass.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /api/observations HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/geo+json\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    // `100 Continue`: the server has taken the request and waits for its body.
    let mut buf = Vec::new();
    let head = read_head(&mut stream, &mut buf);
    assert!(
        head.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got {head:?}"
    );
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .unwrap();
    (stream, buf)
}

fn read_head(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> String {
    use std::io::Read as _;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return head;
        }
        let mut chunk = [0u8; 4096];
        let got = stream.read(&mut chunk).expect("read the answer");
        assert!(
            got > 0,
            "the connection closed mid-answer: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..got]);
    }
}

#[test]
fn sigterm_lets_the_import_in_flight_finish_and_the_server_exits_cleanly() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut server = Daemon::start(&db);
    let n = 1500;
    let body = observation_batch("sigterm-batch", 1, n);
    let addr = server.base.trim_start_matches("http://").to_string();
    let (mut stream, mut buf) = post_half_a_batch(&server.base, &body);
    let half = body.len() / 2;

    // SIGTERM with the import in flight, and a server known to be stopping:
    // it no longer takes connections.
    let sent_at = Instant::now();
    server.sigterm();
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(
            sent_at.elapsed() < Duration::from_secs(25),
            "the server still takes connections 25 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        server.running(),
        "the server exited with a request in flight"
    );

    // The rest of the body: the import runs, and is answered.
    stream.write_all(&body.as_bytes()[half..]).unwrap();
    let head = read_head(&mut stream, &mut buf);
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    while buf.len() < length {
        let mut chunk = [0u8; 4096];
        let got = stream.read(&mut chunk).expect("read the answer's body");
        assert!(got > 0, "the connection closed mid-answer");
        buf.extend_from_slice(&chunk[..got]);
    }
    let report: Value = serde_json::from_slice(&buf[..length]).expect("a JSON report");
    // Graceful shutdown finishes what is in flight: the client gets its answer...
    assert_eq!(status, 201, "the import in flight was not stored: {report}");
    assert_eq!(report["accepted"], n, "{report}");
    // ...and the connection is closed after it.
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close")),
        "{head}"
    );
    drop(stream);

    // Then the server exits, cleanly, within its shutdown timeout.
    let status = server
        .wait(Duration::from_secs(25).saturating_sub(sent_at.elapsed()))
        .expect("the server did not exit within 25 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    eprintln!("sigterm: {status}, {:?} after SIGTERM", sent_at.elapsed());
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
    // The whole batch is there.
    let stored = Model::read(&db, &["sigterm-batch".to_string()]);
    let count = stored.batches.get("sigterm-batch").copied().unwrap_or(0);
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
