//! Inputs the fuzz targets in `fuzz/` found, kept in `tests/fixtures/fuzz/<target>/`
//! and fed through the same entry points: each must give a value or an error,
//! never a panic, and a failed import must leave the store as it was.

use sitewatch::api::ApiError;
use sitewatch::catalogue::ObservationImportError;
use sitewatch::fuzzing;
use sitewatch::import::{ImportError, StreamError};
use std::path::PathBuf;

/// Every fixture of a target, by file name, sorted.
fn fixtures(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a readable fixture"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

fn fixture(target: &str, name: &str) -> Vec<u8> {
    fixtures(target)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no fixture {target}/{name}"))
        .1
}

/// Runs `f` on every fixture of `target`, naming the one that panics.
fn each<T>(target: &str, f: impl Fn(&[u8]) -> T) {
    for (name, bytes) in fixtures(target) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&bytes)));
        assert!(r.is_ok(), "{target}/{name} panicked");
    }
}

#[test]
fn every_site_fixture_parses_or_is_refused() {
    each("sites", fuzzing::sites);
}

#[test]
fn every_observation_fixture_parses_or_is_refused() {
    each("observations", fuzzing::observations);
}

#[test]
fn every_query_fixture_parses_or_is_refused() {
    each("query", fuzzing::query);
}

#[test]
fn every_import_fixture_imports_or_leaves_the_store_unchanged() {
    each("import", fuzzing::import);
}

/// What refusing a site batch said: the first bad feature's field and reason.
fn site_refusal(name: &str) -> (String, String) {
    match fuzzing::sites(&fixture("sites", name)) {
        Err(ImportError::Invalid(p)) => (p[0].field.clone(), p[0].reason.clone()),
        other => panic!("sites/{name}: {other:?}"),
    }
}

#[test]
fn site_fixtures_are_refused_naming_the_field() {
    let cases = [
        ("type-not-a-string.geojson", "type", "Feature"),
        ("id-missing.geojson", "id", "missing"),
        ("id-twice.geojson", "id", "more than once"),
        (
            "id-differs-from-properties.geojson",
            "properties.id",
            "differs",
        ),
        (
            "polygon-without-rings.geojson",
            "geometry.coordinates",
            "ring",
        ),
        (
            "ring-too-short.geojson",
            "geometry.coordinates[0]",
            "at least",
        ),
        (
            "ring-not-closed.geojson",
            "geometry.coordinates[0]",
            "not closed",
        ),
        ("ring-crosses-itself.geojson", "geometry.coordinates", ""),
        (
            "footprint-too-wide.geojson",
            "geometry.coordinates",
            "spans more than",
        ),
        (
            "longitude-526.geojson",
            "geometry.coordinates[0][3]",
            "longitude",
        ),
        (
            "latitude-out-of-range.geojson",
            "geometry.coordinates[0][1]",
            "latitude",
        ),
        (
            "position-too-short.geojson",
            "geometry.coordinates[0][7]",
            "position",
        ),
    ];
    for (name, field, reason) in cases {
        let (f, r) = site_refusal(name);
        assert_eq!(f, field, "sites/{name}: {r}");
        assert!(r.contains(reason), "sites/{name}: {r}");
    }
    assert!(matches!(
        fuzzing::sites(&fixture("sites", "invalid-utf8-json.geojson")),
        Err(ImportError::Json(_))
    ));
    assert_eq!(
        fuzzing::sites(&fixture("sites", "accepted.geojson"))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn observation_fixtures_are_refused_naming_the_field() {
    let cases = [
        (
            "observed-at-missing.geojson",
            "properties.observed_at",
            "missing",
        ),
        (
            "observed-at-not-rfc3339.geojson",
            "properties.observed_at",
            "RFC 3339",
        ),
        (
            "observed-at-too-long.geojson",
            "properties.observed_at",
            "longer than",
        ),
        (
            "area-ring-not-closed.geojson",
            "geometry.coordinates[0]",
            "not closed",
        ),
        ("area-invalid.geojson", "geometry.coordinates", ""),
        ("site-id-invalid.geojson", "properties.site_id", ""),
        (
            "finding-unknown.geojson",
            "properties.finding",
            "unknown value",
        ),
        ("geometry-type-refused.geojson", "geometry.type", ""),
        ("feature-type-wrong.geojson", "type", "Feature"),
    ];
    for (name, field, reason) in cases {
        let results = fuzzing::observations(&fixture("observations", name))
            .unwrap_or_else(|e| panic!("observations/{name}: {e}"));
        let e = results
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("observations/{name}: nothing refused"));
        assert_eq!(e.field, field, "observations/{name}: {}", e.reason);
        assert!(
            e.reason.contains(reason),
            "observations/{name}: {}",
            e.reason
        );
    }
    for (name, says) in [
        ("type-missing.geojson", "type"),
        ("features-missing.geojson", "features"),
    ] {
        match fuzzing::observations(&fixture("observations", name)) {
            Err(StreamError::NotACollection(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("observations/{name}: {other:?}"),
        }
    }
    assert!(matches!(
        fuzzing::observations(&fixture("observations", "not-json.geojson")),
        Err(StreamError::Json(_))
    ));
    let ok = fuzzing::observations(&fixture("observations", "accepted.geojson")).unwrap();
    assert!(ok.iter().all(Result::is_ok));
}

/// A time with more than six fractional digits was kept to the nanosecond in
/// memory but stored to the microsecond, so an observation changed on a round
/// trip and the live statistics disagreed with the store.
#[test]
fn a_time_in_nanoseconds_is_held_as_it_is_stored() {
    let name = "observed-at-nanoseconds.geojson";
    let o = fuzzing::observations(&fixture("observations", name)).unwrap();
    let o = o[0].as_ref().unwrap();
    assert_eq!(o.observed_at.to_rfc3339(), "2024-03-01T02:10:00.123456Z");
    let r = fuzzing::import(&fixture("import", name)).unwrap();
    assert!(r.stored, "{}", r.summary);
}

/// Unclosed parentheses made the CQL2 text parser backtrack for minutes.
#[test]
fn a_filter_nested_too_deep_is_refused_at_once() {
    let started = std::time::Instant::now();
    match fuzzing::query(&fixture("query", "deep-parentheses-hang")) {
        Err(ApiError::BadRequest { param, detail }) => {
            assert_eq!(param, "filter");
            assert!(detail.contains("nest more than"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let nested = format!("filter={}name = 'a(('{}", "(".repeat(9), ")".repeat(9));
    assert!(fuzzing::query(nested.as_bytes()).is_ok());
}

/// Inputs that once cost the `cql2` parser seconds (a quoted name hid 22
/// unclosed groups from a character count; 10 unclosed groups before a
/// 2,000-term OR) or an evaluation that tests every record against a large
/// literal: each is refused before it costs anything.
#[test]
fn hostile_filters_are_refused_before_they_cost_anything() {
    for name in [
        "filter-quoted-name-hides-depth",
        "filter-unclosed-before-long-or",
        "filter-nested-groups-too-costly",
        "filter-json-too-deep",
        "filter-multipoint-too-many-vertices",
    ] {
        let started = std::time::Instant::now();
        assert!(
            matches!(
                fuzzing::query(&fixture("query", name)),
                Err(ApiError::BadRequest { param, .. }) if param == "filter"
            ),
            "query/{name}"
        );
        // Generous: the refusals take microseconds; the parses took seconds.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "query/{name}"
        );
    }
}

#[test]
fn an_atomic_import_with_a_bad_feature_stores_nothing() {
    // `fuzzing::import` itself checks that the store is unchanged.
    for (name, field) in [
        ("atomic-refused.geojson", "properties.observed_at"),
        (
            "atomic-refused-with-candidate.geojson",
            "geometry.coordinates",
        ),
    ] {
        let r = fuzzing::import(&fixture("import", name)).unwrap();
        assert!(!r.stored && r.rejected > 0, "import/{name}: {}", r.summary);
        assert!(
            r.problems[0].field.starts_with(field),
            "import/{name}: {:?}",
            r.problems[0]
        );
    }
    let r = fuzzing::import(&fixture("import", "stored-with-candidate.geojson")).unwrap();
    assert!(r.stored && r.rejected == 0, "{}", r.summary);
    assert_eq!(r.candidates_created.len(), 1, "{}", r.summary);
    for name in [
        "duplicate-key.geojson",
        "features-missing.geojson",
        "trailing-comma.geojson",
    ] {
        assert!(
            matches!(
                fuzzing::import(&fixture("import", name)),
                Err(ObservationImportError::Unreadable(_))
            ),
            "import/{name}"
        );
    }
}

#[test]
fn query_fixtures_are_refused_naming_the_parameter() {
    let cases = [
        ("bbox-south-above-north", "bbox", "greater than"),
        ("bbox-longitude-340", "bbox", "longitude 340"),
        ("bbox-latitude-inf", "bbox", "latitude inf"),
        ("bbox-not-numbers", "bbox", "4 comma-separated numbers"),
        ("datetime-empty", "datetime", "empty"),
        (
            "datetime-ends-before-start",
            "datetime",
            "starts after it ends",
        ),
        ("datetime-negative-year", "datetime", ""),
        ("filter-dwithin-arguments", "filter", "S_DWITHIN takes"),
        (
            "filter-intersects-one-argument",
            "filter",
            "takes 2 arguments",
        ),
        ("filter-not-a-predicate", "filter", "expected a predicate"),
        ("filter-json-truncated", "filter", "CQL2 JSON"),
        ("status-unknown", "status", "unknown value"),
        (
            "filter-quoted-name-hides-depth",
            "filter",
            "nest more than 10",
        ),
        (
            "filter-unclosed-before-long-or",
            "filter",
            "too many terms inside",
        ),
        (
            "filter-nested-groups-too-costly",
            "filter",
            "too many terms inside",
        ),
        ("filter-json-too-deep", "filter", "nest more than 32"),
        (
            "filter-multipoint-too-many-vertices",
            "filter",
            "1001 vertices, more than 1000",
        ),
        (
            "filter-dwithin-too-far",
            "filter",
            "at most 10000000 metres",
        ),
    ];
    for (name, param, says) in cases {
        match fuzzing::query(&fixture("query", name)) {
            Err(ApiError::BadRequest { param: p, detail }) => {
                assert_eq!(p, param, "query/{name}: {detail}");
                assert!(detail.contains(says), "query/{name}: {detail}");
            }
            other => panic!("query/{name}: {other:?}"),
        }
    }
    assert!(fuzzing::query(&fixture("query", "accepted-short")).is_ok());
}
