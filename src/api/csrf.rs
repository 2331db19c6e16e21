//! Writes a page on another site cannot make a browser send. A form, or a
//! `fetch` that skips the CORS preflight, can only declare a form or text
//! content type; requiring a JSON one on every write, bodiless ones included,
//! leaves such a page nothing to send.

use super::error::ApiError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;

/// The content types a write may declare.
pub const WRITE_TYPES: [&str; 3] = [
    "application/json",
    "application/geo+json",
    "application/merge-patch+json",
];

/// Whether `method` is one the API writes with.
fn is_write(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// Whether a write to `req` could reach a handler. A path no resource takes,
/// or a method the document does not list for a resource it describes, is
/// answered 404 or 405 by the router (`routes::not_found`), which is the more
/// useful answer; a resource the document does not describe is checked.
fn reaches_a_handler(req: &ServiceRequest) -> bool {
    let Some(pattern) = req.match_pattern() else {
        return false;
    };
    let documented = super::openapi::methods_at(&pattern);
    documented.is_empty() || documented.iter().any(|m| m == req.method().as_str())
}

/// `Ok` if the declared `Content-Type` is one a write may carry; otherwise the
/// 415 that says so.
fn check_content_type(given: Option<&[u8]>) -> Result<(), ApiError> {
    let given = given.map(String::from_utf8_lossy).unwrap_or_default();
    let essence = given.split(';').next().unwrap_or("").trim();
    if WRITE_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        return Ok(());
    }
    let said = if given.is_empty() {
        "none".to_string()
    } else {
        format!("{given:?}")
    };
    Err(ApiError::UnsupportedMediaType {
        detail: format!(
            "a write must declare the Content-Type header as {}; a write with nothing to send sends {{}} as application/json (this request declared {said})",
            WRITE_TYPES.join(", ")
        ),
    })
}

/// Middleware: refuses a write that does not declare a JSON content type with
/// 415, before any handler reads its body or authorises it.
pub async fn require_json_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if is_write(req.method()) && reaches_a_handler(&req) {
        let given = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes());
        if let Err(e) = check_content_type(given) {
            return Ok(req.error_response(e).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_types_with_parameters_are_accepted_and_form_types_are_not() {
        for ok in [
            "application/json",
            "application/geo+json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(check_content_type(Some(ok.as_bytes())).is_ok(), "{ok}");
        }
        for refused in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/plain; a=application/json",
            "application/jsonx",
            "",
        ] {
            assert!(
                check_content_type(Some(refused.as_bytes())).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_missing_content_type_is_refused_naming_the_header() {
        let e = check_content_type(None).unwrap_err();
        assert!(e.to_string().contains("Content-Type"), "{e}");
    }

    #[test]
    fn only_post_put_patch_and_delete_are_writes() {
        assert!(is_write(&Method::POST) && is_write(&Method::DELETE) && is_write(&Method::PATCH));
        assert!(!is_write(&Method::GET) && !is_write(&Method::OPTIONS));
        assert!(!is_write(&Method::from_bytes(b"QUERY").unwrap()));
    }
}
