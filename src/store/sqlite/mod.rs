//! The embedded backend: one SQLite file, the default. Sites keep their current
//! state and every revision; nothing is overwritten or physically deleted. All
//! of its SQL lives here, and nothing outside [`crate::store`] sees `rusqlite`.

/// The tables a site's current feature is read from, for `concat!`: its row
/// in `sites` as `s`, joined by key to the revision the row names as `r`.
macro_rules! current_feature_from {
    () => {
        "sites s JOIN site_revisions r ON r.site_id = s.id AND r.revision = s.revision"
    };
}
pub(crate) use current_feature_from;

mod backend;
mod backup;
mod check;
mod history;
mod load;
mod log;
mod observations;
use super::packed;
mod rtree;
mod schema;
mod sites;

use crate::store::{Change, LogKind, Meta, Provenance, Revision, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

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

/// Refuses an existing empty file: SQLite would take it for a new database,
/// and the caller would seed a new catalogue over what was meant to be an old
/// one, dropping a `-wal` beside it.
fn refuse_empty(path: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == 0 => {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            Err(StoreError::EmptyFile {
                path: path.display().to_string(),
                wal_bytes: std::fs::metadata(wal).map_or(0, |m| m.len()),
            })
        }
        _ => Ok(()),
    }
}

/// Refuses a database the catalogue could not write: a file without write
/// permission (by its mode, which holds even for root, or because opening it
/// to write fails) or on a read-only file system, and a folder without write
/// permission, where SQLite cannot keep its `-wal` and `-shm` files.
fn refuse_read_only(path: &Path) -> Result<(), StoreError> {
    let read_only = |at: &Path, why: String| StoreError::ReadOnly {
        path: at.display().to_string(),
        why,
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.is_file()
    {
        if meta.permissions().readonly() {
            return Err(read_only(path, "the file has no write permission".into()));
        }
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(path)
            && matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            )
        {
            return Err(read_only(path, format!("opening it to write: {e}")));
        }
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if std::fs::metadata(folder).is_ok_and(|m| m.is_dir() && m.permissions().readonly()) {
        return Err(read_only(
            folder,
            "the folder has no write permission, and SQLite keeps the database's journal beside it"
                .into(),
        ));
    }
    Ok(())
}

/// An open catalogue database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to
    /// date. An existing empty file is refused rather than made a new
    /// catalogue, and one that cannot be written rather than opened to fail at
    /// every write.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        refuse_empty(path)?;
        refuse_read_only(path)?;
        let conn = Connection::open(path)?;
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Err(StoreError::ReadOnly {
                path: path.display().to_string(),
                why: "SQLite could open it only for reading".into(),
            });
        }
        Self::init(conn)
    }

    /// Opens an existing catalogue only to read it, even one that is
    /// read-only. Nothing is created. A schema from
    /// `schema::READABLE_FROM` on is read as it is, with a warning, and
    /// upgraded when next opened to write; an older one is an error, as the
    /// upgrade could not be written.
    pub fn open_to_read(path: &Path) -> Result<Self, StoreError> {
        refuse_empty(path)?;
        // Read-write and query-only, as `open_reader`: SQLite falls back to
        // reading alone where the file cannot be written.
        let mut conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let as_it_is = (schema::READABLE_FROM..schema::CURRENT_VERSION).contains(&found);
        if as_it_is {
            schema::read_as_current(&conn, found)?;
        }
        conn.pragma_update(None, "query_only", true)?;
        if as_it_is {
            tracing::warn!(
                found,
                current = schema::CURRENT_VERSION,
                "the database's schema is read as it is; it is upgraded when next opened to write"
            );
        } else {
            schema::migrate(&mut conn)?;
        }
        interrupt_when_late(&mut conn)?;
        Ok(Self { conn })
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

    /// The connection itself, for moving the catalogue to another backend.
    pub(in crate::store) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
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
        set_meta_in(&self.conn, key, value)
    }
}

/// Sets a meta value on a connection or inside a transaction.
fn set_meta_in(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// `head VALUES` followed by `rows` rows, the i-th written by `row(i)`:
/// one statement for many rows shares the fixed cost of a statement
/// (binding, starting, finishing) among them. A bulk write asks for the same
/// few texts thousands of times, so each is made once per thread; `row` must
/// therefore depend on nothing but `head` and `i`.
fn insert_rows(head: &str, rows: usize, row: impl Fn(usize) -> String) -> Rc<str> {
    thread_local! {
        static MADE: RefCell<HashMap<String, HashMap<usize, Rc<str>>>> = RefCell::default();
    }
    MADE.with_borrow_mut(|made| {
        if let Some(sql) = made.get(head).and_then(|by_rows| by_rows.get(&rows)) {
            return Rc::clone(sql);
        }
        let list: Vec<String> = (0..rows).map(row).collect();
        let sql: Rc<str> = format!("{head} VALUES {}", list.join(", ")).into();
        made.entry(head.to_owned())
            .or_default()
            .insert(rows, Rc::clone(&sql));
        sql
    })
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

    fn set_read_only(path: &Path, read_only: bool) {
        use std::os::unix::fs::PermissionsExt;
        let mode = match (path.is_dir(), read_only) {
            (true, true) => 0o555,
            (true, false) => 0o755,
            (false, true) => 0o444,
            (false, false) => 0o644,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn an_existing_empty_file_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::write(dir.path().join("c.db-wal"), [1u8; 32]).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::EmptyFile { wal_bytes: 32, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("holds 32 bytes"), "{err}");
        assert!(matches!(
            SqliteStore::open_to_read(&path).unwrap_err(),
            StoreError::EmptyFile { .. }
        ));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(
            std::fs::read(dir.path().join("c.db-wal")).unwrap(),
            [1u8; 32]
        );
    }

    #[test]
    fn a_read_only_file_of_a_recent_older_schema_is_read_as_it_is_and_an_old_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let version = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap()
        };
        for (schema, readable) in [
            (schema::READABLE_FROM, true),
            (schema::READABLE_FROM - 1, false),
        ] {
            let path = dir.path().join(format!("v{schema}.db"));
            schema::migrate_to(&mut Connection::open(&path).unwrap(), schema).unwrap();
            set_read_only(&path, true);
            let read = SqliteStore::open_to_read(&path).map(|s| s.site_count());
            set_read_only(&path, false);
            match read {
                Ok(count) => {
                    assert!(readable, "schema {schema} was read");
                    assert_eq!(count.unwrap(), 0);
                }
                Err(e) => assert!(!readable, "schema {schema}: {e}"),
            }
            assert_eq!(version(&path), schema, "nothing was written");
        }
    }

    #[test]
    fn a_read_only_file_or_folder_is_refused_for_writing_but_can_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(SqliteStore::open(&path).unwrap());
        set_read_only(&path, true);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::ReadOnly { path: p, .. } if *p == path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("is read-only"), "{err}");
        let reader = SqliteStore::open_to_read(&path).unwrap();
        assert_eq!(reader.site_count().unwrap(), 0);
        drop(reader);
        set_read_only(&path, false);

        set_read_only(dir.path(), true);
        let refused = SqliteStore::open(&path).map(drop);
        set_read_only(dir.path(), false);
        let err = refused.unwrap_err();
        assert!(
            matches!(&err, StoreError::ReadOnly { path: p, .. } if *p == dir.path().display().to_string()),
            "{err}"
        );
    }
}
