//! The records of the three collections as filters, `sortby` and `datetime`
//! see them; each reads its properties through its collection's table.

use super::cql::{Geom, Record, Scalar};
use super::properties::{CollectionId, Reader};
use crate::model::{Candidate, ObservationStats, Place, Site, StoredObservation};
use std::sync::Arc;

/// A site with its observation figures, and whether it is retired.
pub struct SiteRecord {
    pub site: Arc<Site>,
    pub retired: bool,
    pub stats: Option<ObservationStats>,
}

impl Record for SiteRecord {
    fn property(&self, name: &str) -> Scalar {
        match CollectionId::Sites.property(name).map(|p| p.read) {
            Some(Reader::Site(read)) => read(self),
            _ => Scalar::Null,
        }
    }

    fn geometry(&self) -> Option<Geom<'_>> {
        Some(Geom::Area(&self.site.footprint))
    }
}

/// An observation.
pub struct ObservationRecord {
    pub o: StoredObservation,
}

impl ObservationRecord {
    pub fn new(o: StoredObservation) -> Self {
        Self { o }
    }
}

impl Record for ObservationRecord {
    fn property(&self, name: &str) -> Scalar {
        match CollectionId::Observations.property(name).map(|p| p.read) {
            Some(Reader::Observation(read)) => read(self),
            _ => Scalar::Null,
        }
    }

    fn geometry(&self) -> Option<Geom<'_>> {
        Some(Geom::from(&self.o.place))
    }
}

/// A candidate, at the centre of its cluster.
pub struct CandidateRecord {
    pub c: Candidate,
    pub place: Place,
}

impl CandidateRecord {
    pub fn new(c: Candidate) -> Self {
        Self {
            place: Place::Point(c.at),
            c,
        }
    }
}

impl Record for CandidateRecord {
    fn property(&self, name: &str) -> Scalar {
        match CollectionId::Candidates.property(name).map(|p| p.read) {
            Some(Reader::Candidate(read)) => read(self),
            _ => Scalar::Null,
        }
    }

    fn geometry(&self) -> Option<Geom<'_>> {
        Some((&self.place).into())
    }
}
