//! Distances and bounds on the WGS84 ellipsoid, and the unit-sphere geometry the
//! index is built on.
//!
//! Footprint edges are great-circle arcs between their vertices (the convention of
//! PostGIS `geography` and of RFC 7946 consumers that care about the antimeridian).
//! Positions are carried as unit vectors so that the antimeridian and the poles are
//! ordinary places; metres are always measured on the ellipsoid with GeographicLib's
//! geodesic inverse.

use geographiclib_rs::{DirectGeodesic, Geodesic, InverseGeodesic};
use std::sync::OnceLock;

/// A point on the unit sphere, from geodetic latitude and longitude.
pub type Vec3 = [f64; 3];

/// WGS84 semi-major axis in metres.
pub const WGS84_A: f64 = 6_378_137.0;
/// WGS84 flattening.
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;
/// Smallest radius of curvature of the ellipsoid (meridional, at the equator): b²/a.
///
/// Any path on the ellipsoid is at least this many metres per radian of the angle
/// its image subtends on the unit sphere, so it turns angles into lower bounds.
pub const MIN_CURVATURE_RADIUS: f64 = 6_335_439.327_083_17;
/// Largest radius of curvature of the ellipsoid (at the poles): a²/b.
pub const MAX_CURVATURE_RADIUS: f64 = 6_399_593.625_758_49;

/// Largest angular radius (degrees) of a footprint's bounding cap. The gnomonic
/// projection used for containment needs less than a hemisphere; a site of more
/// than ~6,600 km across is a data error anyway.
pub const MAX_CAP_DEGREES: f64 = 60.0;

fn wgs84() -> &'static Geodesic {
    static G: OnceLock<Geodesic> = OnceLock::new();
    G.get_or_init(Geodesic::wgs84)
}

/// Geodesic distance in metres between two `[lon, lat]` positions on WGS84.
pub fn geodesic_distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    wgs84().inverse(a[1], a[0], b[1], b[0])
}

/// A closed ring of `n` positions `radius_m` from `centre` along geodesics,
/// counter-clockwise, with longitudes in [-180, 180].
pub fn circle(centre: [f64; 2], radius_m: f64, n: usize) -> Vec<[f64; 2]> {
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            // Azimuths run clockwise from north; walking them backwards gives a
            // counter-clockwise ring as RFC 7946 asks.
            let azimuth = 360.0 - 360.0 * i as f64 / n as f64;
            let (lat, lon): (f64, f64) = wgs84().direct(centre[1], centre[0], azimuth, radius_m);
            [((lon + 540.0) % 360.0) - 180.0, lat]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

/// The unit vector of a `[lon, lat]` position in degrees.
pub fn to_unit(lonlat: [f64; 2]) -> Vec3 {
    let (sl, cl) = lonlat[0].to_radians().sin_cos();
    let (sp, cp) = lonlat[1].to_radians().sin_cos();
    [cp * cl, cp * sl, sp]
}

/// The `[lon, lat]` position in degrees of a (not necessarily unit) vector.
pub fn to_lonlat(v: Vec3) -> [f64; 2] {
    let lon = v[1].atan2(v[0]).to_degrees();
    let lat = v[2].atan2(v[0].hypot(v[1])).to_degrees();
    [lon, lat]
}

pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

fn scale(a: Vec3, s: f64) -> Vec3 {
    [a[0] * s, a[1] * s, a[2] * s]
}

fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn normalize(a: Vec3) -> Option<Vec3> {
    let n = norm(a);
    (n > 1e-15).then(|| scale(a, 1.0 / n))
}

/// Angle in radians between two unit vectors, accurate for tiny and large angles.
pub fn angle(a: Vec3, b: Vec3) -> f64 {
    norm(cross(a, b)).atan2(dot(a, b))
}

/// The straight-line distance between unit vectors that subtend `theta` radians.
pub fn chord_of_angle(theta: f64) -> f64 {
    2.0 * (theta.min(std::f64::consts::PI) / 2.0).sin()
}

/// The angle subtended by a chord of the unit sphere.
pub fn angle_of_chord(chord: f64) -> f64 {
    2.0 * (chord / 2.0).clamp(0.0, 1.0).asin()
}

/// The largest angle on the unit sphere that two positions `metres` apart on the
/// ellipsoid can subtend: everything within `metres` lies within this angle.
pub fn max_angle_for_distance(metres: f64) -> f64 {
    // The tiny relative slack absorbs rounding in the conversions on either side.
    (metres / MIN_CURVATURE_RADIUS) * (1.0 + 1e-9) + 1e-12
}

/// An upper bound in metres on the ellipsoidal distance between positions whose
/// unit vectors subtend `theta` radians: the great circle's image on the
/// ellipsoid is a path that long at most.
pub fn max_distance_for_angle(theta: f64) -> f64 {
    theta * MAX_CURVATURE_RADIUS * (1.0 + 1e-9) + 1e-6
}

/// A lower bound in metres on the ellipsoidal distance between positions whose
/// unit vectors subtend `theta` radians.
pub fn min_distance_for_angle(theta: f64) -> f64 {
    (theta * MIN_CURVATURE_RADIUS * (1.0 - 1e-9) - 1e-6).max(0.0)
}

/// How much the sphere-to-ellipsoid error may change per metre moved along a
/// footprint, with room to spare (the ellipsoid's distortion is under 2 %).
const EDGE_SLACK: f64 = 0.03;

/// The closest point to `p` on the minor great-circle arc `a`→`b`, and its angle.
fn closest_on_arc(p: Vec3, a: Vec3, b: Vec3) -> (f64, Vec3) {
    let endpoint = || {
        let (ta, tb) = (angle(p, a), angle(p, b));
        if ta <= tb { (ta, a) } else { (tb, b) }
    };
    let Some(n) = normalize(cross(a, b)) else {
        return endpoint();
    };
    let s = dot(p, n);
    let Some(q) = normalize(sub(p, scale(n, s))) else {
        return endpoint();
    };
    if dot(cross(a, q), n) >= 0.0 && dot(cross(q, b), n) >= 0.0 {
        (s.abs().atan2(norm(sub(p, scale(n, s)))), q)
    } else {
        endpoint()
    }
}

/// The squared chord from `p` to the nearest point of the minor arc `a`→`b`:
/// the same order as the angle, without trigonometry, for ranking edges.
fn arc_chord2(p: Vec3, a: Vec3, b: Vec3) -> f64 {
    let n = cross(a, b);
    let nn = dot(n, n);
    let to_ends = || {
        let (da, db) = (sub(p, a), sub(p, b));
        dot(da, da).min(dot(db, db))
    };
    if nn < 1e-30 {
        return to_ends();
    }
    // p projects inside the arc when it lies between the planes through a and b
    // perpendicular to the arc; (a×q)·n = (a×p)·n for the projection q of p.
    if dot(cross(a, p), n) >= 0.0 && dot(cross(p, b), n) >= 0.0 {
        let s = dot(p, n);
        let sin2 = (s * s / nn).min(1.0);
        let cos = (1.0 - sin2).sqrt();
        // 2 - 2cos, written to keep its precision for tiny angles.
        2.0 * sin2 / (1.0 + cos)
    } else {
        to_ends()
    }
}

/// An orthonormal basis of the plane tangent to the sphere at `centre`; any
/// vector not parallel to the centre seeds it.
fn tangent_basis(centre: Vec3) -> Option<(Vec3, Vec3)> {
    let seed = if centre[2].abs() < 0.9 {
        [0.0, 0.0, 1.0]
    } else {
        [1.0, 0.0, 0.0]
    };
    let e1 = normalize(cross(seed, centre))?;
    Some((e1, cross(centre, e1)))
}

/// Whether the minor arcs `a`→`b` and `c`→`d` cross or touch.
fn arcs_intersect(a: Vec3, b: Vec3, c: Vec3, d: Vec3) -> bool {
    let n1 = cross(a, b);
    let n2 = cross(c, d);
    let (sc, sd) = (dot(n1, c), dot(n1, d));
    let (sa, sb) = (dot(n2, a), dot(n2, b));
    // A point within rounding of the other arc's great circle counts as on it,
    // so that shared and touching edges meet (a shape meets itself).
    const ON: f64 = 1e-15;
    let straddles = |x: f64, y: f64| (x <= ON && y >= -ON) || (x >= -ON && y <= ON);
    // Two great circles meet twice, at antipodes; short arcs near each other can
    // only meet at the crossing on their own side of the sphere.
    let same_side = dot(
        [a[0] + b[0], a[1] + b[1], a[2] + b[2]],
        [c[0] + d[0], c[1] + d[1], c[2] + d[2]],
    ) > 0.0;
    straddles(sc, sd) && straddles(sa, sb) && same_side
}

/// A polygonal area on the sphere: one or more parts, each an exterior ring and
/// holes, with great-circle edges, inside a cap of less than [`MAX_CAP_DEGREES`].
#[derive(Debug, Clone)]
pub struct SphericalShape {
    coords: Vec<Vec3>,
    /// `(start, end, part)` of each closed ring in `coords` (end exclusive, last == first).
    rings: Vec<(u32, u32, u32)>,
    centre: Vec3,
    /// Angular radius of the bounding cap around `centre`, in radians.
    radius: f64,
}

/// Why a set of rings cannot be a [`SphericalShape`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("has no positions")]
    Empty,
    #[error("spans more than {MAX_CAP_DEGREES} degrees from its centre")]
    TooLarge,
}

impl SphericalShape {
    /// Builds a shape from parts, each a list of closed rings of `[lon, lat]`
    /// (exterior first). Rings must already be closed and valid.
    pub fn new<'a, P, R>(parts: P) -> Result<Self, ShapeError>
    where
        P: IntoIterator<Item = R> + Clone,
        R: IntoIterator<Item = &'a [[f64; 2]]>,
    {
        // A million shapes are made at start-up: sized once, the vectors are
        // neither grown through a series of copies nor trimmed after.
        let (positions, ring_count) = parts
            .clone()
            .into_iter()
            .flatten()
            .fold((0, 0), |(p, r), ring| (p + ring.len(), r + 1));
        let mut coords = Vec::with_capacity(positions);
        let mut rings = Vec::with_capacity(ring_count);
        let mut sum = [0.0; 3];
        for (part, part_rings) in parts.into_iter().enumerate() {
            for (r, ring) in part_rings.into_iter().enumerate() {
                let start = coords.len() as u32;
                for &ll in ring {
                    let u = to_unit(ll);
                    if r == 0 {
                        sum = [sum[0] + u[0], sum[1] + u[1], sum[2] + u[2]];
                    }
                    coords.push(u);
                }
                rings.push((start, coords.len() as u32, part as u32));
            }
        }
        if coords.is_empty() {
            return Err(ShapeError::Empty);
        }
        let centre = normalize(sum).ok_or(ShapeError::TooLarge)?;
        let radius = coords.iter().map(|&v| angle(centre, v)).fold(0.0, f64::max);
        if radius > MAX_CAP_DEGREES.to_radians() {
            return Err(ShapeError::TooLarge);
        }
        tangent_basis(centre).ok_or(ShapeError::TooLarge)?;
        Ok(Self {
            coords,
            rings,
            centre,
            radius,
        })
    }

    /// The centre of the bounding cap.
    pub fn centre(&self) -> Vec3 {
        self.centre
    }

    /// The angular radius of the bounding cap, in radians.
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// The rings in gnomonic coordinates around the centre, where great-circle
    /// edges are straight lines: `(part, points)` per ring.
    pub fn projected_rings(&self) -> impl Iterator<Item = (u32, Vec<[f64; 2]>)> + '_ {
        let basis = self.basis();
        self.rings.iter().map(move |&(s, e, part)| {
            let pts = self.coords[s as usize..e as usize]
                .iter()
                .map(|&v| self.project(basis, v).unwrap_or([f64::INFINITY; 2]))
                .collect();
            (part, pts)
        })
    }

    /// An axis-aligned box in 3-D that contains every point of the shape.
    pub fn envelope(&self) -> (Vec3, Vec3) {
        cap_envelope(self.centre, self.radius)
    }

    /// The gnomonic projection around the centre, on a basis from
    /// [`tangent_basis`]. The basis is worked out per call rather than kept:
    /// it costs a few multiplications and would add 48 bytes to every site.
    fn project(&self, (e1, e2): (Vec3, Vec3), v: Vec3) -> Option<[f64; 2]> {
        let d = dot(v, self.centre);
        (d > 1e-12).then(|| [dot(v, e1) / d, dot(v, e2) / d])
    }

    fn basis(&self) -> (Vec3, Vec3) {
        // Checked when the shape was built.
        tangent_basis(self.centre).unwrap_or(([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    }

    /// Whether the unit vector lies inside the shape (holes excluded).
    pub fn contains(&self, v: Vec3) -> bool {
        if dot(v, self.centre) < self.radius.cos() - 1e-12 {
            return false;
        }
        let basis = self.basis();
        let Some([x, y]) = self.project(basis, v) else {
            return false;
        };
        // Even-odd over the rings of each part: holes flip "inside" back off.
        let mut part = u32::MAX;
        let mut inside = false;
        for &(s, e, ring_part) in &self.rings {
            if ring_part != part {
                if inside {
                    return true;
                }
                part = ring_part;
            }
            let ring = &self.coords[s as usize..e as usize];
            let mut prev = self.project(basis, ring[0]);
            for &w in &ring[1..] {
                let cur = self.project(basis, w);
                if let (Some([x1, y1]), Some([x2, y2])) = (prev, cur)
                    && (y1 > y) != (y2 > y)
                    && x < x1 + (y - y1) * (x2 - x1) / (y2 - y1)
                {
                    inside = !inside;
                }
                prev = cur;
            }
        }
        inside
    }

    fn edges(&self) -> impl Iterator<Item = (Vec3, Vec3)> + '_ {
        self.rings.iter().flat_map(|&(s, e, _)| {
            self.coords[s as usize..e as usize]
                .windows(2)
                .map(|w| (w[0], w[1]))
        })
    }

    /// Geodesic metres on WGS84 from `[lon, lat]` to the nearest point of the shape,
    /// 0 when inside.
    pub fn distance_m(&self, lonlat: [f64; 2]) -> f64 {
        self.distance_within_m(lonlat, f64::INFINITY)
            .unwrap_or(f64::INFINITY)
    }

    /// Like [`Self::distance_m`], but `None` as soon as the distance is sure to
    /// exceed `limit_m`, which saves the exact geodesic for shapes that lose.
    pub fn distance_within_m(&self, lonlat: [f64; 2], limit_m: f64) -> Option<f64> {
        let p = to_unit(lonlat);
        if self.contains(p) {
            return Some(0.0);
        }
        let best = self.edge_angle(p);
        if min_distance_for_angle(best) > limit_m {
            return None;
        }
        // The edge nearest on the sphere need not be the nearest on the ellipsoid,
        // but the two measures differ by a smooth error whose slope is at most the
        // ellipsoid's distortion (about 1 % in scale plus under 1 % in direction):
        // between feet at most the shape's width apart, it moves by less than
        // EDGE_SLACK of that width. Only edges within it can win.
        let cutoff = chord_of_angle(best + EDGE_SLACK * 2.0 * self.radius + 1e-12).powi(2);
        // Neighbouring edges often share their nearest point (the vertex between
        // them); each distinct point is measured once.
        let mut measured: Vec<Vec3> = Vec::new();
        let mut exact = f64::INFINITY;
        for (a, b) in self.edges().filter(|&(a, b)| arc_chord2(p, a, b) <= cutoff) {
            let foot = closest_on_arc(p, a, b).1;
            if !measured.contains(&foot) {
                exact = exact.min(geodesic_distance(lonlat, to_lonlat(foot)));
                measured.push(foot);
            }
        }
        Some(exact)
    }

    /// The angle from `v` to the nearest edge, on the sphere.
    fn edge_angle(&self, v: Vec3) -> f64 {
        let chord2 = self
            .edges()
            .map(|(a, b)| arc_chord2(v, a, b))
            .fold(f64::INFINITY, f64::min);
        angle_of_chord(chord2.sqrt())
    }

    /// Lower and upper bounds in metres on [`Self::distance_m`], from the sphere
    /// alone: several times cheaper, for ranking before measuring exactly.
    pub fn distance_bounds_m(&self, v: Vec3) -> (f64, f64) {
        let theta = if dot(v, self.centre) >= self.radius.cos() - 1e-12 && self.contains(v) {
            0.0
        } else {
            self.edge_angle(v)
        };
        (min_distance_for_angle(theta), max_distance_for_angle(theta))
    }

    /// A lower bound in radians on the angle from `v` to any point of the shape.
    pub fn min_angle_to(&self, v: Vec3) -> f64 {
        (angle(self.centre, v) - self.radius).max(0.0)
    }

    /// Whether two shapes share any point.
    pub fn intersects(&self, other: &SphericalShape) -> bool {
        if angle(self.centre, other.centre) > self.radius + other.radius + 1e-12 {
            return false;
        }
        if self.coords.iter().any(|&v| other.contains(v))
            || other.coords.iter().any(|&v| self.contains(v))
        {
            return true;
        }
        self.edges()
            .any(|(a, b)| other.edges().any(|(c, d)| arcs_intersect(a, b, c, d)))
    }
}

/// The tight 3-D box around the cap of angular `radius` about unit vector `centre`.
pub fn cap_envelope(centre: Vec3, radius: f64) -> (Vec3, Vec3) {
    let mut lo = [0.0; 3];
    let mut hi = [0.0; 3];
    for i in 0..3 {
        // Angle between the centre and the +axis; the cap reaches cos(max(0, α - r)).
        let alpha = centre[i].clamp(-1.0, 1.0).acos();
        let beta = std::f64::consts::PI - alpha;
        hi[i] = (alpha - radius).max(0.0).cos() + 1e-12;
        lo[i] = -((beta - radius).max(0.0).cos()) - 1e-12;
    }
    (lo, hi)
}

/// The 3-D box around the lon/lat rectangle `[west, south, east, north]` (degrees,
/// `west <= east`).
pub fn lonlat_rect_envelope(west: f64, south: f64, east: f64, north: f64) -> (Vec3, Vec3) {
    let mut lats = vec![south, north];
    if south < 0.0 && north > 0.0 {
        lats.push(0.0);
    }
    let mut lons = vec![west, east];
    lons.extend(
        [-180.0, -90.0, 0.0, 90.0, 180.0]
            .into_iter()
            .filter(|&l| l > west && l < east),
    );
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for &lat in &lats {
        for &lon in &lons {
            let u = to_unit([lon, lat]);
            for i in 0..3 {
                lo[i] = lo[i].min(u[i] - 1e-12);
                hi[i] = hi[i].max(u[i] + 1e-12);
            }
        }
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_meets_itself() {
        for site in crate::synth::sites(300, 19) {
            let shape = site.footprint.shape();
            assert!(shape.intersects(shape), "{}", site.id);
        }
        let square = |lon: f64, lat: f64| {
            let ring = [
                [lon, lat],
                [lon + 0.01, lat],
                [lon + 0.01, lat + 0.01],
                [lon, lat + 0.01],
                [lon, lat],
            ];
            SphericalShape::new([[&ring[..]]]).unwrap()
        };
        for i in 0..200 {
            let s = square(-179.0 + i as f64 * 1.7, -60.0 + i as f64 * 0.6);
            assert!(s.intersects(&s), "square {i}");
        }
    }

    fn square(lon: f64, lat: f64, half: f64) -> Vec<[f64; 2]> {
        vec![
            [lon - half, lat - half],
            [lon + half, lat - half],
            [lon + half, lat + half],
            [lon - half, lat + half],
            [lon - half, lat - half],
        ]
    }

    fn shape(ring: &[[f64; 2]]) -> SphericalShape {
        SphericalShape::new([[ring]]).unwrap()
    }

    /// Brute force: the minimum geodesic distance to many points along every edge.
    fn sampled_distance(ring: &[[f64; 2]], p: [f64; 2]) -> f64 {
        let mut best = f64::INFINITY;
        for w in ring.windows(2) {
            let (a, b) = (to_unit(w[0]), to_unit(w[1]));
            for i in 0..=2000 {
                let t = i as f64 / 2000.0;
                let q = normalize([
                    a[0] * (1.0 - t) + b[0] * t,
                    a[1] * (1.0 - t) + b[1] * t,
                    a[2] * (1.0 - t) + b[2] * t,
                ])
                .unwrap();
                best = best.min(geodesic_distance(p, to_lonlat(q)));
            }
        }
        best
    }

    #[test]
    fn the_cheap_edge_chord_agrees_with_the_closest_point() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..20_000 {
            let mut pt = || {
                to_unit([
                    rng.random_range(-180.0..180.0),
                    rng.random_range(-89.0..89.0),
                ])
            };
            let (a, p) = (pt(), pt());
            let b = normalize([a[0] + 0.05 * p[1], a[1] - 0.05 * p[0], a[2] + 0.01]).unwrap();
            let (theta, _) = closest_on_arc(p, a, b);
            let chord = arc_chord2(p, a, b).sqrt();
            assert!(
                (chord - chord_of_angle(theta)).abs() < 1e-9,
                "{chord} vs {}",
                chord_of_angle(theta)
            );
        }
    }

    #[test]
    fn pruning_edges_gives_the_same_distance_as_measuring_every_edge() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..3000 {
            let (lon, lat): (f64, f64) = (
                rng.random_range(-170.0..170.0),
                rng.random_range(-85.0..85.0),
            );
            let half: f64 = rng.random_range(0.001..0.5);
            // An irregular ring so that several edges compete.
            let n = rng.random_range(5..14);
            let mut ring: Vec<[f64; 2]> = (0..n)
                .map(|i| {
                    let t = std::f64::consts::TAU * i as f64 / n as f64;
                    let r = half * rng.random_range(0.5..1.0);
                    [lon + r * t.cos(), lat + r * t.sin() * 0.5]
                })
                .collect();
            ring.push(ring[0]);
            let s = shape(&ring);
            let d: f64 = rng.random_range(0.0..5.0);
            let az: f64 = rng.random_range(0.0..std::f64::consts::TAU);
            let p = [
                (lon + d * az.cos()).clamp(-180.0, 180.0),
                (lat + d * az.sin()).clamp(-90.0, 90.0),
            ];
            let pu = to_unit(p);
            let every = if s.contains(pu) {
                0.0
            } else {
                s.edges()
                    .map(|(a, b)| geodesic_distance(p, to_lonlat(closest_on_arc(pu, a, b).1)))
                    .fold(f64::INFINITY, f64::min)
            };
            let got = s.distance_m(p);
            assert!(
                (got - every).abs() < 1e-6,
                "{p:?} near {:?}: {got} vs {every}",
                ring[0]
            );
            let (lo, hi) = s.distance_bounds_m(pu);
            assert!(
                lo <= got + 1e-6 && got <= hi + 1e-6,
                "bounds {lo}..{hi} miss {got}"
            );
        }
    }

    #[test]
    fn unit_vectors_round_trip_to_lonlat() {
        for ll in [
            [0.0, 0.0],
            [179.999, 45.0],
            [-179.5, -89.9],
            [125.754, 39.8],
        ] {
            let back = to_lonlat(to_unit(ll));
            assert!(
                (back[0] - ll[0]).abs() < 1e-9 && (back[1] - ll[1]).abs() < 1e-9,
                "{ll:?} -> {back:?}"
            );
        }
    }

    #[test]
    fn a_point_inside_a_footprint_is_zero_metres_away() {
        let s = shape(&square(125.75, 39.8, 0.02));
        assert_eq!(s.distance_m([125.755, 39.801]), 0.0);
    }

    #[test]
    fn distance_to_a_footprint_is_measured_to_its_nearest_edge_not_its_centre() {
        let ring = square(10.0, 50.0, 0.01);
        let s = shape(&ring);
        let p = [10.05, 50.0];
        let d = s.distance_m(p);
        let to_edge = geodesic_distance(p, [10.01, 50.0]);
        assert!((d - to_edge).abs() < 1.0, "{d} vs {to_edge}");
        assert!(d < geodesic_distance(p, [10.0, 50.0]) - 500.0);
    }

    #[test]
    fn distances_agree_with_densely_sampled_geodesics_everywhere_on_earth() {
        let cases = [
            (square(179.99, 10.0, 0.01), [-179.95, 10.02]),
            (square(-179.995, -65.0, 0.004), [179.97, -65.01]),
            (square(0.0, 89.5, 0.2), [180.0, 89.7]),
            (square(45.0, -88.0, 0.3), [-135.0, -89.5]),
            (square(20.0, 70.0, 1.5), [25.0, 68.0]),
            (square(-60.0, 0.0, 0.5), [-58.0, 3.0]),
        ];
        for (ring, p) in cases {
            let s = shape(&ring);
            let got = s.distance_m(p);
            let want = sampled_distance(&ring, p);
            let tol = (want * 1e-3).max(1.0);
            assert!(
                (got - want).abs() <= tol,
                "ring near {:?}, point {p:?}: {got} vs {want}",
                ring[0]
            );
        }
    }

    #[test]
    fn containment_works_across_the_antimeridian_and_around_a_pole() {
        let across = shape(&[
            [179.9, 0.0],
            [-179.9, 0.0],
            [-179.9, 0.2],
            [179.9, 0.2],
            [179.9, 0.0],
        ]);
        assert!(across.contains(to_unit([180.0, 0.1])));
        assert!(across.contains(to_unit([-179.95, 0.1])));
        assert!(!across.contains(to_unit([0.0, 0.1])));
        let polar = shape(&[
            [0.0, 89.0],
            [90.0, 89.0],
            [180.0, 89.0],
            [-90.0, 89.0],
            [0.0, 89.0],
        ]);
        assert!(polar.contains(to_unit([12.0, 90.0])));
        assert!(polar.contains(to_unit([33.0, 89.5])));
        assert!(!polar.contains(to_unit([33.0, 88.5])));
    }

    #[test]
    fn a_circle_is_closed_and_its_vertices_are_at_the_radius() {
        let ring = circle([125.0, 40.0], 500.0, 12);
        assert_eq!(ring.len(), 13);
        assert_eq!(ring[0], ring[12]);
        for p in &ring {
            assert!((geodesic_distance([125.0, 40.0], *p) - 500.0).abs() < 1e-6);
        }
        let s = SphericalShape::new([[&ring[..]]]).unwrap();
        assert!(s.contains(to_unit([125.0, 40.0])));
    }

    #[test]
    fn a_footprint_larger_than_the_cap_limit_is_refused() {
        let huge = [
            [-100.0, -50.0],
            [100.0, -50.0],
            [100.0, 50.0],
            [-100.0, 50.0],
            [-100.0, -50.0],
        ];
        assert_eq!(
            SphericalShape::new([[&huge[..]]]).unwrap_err(),
            ShapeError::TooLarge
        );
    }

    #[test]
    fn the_cap_envelope_contains_every_vertex() {
        let ring = square(-150.0, -70.0, 2.0);
        let s = shape(&ring);
        let (lo, hi) = s.envelope();
        for ll in ring {
            let u = to_unit(ll);
            assert!((0..3).all(|i| lo[i] <= u[i] && u[i] <= hi[i]));
        }
    }

    #[test]
    fn angle_bounds_bracket_the_ellipsoidal_distance() {
        for (a, b) in [
            ([0.0, 0.0], [0.0, 1.0]),
            ([0.0, 89.0], [180.0, 89.0]),
            ([10.0, 0.0], [11.0, 0.0]),
        ] {
            let theta = angle(to_unit(a), to_unit(b));
            let d = geodesic_distance(a, b);
            assert!(min_distance_for_angle(theta) <= d);
            assert!(max_angle_for_distance(d) >= theta);
            assert!(d <= theta * MAX_CURVATURE_RADIUS);
        }
    }

    #[test]
    fn shapes_that_overlap_or_touch_intersect_and_distant_ones_do_not() {
        let a = shape(&square(0.0, 0.0, 1.0));
        let b = shape(&square(1.5, 0.5, 1.0));
        let c = shape(&square(5.0, 5.0, 1.0));
        let inner = shape(&square(0.0, 0.0, 0.1));
        assert!(a.intersects(&b));
        assert!(a.intersects(&inner) && inner.intersects(&a));
        assert!(!a.intersects(&c));
    }
}
