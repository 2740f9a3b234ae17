//! `switchyard::connect` over TLS with a private CA and a client
//! certificate, for both Redis adapters (a TLS-only test server).
//!
//! Reproduction (issue 14): `connect("rediss+streams://…")` through the
//! facade failed with "enable the `tls` feature of the `switchyard` crate",
//! a feature the crate did not have; with the adapters' own `tls` feature a
//! private CA failed with `invalid peer certificate: UnknownIssuer` and no
//! way to give the CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard::prelude::*;
use switchyard_testkit::{RedisOptions, RedisServer, TlsClientAuth, TlsOptions};

fn url(server: &RedisServer, scheme: &str) -> String {
    let ca = server.tls_ca_cert_path().unwrap();
    let client = server.tls_client_paths().unwrap();
    format!(
        "{scheme}://127.0.0.1:{}?namespace=facade-tls&tls_ca={}&tls_cert={}&tls_key={}",
        server.tls_port().unwrap(),
        ca.display(),
        client.cert.display(),
        client.key.display()
    )
}

#[tokio::test]
async fn both_redis_adapters_over_tls() {
    let server = RedisServer::start_with(
        RedisOptions::default().tls(
            TlsOptions::default()
                .client_auth(TlsClientAuth::Required)
                .tls_only(true),
        ),
    )
    .unwrap();
    for (scheme, name) in [
        ("rediss+streams", "redis-streams"),
        ("rediss+pubsub", "redis-pubsub"),
    ] {
        let transport = switchyard::connect(&url(&server, scheme)).await.unwrap();
        assert_eq!(transport.name(), name);
        let topic = Topic::new("facade.tls").unwrap();
        let mut sub = transport
            .subscribe(Subscription::new(topic.clone()))
            .await
            .unwrap();
        transport
            .publish(Message::new(topic.clone(), "over tls"))
            .await
            .unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&d.payload()[..], b"over tls");
        transport.close().await.unwrap();
    }
}

/// A wrong CA through the facade: `Error::Tls` (unknown issuer), not
/// transient.
#[tokio::test]
async fn wrong_ca_through_the_facade() {
    let server = RedisServer::start_with(
        RedisOptions::default().tls(TlsOptions::default().client_auth(TlsClientAuth::None)),
    )
    .unwrap();
    let other = server.pki().unwrap().other_ca_cert();
    let url = format!(
        "rediss+streams://127.0.0.1:{}?tls_ca={}",
        server.tls_port().unwrap(),
        other.display()
    );
    let e = switchyard::connect(&url).await.err().unwrap();
    assert!(
        matches!(
            e,
            Error::Tls {
                kind: "unknown issuer",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_transient());
}
