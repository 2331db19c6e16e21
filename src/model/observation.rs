//! An observation: what an image showed, when, by which sensor, and where.

use super::footprint::{kind_of, parse_position};
use super::site::Confidence;
use super::values::{TextKind, refuse_hidden_characters};
use super::{FieldError, Footprint, LonLat, SiteId, Timestamp};
use crate::geodesy::{self, SphericalShape};
use serde_json::{Map, Value, json};

string_enum!(
    /// What was seen.
    Finding {
        NewConstruction => "new_construction",
        Demolition => "demolition",
        Excavation => "excavation",
        VehicleActivity => "vehicle_activity",
        ThermalSignature => "thermal_signature",
        Concealment => "concealment",
        TunnelActivity => "tunnel_activity",
        LaunchPreparation => "launch_preparation",
        NoChange => "no_change",
        Other => "other",
    }
);

/// Where the activity was seen: a point, or an area like a site footprint.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    Point(LonLat),
    Area(Footprint),
}

impl Place {
    pub fn parse(field: &str, v: &Value) -> Result<Self, FieldError> {
        let obj = v.as_object().ok_or_else(|| {
            FieldError::new(
                field,
                format!("expected a GeoJSON geometry object, found {}", kind_of(v)),
            )
        })?;
        match obj.get("type").and_then(Value::as_str) {
            Some("Point") => {
                let c = obj
                    .get("coordinates")
                    .ok_or_else(|| FieldError::new(format!("{field}.coordinates"), "missing"))?;
                let [lon, lat] = parse_position(&format!("{field}.coordinates"), c)?;
                Ok(Place::Point(LonLat::parse(field, lon, lat)?))
            }
            Some("Polygon" | "MultiPolygon") => Ok(Place::Area(Footprint::parse(field, v)?)),
            other => Err(FieldError::new(
                format!("{field}.type"),
                format!(
                    "an observation's geometry must be a Point, Polygon or MultiPolygon, found {other:?}"
                ),
            )),
        }
    }

    pub fn to_geojson(&self) -> Value {
        match self {
            Place::Point(p) => json!({"type": "Point", "coordinates": p.to_array()}),
            Place::Area(f) => f.to_geojson(),
        }
    }

    /// One position that stands for the place: the point, or the area's centre.
    pub fn anchor(&self) -> LonLat {
        match self {
            Place::Point(p) => *p,
            Place::Area(f) => {
                let [lon, lat] = geodesy::to_lonlat(f.shape().centre());
                LonLat::from_computed(lon, lat)
            }
        }
    }

    /// The lon/lat box `[west, south, east, north]` around the place, for area
    /// queries in SQL. An area across the antimeridian gets the whole longitude range.
    pub fn lonlat_bounds(&self) -> [f64; 4] {
        match self {
            Place::Point(p) => [p.lon(), p.lat(), p.lon(), p.lat()],
            Place::Area(f) => {
                let mut b = [
                    f64::INFINITY,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::NEG_INFINITY,
                ];
                for &[lon, lat] in f.parts().iter().flatten().flatten() {
                    b = [b[0].min(lon), b[1].min(lat), b[2].max(lon), b[3].max(lat)];
                }
                if b[2] - b[0] > 180.0 {
                    b[0] = -180.0;
                    b[2] = 180.0;
                }
                b
            }
        }
    }

    /// The area's shape on the sphere, if it is an area.
    pub fn shape(&self) -> Option<&SphericalShape> {
        match self {
            Place::Point(_) => None,
            Place::Area(f) => Some(f.shape()),
        }
    }
}

/// One reported observation, valid by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub observed_at: Timestamp,
    pub sensor: String,
    pub finding: Finding,
    pub confidence: Confidence,
    pub place: Place,
    pub site_id: Option<SiteId>,
    pub description: Option<String>,
    pub image_ref: Option<String>,
    pub source: Option<String>,
    pub external_id: Option<String>,
}

/// The earliest time an observation may have, 1957-10-04T00:00:00Z (the day
/// the first satellite was launched), in microseconds since 1970: no satellite
/// image is older, so an earlier time is a mistake, and it would stretch every
/// timeline over millennia.
const FIRST_SATELLITE_MICROS: i64 = -386_380_800_000_000;

/// How far past the clock an observation's time may be: a day absorbs clocks
/// that disagree and dates written in a local time zone, not images from the
/// future.
const AHEAD_OF_THE_CLOCK_MICROS: i64 = 86_400_000_000;

/// When the image was taken: an RFC 3339 time between the first satellite and
/// one day after now.
fn observed_at(raw: &str) -> Result<Timestamp, FieldError> {
    const FIELD: &str = "properties.observed_at";
    let t = Timestamp::parse(FIELD, raw)?;
    if t.epoch_micros() < FIRST_SATELLITE_MICROS {
        return Err(FieldError::new(
            FIELD,
            format!("{raw:?} is before 1957-10-04, when the first satellite was launched"),
        ));
    }
    if t.epoch_micros() > Timestamp::now().epoch_micros() + AHEAD_OF_THE_CLOCK_MICROS {
        return Err(FieldError::new(
            FIELD,
            format!("{raw:?} is more than a day in the future"),
        ));
    }
    Ok(t)
}

/// Short text fields are labels; `description` is prose.
fn opt_text(
    props: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let field = format!("properties.{name}");
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(FieldError::new(
            field,
            format!("longer than {max} characters"),
        )),
        Some(Value::String(s)) => {
            let kind = if name == "description" {
                TextKind::Prose
            } else {
                TextKind::Label
            };
            refuse_hidden_characters(&field, s, kind)?;
            Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
        }
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

fn req_text(props: &Map<String, Value>, name: &str, max: usize) -> Result<String, FieldError> {
    opt_text(props, name, max)?
        .ok_or_else(|| FieldError::new(format!("properties.{name}"), "missing"))
}

impl Observation {
    /// Parses one feature of an observation batch.
    pub fn from_feature(v: &Value) -> Result<Self, FieldError> {
        let obj = v.as_object().ok_or_else(|| {
            FieldError::new(
                "feature",
                format!("expected an object, found {}", kind_of(v)),
            )
        })?;
        if obj.get("type").and_then(Value::as_str) != Some("Feature") {
            return Err(FieldError::new("type", "expected \"Feature\""));
        }
        let props = match obj.get("properties") {
            Some(Value::Object(m)) => m,
            Some(other) if !other.is_null() => {
                return Err(FieldError::new(
                    "properties",
                    format!("expected an object, found {}", kind_of(other)),
                ));
            }
            _ => return Err(FieldError::new("properties.observed_at", "missing")),
        };
        let observed_at = observed_at(&req_text(props, "observed_at", 64)?)?;
        let sensor = req_text(props, "sensor", 200)?;
        let finding = Finding::parse("properties.finding", &req_text(props, "finding", 64)?)?;
        let confidence = match opt_text(props, "confidence", 16)? {
            None => Confidence::Medium,
            Some(c) => Confidence::parse("properties.confidence", &c)?,
        };
        let place = match obj.get("geometry") {
            None | Some(Value::Null) => {
                return Err(FieldError::new("geometry", "missing: where was it seen?"));
            }
            Some(g) => Place::parse("geometry", g)?,
        };
        let site_id = opt_text(props, "site_id", 64)?
            .map(|s| SiteId::parse("properties.site_id", &s))
            .transpose()?;
        Ok(Self {
            observed_at,
            sensor,
            finding,
            confidence,
            place,
            site_id,
            description: opt_text(props, "description", 10_000)?,
            image_ref: opt_text(props, "image_ref", 2_000)?,
            source: opt_text(props, "source", 500)?,
            external_id: opt_text(props, "external_id", 500)?,
        })
    }

    /// The observation's own properties, as they appear in a Feature.
    pub fn properties(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("observed_at".into(), json!(self.observed_at));
        m.insert("sensor".into(), json!(self.sensor));
        m.insert("finding".into(), json!(self.finding));
        m.insert("confidence".into(), json!(self.confidence));
        m.insert("site_id".into(), json!(self.site_id));
        m.insert("description".into(), json!(self.description));
        m.insert("image_ref".into(), json!(self.image_ref));
        m.insert("source".into(), json!(self.source));
        m.insert("external_id".into(), json!(self.external_id));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature() -> Value {
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [129.0862, 41.28]},
            "properties": {"observed_at": "2018-05-24T02:00:00Z", "sensor": "WorldView-3", "finding": "demolition",
                "source": "38 North", "external_id": "pg-2018-05-24"}})
    }

    #[test]
    fn a_valid_observation_gets_medium_confidence_by_default() {
        let o = Observation::from_feature(&feature()).unwrap();
        assert_eq!(o.confidence, Confidence::Medium);
        assert_eq!(o.finding, Finding::Demolition);
        assert_eq!(o.place.anchor().lon(), 129.0862);
    }

    #[test]
    fn missing_required_properties_are_named() {
        for name in ["observed_at", "sensor", "finding"] {
            let mut f = feature();
            f["properties"].as_object_mut().unwrap().remove(name);
            assert_eq!(
                Observation::from_feature(&f).unwrap_err().field,
                format!("properties.{name}")
            );
        }
    }

    #[test]
    fn an_unknown_finding_or_bad_time_is_refused() {
        let mut f = feature();
        f["properties"]["finding"] = json!("aliens");
        assert_eq!(
            Observation::from_feature(&f).unwrap_err().field,
            "properties.finding"
        );
        let mut f = feature();
        f["properties"]["observed_at"] = json!("last tuesday");
        assert_eq!(
            Observation::from_feature(&f).unwrap_err().field,
            "properties.observed_at"
        );
    }

    #[test]
    fn a_time_before_the_first_satellite_or_over_a_day_ahead_is_refused() {
        assert_eq!(
            Timestamp::parse("t", "1957-10-04T00:00:00Z")
                .unwrap()
                .epoch_micros(),
            FIRST_SATELLITE_MICROS
        );
        let micros_from_now = |us: i64| {
            Timestamp::from_epoch_micros(Timestamp::now().epoch_micros() + us).to_rfc3339()
        };
        let hour = 3_600_000_000;
        for (at, refused) in [
            ("0001-01-01T00:00:00Z".to_owned(), true),
            ("1957-10-03T23:59:59Z".to_owned(), true),
            ("1957-10-04T00:00:00Z".to_owned(), false),
            ("1960-08-18T00:00:00Z".to_owned(), false),
            (micros_from_now(23 * hour), false),
            (micros_from_now(25 * hour), true),
            ("9999-12-31T23:59:59Z".to_owned(), true),
        ] {
            let mut f = feature();
            f["properties"]["observed_at"] = json!(at);
            match Observation::from_feature(&f) {
                Err(e) if refused => {
                    assert_eq!(e.field, "properties.observed_at", "{at}");
                    assert!(e.reason.contains(&format!("{at:?}")), "{}", e.reason);
                }
                Ok(_) if !refused => {}
                other => panic!("{at}: {other:?}"),
            }
        }
    }

    #[test]
    fn nul_and_bidirectional_controls_in_short_fields_are_refused_naming_the_field() {
        for name in ["sensor", "source", "external_id", "image_ref"] {
            let mut f = feature();
            f["properties"][name] = json!("WorldView\u{202E}3");
            assert_eq!(
                Observation::from_feature(&f).unwrap_err().field,
                format!("properties.{name}")
            );
        }
        let mut f = feature();
        f["properties"]["description"] = json!("\u{200F}\u{0628}\u{0646}\u{0627}\u{0621}\u{200F}");
        assert!(Observation::from_feature(&f).is_ok());
        f["properties"]["description"] = json!("cut\0here");
        assert_eq!(
            Observation::from_feature(&f).unwrap_err().field,
            "properties.description"
        );
    }

    #[test]
    fn a_linestring_is_not_an_observation_place() {
        let mut f = feature();
        f["geometry"] = json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]});
        assert_eq!(
            Observation::from_feature(&f).unwrap_err().field,
            "geometry.type"
        );
    }

    #[test]
    fn an_area_across_the_antimeridian_gets_full_longitude_bounds() {
        let mut f = feature();
        f["geometry"] = json!({"type": "Polygon", "coordinates": [[[179.9, 0.0], [-179.9, 0.0], [-179.9, 0.1], [179.9, 0.0]]]});
        let o = Observation::from_feature(&f).unwrap();
        assert_eq!(o.place.lonlat_bounds()[0], -180.0);
        assert!(o.place.anchor().lon().abs() > 179.0);
    }
}
