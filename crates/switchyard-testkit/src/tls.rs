//! TLS for test servers: a per-run private PKI ([`TestPki`]) generated
//! in-process with `rcgen`, and the TLS settings of a server
//! ([`TlsOptions`]).

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use tempfile::TempDir;

use crate::error::TestkitError;

/// Whether the TLS server asks for a client certificate
/// (`tls-auth-clients`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsClientAuth {
    /// `tls-auth-clients yes`: a client without a certificate signed by the
    /// CA is refused (Redis' default).
    #[default]
    Required,
    /// `tls-auth-clients optional`: a client may omit its certificate, but
    /// one it presents must be signed by the CA.
    Optional,
    /// `tls-auth-clients no`: no client certificate is asked for.
    None,
}

impl TlsClientAuth {
    /// The value of `tls-auth-clients`.
    pub(crate) fn directive(self) -> &'static str {
        match self {
            TlsClientAuth::Required => "yes",
            TlsClientAuth::Optional => "optional",
            TlsClientAuth::None => "no",
        }
    }
}

/// Which certificate of the [`TestPki`] the TLS server presents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerCertificate {
    /// Valid, for `127.0.0.1` and `localhost`, signed by the CA.
    #[default]
    Valid,
    /// Signed by the CA, for the right names, but expired (valid only during
    /// the year 2000): clients that check validity refuse it.
    Expired,
    /// Signed by the CA, valid, but only for `wrong-name.invalid`: clients
    /// that check the name refuse it.
    WrongName,
}

/// TLS settings of a test server ([`RedisOptions::tls`](crate::RedisOptions::tls)).
///
/// By default the server keeps its plain `port` (the testkit's readiness probes,
/// [`RedisServer::cmd`](crate::RedisServer::cmd) and
/// [`RedisServer::url`](crate::RedisServer::url) use it) and adds a
/// `tls-port` on a second free loopback port, with `tls-cert-file`,
/// `tls-key-file`, `tls-ca-cert-file` from a [`TestPki`] generated for the
/// server in its data directory, and `tls-auth-clients` from
/// [`client_auth`](Self::client_auth).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Whether clients must present a certificate (default
    /// [`TlsClientAuth::Required`], as Redis).
    pub client_auth: TlsClientAuth,
    /// The certificate the server presents (default
    /// [`ServerCertificate::Valid`]).
    pub server_certificate: ServerCertificate,
    /// TLS only (default `false`): no plain port (`port 0`); the server
    /// listens on one port, with TLS, which [`RedisServer::port`],
    /// [`addr`](crate::RedisServer::addr) and
    /// [`tls_port`](crate::RedisServer::tls_port) all return, and
    /// [`url`](crate::RedisServer::url) is `rediss://`. The testkit's own
    /// probes and [`cmd`](crate::RedisServer::cmd) then connect with TLS,
    /// trusting the CA and presenting the client certificate, so the server
    /// certificate must be [`ServerCertificate::Valid`].
    ///
    /// [`RedisServer::port`]: crate::RedisServer::port
    pub tls_only: bool,
    /// Use the [`TestPki`] already generated in this directory (by
    /// [`TestPki::generate_in`]) instead of generating one for the server
    /// (default `None`). Servers given the same directory share one CA, so
    /// a client trusting it reaches all of them, and they reach each other
    /// (replication, Sentinel). The directory must outlive the server.
    pub pki_dir: Option<PathBuf>,
}

impl TlsOptions {
    /// Sets [`client_auth`](Self::client_auth).
    #[must_use]
    pub fn client_auth(mut self, auth: TlsClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Sets [`server_certificate`](Self::server_certificate).
    #[must_use]
    pub fn server_certificate(mut self, cert: ServerCertificate) -> Self {
        self.server_certificate = cert;
        self
    }

    /// Sets [`tls_only`](Self::tls_only).
    #[must_use]
    pub fn tls_only(mut self, tls_only: bool) -> Self {
        self.tls_only = tls_only;
        self
    }

    /// Sets [`pki_dir`](Self::pki_dir).
    #[must_use]
    pub fn pki_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pki_dir = Some(dir.into());
        self
    }

    /// Checks that the settings fit together.
    pub(crate) fn validate(&self) -> Result<(), TestkitError> {
        if self.tls_only && self.server_certificate != ServerCertificate::Valid {
            return Err(TestkitError::InvalidSetting(format!(
                "TlsOptions: tls_only with the {:?} server certificate: the testkit could not \
                 probe its own server; keep the plain port (tls_only false) to test broken \
                 certificates",
                self.server_certificate
            )));
        }
        Ok(())
    }
}

/// The paths of one PEM certificate and its PEM (PKCS#8) private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyPaths {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A private PKI for one test run, generated in-process and written as PEM
/// files into one directory:
///
/// | file | what |
/// |---|---|
/// | `ca.crt` | the CA (self-signed) |
/// | `server.crt`, `server.key` | server certificate for `127.0.0.1` and `localhost` (IP and DNS SANs), signed by the CA |
/// | `client.crt`, `client.key` | client certificate (CN `switchyard-test-client`), signed by the CA |
/// | `other-ca.crt` | a second CA, unrelated to the first ("wrong CA" tests) |
/// | `other-client.crt`, `other-client.key` | a client certificate signed by the other CA |
/// | `expired-server.crt`, `expired-server.key` | server certificate for the right names, signed by the CA, expired (valid only in 2000) |
/// | `wrong-name-server.crt`, `wrong-name-server.key` | server certificate signed by the CA for `wrong-name.invalid` only |
///
/// Keys are ECDSA P-256; certificates other than the expired one are valid
/// from 1975 to 4096, so clock skew never matters. Nothing is shared between
/// runs: every [`generate`](Self::generate) makes new keys.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    // Removes the directory on drop when the PKI owns it.
    _owned: Option<TempDir>,
    ca_cert: PathBuf,
    server: CertKeyPaths,
    client: CertKeyPaths,
    other_ca_cert: PathBuf,
    other_ca_client: CertKeyPaths,
    expired_server: CertKeyPaths,
    wrong_name_server: CertKeyPaths,
}

/// The SANs of a valid server certificate.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];
/// The only SAN of the wrong-name server certificate.
const WRONG_NAME: &str = "wrong-name.invalid";

fn pki_err(what: &str, e: rcgen::Error) -> TestkitError {
    TestkitError::Tls(format!("generating {what}: {e}"))
}

/// A CA: its PEM certificate and an issuer that signs with its key.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn generate(common_name: &str) -> Result<Ca, TestkitError> {
        let key = KeyPair::generate().map_err(|e| pki_err("a CA key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "switchyard tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| pki_err("a CA certificate", e))?;
        Ok(Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A leaf certificate signed by this CA: `(cert PEM, key PEM)`.
    fn leaf(
        &self,
        what: &str,
        names: &[&str],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Result<(String, String), TestkitError> {
        let key = KeyPair::generate().map_err(|e| pki_err(what, e))?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).map_err(|e| pki_err(what, e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| pki_err(what, e))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

impl TestPki {
    /// Generates the PKI into a fresh temporary directory, removed when the
    /// `TestPki` is dropped.
    pub fn generate() -> Result<TestPki, TestkitError> {
        let owned = tempfile::Builder::new()
            .prefix("switchyard-pki-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the temporary PKI directory", e))?;
        let mut pki = Self::generate_in(owned.path())?;
        pki._owned = Some(owned);
        Ok(pki)
    }

    /// Generates the PKI into `dir` (created if missing; files there with
    /// the same names are overwritten). The files stay when the `TestPki` is
    /// dropped.
    pub fn generate_in(dir: &Path) -> Result<TestPki, TestkitError> {
        fs::create_dir_all(dir)
            .map_err(|e| TestkitError::io(format!("creating {}", dir.display()), e))?;
        let write = |name: &str, pem: &str| -> Result<PathBuf, TestkitError> {
            let path = dir.join(name);
            fs::write(&path, pem)
                .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))?;
            Ok(path)
        };
        let pair =
            |name: &str, (cert, key): (String, String)| -> Result<CertKeyPaths, TestkitError> {
                Ok(CertKeyPaths {
                    cert: write(&format!("{name}.crt"), &cert)?,
                    key: write(&format!("{name}.key"), &key)?,
                })
            };
        let server_auth = || ExtendedKeyUsagePurpose::ServerAuth;
        let client_auth = || ExtendedKeyUsagePurpose::ClientAuth;

        let ca = Ca::generate("switchyard test CA")?;
        let other = Ca::generate("switchyard unrelated test CA")?;
        let server = ca.leaf(
            "the server certificate",
            &SERVER_NAMES,
            "localhost",
            server_auth(),
            false,
        )?;
        let client = ca.leaf(
            "the client certificate",
            &[],
            "switchyard-test-client",
            client_auth(),
            false,
        )?;
        let other_client = other.leaf(
            "the other CA's client certificate",
            &[],
            "switchyard-test-client",
            client_auth(),
            false,
        )?;
        let expired = ca.leaf(
            "the expired server certificate",
            &SERVER_NAMES,
            "localhost",
            server_auth(),
            true,
        )?;
        let wrong_name = ca.leaf(
            "the wrong-name server certificate",
            &[WRONG_NAME],
            WRONG_NAME,
            server_auth(),
            false,
        )?;
        Ok(TestPki {
            dir: dir.to_path_buf(),
            _owned: None,
            ca_cert: write("ca.crt", &ca.pem)?,
            server: pair("server", server)?,
            client: pair("client", client)?,
            other_ca_cert: write("other-ca.crt", &other.pem)?,
            other_ca_client: pair("other-client", other_client)?,
            expired_server: pair("expired-server", expired)?,
            wrong_name_server: pair("wrong-name-server", wrong_name)?,
        })
    }

    /// The PKI [`generate_in`](Self::generate_in) wrote into `dir` earlier,
    /// without generating anything: every file must be there. The files
    /// stay when the `TestPki` is dropped.
    ///
    /// Fails with [`TestkitError::Tls`] naming the first missing file.
    pub fn open(dir: &Path) -> Result<TestPki, TestkitError> {
        let file = |name: &str| -> Result<PathBuf, TestkitError> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(TestkitError::Tls(format!(
                    "{} is missing: {} holds no PKI written by TestPki::generate_in",
                    path.display(),
                    dir.display()
                )))
            }
        };
        let pair = |name: &str| -> Result<CertKeyPaths, TestkitError> {
            Ok(CertKeyPaths {
                cert: file(&format!("{name}.crt"))?,
                key: file(&format!("{name}.key"))?,
            })
        };
        Ok(TestPki {
            dir: dir.to_path_buf(),
            _owned: None,
            ca_cert: file("ca.crt")?,
            server: pair("server")?,
            client: pair("client")?,
            other_ca_cert: file("other-ca.crt")?,
            other_ca_client: pair("other-client")?,
            expired_server: pair("expired-server")?,
            wrong_name_server: pair("wrong-name-server")?,
        })
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (`ca.crt`): what clients trust.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The valid server certificate and key (SANs `127.0.0.1`, `localhost`).
    pub fn server(&self) -> &CertKeyPaths {
        &self.server
    }

    /// The client certificate and key, signed by the CA.
    pub fn client(&self) -> &CertKeyPaths {
        &self.client
    }

    /// A second CA, unrelated to [`ca_cert`](Self::ca_cert): a client that
    /// trusts only it must refuse the server.
    pub fn other_ca_cert(&self) -> &Path {
        &self.other_ca_cert
    }

    /// A client certificate and key signed by the
    /// [other CA](Self::other_ca_cert): the server must refuse it.
    pub fn other_ca_client(&self) -> &CertKeyPaths {
        &self.other_ca_client
    }

    /// An expired server certificate (right names, signed by the CA).
    pub fn expired_server(&self) -> &CertKeyPaths {
        &self.expired_server
    }

    /// A server certificate for `wrong-name.invalid` only (signed by the CA).
    pub fn wrong_name_server(&self) -> &CertKeyPaths {
        &self.wrong_name_server
    }

    /// The server certificate and key for `choice`.
    pub fn server_certificate(&self, choice: ServerCertificate) -> &CertKeyPaths {
        match choice {
            ServerCertificate::Valid => &self.server,
            ServerCertificate::Expired => &self.expired_server,
            ServerCertificate::WrongName => &self.wrong_name_server,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_file_as_pem() {
        let pki = TestPki::generate().unwrap();
        let dir = pki.dir().to_path_buf();
        let certs = [
            pki.ca_cert(),
            pki.other_ca_cert(),
            &pki.server().cert,
            &pki.client().cert,
            &pki.other_ca_client().cert,
            &pki.expired_server().cert,
            &pki.wrong_name_server().cert,
        ];
        for cert in certs {
            assert!(cert.starts_with(&dir));
            let text = fs::read_to_string(cert).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        }
        let keys = [
            &pki.server().key,
            &pki.client().key,
            &pki.other_ca_client().key,
            &pki.expired_server().key,
            &pki.wrong_name_server().key,
        ];
        for key in keys {
            let text = fs::read_to_string(key).unwrap();
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        }
        assert_ne!(
            fs::read_to_string(pki.ca_cert()).unwrap(),
            fs::read_to_string(pki.other_ca_cert()).unwrap()
        );
        drop(pki);
        assert!(!dir.exists(), "an owned PKI directory is removed on drop");
    }

    #[test]
    fn open_finds_what_generate_in_wrote() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            TestPki::open(dir.path()),
            Err(TestkitError::Tls(_))
        ));
        let written = TestPki::generate_in(dir.path()).unwrap();
        let opened = TestPki::open(dir.path()).unwrap();
        assert_eq!(opened.ca_cert(), written.ca_cert());
        assert_eq!(opened.client(), written.client());
        assert_eq!(opened.server(), written.server());
        assert_eq!(opened.other_ca_cert(), written.other_ca_cert());
    }

    #[test]
    fn every_run_makes_new_keys() {
        let a = TestPki::generate().unwrap();
        let b = TestPki::generate().unwrap();
        assert_ne!(
            fs::read_to_string(a.ca_cert()).unwrap(),
            fs::read_to_string(b.ca_cert()).unwrap()
        );
    }
}
