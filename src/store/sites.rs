//! Sites and their revisions: the current state of each site and every version
//! ever recorded.

use super::{ApplyReport, Change, Provenance, Revision, Store, StoreError};
use crate::model::{FieldChange, IdPolicy, Site, SiteId, Timestamp, diff_sites};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

pub(super) fn parse_stored(id: &str, feature: &str) -> Result<Site, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.to_owned(),
        reason,
    };
    let v: Value = serde_json::from_str(feature).map_err(|e| corrupt(e.to_string()))?;
    Site::from_feature(&v, IdPolicy::Required).map_err(|e| corrupt(e.to_string()))
}

impl Store {
    /// Every site that is not retired, in id order.
    pub fn live_sites(&self) -> Result<Vec<Site>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, feature FROM sites WHERE retired = 0 ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (id, feature) = row?;
            parse_stored(&id, &feature)
        })
        .collect()
    }

    /// Creates or updates each site in one transaction: a site that differs from
    /// its stored state gets a new revision with the field-level diff, an
    /// identical one is left alone. Either every site is applied or none is.
    pub fn apply_sites(
        &mut self,
        sites: &[Site],
        by: &Provenance,
    ) -> Result<ApplyReport, StoreError> {
        let now = Timestamp::now().to_rfc3339();
        let tx = self.conn.transaction()?;
        let mut report = ApplyReport::default();
        for site in sites {
            let current: Option<(i64, bool, String)> = tx
                .query_row(
                    "SELECT revision, retired, feature FROM sites WHERE id = ?1",
                    [site.id.as_str()],
                    |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0, r.get(2)?)),
                )
                .optional()?;
            let old = current
                .as_ref()
                .map(|(_, _, f)| parse_stored(site.id.as_str(), f))
                .transpose()?;
            let diff = diff_sites(old.as_ref(), site);
            let retired = current.as_ref().is_some_and(|c| c.1);
            let change = match (&current, retired) {
                (None, _) => Change::Created,
                (Some(_), true) => Change::Restored,
                (Some(_), false) if diff.is_empty() => {
                    report.unchanged += 1;
                    continue;
                }
                (Some(_), false) => Change::Updated,
            };
            let revision = current.as_ref().map_or(1, |c| c.0 + 1);
            let feature = site.to_feature().to_string();
            let diff_json = serde_json::to_string(&diff).map_err(|e| StoreError::Corrupt {
                id: site.id.to_string(),
                reason: e.to_string(),
            })?;
            if current.is_none() {
                tx.execute(
                    "INSERT INTO sites (id, revision, retired, feature, created_at, updated_at) VALUES (?1, ?2, 0, ?3, ?4, ?4)",
                    params![site.id.as_str(), revision, feature, now],
                )?;
            } else {
                tx.execute(
                    "UPDATE sites SET revision = ?2, retired = 0, feature = ?3, updated_at = ?4 WHERE id = ?1",
                    params![site.id.as_str(), revision, feature, now],
                )?;
            }
            tx.execute(
                "INSERT INTO site_revisions (site_id, revision, recorded_at, actor, reason, change, feature, diff)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![site.id.as_str(), revision, now, by.actor, by.reason, change.as_str(), feature, diff_json],
            )?;
            match change {
                Change::Created => report.created.push(site.id.clone()),
                _ => report.updated.push(site.id.clone()),
            }
        }
        tx.commit()?;
        Ok(report)
    }

    /// Every revision of a site, oldest first.
    pub fn revisions(&self, id: &SiteId) -> Result<Vec<Revision>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT revision, recorded_at, actor, reason, change, diff FROM site_revisions WHERE site_id = ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map([id.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (revision, at, actor, reason, change, diff) = row?;
            let corrupt = |reason: String| StoreError::Corrupt {
                id: id.to_string(),
                reason,
            };
            Ok(Revision {
                site_id: id.clone(),
                revision,
                recorded_at: Timestamp::parse("recorded_at", &at)
                    .map_err(|e| corrupt(e.to_string()))?,
                actor,
                reason,
                change: Change::parse(&change)
                    .ok_or_else(|| corrupt(format!("unknown change {change:?}")))?,
                diff: serde_json::from_str::<Vec<Value>>(&diff)
                    .map_err(|e| corrupt(e.to_string()))?
                    .into_iter()
                    .map(|c| FieldChange {
                        field: c["field"].as_str().unwrap_or_default().to_owned(),
                        old: c["old"].clone(),
                        new: c["new"].clone(),
                    })
                    .collect(),
            })
        })
        .collect()
    }

    /// How many sites exist, retired ones included.
    pub fn site_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM sites", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
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
        let mut s = Store::open_in_memory().unwrap();
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
        let mut s = Store::open_in_memory().unwrap();
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
    fn a_site_file_database_reopens_with_its_sites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        Store::open(&path)
            .unwrap()
            .apply_sites(&[site("a", "active")], &by())
            .unwrap();
        let again = Store::open(&path).unwrap();
        assert_eq!(again.live_sites().unwrap().len(), 1);
        let mode: String = again
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
