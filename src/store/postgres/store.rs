//! A catalogue served from PostgreSQL/PostGIS: [`PgStore`] is one connection
//! that implements the storage traits the SQLite store implements, on the
//! schema of [`super::schema`], with the same answers. Times cross as
//! `timestamptz` (whole microseconds, as [`Timestamp`] holds them), features as
//! `jsonb`, and each footprint also as `geography` for PostGIS users.
//!
//! The traits are synchronous, as SQLite's calls are: they run on the
//! server's blocking threads. The `postgres` crate gives exactly that over
//! `tokio-postgres`, driving each connection on a small runtime of its own.

use super::PgError;
use crate::model::Timestamp;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use postgres::Client;
use std::cell::{RefCell, RefMut};

/// One connection to a sitewatch catalogue in PostgreSQL.
pub struct PgStore {
    /// Always there until the store is dropped (see its `Drop`).
    client: RefCell<Option<Client>>,
}

impl PgStore {
    /// Connects and brings the schema up to date.
    pub fn connect(url: &str) -> Result<Self, PgError> {
        let mut client = super::connect(url)?;
        super::schema::migrate(&mut client)?;
        // Times are read back as UTC whatever the server's default zone.
        client.batch_execute("SET TIME ZONE 'UTC'")?;
        Ok(Self {
            client: RefCell::new(Some(client)),
        })
    }

    /// Connects to a database whose schema a writer has brought up to date.
    pub fn connect_reader(url: &str) -> Result<Self, PgError> {
        let mut client = super::connect(url)?;
        client.batch_execute("SET TIME ZONE 'UTC'")?;
        Ok(Self {
            client: RefCell::new(Some(client)),
        })
    }

    /// Whether the server has closed the connection, which is then not reused.
    pub(super) fn is_closed(&self) -> bool {
        self.client.borrow().as_ref().is_none_or(Client::is_closed)
    }

    /// The connection, for one call at a time: the traits take `&self` for
    /// reads, and a reader is used by one thread at a time.
    pub(super) fn client(&self) -> RefMut<'_, Client> {
        RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut()
                .expect("the connection is taken only when the store is dropped")
        })
    }

    /// The connection for a write, which holds the store exclusively and so
    /// needs no run-time borrow.
    pub(super) fn client_mut(&mut self) -> &mut Client {
        self.client
            .get_mut()
            .as_mut()
            .expect("the connection is taken only when the store is dropped")
    }
}

impl Drop for PgStore {
    /// The client says goodbye to the server by blocking on its own runtime,
    /// which panics on a thread that is driving one already (the server's
    /// workers, when the catalogue goes at shutdown). There it is closed on
    /// a thread of its own.
    fn drop(&mut self) {
        let Some(client) = self.client.get_mut().take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return drop(client);
        }
        let closing = std::thread::spawn(move || drop(client));
        let _ = closing.join();
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// A time as PostgreSQL takes it.
pub(super) fn to_pg(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.epoch_micros()).unwrap_or_default()
}

/// A time as PostgreSQL gives it back.
pub(super) fn from_pg(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_epoch_micros(t.timestamp_micros())
}
