//! Reads for the OGC API collections of observations and candidates, which are
//! answered from the store rather than the in-memory index.

use super::Catalogue;
use crate::model::StoredObservation;
use crate::model::Timestamp;
use crate::store::{Before, StoreError};

impl Catalogue {
    /// Observations whose bounds meet any of the lon/lat rectangles (`west <=
    /// east`; `None` means everywhere), observed within `[since, until]`, with
    /// one of `findings` if any are given; newest first, each once.
    pub fn observations_matching(
        &self,
        rects: Option<&[[f64; 4]]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let store = self.reader()?;
        let everywhere = [None];
        let pieces: Vec<Option<[f64; 4]>> = match rects {
            Some(r) => r.iter().copied().map(Some).collect(),
            None => everywhere.to_vec(),
        };
        let mut out: Vec<StoredObservation> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for rect in pieces {
            for o in store.observations_in(rect, since, until, findings, None, i64::MAX as usize)? {
                // Two rectangles (either side of the antimeridian) may both hold
                // an observation whose bounds span the whole longitude range.
                if seen.insert(o.id.clone()) {
                    out.push(o);
                }
            }
        }
        Ok(out)
    }

    /// Observations whose bounds meet any of the rectangles (everywhere if
    /// `None`), observed within `[since, until]`, with one of `findings` if any
    /// are given, newest observed first (ties by id, descending), strictly
    /// after `before` in that order, at most `limit`: one page, read through
    /// the time index or the area's R*Tree.
    pub fn observations_newest(
        &self,
        rects: Option<&[[f64; 4]]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let store = self.reader()?;
        let mut out: Vec<StoredObservation> = Vec::new();
        for rect in rects.map_or(vec![None], |r| r.iter().copied().map(Some).collect()) {
            out.extend(store.observations_in(rect, since, until, findings, before, limit)?);
        }
        out.sort_by(|a, b| (b.observed_at, &b.id).cmp(&(a.observed_at, &a.id)));
        // Either side of the antimeridian may hold one that spans both.
        out.dedup_by(|a, b| a.id == b.id);
        out.truncate(limit);
        Ok(out)
    }

    /// How many observations [`Catalogue::observations_newest`] would page
    /// through, or `None` if more than `cap`.
    pub fn count_observations(
        &self,
        rects: Option<&[[f64; 4]]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
        cap: usize,
    ) -> Result<Option<usize>, StoreError> {
        let store = self.reader()?;
        let mut total = 0;
        for rect in rects.map_or(vec![None], |r| r.iter().copied().map(Some).collect()) {
            // Rectangles either side of the antimeridian may both hold an
            // observation that spans every longitude, so a split box is not
            // counted.
            if rects.is_some_and(|r| r.len() > 1) {
                return Ok(None);
            }
            total += store.count_observations(rect, since, until, findings, cap + 1)?;
        }
        Ok((total <= cap).then_some(total))
    }

    /// One observation by id, or `None`.
    pub fn observation(&self, id: &str) -> Result<Option<StoredObservation>, StoreError> {
        self.reader()?.observation(id)
    }

    /// The first observation time and the first revision time, if any: the
    /// start of the record, read from the time indexes.
    pub fn first_event_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError> {
        self.reader()?.first_event_times()
    }

    /// The box around every candidate and the first and last creation times.
    pub fn candidate_extent(&self) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError> {
        self.reader()?.candidate_extent()
    }

    /// The box around every observation and the first and last observation times.
    pub fn observation_extent(
        &self,
    ) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError> {
        self.reader()?.observation_extent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn the_seed_observations_are_all_found_and_each_by_its_id() {
        let (cat, _) = Catalogue::from_store(SqliteStore::open_in_memory().unwrap()).unwrap();
        let all = cat.observations_matching(None, None, None, &[]).unwrap();
        assert!(!all.is_empty());
        let halves = cat
            .observations_matching(
                Some(&[[0.0, -90.0, 180.0, 90.0], [-180.0, -90.0, 0.0, 90.0]]),
                None,
                None,
                &[],
            )
            .unwrap();
        assert_eq!(halves.len(), all.len());
        let one = cat.observation(&all[0].id).unwrap().unwrap();
        assert_eq!(one.id, all[0].id);
        assert!(cat.observation("obs-nothing").unwrap().is_none());
    }

    #[test]
    fn the_observation_extent_holds_every_observation_and_its_times() {
        let (cat, _) = Catalogue::from_store(SqliteStore::open_in_memory().unwrap()).unwrap();
        let all = cat.observations_matching(None, None, None, &[]).unwrap();
        let ([w, s, e, n], first, last) = cat.observation_extent().unwrap().unwrap();
        for o in &all {
            let [lon, lat] = o.place.anchor().to_array();
            assert!(
                w <= lon && lon <= e && s <= lat && lat <= n,
                "{lon},{lat} outside"
            );
            assert!(first <= o.observed_at && o.observed_at <= last);
        }
        assert!(
            all.iter().any(|o| o.observed_at == first) && all.iter().any(|o| o.observed_at == last)
        );
    }
}
