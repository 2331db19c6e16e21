//! GeoJSON documents for answers (RFC 7946), shared by the HTTP API and the CLI.

use crate::index::Hit;
use crate::model::Site;
use crate::model::SiteId;
use crate::store::{Candidate, ObservationStats};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// A FeatureCollection of sites, with any top-level members in `extra`.
pub fn sites_collection<'a>(
    sites: impl IntoIterator<Item = &'a Arc<Site>>,
    extra: Map<String, Value>,
) -> Value {
    let features: Vec<Value> = sites.into_iter().map(|s| s.to_feature()).collect();
    collection(features, extra)
}

/// A FeatureCollection of proximity hits, each with `properties.distance_m`.
pub fn hits_collection(hits: &[Hit], extra: Map<String, Value>) -> Value {
    let features = hits
        .iter()
        .map(|h| {
            // Centimetres are beyond any footprint's accuracy.
            let d = (h.distance.get() * 100.0).round() / 100.0;
            h.site
                .to_feature_with([("distance_m".to_string(), json!(d))])
        })
        .collect();
    collection(features, extra)
}

fn collection(features: Vec<Value>, extra: Map<String, Value>) -> Value {
    let mut doc = Map::new();
    doc.insert("type".into(), json!("FeatureCollection"));
    doc.insert("numberReturned".into(), json!(features.len()));
    doc.extend(extra);
    doc.insert("features".into(), Value::Array(features));
    Value::Object(doc)
}

/// A candidate as a GeoJSON Feature at the centre of its cluster.
pub fn candidate_feature(c: &Candidate) -> Value {
    json!({
        "type": "Feature",
        "id": c.id,
        "geometry": {"type": "Point", "coordinates": [c.lon, c.lat]},
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
pub fn add_observation_stats(doc: &mut Value, stats: &HashMap<SiteId, ObservationStats>) {
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
    match doc["features"].as_array_mut() {
        Some(features) => features.iter_mut().for_each(add),
        None => add(doc),
    }
}
