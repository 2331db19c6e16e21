//! The one error type of the HTTP layer, rendered as RFC 9457 problem details.

use actix_web::http::StatusCode;
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
    /// The body is not in a media type the endpoint reads.
    UnsupportedMediaType {
        detail: String,
    },
    /// A well-formed body whose content cannot be accepted (e.g. invalid features).
    Unprocessable {
        detail: String,
        /// Extension members added to the problem document (RFC 9457 §3.2).
        extra: serde_json::Map<String, serde_json::Value>,
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

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
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
            | ApiError::UnsupportedMediaType { detail }
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
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
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
            | ApiError::UnsupportedMediaType { detail } => body["detail"] = json!(detail),
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
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            resp.insert_header(("Allow", allow.as_str()));
        }
        resp.content_type("application/problem+json").json(body)
    }
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
