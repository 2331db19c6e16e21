//! The SQLite schema as an ordered list of migrations, applied once each and
//! recorded in `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a
/// migration that has shipped; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: sites with their current state, and every revision ever recorded.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE sites (
        id         TEXT PRIMARY KEY,
        revision   INTEGER NOT NULL,
        retired    INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1)),
        feature    TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE site_revisions (
        site_id     TEXT NOT NULL REFERENCES sites(id),
        revision    INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        actor       TEXT NOT NULL,
        reason      TEXT,
        change      TEXT NOT NULL CHECK (change IN ('created', 'updated', 'retired', 'restored')),
        feature     TEXT NOT NULL,
        diff        TEXT NOT NULL,
        PRIMARY KEY (site_id, revision)
    ) STRICT;
    CREATE INDEX site_revisions_by_time ON site_revisions(recorded_at);",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "the database is at schema version {found}, newer than this program's {known}; upgrade sitewatch"
    )]
    TooNew { found: i64, known: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings the schema up to [`CURRENT_VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > CURRENT_VERSION {
        return Err(MigrationError::TooNew {
            found,
            known: CURRENT_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_leaves_the_schema_at_the_current_version() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT_VERSION);
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", CURRENT_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(MigrationError::TooNew { .. })
        ));
    }
}
