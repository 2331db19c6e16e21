//! Candidate undeclared sites in PostgreSQL: reading them, and deciding them.
//! A decision is one transaction with its change-log entry, under the lock
//! every write takes; a promotion also creates the site and links the
//! candidate's observations to it.

use super::observations::{LogWrite, append_log, extent_row};
use super::sites::WRITE_LOCK;
use super::store::{PgStore, from_pg, to_pg};
use crate::model::{Candidate, CandidateState, LonLat, Site, SiteId, Timestamp, diff_sites};
use crate::store::{
    CREATION_DIFF, CandidateReads, CandidateWrites, Change, LogKind, Provenance, Revision,
    StoreError,
};
use postgres::Row;
use std::collections::HashMap;

/// The columns [`candidate_row`] reads.
const CANDIDATE_COLUMNS: &str = "id, created_at, batch_id, ST_X(position::geometry),
    ST_Y(position::geometry), state, decided_at, site_id, note";

fn candidate_row(r: &Row) -> Result<Candidate, StoreError> {
    let id: String = r.get(0);
    let bad = |e: crate::model::FieldError| StoreError::Corrupt {
        id: id.clone(),
        reason: e.to_string(),
    };
    Ok(Candidate {
        created_at: from_pg(r.get(1)),
        batch_id: r.get(2),
        at: LonLat::parse("position", r.get(3), r.get(4)).map_err(bad)?,
        state: CandidateState::parse("state", r.get(5)).map_err(bad)?,
        decided_at: r
            .get::<_, Option<chrono::DateTime<chrono::Utc>>>(6)
            .map(from_pg),
        site_id: r
            .get::<_, Option<&str>>(7)
            .map(|s| SiteId::parse("site_id", s))
            .transpose()
            .map_err(bad)?,
        note: r.get(8),
        observation_ids: Vec::new(),
        first_observed_at: None,
        last_observed_at: None,
        id,
    })
}

impl PgStore {
    /// Candidates with their members: ids in time order, and the first and
    /// last observation times.
    fn with_members(&self, mut found: Vec<Candidate>) -> Result<Vec<Candidate>, StoreError> {
        let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
        let rows = self.client().query(
            r#"SELECT candidate_id, id, observed_at FROM observations WHERE candidate_id = ANY($1)
               ORDER BY observed_at, id COLLATE "C""#,
            &[&ids],
        )?;
        let mut members: HashMap<String, Vec<(String, Timestamp)>> = HashMap::new();
        for r in &rows {
            members
                .entry(r.get(0))
                .or_default()
                .push((r.get(1), from_pg(r.get(2))));
        }
        for c in &mut found {
            let list = members.remove(&c.id).unwrap_or_default();
            c.first_observed_at = list.first().map(|m| m.1);
            c.last_observed_at = list.last().map(|m| m.1);
            c.observation_ids = list.into_iter().map(|m| m.0).collect();
        }
        Ok(found)
    }
}

impl CandidateReads for PgStore {
    /// Candidates, newest first; only those in `state` if given.
    fn candidates(&self, state: Option<CandidateState>) -> Result<Vec<Candidate>, StoreError> {
        let rows = self.client().query(
            &format!(
                r#"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE $1::text IS NULL OR state = $1
                   ORDER BY created_at DESC, id COLLATE "C" DESC"#
            ),
            &[&state.map(CandidateState::as_str)],
        )?;
        let found = rows.iter().map(candidate_row).collect::<Result<_, _>>()?;
        self.with_members(found)
    }

    fn candidate(&self, id: &str) -> Result<Option<Candidate>, StoreError> {
        let row = self.client().query_opt(
            &format!("SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE id = $1"),
            &[&id],
        )?;
        let Some(c) = row.as_ref().map(candidate_row).transpose()? else {
            return Ok(None);
        };
        Ok(self.with_members(vec![c])?.pop())
    }

    fn candidate_members(&self, id: &str) -> Result<Vec<(String, LonLat)>, StoreError> {
        let rows = self.client().query(
            r#"SELECT id, ST_X(anchor::geometry), ST_Y(anchor::geometry) FROM observations
               WHERE candidate_id = $1 ORDER BY id COLLATE "C""#,
            &[&id],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), LonLat::from_computed(r.get(1), r.get(2))))
            .collect())
    }

    fn candidate_extent(&self) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError> {
        let r = self.client().query_one(
            "SELECT min(ST_X(p)), min(ST_Y(p)), max(ST_X(p)), max(ST_Y(p)),
                    min(created_at), max(created_at)
             FROM (SELECT position::geometry AS p, created_at FROM candidates) c",
            &[],
        )?;
        Ok(extent_row(&r))
    }
}

impl CandidateWrites for PgStore {
    /// Marks an open candidate dismissed; `false` if it is not open.
    fn dismiss_candidate(&mut self, id: &str, note: Option<&str>) -> Result<bool, StoreError> {
        let mut tx = self.client_mut().transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        let now = Timestamp::now();
        let place = tx.query_opt(
            "UPDATE candidates SET state = 'dismissed', decided_at = $2, note = $3
             WHERE id = $1 AND state = 'open'
             RETURNING ST_X(position::geometry), ST_Y(position::geometry)",
            &[&id, &to_pg(now), &note],
        )?;
        let Some(place) = place else {
            return Ok(false);
        };
        let (lon, lat): (f64, f64) = (place.get(0), place.get(1));
        append_log(
            &mut tx,
            &LogWrite {
                at: now,
                kind: LogKind::CandidateDismissed,
                site_id: None,
                revision: None,
                batch_id: None,
                candidate_id: Some(id),
                bounds: Some([lon, lat, lon, lat]),
            },
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Creates the site (its first revision, logged like any other), links
    /// the candidate's observations to it and marks the candidate promoted,
    /// in one transaction. `None`, writing nothing, if the candidate is not
    /// open or a site, live or retired, has the id.
    fn promote_candidate(
        &mut self,
        id: &str,
        site: &Site,
        links: &[(String, f64)],
        by: &Provenance,
    ) -> Result<Option<Revision>, StoreError> {
        let mut tx = self.client_mut().transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        let open = tx
            .query_opt(
                "SELECT state = 'open' FROM candidates WHERE id = $1 FOR UPDATE",
                &[&id],
            )?
            .is_some_and(|r| r.get(0));
        let taken = tx
            .query_opt("SELECT 1 FROM sites WHERE id = $1", &[&site.id.as_str()])?
            .is_some();
        if !open || taken {
            return Ok(None);
        }
        // Now, or the latest time already recorded if the clock stepped back,
        // so that revision order and time order agree.
        let now: chrono::DateTime<chrono::Utc> = tx
            .query_one(
                "SELECT greatest(max(recorded_at), $1) FROM site_revisions",
                &[&to_pg(Timestamp::now())],
            )?
            .get(0);
        let at = from_pg(now);
        let feature = site.feature_text();
        tx.execute(
            "INSERT INTO sites (id, revision, retired, feature, footprint, created_at, updated_at)
             SELECT $1, 1, false, f, ST_GeomFromGeoJSON(f -> 'geometry')::geography, $3, $3
             FROM (SELECT $2::text::jsonb AS f) s",
            &[&site.id.as_str(), &feature, &now],
        )?;
        tx.execute(
            "INSERT INTO site_revisions (site_id, revision, recorded_at, actor, reason, change,
                 feature, diff, footprint)
             SELECT $1, 1, $3, $4, $5, 'created', f, $6::text::jsonb,
                    ST_GeomFromGeoJSON(f -> 'geometry')::geography
             FROM (SELECT $2::text::jsonb AS f) s",
            &[
                &site.id.as_str(),
                &feature,
                &now,
                &by.actor,
                &by.reason,
                &CREATION_DIFF,
            ],
        )?;
        append_log(
            &mut tx,
            &LogWrite {
                at,
                kind: LogKind::SiteCreated,
                site_id: Some(site.id.as_str()),
                revision: Some(1),
                batch_id: None,
                candidate_id: None,
                bounds: Some(site.footprint.lonlat_bounds()),
            },
        )?;
        let link = tx.prepare(
            "INSERT INTO observation_sites (observation_id, site_id, how, distance_m, observed_at)
             SELECT $1, $2, 'promoted', $3, observed_at FROM observations WHERE id = $1",
        )?;
        let mark = tx.prepare("UPDATE observations SET matched = true WHERE id = $1")?;
        for (obs, distance) in links {
            tx.execute(&link, &[obs, &site.id.as_str(), distance])?;
            tx.execute(&mark, &[obs])?;
        }
        tx.execute(
            "INSERT INTO site_observation_stats (site_id, last_observed_at, count)
             SELECT site_id, max(observed_at), count(*) FROM observation_sites WHERE site_id = $1
             GROUP BY site_id
             ON CONFLICT (site_id) DO UPDATE SET
               last_observed_at = excluded.last_observed_at, count = excluded.count",
            &[&site.id.as_str()],
        )?;
        tx.execute(
            "UPDATE candidates SET state = 'promoted', decided_at = $2, site_id = $3, note = $4
             WHERE id = $1",
            &[&id, &now, &site.id.as_str(), &by.reason],
        )?;
        tx.commit()?;
        Ok(Some(Revision {
            site_id: site.id.clone(),
            revision: 1,
            recorded_at: at,
            actor: by.actor.clone(),
            reason: by.reason.clone(),
            change: Change::Created,
            diff: diff_sites(None, site),
        }))
    }
}
