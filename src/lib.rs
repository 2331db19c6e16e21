//! sitewatch: a catalogue of nuclear and missile sites with geodesic proximity
//! queries, change history and an HTTP API.
//!
//! Dependencies point one way: [`model`] <- [`index`], [`store`] <- [`catalogue`]
//! <- [`api`] <- the binary.

pub mod geodesy;
pub mod index;
pub mod model;
