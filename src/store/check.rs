//! Verifying a database file without changing it: SQLite's own integrity and
//! foreign-key checks, then what sitewatch promises on top (complete revision
//! chains, current rows that parse, observations that point somewhere real).

use super::Change;
use super::schema::CURRENT_VERSION;
use super::sites::parse_stored;
use crate::model::{Site, Timestamp};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why a database could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{path} cannot be opened: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// One thing wrong with a database. Each names what it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("integrity_check: {0}")]
    Integrity(String),
    #[error("foreign key: row {rowid} of {table} points at a missing row of {parent}")]
    ForeignKey {
        table: String,
        rowid: i64,
        parent: String,
    },
    #[error("schema version {found} is not one this program knows (1 to {known})")]
    UnknownSchema { found: i64, known: i64 },
    #[error("site {id}: {reason}")]
    Site { id: String, reason: String },
    #[error("site {id} revision {revision}: {reason}")]
    Revision {
        id: String,
        revision: i64,
        reason: String,
    },
    #[error("observation {id}: {reason}")]
    Observation { id: String, reason: String },
    #[error("batch {id}: {reason}")]
    Batch { id: String, reason: String },
    #[error("a check could not run: {0}")]
    Unreadable(String),
}

/// What [`inspect`] found: the problems, and the live sites it read, for the
/// caller's own checks (the index is built from them).
#[derive(Debug, Default)]
pub struct Inspection {
    pub problems: Vec<Problem>,
    pub schema_version: i64,
    /// Sites whose current row is not retired and parsed, in id order.
    pub live_sites: Vec<Site>,
    pub sites: usize,
    pub revisions: usize,
    pub batches: usize,
    pub observations: usize,
}

/// Checks the database at `path` inside one read transaction, so a server
/// writing meanwhile does not make it see a half-done write. It never creates,
/// migrates or writes to the database. Returns `Err` only when the file cannot
/// be opened at all; everything wrong inside it is a [`Problem`].
pub fn inspect(path: &Path) -> Result<Inspection, CheckError> {
    let open_error = |source| CheckError::Open {
        path: path.to_owned(),
        source,
    };
    let mut conn = open_query_only(path)
        .map_err(open_error)?
        .ok_or_else(|| CheckError::Missing(path.to_owned()))?;
    let tx = conn.transaction().map_err(open_error)?;
    let mut out = Inspection::default();
    let run = |check: fn(&Connection, &mut Inspection) -> rusqlite::Result<()>,
               out: &mut Inspection| {
        if let Err(e) = check(&tx, out) {
            out.problems.push(Problem::Unreadable(e.to_string()));
        }
    };
    run(integrity, &mut out);
    run(foreign_keys, &mut out);
    run(schema_version, &mut out);
    if (1..=CURRENT_VERSION).contains(&out.schema_version) {
        run(sites_and_revisions, &mut out);
        if out.schema_version >= 2 {
            run(observations, &mut out);
        }
    }
    Ok(out)
}

/// Opens an existing database for reading only; `None` if there is no file.
/// It is opened read-write but with `query_only` set, rather than read-only,
/// so that closing the last connection still tidies away the `-wal` and `-shm`
/// files as any other SQLite program would.
pub(super) fn open_query_only(path: &Path) -> rusqlite::Result<Option<Connection>> {
    if !path.is_file() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "query_only", true)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(Some(conn))
}

fn integrity(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for row in rows {
        let line = row?;
        if line != "ok" {
            out.problems.push(Problem::Integrity(line));
        }
    }
    Ok(())
}

fn foreign_keys(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |r| {
        Ok(Problem::ForeignKey {
            table: r.get(0)?,
            rowid: r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
            parent: r.get(2)?,
        })
    })?;
    for row in rows {
        out.problems.push(row?);
    }
    Ok(())
}

fn schema_version(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    out.schema_version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if !(1..=CURRENT_VERSION).contains(&out.schema_version) {
        out.problems.push(Problem::UnknownSchema {
            found: out.schema_version,
            known: CURRENT_VERSION,
        });
    }
    Ok(())
}

/// A `site_revisions` row, as much of it as the chain checks need.
struct ChainLink {
    revision: i64,
    recorded_at: String,
    change: String,
    feature: String,
}

/// Each site's revisions must run 1, 2, ... n with no gap, begin with its
/// creation, move forward in time, and end in the state its `sites` row holds:
/// `as_of` reads and the history both rely on it.
fn sites_and_revisions(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut sites = conn.prepare(
        "SELECT id, revision, retired, feature, created_at, updated_at FROM sites ORDER BY id",
    )?;
    let mut chain = conn.prepare(
        "SELECT revision, recorded_at, change, feature FROM site_revisions
         WHERE site_id = ?1 ORDER BY revision",
    )?;
    let rows = sites.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)? != 0,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (id, revision, retired, feature, created_at, updated_at) = row?;
        out.sites += 1;
        let site_problem = |reason: String| Problem::Site {
            id: id.clone(),
            reason,
        };
        match parse_stored(&id, &feature) {
            Ok(site) if site.id.as_str() != id => out.problems.push(site_problem(format!(
                "the stored feature has id {}",
                site.id
            ))),
            Ok(site) if !retired => out.live_sites.push(site),
            Ok(_) => {}
            Err(e) => out.problems.push(site_problem(e.to_string())),
        }
        let links = chain
            .query_map([&id], |r| {
                Ok(ChainLink {
                    revision: r.get(0)?,
                    recorded_at: r.get(1)?,
                    change: r.get(2)?,
                    feature: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.revisions += links.len();
        let Some(last) = links.last() else {
            out.problems
                .push(site_problem("has no revisions".to_string()));
            continue;
        };
        let mut problems = chain_problems(&id, &links);
        if last.revision != revision {
            problems.push(site_problem(format!(
                "the current row says revision {revision}, the latest recorded is {}",
                last.revision
            )));
        }
        if last.feature != feature {
            problems.push(site_problem(format!(
                "the current feature differs from revision {}'s",
                last.revision
            )));
        }
        if retired != (last.change == Change::Retired.as_str()) {
            problems.push(site_problem(format!(
                "the current row says retired = {retired}, revision {} was {}",
                last.revision, last.change
            )));
        }
        if links[0].recorded_at != created_at || last.recorded_at != updated_at {
            problems.push(site_problem(
                "created_at and updated_at do not match the first and latest revisions".to_string(),
            ));
        }
        out.problems.extend(problems);
    }
    Ok(())
}

/// The problems in one site's revisions, read in revision order.
fn chain_problems(id: &str, links: &[ChainLink]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut say = |revision: i64, reason: String| {
        problems.push(Problem::Revision {
            id: id.to_owned(),
            revision,
            reason,
        })
    };
    let mut was_retired = false;
    for (i, link) in links.iter().enumerate() {
        let expected = i as i64 + 1;
        if link.revision != expected {
            say(
                link.revision,
                format!("expected revision {expected}: the chain has a gap"),
            );
        }
        if Timestamp::parse("recorded_at", &link.recorded_at).is_err() {
            say(
                link.revision,
                format!("recorded_at {:?} is not an RFC 3339 time", link.recorded_at),
            );
        }
        if let Some(prev) = i.checked_sub(1).map(|p| &links[p])
            && link.recorded_at < prev.recorded_at
        {
            say(
                link.revision,
                format!(
                    "recorded at {}, before revision {} at {}",
                    link.recorded_at, prev.revision, prev.recorded_at
                ),
            );
        }
        let change = Change::parse(&link.change);
        let fits = match change {
            Some(Change::Created) => i == 0,
            Some(Change::Updated) | Some(Change::Retired) => i > 0 && !was_retired,
            Some(Change::Restored) => was_retired,
            None => false,
        };
        if !fits {
            say(
                link.revision,
                format!(
                    "a {:?} change cannot follow the revisions before it",
                    link.change
                ),
            );
        }
        was_retired = change == Some(Change::Retired);
        if let Err(e) = parse_stored(id, &link.feature) {
            say(link.revision, format!("its feature does not parse: {e}"));
        }
    }
    problems
}

/// Every observation belongs to a stored batch, and every site it names or is
/// linked to exists; a batch that was never completed holds nothing.
fn observations(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let site_ids: HashSet<String> = conn
        .prepare("SELECT id FROM sites")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    out.batches =
        conn.query_row("SELECT count(*) FROM batches", [], |r| r.get::<_, i64>(0))? as usize;
    let mut stmt = conn.prepare(
        "SELECT o.id, o.batch_id, b.stored, o.site_id, o.observed_at, o.geometry
         FROM observations o LEFT JOIN batches b ON b.id = o.batch_id ORDER BY o.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut unfinished = HashSet::new();
    for row in rows {
        let (id, batch, stored, site, observed_at, geometry) = row?;
        out.observations += 1;
        let mut say = |reason: String| {
            out.problems.push(Problem::Observation {
                id: id.clone(),
                reason,
            })
        };
        match stored {
            None => say(format!("its batch {batch} does not exist")),
            Some(0) => {
                unfinished.insert(batch);
            }
            Some(_) => {}
        }
        if let Some(site) = site.filter(|s| !site_ids.contains(s)) {
            say(format!("names site {site}, which does not exist"));
        }
        if Timestamp::parse("observed_at", &observed_at).is_err() {
            say(format!(
                "observed_at {observed_at:?} is not an RFC 3339 time"
            ));
        }
        if serde_json::from_str::<geojson::Geometry>(&geometry).is_err() {
            say("its geometry is not GeoJSON".to_string());
        }
    }
    let mut links = conn.prepare(
        "SELECT l.observation_id, l.site_id FROM observation_sites l
         LEFT JOIN observations o ON o.id = l.observation_id
         WHERE o.id IS NULL OR l.site_id NOT IN (SELECT id FROM sites)",
    )?;
    let dangling = links.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in dangling {
        let (obs, site) = row?;
        out.problems.push(Problem::Observation {
            id: obs,
            reason: format!("its link to site {site} dangles"),
        });
    }
    // Schema 3 copies each observation's time onto its site links, where a
    // site's history is read in time order; a copy that differs would misplace
    // the observation in that history.
    if out.schema_version >= 3 {
        let mut stale = conn.prepare(
            "SELECT l.observation_id, l.site_id FROM observation_sites l
             JOIN observations o ON o.id = l.observation_id
             WHERE l.observed_at <> o.observed_at",
        )?;
        let rows = stale.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (obs, site) = row?;
            out.problems.push(Problem::Observation {
                id: obs,
                reason: format!("its link to site {site} carries another time than it has"),
            });
        }
    }
    let mut unfinished: Vec<String> = unfinished.into_iter().collect();
    unfinished.sort();
    for id in unfinished {
        out.problems.push(Problem::Batch {
            id,
            reason: "holds observations but was never marked stored: half a batch".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IdPolicy;
    use crate::store::{Provenance, Store};

    fn site(id: &str, status: &str) -> Site {
        let v = serde_json::json!({
            "type": "Feature", "id": id,
            "geometry": {"type": "Polygon", "coordinates": [[[125.0, 39.0], [125.01, 39.0], [125.01, 39.01], [125.0, 39.0]]]},
            "properties": {"name": id, "country": "PRK", "kind": "reactor", "status": status}
        });
        Site::from_feature(&v, IdPolicy::Required).unwrap()
    }

    /// A file database with two sites, one edited twice and one retired, and
    /// one stored observation batch.
    fn populated() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut s = Store::open(&path).unwrap();
        let by = Provenance {
            actor: "test".into(),
            reason: None,
        };
        s.apply_sites(&[site("a", "active"), site("b", "active")], &by)
            .unwrap();
        s.replace_site(&site("a", "inactive"), &by).unwrap();
        s.replace_site(&site("a", "abandoned"), &by).unwrap();
        s.retire_site(&site("b", "active").id, &by).unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO batches VALUES ('batch-1', '2026-01-01T00:00:00Z', 't', 'h', 'atomic', 1, '{}');
                 INSERT INTO observations (id, batch_id, feature_index, observed_at, recorded_at, sensor, finding,
                     confidence, geometry, lon, lat, west, south, east, north, site_id, matched)
                 VALUES ('obs-1', 'batch-1', 0, '2025-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 's', 'other',
                     'medium', '{\"type\":\"Point\",\"coordinates\":[125.005,39.005]}', 125.005, 39.005,
                     125.005, 39.005, 125.005, 39.005, 'a', 1);
                 INSERT INTO observation_sites VALUES ('obs-1', 'a', 'named', 0.0, '2025-01-01T00:00:00Z');",
            )
            .unwrap();
        (dir, path)
    }

    #[test]
    fn a_site_link_whose_time_differs_from_its_observation_is_reported() {
        let problems = damaged(
            "UPDATE observation_sites SET observed_at = '1999-01-01T00:00:00Z' WHERE observation_id = 'obs-1'",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Observation { id, reason } if id == "obs-1" && reason.contains("another time"))),
            "{problems:?}"
        );
    }

    /// Damages the database with SQL that bypasses the store, then inspects it.
    fn damaged(sql: &str) -> Vec<Problem> {
        let (_dir, path) = populated();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        inspect(&path).unwrap().problems
    }

    #[test]
    fn a_database_written_only_through_the_store_has_no_problems() {
        let (_dir, path) = populated();
        let found = inspect(&path).unwrap();
        assert_eq!(found.problems, vec![]);
        assert_eq!((found.sites, found.revisions), (2, 5));
        assert_eq!(found.live_sites.len(), 1);
        assert_eq!(found.observations, 1);
    }

    #[test]
    fn a_missing_file_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        assert!(matches!(inspect(&path), Err(CheckError::Missing(_))));
        assert!(!path.exists());
    }

    #[test]
    fn a_deleted_middle_revision_is_reported_as_a_gap() {
        let problems = damaged("DELETE FROM site_revisions WHERE site_id = 'a' AND revision = 2");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Revision { id, revision: 3, reason } if id == "a" && reason.contains("gap"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_deleted_latest_revision_leaves_the_current_row_ahead_of_its_chain() {
        let problems = damaged("DELETE FROM site_revisions WHERE site_id = 'a' AND revision = 3");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Site { id, reason } if id == "a" && reason.contains("revision 3"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_current_row_that_differs_from_its_latest_revision_is_reported() {
        let problems = damaged(
            "UPDATE sites SET feature = (SELECT feature FROM site_revisions WHERE site_id = 'a' AND revision = 1) WHERE id = 'a'",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Site { id, reason } if id == "a" && reason.contains("differs"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_corrupt_footprint_is_reported_with_its_site() {
        let problems = damaged(
            "UPDATE sites SET feature = json_set(feature, '$.geometry.coordinates[0][0]', json('[125.5, 39.5]')) WHERE id = 'a'",
        );
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, Problem::Site { id, reason } if id == "a" && reason.contains("ring"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_revision_recorded_before_the_one_it_follows_is_reported() {
        let problems = damaged(
            "UPDATE site_revisions SET recorded_at = '2000-01-01T00:00:00.000000Z' WHERE site_id = 'a' AND revision = 2",
        );
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, Problem::Revision { id, revision: 2, .. } if id == "a")),
            "{problems:?}"
        );
    }

    #[test]
    fn observations_of_a_half_written_batch_or_an_unknown_site_are_reported() {
        let problems = damaged(
            "UPDATE batches SET stored = 0 WHERE id = 'batch-1';
             PRAGMA foreign_keys = OFF;
             UPDATE observations SET site_id = 'nowhere' WHERE id = 'obs-1';
             INSERT INTO observation_sites VALUES ('obs-gone', 'a', 'named', 0.0, '2025-01-01T00:00:00Z');",
        );
        let has = |f: &dyn Fn(&Problem) -> bool| problems.iter().any(f);
        assert!(
            has(&|p| matches!(p, Problem::Batch { id, .. } if id == "batch-1")),
            "{problems:?}"
        );
        assert!(
            has(
                &|p| matches!(p, Problem::Observation { reason, .. } if reason.contains("nowhere"))
            ),
            "{problems:?}"
        );
        assert!(
            has(&|p| matches!(p, Problem::Observation { id, .. } if id == "obs-gone")),
            "{problems:?}"
        );
        assert!(
            has(
                &|p| matches!(p, Problem::ForeignKey { table, .. } if table == "observation_sites")
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn a_schema_from_a_newer_program_is_reported_and_not_read_further() {
        let problems = damaged(&format!("PRAGMA user_version = {}", CURRENT_VERSION + 1));
        assert_eq!(
            problems,
            vec![Problem::UnknownSchema {
                found: CURRENT_VERSION + 1,
                known: CURRENT_VERSION
            }]
        );
    }

    #[test]
    fn overwritten_pages_fail_the_integrity_check() {
        let (_dir, path) = populated();
        // Fold the WAL into the file so the damage below lands on real pages.
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&path).unwrap();
        // Page 2 onwards: scribble over the middle of every b-tree page but the first.
        for page in 1..bytes.len() / page_size as usize {
            let start = page * page_size as usize + 16;
            bytes[start..start + 64].fill(0xA5);
        }
        std::fs::write(&path, bytes).unwrap();
        let problems = inspect(&path).map(|i| i.problems).unwrap_or_default();
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, Problem::Integrity(_) | Problem::Unreadable(_))),
            "{problems:?}"
        );
    }
}
