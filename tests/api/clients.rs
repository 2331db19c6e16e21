//! Real clients against the real server: GDAL's OGC API - Features driver,
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
            &c.base,
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
