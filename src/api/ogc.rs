//! OGC API - Features over HTTP: the landing page, conformance, collections
//! with their extents, queryables and sortables, the item-query parameters the
//! three collections share (read here into the query engine's typed values and
//! written back out as GeoJSON or CSV with paging links), and the observation
//! and candidate items.

use super::deadline::blocking;
use super::error::ApiError;
use super::params::Params;
use super::routes::{GEOJSON, base_url};
use crate::catalogue::Catalogue;
use crate::model::{BBox, CandidateState, Finding, Timestamp};
use crate::model::{Candidate, StoredObservation};
use crate::query::cql::{self, Scalar};
use crate::query::{
    COUNT_CAP, CandidateRecord, CollectionId, Cursors, ObservationRecord, Selection, Selector,
    SortKey, csv, select,
};
use crate::render::{candidate_feature, observation_feature};
use crate::store::Before;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

pub const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
const GREGORIAN: &str = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian";
const OPENAPI_TYPE: &str = "application/vnd.oai.openapi+json;version=3.0";
pub const CSV: &str = "text/csv; charset=utf-8";
const JSON: &str = "application/json";
const SCHEMA_JSON: &str = "application/schema+json";
const XSD: &str = "application/xml";

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
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/schemas",
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
        // Where `servers` + `/` of the API document leads.
        .route("/api/", web::get().to(landing))
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
            "/api/collections/{collectionId}/schema",
            web::get().to(schema),
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
            // The relation's name in the drafts, which GDAL looks for.
            Link::new(
                format!("{here}/queryables"),
                "queryables",
                SCHEMA_JSON,
                "The properties a filter may name",
            ),
            Link::new(
                format!("{here}/schema"),
                "http://www.opengis.net/def/rel/ogc/1.0/schema",
                SCHEMA_JSON,
                "The schema of the features: every property with its type",
            ),
            Link::new(
                format!("{here}/schema"),
                "describedby",
                SCHEMA_JSON,
                "The schema of the features as JSON Schema",
            ),
            // GDAL takes field types from a `describedby` schema, the geometry
            // type from a GML one only, and up to 3.6 matches the relation
            // with this spelling alone (relation names are case-insensitive).
            Link::new(
                format!("{here}/schema?f=xsd"),
                "describedBy",
                XSD,
                "The schema of the features as a GML application schema",
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

/// The JSON Schema of a collection's queryables or sortables, named by the URL
/// that serves it.
fn properties_schema(req: &HttpRequest, c: CollectionId, sortables: bool) -> Value {
    c.schema(format!("{}{}", base_url(req), req.path()), sortables)
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
        (status = 200, description = "A JSON Schema of the queryable properties (as application/json to a client that accepts only that)", content(
            ("application/schema+json" = Object),
            ("application/json" = Object),
        )),
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
    let mut schema = properties_schema(&req, c, false);
    // The list the drafts of Part 3 served, which GDAL still reads to learn
    // which properties its `-where` may send to the server; JSON Schema
    // ignores a keyword it does not know.
    schema["queryables"] = c
        .queryables()
        .map(|p| json!({"id": p.name, "title": p.name}))
        .collect();
    Ok(HttpResponse::Ok()
        .content_type(schema_type(&req))
        .json(schema))
}

/// The media type of a JSON Schema for this request: `application/schema+json`
/// unless the client accepts only plain JSON, as GDAL does when it reads the
/// queryables.
fn schema_type(req: &HttpRequest) -> &'static str {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let types: Vec<String> = accept
        .split(',')
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    let named = |t: &str| types.iter().any(|x| x == t);
    if !named(SCHEMA_JSON) && !named("*/*") && !named("application/*") && named(JSON) {
        JSON
    } else {
        SCHEMA_JSON
    }
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
        .json(properties_schema(&req, c, true)))
}

/// The schema of a collection's features (OGC API - Features Part 5).
#[utoipa::path(
    get,
    path = "/api/collections/{collectionId}/schema",
    tag = "Capabilities",
    operation_id = "getSchema",
    params(
        ("collectionId" = CollectionName, Path, description = "sites, observations or candidates"),
        super::openapi::SchemaFormatParams,
    ),
    responses(
        (status = 200, description = "Every property of the features with its type, the geometry and its type", content(
            ("application/schema+json" = Object),
            ("application/json" = Object),
            ("application/xml" = String),
        )),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn schema(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let c = collection_id(&path)?;
    match Params::parse(req.query_string())?.typed("f")? {
        None | Some("json") => Ok(HttpResponse::Ok()
            .content_type(schema_type(&req))
            .json(c.feature_schema(format!("{}{}", base_url(&req), req.path())))),
        Some("xsd") => Ok(HttpResponse::Ok().content_type(XSD).body(c.gml_schema())),
        Some(other) => Err(ApiError::bad(
            "f",
            format!("f must be json or xsd, got {other:?}"),
        )),
    }
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

/// The item-query parameters every collection shares, checked: what to select,
/// and how the HTTP answer is written.
pub struct ItemQuery {
    pub selector: Selector,
    /// The `limit` asked for when it was above the maximum.
    pub clamped_from: Option<u64>,
    pub bbox: Option<BBox>,
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
        let lang = match p.typed("filter-lang")? {
            None => cql::Lang::Text,
            Some(l) => cql::Lang::parse(l).ok_or_else(|| {
                ApiError::bad(
                    "filter-lang",
                    format!("filter-lang must be cql2-text or cql2-json (or their earlier names cql-text and cql-json), got {l:?}"),
                )
            })?,
        };
        let filter = match p.get("filter")? {
            None => None,
            Some(raw) => Some(select::filter(collection, raw, lang)?),
        };
        let sortby = SortKey::parse_all(collection, &p.list("sortby")?)?;
        let bbox = p.bbox()?;
        let datetime = p.datetime()?;
        let format = Format::negotiate(p, req)?;
        let cursors = Cursors {
            after: p.get("after")?,
            before: p.get("before")?,
        };
        Ok(Self {
            selector: Selector::new(collection, limit, datetime, filter, sortby, cursors)?,
            clamped_from,
            bbox,
            format,
        })
    }

    /// Writes a page as a GeoJSON FeatureCollection or CSV, with `self`,
    /// `alternate`, `next` and `prev` links (in a `Link` header for CSV). The
    /// features are built and written on a thread of the blocking pool, so
    /// that the worker that took the request goes on answering others
    /// (`/healthz` among them) while a page of ten thousand is rendered.
    pub async fn respond_off_thread<T>(
        &self,
        req: &HttpRequest,
        sel: &Selection<T>,
        build: impl FnOnce() -> Vec<Value> + Send + 'static,
    ) -> Result<HttpResponse, ApiError> {
        let page = self.page_of(req, sel)?;
        let mut head = page.head();
        let (content_type, body) = web::block(move || page.body(build()))
            .await
            .map_err(ApiError::internal)??;
        Ok(head.content_type(content_type).body(body))
    }

    /// Everything of a page's answer but its features: the links, worked out
    /// from the request, and what the body says about the page.
    fn page_of<T>(&self, req: &HttpRequest, sel: &Selection<T>) -> Result<PageOut, ApiError> {
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
                format!("{base}/api/collections/{}", self.selector.collection.id()),
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
        Ok(PageOut {
            format: self.format,
            collection: self.selector.collection,
            limit: self.selector.limit,
            clamped_from: self.clamped_from,
            matched: sel.matched,
            links,
        })
    }
}

/// A page's answer but for its features: owned, so that the body can be
/// written on another thread.
struct PageOut {
    format: Format,
    collection: CollectionId,
    limit: usize,
    clamped_from: Option<u64>,
    matched: Option<usize>,
    links: Vec<Link>,
}

impl PageOut {
    /// The status and headers: the clamped limit, and for CSV the links and
    /// the count, which its body cannot carry.
    fn head(&self) -> actix_web::HttpResponseBuilder {
        let mut resp = HttpResponse::Ok();
        if let Some(asked) = self.clamped_from {
            resp.insert_header((
                "Sitewatch-Limit-Clamped",
                format!("{asked} -> {}", self.limit),
            ));
        }
        if self.format == Format::Csv {
            let link_header = self
                .links
                .iter()
                .filter(|l| matches!(l.rel.as_str(), "next" | "prev" | "alternate"))
                .map(|l| format!("<{}>; rel=\"{}\"", l.href, l.rel))
                .collect::<Vec<_>>()
                .join(", ");
            if !link_header.is_empty() {
                resp.insert_header((header::LINK, link_header));
            }
            if let Some(m) = self.matched {
                resp.insert_header(("OGC-NumberMatched", m.to_string()));
            }
        }
        resp
    }

    /// The body's media type and bytes.
    fn body(self, features: Vec<Value>) -> Result<(&'static str, Vec<u8>), ApiError> {
        match self.format {
            Format::Csv => Ok((
                CSV,
                csv::features(&self.collection.csv_columns(), &features).into_bytes(),
            )),
            Format::GeoJson => {
                let mut doc = Map::new();
                doc.insert("type".into(), json!("FeatureCollection"));
                doc.insert("timeStamp".into(), json!(Timestamp::now()));
                if let Some(m) = self.matched {
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
                    serde_json::to_value(&self.links).map_err(ApiError::internal)?,
                );
                doc.insert("features".into(), Value::Array(features));
                let bytes = serde_json::to_vec(&Value::Object(doc)).map_err(ApiError::internal)?;
                Ok((GEOJSON, bytes))
            }
        }
    }
}

/// An observation as a Feature with a link to itself.
fn observation_with_links(o: &StoredObservation, base: &str) -> Value {
    let mut f = observation_feature(o);
    f["links"] = json!([Link::new(
        format!("{base}/api/collections/observations/items/{}", o.id),
        "self",
        GEOJSON,
        ""
    )]);
    f
}

/// Observations, newest observed first (ties by id, descending) unless
/// `sortby` names another order.
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
    let sel = &query.selector;
    let since = sel.datetime.and_then(|i| bound(i.start));
    let until = sel.datetime.and_then(|i| bound(i.end));
    let bbox = query.bbox;
    let exact = move |i: &ObservationRecord| {
        // SQL matched the bounds; the exact test is on the geometry itself.
        bbox.is_none_or(|b| cql::geom_meets_bbox((&i.o.place).into(), &b))
    };
    if sel.newest_observed_first()
        && sel.filter.is_none()
        && sel.before.is_none()
        && sensors.is_empty()
    {
        // The collection's own order, the bounds, the window and the findings
        // are all answered by the store's indexes: read one page, not the
        // observations in the window.
        let before = match sel.after.as_deref() {
            Some([Scalar::Time(t), Scalar::Str(id)]) => Some(Before {
                time: t.to_rfc3339(),
                id: id.clone(),
            }),
            _ => None,
        };
        let limit = sel.limit;
        let (rows, matched) = blocking(&cat, move |c| {
            let rows = c.observations_newest(
                rects.as_deref(),
                since,
                until,
                &findings,
                before.as_ref(),
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
        let rows: Vec<ObservationRecord> = rows
            .into_iter()
            .take(limit)
            .map(ObservationRecord::new)
            .collect();
        // The cursor is the last row read, which the exact test may drop.
        let next = rows.last().filter(|_| more).map(|r| sel.cursor_of(r));
        let page: Vec<ObservationRecord> = rows.into_iter().filter(exact).collect();
        let sel = Selection {
            // A box is tested exactly only on the page, so its count is known
            // only without one.
            matched,
            next,
            prev: None,
            page,
        };
        return respond_observations(&req, &query, sel).await;
    }
    let stored = blocking(&cat, move |c| {
        c.observations_matching(rects.as_deref(), since, until, &findings)
    })
    .await?;
    let items: Vec<ObservationRecord> = stored
        .into_iter()
        .filter(|o| sensors.is_empty() || sensors.contains(&o.sensor))
        .map(ObservationRecord::new)
        .filter(exact)
        .collect();
    let sel = query.selector.select(items);
    respond_observations(&req, &query, sel).await
}

/// A page of observations, each with a link to itself, built and written
/// off the worker (a page may hold ten thousand).
async fn respond_observations(
    req: &HttpRequest,
    query: &ItemQuery,
    sel: Selection<ObservationRecord>,
) -> Result<HttpResponse, ApiError> {
    let base = base_url(req);
    let (page, sel) = sel.take_page();
    query
        .respond_off_thread(req, &sel, move || {
            page.iter()
                .map(|i| observation_with_links(&i.o, &base))
                .collect()
        })
        .await
}

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
    Ok(HttpResponse::Ok()
        .content_type(GEOJSON)
        .json(observation_with_links(&o, &base_url(&req))))
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
    let states = p
        .list("state")?
        .iter()
        .map(|s| {
            CandidateState::parse("state", s).map_err(|_| {
                ApiError::bad(
                    "state",
                    format!("state must be open, promoted or dismissed, got {s:?}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let all = blocking(&cat, |c| c.candidates(None)).await?;
    let bbox = query.bbox;
    let items: Vec<CandidateRecord> = all
        .into_iter()
        .filter(|c| states.is_empty() || states.contains(&c.state))
        .map(CandidateRecord::new)
        .filter(|i| bbox.is_none_or(|b| cql::geom_meets_bbox((&i.place).into(), &b)))
        .collect();
    let sel = query.selector.select(items);
    let base = base_url(&req);
    let (page, sel) = sel.take_page();
    query
        .respond_off_thread(&req, &sel, move || {
            page.iter()
                .map(|i| candidate_with_links(&i.c, &base))
                .collect()
        })
        .await
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
