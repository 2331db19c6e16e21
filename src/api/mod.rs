//! The HTTP API (actix-web): GeoJSON in and out, problem+json for errors. All of
//! actix lives under this module.

mod auth;
mod body;
mod cors;
mod csrf;
mod deadline;
mod edits;
mod error;
mod history;
mod host;
mod limit;
mod methods;
mod observations;
pub(crate) mod ogc;
mod openapi;
mod page;
pub(crate) mod params;
mod routes;

pub use auth::WriteAuth;
pub use body::BodyRate;
pub use cors::Cors;
pub use deadline::{DEFAULT_REQUEST_TIMEOUT, RequestTimeout};
pub use edits::EditRules;
pub use error::ApiError;
pub use host::{Hosts, HostsError};
pub use limit::HeavyLimit;
pub use page::{PageConfig, Tiles};

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
        .configure(history::configure)
        .configure(ogc::configure)
        .configure(openapi::configure)
        .configure(page::configure);
}

/// Serves the catalogue on an already bound listener until the process is told
/// to stop (SIGINT or SIGTERM finish in-flight requests first).
/// Largest request body accepted unless the server is told otherwise.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// How the server is run: who may write, what it accepts, and for how long.
pub struct ServeOptions {
    pub auth: WriteAuth,
    /// Largest request body in bytes.
    pub max_body: usize,
    pub page: PageConfig,
    pub cors: Cors,
    pub timeout: RequestTimeout,
    /// How many costly requests run at once.
    pub heavy: HeavyLimit,
    /// How slowly a client may send a body.
    pub body_rate: BodyRate,
    /// The names the server answers to and the proxies it believes.
    pub hosts: Hosts,
    /// How long an answer may sit unread in a connection before the
    /// connection is dropped; `None` waits for ever.
    pub write_timeout: Option<std::time::Duration>,
    /// What edits must say about the version they change.
    pub edits: EditRules,
}

/// How long a response may wait for a client that has stopped reading it.
pub const DEFAULT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub fn serve(
    catalogue: Arc<Catalogue>,
    listener: TcpListener,
    options: ServeOptions,
) -> std::io::Result<()> {
    let ServeOptions {
        auth,
        max_body,
        page,
        cors,
        timeout,
        heavy,
        hosts,
        body_rate,
        write_timeout,
        edits,
    } = options;
    {
        let (page, catalogue) = (page.clone(), catalogue.clone());
        std::thread::spawn(move || page.warm_up(&catalogue));
    }
    actix_web::rt::System::new().block_on(async move {
        let data = web::Data::new(catalogue);
        let auth = web::Data::new(auth);
        let page = web::Data::new(page);
        let timeout = web::Data::new(timeout);
        let heavy = web::Data::new(heavy);
        let hosts = web::Data::new(hosts);
        let edits = web::Data::new(edits);
        HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(auth.clone())
                .app_data(page.clone())
                .app_data(timeout.clone())
                .app_data(hosts.clone())
                .app_data(heavy.clone())
                .app_data(edits.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(body::MaxBody(max_body))
                .app_data(body_rate)
                .wrap(actix_web::middleware::from_fn(limit::gate))
                .wrap(actix_web::middleware::from_fn(deadline::enforce))
                .wrap(actix_web::middleware::from_fn(error::problems_only))
                .wrap(actix_web::middleware::from_fn(openapi::reject_undocumented))
                .wrap(actix_web::middleware::from_fn(methods::head_and_options))
                // Outside the rest so that a foreign host learns nothing else,
                // and a forged write is refused before anything reads it.
                .wrap(actix_web::middleware::from_fn(csrf::require_json_writes))
                .wrap(actix_web::middleware::from_fn(host::check))
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                .wrap(
                    actix_web::middleware::Logger::new("%a \"%r\" %s %Dms")
                        .log_target("sitewatch::http"),
                )
                .wrap(actix_web::middleware::Condition::new(
                    cors.enabled(),
                    cors.middleware(),
                ))
                .configure(configure)
                .default_service(web::to(routes::not_found))
        })
        .on_connect(move |conn, _| stall_limit(conn, write_timeout))
        .listen(listener)?
        .run()
        .await
    })
}

/// Has the kernel drop a connection whose client leaves sent data unread (a
/// closed receive window) or unacknowledged for longer than `timeout`. A
/// response that cannot be written is otherwise held, with what it has not
/// sent yet, for as long as the client keeps the connection open: a few
/// clients that ask for large pages and never read would pin memory at will.
fn stall_limit(conn: &dyn std::any::Any, timeout: Option<std::time::Duration>) {
    let (Some(timeout), Some(tcp)) = (
        timeout,
        conn.downcast_ref::<actix_web::rt::net::TcpStream>(),
    ) else {
        return;
    };
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout)) {
        tracing::warn!(error = %e, "could not limit how long a reply may wait for its client");
    }
}
