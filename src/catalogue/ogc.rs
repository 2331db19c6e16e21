//! Reads for the OGC API collections of observations and candidates, which are
//! answered from the store rather than the in-memory index.

use super::Catalogue;
use crate::model::Timestamp;
use crate::store::{StoreError, StoredObservation};

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
        let store = self.store();
        let everywhere = [None];
        let pieces: Vec<Option<[f64; 4]>> = match rects {
            Some(r) => r.iter().copied().map(Some).collect(),
            None => everywhere.to_vec(),
        };
        let mut out: Vec<StoredObservation> = Vec::new();
        for rect in pieces {
            for o in store.observations_in(rect, since, until, findings, None, i64::MAX as usize)? {
                // Two rectangles (either side of the antimeridian) may both hold
                // an observation whose bounds span the whole longitude range.
                if !out.iter().any(|seen| seen.id == o.id) {
                    out.push(o);
                }
            }
        }
        Ok(out)
    }

    /// One observation by id, or `None`.
    pub fn observation(&self, id: &str) -> Result<Option<StoredObservation>, StoreError> {
        // The store reads observations by area and time only, so this scans;
        // single observations are rare reads next to the lists.
        Ok(self
            .observations_matching(None, None, None, &[])?
            .into_iter()
            .find(|o| o.id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn the_seed_observations_are_all_found_and_each_by_its_id() {
        let (cat, _) = Catalogue::from_store(Store::open_in_memory().unwrap()).unwrap();
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
}
