//! Writes to the site catalogue (create, replace and retire sites) and the view
//! of the record that site reads take: `as_of` a moment, `include_retired`.

use super::auth::WriteAuth;
use super::body::{read_json, read_merge_patch};
use super::deadline::blocking;
use super::error::ApiError;
use super::params::Params;
use super::routes::GEOJSON;
use crate::catalogue::{Catalogue, EditError};
use crate::index::SiteIndex;
use crate::model::{Site, SiteId, Timestamp};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::sync::Arc;

const ITEMS: &str = "/api/collections/sites/items";
const ITEM: &str = "/api/collections/sites/items/{id}";

/// The largest site Feature a write accepts; far above any real footprint.
pub(super) const MAX_FEATURE_BYTES: usize = 16 * 1024 * 1024;

/// Registers the site-edit routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // `route` lifts each method guard onto its own resource, so a request the
    // GET resources for these paths do not take falls through to these.
    cfg.route(ITEMS, web::post().to(create))
        .route(ITEM, web::put().to(replace))
        .route(ITEM, web::patch().to(patch))
        .route(ITEM, web::delete().to(retire));
}

/// Whether every edit must name the version it changes (`--require-if-match`).
#[derive(Debug, Clone, Copy, Default)]
pub struct EditRules {
    pub require_if_match: bool,
}

/// A site's version as an HTTP entity tag: strong, quoted.
pub(super) fn etag(site: &Site) -> header::EntityTag {
    header::EntityTag::new_strong(site.tag())
}

/// The versions `If-Match` allows an edit to change: `None` for any (no
/// header, or `*`; the site must still exist). Weak tags never match, as
/// RFC 9110 compares `If-Match` strongly; a header of only weak tags allows
/// none.
fn if_match(req: &HttpRequest) -> Result<Option<Vec<String>>, ApiError> {
    let rules = req
        .app_data::<web::Data<EditRules>>()
        .map(|r| *r.get_ref())
        .unwrap_or_default();
    let values: Vec<&str> = req
        .headers()
        .get_all(header::IF_MATCH)
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        if rules.require_if_match {
            return Err(ApiError::PreconditionRequired {
                detail: "this server takes edits only with If-Match naming the version edited: GET the site and send its ETag back".into(),
            });
        }
        return Ok(None);
    }
    let mut tags = Vec::new();
    for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if item == "*" {
            return Ok(None);
        }
        if item.starts_with("W/") || item.is_empty() {
            continue;
        }
        tags.push(item.trim_matches('"').to_owned());
    }
    Ok(Some(tags))
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::Invalid(field) => field.into(),
            EditError::Exists(id) => ApiError::Conflict {
                detail: format!("a site with id {id:?} already exists; replace it with PUT"),
            },
            EditError::NotFound(id) => not_found(id.as_str()),
            EditError::Stale(id) => ApiError::PreconditionFailed {
                detail: format!(
                    "site {id} has changed since the version this edit names (If-Match); GET it again, and redo the edit on what it is now"
                ),
            },
            EditError::Store(e) => ApiError::internal(e),
        }
    }
}

fn not_found(raw: &str) -> ApiError {
    ApiError::NotFound {
        detail: format!("no site with id {raw:?}"),
    }
}

/// An id from the path; one that cannot be a site id names no site.
fn path_id(raw: &str) -> Result<SiteId, ApiError> {
    SiteId::parse("id", raw).map_err(|_| not_found(raw))
}

/// The stored site as every read serves it, observation statistics included.
pub(super) fn feature_response(
    mut resp: actix_web::HttpResponseBuilder,
    site: &Site,
    cat: &Catalogue,
) -> HttpResponse {
    let mut feature = site.to_feature();
    crate::render::add_observation_stats(&mut feature, &cat.observation_stats());
    resp.insert_header(header::ETag(etag(site)));
    resp.content_type(GEOJSON).json(feature)
}

/// `POST /api/collections/sites/items`: a new site from a Feature.
#[utoipa::path(
    post,
    path = "/api/collections/sites/items",
    tag = "Data",
    operation_id = "createSite",
    params(("reason" = Option<String>, Query, description = "why, kept with the revision")),
    request_body(content = SiteInput, description = "A site Feature; without an id one is generated", content_type = "application/geo+json"),
    responses(
        (status = 201, description = "Created; `Location` names the new site", body = SiteFeature, content_type = "application/geo+json",
            headers(("Location" = String, description = "the new site's URL"), ("ETag" = String, description = "the site's version"))),
        (status = 400, description = "The Feature is invalid; `parameter` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No authority to write", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A live site has this id", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the server accepts", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn create(
    req: HttpRequest,
    body: web::Payload,
    cat: web::Data<Arc<Catalogue>>,
    auth: web::Data<WriteAuth>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.authorize(&req)?;
    let feature = read_json(&req, body, MAX_FEATURE_BYTES).await?;
    let site = blocking(&cat, move |c| c.create_site(&feature, &by)).await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("{ITEMS}/{}", site.id)));
    Ok(feature_response(resp, &site, &cat))
}

/// `PUT /api/collections/sites/items/{id}`: a live site replaced by a Feature.
#[utoipa::path(
    put,
    path = "/api/collections/sites/items/{id}",
    tag = "Data",
    operation_id = "replaceSite",
    params(
        ("id" = String, Path, description = "the site's id"),
        ("reason" = Option<String>, Query, description = "why, kept with the revision"),
        ("If-Match" = Option<String>, Header, description = "the ETag of the version replaced; a site changed since gets 412"),
    ),
    request_body(content = SiteInput, description = "The whole new site Feature; an id, if given, must be the one in the path", content_type = "application/geo+json"),
    responses(
        (status = 200, description = "Replaced; `ETag` is the new version", body = SiteFeature, content_type = "application/geo+json",
            headers(("ETag" = String, description = "the site's version"))),
        (status = 400, description = "The Feature is invalid; `parameter` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No authority to write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live site with this id", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The site has changed since the version If-Match names", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the server accepts", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "The server requires If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn replace(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    cat: web::Data<Arc<Catalogue>>,
    auth: web::Data<WriteAuth>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.authorize(&req)?;
    let tags = if_match(&req)?;
    let id = path_id(&path)?;
    let feature = read_json(&req, body, MAX_FEATURE_BYTES).await?;
    let site = blocking(&cat, move |c| {
        c.replace_site_if(&id, &feature, &by, tags.as_deref())
    })
    .await?;
    Ok(feature_response(HttpResponse::Ok(), &site, &cat))
}

/// `PATCH /api/collections/sites/items/{id}`: the members of a site a JSON
/// Merge Patch names are changed, the rest kept.
#[utoipa::path(
    patch,
    path = "/api/collections/sites/items/{id}",
    tag = "Data",
    operation_id = "updateSite",
    params(
        ("id" = String, Path, description = "the site's id"),
        ("reason" = Option<String>, Query, description = "why, kept with the revision"),
        ("If-Match" = Option<String>, Header, description = "the ETag of the version edited; a site changed since gets 412"),
    ),
    request_body(content = Object, description = "A JSON Merge Patch (RFC 7396) of the site's Feature, e.g. {\"properties\": {\"name\": \"New name\"}}: members left out are kept, members set to null removed", content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated; `ETag` is the new version", body = SiteFeature, content_type = "application/geo+json",
            headers(("ETag" = String, description = "the site's version"))),
        (status = 400, description = "The patched Feature is invalid; `parameter` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No authority to write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live site with this id", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The site has changed since the version If-Match names", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the server accepts", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "The server requires If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn patch(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    cat: web::Data<Arc<Catalogue>>,
    auth: web::Data<WriteAuth>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.authorize(&req)?;
    let tags = if_match(&req)?;
    let id = path_id(&path)?;
    let patch = read_merge_patch(&req, body, MAX_FEATURE_BYTES).await?;
    let site = blocking(&cat, move |c| {
        c.patch_site(&id, &patch, &by, tags.as_deref())
    })
    .await?;
    Ok(feature_response(HttpResponse::Ok(), &site, &cat))
}

/// `DELETE /api/collections/sites/items/{id}`: the site is retired, not erased.
#[utoipa::path(
    delete,
    path = "/api/collections/sites/items/{id}",
    tag = "Data",
    operation_id = "deleteSite",
    params(
        ("id" = String, Path, description = "the site's id"),
        ("reason" = Option<String>, Query, description = "why, kept with the revision"),
        ("If-Match" = Option<String>, Header, description = "the ETag of the version retired; a site changed since gets 412"),
    ),
    responses(
        (status = 204, description = "Retired: gone from queries, kept in history"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No authority to write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live site with this id", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The site has changed since the version If-Match names", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "No JSON Content-Type: send `{}` as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "The server requires If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn retire(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
    auth: web::Data<WriteAuth>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.authorize(&req)?;
    let tags = if_match(&req)?;
    let id = path_id(&path)?;
    blocking(&cat, move |c| c.retire_site_if(&id, &by, tags.as_deref())).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Which part of the record a site read looks at: the catalogue as recorded at
/// `as_of` (default: now), with or without the sites retired by then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RecordView {
    as_of: Option<Timestamp>,
    include_retired: bool,
}

impl RecordView {
    pub(super) fn parse(p: &Params) -> Result<Self, ApiError> {
        let as_of = p
            .typed("as_of")?
            .map(|t| Timestamp::parse("as_of", t))
            .transpose()?;
        let include_retired = match p.typed("include_retired")? {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad(
                    "include_retired",
                    format!("include_retired must be true or false, got {other:?}"),
                ));
            }
        };
        Ok(Self {
            as_of,
            include_retired,
        })
    }

    /// Whether this view is the live catalogue now, without the retired.
    pub(super) fn is_now_and_live(&self) -> bool {
        self.as_of.is_none() && !self.include_retired
    }

    /// The moment of a view of the live sites in the past; `None` for the
    /// present, or when retired sites are asked for too.
    pub(super) fn past_and_live(&self) -> Option<Timestamp> {
        self.as_of.filter(|_| !self.include_retired)
    }

    /// The live sites in this view and, when asked for, the retired ones. The
    /// present live sites are the shared snapshot; anything else is read from
    /// the store for this request.
    ///
    /// A query confined to an area passes it as lon/lat rectangles (`west <=
    /// east`): the past and the retired are then read from that area only,
    /// by index, and the caller's exact test on the index decides.
    pub(super) async fn indexes(
        &self,
        cat: &Arc<Catalogue>,
        area: Option<Vec<[f64; 4]>>,
    ) -> Result<(Arc<SiteIndex>, Option<SiteIndex>), ApiError> {
        let live = match self.as_of {
            None => cat.index(),
            Some(t) => {
                let area = area.clone();
                Arc::new(
                    blocking(cat, move |c| {
                        c.sites_as_of(t, area.as_deref())
                            .map_err(ApiError::internal)
                    })
                    .await?,
                )
            }
        };
        let retired = if self.include_retired {
            let at = self.as_of;
            Some(
                blocking(cat, move |c| {
                    c.retired_sites(at, area.as_deref())
                        .map_err(ApiError::internal)
                })
                .await?,
            )
        } else {
            None
        };
        Ok((live, retired))
    }

    /// One site in this view, and whether it is retired.
    pub(super) async fn site(
        &self,
        cat: &Arc<Catalogue>,
        id: SiteId,
    ) -> Result<Option<(Arc<Site>, bool)>, ApiError> {
        let live = match self.as_of {
            None => cat.index().get(&id).cloned(),
            Some(t) => {
                let id = id.clone();
                blocking(cat, move |c| {
                    c.site_as_of(&id, t).map_err(ApiError::internal)
                })
                .await?
            }
        };
        if let Some(site) = live {
            return Ok(Some((site, false)));
        }
        if !self.include_retired {
            return Ok(None);
        }
        let at = self.as_of;
        let retired = blocking(cat, move |c| {
            c.retired_site(&id, at).map_err(ApiError::internal)
        })
        .await?;
        Ok(retired.map(|s| (s, true)))
    }

    /// A site as a Feature; with `include_retired`, its properties say whether
    /// it is retired.
    pub(super) fn feature(&self, site: &Site, retired: bool) -> Value {
        if self.include_retired {
            site.to_feature_with([("retired".to_string(), json!(retired))])
        } else {
            site.to_feature()
        }
    }

    /// Adds `properties.retired` to the features of a collection rendered from
    /// sites whose retired flags are `flags`, in the same order.
    pub(super) fn mark_retired(&self, doc: &mut Value, flags: impl IntoIterator<Item = bool>) {
        if !self.include_retired {
            return;
        }
        let features = doc["features"].as_array_mut().into_iter().flatten();
        for (f, retired) in features.zip(flags) {
            f["properties"]["retired"] = json!(retired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;

    fn view(query: &str) -> Result<RecordView, ApiError> {
        RecordView::parse(&Params::parse(query).unwrap())
    }

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { param, .. } => param,
            other => panic!("not a bad request: {other}"),
        }
    }

    #[test]
    fn as_of_must_be_an_rfc3339_time_and_include_retired_a_boolean() {
        let v = view("as_of=2024-05-01T00:00:00Z&include_retired=true").unwrap();
        assert_eq!(
            v.as_of.map(Timestamp::to_rfc3339).as_deref(),
            Some("2024-05-01T00:00:00.000000Z")
        );
        assert!(v.include_retired);
        assert_eq!(view("").unwrap().as_of, None);
        assert_eq!(param_of(view("as_of=2024-05-01").unwrap_err()), "as_of");
        assert_eq!(
            param_of(view("include_retired=yes").unwrap_err()),
            "include_retired"
        );
    }

    #[test]
    fn if_match_lists_strong_tags_and_a_wildcard_or_no_header_allows_any_version() {
        use actix_web::test::TestRequest;
        let tags = |value: Option<&str>| {
            let mut req = TestRequest::default();
            if let Some(v) = value {
                req = req.insert_header((header::IF_MATCH, v));
            }
            if_match(&req.to_http_request()).unwrap()
        };
        assert_eq!(tags(None), None);
        assert_eq!(tags(Some("*")), None);
        assert_eq!(
            tags(Some(r#""abc", W/"weak", "def""#)),
            Some(vec!["abc".to_owned(), "def".to_owned()])
        );
        // Weak tags never match an If-Match: only weak ones allow no version.
        assert_eq!(tags(Some(r#"W/"abc""#)), Some(vec![]));
    }

    #[test]
    fn an_edit_without_if_match_is_428_where_the_server_requires_one() {
        use actix_web::test::TestRequest;
        let req = TestRequest::default()
            .app_data(web::Data::new(EditRules {
                require_if_match: true,
            }))
            .to_http_request();
        let e = if_match(&req).unwrap_err();
        assert_eq!(e.status_code().as_u16(), 428);
    }

    #[test]
    fn edit_errors_become_the_matching_http_statuses() {
        let id = SiteId::parse("id", "x").unwrap();
        let status = |e: EditError| ApiError::from(e).status_code().as_u16();
        assert_eq!(
            status(EditError::Invalid(crate::model::FieldError::new(
                "properties.kind",
                "unknown"
            ))),
            400
        );
        assert_eq!(status(EditError::Exists(id.clone())), 409);
        assert_eq!(status(EditError::NotFound(id.clone())), 404);
        assert_eq!(status(EditError::Stale(id)), 412);
    }
}
