//! OGC API - Features: the landing page, conformance, collections with their
//! extents, queryables and sortables, the item queries the three collections
//! share (`bbox`, `datetime`, CQL2 `filter`, `sortby`, keyset paging, CSV), and
//! the observation and candidate items.

use super::cql::{self, Geom, Interval, Kind, Queryable, Record, Scalar};
use super::csv;
use super::deadline::blocking;
use super::error::ApiError;
use super::params::Params;
use super::routes::{GEOJSON, base_url};
use crate::catalogue::Catalogue;
use crate::model::{BBox, Finding, LonLat, Place, Timestamp};
use crate::render::candidate_feature;
use crate::store::{Candidate, StoredObservation};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::sync::Arc;
use utoipa::ToSchema;

pub const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
const GREGORIAN: &str = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian";
const OPENAPI_TYPE: &str = "application/vnd.oai.openapi+json;version=3.0";
pub const CSV: &str = "text/csv; charset=utf-8";
const JSON: &str = "application/json";
const SCHEMA_JSON: &str = "application/schema+json";

/// Items pages: default and largest page sizes.
pub const ITEMS_DEFAULT: usize = 100;
pub const ITEMS_MAX: usize = 10_000;

/// The conformance classes this server implements; each is tested.
pub const CONFORMANCE: &[&str] = &[
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/sortables",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/sortby",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
];

/// Registers the OGC API resources (the site items live in `routes` and `edits`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api", web::get().to(landing))
        .route("/api/conformance", web::get().to(conformance))
        .route("/api/collections", web::get().to(collections))
        .route("/api/collections/{collectionId}", web::get().to(collection))
        .route(
            "/api/collections/{collectionId}/queryables",
            web::get().to(queryables),
        )
        .route(
            "/api/collections/{collectionId}/sortables",
            web::get().to(sortables),
        )
        .route(
            "/api/collections/observations/items",
            web::get().to(observation_items),
        )
        .route(
            "/api/collections/observations/items/{id}",
            web::get().to(observation_item),
        )
        .route(
            "/api/collections/candidates/items",
            web::get().to(candidate_items),
        )
        .route(
            "/api/collections/candidates/items/{id}",
            web::get().to(candidate_item),
        );
}

/// A link in an OGC API document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Link {
    pub href: String,
    pub rel: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Link {
    pub fn new(href: impl Into<String>, rel: &str, media_type: &str, title: &str) -> Self {
        Self {
            href: href.into(),
            rel: rel.into(),
            media_type: Some(media_type.into()),
            title: (!title.is_empty()).then(|| title.into()),
        }
    }
}

/// `GET /api`: what this service is and where everything else is.
#[derive(Debug, Serialize, ToSchema)]
pub struct LandingPage {
    pub title: String,
    pub description: String,
    pub links: Vec<Link>,
}

/// `GET /api/conformance`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Conformance {
    #[serde(rename = "conformsTo")]
    pub conforms_to: Vec<String>,
}

/// The spatial extent of a collection: one lon/lat box in CRS84.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpatialExtent {
    pub bbox: Vec<[f64; 4]>,
    pub crs: String,
}

/// The temporal extent of a collection; `null` ends are open.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemporalExtent {
    #[schema(value_type = Vec<Vec<Option<String>>>)]
    pub interval: Vec<[Option<String>; 2]>,
    pub trs: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Extent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spatial: Option<SpatialExtent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporal: Option<TemporalExtent>,
}

/// One collection's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionInfo {
    pub id: String,
    pub title: String,
    pub description: String,
    #[serde(rename = "itemType")]
    pub item_type: String,
    pub extent: Extent,
    pub crs: Vec<String>,
    #[serde(rename = "storageCrs")]
    pub storage_crs: String,
    pub links: Vec<Link>,
}

/// `GET /api/collections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Collections {
    pub links: Vec<Link>,
    pub collections: Vec<CollectionInfo>,
}

/// The three feature collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionId {
    Sites,
    Observations,
    Candidates,
}

const fn q(
    name: &'static str,
    kind: Kind,
    description: &'static str,
    values: &'static [&'static str],
) -> Queryable {
    Queryable {
        name,
        kind,
        description,
        values,
    }
}

const CONFIDENCE: &[&str] = &["low", "medium", "high"];

const SITE_QUERYABLES: &[Queryable] = &[
    q("id", Kind::String, "the site's stable id", &[]),
    q("name", Kind::String, "the site's name", &[]),
    q(
        "country",
        Kind::String,
        "ISO 3166-1 alpha-3 country code",
        &[],
    ),
    q(
        "kind",
        Kind::String,
        "what the site is for",
        &[
            "reactor",
            "enrichment",
            "reprocessing",
            "fuel_fabrication",
            "uranium_mining_milling",
            "test_site",
            "missile_base",
            "launch_site",
            "shipyard",
            "production",
            "research",
            "storage",
            "other",
        ],
    ),
    q(
        "declaration",
        Kind::String,
        "whether the state declared the site",
        &["declared", "acknowledged", "undeclared", "unknown"],
    ),
    q(
        "status",
        Kind::String,
        "the site's activity status",
        &[
            "active",
            "inactive",
            "under_construction",
            "dismantled",
            "abandoned",
            "unknown",
        ],
    ),
    q(
        "confidence",
        Kind::String,
        "how sure the catalogue is",
        CONFIDENCE,
    ),
    q("notes", Kind::String, "free-text notes", &[]),
    q(
        "last_observed_at",
        Kind::Timestamp,
        "when the site was last observed (the time `datetime` filters on)",
        &[],
    ),
    q(
        "observation_count",
        Kind::Integer,
        "how many observations are linked to the site",
        &[],
    ),
    q(
        "retired",
        Kind::Boolean,
        "whether the site is retired (with include_retired=true)",
        &[],
    ),
    q(
        "geometry",
        Kind::Geometry,
        "the footprint, a Polygon or MultiPolygon",
        &[],
    ),
];

const FINDINGS: &[&str] = &[
    "new_construction",
    "demolition",
    "excavation",
    "vehicle_activity",
    "thermal_signature",
    "concealment",
    "tunnel_activity",
    "launch_preparation",
    "no_change",
    "other",
];

const OBSERVATION_QUERYABLES: &[Queryable] = &[
    q("id", Kind::String, "the observation's id", &[]),
    q(
        "observed_at",
        Kind::Timestamp,
        "when the image was taken (the time `datetime` filters on)",
        &[],
    ),
    q(
        "recorded_at",
        Kind::Timestamp,
        "when the observation was imported",
        &[],
    ),
    q("batch_id", Kind::String, "the import batch", &[]),
    q("sensor", Kind::String, "the sensor or platform", &[]),
    q("finding", Kind::String, "what was seen", FINDINGS),
    q(
        "confidence",
        Kind::String,
        "how sure the analyst is",
        CONFIDENCE,
    ),
    q(
        "site_id",
        Kind::String,
        "the site the observation named",
        &[],
    ),
    q("description", Kind::String, "free text", &[]),
    q("image_ref", Kind::String, "a reference to the image", &[]),
    q("source", Kind::String, "who reported it", &[]),
    q("external_id", Kind::String, "the sender's own id", &[]),
    q(
        "candidate_id",
        Kind::String,
        "the candidate site it belongs to",
        &[],
    ),
    q(
        "geometry",
        Kind::Geometry,
        "where: a Point, Polygon or MultiPolygon",
        &[],
    ),
];

const CANDIDATE_QUERYABLES: &[Queryable] = &[
    q("id", Kind::String, "the candidate's id", &[]),
    q(
        "state",
        Kind::String,
        "open, promoted or dismissed",
        &["open", "promoted", "dismissed"],
    ),
    q(
        "created_at",
        Kind::Timestamp,
        "when the cluster became a candidate (the time `datetime` filters on)",
        &[],
    ),
    q("batch_id", Kind::String, "the batch that created it", &[]),
    q(
        "observation_count",
        Kind::Integer,
        "how many observations it holds",
        &[],
    ),
    q(
        "first_observed_at",
        Kind::Timestamp,
        "its earliest observation",
        &[],
    ),
    q(
        "last_observed_at",
        Kind::Timestamp,
        "its latest observation",
        &[],
    ),
    q(
        "decided_at",
        Kind::Timestamp,
        "when it was promoted or dismissed",
        &[],
    ),
    q("site_id", Kind::String, "the site it was promoted to", &[]),
    q("note", Kind::String, "the analyst's note", &[]),
    q(
        "geometry",
        Kind::Geometry,
        "the centre of the cluster, a Point",
        &[],
    ),
];

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

    fn title(self) -> &'static str {
        match self {
            Self::Sites => "Nuclear and missile sites",
            Self::Observations => "Observations",
            Self::Candidates => "Candidate undeclared sites",
        }
    }

    fn description(self) -> &'static str {
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

    pub fn queryables(self) -> &'static [Queryable] {
        match self {
            Self::Sites => SITE_QUERYABLES,
            Self::Observations => OBSERVATION_QUERYABLES,
            Self::Candidates => CANDIDATE_QUERYABLES,
        }
    }

    /// The property `datetime` is matched against.
    pub fn time_property(self) -> &'static str {
        match self {
            Self::Sites => "last_observed_at",
            Self::Observations => "observed_at",
            Self::Candidates => "created_at",
        }
    }

    fn geometry_format(self) -> &'static str {
        match self {
            Self::Sites => "geometry-polygon-or-multipolygon",
            Self::Observations => "geometry-any",
            Self::Candidates => "geometry-point",
        }
    }

    /// Columns of the CSV form, before any the features add.
    pub fn csv_columns(self) -> &'static [&'static str] {
        match self {
            Self::Sites => &[
                "name",
                "alt_names",
                "country",
                "kind",
                "declaration",
                "status",
                "confidence",
                "sources",
                "notes",
                "last_observed_at",
                "observation_count",
            ],
            Self::Observations => &[
                "observed_at",
                "recorded_at",
                "batch_id",
                "sensor",
                "finding",
                "confidence",
                "site_id",
                "description",
                "image_ref",
                "source",
                "external_id",
                "candidate_id",
                "sites",
            ],
            Self::Candidates => &[
                "state",
                "created_at",
                "batch_id",
                "declaration",
                "status",
                "confidence",
                "observation_ids",
                "observation_count",
                "first_observed_at",
                "last_observed_at",
                "decided_at",
                "site_id",
                "note",
            ],
        }
    }
}

fn unknown_collection(raw: &str) -> ApiError {
    ApiError::NotFound {
        detail: format!(
            "no collection {raw:?}; the collections are sites, observations and candidates"
        ),
    }
}

/// The only output format of the metadata documents is JSON; `f` may say so.
fn json_only(p: &Params) -> Result<(), ApiError> {
    match p.typed("f")? {
        None | Some("json") => Ok(()),
        Some(other) => Err(ApiError::bad(
            "f",
            format!("f must be json here, got {other:?}"),
        )),
    }
}

fn json_doc(body: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok().content_type(JSON).json(body)
}

/// Landing page.
#[utoipa::path(
    get,
    path = "/api",
    tag = "Capabilities",
    operation_id = "getLandingPage",
    params(super::openapi::FormatParams),
    responses(
        (status = 200, description = "Links to the API definition, the conformance declaration and the collections", body = LandingPage, content_type = "application/json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn landing(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    json_only(&Params::parse(req.query_string())?)?;
    let base = base_url(&req);
    Ok(json_doc(&LandingPage {
        title: "sitewatch".into(),
        description: "A catalogue of nuclear and missile sites, the observations made of them, and candidate undeclared sites: OGC API - Features with geodesic proximity and history.".into(),
        links: vec![
            Link::new(format!("{base}/api"), "self", JSON, "This document"),
            Link::new(format!("{base}/api/openapi.json"), "service-desc", OPENAPI_TYPE, "The API definition (OpenAPI 3.0)"),
            Link::new(format!("{base}/api/docs"), "service-doc", "text/html", "The API documentation"),
            Link::new(format!("{base}/api/conformance"), "conformance", JSON, "The conformance classes implemented"),
            Link::new(format!("{base}/api/collections"), "data", JSON, "The feature collections"),
        ],
    }))
}

/// Conformance declaration.
#[utoipa::path(
    get,
    path = "/api/conformance",
    tag = "Capabilities",
    operation_id = "getConformanceDeclaration",
    params(super::openapi::FormatParams),
    responses(
        (status = 200, description = "The conformance classes this server implements", body = Conformance, content_type = "application/json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn conformance(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    json_only(&Params::parse(req.query_string())?)?;
    Ok(json_doc(&Conformance {
        conforms_to: CONFORMANCE.iter().map(|c| c.to_string()).collect(),
    }))
}

fn extent(bbox: Option<[f64; 4]>, times: Option<(Timestamp, Timestamp)>) -> Extent {
    Extent {
        spatial: bbox.map(|b| SpatialExtent {
            bbox: vec![b],
            crs: CRS84.into(),
        }),
        temporal: times.map(|(a, b)| TemporalExtent {
            interval: vec![[Some(a.to_rfc3339()), Some(b.to_rfc3339())]],
            trs: GREGORIAN.into(),
        }),
    }
}

fn span(times: impl Iterator<Item = Timestamp>) -> Option<(Timestamp, Timestamp)> {
    times.fold(None, |acc, t| match acc {
        None => Some((t, t)),
        Some((a, b)) => Some((a.min(t), b.max(t))),
    })
}

async fn collection_info(
    c: CollectionId,
    cat: &Arc<Catalogue>,
    base: &str,
) -> Result<CollectionInfo, ApiError> {
    let extent = match c {
        CollectionId::Sites => {
            // Both kept up to date as data changes, not computed per request.
            extent(cat.index().bounds(), cat.observed_span())
        }
        CollectionId::Observations => {
            // One aggregate query, not a read of every observation.
            match blocking(cat, |c| c.observation_extent()).await? {
                Some((b, first, last)) => extent(Some(b), span([first, last].into_iter())),
                None => extent(None, span(std::iter::empty())),
            }
        }
        CollectionId::Candidates => match blocking(cat, |c| c.candidate_extent()).await? {
            Some((b, first, last)) => extent(Some(b), span([first, last].into_iter())),
            None => extent(None, span(std::iter::empty())),
        },
    };
    let here = format!("{base}/api/collections/{}", c.id());
    Ok(CollectionInfo {
        id: c.id().into(),
        title: c.title().into(),
        description: c.description().into(),
        item_type: "feature".into(),
        extent,
        crs: vec![CRS84.into()],
        storage_crs: CRS84.into(),
        links: vec![
            Link::new(&here, "self", JSON, "This collection"),
            Link::new(
                format!("{here}/items"),
                "items",
                GEOJSON,
                "The items as GeoJSON",
            ),
            Link::new(
                format!("{here}/items?f=csv"),
                "items",
                "text/csv",
                "The items as CSV with WKT geometry",
            ),
            Link::new(
                format!("{here}/queryables"),
                "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                SCHEMA_JSON,
                "The properties a filter may name",
            ),
            Link::new(
                format!("{here}/sortables"),
                "http://www.opengis.net/def/rel/ogc/1.0/sortables",
                SCHEMA_JSON,
                "The properties sortby may name",
            ),
        ],
    })
}

/// The feature collections.
#[utoipa::path(
    get,
    path = "/api/collections",
    tag = "Capabilities",
    operation_id = "getCollections",
    params(super::openapi::FormatParams),
    responses(
        (status = 200, description = "The collections with their extents", body = Collections, content_type = "application/json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn collections(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    json_only(&Params::parse(req.query_string())?)?;
    let base = base_url(&req);
    let mut list = Vec::new();
    for c in CollectionId::ALL {
        list.push(collection_info(c, &cat, &base).await?);
    }
    Ok(json_doc(&Collections {
        links: vec![Link::new(
            format!("{base}/api/collections"),
            "self",
            JSON,
            "This document",
        )],
        collections: list,
    }))
}

fn collection_id(raw: &str) -> Result<CollectionId, ApiError> {
    CollectionId::parse(raw).ok_or_else(|| unknown_collection(raw))
}

/// One collection's metadata.
#[utoipa::path(
    get,
    path = "/api/collections/{collectionId}",
    tag = "Capabilities",
    operation_id = "describeCollection",
    params(
        ("collectionId" = CollectionName, Path, description = "sites, observations or candidates"),
        super::openapi::FormatParams,
    ),
    responses(
        (status = 200, description = "The collection with its extent and links", body = CollectionInfo, content_type = "application/json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn collection(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let c = collection_id(&path)?;
    json_only(&Params::parse(req.query_string())?)?;
    Ok(json_doc(&collection_info(c, &cat, &base_url(&req)).await?))
}

/// A JSON Schema of the named properties, as queryables and sortables are.
fn properties_schema(req: &HttpRequest, c: CollectionId, what: &str, geometry: bool) -> Value {
    let mut props = Map::new();
    for q in c.queryables() {
        if q.kind == Kind::Geometry && !geometry {
            continue;
        }
        let mut s = match q.kind {
            Kind::String => json!({"type": "string"}),
            Kind::Integer => json!({"type": "integer"}),
            Kind::Boolean => json!({"type": "boolean"}),
            Kind::Timestamp => json!({"type": "string", "format": "date-time"}),
            Kind::Geometry => json!({"format": c.geometry_format()}),
        };
        s["title"] = json!(q.name);
        s["description"] = json!(q.description);
        if !q.values.is_empty() {
            s["enum"] = json!(q.values);
        }
        props.insert(q.name.into(), s);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{}{}", base_url(req), req.path()),
        "type": "object",
        "title": format!("{} of {}", what, c.id()),
        "properties": props,
        "additionalProperties": false,
    })
}

/// The properties a CQL2 filter may name, as a JSON Schema.
#[utoipa::path(
    get,
    path = "/api/collections/{collectionId}/queryables",
    tag = "Capabilities",
    operation_id = "getQueryables",
    params(
        ("collectionId" = CollectionName, Path, description = "sites, observations or candidates"),
        super::openapi::FormatParams,
    ),
    responses(
        (status = 200, description = "A JSON Schema of the queryable properties", body = Object, content_type = "application/schema+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn queryables(
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let c = collection_id(&path)?;
    json_only(&Params::parse(req.query_string())?)?;
    Ok(HttpResponse::Ok()
        .content_type(SCHEMA_JSON)
        .json(properties_schema(&req, c, "Queryables", true)))
}

/// The properties `sortby` may name, as a JSON Schema.
#[utoipa::path(
    get,
    path = "/api/collections/{collectionId}/sortables",
    tag = "Capabilities",
    operation_id = "getSortables",
    params(
        ("collectionId" = CollectionName, Path, description = "sites, observations or candidates"),
        super::openapi::FormatParams,
    ),
    responses(
        (status = 200, description = "A JSON Schema of the sortable properties", body = Object, content_type = "application/schema+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sortables(
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let c = collection_id(&path)?;
    json_only(&Params::parse(req.query_string())?)?;
    Ok(HttpResponse::Ok()
        .content_type(SCHEMA_JSON)
        .json(properties_schema(&req, c, "Sortables", false)))
}

/// How items are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GeoJson,
    Csv,
}

impl Format {
    /// `f=json|csv` decides; without it, a client that prefers `text/csv` in
    /// its `Accept` header gets CSV, everyone else GeoJSON.
    pub fn negotiate(p: &Params, req: &HttpRequest) -> Result<Self, ApiError> {
        match p.typed("f")? {
            Some("json" | "geojson") => return Ok(Format::GeoJson),
            Some("csv") => return Ok(Format::Csv),
            Some(other) => {
                return Err(ApiError::bad(
                    "f",
                    format!("f must be json or csv, got {other:?}"),
                ));
            }
            None => {}
        }
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (mut csv_q, mut json_q) = (0.0_f64, 0.0_f64);
        for part in accept.split(',') {
            let mut bits = part.split(';');
            let media = bits.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = bits
                .filter_map(|b| b.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "text/csv" => csv_q = csv_q.max(quality),
                "application/geo+json" | "application/json" | "application/*" | "*/*" => {
                    json_q = json_q.max(quality)
                }
                _ => {}
            }
        }
        Ok(if csv_q > json_q {
            Format::Csv
        } else {
            Format::GeoJson
        })
    }
}

/// The item-query parameters every collection shares, checked.
pub struct ItemQuery {
    pub collection: CollectionId,
    pub limit: usize,
    /// The `limit` asked for when it was above the maximum.
    pub clamped_from: Option<u64>,
    pub bbox: Option<BBox>,
    pub datetime: Option<Interval>,
    pub filter: Option<cql::Expr>,
    pub sortby: Vec<(&'static Queryable, bool)>,
    pub after: Option<Vec<Scalar>>,
    pub before: Option<Vec<Scalar>>,
    pub format: Format,
}

fn check_crs(p: &Params, name: &str) -> Result<(), ApiError> {
    match p.get(name)? {
        None => Ok(()),
        Some(c) if c == CRS84 || c == "[OGC:CRS84]" => Ok(()),
        Some(other) => Err(ApiError::bad(
            name,
            format!("{name} must be {CRS84} (longitude, latitude), got {other:?}"),
        )),
    }
}

impl ItemQuery {
    pub fn parse(
        p: &Params,
        req: &HttpRequest,
        collection: CollectionId,
    ) -> Result<Self, ApiError> {
        let (limit, clamped_from) = p.limit_clamped(ITEMS_DEFAULT, ITEMS_MAX)?;
        for name in ["crs", "bbox-crs", "filter-crs"] {
            check_crs(p, name)?;
        }
        let queryables = collection.queryables();
        let lang = match p.typed("filter-lang")? {
            None => cql::Lang::Text,
            Some(l) => cql::Lang::parse(l).ok_or_else(|| {
                ApiError::bad(
                    "filter-lang",
                    format!("filter-lang must be cql2-text or cql2-json, got {l:?}"),
                )
            })?,
        };
        let filter = match p.get("filter")? {
            None => None,
            Some(raw) => Some(
                cql::parse(raw, lang, queryables)
                    .map_err(|e| ApiError::bad("filter", e.to_string()))?,
            ),
        };
        let mut sortby = Vec::new();
        for raw in p.list("sortby")? {
            // A `+` in a query string arrives as a space.
            let (name, desc) = match raw.trim() {
                r if r.starts_with('-') => (&r[1..], true),
                r => (r.trim_start_matches('+'), false),
            };
            let q = queryables
                .iter()
                .find(|q| q.name == name && q.kind != Kind::Geometry)
                .ok_or_else(|| {
                    ApiError::bad(
                        "sortby",
                        format!(
                            "cannot sort by {name:?}; the sortables are {}",
                            queryables
                                .iter()
                                .filter(|q| q.kind != Kind::Geometry)
                                .map(|q| q.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            if sortby
                .iter()
                .any(|(s, _): &(&Queryable, bool)| s.name == q.name)
            {
                return Err(ApiError::bad("sortby", format!("{name} is named twice")));
            }
            sortby.push((q, desc));
        }
        let mut query = Self {
            collection,
            limit,
            clamped_from,
            bbox: p.bbox()?,
            datetime: p.datetime()?,
            filter,
            sortby,
            after: None,
            before: None,
            format: Format::negotiate(p, req)?,
        };
        query.after = p
            .get("after")?
            .map(|c| query.decode_cursor("after", c))
            .transpose()?;
        query.before = p
            .get("before")?
            .map(|c| query.decode_cursor("before", c))
            .transpose()?;
        if query.after.is_some() && query.before.is_some() {
            return Err(ApiError::bad("before", "give after or before, not both"));
        }
        Ok(query)
    }

    /// The sort key of a record: the `sortby` properties, then the id.
    fn key(&self, r: &dyn Record) -> Vec<Scalar> {
        self.sortby
            .iter()
            .map(|(q, _)| r.property(q.name))
            .chain([r.property("id")])
            .collect()
    }

    fn compare(&self, a: &[Scalar], b: &[Scalar]) -> Ordering {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let desc = self.sortby.get(i).is_some_and(|(_, d)| *d);
            let o = x.sort_cmp(y);
            let o = if desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// A cursor is the sort key of the item it follows or precedes: the bare id
    /// when items are in id order (as `after=<id>` always was), otherwise a JSON
    /// array of the key's values.
    fn encode_cursor(&self, key: &[Scalar]) -> String {
        if self.sortby.is_empty() {
            match &key[0] {
                Scalar::Str(id) => id.clone(),
                other => other.to_json().to_string(),
            }
        } else {
            Value::Array(key.iter().map(Scalar::to_json).collect()).to_string()
        }
    }

    fn decode_cursor(&self, name: &str, raw: &str) -> Result<Vec<Scalar>, ApiError> {
        let bad = || {
            ApiError::bad(
                name,
                format!(
                    "{name} is not a cursor this server issued: follow the next and prev links"
                ),
            )
        };
        if self.sortby.is_empty() {
            return Ok(vec![Scalar::Str(raw.to_owned())]);
        }
        let v: Vec<Value> = serde_json::from_str(raw).map_err(|_| bad())?;
        if v.len() != self.sortby.len() + 1 {
            return Err(bad());
        }
        self.sortby
            .iter()
            .map(|(q, _)| q.kind)
            .chain([Kind::String])
            .zip(&v)
            .map(|(k, v)| Scalar::from_json(k, v).ok_or_else(bad))
            .collect()
    }

    /// Applies `datetime` and `filter`, sorts, and cuts out the page the
    /// cursor asks for. Keyset paging: a page starts strictly after (or ends
    /// strictly before) a key, so items that land meanwhile never shift it.
    pub fn select<T: Record>(&self, items: Vec<T>) -> Selection<T> {
        let time = self.collection.time_property();
        let mut keyed: Vec<(Vec<Scalar>, T)> = items
            .into_iter()
            .filter(|r| {
                self.datetime.is_none_or(|i| match r.property(time) {
                    Scalar::Time(t) => i.contains(t),
                    _ => false,
                })
            })
            .filter(|r| self.filter.as_ref().is_none_or(|f| f.matches(r)))
            .map(|r| (self.key(&r), r))
            .collect();
        keyed.sort_by(|a, b| self.compare(&a.0, &b.0));
        let matched = keyed.len();
        let (start, end) = match (&self.after, &self.before) {
            (Some(after), _) => {
                let s = keyed.partition_point(|(k, _)| self.compare(k, after) != Ordering::Greater);
                (s, (s + self.limit).min(matched))
            }
            (None, Some(before)) => {
                let e = keyed.partition_point(|(k, _)| self.compare(k, before) == Ordering::Less);
                (e.saturating_sub(self.limit), e)
            }
            (None, None) => (0, self.limit.min(matched)),
        };
        let next = (end < matched && end > start).then(|| self.encode_cursor(&keyed[end - 1].0));
        let prev = (start > 0 && end > start).then(|| self.encode_cursor(&keyed[start].0));
        let page = keyed
            .into_iter()
            .skip(start)
            .take(end - start)
            .map(|(_, r)| r)
            .collect();
        Selection {
            page,
            matched: Some(matched),
            next,
            prev,
        }
    }

    /// Whether [`ItemQuery::select_in_id_order`] can answer this query: items
    /// in id order, read forward from a cursor.
    pub fn reads_forward_by_id(&self) -> bool {
        self.sortby.is_empty() && self.before.is_none()
    }

    /// The id the page starts after, for a query that reads forward by id.
    pub fn after_id(&self) -> Option<&str> {
        match self.after.as_deref() {
            Some([Scalar::Str(id)]) => Some(id),
            _ => None,
        }
    }

    /// [`ItemQuery::select`] for items that come in id order
    /// ([`ItemQuery::reads_forward_by_id`]): `before` up to the cursor, `items`
    /// after it. Applies `datetime` and `filter` one item at a time and
    /// collects only the page; counts matches, before the cursor as well, up
    /// to `cap` beyond the page and stops there. `numberMatched` is `total`
    /// when the caller knows it, else the count, left out when it passed `cap`.
    pub fn select_in_id_order<T: Record>(
        &self,
        before: impl Iterator<Item = T>,
        items: impl Iterator<Item = T>,
        cap: usize,
        total: Option<usize>,
    ) -> Selection<T> {
        let time = self.collection.time_property();
        let wanted = |r: &T| {
            self.datetime.is_none_or(|i| match r.property(time) {
                Scalar::Time(t) => i.contains(t),
                _ => false,
            }) && self.filter.as_ref().is_none_or(|f| f.matches(r))
        };
        let limit = self.limit + cap;
        let earlier = if total.is_some() {
            0
        } else {
            before.filter(|r| wanted(r)).take(limit + 1).count()
        };
        let mut page = Vec::new();
        let mut matched = earlier;
        for r in items.filter(|r| wanted(r)) {
            matched += 1;
            if page.len() < self.limit {
                page.push(r);
            } else if matched > limit {
                break;
            }
        }
        let more = matched > earlier + page.len();
        let key_of = |r: Option<&T>| r.map(|r| self.encode_cursor(&self.key(r)));
        Selection {
            next: key_of(page.last()).filter(|_| more),
            // Unfiltered, the items before a cursor were not counted: any
            // cursor has some before it.
            prev: key_of(page.first())
                .filter(|_| earlier > 0 || (total.is_some() && self.after.is_some())),
            matched: total.or((matched <= limit).then_some(matched)),
            page,
        }
    }

    /// Writes a page as a GeoJSON FeatureCollection or CSV, with `self`,
    /// `alternate`, `next` and `prev` links (in a `Link` header for CSV).
    pub fn respond<T>(
        &self,
        req: &HttpRequest,
        sel: &Selection<T>,
        features: Vec<Value>,
    ) -> Result<HttpResponse, ApiError> {
        let base = base_url(req);
        let here = |drop: &[&str], add: &[(&str, &str)]| -> Result<String, ApiError> {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| !drop.contains(&k.as_str()))
                    .chain(add.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect();
            let qs = serde_urlencoded::to_string(&pairs).map_err(ApiError::internal)?;
            Ok(if qs.is_empty() {
                format!("{base}{}", req.path())
            } else {
                format!("{base}{}?{qs}", req.path())
            })
        };
        let (this_type, other_type, other_f) = match self.format {
            Format::GeoJson => (GEOJSON, "text/csv", "csv"),
            Format::Csv => ("text/csv", GEOJSON, "json"),
        };
        let mut links = vec![
            Link::new(
                format!("{base}{}", req.uri()),
                "self",
                this_type,
                "This page",
            ),
            Link::new(
                here(&["f"], &[("f", other_f)])?,
                "alternate",
                other_type,
                "This page in another format",
            ),
            Link::new(
                format!("{base}/api/collections/{}", self.collection.id()),
                "collection",
                JSON,
                "The collection",
            ),
        ];
        if let Some(n) = &sel.next {
            links.push(Link::new(
                here(&["after", "before"], &[("after", n)])?,
                "next",
                this_type,
                "The next page",
            ));
        }
        if let Some(p) = &sel.prev {
            links.push(Link::new(
                here(&["after", "before"], &[("before", p)])?,
                "prev",
                this_type,
                "The previous page",
            ));
        }
        let mut resp = HttpResponse::Ok();
        if let Some(asked) = self.clamped_from {
            resp.insert_header((
                "Sitewatch-Limit-Clamped",
                format!("{asked} -> {}", self.limit),
            ));
        }
        match self.format {
            Format::Csv => {
                let link_header = links
                    .iter()
                    .filter(|l| matches!(l.rel.as_str(), "next" | "prev" | "alternate"))
                    .map(|l| format!("<{}>; rel=\"{}\"", l.href, l.rel))
                    .collect::<Vec<_>>()
                    .join(", ");
                if !link_header.is_empty() {
                    resp.insert_header((header::LINK, link_header));
                }
                if let Some(m) = sel.matched {
                    resp.insert_header(("OGC-NumberMatched", m.to_string()));
                }
                Ok(resp
                    .content_type(CSV)
                    .body(csv::features(self.collection.csv_columns(), &features)))
            }
            Format::GeoJson => {
                let mut doc = Map::new();
                doc.insert("type".into(), json!("FeatureCollection"));
                doc.insert("timeStamp".into(), json!(Timestamp::now()));
                if let Some(m) = sel.matched {
                    doc.insert("numberMatched".into(), json!(m));
                }
                doc.insert("numberReturned".into(), json!(features.len()));
                if let Some(asked) = self.clamped_from {
                    doc.insert(
                        "limitClamped".into(),
                        json!({"requested": asked, "applied": self.limit}),
                    );
                }
                doc.insert(
                    "links".into(),
                    serde_json::to_value(&links).map_err(ApiError::internal)?,
                );
                doc.insert("features".into(), Value::Array(features));
                Ok(resp.content_type(GEOJSON).json(Value::Object(doc)))
            }
        }
    }
}

/// One page of a query, and where the pages beside it start.
pub struct Selection<T> {
    pub page: Vec<T>,
    /// How many items match in all; `None` where counting them would cost
    /// more than a page is worth.
    pub matched: Option<usize>,
    pub next: Option<String>,
    pub prev: Option<String>,
}

fn text(s: &Option<String>) -> Scalar {
    s.as_ref().map_or(Scalar::Null, |s| Scalar::Str(s.clone()))
}

fn time(t: Option<Timestamp>) -> Scalar {
    t.map_or(Scalar::Null, Scalar::Time)
}

/// An observation as a filter and the CSV writer see it.
struct ObservationItem {
    o: StoredObservation,
    place: OnceCell<Option<Place>>,
}

impl ObservationItem {
    fn place(&self) -> Option<&Place> {
        self.place
            .get_or_init(|| Place::parse("geometry", &self.o.geometry).ok())
            .as_ref()
    }

    fn feature(&self, base: &str) -> Value {
        let o = &self.o;
        json!({
            "type": "Feature",
            "id": o.id,
            "geometry": o.geometry,
            "properties": {
                "observed_at": o.observed_at, "recorded_at": o.recorded_at, "batch_id": o.batch_id,
                "sensor": o.sensor, "finding": o.finding, "confidence": o.confidence,
                "site_id": o.site_id, "description": o.description, "image_ref": o.image_ref,
                "source": o.source, "external_id": o.external_id, "candidate_id": o.candidate_id,
                "sites": o.sites,
            },
            "links": [Link::new(format!("{base}/api/collections/observations/items/{}", o.id), "self", GEOJSON, "")],
        })
    }
}

impl Record for ObservationItem {
    fn property(&self, name: &str) -> Scalar {
        let o = &self.o;
        match name {
            "id" => Scalar::Str(o.id.clone()),
            "observed_at" => Scalar::Time(o.observed_at),
            "recorded_at" => Scalar::Time(o.recorded_at),
            "batch_id" => Scalar::Str(o.batch_id.clone()),
            "sensor" => Scalar::Str(o.sensor.clone()),
            "finding" => Scalar::Str(o.finding.clone()),
            "confidence" => Scalar::Str(o.confidence.clone()),
            "site_id" => text(&o.site_id),
            "description" => text(&o.description),
            "image_ref" => text(&o.image_ref),
            "source" => text(&o.source),
            "external_id" => text(&o.external_id),
            "candidate_id" => text(&o.candidate_id),
            _ => Scalar::Null,
        }
    }

    fn geometry(&self) -> Option<Geom<'_>> {
        self.place().map(Geom::from)
    }
}

/// Observations.
#[utoipa::path(
    get,
    path = "/api/collections/observations/items",
    tag = "Data",
    operation_id = "getObservations",
    params(super::openapi::ItemsParams, super::openapi::ObservationFilterParams),
    responses(
        (status = 200, description = "A page of observations", content(
            ("application/geo+json" = ObservationCollection),
            ("text/csv" = String),
        )),
        (status = 400, description = "A parameter is wrong; `parameter` names it", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn observation_items(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let query = ItemQuery::parse(&p, &req, CollectionId::Observations)?;
    let findings: Vec<String> = p
        .list("finding")?
        .iter()
        .map(|f| Finding::parse("finding", f).map(|f| f.as_str().to_owned()))
        .collect::<Result<_, _>>()?;
    let sensors = p.list("sensor")?;
    let rects = query.bbox.map(|b| b.pieces());
    let bound = |b: cql::Bound| match b {
        cql::Bound::At(t) => Some(t),
        _ => None,
    };
    let since = query.datetime.and_then(|i| bound(i.start));
    let until = query.datetime.and_then(|i| bound(i.end));
    let bbox = query.bbox;
    let exact = move |i: &ObservationItem| {
        // SQL matched the bounds; the exact test is on the geometry itself.
        bbox.is_none_or(|b| {
            i.place()
                .is_some_and(|p| cql::geom_meets_bbox(p.into(), &b))
        })
    };
    if query.sortby.is_empty()
        && query.filter.is_none()
        && query.before.is_none()
        && sensors.is_empty()
    {
        // Id order, the bounds, the window and the findings are all answered
        // by the store's indexes: read one page, not the collection.
        let after = match query.after.as_deref() {
            Some([Scalar::Str(id)]) => Some(id.clone()),
            _ => None,
        };
        let limit = query.limit;
        let (rows, matched) = blocking(&cat, move |c| {
            let rows = c.observations_page(
                rects.as_deref(),
                since,
                until,
                &findings,
                after.as_deref(),
                limit + 1,
            )?;
            // With a box the exact geometry test runs on the page only, so
            // no count would be exact: none is made.
            let matched = match rects {
                Some(_) => None,
                None => c.count_observations(None, since, until, &findings, COUNT_CAP)?,
            };
            Ok::<_, ApiError>((rows, matched))
        })
        .await?;
        let more = rows.len() > limit;
        let last_read = rows
            .get(limit.min(rows.len()).wrapping_sub(1))
            .map(|o| o.id.clone());
        let page: Vec<ObservationItem> = rows
            .into_iter()
            .take(limit)
            .map(|o| ObservationItem {
                o,
                place: OnceCell::new(),
            })
            .filter(exact)
            .collect();
        let sel = Selection {
            // A box is tested exactly only on the page, so its count is known
            // only without one.
            matched,
            next: last_read.filter(|_| more),
            prev: None,
            page,
        };
        let base = base_url(&req);
        let features = sel.page.iter().map(|i| i.feature(&base)).collect();
        return query.respond(&req, &sel, features);
    }
    let stored = blocking(&cat, move |c| {
        c.observations_matching(rects.as_deref(), since, until, &findings)
    })
    .await?;
    let items: Vec<ObservationItem> = stored
        .into_iter()
        .filter(|o| sensors.is_empty() || sensors.contains(&o.sensor))
        .map(|o| ObservationItem {
            o,
            place: OnceCell::new(),
        })
        .filter(exact)
        .collect();
    let sel = query.select(items);
    let base = base_url(&req);
    let features = sel.page.iter().map(|i| i.feature(&base)).collect();
    query.respond(&req, &sel, features)
}

/// Counting more matches than this costs more than a page is worth; past it,
/// `numberMatched` is left out, as OGC API - Features allows.
pub(crate) const COUNT_CAP: usize = 10_000;

/// A single-item response may only be asked for in JSON.
fn single_item(req: &HttpRequest) -> Result<(), ApiError> {
    match Params::parse(req.query_string())?.typed("f")? {
        None | Some("json" | "geojson") => Ok(()),
        Some(other) => Err(ApiError::bad(
            "f",
            format!("a single item is served as json only, not {other:?}"),
        )),
    }
}

/// One observation.
#[utoipa::path(
    get,
    path = "/api/collections/observations/items/{id}",
    tag = "Data",
    operation_id = "getObservation",
    params(
        ("id" = String, Path, description = "the observation's id"),
        super::openapi::FormatParams,
    ),
    responses(
        (status = 200, description = "The observation", body = ObservationFeature, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such observation", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn observation_item(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    single_item(&req)?;
    let id = path.into_inner();
    let wanted = id.clone();
    let o = blocking(&cat, move |c| c.observation(&wanted))
        .await?
        .ok_or_else(|| ApiError::NotFound {
            detail: format!("no observation with id {id:?}"),
        })?;
    let item = ObservationItem {
        o,
        place: OnceCell::new(),
    };
    Ok(HttpResponse::Ok()
        .content_type(GEOJSON)
        .json(item.feature(&base_url(&req))))
}

/// A candidate as a filter and the CSV writer see it.
struct CandidateItem {
    c: Candidate,
    place: Place,
}

impl Record for CandidateItem {
    fn property(&self, name: &str) -> Scalar {
        let c = &self.c;
        match name {
            "id" => Scalar::Str(c.id.clone()),
            "state" => Scalar::Str(c.state.clone()),
            "created_at" => Scalar::Time(c.created_at),
            "batch_id" => Scalar::Str(c.batch_id.clone()),
            "observation_count" => Scalar::Num(c.observation_ids.len() as f64),
            "first_observed_at" => time(c.first_observed_at),
            "last_observed_at" => time(c.last_observed_at),
            "decided_at" => time(c.decided_at),
            "site_id" => text(&c.site_id),
            "note" => text(&c.note),
            _ => Scalar::Null,
        }
    }

    fn geometry(&self) -> Option<Geom<'_>> {
        Some((&self.place).into())
    }
}

fn candidate_with_links(c: &Candidate, base: &str) -> Value {
    let mut f = candidate_feature(c);
    f["links"] = json!([Link::new(
        format!("{base}/api/collections/candidates/items/{}", c.id),
        "self",
        GEOJSON,
        ""
    )]);
    f
}

/// Candidate undeclared sites.
#[utoipa::path(
    get,
    path = "/api/collections/candidates/items",
    tag = "Data",
    operation_id = "getCandidates",
    params(super::openapi::ItemsParams, super::openapi::CandidateFilterParams),
    responses(
        (status = 200, description = "A page of candidates", content(
            ("application/geo+json" = CandidateCollection),
            ("text/csv" = String),
        )),
        (status = 400, description = "A parameter is wrong; `parameter` names it", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn candidate_items(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let query = ItemQuery::parse(&p, &req, CollectionId::Candidates)?;
    let states = p.list("state")?;
    if let Some(bad) = states
        .iter()
        .find(|s| !["open", "promoted", "dismissed"].contains(&s.as_str()))
    {
        return Err(ApiError::bad(
            "state",
            format!("state must be open, promoted or dismissed, got {bad:?}"),
        ));
    }
    let all = blocking(&cat, |c| c.candidates(None)).await?;
    let bbox = query.bbox;
    let items: Vec<CandidateItem> = all
        .into_iter()
        .filter(|c| states.is_empty() || states.contains(&c.state))
        .map(|c| CandidateItem {
            place: Place::Point(LonLat::from_computed(c.lon, c.lat)),
            c,
        })
        .filter(|i| bbox.is_none_or(|b| cql::geom_meets_bbox((&i.place).into(), &b)))
        .collect();
    let sel = query.select(items);
    let base = base_url(&req);
    let features = sel
        .page
        .iter()
        .map(|i| candidate_with_links(&i.c, &base))
        .collect();
    query.respond(&req, &sel, features)
}

/// One candidate.
#[utoipa::path(
    get,
    path = "/api/collections/candidates/items/{id}",
    tag = "Data",
    operation_id = "getCandidate",
    params(
        ("id" = String, Path, description = "the candidate's id"),
        super::openapi::FormatParams,
    ),
    responses(
        (status = 200, description = "The candidate", body = CandidateFeature, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such candidate", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn candidate_item(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    single_item(&req)?;
    let id = path.into_inner();
    let wanted = id.clone();
    let c = blocking(&cat, move |c| c.candidate(&wanted))
        .await?
        .ok_or_else(|| ApiError::NotFound {
            detail: format!("no candidate with id {id:?}"),
        })?;
    Ok(HttpResponse::Ok()
        .content_type(GEOJSON)
        .json(candidate_with_links(&c, &base_url(&req))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn format(query: &str, accept: Option<&str>) -> Result<Format, ApiError> {
        let mut r = TestRequest::default();
        if let Some(a) = accept {
            r = r.insert_header((header::ACCEPT, a));
        }
        Format::negotiate(&Params::parse(query).unwrap(), &r.to_http_request())
    }

    #[test]
    fn csv_is_chosen_by_f_or_by_an_accept_header_that_prefers_it() {
        assert_eq!(format("f=csv", None).unwrap(), Format::Csv);
        assert_eq!(format("f=json", Some("text/csv")).unwrap(), Format::GeoJson);
        assert_eq!(format("", Some("text/csv")).unwrap(), Format::Csv);
        assert_eq!(
            format("", Some("application/geo+json, text/csv;q=0.5")).unwrap(),
            Format::GeoJson
        );
        assert_eq!(format("", Some("*/*")).unwrap(), Format::GeoJson);
        assert_eq!(format("", None).unwrap(), Format::GeoJson);
        assert!(format("f=xml", None).is_err());
    }

    #[test]
    fn the_bounds_of_a_geometry_across_the_antimeridian_span_every_longitude() {
        let g = json!({"type": "Polygon", "coordinates": [[[179.9, 0.0], [-179.9, 0.0], [-179.9, 1.0], [179.9, 0.0]]]});
        assert_eq!(
            crate::model::geojson_bounds(&g),
            Some([-180.0, 0.0, 180.0, 1.0])
        );
        let p = json!({"type": "Point", "coordinates": [125.0, 39.0]});
        assert_eq!(
            crate::model::geojson_bounds(&p),
            Some([125.0, 39.0, 125.0, 39.0])
        );
    }

    #[derive(Clone, Copy)]
    struct Row(&'static str, f64);

    impl Record for Row {
        fn property(&self, name: &str) -> Scalar {
            match name {
                "id" => Scalar::Str(self.0.into()),
                "observation_count" => Scalar::Num(self.1),
                _ => Scalar::Null,
            }
        }
        fn geometry(&self) -> Option<Geom<'_>> {
            None
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            Row("a", 3.0),
            Row("b", 1.0),
            Row("c", 3.0),
            Row("d", 2.0),
            Row("e", 1.0),
        ]
    }

    fn query(q: &str) -> ItemQuery {
        let req = TestRequest::default().to_http_request();
        ItemQuery::parse(&Params::parse(q).unwrap(), &req, CollectionId::Sites).unwrap()
    }

    fn ids(sel: &Selection<Row>) -> Vec<&'static str> {
        sel.page.iter().map(|r| r.0).collect()
    }

    #[test]
    fn a_page_read_forward_in_id_order_is_the_page_a_full_selection_gives() {
        let all = rows();
        for q in [
            "limit=2",
            "limit=2&after=b",
            "limit=2&after=c",
            "limit=10&after=a",
            "limit=1&filter=observation_count%20%3E%201",
            "limit=1&filter=observation_count%20%3E%201&after=a",
            "limit=3&filter=observation_count%20%3D%201",
            "limit=2&after=e",
        ] {
            let q = query(q);
            assert!(q.reads_forward_by_id());
            let full = q.select(rows());
            let after = q.after_id().unwrap_or("");
            let before = all
                .iter()
                .filter(|r| q.after_id().is_some() && r.0 <= after)
                .copied();
            let items = all.iter().filter(|r| r.0 > after).copied();
            let streamed = q.select_in_id_order(before, items, 100, None);
            assert_eq!(ids(&streamed), ids(&full));
            assert_eq!(streamed.matched, full.matched);
            assert_eq!(streamed.next, full.next);
            assert_eq!(streamed.prev, full.prev);
            // Counting stops past the cap, and the count is then left out.
            let capped = q.select_in_id_order(
                all.iter()
                    .filter(|r| q.after_id().is_some() && r.0 <= after)
                    .copied(),
                all.iter().filter(|r| r.0 > after).copied(),
                0,
                None,
            );
            assert_eq!(ids(&capped), ids(&full));
            if full.matched.unwrap() > q.limit {
                assert_eq!(capped.matched, None);
            }
        }
    }

    #[test]
    fn sorted_pages_follow_next_and_prev_cursors_without_gaps_or_repeats() {
        let q = query("limit=2&sortby=-observation_count");
        let first = q.select(rows());
        assert_eq!(ids(&first), ["a", "c"]);
        assert_eq!(first.matched, Some(5));
        assert!(first.prev.is_none());
        let next = first.next.clone().unwrap();
        let second = query(&format!(
            "limit=2&sortby=-observation_count&after={}",
            urlencode(&next)
        ))
        .select(rows());
        assert_eq!(ids(&second), ["d", "b"]);
        let third = query(&format!(
            "limit=2&sortby=-observation_count&after={}",
            urlencode(second.next.as_ref().unwrap())
        ))
        .select(rows());
        assert_eq!(ids(&third), ["e"]);
        assert!(third.next.is_none());
        let back = query(&format!(
            "limit=2&sortby=-observation_count&before={}",
            urlencode(third.prev.as_ref().unwrap())
        ))
        .select(rows());
        assert_eq!(ids(&back), ["d", "b"]);
    }

    #[test]
    fn a_new_item_before_the_cursor_does_not_shift_the_next_page() {
        let q = query("limit=2");
        let first = q.select(rows());
        let after = first.next.unwrap();
        let mut more = rows();
        more.push(Row("aa", 9.0));
        let second = query(&format!("limit=2&after={after}")).select(more);
        assert_eq!(ids(&second), ["c", "d"]);
    }

    fn urlencode(s: &str) -> String {
        serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
    }

    #[test]
    fn sortby_and_cursors_that_make_no_sense_name_their_parameter() {
        let req = TestRequest::default().to_http_request();
        let param =
            |q: &str| match ItemQuery::parse(&Params::parse(q).unwrap(), &req, CollectionId::Sites)
            {
                Err(ApiError::BadRequest { param, .. }) => param,
                Err(other) => panic!("{other}"),
                Ok(_) => panic!("{q} was accepted"),
            };
        assert_eq!(param("sortby=colour"), "sortby");
        assert_eq!(param("sortby=geometry"), "sortby");
        assert_eq!(param("sortby=name&after=nonsense"), "after");
        assert_eq!(param("after=a&before=b"), "before");
        assert_eq!(param("filter=nonsense%20%3D"), "filter");
        assert_eq!(param("filter-lang=sql&filter=a"), "filter-lang");
        assert_eq!(param("crs=EPSG:3857"), "crs");
    }
}
