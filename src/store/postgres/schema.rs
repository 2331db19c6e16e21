//! The PostgreSQL schema, versioned as the SQLite one is: each entry moves it
//! from version `i` to `i + 1`, in one transaction, under an advisory lock so
//! that nodes starting together upgrade it once. The version is kept in
//! `sitewatch_meta`.
//!
//! The tables mirror the SQLite catalogue's, with PostgreSQL's own types:
//! times as `timestamptz`, GeoJSON as `jsonb`, flags as `boolean`, and each
//! footprint, observation geometry and candidate position also as `geography`
//! (WGS84) with a GiST index, so that `ST_DWithin` and friends answer on them.

use super::PgError;
use postgres::Client;

/// Sets the observations' extent from the rows themselves: for a schema
/// that gains the aggregate, and after a move from SQLite. Each batch then
/// widens it as it commits, so that it is read, not computed, per request.
macro_rules! observation_extent_from_rows {
    () => {
        "DELETE FROM aggregates WHERE name = 'observations';
         INSERT INTO aggregates (name, west, south, east, north, first, last)
         SELECT 'observations', min(b[1]), min(b[2]), max(b[3]), max(b[4]),
                min(observed_at), max(observed_at)
         FROM (SELECT sitewatch_lonlat_bounds(geometry) AS b, observed_at
               FROM observations) o
         HAVING count(*) > 0;"
    };
}
pub(super) use observation_extent_from_rows;

/// Never edit a shipped entry; add one.
const MIGRATIONS: &[&str] = &[
    // 1: the catalogue, its history, observations and candidates, the change log.
    "CREATE TABLE sites (
        id         text PRIMARY KEY,
        revision   bigint NOT NULL,
        retired    boolean NOT NULL DEFAULT false,
        feature    jsonb NOT NULL,
        footprint  geography NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE INDEX sites_footprint ON sites USING gist (footprint);
    CREATE TABLE site_revisions (
        site_id     text NOT NULL REFERENCES sites(id),
        revision    bigint NOT NULL,
        recorded_at timestamptz NOT NULL,
        valid_until timestamptz,
        actor       text NOT NULL,
        reason      text,
        change      text NOT NULL CHECK (change IN ('created', 'updated', 'retired', 'restored')),
        feature     jsonb NOT NULL,
        diff        jsonb NOT NULL,
        footprint   geography NOT NULL,
        PRIMARY KEY (site_id, revision)
    );
    CREATE INDEX site_revisions_by_time ON site_revisions (recorded_at, site_id, revision);
    CREATE INDEX site_revisions_footprint ON site_revisions USING gist (footprint);
    CREATE TABLE batches (
        id           text PRIMARY KEY,
        received_at  timestamptz NOT NULL,
        origin       text NOT NULL,
        content_hash text NOT NULL,
        mode         text NOT NULL CHECK (mode IN ('atomic', 'partial')),
        stored       boolean NOT NULL,
        report       jsonb NOT NULL
    );
    CREATE INDEX batches_by_hash ON batches (content_hash) WHERE stored;
    CREATE TABLE candidates (
        id         text PRIMARY KEY,
        created_at timestamptz NOT NULL,
        batch_id   text NOT NULL REFERENCES batches(id),
        position   geography(Point, 4326) NOT NULL,
        state      text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'promoted', 'dismissed')),
        decided_at timestamptz,
        site_id    text REFERENCES sites(id),
        note       text
    );
    CREATE INDEX candidates_by_time ON candidates (created_at);
    CREATE TABLE observations (
        id            text PRIMARY KEY,
        batch_id      text NOT NULL REFERENCES batches(id),
        feature_index bigint NOT NULL,
        observed_at   timestamptz NOT NULL,
        recorded_at   timestamptz NOT NULL,
        sensor        text NOT NULL,
        finding       text NOT NULL,
        confidence    text NOT NULL,
        geometry      geography NOT NULL,
        anchor        geography(Point, 4326) NOT NULL,
        site_id       text,
        description   text,
        image_ref     text,
        source        text,
        external_id   text,
        matched       boolean NOT NULL,
        candidate_id  text REFERENCES candidates(id),
        cell          bigint,
        frontier      boolean NOT NULL DEFAULT true
    );
    CREATE UNIQUE INDEX observations_by_external_id
        ON observations (coalesce(source, ''), external_id) WHERE external_id IS NOT NULL;
    CREATE INDEX observations_by_time ON observations (observed_at, id);
    CREATE INDEX observations_geometry ON observations USING gist (geometry);
    CREATE INDEX observations_frontier ON observations USING gist (anchor) WHERE NOT matched AND frontier;
    CREATE INDEX observations_by_candidate ON observations (candidate_id, cell, frontier)
        WHERE candidate_id IS NOT NULL;
    CREATE TABLE observation_sites (
        observation_id text NOT NULL REFERENCES observations(id),
        site_id        text NOT NULL REFERENCES sites(id),
        how            text NOT NULL CHECK (how IN ('named', 'intersects', 'nearest', 'promoted')),
        distance_m     double precision NOT NULL,
        observed_at    timestamptz NOT NULL,
        PRIMARY KEY (observation_id, site_id)
    );
    CREATE INDEX observation_sites_by_site_time ON observation_sites (site_id, observed_at, observation_id);
    CREATE TABLE site_observation_stats (
        site_id          text PRIMARY KEY REFERENCES sites(id),
        last_observed_at timestamptz NOT NULL,
        count            bigint NOT NULL
    );
    CREATE TABLE change_log (
        seq          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at           timestamptz NOT NULL,
        kind         text NOT NULL,
        site_id      text,
        revision     bigint,
        batch_id     text,
        candidate_id text,
        west double precision, south double precision,
        east double precision, north double precision
    );
    CREATE TABLE catalogue_meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );",
    // 2: each revision's lon/lat box as SQLite's R*Tree holds it, so that
    // area queries answer as the SQLite store does. The box is made from the
    // feature by the rule of `Footprint::lonlat_bounds` (a footprint spanning
    // more than 180 degrees of longitude gets all of them), each edge rounded
    // outwards to a 32-bit float as the R*Tree rounds it. Generated, so that
    // every way a revision is written, the move from SQLite included, fills
    // it. (Edges within 1e-37 of zero, which are no place on Earth, take
    // zero or the smallest normal float instead of a subnormal one.)
    "CREATE FUNCTION sitewatch_float4_step(f real, up boolean) RETURNS real
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        -- The neighbouring 32-bit float of a normal one. The products are
        -- exact in double precision, and land strictly between half a unit
        -- in the last place and one unit away (or exactly on the neighbour
        -- below a power of two), so rounding to real gives the neighbour.
        AS $$ SELECT CASE WHEN (f > 0) = up
            THEN (f::float8 * float8 '1.000000059604648328104303800500929355621337890625')::real
            ELSE (f::float8 * float8 '0.999999940395355224609375')::real END $$;
    CREATE FUNCTION sitewatch_box_low(v float8) RETURNS real
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT CASE
            WHEN v = 0 THEN real '0'
            WHEN abs(v) < 1e-37 THEN CASE WHEN v > 0 THEN real '0' ELSE real '-1.1754944e-38' END
            WHEN v::real > v THEN sitewatch_float4_step(v::real, false)
            ELSE v::real END $$;
    CREATE FUNCTION sitewatch_box_high(v float8) RETURNS real
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT CASE
            WHEN v = 0 THEN real '0'
            WHEN abs(v) < 1e-37 THEN CASE WHEN v < 0 THEN real '0' ELSE real '1.1754944e-38' END
            WHEN v::real < v THEN sitewatch_float4_step(v::real, true)
            ELSE v::real END $$;
    CREATE FUNCTION sitewatch_revision_box(feature jsonb) RETURNS real[]
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT ARRAY[sitewatch_box_low(b[1]), sitewatch_box_low(b[2]),
                           sitewatch_box_high(b[3]), sitewatch_box_high(b[4])]
        FROM (SELECT CASE
                WHEN count(*) = 0 THEN ARRAY[-180, -90, 180, 90]::float8[]
                WHEN max(x) - min(x) > 180 THEN ARRAY[-180, min(y), 180, max(y)]
                ELSE ARRAY[min(x), min(y), max(x), max(y)] END AS b
              FROM (SELECT (p ->> 0)::float8 AS x, (p ->> 1)::float8 AS y
                    FROM jsonb_path_query(feature,
                        'strict $.geometry ? (@.type == \"Polygon\").coordinates[*][*]') p
                    UNION ALL
                    SELECT (p ->> 0)::float8, (p ->> 1)::float8
                    FROM jsonb_path_query(feature,
                        'strict $.geometry ? (@.type == \"MultiPolygon\").coordinates[*][*][*]') p
                   ) positions) bounds $$;
    ALTER TABLE site_revisions
        ADD COLUMN bounds real[] GENERATED ALWAYS AS (sitewatch_revision_box(feature)) STORED;
    CREATE INDEX site_revisions_bounds ON site_revisions
        USING gist (box(point(bounds[1], bounds[2]), point(bounds[3], bounds[4])));",
    // 3: each observation's lon/lat box, exact (for the observations' extent)
    // and as SQLite's R*Tree holds it (for area queries, which then answer as
    // the SQLite store does), by the rule of `Place::lonlat_bounds`. The exact
    // edges are the geometry's own doubles: a box read from its coordinates,
    // not from the float index key PostGIS keeps beside them.
    "CREATE FUNCTION sitewatch_lonlat_bounds(g geography) RETURNS float8[]
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT CASE
                WHEN ST_XMax(x) - ST_XMin(x) > 180 THEN ARRAY[-180, ST_YMin(x), 180, ST_YMax(x)]
                ELSE ARRAY[ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x)] END
            FROM (SELECT g::geometry AS x) s $$;
    CREATE FUNCTION sitewatch_observation_box(g geography) RETURNS real[]
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT ARRAY[sitewatch_box_low(b[1]), sitewatch_box_low(b[2]),
                           sitewatch_box_high(b[3]), sitewatch_box_high(b[4])]
            FROM (SELECT sitewatch_lonlat_bounds(g) AS b) s $$;
    ALTER TABLE observations
        ADD COLUMN bounds real[] GENERATED ALWAYS AS (sitewatch_observation_box(geometry)) STORED;
    CREATE INDEX observations_bounds ON observations
        USING gist (box(point(bounds[1], bounds[2]), point(bounds[3], bounds[4])));",
    // 4: the observations' extent, kept with each batch as SQLite keeps it,
    // where computing it scanned every observation per request.
    concat!(
        "CREATE TABLE aggregates (
            name  text PRIMARY KEY,
            west  double precision, south double precision,
            east  double precision, north double precision,
            first timestamptz, last timestamptz
        );",
        observation_extent_from_rows!()
    ),
    // 5: what a node needs to follow the writes of others. Each log entry
    // keeps the id of the transaction that wrote it, so that a follower can
    // tell which entries may still be joined by earlier ones (those of
    // transactions not yet finished; see `follow.rs`); a statement trigger
    // wakes listeners at commit; and a batch's observations are found by
    // batch, to bring its sites' statistics up to date.
    "ALTER TABLE change_log ADD COLUMN xid bigint NOT NULL DEFAULT 0;
    ALTER TABLE change_log ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint);
    CREATE INDEX change_log_by_xid ON change_log (xid);
    CREATE INDEX observations_by_batch ON observations (batch_id);
    CREATE FUNCTION sitewatch_notify_changes() RETURNS trigger
        LANGUAGE plpgsql
        AS $$ BEGIN PERFORM pg_notify('sitewatch_changes', ''); RETURN NULL; END $$;
    CREATE TRIGGER change_log_notify AFTER INSERT ON change_log
        FOR EACH STATEMENT EXECUTE FUNCTION sitewatch_notify_changes();",
    // 6: the generated boxes, the same values made faster. PostgreSQL plans
    // the body of a SQL function that it cannot inline on every call, which
    // for these nested ones cost ~0.3 ms a row, most of an import's time; a
    // PL/pgSQL body keeps its plans for the session.
    "CREATE OR REPLACE FUNCTION sitewatch_observation_box(g geography) RETURNS real[]
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ DECLARE
            x geometry := g::geometry;
            w float8 := ST_XMin(x);
            e float8 := ST_XMax(x);
        BEGIN
            IF e - w > 180 THEN
                w := -180;
                e := 180;
            END IF;
            RETURN ARRAY[sitewatch_box_low(w), sitewatch_box_low(ST_YMin(x)),
                         sitewatch_box_high(e), sitewatch_box_high(ST_YMax(x))];
        END $$;
    CREATE OR REPLACE FUNCTION sitewatch_revision_box(feature jsonb) RETURNS real[]
        LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
        AS $$ DECLARE b float8[];
        BEGIN
            SELECT CASE
                    WHEN count(*) = 0 THEN ARRAY[-180, -90, 180, 90]::float8[]
                    WHEN max(x) - min(x) > 180 THEN ARRAY[-180, min(y), 180, max(y)]
                    ELSE ARRAY[min(x), min(y), max(x), max(y)] END
                INTO b
                FROM (SELECT (p ->> 0)::float8 AS x, (p ->> 1)::float8 AS y
                      FROM jsonb_path_query(feature,
                          'strict $.geometry ? (@.type == \"Polygon\").coordinates[*][*]') p
                      UNION ALL
                      SELECT (p ->> 0)::float8, (p ->> 1)::float8
                      FROM jsonb_path_query(feature,
                          'strict $.geometry ? (@.type == \"MultiPolygon\").coordinates[*][*][*]') p
                     ) positions;
            RETURN ARRAY[sitewatch_box_low(b[1]), sitewatch_box_low(b[2]),
                         sitewatch_box_high(b[3]), sitewatch_box_high(b[4])];
        END $$;",
    // 7: the boxes computed by the writer, which has the coordinates in hand
    // (`boxes.rs`, the same values), instead of by the server from the
    // feature's JSON, a third of a bulk write's time. A row written without
    // one, by `migrate`, a candidate's promotion or anyone else, still gets
    // it from the functions above, and a changed feature or geometry gets it
    // again.
    "ALTER TABLE site_revisions ALTER COLUMN bounds DROP EXPRESSION;
    ALTER TABLE observations ALTER COLUMN bounds DROP EXPRESSION;
    CREATE FUNCTION sitewatch_fill_revision_box() RETURNS trigger
        LANGUAGE plpgsql
        AS $$ BEGIN NEW.bounds := sitewatch_revision_box(NEW.feature); RETURN NEW; END $$;
    CREATE FUNCTION sitewatch_fill_observation_box() RETURNS trigger
        LANGUAGE plpgsql
        AS $$ BEGIN NEW.bounds := sitewatch_observation_box(NEW.geometry); RETURN NEW; END $$;
    CREATE TRIGGER site_revisions_box_on_insert BEFORE INSERT ON site_revisions
        FOR EACH ROW WHEN (NEW.bounds IS NULL) EXECUTE FUNCTION sitewatch_fill_revision_box();
    CREATE TRIGGER site_revisions_box_on_update BEFORE UPDATE OF feature ON site_revisions
        FOR EACH ROW WHEN (NEW.feature IS DISTINCT FROM OLD.feature)
        EXECUTE FUNCTION sitewatch_fill_revision_box();
    CREATE TRIGGER observations_box_on_insert BEFORE INSERT ON observations
        FOR EACH ROW WHEN (NEW.bounds IS NULL) EXECUTE FUNCTION sitewatch_fill_observation_box();
    CREATE TRIGGER observations_box_on_update BEFORE UPDATE OF geometry ON observations
        FOR EACH ROW WHEN (NEW.geometry::bytea IS DISTINCT FROM OLD.geometry::bytea)
        EXECUTE FUNCTION sitewatch_fill_observation_box();",
    // 8: each site's packed form (`store::packed`) beside its feature, which
    // a node reads at start instead of parsing a million GeoJSON documents.
    // It describes the feature whenever it is there: a write that changes
    // the feature without giving a new one (another program's, say) clears
    // it, and the reader falls back to the feature.
    "ALTER TABLE sites ADD COLUMN packed bytea;
    CREATE FUNCTION sitewatch_clear_packed() RETURNS trigger
        LANGUAGE plpgsql
        AS $$ BEGIN NEW.packed := NULL; RETURN NEW; END $$;
    CREATE TRIGGER sites_packed_follows_feature BEFORE UPDATE OF feature ON sites
        FOR EACH ROW WHEN (NEW.feature IS DISTINCT FROM OLD.feature
                           AND NEW.packed IS NOT DISTINCT FROM OLD.packed)
        EXECUTE FUNCTION sitewatch_clear_packed();",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Any 64-bit number that no other program takes an advisory lock on.
const MIGRATION_LOCK: i64 = 0x5349_5445_5741_5443; // "SITEWATC"

/// Brings the schema up to [`CURRENT_VERSION`], creating PostGIS if it is
/// missing (which needs a role allowed to).
pub fn migrate(client: &mut Client) -> Result<(), PgError> {
    let has_postgis: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis')",
            &[],
        )?
        .get(0);
    if !has_postgis {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS postgis")
            .map_err(|e| PgError::NoPostgis(super::describe(&e)))?;
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sitewatch_meta (key text PRIMARY KEY, value text NOT NULL)",
    )?;
    let found: i64 = tx
        .query_opt(
            "SELECT value::bigint FROM sitewatch_meta WHERE key = 'schema_version'",
            &[],
        )?
        .map_or(0, |r| r.get(0));
    if found > CURRENT_VERSION {
        return Err(PgError::TooNew {
            found,
            known: CURRENT_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        if found > 0 {
            tracing::info!(from = i, to = i + 1, "migrating the PostgreSQL schema");
        }
        tx.batch_execute(sql)?;
    }
    tx.execute(
        "INSERT INTO sitewatch_meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&CURRENT_VERSION.to_string()],
    )?;
    tx.commit()?;
    Ok(())
}
