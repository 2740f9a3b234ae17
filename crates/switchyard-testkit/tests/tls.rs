//! TLS test servers: reachable over TLS with the generated CA and client
//! certificate, and refused with the wrong CA, an expired or wrong-name
//! server certificate, or a missing/foreign client certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use switchyard_testkit::{
    RedisOptions, RedisServer, RespConnection, ServerCertificate, TestkitError, TlsClientAuth,
    TlsConnect, TlsOptions,
};

fn tls_server(tls: TlsOptions) -> RedisServer {
    RedisServer::start_with(RedisOptions::default().tls(tls)).unwrap()
}

/// `PING` over TLS with `tls`; the reply or the error.
fn tls_ping(server: &RedisServer, tls: &TlsConnect) -> Result<String, TestkitError> {
    let mut conn = RespConnection::connect_tls(server.tls_addr().unwrap(), tls)?;
    assert!(conn.is_tls());
    let reply = conn.command(&["PING"])?;
    Ok(reply.as_str().unwrap_or_default().to_owned())
}

/// Runs the server kind's cli against the TLS port with `args` and `PING`.
fn cli_ping(server: &RedisServer, args: &[&str]) -> Output {
    let cli = RedisServer::cli_path_for(server.kind()).unwrap_or_else(|| {
        panic!(
            "{} not found on PATH: install redis-tools (or valkey-tools)",
            server.kind().cli_binary()
        )
    });
    let port = server.tls_port().unwrap().to_string();
    Command::new(cli)
        .args(["--tls", "-h", "127.0.0.1", "-p", &port])
        .args(args)
        .arg("PING")
        .output()
        .unwrap()
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn tls_server_answers_over_tls_with_the_ca_and_client_certificate() {
    let redis = tls_server(TlsOptions::default());
    let tls_port = redis.tls_port().unwrap();
    assert_ne!(tls_port, redis.port());
    assert!(redis.tls_addr().unwrap().ip().is_loopback());
    assert_eq!(
        redis.tls_url().unwrap(),
        format!("rediss://127.0.0.1:{tls_port}")
    );
    // The plain port stays open for the testkit.
    assert_eq!(redis.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
    let auth = redis.cmd(&["CONFIG", "GET", "tls-auth-clients"]).unwrap();
    assert_eq!(auth.as_array().unwrap()[1].as_str(), Some("yes"));

    // rustls, verifying chain, dates and the 127.0.0.1 IP SAN ...
    let mut conn = redis.connect_tls().unwrap();
    assert!(conn.is_tls());
    assert!(conn.command(&["SET", "k", "v"]).unwrap().is_ok());
    assert_eq!(redis.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
    // ... and the localhost DNS SAN.
    let by_name = redis.tls_connect().unwrap().server_name("localhost");
    assert_eq!(tls_ping(&redis, &by_name).unwrap(), "PONG");

    // redis-cli (OpenSSL) with the CA and the client certificate.
    let pki = redis.pki().unwrap();
    let out = cli_ping(
        &redis,
        &[
            "--cacert",
            path(pki.ca_cert()),
            "--cert",
            path(&pki.client().cert),
            "--key",
            path(&pki.client().key),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "PONG",
        "{out:?}"
    );
}

#[test]
fn required_client_auth_refuses_clients_without_a_certificate_from_the_ca() {
    let redis = tls_server(TlsOptions::default().client_auth(TlsClientAuth::Required));
    let pki = redis.pki().unwrap();
    let base = redis.tls_connect().unwrap();

    let err = tls_ping(&redis, &base.clone().without_client()).unwrap_err();
    assert!(err.io_kind().is_some(), "expected an I/O error, got {err}");
    let err = tls_ping(&redis, &base.clone().client(pki.other_ca_client().clone())).unwrap_err();
    assert!(err.io_kind().is_some(), "expected an I/O error, got {err}");
    assert_eq!(tls_ping(&redis, &base).unwrap(), "PONG");

    let out = cli_ping(&redis, &["--cacert", path(pki.ca_cert())]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("PONG"),
        "a client without certificate got an answer: {out:?}"
    );
}

#[test]
fn optional_and_no_client_auth_accept_clients_without_a_certificate() {
    for auth in [TlsClientAuth::Optional, TlsClientAuth::None] {
        let redis = tls_server(TlsOptions::default().client_auth(auth));
        let anonymous = redis.tls_connect().unwrap().without_client();
        assert_eq!(tls_ping(&redis, &anonymous).unwrap(), "PONG", "{auth:?}");
        assert_eq!(
            tls_ping(&redis, &redis.tls_connect().unwrap()).unwrap(),
            "PONG"
        );
    }
    // Optional: a certificate that is presented must come from the CA.
    let redis = tls_server(TlsOptions::default().client_auth(TlsClientAuth::Optional));
    let foreign = redis
        .tls_connect()
        .unwrap()
        .client(redis.pki().unwrap().other_ca_client().clone());
    assert!(tls_ping(&redis, &foreign).is_err());
}

#[test]
fn a_client_trusting_another_ca_refuses_the_server() {
    let redis = tls_server(TlsOptions::default());
    let pki = redis.pki().unwrap();
    let wrong_ca = TlsConnect::new(pki.other_ca_cert()).client(pki.client().clone());
    let err = tls_ping(&redis, &wrong_ca).unwrap_err();
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::InvalidData),
        "{err}"
    );
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let out = cli_ping(
        &redis,
        &[
            "--cacert",
            path(pki.other_ca_cert()),
            "--cert",
            path(&pki.client().cert),
            "--key",
            path(&pki.client().key),
        ],
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("PONG"),
        "{out:?}"
    );
}

#[test]
fn an_expired_server_certificate_is_refused() {
    let redis = tls_server(TlsOptions::default().server_certificate(ServerCertificate::Expired));
    assert_eq!(
        redis.tls_server_paths().unwrap(),
        redis.pki().unwrap().expired_server()
    );
    let err = tls_ping(&redis, &redis.tls_connect().unwrap()).unwrap_err();
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::InvalidData),
        "{err}"
    );
    assert!(err.to_string().contains("certificate expired"), "{err}");
}

#[test]
fn a_wrong_name_server_certificate_is_refused() {
    let redis = tls_server(TlsOptions::default().server_certificate(ServerCertificate::WrongName));
    let err = tls_ping(&redis, &redis.tls_connect().unwrap()).unwrap_err();
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::InvalidData),
        "{err}"
    );
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // The certificate itself is fine for the name it carries.
    let right_name = redis
        .tls_connect()
        .unwrap()
        .server_name("wrong-name.invalid");
    assert_eq!(tls_ping(&redis, &right_name).unwrap(), "PONG");
}

#[test]
fn restart_keeps_the_tls_port_and_files() {
    let mut redis = tls_server(TlsOptions::default());
    let (port, tls_port) = (redis.port(), redis.tls_port());
    let ca = std::fs::read(redis.tls_ca_cert_path().unwrap()).unwrap();
    redis.restart().unwrap();
    assert_eq!((redis.port(), redis.tls_port()), (port, tls_port));
    assert_eq!(
        std::fs::read(redis.tls_ca_cert_path().unwrap()).unwrap(),
        ca
    );
    assert_eq!(
        redis
            .connect_tls()
            .unwrap()
            .command(&["PING"])
            .unwrap()
            .as_str(),
        Some("PONG")
    );
}

#[test]
fn tls_only_closes_the_plain_port_and_probes_over_tls() {
    let mut redis = RedisServer::start_with(
        RedisOptions::default()
            .password("tls pw")
            .tls(TlsOptions::default().tls_only(true)),
    )
    .unwrap();
    assert_eq!(redis.tls_port(), Some(redis.port()));
    assert_eq!(
        redis.url(),
        format!("rediss://:tls%20pw@127.0.0.1:{}", redis.port())
    );
    assert_eq!(redis.tls_url(), Some(redis.url()));
    let port = redis.cmd(&["CONFIG", "GET", "port"]).unwrap();
    assert_eq!(port.as_array().unwrap()[1].as_str(), Some("0"));
    assert!(redis.connect().unwrap().is_tls());
    // A plain-text client gets no answer on the TLS port.
    let plain = RespConnection::connect(redis.addr()).and_then(|mut c| c.command(&["PING"]));
    assert!(plain.is_err(), "{plain:?}");

    redis.restart().unwrap();
    assert_eq!(redis.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
    redis.stop().unwrap();
    assert!(!redis.is_running());
}

#[test]
fn tls_only_with_a_broken_certificate_is_a_clear_setting_error() {
    let err = RedisServer::start_with(
        RedisOptions::default().tls(
            TlsOptions::default()
                .tls_only(true)
                .server_certificate(ServerCertificate::Expired),
        ),
    )
    .unwrap_err();
    assert!(matches!(err, TestkitError::InvalidSetting(_)), "{err}");
    assert!(err.to_string().contains("tls_only"), "{err}");
}

#[test]
fn tls_accessors_on_a_plain_server() {
    let redis = RedisServer::start().unwrap();
    assert_eq!(redis.tls_port(), None);
    assert_eq!(redis.tls_url(), None);
    assert!(redis.pki().is_none());
    let err = redis.connect_tls().unwrap_err();
    assert!(matches!(err, TestkitError::InvalidSetting(_)), "{err}");
}
