//! What the catalogue has recorded about observations and candidates, as
//! typed values: an observation as stored (with its batch and its links to
//! sites), a candidate undeclared site, and a site's observation statistics.
//! Storage reads its rows into these; the query engine and renderers read them.

use super::{Confidence, FieldError, Finding, LonLat, Place, SiteId, Timestamp};
use serde::Serialize;

string_enum!(
    /// How an observation came to be linked to a site.
    LinkHow {
        Named => "named",
        Intersects => "intersects",
        Nearest => "nearest",
        Promoted => "promoted",
    }
);

string_enum!(
    /// Where a candidate stands: waiting for a decision, made a site, or dismissed.
    CandidateState {
        Open => "open",
        Promoted => "promoted",
        Dismissed => "dismissed",
    }
);

/// A link from an observation to a site, with the distance between them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteLink {
    pub site_id: SiteId,
    pub how: LinkHow,
    pub distance_m: f64,
}

/// An observation as stored: what was reported, when it was recorded and in
/// which batch, and the sites it was linked to.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObservation {
    pub id: String,
    pub batch_id: String,
    pub recorded_at: Timestamp,
    pub observed_at: Timestamp,
    pub sensor: String,
    pub finding: Finding,
    pub confidence: Confidence,
    pub place: Place,
    /// The site the observation named, if it named one.
    pub site_id: Option<SiteId>,
    pub description: Option<String>,
    pub image_ref: Option<String>,
    pub source: Option<String>,
    pub external_id: Option<String>,
    pub candidate_id: Option<String>,
    pub sites: Vec<SiteLink>,
}

/// A candidate undeclared site: a cluster of unmatched observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub created_at: Timestamp,
    pub batch_id: String,
    /// The centre of its observations.
    pub at: LonLat,
    pub state: CandidateState,
    pub decided_at: Option<Timestamp>,
    /// The site it became, once promoted.
    pub site_id: Option<SiteId>,
    pub note: Option<String>,
    pub observation_ids: Vec<String>,
    pub first_observed_at: Option<Timestamp>,
    pub last_observed_at: Option<Timestamp>,
}

/// A cube of a fixed grid over the unit sphere's 3-D space, about 125 m on a
/// side, that the members of a candidate are grouped by. Each candidate keeps
/// one member per cube as its representative, so that an import can learn
/// which candidates lie near a point from a few rows per area, however many
/// observations the candidates have gathered, and read a cube's other members
/// only where the representatives leave the answer open. Fixed, not derived
/// from the clustering radius, because the grouping is stored with the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterCell(i64);

impl ClusterCell {
    /// The cube's side as a chord of the unit sphere (125 m on a sphere of
    /// the Earth's mean radius).
    pub const SIDE: f64 = 125.0 / 6_371_008.8;
    /// Bits per axis in the packed key: enough for the unit sphere's
    /// `2 / SIDE` cubes across, with room to spare.
    const BITS: u32 = 21;

    /// The cube that holds `at`.
    pub fn of(at: LonLat) -> Self {
        Self::of_unit(crate::geodesy::to_unit(at.to_array()))
    }

    /// The cube that holds a unit vector.
    pub fn of_unit(v: [f64; 3]) -> Self {
        let offset = 1i64 << (Self::BITS - 1);
        let mask = (1i64 << Self::BITS) - 1;
        let axis = |x: f64| ((x / Self::SIDE).floor() as i64 + offset) & mask;
        Self((axis(v[0]) << (2 * Self::BITS)) | (axis(v[1]) << Self::BITS) | axis(v[2]))
    }

    /// The longest geodesic, in metres, between two points of one cube.
    pub fn diameter_m() -> f64 {
        use crate::geodesy::{angle_of_chord, max_distance_for_angle};
        max_distance_for_angle(angle_of_chord(Self::SIDE * 3f64.sqrt()))
    }

    /// The key as stored.
    pub fn key(self) -> i64 {
        self.0
    }

    /// A key read back from storage.
    pub fn from_key(key: i64) -> Self {
        Self(key)
    }
}

/// Per site with observations, its [`ObservationStats`]: a plain hash map of
/// every site as loaded (or last merged), shared between versions, and a
/// persistent map of the sites changed since. A batch then makes the next
/// version by changing the sites it observed, not by copying a million
/// entries, and a million entries cost what a hash table does: a persistent
/// map of them took a sixth of the catalogue's memory and a third of the
/// work of opening it.
#[derive(Debug, Clone, Default)]
pub struct SiteStats {
    base: std::sync::Arc<StatsMap>,
    changed: imbl::HashMap<SiteId, ObservationStats>,
}

type StatsMap = std::collections::HashMap<SiteId, ObservationStats, foldhash::fast::RandomState>;

impl SiteStats {
    /// Changed sites kept apart from the shared map at most, before they
    /// are merged into a new one: a merge copies the map, so it comes once
    /// per this many changes, or per a sixteenth of the sites if more.
    const CHANGED_LIMIT: usize = 4_096;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn get<Q>(&self, id: &Q) -> Option<&ObservationStats>
    where
        SiteId: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.changed.get(id).or_else(|| self.base.get(id))
    }

    pub fn contains_key<Q>(&self, id: &Q) -> bool
    where
        SiteId: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.get(id).is_some()
    }

    /// Sets a site's statistics.
    pub fn insert(&mut self, id: SiteId, stats: ObservationStats) {
        self.changed.insert(id, stats);
        if self.changed.len() > Self::CHANGED_LIMIT.max(self.base.len() / 16) {
            let mut merged = (*self.base).clone();
            merged.extend(std::mem::take(&mut self.changed));
            self.base = std::sync::Arc::new(merged);
        }
    }

    /// Adds `count` observations, the latest at `last`, to a site's statistics.
    pub fn record(&mut self, id: SiteId, last: Timestamp, count: u64) {
        let next = ObservationStats::of(self.get(&id), last, count);
        self.insert(id, next);
    }

    pub fn len(&self) -> usize {
        self.base.len()
            + self
                .changed
                .keys()
                .filter(|k| !self.base.contains_key(*k))
                .count()
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.changed.is_empty()
    }

    /// Every site's statistics, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&SiteId, &ObservationStats)> {
        self.changed.iter().chain(
            self.base
                .iter()
                .filter(|(id, _)| !self.changed.contains_key(*id)),
        )
    }

    pub fn keys(&self) -> impl Iterator<Item = &SiteId> {
        self.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &ObservationStats> {
        self.iter().map(|(_, s)| s)
    }
}

impl<Q> std::ops::Index<&Q> for SiteStats
where
    SiteId: std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    type Output = ObservationStats;

    /// Panics if the site has no statistics, as a map's index does.
    fn index(&self, id: &Q) -> &ObservationStats {
        self.get(id).expect("a site with observation statistics")
    }
}

/// Equal when every site has the same statistics, however each is held.
impl PartialEq for SiteStats {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(id, s)| other.get(id) == Some(s))
    }
}

impl FromIterator<(SiteId, ObservationStats)> for SiteStats {
    /// Builds the shared map at once, as opening a catalogue does.
    fn from_iter<I: IntoIterator<Item = (SiteId, ObservationStats)>>(entries: I) -> Self {
        Self {
            base: std::sync::Arc::new(entries.into_iter().collect()),
            changed: imbl::HashMap::new(),
        }
    }
}

/// When a site was last observed and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ObservationStats {
    pub last_observed_at: Timestamp,
    pub count: u64,
}

impl ObservationStats {
    /// `before` (none for a site not observed yet) with `count` more
    /// observations, the latest at `last`.
    pub fn of(before: Option<&Self>, last: Timestamp, count: u64) -> Self {
        match before {
            Some(s) => Self {
                last_observed_at: s.last_observed_at.max(last),
                count: s.count + count,
            },
            None => Self {
                last_observed_at: last,
                count,
            },
        }
    }
}

/// Per site a batch observed, what it adds to the site's statistics: built
/// once and read once, so a plain map, not the shared [`SiteStats`].
pub type BatchStats = std::collections::HashMap<SiteId, ObservationStats>;

impl CandidateState {
    /// Parses a list of states as a request gives them, naming the field.
    pub fn parse_all<'a>(
        field: &str,
        raw: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Self>, FieldError> {
        raw.into_iter().map(|s| Self::parse(field, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn id(i: usize) -> SiteId {
        SiteId::parse("id", &format!("s-{i}")).unwrap()
    }

    fn at(day: i64) -> Timestamp {
        Timestamp::from_epoch_micros(1_577_836_800_000_000 + day * 86_400_000_000)
    }

    #[test]
    fn site_stats_read_as_a_plain_map_does_through_merges_and_keep_each_version() {
        let mut stats: SiteStats = (0..20_000)
            .map(|i| {
                let s = ObservationStats {
                    last_observed_at: at(i as i64 % 50),
                    count: 1,
                };
                (id(i), s)
            })
            .collect();
        let mut model: HashMap<SiteId, ObservationStats> =
            stats.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let before = stats.clone();
        // Enough changes, to old sites and new, for several merges.
        for step in 0..30_000usize {
            let i = (step * 7_919) % 26_000;
            stats.record(id(i), at((step % 90) as i64), 2);
            let e = model.entry(id(i)).or_insert(ObservationStats {
                last_observed_at: at((step % 90) as i64),
                count: 0,
            });
            e.count += 2;
            e.last_observed_at = e.last_observed_at.max(at((step % 90) as i64));
        }
        assert_eq!(stats.len(), model.len());
        assert_eq!(stats.iter().count(), model.len());
        for (k, v) in &model {
            assert_eq!(stats.get(k), Some(v), "{k}");
        }
        assert!(stats.get("s-99999").is_none());
        // The version taken before the changes still reads as it was.
        assert_eq!(before.len(), 20_000);
        assert_eq!(before[&id(7_919)].count, 1);
        assert_ne!(before, stats);
    }
}
