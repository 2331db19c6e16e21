//! The HTTP API (actix-web): GeoJSON in and out, problem+json for errors. All of
//! actix lives under this module.

mod auth;
mod edits;
mod error;
mod history;
mod observations;
mod params;
mod routes;

pub use auth::WriteAuth;
pub use error::ApiError;

use crate::catalogue::Catalogue;
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};
use std::net::TcpListener;
use std::sync::Arc;

/// Registers every route; shared by the server and the tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(routes::healthz))
        .route(
            "/api/collections/sites/items",
            web::get().to(routes::site_items),
        )
        .route(
            "/api/collections/sites/items/{id}",
            web::get().to(routes::site_item),
        )
        .route("/api/nearby", web::get().to(routes::nearby))
        .configure(edits::configure)
        .configure(observations::configure)
        .configure(history::configure);
}

/// Serves the catalogue on an already bound listener until the process is told
/// to stop (SIGINT or SIGTERM finish in-flight requests first).
/// Largest request body accepted unless the server is told otherwise.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

pub fn serve(
    catalogue: Arc<Catalogue>,
    auth: WriteAuth,
    max_body: usize,
    listener: TcpListener,
) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let data = web::Data::new(catalogue);
        let auth = web::Data::new(auth);
        HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(auth.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                .wrap(
                    actix_web::middleware::Logger::new("%a \"%r\" %s %Dms")
                        .log_target("sitewatch::http"),
                )
                .configure(configure)
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?
        .run()
        .await
    })
}
