//! Real clients against the real server: GDAL's OGC API - Features driver
//! (what it sends, as the server's access log records it, and the types it
//! reads), headless PyQGIS through QGIS's own provider and through GDAL,
//! openapi-spec-validator on the OpenAPI document, and schemathesis checking
//! every operation's responses against it. Outside CI a missing program skips
//! its test with a printed reason; with `CI` set it fails.

use crate::helpers::SEED_SITES;
use crate::ogc::{Catalogue, SYNTHETIC_SITES, scratch};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Output};

/// Whether `program` runs here; when it does not, skips (or, in CI, fails).
fn available(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = format!("{program} is not installed (.ci/run installs it)");
        if std::env::var_os("CI").is_some() {
            panic!("{why}");
        }
        eprintln!("skipped: {why}");
    }
    ok
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the program starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn ogrinfo_lists_the_three_collections() {
    if !available("ogrinfo", &["--version"]) {
        return;
    }
    let c = Catalogue::start(&[]);
    let out = run(Command::new("ogrinfo").args(["-ro", "-q", &format!("OAPIF:{}/api", c.base)]));
    let text = String::from_utf8_lossy(&out.stdout);
    for layer in ["1: sites", "2: observations", "3: candidates"] {
        assert!(text.contains(layer), "{layer} missing from:\n{text}");
    }
}

#[test]
fn ogr2ogr_copies_every_site_with_attributes_and_geometry_across_pages() {
    if !available("ogr2ogr", &["--version"]) {
        return;
    }
    let c = Catalogue::start(&[]);
    let gpkg = scratch(&c, "sites.gpkg");
    // GDAL asks for pages of PAGE_SIZE and follows the `next` links; 342 sites
    // at 50 a page is seven pages.
    run(Command::new("ogr2ogr").args([
        "-f",
        "GPKG",
        gpkg.to_str().unwrap(),
        &format!("OAPIF:{}/api", c.base),
        "sites",
        "-oo",
        "PAGE_SIZE=50",
    ]));
    // Read the GeoPackage back through GDAL as GeoJSON to compare with the API.
    let out = run(Command::new("ogr2ogr").args([
        "-f",
        "GeoJSON",
        "/vsistdout/",
        gpkg.to_str().unwrap(),
        "sites",
    ]));
    let copied: Value = serde_json::from_slice(&out.stdout).expect("GeoJSON from GDAL");
    let copied = copied["features"].as_array().unwrap();
    assert_eq!(copied.len(), SEED_SITES + SYNTHETIC_SITES);
    let (served, _) = c.all_pages("/api/collections/sites/items?limit=10000");
    let served: BTreeMap<String, &Value> = served
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f))
        .collect();
    for f in copied {
        let p = &f["properties"];
        let id = p["id"].as_str().expect("the id attribute");
        let s = served
            .get(id)
            .unwrap_or_else(|| panic!("{id} was not served"));
        for key in [
            "name",
            "country",
            "kind",
            "declaration",
            "status",
            "confidence",
            "notes",
        ] {
            assert_eq!(p[key], s["properties"][key], "{id}.{key}");
        }
        assert_eq!(
            p["observation_count"], s["properties"]["observation_count"],
            "{id}"
        );
        let (a, b) = (&f["geometry"], &s["geometry"]);
        assert_eq!(a["type"], b["type"], "{id}");
        let flat = |g: &Value| -> Vec<f64> {
            let mut out = Vec::new();
            fn walk(v: &Value, out: &mut Vec<f64>) {
                match v {
                    Value::Number(n) => out.push(n.as_f64().unwrap()),
                    Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                    _ => {}
                }
            }
            walk(&g["coordinates"], &mut out);
            out
        };
        let (fa, fb) = (flat(a), flat(b));
        assert_eq!(fa.len(), fb.len(), "{id}");
        assert!(
            fa.iter().zip(&fb).all(|(x, y)| (x - y).abs() < 1e-9),
            "{id}"
        );
    }
}

#[test]
fn the_openapi_document_validates() {
    if !available("openapi-spec-validator", &["--help"]) {
        return;
    }
    let c = Catalogue::start(&[]);
    let doc = scratch(&c, "openapi.json");
    let resp = c.get("/api/openapi.json");
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.oai.openapi+json;version=3.0"
    );
    std::fs::write(&doc, resp.bytes().unwrap()).unwrap();
    let out = run(Command::new("openapi-spec-validator").arg(&doc));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn schemathesis_finds_no_server_errors_and_no_responses_outside_the_document() {
    if !available("schemathesis", &["--version"]) {
        return;
    }
    let c = Catalogue::start(&[]);
    // Every response is checked for 5xx, status codes, media types, headers and
    // bodies the document does not describe. The two checks left out judge
    // inputs, not responses: the API validates more than a schema can say (CQL2
    // syntax, cursors, footprint geometry) and, as OGC API - Features requires,
    // refuses parameters the document does not name.
    let out = Command::new("schemathesis")
        .args([
            "run",
            &format!("{}/api/openapi.json", c.base),
            "--url",
            &format!("{}/api", c.base),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method",
            "--max-examples",
            "20",
            "--max-time",
            "60",
            "--seed",
            "20261127",
            "--generation-database",
            "none",
            "--no-color",
            "--request-timeout",
            "20",
        ])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Its crash cache goes beside the catalogue, not into the work tree.
        .current_dir(c.dir.path())
        .output()
        .expect("schemathesis starts");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server seeded with the built-in catalogue that keeps its access log, one
/// line per request, so that a test can see what a client asked for.
struct Logged {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Logged {
    fn start() -> Self {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("access.log");
        let mut child = Command::new(crate::helpers::BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("c.db"))
            .env("RUST_LOG", "error,sitewatch::http=info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn sitewatch serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address line");
        let base = line.trim().rsplit(' ').next().expect("address").to_owned();
        Self {
            child,
            base,
            log,
            dir,
        }
    }

    /// The request lines (`GET /path?query HTTP/1.1`) the server has logged.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("sitewatch::http"))
            .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
            .collect()
    }

    fn json(&self, path: &str) -> Value {
        reqwest::blocking::get(format!("{}{path}", self.base))
            .expect("request")
            .json()
            .expect("JSON")
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `name` in an `ogrinfo` report, e.g. `Feature Count`.
fn reported<'a>(report: &'a str, name: &str) -> Option<&'a str> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
}

#[test]
fn gdal_sends_a_where_clause_to_the_server_as_a_filter_and_counts_what_it_answers() {
    if !available("ogrinfo", &["--version"]) {
        return;
    }
    let s = Logged::start();
    let undeclared =
        s.json("/api/collections/sites/items?declaration=undeclared&limit=1000")["features"]
            .as_array()
            .unwrap()
            .len();
    assert!(undeclared > 0 && undeclared < 35, "{undeclared}");
    let out = run(Command::new("ogrinfo").args([
        "-ro",
        "-so",
        &format!("OAPIF:{}/api", s.base),
        "sites",
        "-where",
        "declaration = 'undeclared'",
    ]));
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        reported(&report, "Feature Count"),
        Some(undeclared.to_string().as_str()),
        "{report}"
    );
    // Every page GDAL read after setting the filter carried it, as CQL text.
    let filtered: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|r| r.contains("/api/collections/sites/items?") && r.contains("filter="))
        .collect();
    assert!(
        !filtered.is_empty(),
        "no filter reached the server: {:?}",
        s.requests()
    );
    for r in &filtered {
        assert!(r.contains("filter-lang=cql-text"), "{r}");
        assert!(r.contains("declaration"), "{r}");
    }
    // The queryables tell GDAL it may send the whole of a larger clause, a
    // date comparison included.
    let count = |layer: &str, clause: &str| {
        let out = run(Command::new("ogrinfo").args([
            "-ro",
            "-so",
            &format!("OAPIF:{}/api", s.base),
            layer,
            "-where",
            clause,
        ]));
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        reported(&report, "Feature Count")
            .unwrap_or_else(|| panic!("no count: {report}"))
            .parse::<usize>()
            .unwrap()
    };
    let before = s.requests().len();
    let clause =
        "(kind = 'reactor' OR observation_count > 0) AND NOT (country <> 'PRK') AND name LIKE 'Y%'";
    let expected = s.json("/api/collections/sites/items?limit=1000&filter=(kind%20%3D%20%27reactor%27%20OR%20observation_count%20%3E%200)%20AND%20country%20%3D%20%27PRK%27%20AND%20name%20LIKE%20%27Y%25%27")["features"]
        .as_array()
        .unwrap()
        .len();
    assert!(expected > 0);
    assert_eq!(count("sites", clause), expected);
    let since =
        s.json("/api/collections/observations/items?limit=1000&datetime=2018-01-01/..")["features"]
            .as_array()
            .unwrap()
            .len();
    assert_eq!(count("observations", "observed_at >= '2018-01-01'"), since);
    let sent: Vec<String> = s.requests()[before..]
        .iter()
        .filter(|r| r.contains("/items?") && r.contains("filter="))
        .cloned()
        .collect();
    assert!(
        sent.iter().any(|r| r.contains("LIKE") && r.contains("OR")),
        "{sent:?}"
    );
    assert!(sent.iter().any(|r| r.contains("observed_at")), "{sent:?}");
}

#[test]
fn ogrinfo_takes_field_and_geometry_types_from_the_schema_even_of_an_empty_collection() {
    if !available("ogrinfo", &["--version"]) {
        return;
    }
    let s = Logged::start();
    // No site of the seed has been observed, so every last_observed_at is
    // null: only the schema can say it is a time.
    let sites = run(Command::new("ogrinfo").args([
        "-ro",
        "-so",
        &format!("OAPIF:{}/api", s.base),
        "sites",
    ]));
    let sites = String::from_utf8_lossy(&sites.stdout);
    assert_eq!(
        reported(&sites, "last_observed_at"),
        Some("DateTime (0.0)"),
        "{sites}"
    );
    assert_eq!(
        reported(&sites, "alt_names"),
        Some("StringList (0.0)"),
        "{sites}"
    );
    assert_eq!(
        reported(&sites, "observation_count"),
        Some("Integer (0.0)"),
        "{sites}"
    );
    assert_eq!(
        reported(&sites, "Geometry"),
        Some("Multi Polygon"),
        "{sites}"
    );
    let candidates = s.json("/api/collections/candidates/items");
    assert_eq!(candidates["features"].as_array().unwrap().len(), 0);
    let out = run(Command::new("ogrinfo").args([
        "-ro",
        "-so",
        &format!("OAPIF:{}/api", s.base),
        "candidates",
    ]));
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(reported(&report, "Geometry"), Some("Point"), "{report}");
    assert_eq!(reported(&report, "Feature Count"), Some("0"), "{report}");
    for (field, kind) in [
        ("state", "String (0.0)"),
        ("created_at", "DateTime (0.0)"),
        ("observation_ids", "StringList (0.0)"),
        ("observation_count", "Integer (0.0)"),
        ("last_observed_at", "DateTime (0.0)"),
    ] {
        assert_eq!(reported(&report, field), Some(kind), "{field} in {report}");
    }
    assert!(report.contains("EPSG\",4326"), "{report}");
}

/// A Python 3 that can import QGIS's bindings: Debian installs them for its
/// own interpreter, which may not be the first `python3` on the path.
fn python_with_qgis() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import qgis.core"])
            .env("QT_QPA_PLATFORM", "offscreen")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn pyqgis_loads_every_collection_with_its_counts_types_and_sources_and_renders_the_sites() {
    let Some(python) = python_with_qgis() else {
        let why = "PyQGIS (python3-qgis) is not installed (.ci/run installs it)";
        if std::env::var_os("CI").is_some() {
            panic!("{why}");
        }
        eprintln!("skipped: {why}");
        return;
    };
    let s = Logged::start();
    // Kept as an artefact of the run, beside the build.
    let png =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/qgis-sites.png");
    std::fs::create_dir_all(png.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&png);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/qgis_layers.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(format!("{}/api", s.base))
        .arg(&png)
        .env("QT_QPA_PLATFORM", "offscreen")
        // QGIS keeps its settings and caches under HOME.
        .env("HOME", s.dir.path())
        .output()
        .expect("python starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PyQGIS failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}"));
    for c in ["sites", "observations", "candidates"] {
        let served = s.json(&format!("/api/collections/{c}/items?limit=10000"))["features"]
            .as_array()
            .unwrap()
            .len();
        for provider in ["oapif", "gdal"] {
            let layer = &report[provider][c];
            assert_eq!(layer["valid"], true, "{provider} {c}: {layer}");
            assert_eq!(layer["features"], served, "{provider} {c}: {layer}");
        }
    }
    let sites = &report["oapif"]["sites"];
    assert_eq!(sites["geometry"], "Polygon", "{sites}");
    assert_eq!(sites["crs"], "EPSG:4326", "{sites}");
    // Through GDAL, QGIS has the types of the schema, and every site's sources.
    let gdal = &report["gdal"];
    assert_eq!(
        gdal["sites"]["fields"]["last_observed_at"], "DateTime",
        "{gdal}"
    );
    assert_eq!(gdal["sites"]["fields"]["alt_names"], "StringList", "{gdal}");
    assert_eq!(gdal["candidates"]["geometry"], "Point", "{gdal}");
    assert_eq!(
        gdal["candidates"]["fields"]["created_at"], "DateTime",
        "{gdal}"
    );
    assert_eq!(gdal["candidates"]["crs"], "EPSG:4326", "{gdal}");
    let with_sources = s.json("/api/collections/sites/items?limit=10000")["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["properties"]["sources"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .count();
    assert!(with_sources > 0);
    assert_eq!(gdal["sites"]["with_sources"], with_sources, "{gdal}");
    // The picture shows the sites: more than one colour on the canvas.
    assert!(
        report["render"]["colours"].as_u64().unwrap() > 1,
        "{report}"
    );
    assert!(png.metadata().unwrap().len() > 0);
}
