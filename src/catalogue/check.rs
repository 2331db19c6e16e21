//! `sitewatch check`: the store's own checks, plus agreement between the store
//! and the index a server would build from it.

use crate::index::{Filter, SiteIndex};
use crate::model::Site;
use crate::store::{CheckError, Inspection, Problem, inspect};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// What checking a database found.
#[derive(Debug)]
pub struct CheckReport {
    pub inspection: Inspection,
    /// Sites the index built from the store holds.
    pub indexed: usize,
}

impl CheckReport {
    pub fn problems(&self) -> &[Problem] {
        &self.inspection.problems
    }

    pub fn is_clean(&self) -> bool {
        self.inspection.problems.is_empty()
    }

    /// A few lines for a person: the counts, then each problem.
    pub fn summary(&self) -> String {
        let i = &self.inspection;
        let mut out = format!(
            "schema version {}; {} sites ({} live, {} indexed), {} revisions, {} batches, {} observations\n",
            i.schema_version,
            i.sites,
            i.live_sites.len(),
            self.indexed,
            i.revisions,
            i.batches,
            i.observations
        );
        if i.problems.is_empty() {
            out.push_str("ok: no problems found\n");
        } else {
            out.push_str(&format!("{} problem(s):\n", i.problems.len()));
            for p in &i.problems {
                out.push_str(&format!("- {p}\n"));
            }
        }
        out
    }
}

/// Checks the database at `path` without changing it. `Err` only when it
/// cannot be opened; everything wrong inside it is in the report.
pub fn check_database(path: &Path) -> Result<CheckReport, CheckError> {
    let mut inspection = inspect(path)?;
    let live = std::mem::take(&mut inspection.live_sites);
    let index = SiteIndex::build(live.iter().cloned().map(Arc::new));
    inspection.problems.extend(index_problems(&index, &live));
    let indexed = index.len();
    inspection.live_sites = live;
    Ok(CheckReport {
        inspection,
        indexed,
    })
}

/// The index must hold exactly the live sites, each as stored, and find each
/// one by its own footprint (so the R-tree's boxes cover what they index).
fn index_problems(index: &SiteIndex, live: &[Site]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut say = |id: &str, reason: &str| {
        problems.push(Problem::Site {
            id: id.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let stored: BTreeSet<&str> = live.iter().map(|s| s.id.as_str()).collect();
    let all = Filter::default();
    let indexed: BTreeSet<&str> = index.all(&all).map(|s| s.id.as_str()).collect();
    for id in stored.difference(&indexed) {
        say(id, "live in the store but missing from the index");
    }
    for id in indexed.difference(&stored) {
        say(id, "in the index but not live in the store");
    }
    for site in live {
        match index.get(&site.id) {
            Some(s) if **s == *site => {}
            Some(_) => say(site.id.as_str(), "the index holds a different version"),
            None => continue,
        }
        let found = index
            .intersects(site.footprint.shape(), &all)
            .iter()
            .any(|s| s.id == site.id);
        if !found {
            say(
                site.id.as_str(),
                "the index does not find it by its footprint",
            );
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newly_seeded_catalogue_checks_clean_and_indexes_every_live_site() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let (cat, opened) = super::super::Catalogue::open(&path).unwrap();
        drop(cat);
        let report = check_database(&path).unwrap();
        assert!(report.is_clean(), "{}", report.summary());
        assert_eq!(report.indexed, opened.live_sites);
        assert!(report.inspection.observations > 0);
    }

    #[test]
    fn an_index_missing_a_live_site_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(super::super::Catalogue::open(&path).unwrap());
        let live = inspect(&path).unwrap().live_sites;
        let short = SiteIndex::build(live.iter().skip(1).cloned().map(Arc::new));
        let problems = index_problems(&short, &live);
        assert_eq!(
            problems,
            vec![Problem::Site {
                id: live[0].id.to_string(),
                reason: "live in the store but missing from the index".into()
            }]
        );
    }
}
