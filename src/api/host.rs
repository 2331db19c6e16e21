//! Which names the server answers to, and the base of the links it writes. A
//! page on another site can point its own name at this machine (DNS
//! rebinding) and then read and write as if it were local, so every request
//! must name the server by its bound address or a configured `--public-url`;
//! forwarded headers name it only when a `--trusted-proxy` sends them.

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The names the server answers to and the proxies whose forwarded headers it
/// believes.
#[derive(Debug, Clone)]
pub struct Hosts {
    bound: SocketAddr,
    public: Vec<PublicUrl>,
    proxies: Vec<IpAddr>,
}

/// A `--public-url`: the name clients use when they reach the server through
/// something else (a proxy, a port mapping, a DNS name).
#[derive(Debug, Clone, PartialEq)]
struct PublicUrl {
    scheme: &'static str,
    name: Name,
    port: u16,
    /// Host and port as configured, for links.
    authority: String,
}

/// A host as written in a Host header or URL, normalised for comparison.
#[derive(Debug, Clone, PartialEq)]
enum Name {
    Ip(IpAddr),
    /// Lowercase, without a trailing dot.
    Dns(String),
}

/// Where links in a response point: the scheme and host the request was
/// checked against. Set on every request by [`check`].
#[derive(Debug, Clone)]
pub struct LinkBase {
    scheme: String,
    authority: String,
}

impl std::fmt::Display for LinkBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Why a `--public-url` or `--trusted-proxy` value was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HostsError {
    #[error(
        "--public-url takes an http(s) URL with a host and no path (like https://sites.example.org), got {0:?}"
    )]
    PublicUrl(String),
    #[error("--trusted-proxy takes an IP address (like 10.0.0.5 or ::1), got {0:?}")]
    TrustedProxy(String),
}

impl Hosts {
    /// The names of a server listening on `bound`, plus `--public-url` and
    /// `--trusted-proxy` values (each may hold several, separated by commas).
    pub fn new(
        bound: SocketAddr,
        public_urls: &[String],
        trusted_proxies: &[String],
    ) -> Result<Self, HostsError> {
        let split = |values: &[String]| -> Vec<String> {
            values
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let public = split(public_urls)
            .iter()
            .map(|u| PublicUrl::parse(u).ok_or_else(|| HostsError::PublicUrl(u.clone())))
            .collect::<Result<_, _>>()?;
        let proxies = split(trusted_proxies)
            .iter()
            .map(|p| {
                p.parse::<IpAddr>()
                    .map(|ip| ip.to_canonical())
                    .map_err(|_| HostsError::TrustedProxy(p.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            bound,
            public,
            proxies,
        })
    }

    /// Whether forwarded headers from this peer are believed.
    pub fn is_trusted_proxy(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.proxies.contains(&ip.to_canonical()))
    }

    pub fn has_trusted_proxies(&self) -> bool {
        !self.proxies.is_empty()
    }

    /// The link base for a request addressed to `authority` (a Host header
    /// value), or `None` if the server does not answer to that name.
    fn admit(&self, authority: &str) -> Option<LinkBase> {
        let (name, port) = split_authority(authority)?;
        if let Some(url) = self
            .public
            .iter()
            .find(|u| u.name == name && port.unwrap_or(default_port(u.scheme)) == u.port)
        {
            return Some(LinkBase {
                scheme: url.scheme.into(),
                authority: url.authority.clone(),
            });
        }
        // The server itself speaks plain HTTP, so a Host with no port means 80.
        if port.unwrap_or(80) != self.bound.port() {
            return None;
        }
        let bound_ip = self.bound.ip().to_canonical();
        let ours = match &name {
            Name::Dns(n) => n == "localhost",
            // A number cannot be rebound to another machine, so any address
            // on a wildcard listener is one this server may be reached by.
            Name::Ip(ip) => ip.is_loopback() || *ip == bound_ip || bound_ip.is_unspecified(),
        };
        ours.then(|| LinkBase {
            scheme: "http".into(),
            authority: authority.trim().to_ascii_lowercase(),
        })
    }

    /// The link base for a request without a Host header (HTTP/1.0): the
    /// address the server is bound to, or `localhost` on a wildcard one.
    fn fallback(&self) -> LinkBase {
        let authority = if self.bound.ip().is_unspecified() {
            format!("localhost:{}", self.bound.port())
        } else {
            self.bound.to_string()
        };
        LinkBase {
            scheme: "http".into(),
            authority,
        }
    }

    /// Decides where `req` was addressed, or `Err` with the host it named.
    fn resolve(&self, req: &HttpRequest) -> Result<LinkBase, String> {
        if self.is_trusted_proxy(req.peer_addr().map(|a| a.ip())) {
            let forwarded_proto = req.headers().contains_key("x-forwarded-proto")
                || req
                    .headers()
                    .get(header::FORWARDED)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.to_ascii_lowercase().contains("proto="));
            let info = req.connection_info();
            // The forwarded host is checked like a Host header: a proxy passes
            // on whatever name the browser used, rebound names included.
            let mut base = self
                .admit(info.host())
                .ok_or_else(|| info.host().to_owned())?;
            if forwarded_proto {
                base.scheme = info.scheme().to_ascii_lowercase();
            }
            return Ok(base);
        }
        match host_header(req) {
            Some(host) => self.admit(&host).ok_or(host),
            None => Ok(self.fallback()),
        }
    }
}

impl PublicUrl {
    fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else {
            ("http", url.strip_prefix("http://")?)
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (name, port) = split_authority(authority)?;
        Some(Self {
            scheme,
            name,
            port: port.unwrap_or(default_port(scheme)),
            authority: authority.to_ascii_lowercase(),
        })
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// The Host header, or the authority of an absolute request target.
fn host_header(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// Splits `host[:port]` (`[v6]:port` for IPv6) into a comparable name and the
/// port if one is given. Anything else is not a host this server has.
fn split_authority(authority: &str) -> Option<(Name, Option<u16>)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let ip = v6.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (Name::Ip(IpAddr::V6(ip).to_canonical()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let name = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Name::Ip(IpAddr::V4(ip)),
            Err(_) => {
                let dns = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
                let valid = !dns.is_empty()
                    && dns
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !valid {
                    return None;
                }
                Name::Dns(dns)
            }
        };
        (name, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// The base URL for links in the answer to `req`: the scheme and host it was
/// checked against. Without the middleware (router tests), the Host header
/// over plain HTTP; forwarded headers are never read here.
pub fn link_base(req: &HttpRequest) -> String {
    if let Some(base) = req.extensions().get::<LinkBase>() {
        return base.to_string();
    }
    let host = host_header(req)
        .filter(|h| split_authority(h).is_some())
        .unwrap_or_else(|| "localhost".into());
    format!("http://{}", host.to_ascii_lowercase())
}

/// Middleware: answers 421 Misdirected Request to a request that names a
/// host the server does not answer to, reads included (a rebound page could
/// otherwise read the catalogue), and records the link base for the rest.
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Liveness probes (load balancers, container health checks) call by names
    // the server cannot know, and the answer holds nothing worth stealing.
    if req.path() == "/healthz" {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let resolved = match req.app_data::<web::Data<Hosts>>() {
        Some(hosts) => hosts.resolve(req.request()),
        None => {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_left_body);
        }
    };
    match resolved {
        Ok(base) => {
            req.extensions_mut().insert(base);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(host) => {
            tracing::debug!(host, "refused a request for a host this server is not");
            Ok(req.into_response(misdirected(&host)).map_into_right_body())
        }
    }
}

/// A problem document (RFC 9457) for a request to another host.
fn misdirected(host: &str) -> HttpResponse {
    let status = StatusCode::MISDIRECTED_REQUEST;
    let detail = format!(
        "this server does not answer to the host {host:?}; reach it by its own address, or start it with --public-url naming this host"
    );
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Misdirected Request"),
            "status": status.as_u16(),
            "detail": detail,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn hosts(bind: &str, public: &[&str], proxies: &[&str]) -> Hosts {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Hosts::new(bind.parse().unwrap(), &own(public), &own(proxies)).unwrap()
    }

    fn admitted(h: &Hosts, host: &str) -> Option<String> {
        h.admit(host).map(|b| b.to_string())
    }

    #[test]
    fn the_bound_address_and_loopback_names_on_its_port_are_admitted() {
        let h = hosts("127.0.0.1:8080", &[], &[]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LocalHost.:8080",
            "[::1]:8080",
        ] {
            assert!(h.admit(ok).is_some(), "{ok}");
        }
        for refused in [
            "attacker.example:8080",
            "localhost:9090",
            "localhost",
            "127.0.0.1",
            "localhost.attacker.example:8080",
            "user@localhost:8080",
            "",
            "[::1",
            "localhost:80x",
        ] {
            assert!(h.admit(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn a_host_without_a_port_means_port_80_on_the_bound_address() {
        let h = hosts("127.0.0.1:80", &[], &[]);
        assert_eq!(
            admitted(&h, "localhost").as_deref(),
            Some("http://localhost")
        );
    }

    #[test]
    fn a_wildcard_listener_admits_any_address_but_no_unconfigured_name() {
        let h = hosts("0.0.0.0:8080", &[], &[]);
        assert!(h.admit("192.0.2.7:8080").is_some());
        assert!(h.admit("myhost.lan:8080").is_none());
        let specific = hosts("192.0.2.7:8080", &[], &[]);
        assert!(specific.admit("192.0.2.8:8080").is_none());
    }

    #[test]
    fn a_public_url_admits_its_name_and_gives_links_its_scheme() {
        let h = hosts(
            "127.0.0.1:8080",
            &["https://Sites.Example.org/, http://lan.example:9000"],
            &[],
        );
        for (host, base) in [
            ("sites.example.org", "https://sites.example.org"),
            ("sites.example.org:443", "https://sites.example.org"),
            ("lan.example:9000", "http://lan.example:9000"),
        ] {
            assert_eq!(admitted(&h, host).as_deref(), Some(base), "{host}");
        }
        assert!(h.admit("sites.example.org:80").is_none());
        assert!(h.admit("lan.example").is_none());
    }

    #[test]
    fn public_urls_and_proxies_that_are_not_what_they_say_are_refused() {
        let bound = "127.0.0.1:8080".parse().unwrap();
        for url in [
            "sites.example.org",
            "ftp://sites.example.org",
            "https://sites.example.org/map",
            "https://",
            "https://a b",
        ] {
            assert!(
                Hosts::new(bound, &[url.into()], &[]).is_err(),
                "{url} was taken"
            );
        }
        assert_eq!(
            Hosts::new(bound, &[], &["10.0.0.0/8".into()]).unwrap_err(),
            HostsError::TrustedProxy("10.0.0.0/8".into())
        );
    }

    #[test]
    fn forwarded_headers_are_believed_only_from_a_trusted_proxy() {
        let forwarded = |h: &Hosts| {
            let req = TestRequest::default()
                .peer_addr("127.0.0.1:5000".parse().unwrap())
                .insert_header(("Host", "127.0.0.1:8080"))
                .insert_header(("X-Forwarded-Host", "sites.example.org"))
                .insert_header(("X-Forwarded-Proto", "https"))
                .to_http_request();
            h.resolve(&req).map(|b| b.to_string())
        };
        let untrusted = hosts("127.0.0.1:8080", &["https://sites.example.org"], &[]);
        assert_eq!(forwarded(&untrusted).unwrap(), "http://127.0.0.1:8080");
        let trusted = hosts(
            "127.0.0.1:8080",
            &["https://sites.example.org"],
            &["127.0.0.1"],
        );
        assert_eq!(forwarded(&trusted).unwrap(), "https://sites.example.org");
        let unnamed = hosts("127.0.0.1:8080", &[], &["127.0.0.1"]);
        assert_eq!(forwarded(&unnamed).unwrap_err(), "sites.example.org");
    }

    #[test]
    fn an_ipv4_mapped_peer_counts_as_its_ipv4_proxy() {
        let h = hosts("127.0.0.1:8080", &[], &["10.0.0.5"]);
        assert!(h.is_trusted_proxy(Some("::ffff:10.0.0.5".parse().unwrap())));
        assert!(!h.is_trusted_proxy(Some("10.0.0.6".parse().unwrap())));
        assert!(!h.is_trusted_proxy(None));
    }
}
