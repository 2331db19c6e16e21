//! sitewatch: a catalogue of nuclear and missile sites with geodesic proximity
//! queries, change history and an HTTP API.
//!
//! Dependencies point one way: [`model`] <- [`index`], [`store`], [`query`],
//! [`import`] <- [`catalogue`] <- [`api`] <- the binary. [`query`] (CQL2, item
//! selection, each collection's properties) sits beside the index and the store
//! and knows no web framework. [`geodesy`] is plain mathematics beneath them all.

pub mod api;
pub mod catalogue;
pub mod deadline;
pub mod geodesy;
pub mod import;
pub mod index;
pub mod loadgen;
pub mod model;
pub mod query;
pub mod render;
pub mod store;
pub mod synth;

#[doc(hidden)]
pub mod fuzzing;
