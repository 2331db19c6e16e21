//! The map page in a real browser: the real `sitewatch serve` on a temp
//! database, and Debian's Chromium driven by Playwright through the scenarios
//! in `tests/browser/scenarios.mjs`. Without Chromium, Node.js or the page's
//! `node_modules` the browser tests skip and say why, unless `CI` is set: there
//! they fail instead, so CI can never pass without running them.

#[path = "../support/pg_cluster.rs"]
mod pg_cluster;

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

use helpers::Server;
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// A scenario that takes longer than this has hung.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);
/// One Chromium at a time: the machines have two cores, and parallel browsers
/// make timing-sensitive drawing flaky.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn screenshots() -> PathBuf {
    Path::new(ROOT).join("target").join("screenshots")
}

/// Why the browser cannot be driven here, if it cannot.
fn missing() -> Option<String> {
    if !chromium().is_file() {
        return Some(format!(
            "{} is missing (apt-get install chromium)",
            chromium().display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed (install Node.js 20 or later)".into());
    }
    let playwright = Path::new(ROOT).join("web/node_modules/playwright-core");
    if !playwright.is_dir() {
        return Some(
            "web/node_modules/playwright-core is missing: the build could not run npm ci".into(),
        );
    }
    None
}

/// Runs one scenario against the server at `base`; returns its output, or `None` when it
/// was skipped outside CI.
fn scenario(name: &str, base: &str, env: &[(&str, &str)]) -> Option<String> {
    if let Some(why) = missing() {
        assert!(
            !in_ci(),
            "browser test {name} must run in CI, but cannot: {why}"
        );
        eprintln!("skipping browser test {name}: {why}");
        return None;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(PoisonError::into_inner);
    let mut child = Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/scenarios.mjs"))
        .args([name, base])
        .arg(screenshots())
        .env("CHROMIUM", chromium())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    // Both pipes are drained on their own threads so a chatty browser cannot
    // fill one and stall the scenario.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    match status {
        None => {
            panic!("browser scenario {name} took longer than {SCENARIO_TIMEOUT:?}\n{out}\n{err}")
        }
        Some(s) => assert!(
            s.success(),
            "browser scenario {name} failed ({s}):\n{out}\n{err}"
        ),
    }
    assert!(
        out.lines().any(|l| l == format!("ok {name}")),
        "scenario {name} did not finish:\n{out}\n{err}"
    );
    print!("{out}");
    Some(out)
}

/// The JSON line a scenario printed with its measurements.
fn measurements(output: &str) -> Value {
    output
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null)
}

#[test]
fn the_page_loads_without_console_errors_and_is_kept_as_a_screenshot() {
    let server = Server::start();
    let shot = screenshots().join("map.png");
    let _ = std::fs::remove_file(&shot);
    if scenario("loads_cleanly", &server.base, &[]).is_some() {
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or empty", shot.display());
    }
}

#[test]
fn the_outlines_reach_the_bottom_of_the_map_in_the_frame_it_is_resized() {
    scenario(
        "basemap_fills_the_map_after_a_resize",
        &Server::start().base,
        &[],
    );
}

#[test]
fn the_sites_drawn_are_the_api_count_for_the_view() {
    scenario("drawn_count_matches_api", &Server::start().base, &[]);
}

#[test]
fn clicking_a_site_opens_its_panel_with_its_history() {
    scenario("site_click_opens_panel", &Server::start().base, &[]);
}

#[test]
fn clicking_the_map_lists_nearby_sites_in_distance_order() {
    scenario("map_click_lists_nearby", &Server::start().base, &[]);
}

#[test]
fn moving_the_time_slider_changes_what_is_shown() {
    scenario("slider_changes_what_is_shown", &Server::start().base, &[]);
}

#[test]
fn a_batch_imported_through_the_page_appears_in_the_site_history() {
    scenario("import_adds_observation", &Server::start().base, &[]);
}

#[test]
fn the_import_dialog_asks_for_the_write_token_when_the_server_wants_one() {
    let server = Server::start_with(&["--token", "s3cret"]);
    scenario("import_asks_for_the_token", &server.base, &[]);
}

#[test]
fn a_hostile_site_name_stays_text() {
    let server = Server::start();
    let site = json!({
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[
            [127.0, 40.0], [127.01, 40.0], [127.01, 40.01], [127.0, 40.01], [127.0, 40.0]
        ]]},
        "properties": {
            "name": "<img src=x onerror=alert(1)>", "country": "PRK", "kind": "other",
            "declaration": "undeclared", "notes": "<script>alert(2)</script>",
            "sources": [{"title": "<b>bold</b>", "url": "https://example.org/?q=<x>"}],
        }
    });
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/collections/sites/items", server.base))
        .header("Content-Type", "application/geo+json")
        .body(site.to_string())
        .send()
        .expect("create the site");
    assert_eq!(resp.status(), 201, "{}", resp.text().unwrap_or_default());
    scenario("hostile_name_stays_text", &server.base, &[]);
}

#[test]
fn tiles_given_at_start_are_drawn_with_their_attribution() {
    let server = Server::start_with(&[
        "--tiles",
        "http://127.0.0.1:9/{z}/{x}/{y}.png",
        "--tiles-attribution",
        "Test tiles ©",
    ]);
    scenario("tiles_layer_with_attribution", &server.base, &[]);
}

#[test]
fn every_control_is_reachable_from_the_keyboard() {
    scenario("keyboard_reaches_the_controls", &Server::start().base, &[]);
}

#[test]
fn a_permalink_brings_back_the_view() {
    scenario("permalink_restores_the_view", &Server::start().base, &[]);
}

/// The page and its assets, without a browser: the policy that keeps data
/// from running as script, validators for caching, and the tile settings.
#[test]
fn the_page_is_served_with_a_strict_content_security_policy() {
    let server = Server::start_with(&["--tiles", "https://tile.openstreetmap.org/{z}/{x}/{y}.png"]);
    let page = server.get("/");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("https://tile.openstreetmap.org"), "{csp}");
    let etag = page.headers()["etag"].to_str().unwrap().to_string();
    assert!(page.text().unwrap().contains("/assets/app.js"));

    let again = reqwest::blocking::Client::new()
        .get(format!("{}/", server.base))
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);

    for (asset, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("outlines.json", "application/json"),
        ("licenses.txt", "text/plain; charset=utf-8"),
    ] {
        let resp = server.get(&format!("/assets/{asset}"));
        assert_eq!(resp.status(), 200, "{asset}");
        assert_eq!(resp.headers()["content-type"], content_type, "{asset}");
    }
    assert_eq!(server.get("/assets/../Cargo.toml").status(), 404);
    assert_eq!(server.get("/assets/nothing.js").status(), 404);

    let config = server.get_json("/api/map/config", "application/json");
    assert_eq!(
        config["tiles"]["url"],
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    );
    assert_eq!(
        config["tiles"]["attribution"],
        "© OpenStreetMap contributors"
    );
}

#[test]
fn a_tile_url_without_placeholders_is_refused_at_start() {
    let out = Command::new(helpers::BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--tiles",
            "https://example.org/tiles.png",
        ])
        .output()
        .expect("run sitewatch");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tiles must contain {z}"), "{stderr}");
}

/// The map endpoint answers with the same count as the items endpoint, as
/// footprints when few and as clusters when many, and name search finds
/// alternate names.
#[test]
fn the_map_view_endpoint_counts_like_the_items_endpoint() {
    let server = Server::start();
    for (bbox, zoom) in [
        ("124,37,131,43", 7),
        ("-180,-90,180,90", 1),
        ("125.5,39.5,126,40", 12),
    ] {
        let view = server.geojson(&format!("/api/map/sites?bbox={bbox}&zoom={zoom}"));
        let items = server.geojson(&format!("/api/collections/sites/items?bbox={bbox}&limit=1"));
        assert_eq!(view["numberMatched"], items["numberMatched"], "{bbox}");
        assert_eq!(view["mode"], "sites");
        assert_eq!(
            view["features"].as_array().unwrap().len() as u64,
            view["numberMatched"].as_u64().unwrap()
        );
    }
    let far = server.geojson("/api/map/sites?bbox=124,37,131,43&zoom=5");
    assert!(
        far["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["geometry"]["type"] == "Point")
    );
    let near = server.geojson("/api/map/sites?bbox=125.5,39.5,126,40&zoom=15");
    assert!(
        near["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["geometry"]["type"] == "Polygon")
    );
    let filtered = server.geojson("/api/map/sites?declaration=undeclared&q=missile");
    for f in filtered["features"].as_array().unwrap() {
        assert_eq!(f["properties"]["declaration"], "undeclared");
        assert!(
            f["properties"]["name"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("missile")
        );
    }
    let bad = server.get("/api/map/sites?zoom=99");
    assert_eq!(bad.status(), 400);
    let found = server.get_json("/api/map/search?q=YONGBYON", "application/json");
    assert_eq!(found["matches"][0]["id"], "yongbyon");
    let timeline = server.get_json("/api/map/timeline", "application/json");
    assert!(
        timeline["first_day"].as_str().unwrap() <= timeline["record_first_day"].as_str().unwrap()
    );
}

/// `sitewatch serve` on an existing database; stopped when dropped.
struct OwnServer {
    child: std::process::Child,
    base: String,
}

impl OwnServer {
    fn start(db: &Path) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(helpers::BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(db)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
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
        Self { child, base }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `n` synthetic sites as a FeatureCollection and imports them into a
/// new catalogue at `db`.
fn import_synthetic(db: &Path, n: usize) {
    let file = db.with_extension("geojson");
    let fc = sitewatch::synth::feature_collection(n, 42);
    std::fs::write(&file, serde_json::to_vec(&fc).unwrap()).unwrap();
    let out = Command::new(helpers::BIN)
        .args(["import", "sites", "--db"])
        .arg(db)
        .arg(&file)
        .env("RUST_LOG", "error")
        .output()
        .expect("run sitewatch import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first-render figure at 100,000 sites: `cargo test --release --test
/// browser -- --ignored --nocapture first_render`. Ignored by default: making
/// the catalogue takes longer than the rest of the suite.
#[test]
#[ignore]
fn first_render_with_100k_sites_is_within_3_s() {
    let n: usize = std::env::var("SITEWATCH_MAP_SITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let t = Instant::now();
    import_synthetic(&db, n);
    eprintln!("imported {n} sites in {:?}", t.elapsed());
    let server = OwnServer::start(&db);
    let health: Value = reqwest::blocking::get(format!("{}/healthz", server.base))
        .and_then(|r| r.json())
        .expect("healthz");
    assert!(health["sites"].as_u64().unwrap() >= n as u64);
    if let Some(out) = scenario(
        "first_render",
        &server.base,
        &[("FIRST_RENDER_BUDGET_MS", "3000")],
    ) {
        let m = measurements(&out);
        eprintln!("first render at {n} sites: {m}");
        assert_eq!(m["drawn"].as_u64(), health["sites"].as_u64());
    }
}
