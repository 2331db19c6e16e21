//! Verifying a database file without changing it: SQLite's own integrity and
//! foreign-key checks, then what sitewatch promises on top (complete revision
//! chains, current rows that parse, observations that point somewhere real),
//! and from schema 4 on the indexes kept beside them (each revision's validity
//! and box, each observation's box, the observations' extent, the change log).

use super::schema::{CURRENT_VERSION, TIME_UNIT_S};
use super::sites::parse_stored;
use super::{Change, LogKind};
use crate::model::{Site, Timestamp, geojson_bounds};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Params, Row};
use std::collections::{BTreeMap, HashSet};
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
    /// A row of an R*Tree (`site_revision_boxes`, `observation_boxes`) that
    /// belongs to no row of the table it indexes.
    #[error("{table} row {id}: {reason}")]
    BoxRow {
        table: String,
        id: i64,
        reason: String,
    },
    #[error("change log entry {seq}: {reason}")]
    LogEntry { seq: i64, reason: String },
    #[error("aggregate {name}: {reason}")]
    Aggregate { name: String, reason: String },
    /// Problems of one kind beyond the first [`LISTED_PER_KIND`], counted
    /// rather than listed.
    #[error("{count} more {what}, not listed")]
    Unlisted { what: String, count: u64 },
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
        if out.schema_version >= 4 {
            run(revision_validity, &mut out);
            run(revision_boxes, &mut out);
            run(observation_boxes, &mut out);
            run(observation_aggregate, &mut out);
            run(change_log, &mut out);
        }
        if out.schema_version >= 5 {
            run(site_observation_stats, &mut out);
        }
        if out.schema_version >= 6 {
            run(packed_forms, &mut out);
        }
        if out.schema_version >= 7 {
            run(candidate_cubes, &mut out);
        }
    }
    Ok(out)
}

/// Every live site has a packed form that decodes to what its GeoJSON says,
/// and no other site has one: opening a catalogue reads only the packed forms.
fn packed_forms(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut list = Listing::default();
    // Kept in a table of their own in versions 6 and 7, in the site's row since.
    let own_table = out.schema_version < 8;
    {
        let mut packed = conn.prepare(if own_table {
            "SELECT packed FROM site_packed WHERE id = ?1"
        } else {
            "SELECT packed FROM sites WHERE id = ?1 AND packed IS NOT NULL"
        })?;
        for site in &out.live_sites {
            let id = site.id.as_str();
            let blob: Option<Vec<u8>> = packed.query_row([id], |r| r.get(0)).optional()?;
            let reason = match blob.as_deref().map(|b| super::packed::decode(id, b)) {
                None => "has no packed form",
                Some(None) => "its packed form does not decode",
                Some(Some(p)) if &p != site => "its packed form differs from its GeoJSON",
                Some(Some(_)) => continue,
            };
            list.add("sites with a wrong packed form", || Problem::Site {
                id: id.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }
    list.rows(
        conn,
        "packed forms of sites that are not live",
        if own_table {
            "SELECT p.id FROM site_packed p LEFT JOIN sites s ON s.id = p.id
             WHERE s.id IS NULL OR s.retired = 1"
        } else {
            "SELECT id FROM sites WHERE packed IS NOT NULL AND retired = 1"
        },
        [],
        |r| {
            Ok(Problem::Site {
                id: r.get(0)?,
                reason: "has a packed form but is retired or unknown".into(),
            })
        },
    )?;
    list.finish(out);
    Ok(())
}

/// Each site's kept observation count and last time agree with its links.
fn site_observation_stats(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "WITH actual AS (SELECT site_id, max(observed_at) AS last, count(*) AS n
                         FROM observation_sites GROUP BY site_id)
         SELECT a.site_id, a.last, a.n, k.last_observed_at, k.count FROM actual a
           LEFT JOIN site_observation_stats k ON k.site_id = a.site_id
          WHERE k.site_id IS NULL OR k.last_observed_at IS NOT a.last OR k.count IS NOT a.n
         UNION ALL
         SELECT k.site_id, NULL, 0, k.last_observed_at, k.count FROM site_observation_stats k
          WHERE NOT EXISTS (SELECT 1 FROM observation_sites o WHERE o.site_id = k.site_id)
         LIMIT ?1",
    )?;
    let rows = stmt.query_map([LISTED_PER_KIND as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })?;
    for row in rows {
        let (site, last, n, kept_last, kept_n) = row?;
        out.problems.push(Problem::Aggregate {
            name: "site_observation_stats".to_owned(),
            reason: format!(
                "site {site}: kept {} observation(s), last {}; its links say {n}, last {}",
                kept_n.unwrap_or(0),
                kept_last.as_deref().unwrap_or("never"),
                last.as_deref().unwrap_or("never"),
            ),
        });
    }
    Ok(())
}

/// Each member of a candidate is grouped in the cube its position lies in,
/// and each cube of a candidate has one representative: the clustering of
/// later imports reads a candidate through them.
fn candidate_cubes(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut list = Listing::default();
    {
        let mut members = conn.prepare(
            "SELECT id, lon, lat, cell FROM observations WHERE candidate_id IS NOT NULL",
        )?;
        let mut rows = members.query([])?;
        while let Some(r) = rows.next()? {
            let at = crate::model::LonLat::from_computed(r.get(1)?, r.get(2)?);
            let want = crate::model::ClusterCell::of(at).key();
            let kept: Option<i64> = r.get(3)?;
            if kept != Some(want) {
                let id: String = r.get(0)?;
                list.add("candidate members out of their cube", || {
                    Problem::Observation {
                        id,
                        reason: format!(
                            "kept in cube {}, but its position is in cube {want}",
                            kept.map_or("none".to_owned(), |k| k.to_string())
                        ),
                    }
                });
            }
        }
    }
    list.rows(
        conn,
        "candidate cubes without one representative",
        "SELECT candidate_id, cell, sum(frontier) FROM observations
          WHERE candidate_id IS NOT NULL GROUP BY candidate_id, cell
         HAVING sum(frontier) != 1",
        [],
        |r| {
            let (candidate, cell, reps): (String, Option<i64>, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(Problem::Aggregate {
                name: "candidate representatives".to_owned(),
                reason: format!(
                    "candidate {candidate} has {reps} representatives in cube {}, not one",
                    cell.map_or("none".to_owned(), |k| k.to_string())
                ),
            })
        },
    )?;
    list.finish(out);
    Ok(())
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
    // Before version 8 a site's row held a copy of its latest feature; since,
    // the row points at the revision that holds it (a missing one reads as
    // no feature, and the chain's check names it).
    let mut sites = conn.prepare(if out.schema_version >= 8 {
        "SELECT s.id, s.revision, s.retired, coalesce(r.feature, ''), s.created_at, s.updated_at
         FROM sites s LEFT JOIN site_revisions r ON r.site_id = s.id AND r.revision = s.revision
         ORDER BY s.id"
    } else {
        "SELECT id, revision, retired, feature, created_at, updated_at FROM sites ORDER BY id"
    })?;
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

/// How many problems of one kind are listed; the rest are counted. A database
/// damaged wholesale (a lost index, say) would otherwise list a million lines.
pub const LISTED_PER_KIND: u64 = 20;

/// Problems found by one check, the first [`LISTED_PER_KIND`] of each kind
/// listed and the rest counted.
#[derive(Default)]
struct Listing {
    problems: Vec<Problem>,
    found: BTreeMap<&'static str, u64>,
}

impl Listing {
    /// Counts one problem of `kind` (a plural noun phrase, for the count of
    /// those not listed); true while that kind is still listed.
    fn count(&mut self, kind: &'static str) -> bool {
        let found = self.found.entry(kind).or_default();
        *found += 1;
        *found <= LISTED_PER_KIND
    }

    fn add(&mut self, kind: &'static str, problem: impl FnOnce() -> Problem) {
        if self.count(kind) {
            self.problems.push(problem());
        }
    }

    /// Counts each row of `sql` as one problem of `kind`, described by
    /// `describe` only while it is listed: the query selects exactly the rows
    /// that are wrong, so a sound database sends none.
    fn rows(
        &mut self,
        conn: &Connection,
        kind: &'static str,
        sql: &str,
        params: impl Params,
        describe: impl Fn(&Row<'_>) -> rusqlite::Result<Problem>,
    ) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            if self.count(kind) {
                let problem = describe(row)?;
                self.problems.push(problem);
            }
        }
        Ok(())
    }

    fn finish(self, out: &mut Inspection) {
        out.problems.extend(self.problems);
        for (what, found) in self.found {
            if found > LISTED_PER_KIND {
                out.problems.push(Problem::Unlisted {
                    what: what.to_owned(),
                    count: found - LISTED_PER_KIND,
                });
            }
        }
    }
}

/// How far an R*Tree coordinate may lie from the value `v` it stands for. The
/// trees keep 32-bit floats rounded outward, which moves a value by at most
/// 1.5 units in the last place, under `|v| / 2^22`: some 40 s for a time in
/// this century (in the tree's units of ten days), or 0.00004° at 180°.
/// `floor` covers values near zero.
fn slack(v: f64, floor: f64) -> f64 {
    v.abs() / TO_SLACK + floor
}

/// `2^22`: see [`slack`].
const TO_SLACK: f64 = 4_194_304.0;
/// The least slack in degrees, and in the tree's units of time (a second).
const DEGREE_FLOOR: f64 = 1e-9;
const SECOND_FLOOR: f64 = 1.0 / TIME_UNIT_S;
/// How far a box's time may lie on the wrong side of the time it holds: SQLite
/// reads times to the millisecond where Rust reads them to the microsecond.
const SECOND_EPSILON: f64 = 0.01 / TIME_UNIT_S;

/// What is wrong with an R*Tree row `stored` (`[west, east, south, north,
/// t_from, t_until]`, as the trees order them) that stands for the box
/// `[west, south, east, north]` over `times` (`(from, until)` in the tree's
/// units; `None` for a box that holds no time, or times that are unreadable,
/// which is reported elsewhere); `None` if it holds them, no wider than
/// rounding makes it.
fn box_fault(
    stored: [f64; 6],
    [w, s, e, n]: [f64; 4],
    times: Option<(f64, f64)>,
) -> Option<String> {
    let [bw, be, bs, bn, from, until] = stored;
    let boxes = || format!("its box [{bw}, {bs}, {be}, {bn}] around [{w}, {s}, {e}, {n}]");
    if !(bw <= w && be >= e && bs <= s && bn >= n) {
        return Some(format!("{} does not hold it", boxes()));
    }
    let tight = |stored: f64, value: f64| (stored - value).abs() <= slack(value, DEGREE_FLOOR);
    if !(tight(bw, w) && tight(be, e) && tight(bs, s) && tight(bn, n)) {
        return Some(format!("{} is larger than rounding makes it", boxes()));
    }
    let (t_from, t_until) = times?;
    let holds = from <= t_from + SECOND_EPSILON
        && from >= t_from - slack(t_from, SECOND_FLOOR)
        && until >= t_until - SECOND_EPSILON
        && until <= t_until + slack(t_until, SECOND_FLOOR);
    (!holds).then(|| {
        format!(
            "its box's times {from} to {until} do not stand for {t_from} to {t_until} (in units of ten days since 1970)"
        )
    })
}

/// [`box_fault`]'s test, in SQL, on the columns `w, s, e, n, t, bw, be, bs, bn,
/// bf, bu` of an observation whose box holds the time `t` only; true when the
/// box is wrong. A NULL `t` (an unreadable time) passes the time test.
fn box_fault_sql() -> String {
    let tight =
        |b: &str, v: &str| format!("abs({b} - {v}) <= abs({v}) / {TO_SLACK:?} + {DEGREE_FLOOR:?}");
    let near = format!("abs(t) / {TO_SLACK:?} + {SECOND_FLOOR:?}");
    format!(
        "NOT (bw <= w AND be >= e AND bs <= s AND bn >= n
              AND {} AND {} AND {} AND {}
              AND coalesce(bf <= t + {SECOND_EPSILON:?} AND bf >= t - ({near})
                           AND bu >= t - {SECOND_EPSILON:?} AND bu <= t + ({near}), 1))",
        tight("bw", "w"),
        tight("be", "e"),
        tight("bs", "s"),
        tight("bn", "n"),
    )
}

/// Each revision is valid until the next one of its site was recorded, and
/// the latest, which is current, has no end: `as_of` reads and the area
/// search both read the past through `valid_until`. One pass in key order.
fn revision_validity(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut list = Listing::default();
    list.rows(
        conn,
        "revisions with a wrong valid_until",
        "SELECT site_id, revision, valid_until, next_revision, next_at FROM (
           SELECT site_id, revision, valid_until,
                  lead(revision) OVER w AS next_revision, lead(recorded_at) OVER w AS next_at
           FROM site_revisions WINDOW w AS (PARTITION BY site_id ORDER BY revision))
         WHERE valid_until IS NOT next_at",
        [],
        |r| {
            let until: Option<String> = r.get(2)?;
            let next: Option<(i64, String)> = match (r.get(3)?, r.get(4)?) {
                (Some(rev), Some(at)) => Some((rev, at)),
                _ => None,
            };
            let reason = match (until, next) {
                (Some(until), None) => {
                    format!("is the latest revision, but valid_until is {until:?} rather than NULL")
                }
                (None, Some((rev, at))) => {
                    format!("valid_until is NULL, but revision {rev} follows at {at}")
                }
                (Some(until), Some((rev, at))) => {
                    format!("valid_until is {until:?}, but revision {rev} follows at {at}")
                }
                (None, None) => "valid_until differs from the next revision's time".to_owned(),
            };
            Ok(Problem::Revision {
                id: r.get(0)?,
                revision: r.get(1)?,
                reason,
            })
        },
    )?;
    list.finish(out);
    Ok(())
}

/// Each revision has its row in `site_revision_boxes` (one at most: the
/// R*Tree's id is unique), holding its footprint's box, and
/// each row there belongs to a revision. The footprints are read in one
/// streaming pass that parses only their geometry.
fn revision_boxes(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    /// A stored feature, of which only the geometry is read.
    #[derive(serde::Deserialize)]
    struct Footprint {
        geometry: serde_json::Value,
    }
    let mut list = Listing::default();
    let mut stmt = conn.prepare(
        "SELECT r.site_id, r.revision, r.recorded_at, r.valid_until, r.feature,
                b.id, b.west, b.east, b.south, b.north
         FROM site_revisions r LEFT JOIN site_revision_boxes b ON b.id = r.rowid",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let fault = if r.get::<_, Option<i64>>(5)?.is_none() {
            Some((
                "revisions without a box",
                "has no row in site_revision_boxes".to_owned(),
            ))
        } else {
            // A feature or time that does not parse is reported by the chain check.
            let bounds = serde_json::from_str::<Footprint>(r.get_ref(4)?.as_str()?)
                .ok()
                .and_then(|f| geojson_bounds(&f.geometry));
            // Revision boxes hold no time: the validity is on the row.
            let stored = [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, 0.0, 0.0];
            bounds
                .and_then(|bounds| box_fault(stored, bounds, None))
                .map(|reason| ("revisions whose box does not fit them", reason))
        };
        if let Some((kind, reason)) = fault {
            let (id, revision) = (r.get(0)?, r.get(1)?);
            list.add(kind, || Problem::Revision {
                id,
                revision,
                reason,
            });
        }
    }
    list.rows(
        conn,
        "revision boxes without a revision",
        "SELECT b.id FROM site_revision_boxes b
         WHERE NOT EXISTS (SELECT 1 FROM site_revisions r WHERE r.rowid = b.id)",
        [],
        |r| {
            Ok(Problem::BoxRow {
                table: "site_revision_boxes".to_owned(),
                id: r.get(0)?,
                reason: "no revision has this rowid".to_owned(),
            })
        },
    )?;
    list.finish(out);
    Ok(())
}

/// Each observation has its row in `observation_boxes`, holding its box at its
/// time, and each row there belongs to an observation. SQL picks out the rows
/// that are wrong, so the pass over the observations sends nothing to Rust
/// when all is well.
fn observation_boxes(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut list = Listing::default();
    let sql = format!(
        "SELECT id, w, s, e, n, t, bid, bw, be, bs, bn, bf, bu FROM (
           SELECT o.id AS id, o.west AS w, o.south AS s, o.east AS e, o.north AS n,
                  (julianday(o.observed_at) - 2440587.5) * 86400.0 / {TIME_UNIT_S:?} AS t,
                  b.id AS bid, b.west AS bw, b.east AS be, b.south AS bs, b.north AS bn,
                  b.t_from AS bf, b.t_until AS bu
           FROM observations o LEFT JOIN observation_boxes b ON b.id = o.rowid)
         WHERE bid IS NULL OR {}",
        box_fault_sql()
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (kind, reason) = if r.get::<_, Option<i64>>(6)?.is_none() {
            (
                "observations without a box",
                "has no row in observation_boxes".to_owned(),
            )
        } else {
            let t: Option<f64> = r.get(5)?;
            let reason = box_fault(
                [
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                ],
                [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
                t.map(|t| (t, t)),
            );
            (
                "observations whose box does not fit them",
                reason.unwrap_or_else(|| "its box does not hold it".to_owned()),
            )
        };
        let id: String = r.get(0)?;
        list.add(kind, || Problem::Observation { id, reason });
    }
    list.rows(
        conn,
        "observation boxes without an observation",
        "SELECT b.id FROM observation_boxes b
         WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.rowid = b.id)",
        [],
        |r| {
            Ok(Problem::BoxRow {
                table: "observation_boxes".to_owned(),
                id: r.get(0)?,
                reason: "no observation has this rowid".to_owned(),
            })
        },
    )?;
    list.finish(out);
    Ok(())
}

/// The `observations` row of `aggregates`, which answers the observations'
/// extent without a scan, must hold every observation's box and time.
fn observation_aggregate(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    type Extent = (
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<String>,
        Option<String>,
    );
    let extent = |r: &Row<'_>, at: usize| -> rusqlite::Result<Extent> {
        Ok((
            r.get(at)?,
            r.get(at + 1)?,
            r.get(at + 2)?,
            r.get(at + 3)?,
            r.get(at + 4)?,
            r.get(at + 5)?,
        ))
    };
    let (count, actual, row): (i64, Extent, Option<Extent>) = conn.query_row(
        "SELECT m.n, m.w, m.s, m.e, m.nn, m.f, m.l,
                a.name, a.west, a.south, a.east, a.north, a.first, a.last
         FROM (SELECT count(*) AS n, min(west) AS w, min(south) AS s, max(east) AS e,
                      max(north) AS nn, min(observed_at) AS f, max(observed_at) AS l
               FROM observations) m
         LEFT JOIN aggregates a ON a.name = 'observations'",
        [],
        |r| {
            let row = match r.get::<_, Option<String>>(7)? {
                Some(_) => Some(extent(r, 8)?),
                None => None,
            };
            Ok((r.get(0)?, extent(r, 1)?, row))
        },
    )?;
    let mut say = |reason: String| {
        out.problems.push(Problem::Aggregate {
            name: "observations".to_owned(),
            reason,
        })
    };
    let (Some(w), Some(s), Some(e), Some(n), Some(first), Some(last)) = actual else {
        return Ok(());
    };
    let Some((aw, a_s, ae, an, afirst, alast)) = row else {
        say(format!("missing, though {count} observations are stored"));
        return Ok(());
    };
    match (aw, a_s, ae, an) {
        (Some(aw), Some(a_s), Some(ae), Some(an)) => {
            if !(aw <= w && a_s <= s && ae >= e && an >= n) {
                say(format!(
                    "its box [{aw}, {a_s}, {ae}, {an}] does not hold the observations' [{w}, {s}, {e}, {n}]"
                ));
            }
        }
        _ => say("its box has NULL sides, though observations are stored".to_owned()),
    }
    // Times compare as times. Stored ones are all written alike, so their text
    // order, which min() and max() went by, is their time order too.
    let time = |t: &str| Timestamp::parse("t", t).ok();
    match (
        afirst.as_deref().and_then(time),
        alast.as_deref().and_then(time),
    ) {
        (Some(af), Some(al)) => {
            if time(&first).is_some_and(|f| f < af) || time(&last).is_some_and(|l| l > al) {
                say(format!(
                    "its times {af} to {al} do not hold the observations' {first} to {last}"
                ));
            }
        }
        _ => say(format!(
            "its times {afirst:?} to {alast:?} are not both RFC 3339 times"
        )),
    }
    Ok(())
}

/// A value read from a column that may be NULL, for a message.
fn or_null<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "NULL".to_owned(), |v| v.to_string())
}

/// Every change log entry points at what it records: a site entry at a
/// revision of that change recorded at its time, a batch entry at a stored
/// batch received at its time, a candidate entry at a dismissed candidate.
/// Each revision and batch is logged once at most, and a site's entries come
/// in revision order, the order followers replay them in. Writes from before
/// schema 4 were never logged, so a missing entry is not a problem.
fn change_log(conn: &Connection, out: &mut Inspection) -> rusqlite::Result<()> {
    let mut list = Listing::default();
    let site_kinds = [
        Change::Created,
        Change::Updated,
        Change::Retired,
        Change::Restored,
    ];
    let quoted = |s: &str| format!("'{s}'");
    let site_kind_list = site_kinds
        .iter()
        .map(|c| quoted(c.log_kind().as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let expected_kind = site_kinds
        .iter()
        .map(|c| {
            format!(
                "WHEN {} THEN {}",
                quoted(c.as_str()),
                quoted(c.log_kind().as_str())
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let entry = |r: &Row<'_>, reason: String| -> rusqlite::Result<Problem> {
        Ok(Problem::LogEntry {
            seq: r.get(0)?,
            reason,
        })
    };
    let all_kinds = LogKind::ALL
        .iter()
        .map(|k| quoted(k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    list.rows(
        conn,
        "change log entries of unknown kinds",
        &format!("SELECT seq, kind FROM change_log WHERE kind NOT IN ({all_kinds})"),
        [],
        |r| {
            entry(
                r,
                format!("has the unknown kind {:?}", r.get::<_, String>(1)?),
            )
        },
    )?;
    list.rows(
        conn,
        "change log entries that do not match their revision",
        &format!(
            "SELECT c.seq, c.kind, c.site_id, c.revision, c.at, r.change, r.recorded_at
             FROM change_log c
             LEFT JOIN site_revisions r ON r.site_id = c.site_id AND r.revision = c.revision
             WHERE c.kind IN ({site_kind_list})
               AND (r.change IS NULL OR c.kind IS NOT (CASE r.change {expected_kind} END)
                    OR c.at IS NOT r.recorded_at)"
        ),
        [],
        |r| {
            let kind: String = r.get(1)?;
            let what = format!(
                "revision {} of site {}",
                or_null(r.get::<_, Option<i64>>(3)?),
                or_null(r.get::<_, Option<String>>(2)?)
            );
            let at: String = r.get(4)?;
            let reason = match (
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ) {
                (Some(change), Some(recorded_at)) => {
                    if Change::parse(&change).map(|c| c.log_kind().as_str()) != Some(&kind) {
                        format!("is a {kind} entry, but {what} was {change}")
                    } else {
                        format!("is at {at}, but {what} was recorded at {recorded_at}")
                    }
                }
                _ => format!("is a {kind} entry for {what}, which does not exist"),
            };
            entry(r, reason)
        },
    )?;
    let batch_stored = LogKind::BatchStored.as_str();
    list.rows(
        conn,
        "change log entries that do not match their batch",
        "SELECT c.seq, c.batch_id, c.at, b.stored, b.received_at
         FROM change_log c LEFT JOIN batches b ON b.id = c.batch_id
         WHERE c.kind = ?1 AND (b.stored IS NOT 1 OR c.at IS NOT b.received_at)",
        [batch_stored],
        |r| {
            let batch = or_null(r.get::<_, Option<String>>(1)?);
            let at: String = r.get(2)?;
            let reason = match (r.get::<_, Option<i64>>(3)?, r.get::<_, Option<String>>(4)?) {
                (None, _) => format!("records batch {batch} stored, which does not exist"),
                (Some(1), received_at) => format!(
                    "is at {at}, but batch {batch} was received at {}",
                    or_null(received_at)
                ),
                (Some(_), _) => format!("records batch {batch} stored, which it is not"),
            };
            entry(r, reason)
        },
    )?;
    list.rows(
        conn,
        "change log entries that do not match their candidate",
        "SELECT c.seq, c.candidate_id, c.at, d.state, d.decided_at
         FROM change_log c LEFT JOIN candidates d ON d.id = c.candidate_id
         WHERE c.kind = ?1 AND (d.state IS NOT 'dismissed' OR c.at IS NOT d.decided_at)",
        [LogKind::CandidateDismissed.as_str()],
        |r| {
            let candidate = or_null(r.get::<_, Option<String>>(1)?);
            let at: String = r.get(2)?;
            let reason = match (
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ) {
                (None, _) => {
                    format!("records candidate {candidate} dismissed, which does not exist")
                }
                (Some(state), _) if state != "dismissed" => {
                    format!("records candidate {candidate} dismissed, but it is {state}")
                }
                (Some(_), decided_at) => format!(
                    "is at {at}, but candidate {candidate} was decided at {}",
                    or_null(decided_at)
                ),
            };
            entry(r, reason)
        },
    )?;
    list.rows(
        conn,
        "revisions logged more than once",
        &format!(
            "SELECT max(seq), site_id, revision, count(*) FROM change_log
             WHERE kind IN ({site_kind_list}) AND site_id IS NOT NULL AND revision IS NOT NULL
             GROUP BY site_id, revision HAVING count(*) > 1"
        ),
        [],
        |r| {
            let (site, revision, count): (String, i64, i64) = (r.get(1)?, r.get(2)?, r.get(3)?);
            entry(
                r,
                format!("one of {count} entries for revision {revision} of site {site}"),
            )
        },
    )?;
    list.rows(
        conn,
        "batches logged more than once",
        "SELECT max(seq), batch_id, count(*) FROM change_log
         WHERE kind = ?1 AND batch_id IS NOT NULL GROUP BY batch_id HAVING count(*) > 1",
        [batch_stored],
        |r| {
            let (batch, count): (String, i64) = (r.get(1)?, r.get(2)?);
            entry(r, format!("one of {count} entries for batch {batch}"))
        },
    )?;
    list.rows(
        conn,
        "change log entries out of revision order",
        &format!(
            "SELECT seq, site_id, revision, previous_seq, previous_revision FROM (
               SELECT seq, site_id, revision,
                      lag(seq) OVER w AS previous_seq, lag(revision) OVER w AS previous_revision
               FROM change_log WHERE kind IN ({site_kind_list})
               WINDOW w AS (PARTITION BY site_id ORDER BY seq))
             WHERE revision <= previous_revision"
        ),
        [],
        |r| {
            let (site, revision): (String, i64) = (r.get(1)?, r.get(2)?);
            let (previous_seq, previous_revision): (i64, i64) = (r.get(3)?, r.get(4)?);
            entry(
                r,
                format!(
                    "logs revision {revision} of site {site} after entry {previous_seq} logged revision {previous_revision}"
                ),
            )
        },
    )?;
    list.finish(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IdPolicy, Observation};
    use crate::model::{LinkHow, SiteLink};
    use crate::store::{ObservationWrites, Provenance, SiteWrites, SqliteStore};

    fn site(id: &str, status: &str) -> Site {
        let v = serde_json::json!({
            "type": "Feature", "id": id,
            "geometry": {"type": "Polygon", "coordinates": [[[125.0, 39.0], [125.01, 39.0], [125.01, 39.01], [125.0, 39.0]]]},
            "properties": {"name": id, "country": "PRK", "kind": "reactor", "status": status}
        });
        Site::from_feature(&v, IdPolicy::Required).unwrap()
    }

    /// A file database with two sites, one edited twice and one retired, and
    /// one stored observation batch, all written through the store.
    fn populated() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut s = SqliteStore::open(&path).unwrap();
        let by = Provenance {
            actor: "test".into(),
            reason: None,
        };
        s.apply_sites(&[site("a", "active"), site("b", "active")], &by)
            .unwrap();
        s.replace_site(&site("a", "inactive"), &by).unwrap();
        s.replace_site(&site("a", "abandoned"), &by).unwrap();
        s.retire_site(&site("b", "active").id, &by).unwrap();
        let observation = Observation::from_feature(&serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [125.005, 39.005]},
            "properties": {"observed_at": "2025-01-01T00:00:00Z", "sensor": "s", "finding": "other", "site_id": "a"}
        }))
        .unwrap();
        let received = Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap();
        let batch = s.begin_batch("batch-1", received).unwrap();
        let link = SiteLink {
            site_id: site("a", "active").id,
            how: LinkHow::Named,
            distance_m: 0.0,
        };
        batch.insert_observation(0, &observation, &[link]).unwrap();
        batch
            .commit("t", "h", "atomic", &serde_json::json!({}))
            .unwrap();
        // Two unmatched observations a metre apart, made a candidate.
        let batch = s.begin_batch("batch-2", received).unwrap();
        let mut members = Vec::new();
        for (i, lon) in [30.0, 30.00001].into_iter().enumerate() {
            let o = Observation::from_feature(&serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon, 10.0]},
                "properties": {"observed_at": "2025-01-01T00:00:00Z", "sensor": "s", "finding": "other"}
            }))
            .unwrap();
            let id = batch.insert_observation(i, &o, &[]).unwrap();
            members.push((id, crate::model::ClusterCell::of(o.place.anchor())));
        }
        batch
            .create_candidate(crate::model::LonLat::from_computed(30.0, 10.0), &members)
            .unwrap();
        batch
            .commit("t", "h2", "atomic", &serde_json::json!({}))
            .unwrap();
        (dir, path)
    }

    #[test]
    fn a_candidate_member_out_of_its_cube_or_a_cube_without_one_representative_is_reported() {
        let problems = damaged("UPDATE observations SET cell = 5 WHERE candidate_id IS NOT NULL");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Observation { reason, .. } if reason.contains("kept in cube 5"))),
            "{problems:?}"
        );
        let problems =
            damaged("UPDATE observations SET frontier = 1 WHERE candidate_id IS NOT NULL");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Aggregate { reason, .. } if reason.contains("has 2 representatives"))),
            "{problems:?}"
        );
    }

    /// The rowid of a revision, as SQL, which the R*Tree names it by.
    fn rowid_of(site: &str, revision: i64) -> String {
        format!(
            "(SELECT rowid FROM site_revisions WHERE site_id = '{site}' AND revision = {revision})"
        )
    }

    #[test]
    fn a_site_link_whose_time_differs_from_its_observation_is_reported() {
        let problems = damaged("UPDATE observation_sites SET observed_at = '1999-01-01T00:00:00Z'");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Observation { id, reason } if id.starts_with("obs-") && reason.contains("another time"))),
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
    fn a_site_observation_count_that_differs_from_its_links_is_reported() {
        let problems = damaged("UPDATE site_observation_stats SET count = count + 1");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Aggregate { name, reason } if name == "site_observation_stats" && reason.contains("kept 2"))),
            "{problems:?}"
        );
        let problems = damaged("DELETE FROM site_observation_stats");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Aggregate { name, reason } if name == "site_observation_stats" && reason.contains("kept 0"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_database_written_only_through_the_store_has_no_problems() {
        let (_dir, path) = populated();
        let found = inspect(&path).unwrap();
        assert_eq!(found.problems, vec![]);
        assert_eq!((found.sites, found.revisions), (2, 5));
        assert_eq!(found.live_sites.len(), 1);
        assert_eq!(found.observations, 3);
    }

    #[test]
    fn a_packed_form_that_disagrees_with_its_geojson_is_reported_with_its_site() {
        // A byte past the end of its layout: the blob is refused whole.
        let problems =
            damaged("UPDATE sites SET packed = CAST(packed || x'00' AS BLOB) WHERE id = 'a'");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Site { id, reason } if id == "a" && reason.contains("does not decode"))),
            "{problems:?}"
        );
        let problems = damaged(
            "UPDATE site_revisions SET feature = replace(feature, '\"abandoned\"', '\"active\"')
              WHERE site_id = 'a' AND revision = 3",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Site { id, reason } if id == "a" && reason.contains("differs from its GeoJSON"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_live_site_without_a_packed_form_or_a_retired_one_with_one_is_reported() {
        let problems = damaged(
            "UPDATE sites SET packed = NULL WHERE id = 'a';
             UPDATE sites SET packed = x'01' WHERE id = 'b'",
        );
        for (who, what) in [("a", "has no packed form"), ("b", "retired or unknown")] {
            assert!(
                problems.iter().any(|p| matches!(p,
                    Problem::Site { id, reason } if id == who && reason.contains(what))),
                "{problems:?}"
            );
        }
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
    fn a_current_row_that_points_at_an_older_revision_is_reported() {
        let problems = damaged("UPDATE sites SET revision = 1 WHERE id = 'a'");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Site { id, reason } if id == "a" && reason.contains("the current row says revision 1"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_corrupt_footprint_is_reported_with_its_site() {
        let problems = damaged(
            "UPDATE site_revisions SET feature = json_set(feature, '$.geometry.coordinates[0][0]', json('[125.5, 39.5]'))
             WHERE site_id = 'a' AND revision = (SELECT revision FROM sites WHERE id = 'a')",
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
             UPDATE observations SET site_id = 'nowhere';
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

    #[test]
    fn a_revision_without_a_box_row_is_reported() {
        let problems = damaged(&format!(
            "DELETE FROM site_revision_boxes WHERE id = {}",
            rowid_of("a", 2)
        ));
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Revision { id, revision: 2, reason } if id == "a" && reason.contains("no row in site_revision_boxes"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_revision_box_row_that_belongs_to_no_revision_is_reported() {
        let problems =
            damaged("INSERT INTO site_revision_boxes VALUES (9999, 125.0, 125.01, 39.0, 39.01)");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::BoxRow { table, id: 9999, .. } if table == "site_revision_boxes")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_null_valid_until_before_the_latest_revision_is_reported() {
        let problems = damaged(
            "UPDATE site_revisions SET valid_until = NULL WHERE site_id = 'a' AND revision = 1",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Revision { id, revision: 1, reason } if id == "a" && reason.contains("NULL, but revision 2 follows"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_latest_revision_whose_validity_ends_is_reported() {
        let problems = damaged(
            "UPDATE site_revisions SET valid_until = recorded_at WHERE site_id = 'a' AND revision = 3",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Revision { id, revision: 3, reason } if id == "a" && reason.contains("latest"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_valid_until_other_than_the_next_revisions_time_is_reported() {
        let problems = damaged(
            "UPDATE site_revisions SET valid_until = '2030-01-01T00:00:00.000000Z' WHERE site_id = 'a' AND revision = 2",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Revision { id, revision: 2, reason } if id == "a" && reason.contains("revision 3 follows"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_revision_box_that_misses_part_of_its_footprint_is_reported() {
        let problems = damaged(&format!(
            "UPDATE site_revision_boxes SET east = 125.005 WHERE id = {}",
            rowid_of("a", 3)
        ));
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Revision { id, revision: 3, reason } if id == "a" && reason.contains("does not hold"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_revision_box_far_larger_than_its_footprint_is_reported() {
        let problems = damaged(&format!(
            "UPDATE site_revision_boxes SET west = 100.0 WHERE id = {}",
            rowid_of("b", 1)
        ));
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Revision { id, revision: 1, reason } if id == "b" && reason.contains("larger"))),
            "{problems:?}"
        );
    }

    #[test]
    fn an_observation_without_a_box_row_is_reported() {
        let problems = damaged("DELETE FROM observation_boxes");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Observation { reason, .. } if reason.contains("no row in observation_boxes"))),
            "{problems:?}"
        );
    }

    #[test]
    fn an_observation_box_row_that_belongs_to_no_observation_is_reported() {
        let problems = damaged("INSERT INTO observation_boxes VALUES (777, 0, 0, 0, 0, 0, 0)");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::BoxRow { table, id: 777, .. } if table == "observation_boxes")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_observation_box_somewhere_else_is_reported() {
        let problems = damaged("UPDATE observation_boxes SET west = west + 1, east = east + 1");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Observation { reason, .. } if reason.contains("does not hold"))),
            "{problems:?}"
        );
    }

    #[test]
    fn an_observation_box_a_day_off_its_time_is_reported() {
        let problems =
            damaged("UPDATE observation_boxes SET t_from = t_from - 0.1, t_until = t_until - 0.1");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Observation { reason, .. } if reason.contains("times"))),
            "{problems:?}"
        );
    }

    #[test]
    fn an_observation_aggregate_that_no_longer_holds_every_observation_is_reported() {
        let problems = damaged(
            "UPDATE aggregates SET west = 125.01, last = '2024-01-01T00:00:00.000000Z' WHERE name = 'observations'",
        );
        let has = |what: &str| {
            problems.iter().any(|p| matches!(p,
                Problem::Aggregate { name, reason } if name == "observations" && reason.contains(what)))
        };
        assert!(has("its box"), "{problems:?}");
        assert!(has("its times"), "{problems:?}");
    }

    #[test]
    fn a_missing_observation_aggregate_is_reported() {
        let problems = damaged("DELETE FROM aggregates");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Aggregate { name, reason } if name == "observations" && reason.contains("missing"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_log_entry_for_a_revision_that_does_not_exist_is_reported() {
        let problems =
            damaged("UPDATE change_log SET revision = 9 WHERE site_id = 'a' AND revision = 3");
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::LogEntry { reason, .. } if reason.contains("does not exist"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_log_entry_of_another_kind_than_its_revisions_change_is_reported() {
        let problems = damaged(
            "UPDATE change_log SET kind = 'site_updated' WHERE site_id = 'b' AND revision = 2",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::LogEntry { reason, .. } if reason.contains("site_updated") && reason.contains("was retired"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_log_entry_at_another_time_than_its_revision_is_reported() {
        let problems = damaged(
            "UPDATE change_log SET at = '2000-01-01T00:00:00.000000Z' WHERE site_id = 'a' AND revision = 1",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::LogEntry { reason, .. } if reason.contains("recorded at"))),
            "{problems:?}"
        );
    }

    #[test]
    fn log_entries_for_batches_missing_or_not_stored_are_reported() {
        let problems = damaged(
            "INSERT INTO change_log (at, kind, batch_id) VALUES ('2026-01-01T00:00:00.000000Z', 'batch_stored', 'batch-none');
             UPDATE batches SET stored = 0 WHERE id = 'batch-1';",
        );
        let has = |what: &str| {
            problems
                .iter()
                .any(|p| matches!(p, Problem::LogEntry { reason, .. } if reason.contains(what)))
        };
        assert!(
            has("batch batch-none stored, which does not exist"),
            "{problems:?}"
        );
        assert!(has("batch-1 stored, which it is not"), "{problems:?}");
    }

    #[test]
    fn log_entries_of_unknown_kinds_or_for_unknown_candidates_are_reported() {
        let problems = damaged(
            "INSERT INTO change_log (at, kind, candidate_id) VALUES
               ('2026-01-01T00:00:00.000000Z', 'candidate_dismissed', 'cand-none'),
               ('2026-01-01T00:00:00.000000Z', 'site_exploded', NULL);",
        );
        let has = |what: &str| {
            problems
                .iter()
                .any(|p| matches!(p, Problem::LogEntry { reason, .. } if reason.contains(what)))
        };
        assert!(has("cand-none"), "{problems:?}");
        assert!(has("unknown kind \"site_exploded\""), "{problems:?}");
    }

    #[test]
    fn a_revision_logged_twice_is_reported() {
        let problems = damaged(
            "INSERT INTO change_log (at, kind, site_id, revision, west, south, east, north)
             SELECT at, kind, site_id, revision, west, south, east, north FROM change_log
             WHERE site_id = 'a' AND revision = 1",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::LogEntry { reason, .. } if reason.contains("one of 2 entries for revision 1 of site a"))),
            "{problems:?}"
        );
    }

    #[test]
    fn a_sites_log_entries_out_of_revision_order_are_reported() {
        let problems = damaged(
            "UPDATE change_log SET revision = 5 - revision WHERE site_id = 'a' AND revision IN (2, 3)",
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::LogEntry { reason, .. } if reason.contains("logs revision 2 of site a after"))),
            "{problems:?}"
        );
    }

    #[test]
    fn writes_from_before_the_change_log_need_no_entries() {
        // A database migrated from schema 3 has no entries for its older writes.
        let problems = damaged("DELETE FROM change_log WHERE seq <= 3");
        assert_eq!(problems, vec![]);
    }

    /// SQL that puts `sites` back as it was before version 8: a rowid table
    /// whose rows hold their latest feature, and no packed forms.
    const SITES_BEFORE_VERSION_8: &str = "
        CREATE TABLE sites_old (
            id TEXT PRIMARY KEY, revision INTEGER NOT NULL,
            retired INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1)),
            feature TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL) STRICT;
        INSERT INTO sites_old SELECT s.id, s.revision, s.retired, r.feature, s.created_at, s.updated_at
            FROM sites s JOIN site_revisions r ON r.site_id = s.id AND r.revision = s.revision;
        PRAGMA foreign_keys = OFF;
        DROP TABLE sites;
        ALTER TABLE sites_old RENAME TO sites;";

    #[test]
    fn a_schema_3_database_is_not_held_to_schema_4s_indexes() {
        let problems = damaged(&format!(
            "DROP TABLE site_revision_boxes; DROP TABLE observation_boxes;
             DROP TABLE change_log; DROP TABLE aggregates; DROP TABLE site_observation_stats;
             {SITES_BEFORE_VERSION_8}
             DROP INDEX observations_frontier; DROP INDEX observations_by_candidate;
             ALTER TABLE observations DROP COLUMN cell;
             ALTER TABLE observations DROP COLUMN frontier;
             CREATE INDEX observations_unmatched ON observations(lat, lon) WHERE matched = 0;
             CREATE INDEX observations_by_candidate ON observations(candidate_id)
                 WHERE candidate_id IS NOT NULL;
             ALTER TABLE site_revisions DROP COLUMN valid_until;
             PRAGMA user_version = 3;",
        ));
        assert_eq!(problems, vec![]);
    }

    #[test]
    fn a_database_migrated_from_schema_3_has_no_problems() {
        let (_dir, path) = populated();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "DROP TABLE site_revision_boxes; DROP TABLE observation_boxes;
             DROP TABLE change_log; DROP TABLE aggregates; DROP TABLE site_observation_stats;
             {SITES_BEFORE_VERSION_8}
             DROP INDEX observations_frontier; DROP INDEX observations_by_candidate;
             ALTER TABLE observations DROP COLUMN cell;
             ALTER TABLE observations DROP COLUMN frontier;
             CREATE INDEX observations_unmatched ON observations(lat, lon) WHERE matched = 0;
             CREATE INDEX observations_by_candidate ON observations(candidate_id)
                 WHERE candidate_id IS NOT NULL;
             ALTER TABLE site_revisions DROP COLUMN valid_until;
             PRAGMA user_version = 3;",
        ))
        .unwrap();
        drop(conn);
        // Opening it migrates it again, filling the boxes, validity and
        // aggregate from what it holds, and logging nothing.
        drop(SqliteStore::open(&path).unwrap());
        let found = inspect(&path).unwrap();
        assert_eq!(found.schema_version, CURRENT_VERSION);
        assert_eq!(found.problems, vec![]);
    }

    #[test]
    fn many_problems_of_one_kind_are_counted_beyond_the_first_few() {
        let problems = damaged(
            "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 1029)
             INSERT INTO observation_boxes SELECT i, 0, 0, 0, 0, 0, 0 FROM n",
        );
        let listed = problems
            .iter()
            .filter(|p| matches!(p, Problem::BoxRow { .. }))
            .count();
        assert_eq!(listed as u64, LISTED_PER_KIND, "{problems:?}");
        assert!(
            problems.contains(&Problem::Unlisted {
                what: "observation boxes without an observation".to_owned(),
                count: 30 - LISTED_PER_KIND,
            }),
            "{problems:?}"
        );
    }

    #[test]
    fn a_site_across_the_antimeridian_written_through_the_store_has_no_problems() {
        let (_dir, path) = populated();
        let mut s = SqliteStore::open(&path).unwrap();
        let v = serde_json::json!({
            "type": "Feature", "id": "wide",
            "geometry": {"type": "Polygon", "coordinates": [[[179.99, -16.0], [-179.99, -16.0], [-179.99, -15.99], [179.99, -16.0]]]},
            "properties": {"name": "wide", "country": "FJI", "kind": "other", "status": "active"}
        });
        let wide = Site::from_feature(&v, IdPolicy::Required).unwrap();
        let by = Provenance {
            actor: "test".into(),
            reason: None,
        };
        s.apply_sites(&[wide], &by).unwrap();
        drop(s);
        assert_eq!(inspect(&path).unwrap().problems, vec![]);
    }
}
