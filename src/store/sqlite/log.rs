//! The change log: every committed write appends one entry, in commit order, in
//! the write's own transaction. The in-memory index, and later alerts, tiles
//! and other API nodes on a shared database, follow it by sequence number.

use super::SqliteStore;
use crate::store::{ChangeLogReads, LogEntry, LogKind, StoreError};
use rusqlite::{Transaction, params};

/// One entry as it is written.
pub(super) struct Entry<'a> {
    pub at: &'a str,
    pub kind: &'static str,
    pub site_id: Option<&'a str>,
    pub revision: Option<i64>,
    pub batch_id: Option<&'a str>,
    pub candidate_id: Option<&'a str>,
    /// `[west, south, east, north]` of what changed, if it has a place.
    pub bounds: Option<[f64; 4]>,
}

/// Appends an entry in the caller's transaction, so it commits with the write
/// it describes or not at all.
pub(super) fn append(tx: &Transaction, e: &Entry<'_>) -> Result<(), StoreError> {
    append_all(tx, std::slice::from_ref(e))
}

/// [`append`] for several entries, in their order, with one statement.
pub(super) fn append_all(tx: &Transaction, entries: &[Entry<'_>]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    // `OR ROLLBACK` spares a many-row statement its own journal (see the
    // bulk write of sites); an entry that cannot be written fails the whole
    // write either way.
    let sql = super::insert_rows(
        "INSERT OR ROLLBACK INTO change_log (at, kind, site_id, revision, batch_id, candidate_id, west, south, east, north)",
        entries.len(),
        |i| {
            let p = 1 + 10 * i;
            let list: Vec<String> = (p..p + 10).map(|n| format!("?{n}")).collect();
            format!("({})", list.join(", "))
        },
    );
    let bounds: Vec<[Option<f64>; 4]> = entries
        .iter()
        .map(|e| match e.bounds {
            Some([w, s, e, n]) => [Some(w), Some(s), Some(e), Some(n)],
            None => [None; 4],
        })
        .collect();
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(10 * entries.len());
    for (e, b) in entries.iter().zip(&bounds) {
        values.extend([
            &e.at as &dyn rusqlite::ToSql,
            &e.kind,
            &e.site_id,
            &e.revision,
            &e.batch_id,
            &e.candidate_id,
            &b[0],
            &b[1],
            &b[2],
            &b[3],
        ]);
    }
    tx.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(values))?;
    Ok(())
}

impl ChangeLogReads for SqliteStore {
    /// Entries after sequence number `after`, oldest first, at most `limit`.
    fn log_after(&self, after: i64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, kind, site_id, revision, batch_id, candidate_id, west, south, east, north
             FROM change_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            let kind: String = r.get(2)?;
            let bbox = match (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?) {
                (Some(w), Some(s), Some(e), Some(n)) => Some([w, s, e, n]),
                _ => None,
            };
            Ok(LogEntry {
                seq: r.get(0)?,
                at: r.get(1)?,
                kind: LogKind::parse(&kind).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Text,
                        format!("unknown change log kind {kind:?}").into(),
                    )
                })?,
                site_id: r.get(3)?,
                revision: r.get(4)?,
                batch_id: r.get(5)?,
                candidate_id: r.get(6)?,
                bbox,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The sequence number of the newest entry; 0 when the log is empty.
    fn log_head(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(seq), 0) FROM change_log", [], |r| {
                r.get(0)
            })?)
    }
}
