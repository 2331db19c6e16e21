//! End-to-end tests: the real `sitewatch` binary, a fresh temp database each, and
//! HTTP over loopback.

#[path = "../support/pg_cluster.rs"]
mod pg_cluster;

mod backup;
mod cli;
mod clients;
mod crash;
mod deadlines;
mod edits;
mod helpers;
mod hostile;
mod observations;
mod ogc;
mod proximity;
mod seed;
mod sites;
mod soak;
