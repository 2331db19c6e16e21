//! Items as CSV (RFC 4180) for spreadsheets and GIS tools: one row per feature,
//! the id first, the properties, and the geometry as WKT in a `wkt` column
//! (the column name GDAL and QGIS recognise).

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

/// A property value as one cell: text as it is, numbers and booleans in JSON
/// spelling, null as an empty cell, arrays and objects as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
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
    fn an_empty_page_still_has_its_header() {
        assert_eq!(features(&["name", "kind"], &[]), "id,name,kind,wkt\r\n");
    }
}
