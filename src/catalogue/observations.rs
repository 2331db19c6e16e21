//! Observation batches through the catalogue: import, batches, candidates, and
//! the per-site observation statistics that site features carry.

use super::Catalogue;
use crate::import::{ImportOptions, ImportReport, RunError, run_import};
use crate::model::{SiteId, Timestamp};
use crate::store::{BatchRecord, Candidate, ObservationStats, StoreError};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ObservationImportError {
    /// The body is not a readable FeatureCollection; nothing was stored.
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Catalogue {
    /// Imports an observation batch in one transaction. `origin` says where it
    /// came from (a file name or a client); `progress(features, bytes)` is called
    /// as it streams. The batch is recorded whatever the outcome (except in a dry run).
    pub fn import_observations<R: Read>(
        &self,
        reader: R,
        origin: &str,
        opts: &ImportOptions,
        progress: impl FnMut(usize, u64),
    ) -> Result<ImportReport, ObservationImportError> {
        let batch_id = format!(
            "batch-{}",
            ulid::Ulid::generate().to_string().to_ascii_lowercase()
        );
        let received_at = Timestamp::now();
        let index = self.index();
        let mut store = self.store();
        let tx = store.begin_batch(&batch_id, received_at)?;
        // This batch's own row is marked stored only at commit, so it never
        // matches itself.
        let outcome = run_import(
            reader,
            &tx,
            &index,
            opts,
            origin,
            |h| tx.stored_batch_with_hash(h),
            progress,
        );
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tx.rollback()?;
                return match e {
                    RunError::Store(s) => Err(s.into()),
                    other => Err(ObservationImportError::Unreadable(other.to_string())),
                };
            }
        };
        let report_json =
            serde_json::to_value(&outcome.report).map_err(|e| StoreError::Corrupt {
                id: batch_id.clone(),
                reason: e.to_string(),
            })?;
        if outcome.commit {
            tx.commit(
                origin,
                &outcome.report.content_hash,
                opts.mode.as_str(),
                &report_json,
            )?;
            if !outcome.site_stats.is_empty() {
                let mut stats: HashMap<SiteId, ObservationStats> = (**self.stats.load()).clone();
                for (site, s) in outcome.site_stats {
                    let e = stats.entry(site).or_insert(ObservationStats {
                        last_observed_at: s.last_observed_at,
                        count: 0,
                    });
                    e.count += s.count;
                    e.last_observed_at = e.last_observed_at.max(s.last_observed_at);
                }
                self.stats.store(Arc::new(stats));
            }
        } else {
            tx.rollback()?;
            if !opts.dry_run {
                store.record_batch(&BatchRecord {
                    id: batch_id,
                    received_at,
                    origin: origin.to_owned(),
                    content_hash: outcome.report.content_hash.clone(),
                    mode: opts.mode.as_str().to_owned(),
                    stored: false,
                    report: report_json,
                })?;
            }
        }
        Ok(outcome.report)
    }

    /// Per site: when it was last observed, and how many observations it has.
    pub fn observation_stats(&self) -> Arc<HashMap<SiteId, ObservationStats>> {
        self.stats.load_full()
    }

    /// Recorded batches, newest first.
    pub fn batches(
        &self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<BatchRecord>, StoreError> {
        self.store().batches(limit, before)
    }

    /// Candidate undeclared sites, newest first; only those in `state` if given.
    pub fn candidates(&self, state: Option<&str>) -> Result<Vec<Candidate>, StoreError> {
        self.store().candidates(state)
    }

    pub fn candidate(&self, id: &str) -> Result<Option<Candidate>, StoreError> {
        self.store().candidate(id)
    }

    /// Dismisses an open candidate; false if there is none open with that id.
    pub fn dismiss_candidate(&self, id: &str, note: Option<&str>) -> Result<bool, StoreError> {
        self.store().dismiss_candidate(id, note)
    }
}
