//! GeoJSON documents for answers (RFC 7946), shared by the HTTP API and the CLI.

use crate::index::Hit;
use crate::model::Site;
use crate::model::SiteStats;
use crate::model::{Candidate, ObservationStats, StoredObservation};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// A FeatureCollection of sites, with any top-level members in `extra`.
pub fn sites_collection<'a>(
    sites: impl IntoIterator<Item = &'a Arc<Site>>,
    extra: Map<String, Value>,
) -> Value {
    let features: Vec<Value> = sites.into_iter().map(|s| s.to_feature()).collect();
    collection(features, extra)
}

/// [`sites_collection`] written as it goes, one Feature a line, for a whole
/// catalogue: a million sites are never one document in memory, and a line
/// per site keeps two exports easy to compare.
pub fn write_sites_collection<'a>(
    mut out: impl std::io::Write,
    count: usize,
    sites: impl IntoIterator<Item = &'a Arc<Site>>,
) -> std::io::Result<()> {
    write!(
        out,
        r#"{{"type":"FeatureCollection","numberReturned":{count},"features":["#
    )?;
    for (i, site) in sites.into_iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut out, &site.to_feature())?;
    }
    out.write_all(b"\n]}\n")?;
    out.flush()
}

/// A FeatureCollection of proximity hits, each with `properties.distance_m`.
pub fn hits_collection(hits: &[Hit], extra: Map<String, Value>) -> Value {
    serde_json::to_value(HitsDocument {
        hits,
        extra: &extra,
        stats: None,
    })
    .unwrap_or(Value::Null)
}

/// [`hits_collection`] written straight to JSON text, without building a
/// document tree first, with the observation figures [`add_observation_stats`]
/// would add. This is the hot path of the proximity API.
pub fn hits_json(hits: &[Hit], extra: &Map<String, Value>, stats: &SiteStats) -> Vec<u8> {
    // Serialising these types cannot fail: every key is a string and every
    // number finite.
    serde_json::to_vec(&HitsDocument {
        hits,
        extra,
        stats: Some(stats),
    })
    .unwrap_or_default()
}

/// Centimetres are beyond any footprint's accuracy.
fn round_cm(d: f64) -> f64 {
    (d * 100.0).round() / 100.0
}

struct HitsDocument<'a> {
    hits: &'a [Hit],
    extra: &'a Map<String, Value>,
    stats: Option<&'a SiteStats>,
}

impl Serialize for HitsDocument<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("type", "FeatureCollection")?;
        m.serialize_entry("numberReturned", &self.hits.len())?;
        for (k, v) in self.extra {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry(
            "features",
            &Features(self.hits.iter().map(|h| SiteFeature {
                site: &h.site,
                distance_m: Some(round_cm(h.distance.get())),
                stats: self.stats.map(|all| all.get(h.site.id.as_str()).copied()),
            })),
        )?;
        m.end()
    }
}

/// A sequence written from an iterator that can be copied (to serialise twice).
struct Features<I>(I);

impl<'a, I: Iterator<Item = SiteFeature<'a>> + Clone> Serialize for Features<I> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.0.clone())
    }
}

/// A site as the Feature [`Site::to_feature_with`] makes, key for key, with
/// `distance_m` and the observation figures appended when given.
struct SiteFeature<'a> {
    site: &'a Site,
    distance_m: Option<f64>,
    /// `Some` adds `last_observed_at` and `observation_count` (the inner
    /// `None`: never observed).
    stats: Option<Option<ObservationStats>>,
}

impl Serialize for SiteFeature<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = self.site;
        let mut m = ser.serialize_map(Some(4))?;
        m.serialize_entry("type", "Feature")?;
        m.serialize_entry("id", &s.id)?;
        m.serialize_entry("geometry", &GeometryRef(&s.footprint))?;
        m.serialize_entry(
            "properties",
            &Properties {
                feature: self,
                site: s,
            },
        )?;
        m.end()
    }
}

struct GeometryRef<'a>(&'a crate::model::Footprint);

impl Serialize for GeometryRef<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(Some(2))?;
        let parts = self.0.parts();
        if self.0.is_multi() {
            m.serialize_entry("type", "MultiPolygon")?;
            m.serialize_entry("coordinates", parts)?;
        } else {
            m.serialize_entry("type", "Polygon")?;
            m.serialize_entry("coordinates", &parts[0])?;
        }
        m.end()
    }
}

struct Properties<'a> {
    feature: &'a SiteFeature<'a>,
    site: &'a Site,
}

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = self.site;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("id", &s.id)?;
        m.serialize_entry("name", &s.name)?;
        m.serialize_entry("alt_names", &s.alt_names)?;
        m.serialize_entry("country", &s.country)?;
        m.serialize_entry("kind", &s.kind)?;
        m.serialize_entry("declaration", &s.declaration)?;
        m.serialize_entry("status", &s.status)?;
        m.serialize_entry("confidence", &s.confidence)?;
        m.serialize_entry("position_quality", &s.position_quality)?;
        m.serialize_entry("sources", &s.sources)?;
        m.serialize_entry("notes", &s.notes)?;
        if let Some(d) = self.feature.distance_m {
            m.serialize_entry("distance_m", &d)?;
        }
        if let Some(stats) = self.feature.stats {
            m.serialize_entry("last_observed_at", &stats.map(|s| s.last_observed_at))?;
            m.serialize_entry("observation_count", &stats.map_or(0, |s| s.count))?;
        }
        m.end()
    }
}

fn collection(features: Vec<Value>, extra: Map<String, Value>) -> Value {
    let mut doc = Map::new();
    doc.insert("type".into(), json!("FeatureCollection"));
    doc.insert("numberReturned".into(), json!(features.len()));
    doc.extend(extra);
    doc.insert("features".into(), Value::Array(features));
    Value::Object(doc)
}

/// An observation as a GeoJSON Feature; its id is the feature's, not a property.
pub fn observation_feature(o: &StoredObservation) -> Value {
    json!({
        "type": "Feature",
        "id": o.id,
        "geometry": o.place.to_geojson(),
        "properties": {
            "observed_at": o.observed_at, "recorded_at": o.recorded_at, "batch_id": o.batch_id,
            "sensor": o.sensor, "finding": o.finding, "confidence": o.confidence,
            "site_id": o.site_id, "description": o.description, "image_ref": o.image_ref,
            "source": o.source, "external_id": o.external_id, "candidate_id": o.candidate_id,
            "sites": o.sites,
        },
    })
}

/// A candidate as a GeoJSON Feature at the centre of its cluster.
pub fn candidate_feature(c: &Candidate) -> Value {
    json!({
        "type": "Feature",
        "id": c.id,
        "geometry": {"type": "Point", "coordinates": c.at.to_array()},
        "properties": {
            "id": c.id, "state": c.state, "created_at": c.created_at, "batch_id": c.batch_id,
            "declaration": "undeclared", "status": "unknown", "confidence": "low",
            "observation_ids": c.observation_ids, "observation_count": c.observation_ids.len(),
            "first_observed_at": c.first_observed_at, "last_observed_at": c.last_observed_at,
            "decided_at": c.decided_at, "site_id": c.site_id, "note": c.note,
        }
    })
}

/// Adds `last_observed_at` (null if never) and `observation_count` to each site
/// Feature in `doc` (a Feature or a FeatureCollection), looked up by its id.
pub fn add_observation_stats(doc: &mut Value, stats: &SiteStats) {
    let add = |f: &mut Value| {
        let s = f["id"].as_str().and_then(|id| stats.get(id)).copied();
        if let Some(props) = f["properties"].as_object_mut() {
            props.insert(
                "last_observed_at".into(),
                json!(s.map(|s| s.last_observed_at)),
            );
            props.insert("observation_count".into(), json!(s.map_or(0, |s| s.count)));
        }
    };
    // `get_mut`, not indexing: indexing a Feature by a missing key would add
    // `"features": null` to it.
    match doc.get_mut("features").and_then(Value::as_array_mut) {
        Some(features) => features.iter_mut().for_each(add),
        None => add(doc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parse_sites;

    #[test]
    fn observation_figures_on_a_single_feature_add_no_features_member() {
        let site = &crate::synth::sites(1, 2)[0];
        let mut f = site.to_feature();
        add_observation_stats(&mut f, &SiteStats::new());
        assert!(f.get("features").is_none(), "{f}");
        assert_eq!(f["properties"]["observation_count"], 0);
        assert!(f["properties"]["last_observed_at"].is_null());
    }
    use crate::index::{Filter, SiteIndex};
    use crate::model::{IdPolicy, LonLat, Timestamp};

    #[test]
    fn a_collection_written_as_it_goes_is_the_document_built_whole_one_feature_a_line() {
        let mut sites =
            parse_sites(include_str!("../data/sites.geojson"), IdPolicy::Required).unwrap();
        sites.extend(crate::synth::sites(30, 5));
        let sites: Vec<Arc<Site>> = sites.into_iter().map(Arc::new).collect();
        for some in [&sites[..0], &sites[..1], &sites[..]] {
            let mut text = Vec::new();
            write_sites_collection(&mut text, some.len(), some).unwrap();
            let doc: Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(doc, sites_collection(some, Map::new()));
            let lines = text.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(
                lines,
                some.len() + 2,
                "a line per site, the head and the tail"
            );
        }
    }

    #[test]
    fn hits_written_straight_to_json_equal_the_document_built_from_features() {
        let mut sites =
            parse_sites(include_str!("../data/sites.geojson"), IdPolicy::Required).unwrap();
        sites.extend(crate::synth::sites(50, 4));
        let index = SiteIndex::build(sites.into_iter().map(Arc::new));
        let hits = index.nearest(
            LonLat::parse("p", 125.75, 39.8).unwrap(),
            60,
            &Filter::default(),
        );
        let mut stats = SiteStats::new();
        stats.insert(
            hits[1].site.id.clone(),
            ObservationStats {
                last_observed_at: Timestamp::parse("t", "2024-02-03T04:05:06Z").unwrap(),
                count: 7,
            },
        );
        let mut extra = Map::new();
        extra.insert("query".into(), json!({"lon": 125.75, "limit": 60}));

        let features: Vec<Value> = hits
            .iter()
            .map(|h| {
                let d = (h.distance.get() * 100.0).round() / 100.0;
                h.site
                    .to_feature_with([("distance_m".to_string(), json!(d))])
            })
            .collect();
        let mut expected = collection(features, extra.clone());
        assert_eq!(hits_collection(&hits, extra.clone()), expected);

        add_observation_stats(&mut expected, &stats);
        let written: Value = serde_json::from_slice(&hits_json(&hits, &extra, &stats)).unwrap();
        assert_eq!(written, expected);
        // Key order too, as clients that print the document see it.
        assert_eq!(
            String::from_utf8(hits_json(&hits, &extra, &stats)).unwrap(),
            expected.to_string()
        );
    }
}
