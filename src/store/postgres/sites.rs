//! The sites side of [`super::PgStore`]: current sites, their revisions, site
//! writes, the change log and the meta values, with the answers the SQLite
//! store gives. History in time order is in [`super::history`].
//!
//! Every write of sites is one transaction that first takes [`WRITE_LOCK`]:
//! writes are serialised as SQLite's one writer serialises them, so the clock
//! read at its start, the stored state it compares with and the change log's
//! order all hold until it commits, whichever node it runs on.

use super::PgStore;
use super::boxes::index_box;
use super::bulk;
use super::store::{from_pg, to_pg};
use crate::model::{FieldChange, IdPolicy, Site, SiteId, Timestamp, creation_diff, diff_sites};
use crate::store::packed;
use crate::store::{
    Abandoned, ApplyReport, CREATION_DIFF, Change, ChangeLogReads, Conditional, LogEntry, LogKind,
    LogMark, Meta, News, Provenance, Revision, SiteReads, SiteWrites, StoreError,
};
use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::{Row, Statement, Transaction};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

/// The transaction-level advisory lock every write of sites holds: any 64-bit
/// number that no other program locks, and not the migration's.
pub(super) const WRITE_LOCK: i64 = 0x5357_5752_4954_4553; // "SWWRITES"

pub(super) fn corrupt(id: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        reason: reason.to_string(),
    }
}

/// A stored feature read back as a site: the parser SQLite's store uses for
/// a row that is not in its packed form. Like that path, and unlike SQLite's
/// packed live sites, a coordinate of 16 or more significant digits may come
/// back a unit in the last place off, as serde_json (built without
/// `float_roundtrip`) reads such numbers.
pub(super) fn parse_stored(id: &str, feature: &Value) -> Result<Site, StoreError> {
    Site::from_feature(feature, IdPolicy::Required).map_err(|e| corrupt(id, e))
}

/// `jsonb` keeps an object's members sorted by its own rule; a stored
/// feature or diff is put back in the order the catalogue writes it
/// ([`Site::feature_text`]), so that what is served, and a creation diff read
/// from the feature, come out as SQLite's store gives them. Members the
/// catalogue does not write follow, in the order they came.
mod order {
    use super::*;

    const FEATURE: &[&str] = &["type", "id", "geometry", "properties"];
    const GEOMETRY: &[&str] = &["type", "coordinates"];
    const PROPERTIES: &[&str] = &[
        "id",
        "name",
        "alt_names",
        "country",
        "kind",
        "declaration",
        "status",
        "confidence",
        "position_quality",
        "sources",
        "notes",
    ];
    const SOURCE: &[&str] = &["title", "url", "date"];
    const CHANGE: &[&str] = &["field", "old", "new"];

    fn members(v: Value, order: &[&str]) -> Value {
        let Value::Object(m) = v else { return v };
        let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
        // Stable: members not named keep their relative order.
        pairs.sort_by_key(|(k, _)| {
            order
                .iter()
                .position(|o| *o == k.as_str())
                .unwrap_or(order.len())
        });
        Value::Object(pairs.into_iter().collect::<Map<_, _>>())
    }

    fn each(v: Value, f: impl Fn(Value) -> Value) -> Value {
        match v {
            Value::Array(a) => Value::Array(a.into_iter().map(f).collect()),
            other => other,
        }
    }

    /// A value of one of a feature's fields (a property, or `geometry`).
    fn field(name: &str, v: Value) -> Value {
        match name {
            "geometry" => members(v, GEOMETRY),
            "sources" => each(v, |s| members(s, SOURCE)),
            _ => v,
        }
    }

    fn properties(v: Value) -> Value {
        let Value::Object(m) = members(v, PROPERTIES) else {
            unreachable!("members keeps an object an object")
        };
        Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = field(&k, v);
                    (k, v)
                })
                .collect(),
        )
    }

    pub fn feature(v: Value) -> Value {
        let Value::Object(m) = members(v, FEATURE) else {
            return Value::Null;
        };
        Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "geometry" => field("geometry", v),
                        "properties" => properties(v),
                        _ => v,
                    };
                    (k, v)
                })
                .collect(),
        )
    }

    pub fn diff(v: Value) -> Value {
        each(v, |c| {
            let Value::Object(mut m) = members(c, CHANGE) else {
                return Value::Null;
            };
            let name = m
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            for side in ["old", "new"] {
                if let Some(x) = m.get_mut(side) {
                    *x = field(&name, x.take());
                }
            }
            Value::Object(m)
        })
    }
}

pub(super) use order::{diff as diff_in_order, feature as feature_in_order};

/// A stored diff as the [`FieldChange`]s it lists.
fn field_changes(id: &str, diff: Value) -> Result<Vec<FieldChange>, StoreError> {
    let Value::Array(changes) = diff_in_order(diff) else {
        return Err(corrupt(id, "a revision's diff is not a list"));
    };
    Ok(changes
        .into_iter()
        .map(|mut c| FieldChange {
            field: c["field"].as_str().unwrap_or_default().to_owned(),
            old: c["old"].take(),
            new: c["new"].take(),
        })
        .collect())
}

/// The columns a [`Revision`] is read from, `feature` only where the diff is
/// the creation's.
const REVISION_COLUMNS: &str = "revision, recorded_at, actor, reason, change, diff,
     CASE WHEN diff = 'null'::jsonb THEN feature END";

fn revision_from_row(id: &SiteId, r: &Row) -> Result<Revision, StoreError> {
    let change: String = r.try_get(4)?;
    let diff: Value = r.try_get(5)?;
    let created_from: Option<Value> = r.try_get(6)?;
    Ok(Revision {
        site_id: id.clone(),
        revision: r.try_get(0)?,
        recorded_at: from_pg(r.try_get(1)?),
        actor: r.try_get(2)?,
        reason: r.try_get(3)?,
        change: Change::parse(&change)
            .ok_or_else(|| corrupt(id.as_str(), format!("unknown change {change:?}")))?,
        diff: match created_from {
            Some(feature) => creation_diff(&feature_in_order(feature)),
            None => field_changes(id.as_str(), diff)?,
        },
    })
}

/// Parses `(id, feature)` rows into sites.
fn sites_from_rows(rows: &[Row]) -> Result<Vec<Arc<Site>>, StoreError> {
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok(Arc::new(parse_stored(&id, &r.try_get(1)?)?))
        })
        .collect()
}

/// A site's row in `sites`: its latest revision number, whether it is
/// retired, and that revision's feature.
pub(super) struct Current {
    pub(super) revision: i64,
    pub(super) retired: bool,
    pub(super) feature: Value,
}

impl Current {
    pub(super) fn from_row(r: &Row, first: usize) -> Result<Self, StoreError> {
        Ok(Self {
            revision: r.try_get(first)?,
            retired: r.try_get(first + 1)?,
            feature: r.try_get(first + 2)?,
        })
    }
}

/// What writing `site` over its stored state `current` records: a new site
/// is created, a retired one restored, a live one that differs updated with
/// its field-level diff. `None` for an identical live site, left alone.
pub(super) fn plan(
    site: &Site,
    current: Option<&Current>,
) -> Result<Option<(Change, Vec<FieldChange>)>, StoreError> {
    let old = current
        .map(|c| parse_stored(site.id.as_str(), &c.feature))
        .transpose()?;
    let diff = diff_sites(old.as_ref(), site);
    let change = match current {
        None => Change::Created,
        Some(c) if c.retired => Change::Restored,
        Some(_) if diff.is_empty() => return Ok(None),
        Some(_) => Change::Updated,
    };
    Ok(Some((change, diff)))
}

/// A revision's diff as stored: a creation's is [`CREATION_DIFF`], read
/// back from the feature.
pub(super) fn diff_json(
    id: &SiteId,
    change: Change,
    diff: &[FieldChange],
) -> Result<String, StoreError> {
    if change == Change::Created {
        Ok(CREATION_DIFF.to_owned())
    } else {
        serde_json::to_string(diff).map_err(|e| corrupt(id.as_str(), e))
    }
}

/// Counts a written site (or `None`, one left alone) in the report.
pub(super) fn tally(report: &mut ApplyReport, site: &Site, written: Option<Change>) {
    match written {
        Some(Change::Created) => report.created.push(site.id.clone()),
        Some(_) => report.updated.push(site.id.clone()),
        None => report.unchanged += 1,
    }
}

/// Which stored state a create-only or replace-only write requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No live site with this id (a retired one is restored).
    NoLiveSite,
    /// A live site with this id.
    LiveSite,
}

/// The statements a write runs per site, prepared once per transaction.
struct Statements {
    current: Statement,
    close_previous: Statement,
    insert_site: Statement,
    update_site: Statement,
    retire_site: Statement,
    insert_revision: Statement,
    insert_retirement: Statement,
}

impl Statements {
    fn prepare(tx: &mut Transaction<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            current: tx.prepare("SELECT revision, retired, feature FROM sites WHERE id = $1")?,
            close_previous: tx.prepare(
                "UPDATE site_revisions SET valid_until = $3 WHERE site_id = $1 AND revision = $2",
            )?,
            // The feature is parsed once (`OFFSET 0` keeps the planner from
            // folding the subquery, and the cast, into each use).
            insert_site: tx.prepare(
                "INSERT INTO sites (id, revision, retired, feature, footprint, created_at, updated_at,
                     packed)
                 SELECT $1::text, $2::bigint, false, f,
                        ST_GeomFromGeoJSON(f -> 'geometry')::geography, $4::timestamptz, $4::timestamptz,
                        $5::bytea
                 FROM (SELECT $3::text::jsonb AS f OFFSET 0) x",
            )?,
            update_site: tx.prepare(
                "UPDATE sites SET revision = $2::bigint, retired = false, feature = f,
                        footprint = ST_GeomFromGeoJSON(f -> 'geometry')::geography,
                        updated_at = $4::timestamptz, packed = $5::bytea
                 FROM (SELECT $3::text::jsonb AS f OFFSET 0) x WHERE id = $1::text",
            )?,
            // A retirement keeps the feature, and so the footprint.
            retire_site: tx.prepare(
                "UPDATE sites SET revision = $2::bigint, retired = true, updated_at = $3::timestamptz
                 WHERE id = $1::text",
            )?,
            insert_revision: tx.prepare(
                "INSERT INTO site_revisions (site_id, revision, recorded_at, actor, reason, change,
                     feature, diff, footprint, bounds)
                 SELECT $1::text, $2::bigint, $3::timestamptz, $4::text, $5::text, $6::text, f,
                        $8::text::jsonb,
                        ST_GeomFromGeoJSON(f -> 'geometry')::geography, $9::real[]
                 FROM (SELECT $7::text::jsonb AS f OFFSET 0) x",
            )?,
            insert_retirement: tx.prepare(
                "INSERT INTO site_revisions (site_id, revision, recorded_at, actor, reason, change,
                     feature, diff, footprint, bounds)
                 SELECT id, $2::bigint, $3::timestamptz, $4::text, $5::text, 'retired', feature,
                        $6::text::jsonb, footprint, $7::real[]
                 FROM sites WHERE id = $1::text",
            )?,
        })
    }
}

/// One revision to record.
struct RevisionWrite<'a> {
    id: &'a SiteId,
    /// The site's previous revision number, or `None` for a new site.
    previous: Option<i64>,
    change: Change,
    /// The site written; `None` for a retirement, which keeps the stored one.
    site: Option<&'a Site>,
    diff: Vec<FieldChange>,
    /// The footprint's lon/lat box, for the change log.
    bounds: [f64; 4],
}

/// One write of sites in progress: its transaction, the time it records
/// every revision at, and the log entries it appends when it ends.
pub(super) struct Write<'a> {
    pub(super) tx: Transaction<'a>,
    pub(super) at: Timestamp,
    stmts: Statements,
    /// `(kind, site, revision, bounds)`, in the order written.
    pub(super) log: Vec<(LogKind, String, i64, [f64; 4])>,
}

impl<'a> Write<'a> {
    fn begin(mut tx: Transaction<'a>) -> Result<Self, StoreError> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        // Now, or the latest time already recorded if the wall clock has
        // stepped back, so that revision order and time order agree.
        let latest: Option<DateTime<Utc>> = tx
            .query_one("SELECT max(recorded_at) FROM site_revisions", &[])?
            .try_get(0)?;
        let now = Timestamp::now();
        let at = latest.map(from_pg).filter(|l| *l > now).unwrap_or(now);
        let stmts = Statements::prepare(&mut tx)?;
        Ok(Self {
            tx,
            at,
            stmts,
            log: Vec::new(),
        })
    }

    pub(super) fn current(&mut self, id: &SiteId) -> Result<Option<Current>, StoreError> {
        self.tx
            .query_opt(&self.stmts.current, &[&id.as_str()])?
            .map(|r| Current::from_row(&r, 0))
            .transpose()
    }

    /// Records a revision: the row in `site_revisions`, the site's current
    /// state in `sites` and the log entry.
    fn record(&mut self, w: RevisionWrite<'_>, by: &Provenance) -> Result<Revision, StoreError> {
        let RevisionWrite {
            id,
            previous,
            change,
            site,
            diff,
            bounds,
        } = w;
        let feature = site.map(Site::feature_text);
        let packed = site.map(packed::encode);
        let revision = previous.map_or(1, |r| r + 1);
        let diff_json = diff_json(id, change, &diff)?;
        let at = to_pg(self.at);
        let (tx, s) = (&mut self.tx, &self.stmts);
        if let Some(previous) = previous {
            tx.execute(&s.close_previous, &[&id.as_str(), &previous, &at])?;
        }
        match (previous, &feature) {
            (None, Some(f)) => {
                tx.execute(&s.insert_site, &[&id.as_str(), &revision, f, &at, &packed])?
            }
            (Some(_), Some(f)) => {
                tx.execute(&s.update_site, &[&id.as_str(), &revision, f, &at, &packed])?
            }
            (_, None) => tx.execute(&s.retire_site, &[&id.as_str(), &revision, &at])?,
        };
        let (actor, reason) = (&by.actor, &by.reason);
        let index_box = index_box(bounds);
        match &feature {
            Some(f) => tx.execute(
                &s.insert_revision,
                &[
                    &id.as_str(),
                    &revision,
                    &at,
                    actor,
                    reason,
                    &change.as_str(),
                    f,
                    &diff_json,
                    &index_box,
                ],
            )?,
            None => tx.execute(
                &s.insert_retirement,
                &[
                    &id.as_str(),
                    &revision,
                    &at,
                    actor,
                    reason,
                    &diff_json,
                    &index_box,
                ],
            )?,
        };
        self.log
            .push((change.log_kind(), id.as_str().to_owned(), revision, bounds));
        Ok(Revision {
            site_id: id.clone(),
            revision,
            recorded_at: self.at,
            actor: by.actor.clone(),
            reason: by.reason.clone(),
            change,
            diff,
        })
    }

    /// Writes one site over its stored state `current`, as [`plan`] says.
    fn write_site(
        &mut self,
        site: &Site,
        current: Option<Current>,
        by: &Provenance,
    ) -> Result<Option<Revision>, StoreError> {
        let Some((change, diff)) = plan(site, current.as_ref())? else {
            return Ok(None);
        };
        let bounds = site.footprint.lonlat_bounds();
        let previous = current.map(|c| c.revision);
        let write = RevisionWrite {
            id: &site.id,
            previous,
            change,
            site: Some(site),
            diff,
            bounds,
        };
        self.record(write, by).map(Some)
    }

    /// Reads each site's stored state and writes it over it, tallying.
    fn apply(
        &mut self,
        report: &mut ApplyReport,
        site: &Site,
        by: &Provenance,
    ) -> Result<(), StoreError> {
        let current = self.current(&site.id)?;
        let written = self.write_site(site, current, by)?;
        tally(report, site, written.map(|r| r.change));
        Ok(())
    }

    /// The latest revision of a site, read back for a write that changed nothing.
    fn latest_revision(&mut self, id: &SiteId) -> Result<Option<Revision>, StoreError> {
        self.tx
            .query_opt(
                &format!(
                    "SELECT {REVISION_COLUMNS} FROM site_revisions
                     WHERE site_id = $1 ORDER BY revision DESC LIMIT 1"
                ),
                &[&id.as_str()],
            )?
            .map(|r| revision_from_row(id, &r))
            .transpose()
    }

    /// Appends the log entries, in the order written, and commits. Entries
    /// go in at the end so that a write abandoned midway takes no sequence
    /// numbers.
    fn finish(mut self) -> Result<(), StoreError> {
        if !self.log.is_empty() {
            let kinds: Vec<&str> = self.log.iter().map(|e| e.0.as_str()).collect();
            let ids: Vec<&str> = self.log.iter().map(|e| e.1.as_str()).collect();
            let revisions: Vec<i64> = self.log.iter().map(|e| e.2).collect();
            let bound = |i: usize| -> Vec<f64> { self.log.iter().map(|e| e.3[i]).collect() };
            let (west, south, east, north) = (bound(0), bound(1), bound(2), bound(3));
            self.tx.execute(
                "INSERT INTO change_log (at, kind, site_id, revision, west, south, east, north)
                 SELECT $1::timestamptz, kind, site_id, revision, west, south, east, north
                 FROM unnest($2::text[], $3::text[], $4::bigint[], $5::float8[], $6::float8[],
                             $7::float8[], $8::float8[])
                      WITH ORDINALITY AS e(kind, site_id, revision, west, south, east, north, n)
                 ORDER BY n",
                &[
                    &to_pg(self.at),
                    &kinds,
                    &ids,
                    &revisions,
                    &west,
                    &south,
                    &east,
                    &north,
                ],
            )?;
        }
        self.tx.commit()?;
        Ok(())
    }
}

impl PgStore {
    /// Runs `work` as one write of sites: committed, with its log entries,
    /// if it succeeds, rolled back if it fails.
    pub(super) fn writing<T>(
        &self,
        work: impl FnOnce(&mut Write<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client();
        let mut w = Write::begin(client.transaction()?)?;
        let out = work(&mut w)?;
        w.finish()?;
        Ok(out)
    }

    /// Writes one site if its stored state is as `expect`s and, with `tags`,
    /// its stored content has one of them, under the write lock.
    fn write_one(
        &self,
        site: &Site,
        expect: Expect,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Conditional, StoreError> {
        self.writing(|w| {
            let current = w.current(&site.id)?;
            let live = current.as_ref().is_some_and(|c| !c.retired);
            if live != (expect == Expect::LiveSite) {
                return Ok(Conditional::NotFound);
            }
            if let (Some(tags), Some(c)) = (tags, &current)
                && !tags.contains(&parse_stored(site.id.as_str(), &c.feature)?.tag())
            {
                return Ok(Conditional::Stale);
            }
            let revision = match w.write_site(site, current, by)? {
                Some(r) => Some(r),
                None => w.latest_revision(&site.id)?,
            };
            Ok(revision.map_or(Conditional::NotFound, Conditional::Written))
        })
    }

    /// The sites (live, or retired if `retired`) as recorded at `t`: each
    /// site's latest revision recorded by then, in id order.
    fn sites_at(&self, t: Timestamp, retired: bool) -> Result<Vec<Arc<Site>>, StoreError> {
        let rows = self.client().query(
            "SELECT r.site_id, r.feature FROM site_revisions r
             JOIN (SELECT site_id, max(revision) AS revision FROM site_revisions
                   WHERE recorded_at <= $1 GROUP BY site_id) latest
               ON r.site_id = latest.site_id AND r.revision = latest.revision
             WHERE (r.change = 'retired') = $2
             ORDER BY r.site_id COLLATE \"C\"",
            &[&to_pg(t), &retired],
        )?;
        sites_from_rows(&rows)
    }

    fn site_at(&self, id: &SiteId, t: Timestamp) -> Result<Option<(Site, bool)>, StoreError> {
        self.client()
            .query_opt(
                "SELECT change = 'retired', feature FROM site_revisions
                 WHERE site_id = $1 AND recorded_at <= $2 ORDER BY revision DESC LIMIT 1",
                &[&id.as_str(), &to_pg(t)],
            )?
            .map(|r| {
                Ok::<_, StoreError>((parse_stored(id.as_str(), &r.try_get(1)?)?, r.try_get(0)?))
            })
            .transpose()
    }

    /// The sites' packed forms where they have one, their features where
    /// not (or where one does not decode, which `check` would report).
    fn current_sites(&self, retired: bool) -> Result<Vec<Arc<Site>>, StoreError> {
        let mut client = self.client();
        let rows = client.query(
            "SELECT id, packed, CASE WHEN packed IS NULL THEN feature END FROM sites
             WHERE retired = $1 ORDER BY id COLLATE \"C\"",
            &[&retired],
        )?;
        let mut sites = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: &str = r.try_get(0)?;
            let blob: Option<&[u8]> = r.try_get(1)?;
            let site = match blob.and_then(|b| packed::decode(id, b)) {
                Some(site) => site,
                None => match r.try_get::<_, Option<Value>>(2)? {
                    Some(feature) => parse_stored(id, &feature)?,
                    None => {
                        tracing::warn!(
                            id,
                            "a packed site form does not decode; reading its GeoJSON"
                        );
                        let feature: Value = client
                            .query_one("SELECT feature FROM sites WHERE id = $1", &[&id])?
                            .try_get(0)?;
                        parse_stored(id, &feature)?
                    }
                },
            };
            sites.push(Arc::new(site));
        }
        Ok(sites)
    }
}

/// The condition that a revision is the one valid at `t` (now if `None`),
/// with `t` as the parameter `param`.
pub(super) fn valid_at(t: Option<Timestamp>, param: &str) -> String {
    match t {
        Some(_) => {
            format!("recorded_at <= {param} AND (valid_until IS NULL OR valid_until > {param})")
        }
        None => "valid_until IS NULL".to_owned(),
    }
}

/// The condition that a revision's box (see the schema's `bounds`) meets the
/// box in parameters `$1` to `$4` (`west, south, east, north`): the GiST
/// index's test, which is a little generous, then the exact one.
pub(super) const MEETS_BOX: &str = "box(point(bounds[1], bounds[2]), point(bounds[3], bounds[4]))
        && box(point($1::float8, $2::float8), point($3::float8, $4::float8))
    AND bounds[1] <= $3::float8 AND bounds[3] >= $1::float8
    AND bounds[2] <= $4::float8 AND bounds[4] >= $2::float8";

impl SiteReads for PgStore {
    /// Every site that is not retired, in id order.
    fn live_sites(&self) -> Result<Vec<Arc<Site>>, StoreError> {
        self.current_sites(false)
    }

    /// Every retired site, as it was when it was retired, in id order.
    fn retired_sites(&self) -> Result<Vec<Arc<Site>>, StoreError> {
        self.current_sites(true)
    }

    fn retired_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        self.client()
            .query_opt(
                "SELECT feature FROM sites WHERE id = $1 AND retired",
                &[&id.as_str()],
            )?
            .map(|r| parse_stored(id.as_str(), &r.try_get(0)?))
            .transpose()
    }

    fn sites_as_of(&self, t: Timestamp) -> Result<Vec<Arc<Site>>, StoreError> {
        self.sites_at(t, false)
    }

    fn retired_sites_as_of(&self, t: Timestamp) -> Result<Vec<Arc<Site>>, StoreError> {
        self.sites_at(t, true)
    }

    /// The sites as recorded at `t` (now if `None`) whose revision's box
    /// meets one of the rectangles, each once, in id order. The boxes are
    /// SQLite's R*Tree's, so the answer is the same set; the caller tests
    /// footprints exactly.
    fn sites_in_area_at(
        &self,
        t: Option<Timestamp>,
        retired: bool,
        rects: &[[f64; 4]],
    ) -> Result<Vec<Arc<Site>>, StoreError> {
        let mut client = self.client();
        let stmt = client.prepare(&format!(
            "SELECT site_id, feature FROM site_revisions
             WHERE {MEETS_BOX} AND (change = 'retired') = $5 AND {}",
            valid_at(t, "$6")
        ))?;
        let at = t.map(to_pg);
        let mut found: BTreeMap<String, Arc<Site>> = BTreeMap::new();
        for [w, s, e, n] in rects {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![w, s, e, n, &retired];
            if let Some(at) = &at {
                params.push(at);
            }
            for r in client.query(&stmt, &params)? {
                let id: String = r.try_get(0)?;
                if let Entry::Vacant(slot) = found.entry(id) {
                    let site = parse_stored(slot.key(), &r.try_get(1)?)?;
                    slot.insert(Arc::new(site));
                }
            }
        }
        Ok(found.into_values().collect())
    }

    fn site_as_of(&self, id: &SiteId, t: Timestamp) -> Result<Option<Site>, StoreError> {
        Ok(self
            .site_at(id, t)?
            .filter(|(_, retired)| !retired)
            .map(|(s, _)| s))
    }

    fn retired_site_as_of(&self, id: &SiteId, t: Timestamp) -> Result<Option<Site>, StoreError> {
        Ok(self
            .site_at(id, t)?
            .filter(|(_, retired)| *retired)
            .map(|(s, _)| s))
    }

    /// Every revision of a site, oldest first.
    fn revisions(&self, id: &SiteId) -> Result<Vec<Revision>, StoreError> {
        self.client()
            .query(
                &format!(
                    "SELECT {REVISION_COLUMNS} FROM site_revisions
                     WHERE site_id = $1 ORDER BY revision"
                ),
                &[&id.as_str()],
            )?
            .iter()
            .map(|r| revision_from_row(id, r))
            .collect()
    }

    /// How many sites exist, retired ones included, as SQLite counts them.
    fn site_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT count(*) FROM sites", &[])?
            .try_get(0)?)
    }
}

impl SiteWrites for PgStore {
    fn apply_sites(&mut self, sites: &[Site], by: &Provenance) -> Result<ApplyReport, StoreError> {
        if sites.len() >= bulk::WORTH_IT {
            return self.writing(|w| {
                let chunks = sites.chunks(bulk::WORTH_IT).map(Ok);
                bulk::apply(w, chunks, by)
            });
        }
        self.writing(|w| {
            let mut report = ApplyReport::default();
            for site in sites {
                w.apply(&mut report, site, by)?;
            }
            Ok(report)
        })
    }

    fn apply_site_chunks(
        &mut self,
        chunks: &mut (dyn Iterator<Item = Result<Vec<Site>, Abandoned>> + Send),
        by: &Provenance,
    ) -> Result<ApplyReport, StoreError> {
        self.writing(|w| {
            let chunks = chunks.map(|c| c.map_err(|Abandoned| StoreError::Abandoned));
            bulk::apply(w, chunks, by)
        })
    }

    fn apply_sites_marked(
        &mut self,
        sites: &[(Site, Provenance)],
        key: &str,
        value: &str,
    ) -> Result<ApplyReport, StoreError> {
        self.writing(|w| {
            let mut report = ApplyReport::default();
            for (site, by) in sites {
                w.apply(&mut report, site, by)?;
            }
            w.tx.execute(SET_META, &[&key, &value])?;
            Ok(report)
        })
    }

    fn create_site(
        &mut self,
        site: &Site,
        by: &Provenance,
    ) -> Result<Option<Revision>, StoreError> {
        Ok(self
            .write_one(site, Expect::NoLiveSite, by, None)?
            .written())
    }

    fn replace_site_if(
        &mut self,
        site: &Site,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Conditional, StoreError> {
        self.write_one(site, Expect::LiveSite, by, tags)
    }

    fn retire_site_if(
        &mut self,
        id: &SiteId,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Conditional, StoreError> {
        self.writing(|w| {
            let Some(current) = w.current(id)?.filter(|c| !c.retired) else {
                return Ok(Conditional::NotFound);
            };
            let stored = parse_stored(id.as_str(), &current.feature)?;
            if tags.is_some_and(|tags| !tags.contains(&stored.tag())) {
                return Ok(Conditional::Stale);
            }
            let diff = vec![FieldChange {
                field: "retired".into(),
                old: json!(false),
                new: json!(true),
            }];
            let bounds = stored.footprint.lonlat_bounds();
            let write = RevisionWrite {
                id,
                previous: Some(current.revision),
                change: Change::Retired,
                site: None,
                diff,
                bounds,
            };
            let revision = w.record(write, by)?;
            Ok(Conditional::Written(revision))
        })
    }
}

impl ChangeLogReads for PgStore {
    /// Entries after sequence number `after`, oldest first, at most `limit`.
    fn log_after(&self, after: i64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let rows = self.client().query(
            "SELECT seq, at, kind, site_id, revision, batch_id, candidate_id, west, south, east, north
             FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get(2)?;
                let b: [Option<f64>; 4] =
                    [r.try_get(7)?, r.try_get(8)?, r.try_get(9)?, r.try_get(10)?];
                let bbox = match b {
                    [Some(w), Some(s), Some(e), Some(n)] => Some([w, s, e, n]),
                    _ => None,
                };
                Ok(LogEntry {
                    seq: r.try_get(0)?,
                    at: from_pg(r.try_get(1)?).to_rfc3339(),
                    kind: LogKind::parse(&kind).ok_or_else(|| {
                        corrupt("change_log", format!("unknown change log kind {kind:?}"))
                    })?,
                    site_id: r.try_get(3)?,
                    revision: r.try_get(4)?,
                    batch_id: r.try_get(5)?,
                    candidate_id: r.try_get(6)?,
                    bbox,
                })
            })
            .collect()
    }

    /// The sequence number of the newest entry; 0 when the log is empty.
    fn log_head(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT coalesce(max(seq), 0)::bigint FROM change_log", &[])?
            .try_get(0)?)
    }

    fn log_mark(&self) -> Result<LogMark, StoreError> {
        self.mark_now()
    }

    fn news_since(&self, mark: &mut LogMark) -> Result<News, StoreError> {
        self.read_news(mark)
    }
}

const SET_META: &str = "INSERT INTO catalogue_meta (key, value) VALUES ($1, $2)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

impl Meta for PgStore {
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.client()
            .query_opt("SELECT value FROM catalogue_meta WHERE key = $1", &[&key])?
            .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
            .transpose()
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.client().execute(SET_META, &[&key, &value])?;
        Ok(())
    }
}
