//! Moving a SQLite catalogue into PostgreSQL whole: every site with every
//! revision, the batches, observations and their links, the candidates, the
//! change log and the catalogue's own settings. The SQLite file is read in one
//! read transaction, so the copy is the catalogue as of one moment even while
//! a server writes to it; PostgreSQL receives everything in one transaction,
//! through binary `COPY` into staging tables, and commits only once each
//! table holds as many rows as SQLite did. A failure at any point leaves the
//! PostgreSQL database as it was.

use super::{PgError, schema};
use crate::store::StoreError;
use crate::store::sqlite::SqliteStore;
use postgres::Client;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::types::ValueRef;
use std::path::Path;

/// One table's move: what to read from SQLite, and how its rows, staged as
/// text, become PostgreSQL's (`cN` is the N-th column read).
struct Move {
    table: &'static str,
    read: &'static str,
    write: &'static str,
}

/// In the order foreign keys need.
const MOVES: &[Move] = &[
    Move {
        table: "sites",
        // A site's feature is its latest revision's; its packed form, where
        // SQLite keeps one (a live site's), goes along as hex.
        read: concat!(
            "SELECT s.id, s.revision, s.retired, r.feature, s.created_at, s.updated_at,
                    CASE WHEN s.packed IS NULL THEN NULL ELSE hex(s.packed) END FROM ",
            crate::store::sqlite::current_feature_from!()
        ),
        // The feature is parsed once (`OFFSET 0` keeps the planner from
        // folding the subquery, and the cast, into each use).
        write: "INSERT INTO sites (id, revision, retired, feature, footprint, created_at, updated_at,
                    packed)
                SELECT c1, c2::bigint, c3 = '1', f, ST_GeomFromGeoJSON(f -> 'geometry')::geography,
                       c5::timestamptz, c6::timestamptz, decode(c7, 'hex')
                FROM (SELECT *, c4::jsonb AS f FROM stage OFFSET 0) s",
    },
    Move {
        table: "site_revisions",
        read: "SELECT site_id, revision, recorded_at, valid_until, actor, reason, change, feature, diff
               FROM site_revisions",
        write: "INSERT INTO site_revisions (site_id, revision, recorded_at, valid_until, actor, reason,
                    change, feature, diff, footprint)
                SELECT c1, c2::bigint, c3::timestamptz, c4::timestamptz, c5, c6, c7, f,
                       c9::jsonb, ST_GeomFromGeoJSON(f -> 'geometry')::geography
                FROM (SELECT *, c8::jsonb AS f FROM stage OFFSET 0) s",
    },
    Move {
        table: "batches",
        read: "SELECT id, received_at, origin, content_hash, mode, stored, report FROM batches",
        write: "INSERT INTO batches (id, received_at, origin, content_hash, mode, stored, report)
                SELECT c1, c2::timestamptz, c3, c4, c5, c6 = '1', c7::jsonb FROM stage",
    },
    Move {
        table: "candidates",
        read: "SELECT id, created_at, batch_id, lon, lat, state, decided_at, site_id, note FROM candidates",
        write: "INSERT INTO candidates (id, created_at, batch_id, position, state, decided_at, site_id, note)
                SELECT c1, c2::timestamptz, c3,
                       ST_SetSRID(ST_MakePoint(c4::float8, c5::float8), 4326)::geography,
                       c6, c7::timestamptz, c8, c9 FROM stage",
    },
    Move {
        table: "observations",
        read: "SELECT id, batch_id, feature_index, observed_at, recorded_at, sensor, finding, confidence,
                      geometry, lon, lat, site_id, description, image_ref, source, external_id, matched,
                      candidate_id, cell, frontier
               FROM observations",
        write: "INSERT INTO observations (id, batch_id, feature_index, observed_at, recorded_at, sensor,
                    finding, confidence, geometry, anchor, site_id, description, image_ref, source,
                    external_id, matched, candidate_id, cell, frontier)
                SELECT c1, c2, c3::bigint, c4::timestamptz, c5::timestamptz, c6, c7, c8,
                       ST_GeomFromGeoJSON(c9)::geography,
                       ST_SetSRID(ST_MakePoint(c10::float8, c11::float8), 4326)::geography,
                       c12, c13, c14, c15, c16, c17 = '1', c18, c19::bigint, c20 = '1' FROM stage",
    },
    Move {
        table: "observation_sites",
        // Links written before they carried their time (schema 5) take the
        // observation's; looked up only for those.
        read: "SELECT s.observation_id, s.site_id, s.how, s.distance_m,
                      CASE WHEN s.observed_at = ''
                           THEN (SELECT o.observed_at FROM observations o WHERE o.id = s.observation_id)
                           ELSE s.observed_at END
               FROM observation_sites s",
        write: "INSERT INTO observation_sites (observation_id, site_id, how, distance_m, observed_at)
                SELECT c1, c2, c3, c4::float8, c5::timestamptz FROM stage",
    },
    Move {
        table: "site_observation_stats",
        read: "SELECT site_id, last_observed_at, count FROM site_observation_stats",
        write: "INSERT INTO site_observation_stats (site_id, last_observed_at, count)
                SELECT c1, c2::timestamptz, c3::bigint FROM stage",
    },
    Move {
        table: "change_log",
        read: "SELECT seq, at, kind, site_id, revision, batch_id, candidate_id, west, south, east, north
               FROM change_log",
        write: "INSERT INTO change_log (seq, at, kind, site_id, revision, batch_id, candidate_id,
                    west, south, east, north)
                SELECT c1::bigint, c2::timestamptz, c3, c4, c5::bigint, c6, c7, c8::float8,
                       c9::float8, c10::float8, c11::float8 FROM stage",
    },
    Move {
        table: "catalogue_meta",
        read: "SELECT key, value FROM meta",
        write: "INSERT INTO catalogue_meta (key, value) SELECT c1, c2 FROM stage",
    },
];

/// The tables a move fills, in the order it fills them.
#[cfg(test)]
pub(super) fn tables_moved() -> Vec<&'static str> {
    MOVES.iter().map(|m| m.table).collect()
}

/// What a move reads from SQLite for `table`.
pub(super) fn source_read(table: &str) -> Option<&'static str> {
    MOVES.iter().find(|m| m.table == table).map(|m| m.read)
}

/// What a move copied: rows per table, in the order moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Transferred {
    pub tables: Vec<(&'static str, i64)>,
}

/// Moves the SQLite catalogue at `from` into the PostgreSQL database `client`
/// is connected to, which must hold no catalogue yet.
pub fn transfer(from: &Path, client: &mut Client) -> Result<Transferred, PgError> {
    // Opening to write would create a missing file, and move an empty catalogue.
    if !from.is_file() {
        return Err(PgError::NoSource(from.to_owned()));
    }
    let mut store = match SqliteStore::open(from) {
        Err(StoreError::ReadOnly { .. }) => SqliteStore::open_to_read(from)?,
        other => other?,
    };
    let conn = store.connection();
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let want = crate::store::sqlite::CURRENT_VERSION;
    if found != want {
        return Err(PgError::SourceSchema { found, want });
    }
    schema::migrate(client)?;
    let source = conn.transaction()?;
    let mut tx = client.transaction()?;
    let held: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM sites) + (SELECT count(*) FROM batches)",
            &[],
        )?
        .get(0);
    if held > 0 {
        return Err(PgError::NotEmpty {
            sites: tx.query_one("SELECT count(*) FROM sites", &[])?.get(0),
        });
    }
    // Rows are checked against foreign keys and added to indexes one at a
    // time; into empty tables it is several times faster to load first and
    // then add the keys (checked in one pass each) and build the indexes.
    let deferred = set_aside_keys_and_indexes(&mut tx)?;
    let mut tables = Vec::new();
    for m in MOVES {
        let started = std::time::Instant::now();
        // The staging table has a text column per column read.
        let mut stmt = source.prepare(m.read)?;
        let columns = stmt.column_count();
        let staged: Vec<String> = (1..=columns).map(|i| format!("c{i} text")).collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE stage ({}) ON COMMIT DROP",
            staged.join(", ")
        ))?;
        let read = {
            let sink = tx.copy_in("COPY stage FROM STDIN (FORMAT binary)")?;
            let types = vec![Type::TEXT; columns];
            let mut writer = BinaryCopyInWriter::new(sink, &types);
            let mut rows = stmt.query([])?;
            let mut n = 0i64;
            let mut cells: Vec<Option<String>> = vec![None; columns];
            while let Some(row) = rows.next()? {
                for (i, cell) in cells.iter_mut().enumerate() {
                    *cell = as_text(row.get_ref(i)?);
                }
                let refs: Vec<&(dyn ToSql + Sync)> =
                    cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                writer.write(&refs)?;
                n += 1;
            }
            writer.finish()?;
            n
        };
        tx.batch_execute(m.write)?;
        tx.batch_execute("DROP TABLE stage")?;
        let moved: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", m.table), &[])?
            .get(0);
        if moved != read {
            return Err(PgError::Disagree {
                table: m.table.to_owned(),
                source_rows: read,
                target_rows: moved,
            });
        }
        tracing::info!(
            table = m.table,
            rows = moved,
            ms = started.elapsed().as_millis() as u64,
            "moved"
        );
        tables.push((m.table, moved));
    }
    let started = std::time::Instant::now();
    for definition in &deferred {
        tx.batch_execute(definition)?;
    }
    tracing::info!(
        statements = deferred.len(),
        ms = started.elapsed().as_millis() as u64,
        "foreign keys checked and indexes built"
    );
    tx.batch_execute(super::schema::observation_extent_from_rows!())?;
    // New entries continue the log where SQLite's left it.
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('change_log', 'seq'), max(seq))
         FROM change_log HAVING count(*) > 0",
    )?;
    tx.commit()?;
    drop(source);
    Ok(Transferred { tables })
}

/// Drops the foreign keys and the indexes (other than primary keys) of the
/// tables moved into, and returns the statements that make them again:
/// indexes first, then keys, which then find their indexes.
fn set_aside_keys_and_indexes(tx: &mut postgres::Transaction<'_>) -> Result<Vec<String>, PgError> {
    let tables: Vec<String> = MOVES.iter().map(|m| m.table.to_owned()).collect();
    let keys = tx.query(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
           FROM pg_constraint c
          WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY($1)",
        &[&tables],
    )?;
    let indexes = tx.query(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
           FROM pg_index i
          WHERE NOT i.indisprimary AND i.indrelid::regclass::text = ANY($1)",
        &[&tables],
    )?;
    let mut again = Vec::new();
    for k in &keys {
        let (table, name): (String, String) = (k.get(0), k.get(1));
        tx.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT \"{name}\""))?;
    }
    for i in &indexes {
        let (name, definition): (String, String) = (i.get(0), i.get(1));
        tx.batch_execute(&format!("DROP INDEX {name}"))?;
        again.push(definition);
    }
    for k in &keys {
        let (table, name, definition): (String, String, String) = (k.get(0), k.get(1), k.get(2));
        again.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT \"{name}\" {definition}"
        ));
    }
    Ok(again)
}

/// A SQLite value as the text PostgreSQL reads it back exactly from: reals in
/// their shortest form that parses to the same number.
pub(super) fn as_text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(hex::encode(b)),
    }
}
