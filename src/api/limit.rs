//! A cap on costly requests in flight. Reads that may walk, filter or render
//! much of the catalogue take a permit; the rest (health, documents, single
//! items) never wait. When every permit is taken a request waits a moment in
//! a short queue, and beyond that is answered 503 with `Retry-After`, so that
//! a crowd of costly requests cannot take the memory and the threads that
//! cheap ones need.

use super::error::ApiError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a costly request may wait for a permit before it is turned away.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The permits for costly requests, and how many wait for one.
#[derive(Debug, Clone)]
pub struct HeavyLimit {
    permits: Arc<Semaphore>,
    capacity: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

impl HeavyLimit {
    /// `capacity` costly requests at once, and up to `max_waiting` more queued.
    pub fn new(capacity: usize, max_waiting: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
        }
    }

    /// Twice the machine's cores in flight, eight times as many queued: the
    /// work is CPU-bound, so more at once only shares the cores thinner.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(2 * cores, 8 * cores)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn busy(&self) -> ApiError {
        ApiError::Busy {
            detail: format!(
                "the server is answering {} costly requests already; try again shortly",
                self.capacity
            ),
            retry_after_s: 1,
        }
    }
}

/// Whether a request may cost in proportion to much of the catalogue: lists,
/// searches, maps and histories. Single items, documents and health do not.
pub fn is_heavy(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "api", "collections", _, "items"]
            | ["", "api", "map", "sites" | "search"]
            | ["", "api", "changes"]
            | ["", "api", "sites", _, "history"]
            | ["", "api", "nearby" | "candidates" | "batches"]
    )
}

/// Middleware: takes a permit for a costly request, waiting at most
/// [`QUEUE_WAIT`] in a queue of bounded length, and holds it until the answer
/// is made.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limit = req.app_data::<web::Data<HeavyLimit>>().cloned();
    let Some(limit) = limit.filter(|_| is_heavy(req.method(), req.path())) else {
        return next.call(req).await;
    };
    let permit = match limit.permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            if limit.waiting.fetch_add(1, Ordering::SeqCst) >= limit.max_waiting {
                limit.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(limit.busy().into());
            }
            let waited =
                tokio::time::timeout(QUEUE_WAIT, limit.permits.clone().acquire_owned()).await;
            limit.waiting.fetch_sub(1, Ordering::SeqCst);
            match waited {
                Ok(Ok(p)) => p,
                _ => return Err(limit.busy().into()),
            }
        }
    };
    let answered = next.call(req).await;
    drop(permit);
    answered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_maps_and_histories_are_costly_and_single_items_and_health_are_not() {
        let get = Method::GET;
        for path in [
            "/api/collections/sites/items",
            "/api/collections/observations/items/",
            "/api/map/sites",
            "/api/map/search",
            "/api/changes",
            "/api/sites/yongbyon/history",
            "/api/nearby",
            "/api/candidates",
        ] {
            assert!(is_heavy(&get, path), "{path}");
        }
        for path in [
            "/healthz",
            "/api",
            "/api/collections",
            "/api/collections/sites",
            "/api/collections/sites/items/yongbyon",
            "/api/changes/log",
            "/api/map/config",
            "/api/map/timeline",
            "/api/openapi.json",
            "/",
        ] {
            assert!(!is_heavy(&get, path), "{path}");
        }
        assert!(!is_heavy(&Method::POST, "/api/collections/sites/items"));
    }

    #[actix_web::test]
    async fn a_costly_request_beyond_the_cap_is_turned_away_and_a_cheap_one_is_not() {
        use actix_web::{App, HttpResponse, test};
        use tokio::sync::Notify;
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let app = {
            let (release, entered) = (release.clone(), entered.clone());
            test::init_service(
                App::new()
                    .app_data(web::Data::new(HeavyLimit::new(1, 0)))
                    .wrap(actix_web::middleware::from_fn(gate))
                    .route(
                        "/api/nearby",
                        web::get().to(move || {
                            let (release, entered) = (release.clone(), entered.clone());
                            async move {
                                entered.notify_one();
                                release.notified().await;
                                HttpResponse::Ok().finish()
                            }
                        }),
                    )
                    .route("/healthz", web::get().to(HttpResponse::Ok)),
            )
            .await
        };
        let first = test::call_service(
            &app,
            test::TestRequest::get().uri("/api/nearby").to_request(),
        );
        let second = async {
            // The first holds the only permit once its handler has started.
            entered.notified().await;
            let busy = test::try_call_service(
                &app,
                test::TestRequest::get().uri("/api/nearby").to_request(),
            )
            .await
            .map(|r| r.status())
            .unwrap_or_else(|e| e.as_response_error().status_code());
            let health =
                test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request())
                    .await;
            release.notify_one();
            (busy, health.status())
        };
        let (first, (busy, health)) = tokio::join!(first, second);
        assert_eq!(busy, actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health, actix_web::http::StatusCode::OK);
        assert_eq!(first.status(), actix_web::http::StatusCode::OK);
        let again = test::call_service(
            &app,
            test::TestRequest::get().uri("/api/nearby").to_request(),
        );
        release.notify_one();
        assert_eq!(again.await.status(), actix_web::http::StatusCode::OK);
    }

    #[test]
    fn a_busy_answer_says_when_to_try_again() {
        use actix_web::ResponseError;
        let resp = HeavyLimit::new(3, 0).busy().error_response();
        assert_eq!(
            resp.status(),
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(resp.headers().get("Retry-After").unwrap(), "1");
    }
}
