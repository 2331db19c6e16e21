//! The in-memory R-tree over site footprints and the proximity queries on it.
//!
//! Footprints are indexed as 3-D boxes around their caps on the unit sphere, where
//! straight-line distance orders like great-circle distance and the antimeridian
//! and the poles need no special cases. The tree answers with candidates; exact
//! geodesic metres on WGS84 decide.

use crate::geodesy::{
    self, SphericalShape, angle_of_chord, chord_of_angle, max_angle_for_distance,
    min_distance_for_angle,
};
use crate::model::{
    BBox, CountryCode, Declaration, FieldError, Footprint, LonLat, Meters, PositionQuality, Site,
    SiteId, SiteKind, Status,
};
use rstar::{AABB, PointDistance, RTree, RTreeObject};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, OnceLock};

mod names;

use names::NameColumn;
pub use names::{folded, name_contains};

/// One footprint's box in the tree, with its site: a tree can then take and
/// lose entries without renumbering, which is how a layer follows edits.
#[derive(Debug, Clone)]
struct Entry {
    site: Arc<Site>,
    envelope: AABB<[f64; 3]>,
}

impl Entry {
    fn of(site: &Arc<Site>) -> Self {
        let (lo, hi) = site.footprint.shape().envelope();
        Entry {
            site: site.clone(),
            envelope: AABB::from_corners(lo, hi),
        }
    }

    fn shape(&self) -> &SphericalShape {
        self.site.footprint.shape()
    }
}

/// The same site, not an equal one: what removing an entry looks for.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.site, &other.site)
    }
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 3]>;
    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

impl PointDistance for Entry {
    fn distance_2(&self, point: &[f64; 3]) -> f64 {
        self.envelope.distance_2(point)
    }
}

/// Which sites a query may return. An empty list means "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub declaration: Vec<Declaration>,
    pub kind: Vec<SiteKind>,
    pub status: Vec<Status>,
    pub country: Vec<CountryCode>,
    pub position_quality: Vec<PositionQuality>,
}

impl Filter {
    /// Builds a filter from comma-separated lists of values, one per field name
    /// (`declaration`, `kind`, `status`, `country`, `position_quality`); `lists`
    /// returns `None` for a
    /// field that is not restricted.
    pub fn from_lists<'a>(lists: impl Fn(&str) -> Option<&'a str>) -> Result<Self, FieldError> {
        fn list<T>(
            field: &str,
            raw: Option<&str>,
            parse: impl Fn(&str, &str) -> Result<T, FieldError>,
        ) -> Result<Vec<T>, FieldError> {
            raw.map_or(Ok(Vec::new()), |r| {
                r.split(',').map(|v| parse(field, v.trim())).collect()
            })
        }
        Ok(Self {
            declaration: list("declaration", lists("declaration"), Declaration::parse)?,
            kind: list("kind", lists("kind"), SiteKind::parse)?,
            status: list("status", lists("status"), Status::parse)?,
            country: list("country", lists("country"), CountryCode::parse)?,
            position_quality: list(
                "position_quality",
                lists("position_quality"),
                PositionQuality::parse,
            )?,
        })
    }

    pub fn matches(&self, s: &Site) -> bool {
        fn ok<T: PartialEq>(set: &[T], v: &T) -> bool {
            set.is_empty() || set.contains(v)
        }
        ok(&self.declaration, &s.declaration)
            && ok(&self.kind, &s.kind)
            && ok(&self.status, &s.status)
            && ok(&self.country, &s.country)
            && ok(&self.position_quality, &s.position_quality)
    }
}

/// A site with its distance from the query point.
#[derive(Debug, Clone)]
pub struct Hit {
    pub site: Arc<Site>,
    pub distance: Meters,
}

/// Orders hits by distance, then id, as every proximity answer is sorted.
fn by_distance_then_id(a: &Hit, b: &Hit) -> Ordering {
    a.distance
        .get()
        .total_cmp(&b.distance.get())
        .then_with(|| a.site.id.cmp(&b.site.id))
}

/// A distance bound in a max-heap, so the worst of the best k is on top.
struct Bound(f64);
impl PartialEq for Bound {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0) == Ordering::Equal
    }
}
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bound {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// One bulk-loaded tree over a set of sites, sorted by id, so that a lookup by
/// id is a binary search and needs no second copy of every id.
#[derive(Debug, Default)]
struct Layer {
    sites: Vec<Arc<Site>>,
    tree: RTree<Entry>,
    /// The lon/lat box around every footprint (see [`Footprint::lonlat_bounds`]).
    bounds: Option<[f64; 4]>,
    /// The names in slot order, made on the first name search.
    names: OnceLock<NameColumn>,
    /// Slot by a hash of the id, made on the first lookup by id: a binary
    /// search over a million sites follows twenty pointers to as many ids,
    /// this one or two.
    slots: OnceLock<std::collections::HashMap<u64, u32, foldhash::fast::FixedState>>,
}

/// The hash an id is found by in [`Layer::slots`].
fn id_hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    // Ids come from the catalogue's own writers and a colliding id only falls
    // back to a search, so a fast unkeyed hash serves; SipHash was an eighth
    // of the work of opening a million sites.
    foldhash::fast::FixedState::default().hash_one(id)
}

/// Sites below this many are boxed on the caller's thread alone.
const PARALLEL_ENTRIES: usize = 50_000;

/// The tree's entries for `sites`, in order, and the lon/lat box around them
/// all, worked out on every core: at a million sites each costs a pass over
/// every footprint's positions.
fn entries_of(sites: &[Arc<Site>]) -> (Vec<Entry>, Option<[f64; 4]>) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = if sites.len() < PARALLEL_ENTRIES {
        1
    } else {
        workers
    };
    entries_in_parts(sites, parts)
}

/// [`entries_of`] with the sites split into `parts` runs, one thread each.
fn entries_in_parts(sites: &[Arc<Site>], parts: usize) -> (Vec<Entry>, Option<[f64; 4]>) {
    let boxed = |part: &[Arc<Site>]| {
        let mut bounds = None;
        let entries: Vec<Entry> = part
            .iter()
            .map(|s| {
                grow(&mut bounds, s.footprint.lonlat_bounds());
                Entry::of(s)
            })
            .collect();
        (entries, bounds)
    };
    if parts <= 1 || sites.is_empty() {
        return boxed(sites);
    }
    let parts: Vec<(Vec<Entry>, Option<[f64; 4]>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = sites
            .chunks(sites.len().div_ceil(parts))
            .map(|part| scope.spawn(move || boxed(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut entries = Vec::with_capacity(sites.len());
    let mut bounds = None;
    for (part, part_bounds) in parts {
        entries.extend(part);
        if let Some(b) = part_bounds {
            grow(&mut bounds, b);
        }
    }
    (entries, bounds)
}

/// Grows `b` to hold `[w, s, e, n]`.
fn grow(b: &mut Option<[f64; 4]>, [w, s, e, n]: [f64; 4]) {
    *b = Some(match *b {
        None => [w, s, e, n],
        Some([bw, bs, be, bn]) => [bw.min(w), bs.min(s), be.max(e), bn.max(n)],
    });
}

impl Layer {
    /// Ids must be unique; the last wins.
    fn build(sites: impl IntoIterator<Item = Arc<Site>>) -> Self {
        let mut sites: Vec<Arc<Site>> = sites.into_iter().collect();
        // A store hands sites over in id order; one pass then saves the sort
        // and the search for duplicates.
        if !sites.windows(2).all(|w| w[0].id < w[1].id) {
            // Stable, so that of equal ids the later stays later.
            sites.sort_by(|a, b| a.id.cmp(&b.id));
            sites.dedup_by(|later, earlier| {
                let same = later.id == earlier.id;
                if same {
                    std::mem::swap(later, earlier);
                }
                same
            });
        }
        let (entries, bounds) = entries_of(&sites);
        Self {
            sites,
            tree: RTree::bulk_load(entries),
            bounds,
            names: OnceLock::new(),
            slots: OnceLock::new(),
        }
    }

    fn names(&self) -> &NameColumn {
        self.names.get_or_init(|| NameColumn::build(&self.sites))
    }

    fn position(&self, id: &SiteId) -> Option<usize> {
        // Small layers are searched; large ones looked up by hash, and a
        // slot whose id differs (two ids with one hash) falls back to search.
        if self.sites.len() < 4096 {
            return self.sites.binary_search_by(|s| s.id.cmp(id)).ok();
        }
        let slots = self.slots.get_or_init(|| {
            let mut slots = std::collections::HashMap::with_capacity_and_hasher(
                self.sites.len(),
                <_>::default(),
            );
            slots.extend(
                self.sites
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (id_hash(s.id.as_str()), i as u32)),
            );
            slots
        });
        match slots.get(&id_hash(id.as_str())) {
            Some(&i) if self.sites[i as usize].id == *id => Some(i as usize),
            Some(_) => self.sites.binary_search_by(|s| s.id.cmp(id)).ok(),
            None => None,
        }
    }

    fn get(&self, id: &SiteId) -> Option<&Arc<Site>> {
        self.position(id).map(|i| &self.sites[i])
    }

    /// This layer with `changes` applied in place of a copy: the copy costs
    /// a pass over the layer's entries, and each change a removal and an
    /// insertion in the tree, where building anew would sort and pack it all.
    fn with_changes(
        &self,
        changes: &std::collections::BTreeMap<SiteId, Option<Arc<Site>>>,
    ) -> Self {
        let mut sites = self.sites.clone();
        let mut tree = self.tree.clone();
        let mut bounds = self.bounds;
        for (id, change) in changes {
            let at = match sites.binary_search_by(|s| s.id.cmp(id)) {
                Ok(i) => {
                    let old = sites.remove(i);
                    tree.remove(&Entry::of(&old));
                    i
                }
                Err(i) => i,
            };
            if let Some(new) = change {
                grow(&mut bounds, new.footprint.lonlat_bounds());
                tree.insert(Entry::of(new));
                sites.insert(at, new.clone());
            }
        }
        Self {
            sites,
            tree,
            bounds,
            names: OnceLock::new(),
            slots: OnceLock::new(),
        }
    }

    fn nearby(&self, point: LonLat, radius: Meters, keep: &dyn Fn(&Site) -> bool) -> Vec<Hit> {
        let p = geodesy::to_unit(point.to_array());
        let chord = chord_of_angle(max_angle_for_distance(radius.get()));
        self.tree
            .locate_within_distance(p, chord * chord)
            .filter_map(|e| {
                let site = &e.site;
                if !keep(site) {
                    return None;
                }
                let shape = e.shape();
                if min_distance_for_angle(shape.min_angle_to(p)) > radius.get() {
                    return None;
                }
                let d = shape.distance_within_m(point.to_array(), radius.get())?;
                (d <= radius.get()).then(|| Hit {
                    site: site.clone(),
                    distance: Meters::from_computed(d),
                })
            })
            .collect()
    }

    fn nearest(&self, point: LonLat, k: usize, keep: &dyn Fn(&Site) -> bool) -> Vec<Hit> {
        if k == 0 {
            return Vec::new();
        }
        let ll = point.to_array();
        let p = geodesy::to_unit(ll);
        // Rank by bounds from the sphere, then measure exactly only the sites
        // whose lower bound does not rule them out of the best k.
        let mut uppers: BinaryHeap<Bound> = BinaryHeap::with_capacity(k + 1);
        let mut ranked: Vec<(f64, &Entry)> = Vec::new();
        let kth = |uppers: &BinaryHeap<Bound>| {
            if uppers.len() == k {
                uppers.peek().map_or(f64::INFINITY, |b| b.0)
            } else {
                f64::INFINITY
            }
        };
        for (e, d2) in self.tree.nearest_neighbor_iter_with_distance_2(&p) {
            // Boxes come in order of their distance, a lower bound for every later one.
            if min_distance_for_angle(angle_of_chord(d2.sqrt())) > kth(&uppers) {
                break;
            }
            if !keep(&e.site) {
                continue;
            }
            let shape = e.shape();
            if min_distance_for_angle(shape.min_angle_to(p)) > kth(&uppers) {
                continue;
            }
            let (lower, upper) = shape.distance_bounds_m(p);
            if lower > kth(&uppers) {
                continue;
            }
            ranked.push((lower, e));
            uppers.push(Bound(upper));
            if uppers.len() > k {
                uppers.pop();
            }
        }
        let cutoff = kth(&uppers);
        let mut hits: Vec<Hit> = ranked
            .into_iter()
            .filter(|(lower, _)| *lower <= cutoff)
            .map(|(_, e)| Hit {
                site: e.site.clone(),
                distance: Meters::from_computed(e.shape().distance_m(ll)),
            })
            .collect();
        hits.sort_by(by_distance_then_id);
        hits.truncate(k);
        hits
    }

    fn bbox(&self, bbox: &BBox, keep: &dyn Fn(&Site) -> bool) -> Vec<Arc<Site>> {
        let mut found: Vec<Arc<Site>> = Vec::new();
        for [w, s, e, n] in bbox.pieces() {
            let (lo, hi) = geodesy::lonlat_rect_envelope(w, s, e, n);
            for entry in self
                .tree
                .locate_in_envelope_intersecting(&AABB::from_corners(lo, hi))
            {
                let site = &entry.site;
                if keep(site) && rect_meets_footprint([w, s, e, n], &site.footprint) {
                    found.push(site.clone());
                }
            }
        }
        found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        found
    }

    fn intersects(&self, shape: &SphericalShape, keep: &dyn Fn(&Site) -> bool) -> Vec<Arc<Site>> {
        let (lo, hi) = shape.envelope();
        let mut found: Vec<Arc<Site>> = self
            .tree
            .locate_in_envelope_intersecting(&AABB::from_corners(lo, hi))
            .filter(|e| keep(&e.site) && e.shape().intersects(shape))
            .map(|e| e.site.clone())
            .collect();
        found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        found
    }
}

/// The sites written since the base was built stay in a small layer of their
/// own until there are this many (or a 64th of the base, if more); then both
/// are merged into a new base. Changing the small layer costs a copy of its m
/// entries per commit, and the merge O(n log n) once per this many edits.
const RECENT_LIMIT: usize = 4096;

/// An immutable snapshot of the catalogue's live sites and the trees over them.
/// Writers derive a new one with [`SiteIndex::with_changes`] and swap it in;
/// readers keep the one they started with.
///
/// A snapshot is a large base layer, shared between snapshots, and a small
/// layer of the sites written since, which hides the base's versions of them.
/// An edit so costs a rebuild of the small layer, never of the whole catalogue.
#[derive(Debug, Default, Clone)]
pub struct SiteIndex {
    base: Arc<Layer>,
    recent: Arc<Layer>,
    /// Ids of base sites that `recent` replaces or that were retired since.
    hidden: Arc<std::collections::HashSet<SiteId>>,
    len: usize,
    /// [`RECENT_LIMIT`], smaller in tests so that merges happen.
    recent_limit: usize,
}

/// See [`SiteIndex::base_and_delta`].
pub struct BaseAndDelta<'a> {
    /// Names the base layer: equal for snapshots that share it.
    pub key: usize,
    /// Every site of the base layer, those since removed included.
    pub base: &'a [Arc<Site>],
    /// Base sites that are no longer live, or live in another state.
    pub removed: Vec<&'a Arc<Site>>,
    /// Sites written since the base, in their current state.
    pub added: &'a [Arc<Site>],
}

/// What a commit did to one live site: its new state, or `None` if it left
/// the live catalogue.
pub type SiteChange = (SiteId, Option<Arc<Site>>);

impl SiteIndex {
    /// Bulk-loads the tree from a set of sites (ids must be unique; the last wins).
    pub fn build(sites: impl IntoIterator<Item = Arc<Site>>) -> Self {
        let base = Layer::build(sites);
        Self {
            len: base.sites.len(),
            base: Arc::new(base),
            recent_limit: RECENT_LIMIT,
            ..Self::default()
        }
    }

    /// This snapshot with `changes` applied, in order (the last change to an
    /// id wins). Costs the number of sites written since the last merge, not
    /// the size of the catalogue, except once every [`RECENT_LIMIT`] sites.
    pub fn with_changes(&self, changes: impl IntoIterator<Item = SiteChange>) -> Self {
        let changes: std::collections::BTreeMap<SiteId, Option<Arc<Site>>> =
            changes.into_iter().collect();
        if changes.is_empty() {
            return self.clone();
        }
        if self.recent.sites.len() + changes.len()
            > self.recent_limit.max(self.base.sites.len() / 64)
        {
            let all = Filter::default();
            let mut merged = Self::build(merge_changes(self.all(&all).cloned(), &changes));
            merged.recent_limit = self.recent_limit;
            return merged;
        }
        let mut hidden = (*self.hidden).clone();
        for id in changes.keys() {
            if self.base.get(id).is_some() {
                hidden.insert(id.clone());
            }
        }
        let recent = self.recent.with_changes(&changes);
        Self {
            len: self.base.sites.len() - hidden.len() + recent.sites.len(),
            base: self.base.clone(),
            recent: Arc::new(recent),
            hidden: Arc::new(hidden),
            recent_limit: self.recent_limit,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The snapshot as its shared base layer and the changes since, for views
    /// derived from the catalogue (the map's clusters) that are built once per
    /// base and brought up to date by the delta.
    pub fn base_and_delta(&self) -> BaseAndDelta<'_> {
        BaseAndDelta {
            key: Arc::as_ptr(&self.base) as usize,
            base: &self.base.sites,
            removed: self
                .hidden
                .iter()
                .filter_map(|id| self.base.get(id))
                .collect(),
            added: &self.recent.sites,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lon/lat box around every live footprint (a footprint across the
    /// antimeridian spans every longitude). After sites leave, it may still
    /// hold where they were until the layers are next merged: never too small.
    pub fn bounds(&self) -> Option<[f64; 4]> {
        let mut b = self.base.bounds;
        if let Some(r) = self.recent.bounds {
            grow(&mut b, r);
        }
        b
    }

    fn in_base(&self, site: &Site) -> bool {
        self.hidden.is_empty() || !self.hidden.contains(&site.id)
    }

    pub fn get(&self, id: &SiteId) -> Option<&Arc<Site>> {
        self.recent.get(id).or_else(|| {
            if self.hidden.contains(id) {
                None
            } else {
                self.base.get(id)
            }
        })
    }

    /// Every site passing the filter, in id order.
    pub fn all<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a Arc<Site>> + 'a {
        self.from(None, filter)
    }

    /// Every site passing the filter whose id is after `after` (all if `None`),
    /// in id order: a page's worth costs that page, not the catalogue.
    pub fn from<'a>(
        &'a self,
        after: Option<&SiteId>,
        filter: &'a Filter,
    ) -> impl Iterator<Item = &'a Arc<Site>> + 'a {
        let start = |layer: &Layer| match after {
            None => 0,
            Some(id) => layer.sites.partition_point(|s| s.id <= *id),
        };
        let base = self.base.sites[start(&self.base)..]
            .iter()
            .filter(|s| self.in_base(s))
            .peekable();
        let recent = self.recent.sites[start(&self.recent)..].iter().peekable();
        MergeById { a: base, b: recent }.filter(move |s| filter.matches(s))
    }

    /// Every live site with a name or alternate name that contains `needle`
    /// (lowercase, see [`folded`]), in id order. The base layer answers from
    /// its name column; the few sites written since are compared one by one.
    pub fn named(&self, needle: &str) -> Vec<&Arc<Site>> {
        self.named_at_most(needle, usize::MAX)
            .unwrap_or_else(|| unreachable!("no bound was set"))
    }

    /// [`SiteIndex::named`], or `None` when more than `most` base sites match:
    /// then there are so many that walking the catalogue in id order finds a
    /// page sooner than listing them all.
    pub fn named_at_most(&self, needle: &str, most: usize) -> Option<Vec<&Arc<Site>>> {
        let in_column = if most == usize::MAX {
            self.base.names().slots_containing(needle)
        } else {
            match self.base.names().slots_containing_at_most(needle, most) {
                Some(slots) => Some(slots),
                // Too many, unless the needle cannot be searched in the column.
                None if !needle.as_bytes().contains(&0) => return None,
                None => None,
            }
        };
        let base: Vec<&Arc<Site>> = match in_column {
            Some(slots) => slots
                .into_iter()
                .map(|i| &self.base.sites[i])
                .filter(|s| self.in_base(s))
                .collect(),
            None => self
                .base
                .sites
                .iter()
                .filter(|s| self.in_base(s) && name_contains(s, needle))
                .collect(),
        };
        let recent = self
            .recent
            .sites
            .iter()
            .filter(|s| name_contains(s, needle));
        Some(
            MergeById {
                a: base.into_iter().peekable(),
                b: recent.peekable(),
            }
            .collect(),
        )
    }

    /// Makes the name column now, so that the first search does not wait for it.
    pub fn warm_names(&self) {
        self.base.names();
        // And the lookup by id, for the same reason.
        let _ = self
            .base
            .get(&SiteId::parse("id", "0").unwrap_or_else(|_| unreachable!()));
    }

    /// Every site whose footprint lies within `radius` of `point`, nearest first
    /// (ties by id), at most `limit`.
    pub fn nearby(&self, point: LonLat, radius: Meters, filter: &Filter, limit: usize) -> Vec<Hit> {
        let mut hits = self
            .base
            .nearby(point, radius, &|s| filter.matches(s) && self.in_base(s));
        hits.extend(self.recent.nearby(point, radius, &|s| filter.matches(s)));
        hits.sort_by(by_distance_then_id);
        hits.truncate(limit);
        hits
    }

    /// The `k` sites nearest to `point`, nearest first (ties by id).
    pub fn nearest(&self, point: LonLat, k: usize, filter: &Filter) -> Vec<Hit> {
        let mut hits = self
            .base
            .nearest(point, k, &|s| filter.matches(s) && self.in_base(s));
        if !self.recent.sites.is_empty() {
            hits.extend(self.recent.nearest(point, k, &|s| filter.matches(s)));
            hits.sort_by(by_distance_then_id);
            hits.truncate(k);
        }
        hits
    }

    /// Every site whose footprint meets the lon/lat box, in id order.
    pub fn bbox(&self, bbox: &BBox, filter: &Filter) -> Vec<Arc<Site>> {
        self.in_id_order(filter, |layer, keep| layer.bbox(bbox, keep))
    }

    /// Every site whose footprint shares a point with `shape`, in id order.
    pub fn intersects(&self, shape: &SphericalShape, filter: &Filter) -> Vec<Arc<Site>> {
        self.in_id_order(filter, |layer, keep| layer.intersects(shape, keep))
    }

    /// A query answered per layer in id order (the base's hidden sites left
    /// out), as one answer in id order.
    fn in_id_order(
        &self,
        filter: &Filter,
        query: impl Fn(&Layer, &dyn Fn(&Site) -> bool) -> Vec<Arc<Site>>,
    ) -> Vec<Arc<Site>> {
        let mut sites = query(&self.base, &|s| filter.matches(s) && self.in_base(s));
        if !self.recent.sites.is_empty() {
            sites.extend(query(&self.recent, &|s| filter.matches(s)));
            sites.sort_by(|a, b| a.id.cmp(&b.id));
        }
        sites
    }
}

/// Two id-ordered runs of sites with no id in both, as one id-ordered run.
struct MergeById<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for MergeById<A, B>
where
    A: Iterator<Item = &'a Arc<Site>>,
    B: Iterator<Item = &'a Arc<Site>>,
{
    type Item = &'a Arc<Site>;

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.id < x.id => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// An id-ordered run of sites with `changes` applied: changed ids take their
/// new state, or leave if it is `None`.
fn merge_changes(
    sites: impl Iterator<Item = Arc<Site>>,
    changes: &std::collections::BTreeMap<SiteId, Option<Arc<Site>>>,
) -> Vec<Arc<Site>> {
    let mut out: Vec<Arc<Site>> = sites.filter(|s| !changes.contains_key(&s.id)).collect();
    out.extend(changes.values().flatten().cloned());
    out
}

/// Whether a footprint meets a lon/lat rectangle that does not cross the
/// antimeridian: at once if the rectangle holds the footprint's whole box (as
/// a view of the world holds every site), otherwise by the exact test.
fn rect_meets_footprint([w, s, e, n]: [f64; 4], footprint: &Footprint) -> bool {
    let [fw, fs, fe, fn_] = footprint.lonlat_bounds();
    (w <= fw && fe <= e && s <= fs && fn_ <= n) || parts_meet_rect(footprint.parts(), [w, s, e, n])
}

/// Whether a footprint meets a lon/lat box (which may cross the antimeridian).
pub fn footprint_meets_bbox(footprint: &Footprint, bbox: &BBox) -> bool {
    parts_meet_bbox(footprint.parts(), bbox)
}

/// [`footprint_meets_bbox`] on a footprint's lon/lat rings alone (see
/// [`crate::model::geojson_parts`]); every polygon has a first ring.
pub fn parts_meet_bbox(parts: &[Vec<Vec<[f64; 2]>>], bbox: &BBox) -> bool {
    bbox.pieces().into_iter().any(|r| parts_meet_rect(parts, r))
}

/// Whether a footprint meets a lon/lat rectangle that does not cross the
/// antimeridian, in the plane of longitude and latitude (the reading of `bbox`
/// that OGC API clients and PostGIS's `&&` share). Rings that cross the
/// antimeridian are unwrapped and tested against the rectangle shifted by 360°.
fn parts_meet_rect(parts: &[Vec<Vec<[f64; 2]>>], [w, s, e, n]: [f64; 4]) -> bool {
    use geo::{Coord, Intersects, LineString, Polygon, Rect};
    parts.iter().any(|rings| {
        let unwrap = |ring: &Vec<[f64; 2]>| {
            let mut prev = ring[0][0];
            let mut offset = 0.0;
            LineString::from(
                ring.iter()
                    .map(|&[lon, lat]| {
                        let step = lon + offset - prev;
                        if step > 180.0 {
                            offset -= 360.0;
                        } else if step < -180.0 {
                            offset += 360.0;
                        }
                        prev = lon + offset;
                        Coord {
                            x: lon + offset,
                            y: lat,
                        }
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let poly = Polygon::new(unwrap(&rings[0]), rings[1..].iter().map(unwrap).collect());
        [-360.0, 0.0, 360.0].iter().any(|shift| {
            let rect = Rect::new(Coord { x: w + shift, y: s }, Coord { x: e + shift, y: n });
            poly.intersects(&rect)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IdPolicy;
    use proptest::prelude::*;
    use serde_json::json;

    fn site(id: &str, lon: f64, lat: f64, half_deg: f64, kind: &str) -> Arc<Site> {
        let ring = json!([
            [lon - half_deg, lat - half_deg],
            [lon + half_deg, lat - half_deg],
            [lon + half_deg, lat + half_deg],
            [lon - half_deg, lat + half_deg],
            [lon - half_deg, lat - half_deg]
        ]);
        let f = json!({"type": "Feature", "id": id, "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"name": id, "country": "ZZZ", "kind": kind}});
        Arc::new(Site::from_feature(&f, IdPolicy::Required).unwrap())
    }

    fn ll(lon: f64, lat: f64) -> LonLat {
        LonLat::parse("p", lon, lat).unwrap()
    }

    /// Seeded random sites anywhere on Earth, many straddling the antimeridian and near the poles.
    fn random_sites(seed: u64, n: usize) -> Vec<Arc<Site>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let lon: f64 = match i % 3 {
                    0 => rng.random_range(-179.9..179.9),
                    _ => {
                        rng.random_range(179.6..179.9)
                            * if rng.random_bool(0.5) { 1.0 } else { -1.0 }
                    }
                };
                let lat = match i % 4 {
                    0 => rng.random_range(85.0..88.5),
                    1 => rng.random_range(-88.5..-85.0),
                    _ => rng.random_range(-60.0..60.0),
                };
                let half = rng.random_range(0.002..0.05);
                let kind = if i % 2 == 0 {
                    "reactor"
                } else {
                    "missile_base"
                };
                site(&format!("s{i:04}"), lon, lat, half, kind)
            })
            .collect()
    }

    fn brute(sites: &[Arc<Site>], p: LonLat, filter: &Filter) -> Vec<(SiteId, f64)> {
        let mut all: Vec<(SiteId, f64)> = sites
            .iter()
            .filter(|s| filter.matches(s))
            .map(|s| (s.id.clone(), s.footprint.shape().distance_m(p.to_array())))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        all
    }

    fn ids(hits: &[Hit]) -> Vec<(SiteId, f64)> {
        hits.iter()
            .map(|h| (h.site.id.clone(), h.distance.get()))
            .collect()
    }

    #[test]
    fn entries_made_on_several_threads_are_those_made_on_one_in_the_same_order() {
        let sites: Vec<Arc<Site>> = crate::synth::sites(101, 8)
            .into_iter()
            .map(Arc::new)
            .collect();
        let (one, one_bounds) = entries_in_parts(&sites, 1);
        let (many, many_bounds) = entries_in_parts(&sites, 3);
        assert_eq!(one.len(), sites.len());
        assert_eq!(one, many);
        assert!(one.iter().zip(&many).all(|(a, b)| a.envelope == b.envelope));
        assert_eq!(one_bounds, many_bounds);
        assert!(one_bounds.is_some());
        assert_eq!(entries_in_parts(&[], 3).1, None);
    }

    #[test]
    fn a_point_inside_a_footprint_finds_it_first_at_zero_metres() {
        let idx = SiteIndex::build([
            site("a", 125.75, 39.8, 0.02, "reactor"),
            site("b", 125.9, 39.8, 0.02, "reactor"),
        ]);
        let hits = idx.nearest(ll(125.751, 39.801), 2, &Filter::default());
        assert_eq!(hits[0].site.id.as_str(), "a");
        assert_eq!(hits[0].distance.get(), 0.0);
        assert!(hits[1].distance.get() > 9_000.0);
    }

    #[test]
    fn nearest_finds_sites_across_the_antimeridian() {
        let idx = SiteIndex::build([
            site("east", 179.95, 0.0, 0.01, "reactor"),
            site("far", 170.0, 0.0, 0.01, "reactor"),
        ]);
        let hits = idx.nearest(ll(-179.95, 0.0), 1, &Filter::default());
        assert_eq!(hits[0].site.id.as_str(), "east");
        let to_edge = geodesy::geodesic_distance([-179.95, 0.0], [179.96, 0.0]);
        assert!(
            (hits[0].distance.get() - to_edge).abs() < 1.0,
            "{} vs {to_edge}",
            hits[0].distance.get()
        );
    }

    #[test]
    fn a_bbox_across_the_antimeridian_finds_sites_on_both_sides() {
        let idx = SiteIndex::build([
            site("w", -179.5, 0.0, 0.1, "reactor"),
            site("e", 179.5, 0.0, 0.1, "reactor"),
            site("mid", 0.0, 0.0, 0.1, "reactor"),
        ]);
        let got: Vec<_> = idx
            .bbox(
                &BBox::parse("bbox", &[179.0, -1.0, -179.0, 1.0]).unwrap(),
                &Filter::default(),
            )
            .iter()
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(got, ["e", "w"]);
    }

    #[test]
    fn filters_restrict_every_query() {
        let idx = SiteIndex::build([
            site("r", 0.0, 0.0, 0.01, "reactor"),
            site("m", 0.05, 0.0, 0.01, "missile_base"),
        ]);
        let f = Filter {
            kind: vec![SiteKind::MissileBase],
            ..Filter::default()
        };
        assert_eq!(idx.nearest(ll(0.0, 0.0), 5, &f).len(), 1);
        assert_eq!(
            idx.nearby(ll(0.0, 0.0), Meters::parse("r", 50_000.0).unwrap(), &f, 10)
                .len(),
            1
        );
        assert_eq!(
            idx.bbox(&BBox::parse("b", &[-1.0, -1.0, 1.0, 1.0]).unwrap(), &f)
                .len(),
            1
        );
    }

    #[test]
    fn a_large_layer_finds_every_site_by_id_and_no_other() {
        let sites: Vec<Arc<Site>> = crate::synth::sites(5_000, 11)
            .into_iter()
            .map(Arc::new)
            .collect();
        let idx = SiteIndex::build(sites.clone());
        for s in &sites {
            assert!(
                idx.get(&s.id).is_some_and(|got| Arc::ptr_eq(got, s)),
                "{}",
                s.id
            );
        }
        for missing in ["0", "zzz-not-there", "syn-9999999"] {
            let id = SiteId::parse("id", missing).unwrap();
            assert!(idx.get(&id).is_none(), "{missing}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn nearby_matches_a_brute_force_scan(seed in 0u64..1000, lon in -180.0f64..180.0, lat in -90.0f64..90.0, radius in 0.0f64..400_000.0) {
            let sites = random_sites(seed, 300);
            let idx = SiteIndex::build(sites.clone());
            let p = ll(lon, lat);
            let filter = Filter::default();
            let want: Vec<_> = brute(&sites, p, &filter).into_iter().filter(|(_, d)| *d <= radius).collect();
            let got = ids(&idx.nearby(p, Meters::parse("r", radius).unwrap(), &filter, usize::MAX));
            prop_assert_eq!(got, want);
        }

        #[test]
        fn nearest_matches_a_brute_force_scan(seed in 0u64..1000, lon in -180.0f64..180.0, lat in -90.0f64..90.0, k in 1usize..12, filtered in any::<bool>()) {
            let sites = random_sites(seed, 300);
            let idx = SiteIndex::build(sites.clone());
            let p = ll(lon, lat);
            let filter = if filtered { Filter { kind: vec![SiteKind::MissileBase], ..Filter::default() } } else { Filter::default() };
            let want: Vec<_> = brute(&sites, p, &filter).into_iter().take(k).collect();
            prop_assert_eq!(ids(&idx.nearest(p, k, &filter)), want);
        }

        #[test]
        fn bbox_matches_a_brute_force_scan(seed in 0u64..1000, w in -180.0f64..180.0, s in -90.0f64..80.0, dw in 0.1f64..40.0, dh in 0.1f64..10.0) {
            let sites = random_sites(seed, 300);
            let idx = SiteIndex::build(sites.clone());
            let e = if w + dw > 180.0 { w + dw - 360.0 } else { w + dw };
            let b = BBox::parse("bbox", &[w, s, e, (s + dh).min(90.0)]).unwrap();
            let want: Vec<SiteId> = sites.iter().filter(|site| b.pieces().into_iter().any(|r| parts_meet_rect(site.footprint.parts(), r))).map(|s| s.id.clone()).collect();
            let got: Vec<SiteId> = idx.bbox(&b, &Filter::default()).iter().map(|s| s.id.clone()).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn a_snapshot_changed_by_deltas_answers_like_one_built_from_scratch(seed in 0u64..1000, edits in 1usize..60, lon in -180.0f64..180.0, lat in -90.0f64..90.0, k in 1usize..12) {
            use rand::{Rng, SeedableRng};
            let pool = random_sites(seed, 400);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
            // The first 300 are the catalogue; later ones replace or add sites,
            // and some changes take a site out.
            let mut live: std::collections::BTreeMap<SiteId, Arc<Site>> =
                pool[..300].iter().map(|s| (s.id.clone(), s.clone())).collect();
            let mut idx = SiteIndex::build(pool[..300].to_vec());
            // Small enough that some runs merge the layers, some more than once.
            idx.recent_limit = 24;
            for _ in 0..edits {
                let mut batch = Vec::new();
                for _ in 0..rng.random_range(1..4) {
                    let id = pool[rng.random_range(0..pool.len())].id.clone();
                    let change = if rng.random_bool(0.3) {
                        None
                    } else {
                        let donor = &pool[rng.random_range(0..pool.len())];
                        let mut moved = (**donor).clone();
                        moved.id = id.clone();
                        Some(Arc::new(moved))
                    };
                    match &change {
                        Some(s) => live.insert(id.clone(), s.clone()),
                        None => live.remove(&id),
                    };
                    batch.push((id, change));
                }
                idx = idx.with_changes(batch);
            }
            let fresh = SiteIndex::build(live.values().cloned());
            let all = Filter::default();
            prop_assert_eq!(idx.len(), fresh.len());
            let list = |i: &SiteIndex| i.all(&all).map(|s| s.id.clone()).collect::<Vec<_>>();
            prop_assert_eq!(list(&idx), list(&fresh));
            for s in live.values() {
                prop_assert!(idx.get(&s.id).is_some_and(|got| Arc::ptr_eq(got, s)));
            }
            let p = ll(lon, lat);
            prop_assert_eq!(ids(&idx.nearest(p, k, &all)), ids(&fresh.nearest(p, k, &all)));
            let r = Meters::parse("r", 800_000.0).unwrap();
            prop_assert_eq!(ids(&idx.nearby(p, r, &all, usize::MAX)), ids(&fresh.nearby(p, r, &all, usize::MAX)));
            let b = BBox::parse("bbox", &[lon.min(170.0), lat.min(80.0), lon.min(170.0) + 10.0, lat.min(80.0) + 10.0]).unwrap();
            let boxed = |i: &SiteIndex| i.bbox(&b, &all).iter().map(|s| s.id.clone()).collect::<Vec<_>>();
            prop_assert_eq!(boxed(&idx), boxed(&fresh));
            let after = pool[150].id.clone();
            let page = |i: &SiteIndex| i.from(Some(&after), &all).take(20).map(|s| s.id.clone()).collect::<Vec<_>>();
            prop_assert_eq!(page(&idx), page(&fresh));
            // Name search: the base's column, less what is hidden, plus the
            // recent layer, is the scan of what is live.
            let name = folded(&pool[rng.random_range(0..pool.len())].name);
            let cut = rng.random_range(0..=name.len().min(4));
            let needle = name.get(..cut).unwrap_or("").to_owned();
            let scan: Vec<SiteId> = live.values().filter(|s| name_contains(s, &needle)).map(|s| s.id.clone()).collect();
            let named: Vec<SiteId> = idx.named(&needle).iter().map(|s| s.id.clone()).collect();
            prop_assert_eq!(&named, &scan);
            // Bounded, it answers the same, or declines (always sound: the
            // caller then walks the catalogue).
            if let Some(few) = idx.named_at_most(&needle, 5) {
                prop_assert_eq!(few.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), scan);
            }
        }

        #[test]
        fn intersects_matches_a_brute_force_scan(seed in 0u64..1000, lon in -176.9f64..176.9, lat in -80.0f64..80.0, half in 0.01f64..3.0) {
            let sites = random_sites(seed, 300);
            let idx = SiteIndex::build(sites.clone());
            let query = site("q", lon, lat, half, "other");
            let q = query.footprint.shape();
            let want: Vec<SiteId> = sites.iter().filter(|s| s.footprint.shape().intersects(q)).map(|s| s.id.clone()).collect();
            let got: Vec<SiteId> = idx.intersects(q, &Filter::default()).iter().map(|s| s.id.clone()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
