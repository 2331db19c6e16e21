//! Writing many sites in one write of sites, set-wise: each chunk's stored
//! state is read in one query, each site planned as a single write plans it,
//! and the revisions go to the server through binary COPY into a staging
//! table and a few statements over it, instead of several round trips a site.

use super::boxes::index_box;
use super::sites::{Current, Write, diff_json, plan, tally};
use super::store::to_pg;
use super::wkb::{Geography, JsonbText};
use crate::model::Site;
use crate::store::packed;
use crate::store::{ApplyReport, Change, Provenance, StoreError};
use postgres::Statement;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use std::collections::{HashMap, HashSet};

/// How many sites make the staging table worth its cost; fewer go one by one.
pub(super) const WORTH_IT: usize = 1_024;

/// The revisions of one flush, in the order planned (`n`); `previous` is the
/// revision they follow, null for a new site. The feature and footprint are
/// parsed once, on the way in, for both tables. Dropped with the transaction.
const STAGE: &str = "CREATE TEMP TABLE IF NOT EXISTS site_stage (
        n bigint NOT NULL, id text NOT NULL, revision bigint NOT NULL, previous bigint,
        change text NOT NULL, feature jsonb NOT NULL, diff jsonb NOT NULL,
        footprint geography NOT NULL, bounds real[] NOT NULL, packed bytea NOT NULL
    ) ON COMMIT DROP";

const COPY: &str = "COPY site_stage (n, id, revision, previous, change, feature, diff, footprint,
    bounds, packed) FROM STDIN (FORMAT binary)";

/// The statements of a flush, and the COPY's column types (`geography`'s
/// number is the database's own). The rows go in in the order planned.
struct Statements {
    copy_types: Vec<Type>,
    close_previous: Statement,
    insert_sites: Statement,
    update_sites: Statement,
    insert_revisions: Statement,
}

impl Statements {
    fn prepare(w: &mut Write<'_>) -> Result<Self, StoreError> {
        let tx = &mut w.tx;
        let geography = tx.prepare("SELECT NULL::geography")?.columns()[0]
            .type_()
            .clone();
        Ok(Self {
            copy_types: vec![
                Type::INT8,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::JSONB,
                Type::JSONB,
                geography,
                Type::FLOAT4_ARRAY,
                Type::BYTEA,
            ],
            close_previous: tx.prepare(
                "UPDATE site_revisions r SET valid_until = $1::timestamptz
                 FROM site_stage s WHERE r.site_id = s.id AND r.revision = s.previous",
            )?,
            insert_sites: tx.prepare(
                "INSERT INTO sites (id, revision, retired, feature, footprint, created_at, updated_at,
                     packed)
                 SELECT id, revision, false, feature, footprint, $1::timestamptz, $1::timestamptz,
                        packed
                 FROM site_stage WHERE previous IS NULL ORDER BY n",
            )?,
            update_sites: tx.prepare(
                "UPDATE sites SET revision = s.revision, retired = false, feature = s.feature,
                        footprint = s.footprint, updated_at = $1::timestamptz, packed = s.packed
                 FROM site_stage s WHERE sites.id = s.id AND s.previous IS NOT NULL",
            )?,
            // After the sites, which a new site's revision refers to.
            insert_revisions: tx.prepare(
                "INSERT INTO site_revisions (site_id, revision, recorded_at, actor, reason, change,
                     feature, diff, footprint, bounds)
                 SELECT id, revision, $1::timestamptz, $2::text, $3::text, change, feature, diff,
                        footprint, bounds
                 FROM site_stage ORDER BY n",
            )?,
        })
    }
}

/// A planned revision not yet on the server.
struct Staged {
    id: String,
    revision: i64,
    previous: Option<i64>,
    change: Change,
    feature: String,
    diff: String,
    footprint: Geography,
    bounds: Vec<f32>,
    packed: Vec<u8>,
}

/// Writes every site of `chunks`, in order, as [`Write::apply`] would one by
/// one: the same revisions, log entries and report.
pub(super) fn apply<C: AsRef<[Site]>>(
    w: &mut Write<'_>,
    chunks: impl IntoIterator<Item = Result<C, StoreError>>,
    by: &Provenance,
) -> Result<ApplyReport, StoreError> {
    w.tx.batch_execute(STAGE)?;
    let stmts = Statements::prepare(w)?;
    let mut bulk = Bulk {
        w,
        stmts,
        by,
        pending: Vec::new(),
        pending_ids: HashSet::new(),
        report: ApplyReport::default(),
    };
    for chunk in chunks {
        bulk.chunk(chunk?.as_ref())?;
    }
    Ok(bulk.report)
}

struct Bulk<'w, 'a, 'p> {
    w: &'w mut Write<'a>,
    stmts: Statements,
    by: &'p Provenance,
    pending: Vec<Staged>,
    pending_ids: HashSet<String>,
    report: ApplyReport,
}

impl Bulk<'_, '_, '_> {
    fn chunk(&mut self, sites: &[Site]) -> Result<(), StoreError> {
        let ids: Vec<&str> = sites.iter().map(|s| s.id.as_str()).collect();
        let mut stored: HashMap<String, Current> = HashMap::with_capacity(sites.len());
        for r in self.w.tx.query(
            "SELECT id, revision, retired, feature FROM sites WHERE id = ANY($1)",
            &[&ids],
        )? {
            stored.insert(r.try_get(0)?, Current::from_row(&r, 1)?);
        }
        // A site named again is planned against what the earlier one wrote,
        // read back from the server as a single write reads it (a feature
        // goes through `jsonb` there, which may round a number differently
        // from its text). A statement cannot touch one row twice, so its
        // earlier revision goes out first.
        let mut written: HashSet<&str> = HashSet::new();
        for site in sites {
            let id = site.id.as_str();
            if written.contains(id) {
                if self.pending_ids.contains(id) {
                    self.flush()?;
                }
                match self.w.current(&site.id)? {
                    Some(c) => stored.insert(id.to_owned(), c),
                    None => stored.remove(id),
                };
            }
            if self.stage(site, stored.get(id))? {
                written.insert(id);
            }
        }
        self.flush()
    }

    /// Plans one site over its stored state; whether it is written.
    fn stage(&mut self, site: &Site, current: Option<&Current>) -> Result<bool, StoreError> {
        let planned = plan(site, current)?;
        tally(&mut self.report, site, planned.as_ref().map(|p| p.0));
        let Some((change, diff)) = planned else {
            return Ok(false);
        };
        let previous = current.map(|c| c.revision);
        let revision = previous.map_or(1, |r| r + 1);
        let diff = diff_json(&site.id, change, &diff)?;
        let id = site.id.as_str().to_owned();
        let lonlat = site.footprint.lonlat_bounds();
        self.w
            .log
            .push((change.log_kind(), id.clone(), revision, lonlat));
        self.pending_ids.insert(id.clone());
        self.pending.push(Staged {
            id,
            revision,
            previous,
            change,
            feature: site.feature_text(),
            diff,
            footprint: Geography::of_footprint(&site.footprint),
            bounds: index_box(lonlat),
            packed: packed::encode(site),
        });
        Ok(true)
    }

    /// Writes the pending revisions and empties the staging table.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let tx = &mut self.w.tx;
        let sink = tx.copy_in(COPY)?;
        let mut writer = BinaryCopyInWriter::new(sink, &self.stmts.copy_types);
        let mut updates = false;
        for (n, s) in (0i64..).zip(&self.pending) {
            updates |= s.previous.is_some();
            let row: [&(dyn ToSql + Sync); 10] = [
                &n,
                &s.id,
                &s.revision,
                &s.previous,
                &s.change.as_str(),
                &JsonbText(&s.feature),
                &JsonbText(&s.diff),
                &s.footprint,
                &s.bounds,
                &s.packed,
            ];
            writer.write(&row)?;
        }
        writer.finish()?;
        let at = to_pg(self.w.at);
        let s = &self.stmts;
        if updates {
            tx.execute(&s.close_previous, &[&at])?;
        }
        tx.execute(&s.insert_sites, &[&at])?;
        if updates {
            tx.execute(&s.update_sites, &[&at])?;
        }
        tx.execute(&s.insert_revisions, &[&at, &self.by.actor, &self.by.reason])?;
        tx.batch_execute("TRUNCATE site_stage")?;
        self.pending.clear();
        self.pending_ids.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IdPolicy, SiteId};
    use crate::store::postgres::PgStore;
    use crate::store::postgres::pg_cluster::Cluster;
    use crate::store::{Abandoned, ChangeLogReads, SiteReads, SiteWrites, SqliteStore};
    use serde_json::{Value, json};

    fn by(actor: &str) -> Provenance {
        Provenance {
            actor: actor.into(),
            reason: Some(format!("{actor} says so")),
        }
    }

    fn square(id: &str, status: &str, lon: f64) -> Site {
        let ring = [
            [lon, 10.0],
            [lon + 0.1, 10.0],
            [lon + 0.1, 10.1],
            [lon, 10.1],
            [lon, 10.0],
        ];
        let f = json!({"type": "Feature", "id": id,
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"name": format!("Site {id}"), "country": "PRK", "kind": "reactor",
                "status": status, "sources": [{"title": "A report", "url": "https://example.org/r", "date": "2024-05-01"}]}});
        Site::from_feature(&f, IdPolicy::Required).unwrap()
    }

    /// Everything a write leaves behind that the two stores share: the
    /// revisions (times as the order of the writes that recorded them), the
    /// change log (likewise), and the live and retired sites.
    fn state(s: &(impl SiteReads + ChangeLogReads), ids: &[&str]) -> Value {
        let mut revisions: Vec<Value> = Vec::new();
        for id in ids {
            for r in s.revisions(&self::id(id)).unwrap() {
                revisions.push(serde_json::to_value(&r).unwrap());
            }
        }
        let log: Vec<Value> = s
            .log_after(0, 10_000)
            .unwrap()
            .into_iter()
            .map(|e| json!([e.at, e.kind.as_str(), e.site_id, e.revision, e.bbox]))
            .collect();
        let mut log = log;
        rank(revisions.iter_mut().map(|r| &mut r["recorded_at"]));
        rank(log.iter_mut().map(|e| &mut e[0]));
        let features = |sites: Vec<std::sync::Arc<Site>>| -> Vec<String> {
            sites.iter().map(|s| s.feature_text()).collect()
        };
        json!({
            "revisions": revisions,
            "log": log,
            "live": features(s.live_sites().unwrap()),
            "retired": features(s.retired_sites().unwrap()),
        })
    }

    /// Each time replaced by its place among the distinct times.
    fn rank<'v>(times: impl Iterator<Item = &'v mut Value>) {
        let mut times: Vec<&mut Value> = times.collect();
        let mut distinct: Vec<String> = times.iter().map(|t| t.to_string()).collect();
        distinct.sort();
        distinct.dedup();
        for t in &mut times {
            let at = distinct.iter().position(|d| *d == t.to_string());
            **t = json!(at);
        }
    }

    fn both(
        pg: &mut PgStore,
        lite: &mut SqliteStore,
        what: &str,
        f: impl Fn(&mut dyn SiteWrites) -> ApplyReport,
    ) {
        let (a, b) = (f(lite), f(pg));
        assert_eq!(b, a, "{what}: PostgreSQL (left) and SQLite (right) differ");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }

    fn chunks(cs: Vec<Vec<Site>>) -> impl Fn(&mut dyn SiteWrites) -> ApplyReport {
        move |s| {
            let mut it = cs.clone().into_iter().map(Ok::<_, Abandoned>);
            s.apply_site_chunks(&mut it, &by("import")).unwrap()
        }
    }

    fn id(s: &str) -> SiteId {
        SiteId::parse("id", s).unwrap()
    }

    #[test]
    fn a_bulk_write_records_what_writing_one_site_at_a_time_records() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let mut pg = PgStore::connect(&cluster.url()).unwrap();
        let mut lite = SqliteStore::open_in_memory().unwrap();
        // Created then updated, then named again unchanged, in one chunk.
        both(
            &mut pg,
            &mut lite,
            "a first import",
            chunks(vec![
                vec![
                    square("a", "active", 1.0),
                    square("b", "active", 2.0),
                    square("c", "active", 3.0),
                    square("a", "inactive", 1.0),
                    square("a", "inactive", 1.0),
                ],
                vec![square("b", "active", 2.0), square("c", "active", 3.5)],
            ]),
        );
        for s in [&mut lite as &mut dyn SiteWrites, &mut pg] {
            s.retire_site(&id("c"), &by("editor")).unwrap();
        }
        // A restoration then an update of the restored site, sites named
        // again after another's flush, and an unchanged one.
        both(
            &mut pg,
            &mut lite,
            "a second import",
            chunks(vec![vec![
                square("c", "active", 3.5),
                square("c", "inactive", 3.5),
                square("b", "abandoned", 2.0),
                square("a", "active", 1.0),
                square("b", "abandoned", 2.0),
                square("a", "inactive", 1.2),
                square("b", "active", 2.2),
                square("d", "active", 4.0),
                square("d", "active", 4.0),
            ]]),
        );
        // Enough for `apply_sites` to go this way, and the same again.
        let many = crate::synth::sites(WORTH_IT + 7, 3);
        both(&mut pg, &mut lite, "many sites", |s| {
            s.apply_sites(&many, &by("import")).unwrap()
        });
        both(&mut pg, &mut lite, "the same again", |s| {
            s.apply_sites(&many, &by("import")).unwrap()
        });

        let mut ids = vec!["a", "b", "c", "d"];
        ids.extend(many.iter().map(|s| s.id.as_str()));
        assert_eq!(state(&pg, &ids), state(&lite, &ids));
        // A revision is valid until the next one is recorded, and a site's
        // row is its latest revision.
        let wrong: i64 = pg
            .client()
            .query_one(
                "SELECT count(*) FROM site_revisions r
                 LEFT JOIN site_revisions n ON n.site_id = r.site_id AND n.revision = r.revision + 1
                 JOIN sites s ON s.id = r.site_id
                 JOIN site_revisions f ON f.site_id = s.id AND f.revision = 1
                 WHERE r.valid_until IS DISTINCT FROM n.recorded_at
                    OR (n.site_id IS NULL AND (s.revision <> r.revision
                        OR s.feature <> r.feature OR s.retired <> (r.change = 'retired')
                        OR NOT ST_Equals(s.footprint::geometry, r.footprint::geometry)
                        OR s.updated_at <> r.recorded_at OR s.created_at <> f.recorded_at))",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(wrong, 0);
    }

    #[test]
    fn sites_are_read_from_their_packed_form_unless_another_program_changed_the_feature() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let mut pg = PgStore::connect(&cluster.url()).unwrap();
        let many = crate::synth::sites(WORTH_IT + 3, 5);
        pg.apply_sites(&many, &by("import")).unwrap();
        pg.apply_sites(&[square("one", "active", 1.0)], &by("editor"))
            .unwrap();
        let unpacked: i64 = pg
            .client()
            .query_one("SELECT count(*) FROM sites WHERE packed IS NULL", &[])
            .unwrap()
            .get(0);
        assert_eq!(unpacked, 0, "every writer leaves a packed form");
        let mut expected: Vec<Site> = many.clone();
        expected.push(square("one", "active", 1.0));
        expected.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let live: Vec<Site> = pg
            .live_sites()
            .unwrap()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        assert_eq!(live, expected);

        // Renamed in SQL, as a GIS user might: the packed form is cleared
        // and the new name is what a node reads.
        pg.client()
            .execute(
                "UPDATE sites SET feature = jsonb_set(feature, '{properties,name}', '\"Renamed\"')
                 WHERE id = 'one'",
                &[],
            )
            .unwrap();
        let live = pg.live_sites().unwrap();
        let one = live.iter().find(|s| s.id.as_str() == "one").unwrap();
        assert_eq!(one.name, "Renamed");
        let cleared: bool = pg
            .client()
            .query_one("SELECT packed IS NULL FROM sites WHERE id = 'one'", &[])
            .unwrap()
            .get(0);
        assert!(cleared);
    }
}
