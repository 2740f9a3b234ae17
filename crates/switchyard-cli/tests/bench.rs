//! End-to-end tests of `switchyard bench`: small runs on every adapter the
//! CLI compiles in; each must count every message (0 missing, 0 duplicated)
//! and print the JSON fields. No timing is asserted: figures belong to
//! benchmarks, not tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use serde_json::Value;
use switchyard_testkit::RedisServer;

/// The binary with a clean environment: no SWITCHYARD_URL, no RUST_LOG.
fn switchyard() -> Command {
    let mut cmd = cargo_bin_cmd!("switchyard");
    cmd.env_remove("SWITCHYARD_URL")
        .env_remove("RUST_LOG")
        .timeout(std::time::Duration::from_secs(120));
    cmd
}

/// Runs `switchyard bench --json` with `args`, checks that it succeeded
/// and returns the parsed object after checking the common fields.
fn bench_json(url: &str, args: &[&str]) -> Value {
    let output = switchyard()
        .args(["bench", "--json", "--url", url])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} on {url} failed: {stderr}"
    );
    // No progress bar when stderr is not a terminal.
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}): {stdout}");
    });
    for field in [
        "mode",
        "url",
        "messages",
        "size",
        "publishers",
        "subscribers",
        "publish_msgs_per_sec",
        "deliver_msgs_per_sec",
        "mb_per_sec",
        "latency_us",
        "missing",
        "duplicates",
    ] {
        assert!(v.get(field).is_some(), "no {field:?} in {v}");
    }
    assert_eq!(v["missing"], 0, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert!(v["publish_msgs_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    v
}

fn memory(args: &[&str]) -> Value {
    bench_json("memory://", args)
}

#[test]
fn memory_publish() {
    let v = memory(&["--mode", "publish", "-n", "2000", "-p", "4", "--size", "64"]);
    assert_eq!(v["mode"], "publish");
    assert_eq!(v["messages"], 2000);
    assert_eq!(v["size"], 64);
    assert_eq!(v["publishers"], 4);
    assert!(v["deliver_msgs_per_sec"].is_null(), "{v}");
    assert!(v["mb_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn memory_publish_in_batches_over_topics() {
    let v = memory(&["-n", "1000", "--batch", "100", "--topics", "7"]);
    assert_eq!(v["messages"], 1000);
    assert_eq!(v["batch"], 100);
}

#[test]
fn memory_fanout() {
    let v = memory(&["--mode", "fanout", "-n", "2000", "-s", "3", "-t", "4"]);
    assert_eq!(v["mode"], "fanout");
    assert_eq!(v["subscribers"], 3);
    assert_eq!(v["deliveries"], 6000);
    assert!(v["deliver_msgs_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn memory_group() {
    let v = memory(&["--mode", "group", "-n", "2000", "-s", "4", "-p", "2"]);
    assert_eq!(v["mode"], "group");
    assert_eq!(v["deliveries"], 2000);
    assert!(v["deliver_msgs_per_sec"].as_f64().unwrap() > 0.0);
    // The counters of the transport and the summed subscribers.
    assert_eq!(v["stats"]["transport"]["published"], 2000, "{v}");
    assert_eq!(v["stats"]["transport"]["publish_errors"], 0, "{v}");
    assert_eq!(v["stats"]["subscribers"]["received"], 2000, "{v}");
    assert_eq!(v["stats"]["subscribers"]["acked"], 2000, "{v}");
    assert!(v["stats"]["subscriber_transport"].is_null(), "{v}");
}

#[test]
fn memory_latency() {
    let v = memory(&["--mode", "latency", "--rate", "2000", "-n", "1000"]);
    assert_eq!(v["mode"], "latency");
    assert_eq!(v["rate"], 2000);
    let lat = &v["latency_us"];
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(lat[p].as_f64().is_some(), "no latency {p} in {v}");
    }
    assert!(lat["p50"].as_f64() <= lat["max"].as_f64());
}

#[test]
fn memory_duration_instead_of_messages() {
    let v = memory(&["--mode", "fanout", "--duration", "0.3"]);
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn text_output_names_the_figures() {
    switchyard()
        .args(["bench", "--mode", "fanout", "-n", "500"])
        .assert()
        .success()
        .stdout(predicate::str::contains("msg/s"))
        .stdout(predicate::str::contains("MB/s"))
        .stdout(predicate::str::contains("0 missing, 0 duplicated"))
        .stdout(predicate::str::contains(
            "stats     transport published=500 ",
        ))
        .stdout(predicate::str::contains("subscribers received=500 "));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["bench", "--size", "8"][..],
        &["bench", "--mode", "sideways"],
        &["bench", "-n", "10", "--duration", "1"],
        &["bench", "--publishers", "0"],
    ] {
        switchyard()
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::starts_with("error: "));
    }
}

#[test]
fn a_url_without_the_adapter_fails_in_one_line() {
    let output = switchyard()
        .args(["bench", "--url", "kafka://localhost:9092"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn redis_pubsub_runs_and_redacts_the_password() {
    let server = RedisServer::start_with(
        switchyard_testkit::RedisOptions::default().password("s3cret-bench"),
    )
    .expect("redis-server (install redis-server)");
    let url = format!("redis+pubsub://:s3cret-bench@127.0.0.1:{}", server.port());
    let v = bench_json(&url, &["--mode", "publish", "-n", "2000", "-p", "8"]);
    assert!(!v["url"].as_str().unwrap().contains("s3cret"), "{v}");
    let v = bench_json(
        &url,
        &["--mode", "fanout", "-n", "2000", "-s", "2", "-p", "4"],
    );
    assert_eq!(v["deliveries"], 4000);
    // The backplane's own counters, through `Arc<dyn Transport>`: the
    // publishing replica sent 2000 (it subscribes to nothing, so nothing
    // comes back to it), the subscribing one received them.
    let publisher = &v["stats"]["transport"];
    assert_eq!(publisher["published"], 2000, "{v}");
    assert_eq!(publisher["pubsub.publishes"], 2000, "{v}");
    assert_eq!(publisher["pubsub.self_echoes"], 0, "{v}");
    let subscriber = &v["stats"]["subscriber_transport"];
    assert_eq!(subscriber["pubsub.received"], 2000, "{v}");
    assert_eq!(subscriber["pubsub.gaps"], 0, "{v}");
    assert_eq!(subscriber["pubsub.malformed"], 0, "{v}");
    assert_eq!(v["stats"]["subscribers"]["received"], 4000, "{v}");
    let v = bench_json(&url, &["--mode", "latency", "--rate", "1000", "-n", "500"]);
    assert!(v["latency_us"]["p99"].as_f64().is_some());
}

#[test]
fn redis_pubsub_has_no_group_mode() {
    let server = RedisServer::start().expect("redis-server (install redis-server)");
    let url = format!("redis+pubsub://127.0.0.1:{}", server.port());
    switchyard()
        .args(["bench", "--mode", "group", "--url", &url])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("consumer groups"));
}

#[test]
fn redis_streams_runs_every_mode_and_reruns_do_not_interfere() {
    let server = RedisServer::start().expect("redis-server (install redis-server)");
    let url = format!("redis+streams://127.0.0.1:{}", server.port());
    bench_json(&url, &["--mode", "publish", "-n", "2000", "-p", "8"]);
    // Twice on the same server: fresh topics and group per run.
    for _ in 0..2 {
        let v = bench_json(&url, &["--mode", "group", "-n", "2000", "-s", "2"]);
        assert_eq!(v["deliveries"], 2000);
    }
    let v = bench_json(&url, &["--mode", "fanout", "-n", "2000", "-s", "2"]);
    assert_eq!(v["deliveries"], 4000);
    bench_json(&url, &["--mode", "latency", "--rate", "1000", "-n", "500"]);
}

#[test]
fn progress_bar_on_a_terminal() {
    // `script` (util-linux) runs the command on a pseudo-terminal; where it
    // is missing there is no terminal to test with.
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped: no `script` command to provide a terminal");
        return;
    }
    let command = format!(
        "{} bench --mode fanout -n 300000 -s 2",
        env!("CARGO_BIN_EXE_switchyard")
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("SWITCHYARD_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("delivered ["),
        "no progress bar on the terminal: {screen}"
    );
    assert!(screen.contains("0 missing, 0 duplicated"), "{screen}");
}
