//! A catalogue site and its parsing from, and rendering to, a GeoJSON Feature.

use super::footprint::kind_of;
use super::values::{TextKind, refuse_hidden_characters};
use super::{CountryCode, FieldError, Footprint, SiteId};
use serde::Serialize;
use serde_json::{Map, Value, json};

string_enum!(
    /// What a site is for.
    SiteKind {
        Reactor => "reactor",
        Enrichment => "enrichment",
        Reprocessing => "reprocessing",
        FuelFabrication => "fuel_fabrication",
        UraniumMiningMilling => "uranium_mining_milling",
        TestSite => "test_site",
        MissileBase => "missile_base",
        LaunchSite => "launch_site",
        Shipyard => "shipyard",
        Production => "production",
        Research => "research",
        Storage => "storage",
        Other => "other",
    }
);

string_enum!(
    /// Whether the state reported the site, admits it, or analysts found it.
    Declaration {
        Declared => "declared",
        Acknowledged => "acknowledged",
        Undeclared => "undeclared",
        Unknown => "unknown",
    }
);

string_enum!(
    /// The site's activity status.
    Status {
        Active => "active",
        Inactive => "inactive",
        UnderConstruction => "under_construction",
        Dismantled => "dismantled",
        Abandoned => "abandoned",
        Unknown => "unknown",
    }
);

string_enum!(
    /// How sure the catalogue is of a record.
    Confidence {
        Low => "low",
        Medium => "medium",
        High => "high",
    }
);

string_enum!(
    /// How sure the catalogue is of where a site is: whether its position was
    /// confirmed by two independent sources, rests on one, is only a town or a
    /// placeholder, or cites a source that could not be confirmed. `unknown` is
    /// what a site recorded without it reads as.
    PositionQuality {
        Verified => "verified",
        SingleSource => "single_source",
        Unverified => "unverified",
        Approximate => "approximate",
        Unknown => "unknown",
    }
);

/// A published source for a site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub title: String,
    pub url: Option<String>,
    /// `YYYY-MM-DD`, when the source gives one.
    pub date: Option<String>,
}

/// A catalogue site. Made only by [`Site::from_feature`], so every one is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub alt_names: Vec<String>,
    pub country: CountryCode,
    pub kind: SiteKind,
    pub declaration: Declaration,
    pub status: Status,
    pub confidence: Confidence,
    pub position_quality: PositionQuality,
    pub footprint: Footprint,
    pub sources: Vec<Source>,
    pub notes: Option<String>,
}

/// What to do with a feature that carries no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPolicy {
    /// Refuse it: imports of catalogue files must name every site.
    Required,
    /// Give it a fresh id: a new site created through the API.
    Generate,
}

const MAX_TEXT: usize = 10_000;

fn text(field: &str, v: &Value, max: usize, kind: TextKind) -> Result<String, FieldError> {
    let s = v.as_str().ok_or_else(|| {
        FieldError::new(field, format!("expected a string, found {}", kind_of(v)))
    })?;
    refuse_hidden_characters(field, s, kind)?;
    let s = s.trim();
    if s.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("longer than {max} characters"),
        ));
    }
    Ok(s.to_owned())
}

fn required_text(field: &str, v: Option<&Value>, max: usize) -> Result<String, FieldError> {
    match v {
        None | Some(Value::Null) => Err(FieldError::new(field, "missing")),
        Some(v) => {
            let s = text(field, v, max, TextKind::Label)?;
            if s.is_empty() {
                Err(FieldError::new(field, "must not be empty"))
            } else {
                Ok(s)
            }
        }
    }
}

fn optional_text(
    field: &str,
    v: Option<&Value>,
    max: usize,
    kind: TextKind,
) -> Result<Option<String>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(text(field, v, max, kind)?).filter(|s| !s.is_empty())),
    }
}

fn enum_or<T>(
    field: &str,
    v: Option<&Value>,
    default: T,
    parse: impl Fn(&str, &str) -> Result<T, FieldError>,
) -> Result<T, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => parse(field, s),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

fn parse_sources(field: &str, v: Option<&Value>) -> Result<Vec<Source>, FieldError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let arr = v.as_array().ok_or_else(|| {
        FieldError::new(field, format!("expected an array, found {}", kind_of(v)))
    })?;
    arr.iter()
        .enumerate()
        .map(|(i, s)| {
            let f = format!("{field}[{i}]");
            let obj = s.as_object().ok_or_else(|| {
                FieldError::new(&f, format!("expected an object, found {}", kind_of(s)))
            })?;
            let title = required_text(&format!("{f}.title"), obj.get("title"), 1000)?;
            let url = optional_text(&format!("{f}.url"), obj.get("url"), 2000, TextKind::Label)?;
            if let Some(u) = &url
                && !(u.starts_with("https://") || u.starts_with("http://"))
            {
                return Err(FieldError::new(
                    format!("{f}.url"),
                    "must be an http or https URL",
                ));
            }
            let date = optional_text(&format!("{f}.date"), obj.get("date"), 10, TextKind::Label)?;
            if let Some(d) = &date
                && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
            {
                return Err(FieldError::new(
                    format!("{f}.date"),
                    format!("{d:?} is not a YYYY-MM-DD date"),
                ));
            }
            Ok(Source { title, url, date })
        })
        .collect()
}

impl Site {
    /// Parses a GeoJSON Feature in the catalogue's site format. Every problem is
    /// reported with the path of the field that holds it.
    pub fn from_feature(v: &Value, ids: IdPolicy) -> Result<Self, FieldError> {
        let obj = v.as_object().ok_or_else(|| {
            FieldError::new(
                "feature",
                format!("expected an object, found {}", kind_of(v)),
            )
        })?;
        match obj.get("type").and_then(Value::as_str) {
            Some("Feature") => {}
            _ => return Err(FieldError::new("type", "expected \"Feature\"")),
        }
        let empty = Map::new();
        let props = match obj.get("properties") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(FieldError::new(
                    "properties",
                    format!("expected an object, found {}", kind_of(other)),
                ));
            }
        };
        let id = Self::parse_id(obj.get("id"), props.get("id"), ids)?;
        let name = required_text("properties.name", props.get("name"), 500)?;
        let alt_names = match props.get("alt_names") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    text(
                        &format!("properties.alt_names[{i}]"),
                        n,
                        500,
                        TextKind::Label,
                    )
                })
                .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(FieldError::new(
                    "properties.alt_names",
                    format!("expected an array of strings, found {}", kind_of(other)),
                ));
            }
        };
        let country = CountryCode::parse(
            "properties.country",
            &required_text("properties.country", props.get("country"), 3)?,
        )?;
        let kind = SiteKind::parse(
            "properties.kind",
            &required_text("properties.kind", props.get("kind"), 64)?,
        )?;
        let declaration = enum_or(
            "properties.declaration",
            props.get("declaration"),
            Declaration::Unknown,
            Declaration::parse,
        )?;
        let status = enum_or(
            "properties.status",
            props.get("status"),
            Status::Unknown,
            Status::parse,
        )?;
        let confidence = enum_or(
            "properties.confidence",
            props.get("confidence"),
            Confidence::Low,
            Confidence::parse,
        )?;
        let position_quality = enum_or(
            "properties.position_quality",
            props.get("position_quality"),
            PositionQuality::Unknown,
            PositionQuality::parse,
        )?;
        let footprint = match obj.get("geometry") {
            None | Some(Value::Null) => {
                return Err(FieldError::new(
                    "geometry",
                    "missing: a site needs a Polygon or MultiPolygon footprint",
                ));
            }
            Some(g) => Footprint::parse("geometry", g)?,
        };
        let sources = parse_sources("properties.sources", props.get("sources"))?;
        let notes = optional_text(
            "properties.notes",
            props.get("notes"),
            MAX_TEXT,
            TextKind::Prose,
        )?;
        Ok(Self {
            id,
            name,
            alt_names,
            country,
            kind,
            declaration,
            status,
            confidence,
            position_quality,
            footprint,
            sources,
            notes,
        })
    }

    fn parse_id(
        top: Option<&Value>,
        prop: Option<&Value>,
        ids: IdPolicy,
    ) -> Result<SiteId, FieldError> {
        let as_id = |field: &str, v: &Value| match v {
            Value::String(s) => SiteId::parse(field, s),
            other => Err(FieldError::new(
                field,
                format!("expected a string, found {}", kind_of(other)),
            )),
        };
        let top = top
            .filter(|v| !v.is_null())
            .map(|v| as_id("id", v))
            .transpose()?;
        let prop = prop
            .filter(|v| !v.is_null())
            .map(|v| as_id("properties.id", v))
            .transpose()?;
        match (top, prop) {
            (Some(a), Some(b)) if a != b => Err(FieldError::new(
                "properties.id",
                format!("{b} differs from the feature id {a}"),
            )),
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) if ids == IdPolicy::Generate => Ok(SiteId::generate()),
            (None, None) => Err(FieldError::new("id", "missing: every site needs an id")),
        }
    }

    /// The site's own properties, as they appear in a Feature.
    pub fn properties(&self) -> Map<String, Value> {
        match serde_json::to_value(PropertiesView(self)) {
            Ok(Value::Object(m)) => m,
            // Every field serialises to JSON, and the view is a map.
            _ => unreachable!("a site's properties are a JSON object"),
        }
    }

    /// `to_feature().to_string()`, written straight from the site without
    /// building the document first: the same text, byte for byte, in a
    /// fraction of the time (a catalogue import writes a million of them).
    pub fn feature_text(&self) -> String {
        let view = FeatureView {
            kind: "Feature",
            id: &self.id,
            geometry: self.footprint.geojson_view(),
            properties: PropertiesView(self),
        };
        // Every field serialises to JSON.
        serde_json::to_string(&view).expect("a site serialises to JSON")
    }

    /// The site as an RFC 7946 Feature, with `extra` properties appended.
    pub fn to_feature_with(&self, extra: impl IntoIterator<Item = (String, Value)>) -> Value {
        let mut props = self.properties();
        props.extend(extra);
        json!({"type": "Feature", "id": self.id, "geometry": self.footprint.to_geojson(), "properties": props})
    }

    pub fn to_feature(&self) -> Value {
        self.to_feature_with([])
    }

    /// A tag of the site's recorded content: equal for equal content, and
    /// different, short of a SHA-256 collision, once anything in the record
    /// changes. Clients send it back to say which version they edited (HTTP
    /// `ETag` / `If-Match`); taken from the content rather than the revision
    /// number, it is exactly the version a reader was served, whichever copy
    /// of the catalogue served it.
    pub fn tag(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.feature_text().as_bytes());
        hex::encode(&digest[..16])
    }

    /// Every name the site is known by, for search.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.alt_names.iter().map(String::as_str))
    }
}

/// A site's Feature as serde writes it: the members in the order
/// [`Site::to_feature`] gives them.
#[derive(Serialize)]
struct FeatureView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a SiteId,
    geometry: super::footprint::GeoJsonView<'a>,
    properties: PropertiesView<'a>,
}

/// A site's properties in the one order both [`Site::properties`] and
/// [`Site::feature_text`] write them in.
struct PropertiesView<'a>(&'a Site);

impl Serialize for PropertiesView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let site = self.0;
        let mut m = s.serialize_map(Some(11))?;
        m.serialize_entry("id", &site.id)?;
        m.serialize_entry("name", &site.name)?;
        m.serialize_entry("alt_names", &site.alt_names)?;
        m.serialize_entry("country", &site.country)?;
        m.serialize_entry("kind", &site.kind)?;
        m.serialize_entry("declaration", &site.declaration)?;
        m.serialize_entry("status", &site.status)?;
        m.serialize_entry("confidence", &site.confidence)?;
        m.serialize_entry("position_quality", &site.position_quality)?;
        m.serialize_entry("sources", &site.sources)?;
        m.serialize_entry("notes", &site.notes)?;
        m.end()
    }
}

/// One field that differs between two versions of a site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// The field-by-field difference from `old` to `new` (the footprint counts as the
/// field `geometry`); empty when nothing changed.
pub fn diff_sites(old: Option<&Site>, new: &Site) -> Vec<FieldChange> {
    let old_props = old.map(Site::properties).unwrap_or_default();
    let mut changes: Vec<FieldChange> = new
        .properties()
        .into_iter()
        .filter(|(k, v)| old_props.get(k) != Some(v))
        .map(|(k, v)| FieldChange {
            old: old_props.get(&k).cloned().unwrap_or(Value::Null),
            field: k,
            new: v,
        })
        .collect();
    if old.map(|o| &o.footprint) != Some(&new.footprint) {
        changes.push(FieldChange {
            field: "geometry".into(),
            old: old.map_or(Value::Null, |o| o.footprint.to_geojson()),
            new: new.footprint.to_geojson(),
        });
    }
    changes
}

/// The difference that created a site, read from the feature it was created
/// with: every property, then the footprint, each from nothing. It equals
/// `diff_sites(None, site)` for the site the feature was written from, so a
/// store need not keep it beside the feature.
pub fn creation_diff(feature: &Value) -> Vec<FieldChange> {
    let from_nothing = |field: &str, new: &Value| FieldChange {
        field: field.to_owned(),
        old: Value::Null,
        new: new.clone(),
    };
    let mut changes: Vec<FieldChange> = feature["properties"]
        .as_object()
        .map(|props| props.iter().map(|(k, v)| from_nothing(k, v)).collect())
        .unwrap_or_default();
    changes.push(from_nothing("geometry", &feature["geometry"]));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_read_from_a_created_feature_is_the_diff_of_creating_the_site() {
        let mut sites = crate::synth::sites(20, 8);
        sites.push(Site::from_feature(&feature(), IdPolicy::Required).unwrap());
        for site in &sites {
            assert_eq!(creation_diff(&site.to_feature()), diff_sites(None, site));
        }
    }

    #[test]
    fn the_feature_text_is_the_feature_written_out_byte_for_byte() {
        let mut sites = crate::synth::sites(2_000, 11);
        let seed: Value = serde_json::from_str(include_str!("../../data/sites.geojson")).unwrap();
        for f in seed["features"].as_array().unwrap() {
            sites.push(Site::from_feature(f, IdPolicy::Required).unwrap());
        }
        sites.push(Site::from_feature(&feature(), IdPolicy::Required).unwrap());
        let odd = with(
            &["geometry"],
            json!({"type": "MultiPolygon", "coordinates": [
                [[[125.0, 39.0], [125.1, 39.0], [125.1, 39.1], [125.0, 39.0]]],
                [[[126.0, 40.0], [126.5, 40.0], [126.5, 40.25], [126.0, 40.0]]]]}),
        );
        let mut odd = Site::from_feature(&odd, IdPolicy::Required).unwrap();
        odd.notes = None;
        odd.name = "\"Quoted\" \\ Kangsŏn – 강선".into();
        sites.push(odd);
        for site in &sites {
            assert_eq!(
                site.feature_text(),
                site.to_feature().to_string(),
                "{}",
                site.id
            );
        }
    }

    fn feature() -> Value {
        json!({
            "type": "Feature",
            "id": "yongbyon",
            "geometry": {"type": "Polygon", "coordinates": [[[125.72, 39.78], [125.78, 39.78], [125.78, 39.82], [125.72, 39.82], [125.72, 39.78]]]},
            "properties": {
                "name": "Yongbyon Nuclear Scientific Research Center",
                "alt_names": ["Nyongbyon"],
                "country": "PRK", "kind": "reactor", "declaration": "declared", "status": "active", "confidence": "high",
                "sources": [{"title": "Wikipedia", "url": "https://en.wikipedia.org/wiki/Yongbyon_Nuclear_Scientific_Research_Center", "date": null}],
                "notes": "approximate footprint"
            }
        })
    }

    fn with(path: &[&str], value: Value) -> Value {
        let mut f = feature();
        let mut cur = &mut f;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = value;
        f
    }

    fn err(v: Value) -> FieldError {
        Site::from_feature(&v, IdPolicy::Required).unwrap_err()
    }

    #[test]
    fn a_site_round_trips_through_its_feature() {
        let s = Site::from_feature(&feature(), IdPolicy::Required).unwrap();
        let again = Site::from_feature(&s.to_feature(), IdPolicy::Required).unwrap();
        assert_eq!(s, again);
        assert_eq!(s.to_feature()["properties"]["kind"], "reactor");
    }

    #[test]
    fn a_site_without_a_position_quality_reads_as_unknown_and_a_wrong_one_is_refused() {
        let s = Site::from_feature(&feature(), IdPolicy::Required).unwrap();
        assert_eq!(s.position_quality, PositionQuality::Unknown);
        let v = Site::from_feature(
            &with(&["properties", "position_quality"], json!("single_source")),
            IdPolicy::Required,
        )
        .unwrap();
        assert_eq!(v.position_quality, PositionQuality::SingleSource);
        assert_eq!(
            v.to_feature()["properties"]["position_quality"],
            "single_source"
        );
        let e = err(with(&["properties", "position_quality"], json!("exact")));
        assert_eq!(e.field, "properties.position_quality");
        assert!(e.reason.contains("verified"), "{}", e.reason);
    }

    #[test]
    fn an_unknown_kind_is_refused_naming_the_field_and_the_choices() {
        let e = err(with(&["properties", "kind"], json!("volcano")));
        assert_eq!(e.field, "properties.kind");
        assert!(e.reason.contains("missile_base"));
    }

    #[test]
    fn unknown_declaration_status_and_confidence_values_are_refused() {
        assert_eq!(
            err(with(&["properties", "declaration"], json!("secret"))).field,
            "properties.declaration"
        );
        assert_eq!(
            err(with(&["properties", "status"], json!("busy"))).field,
            "properties.status"
        );
        assert_eq!(
            err(with(&["properties", "confidence"], json!(3))).field,
            "properties.confidence"
        );
    }

    #[test]
    fn a_missing_id_is_refused_unless_one_may_be_generated() {
        let mut f = feature();
        f.as_object_mut().unwrap().remove("id");
        assert_eq!(err(f.clone()).field, "id");
        let s = Site::from_feature(&f, IdPolicy::Generate).unwrap();
        assert!(s.id.as_str().starts_with("site-"));
    }

    #[test]
    fn a_missing_or_blank_name_is_refused() {
        assert_eq!(
            err(with(&["properties", "name"], Value::Null)).field,
            "properties.name"
        );
        assert_eq!(
            err(with(&["properties", "name"], json!("  "))).reason,
            "must not be empty"
        );
    }

    #[test]
    fn nul_and_bidirectional_controls_in_names_are_refused_naming_the_field() {
        let e = err(with(&["properties", "name"], json!("Yongbyon\u{202E}nori")));
        assert_eq!(e.field, "properties.name");
        assert!(
            e.reason.contains("U+202E RIGHT-TO-LEFT OVERRIDE"),
            "{}",
            e.reason
        );
        assert_eq!(
            err(with(&["properties", "name"], json!("Yong\0byon"))).field,
            "properties.name"
        );
        assert_eq!(
            err(with(
                &["properties", "alt_names"],
                json!(["Nyongbyon", "\u{2066}Yongbyon\u{2069}"])
            ))
            .field,
            "properties.alt_names[1]"
        );
        assert_eq!(
            err(with(
                &["properties", "sources"],
                json!([{"title": "\u{200F}Wikipedia"}])
            ))
            .field,
            "properties.sources[0].title"
        );
        // Prose keeps the marks right-to-left writing needs, but never NUL.
        let notes = "\u{200F}\u{0645}\u{0641}\u{0627}\u{0639}\u{0644}\u{200F} nearby";
        let site = Site::from_feature(
            &with(&["properties", "notes"], json!(notes)),
            IdPolicy::Required,
        )
        .unwrap();
        assert_eq!(site.notes.as_deref(), Some(notes));
        assert_eq!(
            err(with(&["properties", "notes"], json!("a\0b"))).field,
            "properties.notes"
        );
    }

    #[test]
    fn conflicting_ids_are_refused() {
        assert_eq!(
            err(with(&["properties", "id"], json!("other"))).field,
            "properties.id"
        );
    }

    #[test]
    fn a_source_url_must_be_http_and_a_date_must_be_a_date() {
        assert_eq!(
            err(with(
                &["properties", "sources"],
                json!([{"title": "x", "url": "javascript:alert(1)"}])
            ))
            .field,
            "properties.sources[0].url"
        );
        assert_eq!(
            err(with(
                &["properties", "sources"],
                json!([{"title": "x", "date": "May 2018"}])
            ))
            .field,
            "properties.sources[0].date"
        );
    }

    #[test]
    fn geometry_errors_carry_the_coordinate_path() {
        let e = err(with(
            &["geometry", "coordinates"],
            json!([[
                [125.72, 39.78],
                [125.78, 39.78],
                [125.78, 39.82],
                [125.72, 39.83]
            ]]),
        ));
        assert_eq!(e.field, "geometry.coordinates[0]");
    }

    #[test]
    fn a_diff_lists_exactly_the_fields_that_changed() {
        let a = Site::from_feature(&feature(), IdPolicy::Required).unwrap();
        let b = Site::from_feature(
            &with(&["properties", "status"], json!("inactive")),
            IdPolicy::Required,
        )
        .unwrap();
        assert!(diff_sites(Some(&a), &a).is_empty());
        let d = diff_sites(Some(&a), &b);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].field.as_str(), &d[0].old, &d[0].new),
            ("status", &json!("active"), &json!("inactive"))
        );
        let created = diff_sites(None, &a);
        assert!(
            created
                .iter()
                .any(|c| c.field == "geometry" && c.old.is_null())
        );
    }
}
