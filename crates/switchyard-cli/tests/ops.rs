//! `pub`, `sub`, `topics`, `dlq` and `doctor` without a Redis server:
//! exit codes (0 success, 1 runtime failure, 2 bad usage) and one-line
//! errors that name what failed, never a password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;

fn switchyard() -> Command {
    let mut cmd = cargo_bin_cmd!("switchyard");
    cmd.env_remove("SWITCHYARD_URL")
        .env_remove("RUST_LOG")
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

fn run(args: &[&str]) -> Output {
    switchyard().args(args).output().unwrap()
}

/// Asserts exit `code` and a single `error: ` line on stderr containing
/// every one of `needles`; returns that line.
fn fails(out: &Output, code: i32, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in {stderr}");
    }
    stderr
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn pub_prints_one_id_on_memory() {
    let out = run(&["pub", "--topic", "orders.created", "--data", "hi"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        stdout.trim().parse::<switchyard::MessageId>().is_ok(),
        "{stdout}"
    );
}

#[test]
fn pub_count_prints_a_summary() {
    let out = run(&[
        "pub", "-t", "a.b", "--count", "250", "--batch", "100", "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 250);
    assert_eq!(v["topic"], "a.b");
}

#[test]
fn a_bad_topic_is_bad_usage() {
    let out = run(&["pub", "--topic", "no spaces!", "--data", "x"]);
    fails(&out, 2, &["invalid topic", "--topic"]);
    let out = run(&["sub", "--topic", "a..b", "--count", "1"]);
    fails(&out, 2, &["--topic"]);
}

#[test]
fn an_unknown_scheme_and_a_bad_url_fail_with_one_line() {
    let out = run(&["pub", "--url", "kafka://x", "-t", "a", "--data", "x"]);
    fails(&out, 1, &["unknown url scheme", "kafka"]);
    let out = run(&[
        "pub",
        "--url",
        "redis+streams://127.0.0.1:notaport",
        "-t",
        "a",
    ]);
    fails(&out, 1, &["invalid url"]);
}

#[test]
fn an_unreachable_server_names_the_address_and_hides_the_password() {
    let port = closed_port();
    let url = format!("redis+streams://app:hunter2@127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let out = run(&["pub", "--url", &url, "-t", "a", "--data", "x"]);
    let line = fails(&out, 1, &["could not connect to redis at", &addr]);
    assert!(!line.contains("hunter2"));
    let out = run(&["sub", "--url", &url, "-t", "a", "--count", "1"]);
    fails(&out, 1, &[&addr]);
    let out = run(&["topics", "--url", &url]);
    fails(&out, 1, &[&addr]);
    let out = run(&["dlq", "list", "--url", &url, "-t", "a"]);
    fails(&out, 1, &[&addr]);
    // doctor prints its checklist, then fails.
    let out = run(&["doctor", "--url", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL  reachable"), "{stdout}");
    assert!(!stdout.contains("hunter2"));
    fails(&out, 1, &["not usable", "reachable"]);
}

#[test]
fn sub_times_out_with_exit_1() {
    let out = run(&["sub", "-t", "quiet", "--count", "1", "--timeout", "0.2"]);
    fails(&out, 1, &["timed out", "0 of 1", "quiet"]);
    // Without --count, the timeout just ends listening.
    let out = run(&["sub", "-t", "quiet", "--timeout", "0.2"]);
    assert!(out.status.success());
}

#[test]
fn inspection_explains_what_memory_and_pubsub_keep() {
    let out = run(&["topics"]);
    fails(&out, 1, &["memory://", "redis+streams://"]);
    let out = run(&["dlq", "list", "-t", "a"]);
    fails(&out, 1, &["memory://", "redis+streams://"]);
    let out = run(&[
        "dlq",
        "list",
        "--url",
        "redis+pubsub://127.0.0.1:1",
        "-t",
        "a",
    ]);
    fails(&out, 1, &["at-most-once"]);
}

#[test]
fn dlq_replay_needs_an_id_or_all() {
    let out = run(&["dlq", "replay", "-t", "a"]);
    fails(&out, 2, &["--id", "--all"]);
    let out = run(&["dlq", "purge", "-t", "a", "--id", "not-an-id"]);
    fails(&out, 2, &["--id"]);
}

#[test]
fn doctor_on_memory_has_nothing_to_check() {
    let out = run(&["doctor", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["usable"], true);
    assert_eq!(v["checks"][0]["status"], "ok");
}
