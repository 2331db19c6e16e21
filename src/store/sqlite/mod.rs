//! The embedded backend: one SQLite file, the default. Sites keep their current
//! state and every revision; nothing is overwritten or physically deleted. All
//! of its SQL lives here, and nothing outside [`crate::store`] sees `rusqlite`.

mod backend;
mod backup;
mod check;
mod history;
mod load;
mod log;
mod observations;
mod packed;
mod schema;
mod sites;

use crate::store::{Change, LogKind, Meta, Provenance, Revision, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

pub use backend::SqliteBackend;
pub use backup::{BackupError, BackupReport, backup};
pub use check::{CheckError, Inspection, Problem, inspect};
pub use observations::BatchTx;
pub use schema::{CURRENT_VERSION, MigrationError};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                StoreError::Interrupted
            }
            e => StoreError::Backend(Box::new(e)),
        }
    }
}

impl From<MigrationError> for StoreError {
    fn from(e: MigrationError) -> Self {
        StoreError::Migration(Box::new(e))
    }
}

/// How many SQLite virtual-machine steps pass between checks of the deadline:
/// a few microseconds of work, so a statement stops promptly once it is late.
const DEADLINE_CHECK_STEPS: i32 = 10_000;

/// Makes every statement on `conn` stop with an interruption once the
/// deadline of the work it runs for has passed.
fn interrupt_when_late(conn: &mut Connection) -> Result<(), StoreError> {
    conn.progress_handler(DEADLINE_CHECK_STEPS, Some(crate::deadline::expired))?;
    Ok(())
}

/// An open catalogue database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A connection to an existing catalogue file that only reads. Under WAL it
    /// sees the last commit and never waits for the writer, so reads go on while
    /// a batch imports.
    pub fn open_reader(path: &str) -> Result<Self, StoreError> {
        // Opened read-write and made query-only, rather than opened read-only: a
        // read-only connection cannot map the WAL index for writing, and SQLite
        // then rebuilds it, and the schema, at every read transaction.
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "query_only", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut conn = conn;
        interrupt_when_late(&mut conn)?;
        Ok(Self { conn })
    }

    /// The file this store reads and writes; `None` in memory.
    pub fn file(&self) -> Option<String> {
        self.conn
            .path()
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        // WAL lets readers run beside the writer; FULL sync makes each commit
        // durable before it is acknowledged.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&mut conn)?;
        interrupt_when_late(&mut conn)?;
        Ok(Self { conn })
    }
}

impl Meta for SqliteStore {
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SiteReads;
    use std::time::{Duration, Instant};

    /// A statement that never ends by itself: only an interruption stops it.
    const RUNAWAY: &str =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

    #[test]
    fn a_runaway_statement_is_interrupted_once_its_deadline_passes() {
        let store = SqliteStore::open_in_memory().unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        let err = crate::deadline::run_until(Some(soon), || {
            store
                .conn
                .query_row(RUNAWAY, [], |r| r.get::<_, i64>(0))
                .map_err(StoreError::from)
        })
        .unwrap_err();
        assert!(err.is_interrupted(), "{err}");
        assert!(Instant::now() >= soon);
        // The connection serves the next statement as usual.
        assert_eq!(store.site_count().unwrap(), 0);
    }

    #[test]
    fn a_reader_connection_is_interrupted_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(SqliteStore::open(&path).unwrap());
        let reader = SqliteStore::open_reader(path.to_str().unwrap()).unwrap();
        let err = crate::deadline::run_until(Some(Instant::now()), || {
            reader
                .conn
                .query_row(RUNAWAY, [], |r| r.get::<_, i64>(0))
                .map_err(StoreError::from)
        })
        .unwrap_err();
        assert!(err.is_interrupted(), "{err}");
    }
}
