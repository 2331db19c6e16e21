//! Writes to the site catalogue: create, replace and retire sites.

use actix_web::web;

/// Registers the site-edit routes.
pub fn configure(_cfg: &mut web::ServiceConfig) {}
