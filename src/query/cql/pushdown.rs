//! What of a filter an index can answer: text that a property must contain,
//! or a place the geometry must meet, for the filter to hold, so that an index
//! can narrow the records before the whole filter is evaluated on each. Every
//! answer here is necessary, never sufficient: the caller still evaluates the
//! filter on what is left.

use super::{Expr, Operand, Scalar, Shape};
use crate::geodesy::{max_distance_for_angle, to_lonlat};
use crate::index::{Filter, SiteIndex};
use crate::model::{
    CountryCode, Declaration, FieldError, LonLat, Meters, Place, PositionQuality, Site, SiteKind,
    Status,
};
use std::sync::Arc;

/// A spatial conjunct of a filter: the geometry must meet the shape, or come
/// within so many metres of it.
#[derive(Debug, Clone, Copy)]
pub enum SpatialNeed<'e> {
    Meets(&'e Shape),
    Within(&'e Shape, f64),
}

/// The spatial test a record's geometry must pass for `expr` to hold, taken
/// from a conjunct: `S_INTERSECTS` before `S_DWITHIN` (it narrows more), and
/// of two `S_DWITHIN`, the shorter. `None` when the filter needs none.
pub fn required_place(expr: &Expr) -> Option<SpatialNeed<'_>> {
    match expr {
        Expr::Intersects(shape) => Some(SpatialNeed::Meets(shape)),
        Expr::DWithin(shape, d) => Some(SpatialNeed::Within(shape, *d)),
        Expr::And(parts) => parts
            .iter()
            .filter_map(required_place)
            .min_by(|a, b| match (a, b) {
                (SpatialNeed::Meets(_), _) => std::cmp::Ordering::Less,
                (_, SpatialNeed::Meets(_)) => std::cmp::Ordering::Greater,
                (SpatialNeed::Within(_, x), SpatialNeed::Within(_, y)) => x.total_cmp(y),
            }),
        _ => None,
    }
}

/// Slack added to the radii asked of the index, so that rounding in its
/// distances never leaves out a site the filter's own test would keep.
fn slack(metres: f64) -> f64 {
    1.0 + metres * 1e-6
}

/// Every live site of `index` whose footprint may pass `need`, in id order
/// (a superset: the filter decides). The tree is asked once per place of the
/// shape, so this costs the places and the sites near them, not the catalogue.
pub fn sites_for(index: &SiteIndex, need: SpatialNeed<'_>) -> Vec<Arc<Site>> {
    let any = Filter::default();
    let near = |point: LonLat, metres: f64| -> Vec<Arc<Site>> {
        index
            .nearby(point, Meters::from_computed(metres), &any, usize::MAX)
            .into_iter()
            .map(|h| h.site)
            .collect()
    };
    let (shape, within) = match need {
        SpatialNeed::Meets(shape) => (shape, None),
        SpatialNeed::Within(shape, d) => (shape, Some(d)),
    };
    let mut found: Vec<Arc<Site>> = match shape {
        // S_DWITHIN refuses a BBOX.
        Shape::BBox(b) => index.bbox(b, &any),
        Shape::Places(places) => places
            .iter()
            .flat_map(|place| match (place, within) {
                (Place::Point(p), None) => near(*p, slack(0.0)),
                (Place::Point(p), Some(d)) => near(*p, d + slack(d)),
                (Place::Area(f), None) => index.intersects(f.shape(), &any),
                (Place::Area(f), Some(d)) => {
                    // Everything within d of the area is within d of some point
                    // of it, and so within d plus the cap's radius of its centre.
                    let shape = f.shape();
                    let [lon, lat] = to_lonlat(shape.centre());
                    let reach = max_distance_for_angle(shape.radius()) + d;
                    match LonLat::parse("centre", lon, lat) {
                        Ok(centre) => near(centre, reach + slack(reach)),
                        Err(_) => index.all(&any).cloned().collect(),
                    }
                }
            })
            .collect(),
    };
    found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    found.dedup_by(|a, b| a.id == b.id);
    found
}

/// Lowercase text that `property` must contain, in any case, for `expr` to
/// hold: the longest literal run of a `LIKE` pattern on it, taken from a
/// conjunct. `None` when the filter needs no such text.
pub fn required_text(expr: &Expr, property: &str) -> Option<String> {
    match expr {
        Expr::Like(a, b) => match (a.unwrapped(), b.unwrapped()) {
            (Operand::Property(name, _), Operand::Literal(Scalar::Str(pattern)))
                if name == property =>
            {
                longest_literal(pattern)
            }
            _ => None,
        },
        Expr::Compare(super::Cmp::Eq, a, b) => match (a.unwrapped(), b.unwrapped()) {
            (Operand::Property(name, _), Operand::Literal(Scalar::Str(text)))
            | (Operand::Literal(Scalar::Str(text)), Operand::Property(name, _))
                if name == property =>
            {
                folded_ascii(text)
            }
            _ => None,
        },
        // Any conjunct's text will do; the longest narrows most.
        Expr::And(parts) => parts
            .iter()
            .filter_map(|p| required_text(p, property))
            .max_by_key(String::len),
        _ => None,
    }
}

/// `filter` narrowed by what `expr` requires of the enumerated properties
/// (`declaration`, `kind`, `status`, `country`, `position_quality`): from
/// conjuncts `p = 'v'` and `p IN ('v', ...)`. The index tests these on each
/// site for a small part of what evaluating the filter costs, so a walk
/// that the filter would reject site by site passes over them instead.
pub fn narrowed_filter(expr: &Expr, mut filter: Filter) -> Filter {
    narrow_by(expr, &mut filter);
    filter
}

fn narrow_by(expr: &Expr, filter: &mut Filter) {
    let (name, values): (&str, Vec<&str>) = match expr {
        Expr::And(parts) => {
            for part in parts {
                narrow_by(part, filter);
            }
            return;
        }
        Expr::Compare(
            super::Cmp::Eq,
            Operand::Property(name, _),
            Operand::Literal(Scalar::Str(v)),
        )
        | Expr::Compare(
            super::Cmp::Eq,
            Operand::Literal(Scalar::Str(v)),
            Operand::Property(name, _),
        ) => (name, vec![v.as_str()]),
        Expr::In(Operand::Property(name, _), list) => {
            let Some(values) = list
                .iter()
                .map(|o| match o {
                    Operand::Literal(Scalar::Str(v)) => Some(v.as_str()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
            else {
                return;
            };
            (name, values)
        }
        _ => return,
    };
    // A value no site can have is left out: no site then passes by it.
    fn allowed<T>(
        name: &str,
        values: &[&str],
        parse: impl Fn(&str, &str) -> Result<T, FieldError>,
    ) -> Vec<T> {
        values.iter().filter_map(|v| parse(name, v).ok()).collect()
    }
    match name {
        "declaration" => narrow(
            &mut filter.declaration,
            allowed(name, &values, Declaration::parse),
        ),
        "kind" => narrow(&mut filter.kind, allowed(name, &values, SiteKind::parse)),
        "status" => narrow(&mut filter.status, allowed(name, &values, Status::parse)),
        "country" => narrow(
            &mut filter.country,
            allowed(name, &values, CountryCode::parse),
        ),
        "position_quality" => narrow(
            &mut filter.position_quality,
            allowed(name, &values, PositionQuality::parse),
        ),
        _ => {}
    }
}

/// Restricts `have` (empty: any value) to `allowed` as well. Where the two
/// share no value, or nothing is allowed, `have` is kept as it is: an empty
/// list would mean any value, and the filter's own evaluation refuses every
/// site anyway.
fn narrow<T: PartialEq>(have: &mut Vec<T>, allowed: Vec<T>) {
    if allowed.is_empty() {
        return;
    }
    if have.is_empty() {
        *have = allowed;
        return;
    }
    let both: Vec<T> = allowed.into_iter().filter(|v| have.contains(v)).collect();
    if !both.is_empty() {
        *have = both;
    }
}

/// The longest run of a LIKE pattern with no wildcard in it, lowercased.
fn longest_literal(pattern: &str) -> Option<String> {
    let mut runs = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => runs.push(String::new()),
            '\\' => runs
                .last_mut()
                .unwrap_or_else(|| unreachable!())
                .push(chars.next().unwrap_or('\\')),
            c => runs.last_mut().unwrap_or_else(|| unreachable!()).push(c),
        }
    }
    runs.into_iter()
        .filter_map(|r| folded_ascii(&r))
        .max_by_key(String::len)
}

/// The text lowercased, if it is ASCII and not empty. Lowercasing other
/// scripts can depend on the letters around (a final sigma), so a substring
/// lowercased alone may not be a substring of the name lowercased whole.
fn folded_ascii(text: &str) -> Option<String> {
    (!text.is_empty() && text.is_ascii()).then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::cql::{Lang, parse};
    use crate::query::properties::CollectionId;

    fn needed(filter: &str) -> Option<String> {
        let expr = parse(filter, Lang::Text, CollectionId::Sites.properties()).unwrap();
        required_text(&expr, "name")
    }

    #[test]
    fn a_like_on_the_name_needs_its_longest_literal_run() {
        assert_eq!(needed("name LIKE '%Yongb%yon%'"), Some("yongb".into()));
        assert_eq!(needed("name LIKE 'Pung_ye-ri'"), Some("ye-ri".into()));
        assert_eq!(needed("name LIKE '50\\%%'"), Some("50%".into()));
        assert_eq!(
            needed("CASEI(name) LIKE CASEI('%SOHAE%')"),
            Some("sohae".into())
        );
        assert_eq!(needed("name = 'Sohae'"), Some("sohae".into()));
    }

    fn narrowed(filter: &str) -> Filter {
        let expr = parse(filter, Lang::Text, CollectionId::Sites.properties()).unwrap();
        narrowed_filter(&expr, Filter::default())
    }

    #[test]
    fn equalities_and_lists_of_enumerated_properties_narrow_the_index_filter() {
        let f = narrowed(
            "declaration = 'undeclared' AND kind IN ('reactor', 'enrichment', 'no-such-kind') \
             AND 'active' = status AND position_quality = 'verified'",
        );
        assert_eq!(f.declaration, [Declaration::Undeclared]);
        assert_eq!(f.kind, [SiteKind::Reactor, SiteKind::Enrichment]);
        assert_eq!(f.status, [Status::Active]);
        assert_eq!(f.position_quality, [PositionQuality::Verified]);
        for loose in [
            "declaration = 'undeclared' OR kind = 'reactor'",
            "NOT declaration = 'undeclared'",
            "declaration <> 'undeclared'",
            "CASEI(declaration) = CASEI('UNDECLARED')",
            "declaration = 'no-such-declaration'",
        ] {
            assert_eq!(narrowed(loose), Filter::default(), "{loose}");
        }
    }

    #[test]
    fn every_site_a_filter_accepts_passes_its_narrowed_index_filter() {
        let sites = crate::import::parse_sites(
            crate::catalogue::SEED_SITES,
            crate::model::IdPolicy::Required,
        )
        .unwrap();
        let asked = Filter {
            country: vec![CountryCode::parse("c", "PRK").unwrap()],
            ..Filter::default()
        };
        for (text, some) in [
            ("declaration = 'declared' AND status = 'active'", true),
            (
                "kind IN ('launch_site', 'missile_base') AND declaration = 'undeclared'",
                true,
            ),
            (
                "position_quality IN ('verified', 'single_source') AND name LIKE '%a%'",
                true,
            ),
            ("country = 'PRK' AND kind = 'reactor'", true),
            (
                "declaration = 'declared' AND declaration = 'undeclared'",
                false,
            ),
        ] {
            let expr = parse(text, Lang::Text, CollectionId::Sites.properties()).unwrap();
            let narrowed = narrowed_filter(&expr, asked.clone());
            let mut accepted = 0;
            for site in &sites {
                let record = crate::query::SiteRecord {
                    site: Arc::new(site.clone()),
                    stats: None,
                    retired: false,
                };
                if expr.matches(&record) && asked.matches(site) {
                    accepted += 1;
                    assert!(narrowed.matches(site), "{text}: {}", site.id);
                }
            }
            assert_eq!(accepted > 0, some, "{text}");
        }
    }

    #[test]
    fn only_a_conjunct_needs_text() {
        assert_eq!(
            needed("kind = 'reactor' AND name LIKE '%yong%'"),
            Some("yong".into())
        );
        assert_eq!(needed("kind = 'reactor' OR name LIKE '%yong%'"), None);
        assert_eq!(needed("NOT name LIKE '%yong%'"), None);
        assert_eq!(needed("name LIKE '%'"), None);
        assert_eq!(needed("country LIKE '%PRK%'"), None);
    }

    #[test]
    fn text_beyond_ascii_is_left_to_the_filter() {
        assert_eq!(needed("name LIKE '%ΟΣ%'"), None);
    }
}
