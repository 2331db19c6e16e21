//! Clustering a batch's unmatched observations into candidates, in memory: the
//! batch's points and the unmatched ones earlier batches left near them sit in
//! R-trees, so each observation costs O(log n) rather than a scan of its area.
//!
//! Of the members earlier batches gave a candidate, the store hands over one
//! per cube ([`ClusterCell`]) at first, and a cube's others only when the
//! answer depends on them: when the nearest member could belong to another
//! candidate, or when only a cube's representative lies beyond the radius
//! while others of the cube may lie within it. A candidate that has gathered
//! a hundred batches then costs an import about what one of a single batch did.

use crate::geodesy::{self, Vec3, geodesic_distance};
use crate::model::{ClusterCell, LonLat, Timestamp};
use crate::store::{ImportUnit, StoreError};
use chrono::Datelike;
use rstar::primitives::GeomWithData;
use rstar::{AABB, RTree};
use std::collections::{HashMap, HashSet};

/// Unit vector and day number of a free observation, for the tree that finds
/// free neighbours on days not yet counted without visiting those on counted days.
type FreeEntry = GeomWithData<[f64; 4], usize>;
/// Unit vector of a member of an open candidate.
type OpenEntry = GeomWithData<Vec3, usize>;

/// An unmatched observation the clustering knows: one of the batch, or one an
/// earlier batch left free or in an open candidate.
struct Point {
    id: String,
    at: LonLat,
    unit: Vec3,
    day: i64,
    cell: ClusterCell,
}

/// An open candidate: stored before the batch (`id`), or formed in it.
struct Cluster {
    id: Option<String>,
    centre: LonLat,
    /// Observations that joined it in this batch, with their cubes, written
    /// at the end.
    joined: Vec<(String, ClusterCell)>,
}

/// The batch's clustering. Rules, applied to the unmatched observations in
/// feature order, each seeing the unmatched observations before it:
/// - one within the radius of a member of an open candidate joins that
///   candidate (of the nearest such member, if there are several);
/// - otherwise, if it and the free (candidate-less) observations within the
///   radius span at least `min_days` days, they form a new candidate centred
///   on their mean position;
/// - otherwise it stays free.
pub struct Clustering<'a> {
    tx: &'a dyn ImportUnit,
    radius: f64,
    min_days: usize,
    /// A chord of the unit sphere at least as long as that of any two points
    /// within `radius` on the ellipsoid.
    reach: f64,
    /// Side of the cells in which earlier batches' observations are read from
    /// the store, once per cell touched.
    cell: f64,
    /// Reading from the store around a point of a cell finds everything within
    /// `radius` of any point of that cell, and every representative of a cube
    /// that may hold such a member.
    load_m: f64,
    /// The longest geodesic within one [`ClusterCell`], in metres: how much
    /// nearer than its representative a cube's other members may lie.
    cube_m: f64,
    /// The chord beyond which no representative's cube can hold a member
    /// within `radius`.
    cube_reach: f64,
    loaded: HashSet<[i64; 3]>,
    points: Vec<Point>,
    /// Ids of `points` and of this batch's observations, which the store
    /// already holds but which the clustering adds itself, in order.
    known: HashSet<String>,
    free: RTree<FreeEntry>,
    /// Every member of an open candidate the clustering knows: this batch's,
    /// the stored representatives, and the members of the cubes read whole.
    open: RTree<OpenEntry>,
    /// The stored representatives of cubes not read whole.
    reps: RTree<OpenEntry>,
    /// `(cluster, cube)` read whole from the store.
    whole: HashSet<(usize, ClusterCell)>,
    /// Per point in `open`, its cluster.
    member_of: HashMap<usize, usize>,
    clusters: Vec<Cluster>,
    stored_clusters: HashMap<String, usize>,
}

impl<'a> Clustering<'a> {
    pub fn new(tx: &'a dyn ImportUnit, radius_m: f64, min_days: usize) -> Self {
        let reach = geodesy::chord_of_angle(geodesy::max_angle_for_distance(radius_m));
        // Cells a few radii wide: a query per cell reads little beyond what its
        // points need, and a dense batch touches few cells.
        let cell = (4.0 * reach).max(1e-9);
        let across = geodesy::max_distance_for_angle(geodesy::angle_of_chord(cell * 3f64.sqrt()));
        let cube_m = ClusterCell::diameter_m();
        Self {
            tx,
            radius: radius_m,
            min_days: min_days.max(1),
            reach,
            cell,
            load_m: across + radius_m + cube_m,
            cube_m,
            cube_reach: geodesy::chord_of_angle(geodesy::max_angle_for_distance(radius_m + cube_m)),
            loaded: HashSet::new(),
            points: Vec::new(),
            known: HashSet::new(),
            free: RTree::new(),
            open: RTree::new(),
            reps: RTree::new(),
            whole: HashSet::new(),
            member_of: HashMap::new(),
            clusters: Vec::new(),
            stored_clusters: HashMap::new(),
        }
    }

    /// Clusters the next unmatched observation of the batch, already stored as `id`.
    pub fn add(&mut self, id: &str, at: LonLat, when: Timestamp) -> Result<(), StoreError> {
        self.known.insert(id.to_owned());
        let unit = geodesy::to_unit(at.to_array());
        self.load_around(at, unit)?;
        let day = day_number(when);
        let cell = ClusterCell::of_unit(unit);
        let i = self.push(id.to_owned(), at, unit, day, cell);
        if let Some(c) = self.nearest_open(at, unit)? {
            self.clusters[c].joined.push((id.to_owned(), cell));
            self.join(i, c);
            return Ok(());
        }
        if self.free_days(at, unit, day) < self.min_days {
            self.free.insert(FreeEntry::new(free_key(unit, day), i));
            return Ok(());
        }
        let mut members: Vec<usize> = self
            .free_within(at, unit, f64::MIN, f64::MAX)
            .map(|e| e.data)
            .collect();
        members.sort_unstable();
        for &m in &members {
            let p = &self.points[m];
            self.free
                .remove(&FreeEntry::new(free_key(p.unit, p.day), m));
        }
        members.push(i);
        let sum = members
            .iter()
            .map(|&m| self.points[m].unit)
            .fold([0.0; 3], |s, v| [s[0] + v[0], s[1] + v[1], s[2] + v[2]]);
        let [lon, lat] = geodesy::to_lonlat(sum);
        let c = self.clusters.len();
        self.clusters.push(Cluster {
            id: None,
            centre: LonLat::from_computed(lon, lat),
            joined: members
                .iter()
                .map(|&m| (self.points[m].id.clone(), self.points[m].cell))
                .collect(),
        });
        for m in members {
            self.join(m, c);
        }
        Ok(())
    }

    /// Writes the batch's candidates, each once: new ones with all their
    /// members, stored ones with the members that joined. Returns the ids of
    /// the new ones in the order they formed.
    pub fn finish(self) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        for c in self.clusters {
            match c.id {
                None => created.push(self.tx.create_candidate(c.centre, &c.joined)?),
                Some(id) if !c.joined.is_empty() => self.tx.add_to_candidate(&id, &c.joined)?,
                Some(_) => {}
            }
        }
        Ok(created)
    }

    fn push(&mut self, id: String, at: LonLat, unit: Vec3, day: i64, cell: ClusterCell) -> usize {
        self.points.push(Point {
            id,
            at,
            unit,
            day,
            cell,
        });
        self.points.len() - 1
    }

    fn join(&mut self, point: usize, cluster: usize) {
        self.member_of.insert(point, cluster);
        self.open
            .insert(OpenEntry::new(self.points[point].unit, point));
    }

    /// Reads, once per cell, the unmatched observations earlier batches left
    /// within reach of the cell: free ones, and the representatives of the
    /// cubes of open candidates.
    fn load_around(&mut self, at: LonLat, unit: Vec3) -> Result<(), StoreError> {
        let key = unit.map(|x| (x / self.cell).floor() as i64);
        if !self.loaded.insert(key) {
            return Ok(());
        }
        for u in self.tx.unmatched_near(at, self.load_m)? {
            if self.known.contains(&u.id) {
                continue;
            }
            let cluster = match (&u.candidate_id, u.candidate_open) {
                (None, _) => None,
                (Some(c), true) => {
                    Some(*self.stored_clusters.entry(c.clone()).or_insert_with(|| {
                        self.clusters.push(Cluster {
                            id: Some(c.clone()),
                            centre: u.anchor,
                            joined: Vec::new(),
                        });
                        self.clusters.len() - 1
                    }))
                }
                // Members of dismissed candidates neither join nor form one.
                (Some(_), false) => continue,
            };
            self.known.insert(u.id.clone());
            let unit = geodesy::to_unit(u.anchor.to_array());
            let day = day_number(u.observed_at);
            let cell = u.cell.unwrap_or_else(|| ClusterCell::of_unit(unit));
            let i = self.push(u.id, u.anchor, unit, day, cell);
            match cluster {
                Some(c) => {
                    self.join(i, c);
                    if !self.whole.contains(&(c, cell)) {
                        self.reps.insert(OpenEntry::new(unit, i));
                    }
                }
                None => self.free.insert(FreeEntry::new(free_key(unit, day), i)),
            }
        }
        Ok(())
    }

    /// Reads the members of a stored candidate's cube that the clustering
    /// does not know yet.
    fn read_whole(&mut self, c: usize, cell: ClusterCell) -> Result<(), StoreError> {
        if !self.whole.insert((c, cell)) {
            return Ok(());
        }
        let Some(id) = self.clusters[c].id.clone() else {
            return Ok(());
        };
        for u in self.tx.candidate_members_in(&id, cell)? {
            if !self.known.insert(u.id.clone()) {
                continue;
            }
            let unit = geodesy::to_unit(u.anchor.to_array());
            let i = self.push(u.id, u.anchor, unit, day_number(u.observed_at), cell);
            self.join(i, c);
        }
        Ok(())
    }

    /// The open candidate with the member nearest `at`, if one is within the
    /// radius. The members known decide it unless a cube not read whole may
    /// hold a member of another candidate at least as near, or, with none
    /// known within the radius, any member within it: those cubes are read,
    /// and the members known decide again.
    fn nearest_open(&mut self, at: LonLat, unit: Vec3) -> Result<Option<usize>, StoreError> {
        loop {
            let known = self.nearest_known(at, unit);
            let decided = known.map(|(_, m)| self.member_of[&m]);
            let bound = known.map_or(self.radius, |(g, _)| g);
            let mut unread: Vec<(usize, ClusterCell)> = Vec::new();
            for e in self
                .reps
                .locate_within_distance(unit, self.cube_reach * self.cube_reach)
            {
                let c = self.member_of[&e.data];
                let p = &self.points[e.data];
                if decided == Some(c) || self.whole.contains(&(c, p.cell)) {
                    continue;
                }
                if geodesic_distance(p.at.to_array(), at.to_array()) - self.cube_m <= bound {
                    unread.push((c, p.cell));
                }
            }
            if unread.is_empty() {
                return Ok(decided);
            }
            for (c, cell) in unread {
                self.read_whole(c, cell)?;
            }
        }
    }

    /// The known member of an open candidate nearest `at` within the radius,
    /// with its distance.
    fn nearest_known(&self, at: LonLat, unit: Vec3) -> Option<(f64, usize)> {
        let mut best: Option<(f64, usize)> = None;
        for (e, d2) in self.open.nearest_neighbor_iter_with_distance_2(&unit) {
            let chord = d2.sqrt();
            if chord > self.reach {
                break;
            }
            // Members come by chord; the ellipsoid may reorder close ones, so
            // look on until none can be nearer than the best.
            let floor = geodesy::min_distance_for_angle(geodesy::angle_of_chord(chord));
            if best.is_some_and(|(g, _)| floor > g) {
                break;
            }
            let g = geodesic_distance(self.points[e.data].at.to_array(), at.to_array());
            if g <= self.radius && best.is_none_or(|b| (g, e.data) < b) {
                best = Some((g, e.data));
            }
        }
        best
    }

    /// How many days the point's own and the free observations within the
    /// radius span, counted up to `min_days`. Each step looks only between the
    /// days already counted, so a crowd of free observations from one day
    /// costs nothing.
    fn free_days(&self, at: LonLat, unit: Vec3, day: i64) -> usize {
        let mut days = vec![day];
        while days.len() < self.min_days {
            let mut gaps = Vec::with_capacity(days.len() + 1);
            let mut from = i64::MIN;
            for &d in &days {
                if from < d {
                    gaps.push((from, d - 1));
                }
                from = d + 1;
            }
            gaps.push((from, i64::MAX));
            let next = gaps.into_iter().find_map(|(lo, hi)| {
                self.free_within(at, unit, lo as f64, hi as f64)
                    .next()
                    .map(|e| self.points[e.data].day)
            });
            match next {
                Some(d) => {
                    let at = days.partition_point(|&x| x < d);
                    days.insert(at, d);
                }
                None => break,
            }
        }
        days.len()
    }

    /// Free observations within the radius of `at` from days `lo..=hi`.
    fn free_within(
        &self,
        at: LonLat,
        unit: Vec3,
        lo: f64,
        hi: f64,
    ) -> impl Iterator<Item = &FreeEntry> {
        let r = self.reach;
        let bounds = AABB::from_corners(
            [unit[0] - r, unit[1] - r, unit[2] - r, lo],
            [unit[0] + r, unit[1] + r, unit[2] + r, hi],
        );
        self.free.locate_in_envelope(&bounds).filter(move |e| {
            geodesic_distance(self.points[e.data].at.to_array(), at.to_array()) <= self.radius
        })
    }
}

fn day_number(t: Timestamp) -> i64 {
    i64::from(t.date().num_days_from_ce())
}

fn free_key(unit: Vec3, day: i64) -> [f64; 4] {
    [unit[0], unit[1], unit[2], day as f64]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Observation, Timestamp};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{CandidateReads, CandidateWrites, ObservationWrites, Unmatched};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::{Value, json};
    use std::cell::Cell;
    use std::collections::BTreeSet;

    /// An unmatched point of a batch: `[lon, lat]` and a day of March 2024.
    type Sample = ([f64; 2], i64);

    /// What a batch's clustering left: per candidate its members, whether it
    /// is open, and its centre.
    type Outcome = Vec<(BTreeSet<String>, bool, [f64; 2])>;

    /// Counts the store's neighbourhood queries and the candidates' members
    /// they return, passing everything through.
    struct Counting<'a> {
        inner: &'a dyn ImportUnit,
        queries: Cell<usize>,
        rows: Cell<usize>,
    }

    /// The rows that belong to a candidate: the batch's own observations,
    /// stored as it goes, come back as free ones and cost what the batch is.
    fn members(rows: &[Unmatched]) -> usize {
        rows.iter().filter(|u| u.candidate_id.is_some()).count()
    }

    impl ImportUnit for Counting<'_> {
        fn batch_id(&self) -> &str {
            self.inner.batch_id()
        }
        fn stored_batch_with_hash(&self, hash: &str) -> Result<Option<String>, StoreError> {
            self.inner.stored_batch_with_hash(hash)
        }
        fn look_up_externals(&self, keys: &[(Option<&str>, &str)]) -> Result<(), StoreError> {
            self.inner.look_up_externals(keys)
        }
        fn existing_external(
            &self,
            s: Option<&str>,
            e: &str,
        ) -> Result<Option<String>, StoreError> {
            self.inner.existing_external(s, e)
        }
        fn insert_observation(
            &self,
            i: usize,
            obs: &Observation,
            links: &[crate::model::SiteLink],
        ) -> Result<String, StoreError> {
            self.inner.insert_observation(i, obs, links)
        }
        fn unmatched_near(&self, p: LonLat, radius_m: f64) -> Result<Vec<Unmatched>, StoreError> {
            self.queries.set(self.queries.get() + 1);
            let rows = self.inner.unmatched_near(p, radius_m)?;
            self.rows.set(self.rows.get() + members(&rows));
            Ok(rows)
        }
        fn candidate_members_in(
            &self,
            candidate: &str,
            cell: ClusterCell,
        ) -> Result<Vec<Unmatched>, StoreError> {
            let rows = self.inner.candidate_members_in(candidate, cell)?;
            self.rows.set(self.rows.get() + members(&rows));
            Ok(rows)
        }
        fn create_candidate(
            &self,
            at: LonLat,
            members: &[(String, ClusterCell)],
        ) -> Result<String, StoreError> {
            self.inner.create_candidate(at, members)
        }
        fn add_to_candidate(
            &self,
            c: &str,
            members: &[(String, ClusterCell)],
        ) -> Result<(), StoreError> {
            self.inner.add_to_candidate(c, members)
        }
        fn commit(self: Box<Self>, _: &str, _: &str, _: &str, _: &Value) -> Result<(), StoreError> {
            unreachable!("the inner unit commits")
        }
        fn rollback(self: Box<Self>) -> Result<(), StoreError> {
            unreachable!("the inner unit rolls back")
        }
    }

    fn observation([lon, lat]: [f64; 2], day: i64) -> Observation {
        Observation::from_feature(&json!({"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"observed_at": format!("2024-03-{:02}T12:00:00Z", day + 1),
                "sensor": "s", "finding": "other"}}))
        .unwrap()
    }

    /// Imports each batch through the clustering into one store, then
    /// dismisses every third candidate; returns the ids given to the points
    /// (in order over all batches), what was left, and per batch the store's
    /// neighbourhood queries and the candidates' members it read.
    fn cluster_in_store(
        batches: &[Vec<Sample>],
        radius_m: f64,
        min_days: usize,
    ) -> (Vec<String>, Outcome, Vec<(usize, usize)>) {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let (mut ids, mut queries, mut formed) = (Vec::new(), Vec::new(), 0);
        for (b, batch) in batches.iter().enumerate() {
            let tx = store
                .begin_batch(&format!("batch-{b}"), Timestamp::now())
                .unwrap();
            let counting = Counting {
                inner: &*tx,
                queries: Cell::new(0),
                rows: Cell::new(0),
            };
            let mut clustering = Clustering::new(&counting, radius_m, min_days);
            for (i, &(at, day)) in batch.iter().enumerate() {
                let obs = observation(at, day);
                let id = tx.insert_observation(i, &obs, &[]).unwrap();
                clustering
                    .add(&id, obs.place.anchor(), obs.observed_at)
                    .unwrap();
                ids.push(id);
            }
            let created = clustering.finish().unwrap();
            queries.push((counting.queries.get(), counting.rows.get()));
            tx.commit("test", &format!("hash-{b}"), "atomic", &json!({}))
                .unwrap();
            for c in created {
                formed += 1;
                if formed % 3 == 0 {
                    assert!(store.dismiss_candidate(&c, None).unwrap());
                }
            }
        }
        let mut out: Outcome = store
            .candidates(None)
            .unwrap()
            .into_iter()
            .map(|c| {
                let open = c.state == crate::model::CandidateState::Open;
                (
                    c.observation_ids.into_iter().collect(),
                    open,
                    c.at.to_array(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        (ids, out, queries)
    }

    /// The rules of [`Clustering`] as a scan of every earlier point, in the
    /// order the points came, with candidates dismissed as in [`cluster_in_store`].
    fn brute_force(
        batches: &[Vec<Sample>],
        ids: &[String],
        radius_m: f64,
        min_days: usize,
    ) -> Outcome {
        let points: Vec<Sample> = batches.iter().flatten().copied().collect();
        let mut member_of: Vec<Option<usize>> = vec![None; points.len()];
        let mut candidates: Vec<(Vec<usize>, bool, [f64; 2])> = Vec::new();
        let mut next = 0;
        for batch in batches {
            let first_new = candidates.len();
            for i in next..next + batch.len() {
                let near: Vec<(f64, usize)> = (0..i)
                    .map(|j| (geodesic_distance(points[j].0, points[i].0), j))
                    .filter(|&(d, _)| d <= radius_m)
                    .collect();
                let nearest_open = near
                    .iter()
                    .filter(|&&(_, j)| member_of[j].is_some_and(|c| candidates[c].1))
                    .min_by(|a, b| a.partial_cmp(b).unwrap());
                if let Some(&(_, j)) = nearest_open {
                    let c = member_of[j].unwrap();
                    candidates[c].0.push(i);
                    member_of[i] = Some(c);
                    continue;
                }
                let mut members: Vec<usize> = near
                    .iter()
                    .map(|&(_, j)| j)
                    .filter(|&j| member_of[j].is_none())
                    .chain([i])
                    .collect();
                members.sort_unstable();
                let days: BTreeSet<i64> = members.iter().map(|&j| points[j].1).collect();
                if days.len() < min_days.max(1) {
                    continue;
                }
                let sum = members
                    .iter()
                    .map(|&j| geodesy::to_unit(points[j].0))
                    .fold([0.0; 3], |s, v| [s[0] + v[0], s[1] + v[1], s[2] + v[2]]);
                for &j in &members {
                    member_of[j] = Some(candidates.len());
                }
                candidates.push((members, true, geodesy::to_lonlat(sum)));
            }
            next += batch.len();
            for (k, c) in candidates.iter_mut().enumerate().skip(first_new) {
                c.1 = (k + 1) % 3 != 0;
            }
        }
        let mut out: Outcome = candidates
            .into_iter()
            .map(|(m, open, at)| (m.iter().map(|&j| ids[j].clone()).collect(), open, at))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Batches of random points around a place: dense (within 1.5 km, most
    /// within the radius of one another) or sparse (within 20 km).
    fn random_batches(
        seed: u64,
        around: [f64; 2],
        spread_m: f64,
        sizes: &[usize],
        days: i64,
    ) -> Vec<Vec<Sample>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        let dy = rng.random_range(-spread_m..=spread_m) / 111_000.0;
                        let dx = rng.random_range(-spread_m..=spread_m)
                            / (111_000.0 * around[1].to_radians().cos());
                        let lon = (around[0] + dx + 540.0).rem_euclid(360.0) - 180.0;
                        let lat = (around[1] + dy).clamp(-90.0, 90.0);
                        ([lon, lat], rng.random_range(0..days))
                    })
                    .collect()
            })
            .collect()
    }

    fn assert_same(got: &Outcome, want: &Outcome) {
        let members = |o: &Outcome| o.iter().map(|c| (c.0.clone(), c.1)).collect::<Vec<_>>();
        assert_eq!(members(got), members(want));
        for (g, w) in got.iter().zip(want) {
            // Sums of the same unit vectors, perhaps in another order.
            assert!(
                (g.2[0] - w.2[0]).abs() < 1e-9 && (g.2[1] - w.2[1]).abs() < 1e-9,
                "{g:?} {w:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn clustering_matches_a_brute_force_scan_over_every_earlier_point(
            seed in 0u64..u64::MAX,
            dense in any::<bool>(),
            place in 0usize..3,
            sizes in prop::collection::vec(0usize..60, 1..4),
            days in 1i64..5,
            min_days in 0usize..4,
            radius_m in 200.0f64..1_500.0,
        ) {
            // The Pacific, across the antimeridian, and next to the pole.
            let around = [[-150.0, 10.0], [179.999, -20.0], [30.0, 89.99]][place];
            let spread = if dense { 1_500.0 } else { 20_000.0 };
            let batches = random_batches(seed, around, spread, &sizes, days);
            let (ids, got, _) = cluster_in_store(&batches, radius_m, min_days);
            assert_same(&got, &brute_force(&batches, &ids, radius_m, min_days));
        }
    }

    #[test]
    fn an_observation_within_reach_of_two_open_candidates_joins_the_one_with_the_nearer_member() {
        // Two pairs 1.6 km apart form a candidate each; a point 700 m from the
        // west pair and 900 m from the east pair joins the west one.
        let e = |m: f64| [m / 111_320.0, 0.0];
        let batches = vec![vec![
            (e(0.0), 0),
            (e(0.0), 1),
            (e(1_600.0), 0),
            (e(1_600.0), 1),
            (e(700.0), 2),
        ]];
        let (ids, got, _) = cluster_in_store(&batches, 1_000.0, 2);
        assert_eq!(got.len(), 2);
        let west = got.iter().find(|c| c.0.contains(&ids[0])).unwrap();
        assert!(west.0.contains(&ids[4]), "{got:?}");
    }

    #[test]
    fn a_crowd_from_one_day_stays_free_until_another_day_gathers_it() {
        let mut batches = random_batches(7, [-150.0, 10.0], 300.0, &[500], 1);
        let (_, got, _) = cluster_in_store(&batches, 1_000.0, 2);
        assert!(got.is_empty());
        batches.push(vec![([-150.0, 10.0], 3)]);
        let (_, got, _) = cluster_in_store(&batches, 1_000.0, 2);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len(), 501);
    }

    #[test]
    fn the_twelfth_batch_in_one_area_reads_about_what_the_second_did() {
        // Every batch lands in the same square kilometre and joins the one
        // candidate there: the candidate grows by 400 members a batch, while
        // what a batch reads of it stays one member per cube.
        let batches = random_batches(11, [-150.0, 10.0], 500.0, &[400; 12], 28);
        let (_, got, reads) = cluster_in_store(&batches, 1_000.0, 2);
        assert_eq!(got.len(), 1, "one candidate gathers them all");
        assert_eq!(got[0].0.len(), 4_800);
        let (second, last) = (reads[1].1, reads[11].1);
        // Before the twelfth batch the candidate has 4,400 members; a read
        // may return one representative more than once (the store is asked
        // per area, and areas overlap).
        assert!(second > 0 && last < 1_000, "{reads:?}");
        assert!(last <= second + second / 2, "{reads:?}");
    }

    #[test]
    fn many_batches_over_neighbouring_candidates_match_the_brute_force_scan() {
        // Sparse enough that several candidates form side by side and later
        // batches must choose between them by their nearest member.
        for seed in 0..4 {
            let batches = random_batches(seed, [179.999, -20.0], 4_000.0, &[90; 8], 6);
            let (ids, got, _) = cluster_in_store(&batches, 700.0, 2);
            assert!(got.len() > 3, "{}", got.len());
            assert_same(&got, &brute_force(&batches, &ids, 700.0, 2));
        }
    }

    #[test]
    fn a_dense_batch_asks_the_store_once_per_cell_not_once_per_observation() {
        let batches = random_batches(3, [-150.0, 10.0], 1_000.0, &[2_000, 2_000], 28);
        let (_, got, queries) = cluster_in_store(&batches, 1_000.0, 2);
        assert!(queries.iter().all(|&(q, _)| q <= 8), "{queries:?}");
        assert!(!got.is_empty());
    }
}
