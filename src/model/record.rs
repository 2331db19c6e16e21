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

/// Per site with observations, its [`ObservationStats`]. A persistent map, so
/// that a batch makes the next version by changing the sites it observed, not
/// by copying a million entries.
pub type SiteStats = imbl::HashMap<SiteId, ObservationStats>;

/// When a site was last observed and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ObservationStats {
    pub last_observed_at: Timestamp,
    pub count: u64,
}

impl CandidateState {
    /// Parses a list of states as a request gives them, naming the field.
    pub fn parse_all<'a>(
        field: &str,
        raw: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Self>, FieldError> {
        raw.into_iter().map(|s| Self::parse(field, s)).collect()
    }
}
