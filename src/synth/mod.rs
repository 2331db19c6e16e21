//! Seeded synthetic catalogues and observation batches for benches, tests and
//! `sitewatch gen`.
//!
//! The same seed always gives the same catalogue, on every platform: the generator
//! draws from ChaCha8 in a fixed order and rounds coordinates to 7 decimals (about
//! 1 cm), as a hand-written catalogue file would.

use crate::model::{Confidence, Declaration, IdPolicy, Site, SiteKind, Status};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::f64::consts::TAU;

mod files;
mod observations;

pub use files::{GenPlan, GenReport, write_files};
pub use observations::{ObservationPlan, ObservationStream};

/// Smallest nominal footprint diameter, in metres.
pub const MIN_DIAMETER_M: f64 = 200.0;
/// Largest nominal footprint diameter, in metres.
pub const MAX_DIAMETER_M: f64 = 3_000.0;
/// Latitudes of footprint centres, in degrees: where real sites are, and away from
/// the poles so that the degree conversion below stays accurate.
pub const LAT_RANGE: (f64, f64) = (-60.0, 70.0);

/// Keeps the widest footprint (3 km at 70°, about 0.04° of longitude) clear of the
/// antimeridian, so every vertex is in [-180, 180] without wrapping.
const MAX_CENTRE_LON: f64 = 179.95;
/// Metres per degree of latitude on a sphere of the Earth's mean radius; good to
/// about 0.5 % on WGS84, which is all a nominal size needs.
const METRES_PER_DEGREE: f64 = 6_371_008.8 * TAU / 360.0;
const COUNTRIES: &[&str] = &[
    "CHN", "FRA", "GBR", "IND", "IRN", "ISR", "PAK", "PRK", "RUS", "USA",
];
/// A generated feature that fails to parse is a bug in this module; retrying a few
/// times keeps a rare one from aborting a bench, and the cap keeps a systematic
/// one from hanging it.
const MAX_ATTEMPTS: usize = 64;

fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// The id of the `i`-th synthetic site (from 1): `syn-0000001`.
pub fn site_id(i: usize) -> String {
    format!("syn-{i:07}")
}

/// One random site as a GeoJSON Feature in the catalogue's site format, with a
/// star-shaped footprint of 8 to 16 vertices and a nominal diameter between
/// [`MIN_DIAMETER_M`] and [`MAX_DIAMETER_M`].
pub fn site_feature(rng: &mut impl Rng, id: &str) -> Value {
    draw_site(rng, id).0
}

/// Where a generated footprint sits: its centre and nominal radius. Every point
/// within [`SAFE_INNER_SHARE`] of the radius of the centre is inside the footprint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub lon: f64,
    pub lat: f64,
    pub radius_m: f64,
}

/// Vertices sit at 0.6 to 1.0 of the nominal radius and neighbours are less
/// than 0.9 of a quarter turn apart, so each edge passes at least
/// 0.6 * cos(41 degrees) = 0.45 radii from the centre; 0.3 leaves room for the
/// degree conversion and the rounding.
pub const SAFE_INNER_SHARE: f64 = 0.3;

fn draw_site(rng: &mut impl Rng, id: &str) -> (Value, Placement) {
    let lon = rng
        .random_range(-180.0..180.0_f64)
        .clamp(-MAX_CENTRE_LON, MAX_CENTRE_LON);
    let lat = rng.random_range(LAT_RANGE.0..LAT_RANGE.1);
    let radius = rng.random_range(MIN_DIAMETER_M..=MAX_DIAMETER_M) / 2.0;
    let n = rng.random_range(8..=16_usize);
    let sector = TAU / n as f64;
    let (deg_lat, deg_lon) = (
        1.0 / METRES_PER_DEGREE,
        1.0 / (METRES_PER_DEGREE * lat.to_radians().cos()),
    );
    // One vertex per equal sector, jittered within its first 80 %: the angles are
    // increasing, so the ring winds once around the centre (star-shaped, hence
    // simple, and counter-clockwise as RFC 7946 asks), no gap reaches half a turn,
    // and neighbours stay metres apart, far beyond the 1 cm of rounding.
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let theta = (i as f64 + rng.random_range(0.0..0.8)) * sector;
            let r = radius * rng.random_range(0.6..=1.0);
            let (sin, cos) = theta.sin_cos();
            [
                round7(lon + r * cos * deg_lon),
                round7(lat + r * sin * deg_lat),
            ]
        })
        .collect();
    ring.push(ring[0]);

    let feature = json!({
        "type": "Feature",
        "id": id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "name": format!("Synthetic site {id}"),
            "country": pick(rng, COUNTRIES),
            "kind": pick(rng, SiteKind::ALL).as_str(),
            "declaration": pick(rng, Declaration::ALL).as_str(),
            "status": pick(rng, Status::ALL).as_str(),
            "confidence": pick(rng, Confidence::ALL).as_str(),
            "sources": [],
            "notes": "synthetic",
        }
    });
    (
        feature,
        Placement {
            lon,
            lat,
            radius_m: radius,
        },
    )
}

/// `n` valid sites with ids [`site_id`]`(1..=n)`, the same for the same seed.
///
/// A feature that does not parse is drawn again; an id for which
/// [`MAX_ATTEMPTS`] draws all fail is left out rather than panicking, so the result
/// is shorter than `n` only if the generator is broken.
pub fn sites(n: usize, seed: u64) -> Vec<Site> {
    SiteStream::new(n, seed).map(|(site, _)| site).collect()
}

/// The sites of [`sites`]`(n, seed)` one at a time, each with where it was
/// placed, so that a catalogue of millions never has to be held at once.
pub struct SiteStream {
    rng: ChaCha8Rng,
    next: usize,
    n: usize,
}

impl SiteStream {
    pub fn new(n: usize, seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            next: 1,
            n,
        }
    }
}

impl Iterator for SiteStream {
    type Item = (Site, Placement);

    fn next(&mut self) -> Option<Self::Item> {
        while self.next <= self.n {
            let id = site_id(self.next);
            self.next += 1;
            let drawn = (0..MAX_ATTEMPTS).find_map(|_| {
                let (feature, at) = draw_site(&mut self.rng, &id);
                Site::from_feature(&feature, IdPolicy::Required)
                    .ok()
                    .map(|s| (s, at))
            });
            if drawn.is_some() {
                return drawn;
            }
        }
        None
    }
}

/// [`sites`]`(n, seed)` as a GeoJSON FeatureCollection, ready to write to a
/// catalogue file.
pub fn feature_collection(n: usize, seed: u64) -> Value {
    let features: Vec<Value> = sites(n, seed).iter().map(Site::to_feature).collect();
    json!({"type": "FeatureCollection", "features": features})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geodesy::geodesic_distance;

    /// The largest geodesic distance between two vertices of the footprint.
    fn width_m(site: &Site) -> f64 {
        let ring = &site.footprint.parts()[0][0];
        ring.iter()
            .flat_map(|&a| ring.iter().map(move |&b| geodesic_distance(a, b)))
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_same_seed_gives_the_same_catalogue() {
        assert_eq!(sites(200, 7), sites(200, 7));
        let mut a = ChaCha8Rng::seed_from_u64(3);
        let mut b = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(site_feature(&mut a, "x"), site_feature(&mut b, "x"));
    }

    #[test]
    fn different_seeds_give_different_catalogues() {
        assert_ne!(sites(20, 1), sites(20, 2));
    }

    #[test]
    fn ids_are_numbered_from_one_and_zero_padded_to_seven_digits() {
        let ids: Vec<String> = sites(3, 0).iter().map(|s| s.id.to_string()).collect();
        assert_eq!(ids, ["syn-0000001", "syn-0000002", "syn-0000003"]);
        assert_eq!(site_id(12_345_678), "syn-12345678");
    }

    #[test]
    fn every_generated_site_is_valid_and_within_the_size_range() {
        let all = sites(3_000, 11);
        assert_eq!(all.len(), 3_000, "some generated features did not parse");
        for s in &all {
            let ring = &s.footprint.parts()[0][0];
            assert!(
                (9..=17).contains(&ring.len()),
                "{}: {} positions",
                s.id,
                ring.len()
            );
            assert_eq!(ring.first(), ring.last());
            for &[lon, lat] in ring {
                assert!((-180.0..=180.0).contains(&lon), "{}: lon {lon}", s.id);
                assert!(
                    (LAT_RANGE.0 - 0.1..=LAT_RANGE.1 + 0.1).contains(&lat),
                    "{}: lat {lat}",
                    s.id
                );
                assert_eq!(lon, round7(lon));
                assert_eq!(lat, round7(lat));
            }
            // Vertices sit at 0.6 to 1.0 of the nominal radius; opposite sectors
            // are at least 0.8 of a half turn apart, so the widest pair is more
            // than 1.1 nominal radii apart. The 1 % covers the spherical degrees.
            let w = width_m(s);
            assert!(
                (MIN_DIAMETER_M * 0.55..=MAX_DIAMETER_M * 1.01).contains(&w),
                "{}: {w} m across",
                s.id
            );
            assert_eq!(s.notes.as_deref(), Some("synthetic"));
        }
    }

    #[test]
    fn every_enum_value_and_a_spread_of_sizes_turn_up() {
        let all = sites(2_000, 5);
        for kind in SiteKind::ALL {
            assert!(all.iter().any(|s| s.kind == *kind), "no {kind}");
        }
        for status in Status::ALL {
            assert!(all.iter().any(|s| s.status == *status), "no {status}");
        }
        let widths: Vec<f64> = all.iter().map(width_m).collect();
        assert!(widths.iter().any(|&w| w < 500.0));
        assert!(widths.iter().any(|&w| w > 2_500.0));
    }

    #[test]
    fn footprints_are_counter_clockwise_around_their_centre() {
        for s in sites(200, 9) {
            let ring = &s.footprint.parts()[0][0];
            let twice_area: f64 = ring
                .windows(2)
                .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
                .sum();
            assert!(twice_area > 0.0, "{} winds clockwise", s.id);
        }
    }

    #[test]
    fn the_feature_collection_reads_back_as_the_same_sites() {
        let fc = feature_collection(50, 21);
        assert_eq!(fc["type"], "FeatureCollection");
        let read: Vec<Site> = fc["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| Site::from_feature(f, IdPolicy::Required).unwrap())
            .collect();
        assert_eq!(read, sites(50, 21));
    }
}
