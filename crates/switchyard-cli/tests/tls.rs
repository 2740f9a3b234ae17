//! `pub`, `sub` and `doctor` over TLS, against a TLS-only `redis-server`
//! that requires a client certificate, with a private CA generated for the
//! run (testkit).
//!
//! Reproduction of the defect (issue 14): the CLI had no TLS at all;
//! `switchyard doctor` with a `rediss+streams://` URL printed
//! "FAIL reachable" next to "ok tls on", and `pub`/`sub` failed with
//! "enable the `tls` feature of the `switchyard` crate" (a feature that did
//! not exist).
#![cfg(all(feature = "redis-streams", feature = "redis-pubsub", feature = "tls"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use switchyard_testkit::{RedisOptions, RedisServer, TlsClientAuth, TlsOptions};

fn switchyard(url: &str) -> Command {
    let mut cmd = cargo_bin_cmd!("switchyard");
    cmd.env("SWITCHYARD_URL", url)
        .env_remove("RUST_LOG")
        .timeout(Duration::from_secs(60));
    cmd
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A TLS-only server requiring a client certificate.
fn server() -> RedisServer {
    RedisServer::start_with(
        RedisOptions::default().tls(
            TlsOptions::default()
                .client_auth(TlsClientAuth::Required)
                .tls_only(true),
        ),
    )
    .expect("redis-server must be installed (scripts/test installs it)")
}

/// `scheme://127.0.0.1:TLS_PORT?tls_ca=CA&tls_cert=…&tls_key=…`.
fn url(server: &RedisServer, scheme: &str, ca: &Path) -> String {
    let client = server.tls_client_paths().unwrap();
    format!(
        "{scheme}://127.0.0.1:{}?tls_ca={}&tls_cert={}&tls_key={}",
        server.tls_port().unwrap(),
        ca.display(),
        client.cert.display(),
        client.key.display()
    )
}

#[test]
fn pub_and_sub_over_tls_with_a_private_ca() {
    let server = server();
    let url = url(
        &server,
        "rediss+streams",
        server.tls_ca_cert_path().unwrap(),
    );
    let out = switchyard(&url)
        .args(["pub", "-t", "orders.tls", "--count", "200", "--batch", "20"])
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(
        stdout.starts_with("published 200 messages to orders.tls"),
        "{stdout}"
    );
    let out = switchyard(&url)
        .args(["sub", "-t", "orders.tls", "--from", "earliest"])
        .args(["--count", "200", "--timeout", "30"])
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert_eq!(stdout.lines().count(), 200, "{stdout}");
    assert_eq!(
        server
            .cmd(&["XLEN", "switchyard:{orders.tls}"])
            .unwrap()
            .as_int(),
        Some(200)
    );
}

#[test]
fn backplane_over_tls() {
    let server = server();
    let url = url(&server, "rediss+pubsub", server.tls_ca_cert_path().unwrap());
    let mut sub = std::process::Command::new(assert_cmd::cargo::cargo_bin!("switchyard"))
        .env("SWITCHYARD_URL", &url)
        .env_remove("RUST_LOG")
        .args(["sub", "-t", "chat.*", "--count", "5", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // The backplane keeps nothing: publish until the subscriber has its
    // five (bounded in count).
    let mut published = 0;
    while published < 2000 {
        if sub.try_wait().unwrap().is_some() {
            break;
        }
        let out = switchyard(&url)
            .args(["pub", "-t", "chat.lobby", "--count", "5"])
            .output()
            .unwrap();
        ok(&out);
        published += 5;
    }
    let out = sub.wait_with_output().unwrap();
    let stdout = ok(&out);
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
}

#[test]
fn doctor_reports_reachable_over_tls() {
    let server = server();
    for scheme in ["rediss+streams", "rediss+pubsub"] {
        let ca = server.tls_ca_cert_path().unwrap();
        let url = url(&server, scheme, ca);
        let out = switchyard(&url).args(["doctor"]).output().unwrap();
        let stdout = ok(&out);
        assert!(stdout.contains("ok    reachable"), "{stdout}");
        let tls = stdout.lines().find(|l| l.contains(" tls ")).unwrap();
        assert!(tls.trim_start().starts_with("ok"), "{stdout}");
        assert!(tls.contains(&format!("CA {}", ca.display())), "{stdout}");
    }
}

/// A CA that did not sign the server's certificate: doctor says so
/// (unknown issuer), not "unreachable".
#[test]
fn doctor_names_an_unknown_issuer() {
    let server = server();
    let other = server.pki().unwrap().other_ca_cert();
    let url = url(&server, "rediss+streams", other);
    let out = switchyard(&url).args(["doctor"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("reachable")).unwrap();
    assert!(line.trim_start().starts_with("FAIL"), "{stdout}");
    assert!(line.contains("unknown issuer"), "{stdout}");
    assert!(!line.contains("could not connect"), "{stdout}");
}

/// Without `tls_ca`, the platform's roots are trusted, and with them the
/// file `SSL_CERT_FILE` names (issue 14: `SSL_CERT_FILE` was ignored; only
/// the built-in web roots were loaded).
#[test]
fn ssl_cert_file_is_trusted_by_default() {
    let server = server();
    let client = server.tls_client_paths().unwrap();
    let url = format!(
        "rediss+streams://127.0.0.1:{}?tls_cert={}&tls_key={}",
        server.tls_port().unwrap(),
        client.cert.display(),
        client.key.display()
    );
    let out = switchyard(&url)
        .env("SSL_CERT_FILE", server.tls_ca_cert_path().unwrap())
        .env_remove("SSL_CERT_DIR")
        .args(["doctor"])
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("ok    reachable"), "{stdout}");
    assert!(
        stdout.contains("trusting the platform's root certificates"),
        "{stdout}"
    );
    // The same without SSL_CERT_FILE: the private CA is unknown (or, on
    // a machine without a trust store, there are no roots at all).
    let out = switchyard(&url)
        .env_remove("SSL_CERT_FILE")
        .args(["doctor"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("reachable")).unwrap();
    assert!(
        line.contains("unknown issuer") || line.contains("no root certificates found"),
        "{stdout}"
    );
}
