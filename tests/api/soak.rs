//! Imports, edits and reads together against the real server for a bounded
//! time (`SITEWATCH_SOAK_SECS`, default 12): nothing acknowledged is lost, no
//! read sees half a batch, and reads keep flowing while writes run.

use crate::crash::{Daemon, ITEMS, client, marker_bbox, observation_batch, site_feature};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Observations per batch: a read of one batch's box must see 0 or this many.
const N: usize = 40;

/// Which window the soak is in; reads are counted per window.
const SETTLING: u8 = 0;
const IDLE: u8 = 1;
const WRITING: u8 = 2;

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    phase: AtomicU8,
    idle_reads: AtomicU64,
    busy_reads: AtomicU64,
    /// Batch columns sent, with whether each was acknowledged (and when).
    batches: Mutex<Vec<(usize, Option<Instant>)>>,
    /// Anything that went wrong, for one assertion at the end.
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 20 {
            f.push(what);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn writing(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == WRITING
    }
}

fn importer(base: String, s: Arc<Shared>) -> usize {
    let http = client();
    let mut column = 0;
    let mut acked = 0;
    while !s.stopped() {
        if !s.writing() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        column += 1;
        s.batches.lock().unwrap().push((column, None));
        let resp = http
            .post(format!("{base}/api/observations"))
            .header("content-type", "application/geo+json")
            .body(observation_batch(&format!("soak-{column}"), column, N))
            .send();
        match resp {
            Ok(r) if r.status() == 201 => {
                acked += 1;
                let mut b = s.batches.lock().unwrap();
                if let Some(entry) = b.iter_mut().find(|(c, _)| *c == column) {
                    entry.1 = Some(Instant::now());
                }
            }
            Ok(r) => s.fail(format!("batch {column}: {} {:?}", r.status(), r.text())),
            Err(e) => s.fail(format!("batch {column}: {e}")),
        }
    }
    acked
}

/// Creates, renames and retires sites; returns what each should now be.
fn editor(base: String, s: Arc<Shared>) -> BTreeMap<String, (String, bool)> {
    let http = client();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut sites: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut k = 0;
    while !s.stopped() {
        if !s.writing() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        k += 1;
        let live: Vec<String> = sites
            .iter()
            .filter(|(_, v)| !v.1)
            .map(|(id, _)| id.clone())
            .collect();
        let roll = rng.random_range(0..10);
        let (req, id, after) = if live.is_empty() || roll < 4 {
            let id = format!("soak-{k}");
            let f = site_feature(&id, &format!("Soak site {k}"), 200 + k);
            let req = http
                .post(format!("{base}{ITEMS}"))
                .header("content-type", "application/geo+json")
                .body(f.to_string());
            (req, id, (format!("Soak site {k}"), false))
        } else {
            let id = live[rng.random_range(0..live.len())].clone();
            if roll < 8 {
                let name = format!("Soak site renamed at write {k}");
                let mut f = site_feature(&id, &name, 200 + k);
                f.as_object_mut().unwrap().remove("id");
                let req = http
                    .put(format!("{base}{ITEMS}/{id}"))
                    .header("content-type", "application/geo+json")
                    .body(f.to_string());
                (req, id, (name, false))
            } else {
                let name = sites[&id].0.clone();
                let req = http
                    .delete(format!("{base}{ITEMS}/{id}"))
                    .header("content-type", "application/json")
                    .body("{}");
                (req, id, (name, true))
            }
        };
        match req.send() {
            Ok(r) if r.status().is_success() => {
                sites.insert(id, after);
            }
            Ok(r) => s.fail(format!("edit of {id}: {} {:?}", r.status(), r.text())),
            Err(e) => s.fail(format!("edit of {id}: {e}")),
        }
    }
    sites
}

/// Index reads, as the map and the API's clients make them, counted per window.
fn reader(base: String, s: Arc<Shared>) {
    let http = client();
    let paths = [
        "/api/nearby?lon=125.75&lat=39.8&limit=10",
        "/api/collections/sites/items?bbox=124,37,131,43&limit=100",
        "/api/nearby?lon=100.5&lat=45.5&radius_m=50000",
    ];
    let mut i = 0;
    while !s.stopped() {
        let phase = s.phase.load(Ordering::SeqCst);
        let path = paths[i % paths.len()];
        i += 1;
        match http.get(format!("{base}{path}")).send().and_then(|r| {
            let status = r.status();
            r.bytes().map(|_| status)
        }) {
            Ok(status) if status == 200 => {}
            Ok(status) => s.fail(format!("GET {path}: {status}")),
            Err(e) => s.fail(format!("GET {path}: {e}")),
        }
        // A read that straddled two windows counts in neither.
        if s.phase.load(Ordering::SeqCst) == phase {
            match phase {
                IDLE => s.idle_reads.fetch_add(1, Ordering::SeqCst),
                WRITING => s.busy_reads.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
        }
    }
}

/// Reads the box of a batch sent so far, while it may be being written: it
/// must hold none of the batch or all of it, and all of it once acknowledged.
/// Returns how many reads saw none and how many saw all.
fn batch_reader(base: String, s: Arc<Shared>) -> (usize, usize) {
    let http = client();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut none, mut all) = (0, 0);
    while !s.stopped() {
        let pick = {
            let b = s.batches.lock().unwrap();
            // Lean towards the newest batches, which may be in flight.
            let from = b.len().saturating_sub(3);
            (!b.is_empty()).then(|| b[rng.random_range(from..b.len())])
        };
        let Some((column, acked_at)) = pick else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let url = format!(
            "{base}/api/changes?type=observation&limit=1000&bbox={}",
            marker_bbox(column, N)
        );
        let seen = match http.get(url).send().and_then(|r| r.json::<Value>()) {
            Ok(v) => v["numberReturned"].as_u64().unwrap_or(u64::MAX) as usize,
            Err(e) => {
                s.fail(format!("changes for batch {column}: {e}"));
                continue;
            }
        };
        match seen {
            0 if acked_at.is_some() => s.fail(format!(
                "batch {column} was acknowledged, then a read saw none of it"
            )),
            0 => none += 1,
            n if n == N => all += 1,
            n => s.fail(format!(
                "a read saw {n} of batch {column}'s {N} observations"
            )),
        }
    }
    (none, all)
}

fn soak_duration() -> Duration {
    let secs = std::env::var("SITEWATCH_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(12);
    Duration::from_secs(secs.max(4))
}

#[test]
fn imports_edits_and_reads_together_lose_nothing_show_no_half_batch_and_keep_reads_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::start(&dir.path().join("c.db"));
    let s = Arc::new(Shared::default());
    let spawn = |f: fn(String, Arc<Shared>)| {
        let (base, s) = (server.base.clone(), s.clone());
        std::thread::spawn(move || f(base, s))
    };
    let readers = [spawn(reader), spawn(reader)];
    let (base, shared) = (server.base.clone(), s.clone());
    let batch_reads = std::thread::spawn(move || batch_reader(base, shared));
    let (base, shared) = (server.base.clone(), s.clone());
    let imports = std::thread::spawn(move || importer(base, shared));
    let (base, shared) = (server.base.clone(), s.clone());
    let edits = std::thread::spawn(move || editor(base, shared));

    // Idle and writing windows alternate, so that anything else loading the
    // machine meanwhile weighs on both rates alike.
    let total = soak_duration();
    let started = Instant::now();
    let (mut idle_time, mut busy_time) = (Duration::ZERO, Duration::ZERO);
    let window = |phase: u8, length: Duration| {
        s.phase.store(SETTLING, Ordering::SeqCst);
        // Let writes in flight finish before an idle window, and readers
        // settle before either.
        std::thread::sleep(Duration::from_millis(if phase == IDLE { 400 } else { 0 }));
        s.phase.store(phase, Ordering::SeqCst);
        let t = Instant::now();
        std::thread::sleep(length);
        t.elapsed()
    };
    let cycle = Duration::from_millis(400 + 1000 + 2500);
    let cycles = (total.as_millis() / cycle.as_millis()).max(2);
    for _ in 0..cycles {
        idle_time += window(IDLE, Duration::from_millis(1000));
        busy_time += window(WRITING, Duration::from_millis(2500));
    }
    s.phase.store(SETTLING, Ordering::SeqCst);
    s.stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    let (saw_none, saw_all) = batch_reads.join().unwrap();
    let batches_acked = imports.join().unwrap();
    let sites = edits.join().unwrap();
    let took = started.elapsed();

    let failures = s.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");

    // Afterwards, every acknowledged batch is whole and every edit is there.
    let http = client();
    let sent = s.batches.lock().unwrap().clone();
    for (column, acked) in &sent {
        assert!(acked.is_some(), "batch {column} was never answered");
        let v: Value = http
            .get(format!(
                "{}/api/changes?type=observation&limit=1000&bbox={}",
                server.base,
                marker_bbox(*column, N)
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v["numberReturned"], N, "batch {column}");
    }
    for (id, (name, retired)) in &sites {
        let f: Value = http
            .get(format!("{}{ITEMS}/{id}?include_retired=true", server.base))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(f["properties"]["name"], name.as_str(), "site {id}");
        assert_eq!(f["properties"]["retired"], *retired, "site {id}");
    }

    let idle_rate = s.idle_reads.load(Ordering::SeqCst) as f64 / idle_time.as_secs_f64();
    let busy_rate = s.busy_reads.load(Ordering::SeqCst) as f64 / busy_time.as_secs_f64();
    let writes_per_s = (batches_acked + sites.len()) as f64 / busy_time.as_secs_f64();
    eprintln!(
        "soak: {:.1} s; reads {idle_rate:.0}/s idle, {busy_rate:.0}/s while writing ({:.0} %); \
         {batches_acked} batches of {N} and {} edited sites acknowledged ({writes_per_s:.1} writes/s); \
         batch reads saw none {saw_none} times, all {saw_all} times",
        took.as_secs_f64(),
        100.0 * busy_rate / idle_rate,
        sites.len()
    );
    assert!(
        batches_acked >= 3 && sites.len() >= 3,
        "too few writes to test anything"
    );
    assert!(saw_all > 0, "no read ever found a batch");
    assert!(
        busy_rate >= 0.2 * idle_rate,
        "reads collapsed while writing: {busy_rate:.0}/s against {idle_rate:.0}/s idle"
    );
}
