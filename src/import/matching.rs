//! Which catalogue sites an observation belongs to.

use crate::geodesy::MAX_CURVATURE_RADIUS;
use crate::index::{Filter, SiteIndex};
use crate::model::{FieldError, Footprint, Meters, Observation, Place};
use crate::model::{LinkHow, SiteLink};

/// Links an observation to sites: the site it names (which must exist), else
/// every site its place meets, else the nearest site within `radius`, else none.
pub fn match_place(
    index: &SiteIndex,
    obs: &Observation,
    radius: Meters,
) -> Result<Vec<SiteLink>, FieldError> {
    let any = Filter::default();
    if let Some(id) = &obs.site_id {
        let site = index.get(id).ok_or_else(|| {
            FieldError::new(
                "properties.site_id",
                format!("no site with id \"{id}\" in the catalogue"),
            )
        })?;
        let distance_m = place_distance(&obs.place, &site.footprint);
        return Ok(vec![SiteLink {
            site_id: id.clone(),
            how: LinkHow::Named,
            distance_m,
        }]);
    }
    let meets: Vec<SiteLink> = match &obs.place {
        Place::Point(p) => index
            .nearby(*p, Meters::from_computed(0.0), &any, usize::MAX)
            .into_iter()
            .map(|h| SiteLink {
                site_id: h.site.id.clone(),
                how: LinkHow::Intersects,
                distance_m: 0.0,
            })
            .collect(),
        Place::Area(f) => index
            .intersects(f.shape(), &any)
            .into_iter()
            .map(|s| SiteLink {
                site_id: s.id.clone(),
                how: LinkHow::Intersects,
                distance_m: 0.0,
            })
            .collect(),
    };
    if !meets.is_empty() {
        return Ok(meets);
    }
    let nearest = match &obs.place {
        Place::Point(p) => index
            .nearest(*p, 1, &any)
            .into_iter()
            .map(|h| (h.site.id.clone(), h.distance.get()))
            .next(),
        Place::Area(f) => {
            // Every point of the area is within its cap of the anchor, so sites
            // within `radius` of the area are within radius + cap of the anchor.
            let reach = radius.get() + f.shape().radius() * MAX_CURVATURE_RADIUS;
            index
                .nearby(
                    obs.place.anchor(),
                    Meters::from_computed(reach),
                    &any,
                    usize::MAX,
                )
                .into_iter()
                .map(|h| (h.site.id.clone(), footprint_distance(f, &h.site.footprint)))
                .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
        }
    };
    Ok(nearest
        .filter(|(_, d)| *d <= radius.get())
        .map(|(site_id, distance_m)| SiteLink {
            site_id,
            how: LinkHow::Nearest,
            distance_m,
        })
        .into_iter()
        .collect())
}

/// Geodesic metres between a place and a footprint, 0 when they meet.
fn place_distance(place: &Place, footprint: &Footprint) -> f64 {
    match place {
        Place::Point(p) => footprint.shape().distance_m(p.to_array()),
        Place::Area(a) if a.shape().intersects(footprint.shape()) => 0.0,
        Place::Area(a) => footprint_distance(a, footprint),
    }
}

/// Between two disjoint areas the shortest distance runs from a vertex of one
/// to the other, so measuring from every vertex both ways finds it.
fn footprint_distance(a: &Footprint, b: &Footprint) -> f64 {
    let from = |x: &Footprint, y: &Footprint| {
        x.parts()
            .iter()
            .flatten()
            .flatten()
            .map(|&v| y.shape().distance_m(v))
            .fold(f64::INFINITY, f64::min)
    };
    from(a, b).min(from(b, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IdPolicy, Site};
    use serde_json::json;
    use std::sync::Arc;

    fn index() -> SiteIndex {
        let site = |id: &str, lon: f64| {
            let f = json!({"type": "Feature", "id": id, "geometry": {"type": "Polygon", "coordinates": [[[lon, 40.0], [lon + 0.01, 40.0], [lon + 0.01, 40.01], [lon, 40.01], [lon, 40.0]]]},
                "properties": {"name": id, "country": "PRK", "kind": "other"}});
            Arc::new(Site::from_feature(&f, IdPolicy::Required).unwrap())
        };
        SiteIndex::build([site("a", 126.0), site("b", 126.005)])
    }

    fn obs(geometry: serde_json::Value, site_id: Option<&str>) -> Observation {
        Observation::from_feature(&json!({"type": "Feature", "geometry": geometry,
            "properties": {"observed_at": "2020-01-01T00:00:00Z", "sensor": "s", "finding": "other", "site_id": site_id}}))
        .unwrap()
    }

    fn km(n: f64) -> Meters {
        Meters::parse("r", n * 1000.0).unwrap()
    }

    #[test]
    fn a_point_inside_overlapping_footprints_links_to_all_of_them() {
        let links = match_place(
            &index(),
            &obs(
                json!({"type": "Point", "coordinates": [126.007, 40.005]}),
                None,
            ),
            km(1.0),
        )
        .unwrap();
        assert_eq!(
            links.iter().map(|l| l.site_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(links.iter().all(|l| l.how == LinkHow::Intersects));
    }

    #[test]
    fn a_point_near_a_site_links_to_the_nearest_within_the_radius_only() {
        let p = obs(
            json!({"type": "Point", "coordinates": [125.995, 40.005]}),
            None,
        );
        let links = match_place(&index(), &p, km(1.0)).unwrap();
        assert_eq!(
            (links[0].site_id.as_str(), links[0].how),
            ("a", LinkHow::Nearest)
        );
        assert!(links[0].distance_m > 300.0 && links[0].distance_m < 600.0);
        assert!(match_place(&index(), &p, km(0.2)).unwrap().is_empty());
    }

    #[test]
    fn an_area_near_a_site_is_measured_from_its_edge() {
        let a = obs(
            json!({"type": "Polygon", "coordinates": [[[125.990, 40.0], [125.995, 40.0], [125.995, 40.005], [125.990, 40.0]]]}),
            None,
        );
        let links = match_place(&index(), &a, km(1.0)).unwrap();
        assert_eq!(links.len(), 1);
        assert!(
            links[0].distance_m > 300.0 && links[0].distance_m < 600.0,
            "{}",
            links[0].distance_m
        );
    }

    #[test]
    fn a_named_site_must_exist() {
        let e = match_place(
            &index(),
            &obs(
                json!({"type": "Point", "coordinates": [0, 0]}),
                Some("nope"),
            ),
            km(1.0),
        )
        .unwrap_err();
        assert_eq!(e.field, "properties.site_id");
        let ok = match_place(
            &index(),
            &obs(json!({"type": "Point", "coordinates": [0, 0]}), Some("a")),
            km(1.0),
        )
        .unwrap();
        assert_eq!(ok[0].how, LinkHow::Named);
    }
}
