//! Reading the record back in time order from PostgreSQL: revisions and
//! candidates in a time window, paged by keyset as the SQLite store pages
//! them. Ids compare byte by byte (`COLLATE "C"`), as SQLite compares text,
//! whatever the database's collation.

use super::PgStore;
use super::sites::{MEETS_BOX, corrupt, diff_in_order, feature_in_order, parse_stored, valid_at};
use super::store::{from_pg, to_pg};
use crate::model::{Site, SiteId, Timestamp, creation_diff};
use crate::store::{Before, HistoryReads, RevisionRow, StoreError};
use postgres::Row;
use postgres::types::ToSql;
use serde_json::Value;
use std::sync::Arc;

/// A revision's keyset key, as [`crate::store::revision_key`] writes it.
const KEY: &str = "(site_id || '#' || lpad(revision::text, greatest(10, length(revision::text)), '0')) COLLATE \"C\"";

const ROW_COLUMNS: &str = "site_id, revision, recorded_at, actor, reason, change, diff, feature";

/// A statement's conditions and their parameters, numbered as they are added.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync>>,
}

impl Conditions {
    /// Starts after `taken` parameters already in the statement's text.
    fn after(taken: Vec<Box<dyn ToSql + Sync>>) -> Self {
        Self {
            clauses: Vec::new(),
            params: taken,
        }
    }

    /// Adds a parameter and returns its placeholder.
    fn param(&mut self, v: impl ToSql + Sync + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    fn and(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `since`, `until` and `before` on the time column `time` and the key
    /// `key`, as the SQLite store bounds a newest-first page.
    fn window(
        &mut self,
        time: &str,
        key: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
    ) -> Result<(), StoreError> {
        if let Some(t) = since {
            let p = self.param(to_pg(t));
            self.and(format!("{time} >= {p}"));
        }
        if let Some(t) = until {
            let p = self.param(to_pg(t));
            self.and(format!("{time} <= {p}"));
        }
        if let Some(b) = before {
            let t = Timestamp::parse("cursor", &b.time).map_err(|e| corrupt("cursor", e))?;
            let t = self.param(to_pg(t));
            let id = self.param(b.id.clone());
            self.and(format!("{time} <= {t} AND ({time} < {t} OR {key} < {id})"));
        }
        Ok(())
    }

    fn sql_where(&self) -> String {
        if self.clauses.is_empty() {
            "true".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A box's edges as the first four parameters.
fn boxed(rect: [f64; 4]) -> Vec<Box<dyn ToSql + Sync>> {
    rect.into_iter()
        .map(|v| Box::new(v) as Box<dyn ToSql + Sync>)
        .collect()
}

fn limit(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

/// Reads [`ROW_COLUMNS`].
fn revision_row(r: &Row) -> Result<RevisionRow, StoreError> {
    let site_id: String = r.try_get(0)?;
    let feature = feature_in_order(r.try_get(7)?);
    let diff: Value = r.try_get(6)?;
    let diff = if diff.is_null() {
        serde_json::to_value(creation_diff(&feature)).map_err(|e| corrupt(&site_id, e))?
    } else {
        diff_in_order(diff)
    };
    Ok(RevisionRow {
        revision: r.try_get(1)?,
        recorded_at: from_pg(r.try_get(2)?),
        actor: r.try_get(3)?,
        reason: r.try_get(4)?,
        change: r.try_get(5)?,
        diff,
        feature,
        site_id,
    })
}

impl PgStore {
    fn revision_rows(&self, sql: &str, c: &Conditions) -> Result<Vec<RevisionRow>, StoreError> {
        self.client()
            .query(sql, &c.params())?
            .iter()
            .map(revision_row)
            .collect()
    }
}

impl HistoryReads for PgStore {
    fn sites_at_from(
        &self,
        t: Option<Timestamp>,
        retired: bool,
        after: Option<&SiteId>,
        limit_to: usize,
    ) -> Result<Vec<Arc<Site>>, StoreError> {
        let mut c = Conditions::default();
        let retired = c.param(retired);
        c.and(format!("(change = 'retired') = {retired}"));
        let at = match t {
            Some(t) => c.param(to_pg(t)),
            None => String::new(),
        };
        c.and(valid_at(t, &at));
        if let Some(after) = after {
            let p = c.param(after.as_str().to_owned());
            c.and(format!("site_id COLLATE \"C\" > {p}"));
        }
        let n = c.param(limit(limit_to));
        let sql = format!(
            "SELECT site_id, feature FROM site_revisions WHERE {}
             ORDER BY site_id COLLATE \"C\" LIMIT {n}",
            c.sql_where()
        );
        self.client()
            .query(&sql, &c.params())?
            .iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(Arc::new(parse_stored(&id, &r.try_get(1)?)?))
            })
            .collect()
    }

    fn site_known(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT EXISTS (SELECT 1 FROM sites WHERE id = $1)", &[&id])?
            .try_get(0)?)
    }

    /// Revisions recorded within `[since, until]` whose box meets the
    /// rectangle, newest first, after `before`, at most `limit`.
    fn revisions_in_area(
        &self,
        [w, s, e, n]: [f64; 4],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit_to: usize,
    ) -> Result<Vec<RevisionRow>, StoreError> {
        let mut c = Conditions::after(boxed([w, s, e, n]));
        c.and(MEETS_BOX.to_owned());
        c.window("recorded_at", KEY, since, until, before)?;
        let lim = c.param(limit(limit_to));
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM site_revisions WHERE {}
             ORDER BY recorded_at DESC, site_id COLLATE \"C\" DESC, revision DESC LIMIT {lim}",
            c.sql_where()
        );
        self.revision_rows(&sql, &c)
    }

    /// Revisions recorded within `[since, until]`, newest first, after
    /// `before`, at most `limit`; for one site only if `site` is given.
    fn revisions_between(
        &self,
        site: Option<&str>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit_to: usize,
    ) -> Result<Vec<RevisionRow>, StoreError> {
        let mut c = Conditions::default();
        if let Some(site) = site {
            let p = c.param(site.to_owned());
            c.and(format!("site_id = {p}"));
        }
        c.window("recorded_at", KEY, since, until, before)?;
        let lim = c.param(limit(limit_to));
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM site_revisions WHERE {}
             ORDER BY recorded_at DESC, site_id COLLATE \"C\" DESC, revision DESC LIMIT {lim}",
            c.sql_where()
        );
        self.revision_rows(&sql, &c)
    }

    /// Every revision of one site recorded within `[since, until]`, oldest
    /// first, as the SQLite store lists them.
    fn site_revisions_between(
        &self,
        site: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<RevisionRow>, StoreError> {
        let mut c = Conditions::default();
        let p = c.param(site.to_owned());
        c.and(format!("site_id = {p}"));
        c.window("recorded_at", KEY, since, until, None)?;
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM site_revisions WHERE {} ORDER BY revision",
            c.sql_where()
        );
        self.revision_rows(&sql, &c)
    }

    /// Candidates created within `[since, until]` inside the rectangle,
    /// newest first, after `before`, at most `limit`, each with its
    /// creation time as RFC 3339 text.
    fn candidate_ids_between(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit_to: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let [w, s, e, n] = rect.unwrap_or([-180.0, -90.0, 180.0, 90.0]);
        let mut c = Conditions::after(boxed([w, s, e, n]));
        c.and(
            "ST_X(position::geometry) BETWEEN $1 AND $3 AND ST_Y(position::geometry) BETWEEN $2 AND $4"
                .to_owned(),
        );
        c.window("created_at", "id COLLATE \"C\"", since, until, before)?;
        let lim = c.param(limit(limit_to));
        let sql = format!(
            "SELECT id, created_at FROM candidates WHERE {}
             ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT {lim}",
            c.sql_where()
        );
        self.client()
            .query(&sql, &c.params())?
            .iter()
            .map(|r| Ok::<_, StoreError>((r.try_get(0)?, from_pg(r.try_get(1)?).to_rfc3339())))
            .collect()
    }
}
