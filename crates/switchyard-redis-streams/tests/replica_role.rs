//! Pointed at a replica (no Sentinel).
//!
//! Reproduction of the defect: start two redis-servers, make the second a
//! replica (`REPLICAOF 127.0.0.1 <port of the first>`), connect with
//! `redis+streams://127.0.0.1:<replica port>`: `health()` said `Ok` (the
//! replica answers PING), every publish failed with `transient backend
//! error: redis XADD: READONLY ...`, and after `breaker_threshold` of them
//! the circuit breaker opened and publishes failed with "circuit breaker
//! open" — nothing said the URL names a replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchyard_core::{Health, Message, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::RedisServer;

#[tokio::test]
async fn a_replica_is_degraded_and_its_publishes_fail_clearly() {
    let primary = RedisServer::start().unwrap();
    let replica = RedisServer::start().unwrap();
    replica
        .cmd(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()])
        .unwrap();
    let url = format!(
        "redis+streams://127.0.0.1:{}/0?namespace=replica-role&breaker_threshold=3",
        replica.port()
    );
    let t = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    match t.health().await {
        Health::Degraded(why) => {
            assert!(why.contains("connected to a replica (read-only)"), "{why}");
            assert!(why.contains(&primary.port().to_string()), "{why}");
        }
        other => panic!("health on a replica: {other:?}"),
    }
    let topic = Topic::new("orders").unwrap();
    // Twice the breaker threshold: every one fails the same clear way, the
    // breaker never opens.
    for i in 0..6u8 {
        let e = t
            .publish(Message::new(topic.clone(), vec![i]))
            .await
            .unwrap_err();
        assert!(!e.is_transient(), "{e}");
        let text = e.to_string();
        assert!(text.contains("READONLY"), "{text}");
        assert!(
            text.contains("connected to a replica (read-only)"),
            "{text}"
        );
        assert!(!text.contains("circuit breaker"), "{text}");
    }
    assert!(!t.stats().breaker_open);
    assert_eq!(t.stats().breaker_rejections, 0);
    t.close().await.unwrap();

    // The primary itself is healthy.
    let url = format!(
        "redis+streams://127.0.0.1:{}/0?namespace=replica-role",
        primary.port()
    );
    let t = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(t.health().await, Health::Ok);
    t.publish(Message::new(topic, vec![1])).await.unwrap();
    t.close().await.unwrap();
}

/// `wait_replicas=1`: a publish is acknowledged only once a replica has it.
/// Without a replica each publish fails, transiently and saying why,
/// within about `wait_timeout`; with one it succeeds and the replica holds
/// the entry at once.
#[tokio::test]
async fn wait_replicas_acknowledges_only_replicated_publishes() {
    let primary = RedisServer::start().unwrap();
    let url = format!(
        "redis+streams://127.0.0.1:{}/0?namespace=wait-replicas&wait_replicas=1&wait_timeout=200ms&breaker_threshold=1000",
        primary.port()
    );
    let t = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let topic = Topic::new("orders").unwrap();
    for i in 0..3u8 {
        let started = std::time::Instant::now();
        let e = t
            .publish(Message::new(topic.clone(), vec![i]))
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(
            e.to_string().contains("only 0 of 1 replica(s) confirmed"),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
    }
    let e = t
        .publish_batch(vec![
            Message::new(topic.clone(), vec![7]),
            Message::new(topic.clone(), vec![8]),
        ])
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");

    let replica = RedisServer::start().unwrap();
    replica
        .cmd(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // The replica is linked, and the primary counts it as online (WAIT
        // counts only those).
        if replica
            .info("replication")
            .unwrap()
            .contains("master_link_status:up")
            && primary
                .info("replication")
                .unwrap()
                .contains("state=online")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replication never came up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    t.close().await.unwrap();
    // A WAIT bound with slack for a loaded machine (200 ms failed 1 run in
    // 10 right after the link came up).
    let url = format!(
        "redis+streams://127.0.0.1:{}/0?namespace=wait-replicas&wait_replicas=1&wait_timeout=2s",
        primary.port()
    );
    let t = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let key = switchyard_redis_streams::keys::stream_key("wait-replicas", &topic);
    let before = replica.cmd(&["XLEN", &key]).unwrap().as_int().unwrap();
    for i in 0..10u8 {
        t.publish(Message::new(topic.clone(), vec![i]))
            .await
            .unwrap();
    }
    let ids = t
        .publish_batch(
            (0..5u8)
                .map(|i| Message::new(topic.clone(), vec![i]))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 5);
    // Acknowledged means replicated: the replica holds all 15 already.
    let after = replica.cmd(&["XLEN", &key]).unwrap().as_int().unwrap();
    assert_eq!(after - before, 15);
    t.close().await.unwrap();
}

/// A user who may not run `ROLE` (least privilege): the role is unknown,
/// and `health()` does not blame the server for it.
#[tokio::test]
async fn a_user_without_role_is_healthy() {
    let server = RedisServer::start().unwrap();
    server
        .cmd(&[
            "ACL", "SETUSER", "norole", "on", ">pw", "~*", "&*", "+@all", "-role",
        ])
        .unwrap();
    let url = format!(
        "redis+streams://norole:pw@127.0.0.1:{}/0?namespace=norole",
        server.port()
    );
    let t = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(t.health().await, Health::Ok);
    t.close().await.unwrap();
}
