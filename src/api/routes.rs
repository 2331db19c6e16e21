//! Handlers: each parses its parameters, asks the catalogue, renders GeoJSON.

use super::deadline::blocking;
use super::edits::RecordView;
use super::error::ApiError;
use super::ogc::{ItemQuery, Link};
use super::params::Params;
use crate::catalogue::Catalogue;
use crate::index::SiteIndex;
use crate::model::{Footprint, Site, SiteId};
use crate::query::cql;
use crate::query::{COUNT_CAP, CollectionId, Selection, SiteRecord};
use crate::render;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub const GEOJSON: &str = "application/geo+json";
/// `nearby` with a radius returns everything inside it up to this many.
const WITHIN_DEFAULT: usize = 1_000;
const NEARBY_MAX: usize = 10_000;
/// `nearby` without a radius returns this many nearest.
const NEAREST_DEFAULT: usize = 10;

/// Whether the server is up, and how many live sites it serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "Service",
    operation_id = "getHealth",
    responses(
        (status = 200, description = "The server is up", body = Health, content_type = "application/json"),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn healthz(cat: web::Data<Arc<Catalogue>>) -> HttpResponse {
    let sites = cat.index().len();
    if !cat.is_shared() {
        return HttpResponse::Ok().json(json!({"status": "ok", "sites": sites}));
    }
    // A node on a shared database also says how far behind it is, and where
    // its reads go; both ask the database, so off the async workers.
    let c = cat.get_ref().clone();
    let asked = web::block(move || (c.follow_status(), c.read_replica())).await;
    let (following, reads) = asked.unwrap_or_default();
    let mut body = json!({"status": "ok", "sites": sites});
    match following {
        Some(Ok(f)) => body["following"] = json!(f),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "health: cannot read the database's change log");
            body["status"] = json!("degraded");
            body["database_reachable"] = json!(false);
        }
        None => {}
    }
    match reads {
        Some(Ok(r)) => body["reads"] = json!(r),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "health: cannot reach the read replica");
            body["status"] = json!("degraded");
            body["replica_reachable"] = json!(false);
        }
        None => {}
    }
    HttpResponse::Ok().json(body)
}

/// The base URL the client used, so links work behind the same host name:
/// the host the request was checked against, never one a client merely
/// claims (see `host.rs`).
pub fn base_url(req: &HttpRequest) -> String {
    super::host::link_base(req)
}

/// Sites: OGC API - Features items with the catalogue's own filters.
#[utoipa::path(
    get,
    path = "/api/collections/sites/items",
    tag = "Data",
    operation_id = "getSites",
    params(super::openapi::ItemsParams, super::openapi::SiteFilterParams, super::openapi::SiteViewParams),
    responses(
        (status = 200, description = "A page of sites", content(
            ("application/geo+json" = SiteCollection),
            ("text/csv" = String),
        )),
        (status = 400, description = "A parameter is wrong; `parameter` names it", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn site_items(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let query = ItemQuery::parse(&p, &req, CollectionId::Sites)?;
    let filter = p.filter()?;
    let bbox = query.bbox;
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
    let query_index = |index: &SiteIndex| -> Vec<Arc<Site>> {
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
    let stats = cat.observation_stats();
    // A cursor that is no site id still orders, and takes the general path.
    let after_site = match query.selector.after_id() {
        None => Some(None),
        Some(raw) => SiteId::parse("after", raw).ok().map(Some),
    };
    if let Some(after) = after_site.clone()
        && view.is_now_and_live()
        && bbox.is_none()
        && intersects.is_none()
        && query.selector.reads_forward_by_id()
    {
        // Walking, filtering and counting is work for a blocking thread, so
        // that the request threads stay free for cheap requests.
        let (stats_for, filter_for) = (stats.clone(), filter.clone());
        let (query, sel) = blocking(&cat, move |c| {
            let sel = live_page(
                c,
                &query.selector,
                &filter_for,
                after,
                (observed_before, observed_since),
                &stats_for,
            );
            Ok::<_, ApiError>((query, sel))
        })
        .await?;
        return respond_sites(&req, &query, &view, &stats, sel).await;
    }
    if let (Some(t), Some(after)) = (view.past_and_live(), after_site.clone())
        && bbox.is_none()
        && intersects.is_none()
        && query.selector.reads_forward_by_id()
    {
        // The past in id order: read from the cursor on, a page at a time, so
        // that a page costs that page. Each match costs a read, so matches are
        // counted only a little way past the page.
        let (stats, filter) = (stats.clone(), filter.clone());
        let (query, sel) = blocking(&cat, move |c| {
            let failed = std::cell::Cell::new(None);
            let item = |site: Arc<Site>| SiteRecord {
                stats: stats.get(site.id.as_str()).copied(),
                site,
                retired: false,
            };
            let observed = |i: &SiteRecord| {
                let last = i.stats.map(|s| s.last_observed_at);
                observed_before.is_none_or(|t| last.is_none_or(|l| l < t))
                    && observed_since.is_none_or(|t| last.is_some_and(|l| l >= t))
            };
            let before: Box<dyn Iterator<Item = Arc<Site>>> = match &after {
                None => Box::new(std::iter::empty()),
                Some(a) => Box::new(
                    c.sites_at_from(t, None, &failed)
                        .take_while(move |s| s.id <= *a),
                ),
            };
            let before = before
                .filter(|s| filter.matches(s))
                .map(item)
                .filter(observed);
            let items = c
                .sites_at_from(t, after.clone(), &failed)
                .filter(|s| filter.matches(s))
                .map(item)
                .filter(observed);
            let sel = query
                .selector
                .select_in_id_order(before, items, PAST_COUNT_CAP, None);
            match failed.into_inner() {
                Some(e) => Err(ApiError::from(e)),
                None => Ok((query, sel)),
            }
        })
        .await?;
        let stats = cat.observation_stats();
        return respond_sites(&req, &query, &view, &stats, sel).await;
    }
    // The lon/lat rectangles that hold every answer, so that the past is read
    // from that area only.
    let area: Option<Vec<[f64; 4]>> = match (&bbox, &intersects) {
        (Some(b), _) => Some(b.pieces()),
        (None, Some(g)) => {
            let [w, s, e, n] = g.lonlat_bounds();
            Some(vec![[w, s, e, n]])
        }
        (None, None) => None,
    };
    let (live, retired) = view.indexes(&cat, area).await?;
    // Each site paired with whether it is retired; a site is live or retired at
    // any one moment, never both.
    let mut matched: Vec<(Arc<Site>, bool)> =
        query_index(&live).into_iter().map(|s| (s, false)).collect();
    if let Some(retired) = &retired {
        matched.extend(query_index(retired).into_iter().map(|s| (s, true)));
    }
    // Staleness: sites nobody has looked at since a date, or looked at lately.
    let last_seen = |s: &Site| stats.get(s.id.as_str()).map(|st| st.last_observed_at);
    if let Some(t) = observed_before {
        matched.retain(|(s, _)| last_seen(s).is_none_or(|l| l < t));
    }
    if let Some(t) = observed_since {
        matched.retain(|(s, _)| last_seen(s).is_some_and(|l| l >= t));
    }
    let items: Vec<SiteRecord> = matched
        .into_iter()
        .map(|(site, retired)| SiteRecord {
            stats: stats.get(site.id.as_str()).copied(),
            site,
            retired,
        })
        .collect();
    let sel = query.selector.select(items);
    respond_sites(&req, &query, &view, &stats, sel).await
}

/// A page of the live sites in id order from the cursor: the walk covers
/// only the sites an index names where one answers part of the query (text
/// a name must hold, a place the footprint must meet, when sites were last
/// observed), and filters them one at a time, collecting only the page.
fn live_page(
    cat: &Catalogue,
    selector: &crate::query::Selector,
    filter: &crate::index::Filter,
    after: Option<SiteId>,
    (observed_before, observed_since): (
        Option<crate::model::Timestamp>,
        Option<crate::model::Timestamp>,
    ),
    stats: &crate::model::SiteStats,
) -> Selection<SiteRecord> {
    // The live index is in id order: the page is read from the cursor on,
    // filtered one site at a time, and only it is collected.
    let index = cat.index();
    let unfiltered_but_time = *filter == crate::index::Filter::default()
        && selector.filter.is_none()
        && selector.datetime.is_none();
    let unfiltered = unfiltered_but_time && observed_before.is_none() && observed_since.is_none();
    // What the filter requires of enumerated properties is tested by the
    // index's cheap filter first.
    let filter = &selector.filter.as_ref().map_or_else(
        || filter.clone(),
        |f| cql::narrowed_filter(f, filter.clone()),
    );
    let item = |site: &Arc<Site>| SiteRecord {
        stats: stats.get(site.id.as_str()).copied(),
        site: site.clone(),
        retired: false,
    };
    let observed = |i: &SiteRecord| {
        let last = i.stats.map(|s| s.last_observed_at);
        observed_before.is_none_or(|t| last.is_none_or(|l| l < t))
            && observed_since.is_none_or(|t| last.is_some_and(|l| l >= t))
    };
    // Where an index answers part of the query (text a name must hold,
    // when sites were last observed), the walk covers the sites it names,
    // in id order, rather than the catalogue.
    // Ids, not sites: the sites by time may name a hundred thousand, and
    // only those the page and the count reach are looked up.
    let by_time_sets = (observed_before.is_some() || observed_since.is_some())
        .then(|| cat.observed())
        .flatten();
    // The sites by time are live and match exactly: with nothing else
    // asked, they give the page after the cursor (and one more, to know
    // there are more) and the count, at the cost of the matches.
    let mut time_total = None;
    // Whether the matches are too many to list and too few to count by
    // those that do not: the page is walked to, and not counted.
    let mut uncounted = false;
    let by_time = by_time_sets.as_ref().and_then(|o| {
        if unfiltered_but_time {
            match o.page(
                observed_before,
                observed_since,
                after.as_ref(),
                selector.limit + 1,
            ) {
                Some((page, total)) => {
                    time_total = Some(total);
                    Some(page)
                }
                // So many match that walking the catalogue in id order
                // fills the page soon; the count comes from those that
                // do not match.
                None => {
                    time_total = o.count(observed_before, observed_since);
                    uncounted = time_total.is_none();
                    None
                }
            }
        } else {
            o.ids(observed_before, observed_since)
        }
    });
    let named = selector
        .filter
        .as_ref()
        .and_then(|f| cql::required_text(f, "name"))
        .and_then(|needle| index.named_at_most(&needle, crate::catalogue::DENSE));
    let by_name = named
        .as_ref()
        .map(|sites| sites.iter().map(|s| &s.id).collect());
    // A place the footprint must meet is asked of the tree.
    let placed = selector
        .filter
        .as_ref()
        .and_then(cql::required_place)
        .map(|need| cql::sites_for(&index, need));
    let by_place = placed
        .as_ref()
        .map(|sites| sites.iter().map(|s| &s.id).collect());
    let narrowed = match (by_time, by_name) {
        (Some(a), Some(b)) => Some(both(a, b)),
        (a, b) => a.or(b),
    };
    let narrowed = match (narrowed, by_place) {
        (Some(a), Some(b)) => Some(both(a, b)),
        (a, b) => a.or(b),
    };
    type Sites<'a> = Box<dyn Iterator<Item = &'a Arc<Site>> + 'a>;
    let (before, items): (Sites<'_>, Sites<'_>) = match &narrowed {
        Some(list) => {
            let cut = after
                .as_ref()
                .map_or(0, |a| list.partition_point(|id| *id <= a));
            let live = |id: &&SiteId| index.get(id).filter(|s| filter.matches(s));
            (
                Box::new(list[..cut].iter().filter_map(live)),
                Box::new(list[cut..].iter().filter_map(live)),
            )
        }
        None => (
            Box::new(
                index
                    .all(filter)
                    .take_while(|s| after.as_ref().is_some_and(|a| s.id <= *a)),
            ),
            Box::new(index.from(after.as_ref(), filter)),
        ),
    };
    let before = before.map(item).filter(observed);
    let items = items.map(item).filter(observed);
    let total = unfiltered.then(|| index.len()).or(time_total);
    let cap = if uncounted { 0 } else { COUNT_CAP };
    selector.select_in_id_order(before, items, cap, total)
}

/// How far past a page of the past its matches are counted: each is a read.
const PAST_COUNT_CAP: usize = 100;

/// The sites in both id-ordered lists, in id order.
fn both<'a>(a: Vec<&'a SiteId>, b: Vec<&'a SiteId>) -> Vec<&'a SiteId> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(*x);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// A page of sites as GeoJSON or CSV, each with its observation statistics,
/// its retired flag when asked for, and a link to itself; the features are
/// built and written off the worker (a page may hold ten thousand).
async fn respond_sites(
    req: &HttpRequest,
    query: &ItemQuery,
    view: &RecordView,
    stats: &crate::model::SiteStats,
    sel: Selection<SiteRecord>,
) -> Result<HttpResponse, ApiError> {
    let base = base_url(req);
    let (view, stats) = (*view, stats.clone());
    let (page, sel) = sel.take_page();
    query
        .respond_off_thread(req, &sel, move || {
            let mut doc = render::sites_collection(page.iter().map(|i| &i.site), Map::new());
            view.mark_retired(&mut doc, page.iter().map(|i| i.retired));
            render::add_observation_stats(&mut doc, &stats);
            let mut features = match doc["features"].take() {
                Value::Array(f) => f,
                _ => Vec::new(),
            };
            for f in &mut features {
                let id = f["id"].as_str().unwrap_or_default().to_owned();
                f["links"] = json!([Link::new(
                    format!("{base}/api/collections/sites/items/{id}"),
                    "self",
                    GEOJSON,
                    ""
                )]);
            }
            features
        })
        .await
}

/// One site.
#[utoipa::path(
    get,
    path = "/api/collections/sites/items/{id}",
    tag = "Data",
    operation_id = "getSite",
    params(
        ("id" = String, Path, description = "the site's id"),
        super::openapi::SiteItemParams,
    ),
    responses(
        (status = 200, description = "The site; `ETag` is its version, for If-Match on an edit", body = SiteFeature, content_type = "application/geo+json",
            headers(("ETag" = String, description = "the site's version"))),
        (status = 400, description = "A parameter is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such site (at that moment)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn site_item(
    req: HttpRequest,
    path: web::Path<String>,
    cat: web::Data<Arc<Catalogue>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    if let Some(f) = p.typed("f")?.filter(|f| !matches!(*f, "json" | "geojson")) {
        return Err(ApiError::bad(
            "f",
            format!("a single item is served as json only, not {f:?}"),
        ));
    }
    let view = RecordView::parse(&p)?;
    let raw = path.into_inner();
    let not_found = || ApiError::NotFound {
        detail: format!("no site with id {raw:?}"),
    };
    let id = SiteId::parse("id", &raw).map_err(|_| not_found())?;
    let (site, retired) = view.site(&cat, id).await?.ok_or_else(not_found)?;
    let mut feature = view.feature(&site, retired);
    render::add_observation_stats(&mut feature, &cat.observation_stats());
    // The version an edit sends back in If-Match.
    Ok(HttpResponse::Ok()
        .insert_header(actix_web::http::header::ETag(super::edits::etag(&site)))
        .content_type(GEOJSON)
        .json(feature))
}

/// Sites near a point: within a radius, or the nearest few.
#[utoipa::path(
    get,
    path = "/api/nearby",
    tag = "Proximity",
    operation_id = "getNearby",
    params(
        ("lon" = f64, Query, minimum = -180, maximum = 180, description = "longitude, WGS84 degrees"),
        ("lat" = f64, Query, minimum = -90, maximum = 90, description = "latitude, WGS84 degrees"),
        ("radius_m" = Option<f64>, Query, minimum = 0, description = "every site within this many geodesic metres; without it, the `limit` nearest"),
        ("limit" = Option<u64>, Query, minimum = 1, description = "at most this many (default 10 nearest, or 1,000 within a radius; at most 10,000)"),
        super::openapi::SiteFilterParams,
    ),
    responses(
        (status = 200, description = "Sites nearest first, each with properties.distance_m", body = NearbyCollection, content_type = "application/geo+json"),
        (status = 400, description = "A parameter is wrong; `parameter` names it", body = Problem, content_type = "application/problem+json"),
    )
)]
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
    let body = render::hits_json(&hits, &extra, &cat.observation_stats());
    Ok(HttpResponse::Ok().content_type(GEOJSON).body(body))
}

/// Requests no route took: a path that names a resource gets a 405 with the
/// methods it takes, any other a 404.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(pattern) = req.match_pattern() {
        let allow = super::methods::allow(&pattern);
        return Err(ApiError::MethodNotAllowed {
            detail: format!(
                "{} does not take {}; it takes {allow}",
                req.path(),
                req.method()
            ),
            allow,
        });
    }
    Err(ApiError::NotFound {
        detail: format!("nothing at {}", req.path()),
    })
}
