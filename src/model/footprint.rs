//! A site's footprint: a GeoJSON Polygon or MultiPolygon on WGS84, checked once and
//! carried with its unit-sphere shape so that every query can use it directly.

use super::{FieldError, LonLat};
use crate::geodesy::{ShapeError, SphericalShape};
use geo::{Coord, LineString, MultiPolygon, Polygon, Validation};
use serde_json::{Value, json};

/// The most positions a footprint may have, all rings together. Checking that
/// rings do not cross themselves takes time quadratic in a ring's length (about
/// 0.7 s for 10,000 positions in a release build, 70 s for 100,000), so this
/// bound is what keeps one request from holding a worker for minutes. Real site
/// outlines have tens to hundreds of positions.
pub const MAX_FOOTPRINT_VERTICES: usize = 10_000;

/// A valid footprint. Rings are closed, have at least four positions, hold finite
/// in-range coordinates, do not cross themselves, and fit in a cap of
/// [`crate::geodesy::MAX_CAP_DEGREES`].
#[derive(Debug, Clone)]
pub struct Footprint {
    /// Parts, each a list of rings (exterior first) of `[lon, lat]`.
    parts: Vec<Vec<Vec<[f64; 2]>>>,
    multi: bool,
    shape: SphericalShape,
}

impl PartialEq for Footprint {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts && self.multi == other.multi
    }
}

fn number_array<'a>(field: &str, v: &'a Value) -> Result<&'a Vec<Value>, FieldError> {
    v.as_array()
        .ok_or_else(|| FieldError::new(field, format!("expected an array, found {}", kind_of(v))))
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads one `[lon, lat]` (an optional altitude is accepted and dropped).
pub(crate) fn parse_position(field: &str, v: &Value) -> Result<[f64; 2], FieldError> {
    let arr = number_array(field, v)?;
    if !(2..=3).contains(&arr.len()) {
        return Err(FieldError::new(
            field,
            format!("a position needs 2 or 3 numbers, found {}", arr.len()),
        ));
    }
    let num = |i: usize| {
        arr[i].as_f64().ok_or_else(|| {
            FieldError::new(
                field,
                format!("expected a number, found {}", kind_of(&arr[i])),
            )
        })
    };
    Ok(LonLat::parse(field, num(0)?, num(1)?)?.to_array())
}

fn parse_ring(field: &str, v: &Value) -> Result<Vec<[f64; 2]>, FieldError> {
    let arr = number_array(field, v)?;
    let ring = arr
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // A position's path is spelled out only for an error: a
            // million-site file has tens of millions of positions.
            parse_position("", p).map_err(|e| FieldError {
                field: format!("{field}[{i}]"),
                ..e
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ring.len() < 4 {
        return Err(FieldError::new(
            field,
            format!("a ring needs at least 4 positions, found {}", ring.len()),
        ));
    }
    if ring.first() != ring.last() {
        return Err(FieldError::new(
            field,
            "ring is not closed: its first and last positions differ",
        ));
    }
    Ok(ring)
}

fn parse_polygon(field: &str, v: &Value) -> Result<Vec<Vec<[f64; 2]>>, FieldError> {
    let rings = number_array(field, v)?;
    if rings.is_empty() {
        return Err(FieldError::new(field, "a polygon needs at least one ring"));
    }
    rings
        .iter()
        .enumerate()
        .map(|(i, r)| parse_ring(&format!("{field}[{i}]"), r))
        .collect()
}

/// Refuses a geometry with more than [`MAX_FOOTPRINT_VERTICES`] positions
/// before any of them is read. Arrays where rings or polygons should be are
/// left for the parser to name.
fn check_vertex_count(field: &str, kind: &str, coords: &Value) -> Result<(), FieldError> {
    let rings = |polygon: &Value| -> usize {
        polygon
            .as_array()
            .into_iter()
            .flatten()
            .map(|ring| ring.as_array().map_or(0, Vec::len))
            .sum()
    };
    let count = match kind {
        "Polygon" => rings(coords),
        "MultiPolygon" => coords.as_array().into_iter().flatten().map(rings).sum(),
        _ => 0,
    };
    if count > MAX_FOOTPRINT_VERTICES {
        return Err(FieldError::new(
            field,
            format!(
                "a footprint may have at most {MAX_FOOTPRINT_VERTICES} positions, found {count}"
            ),
        ));
    }
    Ok(())
}

impl Footprint {
    /// Parses a GeoJSON geometry object; `field` is its path, used in errors.
    pub fn parse(field: &str, v: &Value) -> Result<Self, FieldError> {
        let obj = v.as_object().ok_or_else(|| {
            FieldError::new(
                field,
                format!("expected a GeoJSON geometry object, found {}", kind_of(v)),
            )
        })?;
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
        let coords_field = format!("{field}.coordinates");
        let coords = obj
            .get("coordinates")
            .ok_or_else(|| FieldError::new(&coords_field, "missing"))?;
        check_vertex_count(&coords_field, kind, coords)?;
        let (parts, multi) = match kind {
            "Polygon" => (vec![parse_polygon(&coords_field, coords)?], false),
            "MultiPolygon" => {
                let polys = number_array(&coords_field, coords)?;
                if polys.is_empty() {
                    return Err(FieldError::new(
                        &coords_field,
                        "a MultiPolygon needs at least one polygon",
                    ));
                }
                let parts = polys
                    .iter()
                    .enumerate()
                    .map(|(i, p)| parse_polygon(&format!("{coords_field}[{i}]"), p))
                    .collect::<Result<Vec<_>, _>>()?;
                (parts, true)
            }
            other => {
                return Err(FieldError::new(
                    format!("{field}.type"),
                    format!("a footprint must be a Polygon or MultiPolygon, found {other:?}"),
                ));
            }
        };
        Self::from_parts(&coords_field, parts, multi)
    }

    /// A footprint read back from the store, where it was checked on the way
    /// in: builds the shape without repeating the validity test. `None` if the
    /// shape cannot be built at all.
    pub(crate) fn stored(parts: Vec<Vec<Vec<[f64; 2]>>>, multi: bool) -> Option<Self> {
        let shape =
            SphericalShape::new(parts.iter().map(|rings| rings.iter().map(Vec::as_slice))).ok()?;
        Some(Self {
            parts,
            multi,
            shape,
        })
    }

    fn from_parts(
        field: &str,
        parts: Vec<Vec<Vec<[f64; 2]>>>,
        multi: bool,
    ) -> Result<Self, FieldError> {
        let shape = SphericalShape::new(parts.iter().map(|rings| rings.iter().map(Vec::as_slice)))
            .map_err(|e: ShapeError| FieldError::new(field, format!("footprint {e}")))?;
        // Great-circle edges are straight in the gnomonic plane, so planar validity
        // there is validity on the sphere, antimeridian and poles included.
        let projected: Vec<Polygon> = {
            let mut polys: Vec<Vec<LineString>> = vec![Vec::new(); parts.len()];
            for (part, pts) in shape.projected_rings() {
                polys[part as usize].push(LineString::from(
                    pts.into_iter()
                        .map(|[x, y]| Coord { x, y })
                        .collect::<Vec<_>>(),
                ));
            }
            polys
                .into_iter()
                .map(|mut rings| {
                    let ext = rings.remove(0);
                    Polygon::new(ext, rings)
                })
                .collect()
        };
        if let Some(problem) = MultiPolygon::new(projected)
            .validation_errors()
            .into_iter()
            .next()
        {
            return Err(FieldError::new(
                field,
                format!("invalid footprint: {problem}"),
            ));
        }
        Ok(Self {
            parts,
            multi,
            shape,
        })
    }

    /// The shape on the unit sphere, for containment and distance.
    pub fn shape(&self) -> &SphericalShape {
        &self.shape
    }

    /// Parts, each a list of rings of `[lon, lat]`, exterior first.
    pub fn parts(&self) -> &[Vec<Vec<[f64; 2]>>] {
        &self.parts
    }

    /// The first position of the first ring.
    pub fn first_position(&self) -> [f64; 2] {
        self.parts[0][0][0]
    }

    /// The lon/lat box `[west, south, east, north]` around every position (see
    /// [`bounds_of`]).
    pub fn lonlat_bounds(&self) -> [f64; 4] {
        bounds_of(self.parts.iter().flatten().flatten().copied())
            .unwrap_or([-180.0, -90.0, 180.0, 90.0])
    }

    pub fn vertex_count(&self) -> usize {
        self.parts.iter().flatten().map(Vec::len).sum()
    }

    /// The footprint as an RFC 7946 geometry object.
    /// Whether the footprint was given as a MultiPolygon.
    pub fn is_multi(&self) -> bool {
        self.multi
    }

    pub fn to_geojson(&self) -> Value {
        json!(self.geojson_view())
    }

    /// The GeoJSON geometry as serde writes it, without building it first.
    pub(super) fn geojson_view(&self) -> GeoJsonView<'_> {
        if self.multi {
            GeoJsonView::MultiPolygon {
                coordinates: &self.parts,
            }
        } else {
            GeoJsonView::Polygon {
                coordinates: &self.parts[0],
            }
        }
    }
}

/// A footprint's GeoJSON geometry: `type`, then `coordinates`.
#[derive(serde::Serialize)]
#[serde(tag = "type")]
pub(super) enum GeoJsonView<'a> {
    Polygon {
        coordinates: &'a [Vec<[f64; 2]>],
    },
    MultiPolygon {
        coordinates: &'a [Vec<Vec<[f64; 2]>>],
    },
}

/// The lon/lat box `[west, south, east, north]` around positions; `None` for
/// none. Positions that span more than 180° of longitude (a shape across the
/// antimeridian) get the whole longitude range, so the box is never too small.
pub fn bounds_of(positions: impl Iterator<Item = [f64; 2]>) -> Option<[f64; 4]> {
    let mut b: Option<[f64; 4]> = None;
    for [lon, lat] in positions {
        b = Some(match b {
            None => [lon, lat, lon, lat],
            Some([w, s, e, n]) => [w.min(lon), s.min(lat), e.max(lon), n.max(lat)],
        });
    }
    b.map(|[w, s, e, n]| {
        if e - w > 180.0 {
            [-180.0, s, 180.0, n]
        } else {
            [w, s, e, n]
        }
    })
}

/// The lon/lat rings of a stored Polygon or MultiPolygon, read without the
/// checks and the spherical shape of [`Footprint::parse`]: for tests on a
/// stored footprint that need only its rings. `None` for anything else, or
/// for a polygon without rings or a ring without positions.
pub fn geojson_parts(geometry: &Value) -> Option<Vec<Vec<Vec<[f64; 2]>>>> {
    let position = |p: &Value| -> Option<[f64; 2]> {
        let p = p.as_array()?;
        Some([p.first()?.as_f64()?, p.get(1)?.as_f64()?])
    };
    let ring = |r: &Value| -> Option<Vec<[f64; 2]>> {
        let r: Vec<[f64; 2]> = r.as_array()?.iter().map(position).collect::<Option<_>>()?;
        (!r.is_empty()).then_some(r)
    };
    let polygon = |p: &Value| -> Option<Vec<Vec<[f64; 2]>>> {
        let p: Vec<Vec<[f64; 2]>> = p.as_array()?.iter().map(ring).collect::<Option<_>>()?;
        (!p.is_empty()).then_some(p)
    };
    let coordinates = geometry.get("coordinates")?;
    match geometry.get("type")?.as_str()? {
        "Polygon" => Some(vec![polygon(coordinates)?]),
        "MultiPolygon" => coordinates.as_array()?.iter().map(polygon).collect(),
        _ => None,
    }
}

/// [`bounds_of`] the positions of a GeoJSON geometry object.
pub fn geojson_bounds(geometry: &Value) -> Option<[f64; 4]> {
    fn walk(v: &Value, out: &mut Vec<[f64; 2]>) {
        match v.as_array() {
            Some(a) if a.len() >= 2 && a[0].is_number() => {
                if let (Some(x), Some(y)) = (a[0].as_f64(), a[1].as_f64()) {
                    out.push([x, y]);
                }
            }
            Some(a) => a.iter().for_each(|v| walk(v, out)),
            None => {}
        }
    }
    let mut positions = Vec::new();
    walk(geometry.get("coordinates")?, &mut positions);
    bounds_of(positions.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Footprint, FieldError> {
        Footprint::parse("geometry", &v)
    }

    #[test]
    fn the_rings_read_from_a_stored_footprint_are_the_parsed_footprints_rings() {
        for geometry in [
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]], [[0.2, 0.1], [0.8, 0.1], [0.8, 0.7], [0.2, 0.1]]]}),
            json!({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[5, 5], [6, 5], [6, 6], [5, 5]]]]}),
        ] {
            let parsed = Footprint::parse("geometry", &geometry).unwrap();
            assert_eq!(geojson_parts(&geometry).as_deref(), Some(parsed.parts()));
        }
        for not in [
            json!({"type": "Point", "coordinates": [0, 0]}),
            json!({"type": "Polygon", "coordinates": []}),
            json!({"type": "Polygon", "coordinates": [[]]}),
            json!({"type": "MultiPolygon", "coordinates": [[]]}),
            json!({"type": "Polygon", "coordinates": [[[0, "x"]]]}),
        ] {
            assert_eq!(geojson_parts(&not), None, "{not}");
        }
    }

    #[test]
    fn a_closed_polygon_round_trips_to_the_same_geojson() {
        let g = json!({"type": "Polygon", "coordinates": [[[125.0, 39.0], [125.1, 39.0], [125.1, 39.1], [125.0, 39.0]]]});
        assert_eq!(parse(g.clone()).unwrap().to_geojson(), g);
    }

    #[test]
    fn an_unclosed_ring_is_refused_naming_the_ring() {
        let e = parse(json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]]})).unwrap_err();
        assert_eq!(e.field, "geometry.coordinates[0]");
        assert!(e.reason.contains("not closed"));
    }

    #[test]
    fn a_ring_of_three_positions_is_refused() {
        let e = parse(
            json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]}),
        )
        .unwrap_err();
        assert!(e.reason.contains("at least 4"), "{e}");
    }

    #[test]
    fn a_coordinate_out_of_range_names_its_position() {
        let e = parse(json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 95.0], [0.0, 0.0]]]})).unwrap_err();
        assert_eq!(e.field, "geometry.coordinates[0][2]");
        assert!(e.reason.contains("latitude"));
    }

    #[test]
    fn a_self_intersecting_ring_is_refused() {
        let e = parse(json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]})).unwrap_err();
        assert!(e.reason.contains("self-intersection"), "{e}");
    }

    #[test]
    fn a_footprint_over_the_vertex_limit_is_refused_naming_its_coordinates() {
        let ring = |n: usize| -> Vec<[f64; 2]> {
            (0..=n)
                .map(|i| {
                    let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
                    [0.01 * a.cos(), 0.01 * a.sin()]
                })
                .collect()
        };
        let over = json!({"type": "Polygon", "coordinates": [ring(MAX_FOOTPRINT_VERTICES)]});
        let e = parse(over).unwrap_err();
        assert_eq!(e.field, "geometry.coordinates");
        assert!(e.reason.contains("at most 10000 positions"), "{e}");
        let half = MAX_FOOTPRINT_VERTICES / 2;
        let multi = json!({"type": "MultiPolygon", "coordinates": [[ring(half)], [ring(half)]]});
        assert_eq!(parse(multi).unwrap_err().field, "geometry.coordinates");
        assert!(parse(json!({"type": "Polygon", "coordinates": [ring(500)]})).is_ok());
    }

    #[test]
    fn a_point_is_not_a_footprint() {
        let e = parse(json!({"type": "Point", "coordinates": [0.0, 0.0]})).unwrap_err();
        assert_eq!(e.field, "geometry.type");
    }

    #[test]
    fn a_polygon_across_the_antimeridian_is_valid() {
        let g = json!({"type": "Polygon", "coordinates": [[[179.9, 0.0], [-179.9, 0.0], [-179.9, 0.1], [179.9, 0.1], [179.9, 0.0]]]});
        assert!(parse(g).is_ok());
    }

    #[test]
    fn a_multipolygon_keeps_its_parts_and_holes() {
        let g = json!({"type": "MultiPolygon", "coordinates": [
            [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]], [[0.2, 0.2], [0.2, 0.8], [0.8, 0.8], [0.8, 0.2], [0.2, 0.2]]],
            [[[3.0, 3.0], [4.0, 3.0], [4.0, 4.0], [3.0, 3.0]]]
        ]});
        let f = parse(g.clone()).unwrap();
        assert_eq!(f.parts().len(), 2);
        assert_eq!(f.to_geojson(), g);
        assert!(!f.shape().contains(crate::geodesy::to_unit([0.5, 0.5])));
        assert!(f.shape().contains(crate::geodesy::to_unit([0.1, 0.1])));
    }
}
