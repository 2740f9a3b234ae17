//! The CLI against a Redis Cluster (testkit: 3 masters with a replica
//! each): `doctor` checks the cluster and every master, `pub`, `topics`
//! and `dlq` see topics spread over every master. Every count is exact.
//!
//! Reproduction (before): `switchyard doctor --url redis+streams+cluster://…`
//! failed at once ("scheme not known"), and with a plain URL to one node it
//! said the Streams adapter does not support Redis Cluster.
#![cfg(feature = "redis-streams")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use switchyard::{Retry, Start, Subscription, Topic};
use switchyard_testkit::{ClusterGroup, ClusterOptions};

fn switchyard(url: &str) -> Command {
    let mut cmd = cargo_bin_cmd!("switchyard");
    cmd.env("SWITCHYARD_URL", url)
        .env_remove("RUST_LOG")
        .timeout(Duration::from_secs(90));
    cmd
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out: Output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn doctor_pub_topics_and_dlq_on_a_cluster() {
    let cluster = ClusterGroup::start(ClusterOptions::default()).expect("cluster");
    let url = format!(
        "redis+streams+cluster://{}?namespace=ops",
        cluster.host_list()
    );

    let (ok, text) = run(switchyard(&url).args(["doctor"]));
    assert!(ok, "{text}");
    assert!(
        text.contains("3 masters, 16384 of 16384 slots served, replicas per master [1, 1, 1], cluster_state:ok"),
        "{text}"
    );
    // Every master checked, the permissions on each.
    assert_eq!(text.matches("ok    permissions").count(), 3, "{text}");
    assert_eq!(text.matches("ok    reachable").count(), 3, "{text}");

    // Ten topics: on a cluster they spread over the masters.
    for i in 0..10 {
        let (ok, text) =
            run(switchyard(&url).args(["pub", "-t", &format!("orders.t{i}"), "--count", "7"]));
        assert!(ok, "{text}");
        assert!(text.starts_with("published 7 messages"), "{text}");
    }
    let (ok, text) = run(switchyard(&url).args(["topics", "--json"]));
    assert!(ok, "{text}");
    let topics: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let topics = topics.as_array().unwrap();
    assert_eq!(topics.len(), 10, "{text}");
    assert!(topics.iter().all(|t| t["length"] == 7), "{text}");

    // Dead letters of two topics (on different masters, most likely).
    block_on(async {
        let t = switchyard::connect(&url).await.unwrap();
        for name in ["orders.t0", "orders.t1"] {
            let topic = Topic::new(name).unwrap();
            let mut sub = t
                .subscribe(
                    Subscription::new(topic.clone())
                        .group("fix")
                        .start(Start::Earliest),
                )
                .await
                .unwrap();
            for _ in 0..7 {
                let d = tokio::time::timeout(Duration::from_secs(15), sub.recv())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                d.nack(Retry::DeadLetter("bad".into())).await.unwrap();
            }
            sub.close().await.unwrap();
        }
        t.close().await.unwrap();
    });
    let (ok, text) = run(switchyard(&url).args(["dlq", "list", "--json"]));
    assert!(ok, "{text}");
    assert_eq!(text.lines().count(), 14, "{text}");
    let (ok, text) = run(switchyard(&url).args(["dlq", "replay", "--topic", "orders.t0", "--all"]));
    assert!(ok, "{text}");
    let (ok, text) = run(switchyard(&url).args(["dlq", "list", "--json"]));
    assert!(ok, "{text}");
    assert_eq!(text.lines().count(), 7, "{text}");
}

/// A plain URL to one node of a cluster: doctor says to use the cluster
/// form.
#[test]
fn doctor_on_a_plain_url_to_a_cluster_node_names_the_cluster_form() {
    let cluster =
        ClusterGroup::start(ClusterOptions::default().replicas_per_master(0)).expect("cluster");
    let url = format!("redis+streams://{}", cluster.addrs()[0]);
    let (ok, text) = run(switchyard(&url).args(["doctor"]));
    assert!(!ok, "{text}");
    assert!(text.contains("redis+streams+cluster://"), "{text}");
}
