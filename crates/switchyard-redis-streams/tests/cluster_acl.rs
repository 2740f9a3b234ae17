//! The least-privilege user on a Redis Cluster: the service line of
//! docs/security.md plus what the cluster client sends (`+cluster|slots
//! +cluster|info +asking`, docs/cluster.md), created on every node. A
//! publisher and a pattern group move 600 messages over six topics on
//! three masters, close, and no node's `ACL LOG` holds a denial.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchyard_core::{Health, Message, Pattern, Start, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{ClusterGroup, ClusterOptions};

const LINE: &[&str] = &[
    "-@all",
    "+ping",
    "+role",
    "+xadd",
    "+xread",
    "+xrange",
    "+xrevrange",
    "+scan",
    "+xgroup|create",
    "+xreadgroup",
    "+xack",
    "+xpending",
    "+xclaim",
    "+xautoclaim",
    "+xinfo|consumers",
    "+xgroup|delconsumer",
    "+evalsha",
    "+script|load",
    "+client|id",
    "+client|unblock",
    "+cluster|slots",
    "+cluster|info",
    "+asking",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_line_is_enough_on_a_cluster() {
    let cluster = tokio::task::block_in_place(|| ClusterGroup::start(ClusterOptions::default()))
        .expect("cluster");
    for node in cluster.nodes() {
        let mut args = vec![
            "ACL",
            "SETUSER",
            "app",
            "reset",
            "on",
            ">pw-4-app",
            "resetkeys",
            "resetchannels",
            "~shop:*",
        ];
        args.extend(LINE);
        assert!(node.cmd(&args).unwrap().is_ok());
        let _ = node.cmd(&["ACL", "SETUSER", "app", "+client|setinfo"]);
    }
    let url = format!(
        "redis+streams+cluster://app:pw-4-app@{}?namespace=shop&block=200ms&pattern_rescan=200ms",
        cluster.host_list()
    );
    let bus = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let topic = |i: u64| Topic::new(format!("orders.t{}", i % 6)).unwrap();
    for i in 0..6 {
        bus.publish(Message::new(topic(i), "first")).await.unwrap();
    }
    let mut sub = bus
        .subscribe(
            Subscription::new(Pattern::new("orders.*").unwrap())
                .group("billing")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    let batch: Vec<Message> = (0..600)
        .map(|i: u64| Message::new(topic(i), i.to_le_bytes().to_vec()))
        .collect();
    assert_eq!(bus.publish_batch(batch).await.unwrap().len(), 600);
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 600 {
        assert!(Instant::now() < deadline, "{} of 600 delivered", seen.len());
        let d = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(b) = <[u8; 8]>::try_from(&d.message().payload[..]) {
            seen.insert(u64::from_le_bytes(b));
        }
        d.ack().await.unwrap();
    }
    assert_eq!(bus.health().await, Health::Ok);
    sub.close().await.unwrap();
    bus.close().await.unwrap();
    for node in cluster.nodes() {
        let log = node.cmd(&["ACL", "LOG"]).unwrap();
        assert_eq!(
            log.as_array().map_or(0, <[_]>::len),
            0,
            "{}: {log:?}",
            node.addr()
        );
    }
}
