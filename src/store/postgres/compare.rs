//! Whether a SQLite catalogue and a PostgreSQL one hold the same record: every
//! table read from both sides in the same key order and compared row by row,
//! value by value, as values (times as instants, JSON as documents, numbers
//! as numbers), so that a difference in how each side writes a value is not
//! taken for a difference in the value. On the PostgreSQL side, the PostGIS
//! columns made from the GeoJSON are also checked against it.

use super::PgError;
use crate::model::Timestamp;
use crate::store::sqlite::SqliteStore;
use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use serde_json::Value;
use std::cmp::Ordering;
use std::path::Path;

/// How the two sides' texts of one column are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Int,
    Bool,
    Float,
    Time,
    Json,
    /// A GeoJSON geometry: PostGIS writes it back with at most nine decimals.
    Geometry,
}

use Kind::{Bool, Float, Geometry, Int, Json, Text, Time};

/// One table on both sides: the columns in the same order, named, the first
/// `key` of them the row's key, each side ordered by it bytewise. SQLite's
/// side is what the move reads, in the order `sqlite_order`. PostgreSQL
/// orders by the table's column where the list has one of that name written
/// as text, which would sort `10` before `9`.
struct Pair {
    table: &'static str,
    sqlite_order: &'static str,
    postgres: &'static str,
    columns: &'static [(&'static str, Kind)],
    key: usize,
}

/// A `timestamptz` column as RFC 3339 text in the session's time zone (UTC,
/// set by [`compare`]), the form SQLite holds times in. Written into each
/// statement: the transaction only reads, so it cannot make a function.
macro_rules! ts {
    ($column:literal) => {
        concat!("(to_json(", $column, ") #>> '{}')")
    };
}

const PAIRS: &[Pair] = &[
    Pair {
        table: "sites",
        sqlite_order: "id",
        postgres: concat!(
            "SELECT id, revision::text, retired::text, feature::text, ",
            ts!("created_at"),
            ", ",
            ts!("updated_at"),
            "
                   FROM sites ORDER BY id COLLATE \"C\""
        ),
        columns: &[("id", Text), ("revision", Int), ("retired", Bool), ("feature", Json), ("created_at", Time), ("updated_at", Time)],
        key: 1,
    },
    Pair {
        table: "site_revisions",
        sqlite_order: "site_id, revision",
        postgres: concat!(
            "SELECT site_id, revision::text, ",
            ts!("recorded_at"),
            ", ",
            ts!("valid_until"),
            ", actor, reason, change,
                          feature::text, diff::text
                   FROM site_revisions
                   ORDER BY site_revisions.site_id COLLATE \"C\", site_revisions.revision"
        ),
        columns: &[("site_id", Text), ("revision", Int), ("recorded_at", Time), ("valid_until", Time), ("actor", Text), ("reason", Text), ("change", Text), ("feature", Json), ("diff", Json)],
        key: 2,
    },
    Pair {
        table: "batches",
        sqlite_order: "id",
        postgres: concat!(
            "SELECT id, ",
            ts!("received_at"),
            ", origin, content_hash, mode, stored::text, report::text
                   FROM batches ORDER BY id COLLATE \"C\""
        ),
        columns: &[("id", Text), ("received_at", Time), ("origin", Text), ("content_hash", Text), ("mode", Text), ("stored", Bool), ("report", Json)],
        key: 1,
    },
    Pair {
        table: "candidates",
        sqlite_order: "id",
        postgres: concat!(
            "SELECT id, ",
            ts!("created_at"),
            ", batch_id, ST_X(position::geometry)::text,
                          ST_Y(position::geometry)::text, state, ",
            ts!("decided_at"),
            ", site_id, note
                   FROM candidates ORDER BY id COLLATE \"C\""
        ),
        columns: &[("id", Text), ("created_at", Time), ("batch_id", Text), ("lon", Float), ("lat", Float), ("state", Text), ("decided_at", Time), ("site_id", Text), ("note", Text)],
        key: 1,
    },
    Pair {
        table: "observations",
        sqlite_order: "id",
        postgres: concat!(
            "SELECT id, batch_id, feature_index::text, ",
            ts!("observed_at"),
            ", ",
            ts!("recorded_at"),
            ", sensor,
                          finding, confidence, ST_AsGeoJSON(geometry::geometry),
                          ST_X(anchor::geometry)::text, ST_Y(anchor::geometry)::text, site_id,
                          description, image_ref, source, external_id, matched::text, candidate_id,
                          cell::text, frontier::text
                   FROM observations ORDER BY id COLLATE \"C\""
        ),
        columns: &[("id", Text), ("batch_id", Text), ("feature_index", Int), ("observed_at", Time), ("recorded_at", Time), ("sensor", Text), ("finding", Text), ("confidence", Text), ("geometry", Geometry), ("lon", Float), ("lat", Float), ("site_id", Text), ("description", Text), ("image_ref", Text), ("source", Text), ("external_id", Text), ("matched", Bool), ("candidate_id", Text), ("cell", Int), ("frontier", Bool)],
        key: 1,
    },
    Pair {
        table: "observation_sites",
        sqlite_order: "s.observation_id, s.site_id",
        postgres: concat!(
            "SELECT observation_id, site_id, how, distance_m::text, ",
            ts!("observed_at"),
            "
                   FROM observation_sites ORDER BY observation_id COLLATE \"C\", site_id COLLATE \"C\""
        ),
        columns: &[("observation_id", Text), ("site_id", Text), ("how", Text), ("distance_m", Float), ("observed_at", Time)],
        key: 2,
    },
    Pair {
        table: "site_observation_stats",
        sqlite_order: "site_id",
        postgres: concat!(
            "SELECT site_id, ",
            ts!("last_observed_at"),
            ", count::text FROM site_observation_stats
                   ORDER BY site_id COLLATE \"C\""
        ),
        columns: &[("site_id", Text), ("last_observed_at", Time), ("count", Int)],
        key: 1,
    },
    Pair {
        table: "change_log",
        sqlite_order: "change_log.seq",
        postgres: concat!(
            "SELECT seq::text, ",
            ts!("at"),
            ", kind, site_id, revision::text, batch_id, candidate_id,
                          west::text, south::text, east::text, north::text
                   FROM change_log ORDER BY change_log.seq"
        ),
        columns: &[("seq", Int), ("at", Time), ("kind", Text), ("site_id", Text), ("revision", Int), ("batch_id", Text), ("candidate_id", Text), ("west", Float), ("south", Float), ("east", Float), ("north", Float)],
        key: 1,
    },
    Pair {
        table: "catalogue_meta",
        sqlite_order: "key",
        postgres: "SELECT key, value FROM catalogue_meta ORDER BY key COLLATE \"C\"",
        columns: &[("key", Text), ("value", Text)],
        key: 1,
    },
];

/// Rows of a PostGIS column that do not hold the geometry of the GeoJSON it
/// was made from: counted per table.
const DERIVED: &[(&str, &str)] = &[
    (
        "sites.footprint",
        "SELECT id FROM sites
         WHERE ST_AsBinary(footprint) <> ST_AsBinary(ST_GeomFromGeoJSON(feature -> 'geometry')::geography)
         ORDER BY id COLLATE \"C\"",
    ),
    (
        "site_revisions.footprint",
        "SELECT site_id || ', ' || revision FROM site_revisions
         WHERE ST_AsBinary(footprint) <> ST_AsBinary(ST_GeomFromGeoJSON(feature -> 'geometry')::geography)
         ORDER BY site_id COLLATE \"C\", revision",
    ),
];

/// What is kept of the differences in one table: the first few, and a count.
const KEPT: usize = 20;

/// One table's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct TableComparison {
    pub table: &'static str,
    /// Rows read from SQLite and from PostgreSQL; `None` for a PostGIS
    /// column checked against the GeoJSON beside it.
    pub rows: Option<(u64, u64)>,
    /// The first differences, each `(key, what)`.
    pub differences: Vec<(String, String)>,
    /// Every difference, kept or not.
    pub differing: u64,
}

/// Both sides, table by table.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub tables: Vec<TableComparison>,
}

impl TableComparison {
    fn new(table: &'static str, rows: Option<(u64, u64)>) -> Self {
        Self {
            table,
            rows,
            differences: Vec::new(),
            differing: 0,
        }
    }
}

impl Comparison {
    pub fn agrees(&self) -> bool {
        self.tables.iter().all(|t| t.differing == 0)
    }

    /// A line per table, then the differences kept.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            let verdict = if t.differing == 0 {
                "agree".to_owned()
            } else {
                format!("{} difference(s)", t.differing)
            };
            out.push_str(&match t.rows {
                Some((here, there)) => format!(
                    "{}: {here} rows in SQLite, {there} in PostgreSQL: {verdict}\n",
                    t.table
                ),
                None if t.differing == 0 => {
                    format!("{}: the feature's geometry in every row\n", t.table)
                }
                None => format!(
                    "{}: {} row(s) not the feature's geometry\n",
                    t.table, t.differing
                ),
            });
            for (key, what) in &t.differences {
                out.push_str(&format!("  {} {key}: {what}\n", t.table));
            }
            if t.differing > t.differences.len() as u64 {
                out.push_str(&format!(
                    "  ... and {} more\n",
                    t.differing - t.differences.len() as u64
                ));
            }
        }
        out
    }
}

/// Compares the catalogue in the SQLite file `file` with the one in the
/// PostgreSQL database `client` is connected to. Each side is read in one
/// transaction, so each is compared as of one moment.
pub fn compare(file: &Path, client: &mut Client) -> Result<Comparison, PgError> {
    if !file.is_file() {
        return Err(PgError::NoSource(file.to_owned()));
    }
    let mut store = SqliteStore::open_to_read(file)?;
    let conn = store.connection();
    let source = conn.transaction()?;
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()?;
    // Times are written in UTC and RFC 3339 whatever the session's settings.
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'")?;
    let mut tables = Vec::new();
    for pair in PAIRS {
        let read = super::transfer::source_read(pair.table).unwrap_or_default();
        let mut left = source.prepare(&format!("{read} ORDER BY {}", pair.sqlite_order))?;
        let mut left_rows = left.query([])?;
        let mut right_rows = tx.query_raw(pair.postgres, no_params())?;
        let mut t = TableComparison::new(pair.table, None);
        let mut rows = (0, 0);
        let mut next_left = || -> Result<Option<Vec<Option<String>>>, PgError> {
            Ok(match left_rows.next()? {
                Some(row) => Some(
                    (0..pair.columns.len())
                        .map(|i| row.get_ref(i).map(text))
                        .collect::<Result<_, _>>()?,
                ),
                None => None,
            })
        };
        let mut next_right = || -> Result<Option<Vec<Option<String>>>, PgError> {
            match right_rows.next()? {
                Some(row) => Ok(Some(
                    (0..pair.columns.len())
                        .map(|i| row.try_get(i))
                        .collect::<Result<_, _>>()?,
                )),
                None => Ok(None),
            }
        };
        let (mut l, mut r) = (next_left()?, next_right()?);
        loop {
            let order = match (&l, &r) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => compare_keys(&a[..pair.key], &b[..pair.key], pair.columns),
            };
            match order {
                Ordering::Less => {
                    note(
                        &mut t,
                        key_of(l.as_deref(), pair.key),
                        "only in SQLite".into(),
                    );
                    rows.0 += 1;
                    l = next_left()?;
                }
                Ordering::Greater => {
                    note(
                        &mut t,
                        key_of(r.as_deref(), pair.key),
                        "only in PostgreSQL".into(),
                    );
                    rows.1 += 1;
                    r = next_right()?;
                }
                Ordering::Equal => {
                    let (a, b) = (
                        l.as_deref().unwrap_or_default(),
                        r.as_deref().unwrap_or_default(),
                    );
                    let differing: Vec<&str> = pair
                        .columns
                        .iter()
                        .zip(a.iter().zip(b))
                        .filter(|((_, kind), (a, b))| !same(*kind, a.as_deref(), b.as_deref()))
                        .map(|((name, _), _)| *name)
                        .collect();
                    if !differing.is_empty() {
                        note(
                            &mut t,
                            key_of(Some(a), pair.key),
                            format!("{} differ(s)", differing.join(", ")),
                        );
                    }
                    rows.0 += 1;
                    rows.1 += 1;
                    l = next_left()?;
                    r = next_right()?;
                }
            }
        }
        t.rows = Some(rows);
        tables.push(t);
    }
    for (column, sql) in DERIVED {
        let mut rows = tx.query_raw(*sql, no_params())?;
        let mut t = TableComparison::new(column, None);
        while let Some(row) = rows.next()? {
            note(
                &mut t,
                row.get::<_, String>(0),
                "the PostGIS column does not hold the feature's geometry".into(),
            );
        }
        tables.push(t);
    }
    tx.commit()?;
    drop(source);
    Ok(Comparison { tables })
}

fn no_params() -> std::iter::Empty<&'static (dyn postgres::types::ToSql + Sync)> {
    std::iter::empty()
}

fn note(t: &mut TableComparison, key: String, what: String) {
    t.differing += 1;
    if t.differences.len() < KEPT {
        t.differences.push((key, what));
    }
}

fn key_of(row: Option<&[Option<String>]>, key: usize) -> String {
    row.map(|r| {
        r[..key]
            .iter()
            .map(|c| c.as_deref().unwrap_or("null"))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// The keys of two rows in the order both sides were read: integers as
/// numbers, text bytewise (SQLite's BINARY and PostgreSQL's "C").
fn compare_keys(a: &[Option<String>], b: &[Option<String>], columns: &[(&str, Kind)]) -> Ordering {
    a.iter()
        .zip(b)
        .zip(columns)
        .map(|((a, b), (_, kind))| match kind {
            Int => {
                let n = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<i64>().ok());
                n(a).cmp(&n(b))
            }
            _ => a
                .as_deref()
                .map(str::as_bytes)
                .cmp(&b.as_deref().map(str::as_bytes)),
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Whether the two sides' texts of a value are the same value.
fn same(kind: Kind, a: Option<&str>, b: Option<&str>) -> bool {
    let (a, b) = match (a, b) {
        (None, None) => return true,
        (Some(a), Some(b)) => (a, b),
        _ => return false,
    };
    match kind {
        Text => a == b,
        Int => a.parse::<i64>().ok() == b.parse::<i64>().ok() && a.parse::<i64>().is_ok(),
        Bool => truth(a).is_some() && truth(a) == truth(b),
        Float => a.parse::<f64>().ok() == b.parse::<f64>().ok() && a.parse::<f64>().is_ok(),
        Time => match (Timestamp::parse("", a), Timestamp::parse("", b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        Json => match (
            serde_json::from_str::<Value>(a),
            serde_json::from_str::<Value>(b),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        Geometry => match (
            serde_json::from_str::<Value>(a),
            serde_json::from_str::<Value>(b),
        ) {
            (Ok(a), Ok(b)) => {
                near(&a["type"], &b["type"]) && near(&a["coordinates"], &b["coordinates"])
            }
            _ => false,
        },
    }
}

fn truth(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Equal, numbers within the billionth of a degree PostGIS writes them to.
fn near(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| near(a, b))
        }
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9,
            _ => false,
        },
        _ => a == b,
    }
}

/// A SQLite value as text, the way the move staged it.
fn text(v: ValueRef<'_>) -> Option<String> {
    super::transfer::as_text(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_written_differently_by_each_side_are_the_same_value() {
        assert!(same(
            Time,
            Some("2026-11-30T21:49:32.4636Z"),
            Some("2026-11-30T21:49:32.463600+00:00")
        ));
        assert!(!same(
            Time,
            Some("2026-11-30T21:49:32Z"),
            Some("2026-11-30T21:49:33+00:00")
        ));
        assert!(same(Bool, Some("1"), Some("true")));
        assert!(!same(Bool, Some("0"), Some("true")));
        assert!(same(Float, Some("0.00001"), Some("1e-05")));
        assert!(same(
            Json,
            Some(r#"{"b":1,"a":[1.5,"x"]}"#),
            Some(r#"{"a": [1.5, "x"], "b": 1}"#)
        ));
        assert!(!same(Json, Some(r#"{"a":1}"#), Some(r#"{"a":2}"#)));
        assert!(same(
            Geometry,
            Some(r#"{"type":"Point","coordinates":[61.93247471234,28.5]}"#),
            Some(r#"{"type":"Point","coordinates":[61.932474712,28.5]}"#)
        ));
        assert!(!same(
            Geometry,
            Some(r#"{"type":"Point","coordinates":[61.9,28.5]}"#),
            Some(r#"{"type":"Point","coordinates":[61.8,28.5]}"#)
        ));
        assert!(same(Text, None, None));
        assert!(!same(Text, Some(""), None));
    }

    #[test]
    fn keys_are_ordered_as_both_sides_order_them() {
        let k = |a: &str, n: &str| vec![Some(a.to_owned()), Some(n.to_owned())];
        let columns = [("id", Text), ("revision", Int)];
        assert_eq!(
            compare_keys(&k("a", "9"), &k("a", "10"), &columns),
            Ordering::Less
        );
        assert_eq!(
            compare_keys(&k("B", "1"), &k("a", "1"), &columns),
            Ordering::Less
        );
        assert_eq!(
            compare_keys(&k("a", "1"), &k("a", "1"), &columns),
            Ordering::Equal
        );
    }

    #[test]
    fn every_table_moved_is_compared() {
        let compared: Vec<&str> = PAIRS.iter().map(|p| p.table).collect();
        assert_eq!(compared, super::super::transfer::tables_moved());
    }
}
