//! A PostgreSQL database as a [`Backend`]: the one writer connection behind a
//! lock, as with SQLite, and a pool of read connections opened on demand.
//! PostgreSQL itself would let several writers in; one per node keeps the
//! writes of a node in the order its index applies them.

use super::{PgError, PgStore};
use crate::store::{Backend, Reader, Reads, StoreError, Writer, WriterGuard};
use std::ops::Deref;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Read connections kept idle for reuse. Each is a server process on the
/// database's side, so fewer than SQLite keeps; more may be open at once.
const IDLE_READERS: usize = 8;

/// An open catalogue in PostgreSQL.
pub struct PgBackend {
    url: String,
    writer: Mutex<PgStore>,
    idle: Mutex<Vec<PgStore>>,
}

impl PgBackend {
    /// Connects the writer, bringing the schema up to date.
    pub fn connect(url: &str) -> Result<Self, PgError> {
        Ok(Self {
            writer: Mutex::new(PgStore::connect(url)?),
            url: url.to_owned(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn lock_writer(&self) -> MutexGuard<'_, PgStore> {
        // An open transaction is rolled back when its connection drops it, so
        // a panic while holding the lock leaves nothing half-written.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A read connection, back to the pool when dropped.
struct Pooled<'a>(Option<PgStore>, &'a Mutex<Vec<PgStore>>);

impl Deref for Pooled<'_> {
    type Target = dyn Reads;

    fn deref(&self) -> &(dyn Reads + 'static) {
        // Taken out only in `drop`.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.0.take()
            && !store.is_closed()
        {
            let mut idle = self.1.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(store);
            }
        }
    }
}

impl Backend for PgBackend {
    fn reader(&self) -> Result<Reader<'_>, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let store = match idle {
            Some(s) => s,
            None => {
                PgStore::connect_reader(&self.url).map_err(|e| StoreError::Backend(Box::new(e)))?
            }
        };
        Ok(Box::new(Pooled(Some(store), &self.idle)))
    }

    fn writer(&self) -> Writer<'_> {
        Box::new(WriterGuard(self.lock_writer()))
    }

    fn location(&self) -> Option<String> {
        Some(super::redacted(&self.url))
    }

    fn close_idle_readers(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
