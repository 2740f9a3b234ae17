//! Stop signals: `switchyard sub --group` stops on SIGTERM (the stop signal
//! of systemd, Docker and Kubernetes) the way it stops on Ctrl-C — acks
//! flushed, fetched entries handed back to the group, exit 0 — against a
//! real `redis-server` (testkit, free loopback port).
#![cfg(all(unix, feature = "redis-streams"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_testkit::RedisServer;

fn bin() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("switchyard"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Pending entries of `group` on the stream of `topic` (XPENDING summary).
fn pending(server: &RedisServer, topic: &str, group: &str) -> i64 {
    let key = format!("switchyard:{{{topic}}}");
    let reply = server.cmd(&["XPENDING", &key, group]).unwrap();
    reply.as_array().unwrap()[0].as_int().unwrap()
}

/// Reproduction (before the fix): 200 messages; `sub --group` prints 10 of
/// them (held by a full stdout pipe) and gets SIGTERM; it died at once (signal exit, no status code),
/// and the entries it had fetched beyond the 10 (its whole read-ahead)
/// stayed pending under it until the group's ack timeout (30 s).
///
/// Now: exit 0, every printed delivery is acked, and a second member
/// receives exactly the others at once; then nothing is pending.
#[test]
fn sub_group_hands_back_and_exits_0_on_sigterm() {
    let server = RedisServer::start().expect("redis-server (scripts/test installs it)");
    let url = format!(
        "redis+streams://{}",
        server.url().strip_prefix("redis://").unwrap()
    );
    let topic = "jobs.term";
    // A 4 KiB header makes each printed line larger than 4 KiB: once the
    // test stops reading, the pipe (64 KiB) fills and `sub` is held in the
    // middle of the 200 with the rest of its read-ahead fetched and pending.
    let pad = format!("pad={}", "x".repeat(4096));
    let out = bin()
        .env("SWITCHYARD_URL", &url)
        .args([
            "pub", "-t", topic, "--count", "200", "--batch", "50", "-H", &pad,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let mut child = bin()
        .env("SWITCHYARD_URL", &url)
        .args(["sub", "-t", topic, "--group", "workers", "--consumer", "m1"])
        .args(["--from", "earliest", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = Vec::new();
    let mut line = String::new();
    while first.len() < 10 {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "sub ended early");
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        first.push(v["payload"].as_str().unwrap().to_owned());
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    // The rest of what it printed (it may print a few more before the
    // signal is seen): every printed delivery is acked before the next.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut printed = first;
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        printed.push(v["payload"].as_str().unwrap().to_owned());
        assert!(Instant::now() < deadline, "sub did not stop after SIGTERM");
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "sub still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}, stderr: {stderr}"
    );

    // A second member gets exactly the rest at once: handed-back entries
    // are claimable immediately, while stranded ones would wait for the
    // group's 30 s ack timeout, far beyond this member's --timeout 10.
    let rest = 200 - printed.len();
    let out = bin()
        .env("SWITCHYARD_URL", &url)
        .args(["sub", "-t", topic, "--group", "workers", "--consumer", "m2"])
        .args(["--json", "--count", &rest.to_string(), "--timeout", "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut all: Vec<String> = printed;
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        all.push(v["payload"].as_str().unwrap().to_owned());
    }
    assert_eq!(all.len(), 200);
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 200, "no message twice");
    assert_eq!(pending(&server, topic, "workers"), 0);
}
