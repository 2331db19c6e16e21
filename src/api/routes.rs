//! Handlers: each parses its parameters, asks the catalogue, renders GeoJSON.

use super::edits::RecordView;
use super::error::ApiError;
use super::params::Params;
use crate::catalogue::Catalogue;
use crate::index::SiteIndex;
use crate::model::{Footprint, Site, SiteId};
use crate::render;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub const GEOJSON: &str = "application/geo+json";

/// Items pages: default and largest page sizes.
const ITEMS_DEFAULT: usize = 100;
const ITEMS_MAX: usize = 10_000;
/// `nearby` with a radius returns everything inside it up to this many.
const WITHIN_DEFAULT: usize = 1_000;
const NEARBY_MAX: usize = 10_000;
/// `nearby` without a radius returns this many nearest.
const NEAREST_DEFAULT: usize = 10;

fn geojson(v: Value) -> HttpResponse {
    HttpResponse::Ok().content_type(GEOJSON).json(v)
}

pub async fn healthz(cat: web::Data<Arc<Catalogue>>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "sites": cat.index().len()}))
}

/// The base URL the client used, so links work behind the same host name.
pub fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

pub async fn site_items(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let filter = p.filter()?;
    let limit = p.limit(ITEMS_DEFAULT, ITEMS_MAX)?;
    let after = p
        .get("after")?
        .map(|a| SiteId::parse("after", a))
        .transpose()?;
    let bbox = p.bbox()?;
    let intersects = p
        .get("intersects")?
        .map(|g| {
            let v: Value = serde_json::from_str(g).map_err(|e| {
                ApiError::bad(
                    "intersects",
                    format!("intersects must be a GeoJSON geometry: {e}"),
                )
            })?;
            Footprint::parse("intersects", &v).map_err(ApiError::from)
        })
        .transpose()?;
    let view = RecordView::parse(&p)?;
    let observed_before = p.timestamp("observed_before")?;
    let observed_since = p.timestamp("observed_since")?;
    let query = |index: &SiteIndex| -> Vec<Arc<Site>> {
        match (&bbox, &intersects) {
            (Some(b), None) => index.bbox(b, &filter),
            (None, Some(g)) => index.intersects(g.shape(), &filter),
            (Some(b), Some(g)) => {
                let in_box: std::collections::HashSet<SiteId> = index
                    .bbox(b, &filter)
                    .into_iter()
                    .map(|s| s.id.clone())
                    .collect();
                index
                    .intersects(g.shape(), &filter)
                    .into_iter()
                    .filter(|s| in_box.contains(&s.id))
                    .collect()
            }
            (None, None) => index.all(&filter).cloned().collect(),
        }
    };
    let (live, retired) = view.indexes(&cat).await?;
    // Each site paired with whether it is retired; a site is live or retired at
    // any one moment, never both.
    let mut matched: Vec<(Arc<Site>, bool)> =
        query(&live).into_iter().map(|s| (s, false)).collect();
    if let Some(retired) = &retired {
        matched.extend(query(retired).into_iter().map(|s| (s, true)));
        matched.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    }
    // Staleness: sites nobody has looked at since a date, or looked at lately.
    let stats = cat.observation_stats();
    let last_seen = |s: &Site| stats.get(s.id.as_str()).map(|st| st.last_observed_at);
    if let Some(t) = observed_before {
        matched.retain(|(s, _)| last_seen(s).is_none_or(|l| l < t));
    }
    if let Some(t) = observed_since {
        matched.retain(|(s, _)| last_seen(s).is_some_and(|l| l >= t));
    }
    let number_matched = matched.len();
    let page: Vec<&(Arc<Site>, bool)> = matched
        .iter()
        .filter(|(s, _)| after.as_ref().is_none_or(|a| &s.id > a))
        .take(limit)
        .collect();
    let mut extra = Map::new();
    extra.insert("numberMatched".into(), json!(number_matched));
    let mut links = vec![
        json!({"rel": "self", "type": GEOJSON, "href": format!("{}{}", base_url(&req), req.uri())}),
    ];
    if let Some((last, _)) = page.last() {
        let has_more = matched.iter().any(|(s, _)| s.id > last.id);
        if has_more {
            let query: Vec<(String, String)> =
                serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| k != "after")
                    .chain([("after".to_string(), last.id.to_string())])
                    .collect();
            let qs = serde_urlencoded::to_string(&query).map_err(ApiError::internal)?;
            links.push(json!({"rel": "next", "type": GEOJSON, "href": format!("{}{}?{qs}", base_url(&req), req.path())}));
        }
    }
    extra.insert("links".into(), Value::Array(links));
    let mut doc = render::sites_collection(page.iter().map(|(s, _)| s), extra);
    view.mark_retired(&mut doc, page.iter().map(|(_, retired)| *retired));
    render::add_observation_stats(&mut doc, &stats);
    Ok(geojson(doc))
}

pub async fn site_item(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let view = RecordView::parse(&Params::parse(req.query_string())?)?;
    let raw = path.into_inner();
    let not_found = || ApiError::NotFound {
        detail: format!("no site with id {raw:?}"),
    };
    let id = SiteId::parse("id", &raw).map_err(|_| not_found())?;
    let (site, retired) = view.site(&cat, id).await?.ok_or_else(not_found)?;
    let mut feature = view.feature(&site, retired);
    render::add_observation_stats(&mut feature, &cat.observation_stats());
    Ok(geojson(feature))
}

pub async fn nearby(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let point = p.point()?;
    let radius = p.metres("radius_m")?;
    let filter = p.filter()?;
    let index = cat.index();
    let (hits, limit) = match radius {
        Some(r) => {
            let limit = p.limit(WITHIN_DEFAULT, NEARBY_MAX)?;
            (index.nearby(point, r, &filter, limit), limit)
        }
        None => {
            let limit = p.limit(NEAREST_DEFAULT, NEARBY_MAX)?;
            (index.nearest(point, limit, &filter), limit)
        }
    };
    let mut extra = Map::new();
    extra.insert(
        "query".into(),
        json!({"lon": point.lon(), "lat": point.lat(), "radius_m": radius.map(|r| r.get()), "limit": limit}),
    );
    let mut doc = render::hits_collection(&hits, extra);
    render::add_observation_stats(&mut doc, &cat.observation_stats());
    Ok(geojson(doc))
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        detail: format!("nothing at {}", req.path()),
    })
}
