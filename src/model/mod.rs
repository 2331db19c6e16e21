//! The domain: sites, their footprints and the small types that keep ids, metres,
//! times and positions from being mixed up. Raw GeoJSON becomes a [`Site`] here and
//! nowhere else.

/// Declares a closed set of snake_case values with one parser and one spelling.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    _ => Err(FieldError::new(field, format!(
                        "unknown value {raw:?}; expected one of {}",
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod error;
mod footprint;
pub mod json;
mod observation;
pub mod patch;
mod record;
mod site;
mod values;

pub use error::FieldError;
pub use footprint::{Footprint, MAX_FOOTPRINT_VERTICES, bounds_of, geojson_bounds, geojson_parts};
pub use observation::{Finding, Observation, Place};
pub use record::{
    BatchStats, Candidate, CandidateState, ClusterCell, LinkHow, ObservationStats, SiteLink,
    SiteStats, StoredObservation,
};
pub use site::{
    Confidence, Declaration, FieldChange, IdPolicy, PositionQuality, Site, SiteKind, Source,
    Status, creation_diff, diff_sites,
};
pub use values::{BBox, CountryCode, LonLat, Meters, SiteId, Timestamp, new_id};
