//! History over HTTP: a site's timeline and the changes in an area.

use super::deadline::blocking;
use super::error::ApiError;
use super::params::Params;
use super::routes::GEOJSON;
use crate::catalogue::{Catalogue, ChangesQuery, Cursor, EventKind, HistoryQuery, Order};
use crate::model::{Declaration, Finding, SiteId};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/sites/{id}/history", web::get().to(site_history))
        .route("/api/changes", web::get().to(changes))
        .route("/api/changes/log", web::get().to(change_log));
}

/// `GET /api/sites/{id}/history?from=&to=&order=&limit=&cursor=`: revisions and
/// observations, a page at a time, with a `next` link while there are more.
#[utoipa::path(
    get,
    path = "/api/sites/{id}/history",
    tag = "History",
    operation_id = "getSiteHistory",
    params(
        ("id" = String, Path, description = "the site's id (retired sites too)"),
        ("from" = Option<String>, Query, format = DateTime, description = "events at or after this moment"),
        ("to" = Option<String>, Query, format = DateTime, description = "events at or before this moment"),
        ("order" = Option<String>, Query, description = "`oldest` first (the default) or `newest` first"),
        ("limit" = Option<u64>, Query, minimum = 1, description = "events per page (default 100, at most 10,000)"),
        ("cursor" = Option<String>, Query, description = "where the previous page ended, from its `next` link"),
    ),
    responses(
        (status = 200, description = "Revisions with field-level diffs, and observations, in the order asked for", body = HistoryCollection, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No site with this id was ever recorded", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn site_history(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let not_found = || ApiError::NotFound {
        detail: format!("no site with id {raw:?} was ever recorded"),
    };
    let id = SiteId::parse("id", &raw).map_err(|_| not_found())?;
    let p = Params::parse(req.query_string())?;
    let (from, to) = (p.timestamp("from")?, p.timestamp("to")?);
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::bad("from", "from is later than to"));
    }
    let order = match p.get("order")? {
        None | Some("oldest") => Order::OldestFirst,
        Some("newest") => Order::NewestFirst,
        Some(other) => {
            return Err(ApiError::bad(
                "order",
                format!("order must be oldest or newest, got {other:?}"),
            ));
        }
    };
    let q = HistoryQuery {
        from,
        to,
        order,
        after: cursor(&p)?,
        limit: p.limit(100, 10_000)?,
    };
    let site = id.clone();
    let page = blocking(&cat, move |c| c.site_history(&site, &q))
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().content_type(GEOJSON).json(json!({
        "type": "FeatureCollection", "site_id": id, "numberReturned": page.events.len(),
        "links": next_links(&req, page.next.as_ref())?, "features": page.events,
    })))
}

/// The `cursor` parameter, which must be one this server issued.
fn cursor(p: &Params) -> Result<Option<Cursor>, ApiError> {
    p.get("cursor")?
        .map(|c| {
            Cursor::decode(c)
                .ok_or_else(|| ApiError::bad("cursor", "cursor is not one this server issued"))
        })
        .transpose()
}

/// A `next` link repeating the request with the cursor where this page ended.
fn next_links(req: &HttpRequest, next: Option<&Cursor>) -> Result<Value, ApiError> {
    let Some(next) = next else {
        return Ok(json!([]));
    };
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "cursor")
            .chain([("cursor".to_string(), next.encode())])
            .collect();
    let qs = serde_urlencoded::to_string(&query).map_err(ApiError::internal)?;
    Ok(
        json!([{"rel": "next", "type": GEOJSON, "href": format!("{}{}?{qs}", super::routes::base_url(req), req.path())}]),
    )
}

/// `GET /api/changes?bbox=&since=&until=&finding=&declaration=&type=&limit=&cursor=`:
/// every event in the area and window, newest first, with a `next` link.
#[utoipa::path(
    get,
    path = "/api/changes",
    tag = "History",
    operation_id = "getChanges",
    params(
        super::openapi::ChangesParams,
    ),
    responses(
        (status = 200, description = "Events newest first, with a `next` link while there are more", body = ChangesCollection, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong; `parameter` names it", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn changes(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let list = |name: &str| -> Result<Vec<String>, ApiError> {
        Ok(p.get(name)?
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default())
    };
    let q = ChangesQuery {
        bbox: p.bbox()?,
        since: p.timestamp("since")?,
        until: p.timestamp("until")?,
        finding: list("finding")?
            .iter()
            .map(|f| Finding::parse("finding", f))
            .collect::<Result<_, _>>()?,
        declaration: list("declaration")?
            .iter()
            .map(|d| Declaration::parse("declaration", d))
            .collect::<Result<_, _>>()?,
        kinds: list("type")?
            .iter()
            .map(|k| {
                EventKind::parse(k).ok_or_else(|| {
                    ApiError::bad(
                        "type",
                        format!("type must be observation, revision or candidate, got {k:?}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        after: cursor(&p)?,
        limit: p.limit(100, 1000)?,
    };
    let page = blocking(&cat, move |c| c.changes(&q)).await?;
    Ok(HttpResponse::Ok().content_type(GEOJSON).json(json!({
        "type": "FeatureCollection", "numberReturned": page.events.len(), "links": next_links(&req, page.next.as_ref())?, "features": page.events,
    })))
}

/// `GET /api/changes/log?after=SEQ&limit=`: every committed write after a
/// sequence number, oldest first, so that a client follows the catalogue by
/// asking again with the last number it saw, never re-reading everything.
#[utoipa::path(
    get,
    path = "/api/changes/log",
    tag = "History",
    operation_id = "getChangeLog",
    params(super::openapi::ChangeLogParams),
    responses(
        (status = 200, description = "Log entries oldest first, with a `next` link while there are more", body = ChangeLog, content_type = "application/json"),
        (status = 400, description = "A parameter is wrong; `parameter` names it", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn change_log(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let after = match p.f64("after")? {
        None => 0,
        Some(a) if a >= 0.0 && a.fract() == 0.0 && a <= i64::MAX as f64 => a as i64,
        Some(a) => {
            return Err(ApiError::bad(
                "after",
                format!("after must be a sequence number (a whole number, 0 or more), got {a}"),
            ));
        }
    };
    let limit = p.limit(100, 1000)?;
    let (entries, head) = blocking(&cat, move |c| c.change_log(after, limit)).await?;
    let last = entries.last().map_or(after, |e| e.seq);
    let mut links = vec![];
    if last < head {
        links.push(json!({"rel": "next", "type": "application/json",
            "href": format!("{}{}?after={last}&limit={limit}", super::routes::base_url(&req), req.path())}));
    }
    Ok(HttpResponse::Ok().json(json!({
        "entries": entries, "head": head, "last": last, "links": links,
    })))
}
