//! Sites and their revisions: the current state of each site and every version
//! ever recorded, and the catalogue as it stood at any recorded moment.

use super::SqliteStore;
use crate::model::{FieldChange, IdPolicy, Site, SiteId, Timestamp, creation_diff, diff_sites};
use crate::store::Conditional;
use crate::store::{
    Abandoned, ApplyReport, CREATION_DIFF, Change, Provenance, Revision, SiteReads, SiteWrites,
    StoreError,
};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) fn parse_stored(id: &str, feature: &str) -> Result<Site, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.to_owned(),
        reason,
    };
    let v: Value = serde_json::from_str(feature).map_err(|e| corrupt(e.to_string()))?;
    Site::from_feature(&v, IdPolicy::Required).map_err(|e| corrupt(e.to_string()))
}

/// Which stored state a create-only or replace-only write requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No live site with this id (a retired one is restored).
    NoLiveSite,
    /// A live site with this id.
    LiveSite,
}

/// A site's row in `sites`: its latest revision number, whether it is retired,
/// and that revision's feature text.
pub(super) struct Current {
    revision: i64,
    retired: bool,
    feature: String,
}

pub(super) fn current(tx: &Transaction, id: &SiteId) -> Result<Option<Current>, StoreError> {
    Ok(tx
        .prepare_cached(concat!(
            "SELECT s.revision, s.retired, r.feature FROM ",
            current_feature_from!(),
            " WHERE s.id = ?1"
        ))?
        .query_row([id.as_str()], |r| {
            Ok(Current {
                revision: r.get(0)?,
                retired: r.get::<_, i64>(1)? != 0,
                feature: r.get(2)?,
            })
        })
        .optional()?)
}

/// The time to record a write at: now, or the latest time already recorded if
/// the wall clock has stepped back, so that revision order and time order agree
/// and `as_of` reads never see a later revision without the one before it.
pub(super) fn clock(tx: &Transaction) -> Result<(String, Timestamp), StoreError> {
    let now = Timestamp::now().to_rfc3339();
    let latest: Option<String> =
        tx.query_row("SELECT max(recorded_at) FROM site_revisions", [], |r| {
            r.get(0)
        })?;
    let text = latest.filter(|l| *l > now).unwrap_or(now);
    let at = Timestamp::parse("recorded_at", &text).map_err(|e| StoreError::Corrupt {
        id: "site_revisions".into(),
        reason: e.to_string(),
    })?;
    Ok((text, at))
}

/// The one place a revision is written: the row in `site_revisions` and the
/// site's current state in `sites`, in the caller's transaction.
struct RevisionWrite<'a> {
    id: &'a SiteId,
    /// The site's previous revision number, or `None` for a new site.
    previous: Option<i64>,
    retired: bool,
    change: Change,
    feature: &'a str,
    /// The site's packed form, or `None` when it leaves the live catalogue.
    packed: Option<&'a [u8]>,
    diff: Vec<FieldChange>,
    /// The footprint's lon/lat box.
    bounds: [f64; 4],
}

fn write_revision(
    tx: &Transaction,
    w: RevisionWrite<'_>,
    (now, at): &(String, Timestamp),
    by: &Provenance,
) -> Result<Revision, StoreError> {
    let revision = w.previous.map_or(1, |r| r + 1);
    let diff_json = if w.change == Change::Created {
        CREATION_DIFF.to_owned()
    } else {
        serde_json::to_string(&w.diff).map_err(|e| StoreError::Corrupt {
            id: w.id.to_string(),
            reason: e.to_string(),
        })?
    };
    if let Some(previous) = w.previous {
        // The previous revision's validity ends now.
        tx.prepare_cached(
            "UPDATE site_revisions SET valid_until = ?3 WHERE site_id = ?1 AND revision = ?2",
        )?
        .execute(params![w.id.as_str(), previous, now])?;
    }
    let [west, south, east, north] = w.bounds;
    if w.previous.is_none() {
        tx.prepare_cached(
            "INSERT INTO sites (id, revision, retired, created_at, updated_at, packed) VALUES (?1, ?2, ?3, ?5, ?5, ?4)",
        )?
        .execute(params![w.id.as_str(), revision, w.retired, w.packed, now])?;
    } else {
        tx.prepare_cached(
            "UPDATE sites SET revision = ?2, retired = ?3, packed = ?4, updated_at = ?5 WHERE id = ?1",
        )?
        .execute(params![w.id.as_str(), revision, w.retired, w.packed, now])?;
    }
    tx.prepare_cached(
        "INSERT INTO site_revisions (site_id, revision, recorded_at, actor, reason, change, feature, diff)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![w.id.as_str(), revision, now, by.actor, by.reason, w.change.as_str(), w.feature, diff_json])?;
    tx.prepare_cached("INSERT INTO site_revision_boxes VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![tx.last_insert_rowid(), west, east, south, north])?;
    super::log::append(
        tx,
        &super::log::Entry {
            at: now,
            kind: w.change.log_kind().as_str(),
            site_id: Some(w.id.as_str()),
            revision: Some(revision),
            batch_id: None,
            candidate_id: None,
            bounds: Some([west, south, east, north]),
        },
    )?;
    Ok(Revision {
        site_id: w.id.clone(),
        revision,
        recorded_at: *at,
        actor: by.actor.clone(),
        reason: by.reason.clone(),
        change: w.change,
        diff: w.diff,
    })
}

/// Writes one site over its stored state `current`: a new site is created, a
/// retired one restored, a live one that differs updated with its field-level
/// diff. Returns `None` for an identical live site, which is left alone.
pub(super) fn write_site(
    tx: &Transaction,
    site: &Site,
    current: Option<Current>,
    clock: &(String, Timestamp),
    by: &Provenance,
) -> Result<Option<Revision>, StoreError> {
    let old = current
        .as_ref()
        .map(|c| parse_stored(site.id.as_str(), &c.feature))
        .transpose()?;
    let diff = diff_sites(old.as_ref(), site);
    let change = match &current {
        None => Change::Created,
        Some(c) if c.retired => Change::Restored,
        Some(_) if diff.is_empty() => return Ok(None),
        Some(_) => Change::Updated,
    };
    let feature = site.feature_text();
    let packed = super::packed::encode(site);
    let write = RevisionWrite {
        id: &site.id,
        previous: current.map(|c| c.revision),
        retired: false,
        change,
        feature: &feature,
        packed: Some(&packed),
        diff,
        bounds: site.footprint.lonlat_bounds(),
    };
    write_revision(tx, write, clock, by).map(Some)
}

/// The latest revision of a site, read back for a write that changed nothing.
fn latest_revision(tx: &Transaction, id: &SiteId) -> Result<Option<Revision>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT revision, recorded_at, actor, reason, change, diff,
                CASE WHEN diff = 'null' THEN feature END
         FROM site_revisions WHERE site_id = ?1 ORDER BY revision DESC LIMIT 1",
    )?;
    let mut rows = stmt.query_map([id.as_str()], RawRevision::from_row)?;
    rows.next()
        .transpose()?
        .map(|raw| raw.into_revision(id))
        .transpose()
}

/// A `site_revisions` row as SQLite holds it, before its text is checked.
struct RawRevision {
    revision: i64,
    recorded_at: String,
    actor: String,
    reason: Option<String>,
    change: String,
    diff: String,
    /// The feature, read only when the diff is [`CREATION_DIFF`].
    created_from: Option<String>,
}

impl RawRevision {
    /// Reads the columns `revision, recorded_at, actor, reason, change, diff`,
    /// and the feature where the diff is [`CREATION_DIFF`].
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            revision: r.get(0)?,
            recorded_at: r.get(1)?,
            actor: r.get(2)?,
            reason: r.get(3)?,
            change: r.get(4)?,
            diff: r.get(5)?,
            created_from: r.get(6)?,
        })
    }

    fn into_revision(self, id: &SiteId) -> Result<Revision, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.to_string(),
            reason,
        };
        Ok(Revision {
            site_id: id.clone(),
            revision: self.revision,
            recorded_at: Timestamp::parse("recorded_at", &self.recorded_at)
                .map_err(|e| corrupt(e.to_string()))?,
            actor: self.actor,
            reason: self.reason,
            change: Change::parse(&self.change)
                .ok_or_else(|| corrupt(format!("unknown change {:?}", self.change)))?,
            diff: match self.created_from {
                Some(feature) => creation_diff(
                    &serde_json::from_str(&feature).map_err(|e| corrupt(e.to_string()))?,
                ),
                None => serde_json::from_str::<Vec<Value>>(&self.diff)
                    .map_err(|e| corrupt(e.to_string()))?
                    .into_iter()
                    .map(|c| FieldChange {
                        field: c["field"].as_str().unwrap_or_default().to_owned(),
                        old: c["old"].clone(),
                        new: c["new"].clone(),
                    })
                    .collect(),
            },
        })
    }
}

/// Parses `(id, feature)` rows into sites.
fn sites_from_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Arc<Site>>, StoreError> {
    let rows = stmt.query_map(params, |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    super::load::parse_rows(rows.map(|r| r.map_err(StoreError::from)))
}

impl SqliteStore {
    /// Writes one site if its stored state is as `expect`s and, with `tags`,
    /// its stored content has one of them: read and written in one
    /// transaction, so that of two writers naming the same version only the
    /// first gets through.
    fn write_one(
        &mut self,
        site: &Site,
        expect: Expect,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Conditional, StoreError> {
        let tx = self.conn.transaction()?;
        let current = current(&tx, &site.id)?;
        let live = current.as_ref().is_some_and(|c| !c.retired);
        if live != (expect == Expect::LiveSite) {
            return Ok(Conditional::NotFound);
        }
        if let (Some(tags), Some(c)) = (tags, &current)
            && !tags.contains(&parse_stored(site.id.as_str(), &c.feature)?.tag())
        {
            return Ok(Conditional::Stale);
        }
        let clock = clock(&tx)?;
        let revision = match write_site(&tx, site, current, &clock, by)? {
            Some(r) => Some(r),
            None => latest_revision(&tx, &site.id)?,
        };
        tx.commit()?;
        Ok(revision.map_or(Conditional::NotFound, Conditional::Written))
    }

    fn sites_at(&self, t: Timestamp, retired: bool) -> Result<Vec<Arc<Site>>, StoreError> {
        // Recorded times are RFC 3339 UTC with a fixed number of digits, so text
        // order is time order.
        let mut stmt = self.conn.prepare(
            "SELECT r.site_id, r.feature FROM site_revisions r
             JOIN (SELECT site_id, max(revision) AS revision FROM site_revisions
                   WHERE recorded_at <= ?1 GROUP BY site_id) latest
               ON r.site_id = latest.site_id AND r.revision = latest.revision
             WHERE (r.change = 'retired') = ?2
             ORDER BY r.site_id",
        )?;
        sites_from_rows(&mut stmt, params![t.to_rfc3339(), retired])
    }

    fn site_at(&self, id: &SiteId, t: Timestamp) -> Result<Option<(Site, bool)>, StoreError> {
        self.conn
            .query_row(
                "SELECT change, feature FROM site_revisions
                 WHERE site_id = ?1 AND recorded_at <= ?2 ORDER BY revision DESC LIMIT 1",
                params![id.as_str(), t.to_rfc3339()],
                |r| Ok((r.get::<_, String>(0)? == "retired", r.get::<_, String>(1)?)),
            )
            .optional()?
            .map(|(retired, f)| Ok((parse_stored(id.as_str(), &f)?, retired)))
            .transpose()
    }
}

impl SiteReads for SqliteStore {
    /// Every site that is not retired, in id order.
    fn live_sites(&self) -> Result<Vec<Arc<Site>>, StoreError> {
        super::load::live_sites(&self.conn)
    }

    /// Every retired site, as it was when it was retired, in id order.
    fn retired_sites(&self) -> Result<Vec<Arc<Site>>, StoreError> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT s.id, r.feature FROM ",
            current_feature_from!(),
            " WHERE s.retired = 1 ORDER BY s.id"
        ))?;
        sites_from_rows(&mut stmt, [])
    }

    /// One retired site, as it was when it was retired; `None` if the site is
    /// live or unknown.
    fn retired_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        self.conn
            .query_row(
                concat!(
                    "SELECT r.feature FROM ",
                    current_feature_from!(),
                    " WHERE s.id = ?1 AND s.retired = 1"
                ),
                [id.as_str()],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(|f| parse_stored(id.as_str(), &f))
            .transpose()
    }

    /// The catalogue as recorded at `t`: for each site its latest revision
    /// recorded at or before `t`, leaving out sites that were retired then, in
    /// id order.
    fn sites_as_of(&self, t: Timestamp) -> Result<Vec<Arc<Site>>, StoreError> {
        self.sites_at(t, false)
    }

    /// The sites that were retired at `t`, as they were when retired, in id order.
    fn retired_sites_as_of(&self, t: Timestamp) -> Result<Vec<Arc<Site>>, StoreError> {
        self.sites_at(t, true)
    }

    /// The sites as recorded at `t` (now if `None`) whose footprint box meets
    /// one of the lon/lat rectangles (`west <= east`), retired ones or live
    /// ones, each once. An R*Tree walk over the revisions' boxes, each tested
    /// for its validity at `t`: the cost follows the area and its history, not
    /// the catalogue. The boxes are a superset; the caller tests footprints
    /// exactly.
    fn sites_in_area_at(
        &self,
        t: Option<Timestamp>,
        retired: bool,
        rects: &[[f64; 4]],
    ) -> Result<Vec<Arc<Site>>, StoreError> {
        // '~' sorts after every recorded time: now.
        let text = t.map_or("~".to_owned(), Timestamp::to_rfc3339);
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.site_id, r.feature FROM site_revision_boxes b
             CROSS JOIN site_revisions r ON r.rowid = b.id
             WHERE b.west <= ?3 AND b.east >= ?1 AND b.south <= ?4 AND b.north >= ?2
               AND r.recorded_at <= ?5 AND (r.valid_until IS NULL OR r.valid_until > ?5)
               AND (r.change = 'retired') = ?6",
        )?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for [w, s, e, n] in rects {
            let rows = stmt.query_map(params![w, s, e, n, text, retired], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (id, feature) = row?;
                if seen.insert(id.clone()) {
                    out.push(Arc::new(parse_stored(&id, &feature)?));
                }
            }
        }
        Ok(out)
    }

    /// One site as recorded at `t`; `None` if it did not exist yet or was
    /// retired then.
    fn site_as_of(&self, id: &SiteId, t: Timestamp) -> Result<Option<Site>, StoreError> {
        Ok(self
            .site_at(id, t)?
            .filter(|(_, retired)| !retired)
            .map(|(s, _)| s))
    }

    /// One site that was retired at `t`, as it was when retired; `None` if it
    /// was live or did not exist then.
    fn retired_site_as_of(&self, id: &SiteId, t: Timestamp) -> Result<Option<Site>, StoreError> {
        Ok(self
            .site_at(id, t)?
            .filter(|(_, retired)| *retired)
            .map(|(s, _)| s))
    }

    /// Every revision of a site, oldest first.
    fn revisions(&self, id: &SiteId) -> Result<Vec<Revision>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT revision, recorded_at, actor, reason, change, diff,
                    CASE WHEN diff = 'null' THEN feature END
             FROM site_revisions WHERE site_id = ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map([id.as_str()], RawRevision::from_row)?;
        rows.map(|row| row?.into_revision(id)).collect()
    }

    /// How many sites exist, retired ones included.
    fn site_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM sites", [], |r| r.get(0))?)
    }
}

impl SiteWrites for SqliteStore {
    /// Creates or updates each site in one transaction: a site that differs from
    /// its stored state gets a new revision with the field-level diff, an
    /// identical one is left alone. Either every site is applied or none is.
    fn apply_sites(&mut self, sites: &[Site], by: &Provenance) -> Result<ApplyReport, StoreError> {
        if sites.len() >= BULK {
            let chunks = sites.chunks(bulk::CHUNK).map(Ok);
            return bulk::apply(&mut self.conn, chunks, by, bulk::Journal::as_it_is);
        }
        let tx = self.conn.transaction()?;
        let clock = clock(&tx)?;
        let mut report = ApplyReport::default();
        for site in sites {
            let current = current(&tx, &site.id)?;
            tally(
                &mut report,
                site,
                write_site(&tx, site, current, &clock, by)?,
            );
        }
        tx.commit()?;
        Ok(report)
    }

    fn apply_site_chunks(
        &mut self,
        chunks: &mut (dyn Iterator<Item = Result<Vec<Site>, Abandoned>> + Send),
        by: &Provenance,
    ) -> Result<ApplyReport, StoreError> {
        // A few sites go one by one, as `apply_sites` would: the bulk path
        // reads every stored id first.
        let mut first: Vec<Site> = Vec::new();
        while let Some(chunk) = chunks.next() {
            first.extend(chunk.map_err(|Abandoned| StoreError::Abandoned)?);
            if first.len() >= BULK {
                let rest = chunks.map(|c| c.map_err(|Abandoned| StoreError::Abandoned));
                let sites = std::iter::once(Ok(first)).chain(rest);
                return bulk::apply(&mut self.conn, sites, by, bulk::Journal::direct_if_alone);
            }
        }
        self.apply_sites(&first, by)
    }

    fn apply_sites_marked(
        &mut self,
        sites: &[(Site, Provenance)],
        key: &str,
        value: &str,
    ) -> Result<ApplyReport, StoreError> {
        let tx = self.conn.transaction()?;
        let clock = clock(&tx)?;
        let mut report = ApplyReport::default();
        for (site, by) in sites {
            let current = current(&tx, &site.id)?;
            tally(
                &mut report,
                site,
                write_site(&tx, site, current, &clock, by)?,
            );
        }
        super::set_meta_in(&tx, key, value)?;
        tx.commit()?;
        Ok(report)
    }

    /// Creates a site, or restores a retired one with this id. Returns the new
    /// revision, or `None`, writing nothing, if a live site already has the id.
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
        let tx = self.conn.transaction()?;
        let Some(current) = current(&tx, id)?.filter(|c| !c.retired) else {
            return Ok(Conditional::NotFound);
        };
        let stored = parse_stored(id.as_str(), &current.feature)?;
        if tags.is_some_and(|tags| !tags.contains(&stored.tag())) {
            return Ok(Conditional::Stale);
        }
        let clock = clock(&tx)?;
        // A retirement keeps the footprint, and so its box.
        let bounds = stored.footprint.lonlat_bounds();
        let write = RevisionWrite {
            id,
            previous: Some(current.revision),
            retired: true,
            change: Change::Retired,
            feature: &current.feature,
            packed: None,
            diff: vec![FieldChange {
                field: "retired".into(),
                old: json!(false),
                new: json!(true),
            }],
            bounds,
        };
        let revision = write_revision(&tx, write, &clock, by)?;
        tx.commit()?;
        Ok(Conditional::Written(revision))
    }
}

/// Records what writing `site` did in the report.
fn tally(report: &mut ApplyReport, site: &Site, written: Option<Revision>) {
    match written {
        Some(r) if r.change == Change::Created => report.created.push(site.id.clone()),
        Some(_) => report.updated.push(site.id.clone()),
        None => report.unchanged += 1,
    }
}

/// From this many sites on, [`SiteWrites::apply_sites`] writes in bulk.
const BULK: usize = 10_000;

/// Writing many sites in one transaction at the speed of SQLite's inserts.
/// Per site, the one-by-one path reads the stored row, serialises on the
/// writer's thread and walks the revisions' R*Tree from wherever the last
/// box went. Here the stored ids are read once, so a site that cannot exist
/// yet is created without a read; the feature, packed form and diff are made
/// on the other cores while this thread writes; and the boxes go into the
/// R*Tree at the end, in space-filling-curve order, so that consecutive
/// inserts touch the same few nodes.
mod bulk {
    use super::*;
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Mutex, mpsc};

    /// Sites serialised at a time by one worker.
    pub(super) const CHUNK: usize = 2_048;

    /// SQLite's page cache while the import runs in WAL mode, in KiB: the
    /// inserts go to several B-trees at once, and a cache that holds their
    /// working set keeps the transaction from spilling pages to the WAL
    /// before commit.
    const CACHE_KIB: i64 = 1_048_576;

    /// The same when the pages go straight into the file: a spilled page is
    /// simply written where it belongs, so a small cache costs nothing (at a
    /// million sites it was as fast, and the command's peak memory fell from
    /// 1.5 GB to 0.4 GB).
    const DIRECT_CACHE_KIB: i64 = 65_536;

    /// What creating one site writes, made before the writer needs it.
    struct Prepared {
        feature: String,
        packed: Vec<u8>,
        bounds: [f64; 4],
    }

    fn prepare(site: &Site) -> Result<Prepared, StoreError> {
        Ok(Prepared {
            feature: site.feature_text(),
            packed: super::super::packed::encode(site),
            bounds: site.footprint.lonlat_bounds(),
        })
    }

    /// [`SiteWrites::apply_sites`] for many sites: one transaction, all or
    /// nothing, with the same rows, revisions, boxes and log entries as the
    /// one-by-one path.
    pub(super) fn apply<C: AsRef<[Site]> + Send>(
        conn: &mut rusqlite::Connection,
        sites: impl Iterator<Item = Result<C, StoreError>> + Send,
        by: &Provenance,
        journal: fn(&rusqlite::Connection) -> Journal,
    ) -> Result<ApplyReport, StoreError> {
        let cache: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
        let journal = journal(conn);
        let kib = match journal {
            Journal::Direct => DIRECT_CACHE_KIB,
            Journal::Unchanged => CACHE_KIB,
        };
        conn.pragma_update(None, "cache_size", -kib)?;
        let result: Result<ApplyReport, StoreError> = (|| {
            let tx = conn.transaction()?;
            let report = write_all(&tx, sites, by)?;
            tx.commit()?;
            Ok(report)
        })();
        // The write's own error, if any, is the one to report.
        let restored = journal.restore(conn);
        conn.pragma_update(None, "cache_size", cache)?;
        let report = result?;
        restored?;
        Ok(report)
    }

    /// How a bulk write is journalled. In WAL mode every page is written
    /// twice, into the log at commit and into the file at the checkpoint; a
    /// rollback journal writes the new pages once, straight into the file, and
    /// journals only the pages that existed before (few, when a catalogue is
    /// first loaded). The commit stays atomic either way, but readers would
    /// wait on the writer, so only a command's own write asks for it, and
    /// SQLite leaves WAL mode only when no other connection has the file
    /// open: an import beside a running server stays in WAL mode.
    pub(super) enum Journal {
        /// Switched from WAL to a rollback journal for this write.
        Direct,
        /// As the connection had it.
        Unchanged,
    }

    impl Journal {
        pub(super) fn as_it_is(_: &rusqlite::Connection) -> Self {
            Self::Unchanged
        }

        pub(super) fn direct_if_alone(conn: &rusqlite::Connection) -> Self {
            let now: Option<String> = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .ok();
            if now.as_deref() != Some("wal") {
                return Self::Unchanged;
            }
            // Refused (busy) while another connection has the file open.
            let switched: Option<String> = conn
                .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))
                .ok();
            match switched.as_deref() {
                Some("delete") => Self::Direct,
                _ => Self::Unchanged,
            }
        }

        fn restore(self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
            if let Self::Direct = self {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| {
                    r.get::<_, String>(0)
                })?;
            }
            Ok(())
        }
    }

    fn write_all<C: AsRef<[Site]> + Send>(
        tx: &Transaction,
        sites: impl Iterator<Item = Result<C, StoreError>> + Send,
        by: &Provenance,
    ) -> Result<ApplyReport, StoreError> {
        let clock = clock(tx)?;
        // A site's row is written after its revision (see `create`); the
        // transaction's references are checked when it commits.
        tx.pragma_update(None, "defer_foreign_keys", true)?;
        let mut stored: HashSet<String> = {
            let mut stmt = tx.prepare("SELECT id FROM sites")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut report = ApplyReport::default();
        let mut boxes: Vec<(i64, [f64; 4])> = Vec::new();
        in_order(sites, |chunk, prepared| {
            let mut fresh: Vec<(&Site, Prepared)> = Vec::with_capacity(chunk.len());
            for (site, prepared) in chunk.iter().zip(prepared) {
                if !stored.insert(site.id.as_str().to_owned()) {
                    // Stored before, or named earlier in this batch: compare
                    // with what is stored now, packed form included.
                    create(tx, &mut fresh, &clock, by, &mut boxes, &mut report)?;
                    let current = current(tx, &site.id)?;
                    tally(
                        &mut report,
                        site,
                        write_site(tx, site, current, &clock, by)?,
                    );
                    continue;
                }
                fresh.push((site, prepared));
            }
            create(tx, &mut fresh, &clock, by, &mut boxes, &mut report)
        })?;
        // In the R*Tree's column order.
        let boxes = boxes
            .into_iter()
            .map(|(rowid, [west, south, east, north])| (rowid, [west, east, south, north]))
            .collect();
        super::super::rtree::bulk_insert(tx, "site_revision_boxes", boxes)?;
        Ok(report)
    }

    /// Sites written by one statement per table.
    const ROWS_PER_STATEMENT: usize = 32;

    /// Writes sites that are not stored yet (their row, first revision, log
    /// entry and packed form), and empties `fresh`. Each revision's rowid is
    /// given rather than taken, so that its box is known without asking.
    fn create(
        tx: &Transaction,
        fresh: &mut Vec<(&Site, Prepared)>,
        (now, _): &(String, Timestamp),
        by: &Provenance,
        boxes: &mut Vec<(i64, [f64; 4])>,
        report: &mut ApplyReport,
    ) -> Result<(), StoreError> {
        if fresh.is_empty() {
            return Ok(());
        }
        let mut next_rowid: i64 = tx.query_row(
            "SELECT coalesce(max(rowid), 0) + 1 FROM site_revisions",
            [],
            |r| r.get(0),
        )?;
        let created = Change::Created.log_kind().as_str();
        for group in fresh.chunks(ROWS_PER_STATEMENT) {
            let n = group.len();
            let ids: Vec<&str> = group.iter().map(|(site, _)| site.id.as_str()).collect();
            // `OR ROLLBACK`: a statement that may stop halfway through its
            // rows would otherwise be journalled page by page so that it
            // alone could be undone; a bulk write is undone whole anyway.
            let sql = super::super::insert_rows(
                "INSERT OR ROLLBACK INTO site_revisions
                    (rowid, site_id, revision, recorded_at, actor, reason, change, feature, diff)",
                n,
                |i| {
                    let p = 5 + 3 * i;
                    format!(
                        "(?{p}, ?{}, 1, ?1, ?2, ?3, 'created', ?{}, ?4)",
                        p + 1,
                        p + 2
                    )
                },
            );
            let rowids: Vec<i64> = (next_rowid..next_rowid + n as i64).collect();
            next_rowid += n as i64;
            let mut values: Vec<&dyn rusqlite::ToSql> =
                vec![now, &by.actor, &by.reason, &CREATION_DIFF];
            for ((id, (_, prepared)), rowid) in ids.iter().zip(group).zip(&rowids) {
                values.extend([rowid as &dyn rusqlite::ToSql, id, &prepared.feature]);
                boxes.push((*rowid, prepared.bounds));
            }
            tx.prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(values))?;

            let entries: Vec<super::super::log::Entry> = group
                .iter()
                .map(|(site, prepared)| super::super::log::Entry {
                    at: now,
                    kind: created,
                    site_id: Some(site.id.as_str()),
                    revision: Some(1),
                    batch_id: None,
                    candidate_id: None,
                    bounds: Some(prepared.bounds),
                })
                .collect();
            super::super::log::append_all(tx, &entries)?;
            report
                .created
                .extend(group.iter().map(|(site, _)| site.id.clone()));
        }
        // The sites' rows, with their packed forms, go in after the other
        // rows (foreign keys are checked at commit), so that they lie in runs
        // of pages in file order: start-up reads every one of them in id
        // order, and a run is read ahead where scattered pages are each a
        // read of their own.
        for group in fresh.chunks(ROWS_PER_STATEMENT) {
            let sql = super::super::insert_rows(
                "INSERT OR ROLLBACK INTO sites (id, revision, retired, created_at, updated_at, packed)",
                group.len(),
                |i| format!("(?{}, 1, 0, ?1, ?1, ?{})", 2 + 2 * i, 3 + 2 * i),
            );
            let ids: Vec<&str> = group.iter().map(|(site, _)| site.id.as_str()).collect();
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![now];
            for (id, (_, prepared)) in ids.iter().zip(group) {
                values.extend([id as &dyn rusqlite::ToSql, &prepared.packed]);
            }
            tx.prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(values))?;
        }
        fresh.clear();
        Ok(())
    }

    /// Calls `write` on each chunk of sites in order with their [`Prepared`]
    /// forms, made on the other cores a few chunks ahead of the writer. A
    /// thread of its own pulls the chunks from `sites`, so that the writer
    /// writes each one as soon as it is prepared, whatever pace a source
    /// still being read keeps. Stops at the first error.
    fn in_order<C: AsRef<[Site]> + Send>(
        sites: impl Iterator<Item = Result<C, StoreError>> + Send,
        mut write: impl FnMut(&[Site], Vec<Prepared>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        type Done<C> = (usize, Result<(C, Vec<Prepared>), StoreError>);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Chunks in flight at most, so the text in flight stays a few tens
        // of megabytes.
        let ahead = workers * 2;
        let (to_workers, work) = mpsc::sync_channel::<(usize, Result<C, StoreError>)>(ahead);
        // Dropped with the last worker, which stops a feeder waiting for room.
        let work = Arc::new(Mutex::new(work));
        let (to_writer, done) = mpsc::channel::<Done<C>>();
        // A token for each chunk that may be pulled and not yet written: the
        // writer hands one back for each chunk it writes.
        let (room, rooms) = mpsc::sync_channel::<()>(ahead);
        for _ in 0..ahead {
            let _ = room.send(());
        }
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut sites = sites.enumerate();
                while rooms.recv().is_ok() {
                    let Some((i, chunk)) = sites.next() else {
                        return;
                    };
                    let failed = chunk.is_err();
                    if to_workers.send((i, chunk)).is_err() || failed {
                        return;
                    }
                }
            });
            for _ in 0..workers {
                let (to_writer, work) = (to_writer.clone(), Arc::clone(&work));
                scope.spawn(move || {
                    loop {
                        // The lock is held only to take the next chunk.
                        let next = work.lock().map(|w| w.recv());
                        let Ok(Ok((i, chunk))) = next else {
                            return;
                        };
                        let prepared = chunk.and_then(|chunk| {
                            let prepared: Result<Vec<Prepared>, StoreError> =
                                chunk.as_ref().iter().map(prepare).collect();
                            prepared.map(|p| (chunk, p))
                        });
                        if to_writer.send((i, prepared)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop((to_writer, work));
            let mut early: BTreeMap<usize, Result<(C, Vec<Prepared>), StoreError>> =
                BTreeMap::new();
            let mut written = 0;
            let result = loop {
                if let Some(next) = early.remove(&written) {
                    match next.and_then(|(chunk, prepared)| write(chunk.as_ref(), prepared)) {
                        Ok(()) => {
                            written += 1;
                            let _ = room.send(());
                        }
                        Err(e) => break Err(e),
                    }
                    continue;
                }
                match done.recv() {
                    Ok((i, prepared)) => {
                        early.insert(i, prepared);
                    }
                    // The feeder has ended and the workers have emptied the
                    // queue: every chunk has been written.
                    Err(_) => break Ok(()),
                }
            };
            // Workers stop at their next chunk, and the feeder at its next.
            drop((done, room));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HistoryReads, SqliteStore};
    use serde_json::json;

    fn site(id: &str, status: &str) -> Site {
        let f = json!({"type": "Feature", "id": id,
            "geometry": {"type": "Polygon", "coordinates": [[[125.0, 39.0], [125.1, 39.0], [125.1, 39.1], [125.0, 39.0]]]},
            "properties": {"name": format!("Site {id}"), "country": "PRK", "kind": "reactor", "status": status}});
        Site::from_feature(&f, IdPolicy::Required).unwrap()
    }

    fn by() -> Provenance {
        Provenance {
            actor: "test".into(),
            reason: Some("unit test".into()),
        }
    }

    #[test]
    fn applying_the_same_sites_twice_records_one_revision_each() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let sites = [site("a", "active"), site("b", "active")];
        let first = s.apply_sites(&sites, &by()).unwrap();
        assert_eq!(first.created.len(), 2);
        let second = s.apply_sites(&sites, &by()).unwrap();
        assert_eq!(
            second,
            ApplyReport {
                unchanged: 2,
                ..ApplyReport::default()
            }
        );
        assert_eq!(s.revisions(&sites[0].id).unwrap().len(), 1);
    }

    #[test]
    fn a_changed_site_gets_a_new_revision_with_its_diff_and_the_old_one_is_kept() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.apply_sites(&[site("a", "active")], &by()).unwrap();
        let r = s.apply_sites(&[site("a", "inactive")], &by()).unwrap();
        assert_eq!(r.updated.len(), 1);
        let revs = s.revisions(&site("a", "active").id).unwrap();
        assert_eq!(
            revs.iter()
                .map(|r| (r.revision, r.change))
                .collect::<Vec<_>>(),
            [(1, Change::Created), (2, Change::Updated)]
        );
        assert_eq!(revs[1].diff.len(), 1);
        assert_eq!(revs[1].diff[0].field, "status");
        assert_eq!(revs[1].diff[0].old, json!("active"));
        assert_eq!(revs[1].actor, "test");
        assert_eq!(s.live_sites().unwrap()[0].status.as_str(), "inactive");
    }

    #[test]
    fn a_created_revision_stores_no_copy_of_its_feature_as_its_diff_yet_reads_back_whole() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let one = site("a", "active");
        let many = crate::synth::sites(BULK, 4);
        s.apply_sites(std::slice::from_ref(&one), &by()).unwrap();
        s.apply_sites(&many, &by()).unwrap();
        for site in [&one, &many[BULK / 2]] {
            let stored: String = s
                .conn
                .query_row(
                    "SELECT diff FROM site_revisions WHERE site_id = ?1",
                    [site.id.as_str()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(stored, CREATION_DIFF);
            let revs = s.revisions(&site.id).unwrap();
            assert_eq!(revs[0].diff, diff_sites(None, site));
            let events = s
                .revisions_between(Some(site.id.as_str()), None, None, None, 10)
                .unwrap();
            assert_eq!(
                events[0].diff,
                serde_json::to_value(diff_sites(None, site)).unwrap()
            );
        }
    }

    #[test]
    fn a_site_file_database_reopens_with_its_sites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        SqliteStore::open(&path)
            .unwrap()
            .apply_sites(&[site("a", "active")], &by())
            .unwrap();
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.live_sites().unwrap().len(), 1);
        let mode: String = again
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    fn id(raw: &str) -> SiteId {
        SiteId::parse("id", raw).unwrap()
    }

    fn ids(sites: &[Arc<Site>]) -> Vec<&str> {
        sites.iter().map(|s| s.id.as_str()).collect()
    }

    /// A moment strictly between the writes before and after it.
    fn pause() -> Timestamp {
        std::thread::sleep(std::time::Duration::from_millis(3));
        let t = Timestamp::now();
        std::thread::sleep(std::time::Duration::from_millis(3));
        t
    }

    #[test]
    fn retiring_a_site_records_a_retired_revision_and_takes_it_out_of_the_live_sites() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.apply_sites(&[site("a", "active"), site("b", "active")], &by())
            .unwrap();
        let r = s.retire_site(&id("a"), &by()).unwrap().unwrap();
        assert_eq!((r.revision, r.change), (2, Change::Retired));
        assert_eq!(
            r.diff,
            [FieldChange {
                field: "retired".into(),
                old: json!(false),
                new: json!(true)
            }]
        );
        assert_eq!(ids(&s.live_sites().unwrap()), ["b"]);
        assert_eq!(ids(&s.retired_sites().unwrap()), ["a"]);
        assert_eq!(s.retired_site(&id("a")).unwrap(), Some(site("a", "active")));
        assert_eq!(s.retired_site(&id("b")).unwrap(), None);
        assert_eq!(s.site_count().unwrap(), 2, "nothing is deleted");
        let stored = s.revisions(&id("a")).unwrap();
        assert_eq!(stored.last().unwrap().change, Change::Retired);
        assert_eq!(stored.last().unwrap().diff, r.diff);
    }

    #[test]
    fn retiring_an_unknown_or_already_retired_site_writes_nothing() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.apply_sites(&[site("a", "active")], &by()).unwrap();
        assert!(s.retire_site(&id("nowhere"), &by()).unwrap().is_none());
        s.retire_site(&id("a"), &by()).unwrap().unwrap();
        assert!(s.retire_site(&id("a"), &by()).unwrap().is_none());
        assert_eq!(s.revisions(&id("a")).unwrap().len(), 2);
    }

    #[test]
    fn create_only_refuses_a_live_id_and_restores_a_retired_one() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let first = s.create_site(&site("a", "active"), &by()).unwrap().unwrap();
        assert_eq!(first.change, Change::Created);
        assert!(
            s.create_site(&site("a", "inactive"), &by())
                .unwrap()
                .is_none()
        );
        assert_eq!(s.live_sites().unwrap()[0].status.as_str(), "active");
        s.retire_site(&id("a"), &by()).unwrap();
        let again = s
            .create_site(&site("a", "inactive"), &by())
            .unwrap()
            .unwrap();
        assert_eq!((again.revision, again.change), (3, Change::Restored));
        assert_eq!(s.live_sites().unwrap()[0].status.as_str(), "inactive");
    }

    #[test]
    fn replace_only_refuses_a_missing_or_retired_site() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        assert!(
            s.replace_site(&site("a", "active"), &by())
                .unwrap()
                .is_none()
        );
        assert_eq!(s.site_count().unwrap(), 0);
        s.apply_sites(&[site("a", "active")], &by()).unwrap();
        let r = s
            .replace_site(&site("a", "inactive"), &by())
            .unwrap()
            .unwrap();
        assert_eq!((r.revision, r.change), (2, Change::Updated));
        assert_eq!(r.diff[0].field, "status");
        s.retire_site(&id("a"), &by()).unwrap();
        assert!(
            s.replace_site(&site("a", "active"), &by())
                .unwrap()
                .is_none()
        );
        assert!(s.live_sites().unwrap().is_empty());
    }

    #[test]
    fn replacing_a_site_with_itself_returns_its_current_revision_and_records_nothing() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.apply_sites(&[site("a", "active")], &by()).unwrap();
        let r = s
            .replace_site(&site("a", "active"), &by())
            .unwrap()
            .unwrap();
        assert_eq!((r.revision, r.change), (1, Change::Created));
        assert_eq!(s.revisions(&id("a")).unwrap().len(), 1);
    }

    #[test]
    fn sites_as_of_a_moment_are_the_revisions_recorded_by_then_without_the_retired() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let before_all = pause();
        s.apply_sites(&[site("a", "active"), site("b", "active")], &by())
            .unwrap();
        let created = pause();
        s.replace_site(&site("a", "inactive"), &by()).unwrap();
        let replaced = pause();
        s.retire_site(&id("b"), &by()).unwrap();
        let retired = pause();
        s.create_site(&site("b", "abandoned"), &by()).unwrap();

        assert!(s.sites_as_of(before_all).unwrap().is_empty());
        let then = s.sites_as_of(created).unwrap();
        assert_eq!(ids(&then), ["a", "b"]);
        assert_eq!(then[0].status.as_str(), "active");
        assert_eq!(
            s.sites_as_of(replaced).unwrap()[0].status.as_str(),
            "inactive"
        );
        assert_eq!(ids(&s.sites_as_of(retired).unwrap()), ["a"]);
        assert_eq!(ids(&s.retired_sites_as_of(retired).unwrap()), ["b"]);
        assert!(s.retired_sites_as_of(replaced).unwrap().is_empty());
        assert_eq!(
            s.sites_as_of(Timestamp::now()).unwrap(),
            s.live_sites().unwrap()
        );
    }

    #[test]
    fn one_site_as_of_a_moment_is_absent_before_it_was_created_and_while_retired() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let before = pause();
        s.apply_sites(&[site("a", "active")], &by()).unwrap();
        let created = pause();
        s.retire_site(&id("a"), &by()).unwrap();
        let retired = pause();
        s.create_site(&site("a", "inactive"), &by()).unwrap();

        assert_eq!(s.site_as_of(&id("a"), before).unwrap(), None);
        assert_eq!(
            s.site_as_of(&id("a"), created).unwrap(),
            Some(site("a", "active"))
        );
        assert_eq!(s.site_as_of(&id("a"), retired).unwrap(), None);
        assert_eq!(
            s.retired_site_as_of(&id("a"), retired).unwrap(),
            Some(site("a", "active"))
        );
        assert_eq!(s.retired_site_as_of(&id("a"), created).unwrap(), None);
        assert_eq!(
            s.site_as_of(&id("a"), Timestamp::now()).unwrap(),
            Some(site("a", "inactive"))
        );
        assert_eq!(
            s.site_as_of(&id("nowhere"), Timestamp::now()).unwrap(),
            None
        );
    }

    /// Everything a write of sites leaves in the tables, times aside.
    fn written(s: &SqliteStore) -> Vec<String> {
        let dump = |sql: &str| -> Vec<String> {
            let mut stmt = s.conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| {
                (0..n)
                    .map(|i| Ok(format!("{:?}", r.get_ref(i)?)))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map(|v| v.join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        [
            "SELECT id, revision, retired, packed FROM sites ORDER BY id",
            "SELECT site_id, revision, actor, reason, change, feature, diff, valid_until IS NULL
             FROM site_revisions ORDER BY site_id, revision",
            "SELECT r.site_id, r.revision, b.west, b.east, b.south, b.north
             FROM site_revision_boxes b JOIN site_revisions r ON r.rowid = b.id
             ORDER BY r.site_id, r.revision",
            "SELECT seq, kind, site_id, revision, west, south, east, north FROM change_log
             ORDER BY seq",
        ]
        .into_iter()
        .flat_map(dump)
        .collect()
    }

    #[test]
    fn a_bulk_write_lays_the_packed_forms_out_in_long_runs_of_pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        s.apply_sites(&crate::synth::sites(BULK + bulk::CHUNK, 9), &by())
            .unwrap();
        let pages: Vec<i64> = {
            let mut stmt = s
                .conn
                .prepare("SELECT pageno FROM dbstat WHERE name = 'sites' ORDER BY pageno")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let runs = 1 + pages.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert!(pages.len() > 60, "{} pages", pages.len());
        // Written beside the other rows of each site, nearly every page
        // began a run of its own.
        assert!(
            runs * 10 <= pages.len(),
            "{} pages in {runs} runs",
            pages.len()
        );
    }

    #[test]
    fn a_bulk_write_leaves_the_same_rows_as_writing_one_site_at_a_time() {
        // More sites than one statement writes, so that full and partial
        // statements both run.
        let mut batch = crate::synth::sites(100, 3);
        // Named twice in one batch: the second is an update of the first.
        let mut again = batch[7].clone();
        again.name = "renamed".into();
        batch.push(again);
        batch.push(batch[3].clone());
        let before = [site("a", "active"), batch[5].clone(), site("b", "active")];
        let mut changed = batch[5].clone();
        changed.notes = Some("changed".into());
        batch[5] = changed;

        let mut one_by_one = SqliteStore::open_in_memory().unwrap();
        one_by_one.apply_sites(&before, &by()).unwrap();
        let tx = one_by_one.conn.transaction().unwrap();
        let clock = clock(&tx).unwrap();
        let mut expected = ApplyReport::default();
        for site in &batch {
            let current = current(&tx, &site.id).unwrap();
            tally(
                &mut expected,
                site,
                write_site(&tx, site, current, &clock, &by()).unwrap(),
            );
        }
        tx.commit().unwrap();

        let mut bulk = SqliteStore::open_in_memory().unwrap();
        bulk.apply_sites(&before, &by()).unwrap();
        // Chunks smaller than the batch, so that a repeat crosses a chunk's edge.
        let report = bulk::apply(
            &mut bulk.conn,
            batch.chunks(45).map(Ok),
            &by(),
            bulk::Journal::as_it_is,
        )
        .unwrap();
        assert_eq!(report, expected);
        assert_eq!(report.created.len(), 99);
        assert_eq!(report.updated.len(), 2);
        assert_eq!(report.unchanged, 1);
        assert_eq!(written(&bulk), written(&one_by_one));
        assert_eq!(bulk.live_sites().unwrap(), one_by_one.live_sites().unwrap());
    }

    #[test]
    fn a_bulk_write_that_fails_leaves_nothing_behind() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let batch = crate::synth::sites(30, 4);
        // A row that only the bulk path's plain insert trips over, late in
        // the batch: the earlier inserts must be rolled back with it. (A
        // revision of no stored site, so that the site counts as new.)
        s.conn
            .execute_batch(&format!(
                "PRAGMA foreign_keys = OFF;
                 INSERT INTO site_revisions (site_id, revision, recorded_at, actor, change, feature, diff)
                 VALUES ('{}', 1, '2025-01-01T00:00:00Z', 't', 'created', '{{}}', 'null');
                 PRAGMA foreign_keys = ON;",
                batch[25].id.as_str()
            ))
            .unwrap();
        assert!(
            bulk::apply(
                &mut s.conn,
                batch.chunks(4).map(Ok),
                &by(),
                bulk::Journal::as_it_is
            )
            .is_err()
        );
        assert_eq!(s.site_count().unwrap(), 0);
        let revisions: i64 = s
            .conn
            .query_row("SELECT count(*) FROM site_revisions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(revisions, 1, "only the planted one");
    }

    #[test]
    fn sites_in_chunks_are_stored_as_the_same_sites_at_once_would_be() {
        for n in [BULK / 2, BULK + 300] {
            let sites = crate::synth::sites(n, 9);
            let mut at_once = SqliteStore::open_in_memory().unwrap();
            let expected = at_once.apply_sites(&sites, &by()).unwrap();
            let mut chunked = SqliteStore::open_in_memory().unwrap();
            let mut chunks = sites.chunks(1_000).map(|c| Ok(c.to_vec()));
            let report = chunked.apply_site_chunks(&mut chunks, &by()).unwrap();
            assert_eq!(report, expected, "{n} sites");
            assert_eq!(written(&chunked), written(&at_once), "{n} sites");
            assert_eq!(chunked.live_sites().unwrap(), at_once.live_sites().unwrap());
        }
    }

    #[test]
    fn sites_in_chunks_that_are_abandoned_leave_nothing_behind() {
        // Abandoned before the bulk path starts, and after.
        for n in [BULK / 2, BULK + 300] {
            let mut s = SqliteStore::open_in_memory().unwrap();
            s.apply_sites(&[site("kept", "active")], &by()).unwrap();
            let sites = crate::synth::sites(n, 10);
            let mut chunks = sites
                .chunks(1_000)
                .map(|c| Ok(c.to_vec()))
                .chain([Err(Abandoned)])
                .chain([Ok(vec![site("late", "active")])]);
            let err = s.apply_site_chunks(&mut chunks, &by()).unwrap_err();
            assert!(matches!(err, StoreError::Abandoned), "{err}");
            assert_eq!(ids(&s.live_sites().unwrap()), ["kept"], "{n} sites");
            let rows: i64 = s
                .conn
                .query_row(
                    "SELECT (SELECT count(*) FROM site_revisions) + (SELECT count(packed) FROM sites)",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(rows, 2, "{n} sites");
        }
    }

    /// Writes `sites` through [`SiteWrites::apply_site_chunks`] and says
    /// whether a rollback journal was ever seen beside the database while
    /// the chunks were pulled. With `wait`, the last chunk is handed over
    /// only once the journal is there: the chunks before it are enough for
    /// the writer to begin.
    fn journal_seen_mid_write(
        s: &mut SqliteStore,
        path: &std::path::Path,
        sites: &[Site],
        wait: bool,
    ) -> bool {
        let journal = {
            let mut p = path.as_os_str().to_owned();
            p.push("-journal");
            std::path::PathBuf::from(p)
        };
        let mut seen = false;
        let last = sites.len().div_ceil(250) - 1;
        let mut chunks = sites.chunks(250).enumerate().map(|(i, c)| {
            while wait && i == last && !journal.exists() {
                std::thread::yield_now();
            }
            seen |= journal.exists();
            Ok(c.to_vec())
        });
        s.apply_site_chunks(&mut chunks, &by()).unwrap();
        seen
    }

    #[test]
    fn a_bulk_write_to_a_file_nobody_else_has_open_goes_straight_into_it_and_ends_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let sites = crate::synth::sites(BULK + 2_500, 11);
        let mut s = SqliteStore::open(&path).unwrap();
        assert!(journal_seen_mid_write(&mut s, &path, &sites, true));
        drop(s);
        // Read from the file itself, so that no setting made on opening can
        // hide what the write left there: 2 is WAL.
        let header = std::fs::read(&path).unwrap();
        assert_eq!(&header[18..20], &[2, 2]);
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.live_sites().unwrap().len(), sites.len());
    }

    #[test]
    fn a_bulk_write_beside_another_open_connection_stays_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let sites = crate::synth::sites(BULK + 2_500, 12);
        let mut s = SqliteStore::open(&path).unwrap();
        let reader = SqliteStore::open_reader(path.to_str().unwrap()).unwrap();
        // A connection that has read holds the file open in WAL mode.
        assert!(reader.live_sites().unwrap().is_empty());
        assert!(!journal_seen_mid_write(&mut s, &path, &sites, false));
        // The commit went through the log: its frames are still there, while
        // the other connection keeps it from being removed.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let logged = std::fs::metadata(std::path::PathBuf::from(wal))
            .unwrap()
            .len();
        assert!(logged > 4 << 20, "{logged} bytes in the WAL");
        assert_eq!(reader.live_sites().unwrap().len(), sites.len());
    }

    #[test]
    fn live_sites_are_read_from_the_packed_forms_and_a_corrupt_one_from_its_geojson() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let sites = crate::synth::sites(20, 6);
        s.apply_sites(&sites, &by()).unwrap();
        // Marked, so that a read from the GeoJSON would show.
        s.conn
            .execute(
                "UPDATE sites SET packed = x'01020304' WHERE id = ?1",
                [sites[4].id.as_str()],
            )
            .unwrap();
        let read: Vec<Site> = s
            .live_sites()
            .unwrap()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        assert_eq!(read, sites);
        s.conn
            .execute(
                "UPDATE site_revisions SET feature = '{}' WHERE site_id = ?1",
                [sites[4].id.as_str()],
            )
            .unwrap();
        let err = s.live_sites().unwrap_err();
        assert!(err.to_string().contains(sites[4].id.as_str()), "{err}");
    }

    #[test]
    fn a_retired_site_loses_its_packed_form_and_a_restored_one_gets_it_back() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.apply_sites(&[site("a", "active"), site("b", "active")], &by())
            .unwrap();
        s.retire_site(&id("a"), &by()).unwrap();
        let packed = |s: &SqliteStore| -> Vec<String> {
            let mut stmt = s
                .conn
                .prepare("SELECT id FROM sites WHERE packed IS NOT NULL ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(packed(&s), ["b"]);
        s.create_site(&site("a", "inactive"), &by()).unwrap();
        assert_eq!(packed(&s), ["a", "b"]);
        assert_eq!(s.live_sites().unwrap()[0].status.as_str(), "inactive");
    }

    #[test]
    fn a_revision_is_never_recorded_before_the_one_it_follows_even_if_the_clock_steps_back() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.apply_sites(&[site("a", "active")], &by()).unwrap();
        let future = "2999-01-01T00:00:00.000000Z";
        s.conn
            .execute("UPDATE site_revisions SET recorded_at = ?1", [future])
            .unwrap();
        let r = s
            .replace_site(&site("a", "inactive"), &by())
            .unwrap()
            .unwrap();
        assert_eq!(r.recorded_at.to_rfc3339(), future);
        let t = Timestamp::parse("t", future).unwrap();
        assert_eq!(
            s.site_as_of(&id("a"), t).unwrap(),
            Some(site("a", "inactive"))
        );
    }
}
