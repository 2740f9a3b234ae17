//! The backplane's payload bound and the message limits, across two
//! replicas on a real `redis-server` (issue "Hardening", items 4 and 5).
//!
//! Reproduction before the fix: `publish` of a 32 MB payload returned an id
//! and delivered it locally; its `PUBLISH` pushed every subscribing
//! connection past Redis' `client-output-buffer-limit pubsub 32mb`, Redis
//! disconnected them all, the message reached no other replica and was
//! reported there as `Error::Lost`. Any payload was accepted up to 4 GiB.
//! Now anything over `MAX_PAYLOAD` (8 MiB) is refused at publish with
//! `Error::InvalidMessage` naming the bound: nothing is delivered locally,
//! nothing is sent to Redis, and no sequence number is used (no gap).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{init_tracing, namespace, pubsub_url, replica, wait_until};
use switchyard_core::{
    Bytes, Delivery, Error, Limits, Message, Subscriber, Subscription, Topic, Transport, header,
};
use switchyard_redis_pubsub::{LIMITS, MAX_FRAME, MAX_PAYLOAD};
use switchyard_testkit::RedisServer;

const WAIT: Duration = Duration::from_secs(20);

async fn next(sub: &mut Box<dyn Subscriber>) -> Delivery {
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Ok(d))) => d,
        other => panic!("expected a delivery within {WAIT:?}, got {other:?}"),
    }
}

/// How many `PUBLISH` commands Redis has executed (`INFO commandstats`).
fn publish_calls(server: &RedisServer) -> u64 {
    let info = server.cmd(&["INFO", "commandstats"]).expect("INFO");
    let text = info
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .expect("INFO text");
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls is a number"))
}

fn refused<T: std::fmt::Debug>(
    r: switchyard_core::Result<T>,
) -> (String, usize, usize, &'static str) {
    match r {
        Err(Error::InvalidMessage {
            what,
            actual,
            max,
            limit,
            ..
        }) => (what, actual, max, limit),
        other => panic!("expected Error::InvalidMessage, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_bound_is_enforced_at_publish_and_a_payload_at_it_crosses_replicas() {
    init_tracing();
    let server = RedisServer::start().expect("redis-server");
    let url = pubsub_url(&server.url(), &namespace(), "");
    let a = replica(&url).await.unwrap();
    let b = replica(&url).await.unwrap();
    let topic = Topic::new("limits.big").unwrap();
    let mut local = a.subscribe(Subscription::new(topic.clone())).await.unwrap();
    let mut remote = b.subscribe(Subscription::new(topic.clone())).await.unwrap();
    assert_eq!(a.capabilities().limits, LIMITS);
    assert_eq!(LIMITS.max_payload, 8 << 20);
    let calls_before = publish_calls(&server);

    // One byte over the bound: refused, named, nothing sent anywhere.
    let over = Message::new(topic.clone(), vec![1u8; MAX_PAYLOAD + 1]);
    let (what, actual, max, limit) = refused(a.publish(over.clone()).await);
    assert_eq!(what, "payload size in bytes");
    assert_eq!((actual, max), (8_388_609, 8_388_608));
    assert!(
        limit.contains("switchyard_redis_pubsub::MAX_PAYLOAD"),
        "{limit}"
    );
    assert!(limit.contains("32 MB"), "{limit}");
    let batch = vec![Message::new(topic.clone(), "fine"), over];
    let (what, ..) = refused(a.publish_batch(batch).await);
    assert!(what.starts_with("message 1 of 2 in the batch"), "{what}");
    assert_eq!(a.pubsub_stats().publishes, 0);

    // At the bound, with every header limit reached too: both replicas
    // receive it intact.
    let payload = Bytes::from(vec![0x5au8; MAX_PAYLOAD]);
    let at = Message::new(topic.clone(), payload)
        .with_headers(switchyard_conformance::headers_at_bounds());
    LIMITS.check(&at).unwrap();
    const { assert!(MAX_FRAME < 32 << 20) };
    let id = a.publish(at.clone()).await.unwrap();
    for (who, sub) in [("local", &mut local), ("remote", &mut remote)] {
        let d = next(sub).await;
        assert_eq!(d.id(), id, "{who}");
        assert_eq!(d.payload(), &at.payload, "{who}");
        assert_eq!(d.dedup_id(), at.dedup_id, "{who}");
        assert_eq!(
            d.headers().len(),
            Limits::MAX_HEADERS + 1,
            "{who}: plus sy-origin"
        );
        for (k, v) in at.headers.iter() {
            assert_eq!(d.headers().get(k), Some(v), "{who}: header {k}");
        }
        assert!(d.headers().get(header::ORIGIN).is_some(), "{who}");
    }

    // Exactly one PUBLISH reached Redis (the refused ones never did), the
    // remote replica saw no gap (no sequence number was used) and nobody
    // was disconnected.
    let published = wait_until(WAIT, "the outbox to drain", || async {
        a.pubsub_stats().published == 1
    })
    .await;
    published.unwrap();
    assert_eq!(publish_calls(&server) - calls_before, 1);
    let bs = b.pubsub_stats();
    assert_eq!((bs.received, bs.gaps, bs.lost, bs.reconnects), (1, 0, 0, 0));
    let as_ = a.pubsub_stats();
    assert_eq!((as_.publishes, as_.published, as_.reconnects), (1, 1, 0));
    for (who, sub) in [("local", &mut local), ("remote", &mut remote)] {
        let more = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await;
        assert!(
            more.is_err(),
            "nothing else reaches the {who} subscriber: {more:?}"
        );
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}
