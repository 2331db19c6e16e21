//! Who may write: holders of the server's bearer token, or, when the server has
//! no token, clients on loopback only (not through a trusted proxy, whose
//! loopback address says nothing of the client behind it).

use super::error::ApiError;
use crate::store::Provenance;
use actix_web::HttpRequest;
use actix_web::http::header;

/// The server's write policy.
#[derive(Clone)]
pub struct WriteAuth {
    token: Option<String>,
}

impl std::fmt::Debug for WriteAuth {
    // The token must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAuth")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl WriteAuth {
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()),
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Allows the request to write, or says why not. On success, returns who is
    /// writing and why (the `reason` query parameter), for the revision record.
    pub fn authorize(&self, req: &HttpRequest) -> Result<Provenance, ApiError> {
        let actor = match &self.token {
            Some(expected) => {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or_else(|| ApiError::Unauthorized {
                        detail: "writes need an Authorization: Bearer token".into(),
                    })?;
                if !constant_time_eq::constant_time_eq(given.trim().as_bytes(), expected.as_bytes())
                {
                    return Err(ApiError::Unauthorized {
                        detail: "the bearer token is not valid".into(),
                    });
                }
                "api (token)".to_string()
            }
            None => {
                let peer = req.peer_addr().map(|a| a.ip());
                let via_proxy = req
                    .app_data::<actix_web::web::Data<super::host::Hosts>>()
                    .is_some_and(|h| h.is_trusted_proxy(peer));
                if via_proxy {
                    return Err(ApiError::Unauthorized {
                        detail: "this request came through a trusted proxy, which hides where the client is: writes through a proxy need the server's write token".into(),
                    });
                }
                if !peer.is_some_and(|ip| ip.is_loopback()) {
                    return Err(ApiError::Unauthorized {
                        detail:
                            "this server has no write token and accepts writes only from loopback"
                                .into(),
                    });
                }
                "api (loopback)".to_string()
            }
        };
        let reason = super::params::Params::parse(req.query_string())?
            .get("reason")?
            .map(str::to_owned);
        Ok(Provenance { actor, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn status(r: Result<Provenance, ApiError>) -> u16 {
        use actix_web::ResponseError;
        match r {
            Ok(_) => 200,
            Err(e) => e.status_code().as_u16(),
        }
    }

    #[test]
    fn a_wrong_or_missing_token_is_refused_and_the_right_one_accepted() {
        let auth = WriteAuth::new(Some("s3cret".into()));
        let peer = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            status(auth.authorize(&TestRequest::default().peer_addr(peer).to_http_request())),
            401
        );
        let wrong = TestRequest::default()
            .peer_addr(peer)
            .insert_header(("Authorization", "Bearer nope"))
            .to_http_request();
        assert_eq!(status(auth.authorize(&wrong)), 401);
        let right = TestRequest::default()
            .insert_header(("Authorization", "Bearer s3cret"))
            .to_http_request();
        assert_eq!(status(auth.authorize(&right)), 200);
    }

    #[test]
    fn without_a_token_only_loopback_clients_may_write() {
        let auth = WriteAuth::new(None);
        let local = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .to_http_request();
        let remote = TestRequest::default()
            .peer_addr("192.0.2.7:5000".parse().unwrap())
            .to_http_request();
        assert_eq!(status(auth.authorize(&local)), 200);
        assert_eq!(status(auth.authorize(&remote)), 401);
    }

    #[test]
    fn without_a_token_a_trusted_proxy_on_loopback_may_not_write_for_its_clients() {
        let auth = WriteAuth::new(None);
        let hosts = super::super::host::Hosts::new(
            "127.0.0.1:8080".parse().unwrap(),
            &[],
            &["127.0.0.1".into()],
        )
        .unwrap();
        let proxied = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .app_data(actix_web::web::Data::new(hosts))
            .to_http_request();
        assert_eq!(status(auth.authorize(&proxied)), 401);
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        assert!(!format!("{:?}", WriteAuth::new(Some("s3cret".into()))).contains("s3cret"));
    }
}
