//! The SQLite file as a [`Backend`]: one writer connection behind a lock, and
//! a pool of read-only connections that read the last commit without waiting
//! for the writer (WAL). An in-memory database has only the one connection.

use super::SqliteStore;
use crate::store::{Backend, Reader, Reads, StoreError, Writer, WriterGuard};
use std::ops::Deref;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Read-only connections kept idle for reuse; more may be open at once, and
/// those beyond this are closed when done. Enough for the reads a busy server
/// has in flight: a connection closed and opened again per request would read
/// the schema and prepare its statements anew each time.
const IDLE_READERS: usize = 32;

/// An open SQLite catalogue.
pub struct SqliteBackend {
    writer: Mutex<SqliteStore>,
    /// The database file, for read-only connections; `None` in memory, where
    /// reads share the writer's connection.
    file: Option<String>,
    idle: Mutex<Vec<SqliteStore>>,
}

impl SqliteBackend {
    pub fn new(store: SqliteStore) -> Self {
        Self {
            file: store.file(),
            writer: Mutex::new(store),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, SqliteStore> {
        // A panic while holding the lock cannot leave SQLite half-written (an
        // open transaction rolls back when dropped), so a poisoned lock is sound.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A store to read from: a pooled read-only connection, or the writer's own
/// connection for an in-memory catalogue.
enum Pooled<'a> {
    Reader(Option<SqliteStore>, &'a Mutex<Vec<SqliteStore>>),
    Writer(MutexGuard<'a, SqliteStore>),
}

impl Deref for Pooled<'_> {
    type Target = dyn Reads;

    fn deref(&self) -> &(dyn Reads + 'static) {
        match self {
            // The store is taken out only in `drop`.
            Pooled::Reader(store, _) => store.as_ref().unwrap_or_else(|| unreachable!()),
            Pooled::Writer(guard) => &**guard,
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Pooled::Reader(store, pool) = self
            && let Some(store) = store.take()
        {
            let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(store);
            }
        }
    }
}

impl Backend for SqliteBackend {
    fn reader(&self) -> Result<Reader<'_>, StoreError> {
        let Some(file) = &self.file else {
            return Ok(Box::new(Pooled::Writer(self.lock_writer())));
        };
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let store = match idle {
            Some(s) => s,
            None => SqliteStore::open_reader(file)?,
        };
        Ok(Box::new(Pooled::Reader(Some(store), &self.idle)))
    }

    fn writer(&self) -> Writer<'_> {
        Box::new(WriterGuard(self.lock_writer()))
    }

    fn location(&self) -> Option<String> {
        self.file.clone()
    }

    fn close_idle_readers(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
