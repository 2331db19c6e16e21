//! A load generator for a running server (`sitewatch bench --url`): a fixed mix
//! of proximity, item and history requests with seeded random parameters, sent
//! at a fixed concurrency for a fixed time, reported per kind of request as
//! throughput and latency percentiles.
//!
//! One client thread drives every connection, so on a small machine the client
//! takes at most one core from the server it measures.

use crate::synth::LAT_RANGE;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// The kinds of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Every site within 10 km of a random point.
    Nearby,
    /// The 10 sites nearest a random point.
    Nearest,
    /// Sites in a random 1-degree box.
    Bbox,
    /// One random site by id.
    Item,
    /// The whole history of one site.
    History,
}

impl RequestKind {
    pub const ALL: [Self; 5] = [
        Self::Nearby,
        Self::Nearest,
        Self::Bbox,
        Self::Item,
        Self::History,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nearby => "nearby",
            Self::Nearest => "nearest",
            Self::Bbox => "bbox",
            Self::Item => "item",
            Self::History => "history",
        }
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

/// The path and query of one random request of `kind`.
fn request_path(kind: RequestKind, rng: &mut impl Rng, plan: &LoadPlan) -> String {
    let lon = rng.random_range(-180.0..180.0_f64);
    let lat = rng.random_range(LAT_RANGE.0..LAT_RANGE.1);
    match kind {
        RequestKind::Nearby => format!("/api/nearby?lon={lon:.5}&lat={lat:.5}&radius_m=10000"),
        RequestKind::Nearest => format!("/api/nearby?lon={lon:.5}&lat={lat:.5}&limit=10"),
        RequestKind::Bbox => {
            let (w, s) = (lon.min(179.0), lat.min(LAT_RANGE.1 - 1.0));
            format!(
                "/api/collections/sites/items?bbox={w:.5},{s:.5},{:.5},{:.5}&limit=100",
                w + 1.0,
                s + 1.0
            )
        }
        RequestKind::Item => {
            let id = &plan.ids[rng.random_range(0..plan.ids.len())];
            format!("/api/collections/sites/items/{id}")
        }
        RequestKind::History => format!("/api/sites/{}/history", plan.history_site),
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

/// Sends the mix for the warm-up and the measured time, then reports.
pub fn run(plan: &LoadPlan) -> Result<LoadReport, LoadError> {
    if plan.kinds.is_empty() {
        return Err(LoadError::NoKinds);
    }
    if plan.kinds.contains(&RequestKind::Item) && plan.ids.is_empty() {
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
                    let url = format!("{}{}", plan.base, request_path(kind, &mut rng, &plan));
                    let sent = Instant::now();
                    let answer = match client.get(&url).send().await {
                        Ok(resp) => {
                            let ok = resp.status() == reqwest::StatusCode::OK;
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
            "{:<8} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>10}",
            "kind", "requests", "errors", "per s", "p50 ms", "p99 ms", "max ms", "mean B"
        )?;
        for k in &self.kinds {
            writeln!(
                f,
                "{:<8} {:>9} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>10.0}",
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
            let path = request_path(RequestKind::Bbox, &mut rng, &plan());
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
        let item = request_path(RequestKind::Item, &mut rng, &plan());
        assert!(item.ends_with("/items/a") || item.ends_with("/items/b"));
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
