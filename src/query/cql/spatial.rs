//! The spatial predicates a filter may call: whether a feature meets a query
//! shape or a box, and geodesic distances between them.

use super::expr::Shape;
use crate::geodesy::{self, geodesic_distance, min_distance_for_angle};
use crate::model::{BBox, Footprint, LonLat, Place};

/// Where a feature is, as the spatial predicates need it.
#[derive(Debug, Clone, Copy)]
pub enum Geom<'a> {
    Point(LonLat),
    Area(&'a Footprint),
}

impl<'a> From<&'a Place> for Geom<'a> {
    fn from(p: &'a Place) -> Self {
        match p {
            Place::Point(p) => Geom::Point(*p),
            Place::Area(f) => Geom::Area(f),
        }
    }
}

/// Whether a geometry meets a query shape. A BBOX is read as `bbox` is: a
/// rectangle in longitude and latitude, crossing the antimeridian when west > east.
pub fn intersects(g: Geom<'_>, shape: &Shape) -> bool {
    match shape {
        Shape::BBox(b) => geom_meets_bbox(g, b),
        Shape::Places(places) => places.iter().any(|p| geom_meets_place(g, p)),
    }
}

fn geom_meets_place(g: Geom<'_>, p: &Place) -> bool {
    match (g, p) {
        (Geom::Point(a), Place::Point(b)) => a == *b,
        (Geom::Point(a), Place::Area(f)) | (Geom::Area(f), &Place::Point(a)) => {
            f.shape().contains(geodesy::to_unit(a.to_array()))
        }
        (Geom::Area(f), Place::Area(q)) => f.shape().intersects(q.shape()),
    }
}

/// Whether a geometry meets a lon/lat box, in the plane of longitude and
/// latitude (the reading of `bbox` the index uses for sites).
pub fn geom_meets_bbox(g: Geom<'_>, b: &BBox) -> bool {
    match g {
        Geom::Point(p) => b
            .pieces()
            .iter()
            .any(|[w, s, e, n]| (*w..=*e).contains(&p.lon()) && (*s..=*n).contains(&p.lat())),
        Geom::Area(f) => crate::index::footprint_meets_bbox(f, b),
    }
}

/// Whether a geometry lies within `d` metres of a query shape (geodesic metres
/// on WGS84, measured between the nearest points; 0 when they meet).
pub fn within(g: Geom<'_>, shape: &Shape, d: f64) -> bool {
    match shape {
        Shape::BBox(_) => false,
        Shape::Places(places) => places.iter().any(|p| distance(g, p, d) <= d),
    }
}

/// Geodesic metres between a geometry and a place. Any answer above `cutoff`
/// may be a lower bound rather than the distance, which is all a threshold needs.
pub fn distance(g: Geom<'_>, p: &Place, cutoff: f64) -> f64 {
    match (g, p) {
        (Geom::Point(a), Place::Point(b)) => geodesic_distance(a.to_array(), b.to_array()),
        (Geom::Point(a), Place::Area(f)) | (Geom::Area(f), &Place::Point(a)) => {
            f.shape().distance_m(a.to_array())
        }
        (Geom::Area(f), Place::Area(q)) => {
            let (a, b) = (f.shape(), q.shape());
            // The caps around the two shapes bound how close they can come.
            let gap = geodesy::angle(a.centre(), b.centre()) - a.radius() - b.radius();
            let lower = min_distance_for_angle(gap.max(0.0));
            if lower > cutoff {
                return lower;
            }
            if a.intersects(b) {
                return 0.0;
            }
            // Two disjoint areas are nearest between a vertex of one and an edge
            // of the other.
            let from = |x: &Footprint, to: &crate::geodesy::SphericalShape| {
                x.parts()
                    .iter()
                    .flatten()
                    .flatten()
                    .map(|v| to.distance_m(*v))
                    .fold(f64::INFINITY, f64::min)
            };
            from(f, b).min(from(q, a))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{thing, yes};
    use super::*;
    use serde_json::json;

    #[test]
    fn spatial_predicates_measure_metres_on_the_ellipsoid() {
        let t = thing(Some("x"), 125.0, 39.0);
        // 0.01° of latitude at 39°N is about 1,110 m.
        assert!(yes("S_DWITHIN(geometry, POINT(125 39.01), 1120)", &t));
        assert!(!yes("S_DWITHIN(geometry, POINT(125 39.01), 1100)", &t));
        assert!(yes(
            "S_DWITHIN(geometry, POINT(125 39.01), 1.12, kilometers)",
            &t
        ));
        assert!(yes("S_INTERSECTS(geometry, BBOX(124, 38, 126, 40))", &t));
        assert!(yes(
            "S_INTERSECTS(geometry, POLYGON((124 38, 126 38, 126 40, 124 40, 124 38)))",
            &t
        ));
        assert!(!yes("S_INTERSECTS(geometry, BBOX(126, 38, 127, 40))", &t));
        let east = thing(Some("x"), 179.99, 0.0);
        assert!(yes("S_INTERSECTS(geometry, BBOX(170, -1, -170, 1))", &east));
    }

    #[test]
    fn area_to_area_distance_is_between_nearest_points() {
        let square = |lon: f64| {
            Place::parse(
                "g",
                &json!({"type": "Polygon", "coordinates": [[[lon, 0.0], [lon + 0.01, 0.0], [lon + 0.01, 0.01], [lon, 0.01], [lon, 0.0]]]}),
            )
            .unwrap()
        };
        let (a, b) = (square(0.0), square(0.02));
        let d = distance((&a).into(), &b, f64::INFINITY);
        // 0.01° of longitude on the equator is 1,113.2 m.
        assert!((d - 1113.19).abs() < 0.5, "{d}");
        assert_eq!(distance((&a).into(), &square(0.005), f64::INFINITY), 0.0);
    }
}
