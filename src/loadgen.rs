//! A load generator for a running server (`sitewatch bench --url`): a mix of
//! requests (every GET endpoint of the API and of the map page, and site
//! edits) with seeded random parameters, sent at a fixed concurrency for a
//! fixed time, reported per kind of request as throughput and latency
//! percentiles.
//!
//! One client thread drives every connection, so on a small machine the client
//! takes at most one core from the server it measures.

use crate::synth::LAT_RANGE;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// Declares the kinds of request in the mix, each with its name on the
/// command line and what it sends.
macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)*) => {
        /// The kinds of request in the mix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum RequestKind {
            $($(#[$doc])* $kind,)*
        }

        impl RequestKind {
            pub const ALL: &[Self] = &[$(Self::$kind,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$kind => $name,)*
                }
            }
        }
    };
}

kinds! {
    /// Every site within 10 km of a random point.
    Nearby = "nearby",
    /// The 10 sites nearest a random point.
    Nearest = "nearest",
    /// Sites in a random 1-degree box.
    Bbox = "bbox",
    /// One random site by id.
    Item = "item",
    /// The first page of one site's history.
    History = "history",
    /// Sites in a 2-degree box as recorded at a random moment of the record.
    AsOf = "as_of",
    /// One random site as recorded at a random moment.
    ItemAsOf = "item_as_of",
    /// Sites with a name containing a random letter: a filter no index answers.
    Filter = "filter",
    /// Sites not observed since a random day.
    ObservedBefore = "observed_before",
    /// Every event in a 2-degree box over ten years, first page.
    Changes = "changes",
    /// The change log from a random sequence number.
    Log = "log",
    /// The first page of observations.
    Observations = "observations",
    /// Observations in a 2-degree box.
    ObservationsBbox = "observations_bbox",
    /// Observations in a random month.
    ObservationsDatetime = "observations_datetime",
    /// The collections with their extents.
    Collections = "collections",
    /// The map's time slider span.
    Timeline = "timeline",
    /// The map's configuration and first view.
    MapConfig = "map_config",
    /// The whole world on the map at zoom 2.
    MapWorld = "map_world",
    /// A 1-degree view on the map at zoom 9.
    MapView = "map_view",
    /// A 2-degree view on the map at a random moment of the record.
    MapAsOf = "map_as_of",
    /// The map's name search.
    MapSearch = "map_search",
    /// A site edit: PUT of one random site, renamed in place.
    Edit = "edit",
}

impl RequestKind {
    /// The kinds `--mix` takes by default: the proximity and item paths.
    pub const DEFAULT: &[Self] = &[
        Self::Nearby,
        Self::Nearest,
        Self::Bbox,
        Self::Item,
        Self::History,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether requests of this kind name a site.
    pub fn needs_ids(self) -> bool {
        matches!(self, Self::Item | Self::ItemAsOf | Self::Edit)
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to send, how hard and for how long.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    pub kinds: Vec<RequestKind>,
    pub concurrency: usize,
    pub duration: Duration,
    /// Requests before this long are sent but not counted.
    pub warmup: Duration,
    /// Site ids for `item` requests, drawn uniformly.
    pub ids: Vec<String>,
    /// The site whose history `history` requests read.
    pub history_site: String,
    /// The span of the record, for requests about a moment of it: from the
    /// first revision to now.
    pub record: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    /// The span of the observations, for requests about a window of them.
    pub observed: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    /// The newest change log sequence number when the run began.
    pub log_head: i64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: RequestKind,
    pub requests: usize,
    /// Requests that failed or did not answer 200.
    pub errors: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Mean response body size.
    pub mean_bytes: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub kinds: Vec<KindReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no kinds of request to send")]
    NoKinds,
    #[error("item requests need at least one site id")]
    NoIds,
    #[error("starting the client: {0}")]
    Client(String),
}

struct Sample {
    kind: RequestKind,
    micros: u32,
    ok: bool,
    bytes: usize,
}

/// One request to send: a GET, or a PUT with a GeoJSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub path: String,
    /// A PUT body; `None` for a GET.
    pub put: Option<String>,
}

fn get(path: String) -> Request {
    Request { path, put: None }
}

/// A random moment in `[from, to]`, in RFC 3339 with `+` written for a URL.
fn moment(
    rng: &mut impl Rng,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
) -> chrono::DateTime<chrono::Utc> {
    let span = (to - from).num_seconds().max(1);
    from + chrono::Duration::seconds(rng.random_range(0..=span))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One random request of `kind`.
pub fn request(kind: RequestKind, rng: &mut impl Rng, plan: &LoadPlan) -> Request {
    let lon = rng.random_range(-180.0..180.0_f64);
    let lat = rng.random_range(LAT_RANGE.0..LAT_RANGE.1);
    // A box of `d` degrees at the point, kept inside the catalogue's area.
    let boxed = |d: f64| {
        let (w, s) = (lon.min(180.0 - d), lat.min(LAT_RANGE.1 - d));
        format!("{w:.5},{s:.5},{:.5},{:.5}", w + d, s + d)
    };
    let mut id = || plan.ids[rng.random_range(0..plan.ids.len())].clone();
    match kind {
        RequestKind::Nearby => get(format!(
            "/api/nearby?lon={lon:.5}&lat={lat:.5}&radius_m=10000"
        )),
        RequestKind::Nearest => get(format!("/api/nearby?lon={lon:.5}&lat={lat:.5}&limit=10")),
        RequestKind::Bbox => get(format!(
            "/api/collections/sites/items?bbox={}&limit=100",
            boxed(1.0)
        )),
        RequestKind::Item => get(format!("/api/collections/sites/items/{}", id())),
        RequestKind::History => get(format!("/api/sites/{}/history", plan.history_site)),
        RequestKind::AsOf => {
            let t = rfc3339(moment(rng, plan.record));
            get(format!(
                "/api/collections/sites/items?as_of={t}&bbox={}&limit=10",
                boxed(2.0)
            ))
        }
        RequestKind::ItemAsOf => {
            let site = id();
            let t = rfc3339(moment(rng, plan.record));
            get(format!("/api/collections/sites/items/{site}?as_of={t}"))
        }
        RequestKind::Filter => {
            let letter = char::from(b'a' + rng.random_range(0..26u8));
            get(format!(
                "/api/collections/sites/items?filter=name%20LIKE%20%27%25{letter}%25%27&limit=10"
            ))
        }
        RequestKind::ObservedBefore => {
            let t = rfc3339(moment(rng, plan.observed));
            get(format!(
                "/api/collections/sites/items?observed_before={t}&limit=10"
            ))
        }
        RequestKind::Changes => {
            let since = rfc3339(plan.observed.1 - chrono::Duration::days(3653));
            get(format!("/api/changes?bbox={}&since={since}", boxed(2.0)))
        }
        RequestKind::Log => {
            let after = rng.random_range(0..=plan.log_head.max(0));
            get(format!("/api/changes/log?after={after}"))
        }
        RequestKind::Observations => get("/api/collections/observations/items?limit=10".into()),
        RequestKind::ObservationsBbox => get(format!(
            "/api/collections/observations/items?bbox={}&limit=10",
            boxed(2.0)
        )),
        RequestKind::ObservationsDatetime => {
            let from = moment(rng, plan.observed);
            let to = from + chrono::Duration::days(30);
            get(format!(
                "/api/collections/observations/items?datetime={}/{}&limit=10",
                rfc3339(from),
                rfc3339(to)
            ))
        }
        RequestKind::Collections => get("/api/collections".into()),
        RequestKind::Timeline => get("/api/map/timeline".into()),
        RequestKind::MapConfig => get("/api/map/config".into()),
        RequestKind::MapWorld => get("/api/map/sites?bbox=-180,-85,180,85&zoom=2".into()),
        RequestKind::MapView => get(format!("/api/map/sites?bbox={}&zoom=9", boxed(1.0))),
        RequestKind::MapAsOf => {
            let t = rfc3339(moment(rng, plan.record));
            get(format!(
                "/api/map/sites?bbox={}&zoom=8&as_of={t}",
                boxed(2.0)
            ))
        }
        RequestKind::MapSearch => {
            let letters: String = (0..3)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            get(format!("/api/map/search?q={letters}"))
        }
        RequestKind::Edit => {
            let site = id();
            let half = 0.005;
            let feature = serde_json::json!({
                "type": "Feature", "id": site,
                "geometry": {"type": "Polygon", "coordinates": [[
                    [lon - half, lat - half], [lon + half, lat - half],
                    [lon + half, lat + half], [lon - half, lat + half], [lon - half, lat - half]]]},
                "properties": {"name": format!("bench edit {}", rng.random::<u32>()),
                    "country": "ZZZ", "kind": "other"}
            });
            Request {
                path: format!("/api/collections/sites/items/{site}?reason=bench"),
                put: Some(feature.to_string()),
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn summarise(plan: &LoadPlan, samples: Vec<Sample>, seconds: f64) -> LoadReport {
    let kinds = plan
        .kinds
        .iter()
        .map(|&kind| {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
            let mut micros: Vec<u32> = mine.iter().map(|s| s.micros).collect();
            micros.sort_unstable();
            let n = mine.len();
            KindReport {
                kind,
                requests: n,
                errors: mine.iter().filter(|s| !s.ok).count(),
                per_second: n as f64 / seconds,
                p50_ms: percentile(&micros, 50.0),
                p99_ms: percentile(&micros, 99.0),
                max_ms: micros.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
                mean_bytes: mine.iter().map(|s| s.bytes as f64).sum::<f64>() / n.max(1) as f64,
            }
        })
        .collect();
    LoadReport {
        url: plan.base.clone(),
        concurrency: plan.concurrency,
        seconds,
        per_second: samples.len() as f64 / seconds,
        kinds,
    }
}

/// Up to 10,000 site ids from the server, in its own order, for `item`
/// requests (and the first for `history`).
pub fn site_ids(base: &str) -> Result<Vec<String>, LoadError> {
    let url = format!("{base}/api/collections/sites/items?limit=10000");
    let fail = |e: String| LoadError::Client(format!("reading site ids from {url}: {e}"));
    let doc: serde_json::Value = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .and_then(|c| c.get(&url).send())
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .map_err(|e| fail(e.to_string()))?;
    Ok(doc["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["id"].as_str().map(str::to_owned))
        .collect())
}

/// A span of time.
pub type Span = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// From the server: the span of its record (first revision to now), the span
/// of its observations, and the newest change log sequence number.
pub fn spans(base: &str) -> Result<(Span, Span, i64), LoadError> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| LoadError::Client(e.to_string()))?;
    let read = |path: &str| -> Result<serde_json::Value, LoadError> {
        let url = format!("{base}{path}");
        client
            .get(&url)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .map_err(|e| LoadError::Client(format!("reading {url}: {e}")))
    };
    let now = chrono::Utc::now();
    let day = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
    };
    let timeline = read("/api/map/timeline")?;
    let record_from = day(&timeline["record_first_day"]).unwrap_or(now);
    let collections = read("/api/collections")?;
    let interval = collections["collections"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == "observations")
        .map(|c| c["extent"]["temporal"]["interval"][0].clone())
        .unwrap_or_default();
    let at = |v: &serde_json::Value| v.as_str().and_then(|t| t.parse().ok());
    let observed = match (at(&interval[0]), at(&interval[1])) {
        (Some(a), Some(b)) => (a, b),
        _ => (now, now),
    };
    let head = read("/api/changes/log?limit=1")?["head"]
        .as_i64()
        .unwrap_or(0);
    Ok(((record_from, now), observed, head))
}

/// Sends the mix for the warm-up and the measured time, then reports.
pub fn run(plan: &LoadPlan) -> Result<LoadReport, LoadError> {
    if plan.kinds.is_empty() {
        return Err(LoadError::NoKinds);
    }
    if plan.kinds.iter().any(|k| k.needs_ids()) && plan.ids.is_empty() {
        return Err(LoadError::NoIds);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Client(e.to_string()))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| LoadError::Client(e.to_string()))?;
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let stop = measure_from + plan.duration;
    let samples = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(plan.concurrency);
        for worker in 0..plan.concurrency {
            let client = client.clone();
            let plan = plan.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(plan.seed.wrapping_add(worker as u64));
                let mut mine = Vec::new();
                loop {
                    let now = Instant::now();
                    if now >= stop {
                        break;
                    }
                    let kind = plan.kinds[rng.random_range(0..plan.kinds.len())];
                    let req = request(kind, &mut rng, &plan);
                    let url = format!("{}{}", plan.base, req.path);
                    let sent = Instant::now();
                    let send = match req.put {
                        None => client.get(&url),
                        Some(body) => client
                            .put(&url)
                            .header("Content-Type", "application/geo+json")
                            .body(body),
                    };
                    let answer = match send.send().await {
                        Ok(resp) => {
                            // A site asked for at a moment before it was
                            // recorded is rightly not found.
                            let ok = resp.status() == reqwest::StatusCode::OK
                                || (kind == RequestKind::ItemAsOf
                                    && resp.status() == reqwest::StatusCode::NOT_FOUND);
                            resp.bytes().await.map(|b| (ok, b.len())).ok()
                        }
                        Err(_) => None,
                    };
                    let done = Instant::now();
                    if sent >= measure_from && done <= stop {
                        let (ok, bytes) = answer.unwrap_or((false, 0));
                        mine.push(Sample {
                            kind,
                            micros: (done - sent).as_micros().min(u128::from(u32::MAX)) as u32,
                            ok,
                            bytes,
                        });
                    }
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(mine) = t.await {
                all.extend(mine);
            }
        }
        all
    });
    Ok(summarise(plan, samples, plan.duration.as_secs_f64()))
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} for {:.0} s at concurrency {}: {:.0} requests/s in all",
            self.url, self.seconds, self.concurrency, self.per_second
        )?;
        writeln!(
            f,
            "{:<22} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>10}",
            "kind", "requests", "errors", "per s", "p50 ms", "p99 ms", "max ms", "mean B"
        )?;
        for k in &self.kinds {
            writeln!(
                f,
                "{:<22} {:>9} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>10.0}",
                k.kind.as_str(),
                k.requests,
                k.errors,
                k.per_second,
                k.p50_ms,
                k.p99_ms,
                k.max_ms,
                k.mean_bytes
            )?;
        }
        Ok(())
    }
}

/// How long a write through one node takes to be seen through another.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    pub writes: usize,
    /// From the write's answer to the first answer of the other node that
    /// shows it.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The writes' own time, for comparison.
    pub write_p50_ms: f64,
}

impl fmt::Display for Convergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} writes: visible on the other node after p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (the write itself: p50 {:.1} ms)",
            self.writes, self.p50_ms, self.p99_ms, self.max_ms, self.write_p50_ms
        )
    }
}

/// Renames `site` through `write_base` `writes` times, one after another,
/// and after each asks `read_base` for the site until it shows the new name:
/// the time from the write's answer to then is how long nodes take to
/// converge. Gives up on a write not seen within a minute.
pub fn convergence(
    write_base: &str,
    read_base: &str,
    site: &str,
    writes: usize,
) -> Result<Convergence, LoadError> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| LoadError::Client(e.to_string()))?;
    let fail = |what: &str, e: String| LoadError::Client(format!("{what}: {e}"));
    let item = |base: &str| format!("{base}/api/collections/sites/items/{site}");
    let mut feature: serde_json::Value = client
        .get(item(write_base))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .map_err(|e| fail("reading the site", e.to_string()))?;
    let (mut seen, mut written) = (Vec::with_capacity(writes), Vec::with_capacity(writes));
    for i in 0..writes {
        let name = format!("convergence {i} {}", crate::model::new_id("n"));
        feature["properties"]["name"] = serde_json::Value::String(name.clone());
        let sent = Instant::now();
        client
            .put(item(write_base))
            .header("content-type", "application/geo+json")
            .body(feature.to_string())
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail("writing the site", e.to_string()))?;
        let done = Instant::now();
        written.push(done.duration_since(sent).as_micros() as u32);
        loop {
            let doc: serde_json::Value = client
                .get(item(read_base))
                .send()
                .and_then(|r| r.json())
                .map_err(|e| fail("reading the other node", e.to_string()))?;
            if doc["properties"]["name"] == name.as_str() {
                break;
            }
            if done.elapsed() > Duration::from_secs(60) {
                return Err(fail(
                    "waiting",
                    format!("write {i} not seen within a minute"),
                ));
            }
        }
        seen.push(done.elapsed().as_micros() as u32);
    }
    seen.sort_unstable();
    written.sort_unstable();
    Ok(Convergence {
        writes,
        p50_ms: percentile(&seen, 50.0),
        p99_ms: percentile(&seen, 99.0),
        max_ms: percentile(&seen, 100.0),
        write_p50_ms: percentile(&written, 50.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LoadPlan {
        LoadPlan {
            base: "http://x".into(),
            kinds: RequestKind::ALL.to_vec(),
            concurrency: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            ids: vec!["a".into(), "b".into()],
            history_site: "h".into(),
            record: (
                "2026-01-01T00:00:00Z".parse().unwrap(),
                "2026-02-01T00:00:00Z".parse().unwrap(),
            ),
            observed: (
                "2015-01-01T00:00:00Z".parse().unwrap(),
                "2025-01-01T00:00:00Z".parse().unwrap(),
            ),
            log_head: 10,
            seed: 1,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_over_the_sorted_latencies() {
        let sorted: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[7000], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn requests_stay_inside_the_catalogue_area_and_the_box_is_one_degree() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let path = request(RequestKind::Bbox, &mut rng, &plan()).path;
            let q = path
                .split("bbox=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            let v: Vec<f64> = q.split(',').map(|x| x.parse().unwrap()).collect();
            assert!((v[2] - v[0] - 1.0).abs() < 1e-9 && (v[3] - v[1] - 1.0).abs() < 1e-9);
            assert!(v[2] <= 180.0 && v[3] <= LAT_RANGE.1 && v[1] >= LAT_RANGE.0);
        }
        let item = request(RequestKind::Item, &mut rng, &plan()).path;
        assert!(item.ends_with("/items/a") || item.ends_with("/items/b"));
    }

    #[test]
    fn every_kind_but_edits_is_a_get_and_moments_fall_inside_the_record() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let p = plan();
        for &kind in RequestKind::ALL {
            for _ in 0..50 {
                let r = request(kind, &mut rng, &p);
                assert_eq!(r.put.is_some(), kind == RequestKind::Edit, "{kind}");
                assert!(r.path.starts_with("/api/"), "{}", r.path);
                if let Some(t) = r.path.split("as_of=").nth(1) {
                    let t: chrono::DateTime<chrono::Utc> =
                        t.split('&').next().unwrap().parse().unwrap();
                    assert!(p.record.0 <= t && t <= p.record.1, "{t}");
                }
                if let Some(body) = r.put {
                    let f: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert!(r.path.contains(f["id"].as_str().unwrap()));
                }
            }
        }
        assert_eq!(RequestKind::parse("map_world"), Some(RequestKind::MapWorld));
        assert_eq!(RequestKind::parse("nope"), None);
    }

    #[test]
    fn the_summary_counts_each_kind_and_its_errors() {
        let mut p = plan();
        p.kinds = vec![RequestKind::Nearby, RequestKind::Item];
        let s = |kind, micros, ok| Sample {
            kind,
            micros,
            ok,
            bytes: 10,
        };
        let report = summarise(
            &p,
            vec![
                s(RequestKind::Nearby, 1000, true),
                s(RequestKind::Nearby, 3000, false),
                s(RequestKind::Item, 2000, true),
            ],
            2.0,
        );
        assert_eq!(report.per_second, 1.5);
        assert_eq!(report.kinds[0].requests, 2);
        assert_eq!(report.kinds[0].errors, 1);
        assert_eq!(report.kinds[0].p99_ms, 3.0);
        assert_eq!(report.kinds[1].per_second, 0.5);
    }
}
