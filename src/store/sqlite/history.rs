//! Reading the record back in time order: revisions and candidates in a time
//! window, paged by keyset so that pages stay stable while new writes land.

use super::SqliteStore;
use crate::model::{Site, SiteId, Timestamp, creation_diff};
use crate::store::{Before, CREATION_DIFF, HistoryReads, RevisionRow, StoreError};
use rusqlite::params;
use serde_json::Value;
use std::sync::Arc;

impl RevisionRow {
    /// Reads `site_id, revision, recorded_at, actor, reason, change, diff, feature`.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let feature: Value = serde_json::from_str(&r.get::<_, String>(7)?).map_err(conversion)?;
        let diff = match r.get_ref(6)?.as_str()? {
            CREATION_DIFF => serde_json::to_value(creation_diff(&feature)).map_err(conversion)?,
            text => serde_json::from_str(text).map_err(conversion)?,
        };
        Ok(RevisionRow {
            site_id: r.get(0)?,
            revision: r.get(1)?,
            recorded_at: Timestamp::parse("recorded_at", &r.get::<_, String>(2)?)
                .map_err(conversion)?,
            actor: r.get(3)?,
            reason: r.get(4)?,
            change: r.get(5)?,
            diff,
            feature,
        })
    }
}

/// Below this many revisions recorded by a moment, a page of the sites of
/// that moment is read by time and sorted, rather than walked in id order.
const FEW_RECORDED: i64 = 20_000;

/// Sorts after every RFC 3339 time and every key ('~' follows digits and letters).
pub(super) const AFTER_EVERY_TIME: &str = "~";

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

impl SqliteStore {
    /// The first and last of two times a statement selects; `None` when empty.
    /// Each should be a subquery of its own: SQLite reads `min()` or `max()`
    /// from the end of an index only when it is alone in its `SELECT`.
    pub(super) fn time_span(
        &self,
        sql: &str,
    ) -> Result<Option<(Timestamp, Timestamp)>, StoreError> {
        let (a, b): (Option<String>, Option<String>) = self
            .conn
            .prepare_cached(sql)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let parse = |t: String| {
            Timestamp::parse("time", &t).map_err(|e| StoreError::Corrupt {
                id: "time index".into(),
                reason: e.to_string(),
            })
        };
        match (a, b) {
            (Some(a), Some(b)) => Ok(Some((parse(a)?, parse(b)?))),
            _ => Ok(None),
        }
    }
}

impl HistoryReads for SqliteStore {
    /// Revisions recorded within `[since, until]` whose footprint box meets the
    /// lon/lat rectangle (`west <= east`), newest first, after `before`, at
    /// most `limit`: an R*Tree walk over the area's revisions, whose keys are
    /// sorted before only the page's rows are read whole.
    fn revisions_in_area(
        &self,
        [w, s, e, n]: [f64; 4],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<RevisionRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT site_id, revision, recorded_at, actor, reason, change, diff, feature
             FROM site_revisions WHERE rowid IN (
               SELECT r.rowid FROM site_revision_boxes b CROSS JOIN site_revisions r ON r.rowid = b.id
               WHERE b.west <= ?3 AND b.east >= ?1 AND b.south <= ?4 AND b.north >= ?2
                 AND r.recorded_at >= ?5 AND r.recorded_at <= ?6 AND r.recorded_at <= ?7
                 AND (r.recorded_at < ?7 OR (r.site_id || '#' || printf('%010d', r.revision)) < ?8)
               ORDER BY r.recorded_at DESC, r.site_id DESC, r.revision DESC LIMIT ?9)
             ORDER BY recorded_at DESC, site_id DESC, revision DESC",
        )?;
        let rows = stmt.query_map(
            params![
                w,
                s,
                e,
                n,
                since.map_or(String::new(), Timestamp::to_rfc3339),
                until.map_or(AFTER_EVERY_TIME.to_owned(), Timestamp::to_rfc3339),
                before.map_or(AFTER_EVERY_TIME, |b| b.time.as_str()),
                before.map_or(AFTER_EVERY_TIME, |b| b.id.as_str()),
                limit as i64,
            ],
            RevisionRow::from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revisions recorded within `[since, until]`, newest first, after `before`,
    /// at most `limit`; for one site only if `site` is given.
    fn revisions_between(
        &self,
        site: Option<&str>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<RevisionRow>, StoreError> {
        // Plain range comparisons (with bounds that admit everything when a limit
        // is absent) let SQLite walk the time index, or the primary key for one site.
        let site_filter = if site.is_some() {
            "site_id = ?1"
        } else {
            "?1 IS NULL"
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT site_id, revision, recorded_at, actor, reason, change, diff, feature FROM site_revisions
             WHERE {site_filter}
               AND recorded_at >= ?2 AND recorded_at <= ?3 AND recorded_at <= ?4
               AND (recorded_at < ?4 OR (site_id || '#' || printf('%010d', revision)) < ?5)
             ORDER BY recorded_at DESC, site_id DESC, revision DESC LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                site,
                since.map_or(String::new(), Timestamp::to_rfc3339),
                until.map_or(AFTER_EVERY_TIME.to_owned(), Timestamp::to_rfc3339),
                before.map_or(AFTER_EVERY_TIME, |b| b.time.as_str()),
                before.map_or(AFTER_EVERY_TIME, |b| b.id.as_str()),
                limit as i64
            ],
            RevisionRow::from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every revision of one site recorded within `[since, until]`, oldest
    /// first: a site's own timeline, read by its primary key.
    fn site_revisions_between(
        &self,
        site: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<RevisionRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT site_id, revision, recorded_at, actor, reason, change, diff, feature FROM site_revisions
             WHERE site_id = ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map([site], RevisionRow::from_row)?;
        let mut out = Vec::new();
        for row in rows {
            let r = row?;
            if since.is_none_or(|t| r.recorded_at >= t) && until.is_none_or(|t| r.recorded_at <= t)
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The sites (live, or retired if `retired`) as recorded at `t` (now if
    /// `None`) whose id is after `after`, in id order, at most `limit`: a walk
    /// of the revisions in id order from the cursor, so a page costs the
    /// revisions of the sites it passes, not the catalogue.
    fn sites_at_from(
        &self,
        t: Option<Timestamp>,
        retired: bool,
        after: Option<&SiteId>,
        limit: usize,
    ) -> Result<Vec<Arc<Site>>, StoreError> {
        let text = t.map_or(AFTER_EVERY_TIME.to_owned(), Timestamp::to_rfc3339);
        // Two ways to the page. When few revisions were recorded by `t` (a
        // moment early in the record), the time index finds them all and
        // they are sorted by id. Otherwise the primary key's index walks the
        // revisions in id order from the cursor, where the sites of `t` are
        // then dense.
        let recorded: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM site_revisions
                 INDEXED BY site_revisions_by_time WHERE recorded_at <= ?1 LIMIT ?2)",
            )?
            .query_row(params![text, FEW_RECORDED], |r| r.get(0))?;
        let mut stmt = self.conn.prepare_cached(if recorded < FEW_RECORDED {
            "SELECT site_id, feature FROM site_revisions
             INDEXED BY site_revisions_by_time
             WHERE recorded_at <= ?2 AND site_id > ?1
               AND (valid_until IS NULL OR valid_until > ?2)
               AND (change = 'retired') = ?3
             ORDER BY site_id LIMIT ?4"
        } else {
            "SELECT site_id, feature FROM site_revisions
             INDEXED BY sqlite_autoindex_site_revisions_1
             WHERE site_id > ?1 AND recorded_at <= ?2
               AND (valid_until IS NULL OR valid_until > ?2)
               AND (change = 'retired') = ?3
             ORDER BY site_id LIMIT ?4"
        })?;
        let rows = stmt.query_map(
            params![
                after.map_or("", SiteId::as_str),
                text,
                retired,
                limit.min(i64::MAX as usize) as i64
            ],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, feature) = row?;
            out.push(Arc::new(super::sites::parse_stored(&id, &feature)?));
        }
        Ok(out)
    }

    /// Whether a site was ever recorded (retired ones included).
    fn site_known(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM sites WHERE id = ?1)")?
            .query_row([id], |r| r.get(0))?)
    }

    /// Ids of candidates created within `[since, until]` inside the lon/lat
    /// rectangle (west <= east), newest first, after `before`, at most `limit`.
    fn candidate_ids_between(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let [w, s, e, n] = rect.unwrap_or([-180.0, -90.0, 180.0, 90.0]);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, created_at FROM candidates
             WHERE lon BETWEEN ?1 AND ?3 AND lat BETWEEN ?2 AND ?4
               AND (?5 IS NULL OR created_at >= ?5) AND (?6 IS NULL OR created_at <= ?6)
               AND (?7 IS NULL OR created_at < ?7 OR (created_at = ?7 AND id < ?8))
             ORDER BY created_at DESC, id DESC LIMIT ?9",
        )?;
        let rows = stmt.query_map(
            params![
                w,
                s,
                e,
                n,
                since.map(Timestamp::to_rfc3339),
                until.map(Timestamp::to_rfc3339),
                before.map(|b| b.time.as_str()),
                before.map(|b| b.id.as_str()),
                limit as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
