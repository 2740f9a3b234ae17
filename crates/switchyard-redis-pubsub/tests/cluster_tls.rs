//! The backplane on a TLS-only Redis Cluster (`rediss+pubsub+cluster://`
//! with the cluster's CA and a client certificate): the sharded
//! subscribing connections and the publishing connections per master
//! speak TLS; a message crosses between two replicas on 8 topics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_core::{Health, Message, Subscription, Topic, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport};
use switchyard_testkit::{ClusterGroup, ClusterOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_a_tls_cluster() {
    let cluster = tokio::task::block_in_place(|| {
        ClusterGroup::start(ClusterOptions::default().replicas_per_master(0).tls(true))
    })
    .expect("TLS cluster");
    let files = cluster.tls_files().unwrap();
    let url = format!(
        "rediss+pubsub+cluster://{}?namespace=tlsps&connect_timeout=5s&tls_ca={}&tls_cert={}&tls_key={}",
        cluster.host_list(),
        files.ca_cert.display(),
        files.client.cert.display(),
        files.client.key.display()
    );
    let a = RedisPubSubTransport::connect(PubSubConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let b = RedisPubSubTransport::connect(PubSubConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    for i in 0..8 {
        let topic = Topic::new(format!("rooms.r{i}")).unwrap();
        let mut sub = b.subscribe(Subscription::new(topic.clone())).await.unwrap();
        a.publish(Message::new(topic.clone(), format!("hello {i}")))
            .await
            .unwrap();
        let d = tokio::time::timeout(Duration::from_secs(15), sub.recv())
            .await
            .expect("crosses the cluster")
            .unwrap()
            .unwrap();
        assert_eq!(&d.payload()[..], format!("hello {i}").as_bytes());
        sub.close().await.unwrap();
    }
    assert_eq!(a.health().await, Health::Ok);
    assert_eq!(b.health().await, Health::Ok);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
