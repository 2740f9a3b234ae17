//! Redis Streams on a TLS-only Redis Cluster (`rediss+streams+cluster://`
//! with the cluster's CA and a client certificate): every connection —
//! the shared cluster connection, the lean publishing connection per
//! master, the readers on each stream's master — speaks TLS. 600 messages
//! over six topics on three masters reach a pattern group exactly once.
//! A client trusting another CA gets `Error::Tls`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchyard_core::{Error, Health, Message, Pattern, Start, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{ClusterGroup, ClusterOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_carries_every_connection() {
    let cluster = tokio::task::block_in_place(|| {
        ClusterGroup::start(ClusterOptions::default().replicas_per_master(0).tls(true))
    })
    .expect("TLS cluster");
    let files = cluster.tls_files().unwrap();
    let url = format!(
        "rediss+streams+cluster://{}?namespace=tls&block=200ms&pattern_rescan=200ms&connect_timeout=5s&tls_ca={}&tls_cert={}&tls_key={}",
        cluster.host_list(),
        files.ca_cert.display(),
        files.client.cert.display(),
        files.client.key.display()
    );
    let bus = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let topic = |i: u64| Topic::new(format!("orders.t{}", i % 6)).unwrap();
    for i in 0..6 {
        bus.publish(Message::new(topic(i), u64::MAX.to_le_bytes().to_vec()))
            .await
            .unwrap();
    }
    let mut sub = bus
        .subscribe(
            Subscription::new(Pattern::new("orders.*").unwrap())
                .group("g")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    let batch: Vec<Message> = (0..600u64)
        .map(|i| Message::new(topic(i), i.to_le_bytes().to_vec()))
        .collect();
    assert_eq!(bus.publish_batch(batch).await.unwrap().len(), 600);
    let mut seen = BTreeSet::new();
    let mut deliveries = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 600 {
        assert!(Instant::now() < deadline, "{} of 600", seen.len());
        let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let i = u64::from_le_bytes(d.message().payload[..].try_into().unwrap());
        if i != u64::MAX {
            deliveries += 1;
            seen.insert(i);
        }
        d.ack().await.unwrap();
    }
    assert_eq!(deliveries, 600);
    assert_eq!(bus.health().await, Health::Ok);
    sub.close().await.unwrap();
    bus.close().await.unwrap();

    // Another CA: a TLS error, not "unreachable".
    let other = files.other_ca_cert.clone();
    let wrong = format!(
        "rediss+streams+cluster://{}?connect_timeout=5s&tls_ca={}&tls_cert={}&tls_key={}",
        cluster.host_list(),
        other.display(),
        files.client.cert.display(),
        files.client.key.display()
    );
    let e = RedisStreamsTransport::connect(StreamsConfig::from_url(&wrong).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e}");
}
