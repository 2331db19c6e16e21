//! The observations side of [`super::PgStore`]: batches, observations, their
//! links to sites, and the unit of work that imports one batch in one
//! PostgreSQL transaction. The answers are the SQLite store's, in the same
//! order and paged by the same keys.

use super::observation_copy::Pending;
use super::sites::WRITE_LOCK;
use super::store::{PgStore, from_pg, to_pg};
use crate::model::{
    ClusterCell, Confidence, FieldError, Finding, LinkHow, LonLat, Observation, ObservationStats,
    Place, SiteId, SiteLink, SiteStats, StoredObservation, Timestamp,
};
use crate::store::{
    BatchRecord, Before, ImportUnit, LogKind, ObservationReads, ObservationWrites, SitePage,
    StoreError, Unmatched,
};
use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement, Transaction};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The columns [`read_observations`] reads. The geometry comes as WKB, whose
/// doubles are the stored ones exactly (GeoJSON text from PostGIS is rounded),
/// and the links as three arrays in site order.
const OBS_COLUMNS: &str = r#"o.id, o.batch_id, o.recorded_at, o.observed_at, o.sensor, o.finding,
    o.confidence, ST_AsBinary(o.geometry), o.site_id, o.description, o.image_ref, o.source,
    o.external_id, o.candidate_id,
    ARRAY(SELECT k.site_id FROM observation_sites k WHERE k.observation_id = o.id ORDER BY k.site_id COLLATE "C"),
    ARRAY(SELECT k.how FROM observation_sites k WHERE k.observation_id = o.id ORDER BY k.site_id COLLATE "C"),
    ARRAY(SELECT k.distance_m FROM observation_sites k WHERE k.observation_id = o.id ORDER BY k.site_id COLLATE "C")"#;

/// Whether an observation's box (its `bounds`: [`Place::lonlat_bounds`] as
/// SQLite's R*Tree holds it, each edge rounded outward to a 32-bit float)
/// meets the box in the four parameters from `$first` (west, south, east,
/// north): the GiST index's test, a little generous, then the exact one.
fn meets_box(first: usize) -> String {
    let [w, s, e, n] = [first, first + 1, first + 2, first + 3];
    format!(
        "box(point(o.bounds[1], o.bounds[2]), point(o.bounds[3], o.bounds[4]))
             && box(point(${w}::float8, ${s}::float8), point(${e}::float8, ${n}::float8))
         AND o.bounds[1] <= ${e}::float8 AND o.bounds[3] >= ${w}::float8
         AND o.bounds[2] <= ${n}::float8 AND o.bounds[4] >= ${s}::float8"
    )
}

/// A row that does not read back as the domain value it was written from.
fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        reason: e.to_string(),
    }
}

/// A count or limit as PostgreSQL takes it.
fn as_limit(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

/// A cursor's time: cursors carry the RFC 3339 text of a stored time.
fn cursor_time(b: &Before) -> Result<Timestamp, StoreError> {
    Timestamp::parse("cursor", &b.time).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Reads a WKB geometry (as `ST_AsBinary` writes it: a point, polygon or
/// multipolygon) back into the GeoJSON it was stored from.
fn geojson_from_wkb(wkb: &[u8]) -> Result<Value, String> {
    struct Reader<'a> {
        bytes: &'a [u8],
        at: usize,
        little: bool,
    }
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
            let end = self.at + N;
            let b = self
                .bytes
                .get(self.at..end)
                .ok_or("the WKB ends early")?
                .try_into()
                .map_err(|_| "the WKB ends early")?;
            self.at = end;
            Ok(b)
        }
        fn header(&mut self) -> Result<u32, String> {
            self.little = self.take::<1>()?[0] == 1;
            self.u32()
        }
        fn u32(&mut self) -> Result<u32, String> {
            let b = self.take::<4>()?;
            Ok(if self.little {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            })
        }
        fn f64(&mut self) -> Result<f64, String> {
            let b = self.take::<8>()?;
            Ok(if self.little {
                f64::from_le_bytes(b)
            } else {
                f64::from_be_bytes(b)
            })
        }
        fn position(&mut self) -> Result<Value, String> {
            Ok(json!([self.f64()?, self.f64()?]))
        }
        fn rings(&mut self) -> Result<Value, String> {
            let rings = self.u32()?;
            let mut out = Vec::new();
            for _ in 0..rings {
                let points = self.u32()?;
                let ring = (0..points)
                    .map(|_| self.position())
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(Value::Array(ring));
            }
            Ok(Value::Array(out))
        }
    }
    let mut r = Reader {
        bytes: wkb,
        at: 0,
        little: true,
    };
    match r.header()? {
        1 => Ok(json!({"type": "Point", "coordinates": r.position()?})),
        3 => Ok(json!({"type": "Polygon", "coordinates": r.rings()?})),
        6 => {
            let parts = r.u32()?;
            let mut out = Vec::new();
            for _ in 0..parts {
                if r.header()? != 3 {
                    return Err("a multipolygon part is not a polygon".into());
                }
                out.push(r.rings()?);
            }
            Ok(json!({"type": "MultiPolygon", "coordinates": out}))
        }
        other => Err(format!(
            "WKB geometry type {other} is not a point or polygon"
        )),
    }
}

/// An observation from the columns of [`OBS_COLUMNS`].
fn observation_row(r: &Row) -> Result<StoredObservation, StoreError> {
    let id: String = r.get(0);
    let bad = |e: FieldError| corrupt(&id, e);
    // Through GeoJSON text, as the SQLite store reads its geometry column:
    // serde_json's parser may land a last digit away from the written double,
    // and both stores should give the same place.
    let place = geojson_from_wkb(r.get(7))
        .and_then(|v| serde_json::from_str::<Value>(&v.to_string()).map_err(|e| e.to_string()))
        .map_err(|e| corrupt(&id, e))
        .and_then(|v| Place::parse("geometry", &v).map_err(bad))?;
    let sites: Vec<String> = r.get(14);
    let hows: Vec<String> = r.get(15);
    let distances: Vec<f64> = r.get(16);
    let links = sites
        .iter()
        .zip(&hows)
        .zip(&distances)
        .map(|((site, how), &distance_m)| {
            Ok(SiteLink {
                site_id: SiteId::parse("site_id", site).map_err(bad)?,
                how: LinkHow::parse("how", how).map_err(bad)?,
                distance_m,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(StoredObservation {
        batch_id: r.get(1),
        recorded_at: from_pg(r.get(2)),
        observed_at: from_pg(r.get(3)),
        sensor: r.get(4),
        finding: Finding::parse("finding", r.get(5)).map_err(bad)?,
        confidence: Confidence::parse("confidence", r.get(6)).map_err(bad)?,
        place,
        site_id: r
            .get::<_, Option<&str>>(8)
            .map(|s| SiteId::parse("site_id", s))
            .transpose()
            .map_err(bad)?,
        description: r.get(9),
        image_ref: r.get(10),
        source: r.get(11),
        external_id: r.get(12),
        candidate_id: r.get(13),
        sites: links,
        id,
    })
}

fn read_observations(
    c: &mut impl GenericClient,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<StoredObservation>, StoreError> {
    c.query(sql, args)?.iter().map(observation_row).collect()
}

/// An extent selected as `west, south, east, north, first, last` in one row.
pub(super) fn extent_row(r: &Row) -> Option<([f64; 4], Timestamp, Timestamp)> {
    let (Some(w), Some(s), Some(e), Some(n), Some(first), Some(last)) = (
        r.get::<_, Option<f64>>(0),
        r.get::<_, Option<f64>>(1),
        r.get::<_, Option<f64>>(2),
        r.get::<_, Option<f64>>(3),
        r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4),
        r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(5),
    ) else {
        return None;
    };
    Some(([w, s, e, n], from_pg(first), from_pg(last)))
}

/// One change-log entry as it is written.
pub(super) struct LogWrite<'a> {
    pub at: Timestamp,
    pub kind: LogKind,
    pub site_id: Option<&'a str>,
    pub revision: Option<i64>,
    pub batch_id: Option<&'a str>,
    pub candidate_id: Option<&'a str>,
    pub bounds: Option<[f64; 4]>,
}

/// Appends a change-log entry in the caller's transaction, so that it commits
/// with the write it describes or not at all.
pub(super) fn append_log(c: &mut impl GenericClient, e: &LogWrite<'_>) -> Result<(), StoreError> {
    let b = e.bounds.map(|b| b.map(Some)).unwrap_or([None; 4]);
    c.execute(
        "INSERT INTO change_log (at, kind, site_id, revision, batch_id, candidate_id, west, south, east, north)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &to_pg(e.at),
            &e.kind.as_str(),
            &e.site_id,
            &e.revision,
            &e.batch_id,
            &e.candidate_id,
            &b[0],
            &b[1],
            &b[2],
            &b[3],
        ],
    )?;
    Ok(())
}

/// A statement argument, owned.
fn arg(v: impl ToSql + Sync + 'static) -> Box<dyn ToSql + Sync> {
    Box::new(v)
}

/// Conditions and their arguments, numbered as they are added.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    args: Vec<Box<dyn ToSql + Sync>>,
}

impl Conditions {
    /// The number the next argument takes.
    fn next(&self) -> usize {
        self.args.len() + 1
    }

    fn push(&mut self, sql: String, args: Vec<Box<dyn ToSql + Sync>>) {
        self.sql.push(sql);
        self.args.extend(args);
    }

    /// The `WHERE` clause (`TRUE` for none).
    fn clause(&self) -> String {
        if self.sql.is_empty() {
            "TRUE".into()
        } else {
            self.sql.join(" AND ")
        }
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args.iter().map(|a| a.as_ref()).collect()
    }

    /// The box, window and findings shared by the listing and its count. The
    /// whole world's box admits every observation, as it does in SQLite.
    fn observations(
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
    ) -> Self {
        let mut c = Self::default();
        if let Some([w, s, e, n]) = rect.filter(|r| *r != [-180.0, -90.0, 180.0, 90.0]) {
            c.push(meets_box(c.next()), vec![arg(w), arg(s), arg(e), arg(n)]);
        }
        if let Some(t) = since {
            c.push(
                format!("o.observed_at >= ${}", c.next()),
                vec![arg(to_pg(t))],
            );
        }
        if let Some(t) = until {
            c.push(
                format!("o.observed_at <= ${}", c.next()),
                vec![arg(to_pg(t))],
            );
        }
        if !findings.is_empty() {
            c.push(
                format!("o.finding = ANY(${})", c.next()),
                vec![arg(findings.to_vec())],
            );
        }
        c
    }
}

impl ObservationReads for PgStore {
    fn stored_batch_with_hash(&self, hash: &str) -> Result<Option<String>, StoreError> {
        stored_batch_with_hash(&mut *self.client(), hash)
    }

    /// Batches, newest first. `before` is RFC 3339 text compared as SQLite
    /// compares it: as a time when it is written as stored times are (UTC,
    /// microseconds, `Z`), and as text otherwise.
    fn batches(&self, limit: usize, before: Option<&str>) -> Result<Vec<BatchRecord>, StoreError> {
        let canonical = before.and_then(|b| {
            Timestamp::parse("before", b)
                .ok()
                .filter(|t| t.to_rfc3339() == b)
        });
        let mut c = Conditions::default();
        c.push("content_hash <> ''".into(), Vec::new());
        match (canonical, before) {
            (Some(t), _) => c.push(
                format!("received_at < ${}", c.next()),
                vec![arg(to_pg(t))],
            ),
            (None, Some(raw)) => c.push(
                format!(
                    r#"to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') COLLATE "C" < ${}"#,
                    c.next()
                ),
                vec![arg(raw.to_owned())],
            ),
            (None, None) => {}
        }
        let sql = format!(
            r#"SELECT id, received_at, origin, content_hash, mode, stored, report FROM batches
               WHERE {} ORDER BY received_at DESC, id COLLATE "C" DESC LIMIT ${}"#,
            c.clause(),
            c.next()
        );
        let mut args = c.refs();
        let limit = as_limit(limit);
        args.push(&limit);
        let rows = self.client().query(&sql, &args)?;
        Ok(rows
            .iter()
            .map(|r| BatchRecord {
                id: r.get(0),
                received_at: from_pg(r.get(1)),
                origin: r.get(2),
                content_hash: r.get(3),
                mode: r.get(4),
                stored: r.get(5),
                report: r.get(6),
            })
            .collect())
    }

    fn observation_stats(&self) -> Result<SiteStats, StoreError> {
        let rows = self.client().query(
            "SELECT site_id, last_observed_at, count FROM site_observation_stats",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let id: &str = r.get(0);
                let site = SiteId::parse("site_id", id).map_err(|e| corrupt(id, e))?;
                let count: i64 = r.get(2);
                Ok((
                    site,
                    ObservationStats {
                        last_observed_at: from_pg(r.get(1)),
                        count: count as u64,
                    },
                ))
            })
            .collect()
    }

    fn observation(&self, id: &str) -> Result<Option<StoredObservation>, StoreError> {
        Ok(read_observations(
            &mut *self.client(),
            &format!("SELECT {OBS_COLUMNS} FROM observations o WHERE o.id = $1"),
            &[&id],
        )?
        .pop())
    }

    fn first_event_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError> {
        let r = self.client().query_one(
            "SELECT (SELECT min(observed_at) FROM observations),
                    (SELECT min(recorded_at) FROM site_revisions)",
            &[],
        )?;
        let t = |i| {
            r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
                .map(from_pg)
        };
        Ok((t(0), t(1)))
    }

    fn observation_extent(&self) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError> {
        // Kept up to date by each batch's commit: one row, not a scan.
        let r = self.client().query_opt(
            "SELECT west, south, east, north, first, last FROM aggregates WHERE name = 'observations'",
            &[],
        )?;
        Ok(r.as_ref().and_then(extent_row))
    }

    fn site_observations(
        &self,
        site: &SiteId,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        page: SitePage<'_>,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let mut c = Conditions::default();
        c.push("l.site_id = $1".into(), vec![arg(site.as_str().to_owned())]);
        if let Some(t) = from {
            c.push(
                format!("l.observed_at >= ${}", c.next()),
                vec![arg(to_pg(t))],
            );
        }
        if let Some(t) = to {
            c.push(
                format!("l.observed_at <= ${}", c.next()),
                vec![arg(to_pg(t))],
            );
        }
        let (op, order) = if page.newest_first {
            ("<", "DESC")
        } else {
            (">", "")
        };
        if let Some(b) = page.after {
            let n = c.next();
            c.push(
                format!(
                    r#"(l.observed_at, l.observation_id COLLATE "C") {op} (${n}, ${})"#,
                    n + 1
                ),
                vec![arg(to_pg(cursor_time(b)?)), arg(b.id.clone())],
            );
        }
        let sql = format!(
            r#"SELECT {OBS_COLUMNS} FROM observation_sites l JOIN observations o ON o.id = l.observation_id
               WHERE {} ORDER BY l.observed_at {order}, l.observation_id COLLATE "C" {order} LIMIT ${}"#,
            c.clause(),
            c.next()
        );
        let mut args = c.refs();
        let limit = as_limit(page.limit);
        args.push(&limit);
        read_observations(&mut *self.client(), &sql, &args)
    }

    fn observations_in(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let mut c = Conditions::observations(rect, since, until, findings);
        if let Some(b) = before {
            let n = c.next();
            c.push(
                format!(r#"(o.observed_at, o.id COLLATE "C") < (${n}, ${})"#, n + 1),
                vec![arg(to_pg(cursor_time(b)?)), arg(b.id.clone())],
            );
        }
        let sql = format!(
            r#"SELECT {OBS_COLUMNS} FROM observations o
               WHERE {} ORDER BY o.observed_at DESC, o.id COLLATE "C" DESC LIMIT ${}"#,
            c.clause(),
            c.next()
        );
        let mut args = c.refs();
        let limit = as_limit(limit);
        args.push(&limit);
        read_observations(&mut *self.client(), &sql, &args)
    }

    /// Stops counting at `cap`, so that a count never costs more than `cap` rows.
    fn count_observations(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
        cap: usize,
    ) -> Result<usize, StoreError> {
        let c = Conditions::observations(rect, since, until, findings);
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM observations o WHERE {} LIMIT ${}) t",
            c.clause(),
            c.next()
        );
        let mut args = c.refs();
        let cap = as_limit(cap);
        args.push(&cap);
        let n: i64 = self.client().query_one(&sql, &args)?.get(0);
        Ok(n as usize)
    }
}

fn stored_batch_with_hash(
    c: &mut impl GenericClient,
    hash: &str,
) -> Result<Option<String>, StoreError> {
    Ok(c.query_opt(
        r#"SELECT id FROM batches WHERE content_hash = $1 AND stored
           ORDER BY received_at, id COLLATE "C" LIMIT 1"#,
        &[&hash],
    )?
    .map(|r| r.get(0)))
}

impl ObservationWrites for PgStore {
    /// Opens the batch's transaction with the batch's row, which observations
    /// reference until the commit completes it.
    fn begin_batch(
        &mut self,
        batch_id: &str,
        received_at: Timestamp,
    ) -> Result<Box<dyn ImportUnit + '_>, StoreError> {
        let mut tx = self.client_mut().transaction()?;
        // One writer at a time, as in SQLite: the batch's log entry then
        // takes its place in commit order.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        tx.execute(
            "INSERT INTO batches (id, received_at, origin, content_hash, mode, stored, report)
             VALUES ($1, $2, '', '', 'atomic', false, '{}')",
            &[&batch_id, &to_pg(received_at)],
        )?;
        Ok(Box::new(PgBatch {
            tx: RefCell::new(tx),
            statements: RefCell::default(),
            batch_id: batch_id.to_owned(),
            received_at,
            bounds: Cell::new(None),
            times: Cell::new(None),
            site_stats: RefCell::default(),
            pending: RefCell::default(),
            stored_externals: RefCell::default(),
        }))
    }

    fn record_batch(&mut self, rec: &BatchRecord) -> Result<(), StoreError> {
        self.client_mut().execute(
            "INSERT INTO batches (id, received_at, origin, content_hash, mode, stored, report)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &rec.id,
                &to_pg(rec.received_at),
                &rec.origin,
                &rec.content_hash,
                &rec.mode,
                &rec.stored,
                &rec.report,
            ],
        )?;
        Ok(())
    }
}

/// One batch being imported: everything written through it lands on commit,
/// or not at all.
struct PgBatch<'a> {
    tx: RefCell<Transaction<'a>>,
    /// Statements prepared once per batch, not once per observation.
    statements: RefCell<HashMap<&'static str, Statement>>,
    batch_id: String,
    received_at: Timestamp,
    /// The box and time span of what the batch stored so far.
    bounds: Cell<Option<[f64; 4]>>,
    times: Cell<Option<(Timestamp, Timestamp)>>,
    /// Per linked site: the batch's latest observation of it and how many.
    site_stats: RefCell<HashMap<String, (Timestamp, u64)>>,
    /// Observations written but not yet sent. Reads during the batch need
    /// not see them: the clustering holds the batch's own observations and
    /// passes over them when a read returns them, and duplicates within the
    /// batch are found in `pending`. Writes that refer to them flush first.
    pending: RefCell<Pending>,
    /// Whether the external ids of the features being stored were stored
    /// before the batch, and as which observation (`look_up_externals`).
    stored_externals: RefCell<HashMap<(String, String), Option<String>>>,
}

impl PgBatch<'_> {
    fn prepared(&self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.borrow_mut().prepare(sql)?;
        self.statements.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut tx = self.tx.borrow_mut();
        self.pending
            .borrow_mut()
            .flush(&mut tx, &self.batch_id, to_pg(self.received_at))
    }

    fn execute(&self, sql: &'static str, args: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let s = self.prepared(sql)?;
        Ok(self.tx.borrow_mut().execute(&s, args)?)
    }

    fn query(
        &self,
        sql: &'static str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.prepared(sql)?;
        Ok(self.tx.borrow_mut().query(&s, args)?)
    }
}

/// An unmatched observation from the columns `id, lon, lat, observed_at,
/// candidate_id, state of the candidate, cell`.
fn unmatched_row(r: &Row) -> Unmatched {
    Unmatched {
        id: r.get(0),
        anchor: LonLat::from_computed(r.get(1), r.get(2)),
        observed_at: from_pg(r.get(3)),
        candidate_id: r.get(4),
        candidate_open: r.get::<_, Option<&str>>(5) == Some("open"),
        cell: r.get::<_, Option<i64>>(6).map(ClusterCell::from_key),
    }
}

/// A radius around `p` that holds the whole search box, for the GiST index
/// to narrow by before the box decides; `None` when the box is too large for
/// a radius to help. Great-circle distance on a sphere of the equatorial
/// radius, widened by 1% (more than the ellipsoid ever adds) and a metre.
fn covering_radius(p: LonLat, south: f64, north: f64, ranges: &[(f64, f64)]) -> Option<f64> {
    let distance = |lon: f64, lat: f64| {
        let (p1, p2) = (p.lat().to_radians(), lat.to_radians());
        let dl = (lon - p.lon()).to_radians();
        let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6_378_137.0 * h.sqrt().min(1.0).asin()
    };
    let opposite = if p.lon() > 0.0 {
        p.lon() - 180.0
    } else {
        p.lon() + 180.0
    };
    let mut far: f64 = 0.0;
    for &(w, e) in ranges {
        // Along a parallel, distance grows with the difference in longitude;
        // along a short meridian segment it is largest at an end.
        let mut lons = vec![w, e];
        if (w..=e).contains(&opposite) {
            lons.push(opposite);
        }
        for lon in lons {
            far = far.max(distance(lon, south)).max(distance(lon, north));
        }
    }
    let reach = far * 1.01 + 1.0;
    (reach < 5_000_000.0).then_some(reach)
}

impl ImportUnit for PgBatch<'_> {
    fn batch_id(&self) -> &str {
        &self.batch_id
    }

    fn stored_batch_with_hash(&self, hash: &str) -> Result<Option<String>, StoreError> {
        stored_batch_with_hash(&mut *self.tx.borrow_mut(), hash)
    }

    /// Reads which of `keys` were stored before this batch, in one query;
    /// the answers replace those of the previous block, so that memory stays
    /// flat. The batch's own observations are found in `pending` first.
    fn look_up_externals(&self, keys: &[(Option<&str>, &str)]) -> Result<(), StoreError> {
        let sources: Vec<&str> = keys.iter().map(|(s, _)| s.unwrap_or("")).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, e)| *e).collect();
        let rows = self.query(
            "SELECT k.s, k.e, o.id FROM unnest($1::text[], $2::text[]) AS k(s, e)
             JOIN observations o ON coalesce(o.source, '') = k.s AND o.external_id = k.e",
            &[&sources, &ids],
        )?;
        let mut known: HashMap<(String, String), Option<String>> = keys
            .iter()
            .map(|(s, e)| ((s.unwrap_or("").to_owned(), (*e).to_owned()), None))
            .collect();
        for r in rows {
            known.insert((r.get(0), r.get(1)), Some(r.get(2)));
        }
        *self.stored_externals.borrow_mut() = known;
        Ok(())
    }

    fn existing_external(
        &self,
        source: Option<&str>,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        if let Some(id) = self.pending.borrow().external(source, external_id) {
            return Ok(Some(id.to_owned()));
        }
        let key = (source.unwrap_or("").to_owned(), external_id.to_owned());
        if let Some(known) = self.stored_externals.borrow().get(&key) {
            return Ok(known.clone());
        }
        Ok(self
            .query(
                "SELECT id FROM observations WHERE coalesce(source, '') = coalesce($1, '') AND external_id = $2",
                &[&source, &external_id],
            )?
            .first()
            .map(|r| r.get(0)))
    }

    fn insert_observation(
        &self,
        feature_index: usize,
        obs: &Observation,
        links: &[SiteLink],
    ) -> Result<String, StoreError> {
        let id = crate::model::new_id("obs");
        let observed_at = to_pg(obs.observed_at);
        let full = self
            .pending
            .borrow_mut()
            .hold(&id, feature_index, obs, links, observed_at);
        if full {
            self.flush()?;
        }
        let [w, s, e, n] = obs.place.lonlat_bounds();
        self.bounds.set(Some(match self.bounds.get() {
            None => [w, s, e, n],
            Some([bw, bs, be, bn]) => [bw.min(w), bs.min(s), be.max(e), bn.max(n)],
        }));
        let t = obs.observed_at;
        self.times.set(Some(match self.times.get() {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        }));
        let mut site_stats = self.site_stats.borrow_mut();
        for l in links {
            let e = site_stats
                .entry(l.site_id.as_str().to_owned())
                .or_insert((t, 0));
            e.0 = e.0.max(t);
            e.1 += 1;
        }
        Ok(id)
    }

    /// The same superset of the observations within `radius_m` of `p` as the
    /// SQLite store's, the box it searches: the GiST index on the free
    /// anchors narrows to a geodesic radius around the box, the box decides.
    fn unmatched_near(&self, p: LonLat, radius_m: f64) -> Result<Vec<Unmatched>, StoreError> {
        const NEAR: &str = r#"SELECT o.id, ST_X(o.anchor::geometry), ST_Y(o.anchor::geometry), o.observed_at,
                   o.candidate_id, c.state, o.cell
            FROM observations o LEFT JOIN candidates c ON c.id = o.candidate_id
            WHERE NOT o.matched AND o.frontier
              AND ST_DWithin(o.anchor, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $3)
              AND ST_Y(o.anchor::geometry) BETWEEN $4 AND $5
              AND (ST_X(o.anchor::geometry) BETWEEN $6 AND $7 OR ST_X(o.anchor::geometry) BETWEEN $8 AND $9)
            ORDER BY o.id COLLATE "C""#;
        const ANYWHERE: &str = r#"SELECT o.id, ST_X(o.anchor::geometry), ST_Y(o.anchor::geometry), o.observed_at,
                   o.candidate_id, c.state, o.cell
            FROM observations o LEFT JOIN candidates c ON c.id = o.candidate_id
            WHERE NOT o.matched AND o.frontier
              AND ST_Y(o.anchor::geometry) BETWEEN $1 AND $2
              AND (ST_X(o.anchor::geometry) BETWEEN $3 AND $4 OR ST_X(o.anchor::geometry) BETWEEN $5 AND $6)
            ORDER BY o.id COLLATE "C""#;
        let (south, north, ranges) = crate::store::radius_search_box(p, radius_m);
        let (w1, e1) = ranges[0];
        // A second range that is the first again adds nothing.
        let (w2, e2) = ranges.get(1).copied().unwrap_or((w1, e1));
        let rows = match covering_radius(p, south, north, &ranges) {
            Some(reach) => self.query(
                NEAR,
                &[
                    &p.lon(),
                    &p.lat(),
                    &reach,
                    &south,
                    &north,
                    &w1,
                    &e1,
                    &w2,
                    &e2,
                ],
            )?,
            None => self.query(ANYWHERE, &[&south, &north, &w1, &e1, &w2, &e2])?,
        };
        Ok(rows.iter().map(unmatched_row).collect())
    }

    fn candidate_members_in(
        &self,
        candidate: &str,
        cell: ClusterCell,
    ) -> Result<Vec<Unmatched>, StoreError> {
        let rows = self.query(
            r#"SELECT o.id, ST_X(o.anchor::geometry), ST_Y(o.anchor::geometry), o.observed_at,
                   o.candidate_id, c.state, o.cell
               FROM observations o JOIN candidates c ON c.id = o.candidate_id
               WHERE o.candidate_id = $1 AND o.cell = $2 AND NOT o.matched
               ORDER BY o.id COLLATE "C""#,
            &[&candidate, &cell.key()],
        )?;
        Ok(rows.iter().map(unmatched_row).collect())
    }

    fn create_candidate(
        &self,
        at: LonLat,
        members: &[(String, ClusterCell)],
    ) -> Result<String, StoreError> {
        self.flush()?;
        let id = crate::model::new_id("cand");
        self.execute(
            "INSERT INTO candidates (id, created_at, batch_id, position)
             VALUES ($1, $2, $3, ST_SetSRID(ST_MakePoint($4, $5), 4326)::geography)",
            &[
                &id,
                &to_pg(self.received_at),
                &self.batch_id,
                &at.lon(),
                &at.lat(),
            ],
        )?;
        self.add_to_candidate(&id, members)?;
        Ok(id)
    }

    fn add_to_candidate(
        &self,
        candidate: &str,
        members: &[(String, ClusterCell)],
    ) -> Result<(), StoreError> {
        self.flush()?;
        // The first member of a cube represents it; the subquery sees the
        // rows as they were before this one joined.
        for (m, cell) in members {
            self.execute(
                "UPDATE observations SET candidate_id = $1, cell = $3,
                     frontier = NOT EXISTS (SELECT 1 FROM observations
                         WHERE candidate_id = $1 AND cell = $3 AND frontier)
                 WHERE id = $2",
                &[&candidate, m, &cell.key()],
            )?;
        }
        Ok(())
    }

    fn commit(
        self: Box<Self>,
        origin: &str,
        content_hash: &str,
        mode: &str,
        report: &Value,
    ) -> Result<(), StoreError> {
        self.flush()?;
        self.execute(
            "UPDATE batches SET origin = $2, content_hash = $3, mode = $4, stored = true, report = $5
             WHERE id = $1",
            &[&self.batch_id, &origin, &content_hash, &mode, report],
        )?;
        // One statement for every site the batch observed, not one each.
        let stats = self.site_stats.take();
        let mut sites = Vec::with_capacity(stats.len());
        let mut lasts = Vec::with_capacity(stats.len());
        let mut counts = Vec::with_capacity(stats.len());
        for (site, (last, count)) in stats {
            sites.push(site);
            lasts.push(to_pg(last));
            counts.push(count as i64);
        }
        if !sites.is_empty() {
            self.execute(
                "INSERT INTO site_observation_stats (site_id, last_observed_at, count)
                 SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[])
                 ON CONFLICT (site_id) DO UPDATE SET
                   last_observed_at = greatest(site_observation_stats.last_observed_at, excluded.last_observed_at),
                   count = site_observation_stats.count + excluded.count",
                &[&sites, &lasts, &counts],
            )?;
        }
        if let (Some([w, s, e, n]), Some((first, last))) = (self.bounds.get(), self.times.get()) {
            self.execute(
                "INSERT INTO aggregates (name, west, south, east, north, first, last)
                 VALUES ('observations', $1, $2, $3, $4, $5, $6)
                 ON CONFLICT (name) DO UPDATE SET
                   west = least(aggregates.west, excluded.west),
                   south = least(aggregates.south, excluded.south),
                   east = greatest(aggregates.east, excluded.east),
                   north = greatest(aggregates.north, excluded.north),
                   first = least(aggregates.first, excluded.first),
                   last = greatest(aggregates.last, excluded.last)",
                &[&w, &s, &e, &n, &to_pg(first), &to_pg(last)],
            )?;
        }
        let this = *self;
        let mut tx = this.tx.into_inner();
        append_log(
            &mut tx,
            &LogWrite {
                at: this.received_at,
                kind: LogKind::BatchStored,
                site_id: None,
                revision: None,
                batch_id: Some(&this.batch_id),
                candidate_id: None,
                bounds: this.bounds.get(),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        let this = *self;
        this.tx.into_inner().rollback()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkb_reads_back_points_and_polygons_exactly() {
        let mut point = vec![1u8];
        point.extend(1u32.to_le_bytes());
        point.extend(0.1f64.to_le_bytes());
        point.extend((-33.000_000_000_000_01f64).to_le_bytes());
        assert_eq!(
            geojson_from_wkb(&point).unwrap(),
            json!({"type": "Point", "coordinates": [0.1, -33.000_000_000_000_01]})
        );
        let mut polygon = vec![0u8];
        polygon.extend(3u32.to_be_bytes());
        polygon.extend(1u32.to_be_bytes());
        polygon.extend(4u32.to_be_bytes());
        for [x, y] in [[0.0f64, 0.0f64], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]] {
            polygon.extend(x.to_be_bytes());
            polygon.extend(y.to_be_bytes());
        }
        assert_eq!(
            geojson_from_wkb(&polygon).unwrap(),
            json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]})
        );
        assert!(geojson_from_wkb(&polygon[..20]).is_err());
    }

    #[test]
    fn the_covering_radius_holds_the_search_box() {
        let p = LonLat::parse("p", 127.5, 41.7).unwrap();
        let (s, n, ranges) = crate::store::radius_search_box(p, 2_000.0);
        let reach = covering_radius(p, s, n, &ranges).unwrap();
        // The box's corner is about 2 km north and 2 km east: 2.8 km away.
        assert!(reach > 2_000.0 * 2f64.sqrt() && reach < 3_500.0, "{reach}");
        let (s, n, ranges) =
            crate::store::radius_search_box(LonLat::parse("p", 0.0, 89.9).unwrap(), 1_000.0);
        assert!(covering_radius(LonLat::parse("p", 0.0, 89.9).unwrap(), s, n, &ranges).is_some());
        let (s, n, ranges) =
            crate::store::radius_search_box(LonLat::parse("p", 179.99, 0.0).unwrap(), 5_000.0);
        assert_eq!(ranges.len(), 2);
        let reach =
            covering_radius(LonLat::parse("p", 179.99, 0.0).unwrap(), s, n, &ranges).unwrap();
        assert!(reach < 10_000.0, "{reach}");
    }
}
