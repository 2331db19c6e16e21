//! A PostgreSQL database as a [`Backend`]: the one writer connection behind a
//! lock, as with SQLite, and a pool of read connections opened on demand.
//! PostgreSQL itself would let several writers in; one per node keeps the
//! writes of a node in the order its index applies them. Reads may go to a
//! hot standby instead of the primary (`--db-read`).

use super::{PgError, PgListener, PgStore};
use crate::store::{Backend, Reader, Reads, ReplicaState, StoreError, Wakeup, Writer, WriterGuard};
use std::ops::Deref;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Read connections kept idle for reuse. Each is a server process on the
/// database's side, so fewer than SQLite keeps; more may be open at once.
const IDLE_READERS: usize = 8;

/// An open catalogue in PostgreSQL.
pub struct PgBackend {
    url: String,
    /// Where reads go, when not to `url`.
    read_url: Option<String>,
    writer: Mutex<PgStore>,
    idle: Mutex<Vec<PgStore>>,
}

impl PgBackend {
    /// Connects the writer, bringing the schema up to date.
    pub fn connect(url: &str) -> Result<Self, PgError> {
        Ok(Self {
            writer: Mutex::new(PgStore::connect(url)?),
            url: url.to_owned(),
            read_url: None,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// As [`PgBackend::connect`], with reads sent to `read_url`: a streaming
    /// standby of the primary at `url`. One reader is opened now, so that a
    /// standby that cannot be reached is said at start, not at the first
    /// request.
    pub fn connect_with_reads(url: &str, read_url: &str) -> Result<Self, PgError> {
        let backend = Self {
            read_url: Some(read_url.to_owned()),
            ..Self::connect(url)?
        };
        let first = PgStore::connect_reader(read_url)?;
        backend
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(first);
        Ok(backend)
    }

    fn lock_writer(&self) -> MutexGuard<'_, PgStore> {
        // An open transaction is rolled back when its connection drops it, so
        // a panic while holding the lock leaves nothing half-written.
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // A connection the server closed (a restart, a failover) is made
        // again; the write that found it closed has failed whole.
        if writer.is_closed() {
            match PgStore::connect_reader(&self.url) {
                Ok(store) => {
                    tracing::info!(db = %super::redacted(&self.url), "writer connection made again");
                    *writer = store;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "writer connection lost; trying again at the next write")
                }
            }
        }
        writer
    }

    fn reads_from(&self) -> &str {
        self.read_url.as_deref().unwrap_or(&self.url)
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
            None => PgStore::connect_reader(self.reads_from())
                .map_err(|e| StoreError::Backend(Box::new(e)))?,
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

    fn listen(&self) -> Option<Result<Box<dyn Wakeup>, StoreError>> {
        // The primary's commits, whatever reads go to.
        Some(PgListener::connect(&self.url).map(|l| Box::new(l) as Box<dyn Wakeup>))
    }

    fn read_replica(&self) -> Option<Result<ReplicaState, StoreError>> {
        let url = self.read_url.as_deref()?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let store = match idle {
            Some(s) => s,
            None => match PgStore::connect_reader(url) {
                Ok(s) => s,
                Err(e) => return Some(Err(StoreError::Backend(Box::new(e)))),
            },
        };
        let state = store.replica_state(super::redacted(url));
        drop(Pooled(Some(store), &self.idle));
        Some(state)
    }
}
