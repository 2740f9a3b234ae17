//! TLS trust and identity of a [`RedisConfig`], and the errors of a failed
//! TLS set-up.
//!
//! - Trust: the platform's root certificates by default (through redis-rs
//!   and `rustls-native-certs`, which also read the PEM file named by
//!   `SSL_CERT_FILE` and the directory named by `SSL_CERT_DIR`); or only the
//!   CA certificate(s) of the PEM file `tls_ca=/path/ca.pem` (a private or
//!   provider CA).
//! - Identity: a client certificate chain and its key,
//!   `tls_cert=/path/client.pem&tls_key=/path/client-key.pem`, for servers
//!   started with `tls-auth-clients yes`.
//! - `tls_insecure=true` turns certificate checks off. It is dangerous (any
//!   machine in the path can read and change the traffic) and logs a
//!   warning at every connect.
//!
//! The settings are checked where the config is built (they need TLS, the
//! certificate comes with its key, `tls_insecure` excludes `tls_ca`) and the
//! files at connect (they exist, can be read, and parse as PEM
//! certificates or a PEM private key), with errors naming the file and why.
//!
//! A failed handshake is an [`Error::Tls`] with its kind (`unknown issuer`,
//! `name mismatch`, `expired`, `client certificate refused`, `not a TLS
//! port`, ...), not an [`Error::Connect`], and is not transient.

#[cfg(feature = "tls")]
use std::path::Path;
use std::path::PathBuf;

use switchyard_core::{Error, Result};

use crate::RedisConfig;
use crate::range::Origin;

/// Takes one `tls_*` URL parameter into `cfg`; the error is the reason.
pub(crate) fn take_url_param(
    cfg: &mut RedisConfig,
    key: &str,
    value: &str,
) -> std::result::Result<(), String> {
    let path = || {
        if value.is_empty() {
            Err(format!(
                "{key}: give the path of a PEM file, got an empty value"
            ))
        } else {
            Ok(PathBuf::from(value))
        }
    };
    match key {
        "tls_ca" => cfg.tls_ca = Some(path()?),
        "tls_cert" => cfg.tls_cert = Some(path()?),
        "tls_key" => cfg.tls_key = Some(path()?),
        "tls_insecure" => {
            cfg.tls_insecure = match value {
                "true" => true,
                "false" => false,
                _ => return Err(format!("tls_insecure must be true or false, got {value:?}")),
            }
        }
        _ => return Err(format!("{key} is not a TLS parameter")),
    }
    Ok(())
}

/// Checks that the TLS settings fit together (no file is opened here).
pub(crate) fn validate_settings(cfg: &RedisConfig, origin: Origin) -> Result<()> {
    let from = match origin {
        Origin::Url => "url parameter",
        Origin::Builder => "set in code:",
    };
    let invalid = |msg: String| Err(Error::InvalidConfig(msg));
    for (name, path) in [
        ("tls_ca", &cfg.tls_ca),
        ("tls_cert", &cfg.tls_cert),
        ("tls_key", &cfg.tls_key),
    ] {
        let Some(path) = path else { continue };
        if !cfg.tls {
            return invalid(format!(
                "{from} {name} is set but TLS is off: use a rediss+streams:// or rediss+pubsub:// URL (or with_tls(true))"
            ));
        }
        if path.as_os_str().is_empty() {
            return invalid(format!(
                "{from} {name} is empty: give the path of a PEM file"
            ));
        }
    }
    if cfg.tls_insecure && !cfg.tls {
        return invalid(format!(
            "{from} tls_insecure is set but TLS is off: use a rediss+streams:// or rediss+pubsub:// URL"
        ));
    }
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(_), None) => {
            return invalid(format!(
                "{from} tls_cert is set without tls_key: give the client certificate's private key too"
            ));
        }
        (None, Some(_)) => {
            return invalid(format!(
                "{from} tls_key is set without tls_cert: give the client certificate too"
            ));
        }
        _ => {}
    }
    if cfg.tls_insecure && cfg.tls_ca.is_some() {
        return invalid(format!(
            "{from} tls_insecure=true turns certificate checks off, so tls_ca would be ignored: drop one of them (keep tls_ca)"
        ));
    }
    Ok(())
}

/// Reads the file of setting `name` at `path`, with an error naming both.
#[cfg(feature = "tls")]
fn read_file(name: &str, path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidConfig(format!(
            "{name} {}: cannot read the file ({e}); give the path of a readable PEM file holding {what}",
            path.display()
        ))
    })
}

/// The PEM certificates in the file of setting `name`, checked to parse.
#[cfg(feature = "tls")]
fn read_certificates(name: &str, path: &Path, what: &str) -> Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let bytes = read_file(name, path, what)?;
    let bad = |why: String| {
        Error::InvalidConfig(format!(
            "{name} {}: {why}; the file must hold {what} in PEM (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))
    };
    let mut count = 0usize;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        cert.map_err(|e| bad(format!("not a valid PEM certificate ({e})")))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad("no certificate found".into()));
    }
    Ok(bytes)
}

/// The PEM private key in the file of setting `name`, checked to parse.
#[cfg(feature = "tls")]
fn read_key(name: &str, path: &Path) -> Result<Vec<u8>> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;

    let bytes = read_file(name, path, "the client certificate's private key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        Error::InvalidConfig(format!(
            "{name} {}: no PEM private key found ({e}); the file must hold the client certificate's private key in PEM (-----BEGIN PRIVATE KEY-----)",
            path.display()
        ))
    })?;
    Ok(bytes)
}

/// The CA and client certificates for redis-rs, read from the files the
/// config names; `None` when it names none. Errors name the file and why.
#[cfg(feature = "tls")]
pub(crate) fn certificates(cfg: &RedisConfig) -> Result<Option<redis::TlsCertificates>> {
    if cfg.tls_ca.is_none() && cfg.tls_cert.is_none() {
        return Ok(None);
    }
    let root_cert = match &cfg.tls_ca {
        Some(path) => Some(read_certificates("tls_ca", path, "the CA certificate(s)")?),
        None => None,
    };
    let client_tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read_certificates("tls_cert", cert, "the client certificate (chain)")?,
            client_key: read_key("tls_key", key)?,
        }),
        _ => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// The rustls client of `cfg` for the lean connections: the CA file of
/// `tls_ca` or the platform's roots, the client certificate of
/// `tls_cert`/`tls_key`, or no checks at all with `tls_insecure`. Errors
/// name the file and why.
#[cfg(feature = "tls")]
pub(crate) fn client_config(cfg: &RedisConfig) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidConfig(format!("TLS client for {}: {e}", cfg.addr())))?;
    let builder = if cfg.tls_insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnyCertificate(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &cfg.tls_ca {
            Some(path) => {
                let pem = read_certificates("tls_ca", path, "the CA certificate(s)")?;
                for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                    roots.add(cert).map_err(|e| {
                        Error::InvalidConfig(format!(
                            "tls_ca {}: not a usable CA certificate ({e})",
                            path.display()
                        ))
                    })?;
                }
            }
            None => {
                let loaded = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(loaded.certs);
                if added == 0 {
                    return Err(Error::InvalidConfig(format!(
                        "no root certificates found on this machine ({} error(s) loading them); give the server's CA with tls_ca=/path/ca.pem, or set SSL_CERT_FILE",
                        loaded.errors.len()
                    )));
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let pem = read_certificates("tls_cert", cert, "the client certificate (chain)")?;
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(&pem).flatten().collect();
            let key_pem = read_key("tls_key", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                Error::InvalidConfig(format!(
                    "tls_key {}: no PEM private key found ({e})",
                    key.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                Error::InvalidConfig(format!(
                    "tls_cert {} with tls_key {}: not a usable certificate and key ({e}); check that the key belongs to the certificate and that it is an X.509 v3 certificate",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `tls_insecure`: a verifier that accepts any certificate (signatures are
/// still checked, so the handshake itself is sound).
#[cfg(feature = "tls")]
mod insecure {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    pub(super) struct AcceptAnyCertificate(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// Without the `tls` feature no file is read (TLS is refused earlier).
#[cfg(not(feature = "tls"))]
#[allow(dead_code)]
pub(crate) fn certificates(_cfg: &RedisConfig) -> Result<Option<()>> {
    Ok(None)
}

/// Whether `text` (an error's message) reports a failed TLS handshake, and
/// if so its kind and what to do. `cfg` tunes the advice.
pub(crate) fn tls_failure(cfg: &RedisConfig, text: &str) -> Option<(&'static str, String)> {
    let trust = if cfg.tls_ca.is_some() {
        "check that tls_ca is the CA that signed the server's certificate"
    } else {
        "give the CA that signed it with tls_ca=/path/ca.pem (or add it to the platform's trust store / SSL_CERT_FILE)"
    };
    let found = |needle: &str| text.contains(needle);
    if found("UnknownIssuer") || found("BadSignature") || (found("UnknownCA") && !found("alert")) {
        return Some((
            "unknown issuer",
            format!("the server's certificate is not signed by a trusted CA: {trust} ({text})"),
        ));
    }
    if found("not valid for name") || found("NotValidForName") {
        return Some((
            "name mismatch",
            format!(
                "the server's certificate is not valid for the host name {:?} in the URL: connect with a name the certificate lists, or have the certificate re-issued ({text})",
                cfg.host
            ),
        ));
    }
    if found("certificate expired") || found("Expired") {
        return Some((
            "expired",
            format!("the server's certificate has expired: renew it on the server ({text})"),
        ));
    }
    if found("not valid yet") || found("NotValidYet") {
        return Some((
            "not yet valid",
            format!(
                "the server's certificate is not valid yet: check the clocks of client and server ({text})"
            ),
        ));
    }
    if found("received fatal alert") {
        let hint = if cfg.tls_cert.is_none() {
            "the server requires a client certificate: give tls_cert=/path/client.pem&tls_key=/path/client-key.pem"
        } else {
            "check that tls_cert is signed by a CA the server trusts (its tls-ca-cert-file)"
        };
        return Some((
            "client certificate refused",
            format!("the server ended the TLS handshake: {hint} ({text})"),
        ));
    }
    if found("InvalidContentType") || found("corrupt message") {
        return Some((
            "not a TLS port",
            format!(
                "the TLS handshake failed: is this a TLS port? A plain Redis port needs redis+streams:// or redis+pubsub:// ({text})"
            ),
        ));
    }
    if found("invalid peer certificate") {
        return Some((
            "handshake",
            format!("the server's certificate was refused ({text})"),
        ));
    }
    None
}

/// The [`Error::Tls`] for `cfg`.
pub(crate) fn tls_error(cfg: &RedisConfig, kind: &'static str, reason: String) -> Error {
    Error::Tls {
        backend: "redis",
        addr: cfg.addr(),
        kind,
        reason,
    }
}

/// Logs the warning of `tls_insecure` (once per connect).
pub(crate) fn warn_if_insecure(cfg: &RedisConfig) {
    if cfg.tls && cfg.tls_insecure {
        tracing::warn!(
            addr = %cfg.addr(),
            "tls_insecure=true: the server's TLS certificate is NOT checked; anyone in the network path can read and change this traffic. Use tls_ca=/path/ca.pem instead"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every `tls_*` parameter from a URL, and the combinations refused
    /// where the config is built.
    #[test]
    fn url_parameters() {
        let c = RedisConfig::from_url(
            "rediss+streams://h:1?tls_ca=/etc/ca%20x.pem&tls_cert=/c.pem&tls_key=/k.pem",
        )
        .unwrap();
        assert_eq!(c.tls_ca.as_deref(), Some(Path::new("/etc/ca x.pem")));
        assert_eq!(c.tls_cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(c.tls_key.as_deref(), Some(Path::new("/k.pem")));
        assert!(!c.tls_insecure);
        assert!(c.params.is_empty());
        let c = RedisConfig::from_url("rediss+pubsub://h?tls_insecure=true").unwrap();
        assert!(c.tls_insecure);
        for (url, needle) in [
            ("redis+streams://h?tls_ca=/ca.pem", "TLS is off"),
            ("redis+streams://h?tls_insecure=true", "TLS is off"),
            ("rediss+streams://h?tls_cert=/c.pem", "without tls_key"),
            ("rediss+streams://h?tls_key=/k.pem", "without tls_cert"),
            ("rediss+streams://h?tls_ca=", "empty"),
            ("rediss+streams://h?tls_insecure=yes", "true or false"),
            (
                "rediss+streams://h?tls_insecure=true&tls_ca=/ca.pem",
                "tls_ca would be ignored",
            ),
        ] {
            let e = RedisConfig::from_url(url).unwrap_err();
            assert!(e.to_string().contains(needle), "{url}: {e}");
        }
        let e = RedisConfig::new("h", 1)
            .with_tls_ca("/ca.pem")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("set in code"), "{e}");
        assert!(
            RedisConfig::new("h", 1)
                .with_tls(true)
                .with_tls_ca("/ca.pem")
                .with_tls_client_cert("/c.pem", "/k.pem")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn failures_by_kind() {
        let cfg = RedisConfig::new("127.0.0.1", 1).with_tls(true);
        for (text, kind) in [
            ("invalid peer certificate: UnknownIssuer", "unknown issuer"),
            (
                "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for wrong-name.invalid",
                "name mismatch",
            ),
            (
                "invalid peer certificate: certificate expired: verification time 1 (UNIX), but ...",
                "expired",
            ),
            (
                "received fatal alert: CertificateRequired",
                "client certificate refused",
            ),
            (
                "received corrupt message of type InvalidContentType",
                "not a TLS port",
            ),
        ] {
            assert_eq!(tls_failure(&cfg, text).map(|t| t.0), Some(kind), "{text}");
        }
        assert_eq!(tls_failure(&cfg, "connection refused"), None);
    }
}
