//! `switchyard demo` against a real `redis-server` (started by the testkit
//! on a free loopback port; `scripts/test` installs redis-server).
#![cfg(all(feature = "redis-streams", feature = "redis-pubsub"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use switchyard_testkit::{RedisOptions, RedisServer};

fn switchyard() -> Command {
    let mut cmd = cargo_bin_cmd!("switchyard");
    cmd.env_remove("SWITCHYARD_URL")
        .env_remove("RUST_LOG")
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

fn server() -> RedisServer {
    RedisServer::start_with(RedisOptions::default().acl_user("app", "hunter2"))
        .expect("redis-server must be installed (scripts/test installs it)")
}

/// `redis://app:hunter2@127.0.0.1:PORT` as `scheme://app:hunter2@127.0.0.1:PORT`.
fn url(server: &RedisServer, scheme: &str) -> String {
    let url = server.url();
    format!("{scheme}://{}", url.strip_prefix("redis://").unwrap())
}

#[test]
fn demo_runs_on_redis_streams() {
    let server = server();
    let url = url(&server, "redis+streams");
    assert!(url.contains("hunter2"));
    // Twice: the per-run topic prefix keeps the runs apart.
    for _ in 0..2 {
        let output = switchyard().args(["demo", "--url", &url]).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.starts_with(&format!(
            "switchyard demo on redis+streams://app:***@127.0.0.1:{} (redis-streams adapter)",
            server.port()
        )));
        for (label, n) in [
            ("audited", 30),
            ("fulfilled", 29),
            ("redelivered", 1),
            ("dead-lettered", 1),
        ] {
            let line = stdout.lines().find(|l| l.starts_with(label)).unwrap();
            assert_eq!(
                line[label.len()..].split_whitespace().next(),
                Some(n.to_string().as_str()),
                "{stdout}"
            );
        }
        assert!(stdout.contains(".orders.created:dlq"), "{stdout}");
        assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    }
}

#[test]
fn demo_explains_what_redis_pubsub_lacks() {
    let server = server();
    let output = switchyard()
        .args(["demo", "--url", &url(&server, "redis+pubsub")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs consumer groups and dead letters"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
}

#[test]
fn wrong_password_is_one_line_without_it() {
    let server = server();
    let url = url(&server, "redis+streams").replace("hunter2", "wrong-s3cret");
    let output = switchyard().args(["demo", "--url", &url]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("wrong-s3cret") && !stdout.contains("wrong-s3cret"),
        "{stderr}"
    );
}
