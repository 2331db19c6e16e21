//! The built-in seed catalogue and its later corrections. A new database is
//! seeded with the current seed; a database seeded by an earlier build gets
//! each correction as a revision with its reason, without losing the edits an
//! analyst made to a seed site since.

use super::CatalogueError;
use crate::import::parse_sites;
use crate::model::{IdPolicy, Site, SiteId};
use crate::store::{ApplyReport, Change, Provenance, StoreError, Writes};
use serde::Deserialize;
use std::collections::HashMap;

/// The seed catalogue, built into the binary so `serve` works from any folder.
pub const SEED_SITES: &str = include_str!("../../data/sites.geojson");
/// Publicly reported events at the seed sites, imported with them so that
/// history is not empty on first start.
pub const SEED_OBSERVATIONS: &str = include_str!("../../data/observations.geojson");
/// Why each seed site changed in the current seed version.
pub const SEED_CORRECTIONS: &str = include_str!("../../data/seed_corrections.json");

/// Set when a database is first opened: the time it was seeded, or a note
/// that it was opened without the seed.
pub(super) const SEEDED_KEY: &str = "seeded_at";
/// The seed version a database holds. Databases seeded before versions were
/// recorded hold version 1 and have no such key.
pub(super) const SEED_VERSION_KEY: &str = "seed_version";
/// Who the seed's revisions are recorded as.
const SEED_ACTOR: &str = "seed";

/// A seed catalogue: its sites and observations, and which version they are.
#[derive(Debug, Clone, Copy)]
pub struct Seed<'a> {
    pub sites: &'a str,
    pub observations: &'a str,
    /// Version 1 is what builds before versions were recorded seeded with; a
    /// database seeded with it records no version, as theirs did not.
    pub version: u32,
    /// Why sites differ from the previous version (`data/seed_corrections.json`).
    pub corrections: &'a str,
}

impl Seed<'static> {
    /// The seed built into this binary.
    pub const BUILT_IN: Seed<'static> = Seed {
        sites: SEED_SITES,
        observations: SEED_OBSERVATIONS,
        version: 2,
        corrections: SEED_CORRECTIONS,
    };
}

/// What bringing an older seeded database up to the current seed did.
#[derive(Debug, Clone, PartialEq)]
pub struct Corrected {
    pub from_version: u32,
    pub to_version: u32,
    pub report: ApplyReport,
    /// Sites where an analyst's edit was kept over a field the seed corrected.
    pub kept_edits: Vec<SiteId>,
}

#[derive(Deserialize)]
struct Corrections {
    audit: String,
    reasons: HashMap<String, String>,
}

/// Seeds an empty database; `None` if it was seeded (or opened unseeded)
/// before or already holds sites.
pub(super) fn seed_new(
    store: &mut dyn Writes,
    seed: &Seed,
) -> Result<Option<usize>, CatalogueError> {
    if store.meta(SEEDED_KEY)?.is_some() || store.site_count()? > 0 {
        return Ok(None);
    }
    let sites = parse_sites(seed.sites, IdPolicy::Required).map_err(CatalogueError::Seed)?;
    let by = Provenance {
        actor: SEED_ACTOR.into(),
        reason: Some("initial catalogue from data/sites.geojson".into()),
    };
    let report = if seed.version > 1 {
        // The version lands with the sites, so no crash can leave seed sites
        // that a later start would take for version 1's and correct again.
        let sites: Vec<_> = sites.into_iter().map(|s| (s, by.clone())).collect();
        store.apply_sites_marked(&sites, SEED_VERSION_KEY, &seed.version.to_string())?
    } else {
        store.apply_sites(&sites, &by)?
    };
    store.set_meta(SEEDED_KEY, &crate::model::Timestamp::now().to_rfc3339())?;
    Ok(Some(report.created.len()))
}

/// Brings a database seeded with an earlier version up to `seed`, in one
/// transaction that also records the new version; `None` when there is
/// nothing to do (a current, new or unseeded database).
pub(super) fn correct(
    store: &mut dyn Writes,
    seed: &Seed,
) -> Result<Option<Corrected>, CatalogueError> {
    let Some(from_version) = pending(&*store, seed)? else {
        return Ok(None);
    };
    let corrections: Corrections = serde_json::from_str(seed.corrections)
        .map_err(|e| CatalogueError::SeedCorrections(e.to_string()))?;
    let sites = parse_sites(seed.sites, IdPolicy::Required).map_err(CatalogueError::Seed)?;
    let mut writes = Vec::new();
    let mut kept_edits = Vec::new();
    for target in sites {
        let Some(write) = correction(&*store, target)? else {
            continue;
        };
        let reason = corrections
            .reasons
            .get(write.site.id.as_str())
            .map_or("position quality recorded", String::as_str);
        let mut why = format!(
            "seed correction {} ({}): {reason}",
            seed.version, corrections.audit
        );
        if !write.kept.is_empty() {
            why.push_str(&format!(
                "; the analyst's edit of {} is kept",
                write.kept.join(", ")
            ));
            kept_edits.push(write.site.id.clone());
        }
        let by = Provenance {
            actor: SEED_ACTOR.into(),
            reason: Some(why),
        };
        writes.push((write.site, by));
    }
    let report = store.apply_sites_marked(&writes, SEED_VERSION_KEY, &seed.version.to_string())?;
    Ok(Some(Corrected {
        from_version,
        to_version: seed.version,
        report,
        kept_edits,
    }))
}

/// The seed version of a database seeded with an earlier one than `seed`;
/// `None` for a current, new or unseeded database.
pub(super) fn pending(store: &dyn Writes, seed: &Seed) -> Result<Option<u32>, StoreError> {
    let seeded = store.meta(SEEDED_KEY)?;
    if seeded.is_none_or(|s| s.starts_with("never")) {
        return Ok(None);
    }
    let version = match store.meta(SEED_VERSION_KEY)? {
        None => 1,
        Some(v) => v.parse().map_err(|_| StoreError::Corrupt {
            id: SEED_VERSION_KEY.into(),
            reason: format!("the seed version {v:?} is not a number"),
        })?,
    };
    Ok((version < seed.version).then_some(version))
}

/// A corrected site to write, and the fields where an edit was kept.
struct Write {
    site: Site,
    kept: Vec<&'static str>,
}

/// What the seed's `target` makes of the stored site with its id: the target
/// itself for an id never stored; a merge for a live site the seed wrote
/// before; nothing for a retired site, or one the seed never wrote (an
/// analyst's site that happens to share the id).
fn correction(store: &dyn Writes, target: Site) -> Result<Option<Write>, StoreError> {
    let revisions = store.site_revisions_between(target.id.as_str(), None, None)?;
    let Some(latest) = revisions.iter().max_by_key(|r| r.revision) else {
        return Ok(Some(Write {
            site: target,
            kept: Vec::new(),
        }));
    };
    if latest.change == Change::Retired.as_str() {
        return Ok(None);
    }
    let Some(base) = revisions
        .iter()
        .filter(|r| r.actor == SEED_ACTOR)
        .max_by_key(|r| r.revision)
    else {
        return Ok(None);
    };
    let parse = |feature: &serde_json::Value| {
        Site::from_feature(feature, IdPolicy::Required).map_err(|e| StoreError::Corrupt {
            id: target.id.to_string(),
            reason: e.to_string(),
        })
    };
    let (base, current) = (parse(&base.feature)?, parse(&latest.feature)?);
    let (site, kept) = merge(&base, &current, target);
    Ok((site != current).then_some(Write { site, kept }))
}

/// A three-way merge of a seed site: each field the analyst left as the seed
/// last wrote it (`base`) takes the seed's new value; each field they edited
/// keeps their value. The footprint and its position quality go together: a
/// quality describes the seed's position, not one an analyst drew. Returns the
/// merged site and the fields where an edit was kept over a correction.
fn merge(base: &Site, current: &Site, target: Site) -> (Site, Vec<&'static str>) {
    let mut kept = Vec::new();
    let Site {
        id,
        name,
        alt_names,
        country,
        kind,
        declaration,
        status,
        confidence,
        position_quality,
        footprint,
        sources,
        notes,
    } = target;
    let (footprint, position_quality) = pick(
        "geometry",
        (&base.footprint, base.position_quality),
        (&current.footprint, current.position_quality),
        (&footprint, position_quality),
        &mut kept,
    );
    let site = Site {
        id,
        name: pick("name", &base.name, &current.name, &name, &mut kept).clone(),
        alt_names: pick(
            "alt_names",
            &base.alt_names,
            &current.alt_names,
            &alt_names,
            &mut kept,
        )
        .clone(),
        country: *pick(
            "country",
            &base.country,
            &current.country,
            &country,
            &mut kept,
        ),
        kind: *pick("kind", &base.kind, &current.kind, &kind, &mut kept),
        declaration: *pick(
            "declaration",
            &base.declaration,
            &current.declaration,
            &declaration,
            &mut kept,
        ),
        status: *pick("status", &base.status, &current.status, &status, &mut kept),
        confidence: *pick(
            "confidence",
            &base.confidence,
            &current.confidence,
            &confidence,
            &mut kept,
        ),
        position_quality,
        footprint: footprint.clone(),
        sources: pick(
            "sources",
            &base.sources,
            &current.sources,
            &sources,
            &mut kept,
        )
        .clone(),
        notes: pick("notes", &base.notes, &current.notes, &notes, &mut kept).clone(),
    };
    (site, kept)
}

/// The seed's value if the analyst left the field as the seed last wrote it,
/// else theirs (noting it when the seed changed the field too).
fn pick<T: PartialEq>(
    field: &'static str,
    base: T,
    current: T,
    target: T,
    kept: &mut Vec<&'static str>,
) -> T {
    if current == base {
        return target;
    }
    if target != base && target != current {
        kept.push(field);
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PositionQuality, Status};

    fn built_in() -> Vec<Site> {
        parse_sites(SEED_SITES, IdPolicy::Required).unwrap()
    }

    #[test]
    fn every_seed_site_says_how_sure_its_position_is() {
        for s in built_in() {
            assert_ne!(s.position_quality, PositionQuality::Unknown, "{}", s.id);
        }
    }

    #[test]
    fn every_seed_source_has_a_url_or_a_citation_naming_its_publisher() {
        for s in built_in() {
            for src in &s.sources {
                let cited = src.title.split_once(": ").is_some_and(|(by, what)| {
                    !by.trim().is_empty() && what.split_whitespace().count() >= 3
                });
                assert!(src.url.is_some() || cited, "{}: {:?}", s.id, src.title);
            }
        }
    }

    /// The audit's reference points (`tests/fixtures/sites/seed_audit_points.csv`).
    fn references() -> Vec<(String, [f64; 2], String)> {
        include_str!("../../tests/fixtures/sites/seed_audit_points.csv")
            .lines()
            .skip(1)
            .map(|line| {
                let mut f = line.splitn(4, ',');
                let mut next = || f.next().expect("four columns");
                let id = next().to_owned();
                let lat: f64 = next().parse().unwrap();
                let lon: f64 = next().parse().unwrap();
                (id, [lon, lat], next().to_owned())
            })
            .collect()
    }

    #[test]
    fn every_audit_reference_lies_within_2_km_of_its_sites_footprint_and_every_verified_site_has_one()
     {
        let sites: HashMap<String, Site> = built_in()
            .into_iter()
            .map(|s| (s.id.to_string(), s))
            .collect();
        let refs = references();
        assert!(refs.len() >= 30);
        for (id, point, source) in &refs {
            let site = sites
                .get(id)
                .unwrap_or_else(|| panic!("{id} is not a seed site"));
            let d = site.footprint.shape().distance_m(*point);
            assert!(
                d <= 2_000.0,
                "{id}: {source} is {d:.0} m from the footprint"
            );
        }
        for s in sites.values() {
            if s.position_quality == PositionQuality::Verified {
                assert!(
                    refs.iter().any(|(id, ..)| id == s.id.as_str()),
                    "{} is verified without a reference point",
                    s.id
                );
            }
        }
    }

    #[test]
    fn the_positions_the_audit_found_outside_are_now_inside_their_footprints() {
        let sites: HashMap<String, Site> = built_in()
            .into_iter()
            .map(|s| (s.id.to_string(), s))
            .collect();
        for (id, point) in [
            ("pyongsong", [125.882683, 39.316320]),
            ("sunan", [125.6700, 39.2239]),
            ("tonghae", [129.6658, 40.8557]),
        ] {
            assert_eq!(sites[id].footprint.shape().distance_m(point), 0.0, "{id}");
        }
    }

    #[test]
    fn every_correction_reason_names_a_seed_site() {
        let c: Corrections = serde_json::from_str(SEED_CORRECTIONS).unwrap();
        let ids: Vec<String> = built_in().iter().map(|s| s.id.to_string()).collect();
        for id in c.reasons.keys() {
            assert!(ids.contains(id), "{id}");
        }
    }

    fn site(status: &str, lon: f64) -> Site {
        let f = serde_json::json!({"type": "Feature", "id": "a",
            "geometry": {"type": "Polygon", "coordinates": [[[lon, 10.0], [lon + 0.01, 10.0], [lon, 10.01], [lon, 10.0]]]},
            "properties": {"name": "A", "country": "PRK", "kind": "other", "status": status}});
        Site::from_feature(&f, IdPolicy::Required).unwrap()
    }

    #[test]
    fn a_site_nobody_edited_takes_the_correction_whole() {
        let base = site("unknown", 10.0);
        let mut target = site("active", 10.5);
        target.position_quality = PositionQuality::Verified;
        let (merged, kept) = merge(&base, &base, target.clone());
        assert_eq!(merged, target);
        assert!(kept.is_empty());
    }

    #[test]
    fn an_edited_field_keeps_the_edit_and_the_fields_left_alone_are_corrected() {
        let base = site("unknown", 10.0);
        let edited = site("inactive", 10.0);
        let mut target = site("active", 10.5);
        target.position_quality = PositionQuality::SingleSource;
        let (merged, kept) = merge(&base, &edited, target.clone());
        assert_eq!(merged.status, Status::Inactive);
        assert_eq!(merged.footprint, target.footprint);
        assert_eq!(merged.position_quality, PositionQuality::SingleSource);
        assert_eq!(kept, ["status"]);
    }

    #[test]
    fn a_footprint_an_analyst_redrew_keeps_its_shape_and_gets_no_quality_it_was_not_given() {
        let base = site("unknown", 10.0);
        let redrawn = site("unknown", 10.2);
        let mut target = site("active", 10.5);
        target.position_quality = PositionQuality::Verified;
        let (merged, kept) = merge(&base, &redrawn, target);
        assert_eq!(merged.footprint, redrawn.footprint);
        assert_eq!(merged.position_quality, PositionQuality::Unknown);
        assert_eq!(merged.status, Status::Active);
        assert_eq!(kept, ["geometry"]);
    }
}
