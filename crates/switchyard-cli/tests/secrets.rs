//! No subcommand ever prints a password: not in errors, not in its output,
//! not in its logs at `RUST_LOG=trace`, whatever punctuation the password
//! holds (raw or percent-encoded) and whatever shape the URL has (`--url`,
//! `--url=`, `SWITCHYARD_URL`, or a URL typed where another argument was
//! expected).
//!
//! Reproduction of the defect:
//! `switchyard pub --url 'redis+streams://app:S3cretPW#x@127.0.0.1:7441' -t t -d x`
//! printed `error: invalid url "redis+streams://app:S3cretPW#x@127.0.0.1:7441": invalid port number`.
#![cfg(all(feature = "redis-streams", feature = "redis-pubsub"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use switchyard_testkit::RedisServer;

/// Every test password starts with it; it must never be printed.
const MARKER: &str = "S3cretPW";

fn punctuation() -> Vec<char> {
    (0x21u8..0x7f)
        .map(char::from)
        .filter(char::is_ascii_punctuation)
        .collect()
}

fn secret(p: char) -> String {
    format!("{MARKER}{p}x")
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A server whose ACL user `app` has one password per punctuation character.
fn server() -> RedisServer {
    let server = RedisServer::start().expect("redis-server must be installed");
    let passwords: Vec<String> = punctuation()
        .iter()
        .map(|p| format!(">{}", secret(*p)))
        .collect();
    let mut acl = vec!["ACL", "SETUSER", "app", "on", "~*", "&*", "+@all"];
    acl.extend(passwords.iter().map(String::as_str));
    server.cmd(&acl).expect("ACL SETUSER");
    server
}

/// `switchyard` with logs at trace and no URL from the environment.
fn switchyard() -> Command {
    let mut cmd = cargo_bin_cmd!("switchyard");
    cmd.env("RUST_LOG", "trace")
        .env_remove("SWITCHYARD_URL")
        .timeout(Duration::from_secs(90));
    cmd
}

/// Runs `cmd`; its stdout and stderr hold no form of a test password.
fn run_clean(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().expect("switchyard runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = |needle: &str| text.matches(needle).count();
    assert_eq!(shown(MARKER), 0, "{what} printed a password:\n{text}");
    assert_eq!(
        shown(&percent_encode(MARKER)),
        0,
        "{what} printed an encoded password:\n{text}"
    );
    assert_ne!(out.status.code(), Some(101), "{what} panicked:\n{text}");
    assert!(out.status.code().is_some(), "{what} was killed:\n{text}");
    out
}

/// Every subcommand, with arguments that make it end by itself.
const COMMANDS: &[&[&str]] = &[
    &["pub", "-t", "secrets.t", "-d", "x"],
    &["sub", "-t", "secrets.t", "-n", "1", "--timeout", "1"],
    &["topics"],
    &["dlq", "list", "-t", "secrets.t"],
    &["doctor"],
    &["bench", "-n", "20"],
    &["demo", "--timeout", "30"],
];

/// Whether `command` must succeed on a working URL of `scheme` (`sub` ends
/// on its timeout; the backplane keeps no topics, groups or dead letters).
fn must_succeed(command: &str, scheme: &str) -> bool {
    match command {
        "sub" => false,
        "topics" | "dlq" | "demo" => scheme == "redis+streams",
        _ => true,
    }
}

#[test]
fn every_command_hides_the_password_in_every_url_shape() {
    let server = server();
    let addr = server.addr().to_string();
    let mut runs = 0;
    let mut succeeded = 0;
    for scheme in ["redis+streams", "redis+pubsub"] {
        let hash = secret('#');
        let urls = [
            (
                format!("{scheme}://app:{}@{addr}", percent_encode(&hash)),
                true,
            ),
            (format!("{scheme}://app:{}@{addr}", secret('@')), true),
            (format!("{scheme}://app:{hash}@{addr}"), false),
            (format!("{scheme}://app:{}@{addr}/0", secret('/')), false),
            (format!("{scheme}://app:{}@{addr}", secret('?')), false),
            (format!("{scheme}:app:{}@{addr}", secret('!')), false),
            (format!("{scheme}://app:{}", secret('!')), false),
        ];
        for command in COMMANDS {
            for (url, works) in &urls {
                let what = format!("{} on {scheme}", command.join(" "));
                let mut cmd = switchyard();
                cmd.args(*command).args(["--url", url]);
                let out = run_clean(cmd, &what);
                runs += 1;
                if *works && must_succeed(command[0], scheme) {
                    assert!(
                        out.status.success(),
                        "{what}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    succeeded += 1;
                }
                if !works {
                    assert_eq!(out.status.code(), Some(1), "{what}");
                }
            }
        }
    }
    assert_eq!(runs, 2 * COMMANDS.len() * 7);
    // pub, doctor, bench on both; topics, dlq, demo on streams; 2 URLs each.
    assert_eq!(succeeded, 2 * (3 * 2 + 3));
}

#[test]
fn every_punctuation_character_raw_and_encoded() {
    let server = server();
    let addr = server.addr().to_string();
    let mut raw_refused = Vec::new();
    for p in punctuation() {
        let raw = secret(p);
        for scheme in ["redis+streams", "redis+pubsub"] {
            // Percent-encoded, the password always works.
            let url = format!("{scheme}://app:{}@{addr}", percent_encode(&raw));
            let mut cmd = switchyard();
            cmd.args(["pub", "-t", "secrets.t", "-d", "x", "--url", &url]);
            let out = run_clean(cmd, &format!("pub on {scheme}, {p:?} encoded"));
            assert!(
                out.status.success(),
                "{p:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = format!("redis+streams://app:{raw}@{addr}");
        let mut cmd = switchyard();
        cmd.args(["pub", "-t", "secrets.t", "-d", "x", "--url", &url]);
        if !run_clean(cmd, &format!("pub with {p:?} raw"))
            .status
            .success()
        {
            raw_refused.push(p);
        }
    }
    // A raw '#', '/' or '?' ends the authority: such URLs are refused with
    // a message asking to percent-encode them; every other raw character
    // is taken as part of the password.
    assert_eq!(raw_refused, ['#', '/', '?']);
}

#[test]
fn other_ways_of_giving_the_url() {
    let server = server();
    let addr = server.addr().to_string();
    let bad = format!("redis+streams://app:{}@{addr}", secret('#'));
    // --url=...
    let mut cmd = switchyard();
    cmd.args(["pub", "-t", "secrets.t", "-d", "x", &format!("--url={bad}")]);
    assert_eq!(run_clean(cmd, "--url=").status.code(), Some(1));
    // SWITCHYARD_URL
    let mut cmd = switchyard();
    cmd.env("SWITCHYARD_URL", &bad)
        .args(["pub", "-t", "secrets.t", "-d", "x"]);
    assert_eq!(run_clean(cmd, "SWITCHYARD_URL").status.code(), Some(1));
    // A URL where a topic was expected, and as a stray argument: usage errors.
    let mut cmd = switchyard();
    cmd.args(["pub", "-t", &bad, "-d", "x"]);
    assert_eq!(run_clean(cmd, "URL as topic").status.code(), Some(2));
    let mut cmd = switchyard();
    cmd.args(["pub", "-t", "secrets.t", "-d", "x", &bad]);
    assert_eq!(run_clean(cmd, "stray URL").status.code(), Some(2));
}

/// `switchyard pub --url 'redis+streams://…?writer_queue=18446744073709551615'`
/// exited 101 ("internal error", a panic in `connect`). Out-of-range settings
/// now end with exit 1 and one error line naming the setting and its range,
/// and the password of the same URL is not shown.
#[test]
fn out_of_range_settings_fail_cleanly_without_the_password() {
    let server = server();
    let addr = server.addr().to_string();
    let pw = percent_encode(&secret('#'));
    for (url, needle) in [
        (
            format!("redis+streams://app:{pw}@{addr}?writer_queue=18446744073709551615"),
            "writer_queue must be 1 to 1048576, got 18446744073709551615 (url parameter writer_queue)",
        ),
        (
            format!("redis+streams://app:{pw}@{addr}?writer_batch=1000000000"),
            "writer_batch must be 1 to 100000",
        ),
        (
            format!("redis+streams://app:{pw}@{addr}?maxlen=18446744073709551615"),
            "maxlen must be 0 to 9223372036854775807",
        ),
        (
            format!("redis+pubsub://app:{pw}@{addr}?probe_interval=18446744073709551615s"),
            "probe_interval must be 1ms to 1h",
        ),
        (
            format!("redis+pubsub://app:{pw}@{addr}?close_timeout=18446744073709551615s"),
            "close_timeout must be 0 to 1h",
        ),
        (
            "memory://?redelivery_tick_ms=18446744073709551615".to_owned(),
            "redelivery_tick must be 1ms to 1m",
        ),
    ] {
        let mut cmd = switchyard();
        cmd.env_remove("RUST_LOG")
            .args(["pub", "-t", "secrets.t", "-d", "x", "--url", &url]);
        let out = run_clean(cmd, needle);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}
