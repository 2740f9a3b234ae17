//! End-to-end tests of the `switchyard` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;

/// The binary with a clean environment: no SWITCHYARD_URL, no RUST_LOG.
fn switchyard() -> Command {
    let mut cmd = cargo_bin_cmd!("switchyard");
    cmd.env_remove("SWITCHYARD_URL")
        .env_remove("RUST_LOG")
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value on the summary line starting with `label`.
fn count(summary: &str, label: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line starting with {label:?} in:\n{summary}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count on {line:?}"))
}

#[test]
fn demo_runs_on_memory_and_prints_the_summary() {
    let output = switchyard().arg("demo").output().unwrap();
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.is_empty(), "stderr:\n{stderr}");
    assert!(
        stdout.starts_with("switchyard demo on memory:// (memory adapter)"),
        "{stdout}"
    );
    assert_eq!(count(&stdout, "audited"), 30, "{stdout}");
    assert_eq!(count(&stdout, "fulfilled"), 29, "{stdout}");
    assert_eq!(count(&stdout, "redelivered"), 1, "{stdout}");
    assert_eq!(count(&stdout, "dead-lettered"), 1, "{stdout}");
    // Three workers, 31 deliveries among them (30 orders + 1 redelivery).
    let handled: Vec<u64> = (1..=3)
        .map(|n| count(&stdout, &format!("  worker-{n}")))
        .collect();
    assert_eq!(handled.iter().sum::<u64>(), 31, "{stdout}");
    assert!(stdout.contains("-> orders.created:dlq"), "{stdout}");
    let line = |label: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
            .to_owned()
    };
    assert!(
        line("  sy-dlq-reason")
            .ends_with("order #13 rejected: amount_cents is 0, must be positive"),
        "{stdout}"
    );
    assert_eq!(count(&stdout, "  sy-dlq-attempts"), 1, "{stdout}");
    assert!(
        line("redelivered").contains("#7 succeeded on attempt 2"),
        "{stdout}"
    );
}

#[test]
fn demo_reads_the_url_from_the_environment() {
    switchyard()
        .arg("demo")
        .env("SWITCHYARD_URL", "memory://from-env")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "switchyard demo on memory://from-env (memory adapter)",
        ));
    // Empty counts as unset; --url wins over the environment.
    switchyard()
        .arg("demo")
        .env("SWITCHYARD_URL", "")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "switchyard demo on memory:// (memory adapter)",
        ));
    switchyard()
        .args(["demo", "--url", "memory://flag"])
        .env("SWITCHYARD_URL", "kafka://env")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "switchyard demo on memory://flag (memory adapter)",
        ));
}

#[test]
fn unknown_scheme_is_one_line_naming_it() {
    let output = switchyard()
        .args(["demo", "--url", "kafka://x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("\"kafka\""), "{stderr}");
    assert!(stderr.contains("memory"), "{stderr}");
    assert!(stdout_of(&output).is_empty());
}

#[test]
fn passwords_never_show() {
    // Without the redis-streams feature this fails with "not compiled in";
    // with it, with a connection error (nothing listens on port 1). Either
    // way: exit 1, one line, no password.
    let output = switchyard()
        .args(["demo", "--url", "redis+streams://u:hunter2@127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert!(
        !stdout.contains("hunter2") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("u:***@127.0.0.1:1"), "{stderr}");

    // Same through the environment, and verbose logging on.
    let output = switchyard()
        .args(["demo", "-vv"])
        .env("SWITCHYARD_URL", "redis+pubsub://u:hunter2@127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!stderr_of(&output).contains("hunter2"));
    assert!(!stdout_of(&output).contains("hunter2"));
}

#[test]
fn garbage_url_is_a_runtime_error() {
    let output = switchyard()
        .args(["demo", "--url", "not a url"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid url"), "{stderr}");
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    let output = switchyard().arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: unexpected argument '--bogus'"),
        "{stderr}"
    );

    switchyard()
        .args(["demo", "--timeout", "soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--timeout"));
    switchyard().arg("no-such-command").assert().code(2);
}

#[test]
fn help_and_version_exit_0() {
    switchyard()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("demo"));
    switchyard()
        .args(["demo", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--url"))
        .stdout(predicate::str::contains("--verbose"));
    switchyard()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("switchyard "));
}
