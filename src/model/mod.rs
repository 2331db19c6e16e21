//! The domain: sites, their footprints and the small types that keep ids, metres,
//! times and positions from being mixed up. Raw GeoJSON becomes a [`Site`] here and
//! nowhere else.

mod error;
mod footprint;
mod site;
mod values;

pub use error::FieldError;
pub use footprint::Footprint;
pub use site::{
    Confidence, Declaration, FieldChange, IdPolicy, Site, SiteKind, Source, Status, diff_sites,
};
pub use values::{BBox, CountryCode, LonLat, Meters, SiteId, Timestamp};
