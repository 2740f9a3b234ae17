//! Message limits at publish (issue "Hardening", item 4).
//!
//! Reproduction before the fix: `MemoryTransport::publish` of a message
//! with a 2 MiB header value (or a 17 MiB payload) returned an id and
//! delivered it, while the same message on redis-streams was written and
//! then dropped by every consumer, and the backplane refused it. Now every
//! adapter refuses it at publish with `Error::InvalidMessage`, and
//! `publish_batch` checks the whole batch before appending anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{recv, recv_within, topic};
use switchyard_core::{
    Bytes, Error, Headers, Limits, Message, MessageId, Start, Subscription, Transport,
};
use switchyard_memory::MemoryTransport;

fn refused(
    r: switchyard_core::Result<impl std::fmt::Debug>,
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

#[tokio::test]
async fn over_limit_publishes_are_refused_and_nothing_is_appended() {
    let t = MemoryTransport::new();
    let tp = topic("over");
    let mut sub = t.subscribe(Subscription::new(tp.clone())).await.unwrap();

    let big_header = Message::new(tp.clone(), "x").with_header("blob", "v".repeat(2 << 20));
    let (what, actual, max, limit) = refused(t.publish(big_header).await);
    assert!(what.starts_with("header size in bytes"), "{what}");
    assert_eq!((actual, max), ((2 << 20) + 4, 65_536));
    assert_eq!(limit, "Limits::MAX_HEADER_BYTES");

    let big_payload = Message::new(tp.clone(), vec![0u8; Limits::MAX_PAYLOAD + 1]);
    let (what, actual, max, limit) = refused(t.publish(big_payload).await);
    assert_eq!(what, "payload size in bytes");
    assert_eq!((actual, max), (16_777_217, 16_777_216));
    assert_eq!(limit, "Limits::MAX_PAYLOAD");

    let many: Headers = (0..65).map(|i| (format!("k{i}"), "v")).collect();
    let (what, actual, max, _) = refused(
        t.publish(Message::new(tp.clone(), "x").with_headers(many))
            .await,
    );
    assert_eq!((what.as_str(), actual, max), ("header count", 65, 64));

    let (_, actual, _, limit) = refused(
        t.publish(Message::new(tp.clone(), "x").with_header("", "v"))
            .await,
    );
    assert_eq!((actual, limit), (0, "Limits::MAX_HEADER_KEY"));

    // Nothing was appended: the next message is the topic's first.
    let id = t.publish(Message::new(tp.clone(), "marker")).await.unwrap();
    assert_eq!(id, MessageId::from_seq(1));
    let d = recv(&mut sub).await;
    assert_eq!(&d.payload()[..], b"marker");
    assert!(
        recv_within(&mut sub, Duration::from_millis(50))
            .await
            .is_none()
    );
    // Refusals are the caller's errors, not failed publishes.
    assert_eq!(t.stats().publish_errors, 0);
    assert_eq!(t.stats().published, 1);
}

#[tokio::test]
async fn a_batch_with_one_bad_message_appends_nothing() {
    let t = MemoryTransport::new();
    let a = topic("batch-a");
    let b = topic("batch-b");
    let bad =
        Message::new(b.clone(), "x").with_header("blob", "v".repeat(Limits::MAX_HEADER_BYTES));
    let batch = vec![
        Message::new(a.clone(), "1"),
        Message::new(b.clone(), "2"),
        bad,
        Message::new(a.clone(), "3"),
    ];
    let (what, actual, max, _) = refused(t.publish_batch(batch).await);
    assert!(
        what.starts_with("message 2 of 4 in the batch (counting from 0): header size"),
        "{what}"
    );
    assert_eq!((actual, max), (65_540, 65_536));

    // Neither topic got anything: replay from the start shows only what
    // is published afterwards.
    for tp in [&a, &b] {
        t.publish(Message::new(tp.clone(), "after")).await.unwrap();
        let mut all = t
            .subscribe(Subscription::new(tp.clone()).start(Start::Earliest))
            .await
            .unwrap();
        let d = recv(&mut all).await;
        assert_eq!(&d.payload()[..], b"after");
        assert_eq!(d.id(), MessageId::from_seq(1));
        assert!(
            recv_within(&mut all, Duration::from_millis(50))
                .await
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_message_at_every_bound_arrives_intact() {
    let t = MemoryTransport::new();
    let tp = topic("at-bounds");
    let mut sub = t.subscribe(Subscription::new(tp.clone())).await.unwrap();
    let payload = Bytes::from(vec![0xa5u8; Limits::MAX_PAYLOAD]);
    let m =
        Message::new(tp.clone(), payload).with_headers(switchyard_conformance::headers_at_bounds());
    m.check_limits().unwrap();
    assert_eq!(m.headers.len(), Limits::MAX_HEADERS);
    t.publish_batch(vec![m.clone()]).await.unwrap();
    t.publish(m.clone()).await.unwrap();
    for _ in 0..2 {
        let d = recv(&mut sub).await;
        assert_eq!(d.payload(), &m.payload);
        assert_eq!(d.headers(), &m.headers);
        assert_eq!(d.dedup_id(), m.dedup_id);
    }
    assert_eq!(t.capabilities().limits, Limits::DEFAULT);
}

#[tokio::test]
async fn publish_prechecked_leaves_the_check_to_the_caller() {
    // A layered adapter (the backplane) checks first, then adds its own
    // reserved header: 64 application headers plus `sy-origin` must pass.
    let t = MemoryTransport::new();
    let tp = topic("prechecked");
    let mut sub = t.subscribe(Subscription::new(tp.clone())).await.unwrap();
    let full: Headers = (0..Limits::MAX_HEADERS)
        .map(|i| (format!("k{i:02}"), "v"))
        .collect();
    let m = Message::new(tp.clone(), "x").with_headers(full);
    m.check_limits().unwrap();
    let m = m.with_header("sy-origin", "0123456789abcdef");
    assert!(matches!(
        t.publish(m.clone()).await,
        Err(Error::InvalidMessage { .. })
    ));
    t.publish_prechecked(m).await.unwrap();
    assert_eq!(
        recv(&mut sub).await.headers().len(),
        Limits::MAX_HEADERS + 1
    );
}
