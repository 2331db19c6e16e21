//! CQL2 filters (OGC API - Features Part 3): the expression a filter becomes
//! (`expr`), reading and checking it against a collection's queryables
//! (`parse`), evaluating it on a record (`eval`), and the spatial predicates it
//! may call (`spatial`), measured with the project's own geodesy (so
//! `S_DWITHIN` is in metres on the WGS84 ellipsoid).

mod eval;
mod expr;
mod guard;
mod parse;
mod pushdown;
mod spatial;

pub use eval::{Record, like};
pub use expr::{Bound, Cmp, Expr, Interval, Operand, Scalar, Shape, TemporalOp, TimeOperand};
pub use guard::{
    GuardError, MAX_JSON_NESTING, MAX_PARSE_WORK, MAX_TERMS, MAX_TEXT_NESTING, TextCost, check_text,
};
pub use parse::{MAX_DWITHIN_METRES, MAX_FILTER_VERTICES, parse};
pub use pushdown::{SpatialNeed, narrowed_filter, required_place, required_text, sites_for};
pub use spatial::{Geom, distance, geom_meets_bbox, intersects, within};

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CqlError {
    #[error("the filter is not valid {lang}: {reason}")]
    Syntax { lang: &'static str, reason: String },
    #[error("unknown property {name:?}; the queryables are {known}")]
    UnknownProperty { name: String, known: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not supported")]
    Unsupported(String),
}

fn invalid(msg: impl Into<String>) -> CqlError {
    CqlError::Invalid(msg.into())
}

/// The language a filter is written in (`filter-lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Text,
    Json,
}

impl Lang {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            // The earlier names, still sent by clients of the draft era
            // (GDAL and QGIS among them), name the same languages.
            "cql2-text" | "cql-text" => Some(Lang::Text),
            "cql2-json" | "cql-json" => Some(Lang::Json),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lang::Text => "CQL2 text",
            Lang::Json => "CQL2 JSON",
        }
    }
}

#[cfg(test)]
mod testing {
    //! A small collection of properties and a record to evaluate filters on.

    use super::*;
    use crate::model::{Place, Timestamp};
    use crate::query::properties::{Kind, Property};
    use serde_json::json;

    pub const Q: &[Property] = &[
        Property::new("name", Kind::String, ""),
        Property::new("count", Kind::Integer, ""),
        Property::new("seen", Kind::Timestamp, ""),
        Property::new("geometry", Kind::Geometry, ""),
    ];

    pub struct Thing {
        pub name: Option<&'static str>,
        pub count: f64,
        pub seen: Option<&'static str>,
        pub place: Place,
    }

    impl Record for Thing {
        fn property(&self, name: &str) -> Scalar {
            match name {
                "name" => self
                    .name
                    .map_or(Scalar::Null, |n| Scalar::Str(n.to_owned())),
                "count" => Scalar::Num(self.count),
                "seen" => self.seen.map_or(Scalar::Null, |t| {
                    Scalar::Time(Timestamp::parse("t", t).unwrap())
                }),
                _ => Scalar::Null,
            }
        }
        fn geometry(&self) -> Option<Geom<'_>> {
            Some((&self.place).into())
        }
    }

    pub fn thing(name: Option<&'static str>, lon: f64, lat: f64) -> Thing {
        Thing {
            name,
            count: 3.0,
            seen: Some("2018-05-24T02:00:00Z"),
            place: Place::parse("g", &json!({"type": "Point", "coordinates": [lon, lat]})).unwrap(),
        }
    }

    pub fn text(f: &str) -> Expr {
        parse(f, Lang::Text, Q).unwrap_or_else(|e| panic!("{f}: {e}"))
    }

    pub fn yes(f: &str, t: &Thing) -> bool {
        text(f).matches(t)
    }
}
