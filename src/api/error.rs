//! The one error type of the HTTP layer, rendered as RFC 9457 problem details.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use std::fmt;

#[derive(Debug)]
pub enum ApiError {
    /// A query parameter or body field is wrong; `param` names it.
    BadRequest {
        param: String,
        detail: String,
    },
    NotFound {
        detail: String,
    },
    /// The resource exists but does not take this method; `allow` lists those it takes.
    MethodNotAllowed {
        detail: String,
        allow: String,
    },
    /// A write without the authority to make it.
    Unauthorized {
        detail: String,
    },
    /// The request conflicts with the current state (e.g. a site that already exists).
    Conflict {
        detail: String,
    },
    /// An edit named a version of the resource (`If-Match`) that is no longer
    /// current; nothing was changed.
    PreconditionFailed {
        detail: String,
    },
    /// The server requires edits to name the version they change (`If-Match`).
    PreconditionRequired {
        detail: String,
    },
    /// The body is not in a media type the endpoint reads.
    UnsupportedMediaType {
        detail: String,
    },
    /// The body is larger than the server accepts.
    PayloadTooLarge {
        detail: String,
    },
    /// A well-formed body whose content cannot be accepted (e.g. invalid features).
    Unprocessable {
        detail: String,
        /// Extension members added to the problem document (RFC 9457 §3.2).
        extra: serde_json::Map<String, serde_json::Value>,
    },
    /// The request ran past its deadline and was stopped.
    Timeout {
        detail: String,
    },
    /// The client sent its body too slowly.
    SlowBody {
        detail: String,
    },
    /// Too many costly requests are in flight; try again after `retry_after_s`.
    Busy {
        detail: String,
        retry_after_s: u64,
    },
    /// Something failed inside the server. The cause is logged, never sent.
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn bad(param: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            param: param.into(),
            detail: detail.into(),
        }
    }

    /// A failure inside the server; work stopped at its deadline (a statement
    /// interrupted, a loop that gave up) is a timeout instead.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        let late = e.chain().any(|c| {
            c.downcast_ref::<crate::store::StoreError>()
                .is_some_and(crate::store::StoreError::is_interrupted)
                || c.downcast_ref::<crate::deadline::Expired>().is_some()
        });
        if late {
            return Self::Timeout {
                detail: "the request did not finish within the server's time limit; narrow it (a smaller area, window or page) and try again".into(),
            };
        }
        Self::Internal(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::model::FieldError> for ApiError {
    fn from(e: crate::model::FieldError) -> Self {
        Self::BadRequest {
            detail: e.to_string(),
            param: e.field,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest { detail, .. }
            | ApiError::NotFound { detail }
            | ApiError::MethodNotAllowed { detail, .. }
            | ApiError::Unauthorized { detail }
            | ApiError::Conflict { detail }
            | ApiError::PreconditionFailed { detail }
            | ApiError::PreconditionRequired { detail }
            | ApiError::UnsupportedMediaType { detail }
            | ApiError::PayloadTooLarge { detail }
            | ApiError::Timeout { detail }
            | ApiError::Busy { detail, .. }
            | ApiError::SlowBody { detail }
            | ApiError::Unprocessable { detail, .. } => f.write_str(detail),
            ApiError::Internal(e) => write!(f, "internal error: {e:#}"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired { .. } => StatusCode::PRECONDITION_REQUIRED,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Timeout { .. } | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::SlowBody { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let title = status.canonical_reason().unwrap_or("Error");
        let mut body = json!({"type": "about:blank", "title": title, "status": status.as_u16()});
        match self {
            ApiError::BadRequest { param, detail } => {
                body["detail"] = json!(detail);
                body["parameter"] = json!(param);
            }
            ApiError::NotFound { detail }
            | ApiError::MethodNotAllowed { detail, .. }
            | ApiError::Unauthorized { detail }
            | ApiError::Conflict { detail }
            | ApiError::PreconditionFailed { detail }
            | ApiError::PreconditionRequired { detail }
            | ApiError::UnsupportedMediaType { detail }
            | ApiError::PayloadTooLarge { detail }
            | ApiError::Timeout { detail }
            | ApiError::Busy { detail, .. }
            | ApiError::SlowBody { detail } => body["detail"] = json!(detail),
            ApiError::Unprocessable { detail, extra } => {
                body["detail"] = json!(detail);
                for (k, v) in extra {
                    body[k] = v.clone();
                }
            }
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                body["detail"] =
                    json!("the server could not complete the request; the cause is in its log");
            }
        }
        let mut resp = HttpResponse::build(status);
        // Set here too, for an error that ends a request before the middleware
        // that adds it to every response sees one (a request past its deadline).
        resp.insert_header(("X-Content-Type-Options", "nosniff"));
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            resp.insert_header(("Allow", allow.as_str()));
        }
        if let ApiError::Busy { retry_after_s, .. } = self {
            resp.insert_header(("Retry-After", retry_after_s.to_string()));
        }
        resp.content_type(PROBLEM).json(body)
    }
}

const PROBLEM: &str = "application/problem+json";

/// Middleware: an error response that is not already a problem document (one
/// made by an actix extractor or middleware rather than from an [`ApiError`])
/// is rewritten as one with the same status and headers, so that clients meet
/// one error format whatever failed. Handlers and the middlewares inside this
/// one answer errors as responses, which is what it sees.
pub async fn problems_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM.as_bytes()));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return Ok(res.map_into_left_body());
    }
    let cause = res.response().error().map(ToString::to_string);
    let (http, old) = res.into_parts();
    let mut resp = as_problem(
        status,
        cause
            .as_deref()
            .unwrap_or(status.canonical_reason().unwrap_or("")),
    );
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            resp.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(http, resp).map_into_right_body())
}

/// A problem document for an error that did not come from an [`ApiError`]. A
/// 5xx cause is logged and not sent.
fn as_problem(status: StatusCode, cause: &str) -> HttpResponse {
    let detail = if status.is_server_error() {
        tracing::error!(error = cause, "request failed");
        "the server could not complete the request; the cause is in its log"
    } else {
        cause
    };
    let title = status.canonical_reason().unwrap_or("Error");
    HttpResponse::build(status).content_type(PROBLEM).json(
        json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn an_internal_error_tells_the_client_nothing_of_its_cause() {
        let e = ApiError::internal(anyhow::anyhow!("disk /var/secret/path is full"));
        let resp = e.error_response();
        assert_eq!(resp.status(), 500);
        let body = resp.into_body().try_into_bytes().unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }

    #[actix_web::test]
    async fn an_error_from_outside_the_api_becomes_a_problem_with_its_headers() {
        use actix_web::{App, test, web};
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(problems_only))
                .route(
                    "/plain",
                    web::get().to(|| async {
                        HttpResponse::PayloadTooLarge()
                            .insert_header(("Retry-After", "10"))
                            .body("too big")
                    }),
                )
                .route(
                    "/err",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(actix_web::error::ErrorInternalServerError(
                            "disk /var/secret/path is full",
                        ))
                    }),
                )
                .route("/ok", web::get().to(|| async { "fine" })),
        )
        .await;
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/plain").to_request()).await;
        assert_eq!(resp.status(), 413);
        assert_eq!(resp.headers().get("content-type").unwrap(), PROBLEM);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "10");
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/err").to_request()).await;
        assert_eq!(resp.status(), 500);
        let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        assert!(
            text.contains("\"status\":500") && !text.contains("secret"),
            "{text}"
        );
        let resp = test::call_service(&app, test::TestRequest::get().uri("/ok").to_request()).await;
        assert_eq!(test::read_body(resp).await, "fine");
    }

    #[test]
    fn a_wrong_method_says_which_methods_are_allowed() {
        let resp = ApiError::MethodNotAllowed {
            detail: "no".into(),
            allow: "GET, POST".into(),
        }
        .error_response();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers().get("allow").unwrap(), "GET, POST");
    }

    #[test]
    fn a_bad_parameter_names_the_parameter() {
        let resp = ApiError::bad("lat", "latitude 91 is outside [-90, 90]").error_response();
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        let text = String::from_utf8(resp.into_body().try_into_bytes().unwrap().to_vec()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["parameter"], "lat");
    }
}
