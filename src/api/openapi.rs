//! The OpenAPI 3.0 document, generated from the handlers' own annotations, a
//! browsable page of it at `/api/docs`, and the check that refuses query
//! parameters the document does not name (OGC API - Features requires a 400
//! for them), which also keeps the document and the code from drifting apart.

use super::error::ApiError;
use super::ogc::{self, CollectionInfo, Collections, Conformance, Extent, LandingPage, Link};
use super::ogc::{SpatialExtent, TemporalExtent};
use super::{edits, history, observations, routes};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, SchemaType};
use utoipa::{Modify, OpenApi};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi_json))
        .route("/api/docs", web::get().to(docs));
}

/// Documentation types: they describe the JSON the handlers write and read,
/// and exist only to be rendered into the document.
#[allow(dead_code)]
mod schemas {
    use super::{Link, ObjectBuilder, RefOr, Schema, SchemaType};
    use crate::model::{Confidence, Declaration, Finding, PositionQuality, SiteKind, Status};
    use crate::query::properties::{CollectionId, Shown};
    use serde::{Deserialize, Serialize};
    use utoipa::{IntoParams, ToSchema};

    /// Declares a string schema whose values are those of a model enum, so the
    /// document lists exactly what the parser accepts.
    macro_rules! enum_schema {
        ($doc:ident, $model:ty, $what:literal) => {
            #[doc = $what]
            #[derive(Serialize)]
            pub struct $doc;
            impl<'s> ToSchema<'s> for $doc {
                fn schema() -> (&'s str, RefOr<Schema>) {
                    (
                        stringify!($doc),
                        ObjectBuilder::new()
                            .schema_type(SchemaType::String)
                            .description(Some($what))
                            .enum_values(Some(<$model>::ALL.iter().map(|v| v.as_str())))
                            .into(),
                    )
                }
            }
        };
    }

    enum_schema!(SiteKindName, SiteKind, "What a site is for.");
    enum_schema!(
        DeclarationName,
        Declaration,
        "Whether the state reported the site, admits it, or analysts found it."
    );
    enum_schema!(StatusName, Status, "The site's activity status.");
    enum_schema!(ConfidenceName, Confidence, "How sure the record is.");
    enum_schema!(
        PositionQualityName,
        PositionQuality,
        "How sure the catalogue is of where a site is: verified (two independent sources agree within 2 km), single_source, unverified (its source could not be confirmed), approximate (a town or a placeholder), unknown (not assessed)."
    );
    enum_schema!(FindingName, Finding, "What an observation showed.");

    /// The collections of this service.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum CollectionName {
        Sites,
        Observations,
        Candidates,
    }

    /// An RFC 9457 problem: every error is one, with `parameter` naming the bad
    /// query parameter or body field of a 400.
    #[derive(Serialize, ToSchema)]
    pub struct Problem {
        #[serde(rename = "type")]
        pub kind: String,
        pub title: String,
        pub status: u16,
        pub detail: String,
        pub parameter: Option<String>,
        /// The full import report of a refused observation batch (422).
        #[schema(value_type = Option<Object>)]
        pub report: Option<serde_json::Value>,
    }

    #[derive(Serialize, ToSchema)]
    pub enum FeatureType {
        Feature,
    }

    #[derive(Serialize, ToSchema)]
    pub enum FeatureCollectionType {
        FeatureCollection,
    }

    #[derive(Serialize, ToSchema)]
    pub enum PointType {
        Point,
    }

    #[derive(Serialize, ToSchema)]
    pub enum PolygonType {
        Polygon,
    }

    #[derive(Serialize, ToSchema)]
    pub enum MultiPolygonType {
        MultiPolygon,
    }

    /// A GeoJSON Point, `[lon, lat]` in WGS84.
    #[derive(Serialize, ToSchema)]
    pub struct PointGeometry {
        #[serde(rename = "type")]
        pub kind: PointType,
        #[schema(min_items = 2, max_items = 3)]
        pub coordinates: Vec<f64>,
    }

    /// A GeoJSON Polygon: closed rings of `[lon, lat]`, the exterior first.
    #[derive(Serialize, ToSchema)]
    pub struct PolygonGeometry {
        #[serde(rename = "type")]
        pub kind: PolygonType,
        pub coordinates: Vec<Vec<Vec<f64>>>,
    }

    /// A GeoJSON MultiPolygon.
    #[derive(Serialize, ToSchema)]
    pub struct MultiPolygonGeometry {
        #[serde(rename = "type")]
        pub kind: MultiPolygonType,
        pub coordinates: Vec<Vec<Vec<Vec<f64>>>>,
    }

    /// A site footprint.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum Footprint {
        Polygon(PolygonGeometry),
        MultiPolygon(MultiPolygonGeometry),
    }

    /// Where an observation or event was: a Point, Polygon or MultiPolygon.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum AnyGeometry {
        Point(PointGeometry),
        Polygon(PolygonGeometry),
        MultiPolygon(MultiPolygonGeometry),
    }

    /// A published source for a site.
    #[derive(Serialize, ToSchema)]
    pub struct Source {
        pub title: String,
        pub url: Option<String>,
        /// `YYYY-MM-DD`.
        pub date: Option<String>,
    }

    /// The schema of a collection's feature properties, derived from the
    /// collection's one table of properties.
    fn feature_properties(c: CollectionId, what: &str) -> RefOr<Schema> {
        let mut o = ObjectBuilder::new().description(Some(what));
        for p in c.properties().iter().filter(|p| p.in_properties()) {
            let optional = p.nullable || p.shown != Shown::Always;
            let mut v = p.json_schema(c.geometry_format());
            if optional {
                v["nullable"] = serde_json::json!(true);
            }
            // Every kind's JSON Schema is also an OpenAPI 3.0 schema; a test
            // checks that each property arrives in the document.
            let schema: RefOr<Schema> =
                serde_json::from_value(v).unwrap_or_else(|_| ObjectBuilder::new().into());
            o = o.property(p.name, schema);
            if !optional {
                o = o.required(p.name);
            }
        }
        o.into()
    }

    /// Declares the schema of a collection's feature properties.
    macro_rules! properties_schema {
        ($doc:ident, $collection:expr, $what:literal) => {
            #[doc = $what]
            #[derive(Serialize)]
            pub struct $doc;
            impl<'s> ToSchema<'s> for $doc {
                fn schema() -> (&'s str, RefOr<Schema>) {
                    (stringify!($doc), feature_properties($collection, $what))
                }
            }
        };
    }

    properties_schema!(SiteProperties, CollectionId::Sites, "A site's properties.");
    properties_schema!(
        ObservationProperties,
        CollectionId::Observations,
        "An observation's properties."
    );
    properties_schema!(
        CandidateProperties,
        CollectionId::Candidates,
        "A candidate's properties."
    );

    /// A catalogue site as a GeoJSON Feature.
    #[derive(Serialize, ToSchema)]
    pub struct SiteFeature {
        #[serde(rename = "type")]
        pub kind: FeatureType,
        pub id: String,
        pub geometry: Footprint,
        pub properties: SiteProperties,
        pub links: Option<Vec<Link>>,
    }

    /// The properties of a site to create or replace; see the README's site format.
    #[derive(Serialize, ToSchema)]
    pub struct SiteInputProperties {
        pub id: Option<String>,
        pub name: String,
        pub alt_names: Option<Vec<String>>,
        /// ISO 3166-1 alpha-3, e.g. PRK.
        pub country: String,
        pub kind: SiteKindName,
        pub declaration: Option<DeclarationName>,
        pub status: Option<StatusName>,
        pub confidence: Option<ConfidenceName>,
        /// `unknown` when not given.
        pub position_quality: Option<PositionQualityName>,
        pub sources: Option<Vec<Source>>,
        pub notes: Option<String>,
    }

    /// A site to create or replace, as a GeoJSON Feature.
    #[derive(Serialize, ToSchema)]
    pub struct SiteInput {
        #[serde(rename = "type")]
        pub kind: FeatureType,
        /// Optional on create (one is generated); on replace it must match the path.
        pub id: Option<String>,
        pub geometry: Footprint,
        pub properties: SiteInputProperties,
    }

    /// Said when `limit` was above the maximum and clamped.
    #[derive(Serialize, ToSchema)]
    pub struct LimitClamped {
        pub requested: u64,
        pub applied: u64,
    }

    /// A page of sites.
    #[derive(Serialize, ToSchema)]
    pub struct SiteCollection {
        #[serde(rename = "type")]
        pub kind: FeatureCollectionType,
        #[serde(rename = "timeStamp")]
        #[schema(format = DateTime)]
        pub time_stamp: String,
        /// How many items match in all; left out where counting them would
        /// cost more than a page (more than 10,000 beyond it, or a `bbox` on
        /// observations, whose exact test runs on the page).
        #[serde(rename = "numberMatched", skip_serializing_if = "Option::is_none")]
        pub number_matched: Option<u64>,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
        #[serde(rename = "limitClamped")]
        pub limit_clamped: Option<LimitClamped>,
        pub links: Vec<Link>,
        pub features: Vec<SiteFeature>,
    }

    /// How an observation is linked to a site.
    #[derive(Serialize, ToSchema)]
    pub struct SiteLink {
        pub site_id: String,
        /// named, intersects, nearest or promoted.
        pub how: String,
        pub distance_m: f64,
    }

    /// An observation as a GeoJSON Feature.
    #[derive(Serialize, ToSchema)]
    pub struct ObservationFeature {
        #[serde(rename = "type")]
        pub kind: FeatureType,
        pub id: String,
        pub geometry: AnyGeometry,
        pub properties: ObservationProperties,
        pub links: Option<Vec<Link>>,
    }

    /// A page of observations.
    #[derive(Serialize, ToSchema)]
    pub struct ObservationCollection {
        #[serde(rename = "type")]
        pub kind: FeatureCollectionType,
        #[serde(rename = "timeStamp")]
        #[schema(format = DateTime)]
        pub time_stamp: String,
        /// How many items match in all; left out where counting them would
        /// cost more than a page (more than 10,000 beyond it, or a `bbox` on
        /// observations, whose exact test runs on the page).
        #[serde(rename = "numberMatched", skip_serializing_if = "Option::is_none")]
        pub number_matched: Option<u64>,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
        #[serde(rename = "limitClamped")]
        pub limit_clamped: Option<LimitClamped>,
        pub links: Vec<Link>,
        pub features: Vec<ObservationFeature>,
    }

    /// A candidate undeclared site: the centre of a cluster of unmatched observations.
    #[derive(Serialize, ToSchema)]
    pub struct CandidateFeature {
        #[serde(rename = "type")]
        pub kind: FeatureType,
        pub id: String,
        pub geometry: PointGeometry,
        pub properties: CandidateProperties,
        pub links: Option<Vec<Link>>,
    }

    /// A page of candidates.
    #[derive(Serialize, ToSchema)]
    pub struct CandidateCollection {
        #[serde(rename = "type")]
        pub kind: FeatureCollectionType,
        #[serde(rename = "timeStamp")]
        #[schema(format = DateTime)]
        pub time_stamp: String,
        /// How many items match in all; left out where counting them would
        /// cost more than a page (more than 10,000 beyond it, or a `bbox` on
        /// observations, whose exact test runs on the page).
        #[serde(rename = "numberMatched", skip_serializing_if = "Option::is_none")]
        pub number_matched: Option<u64>,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
        #[serde(rename = "limitClamped")]
        pub limit_clamped: Option<LimitClamped>,
        pub links: Vec<Link>,
        pub features: Vec<CandidateFeature>,
    }

    /// `GET /api/candidates`: candidates, newest first.
    #[derive(Serialize, ToSchema)]
    pub struct CandidateList {
        #[serde(rename = "type")]
        pub kind: FeatureCollectionType,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
        pub features: Vec<CandidateFeature>,
    }

    /// The query a `nearby` answer is for.
    #[derive(Serialize, ToSchema)]
    pub struct NearbyQuery {
        pub lon: f64,
        pub lat: f64,
        pub radius_m: Option<f64>,
        pub limit: u64,
    }

    /// Sites near a point, nearest first, each with `properties.distance_m`.
    #[derive(Serialize, ToSchema)]
    pub struct NearbyCollection {
        #[serde(rename = "type")]
        pub kind: FeatureCollectionType,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
        pub query: NearbyQuery,
        pub features: Vec<SiteFeature>,
    }

    /// An event in the record: an observation, a revision or a candidate.
    #[derive(Serialize, ToSchema)]
    pub struct EventFeature {
        #[serde(rename = "type")]
        pub kind: FeatureType,
        pub id: String,
        pub geometry: Option<AnyGeometry>,
        /// `event` (observation, revision or candidate), `time`, and the event's own fields.
        #[schema(value_type = Object)]
        pub properties: serde_json::Value,
    }

    /// A site's timeline, oldest first.
    #[derive(Serialize, ToSchema)]
    pub struct HistoryCollection {
        #[serde(rename = "type")]
        pub kind: FeatureCollectionType,
        pub site_id: String,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
        pub features: Vec<EventFeature>,
    }

    /// Changes in an area and time window, newest first.
    #[derive(Serialize, ToSchema)]
    pub struct ChangesCollection {
        #[serde(rename = "type")]
        pub kind: FeatureCollectionType,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
        pub links: Vec<Link>,
        pub features: Vec<EventFeature>,
    }

    /// What one committed write did, in commit order.
    #[derive(Serialize, ToSchema)]
    pub struct LogEntry {
        /// Sequence number: strictly increasing in commit order.
        pub seq: i64,
        /// When the write was recorded (RFC 3339, UTC).
        #[schema(format = DateTime)]
        pub at: String,
        /// site_created, site_updated, site_retired, site_restored, batch_stored, candidate_dismissed.
        pub kind: String,
        pub site_id: Option<String>,
        pub revision: Option<i64>,
        pub batch_id: Option<String>,
        pub candidate_id: Option<String>,
        /// minLon,minLat,maxLon,maxLat of what changed.
        pub bbox: Option<Vec<f64>>,
    }

    /// A page of the change log, oldest first.
    #[derive(Serialize, ToSchema)]
    pub struct ChangeLog {
        pub entries: Vec<LogEntry>,
        /// The newest sequence number when the page was read.
        pub head: i64,
        /// Ask again with `after` set to this to follow the log.
        pub last: i64,
        pub links: Vec<Link>,
    }

    /// One import attempt.
    #[derive(Serialize, ToSchema)]
    pub struct Batch {
        pub id: String,
        #[schema(format = DateTime)]
        pub received_at: String,
        pub origin: String,
        pub content_hash: String,
        /// atomic or partial.
        pub mode: String,
        pub stored: bool,
        pub features: Option<u64>,
        pub accepted: Option<u64>,
        pub rejected: Option<u64>,
        pub duplicates: Option<u64>,
        pub matched: Option<u64>,
        pub unmatched: Option<u64>,
        pub candidates_created: Option<Vec<String>>,
        pub summary: Option<String>,
    }

    /// `GET /api/batches`: import attempts, newest first.
    #[derive(Serialize, ToSchema)]
    pub struct BatchList {
        pub batches: Vec<Batch>,
        #[serde(rename = "numberReturned")]
        pub number_returned: u64,
    }

    /// One rejected feature of a batch.
    #[derive(Serialize, ToSchema)]
    pub struct FeatureProblem {
        pub index: u64,
        pub field: String,
        pub reason: String,
    }

    /// A feature that was already stored.
    #[derive(Serialize, ToSchema)]
    pub struct DuplicateFeature {
        pub index: u64,
        pub source: Option<String>,
        pub external_id: String,
        pub existing: String,
    }

    /// What an import did (or, in a dry run, would do).
    #[derive(Serialize, ToSchema)]
    pub struct ImportReport {
        pub batch_id: String,
        pub origin: String,
        pub content_hash: String,
        /// atomic or partial.
        pub mode: String,
        pub dry_run: bool,
        pub stored: bool,
        pub already_imported_as: Option<String>,
        pub features: u64,
        pub accepted: u64,
        pub rejected: u64,
        pub duplicates: u64,
        pub matched: u64,
        pub unmatched: u64,
        pub candidates_created: Vec<String>,
        pub problems: Vec<FeatureProblem>,
        pub duplicate_features: Vec<DuplicateFeature>,
        pub lists_truncated: bool,
        pub summary: String,
    }

    /// What an analyst may say when promoting a candidate; all optional.
    #[derive(Serialize, ToSchema)]
    pub struct Promotion {
        pub id: Option<String>,
        pub name: Option<String>,
        pub alt_names: Option<Vec<String>>,
        pub kind: Option<SiteKindName>,
        pub country: Option<String>,
        pub status: Option<StatusName>,
        pub notes: Option<String>,
        /// A Polygon or MultiPolygon; without one, a circle around the cluster.
        pub footprint: Option<Footprint>,
    }

    /// `GET /healthz`.
    #[derive(Serialize, ToSchema)]
    pub struct Health {
        /// `ok`, or `degraded` when the database or its replica cannot be reached.
        pub status: String,
        pub sites: u64,
        /// On a database several nodes share: how far this node is behind it.
        pub following: Option<Following>,
        /// When reads go to a standby (`--db-read`): which, and how far
        /// behind the primary it is.
        pub reads: Option<Reads>,
        pub database_reachable: Option<bool>,
        pub replica_reachable: Option<bool>,
    }

    /// A node's place in the change log that several nodes write.
    #[derive(Serialize, ToSchema)]
    pub struct Following {
        /// The newest change log entry this node has applied.
        pub applied_seq: i64,
        /// The newest entry in the database.
        pub head_seq: i64,
        /// 0 when every entry is applied, else how long ago the node last caught up.
        pub lag_ms: u64,
        /// Whether the node is woken by commits (it looks every half second anyway).
        pub listening: bool,
    }

    /// The read replica a node reads from.
    #[derive(Serialize, ToSchema)]
    pub struct Reads {
        /// The replica's connection string, without a password.
        pub location: String,
        /// Whether it is a standby still replaying the primary's log.
        pub in_recovery: bool,
        /// How long ago the last transaction it replayed committed on the primary.
        pub replay_lag_ms: Option<u64>,
    }

    /// The output format of items.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum ItemFormat {
        Json,
        Csv,
    }

    /// The only format of a document that is not a list of items.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum JsonOnly {
        Json,
    }

    /// `f`, where JSON is the only format.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct FormatParams {
        /// json (the only format here)
        #[param(inline)]
        f: Option<JsonOnly>,
    }

    /// The formats of a collection's schema.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum SchemaFormat {
        Json,
        Xsd,
    }

    /// `f` of a collection's schema.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct SchemaFormatParams {
        /// json (JSON Schema, the default) or xsd (a GML application schema)
        #[param(inline)]
        f: Option<SchemaFormat>,
    }

    /// The view a single site is read in.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct SiteItemParams {
        /// The site as recorded at this moment (RFC 3339).
        #[param(format = DateTime)]
        as_of: Option<String>,
        /// Serve a retired site too, with `properties.retired`.
        include_retired: Option<bool>,
        /// json (the only format for one item)
        #[param(inline)]
        f: Option<JsonOnly>,
    }

    /// Which candidates to list.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum CandidateState {
        Open,
        Promoted,
        Dismissed,
    }

    /// `GET /api/candidates` parameters.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct CandidateListParams {
        /// open, promoted, dismissed or all (the default)
        #[param(value_type = Option<String>, pattern = "^(open|promoted|dismissed|all)$")]
        state: Option<String>,
    }

    /// The language of `filter`.
    #[derive(Deserialize, ToSchema)]
    pub enum FilterLang {
        #[serde(rename = "cql2-text")]
        Cql2Text,
        #[serde(rename = "cql2-json")]
        Cql2Json,
        /// The draft name of cql2-text.
        #[serde(rename = "cql-text")]
        CqlText,
        /// The draft name of cql2-json.
        #[serde(rename = "cql-json")]
        CqlJson,
    }

    /// The query parameters every item collection takes.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct ItemsParams {
        /// Items per page: default 100, at most 10,000; a larger value is clamped
        /// and the answer says so (`limitClamped` and a `Sitewatch-Limit-Clamped` header).
        #[param(minimum = 1)]
        limit: Option<u64>,
        /// minLon,minLat,maxLon,maxLat in CRS84; minLon > maxLon crosses the antimeridian.
        #[param(style = Form, explode = false, value_type = Option<Vec<f64>>, min_items = 4, max_items = 4)]
        bbox: Option<String>,
        /// An instant (RFC 3339 or a date), or an interval `start/end` with `..` for an
        /// open end. Sites match on last_observed_at, observations on observed_at,
        /// candidates on created_at.
        datetime: Option<String>,
        /// A CQL2 filter (text, or JSON with `filter-lang=cql2-json`) over the queryables.
        /// Beyond CQL2's functions, `S_DWITHIN(geometry, <geometry>, <metres>)` measures
        /// geodesic metres on WGS84.
        filter: Option<String>,
        #[serde(rename = "filter-lang")]
        #[param(inline)]
        filter_lang: Option<FilterLang>,
        /// Must be CRS84 if given.
        #[serde(rename = "filter-crs")]
        filter_crs: Option<String>,
        /// Comma-separated sortables, each `-` for descending; the id breaks ties.
        sortby: Option<String>,
        /// A cursor from a `next` link: the page after it.
        after: Option<String>,
        /// A cursor from a `prev` link: the page before it.
        before: Option<String>,
        /// json (GeoJSON, the default) or csv (WKT geometry); `Accept: text/csv` also gives CSV.
        #[param(inline)]
        f: Option<ItemFormat>,
        /// Must be CRS84 if given.
        crs: Option<String>,
        /// Must be CRS84 if given.
        #[serde(rename = "bbox-crs")]
        bbox_crs: Option<String>,
    }

    /// The site filters every site query takes: comma-separated lists.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct SiteFilterParams {
        #[param(style = Form, explode = false, value_type = Option<Vec<DeclarationName>>)]
        declaration: Option<String>,
        #[param(style = Form, explode = false, value_type = Option<Vec<SiteKindName>>)]
        kind: Option<String>,
        #[param(style = Form, explode = false, value_type = Option<Vec<StatusName>>)]
        status: Option<String>,
        /// ISO 3166-1 alpha-3 codes, e.g. PRK.
        #[param(style = Form, explode = false, value_type = Option<Vec<String>>)]
        country: Option<String>,
        /// How sure the catalogue is of each site's position.
        #[param(style = Form, explode = false, value_type = Option<Vec<PositionQualityName>>)]
        position_quality: Option<String>,
    }

    /// The site-only item parameters: the record view and staleness.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct SiteViewParams {
        /// A GeoJSON Polygon or MultiPolygon the footprint must meet.
        intersects: Option<String>,
        /// The catalogue as recorded at this moment (RFC 3339).
        #[param(format = DateTime)]
        as_of: Option<String>,
        /// Add retired sites, each with `properties.retired`.
        include_retired: Option<bool>,
        /// Sites not observed since this moment (or never).
        #[param(format = DateTime)]
        observed_before: Option<String>,
        /// Sites observed at or after this moment.
        #[param(format = DateTime)]
        observed_since: Option<String>,
    }

    /// Observation filters.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct ObservationFilterParams {
        #[param(style = Form, explode = false, value_type = Option<Vec<FindingName>>)]
        finding: Option<String>,
        /// Sensors, exactly as recorded.
        #[param(style = Form, explode = false, value_type = Option<Vec<String>>)]
        sensor: Option<String>,
    }

    /// `GET /api/changes` parameters.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct ChangesParams {
        /// minLon,minLat,maxLon,maxLat
        #[param(style = Form, explode = false, value_type = Option<Vec<f64>>, min_items = 4, max_items = 4)]
        bbox: Option<String>,
        /// Events at or after this moment.
        #[param(format = DateTime)]
        since: Option<String>,
        /// Events at or before this moment.
        #[param(format = DateTime)]
        until: Option<String>,
        /// Only observations with these findings.
        #[param(style = Form, explode = false, value_type = Option<Vec<FindingName>>)]
        finding: Option<String>,
        /// Only events about sites so declared.
        #[param(style = Form, explode = false, value_type = Option<Vec<DeclarationName>>)]
        declaration: Option<String>,
        /// observation, revision, candidate.
        #[serde(rename = "type")]
        #[param(style = Form, explode = false, value_type = Option<Vec<String>>)]
        kind: Option<String>,
        /// Events per page: default 100, at most 1,000.
        #[param(minimum = 1)]
        limit: Option<u64>,
        /// From a `next` link.
        cursor: Option<String>,
    }

    /// `GET /api/changes/log` parameters.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct ChangeLogParams {
        /// Entries with a sequence number above this (default 0: from the start).
        #[param(minimum = 0)]
        after: Option<i64>,
        /// Entries per page: default 100, at most 1,000.
        #[param(minimum = 1)]
        limit: Option<u64>,
    }

    /// Candidate filters.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct CandidateFilterParams {
        /// open, promoted, dismissed.
        #[param(style = Form, explode = false, value_type = Option<Vec<CandidateState>>)]
        state: Option<String>,
    }
}

pub use schemas::*;

/// Declares the bearer token writes may carry (`--token`); a server without
/// one takes writes from loopback clients only, hence optional.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerToken),
    info(
        title = "sitewatch",
        description = "A catalogue of nuclear and missile sites, the observations made of them and candidate undeclared sites: OGC API - Features (Core, GeoJSON, OpenAPI 3.0, Filter with CQL2, Create/Replace/Delete, Sorting) plus geodesic proximity, history and observation import. Errors are application/problem+json."
    ),
    paths(
        ogc::landing,
        ogc::conformance,
        ogc::collections,
        ogc::collection,
        ogc::queryables,
        ogc::sortables,
        ogc::schema,
        routes::site_items,
        edits::create,
        routes::site_item,
        edits::replace,
        edits::patch,
        edits::retire,
        ogc::observation_items,
        ogc::observation_item,
        ogc::candidate_items,
        ogc::candidate_item,
        routes::nearby,
        history::site_history,
        history::changes,
        history::change_log,
        observations::import,
        observations::batches,
        observations::candidates,
        observations::candidate,
        observations::dismiss,
        observations::promote,
        routes::healthz,
        openapi_json,
        docs,
    ),
    components(schemas(
        LandingPage, Conformance, Collections, CollectionInfo, Extent, SpatialExtent,
        TemporalExtent, Link, CollectionName, Problem, FeatureType, FeatureCollectionType,
        PointType, PolygonType, MultiPolygonType, PointGeometry, PolygonGeometry,
        MultiPolygonGeometry, Footprint, AnyGeometry, Source, SiteProperties, SiteFeature,
        SiteInputProperties, SiteInput, LimitClamped, SiteCollection, SiteLink,
        ObservationProperties, ObservationFeature, ObservationCollection, CandidateProperties,
        CandidateFeature, CandidateCollection, CandidateList, NearbyQuery, NearbyCollection,
        EventFeature, HistoryCollection, ChangesCollection, LogEntry, ChangeLog, Batch, BatchList, FeatureProblem,
        DuplicateFeature, ImportReport, Promotion, Health, Following, Reads, ItemFormat, FilterLang,
        JsonOnly, CandidateState, SchemaFormat,
        SiteKindName, DeclarationName, StatusName, ConfidenceName, PositionQualityName, FindingName,
    )),
    tags(
        (name = "Capabilities", description = "OGC API - Features: landing page, conformance, collections, queryables, sortables"),
        (name = "Data", description = "OGC API - Features: items of sites, observations and candidates"),
        (name = "Proximity", description = "Geodesic proximity on WGS84"),
        (name = "History", description = "Revisions, observations and candidates over time"),
        (name = "Observations", description = "Observation import, batches and candidate sites"),
        (name = "Service", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

/// Where the API is rooted. The document lists its paths relative to this
/// (its `servers` entry) because OGC API clients look operations up by the
/// paths the standard names: GDAL finds an items query's parameters under
/// `paths["/collections/sites/items"]`, and without them filters nothing on
/// the server.
pub const ROOT: &str = "/api";

/// The item-query parameters OGC API - Features names, served once as
/// components and referred to from every items operation, as clients expect.
const STANDARD_PARAMETERS: [&str; 5] = ["limit", "bbox", "datetime", "filter", "filter-lang"];

/// The values `filter-lang` takes.
const FILTER_LANGS: [&str; 4] = ["cql2-text", "cql2-json", "cql-text", "cql-json"];

/// The document as served, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_value(ApiDoc::openapi())
            .map(rooted)
            .unwrap_or_else(|_| serde_json::json!({}))
    })
}

/// The generated document with its paths made relative to [`ROOT`] (the
/// service's own probes outside it are left out) and the standard item-query
/// parameters as shared components, `limit` with its default and maximum.
fn rooted(mut doc: serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut components = Map::new();
    let mut paths = Map::new();
    let generated = match doc["paths"].take() {
        Value::Object(p) => p,
        _ => Map::new(),
    };
    for (path, mut item) in generated {
        let Some(rest) = path.strip_prefix(ROOT) else {
            continue;
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        if rest.ends_with("/items") {
            let params = item["get"]["parameters"]
                .as_array_mut()
                .into_iter()
                .flatten();
            for p in params {
                let name = p["name"].as_str().unwrap_or_default().to_owned();
                if p["in"] != "query" || !STANDARD_PARAMETERS.contains(&name.as_str()) {
                    continue;
                }
                let mut shared = p.take();
                // Plain schemas, as the standard writes them: clients read
                // `limit`'s default and maximum and `filter-lang`'s values
                // straight from `schema`.
                match name.as_str() {
                    "limit" => {
                        shared["schema"] = json!({
                            "type": "integer",
                            "minimum": 1,
                            "maximum": ogc::ITEMS_MAX,
                            "default": ogc::ITEMS_DEFAULT,
                        });
                    }
                    "filter-lang" => {
                        shared["description"] = json!(
                            "The language of `filter`; cql-text and cql-json are the earlier names of cql2-text and cql2-json."
                        );
                        shared["schema"] = json!({
                            "type": "string",
                            "enum": FILTER_LANGS,
                            "default": "cql2-text",
                        });
                    }
                    _ => {
                        if let Some(schema) = shared["schema"].as_object_mut() {
                            schema.remove("nullable");
                        }
                    }
                }
                shared["style"] = json!("form");
                shared["explode"] = json!(false);
                components.entry(name.clone()).or_insert(shared);
                *p = json!({"$ref": format!("#/components/parameters/{name}")});
            }
        }
        // The Host check stands before every route (see `host::check`).
        for method in ["get", "put", "post", "patch", "delete"] {
            let responses = item
                .get_mut(method)
                .and_then(|op| op.get_mut("responses"))
                .and_then(Value::as_object_mut);
            if let Some(responses) = responses {
                responses.entry("421").or_insert_with(|| {
                    json!({
                        "description": "The request names a host this server does not answer to (see --public-url)",
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    })
                });
            }
        }
        paths.insert(rest.to_owned(), item);
    }
    doc["paths"] = Value::Object(paths);
    doc["servers"] = json!([{"url": ROOT, "description": "this server"}]);
    doc["components"]["parameters"] = Value::Object(components);
    doc
}

/// A path of the served document as the server routes it.
fn full_path(path: &str) -> String {
    if path == "/" {
        ROOT.to_owned()
    } else {
        format!("{ROOT}{path}")
    }
}

/// A parameter of the document, its `$ref` followed.
fn resolved(p: &serde_json::Value) -> &serde_json::Value {
    p["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|r| document().pointer(r))
        .unwrap_or(p)
}

/// The OpenAPI 3.0 definition of this API.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "Service",
    operation_id = "getOpenApi",
    responses(
        (status = 200, description = "This document", body = Object, content_type = "application/vnd.oai.openapi+json;version=3.0"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/vnd.oai.openapi+json;version=3.0")
        .json(document())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The operations of the document as a plain HTML page: no scripts and
/// nothing fetched from elsewhere, so it works on a closed network.
fn docs_html() -> String {
    let doc = document();
    let mut by_tag: BTreeMap<String, Vec<(String, String, &serde_json::Value)>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let tag = op["tags"][0].as_str().unwrap_or("Other").to_owned();
            by_tag
                .entry(tag)
                .or_default()
                .push((method.to_uppercase(), full_path(path), op));
        }
    }
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sitewatch API</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}\
         code{background:#f3f3f3;padding:0 .2em}.m{display:inline-block;min-width:4.5em;font-weight:bold}\
         table{border-collapse:collapse;margin:.3rem 0 1rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}\
         details{margin:.4rem 0}summary{cursor:pointer}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>{}</h1><p>{}</p><p>The machine-readable definition: <a href=\"/api/openapi.json\">/api/openapi.json</a> (OpenAPI {}).</p>",
        escape(doc["info"]["title"].as_str().unwrap_or("")),
        escape(doc["info"]["description"].as_str().unwrap_or("")),
        escape(doc["openapi"].as_str().unwrap_or(""))
    ));
    for (tag, ops) in &by_tag {
        html.push_str(&format!("<h2>{}</h2>", escape(tag)));
        for (method, path, op) in ops {
            html.push_str(&format!(
                "<details><summary><span class=\"m\">{method}</span> <code>{}</code> {}</summary>",
                escape(path),
                escape(
                    op["summary"]
                        .as_str()
                        .or(op["description"].as_str())
                        .unwrap_or("")
                )
            ));
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                html.push_str("<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>");
                for p in params.iter().map(resolved) {
                    html.push_str(&format!(
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(p["name"].as_str().unwrap_or("")),
                        escape(p["in"].as_str().unwrap_or("")),
                        if p["required"].as_bool().unwrap_or(false) {
                            "yes"
                        } else {
                            ""
                        },
                        escape(p["description"].as_str().unwrap_or(""))
                    ));
                }
                html.push_str("</table>");
            }
            html.push_str("<table><tr><th>status</th><th>meaning</th><th>media types</th></tr>");
            for (status, r) in op["responses"].as_object().into_iter().flatten() {
                let types: Vec<&str> = r["content"]
                    .as_object()
                    .map(|c| c.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                html.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(status),
                    escape(r["description"].as_str().unwrap_or("")),
                    escape(&types.join(", "))
                ));
            }
            html.push_str("</table></details>");
        }
    }
    html.push_str("</body></html>");
    html
}

/// Browsable documentation of every operation.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "Service",
    operation_id = "getApiDocs",
    responses(
        (status = 200, description = "The operations as an HTML page", body = String, content_type = "text/html"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn docs() -> HttpResponse {
    static HTML: OnceLock<String> = OnceLock::new();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(HTML.get_or_init(docs_html).as_str())
}

/// The query parameters the document names, per method and path template.
fn documented() -> &'static BTreeMap<(String, String), BTreeSet<String>> {
    static MAP: OnceLock<BTreeMap<(String, String), BTreeSet<String>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = BTreeMap::new();
        for (path, item) in document()["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let names: BTreeSet<String> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(resolved)
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                if path == "/" {
                    map.insert((method.to_uppercase(), format!("{ROOT}/")), names.clone());
                }
                map.insert((method.to_uppercase(), full_path(path)), names);
            }
        }
        map
    })
}

/// The methods the document lists for a path template, such as `GET, POST`.
pub fn methods_at(pattern: &str) -> Vec<String> {
    documented()
        .keys()
        .filter(|(_, path)| path == pattern)
        .map(|(method, _)| method.clone())
        .collect()
}

/// The first query parameter the document does not name for this operation,
/// as a 400; operations outside the document (the map page's) are not checked.
pub fn undocumented_parameter(req: &HttpRequest) -> Option<ApiError> {
    let pattern = req.match_pattern()?;
    let names = documented().get(&(req.method().as_str().to_owned(), pattern))?;
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string()).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| !names.contains(k))
        .map(|(k, _)| {
            ApiError::bad(
                &k,
                format!(
                    "unknown parameter {k:?}; this operation takes {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            )
        })
}

/// Middleware: refuses requests with undocumented query parameters.
pub async fn reject_undocumented(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(e) = undocumented_parameter(req.request()) {
        return Ok(req.error_response(e).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_the_421_a_foreign_host_gets() {
        let mut operations = 0;
        for (path, item) in document()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(responses) = op.get("responses") else {
                    continue;
                };
                operations += 1;
                let misdirected = &responses["421"];
                assert_eq!(
                    misdirected["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path}"
                );
            }
        }
        assert!(operations > 20, "{operations}");
    }

    #[test]
    fn the_document_is_openapi_3_0_and_lists_every_endpoint_relative_to_its_server() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
        assert_eq!(doc["servers"][0]["url"], ROOT);
        for path in [
            "/",
            "/conformance",
            "/collections",
            "/collections/{collectionId}",
            "/collections/{collectionId}/queryables",
            "/collections/{collectionId}/schema",
            "/collections/sites/items",
            "/collections/sites/items/{id}",
            "/collections/observations/items",
            "/collections/candidates/items/{id}",
            "/nearby",
            "/sites/{id}/history",
            "/changes",
            "/observations",
            "/batches",
            "/candidates",
            "/candidates/{id}/promote",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is missing");
        }
        for method in ["get", "post"] {
            assert!(doc["paths"]["/collections/sites/items"][method].is_object());
        }
        assert!(
            doc["paths"]
                .as_object()
                .unwrap()
                .keys()
                .all(|p| !p.starts_with("/api")),
            "a path still carries the server's root"
        );
    }

    #[test]
    fn every_items_query_refers_to_the_standard_parameters_and_limit_says_its_default_and_maximum()
    {
        let doc = document();
        for c in ["sites", "observations", "candidates"] {
            let params = doc["paths"][format!("/collections/{c}/items")]["get"]["parameters"]
                .as_array()
                .unwrap();
            for name in STANDARD_PARAMETERS {
                let r = format!("#/components/parameters/{name}");
                assert!(
                    params.iter().any(|p| p["$ref"] == r.as_str()),
                    "{c}: {name}"
                );
            }
        }
        let limit = &doc["components"]["parameters"]["limit"];
        assert_eq!(limit["schema"]["default"], ogc::ITEMS_DEFAULT);
        assert_eq!(limit["schema"]["maximum"], ogc::ITEMS_MAX);
        let langs = &doc["components"]["parameters"]["filter-lang"]["schema"]["enum"];
        for lang in ["cql2-text", "cql2-json", "cql-text", "cql-json"] {
            assert!(langs.as_array().unwrap().contains(&lang.into()), "{lang}");
            assert!(crate::query::cql::Lang::parse(lang).is_some(), "{lang}");
        }
    }

    #[test]
    fn the_parameter_check_follows_references_to_the_shared_parameters() {
        let names = &documented()[&("GET".to_owned(), "/api/collections/sites/items".to_owned())];
        for name in ["limit", "filter", "filter-lang", "declaration"] {
            assert!(names.contains(name), "{name}");
        }
        assert_eq!(
            methods_at("/api/collections/sites/items"),
            vec!["GET".to_owned(), "POST".to_owned()]
        );
    }

    #[test]
    fn every_error_response_is_a_problem() {
        for (path, item) in document()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, r) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            r["content"]["application/problem+json"].is_object(),
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_feature_properties_in_the_document_are_each_collections_declared_properties() {
        use crate::query::CollectionId;
        let schemas = &document()["components"]["schemas"];
        for (c, name) in [
            (CollectionId::Sites, "SiteProperties"),
            (CollectionId::Observations, "ObservationProperties"),
            (CollectionId::Candidates, "CandidateProperties"),
        ] {
            let props = schemas[name]["properties"].as_object().unwrap();
            let declared: Vec<&str> = c
                .properties()
                .iter()
                .filter(|p| p.in_properties())
                .map(|p| p.name)
                .collect();
            assert_eq!(props.keys().collect::<Vec<_>>(), declared, "{name}");
            for (key, p) in props {
                assert!(p["type"].is_string(), "{name}.{key}: {p}");
            }
        }
        let sources = &schemas["SiteProperties"]["properties"]["sources"];
        assert_eq!(sources["items"]["$ref"], "#/components/schemas/Source");
        let required = &schemas["SiteProperties"]["required"];
        assert!(required.as_array().unwrap().contains(&"name".into()));
        assert!(!required.as_array().unwrap().contains(&"notes".into()));
    }

    #[test]
    fn enum_schemas_list_the_values_the_model_accepts() {
        let kinds = &document()["components"]["schemas"]["SiteKindName"]["enum"];
        assert_eq!(
            kinds.as_array().unwrap().len(),
            crate::model::SiteKind::ALL.len()
        );
        assert!(kinds.as_array().unwrap().contains(&"missile_base".into()));
    }

    #[test]
    fn the_docs_page_lists_operations_without_fetching_anything() {
        let html = docs_html();
        assert!(html.contains("/api/nearby"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("https://"));
    }
}
