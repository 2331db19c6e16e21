//! Synthetic observation batches over a synthetic catalogue: most observations
//! fall inside a site's footprint (half of them naming the site, half left to the
//! spatial matcher), some fall anywhere, and batches follow each other in time.

use super::{LAT_RANGE, METRES_PER_DEGREE, Placement, SAFE_INNER_SHARE, pick, round7, site_id};
use crate::model::{Confidence, Finding};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::f64::consts::TAU;

const SENSORS: &[&str] = &[
    "WorldView-3",
    "Pleiades Neo",
    "SkySat",
    "PlanetScope",
    "Sentinel-2",
    "Sentinel-1 SAR",
    "Capella SAR",
];

/// What to generate: how many observations in batches of what size, and how
/// many of them go to the first site, so that a busy site's history can be
/// measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObservationPlan {
    pub observations: usize,
    pub batch_size: usize,
    /// Observations of `syn-0000001`, spread evenly through the batches.
    pub busiest_site_events: usize,
    /// Share of observations placed anywhere, not on a site (0 to 1).
    pub off_site_share: f64,
    pub seed: u64,
}

impl ObservationPlan {
    pub fn batches(&self) -> usize {
        self.observations.div_ceil(self.batch_size.max(1))
    }
}

/// The years the observations span: commercial imagery of the last decade.
fn time_span() -> (DateTime<Utc>, Duration) {
    let start = Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).single();
    let end = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single();
    match (start, end) {
        (Some(s), Some(e)) => (s, e - s),
        // Both dates are constants that exist; this arm is never taken.
        _ => (DateTime::<Utc>::UNIX_EPOCH, Duration::days(4018)),
    }
}

/// Observation features, batch by batch, over sites placed at `placements`
/// (index 0 is `syn-0000001`). Batch `b` covers the `b`-th equal slice of the
/// time span, so later batches report later imagery, as they would in practice.
pub struct ObservationStream<'a> {
    plan: ObservationPlan,
    placements: &'a [Placement],
    rng: ChaCha8Rng,
    next: usize,
    start: DateTime<Utc>,
    slice_s: f64,
    busiest_every: usize,
}

impl<'a> ObservationStream<'a> {
    pub fn new(plan: ObservationPlan, placements: &'a [Placement]) -> Self {
        let (start, span) = time_span();
        let slice_s = span.num_seconds() as f64 / plan.batches().max(1) as f64;
        let busiest_every = match plan.busiest_site_events {
            0 => usize::MAX,
            n => (plan.observations / n).max(1),
        };
        Self {
            plan,
            placements,
            // A different stream from the sites', so that changing the number of
            // observations leaves the catalogue as it was.
            rng: ChaCha8Rng::seed_from_u64(plan.seed ^ 0x6f62_7365_7276_6564),
            next: 0,
            start,
            slice_s,
            busiest_every,
        }
    }

    /// The batch the next feature belongs to, from 0.
    pub fn batch(&self) -> usize {
        self.next / self.plan.batch_size.max(1)
    }

    fn point_near(&mut self, at: Placement) -> [f64; 2] {
        let r = at.radius_m * SAFE_INNER_SHARE * self.rng.random_range(0.0..1.0_f64).sqrt();
        let (sin, cos) = self.rng.random_range(0.0..TAU).sin_cos();
        [
            round7(at.lon + r * cos / (METRES_PER_DEGREE * at.lat.to_radians().cos())),
            round7(at.lat + r * sin / METRES_PER_DEGREE),
        ]
    }
}

impl Iterator for ObservationStream<'_> {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        let i = self.next;
        if i >= self.plan.observations {
            return None;
        }
        self.next += 1;
        let batch = i / self.plan.batch_size.max(1);
        let at_s = (batch as f64 + self.rng.random_range(0.0..1.0)) * self.slice_s;
        let observed_at = self.start + Duration::seconds(at_s as i64);
        let busiest = i.is_multiple_of(self.busiest_every) && !self.placements.is_empty();
        let off_site = !busiest
            && (self.placements.is_empty() || self.rng.random_bool(self.plan.off_site_share));
        let (point, site) = if off_site {
            let p = [
                round7(self.rng.random_range(-180.0..180.0)),
                round7(self.rng.random_range(LAT_RANGE.0..LAT_RANGE.1)),
            ];
            (p, None)
        } else {
            let k = if busiest {
                0
            } else {
                self.rng.random_range(0..self.placements.len())
            };
            let p = self.point_near(self.placements[k]);
            // Half name their site; the rest are left to the spatial matcher.
            let named = self.rng.random_bool(0.5);
            (p, named.then(|| site_id(k + 1)))
        };
        let mut props = json!({
            "observed_at": observed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "sensor": pick(&mut self.rng, SENSORS),
            "finding": pick(&mut self.rng, Finding::ALL).as_str(),
            "confidence": pick(&mut self.rng, Confidence::ALL).as_str(),
            "source": "synthetic",
            "external_id": format!("gen-{}-{i}", self.plan.seed),
        });
        if let Some(id) = site {
            props["site_id"] = json!(id);
        }
        Some(json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": point},
            "properties": props,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geodesy::to_unit;
    use crate::model::{Observation, Place};
    use crate::synth::SiteStream;

    fn plan(observations: usize, busiest: usize) -> ObservationPlan {
        ObservationPlan {
            observations,
            batch_size: 100,
            busiest_site_events: busiest,
            off_site_share: 0.1,
            seed: 4,
        }
    }

    #[test]
    fn every_generated_observation_parses_and_on_site_ones_fall_inside_their_footprint() {
        let sites: Vec<_> = SiteStream::new(300, 4).collect();
        let placements: Vec<Placement> = sites.iter().map(|(_, p)| *p).collect();
        let mut off = 0;
        for f in ObservationStream::new(plan(2_000, 0), &placements) {
            let obs = Observation::from_feature(&f).expect("generated observation parses");
            let Place::Point(p) = obs.place else {
                panic!("not a point")
            };
            let inside: Vec<_> = sites
                .iter()
                .filter(|(s, _)| s.footprint.shape().contains(to_unit(p.to_array())))
                .collect();
            match &obs.site_id {
                Some(id) => assert!(
                    inside.iter().any(|(s, _)| &s.id == id),
                    "{id}: the point is not in its footprint"
                ),
                None if inside.is_empty() => off += 1,
                None => {}
            }
        }
        // About 10 % placed anywhere; nearly all of those miss every footprint.
        assert!((120..=300).contains(&off), "{off} off-site observations");
    }

    #[test]
    fn batches_follow_each_other_in_time() {
        let placements: Vec<Placement> = SiteStream::new(50, 1).map(|(_, p)| p).collect();
        let times: Vec<(usize, String)> = ObservationStream::new(plan(1_000, 0), &placements)
            .enumerate()
            .map(|(i, f)| {
                (
                    i / 100,
                    f["properties"]["observed_at"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for w in times.windows(2) {
            if w[0].0 < w[1].0 {
                let last_of_batch = times.iter().filter(|t| t.0 == w[0].0).map(|t| &t.1).max();
                let first_of_next = times.iter().filter(|t| t.0 == w[1].0).map(|t| &t.1).min();
                assert!(last_of_batch < first_of_next);
            }
        }
    }

    #[test]
    fn the_busiest_site_gets_the_events_it_was_given() {
        // Enough sites that chance adds only a few more to the first.
        let placements: Vec<Placement> = SiteStream::new(2_000, 2).map(|(_, p)| p).collect();
        let first = SiteStream::new(1, 2).next().unwrap().0;
        let on_first = ObservationStream::new(plan(5_000, 500), &placements)
            .filter(|f| {
                let obs = Observation::from_feature(f).unwrap();
                let Place::Point(p) = obs.place else {
                    return false;
                };
                first.footprint.shape().contains(to_unit(p.to_array()))
            })
            .count();
        assert!((500..=520).contains(&on_first), "{on_first}");
    }

    #[test]
    fn the_same_seed_gives_the_same_batches() {
        let placements: Vec<Placement> = SiteStream::new(20, 3).map(|(_, p)| p).collect();
        let a: Vec<Value> = ObservationStream::new(plan(300, 10), &placements).collect();
        let b: Vec<Value> = ObservationStream::new(plan(300, 10), &placements).collect();
        assert_eq!(a, b);
        let ids: std::collections::HashSet<_> = a
            .iter()
            .map(|f| f["properties"]["external_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 300, "external ids are unique");
    }
}
