//! The client side of TLS for [`RespConnection`](crate::RespConnection):
//! what to trust and present ([`TlsConnect`]), and the blocking rustls
//! stream behind a TLS connection.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::error::TestkitError;
use crate::tls::{CertKeyPaths, TestPki};

/// How a [`RespConnection`](crate::RespConnection) connects with TLS: the CA
/// it trusts, the client certificate it presents, and the name it checks the
/// server's certificate against.
///
/// The server certificate is verified as any real client would (chain to
/// the CA, validity dates, name), so the [`TestPki`]'s "wrong CA", expired
/// and wrong-name certificates are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConnect {
    /// The CA certificate (PEM) the server's certificate must chain to.
    pub ca_cert: PathBuf,
    /// The client certificate and key to present (default `None`).
    pub client: Option<CertKeyPaths>,
    /// The name the server's certificate must be valid for: an IP address
    /// or a DNS name (default `"127.0.0.1"`).
    pub server_name: String,
}

impl TlsConnect {
    /// Trusts `ca_cert`, presents no client certificate, expects the server
    /// to be `127.0.0.1`.
    pub fn new(ca_cert: impl Into<PathBuf>) -> Self {
        TlsConnect {
            ca_cert: ca_cert.into(),
            client: None,
            server_name: "127.0.0.1".into(),
        }
    }

    /// Trusts the PKI's CA and presents its client certificate.
    pub fn from_pki(pki: &TestPki) -> Self {
        Self::new(pki.ca_cert()).client(pki.client().clone())
    }

    /// Sets [`client`](Self::client).
    #[must_use]
    pub fn client(mut self, client: CertKeyPaths) -> Self {
        self.client = Some(client);
        self
    }

    /// Clears [`client`](Self::client): no client certificate.
    #[must_use]
    pub fn without_client(mut self) -> Self {
        self.client = None;
        self
    }

    /// Sets [`server_name`](Self::server_name).
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// The rustls configuration and server name.
    fn rustls(&self) -> Result<(Arc<ClientConfig>, ServerName<'static>), TestkitError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&self.ca_cert)? {
            roots.add(cert).map_err(|e| {
                tls_err(format!(
                    "adding {} as a trusted CA: {e}",
                    self.ca_cert.display()
                ))
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(format!("choosing TLS versions: {e}")))?
            .with_root_certificates(roots);
        let config = match &self.client {
            Some(paths) => {
                let chain = read_certs(&paths.cert)?;
                let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| {
                    tls_err(format!(
                        "reading the private key {}: {e}",
                        paths.key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    tls_err(format!(
                        "using {} as client certificate: {e}",
                        paths.cert.display()
                    ))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from(self.server_name.clone()).map_err(|e| {
            TestkitError::InvalidSetting(format!(
                "TlsConnect::server_name {:?} is neither an IP address nor a DNS name: {e}",
                self.server_name
            ))
        })?;
        Ok((Arc::new(config), name))
    }
}

fn tls_err(msg: String) -> TestkitError {
    TestkitError::Tls(msg)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TestkitError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err(format!("reading certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

/// A TLS client stream over TCP, handshake done.
pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Runs the TLS handshake on `tcp` (whose timeouts bound it).
///
/// A refused handshake (unknown CA, expired or wrong-name certificate, ...)
/// is an I/O error of kind `InvalidData` whose message names the reason.
pub(crate) fn handshake(tcp: TcpStream, tls: &TlsConnect) -> Result<TlsStream, TestkitError> {
    let (config, name) = tls.rustls()?;
    let conn = ClientConnection::new(config, name)
        .map_err(|e| tls_err(format!("creating the TLS session: {e}")))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| TestkitError::io("TLS handshake", e))?;
    }
    Ok(stream)
}

/// The underlying socket of a TLS stream.
pub(crate) fn socket(stream: &TlsStream) -> &TcpStream {
    &stream.sock
}
