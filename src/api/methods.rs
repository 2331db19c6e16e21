//! The methods every resource takes besides its own: `HEAD` wherever `GET`
//! is, and `OPTIONS`, which says what the resource takes. QGIS asks
//! `OPTIONS` of a collection's items and of one item to decide whether a
//! layer is editable.

use actix_web::HttpResponse;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;

/// The `Allow` header of the resource at a route pattern: the methods the
/// API document lists for it (`GET` for a resource it does not describe,
/// such as the map page), `HEAD` with `GET`, and `OPTIONS`.
pub fn allow(pattern: &str) -> String {
    let mut methods = super::openapi::methods_at(pattern);
    if methods.is_empty() {
        methods.push("GET".to_owned());
    }
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".to_owned());
    }
    methods.push("OPTIONS".to_owned());
    methods.join(", ")
}

/// Middleware: `OPTIONS` on a resource answers 204 with its `Allow`; `HEAD`
/// runs as the `GET` it stands for, and the connection sends the headers
/// without the body (it knows the request was a `HEAD`).
pub async fn head_and_options(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() == Method::OPTIONS
        && let Some(pattern) = req.match_pattern()
    {
        let resp = HttpResponse::NoContent()
            .insert_header((header::ALLOW, allow(&pattern)))
            .finish();
        return Ok(req.into_response(resp));
    }
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_allows_its_edits_with_head_and_options() {
        let item = allow("/api/collections/sites/items/{id}");
        for m in ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert!(item.split(", ").any(|x| x == m), "{m} not in {item}");
        }
        let items = allow("/api/collections/sites/items");
        assert!(items.contains("POST"), "{items}");
        assert!(!items.contains("PATCH"), "{items}");
    }

    #[test]
    fn a_resource_outside_the_document_allows_get_head_and_options() {
        assert_eq!(allow("/"), "GET, HEAD, OPTIONS");
    }
}
