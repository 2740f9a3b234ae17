//! `pub`, `sub`, `topics`, `dlq` and `doctor` against real `redis-server`
//! processes (testkit, free loopback ports; `scripts/test` installs
//! redis-server). Every count is exact.
#![cfg(all(feature = "redis-streams", feature = "redis-pubsub"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use switchyard::{Retry, Start, Subscription, Topic};
use switchyard_testkit::{RedisOptions, RedisServer};

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

fn server() -> RedisServer {
    RedisServer::start().expect("redis-server must be installed (scripts/test installs it)")
}

fn url(server: &RedisServer, scheme: &str) -> String {
    let url = server.url();
    format!("{scheme}://{}", url.strip_prefix("redis://").unwrap())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn pub_then_sub_exact_counts_and_json() {
    let server = server();
    let url = url(&server, "redis+streams");
    let out = switchyard(&url)
        .args([
            "pub",
            "-t",
            "orders.created",
            "--count",
            "500",
            "--batch",
            "50",
        ])
        .args(["-H", "tenant=t1"])
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(
        stdout.starts_with("published 500 messages to orders.created"),
        "{stdout}"
    );

    let out = switchyard(&url)
        .args(["sub", "-t", "orders.created", "--from", "earliest"])
        .args(["--count", "500", "--timeout", "30", "--json"])
        .output()
        .unwrap();
    let lines = json_lines(&ok(&out));
    assert_eq!(lines.len(), 500);
    let payloads: BTreeSet<String> = lines
        .iter()
        .map(|v| v["payload"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (1..=500).map(|i| format!("message {i}")).collect();
    assert_eq!(payloads, expected);
    for v in &lines {
        assert_eq!(v["topic"], "orders.created");
        assert_eq!(v["attempt"], 1);
        assert_eq!(v["headers"]["tenant"], "t1");
        assert!(v["id"].as_str().unwrap().contains('-'));
    }

    // Each stdin line is one message; one id printed per line.
    let out = switchyard(&url)
        .args(["pub", "-t", "lines", "--data", "-"])
        .write_stdin("first\nsecond\nthird\n")
        .output()
        .unwrap();
    assert_eq!(ok(&out).lines().count(), 3);
    let out = switchyard(&url)
        .args([
            "sub",
            "-t",
            "lines",
            "--from",
            "earliest",
            "--count",
            "3",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    let stdout = ok(&out);
    let texts: Vec<&str> = stdout
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(texts, ["first", "second", "third"]);

    // A binary payload comes out as payload_b64.
    block_on(async {
        let t = switchyard::connect(&url).await.unwrap();
        t.publish(switchyard::Message::to("bin", vec![0xffu8, 0x00, 0xfe]).unwrap())
            .await
            .unwrap();
        t.close().await.unwrap();
    });
    let out = switchyard(&url)
        .args([
            "sub", "-t", "bin", "--from", "earliest", "--count", "1", "--json",
        ])
        .output()
        .unwrap();
    let v = &json_lines(&ok(&out))[0];
    assert_eq!(v["payload_b64"], "/wD+");
    assert!(v.get("payload").is_none());

    // topics: length and the group `sub` left behind none of.
    let out = switchyard(&url)
        .args(["topics", "--json"])
        .output()
        .unwrap();
    let topics: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let t = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "orders.created")
        .unwrap();
    assert_eq!(t["length"], 500);
}

#[test]
fn two_group_members_share_1000_messages_without_loss_or_doubles() {
    let server = server();
    let url = url(&server, "redis+streams");
    let topic = "jobs.shared";
    // Create the group at the start of the stream, so both members can be
    // started before anything is published.
    let members: Vec<_> = (0..2)
        .map(|i| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin!("switchyard"))
                .env("SWITCHYARD_URL", &url)
                .env_remove("RUST_LOG")
                .args([
                    "sub", "-t", topic, "--group", "workers", "--from", "earliest",
                ])
                .args(["--consumer", &format!("m{i}"), "--timeout", "8", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let out = switchyard(&url)
        .args(["pub", "-t", topic, "--count", "1000", "--rate", "2000"])
        .output()
        .unwrap();
    ok(&out);
    let mut all = Vec::new();
    let mut split = Vec::new();
    for m in members {
        let out = m.wait_with_output().unwrap();
        let lines = json_lines(&ok(&out));
        split.push(lines.len());
        all.extend(
            lines
                .into_iter()
                .map(|v| v["payload"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(all.len(), 1000, "split {split:?}");
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 1000, "no message twice (split {split:?})");
    let topics = switchyard(&url)
        .args(["topics", "--json"])
        .output()
        .unwrap();
    let topics: serde_json::Value = serde_json::from_str(&ok(&topics)).unwrap();
    assert_eq!(topics[0]["groups"][0]["pending"], 0, "{topics}");
}

/// Publishes `payloads` on `topic` and dead-letters each through a group.
fn dead_letter(url: &str, topic: &str, payloads: &[&str]) {
    block_on(async {
        let t = switchyard::connect(url).await.unwrap();
        let topic = Topic::new(topic).unwrap();
        let mut sub = t
            .subscribe(
                Subscription::new(topic.clone())
                    .group("fix")
                    .start(Start::Earliest),
            )
            .await
            .unwrap();
        for p in payloads {
            t.publish(switchyard::Message::new(topic.clone(), p.to_string()))
                .await
                .unwrap();
        }
        for _ in payloads {
            let d = tokio::time::timeout(Duration::from_secs(15), sub.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            d.nack(Retry::DeadLetter("bad sku".into())).await.unwrap();
        }
        sub.close().await.unwrap();
        t.close().await.unwrap();
    });
}

/// Reproduction (before): dead letters could only be listed one topic at a
/// time (`--topic` was required); a namespace-wide view needed a SCAN by
/// hand.
#[test]
fn dlq_list_without_a_topic_shows_every_topic() {
    let server = server();
    let url = url(&server, "redis+streams");
    let out = switchyard(&url).args(["dlq", "list"]).output().unwrap();
    assert_eq!(ok(&out), "no dead letters in this namespace\n");
    dead_letter(&url, "orders", &["a", "b"]);
    dead_letter(&url, "/robot-1/scan", &["s"]);
    let out = switchyard(&url)
        .args(["dlq", "list", "--json"])
        .output()
        .unwrap();
    let letters = json_lines(&ok(&out));
    let topics: Vec<&str> = letters
        .iter()
        .map(|l| l["dead_letter_topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["/robot-1/scan:dlq", "orders:dlq", "orders:dlq"]);
    let out = switchyard(&url)
        .args(["dlq", "list", "-n", "1"])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("== orders:dlq (2 dead letter(s))"), "{text}");
    assert!(
        text.contains("showing 1 of 2; more with --topic orders:dlq --after"),
        "{text}"
    );
    assert!(
        text.contains("== /robot-1/scan:dlq (1 dead letter(s))"),
        "{text}"
    );
}

#[test]
fn dlq_list_replay_and_purge() {
    let server = server();
    let url = url(&server, "redis+streams");
    dead_letter(&url, "orders", &["a", "b", "c"]);

    let out = switchyard(&url)
        .args(["dlq", "list", "-t", "orders", "--json"])
        .output()
        .unwrap();
    let letters = json_lines(&ok(&out));
    assert_eq!(letters.len(), 3);
    for l in &letters {
        assert_eq!(l["reason"], "bad sku");
        assert_eq!(l["attempts"], 1);
        assert!(l["original_id"].is_string());
    }
    let first = letters[0]["id"].as_str().unwrap().to_owned();

    let out = switchyard(&url)
        .args(["dlq", "replay", "-t", "orders", "--id", &first])
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "replayed 1 dead letter(s) of orders");
    // Already moved: nothing to do, and a clear error.
    let out = switchyard(&url)
        .args(["dlq", "replay", "-t", "orders", "--id", &first])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = switchyard(&url)
        .args(["dlq", "replay", "-t", "orders", "--all", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["replayed"], 2);
    let out = switchyard(&url)
        .args(["dlq", "list", "-t", "orders"])
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "no dead letters for orders");

    // The topic holds the three originals and the three replayed ones.
    let out = switchyard(&url)
        .args([
            "sub",
            "-t",
            "orders",
            "--from",
            "earliest",
            "--count",
            "6",
            "--timeout",
            "30",
            "--json",
        ])
        .output()
        .unwrap();
    let payloads: Vec<String> = json_lines(&ok(&out))
        .iter()
        .map(|v| v["payload"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(payloads, ["a", "b", "c", "a", "b", "c"]);

    dead_letter(&url, "refunds", &["x", "y"]);
    let out = switchyard(&url)
        .args(["dlq", "purge", "-t", "refunds", "--all"])
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "purged 2 dead letter(s) of refunds");
    let out = switchyard(&url)
        .args(["dlq", "list", "-t", "refunds:dlq", "--json"])
        .output()
        .unwrap();
    assert_eq!(ok(&out), "");
}

#[test]
fn doctor_flags_an_evicting_policy() {
    let server = RedisServer::start_with(RedisOptions::default().maxmemory_policy("allkeys-lru"))
        .expect("redis-server must be installed (scripts/test installs it)");
    let url = url(&server, "redis+streams");
    let out = switchyard(&url).args(["doctor"]).output().unwrap();
    let stdout = ok(&out);
    let line = stdout.lines().find(|l| l.contains("eviction")).unwrap();
    assert!(line.trim_start().starts_with("warn"), "{stdout}");
    assert!(line.contains("allkeys-lru"), "{stdout}");
    assert!(stdout.contains("ok    reachable"), "{stdout}");
    assert!(stdout.contains("ok    permissions"), "{stdout}");

    let out = switchyard(&url)
        .args(["doctor", "--strict"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("eviction"));

    let out = switchyard(&url)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["usable"], true);
    let eviction = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "eviction")
        .unwrap();
    assert_eq!(eviction["status"], "warn");
    // The scratch key is gone.
    assert_eq!(server.cmd(&["DBSIZE"]).unwrap().as_int(), Some(0));

    // The backplane stores nothing: eviction does not matter there.
    let pubsub_url = self::url(&server, "redis+pubsub");
    let out = switchyard(&pubsub_url).args(["doctor"]).output().unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("result: usable\n"), "{stdout}");
}

#[test]
fn doctor_fails_on_missing_permissions() {
    let server = RedisServer::start_with(RedisOptions::default().acl_user("app", "pw"))
        .expect("redis-server must be installed (scripts/test installs it)");
    server
        .cmd(&["ACL", "SETUSER", "app", "-xautoclaim"])
        .unwrap();
    let url = url(&server, "redis+streams");
    let out = switchyard(&url).args(["doctor"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("permissions")).unwrap();
    assert!(
        line.contains("FAIL") && line.contains("XAUTOCLAIM"),
        "{stdout}"
    );
    assert!(!stdout.contains("pw@"));
}

#[test]
fn pub_to_the_backplane_reaches_a_subscriber() {
    let server = server();
    let url = url(&server, "redis+pubsub");
    let mut sub = std::process::Command::new(assert_cmd::cargo::cargo_bin!("switchyard"))
        .env("SWITCHYARD_URL", &url)
        .args([
            "sub",
            "-t",
            "chat.*",
            "--count",
            "5",
            "--timeout",
            "30",
            "--stats",
        ])
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
    assert!(
        stdout
            .lines()
            .all(|l| l.split_whitespace().nth(1) == Some("chat.lobby") && l.contains(" message "))
    );
    // --stats: the subscriber's counters, and the backplane's own counters
    // through `Arc<dyn Transport>` (nothing of this process's was echoed).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("stats: subscriber received=5 acked=0 nacked=0 "),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("stats: transport published=0 "),
        "{stderr}"
    );
    for name in [
        " pubsub.self_echoes=0",
        " pubsub.malformed=0",
        " pubsub.gaps=0",
        " pubsub.outbox_len=0",
    ] {
        assert!(lines[1].contains(name), "no {name} in {stderr}");
    }
}

#[test]
fn sub_stats_json_counts_a_group_member_exactly() {
    let server = server();
    let url = url(&server, "redis+streams");
    ok(&switchyard(&url)
        .args(["pub", "-t", "stats.t", "--count", "50"])
        .output()
        .unwrap());
    let out = switchyard(&url)
        .args([
            "sub", "-t", "stats.t", "-g", "g", "--from", "earliest", "--count", "50", "--json",
            "--stats",
        ])
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert_eq!(json_lines(&stdout).len(), 50);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stats = json_lines(&stderr);
    assert_eq!(stats.len(), 1, "{stderr}");
    let sub = &stats[0]["stats"]["subscriber"];
    assert_eq!(sub["received"], 50, "{stderr}");
    assert_eq!(sub["acked"], 50, "{stderr}");
    assert_eq!(sub["nacked"], 0, "{stderr}");
    assert_eq!(sub["redelivered"], 0, "{stderr}");
    let transport = &stats[0]["stats"]["transport"];
    assert_eq!(transport["published"], 0, "{stderr}");
    assert_eq!(transport["breaker_open"], 0, "{stderr}");
}
