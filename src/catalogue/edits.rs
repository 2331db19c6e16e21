//! Site edits through the catalogue: create, replace, retire, and reading the
//! catalogue as it was recorded at an earlier moment.

use super::Catalogue;
use crate::index::SiteIndex;
use crate::model::patch::merge_patch;
use crate::model::{FieldError, IdPolicy, Site, SiteId, Timestamp};
use crate::store::{Conditional, Provenance, Revision, StoreError};
use serde_json::Value;
use std::sync::Arc;

/// Why an edit was not made. Nothing is stored when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("invalid site: {0}")]
    Invalid(#[from] FieldError),
    #[error("a site with id {0} already exists")]
    Exists(SiteId),
    #[error("no live site with id {0}")]
    NotFound(SiteId),
    /// The site has changed since the version the edit was made to.
    #[error("site {0} has changed since the version this edit names")]
    Stale(SiteId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Catalogue {
    /// Adds a site from a GeoJSON Feature; one without an id gets a generated
    /// one. A retired site with the same id is restored with the new content.
    pub fn create_site(&self, feature: &Value, by: &Provenance) -> Result<Arc<Site>, EditError> {
        let site = Site::from_feature(feature, IdPolicy::Generate)?;
        let mut store = self.store();
        if store.create_site(&site, by)?.is_none() {
            return Err(EditError::Exists(site.id));
        }
        let site = Arc::new(site);
        self.publish(vec![(site.id.clone(), Some(site.clone()))]);
        Ok(site)
    }

    /// Replaces a live site with a GeoJSON Feature. The feature may leave out
    /// the id; if it gives one, it must be `id`. A feature identical to the
    /// stored site records no revision.
    pub fn replace_site(
        &self,
        id: &SiteId,
        feature: &Value,
        by: &Provenance,
    ) -> Result<Arc<Site>, EditError> {
        self.replace_site_if(id, feature, by, None)
    }

    /// [`Catalogue::replace_site`], made only if the stored site is at one of
    /// the versions `tags` names ([`Site::tag`]); `None` takes any.
    pub fn replace_site_if(
        &self,
        id: &SiteId,
        feature: &Value,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Arc<Site>, EditError> {
        let site = replacement(id, feature)?;
        let mut store = self.store();
        written(store.replace_site_if(&site, by, tags)?, &site.id)?;
        let site = Arc::new(site);
        self.publish(vec![(site.id.clone(), Some(site.clone()))]);
        Ok(site)
    }

    /// Changes the members of a live site that a JSON Merge Patch (RFC 7396)
    /// names, applied to the site's Feature, and keeps the rest: a client
    /// that sends only what it changed cannot clear what it never read. With
    /// `tags`, only if the stored site is at one of those versions.
    pub fn patch_site(
        &self,
        id: &SiteId,
        patch: &Value,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Arc<Site>, EditError> {
        if !patch.is_object() {
            return Err(EditError::Invalid(FieldError::new(
                "body",
                "a merge patch of a site is a JSON object naming the members to change",
            )));
        }
        // Under the writer's lock the index holds every committed write, so
        // the version patched is the stored one; the write checks it again.
        let mut store = self.store();
        let current = self
            .index()
            .get(id)
            .cloned()
            .ok_or_else(|| EditError::NotFound(id.clone()))?;
        let read = [current.tag()];
        if tags.is_some_and(|tags| !tags.contains(&read[0])) {
            return Err(EditError::Stale(id.clone()));
        }
        let mut feature = current.to_feature();
        merge_patch(&mut feature, patch);
        let site = replacement(id, &feature)?;
        written(store.replace_site_if(&site, by, Some(&read))?, &site.id)?;
        let site = Arc::new(site);
        self.publish(vec![(site.id.clone(), Some(site.clone()))]);
        Ok(site)
    }

    /// Retires a live site: it leaves every query but its record and history
    /// stay, and creating it again restores it.
    pub fn retire_site(&self, id: &SiteId, by: &Provenance) -> Result<Revision, EditError> {
        self.retire_site_if(id, by, None)
    }

    /// [`Catalogue::retire_site`], made only if the stored site is at one of
    /// the versions `tags` names.
    pub fn retire_site_if(
        &self,
        id: &SiteId,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Revision, EditError> {
        let mut store = self.store();
        let revision = written(store.retire_site_if(id, by, tags)?, id)?;
        self.publish(vec![(id.clone(), None)]);
        Ok(revision)
    }

    /// The live sites as recorded at `t`, indexed so that every query works on
    /// them. Built on each call: with `area` (lon/lat rectangles, `west <=
    /// east`), from the revisions whose boxes meet it, found by index; without,
    /// from every site.
    pub fn sites_as_of(
        &self,
        t: Timestamp,
        area: Option<&[[f64; 4]]>,
    ) -> Result<SiteIndex, StoreError> {
        let sites = match area {
            Some(rects) => self.reader()?.sites_in_area_at(Some(t), false, rects)?,
            None => self.reader()?.sites_as_of(t)?,
        };
        Ok(SiteIndex::build(sites))
    }

    /// A page of the sites (live, or retired if `retired`) as recorded at `t`
    /// (now if `None`), in id order after `after`, at most `limit`: read from
    /// the cursor on, so that paging through the past costs the page.
    pub fn sites_at_page(
        &self,
        t: Option<Timestamp>,
        retired: bool,
        after: Option<&SiteId>,
        limit: usize,
    ) -> Result<Vec<Arc<Site>>, StoreError> {
        self.reader()?.sites_at_from(t, retired, after, limit)
    }

    /// The live sites as recorded at `t` whose id is after `after`, in id
    /// order, read a page at a time as the caller goes on: taking ten costs
    /// ten, not the catalogue. A failed read ends the run and is left in
    /// `failed`.
    pub fn sites_at_from<'a>(
        &'a self,
        t: Timestamp,
        after: Option<SiteId>,
        failed: &'a std::cell::Cell<Option<StoreError>>,
    ) -> impl Iterator<Item = Arc<Site>> + 'a {
        let mut cursor = after;
        let mut chunk = 16;
        let mut pending = std::collections::VecDeque::new();
        let mut done = false;
        std::iter::from_fn(move || {
            if pending.is_empty() && !done {
                match self.sites_at_page(Some(t), false, cursor.as_ref(), chunk) {
                    Ok(page) => {
                        done = page.len() < chunk;
                        cursor = page.last().map(|s| s.id.clone()).or(cursor.take());
                        pending.extend(page);
                        // Larger reads once the caller shows it wants more.
                        chunk = (chunk * 4).min(1024);
                    }
                    Err(e) => {
                        failed.set(Some(e));
                        done = true;
                    }
                }
            }
            pending.pop_front()
        })
    }

    /// One site as recorded at `t`; `None` if it did not exist or was retired then.
    pub fn site_as_of(&self, id: &SiteId, t: Timestamp) -> Result<Option<Arc<Site>>, StoreError> {
        Ok(self.reader()?.site_as_of(id, t)?.map(Arc::new))
    }

    /// The sites retired now, or at `at`, as they were when retired, indexed so
    /// that every query works on them. Built on each call, from the area only
    /// when one is given (see [`Catalogue::sites_as_of`]).
    pub fn retired_sites(
        &self,
        at: Option<Timestamp>,
        area: Option<&[[f64; 4]]>,
    ) -> Result<SiteIndex, StoreError> {
        let sites = match (area, at) {
            (Some(rects), at) => self.reader()?.sites_in_area_at(at, true, rects)?,
            (None, None) => self.reader()?.retired_sites()?,
            (None, Some(t)) => self.reader()?.retired_sites_as_of(t)?,
        };
        Ok(SiteIndex::build(sites))
    }

    /// One site retired now, or at `at`; `None` if it was live or unknown.
    pub fn retired_site(
        &self,
        id: &SiteId,
        at: Option<Timestamp>,
    ) -> Result<Option<Arc<Site>>, StoreError> {
        let site = match at {
            None => self.reader()?.retired_site(id)?,
            Some(t) => self.reader()?.retired_site_as_of(id, t)?,
        };
        Ok(site.map(Arc::new))
    }
}

/// The site a replacement Feature describes. The feature may leave out the
/// id (the path names the site); if it gives one, it must be `id`.
fn replacement(id: &SiteId, feature: &Value) -> Result<Site, EditError> {
    let named_in = ["/id", "/properties/id"]
        .into_iter()
        .find(|p| feature.pointer(p).is_some_and(|v| !v.is_null()));
    let mut site = Site::from_feature(feature, IdPolicy::Generate)?;
    match named_in {
        // The generated id is discarded: the path names the site.
        None => site.id = id.clone(),
        Some(pointer) if site.id != *id => {
            let field = pointer.trim_start_matches('/').replace('/', ".");
            return Err(EditError::Invalid(FieldError::new(
                field,
                format!("{} differs from the id in the path, {id}", site.id),
            )));
        }
        Some(_) => {}
    }
    Ok(site)
}

/// The revision a conditional write of site `id` made, or why it made none.
fn written(outcome: Conditional, id: &SiteId) -> Result<Revision, EditError> {
    match outcome {
        Conditional::Written(revision) => Ok(revision),
        Conditional::NotFound => Err(EditError::NotFound(id.clone())),
        Conditional::Stale => Err(EditError::Stale(id.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Filter;
    use crate::store::{Change, SqliteStore};
    use serde_json::json;

    fn catalogue() -> Catalogue {
        Catalogue::from_store(SqliteStore::open_in_memory().unwrap())
            .unwrap()
            .0
    }

    fn by() -> Provenance {
        Provenance {
            actor: "test".into(),
            reason: Some("unit test".into()),
        }
    }

    fn feature(id: Option<&str>, status: &str) -> Value {
        let mut f = json!({"type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[10.0, 10.0], [10.1, 10.0], [10.1, 10.1], [10.0, 10.0]]]},
            "properties": {"name": "Test site", "country": "ZZZ", "kind": "research", "status": status}});
        if let Some(id) = id {
            f["id"] = json!(id);
        }
        f
    }

    fn id(raw: &str) -> SiteId {
        SiteId::parse("id", raw).unwrap()
    }

    #[test]
    fn a_created_site_gets_a_generated_id_and_is_in_the_index_after_the_commit() {
        let cat = catalogue();
        let before = cat.index().len();
        let site = cat.create_site(&feature(None, "active"), &by()).unwrap();
        assert!(site.id.as_str().starts_with("site-"));
        assert_eq!(cat.index().len(), before + 1);
        assert_eq!(cat.index().get(&site.id), Some(&site));
        assert_eq!(
            cat.revisions(&site.id).unwrap()[0].reason.as_deref(),
            Some("unit test")
        );
    }

    #[test]
    fn creating_a_live_id_is_refused_as_existing_and_changes_nothing() {
        let cat = catalogue();
        cat.create_site(&feature(Some("t"), "active"), &by())
            .unwrap();
        let e = cat
            .create_site(&feature(Some("t"), "inactive"), &by())
            .unwrap_err();
        assert!(
            matches!(e, EditError::Exists(ref i) if i.as_str() == "t"),
            "{e}"
        );
        assert_eq!(cat.index().get(&id("t")).unwrap().status.as_str(), "active");
    }

    #[test]
    fn an_invalid_feature_names_its_field_and_changes_nothing() {
        let cat = catalogue();
        let before = cat.index().len();
        let mut bad = feature(Some("t"), "active");
        bad["properties"]["kind"] = json!("volcano");
        let Err(EditError::Invalid(e)) = cat.create_site(&bad, &by()) else {
            panic!("accepted");
        };
        assert_eq!(e.field, "properties.kind");
        assert_eq!(cat.index().len(), before);
        assert!(cat.revisions(&id("t")).unwrap().is_empty());
    }

    #[test]
    fn a_replacement_may_leave_out_the_id_but_may_not_name_another() {
        let cat = catalogue();
        cat.create_site(&feature(Some("t"), "active"), &by())
            .unwrap();
        let site = cat
            .replace_site(&id("t"), &feature(None, "inactive"), &by())
            .unwrap();
        assert_eq!((site.id.as_str(), site.status.as_str()), ("t", "inactive"));
        assert_eq!(cat.index().get(&id("t")), Some(&site));
        let Err(EditError::Invalid(e)) =
            cat.replace_site(&id("t"), &feature(Some("other"), "active"), &by())
        else {
            panic!("accepted");
        };
        assert_eq!(e.field, "id");
        let mut in_props = feature(None, "active");
        in_props["properties"]["id"] = json!("other");
        let Err(EditError::Invalid(e)) = cat.replace_site(&id("t"), &in_props, &by()) else {
            panic!("accepted");
        };
        assert_eq!(e.field, "properties.id");
        assert_eq!(
            cat.index().get(&id("t")).unwrap().status.as_str(),
            "inactive"
        );
    }

    #[test]
    fn replacing_or_retiring_a_site_that_is_not_live_is_not_found() {
        let cat = catalogue();
        assert!(matches!(
            cat.replace_site(&id("t"), &feature(None, "active"), &by()),
            Err(EditError::NotFound(_))
        ));
        assert!(matches!(
            cat.retire_site(&id("t"), &by()),
            Err(EditError::NotFound(_))
        ));
        cat.create_site(&feature(Some("t"), "active"), &by())
            .unwrap();
        cat.retire_site(&id("t"), &by()).unwrap();
        assert!(matches!(
            cat.retire_site(&id("t"), &by()),
            Err(EditError::NotFound(_))
        ));
        assert!(matches!(
            cat.replace_site(&id("t"), &feature(None, "active"), &by()),
            Err(EditError::NotFound(_))
        ));
    }

    #[test]
    fn a_retired_site_leaves_the_index_but_stays_readable_as_retired_and_as_of_before() {
        let cat = catalogue();
        cat.create_site(&feature(Some("t"), "active"), &by())
            .unwrap();
        let before = cat.index().len();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let live_then = Timestamp::now();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let r = cat.retire_site(&id("t"), &by()).unwrap();
        assert_eq!(r.change, Change::Retired);
        assert_eq!(cat.index().len(), before - 1);
        assert!(cat.index().get(&id("t")).is_none());

        let retired = cat.retired_sites(None, None).unwrap();
        assert_eq!(retired.all(&Filter::default()).count(), 1);
        // Read by area from the revisions' boxes: found where it is, not elsewhere.
        let here: &[[f64; 4]] = &[[9.9, 9.9, 10.05, 10.05]];
        let elsewhere: &[[f64; 4]] = &[[20.0, 20.0, 21.0, 21.0]];
        assert!(
            cat.retired_sites(None, Some(here))
                .unwrap()
                .get(&id("t"))
                .is_some()
        );
        assert!(cat.retired_sites(None, Some(elsewhere)).unwrap().is_empty());
        assert!(cat.retired_site(&id("t"), None).unwrap().is_some());
        assert!(
            cat.retired_site(&id("t"), Some(live_then))
                .unwrap()
                .is_none()
        );
        assert!(
            cat.retired_sites(Some(Timestamp::now()), None)
                .unwrap()
                .get(&id("t"))
                .is_some()
        );

        let then = cat.sites_as_of(live_then, None).unwrap();
        assert_eq!(then.len(), before);
        assert!(then.get(&id("t")).is_some());
        let in_area = cat.sites_as_of(live_then, Some(here)).unwrap();
        assert!(in_area.get(&id("t")).is_some());
        assert!(
            cat.sites_as_of(live_then, Some(elsewhere))
                .unwrap()
                .is_empty()
        );
        assert!(
            cat.sites_as_of(Timestamp::now(), Some(here))
                .unwrap()
                .get(&id("t"))
                .is_none()
        );
        assert!(
            cat.retired_sites(Some(live_then), Some(here))
                .unwrap()
                .get(&id("t"))
                .is_none()
        );
        assert!(cat.site_as_of(&id("t"), live_then).unwrap().is_some());
        assert!(
            cat.site_as_of(&id("t"), Timestamp::now())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_patch_changes_the_members_it_names_and_keeps_the_sources_it_leaves_out() {
        let cat = catalogue();
        let mut f = feature(Some("t"), "active");
        f["properties"]["sources"] = json!([{"title": "one"}, {"title": "two"}]);
        cat.create_site(&f, &by()).unwrap();
        let site = cat
            .patch_site(
                &id("t"),
                &json!({"properties": {"name": "Renamed"}}),
                &by(),
                None,
            )
            .unwrap();
        assert_eq!(site.name, "Renamed");
        assert_eq!(site.sources.len(), 2);
        assert_eq!(cat.index().get(&id("t")).unwrap().name, "Renamed");
    }

    #[test]
    fn an_edit_naming_a_version_that_is_no_longer_current_is_stale_and_changes_nothing() {
        let cat = catalogue();
        let first = cat
            .create_site(&feature(Some("t"), "active"), &by())
            .unwrap();
        let old = vec![first.tag()];
        let renamed = cat
            .patch_site(
                &id("t"),
                &json!({"properties": {"name": "B"}}),
                &by(),
                Some(&old),
            )
            .unwrap();
        assert_ne!(renamed.tag(), first.tag());
        for result in [
            cat.replace_site_if(&id("t"), &feature(None, "inactive"), &by(), Some(&old)),
            cat.patch_site(
                &id("t"),
                &json!({"properties": {"name": "C"}}),
                &by(),
                Some(&old),
            ),
        ] {
            assert!(matches!(result, Err(EditError::Stale(_))), "{result:?}");
        }
        assert!(matches!(
            cat.retire_site_if(&id("t"), &by(), Some(&old)),
            Err(EditError::Stale(_))
        ));
        let now = cat.index().get(&id("t")).cloned().unwrap();
        assert_eq!((now.name.as_str(), now.status.as_str()), ("B", "active"));
        let current = vec![now.tag()];
        cat.retire_site_if(&id("t"), &by(), Some(&current)).unwrap();
        assert!(cat.index().get(&id("t")).is_none());
    }

    #[test]
    fn a_patch_that_is_not_an_object_or_makes_an_invalid_site_is_refused() {
        let cat = catalogue();
        cat.create_site(&feature(Some("t"), "active"), &by())
            .unwrap();
        let Err(EditError::Invalid(e)) = cat.patch_site(&id("t"), &json!([1]), &by(), None) else {
            panic!("accepted");
        };
        assert_eq!(e.field, "body");
        let Err(EditError::Invalid(e)) = cat.patch_site(
            &id("t"),
            &json!({"properties": {"kind": "volcano"}}),
            &by(),
            None,
        ) else {
            panic!("accepted");
        };
        assert_eq!(e.field, "properties.kind");
    }
}
