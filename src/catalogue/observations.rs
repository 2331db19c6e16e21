//! Observation batches through the catalogue: import, batches, candidates, and
//! the per-site observation statistics that site features carry.

use super::Catalogue;
use crate::import::{ImportOptions, ImportReport, RunError, run_import};
use crate::model::SiteStats;
use crate::model::{Candidate, CandidateState, ObservationStats, SiteId, Timestamp};
use crate::store::{BatchRecord, StoreError};
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
        let batch_id = crate::model::new_id("batch");
        let received_at = Timestamp::now();
        let mut store = self.store();
        // Matched against every site in the database, those other nodes
        // wrote a moment ago too.
        self.catch_up_with(&**store)?;
        let index = self.index();
        let tx = store.begin_batch(&batch_id, received_at)?;
        // This batch's own row is marked stored only at commit, so it never
        // matches itself.
        let outcome = run_import(
            reader,
            &*tx,
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
                let mut stats: SiteStats = (**self.stats.load()).clone();
                let observed: Vec<SiteId> = outcome.site_stats.keys().cloned().collect();
                for (site, s) in outcome.site_stats.iter() {
                    stats.record(site.clone(), s.last_observed_at, s.count);
                }
                self.set_stats(&observed, stats);
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
    pub fn observation_stats(&self) -> Arc<SiteStats> {
        self.stats.load_full()
    }

    /// Recorded batches, newest first.
    pub fn batches(
        &self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<BatchRecord>, StoreError> {
        self.reader()?.batches(limit, before)
    }

    /// Candidate undeclared sites, newest first; only those in `state` if given.
    pub fn candidates(&self, state: Option<CandidateState>) -> Result<Vec<Candidate>, StoreError> {
        self.reader()?.candidates(state)
    }

    pub fn candidate(&self, id: &str) -> Result<Option<Candidate>, StoreError> {
        self.reader()?.candidate(id)
    }

    /// Dismisses an open candidate; false if there is none open with that id.
    pub fn dismiss_candidate(&self, id: &str, note: Option<&str>) -> Result<bool, StoreError> {
        self.store().dismiss_candidate(id, note)
    }
}

/// What an analyst may say when promoting a candidate; everything is optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    pub id: Option<String>,
    pub name: Option<String>,
    pub alt_names: Option<Vec<String>>,
    pub kind: Option<String>,
    pub country: Option<String>,
    pub status: Option<String>,
    pub notes: Option<String>,
    /// A GeoJSON Polygon or MultiPolygon; without one, a circle around the
    /// cluster that holds all its observations.
    pub footprint: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("no open candidate with id {0:?}")]
    NotOpen(String),
    #[error(transparent)]
    Invalid(#[from] crate::model::FieldError),
    #[error("a site with id {0} already exists")]
    Exists(SiteId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Catalogue {
    /// Makes an open candidate a catalogue site: declared `undeclared`, with the
    /// candidate's observations moved onto it, recorded as a revision.
    pub fn promote_candidate(
        &self,
        id: &str,
        p: Promotion,
        by: &crate::store::Provenance,
    ) -> Result<Arc<crate::model::Site>, PromoteError> {
        use crate::geodesy::{circle, geodesic_distance};
        use crate::model::{IdPolicy, Site};
        use serde_json::json;
        let mut store = self.store();
        let c = store
            .candidate(id)?
            .filter(|c| c.state == CandidateState::Open)
            .ok_or_else(|| PromoteError::NotOpen(id.to_owned()))?;
        let members = store.candidate_members(id)?;
        let centre = c.at.to_array();
        let footprint = match p.footprint {
            Some(f) => f,
            None => {
                // Room around the farthest observation, and never a speck.
                let reach = members
                    .iter()
                    .map(|(_, a)| geodesic_distance(centre, a.to_array()))
                    .fold(0.0, f64::max);
                json!({"type": "Polygon", "coordinates": [circle(centre, (reach + 150.0).max(300.0), 16)]})
            }
        };
        let first = c
            .first_observed_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let last = c
            .last_observed_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let notes = p.notes.unwrap_or_else(|| {
            format!("Promoted from candidate {id}: {} unmatched observations between {first} and {last}.", members.len())
        });
        let feature = json!({
            "type": "Feature",
            "id": p.id,
            "geometry": footprint,
            "properties": {
                "name": p.name.unwrap_or_else(|| format!("Unidentified activity near {:.4}, {:.4}", c.at.lat(), c.at.lon())),
                "alt_names": p.alt_names.unwrap_or_default(),
                "country": p.country.unwrap_or_else(|| "XXX".into()),
                "kind": p.kind.unwrap_or_else(|| "other".into()),
                "declaration": "undeclared",
                "status": p.status.unwrap_or_else(|| "unknown".into()),
                "confidence": "low",
                "sources": [],
                "notes": notes,
            }
        });
        let site = Site::from_feature(&feature, IdPolicy::Generate)?;
        let links: Vec<(String, f64)> = members
            .iter()
            .map(|(obs, at)| {
                (
                    obs.clone(),
                    site.footprint.shape().distance_m(at.to_array()),
                )
            })
            .collect();
        let by = crate::store::Provenance {
            actor: by.actor.clone(),
            reason: Some(
                by.reason
                    .clone()
                    .unwrap_or_else(|| format!("promoted from candidate {id}")),
            ),
        };
        if store.promote_candidate(id, &site, &links, &by)?.is_none() {
            return Err(
                match store
                    .candidate(id)?
                    .filter(|c| c.state == CandidateState::Open)
                {
                    Some(_) => PromoteError::Exists(site.id.clone()),
                    None => PromoteError::NotOpen(id.to_owned()),
                },
            );
        }
        self.publish(vec![(site.id.clone(), Some(Arc::new(site.clone())))]);
        let mut stats: SiteStats = (**self.stats.load()).clone();
        if let (Some(last), false) = (c.last_observed_at, members.is_empty()) {
            stats.insert(
                site.id.clone(),
                ObservationStats {
                    last_observed_at: last,
                    count: members.len() as u64,
                },
            );
            self.set_stats(std::slice::from_ref(&site.id), stats);
        }
        Ok(self
            .index()
            .get(&site.id)
            .cloned()
            .unwrap_or_else(|| Arc::new(site)))
    }
}
