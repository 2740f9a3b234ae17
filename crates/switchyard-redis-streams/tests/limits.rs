//! Message limits at publish, against a real `redis-server` (issue
//! "Hardening", item 4).
//!
//! Reproduction before the fix: publishing a message whose headers take
//! more than 1 MiB (one 2 MiB value) returned an entry id, the entry was in
//! the stream (`XLEN` 1), and then every consumer dropped it: the decoder's
//! `MAX_HEADER_BLOCK` (1 MiB) made it malformed, so a fan-out subscriber
//! skipped it (`stats().malformed` 1) and a group dead-lettered it. Now
//! `publish` and `publish_batch` refuse it with `Error::InvalidMessage`
//! before anything is queued, and everything within the limits decodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::{
    Bytes, Delivery, Error, Headers, Limits, Message, Retry, Start, Subscriber, Subscription,
    Topic, Transport,
};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::RedisServer;

const NS: &str = "limits";
const WAIT: Duration = Duration::from_secs(20);

fn url(server: &RedisServer) -> String {
    let base = server.url();
    let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
    format!("redis+streams://{rest}/0?namespace={NS}&block=200ms")
}

async fn connect(server: &RedisServer) -> Arc<RedisStreamsTransport> {
    let cfg = StreamsConfig::from_url(&url(server)).expect("config");
    Arc::new(RedisStreamsTransport::connect(cfg).await.expect("connect"))
}

fn xlen(server: &RedisServer, topic: &Topic) -> i64 {
    server
        .cmd(&["XLEN", &keys::stream_key(NS, topic)])
        .expect("XLEN")
        .as_int()
        .expect("XLEN integer")
}

async fn next(sub: &mut Box<dyn Subscriber>) -> Delivery {
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Ok(d))) => d,
        other => panic!("expected a delivery within {WAIT:?}, got {other:?}"),
    }
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
async fn headers_over_a_mebibyte_are_refused_at_publish_and_never_written() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server).await;
    let topic = Topic::new("limits.big-headers").unwrap();
    let mut sub = t.subscribe(Subscription::new(topic.clone())).await.unwrap();

    let m = Message::new(topic.clone(), "x").with_header("blob", "v".repeat(2 << 20));
    let (what, actual, max, limit) = refused(t.publish(m.clone()).await);
    assert!(what.starts_with("header size in bytes"), "{what}");
    assert_eq!(
        (actual, max, limit),
        ((2 << 20) + 4, 65_536, "Limits::MAX_HEADER_BYTES")
    );
    let (what, ..) = refused(t.publish_batch(vec![m]).await);
    assert!(what.starts_with("message 0 of 1 in the batch"), "{what}");

    let big = Message::new(topic.clone(), vec![1u8; Limits::MAX_PAYLOAD + 1]);
    let (_, actual, max, limit) = refused(t.publish(big).await);
    assert_eq!(
        (actual, max, limit),
        (16_777_217, 16_777_216, "Limits::MAX_PAYLOAD")
    );
    assert_eq!(xlen(&server, &topic), 0, "nothing reached the stream");

    // The next message is the first one the subscriber sees; nothing was
    // skipped as malformed.
    let id = t
        .publish(Message::new(topic.clone(), "after"))
        .await
        .unwrap();
    let d = next(&mut sub).await;
    assert_eq!((d.id(), d.payload().as_ref()), (id, &b"after"[..]));
    assert_eq!(sub.stats().malformed, 0);
    assert_eq!(xlen(&server, &topic), 1);
    t.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_message_writes_nothing() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server).await;
    let a = Topic::new("limits.batch-a").unwrap();
    let b = Topic::new("limits.batch-b").unwrap();
    let many: Headers = (0..=Limits::MAX_HEADERS)
        .map(|i| (format!("k{i}"), "v"))
        .collect();
    let batch = vec![
        Message::new(a.clone(), "1"),
        Message::new(b.clone(), "2"),
        Message::new(a.clone(), "3").with_headers(many),
        Message::new(b.clone(), "4"),
    ];
    let (what, actual, max, limit) = refused(t.publish_batch(batch).await);
    assert_eq!(
        what,
        "message 2 of 4 in the batch (counting from 0): header count"
    );
    assert_eq!((actual, max, limit), (65, 64, "Limits::MAX_HEADERS"));
    assert_eq!((xlen(&server, &a), xlen(&server, &b)), (0, 0));
    // The writer is unaffected: the next batch goes through whole.
    let ids = t
        .publish_batch(vec![
            Message::new(a.clone(), "5"),
            Message::new(b.clone(), "6"),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!((xlen(&server, &a), xlen(&server, &b)), (1, 1));
    t.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_at_every_bound_reaches_fanout_group_and_dead_letters() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server).await;
    let topic = Topic::new("limits.at-bounds").unwrap();
    let mut fanout = t
        .subscribe(Subscription::new(topic.clone()).start(Start::Earliest))
        .await
        .unwrap();
    let mut group = t
        .subscribe(Subscription::new(topic.clone()).group_member("g", "c1"))
        .await
        .unwrap();
    let mut dlq = t
        .subscribe(Subscription::new(topic.dead_letter().unwrap()).start(Start::Earliest))
        .await
        .unwrap();

    let payload = Bytes::from(vec![0x5au8; Limits::MAX_PAYLOAD]);
    let m = Message::new(topic.clone(), payload)
        .with_headers(switchyard_conformance::headers_at_bounds());
    m.check_limits().unwrap();
    let id = t.publish(m.clone()).await.unwrap();

    let d = next(&mut fanout).await;
    assert_eq!(d.id(), id);
    assert_eq!(d.payload(), &m.payload);
    assert_eq!(d.headers(), &m.headers);
    assert_eq!(d.dedup_id(), m.dedup_id);

    // A group member gets it too, and its dead letter (the message's 64
    // headers plus four `sy-dlq-*` ones, a reason of the longest length
    // kept) still decodes.
    let g = next(&mut group).await;
    assert_eq!((g.id(), g.headers()), (id, &m.headers));
    g.nack(Retry::DeadLetter("r".repeat(5000))).await.unwrap();
    let dl = next(&mut dlq).await;
    assert_eq!(dl.payload(), &m.payload);
    assert_eq!(dl.headers().len(), Limits::MAX_HEADERS + 4);
    for (k, v) in m.headers.iter() {
        assert_eq!(dl.headers().get(k), Some(v));
    }
    assert_eq!(fanout.stats().malformed, 0);
    assert_eq!(group.stats().malformed, 0);
    assert_eq!(dlq.stats().malformed, 0);
    t.close().await.unwrap();
}
