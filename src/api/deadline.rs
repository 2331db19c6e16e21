//! Request deadlines over HTTP: every request gets one, the handler's blocking
//! work runs with it in force (see [`crate::deadline`]), and a request still
//! working when it passes is answered 503 problem+json.

use super::error::ApiError;
use crate::catalogue::Catalogue;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a request may take by default, from arrival to answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an observation batch may take to upload and import at least: a
/// batch of millions of features streams for minutes, and is all or nothing
/// whatever its deadline, so it gets an hour where reads get seconds.
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The time a request may take, as the server was told.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the request being handled on this task, if any.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Middleware: answers 503 for a request that has not finished by its
/// deadline. Dropping the handler drops its future; work it left on a blocking
/// thread stops at the next deadline check, its statement interrupted. The
/// answer is an error, rendered as problem+json, because the request itself
/// went with the dropped handler.
pub async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut timeout = req
        .app_data::<web::Data<RequestTimeout>>()
        .map_or(DEFAULT_REQUEST_TIMEOUT, |t| t.0);
    if req.method() == actix_web::http::Method::POST && req.path() == "/api/observations" {
        timeout = timeout.max(IMPORT_TIMEOUT);
    }
    let deadline = Instant::now() + timeout;
    let (method, path) = (req.method().clone(), req.path().to_owned());
    match tokio::time::timeout_at(deadline.into(), DEADLINE.scope(deadline, next.call(req))).await {
        Ok(answered) => answered,
        Err(_) => {
            tracing::warn!(
                %method,
                %path,
                timeout_ms = timeout.as_millis() as u64,
                "request stopped at its deadline"
            );
            Err(timed_out(timeout).into())
        }
    }
}

/// The error for a request that ran out of time.
pub fn timed_out(timeout: Duration) -> ApiError {
    ApiError::Timeout {
        detail: format!(
            "the request did not finish within the server's limit of {} ms; narrow it (a smaller area, window or page) and try again",
            timeout.as_millis()
        ),
    }
}

/// Runs catalogue work (SQLite, large scans) off the async workers, with the
/// request's deadline in force on the thread that does it. The one way the
/// handlers reach blocking work.
pub async fn blocking<T, E>(
    cat: &Arc<Catalogue>,
    work: impl FnOnce(&Catalogue) -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let deadline = current();
    let cat = cat.clone();
    web::block(move || crate::deadline::run_until(deadline, || work(&cat)))
        .await
        .map_err(ApiError::internal)?
        .map_err(Into::into)
}
