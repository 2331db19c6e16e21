//! Items as CSV (RFC 4180) for spreadsheets and GIS tools: one row per feature,
//! the id first, the properties, and the geometry as WKT in a `wkt` column
//! (the column name GDAL and QGIS recognise). Text a spreadsheet would run as
//! a formula is made inert.

use serde_json::Value;
use std::fmt::Write;

/// Quotes a field when it holds a separator, a quote or a line break.
fn field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// The first characters that make a spreadsheet read a cell as a formula, or
/// (tab and carriage return) that it skips before one: OWASP's list for CSV
/// injection.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Text as a cell that no spreadsheet runs: one that would start a formula
/// (`=HYPERLINK(...)`, `@SUM(...)`, `-2+3`) gets a leading `'`, which
/// spreadsheets read as "this is text" and do not show.
fn inert(text: &str) -> String {
    if text.starts_with(FORMULA_STARTS) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A property value as one cell, by the kind its column declares: text
/// (`String` and `Timestamp` properties, JSON strings) made inert; numbers
/// (`Integer`, `Number`) and booleans in JSON spelling, untouched, so that
/// `-12.5` stays a number; null as an empty cell; lists and objects
/// (`Strings`, `Objects`) as JSON, which starts with a bracket. The geometry
/// is not a property: it is the `wkt` column, which starts with its type name.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => inert(s),
        other => other.to_string(),
    }
}

fn position(out: &mut String, p: &Value) {
    let n = |i: usize| p.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let _ = write!(out, "{} {}", n(0), n(1));
}

fn ring(out: &mut String, r: &Value) {
    out.push('(');
    for (i, p) in r.as_array().into_iter().flatten().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        position(out, p);
    }
    out.push(')');
}

fn polygon(out: &mut String, rings: &Value) {
    out.push('(');
    for (i, r) in rings.as_array().into_iter().flatten().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        ring(out, r);
    }
    out.push(')');
}

/// A GeoJSON geometry as WKT; empty for a missing geometry.
pub fn wkt(g: &Value) -> String {
    let mut out = String::new();
    let coords = &g["coordinates"];
    match g["type"].as_str() {
        Some("Point") => {
            out.push_str("POINT (");
            position(&mut out, coords);
            out.push(')');
        }
        Some("MultiPoint") => {
            out.push_str("MULTIPOINT ");
            ring(&mut out, coords);
        }
        Some("LineString") => {
            out.push_str("LINESTRING ");
            ring(&mut out, coords);
        }
        Some("Polygon") => {
            out.push_str("POLYGON ");
            polygon(&mut out, coords);
        }
        Some("MultiPolygon") => {
            out.push_str("MULTIPOLYGON (");
            for (i, p) in coords.as_array().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                polygon(&mut out, p);
            }
            out.push(')');
        }
        _ => {}
    }
    out
}

/// Features as CSV: `id`, then `columns`, then any other properties in the
/// order they first appear, then `wkt`.
pub fn features(columns: &[&str], features: &[Value]) -> String {
    let mut names: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    for f in features {
        for k in f["properties"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.keys())
        {
            if k != "id" && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let mut out = String::new();
    field(&mut out, "id");
    for n in &names {
        out.push(',');
        field(&mut out, n);
    }
    out.push_str(",wkt\r\n");
    for f in features {
        field(&mut out, &cell(&f["id"]));
        for n in &names {
            out.push(',');
            field(&mut out, &cell(&f["properties"][n.as_str()]));
        }
        out.push(',');
        field(&mut out, &wkt(&f["geometry"]));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn geometries_become_wkt_with_longitude_first() {
        assert_eq!(
            wkt(&json!({"type": "Point", "coordinates": [125.5, 39.25]})),
            "POINT (125.5 39.25)"
        );
        assert_eq!(
            wkt(&json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]})),
            "POLYGON ((0 0, 1 0, 1 1, 0 0))"
        );
        assert_eq!(
            wkt(
                &json!({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[2, 2], [3, 2], [3, 3], [2, 2]]]]})
            ),
            "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((2 2, 3 2, 3 3, 2 2)))"
        );
        assert_eq!(wkt(&Value::Null), "");
    }

    #[test]
    fn cells_with_commas_quotes_or_line_breaks_are_quoted() {
        let f = json!({"type": "Feature", "id": "a", "geometry": null,
            "properties": {"name": "Say \"hi\", then\nleave", "n": 3, "tags": ["x", "y"], "none": null}});
        let text = features(&["name"], &[f]);
        assert_eq!(
            text,
            "id,name,n,tags,none,wkt\r\na,\"Say \"\"hi\"\", then\nleave\",3,\"[\"\"x\"\",\"\"y\"\"]\",,\r\n"
        );
    }

    #[test]
    fn text_a_spreadsheet_would_run_gets_a_leading_quote() {
        for (text, cell) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("Yongbyon", "Yongbyon"),
            ("a=b", "a=b"),
            (" =1", " =1"),
            ("", ""),
        ] {
            assert_eq!(inert(text), cell, "{text:?}");
        }
    }

    #[test]
    fn only_text_columns_are_made_inert_and_numbers_and_wkt_stay_as_they_are() {
        use crate::query::{CollectionId, Kind};
        for c in CollectionId::ALL {
            let mut props = serde_json::Map::new();
            for p in c.properties().iter().filter(|p| p.in_properties()) {
                let v = match p.kind {
                    Kind::String => json!("=1+1"),
                    Kind::Timestamp => json!("2024-01-02T03:04:05Z"),
                    Kind::Integer => json!(-3),
                    Kind::Number => json!(-12.5),
                    Kind::Boolean => json!(true),
                    Kind::Strings => json!(["-x"]),
                    Kind::Objects(_) => json!([{"title": "@x"}]),
                    Kind::Geometry => unreachable!("the geometry is not a property"),
                };
                props.insert(p.name.to_owned(), v);
            }
            let f = json!({"type": "Feature", "id": "-a", "properties": props,
                "geometry": {"type": "Point", "coordinates": [-12.5, -45.25]}});
            let text = features(&c.csv_columns(), &[f]);
            let mut reader = ::csv::Reader::from_reader(text.as_bytes());
            let headers = reader.headers().unwrap().clone();
            let row = reader.records().next().unwrap().unwrap();
            for (name, got) in headers.iter().zip(row.iter()) {
                let want = match c.property(name).map(|p| p.kind) {
                    _ if name == "wkt" => "POINT (-12.5 -45.25)",
                    _ if name == "id" => "'-a",
                    Some(Kind::String) => "'=1+1",
                    Some(Kind::Timestamp) => "2024-01-02T03:04:05Z",
                    Some(Kind::Integer) => "-3",
                    Some(Kind::Number) => "-12.5",
                    Some(Kind::Boolean) => "true",
                    Some(Kind::Strings) => "[\"-x\"]",
                    Some(Kind::Objects(_)) => "[{\"title\":\"@x\"}]",
                    other => panic!("{}.{name}: {other:?}", c.id()),
                };
                assert_eq!(got, want, "{}.{name}", c.id());
            }
        }
    }

    #[test]
    fn an_empty_page_still_has_its_header() {
        assert_eq!(features(&["name", "kind"], &[]), "id,name,kind,wkt\r\n");
    }
}
