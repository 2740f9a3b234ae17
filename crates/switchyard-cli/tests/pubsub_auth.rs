//! `switchyard pub` over the Pub/Sub backplane against a Redis that asks
//! for a password the URL does not give (testkit, free loopback port).
//!
//! Reproduction of the defect: `switchyard pub --count 1000` printed
//! "published 1000 messages" and exited 0 while Redis refused every
//! `PUBLISH` with NOAUTH, because the backplane's start-up never made a
//! round trip to Redis.
#![cfg(feature = "redis-pubsub")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use assert_cmd::cargo::cargo_bin_cmd;
use switchyard_testkit::{RedisOptions, RedisServer};

#[test]
fn pub_without_the_password_fails_with_one_line_and_exit_code_1() {
    let server = RedisServer::start_with(RedisOptions::default().password("s3cret"))
        .expect("redis-server must be installed (scripts/test installs it)");
    let addr = server.addr();
    let out = cargo_bin_cmd!("switchyard")
        .env("SWITCHYARD_URL", format!("redis+pubsub://{addr}"))
        .env_remove("RUST_LOG")
        .args(["pub", "-t", "orders.created", "--count", "1000"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stdout.contains("published"), "stdout: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    let line = stderr.trim_end();
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains(&addr.to_string()), "{line}");
    assert!(line.contains("NOAUTH"), "{line}");
    assert!(line.contains("put the password in the URL"), "{line}");

    // With the password, the same command publishes all 1000.
    let out = cargo_bin_cmd!("switchyard")
        .env("SWITCHYARD_URL", format!("redis+pubsub://:s3cret@{addr}"))
        .env_remove("RUST_LOG")
        .args(["pub", "-t", "orders.created", "--count", "1000"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("published 1000 messages to orders.created"),
        "{stdout}"
    );
}
