//! PostgreSQL with PostGIS, for teams that outgrow one file: the schema, made
//! and upgraded by sitewatch itself, and moving a SQLite catalogue into it with
//! its whole history. Footprints and observation geometries are stored as
//! `geography` with GiST indexes beside the GeoJSON they came from, so that the
//! tables answer PostGIS queries directly. Serving from these tables, and the
//! nodes that follow them, come next; nothing outside [`crate::store`] sees the
//! `postgres` crate.

mod backend;
mod boxes;
mod bulk;
mod candidates;
mod compare;
mod follow;
mod history;
mod observation_copy;
mod observations;
mod schema;
mod sites;
mod store;
mod tls;
mod transfer;
mod wkb;

/// A PostgreSQL cluster of its own for a unit test.
#[cfg(test)]
#[path = "../../../tests/support/pg_cluster.rs"]
mod pg_cluster;

pub use backend::PgBackend;
pub use compare::{Comparison, TableComparison, compare};
pub use follow::PgListener;
pub use schema::CURRENT_VERSION;
pub use store::PgStore;
pub use transfer::{Transferred, transfer};

use postgres::Client;

/// Why working with a PostgreSQL database failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("the PostgreSQL database has no PostGIS, and it cannot be created there: {0}")]
    NoPostgis(String),
    #[error(
        "the PostgreSQL database is at sitewatch schema version {found}, newer than this program's {known}; upgrade sitewatch"
    )]
    TooNew { found: i64, known: i64 },
    #[error(
        "the PostgreSQL database already holds a catalogue ({sites} sites); move into an empty one"
    )]
    NotEmpty { sites: i64 },
    #[error("{0} does not exist")]
    NoSource(std::path::PathBuf),
    #[error("the SQLite catalogue: {0}")]
    Source(#[from] crate::store::StoreError),
    #[error("the SQLite catalogue: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the SQLite catalogue is at schema version {found}; open it once with this version of sitewatch (it is upgraded to {want}) and move it then"
    )]
    SourceSchema { found: i64, want: i64 },
    #[error("{table}: {source_rows} rows in SQLite but {target_rows} in PostgreSQL after the move")]
    Disagree {
        table: String,
        source_rows: i64,
        target_rows: i64,
    },
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Postgres(describe(&e))
    }
}

/// The server's own message, with its detail, where there is one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        // The cause (a refused certificate, an unreachable host) is in the
        // error's source.
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Whether a `--db` value names a PostgreSQL database rather than a file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Connects to the database a URL or `key=value` connection string names,
/// over TLS as its `sslmode` and `sslrootcert` say (see `tls.rs`).
pub fn connect(url: &str) -> Result<Client, PgError> {
    tls::connect(url)
}

/// A connection string for logs and messages: the password left out.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((user, host)) => {
                let user = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_owned(),
        },
        None => url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_string_is_shown_without_its_password() {
        assert_eq!(
            redacted("postgres://ana:s3cret@db.example:5432/sites"),
            "postgres://ana@db.example:5432/sites"
        );
        assert_eq!(
            redacted("host=/tmp port=5433 password=s3cret user=ana"),
            "host=/tmp port=5433 user=ana"
        );
        assert_eq!(redacted("postgres://db/sites"), "postgres://db/sites");
    }

    #[test]
    fn only_postgres_urls_name_a_postgres_database() {
        assert!(is_postgres_url("postgres://h/db"));
        assert!(is_postgres_url("postgresql://h/db"));
        assert!(!is_postgres_url("sitewatch.db"));
        assert!(!is_postgres_url("/var/lib/postgres.db"));
    }
}
