//! Observation batches, observations, their links to sites, and candidate
//! undeclared sites. A batch is written inside one transaction, [`BatchTx`],
//! which commits all of it or none.

use super::SqliteStore;
use super::schema::{TIME_UNIT_S, tree_time};
use crate::model::SiteStats;
use crate::model::{
    Candidate, CandidateState, ClusterCell, Confidence, FieldError, Finding, LinkHow, LonLat,
    Observation, ObservationStats, Place, SiteId, SiteLink, StoredObservation, Timestamp,
};
use crate::store::{
    BatchRecord, Before, CandidateReads, CandidateWrites, ImportUnit, ObservationReads,
    ObservationWrites, SitePage, StoreError, Unmatched,
};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::Value;
use std::collections::HashMap;

fn ts(field: &str, raw: String) -> rusqlite::Result<Timestamp> {
    Timestamp::parse(field, &raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A column read into a domain value: one that does not parse fails the row
/// with the parser's error, which names the field.
fn checked<T>(parsed: Result<T, FieldError>) -> rusqlite::Result<T> {
    parsed.map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A stored geometry column as the place it records.
fn place(raw: &str) -> rusqlite::Result<Place> {
    checked(
        serde_json::from_str::<Value>(raw)
            .map_err(|e| FieldError::new("geometry", e.to_string()))
            .and_then(|v| Place::parse("geometry", &v)),
    )
}

fn site_id(field: &str, raw: Option<String>) -> rusqlite::Result<Option<SiteId>> {
    raw.map(|s| checked(SiteId::parse(field, &s))).transpose()
}

/// An unmatched observation from the columns `id, lon, lat, observed_at,
/// candidate_id, state of the candidate, cell`.
fn unmatched_row(r: &rusqlite::Row) -> rusqlite::Result<Unmatched> {
    Ok(Unmatched {
        id: r.get(0)?,
        anchor: LonLat::from_computed(r.get(1)?, r.get(2)?),
        observed_at: ts("observed_at", r.get(3)?)?,
        candidate_id: r.get(4)?,
        candidate_open: r.get::<_, Option<String>>(5)?.as_deref() == Some("open"),
        cell: r.get::<_, Option<i64>>(6)?.map(ClusterCell::from_key),
    })
}

/// An open batch: everything written through it lands on commit, or not at all.
pub struct BatchTx<'a> {
    tx: Transaction<'a>,
    batch_id: String,
    recorded_at: String,
    /// The box and time span of what the batch stored so far.
    bounds: std::cell::RefCell<Option<[f64; 4]>>,
    times: std::cell::RefCell<Option<(String, String)>>,
    /// Per linked site: the batch's latest observation of it and how many.
    site_stats: std::cell::RefCell<HashMap<String, (String, u64)>>,
}

impl SqliteStore {
    /// The links column of [`OBS_COLUMNS`]: `[[site_id, how, distance_m], ...]`.
    fn links_from_json(observation_id: &str, text: &str) -> Result<Vec<SiteLink>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: observation_id.to_owned(),
            reason,
        };
        let rows: Vec<(String, String, f64)> =
            serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        rows.into_iter()
            .map(|(site, how, distance_m)| {
                let how = LinkHow::parse("how", &how).map_err(|e| corrupt(e.to_string()))?;
                let site_id =
                    SiteId::parse("site_id", &site).map_err(|e| corrupt(e.to_string()))?;
                Ok(SiteLink {
                    site_id,
                    how,
                    distance_m,
                })
            })
            .collect()
    }

    fn read_observations(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok(StoredObservation {
                id: r.get(0)?,
                batch_id: r.get(1)?,
                recorded_at: ts("recorded_at", r.get(2)?)?,
                observed_at: ts("observed_at", r.get(3)?)?,
                sensor: r.get(4)?,
                finding: checked(Finding::parse("finding", &r.get::<_, String>(5)?))?,
                confidence: checked(Confidence::parse("confidence", &r.get::<_, String>(6)?))?,
                place: place(&r.get::<_, String>(7)?)?,
                site_id: site_id("site_id", r.get(8)?)?,
                description: r.get(9)?,
                image_ref: r.get(10)?,
                source: r.get(11)?,
                external_id: r.get(12)?,
                candidate_id: r.get(13)?,
                sites: Vec::new(),
            })
            .and_then(|o| Ok((o, r.get::<_, String>(14)?)))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut o, links) = row?;
            o.sites = Self::links_from_json(&o.id, &links)?;
            out.push(o);
        }
        Ok(out)
    }

    /// An extent a statement selects as `west, south, east, north, first,
    /// last` in at most one row; `None` for no row or NULLs.
    fn extent(
        &self,
        time_field: &str,
        sql: &str,
    ) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError> {
        let row = self
            .conn
            .query_row(sql, [], |r| {
                Ok((
                    r.get::<_, Option<f64>>(0)?,
                    r.get::<_, Option<f64>>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .optional()?
            .unwrap_or_default();
        let (Some(w), Some(s), Some(e), Some(n), Some(first), Some(last)) = row else {
            return Ok(None);
        };
        Ok(Some((
            [w, s, e, n],
            ts(time_field, first)?,
            ts(time_field, last)?,
        )))
    }

    /// The `WHERE` clause and arguments shared by the id-ordered page and its
    /// count: the rectangle through the R*Tree (joined as `b`), the window and
    /// the findings on the row.
    fn observation_conditions(
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
    ) -> (&'static str, &'static str, Vec<Box<dyn rusqlite::ToSql>>) {
        let findings = serde_json::to_string(findings).unwrap_or_else(|_| "[]".into());
        // Open ends are bounds that admit every time ('' and '~'), not NULLs:
        // a plain range is what lets SQLite search the time index.
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![
            Box::new(since.map_or(String::new(), Timestamp::to_rfc3339)),
            Box::new(until.map_or(
                super::history::AFTER_EVERY_TIME.to_owned(),
                Timestamp::to_rfc3339,
            )),
            Box::new(findings),
        ];
        const ROW: &str = "o.observed_at >= ?1 AND o.observed_at <= ?2
               AND (json_array_length(?3) = 0 OR o.finding IN (SELECT value FROM json_each(?3)))";
        // The R*Tree holds each observation's time too (in its units, widened
        // for its 32-bit floats), so a window narrows the walk as well.
        const AREA: &str = "o.observed_at >= ?1 AND o.observed_at <= ?2
               AND (json_array_length(?3) = 0 OR o.finding IN (SELECT value FROM json_each(?3)))
               AND b.west <= ?5 AND b.east >= ?4 AND b.south <= ?7 AND b.north >= ?6
               AND b.t_from <= ?9 AND b.t_until >= ?8";
        match rect {
            // A window is counted through the time index.
            None if since.is_some() || until.is_some() => {
                ("observations o INDEXED BY observations_by_time", ROW, args)
            }
            // Without one, the id index is the narrowest to count through.
            None => (
                "observations o INDEXED BY sqlite_autoindex_observations_1",
                ROW,
                args,
            ),
            Some([w, s, e, n]) => {
                let from = since.map_or(f64::MIN, |t| tree_time(t) - TREE_MARGIN);
                let to = until.map_or(f64::MAX, |t| tree_time(t) + TREE_MARGIN);
                args.extend(
                    [w, e, s, n, from, to].map(|v| Box::new(v) as Box<dyn rusqlite::ToSql>),
                );
                (
                    "observation_boxes b CROSS JOIN observations o ON o.rowid = b.id",
                    AREA,
                    args,
                )
            }
        }
    }

    /// [`SqliteStore::observations_in`] for an area: an R*Tree walk over the
    /// observations' boxes in slabs of time, so that a small area costs what it
    /// holds, not a scan of every observation in the time window. Returns at
    /// least `limit` when there are as many; the caller sorts and cuts.
    #[allow(clippy::too_many_arguments)]
    fn observations_in_area(
        &self,
        [w, s, e, n]: [f64; 4],
        since: &Option<String>,
        until: &Option<String>,
        findings: &str,
        before_time: &Option<String>,
        before_id: &Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let Some((first, last)) =
            self.time_span(
                "SELECT (SELECT min(observed_at) FROM observations), (SELECT max(observed_at) FROM observations)",
            )?
        else {
            return Ok(Vec::new());
        };
        let at = |t: &Option<String>| t.as_deref().and_then(|t| Timestamp::parse("t", t).ok());
        let newest = [at(until), at(before_time)]
            .into_iter()
            .flatten()
            .fold(last, Timestamp::min);
        let oldest = at(since).map_or(first, |t| t.max(first));
        let sql = format!(
            "SELECT {OBS_COLUMNS} FROM observation_boxes b CROSS JOIN observations o ON o.rowid = b.id
             WHERE b.west <= ?3 AND b.east >= ?1 AND b.south <= ?4 AND b.north >= ?2
               AND b.t_from >= ?5 AND b.t_from <= ?6
               AND o.observed_at >= ?7 AND o.observed_at < ?8
               AND (?9 IS NULL OR o.observed_at >= ?9) AND (?10 IS NULL OR o.observed_at <= ?10)
               AND (json_array_length(?11) = 0 OR o.finding IN (SELECT value FROM json_each(?11)))
               AND (?12 IS NULL OR o.observed_at < ?12 OR (o.observed_at = ?12 AND o.id < ?13))"
        );
        newest_first_by_slabs(newest, oldest, limit, |slab| {
            let (from, to, from_s, to_s) = slab.bounds();
            self.read_observations(
                &sql,
                &[
                    &w,
                    &s,
                    &e,
                    &n,
                    &from_s,
                    &to_s,
                    &from,
                    &to,
                    since,
                    until,
                    &findings,
                    before_time,
                    before_id,
                ],
            )
        })
    }
}

impl ObservationReads for SqliteStore {
    /// The stored batch with this content hash, if one was stored before.
    fn stored_batch_with_hash(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT id FROM batches WHERE content_hash = ?1 AND stored = 1 ORDER BY received_at LIMIT 1", [hash], |r| r.get(0))
            .optional()?)
    }

    /// Batches, newest first, at most `limit`, received before `before` if given.
    fn batches(&self, limit: usize, before: Option<&str>) -> Result<Vec<BatchRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, received_at, origin, content_hash, mode, stored, report FROM batches
             WHERE (?1 IS NULL OR received_at < ?1) AND content_hash != '' ORDER BY received_at DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![before, limit as i64], |r| {
            Ok(BatchRecord {
                id: r.get(0)?,
                received_at: ts("received_at", r.get(1)?)?,
                origin: r.get(2)?,
                content_hash: r.get(3)?,
                mode: r.get(4)?,
                stored: r.get::<_, i64>(5)? != 0,
                report: checked(
                    serde_json::from_str(&r.get::<_, String>(6)?)
                        .map_err(|e| FieldError::new("report", e.to_string())),
                )?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per site: the latest observation time and the number of observations.
    fn observation_stats(&self) -> Result<SiteStats, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT site_id, last_observed_at, count FROM site_observation_stats")?;
        // Read in place, as a million rows are: no text is copied out.
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let last = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let count: i64 = r.get(2)?;
            let corrupt = |reason: String| StoreError::Corrupt {
                id: id.to_owned(),
                reason,
            };
            let site = SiteId::parse("site_id", id).map_err(|e| corrupt(e.to_string()))?;
            let last = Timestamp::parse("observed_at", last).map_err(|e| corrupt(e.to_string()))?;
            out.push((
                site,
                ObservationStats {
                    last_observed_at: last,
                    count: count as u64,
                },
            ));
        }
        Ok(out.into_iter().collect())
    }

    /// One observation by id.
    fn observation(&self, id: &str) -> Result<Option<StoredObservation>, StoreError> {
        Ok(self
            .read_observations(
                &format!("SELECT {OBS_COLUMNS} FROM observations o WHERE o.id = ?1"),
                &[&id],
            )?
            .pop())
    }

    /// The first observation time and the first revision time, each the
    /// head of its time index.
    fn first_event_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError> {
        let (observed, recorded): (Option<String>, Option<String>) = self.conn.query_row(
            "SELECT (SELECT min(observed_at) FROM observations),
                    (SELECT min(recorded_at) FROM site_revisions)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            observed.map(|t| ts("observed_at", t)).transpose()?,
            recorded.map(|t| ts("recorded_at", t)).transpose()?,
        ))
    }

    /// The lon/lat box `[west, south, east, north]` around every observation and
    /// the first and last observation times; `None` when there are none.
    fn observation_extent(&self) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError> {
        // Kept up to date by each batch's commit: one row, not a scan.
        self.extent(
            "observed_at",
            "SELECT west, south, east, north, first, last FROM aggregates WHERE name = 'observations'",
        )
    }

    /// Observations linked to a site, oldest first, observed within `[from, to]`.
    fn site_observations(
        &self,
        site: &SiteId,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        page: SitePage<'_>,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        // Bounds that admit everything stand in for absent ones, so that SQLite
        // walks the (site, time) index in order and stops at the limit. The
        // keyset bound is a row-value comparison: an OR there would make the
        // plan depend on the values bound, and SQLite would prepare the
        // statement again at every use.
        let from = from.map_or_else(String::new, Timestamp::to_rfc3339);
        let to = to.map_or_else(|| "~".to_owned(), Timestamp::to_rfc3339);
        let (sql, time, id) = match (page.newest_first, page.after) {
            (false, after) => (
                "l.observed_at >= ?2 AND l.observed_at <= ?3
                 AND (l.observed_at, l.observation_id) > (?4, ?5)
                 ORDER BY l.observed_at, l.observation_id",
                after.map_or("", |b| b.time.as_str()),
                after.map_or("", |b| b.id.as_str()),
            ),
            (true, after) => (
                "l.observed_at >= ?2 AND l.observed_at <= ?3
                 AND (l.observed_at, l.observation_id) < (?4, ?5)
                 ORDER BY l.observed_at DESC, l.observation_id DESC",
                after.map_or("~", |b| b.time.as_str()),
                after.map_or("~", |b| b.id.as_str()),
            ),
        };
        let limit = page.limit.min(i64::MAX as usize) as i64;
        self.read_observations(
            &format!(
                "SELECT {OBS_COLUMNS} FROM observation_sites l JOIN observations o ON o.id = l.observation_id
                 WHERE l.site_id = ?1 AND {sql} LIMIT ?6"
            ),
            &[&site.as_str(), &from, &to, &time, &id, &limit],
        )
    }

    /// Observations whose bounds meet `[west, south, east, north]` (west <= east),
    /// observed within `[since, until]`, newest first, strictly before the
    /// `(observed_at, id)` cursor, at most `limit`.
    #[allow(clippy::too_many_arguments)]
    fn observations_in(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        finding: &[String],
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let [w, s, e, n] = rect.unwrap_or([-180.0, -90.0, 180.0, 90.0]);
        let findings = serde_json::to_string(finding).unwrap_or_else(|_| "[]".into());
        let (since, until) = (
            since.map(Timestamp::to_rfc3339),
            until.map(Timestamp::to_rfc3339),
        );
        let (bt, bid) = (before.map(|b| b.time.clone()), before.map(|b| b.id.clone()));
        if rect.is_some() && [w, s, e, n] != [-180.0, -90.0, 180.0, 90.0] {
            let mut found = self.observations_in_area(
                [w, s, e, n],
                &since,
                &until,
                &findings,
                &bt,
                &bid,
                limit,
            )?;
            found.sort_by(|a, b| (b.observed_at, &b.id).cmp(&(a.observed_at, &a.id)));
            found.truncate(limit);
            return Ok(found);
        }
        // Open ends as bounds that admit everything, so that the time index is
        // searched from the newest time that can qualify, not scanned to it.
        // One upper bound, as a row value: the end of the window or the
        // cursor, whichever comes first. With an OR for the cursor, or a
        // second bound beside it, SQLite may start the backward walk at the
        // end of time and read every row after the window.
        let after_every = super::history::AFTER_EVERY_TIME.to_owned();
        let end = (
            until.unwrap_or_else(|| after_every.clone()),
            after_every.clone(),
        );
        let cursor = (
            bt.unwrap_or_else(|| after_every.clone()),
            bid.unwrap_or(after_every),
        );
        let (upper_time, upper_id) = end.min(cursor);
        self.read_observations(
            &format!(
                "SELECT {OBS_COLUMNS} FROM observations o
                 WHERE o.east >= ?1 AND o.west <= ?3 AND o.north >= ?2 AND o.south <= ?4
                   AND o.observed_at >= ?5
                   AND (json_array_length(?6) = 0 OR o.finding IN (SELECT value FROM json_each(?6)))
                   AND (o.observed_at, o.id) < (?7, ?8)
                 ORDER BY o.observed_at DESC, o.id DESC LIMIT ?9"
            ),
            &[
                &w,
                &s,
                &e,
                &n,
                &since.unwrap_or_default(),
                &findings,
                &upper_time,
                &upper_id,
                &(limit as i64),
            ],
        )
    }

    /// How many observations [`SqliteStore::observations_in`] pages through, up to
    /// `cap`: the count stops there, so it never costs more than `cap` rows.
    fn count_observations(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
        cap: usize,
    ) -> Result<usize, StoreError> {
        let (from, cond, mut args) = Self::observation_conditions(rect, since, until, findings);
        let n = args.len();
        args.push(Box::new(cap as i64));
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {from} WHERE {cond} LIMIT ?{})",
            n + 1
        );
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
        let count: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row(refs.as_slice(), |r| r.get(0))?;
        Ok(count as usize)
    }
}

impl ObservationWrites for SqliteStore {
    /// Starts writing a batch. Nothing is visible to others until [`BatchTx::commit`].
    fn begin_batch(
        &mut self,
        batch_id: &str,
        received_at: Timestamp,
    ) -> Result<Box<dyn ImportUnit + '_>, StoreError> {
        let tx = self.conn.transaction()?;
        let recorded_at = received_at.to_rfc3339();
        // The row is completed at commit; observations reference it meanwhile.
        tx.execute(
            "INSERT INTO batches (id, received_at, origin, content_hash, mode, stored, report) VALUES (?1, ?2, '', '', 'atomic', 0, '{}')",
            params![batch_id, recorded_at],
        )?;
        Ok(Box::new(BatchTx {
            tx,
            batch_id: batch_id.to_owned(),
            recorded_at,
            bounds: Default::default(),
            times: Default::default(),
            site_stats: Default::default(),
        }))
    }

    /// Records an import attempt that stored nothing (invalid, or already imported).
    fn record_batch(&mut self, rec: &BatchRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO batches (id, received_at, origin, content_hash, mode, stored, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![rec.id, rec.received_at.to_rfc3339(), rec.origin, rec.content_hash, rec.mode, rec.stored as i64, rec.report.to_string()],
        )?;
        Ok(())
    }
}

impl CandidateReads for SqliteStore {
    /// The lon/lat box around every candidate's position and the first and
    /// last creation times, in one pass over the candidates' rows (there is
    /// one per cluster of unmatched observations, not per observation).
    fn candidate_extent(&self) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError> {
        self.extent(
            "created_at",
            "SELECT min(lon), min(lat), max(lon), max(lat), min(created_at), max(created_at) FROM candidates",
        )
    }

    /// Candidates, newest first; only those in `state` if given.
    fn candidates(&self, state: Option<CandidateState>) -> Result<Vec<Candidate>, StoreError> {
        let ids: Vec<String> = {
            let mut stmt = self.conn.prepare("SELECT id FROM candidates WHERE ?1 IS NULL OR state = ?1 ORDER BY created_at DESC, id DESC")?;
            stmt.query_map([state.map(CandidateState::as_str)], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        ids.iter()
            .filter_map(|id| self.candidate(id).transpose())
            .collect()
    }

    fn candidate(&self, id: &str) -> Result<Option<Candidate>, StoreError> {
        let Some(mut c) = self
            .conn
            .query_row(
                "SELECT id, created_at, batch_id, lon, lat, state, decided_at, site_id, note FROM candidates WHERE id = ?1",
                [id],
                |r| {
                    Ok(Candidate {
                        id: r.get(0)?,
                        created_at: ts("created_at", r.get(1)?)?,
                        batch_id: r.get(2)?,
                        at: checked(LonLat::parse("position", r.get(3)?, r.get(4)?))?,
                        state: checked(CandidateState::parse("state", &r.get::<_, String>(5)?))?,
                        decided_at: r.get::<_, Option<String>>(6)?.map(|t| ts("decided_at", t)).transpose()?,
                        site_id: site_id("site_id", r.get(7)?)?,
                        note: r.get(8)?,
                        observation_ids: Vec::new(),
                        first_observed_at: None,
                        last_observed_at: None,
                    })
                },
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare("SELECT id, observed_at FROM observations WHERE candidate_id = ?1 ORDER BY observed_at, id")?;
        let members: Vec<(String, String)> = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        c.first_observed_at = members
            .first()
            .map(|m| ts("observed_at", m.1.clone()))
            .transpose()?;
        c.last_observed_at = members
            .last()
            .map(|m| ts("observed_at", m.1.clone()))
            .transpose()?;
        c.observation_ids = members.into_iter().map(|m| m.0).collect();
        Ok(Some(c))
    }

    /// Anchors of a candidate's observations, with their ids.
    fn candidate_members(&self, id: &str) -> Result<Vec<(String, LonLat)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, lon, lat FROM observations WHERE candidate_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([id], |r| {
            Ok((r.get(0)?, LonLat::from_computed(r.get(1)?, r.get(2)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl CandidateWrites for SqliteStore {
    /// Marks an open candidate dismissed. Returns false if it is not open.
    fn dismiss_candidate(&mut self, id: &str, note: Option<&str>) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let now = Timestamp::now().to_rfc3339();
        let place: Option<(f64, f64)> = tx
            .query_row(
                "UPDATE candidates SET state = 'dismissed', decided_at = ?2, note = ?3 WHERE id = ?1 AND state = 'open'
                 RETURNING lon, lat",
                params![id, now, note],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((lon, lat)) = place else {
            return Ok(false);
        };
        super::log::append(
            &tx,
            &super::log::Entry {
                at: &now,
                kind: super::LogKind::CandidateDismissed.as_str(),
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

    /// Turns an open candidate into a catalogue site in one transaction: the site
    /// is created (a revision like any other), the candidate's observations are
    /// linked to it, and the candidate is marked promoted. Returns `None`,
    /// writing nothing, if the candidate is not open or the site id is taken.
    fn promote_candidate(
        &mut self,
        id: &str,
        site: &crate::model::Site,
        links: &[(String, f64)],
        by: &super::Provenance,
    ) -> Result<Option<super::Revision>, StoreError> {
        let tx = self.conn.transaction()?;
        let open: bool = tx
            .query_row(
                "SELECT state = 'open' FROM candidates WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false);
        let current = super::sites::current(&tx, &site.id)?;
        if !open || current.is_some() {
            return Ok(None);
        }
        let clock = super::sites::clock(&tx)?;
        let Some(revision) = super::sites::write_site(&tx, site, current, &clock, by)? else {
            return Ok(None);
        };
        {
            let mut link = tx.prepare_cached(
                "INSERT INTO observation_sites (observation_id, site_id, how, distance_m, observed_at)
                 SELECT ?1, ?2, 'promoted', ?3, observed_at FROM observations WHERE id = ?1",
            )?;
            let mut mark =
                tx.prepare_cached("UPDATE observations SET matched = 1 WHERE id = ?1")?;
            for (obs, distance) in links {
                link.execute(params![obs, site.id.as_str(), distance])?;
                mark.execute([obs])?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO site_observation_stats (site_id, last_observed_at, count)
             SELECT site_id, max(observed_at), count(*) FROM observation_sites WHERE site_id = ?1
             GROUP BY site_id",
            [site.id.as_str()],
        )?;
        tx.execute(
            "UPDATE candidates SET state = 'promoted', decided_at = ?2, site_id = ?3, note = ?4 WHERE id = ?1",
            params![id, clock.0, site.id.as_str(), by.reason],
        )?;
        tx.commit()?;
        Ok(Some(revision))
    }
}

/// A span of time to read, `[from, to)` in microseconds since 1970; `to` is
/// `None` for the newest slab, which the query's own bounds close.
#[derive(Debug, Clone, Copy)]
struct Slab {
    pub from: i64,
    pub to: Option<i64>,
}

impl Slab {
    /// The bounds as text, for the exact test on the stored times, and in the
    /// R*Tree's units widened by a margin, for its 32-bit floats are coarse:
    /// the tree finds a superset and the text decides.
    pub fn bounds(&self) -> (String, String, f64, f64) {
        let text = |m: i64| Timestamp::from_epoch_micros(m).to_rfc3339();
        let tree = |m: i64| tree_time(Timestamp::from_epoch_micros(m));
        (
            text(self.from),
            self.to
                .map_or(super::history::AFTER_EVERY_TIME.to_owned(), text),
            tree(self.from) - TREE_MARGIN,
            self.to.map_or(f64::MAX, |t| tree(t) + TREE_MARGIN),
        )
    }
}

/// Reads events newest first through a spatial index that cannot order by
/// time: slabs of time, each twice as long as the one before, walking back
/// from `newest` until `want` events are found or `oldest` is passed. The
/// slabs do not overlap, so the events of each are older than all found
/// before, and the walk costs about what it returns, whatever the area.
fn newest_first_by_slabs<T>(
    newest: Timestamp,
    oldest: Timestamp,
    want: usize,
    mut read: impl FnMut(Slab) -> Result<Vec<T>, StoreError>,
) -> Result<Vec<T>, StoreError> {
    const FIRST_SLAB_US: i64 = 86_400 * 1_000_000;
    let floor = oldest.epoch_micros();
    let mut top: Option<i64> = None;
    let mut width = FIRST_SLAB_US;
    let mut from = newest
        .epoch_micros()
        .saturating_add(1)
        .saturating_sub(width);
    let mut out = Vec::new();
    loop {
        let last = from <= floor;
        let slab = Slab {
            from: if last { i64::MIN } else { from },
            to: top,
        };
        let mut found = read(slab)?;
        out.append(&mut found);
        if last || out.len() >= want {
            return Ok(out);
        }
        top = Some(from);
        width = width.saturating_mul(2);
        from = from.saturating_sub(width);
    }
}

/// Widens a time for the observations' R*Tree, whose 32-bit floats round it
/// by up to a few minutes: ten minutes, in its units.
const TREE_MARGIN: f64 = 600.0 / TIME_UNIT_S;

/// The columns [`SqliteStore::read_observations`] reads; the last gathers the
/// observation's site links, so a page of observations is one statement.
const OBS_COLUMNS: &str = "o.id, o.batch_id, o.recorded_at, o.observed_at, o.sensor, o.finding, o.confidence, o.geometry, o.site_id, o.description, o.image_ref, o.source, o.external_id, o.candidate_id,
    (SELECT json_group_array(json_array(k.site_id, k.how, k.distance_m))
       FROM (SELECT site_id, how, distance_m FROM observation_sites WHERE observation_id = o.id ORDER BY site_id) k)";

impl ImportUnit for BatchTx<'_> {
    fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// The stored batch with this content hash, if one was stored before.
    fn stored_batch_with_hash(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id FROM batches WHERE content_hash = ?1 AND stored = 1 ORDER BY received_at LIMIT 1",
        )?;
        Ok(stmt.query_row([hash], |r| r.get(0)).optional()?)
    }

    /// The id of an already stored observation with this sender id, if any.
    fn existing_external(
        &self,
        source: Option<&str>,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut stmt = self.tx.prepare_cached("SELECT id FROM observations WHERE coalesce(source, '') = coalesce(?1, '') AND external_id = ?2")?;
        Ok(stmt
            .query_row(params![source, external_id], |r| r.get(0))
            .optional()?)
    }

    /// Stores one observation and its links; returns its new id.
    fn insert_observation(
        &self,
        feature_index: usize,
        obs: &Observation,
        links: &[SiteLink],
    ) -> Result<String, StoreError> {
        let id = crate::model::new_id("obs");
        let anchor = obs.place.anchor();
        let observed_at = obs.observed_at.to_rfc3339();
        let [w, s, e, n] = obs.place.lonlat_bounds();
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO observations (id, batch_id, feature_index, observed_at, recorded_at, sensor, finding, confidence, geometry,
                lon, lat, west, south, east, north, site_id, description, image_ref, source, external_id, matched)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        )?;
        stmt.execute(params![
            id,
            self.batch_id,
            feature_index as i64,
            observed_at,
            self.recorded_at,
            obs.sensor,
            obs.finding.as_str(),
            obs.confidence.as_str(),
            obs.place.to_geojson().to_string(),
            anchor.lon(),
            anchor.lat(),
            w,
            s,
            e,
            n,
            obs.site_id.as_ref().map(SiteId::as_str),
            obs.description,
            obs.image_ref,
            obs.source,
            obs.external_id,
            !links.is_empty() as i64,
        ])?;
        let t = tree_time(obs.observed_at);
        self.tx
            .prepare_cached("INSERT INTO observation_boxes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)")?
            .execute(params![self.tx.last_insert_rowid(), w, e, s, n, t])?;
        let mut bounds = self.bounds.borrow_mut();
        *bounds = Some(match *bounds {
            None => [w, s, e, n],
            Some([bw, bs, be, bn]) => [bw.min(w), bs.min(s), be.max(e), bn.max(n)],
        });
        let mut times = self.times.borrow_mut();
        *times = Some(match times.take() {
            None => (observed_at.clone(), observed_at.clone()),
            Some((a, b)) => (a.min(observed_at.clone()), b.max(observed_at.clone())),
        });
        drop((bounds, times));
        let mut link = self.tx.prepare_cached("INSERT INTO observation_sites (observation_id, site_id, how, distance_m, observed_at) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut site_stats = self.site_stats.borrow_mut();
        for l in links {
            let e = site_stats
                .entry(l.site_id.as_str().to_owned())
                .or_insert_with(|| (observed_at.clone(), 0));
            if observed_at > e.0 {
                e.0.clone_from(&observed_at);
            }
            e.1 += 1;
            link.execute(params![
                id,
                l.site_id.as_str(),
                l.how.as_str(),
                l.distance_m,
                observed_at,
            ])?;
        }
        Ok(id)
    }

    /// Unmatched observations whose anchors may lie within `radius_m` of `p`
    /// (a superset: the caller measures exactly).
    fn unmatched_near(&self, p: LonLat, radius_m: f64) -> Result<Vec<Unmatched>, StoreError> {
        let (south, north, ranges) = crate::store::radius_search_box(p, radius_m);
        let mut stmt = self.tx.prepare_cached(
            "SELECT o.id, o.lon, o.lat, o.observed_at, o.candidate_id, c.state, o.cell FROM observations o
             LEFT JOIN candidates c ON c.id = o.candidate_id
             WHERE o.matched = 0 AND o.frontier = 1
               AND o.lat BETWEEN ?1 AND ?2 AND o.lon BETWEEN ?3 AND ?4",
        )?;
        let mut out = Vec::new();
        for (w, e) in ranges {
            let rows = stmt.query_map(params![south, north, w, e], unmatched_row)?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn candidate_members_in(
        &self,
        candidate: &str,
        cell: ClusterCell,
    ) -> Result<Vec<Unmatched>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT o.id, o.lon, o.lat, o.observed_at, o.candidate_id, c.state, o.cell FROM observations o
             JOIN candidates c ON c.id = o.candidate_id
             WHERE o.candidate_id = ?1 AND o.cell = ?2 AND o.matched = 0",
        )?;
        let rows = stmt.query_map(params![candidate, cell.key()], unmatched_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates a candidate at `at` holding the given observations.
    fn create_candidate(
        &self,
        at: LonLat,
        members: &[(String, ClusterCell)],
    ) -> Result<String, StoreError> {
        let id = crate::model::new_id("cand");
        self.tx.execute(
            "INSERT INTO candidates (id, created_at, batch_id, lon, lat) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, self.recorded_at, self.batch_id, at.lon(), at.lat()],
        )?;
        self.add_to_candidate(&id, members)?;
        Ok(id)
    }

    fn add_to_candidate(
        &self,
        candidate: &str,
        members: &[(String, ClusterCell)],
    ) -> Result<(), StoreError> {
        // The first member of a cube represents it; the subquery sees the
        // rows as they were before this one joined.
        let mut stmt = self.tx.prepare_cached(
            "UPDATE observations SET candidate_id = ?1, cell = ?3,
                 frontier = NOT EXISTS (SELECT 1 FROM observations
                     WHERE candidate_id = ?1 AND cell = ?3 AND frontier = 1)
             WHERE id = ?2",
        )?;
        for (m, cell) in members {
            stmt.execute(params![candidate, m, cell.key()])?;
        }
        Ok(())
    }

    /// Completes the batch record and commits everything written through it.
    fn commit(
        self: Box<Self>,
        origin: &str,
        content_hash: &str,
        mode: &str,
        report: &Value,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE batches SET origin = ?2, content_hash = ?3, mode = ?4, stored = 1, report = ?5 WHERE id = ?1",
            params![self.batch_id, origin, content_hash, mode, report.to_string()],
        )?;
        {
            let mut upsert = self.tx.prepare_cached(
                "INSERT INTO site_observation_stats (site_id, last_observed_at, count) VALUES (?1, ?2, ?3)
                 ON CONFLICT(site_id) DO UPDATE SET
                   last_observed_at = max(last_observed_at, excluded.last_observed_at),
                   count = count + excluded.count",
            )?;
            for (site, (last, count)) in self.site_stats.take() {
                upsert.execute(params![site, last, count as i64])?;
            }
        }
        let bounds = self.bounds.take();
        if let (Some([w, s, e, n]), Some((first, last))) = (bounds, self.times.take()) {
            // The observations' extent grows with each batch, so that it is read,
            // not computed, per request.
            self.tx.execute(
                "INSERT INTO aggregates (name, west, south, east, north, first, last)
                 VALUES ('observations', ?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET west = min(coalesce(west, ?1), ?1),
                   south = min(coalesce(south, ?2), ?2), east = max(coalesce(east, ?3), ?3),
                   north = max(coalesce(north, ?4), ?4), first = min(coalesce(first, ?5), ?5),
                   last = max(coalesce(last, ?6), ?6)",
                params![w, s, e, n, first, last],
            )?;
        }
        super::log::append(
            &self.tx,
            &super::log::Entry {
                at: &self.recorded_at,
                kind: super::LogKind::BatchStored.as_str(),
                site_id: None,
                revision: None,
                batch_id: Some(&self.batch_id),
                candidate_id: None,
                bounds,
            },
        )?;
        self.tx.commit()?;
        Ok(())
    }

    /// Discards everything written through it.
    fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.rollback()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_ranges_split_at_the_antimeridian_and_cover_the_poles() {
        let (_, _, r) =
            crate::store::radius_search_box(LonLat::parse("p", 179.999, 0.0).unwrap(), 1000.0);
        assert_eq!(r.len(), 2);
        let (_, _, r) =
            crate::store::radius_search_box(LonLat::parse("p", 10.0, 89.5).unwrap(), 1000.0);
        assert_eq!(r, [(-180.0, 180.0)]);
        let (s, n, r) =
            crate::store::radius_search_box(LonLat::parse("p", 10.0, 45.0).unwrap(), 1000.0);
        assert!(s < 45.0 && n > 45.0 && r.len() == 1 && r[0].0 < 10.0 && r[0].1 > 10.0);
    }
}
