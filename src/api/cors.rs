//! Cross-origin requests. Off by default: the map page is served from the same
//! origin as the API and needs none. `--cors-origin` lets named origins (or
//! `*`, every origin) read the API and, with the write authority, write to it.

use actix_web::http::{Method, header};

/// Which other origins may call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cors {
    origins: Vec<String>,
    any: bool,
}

impl Cors {
    /// Reads `--cors-origin` values: `*`, or origins such as
    /// `https://maps.example.org` (scheme, host and optional port, no path).
    pub fn parse(values: &[String]) -> Result<Self, String> {
        let mut cors = Self::default();
        for v in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            if v.is_empty() {
                continue;
            }
            if v == "*" {
                cors.any = true;
                continue;
            }
            let rest = v
                .strip_prefix("https://")
                .or_else(|| v.strip_prefix("http://"))
                .ok_or_else(|| {
                    format!("--cors-origin must be * or an http(s) origin, got {v:?}")
                })?;
            if rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "--cors-origin takes an origin without a path (like https://example.org), got {v:?}"
                ));
            }
            cors.origins.push(v.to_owned());
        }
        Ok(cors)
    }

    pub fn enabled(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    /// Refuses `*` on a server without a token: every page on the web could
    /// then write through the loopback trust of whoever opens it.
    pub fn check_write_authority(&self, has_token: bool) -> Result<(), String> {
        if self.any && !has_token {
            return Err(
                "--cors-origin '*' lets every web page call this API, and with no write token a page opened on this machine could change the catalogue: set --token (or SITEWATCH_TOKEN), or name the origins that may call it".into(),
            );
        }
        Ok(())
    }

    /// The named origins, for the warning given when they may write without a token.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// The middleware; the exposed headers let pages read paging and Location.
    pub fn middleware(&self) -> actix_cors::Cors {
        let mut c = actix_cors::Cors::default()
            .allowed_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .expose_headers([
                header::LOCATION,
                header::LINK,
                header::HeaderName::from_static("ogc-numbermatched"),
                header::HeaderName::from_static("sitewatch-limit-clamped"),
            ])
            .max_age(3600);
        if self.any {
            c = c.allow_any_origin();
        }
        for o in &self.origins {
            c = c.allowed_origin(o);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_star_or_http_origins_without_a_path() {
        assert!(!Cors::parse(&[]).unwrap().enabled());
        let c = Cors::parse(&["https://a.example, http://b.example:8000".into()]).unwrap();
        assert_eq!(c.origins, ["https://a.example", "http://b.example:8000"]);
        assert!(Cors::parse(&["*".into()]).unwrap().any);
        assert!(Cors::parse(&["a.example".into()]).is_err());
        assert!(Cors::parse(&["https://a.example/map".into()]).is_err());
    }

    #[test]
    fn any_origin_is_refused_unless_writes_need_a_token() {
        let any = Cors::parse(&["*".into()]).unwrap();
        assert!(any.check_write_authority(false).is_err());
        assert!(any.check_write_authority(true).is_ok());
        let named = Cors::parse(&["https://a.example".into()]).unwrap();
        assert!(named.check_write_authority(false).is_ok());
    }
}
