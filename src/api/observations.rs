//! Observation batches over HTTP: import, the batch log, and candidate sites.

use super::auth::WriteAuth;
use super::body::{parse_json, read_body, require_json};
use super::deadline::blocking;
use super::error::ApiError;
use super::params::Params;
use super::routes::GEOJSON;
use crate::catalogue::{Catalogue, ObservationImportError, PromoteError, Promotion};
use crate::import::{ImportMode, ImportOptions};
use crate::model::{CandidateState, Meters};
use crate::render::candidate_feature;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::sync::Arc;

/// Registers the observation, batch and candidate routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/observations", web::post().to(import))
        .route("/api/batches", web::get().to(batches))
        .route("/api/candidates", web::get().to(candidates))
        .route("/api/candidates/{id}", web::get().to(candidate))
        .route("/api/candidates/{id}/dismiss", web::post().to(dismiss))
        .route("/api/candidates/{id}/promote", web::post().to(promote));
}

fn import_options(p: &Params) -> Result<ImportOptions, ApiError> {
    let defaults = ImportOptions::default();
    let mode = match p.get("mode")? {
        None | Some("atomic") => ImportMode::Atomic,
        Some("partial") => ImportMode::Partial,
        Some(other) => {
            return Err(ApiError::bad(
                "mode",
                format!("mode must be atomic or partial, got {other:?}"),
            ));
        }
    };
    let dry_run = match p.typed("dry_run")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "dry_run",
                format!("dry_run must be true or false, got {other:?}"),
            ));
        }
    };
    let positive_metres = |name: &str, default: Meters| -> Result<Meters, ApiError> {
        Ok(p.metres(name)?.unwrap_or(default))
    };
    let cluster_min_days = match p.typed("cluster_min_days")? {
        None => defaults.cluster_min_days,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad(
                    "cluster_min_days",
                    format!("cluster_min_days must be a whole number from 1 to 1000, got {v:?}"),
                )
            })?,
    };
    Ok(ImportOptions {
        mode,
        dry_run,
        match_radius: positive_metres("match_radius_m", defaults.match_radius)?,
        cluster_radius: positive_metres("cluster_radius_m", defaults.cluster_radius)?,
        cluster_min_days,
    })
}

/// `POST /api/observations`: the same import and report as `sitewatch import observations`.
#[utoipa::path(
    post,
    path = "/api/observations",
    tag = "Observations",
    operation_id = "importObservations",
    params(
        ("mode" = Option<String>, Query, description = "atomic (default: all or nothing) or partial (store the valid features)"),
        ("dry_run" = Option<bool>, Query, description = "report, store nothing"),
        ("match_radius_m" = Option<f64>, Query, minimum = 0, description = "link to the nearest site within this many metres (default 1,000)"),
        ("cluster_radius_m" = Option<f64>, Query, minimum = 0, description = "unmatched observations this close cluster into candidates (default 1,000)"),
        ("cluster_min_days" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "a cluster needs observations on this many days (default 2)"),
        ("reason" = Option<String>, Query, description = "why, for the record"),
    ),
    request_body(content = Object, description = "A GeoJSON FeatureCollection of observations", content_type = "application/geo+json"),
    responses(
        (status = 200, description = "Nothing stored (a dry run, or already imported); the report", body = ImportReport, content_type = "application/json"),
        (status = 201, description = "Stored; the report", body = ImportReport, content_type = "application/json"),
        (status = 400, description = "The body is not a readable FeatureCollection, or a parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No authority to write", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the server accepts", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Some features are invalid; nothing stored; `report` lists them", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn import(
    req: HttpRequest,
    body: web::Payload,
    cat: web::Data<Arc<Catalogue>>,
    auth: web::Data<WriteAuth>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.authorize(&req)?;
    require_json(&req)?;
    let opts = import_options(&Params::parse(req.query_string())?)?;
    let body = read_body(&req, body, usize::MAX).await?;
    let origin = format!(
        "{} via HTTP from {}",
        by.actor,
        req.peer_addr()
            .map_or("unknown".to_string(), |a| a.ip().to_string())
    );
    let mode = opts.mode;
    let report = blocking(&cat, move |c| {
        c.import_observations(&body[..], &origin, &opts, |_, _| {})
            .map_err(|e| match e {
                ObservationImportError::Unreadable(detail) => ApiError::bad("body", detail),
                ObservationImportError::Store(s) => ApiError::internal(s),
            })
    })
    .await?;
    let report_json = serde_json::to_value(&report).map_err(ApiError::internal)?;
    if mode == ImportMode::Atomic && report.rejected > 0 {
        let mut extra = serde_json::Map::new();
        extra.insert("report".into(), report_json);
        return Err(ApiError::Unprocessable {
            detail: report.summary.clone(),
            extra,
        });
    }
    let status = if report.stored {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(report_json))
}

/// `GET /api/batches`: every import attempt, newest first.
#[utoipa::path(
    get,
    path = "/api/batches",
    tag = "Observations",
    operation_id = "getBatches",
    params(
        ("limit" = Option<u64>, Query, minimum = 1, description = "at most this many (default 100, at most 1,000)"),
        ("before" = Option<String>, Query, description = "batches received before this RFC 3339 time"),
    ),
    responses(
        (status = 200, description = "Import attempts, newest first", body = BatchList, content_type = "application/json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn batches(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let limit = p.limit(100, 1000)?;
    let before = p.get("before")?.map(str::to_owned);
    let list = blocking(&cat, move |c| c.batches(limit, before.as_deref())).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|b| {
            json!({
                "id": b.id, "received_at": b.received_at, "origin": b.origin, "content_hash": b.content_hash,
                "mode": b.mode, "stored": b.stored,
                "features": b.report["features"], "accepted": b.report["accepted"], "rejected": b.report["rejected"],
                "duplicates": b.report["duplicates"], "matched": b.report["matched"], "unmatched": b.report["unmatched"],
                "candidates_created": b.report["candidates_created"], "summary": b.report["summary"],
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"batches": items, "numberReturned": items.len()})))
}

/// `GET /api/candidates?state=open`: candidate undeclared sites, newest first.
#[utoipa::path(
    get,
    path = "/api/candidates",
    tag = "Observations",
    operation_id = "listCandidates",
    params(super::openapi::CandidateListParams),
    responses(
        (status = 200, description = "Candidates, newest first", body = CandidateList, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn candidates(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let state = match p.typed("state")? {
        None | Some("all") => None,
        Some(s) => Some(CandidateState::parse("state", s).map_err(|_| {
            ApiError::bad(
                "state",
                format!("state must be open, promoted, dismissed or all, got {s:?}"),
            )
        })?),
    };
    let list = blocking(&cat, move |c| c.candidates(state)).await?;
    let features: Vec<Value> = list.iter().map(candidate_feature).collect();
    Ok(HttpResponse::Ok().content_type(GEOJSON).json(json!({"type": "FeatureCollection", "numberReturned": features.len(), "features": features})))
}

/// One candidate.
#[utoipa::path(
    get,
    path = "/api/candidates/{id}",
    tag = "Observations",
    operation_id = "showCandidate",
    params(("id" = String, Path, description = "the candidate's id")),
    responses(
        (status = 200, description = "The candidate", body = CandidateFeature, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such candidate", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn candidate(
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let wanted = id.clone();
    let c = blocking(&cat, move |c| c.candidate(&wanted))
        .await?
        .ok_or_else(|| ApiError::NotFound {
            detail: format!("no candidate with id {id:?}"),
        })?;
    Ok(HttpResponse::Ok()
        .content_type(GEOJSON)
        .json(candidate_feature(&c)))
}

/// `POST /api/candidates/{id}/dismiss[?reason=]`: the analyst judged it nothing.
#[utoipa::path(
    post,
    path = "/api/candidates/{id}/dismiss",
    tag = "Observations",
    operation_id = "dismissCandidate",
    params(
        ("id" = String, Path, description = "the candidate's id"),
        ("reason" = Option<String>, Query, description = "kept as the candidate's note"),
    ),
    responses(
        (status = 200, description = "Dismissed", body = CandidateFeature, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No authority to write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No open candidate with this id", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "No JSON Content-Type: send `{}` as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn dismiss(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
    auth: web::Data<WriteAuth>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.authorize(&req)?;
    let id = path.into_inner();
    let wanted = id.clone();
    // The store is called off the server's own threads, as every read and
    // write is: a database client may block there, and some may not at all.
    let (dismissed, c) = blocking(&cat, move |c| {
        let dismissed = c.dismiss_candidate(&wanted, by.reason.as_deref())?;
        c.candidate(&wanted).map(|found| (dismissed, found))
    })
    .await?;
    if !dismissed {
        return Err(ApiError::NotFound {
            detail: format!("no open candidate with id {id:?}"),
        });
    }
    let c = c.ok_or_else(|| ApiError::NotFound {
        detail: format!("no candidate with id {id:?}"),
    })?;
    Ok(HttpResponse::Ok()
        .content_type(GEOJSON)
        .json(candidate_feature(&c)))
}

/// `POST /api/candidates/{id}/promote[?reason=]` with an optional JSON body
/// (`name`, `footprint`, `kind`, `country`, `status`, `alt_names`, `notes`, `id`):
/// the candidate becomes a catalogue site and keeps its observations.
#[utoipa::path(
    post,
    path = "/api/candidates/{id}/promote",
    tag = "Observations",
    operation_id = "promoteCandidate",
    params(
        ("id" = String, Path, description = "the candidate's id"),
        ("reason" = Option<String>, Query, description = "why, kept with the new site's revision"),
    ),
    request_body(content = Option<Promotion>, description = "Optional fields of the new site", content_type = "application/json"),
    responses(
        (status = 201, description = "The new site; `Location` names it", body = SiteFeature, content_type = "application/geo+json",
            headers(("Location" = String, description = "the new site's URL"))),
        (status = 400, description = "A field is invalid; `parameter` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No authority to write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No open candidate with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A site with the id asked for exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the server accepts", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(super) async fn promote(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    cat: web::Data<Arc<Catalogue>>,
    auth: web::Data<WriteAuth>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.authorize(&req)?;
    let body = read_body(&req, body, super::edits::MAX_FEATURE_BYTES).await?;
    let promotion: Promotion = if body.iter().all(u8::is_ascii_whitespace) {
        Promotion::default()
    } else {
        require_json(&req)?;
        // Read with unique keys first, so that a footprint cannot say one thing
        // twice. JSON `null` says "nothing to add", as an empty body does.
        serde_json::from_value::<Option<Promotion>>(parse_json(&body)?)
            .map_err(|e| {
                ApiError::bad(
                    "body",
                    format!("the body must be a JSON object of promotion fields: {e}"),
                )
            })?
            .unwrap_or_default()
    };
    let id = path.into_inner();
    let site = blocking(&cat, move |c| {
        c.promote_candidate(&id, promotion, &by)
            .map_err(|e| match e {
                PromoteError::NotOpen(_) => ApiError::NotFound {
                    detail: e.to_string(),
                },
                PromoteError::Invalid(f) => f.into(),
                PromoteError::Exists(_) => ApiError::Conflict {
                    detail: e.to_string(),
                },
                PromoteError::Store(s) => ApiError::internal(s),
            })
    })
    .await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header((
        "Location",
        format!("/api/collections/sites/items/{}", site.id),
    ));
    Ok(super::edits::feature_response(resp, &site, &cat))
}
