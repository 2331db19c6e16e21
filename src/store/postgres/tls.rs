//! Connecting to PostgreSQL as `psql` would with the same connection string:
//! libpq's `sslmode` (`disable`, `allow`, `prefer` by default, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of the
//! authorities to trust, or `system`), over rustls. The `postgres` crate
//! knows only the first modes and none of the certificate options, so they
//! are taken out of the string here and applied to its connector.

use super::PgError;
use percent_encoding::percent_decode_str;
use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of TLS a connection asks for, in libpq's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    /// TLS if the server offers it, its certificate unchecked.
    Prefer,
    /// TLS or no connection, the certificate unchecked (unless an authority
    /// is named, when libpq checks it as `verify-ca` does).
    Require,
    /// TLS with a certificate signed by a trusted authority.
    VerifyCa,
    /// That, and the certificate names the host connected to.
    VerifyFull,
}

/// Where the authorities to trust come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The operating system's store.
    System,
    File(PathBuf),
}

/// A connection string split into what the `postgres` crate parses and the
/// TLS settings it does not.
#[derive(Debug, PartialEq)]
struct Target {
    rest: String,
    mode: Mode,
    roots: Option<Roots>,
}

fn bad(what: String) -> PgError {
    PgError::Connect(what)
}

impl Target {
    fn parse(conn: &str) -> Result<Self, PgError> {
        let mut mode = None;
        let mut roots = None;
        let mut take = |key: &str, value: &str| -> Result<bool, PgError> {
            match key {
                "sslmode" => {
                    mode = Some(match value {
                        "disable" => Mode::Disable,
                        "allow" | "prefer" => Mode::Prefer,
                        "require" => Mode::Require,
                        "verify-ca" => Mode::VerifyCa,
                        "verify-full" => Mode::VerifyFull,
                        other => {
                            return Err(bad(format!(
                                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                            )));
                        }
                    });
                    Ok(true)
                }
                "sslrootcert" => {
                    roots = Some(match value {
                        "system" => Roots::System,
                        file => Roots::File(PathBuf::from(file)),
                    });
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
            match conn.split_once('?') {
                None => conn.to_owned(),
                Some((base, query)) => {
                    let mut kept: Vec<String> = Vec::new();
                    for pair in query.split('&') {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        let v = percent_decode_str(v).decode_utf8_lossy();
                        if !take(k, &v)? {
                            kept.push(pair.to_owned());
                        }
                    }
                    let base = host_overridden(base, &mut kept);
                    if kept.is_empty() {
                        base
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
            }
        } else {
            // `key=value` words; a quoted value with spaces in it is left to
            // the `postgres` crate unless it is one of ours.
            let mut kept = Vec::new();
            for word in conn.split_whitespace() {
                let (k, v) = word.split_once('=').unwrap_or((word, ""));
                if !take(k, v.trim_matches('\''))? {
                    kept.push(word);
                }
            }
            kept.join(" ")
        };
        let mode = match (mode.unwrap_or(Mode::Prefer), &roots) {
            (Mode::Require, Some(_)) => Mode::VerifyCa,
            (m, _) => m,
        };
        Ok(Self { rest, mode, roots })
    }

    /// The authorities a verifying mode trusts.
    fn root_store(&self) -> Result<RootCertStore, PgError> {
        let mut store = RootCertStore::empty();
        match self.roots.as_ref().unwrap_or(&Roots::System) {
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // One unreadable certificate of the system's should not
                    // keep the others from being trusted.
                    let _ = store.add(cert);
                }
                if store.is_empty() {
                    return Err(bad(
                        "sslmode asks to verify the server's certificate, but the system trusts no certificate authority; name one with sslrootcert=FILE".into(),
                    ));
                }
            }
            Roots::File(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
                for cert in certs {
                    store
                        .add(cert)
                        .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
                }
                if store.is_empty() {
                    return Err(bad(format!(
                        "sslrootcert {}: no certificate in the file",
                        path.display()
                    )));
                }
            }
        }
        Ok(store)
    }

    /// The rustls connector for the mode; `None` for no TLS at all.
    fn connector(&self) -> Result<Option<MakeRustlsConnect>, PgError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?;
        let chain = || -> Result<Arc<WebPkiServerVerifier>, PgError> {
            let roots = Arc::new(self.root_store()?);
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| bad(format!("TLS: {e}")))
        };
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            Mode::Disable => return Ok(None),
            Mode::VerifyFull => chain()?,
            Mode::VerifyCa => Arc::new(AnyName {
                chain: Some(chain()?),
                provider,
            }),
            Mode::Prefer | Mode::Require => Arc::new(AnyName {
                chain: None,
                provider,
            }),
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

/// A URL's hosts, when its query names `host` too: libpq connects to the
/// query's (`postgresql://u@localhost:5433/db?host=/run/pg` is the socket in
/// `/run/pg`), where the `postgres` crate would try both. The URL's port
/// goes along unless the query names one.
fn host_overridden(base: &str, query: &mut Vec<String>) -> String {
    if !query.iter().any(|p| p.starts_with("host=")) {
        return base.to_owned();
    }
    let (scheme, after) = base.split_once("://").unwrap_or(("postgresql", base));
    let end = after.find('/').unwrap_or(after.len());
    let (authority, path) = after.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    let port = hosts
        .split(',')
        .next()
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if let Some(port) = port
        && !query.iter().any(|p| p.starts_with("port="))
    {
        query.push(format!("port={port}"));
    }
    format!("{scheme}://{user}{path}")
}

/// Connects as the string says, TLS included.
pub(super) fn connect(conn: &str) -> Result<Client, PgError> {
    let target = Target::parse(conn)?;
    let mut config: Config = target
        .rest
        .parse()
        .map_err(|e: postgres::Error| bad(e.to_string()))?;
    // PostgreSQL speaks no TLS on a local socket, and libpq ignores sslmode
    // there; a socket's path is no name to check a certificate against.
    let sockets_only = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)));
    config.ssl_mode(match target.mode {
        _ if sockets_only => SslMode::Disable,
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    let connector = if sockets_only {
        None
    } else {
        target.connector()?
    };
    let client = match connector {
        None => config.connect(NoTls),
        Some(tls) => config.connect(tls),
    };
    client.map_err(|e| bad(super::describe(&e)))
}

/// A verifier that does not check the name in the server's certificate:
/// with no authorities, `prefer` and `require` as libpq has them (the
/// connection is encrypted and whoever answers is trusted); with them,
/// `verify-ca` (the chain must lead to one). The handshake's signatures are
/// checked against the certificate presented either way.
#[derive(Debug)]
struct AnyName {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // The name is checked only once the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[test]
    fn the_tls_settings_are_taken_out_of_a_url_and_the_rest_kept() {
        let t = parsed(
            "postgresql://ana@db.example:5432/sites?sslmode=verify-full&application_name=sw&sslrootcert=%2Fetc%2Fca%20bundle.pem",
        );
        assert_eq!(
            t.rest,
            "postgresql://ana@db.example:5432/sites?application_name=sw"
        );
        assert_eq!(t.mode, Mode::VerifyFull);
        assert_eq!(t.roots, Some(Roots::File("/etc/ca bundle.pem".into())));
        let t = parsed("postgres://db/sites?sslmode=disable");
        assert_eq!(t.rest, "postgres://db/sites");
        assert_eq!(t.mode, Mode::Disable);
    }

    #[test]
    fn a_host_in_the_query_replaces_the_urls_as_in_libpq() {
        let t = parsed("postgresql://postgres@localhost:5433/nodes?host=/tmp/x&sslmode=require");
        assert_eq!(t.rest, "postgresql://postgres@/nodes?host=/tmp/x&port=5433");
        let c: Config = t.rest.parse().unwrap();
        assert_eq!(c.get_hosts(), &[Host::Unix("/tmp/x".into())]);
        assert_eq!(c.get_ports(), &[5433]);
        let t = parsed("postgres://db.example:5432/s?host=other&port=6000");
        assert_eq!(t.rest, "postgres:///s?host=other&port=6000");
    }

    #[test]
    fn the_tls_settings_are_taken_out_of_key_value_words() {
        let t = parsed("host=db.example sslmode=verify-ca user=ana sslrootcert=system");
        assert_eq!(t.rest, "host=db.example user=ana");
        assert_eq!(t.mode, Mode::VerifyCa);
        assert_eq!(t.roots, Some(Roots::System));
    }

    #[test]
    fn without_sslmode_tls_is_preferred_and_require_with_an_authority_checks_it() {
        assert_eq!(parsed("postgres://db/sites").mode, Mode::Prefer);
        assert_eq!(parsed("host=/tmp").mode, Mode::Prefer);
        assert_eq!(
            parsed("postgres://db/s?sslmode=require&sslrootcert=/ca.pem").mode,
            Mode::VerifyCa
        );
        assert_eq!(
            parsed("postgres://db/s?sslmode=require").mode,
            Mode::Require
        );
    }

    #[test]
    fn an_unknown_sslmode_is_refused_with_the_modes_there_are() {
        let e = Target::parse("postgres://db/s?sslmode=strict").unwrap_err();
        assert!(
            e.to_string().contains("sslmode=strict is not one of"),
            "{e}"
        );
    }

    #[test]
    fn a_root_file_without_a_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("empty.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let t = parsed(&format!(
            "host=db sslmode=verify-full sslrootcert={}",
            file.display()
        ));
        let e = t.connector().err().unwrap();
        assert!(e.to_string().contains("empty.pem"), "{e}");
    }
}
