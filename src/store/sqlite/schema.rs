//! The SQLite schema as an ordered list of migrations, applied once each and
//! recorded in `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a
/// migration that has shipped; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: sites with their current state, and every revision ever recorded.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE sites (
        id         TEXT PRIMARY KEY,
        revision   INTEGER NOT NULL,
        retired    INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1)),
        feature    TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE site_revisions (
        site_id     TEXT NOT NULL REFERENCES sites(id),
        revision    INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        actor       TEXT NOT NULL,
        reason      TEXT,
        change      TEXT NOT NULL CHECK (change IN ('created', 'updated', 'retired', 'restored')),
        feature     TEXT NOT NULL,
        diff        TEXT NOT NULL,
        PRIMARY KEY (site_id, revision)
    ) STRICT;
    CREATE INDEX site_revisions_by_time ON site_revisions(recorded_at);",
    // 2: observation batches, observations, their links to sites, and candidates.
    "CREATE TABLE batches (
        id           TEXT PRIMARY KEY,
        received_at  TEXT NOT NULL,
        origin       TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        mode         TEXT NOT NULL CHECK (mode IN ('atomic', 'partial')),
        stored       INTEGER NOT NULL CHECK (stored IN (0, 1)),
        report       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX batches_by_hash ON batches(content_hash) WHERE stored = 1;
    CREATE TABLE candidates (
        id         TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        batch_id   TEXT NOT NULL REFERENCES batches(id),
        lon        REAL NOT NULL,
        lat        REAL NOT NULL,
        state      TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'promoted', 'dismissed')),
        decided_at TEXT,
        site_id    TEXT REFERENCES sites(id),
        note       TEXT
    ) STRICT;
    CREATE INDEX candidates_by_time ON candidates(created_at);
    CREATE TABLE observations (
        id            TEXT PRIMARY KEY,
        batch_id      TEXT NOT NULL REFERENCES batches(id),
        feature_index INTEGER NOT NULL,
        observed_at   TEXT NOT NULL,
        recorded_at   TEXT NOT NULL,
        sensor        TEXT NOT NULL,
        finding       TEXT NOT NULL,
        confidence    TEXT NOT NULL,
        geometry      TEXT NOT NULL,
        lon           REAL NOT NULL,
        lat           REAL NOT NULL,
        west          REAL NOT NULL,
        south         REAL NOT NULL,
        east          REAL NOT NULL,
        north         REAL NOT NULL,
        site_id       TEXT,
        description   TEXT,
        image_ref     TEXT,
        source        TEXT,
        external_id   TEXT,
        matched       INTEGER NOT NULL CHECK (matched IN (0, 1)),
        candidate_id  TEXT REFERENCES candidates(id)
    ) STRICT;
    CREATE UNIQUE INDEX observations_by_external_id
        ON observations(coalesce(source, ''), external_id) WHERE external_id IS NOT NULL;
    CREATE INDEX observations_by_time ON observations(observed_at);
    CREATE INDEX observations_unmatched ON observations(lat, lon) WHERE matched = 0;
    CREATE INDEX observations_by_candidate ON observations(candidate_id) WHERE candidate_id IS NOT NULL;
    CREATE TABLE observation_sites (
        observation_id TEXT NOT NULL REFERENCES observations(id),
        site_id        TEXT NOT NULL REFERENCES sites(id),
        how            TEXT NOT NULL CHECK (how IN ('named', 'intersects', 'nearest', 'promoted')),
        distance_m     REAL NOT NULL,
        PRIMARY KEY (observation_id, site_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX observation_sites_by_site ON observation_sites(site_id, observation_id);",
    // 3: each link carries its observation's time, so that a site's history and
    // its observation counts are read in time order from one index, without
    // visiting every observation of a busy site.
    "ALTER TABLE observation_sites ADD COLUMN observed_at TEXT NOT NULL DEFAULT '';
    UPDATE observation_sites SET observed_at =
        (SELECT o.observed_at FROM observations o WHERE o.id = observation_sites.observation_id);
    CREATE INDEX observation_sites_by_site_time
        ON observation_sites(site_id, observed_at, observation_id);",
    // 4: the past and areas answered by index. Each revision carries the end of
    // its validity (the next revision's time; NULL while current); R*Trees hold
    // each revision's footprint box, and each observation's box with its time
    // (in tree units, see `tree_time`). Every committed write appends to one
    // ordered change log that the index and other followers replay. The boxes
    // and times are filled by `fill_boxes` in the same transaction.
    "ALTER TABLE site_revisions ADD COLUMN valid_until TEXT;
    UPDATE site_revisions AS r SET valid_until = n.recorded_at
      FROM site_revisions AS n WHERE n.site_id = r.site_id AND n.revision = r.revision + 1;
    CREATE VIRTUAL TABLE site_revision_boxes USING rtree(id, west, east, south, north);
    CREATE VIRTUAL TABLE observation_boxes USING rtree(id, west, east, south, north, t_from, t_until);
    CREATE TABLE change_log (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at         TEXT NOT NULL,
        kind       TEXT NOT NULL,
        site_id    TEXT,
        revision   INTEGER,
        batch_id   TEXT,
        candidate_id TEXT,
        west REAL, south REAL, east REAL, north REAL
    ) STRICT;
    CREATE TABLE aggregates (
        name  TEXT PRIMARY KEY,
        west REAL, south REAL, east REAL, north REAL,
        first TEXT, last TEXT
    ) STRICT;",
    // 5: each site's observation count and last observation time, kept with
    // every batch, so that opening a catalogue reads one row per site rather
    // than every observation link; and the time indexes in the full order
    // pages are read in, so that the revisions of one instant (a whole
    // import's) are not sorted per page, and a window of observations is
    // put in id order from the index alone.
    "CREATE TABLE site_observation_stats (
        site_id          TEXT PRIMARY KEY REFERENCES sites(id),
        last_observed_at TEXT NOT NULL,
        count            INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO site_observation_stats
        SELECT site_id, max(observed_at), count(*) FROM observation_sites GROUP BY site_id;
    DROP INDEX site_revisions_by_time;
    CREATE INDEX site_revisions_by_time ON site_revisions(recorded_at, site_id, revision);
    DROP INDEX observations_by_time;
    CREATE INDEX observations_by_time ON observations(observed_at, id);",
    // 6: every live site's packed form (see `packed`), written with each write
    // of its row in `sites`, so that opening a catalogue decodes bytes rather
    // than parsing GeoJSON. A table of its own, in id order and a fifth the
    // size of `sites`, rather than a column there: reading a column of
    // `sites` reads every row's feature text beside it, and in id order
    // visits the rows out of their storage order. Filled by `fill_packed`.
    "CREATE TABLE site_packed (
        id     TEXT PRIMARY KEY,
        packed BLOB NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 7: a candidate's members grouped by cube (see `ClusterCell`), one of
    // each cube its representative. The unmatched observations an import
    // reads around a point are the free ones and the representatives
    // (`frontier = 1`), so that an area's hundredth batch reads about as much
    // as its first. Filled by `fill_cells`.
    "ALTER TABLE observations ADD COLUMN cell INTEGER;
    ALTER TABLE observations ADD COLUMN frontier INTEGER NOT NULL DEFAULT 1 CHECK (frontier IN (0, 1));
    DROP INDEX observations_unmatched;
    CREATE INDEX observations_frontier ON observations(lat, lon) WHERE matched = 0 AND frontier = 1;
    DROP INDEX observations_by_candidate;
    CREATE INDEX observations_by_candidate ON observations(candidate_id, cell, frontier)
        WHERE candidate_id IS NOT NULL;",
    // 8: a site's row holds its packed form and no longer a copy of its
    // latest revision's feature (read from `site_revisions` by key), in a
    // table clustered by id. Loading a million sites wrote each feature
    // twice and each site into three B-trees (the rowid table, its id
    // index, `site_packed`); now once, and into one, and the file is a
    // third smaller. Start-up still reads the packed forms in id order,
    // now the table's own order. Run with foreign keys off (see
    // `migrate_to`): the rows that name a site are kept as they are.
    "CREATE TABLE sites_v8 (
        id         TEXT PRIMARY KEY,
        revision   INTEGER NOT NULL,
        retired    INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1)),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        packed     BLOB
    ) STRICT, WITHOUT ROWID;
    INSERT INTO sites_v8 (id, revision, retired, created_at, updated_at, packed)
        SELECT s.id, s.revision, s.retired, s.created_at, s.updated_at, p.packed
        FROM sites s LEFT JOIN site_packed p ON p.id = s.id ORDER BY s.id;
    DROP TABLE site_packed;
    DROP TABLE sites;
    ALTER TABLE sites_v8 RENAME TO sites;",
];

/// The migration that rebuilds `sites`.
const REBUILDS_SITES: usize = 8;

/// Seconds in one unit of time in the observations' R*Tree: ten days. The
/// tree splits its nodes along the axis that costs least; with time in
/// seconds that is always time, and a node then spans the whole world for a
/// moment, so a small area visits every node. In units of ten days, a decade
/// spans about what the longitudes do, and nodes are compact in both.
pub const TIME_UNIT_S: f64 = 864_000.0;

/// A moment in the observations' R*Tree's units of time.
pub fn tree_time(t: crate::model::Timestamp) -> f64 {
    t.epoch_seconds() / TIME_UNIT_S
}

/// [`tree_time`] of an RFC 3339 time; `None` if it does not parse.
pub fn tree_time_of(rfc3339: &str) -> Option<f64> {
    crate::model::Timestamp::parse("t", rfc3339)
        .ok()
        .map(tree_time)
}

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// The oldest schema this build reads without upgrading it: what later
/// versions added (7: the candidates' cubes) only imports and `check` use,
/// and what version 8 moved, [`read_as_current`] shows where reads look.
pub const READABLE_FROM: i64 = 6;

/// Lets this build's reads run on a schema from [`READABLE_FROM`] that is
/// read as it is: views in the connection's temporary schema, whose names
/// are found before the file's own tables, give older tables their current
/// shape. Nothing is written to the file.
pub(super) fn read_as_current(conn: &Connection, found: i64) -> rusqlite::Result<()> {
    if found < REBUILDS_SITES as i64 {
        conn.execute_batch(
            "CREATE TEMP VIEW sites AS
                SELECT s.id, s.revision, s.retired, s.created_at, s.updated_at, p.packed
                FROM main.sites s LEFT JOIN main.site_packed p ON p.id = s.id",
        )?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "the database is at schema version {found}, newer than this program's {known}; upgrade sitewatch"
    )]
    TooNew { found: i64, known: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings the schema up to [`CURRENT_VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    migrate_to(conn, CURRENT_VERSION)
}

/// Brings the schema up to `target`, which is at most [`CURRENT_VERSION`].
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), MigrationError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > CURRENT_VERSION {
        return Err(MigrationError::TooNew {
            found,
            known: CURRENT_VERSION,
        });
    }
    let steps = MIGRATIONS.iter().take(target as usize);
    for (i, sql) in steps.enumerate().skip(found as usize) {
        // Some steps rebuild an index over every observation: minutes on a
        // large archive, so say what is happening to a database that has one.
        if found > 0 {
            tracing::info!(from = i, to = i + 1, "migrating the database schema");
        }
        // SQLite's guide to changing a table: foreign keys off while it is
        // rebuilt (dropping the old table would otherwise delete what names
        // it). Every row is copied, so no reference can break.
        let rebuild = i + 1 == REBUILDS_SITES;
        let keys: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
        if rebuild && keys {
            conn.pragma_update(None, "foreign_keys", false)?;
        }
        let result = apply_step(conn, i, sql);
        if rebuild && keys {
            conn.pragma_update(None, "foreign_keys", true)?;
        }
        result?;
    }
    Ok(())
}

/// Moves the schema from version `i` to `i + 1` in one transaction.
fn apply_step(conn: &mut Connection, i: usize, sql: &str) -> Result<(), MigrationError> {
    let tx = conn.transaction()?;
    tx.execute_batch(sql)?;
    if i + 1 == 4 {
        fill_boxes(&tx)?;
    }
    if i + 1 == 6 {
        fill_packed(&tx)?;
    }
    if i + 1 == 7 {
        fill_cells(&tx)?;
    }
    tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    tx.commit()?;
    Ok(())
}

/// Version 4's index rows for what a database already holds: a box per
/// revision, a box and time per observation, and the observations' aggregate
/// extent.
fn fill_boxes(tx: &rusqlite::Transaction) -> Result<(), MigrationError> {
    let bad = |what: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
    };
    {
        let mut read = tx.prepare("SELECT rowid, feature FROM site_revisions")?;
        let mut write =
            tx.prepare("INSERT INTO site_revision_boxes VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut rows = read.query([])?;
        while let Some(r) = rows.next()? {
            let rowid: i64 = r.get(0)?;
            let feature: serde_json::Value = serde_json::from_str(&r.get::<_, String>(1)?)
                .map_err(|e| bad(format!("revision {rowid}: {e}")))?;
            let [w, s, e, n] = crate::model::geojson_bounds(&feature["geometry"])
                .ok_or_else(|| bad(format!("revision {rowid}: no footprint")))?;
            write.execute(rusqlite::params![rowid, w, e, s, n])?;
        }
    }
    {
        let mut read =
            tx.prepare("SELECT rowid, observed_at, west, east, south, north FROM observations")?;
        let mut write =
            tx.prepare("INSERT INTO observation_boxes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)")?;
        let mut rows = read.query([])?;
        while let Some(r) = rows.next()? {
            let rowid: i64 = r.get(0)?;
            let t = tree_time_of(&r.get::<_, String>(1)?)
                .ok_or_else(|| bad(format!("observation {rowid}: bad time")))?;
            write.execute(rusqlite::params![
                rowid,
                r.get::<_, f64>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, f64>(5)?,
                t
            ])?;
        }
    }
    tx.execute(
        "INSERT INTO aggregates (name, west, south, east, north, first, last)
         SELECT 'observations', min(west), min(south), max(east), max(north), min(observed_at), max(observed_at)
         FROM observations HAVING count(*) > 0",
        [],
    )?;
    Ok(())
}

/// Version 7's cube and representative of every member of a candidate: the
/// first member (in storage order) of each cube of a candidate represents it.
fn fill_cells(tx: &rusqlite::Transaction) -> Result<(), MigrationError> {
    let mut read = tx.prepare(
        "SELECT rowid, candidate_id, lon, lat FROM observations
         WHERE candidate_id IS NOT NULL ORDER BY candidate_id, rowid",
    )?;
    let mut write =
        tx.prepare("UPDATE observations SET cell = ?2, frontier = ?3 WHERE rowid = ?1")?;
    let mut rows = read.query([])?;
    let mut candidate = String::new();
    let mut seen = std::collections::HashSet::new();
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let of: String = row.get(1)?;
        if of != candidate {
            candidate = of;
            seen.clear();
        }
        let cell = crate::model::ClusterCell::of(crate::model::LonLat::from_computed(
            row.get(2)?,
            row.get(3)?,
        ));
        write.execute(rusqlite::params![rowid, cell.key(), seen.insert(cell)])?;
    }
    Ok(())
}

/// Version 6's packed form of every live site, from its GeoJSON, parsed on
/// every core.
fn fill_packed(tx: &rusqlite::Transaction) -> Result<(), MigrationError> {
    let sites = {
        let mut read = tx.prepare("SELECT id, feature FROM sites WHERE retired = 0")?;
        let rows = read.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        super::load::parse_rows(rows.map(|r| r.map_err(crate::store::StoreError::from))).map_err(
            |e| {
                rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    e.to_string().into(),
                )
            },
        )?
    };
    let mut write = tx.prepare("INSERT INTO site_packed (id, packed) VALUES (?1, ?2)")?;
    for site in sites {
        write.execute(rusqlite::params![
            site.id.as_str(),
            super::packed::encode(&site)
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Site;

    #[test]
    fn migrating_twice_leaves_the_schema_at_the_current_version() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT_VERSION);
    }

    #[test]
    fn a_version_5_database_gets_the_packed_form_of_each_live_site_and_no_other() {
        use crate::store::{SiteReads, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        let sites = crate::synth::sites(3, 7);
        {
            let mut c = Connection::open(&path).unwrap();
            migrate_to(&mut c, 5).unwrap();
            for (i, site) in sites.iter().enumerate() {
                let feature = site.feature_text();
                let t = "2025-01-01T00:00:00.000000Z";
                c.execute(
                    "INSERT INTO sites VALUES (?1, 1, ?2, ?3, ?4, ?4)",
                    rusqlite::params![site.id.as_str(), i == 1, feature, t],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        drop(store);
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT_VERSION);
        let mut stmt = c
            .prepare("SELECT id, packed FROM sites WHERE packed IS NOT NULL ORDER BY id")
            .unwrap();
        let packed: Vec<(String, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let live = [&sites[0], &sites[2]];
        assert_eq!(packed.len(), live.len());
        for ((id, blob), site) in packed.iter().zip(live) {
            assert_eq!(id, site.id.as_str());
            assert_eq!(super::super::packed::decode(id, blob).as_ref(), Some(site));
        }
        let store = SqliteStore::open(&path).unwrap();
        let read: Vec<Site> = store
            .live_sites()
            .unwrap()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        assert_eq!(read, [sites[0].clone(), sites[2].clone()]);
    }

    #[test]
    fn a_version_6_database_gets_each_members_cube_and_one_representative_per_cube() {
        use crate::model::{ClusterCell, LonLat};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        // Two candidates; the first has three members in one cube and one in
        // another, the second one member in the first's crowded cube.
        let members = [
            ("o1", "c1", 10.0, 0.0),
            ("o2", "c1", 10.0000001, 0.0),
            ("o3", "c1", 10.0000002, 0.0),
            ("o4", "c1", 10.01, 0.0),
            ("o5", "c2", 10.0000003, 0.0),
            ("o6", "", 10.0000004, 0.0),
        ];
        {
            let mut c = Connection::open(&path).unwrap();
            migrate_to(&mut c, 6).unwrap();
            let t = "2025-01-01T00:00:00.000000Z";
            c.execute(
                "INSERT INTO batches VALUES ('b', ?1, 'o', 'h', 'atomic', 1, '{}')",
                [t],
            )
            .unwrap();
            for cand in ["c1", "c2"] {
                c.execute(
                    "INSERT INTO candidates (id, created_at, batch_id, lon, lat) VALUES (?1, ?2, 'b', 10, 0)",
                    [cand, t],
                )
                .unwrap();
            }
            for (i, (id, cand, lon, lat)) in members.iter().enumerate() {
                c.execute(
                    "INSERT INTO observations (id, batch_id, feature_index, observed_at, recorded_at,
                         sensor, finding, confidence, geometry, lon, lat, west, south, east, north,
                         matched, candidate_id)
                     VALUES (?1, 'b', ?2, ?3, ?3, 's', 'other', 'medium', '{}', ?4, ?5, ?4, ?5, ?4, ?5, 0, ?6)",
                    rusqlite::params![id, i as i64, t, lon, lat, (!cand.is_empty()).then_some(*cand)],
                )
                .unwrap();
            }
        }
        drop(crate::store::SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let row = |id: &str| -> (Option<i64>, i64) {
            c.query_row(
                "SELECT cell, frontier FROM observations WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        let cube = |lon: f64| Some(ClusterCell::of(LonLat::from_computed(lon, 0.0)).key());
        assert_eq!(
            cube(10.0),
            cube(10.0000003),
            "the test's points share a cube"
        );
        assert_ne!(cube(10.0), cube(10.01));
        assert_eq!(row("o1"), (cube(10.0), 1));
        assert_eq!(row("o2"), (cube(10.0), 0));
        assert_eq!(row("o3"), (cube(10.0), 0));
        assert_eq!(row("o4"), (cube(10.01), 1));
        assert_eq!(row("o5"), (cube(10.0), 1), "each candidate has its own");
        assert_eq!(
            row("o6"),
            (None, 1),
            "a free observation is on the frontier"
        );
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", CURRENT_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(MigrationError::TooNew { .. })
        ));
    }
}
