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
