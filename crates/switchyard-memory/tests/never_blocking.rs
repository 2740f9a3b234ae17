//! `MemoryTransport::subscribe_never_blocking`: a full `Block` subscriber
//! made this way never makes a publisher wait; what it had no room for is
//! dropped, counted and reported in its place as a gap signal. A plain
//! `Block` subscriber on the same hub still makes publishers wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{DEADLINE, msg, num, recv, topic};
use switchyard_core::{Error, Overflow, Subscriber, Subscription, Transport};
use switchyard_memory::MemoryTransport;

/// The next item, which must be a gap signal: `(origin, from, to)`.
async fn lost(sub: &mut Box<dyn Subscriber>) -> (String, u64, u64) {
    match tokio::time::timeout(DEADLINE, sub.recv()).await {
        Ok(Some(Err(Error::Lost { origin, from, to }))) => (origin, from, to),
        other => panic!("expected a gap signal, got {other:?}"),
    }
}

async fn nothing_more(sub: &mut Box<dyn Subscriber>) {
    let next = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await;
    assert!(next.is_err(), "expected nothing more, got {next:?}");
}

#[tokio::test]
async fn a_full_block_subscriber_gets_one_gap_signal_and_the_publisher_never_waits() {
    let t = MemoryTransport::new();
    let tp = topic("stuck");
    let mut stuck = t
        .subscribe_never_blocking(&Subscription::new(tp.clone()).buffer(16), "here")
        .unwrap();
    for i in 0..3000 {
        tokio::time::timeout(DEADLINE, t.publish(msg(&tp, i)))
            .await
            .expect("a publish waited for the full never-blocking subscriber")
            .unwrap();
    }
    let st = stuck.stats();
    assert_eq!((st.buffered, st.capacity, st.dropped), (16, 16, 2984));
    for i in 0..16 {
        assert_eq!(num(&recv(&mut stuck).await), i);
    }
    assert_eq!(lost(&mut stuck).await, (format!("here/{tp}"), 17, 3000));
    nothing_more(&mut stuck).await;
    let st = stuck.stats();
    assert_eq!((st.received, st.dropped, st.lost), (16, 2984, 0));
    // It has room again: the next message arrives normally.
    t.publish(msg(&tp, 3000)).await.unwrap();
    assert_eq!(num(&recv(&mut stuck).await), 3000);
}

#[tokio::test]
async fn gap_signals_are_per_topic_and_exact_for_a_pattern_subscriber() {
    let t = MemoryTransport::new();
    let a = topic("room.a");
    let prefix = a.as_str().trim_end_matches(".room.a").to_owned();
    let b = switchyard_core::Topic::new(format!("{prefix}.room.b")).unwrap();
    let mut stuck = t
        .subscribe_never_blocking(
            &Subscription::to(&format!("{prefix}.room.*"))
                .unwrap()
                .buffer(4),
            "here",
        )
        .unwrap();
    for i in 0..50 {
        t.publish(msg(&a, i)).await.unwrap();
        t.publish(msg(&b, i)).await.unwrap();
    }
    // a0 b0 a1 b1 fit; from then on a (seq 3..=50) and b (seq 3..=50) are
    // dropped, each topic's run reported as one signal.
    for (tp, i) in [(&a, 0), (&b, 0), (&a, 1), (&b, 1)] {
        let d = recv(&mut stuck).await;
        assert_eq!((d.topic(), num(&d)), (tp, i));
    }
    assert_eq!(lost(&mut stuck).await, (format!("here/{a}"), 3, 50));
    assert_eq!(lost(&mut stuck).await, (format!("here/{b}"), 3, 50));
    nothing_more(&mut stuck).await;
    assert_eq!(stuck.stats().dropped, 96);
}

#[tokio::test]
async fn drop_policies_are_unchanged() {
    let t = MemoryTransport::new();
    let tp = topic("drops");
    let mut oldest = t
        .subscribe_never_blocking(
            &Subscription::new(tp.clone())
                .buffer(4)
                .overflow(Overflow::DropOldest),
            "here",
        )
        .unwrap();
    let mut newest = t
        .subscribe_never_blocking(
            &Subscription::new(tp.clone())
                .buffer(4)
                .overflow(Overflow::DropNewest),
            "here",
        )
        .unwrap();
    for i in 0..10 {
        t.publish(msg(&tp, i)).await.unwrap();
    }
    for i in 6..10 {
        assert_eq!(num(&recv(&mut oldest).await), i);
    }
    for i in 0..4 {
        assert_eq!(num(&recv(&mut newest).await), i);
    }
    nothing_more(&mut oldest).await;
    nothing_more(&mut newest).await;
    assert_eq!((oldest.stats().dropped, newest.stats().dropped), (6, 6));
}

#[tokio::test]
async fn a_plain_block_subscriber_on_the_same_hub_still_makes_publishers_wait() {
    let t = MemoryTransport::new();
    let tp = topic("both");
    let _stuck = t
        .subscribe_never_blocking(&Subscription::new(tp.clone()).buffer(2), "here")
        .unwrap();
    let mut plain = t
        .subscribe(Subscription::new(tp.clone()).buffer(2))
        .await
        .unwrap();
    t.publish(msg(&tp, 0)).await.unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(200), t.publish(msg(&tp, 2))).await;
    assert!(
        third.is_err(),
        "the plain Block subscriber must hold the publisher back"
    );
    assert_eq!(num(&recv(&mut plain).await), 0);
    assert_eq!(plain.stats().dropped, 0);
}
