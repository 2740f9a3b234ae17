#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS against real redis-server processes with a per-run private CA
//! (testkit): trust, identity, and each way the set-up fails, each a clear
//! error within the connect timeout.
//!
//! Reproduction of the defects these guard against (before this file):
//! `rediss://127.0.0.1:PORT` to a server with a self-signed CA failed with
//! `invalid peer certificate: UnknownIssuer` whatever one did (no way to
//! give a CA file, a client certificate or key); a wrong CA, a wrong name
//! and an expired certificate all gave an `Error::Connect` ("could not
//! connect"), transient, like an unreachable server.

use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_core::{Error, Health};
use switchyard_redis::{RedisClient, RedisConfig, lean, ping_health};
use switchyard_testkit::{RedisOptions, RedisServer, ServerCertificate, TlsClientAuth, TlsOptions};

/// Connect timeout of these tests.
const CONNECT: Duration = Duration::from_secs(2);
/// Scheduling slack on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

fn tls_server(auth: TlsClientAuth, cert: ServerCertificate) -> RedisServer {
    RedisServer::start_with(
        RedisOptions::default().tls(
            TlsOptions::default()
                .client_auth(auth)
                .server_certificate(cert),
        ),
    )
    .unwrap()
}

fn tls_config(server: &RedisServer) -> RedisConfig {
    RedisConfig::new("127.0.0.1", server.tls_port().unwrap())
        .with_tls(true)
        .with_connect_timeout(CONNECT)
}

fn with_ca(cfg: RedisConfig, ca: &Path) -> RedisConfig {
    cfg.with_tls_ca(ca)
}

/// Opens the shared, a dedicated and a subscribing connection; returns the
/// first error, checking it came within the connect timeout.
async fn open_all(cfg: RedisConfig) -> Result<(), Error> {
    let client = RedisClient::new(cfg)?;
    let started = Instant::now();
    let outcome = async {
        let mut shared = client.shared().await?;
        assert_eq!(
            ping_health(&mut shared, "tls", Duration::from_secs(2)).await,
            Health::Ok
        );
        let mut dedicated = client.dedicated(None).await?;
        assert_eq!(
            ping_health(&mut dedicated, "tls", Duration::from_secs(2)).await,
            Health::Ok
        );
        client.pubsub().await?;
        Ok(())
    }
    .await;
    assert!(
        started.elapsed() < 3 * CONNECT + SLACK,
        "took {:?}",
        started.elapsed()
    );
    outcome
}

/// The TLS error of `cfg`, within the connect timeout, of `kind`, from
/// redis-rs connections and from the lean connect of the hot paths alike.
async fn tls_failure(cfg: RedisConfig, kind: &str) -> String {
    let client = RedisClient::new(cfg.clone()).unwrap();
    let started = Instant::now();
    let e = client.dedicated(None).await.unwrap_err();
    assert!(
        started.elapsed() < CONNECT + SLACK,
        "took {:?}",
        started.elapsed()
    );
    check_tls_error(&e, kind);
    let started = Instant::now();
    let lean_error = lean::connect(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < CONNECT + SLACK,
        "took {:?}",
        started.elapsed()
    );
    check_tls_error(&lean_error, kind);
    e.to_string()
}

fn check_tls_error(e: &Error, kind: &str) {
    match e {
        Error::Tls { kind: k, .. } => assert_eq!(*k, kind, "{e}"),
        other => panic!("expected Error::Tls({kind}), got {other:?}"),
    }
    assert!(!e.is_transient(), "{e}");
}

/// The lean connect (hot paths) over TLS: handshake, then a PING the
/// caller sends itself on the returned stream.
async fn lean_ping(cfg: &RedisConfig) {
    use tokio::io::AsyncReadExt;
    let mut stream = lean::connect(cfg).await.unwrap();
    lean::write_flush(&mut stream, b"*1\r\n$4\r\nPING\r\n")
        .await
        .unwrap();
    let mut reply = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
}

#[tokio::test]
async fn private_ca_with_client_certificate() {
    let server = tls_server(TlsClientAuth::Required, ServerCertificate::Valid);
    let pki = server.pki().unwrap();
    let cfg = with_ca(tls_config(&server), pki.ca_cert())
        .with_tls_client_cert(&pki.client().cert, &pki.client().key);
    lean_ping(&cfg).await;
    open_all(cfg).await.unwrap();
}

#[tokio::test]
async fn url_parameters_carry_trust_and_identity() {
    let server = tls_server(TlsClientAuth::Required, ServerCertificate::Valid);
    let pki = server.pki().unwrap();
    let url = format!(
        "rediss+streams://127.0.0.1:{}?tls_ca={}&tls_cert={}&tls_key={}",
        server.tls_port().unwrap(),
        pki.ca_cert().display(),
        pki.client().cert.display(),
        pki.client().key.display()
    );
    open_all(RedisConfig::from_url(&url).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn localhost_name_matches() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::Valid);
    let cfg = RedisConfig::new("localhost", server.tls_port().unwrap())
        .with_tls(true)
        .with_tls_ca(server.pki().unwrap().ca_cert());
    open_all(cfg).await.unwrap();
}

/// Without `tls_ca` the platform's roots are the trust: a private CA is
/// an unknown issuer.
#[tokio::test]
async fn platform_roots_do_not_trust_a_private_ca() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::Valid);
    let text = tls_failure(tls_config(&server), "unknown issuer").await;
    assert!(text.contains("tls_ca=/path/ca.pem"), "{text}");
}

#[tokio::test]
async fn wrong_ca_is_an_unknown_issuer() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::Valid);
    let cfg = with_ca(tls_config(&server), server.pki().unwrap().other_ca_cert());
    let text = tls_failure(cfg, "unknown issuer").await;
    assert!(text.contains("check that tls_ca"), "{text}");
}

#[tokio::test]
async fn wrong_host_name_is_a_name_mismatch() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::WrongName);
    let cfg = with_ca(tls_config(&server), server.pki().unwrap().ca_cert());
    let text = tls_failure(cfg, "name mismatch").await;
    assert!(text.contains("\"127.0.0.1\""), "{text}");
}

#[tokio::test]
async fn expired_certificate() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::Expired);
    let cfg = with_ca(tls_config(&server), server.pki().unwrap().ca_cert());
    tls_failure(cfg, "expired").await;
}

#[tokio::test]
async fn client_certificate_required_but_not_given() {
    let server = tls_server(TlsClientAuth::Required, ServerCertificate::Valid);
    let cfg = with_ca(tls_config(&server), server.pki().unwrap().ca_cert());
    let text = tls_failure(cfg, "client certificate refused").await;
    assert!(text.contains("tls_cert="), "{text}");
}

#[tokio::test]
async fn client_certificate_of_another_ca_is_refused() {
    let server = tls_server(TlsClientAuth::Required, ServerCertificate::Valid);
    let pki = server.pki().unwrap();
    let cfg = with_ca(tls_config(&server), pki.ca_cert())
        .with_tls_client_cert(&pki.other_ca_client().cert, &pki.other_ca_client().key);
    tls_failure(cfg, "client certificate refused").await;
}

#[tokio::test]
async fn insecure_skips_the_checks() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::WrongName);
    let cfg = tls_config(&server).with_tls_insecure(true);
    lean_ping(&cfg).await;
    open_all(cfg).await.unwrap();
}

/// A TLS client on the plain port: a clear error within the timeout.
#[tokio::test]
async fn tls_client_to_plain_port() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::Valid);
    let cfg = RedisConfig::new("127.0.0.1", server.port())
        .with_tls(true)
        .with_tls_ca(server.pki().unwrap().ca_cert())
        .with_connect_timeout(CONNECT);
    let client = RedisClient::new(cfg.clone()).unwrap();
    let started = Instant::now();
    let e = client.dedicated(None).await.unwrap_err();
    assert!(
        started.elapsed() < CONNECT + SLACK,
        "{:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(text.contains("TLS port"), "{text}");
    assert!(text.contains(&server.port().to_string()), "{text}");
    let started = Instant::now();
    let e = lean::connect(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < CONNECT + SLACK,
        "{:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(text.contains("TLS port"), "{text}");
}

/// A plain client (redis-rs and the lean connect) on the TLS port.
#[tokio::test]
async fn plain_client_to_tls_port() {
    let server = tls_server(TlsClientAuth::None, ServerCertificate::Valid);
    let cfg =
        RedisConfig::new("127.0.0.1", server.tls_port().unwrap()).with_connect_timeout(CONNECT);
    let client = RedisClient::new(cfg.clone()).unwrap();
    let started = Instant::now();
    let e = client.dedicated(None).await.unwrap_err();
    assert!(
        started.elapsed() < CONNECT + SLACK,
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.to_string().contains("TLS port, use rediss+streams://"),
        "{e}"
    );
    let started = Instant::now();
    let e = lean::connect(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < CONNECT + SLACK,
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.to_string().contains("TLS port, use rediss+streams://"),
        "{e}"
    );
}

/// Files are checked at connect: each error names the file and why.
#[tokio::test]
async fn bad_files_are_named() {
    let server = tls_server(TlsClientAuth::Required, ServerCertificate::Valid);
    let pki = server.pki().unwrap();
    let missing = pki.dir().join("missing.pem");
    let cases = [
        (
            tls_config(&server).with_tls_ca(&missing),
            "tls_ca",
            "cannot read",
        ),
        (
            tls_config(&server).with_tls_ca(&pki.client().key),
            "tls_ca",
            "no certificate found",
        ),
        (
            tls_config(&server)
                .with_tls_ca(pki.ca_cert())
                .with_tls_client_cert(&pki.client().cert, &missing),
            "tls_key",
            "cannot read",
        ),
        (
            tls_config(&server)
                .with_tls_ca(pki.ca_cert())
                .with_tls_client_cert(&pki.client().cert, pki.ca_cert()),
            "tls_key",
            "no PEM private key",
        ),
        (
            tls_config(&server)
                .with_tls_ca(pki.ca_cert())
                .with_tls_client_cert(&pki.client().key, &pki.client().key),
            "tls_cert",
            "no certificate found",
        ),
    ];
    let mismatched = tls_config(&server)
        .with_tls_ca(pki.ca_cert())
        .with_tls_client_cert(&pki.client().cert, &pki.other_ca_client().key);
    let cases =
        cases
            .into_iter()
            .chain([(mismatched, "tls_key", "not a usable certificate and key")]);
    for (cfg, setting, why) in cases {
        let lean_error = lean::connect(&cfg).await.unwrap_err().to_string();
        assert!(
            lean_error.contains(setting) && lean_error.contains(why),
            "{lean_error}"
        );
        let e = RedisClient::new(cfg).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::InvalidConfig(_)), "{text}");
        assert!(text.contains(setting) && text.contains(why), "{text}");
    }
    let text = RedisClient::new(tls_config(&server).with_tls_ca(&missing))
        .unwrap_err()
        .to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
}
