//! The map page: the bundled page and its assets, embedded at build time and
//! served at `/`, and the endpoints only the map needs under `/api/map/`: its
//! settings, the span of the record for the time slider, a compact answer per
//! view that stays small with 100,000 sites, and search by name.

use super::deadline::blocking;
use super::error::ApiError;
use super::params::Params;
use super::routes::GEOJSON;
use crate::catalogue::{Catalogue, ChangesQuery, EventKind};
use crate::geodesy::{self, WGS84_A};
use crate::index::{SiteIndex, folded, footprint_meets_bbox};
use crate::model::{
    BBox, Declaration, Finding, PositionQuality, Site, SiteKind, Status, Timestamp,
};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Whether `build.rs` built the page, or why not.
const WEB_STATUS: &str = env!("SITEWATCH_WEB_STATUS");

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("OUT_DIR"), "/web/", $name)),
        }
    };
}

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
const ASSETS: [Asset; 4] = [
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("outlines.json", "application/json"),
    asset!("licenses.txt", "text/plain; charset=utf-8"),
];

/// Above this many sites in view the map gets clusters instead of sites: a
/// canvas draws a few thousand footprints smoothly, not a hundred thousand.
pub const MAX_SITES_PER_VIEW: usize = 3_000;

/// Beyond this many footprint vertices in a view, it comes as clusters.
pub const MAX_VERTICES_PER_VIEW: usize = 300_000;
/// Cluster cells are this many screen pixels wide at the requested zoom.
const CLUSTER_CELL_PX: f64 = 64.0;
/// A footprint narrower than this many pixels is sent as its centre point.
const MIN_FOOTPRINT_PX: f64 = 3.0;
/// Web Mercator stops here; positions beyond are binned at the edge.
const MERCATOR_MAX_LAT: f64 = 85.051_128_78;
/// Past catalogues kept for the time slider (each is a full index).
const AS_OF_CACHE: usize = 4;

/// The optional raster basemap drawn over the built-in outlines.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiles {
    /// An XYZ template such as `https://tile.openstreetmap.org/{z}/{x}/{y}.png`.
    pub url: String,
    pub attribution: String,
}

impl Tiles {
    /// Checks a tile URL template (http or https, with `{z}`, `{x}` and `{y}`)
    /// and picks an attribution when none is given.
    pub fn parse(url: &str, attribution: Option<String>) -> Result<Self, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("--tiles must be an http or https URL, got {url:?}"));
        }
        for part in ["{z}", "{x}", "{y}"] {
            if !url.contains(part) {
                return Err(format!("--tiles must contain {part}, got {url:?}"));
            }
        }
        let attribution = attribution
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| {
                if url.contains("openstreetmap.org") {
                    "© OpenStreetMap contributors".to_string()
                } else {
                    format!("Tiles: {}", Self::host_of(url))
                }
            });
        Ok(Self {
            url: url.to_string(),
            attribution,
        })
    }

    fn host_of(url: &str) -> &str {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        rest.split(['/', '?', '#']).next().unwrap_or(rest)
    }

    /// The CSP source that lets the page load the tiles: scheme and host, with
    /// a `{a-c}`-style subdomain turned into a wildcard.
    fn csp_source(&self) -> String {
        let scheme = self.url.split_once("://").map_or("https", |(s, _)| s);
        let host = Self::host_of(&self.url);
        let labels: Vec<&str> = host
            .split('.')
            .map(|l| if l.contains('{') { "*" } else { l })
            .collect();
        format!("{scheme}://{}", labels.join("."))
    }
}

/// Past catalogues built for the time slider, each keyed by the newest
/// revision it includes, oldest first.
type PastCatalogues = Mutex<VecDeque<(String, Arc<SiteIndex>)>>;

/// The page's settings, shared by every worker.
#[derive(Debug, Default, Clone)]
pub struct PageConfig {
    tiles: Option<Tiles>,
    past: Arc<PastCatalogues>,
    /// Cluster cells of the whole catalogue, kept per base layer of the index.
    clusters: Arc<Mutex<Option<Arc<KeptClusters>>>>,
}

impl PageConfig {
    pub fn new(tiles: Option<Tiles>) -> Self {
        Self {
            tiles,
            ..Self::default()
        }
    }

    /// Bins the whole catalogue for the map's first view, and makes the name
    /// column, ahead of the first requests that need them.
    pub fn warm_up(&self, cat: &Catalogue) {
        let index = cat.index();
        if index.len() > MAX_SITES_PER_VIEW {
            let _ = whole_catalogue_cells(&self.clusters, &index, 0);
        }
        // The first name search would otherwise make the column.
        index.warm_names();
    }

    /// The page's Content-Security-Policy: its own scripts and styles only, and
    /// images from itself and the tile server.
    fn csp(&self) -> String {
        let tiles = self
            .tiles
            .as_ref()
            .map(|t| format!(" {}", t.csp_source()))
            .unwrap_or_default();
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{tiles}; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
    }
}

/// Registers the page, its assets and the map endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/", web::head().to(index))
        .route("/index.html", web::get().to(index))
        .route("/assets/{name}", web::get().to(asset))
        .route("/assets/{name}", web::head().to(asset))
        .route("/api/map/config", web::get().to(config))
        .route("/api/map/timeline", web::get().to(timeline))
        .route("/api/map/sites", web::get().to(view_sites))
        .route("/api/map/search", web::get().to(search));
}

fn page_config(cfg: Option<web::Data<PageConfig>>) -> PageConfig {
    cfg.map(|c| c.get_ref().clone()).unwrap_or_default()
}

/// A strong validator for an embedded file: its SHA-256, shortened, worked
/// out once per file.
fn etag_of(a: &Asset) -> String {
    use sha2::Digest;
    static TAGS: OnceLock<Mutex<HashMap<&'static str, String>>> = OnceLock::new();
    let tags = TAGS.get_or_init(Mutex::default);
    let mut tags = tags.lock().unwrap_or_else(PoisonError::into_inner);
    tags.entry(a.name)
        .or_insert_with(|| format!("\"{}\"", &hex::encode(sha2::Sha256::digest(a.body))[..20]))
        .clone()
}

fn embedded(req: &HttpRequest, a: &Asset) -> HttpResponse {
    let tag = etag_of(a);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    // Revalidated every time: the binary may have been rebuilt with a new page.
    resp.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        resp.finish()
    } else {
        resp.content_type(a.content_type).body(a.body)
    }
}

async fn index(req: HttpRequest, cfg: Option<web::Data<PageConfig>>) -> HttpResponse {
    let mut resp = embedded(&req, &INDEX);
    if let Ok(csp) = header::HeaderValue::from_str(&page_config(cfg).csp()) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    resp
}

async fn asset(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(|a| embedded(&req, a))
        .ok_or_else(|| ApiError::NotFound {
            detail: format!("no asset named {name:?}"),
        })
}

fn names<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| as_str(*v)).collect()
}

/// `GET /api/map/config`: what the page needs before it draws anything.
async fn config(
    cat: web::Data<Arc<Catalogue>>,
    cfg: Option<web::Data<PageConfig>>,
) -> Result<HttpResponse, ApiError> {
    let cfg = page_config(cfg);
    // Kept by the index as sites change, not computed per request.
    let extent = cat.index().bounds();
    Ok(HttpResponse::Ok().json(json!({
        "assets": WEB_STATUS,
        "extent": extent,
        "tiles": cfg.tiles.as_ref().map(|t| json!({"url": t.url, "attribution": t.attribution})),
        "max_sites_per_view": MAX_SITES_PER_VIEW,
        "vocabulary": {
            "declaration": names(Declaration::ALL, Declaration::as_str),
            "kind": names(SiteKind::ALL, SiteKind::as_str),
            "status": names(Status::ALL, Status::as_str),
            "position_quality": names(PositionQuality::ALL, PositionQuality::as_str),
            "finding": names(Finding::ALL, Finding::as_str),
        },
    })))
}

/// The newest event of these kinds at or before `until`.
fn newest_event(
    cat: &Catalogue,
    kinds: &[EventKind],
    until: Option<Timestamp>,
) -> Result<Option<Value>, ApiError> {
    let page = cat
        .changes(&ChangesQuery {
            kinds: kinds.to_vec(),
            until,
            limit: 1,
            ..ChangesQuery::default()
        })
        .map_err(ApiError::internal)?;
    Ok(page.events.into_iter().next())
}

/// `GET /api/map/timeline`: the days the time slider spans. `first_day` is the
/// first observation or revision; `record_first_day` the day the catalogue
/// itself was first recorded, before which it has no sites to show.
async fn timeline(cat: web::Data<Arc<Catalogue>>) -> Result<HttpResponse, ApiError> {
    let (first_observation, first_record) = blocking(&cat, |c| {
        let (observed, recorded) = c.first_event_times().map_err(ApiError::internal)?;
        Ok::<_, ApiError>((observed.map(Timestamp::date), recorded.map(Timestamp::date)))
    })
    .await?;
    let first_event = first_observation.into_iter().chain(first_record).min();
    let today = Timestamp::now().date();
    Ok(HttpResponse::Ok().json(json!({
        "first_day": first_event.unwrap_or(today).to_string(),
        "record_first_day": first_record.map(|d| d.to_string()),
        "today": today.to_string(),
    })))
}

/// The live sites now, or as recorded at `t`. A past catalogue only changes
/// with a revision recorded at or before `t`, so the newest such revision keys
/// a small cache: stepping the slider through days without revisions rebuilds
/// nothing.
///
/// With `area` (lon/lat rectangles, `west <= east`), only the sites whose
/// footprint boxes meet it are read, by index.
async fn sites_at(
    cat: &Arc<Catalogue>,
    cfg: &PageConfig,
    t: Option<Timestamp>,
    area: Option<Vec<[f64; 4]>>,
) -> Result<Arc<SiteIndex>, ApiError> {
    let Some(t) = t else {
        return Ok(cat.index());
    };
    let key = blocking(cat, move |c| {
        Ok::<_, ApiError>(
            newest_event(c, &[EventKind::Revision], Some(t))?.map(|e| format!("{}", e["id"])),
        )
    })
    .await?;
    let Some(key) = key else {
        return Ok(Arc::new(SiteIndex::default()));
    };
    let key = format!("{key} {area:?}");
    let cached = {
        let past = cfg.past.lock().unwrap_or_else(PoisonError::into_inner);
        past.iter().find(|(k, _)| *k == key).map(|(_, i)| i.clone())
    };
    if let Some(index) = cached {
        return Ok(index);
    }
    let index = Arc::new(
        blocking(cat, move |c| {
            c.sites_as_of(t, area.as_deref())
                .map_err(ApiError::internal)
        })
        .await?,
    );
    let mut past = cfg.past.lock().unwrap_or_else(PoisonError::into_inner);
    if past.len() == AS_OF_CACHE {
        past.pop_front();
    }
    past.push_back((key, index.clone()));
    Ok(index)
}

/// Case-insensitive search text; empty means none.
fn needle(p: &Params) -> Result<Option<String>, ApiError> {
    Ok(p.get("q")?
        .map(|q| folded(q.trim()))
        .filter(|q| !q.is_empty()))
}

fn centre(site: &Site) -> [f64; 2] {
    let [lon, lat] = geodesy::to_lonlat(site.footprint.shape().centre());
    // Five decimals are a metre; more only makes the answer longer.
    [(lon * 1e5).round() / 1e5, (lat * 1e5).round() / 1e5]
}

/// Web Mercator metres per pixel at the equator for a 256-pixel tile pyramid.
fn resolution(zoom: f64) -> f64 {
    2.0 * std::f64::consts::PI * WGS84_A / 256.0 / 2f64.powf(zoom)
}

fn mercator([lon, lat]: [f64; 2]) -> [f64; 2] {
    let lat = lat.clamp(-MERCATOR_MAX_LAT, MERCATOR_MAX_LAT).to_radians();
    [
        WGS84_A * lon.to_radians(),
        WGS84_A * (std::f64::consts::FRAC_PI_4 + lat / 2.0).tan().ln(),
    ]
}

fn unmercator([x, y]: [f64; 2]) -> [f64; 2] {
    let lon = (x / WGS84_A).to_degrees();
    let lat = (2.0 * (y / WGS84_A).exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees();
    [(lon * 1e5).round() / 1e5, (lat * 1e5).round() / 1e5]
}

/// One site for the map: its footprint, or its centre when the footprint would
/// be too small to see, and the properties the map styles and labels with.
fn map_feature(site: &Site, res: f64) -> Value {
    let c = centre(site);
    // Ground metres per pixel shrink with the cosine of latitude in Mercator.
    let metres_per_px = res * c[1].to_radians().cos().max(1e-6);
    let width_px = 2.0 * site.footprint.shape().radius() * WGS84_A / metres_per_px;
    let (geometry, marker) = if width_px < MIN_FOOTPRINT_PX {
        (json!({"type": "Point", "coordinates": c}), true)
    } else {
        (site.footprint.to_geojson(), false)
    };
    json!({
        "type": "Feature", "id": site.id, "geometry": geometry,
        "properties": {
            "id": site.id, "name": site.name, "declaration": site.declaration,
            "kind": site.kind, "status": site.status,
            "position_quality": site.position_quality, "marker": marker,
        }
    })
}

/// One cluster cell: how many sites, the sum of their Mercator centres, how
/// many of each declaration, and the lon/lat box of their centres.
#[derive(Debug, Clone, Copy)]
struct Cell {
    count: i64,
    sum: [f64; 2],
    by_declaration: [i64; 4],
    bounds: [f64; 4],
}

impl Default for Cell {
    fn default() -> Self {
        Self {
            count: 0,
            sum: [0.0, 0.0],
            by_declaration: [0; 4],
            bounds: [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
        }
    }
}

/// Cells keyed by their column and row on a grid aligned to the whole world.
type Cells = HashMap<(i64, i64), Cell>;

/// Adds a site to its cell (`sign` 1), or takes it out (`sign` -1). A site
/// taken out leaves the cell's box as it was: never too small.
fn bin(cells: &mut Cells, site: &Site, cell_size: f64, sign: i64) {
    let ll = centre(site);
    let [x, y] = mercator(ll);
    let key = (
        (x / cell_size).floor() as i64,
        (y / cell_size).floor() as i64,
    );
    let c = cells.entry(key).or_default();
    c.count += sign;
    c.sum = [c.sum[0] + sign as f64 * x, c.sum[1] + sign as f64 * y];
    let d = Declaration::ALL
        .iter()
        .position(|d| *d == site.declaration)
        .unwrap_or(3);
    c.by_declaration[d] += sign;
    if sign > 0 {
        c.bounds = [
            c.bounds[0].min(ll[0]),
            c.bounds[1].min(ll[1]),
            c.bounds[2].max(ll[0]),
            c.bounds[3].max(ll[1]),
        ];
    }
}

/// Cells as GeoJSON cluster features, in key order.
fn cell_features(cells: &Cells) -> Vec<Value> {
    let mut keys: Vec<(i64, i64)> = cells
        .iter()
        .filter(|(_, c)| c.count > 0)
        .map(|(k, _)| *k)
        .collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| {
            let c = &cells[&k];
            let n = c.count as f64;
            let mut props = Map::new();
            props.insert("cluster".into(), json!(true));
            props.insert("count".into(), json!(c.count));
            for (d, count) in Declaration::ALL.iter().zip(c.by_declaration) {
                props.insert(d.as_str().into(), json!(count));
            }
            props.insert("bbox".into(), json!(c.bounds));
            json!({
                "type": "Feature", "id": format!("cell:{}:{}", k.0, k.1),
                "geometry": {"type": "Point", "coordinates": unmercator([c.sum[0] / n, c.sum[1] / n])},
                "properties": props,
            })
        })
        .collect()
}

/// Sites binned on a Web Mercator grid aligned to the whole world, so a cell
/// stays put while the view pans.
fn clusters(sites: &[Arc<Site>], res: f64) -> Vec<Value> {
    let cell = CLUSTER_CELL_PX * res;
    let mut cells = Cells::new();
    for s in sites {
        bin(&mut cells, s, cell, 1);
    }
    cell_features(&coarsened(cells, MAX_SITES_PER_VIEW))
}

/// Cells merged four into one, as often as it takes to have at most `most`:
/// a view zoomed far in over a wide box would otherwise send a cluster per
/// site. The grid stays aligned to the world, so a merged cell is the cell of
/// the coarser zoom.
fn coarsened(mut cells: Cells, most: usize) -> Cells {
    while cells.values().filter(|c| c.count > 0).count() > most {
        let mut merged = Cells::with_capacity(cells.len() / 2);
        for ((x, y), c) in cells {
            let m: &mut Cell = merged
                .entry((x.div_euclid(2), y.div_euclid(2)))
                .or_default();
            m.count += c.count;
            m.sum = [m.sum[0] + c.sum[0], m.sum[1] + c.sum[1]];
            for (a, b) in m.by_declaration.iter_mut().zip(c.by_declaration) {
                *a += b;
            }
            m.bounds = [
                m.bounds[0].min(c.bounds[0]),
                m.bounds[1].min(c.bounds[1]),
                m.bounds[2].max(c.bounds[2]),
                m.bounds[3].max(c.bounds[3]),
            ];
        }
        cells = merged;
    }
    cells
}

/// The zooms at which a view of the whole catalogue is drawn from cells kept
/// per base layer of the index rather than binned per request.
const KEPT_CLUSTER_ZOOMS: std::ops::RangeInclusive<u32> = 0..=7;

/// The cluster cells of one base layer of the index at each kept zoom.
#[derive(Debug, Default)]
pub struct KeptClusters {
    key: usize,
    zooms: Vec<Cells>,
}

/// Cells for the whole live catalogue at `zoom`: those kept for the index's
/// base layer (binned once per base, which changes only when the index merges
/// its layers), brought up to date with the sites written since.
fn whole_catalogue_cells(
    kept: &std::sync::Mutex<Option<Arc<KeptClusters>>>,
    index: &SiteIndex,
    zoom: u32,
) -> Cells {
    let delta = index.base_and_delta();
    let base = {
        let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.as_ref() {
            Some(k) if k.key == delta.key => k.clone(),
            _ => {
                let zooms = KEPT_CLUSTER_ZOOMS
                    .map(|z| {
                        let cell = CLUSTER_CELL_PX * resolution(f64::from(z));
                        let mut cells = Cells::new();
                        for s in delta.base {
                            bin(&mut cells, s, cell, 1);
                        }
                        cells
                    })
                    .collect();
                let fresh = Arc::new(KeptClusters {
                    key: delta.key,
                    zooms,
                });
                *kept = Some(fresh.clone());
                fresh
            }
        }
    };
    let cell = CLUSTER_CELL_PX * resolution(f64::from(zoom));
    let mut cells = base.zooms[zoom as usize].clone();
    for s in &delta.removed {
        bin(&mut cells, s, cell, -1);
    }
    for s in delta.added {
        bin(&mut cells, s, cell, 1);
    }
    cells
}

/// `GET /api/map/sites?bbox=&zoom=&declaration=&kind=&status=&country=&position_quality=&q=&as_of=`:
/// the sites in a view, sized for drawing. `numberMatched` is the same count
/// `/api/collections/sites/items` gives for that box and those filters. Up to
/// [`MAX_SITES_PER_VIEW`] come as features (`mode: "sites"`), the smallest as
/// centre points; more come as grid clusters with counts per declaration.
async fn view_sites(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
    cfg: Option<web::Data<PageConfig>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let filter = p.filter()?;
    let bbox = p.bbox()?.unwrap_or(BBox {
        west: -180.0,
        south: -90.0,
        east: 180.0,
        north: 90.0,
    });
    let zoom = match p.f64("zoom")? {
        None => 0.0,
        Some(z) if (0.0..=30.0).contains(&z) => z.floor(),
        Some(z) => {
            return Err(ApiError::bad(
                "zoom",
                format!("zoom must be 0 to 30, got {z}"),
            ));
        }
    };
    let q = needle(&p)?;
    let as_of = p.timestamp("as_of")?;
    let cfg = page_config(cfg);
    let index = sites_at(&cat, &cfg, as_of, Some(bbox.pieces())).await?;
    let res = resolution(zoom);
    let doc = blocking(&cat, move |_| {
        // The whole live catalogue in view, unfiltered, at a coarse zoom (the
        // first view of the map page): every site is in the box, and the
        // clusters come from cells kept per base layer of the index.
        let whole = as_of.is_none()
            && q.is_none()
            && filter == crate::index::Filter::default()
            && KEPT_CLUSTER_ZOOMS.contains(&(zoom as u32))
            && index.len() > MAX_SITES_PER_VIEW
            && index.bounds().is_some_and(|[w, s, e, n]| {
                bbox.west <= w && bbox.south <= s && e <= bbox.east && n <= bbox.north
            });
        if whole {
            let cells = whole_catalogue_cells(&cfg.clusters, &index, zoom as u32);
            return Ok::<_, ApiError>(json!({
                "type": "FeatureCollection", "mode": "clusters", "zoom": zoom,
                "numberMatched": index.len(), "as_of": as_of, "features": cell_features(&cells),
            }));
        }
        // A name narrows most: its index answers first, and the box and
        // filters are tested on what it names.
        let sites: Vec<Arc<Site>> = match &q {
            Some(q) => index
                .named(q)
                .into_iter()
                .filter(|s| filter.matches(s) && footprint_meets_bbox(&s.footprint, &bbox))
                .cloned()
                .collect(),
            None => index.bbox(&bbox, &filter),
        };
        // Footprints are drawn only while the answer stays small: a view of a
        // few thousand sites with ten thousand vertices each would be a
        // document of a gigabyte.
        let vertices: usize = sites.iter().map(|s| s.footprint.vertex_count()).sum();
        let (mode, features) =
            if sites.len() <= MAX_SITES_PER_VIEW && vertices <= MAX_VERTICES_PER_VIEW {
                ("sites", sites.iter().map(|s| map_feature(s, res)).collect())
            } else {
                ("clusters", clusters(&sites, res))
            };
        Ok::<_, ApiError>(json!({
            "type": "FeatureCollection", "mode": mode, "zoom": zoom,
            "numberMatched": sites.len(), "as_of": as_of, "features": features,
        }))
    })
    .await?;
    // Written off the worker too: a view may be megabytes.
    let body = web::block(move || serde_json::to_vec(&doc))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().content_type(GEOJSON).body(body))
}

/// `GET /api/map/search?q=&limit=&as_of=`: sites whose name or an alternate
/// name contains `q` (any case), names that start with it first, with the
/// centre to fly to.
async fn search(
    req: HttpRequest,
    cat: web::Data<Arc<Catalogue>>,
    cfg: Option<web::Data<PageConfig>>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let q = needle(&p)?.ok_or_else(|| ApiError::bad("q", "q is required"))?;
    let limit = p.limit(20, 200)?;
    let index = sites_at(&cat, &page_config(cfg), p.timestamp("as_of")?, None).await?;
    let mut found: Vec<(bool, &Arc<Site>)> = index
        .named(&q)
        .into_iter()
        .map(|s| (!s.names().any(|n| folded(n).starts_with(&q)), s))
        .collect();
    let total = found.len();
    // Stable: id order within each group.
    found.sort_by_key(|(later, _)| *later);
    let matches: Vec<Value> = found
        .iter()
        .take(limit)
        .map(|(_, s)| {
            json!({
                "id": s.id, "name": s.name, "alt_names": s.alt_names, "country": s.country,
                "kind": s.kind, "declaration": s.declaration, "centre": centre(s),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"q": q, "numberMatched": total, "matches": matches})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_template_needs_http_and_all_three_placeholders() {
        assert!(Tiles::parse("ftp://x/{z}/{x}/{y}.png", None).is_err());
        assert!(Tiles::parse("https://x/{z}/{x}.png", None).is_err());
        let osm = Tiles::parse("https://tile.openstreetmap.org/{z}/{x}/{y}.png", None).unwrap();
        assert_eq!(osm.attribution, "© OpenStreetMap contributors");
        let other = Tiles::parse("http://{a-c}.tiles.example:8080/{z}/{x}/{y}.png", None).unwrap();
        assert_eq!(other.attribution, "Tiles: {a-c}.tiles.example:8080");
        assert_eq!(other.csp_source(), "http://*.tiles.example:8080");
    }

    #[test]
    fn the_page_policy_allows_only_its_own_code_and_the_tile_host() {
        let csp = PageConfig::new(None).csp();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let with = PageConfig::new(Some(
            Tiles::parse("https://tile.openstreetmap.org/{z}/{x}/{y}.png", None).unwrap(),
        ))
        .csp();
        assert!(
            with.contains("img-src 'self' data: blob: https://tile.openstreetmap.org;"),
            "{with}"
        );
    }

    #[test]
    fn mercator_round_trips_and_cells_tile_the_world_exactly() {
        for ll in [[0.0, 0.0], [125.75, 39.8], [-179.9, -60.0], [179.9, 70.0]] {
            let back = unmercator(mercator(ll));
            assert!((back[0] - ll[0]).abs() < 1e-5 && (back[1] - ll[1]).abs() < 1e-5);
        }
        // Whole cells span the world at every zoom, so none straddles the antimeridian.
        for z in 0..20 {
            let cells =
                2.0 * std::f64::consts::PI * WGS84_A / (CLUSTER_CELL_PX * resolution(z as f64));
            assert!((cells - cells.round()).abs() < 1e-6, "zoom {z}: {cells}");
        }
    }

    #[test]
    fn a_view_with_more_cells_than_it_may_send_merges_them_and_keeps_every_count() {
        let sites: Vec<Arc<Site>> = crate::synth::sites(2_000, 5)
            .into_iter()
            .map(Arc::new)
            .collect();
        // So fine a grid that nearly every site has a cell of its own.
        let res = resolution(30.0);
        let mut fine = Cells::new();
        for s in &sites {
            bin(&mut fine, s, CLUSTER_CELL_PX * res, 1);
        }
        assert!(fine.len() > 500);
        let few = coarsened(fine.clone(), 100);
        assert!(few.values().filter(|c| c.count > 0).count() <= 100);
        let total = |c: &Cells| c.values().map(|c| c.count).sum::<i64>();
        assert_eq!(total(&few), sites.len() as i64);
        let by_declaration = |c: &Cells| {
            c.values().fold([0i64; 4], |mut acc, c| {
                for (a, b) in acc.iter_mut().zip(c.by_declaration) {
                    *a += b;
                }
                acc
            })
        };
        assert_eq!(by_declaration(&few), by_declaration(&fine));
        // Each merged cell is the cell of a coarser grid and its box holds
        // the boxes of the cells it took in.
        let rounds = (0..64)
            .find(|r| {
                fine.keys()
                    .all(|&(x, y)| few.contains_key(&(x >> r, y >> r)))
            })
            .expect("the merged cells are those of a coarser grid");
        for (&(x, y), c) in &fine {
            let m = &few[&(x >> rounds, y >> rounds)];
            assert!(m.bounds[0] <= c.bounds[0] && m.bounds[1] <= c.bounds[1]);
            assert!(m.bounds[2] >= c.bounds[2] && m.bounds[3] >= c.bounds[3]);
        }
    }

    #[test]
    fn clusters_count_every_site_once_by_declaration() {
        let sites: Vec<Arc<Site>> = crate::synth::sites(500, 3)
            .into_iter()
            .map(Arc::new)
            .collect();
        let features = clusters(&sites, resolution(2.0));
        let total: u64 = features
            .iter()
            .map(|f| f["properties"]["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 500);
        for f in &features {
            let p = &f["properties"];
            let parts: u64 = Declaration::ALL
                .iter()
                .map(|d| p[d.as_str()].as_u64().unwrap())
                .sum();
            assert_eq!(parts, p["count"].as_u64().unwrap());
        }
        assert!(features.len() < 500, "no site was binned with another");
    }

    #[test]
    fn kept_clusters_brought_up_to_date_by_the_delta_match_clusters_binned_anew() {
        let pool: Vec<Arc<Site>> = crate::synth::sites(900, 5)
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut index = SiteIndex::build(pool[..600].to_vec());
        let kept = Mutex::new(None);
        // Binned once for this base.
        let _ = whole_catalogue_cells(&kept, &index, 3);
        let key = kept.lock().unwrap().as_ref().unwrap().key;
        // Edits since: some sites move (take another's footprint), some leave.
        let mut changes = Vec::new();
        for i in (0..600).step_by(7) {
            let change = if i % 3 == 0 {
                None
            } else {
                let mut moved = (*pool[600 + i / 7]).clone();
                moved.id = pool[i].id.clone();
                Some(Arc::new(moved))
            };
            changes.push((pool[i].id.clone(), change));
        }
        index = index.with_changes(changes);
        for zoom in KEPT_CLUSTER_ZOOMS {
            let cells = whole_catalogue_cells(&kept, &index, zoom);
            let live: Vec<Arc<Site>> = index
                .all(&crate::index::Filter::default())
                .cloned()
                .collect();
            let fresh = {
                let mut c = Cells::new();
                for s in &live {
                    bin(&mut c, s, CLUSTER_CELL_PX * resolution(f64::from(zoom)), 1);
                }
                c
            };
            let occupied = |c: &Cells| {
                let mut k: Vec<_> = c
                    .iter()
                    .filter(|(_, c)| c.count > 0)
                    .map(|(k, c)| (*k, c.count, c.by_declaration))
                    .collect();
                k.sort_unstable();
                k
            };
            assert_eq!(occupied(&cells), occupied(&fresh), "zoom {zoom}");
            for (k, f) in &fresh {
                let c = &cells[k];
                for i in 0..2 {
                    assert!((c.sum[i] - f.sum[i]).abs() < 1e-3 * f.sum[i].abs().max(1.0));
                }
                assert!(c.bounds[0] <= f.bounds[0] && c.bounds[1] <= f.bounds[1]);
                assert!(c.bounds[2] >= f.bounds[2] && c.bounds[3] >= f.bounds[3]);
            }
        }
        // The base was not binned again for the edits.
        assert_eq!(kept.lock().unwrap().as_ref().unwrap().key, key);
    }

    #[test]
    fn the_first_event_times_are_the_earliest_observation_and_revision() {
        let (cat, _) =
            Catalogue::from_store(crate::store::SqliteStore::open_in_memory().unwrap()).unwrap();
        let seed: Value = serde_json::from_str(crate::catalogue::SEED_OBSERVATIONS).unwrap();
        let earliest = seed["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                Timestamp::parse("t", f["properties"]["observed_at"].as_str().unwrap()).unwrap()
            })
            .min()
            .unwrap();
        let (observed, recorded) = cat.first_event_times().unwrap();
        assert_eq!(observed, Some(earliest));
        let first_revision = cat
            .revisions(&crate::model::SiteId::parse("id", "yongbyon").unwrap())
            .unwrap()[0]
            .recorded_at;
        assert!(recorded.is_some_and(|r| r <= first_revision));
        assert_eq!(recorded.map(Timestamp::date), Some(Timestamp::now().date()));
    }

    #[test]
    fn a_footprint_too_small_to_see_is_sent_as_its_centre() {
        let site = &crate::synth::sites(1, 5)[0];
        let far = map_feature(site, resolution(3.0));
        assert_eq!(far["geometry"]["type"], "Point");
        assert_eq!(far["properties"]["marker"], true);
        let near = map_feature(site, resolution(17.0));
        assert_eq!(near["geometry"]["type"], "Polygon");
        assert_eq!(near["properties"]["marker"], false);
    }
}
