//! Request bodies: the media type they must declare, the size the server reads
//! (`serve --max-body`), and JSON with no repeated keys. Bodies are read only
//! after a write is authorised, so a client without authority cannot make the
//! server buffer anything.

use super::error::ApiError;
use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{Bytes, Payload};
use futures_util::StreamExt as _;
use serde_json::Value;

/// The largest body the server reads, set once for every worker.
#[derive(Debug, Clone, Copy)]
pub struct MaxBody(pub usize);

/// Refuses a body that does not say it is JSON.
pub(super) fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    require_one_of(req, &["application/geo+json", "application/json"])
}

/// `Ok` if the body declares one of `types` as its `Content-Type`.
fn require_one_of(req: &HttpRequest, types: &[&str]) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if types.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            detail: format!("the body must be {}, not {given:?}", types.join(" or ")),
        })
    }
}

/// Reads a JSON Merge Patch (RFC 7396) of at most `ceiling` bytes: declared
/// as `application/merge-patch+json`, or as plain JSON.
pub(super) async fn read_merge_patch(
    req: &HttpRequest,
    body: Payload,
    ceiling: usize,
) -> Result<Value, ApiError> {
    require_one_of(
        req,
        &[
            "application/merge-patch+json",
            "application/json",
            "application/geo+json",
        ],
    )?;
    let bytes = read_body(req, body, ceiling).await?;
    parse_json(&bytes)
}

/// Reads the whole body, refusing one over the server's limit or over
/// `ceiling`, whichever is smaller: at once when `Content-Length` says so,
/// otherwise as soon as the limit is passed.
pub(super) async fn read_body(
    req: &HttpRequest,
    body: Payload,
    ceiling: usize,
) -> Result<Bytes, ApiError> {
    let limit = req
        .app_data::<MaxBody>()
        .map_or(super::DEFAULT_MAX_BODY, |m| m.0)
        .min(ceiling);
    let too_large = || ApiError::PayloadTooLarge {
        detail: format!("the body is larger than the {limit} bytes this server accepts"),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let rate = req.app_data::<BodyRate>().copied().unwrap_or_default();
    let mut body = body;
    let mut bytes = actix_web::web::BytesMut::new();
    let started = std::time::Instant::now();
    loop {
        let chunk = match tokio::time::timeout(rate.idle, body.next()).await {
            Err(_) => return Err(rate.too_slow(bytes.len(), started.elapsed())),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk
                .map_err(|e| ApiError::bad("body", format!("the body could not be read: {e}")))?,
        };
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
        if rate.is_too_slow(bytes.len(), started.elapsed()) {
            return Err(rate.too_slow(bytes.len(), started.elapsed()));
        }
    }
    Ok(bytes.freeze())
}

/// How slowly a client may send a body: at most `idle` between pieces, and
/// after `grace`, at least `min_per_s` bytes a second on average. A body
/// trickled in holds a connection and its buffer for as long as it lasts.
#[derive(Debug, Clone, Copy)]
pub struct BodyRate {
    pub idle: std::time::Duration,
    pub grace: std::time::Duration,
    pub min_per_s: u64,
}

impl Default for BodyRate {
    fn default() -> Self {
        Self {
            idle: std::time::Duration::from_secs(30),
            grace: std::time::Duration::from_secs(30),
            min_per_s: 16 * 1024,
        }
    }
}

impl BodyRate {
    fn is_too_slow(&self, bytes: usize, elapsed: std::time::Duration) -> bool {
        elapsed > self.grace && (bytes as f64) < self.min_per_s as f64 * elapsed.as_secs_f64()
    }

    fn too_slow(&self, bytes: usize, elapsed: std::time::Duration) -> ApiError {
        ApiError::SlowBody {
            detail: format!(
                "the body came too slowly: {bytes} bytes in {:.1} s; the server waits at most {} s between pieces and needs {} bytes a second after the first {} s",
                elapsed.as_secs_f64(),
                self.idle.as_secs(),
                self.min_per_s,
                self.grace.as_secs()
            ),
        }
    }
}

/// Reads a JSON body of at most `ceiling` bytes that declares itself JSON.
pub(super) async fn read_json(
    req: &HttpRequest,
    body: Payload,
    ceiling: usize,
) -> Result<Value, ApiError> {
    require_json(req)?;
    let bytes = read_body(req, body, ceiling).await?;
    parse_json(&bytes)
}

/// Parses a JSON body; a repeated key in any object is refused, naming the key.
pub(super) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    crate::model::json::from_slice(bytes)
        .map_err(|e| ApiError::bad("body", format!("the body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;
    use actix_web::test::TestRequest;

    #[test]
    fn a_body_must_be_declared_as_json_or_geojson() {
        for ok in [
            "application/geo+json",
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            let req = TestRequest::default()
                .insert_header((header::CONTENT_TYPE, ok))
                .to_http_request();
            assert!(require_json(&req).is_ok(), "{ok}");
        }
        for bad in [Some("text/plain"), Some("application/jsonx"), None] {
            let mut req = TestRequest::default();
            if let Some(ct) = bad {
                req = req.insert_header((header::CONTENT_TYPE, ct));
            }
            let e = require_json(&req.to_http_request()).unwrap_err();
            assert_eq!(e.status_code(), 415, "{bad:?}");
        }
    }

    #[actix_web::test]
    async fn a_body_over_the_limit_is_refused_with_413_whatever_its_declared_length() {
        use actix_web::FromRequest;
        // A declared length over the limit is refused before reading; one that
        // understates the body is caught while reading.
        for declared in ["100", "5"] {
            let (req, mut payload) = TestRequest::default()
                .app_data(MaxBody(10))
                .set_payload(vec![b' '; 100])
                .insert_header((header::CONTENT_LENGTH, declared))
                .to_http_parts();
            let body = Payload::from_request(&req, &mut payload).await.unwrap();
            let e = read_body(&req, body, usize::MAX).await.unwrap_err();
            assert_eq!(e.status_code(), 413, "declared {declared}");
        }
    }

    #[test]
    fn a_repeated_key_is_a_bad_body_naming_the_key() {
        let e = parse_json(br#"{"id":"a","id":"b"}"#).unwrap_err();
        assert!(e.to_string().contains(r#"duplicate key "id""#), "{e}");
    }

    #[test]
    fn a_body_is_too_slow_only_after_the_grace_and_below_the_rate() {
        use std::time::Duration;
        let rate = BodyRate {
            idle: Duration::from_secs(5),
            grace: Duration::from_secs(10),
            min_per_s: 1000,
        };
        assert!(!rate.is_too_slow(0, Duration::from_secs(9)));
        assert!(!rate.is_too_slow(20_000, Duration::from_secs(20)));
        assert!(rate.is_too_slow(19_999, Duration::from_secs(20)));
        let e = rate.too_slow(10, Duration::from_secs(20));
        assert_eq!(
            actix_web::ResponseError::status_code(&e),
            actix_web::http::StatusCode::REQUEST_TIMEOUT
        );
    }
}
