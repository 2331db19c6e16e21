//! Each collection's properties, declared once: name, type, description,
//! whether a filter or `sortby` may name it, where it appears in a feature and
//! how to read it from a record. The queryables, the sortables, the JSON Schema
//! of the feature properties and the CSV columns are all derived from these
//! tables, so they cannot drift apart.

use super::cql::Scalar;
use super::records::{CandidateRecord, ObservationRecord, SiteRecord};
use crate::model::{
    CandidateState, Confidence, Declaration, Finding, PositionQuality, SiteId, SiteKind, Status,
    Timestamp,
};
use serde_json::{Map, Value, json};

/// The type of a property. The scalar kinds decide how literals compared with
/// the property in a filter are read; the list kinds are only ever shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Number,
    Boolean,
    Timestamp,
    Geometry,
    /// A list of strings.
    Strings,
    /// A list of objects described by the named schema of the API document.
    Objects(&'static str),
}

/// Where a property appears in a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// In `properties` of every feature (a geometry: as the feature's geometry).
    Always,
    /// In `properties` only when the request asks for it.
    WhenAsked,
    /// Only as the feature's own `id`, not among its properties.
    AsFeatureId,
}

/// How a property's value is read from the record of its collection.
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    Site(fn(&SiteRecord) -> Scalar),
    Observation(fn(&ObservationRecord) -> Scalar),
    Candidate(fn(&CandidateRecord) -> Scalar),
    /// Not a scalar (a list or the geometry): never compared or sorted.
    Unread,
}

/// One property of a collection's features.
#[derive(Debug, Clone, Copy)]
pub struct Property {
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
    /// The closed set of values of an enumerated string, from the model's own
    /// list where it has one.
    pub values: Option<fn() -> Vec<&'static str>>,
    /// Whether the value may be null.
    pub nullable: bool,
    pub shown: Shown,
    /// Whether a CQL2 filter may name it.
    pub queryable: bool,
    /// Whether `sortby` may name it.
    pub sortable: bool,
    pub read: Reader,
}

impl Property {
    /// A property shown in every feature, never null, that filters and (unless
    /// it is the geometry) `sortby` may name.
    pub const fn new(name: &'static str, kind: Kind, description: &'static str) -> Self {
        Self {
            name,
            kind,
            description,
            values: None,
            nullable: false,
            shown: Shown::Always,
            queryable: true,
            sortable: !matches!(kind, Kind::Geometry),
            read: Reader::Unread,
        }
    }

    const fn values(mut self, values: fn() -> Vec<&'static str>) -> Self {
        self.values = Some(values);
        self
    }

    const fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }

    const fn shown(mut self, shown: Shown) -> Self {
        self.shown = shown;
        self
    }

    const fn not_queryable(mut self) -> Self {
        self.queryable = false;
        self.sortable = false;
        self
    }

    const fn site(mut self, read: fn(&SiteRecord) -> Scalar) -> Self {
        self.read = Reader::Site(read);
        self
    }

    const fn observation(mut self, read: fn(&ObservationRecord) -> Scalar) -> Self {
        self.read = Reader::Observation(read);
        self
    }

    const fn candidate(mut self, read: fn(&CandidateRecord) -> Scalar) -> Self {
        self.read = Reader::Candidate(read);
        self
    }

    /// Whether the property is a member of a feature's `properties`.
    pub fn in_properties(&self) -> bool {
        self.kind != Kind::Geometry && self.shown != Shown::AsFeatureId
    }

    /// The property's JSON Schema; a geometry is described by `geometry_format`.
    pub fn json_schema(&self, geometry_format: &str) -> Value {
        let mut s = match self.kind {
            Kind::String => json!({"type": "string"}),
            Kind::Integer => json!({"type": "integer"}),
            Kind::Number => json!({"type": "number"}),
            Kind::Boolean => json!({"type": "boolean"}),
            Kind::Timestamp => json!({"type": "string", "format": "date-time"}),
            Kind::Geometry => json!({"format": geometry_format}),
            Kind::Strings => json!({"type": "array", "items": {"type": "string"}}),
            Kind::Objects(schema) => json!({
                "type": "array",
                "items": {"$ref": format!("#/components/schemas/{schema}")},
            }),
        };
        s["title"] = json!(self.name);
        s["description"] = json!(self.description);
        if let Some(values) = self.values {
            s["enum"] = json!(values());
        }
        s
    }
}

fn text(s: &str) -> Scalar {
    Scalar::Str(s.to_owned())
}

fn maybe_text(s: &Option<String>) -> Scalar {
    s.as_deref().map_or(Scalar::Null, text)
}

fn maybe_id(id: &Option<SiteId>) -> Scalar {
    id.as_ref().map_or(Scalar::Null, |id| text(id.as_str()))
}

fn maybe_time(t: Option<Timestamp>) -> Scalar {
    t.map_or(Scalar::Null, Scalar::Time)
}

fn site_kinds() -> Vec<&'static str> {
    SiteKind::ALL.iter().map(|v| v.as_str()).collect()
}

fn declarations() -> Vec<&'static str> {
    Declaration::ALL.iter().map(|v| v.as_str()).collect()
}

fn statuses() -> Vec<&'static str> {
    Status::ALL.iter().map(|v| v.as_str()).collect()
}

fn confidences() -> Vec<&'static str> {
    Confidence::ALL.iter().map(|v| v.as_str()).collect()
}

fn position_qualities() -> Vec<&'static str> {
    PositionQuality::ALL.iter().map(|v| v.as_str()).collect()
}

fn findings() -> Vec<&'static str> {
    Finding::ALL.iter().map(|v| v.as_str()).collect()
}

const SITES: &[Property] = &[
    Property::new("id", Kind::String, "the site's stable id").site(|r| text(r.site.id.as_str())),
    Property::new("name", Kind::String, "the site's name").site(|r| text(&r.site.name)),
    Property::new(
        "alt_names",
        Kind::Strings,
        "other names the site is known by",
    )
    .not_queryable(),
    Property::new("country", Kind::String, "ISO 3166-1 alpha-3 country code")
        .site(|r| text(r.site.country.as_str())),
    Property::new("kind", Kind::String, "what the site is for")
        .values(site_kinds)
        .site(|r| text(r.site.kind.as_str())),
    Property::new(
        "declaration",
        Kind::String,
        "whether the state declared the site",
    )
    .values(declarations)
    .site(|r| text(r.site.declaration.as_str())),
    Property::new("status", Kind::String, "the site's activity status")
        .values(statuses)
        .site(|r| text(r.site.status.as_str())),
    Property::new("confidence", Kind::String, "how sure the catalogue is")
        .values(confidences)
        .site(|r| text(r.site.confidence.as_str())),
    Property::new(
        "position_quality",
        Kind::String,
        "how sure the catalogue is of where the site is: verified (two independent sources agree within 2 km), single_source, unverified (its source could not be confirmed), approximate (a town or a placeholder), unknown (not assessed)",
    )
    .values(position_qualities)
    .site(|r| text(r.site.position_quality.as_str())),
    Property::new(
        "sources",
        Kind::Objects("Source"),
        "published sources for the site",
    )
    .not_queryable(),
    Property::new("notes", Kind::String, "free-text notes")
        .nullable()
        .site(|r| maybe_text(&r.site.notes)),
    Property::new(
        "last_observed_at",
        Kind::Timestamp,
        "when the site was last observed (the time `datetime` filters on)",
    )
    .nullable()
    .site(|r| maybe_time(r.stats.map(|s| s.last_observed_at))),
    Property::new(
        "observation_count",
        Kind::Integer,
        "how many observations are linked to the site",
    )
    .site(|r| Scalar::Num(r.stats.map_or(0, |s| s.count) as f64)),
    Property::new(
        "retired",
        Kind::Boolean,
        "whether the site is retired (with include_retired=true)",
    )
    .shown(Shown::WhenAsked)
    .site(|r| Scalar::Bool(r.retired)),
    Property::new(
        "distance_m",
        Kind::Number,
        "geodesic metres from the query point (`/api/nearby` only)",
    )
    .shown(Shown::WhenAsked)
    .not_queryable(),
    Property::new(
        "geometry",
        Kind::Geometry,
        "the footprint, a Polygon or MultiPolygon",
    ),
];

const OBSERVATIONS: &[Property] = &[
    Property::new("id", Kind::String, "the observation's id")
        .shown(Shown::AsFeatureId)
        .observation(|r| text(&r.o.id)),
    Property::new(
        "observed_at",
        Kind::Timestamp,
        "when the image was taken (the time `datetime` filters on)",
    )
    .observation(|r| Scalar::Time(r.o.observed_at)),
    Property::new(
        "recorded_at",
        Kind::Timestamp,
        "when the observation was imported",
    )
    .observation(|r| Scalar::Time(r.o.recorded_at)),
    Property::new("batch_id", Kind::String, "the import batch")
        .observation(|r| text(&r.o.batch_id)),
    Property::new("sensor", Kind::String, "the sensor or platform")
        .observation(|r| text(&r.o.sensor)),
    Property::new("finding", Kind::String, "what was seen")
        .values(findings)
        .observation(|r| text(r.o.finding.as_str())),
    Property::new("confidence", Kind::String, "how sure the analyst is")
        .values(confidences)
        .observation(|r| text(r.o.confidence.as_str())),
    Property::new("site_id", Kind::String, "the site the observation named")
        .nullable()
        .observation(|r| maybe_id(&r.o.site_id)),
    Property::new("description", Kind::String, "free text")
        .nullable()
        .observation(|r| maybe_text(&r.o.description)),
    Property::new("image_ref", Kind::String, "a reference to the image")
        .nullable()
        .observation(|r| maybe_text(&r.o.image_ref)),
    Property::new("source", Kind::String, "who reported it")
        .nullable()
        .observation(|r| maybe_text(&r.o.source)),
    Property::new("external_id", Kind::String, "the sender's own id")
        .nullable()
        .observation(|r| maybe_text(&r.o.external_id)),
    Property::new(
        "candidate_id",
        Kind::String,
        "the candidate site it belongs to",
    )
    .nullable()
    .observation(|r| maybe_text(&r.o.candidate_id)),
    Property::new(
        "sites",
        Kind::Objects("SiteLink"),
        "the sites it was linked to, and how",
    )
    .not_queryable(),
    Property::new(
        "geometry",
        Kind::Geometry,
        "where: a Point, Polygon or MultiPolygon",
    ),
];

const CANDIDATES: &[Property] = &[
    Property::new("id", Kind::String, "the candidate's id").candidate(|r| text(&r.c.id)),
    Property::new("state", Kind::String, "open, promoted or dismissed")
        .values(|| CandidateState::ALL.iter().map(|v| v.as_str()).collect())
        .candidate(|r| text(r.c.state.as_str())),
    Property::new(
        "created_at",
        Kind::Timestamp,
        "when the cluster became a candidate (the time `datetime` filters on)",
    )
    .candidate(|r| Scalar::Time(r.c.created_at)),
    Property::new("batch_id", Kind::String, "the batch that created it")
        .candidate(|r| text(&r.c.batch_id)),
    Property::new(
        "declaration",
        Kind::String,
        "always undeclared: nobody declared a candidate",
    )
    .not_queryable(),
    Property::new("status", Kind::String, "always unknown").not_queryable(),
    Property::new("confidence", Kind::String, "always low").not_queryable(),
    Property::new(
        "observation_ids",
        Kind::Strings,
        "the observations it holds",
    )
    .not_queryable(),
    Property::new(
        "observation_count",
        Kind::Integer,
        "how many observations it holds",
    )
    .candidate(|r| Scalar::Num(r.c.observation_ids.len() as f64)),
    Property::new(
        "first_observed_at",
        Kind::Timestamp,
        "its earliest observation",
    )
    .nullable()
    .candidate(|r| maybe_time(r.c.first_observed_at)),
    Property::new(
        "last_observed_at",
        Kind::Timestamp,
        "its latest observation",
    )
    .nullable()
    .candidate(|r| maybe_time(r.c.last_observed_at)),
    Property::new(
        "decided_at",
        Kind::Timestamp,
        "when it was promoted or dismissed",
    )
    .nullable()
    .candidate(|r| maybe_time(r.c.decided_at)),
    Property::new("site_id", Kind::String, "the site it was promoted to")
        .nullable()
        .candidate(|r| maybe_id(&r.c.site_id)),
    Property::new("note", Kind::String, "the analyst's note")
        .nullable()
        .candidate(|r| maybe_text(&r.c.note)),
    Property::new(
        "geometry",
        Kind::Geometry,
        "the centre of the cluster, a Point",
    ),
];

/// The three feature collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionId {
    Sites,
    Observations,
    Candidates,
}

impl CollectionId {
    pub const ALL: [CollectionId; 3] = [Self::Sites, Self::Observations, Self::Candidates];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.id() == raw)
    }

    pub fn id(self) -> &'static str {
        match self {
            Self::Sites => "sites",
            Self::Observations => "observations",
            Self::Candidates => "candidates",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Sites => "Nuclear and missile sites",
            Self::Observations => "Observations",
            Self::Candidates => "Candidate undeclared sites",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Sites => {
                "Declared and undeclared nuclear and missile sites with their footprints. `datetime` filters on last_observed_at; writes (POST, PUT, DELETE) need authority."
            }
            Self::Observations => {
                "What satellite images showed, when and where. `datetime` filters on observed_at."
            }
            Self::Candidates => {
                "Clusters of unmatched observations that may be undeclared sites. `datetime` filters on created_at."
            }
        }
    }

    /// Every property of the collection's features, in the order features
    /// show them.
    pub fn properties(self) -> &'static [Property] {
        match self {
            Self::Sites => SITES,
            Self::Observations => OBSERVATIONS,
            Self::Candidates => CANDIDATES,
        }
    }

    /// The property named `name`, if the collection has one.
    pub fn property(self, name: &str) -> Option<&'static Property> {
        self.properties().iter().find(|p| p.name == name)
    }

    /// The properties a CQL2 filter may name.
    pub fn queryables(self) -> impl Iterator<Item = &'static Property> {
        self.properties().iter().filter(|p| p.queryable)
    }

    /// The properties `sortby` may name.
    pub fn sortables(self) -> impl Iterator<Item = &'static Property> {
        self.properties().iter().filter(|p| p.sortable)
    }

    /// The property `datetime` is matched against.
    pub fn time_property(self) -> &'static str {
        match self {
            Self::Sites => "last_observed_at",
            Self::Observations => "observed_at",
            Self::Candidates => "created_at",
        }
    }

    /// How the queryables document describes the collection's geometry.
    pub fn geometry_format(self) -> &'static str {
        match self {
            Self::Sites => "geometry-polygon-or-multipolygon",
            Self::Observations => "geometry-any",
            Self::Candidates => "geometry-point",
        }
    }

    /// Columns of the CSV form after `id`, before any the features add: the
    /// properties every feature shows, in order.
    pub fn csv_columns(self) -> Vec<&'static str> {
        self.properties()
            .iter()
            .filter(|p| p.in_properties() && p.shown == Shown::Always && p.name != "id")
            .map(|p| p.name)
            .collect()
    }

    /// A JSON Schema of the queryables (`sortables: false`) or the sortables,
    /// as `/collections/{id}/queryables` and `/sortables` serve it.
    pub fn schema(self, id: String, sortables: bool) -> Value {
        let (what, props): (_, Vec<_>) = if sortables {
            ("Sortables", self.sortables().collect())
        } else {
            ("Queryables", self.queryables().collect())
        };
        let props: Map<String, Value> = props
            .into_iter()
            .map(|p| (p.name.to_owned(), p.json_schema(self.geometry_format())))
            .collect();
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": id,
            "type": "object",
            "title": format!("{} of {}", what, self.id()),
            "properties": props,
            "additionalProperties": false,
        })
    }
}

/// The members of the objects a list property holds, as a standalone JSON
/// Schema (the API document names them as components instead).
fn object_schema(name: &str) -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    match name {
        "Source" => json!({
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "url": nullable_string,
                "date": {"type": ["string", "null"], "format": "date"},
            },
            "required": ["title"],
        }),
        "SiteLink" => json!({
            "type": "object",
            "properties": {
                "site_id": {"type": "string"},
                "how": {"type": "string"},
                "distance_m": {"type": "number"},
            },
        }),
        _ => json!({"type": "object"}),
    }
}

impl Property {
    /// The property as the collection's schema describes it: its JSON type
    /// (with `null` where it may be null), `format: date-time` for a time.
    fn feature_schema(&self, collection: CollectionId) -> Value {
        let mut s = match self.kind {
            Kind::Geometry => json!({
                "x-ogc-role": "primary-geometry",
                "format": collection.geometry_format(),
            }),
            Kind::Objects(name) => json!({"type": "array", "items": object_schema(name)}),
            _ => self.json_schema(collection.geometry_format()),
        };
        if self.nullable
            && let Some(t) = s["type"].as_str()
        {
            s["type"] = json!([t, "null"]);
        }
        if self.shown == Shown::AsFeatureId || (self.name == "id" && self.kind == Kind::String) {
            s["x-ogc-role"] = json!("id");
        } else if self.name == collection.time_property() {
            s["x-ogc-role"] = json!("primary-instant");
        }
        s["title"] = json!(self.name);
        s["description"] = json!(self.description);
        s
    }

    /// The property's type in an XML Schema, and whether it repeats.
    fn xsd_type(&self) -> (&'static str, bool) {
        match self.kind {
            Kind::String => ("xs:string", false),
            Kind::Integer => ("xs:integer", false),
            Kind::Number => ("xs:double", false),
            Kind::Boolean => ("xs:boolean", false),
            Kind::Timestamp => ("xs:dateTime", false),
            Kind::Strings => ("xs:string", true),
            // A list of objects arrives in GeoJSON as one JSON text per feature.
            Kind::Objects(_) => ("xs:string", false),
            Kind::Geometry => ("gml:GeometryPropertyType", false),
        }
    }
}

impl CollectionId {
    /// The collection's features as OGC API - Features Part 5 describes them:
    /// a JSON Schema of every property a feature carries, with its type,
    /// `format: date-time` for times, the geometry and its type, and the roles
    /// of the id, the geometry and the instant `datetime` matches. It holds
    /// for a collection with no features yet, so clients need not guess.
    pub fn feature_schema(self, id: String) -> Value {
        let props: Map<String, Value> = self
            .properties()
            .iter()
            .map(|p| (p.name.to_owned(), p.feature_schema(self)))
            .collect();
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": id,
            "type": "object",
            "title": self.title(),
            "description": self.description(),
            "properties": props,
        })
    }

    /// The GML geometry property type of the collection's features.
    fn gml_geometry(self) -> &'static str {
        match self {
            Self::Sites => "gml:MultiSurfacePropertyType",
            Self::Observations => "gml:GeometryPropertyType",
            Self::Candidates => "gml:PointPropertyType",
        }
    }

    /// The same schema as a GML application schema: GDAL takes its field
    /// types and, unlike from a JSON Schema, its geometry type from one, so
    /// that even a collection with no features opens with both.
    pub fn gml_schema(self) -> String {
        let name = self.id();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" \
             xmlns:gml=\"http://www.opengis.net/gml/3.2\" \
             xmlns:sitewatch=\"urn:sitewatch\" targetNamespace=\"urn:sitewatch\" \
             elementFormDefault=\"qualified\" version=\"1.0\">\n\
             <xs:import namespace=\"http://www.opengis.net/gml/3.2\" \
             schemaLocation=\"http://schemas.opengis.net/gml/3.2.1/gml.xsd\"/>\n\
             <xs:element name=\"{name}\" type=\"sitewatch:{name}Type\" substitutionGroup=\"gml:AbstractFeature\"/>\n\
             <xs:complexType name=\"{name}Type\">\n\
             <xs:complexContent>\n<xs:extension base=\"gml:AbstractFeatureType\">\n<xs:sequence>\n"
        );
        // Left out: the id, which GDAL takes from the features themselves and
        // would otherwise show twice, and what features carry only when asked.
        let listed = self
            .properties()
            .iter()
            .filter(|p| p.name != "id" && p.shown == Shown::Always);
        for p in listed {
            let (ty, repeats) = match p.kind {
                Kind::Geometry => (self.gml_geometry(), false),
                _ => p.xsd_type(),
            };
            let max = if repeats { "unbounded" } else { "1" };
            out.push_str(&format!(
                "<xs:element name=\"{}\" type=\"{ty}\" minOccurs=\"0\" maxOccurs=\"{max}\"/>\n",
                p.name
            ));
        }
        out.push_str("</xs:sequence>\n</xs:extension>\n</xs:complexContent>\n</xs:complexType>\n</xs:schema>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Candidate, LonLat, ObservationStats, Place, StoredObservation};
    use crate::query::records::{CandidateRecord, ObservationRecord, SiteRecord};
    use crate::render;
    use std::sync::Arc;

    fn at(t: &str) -> Timestamp {
        Timestamp::parse("t", t).unwrap()
    }

    fn site_feature() -> Value {
        let site = Arc::new(crate::synth::sites(1, 7).remove(0));
        let mut f = site.to_feature();
        let mut stats = crate::model::SiteStats::new();
        stats.insert(
            site.id.clone(),
            ObservationStats {
                last_observed_at: at("2024-01-02T03:04:05Z"),
                count: 2,
            },
        );
        render::add_observation_stats(&mut f, &stats);
        f
    }

    fn observation() -> StoredObservation {
        StoredObservation {
            id: "obs-1".into(),
            batch_id: "b1".into(),
            recorded_at: at("2024-01-02T00:00:00Z"),
            observed_at: at("2024-01-01T00:00:00Z"),
            sensor: "s2".into(),
            finding: Finding::Excavation,
            confidence: Confidence::High,
            place: Place::Point(LonLat::parse("p", 125.0, 39.0).unwrap()),
            site_id: Some(SiteId::parse("site_id", "kp-yongbyon").unwrap()),
            description: None,
            image_ref: None,
            source: None,
            external_id: None,
            candidate_id: None,
            sites: Vec::new(),
        }
    }

    fn candidate() -> Candidate {
        Candidate {
            id: "cand-1".into(),
            created_at: at("2024-01-03T00:00:00Z"),
            batch_id: "b1".into(),
            at: LonLat::parse("p", 125.0, 39.0).unwrap(),
            state: CandidateState::Open,
            decided_at: None,
            site_id: None,
            note: None,
            observation_ids: vec!["obs-1".into()],
            first_observed_at: Some(at("2024-01-01T00:00:00Z")),
            last_observed_at: Some(at("2024-01-01T00:00:00Z")),
        }
    }

    /// Each collection's rendered feature, with the optional properties asked for.
    fn features() -> Vec<(CollectionId, Value)> {
        let mut site = site_feature();
        site["properties"]["retired"] = json!(false);
        site["properties"]["distance_m"] = json!(1.5);
        vec![
            (CollectionId::Sites, site),
            (
                CollectionId::Observations,
                render::observation_feature(&observation()),
            ),
            (
                CollectionId::Candidates,
                render::candidate_feature(&candidate()),
            ),
        ]
    }

    #[test]
    fn the_properties_of_a_feature_are_the_declared_properties_in_order() {
        for (c, f) in features() {
            let shown: Vec<&str> = f["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let declared: Vec<&str> = c
                .properties()
                .iter()
                .filter(|p| p.in_properties())
                .map(|p| p.name)
                .collect();
            let mut shown_sorted = shown.clone();
            let mut declared_sorted = declared.clone();
            shown_sorted.sort();
            declared_sorted.sort();
            assert_eq!(shown_sorted, declared_sorted, "{}", c.id());
        }
    }

    #[test]
    fn every_queryable_of_a_collection_is_a_property_of_its_features() {
        for (c, f) in features() {
            for q in c.queryables() {
                let found = match (q.kind, q.shown) {
                    (Kind::Geometry, _) => f["geometry"].is_object(),
                    (_, Shown::AsFeatureId) => f["id"].is_string(),
                    _ => f["properties"].get(q.name).is_some(),
                };
                assert!(found, "{} has no {}: {f}", c.id(), q.name);
            }
        }
    }

    #[test]
    fn every_queryable_reads_from_its_record_the_value_its_feature_shows() {
        use crate::query::cql::Record;
        let site = Arc::new(crate::synth::sites(1, 7).remove(0));
        let stats = ObservationStats {
            last_observed_at: at("2024-01-02T03:04:05Z"),
            count: 2,
        };
        let records: Vec<(CollectionId, Box<dyn Record>)> = vec![
            (
                CollectionId::Sites,
                Box::new(SiteRecord {
                    site,
                    retired: false,
                    stats: Some(stats),
                }),
            ),
            (
                CollectionId::Observations,
                Box::new(ObservationRecord::new(observation())),
            ),
            (
                CollectionId::Candidates,
                Box::new(CandidateRecord::new(candidate())),
            ),
        ];
        for ((c, f), (_, r)) in features().into_iter().zip(&records) {
            for q in c.queryables().filter(|q| q.kind != Kind::Geometry) {
                let shown = match q.shown {
                    Shown::AsFeatureId => &f["id"],
                    _ => &f["properties"][q.name],
                };
                let same = match r.property(q.name) {
                    // Counts are whole numbers in the feature.
                    Scalar::Num(n) => shown.as_f64() == Some(n),
                    // Times are written in the API's own spelling.
                    Scalar::Time(t) => *shown == json!(t),
                    other => *shown == other.to_json(),
                };
                assert!(same, "{}.{}: {shown}", c.id(), q.name);
            }
            assert!(r.geometry().is_some(), "{}", c.id());
        }
    }

    #[test]
    fn the_csv_columns_are_the_declared_properties_in_order() {
        assert_eq!(
            CollectionId::Sites.csv_columns(),
            [
                "name",
                "alt_names",
                "country",
                "kind",
                "declaration",
                "status",
                "confidence",
                "position_quality",
                "sources",
                "notes",
                "last_observed_at",
                "observation_count",
            ]
        );
        for (c, f) in features() {
            let shown: Vec<&str> = f["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "id" && c.property(k).is_some_and(|p| p.shown == Shown::Always))
                .collect();
            assert_eq!(c.csv_columns(), shown, "{}", c.id());
        }
    }

    #[test]
    fn the_sortables_are_the_queryables_but_the_geometry() {
        for c in CollectionId::ALL {
            let queryables: Vec<&str> = c
                .queryables()
                .filter(|q| q.kind != Kind::Geometry)
                .map(|q| q.name)
                .collect();
            let sortables: Vec<&str> = c.sortables().map(|q| q.name).collect();
            assert_eq!(queryables, sortables, "{}", c.id());
            assert!(c.property(c.time_property()).unwrap().queryable);
        }
    }

    #[test]
    fn only_scalars_and_the_geometry_are_queryable_and_each_is_read_from_its_record() {
        for c in CollectionId::ALL {
            for p in c.queryables() {
                let readable = match (c, p.read) {
                    (CollectionId::Sites, Reader::Site(_))
                    | (CollectionId::Observations, Reader::Observation(_))
                    | (CollectionId::Candidates, Reader::Candidate(_)) => true,
                    (_, Reader::Unread) => p.kind == Kind::Geometry,
                    _ => false,
                };
                assert!(readable, "{}.{}", c.id(), p.name);
                assert!(
                    !matches!(p.kind, Kind::Strings | Kind::Objects(_)),
                    "{}.{}",
                    c.id(),
                    p.name
                );
            }
        }
    }

    #[test]
    fn the_feature_schema_types_every_property_and_says_times_are_date_times() {
        for c in CollectionId::ALL {
            let schema = c.feature_schema(format!("http://x/{}", c.id()));
            let props = schema["properties"].as_object().unwrap();
            assert_eq!(props.len(), c.properties().len(), "{}", c.id());
            for p in c.properties() {
                let s = &props[p.name];
                match p.kind {
                    Kind::Geometry => {
                        assert_eq!(s["x-ogc-role"], "primary-geometry");
                        assert_eq!(s["format"], c.geometry_format());
                    }
                    Kind::Timestamp => assert_eq!(s["format"], "date-time", "{}", p.name),
                    _ => assert!(!s["type"].is_null(), "{}.{}", c.id(), p.name),
                }
                assert!(!s.to_string().contains("#/components"), "{}", p.name);
            }
        }
        let sites = CollectionId::Sites.feature_schema("s".into());
        assert_eq!(
            sites["properties"]["last_observed_at"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(
            sites["properties"]["last_observed_at"]["x-ogc-role"],
            "primary-instant"
        );
        assert_eq!(sites["properties"]["sources"]["items"]["type"], "object");
    }

    #[test]
    fn the_gml_schema_names_each_property_features_always_carry_once_with_the_geometry_type() {
        let xsd = CollectionId::Candidates.gml_schema();
        assert!(xsd.contains("type=\"gml:PointPropertyType\""));
        assert!(xsd.contains("name=\"created_at\" type=\"xs:dateTime\""));
        let sites = CollectionId::Sites.gml_schema();
        assert!(sites.contains("gml:MultiSurfacePropertyType"));
        for p in CollectionId::Sites.properties() {
            let tag = format!("<xs:element name=\"{}\"", p.name);
            let listed = p.name != "id" && p.shown == Shown::Always;
            assert_eq!(
                sites.matches(&tag).count(),
                usize::from(listed),
                "{}",
                p.name
            );
        }
    }
}
