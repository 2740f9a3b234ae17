//! `switchyard doctor` suggests the least-privilege ACL line of
//! docs/security.md for the URL's namespace and adapter; a user created
//! with exactly that line passes `doctor --strict`, and `topics`, `dlq`,
//! `pub` work as that user.
//!
//! Reproduction of the defects these guard (issue 14): `doctor` suggested
//! `~switchyard:* &switchyard:* +@stream +@pubsub +@scripting +scan +ping`,
//! with which `PSUBSCRIBE switchyard:ps.*` is refused (patterns are checked
//! literally) and `topics` fails (no XINFO STREAM); with the commands
//! docs/cli.md listed, `doctor` itself failed (no PING).
#![cfg(all(feature = "redis-streams", feature = "redis-pubsub"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use switchyard_testkit::{Persistence, RedisOptions, RedisServer, ServerKind};

const PASSWORD: &str = "ops-s3cret";

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

/// A durable server: `doctor --strict` warns about anything less.
fn server() -> RedisServer {
    RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof))
        .expect("redis-server must be installed (scripts/test installs it)")
}

/// The `acl` check of `doctor --json` run as the default user.
fn suggested(url: &str, extra: &[&str]) -> String {
    let out = switchyard(url)
        .args(["doctor", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let acl = checks.iter().find(|c| c["check"] == "acl").unwrap();
    assert_eq!(acl["status"], "ok");
    acl["detail"].as_str().unwrap().to_owned()
}

/// `" +client|setinfo"` on servers that know `CLIENT SETINFO` (Redis >=
/// 7.2, Valkey: redis-rs sends it on every connection), else `""`.
fn setinfo(server: &RedisServer) -> &'static str {
    let version = server.redis_version().unwrap();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if server.kind() == ServerKind::Valkey || v >= (7, 2) {
        " +client|setinfo"
    } else {
        ""
    }
}

/// Runs the suggested line for `user` exactly as printed.
fn create(server: &RedisServer, line: &str, user: &str) {
    let line = line.replace("<user>", user).replace("<password>", PASSWORD);
    let args: Vec<&str> = line.split_whitespace().collect();
    let reply = server.cmd(&args).unwrap();
    assert!(reply.is_ok(), "{line}: {reply:?}");
}

#[test]
fn streams_line_passes_doctor_strict_and_runs_topics_and_dlq() {
    let server = server();
    let addr = server.addr();
    let line = suggested(&format!("redis+streams://{addr}?namespace=app"), &[]);
    assert_eq!(
        line,
        format!(
            "ACL SETUSER <user> reset on ><password> resetkeys resetchannels ~app:* -@all +ping +role +xadd +xread +xrange +xrevrange +scan +xgroup|create +xreadgroup +xack +xpending +xclaim +xautoclaim +xinfo|consumers +xgroup|delconsumer +evalsha +script|load +client|id +client|unblock +xinfo|stream +xinfo|groups +xlen +xdel +xtrim +info +del{}",
            setinfo(&server)
        )
    );
    create(&server, &line, "ops");
    let url = format!("redis+streams://ops:{PASSWORD}@{addr}?namespace=app");
    let stdout = ok(&switchyard(&url)
        .args(["doctor", "--strict"])
        .output()
        .unwrap());
    assert!(stdout.contains("result: usable\n"), "{stdout}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    ok(&switchyard(&url)
        .args(["pub", "-t", "orders", "--count", "3"])
        .output()
        .unwrap());
    let topics = ok(&switchyard(&url)
        .args(["topics", "--json"])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&topics).unwrap();
    assert_eq!(v[0]["topic"], "orders", "{topics}");
    assert_eq!(v[0]["length"], 3, "{topics}");
    let list = ok(&switchyard(&url)
        .args(["dlq", "list", "-t", "orders", "--json"])
        .output()
        .unwrap());
    assert_eq!(list.lines().count(), 0, "{list}");
    // Nothing was denied along the way but doctor's optional CONFIG GET
    // (docs/security.md: it reads `save` and `appendfsync` when allowed).
    let log = server.cmd(&["ACL", "LOG"]).unwrap();
    let objects: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let f = e.as_array().unwrap();
            let at = f.iter().position(|v| v.as_str() == Some("object")).unwrap();
            f[at + 1].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(objects, ["config|get"], "{log:?}");
}

#[test]
fn pubsub_line_allows_exactly_the_patterns_given() {
    let server = server();
    let addr = server.addr();
    let base = format!("redis+pubsub://{addr}?namespace=app");
    let line = suggested(&base, &["--pattern", "chat.*"]);
    assert_eq!(
        line,
        format!(
            "ACL SETUSER <user> reset on ><password> resetkeys resetchannels &app:* &app:chat.* -@all +ping +role +publish +subscribe +unsubscribe +psubscribe +punsubscribe +pubsub|numsub +info{}",
            setinfo(&server)
        )
    );
    create(&server, &line, "svc");
    let url = format!("redis+pubsub://svc:{PASSWORD}@{addr}?namespace=app");
    let stdout = ok(&switchyard(&url)
        .args(["doctor", "--strict", "--pattern", "chat.*"])
        .output()
        .unwrap());
    assert!(stdout.contains("PSUBSCRIBE app:chat.*"), "{stdout}");
    // A pattern the line does not allow fails the check, naming it.
    let out = switchyard(&url)
        .args(["doctor", "--pattern", "news.*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let perms = stdout.lines().find(|l| l.contains("permissions")).unwrap();
    assert!(
        perms.contains("FAIL") && perms.contains("PSUBSCRIBE app:news.*"),
        "{stdout}"
    );
    let acl = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("acl"))
        .unwrap();
    assert!(acl.contains("&app:news.*"), "{stdout}");
}

#[test]
fn topics_without_xinfo_stream_names_the_missing_permission() {
    let server = server();
    let addr = server.addr();
    let line = suggested(&format!("redis+streams://{addr}?namespace=app"), &[]);
    create(&server, &line.replace(" +xinfo|stream", ""), "ops");
    let url = format!("redis+streams://ops:{PASSWORD}@{addr}?namespace=app");
    ok(&switchyard(&url)
        .args(["pub", "-t", "orders"])
        .output()
        .unwrap());
    let out = switchyard(&url).args(["topics"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied: redis refused XINFO STREAM")
            && stderr.contains("+xinfo|stream"),
        "{stderr}"
    );
}

#[test]
fn dlq_purge_without_xtrim_names_the_missing_permission() {
    let server = server();
    let addr = server.addr();
    let line = suggested(&format!("redis+streams://{addr}?namespace=app"), &[]);
    create(&server, &line.replace(" +xtrim", ""), "ops");
    // One dead letter to purge.
    let id = server
        .cmd(&["XADD", "app:{orders}:dlq", "*", "k", "v"])
        .unwrap();
    assert!(id.as_str().is_some(), "{id:?}");
    let url = format!("redis+streams://ops:{PASSWORD}@{addr}?namespace=app");
    let out = switchyard(&url)
        .args(["dlq", "purge", "-t", "orders", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied: redis refused XTRIM") && stderr.contains("+xtrim"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}
