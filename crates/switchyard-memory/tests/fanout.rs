//! Fan-out, replay, overflow and pattern semantics of the memory adapter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{msg, num, recv, recv_within, topic};
use switchyard_core::{MessageId, Overflow, Start, Subscription, Topic, TopicFilter, Transport};
use switchyard_memory::{MemoryConfig, MemoryTransport};

#[tokio::test]
async fn a_thousand_messages_arrive_in_order_with_increasing_ids() {
    let t = MemoryTransport::new();
    let tp = topic("order");
    let mut sub = t.subscribe(Subscription::new(tp.clone())).await.unwrap();
    let publisher = {
        let t = t.clone();
        let tp = tp.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..1000 {
                ids.push(t.publish(msg(&tp, i)).await.unwrap());
            }
            ids
        })
    };
    for i in 0..1000 {
        let d = recv(&mut sub).await;
        assert_eq!(num(&d), i);
        assert_eq!(d.id(), MessageId::from_seq(i as u64 + 1));
        assert_eq!(d.attempt(), 1);
        assert!(!d.needs_ack());
    }
    let ids = publisher.await.unwrap();
    assert_eq!(ids.first(), Some(&MessageId::new(0, 1)));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(sub.stats().received, 1000);
    assert_eq!(t.stats().published, 1000);
    assert!(
        recv_within(&mut sub, Duration::from_millis(20))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn every_fanout_subscriber_gets_every_message() {
    let t = MemoryTransport::new();
    let tp = topic("fan");
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(t.subscribe(Subscription::new(tp.clone())).await.unwrap());
    }
    let ids = t
        .publish_batch((0..100).map(|i| msg(&tp, i)).collect())
        .await
        .unwrap();
    assert_eq!(ids.len(), 100);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    for sub in &mut subs {
        for i in 0..100 {
            assert_eq!(num(&recv(sub).await), i);
        }
        assert!(recv_within(sub, Duration::from_millis(10)).await.is_none());
    }
}

#[tokio::test]
async fn start_positions() {
    let t = MemoryTransport::new();
    let tp = topic("start");
    let ids = t
        .publish_batch((0..5).map(|i| msg(&tp, i)).collect())
        .await
        .unwrap();
    let mut latest = t.subscribe(Subscription::new(tp.clone())).await.unwrap();
    let mut earliest = t
        .subscribe(Subscription::new(tp.clone()).start(Start::Earliest))
        .await
        .unwrap();
    let mut after = t
        .subscribe(Subscription::new(tp.clone()).start(Start::After(ids[2])))
        .await
        .unwrap();
    let mut future = t
        .subscribe(Subscription::new(tp.clone()).start(Start::After(MessageId::from_seq(6))))
        .await
        .unwrap();
    for i in 5..8 {
        t.publish(msg(&tp, i)).await.unwrap();
    }
    for i in 5..8 {
        assert_eq!(num(&recv(&mut latest).await), i);
    }
    for i in 0..8 {
        assert_eq!(num(&recv(&mut earliest).await), i);
    }
    for i in 3..8 {
        assert_eq!(num(&recv(&mut after).await), i);
    }
    // ids 7 and 8 (payloads 6 and 7) are greater than 0-6.
    assert_eq!(num(&recv(&mut future).await), 6);
    assert_eq!(num(&recv(&mut future).await), 7);
    for sub in [&mut latest, &mut earliest, &mut after, &mut future] {
        assert!(recv_within(sub, Duration::from_millis(10)).await.is_none());
    }
    let bad = Subscription::new(tp).start(Start::After(MessageId::new(5, 0)));
    assert!(matches!(
        t.subscribe(bad).await.err(),
        Some(switchyard_core::Error::InvalidConfig(_))
    ));
}

#[tokio::test]
async fn retention_trims_the_oldest() {
    let t = MemoryTransport::with_config(MemoryConfig::default().with_retention(3));
    let tp = topic("retain");
    t.publish_batch((0..10).map(|i| msg(&tp, i)).collect())
        .await
        .unwrap();
    let mut sub = t
        .subscribe(Subscription::new(tp).start(Start::Earliest))
        .await
        .unwrap();
    for i in 7..10 {
        let d = recv(&mut sub).await;
        assert_eq!(num(&d), i);
        assert_eq!(d.id(), MessageId::from_seq(i as u64 + 1));
    }
    assert!(
        recv_within(&mut sub, Duration::from_millis(10))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_and_counts() {
    let t = MemoryTransport::new();
    let tp = topic("dropold");
    let mut sub = t
        .subscribe(
            Subscription::new(tp.clone())
                .buffer(4)
                .overflow(Overflow::DropOldest),
        )
        .await
        .unwrap();
    for i in 0..10 {
        t.publish(msg(&tp, i)).await.unwrap();
    }
    assert_eq!(sub.stats().dropped, 6);
    for i in 6..10 {
        assert_eq!(num(&recv(&mut sub).await), i);
    }
    assert!(
        recv_within(&mut sub, Duration::from_millis(10))
            .await
            .is_none()
    );
    // Still receiving after drops.
    t.publish(msg(&tp, 10)).await.unwrap();
    assert_eq!(num(&recv(&mut sub).await), 10);
    assert_eq!(sub.stats().received, 5);
}

#[tokio::test]
async fn drop_newest_keeps_the_oldest_and_counts() {
    let t = MemoryTransport::new();
    let tp = topic("dropnew");
    let mut sub = t
        .subscribe(
            Subscription::new(tp.clone())
                .buffer(4)
                .overflow(Overflow::DropNewest),
        )
        .await
        .unwrap();
    for i in 0..10 {
        t.publish(msg(&tp, i)).await.unwrap();
    }
    assert_eq!(sub.stats().dropped, 6);
    for i in 0..4 {
        assert_eq!(num(&recv(&mut sub).await), i);
    }
    t.publish(msg(&tp, 10)).await.unwrap();
    assert_eq!(num(&recv(&mut sub).await), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_is_lossless_with_a_slow_subscriber() {
    let t = MemoryTransport::new();
    let tp = topic("block");
    let mut slow = t
        .subscribe(Subscription::new(tp.clone()).buffer(2))
        .await
        .unwrap();
    let mut fast = t
        .subscribe(Subscription::new(tp.clone()).buffer(1))
        .await
        .unwrap();
    let publisher = {
        let t = t.clone();
        let tp = tp.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                t.publish(msg(&tp, i)).await.unwrap();
            }
        })
    };
    let fast_reader = tokio::spawn(async move {
        for i in 0..300 {
            assert_eq!(num(&recv(&mut fast).await), i);
        }
        fast
    });
    for i in 0..300 {
        if i % 50 == 0 {
            // Be slow: let the publisher run into the full buffer.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(num(&recv(&mut slow).await), i);
    }
    publisher.await.unwrap();
    let fast = fast_reader.await.unwrap();
    assert_eq!(slow.stats().dropped, 0);
    assert_eq!(fast.stats().dropped, 0);
    assert_eq!(slow.stats().received, 300);
}

#[tokio::test]
async fn a_full_block_subscriber_holds_the_publisher_back() {
    let t = MemoryTransport::new();
    let tp = topic("backpressure");
    let mut sub = t
        .subscribe(Subscription::new(tp.clone()).buffer(2))
        .await
        .unwrap();
    t.publish(msg(&tp, 0)).await.unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(50), t.publish(msg(&tp, 2))).await;
    assert!(third.is_err(), "the third publish must wait for room");
    // The cancelled publish left nothing behind.
    assert_eq!(num(&recv(&mut sub).await), 0);
    let publish = tokio::spawn({
        let t = t.clone();
        let tp = tp.clone();
        async move { t.publish(msg(&tp, 3)).await.unwrap() }
    });
    assert_eq!(num(&recv(&mut sub).await), 1);
    assert_eq!(num(&recv(&mut sub).await), 3);
    assert_eq!(publish.await.unwrap(), MessageId::from_seq(3));
    // A closed subscriber no longer holds anyone back.
    sub.close().await.unwrap();
    for i in 0..5 {
        t.publish(msg(&tp, i)).await.unwrap();
    }
}

#[tokio::test]
async fn patterns_follow_topics_created_later_and_skip_dead_letters() {
    let t = MemoryTransport::new();
    let prefix = topic("pat");
    let mut sub = t
        .subscribe(Subscription::to(&format!("{prefix}.*")).unwrap())
        .await
        .unwrap();
    let mut earliest = t
        .subscribe(
            Subscription::to(&format!("{prefix}.>"))
                .unwrap()
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    let a = Topic::new(format!("{prefix}.a")).unwrap();
    let b = Topic::new(format!("{prefix}.b")).unwrap();
    let deep = Topic::new(format!("{prefix}.b.c")).unwrap();
    let dlq = a.dead_letter().unwrap();
    t.publish(msg(&a, 1)).await.unwrap();
    t.publish(msg(&dlq, 99)).await.unwrap();
    t.publish(msg(&deep, 3)).await.unwrap();
    t.publish(msg(&b, 2)).await.unwrap();
    let d = recv(&mut sub).await;
    assert_eq!((d.topic(), num(&d)), (&a, 1));
    let d = recv(&mut sub).await;
    assert_eq!((d.topic(), num(&d)), (&b, 2));
    assert!(
        recv_within(&mut sub, Duration::from_millis(20))
            .await
            .is_none()
    );
    let mut got: Vec<usize> = Vec::new();
    for _ in 0..3 {
        got.push(num(&recv(&mut earliest).await));
    }
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3]);
    assert!(
        recv_within(&mut earliest, Duration::from_millis(20))
            .await
            .is_none()
    );

    // A later subscriber with Earliest replays existing matching topics.
    let mut replay = t
        .subscribe(
            Subscription::new(TopicFilter::parse(&format!("{prefix}.*")).unwrap())
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    let mut got: Vec<usize> = Vec::new();
    for _ in 0..2 {
        got.push(num(&recv(&mut replay).await));
    }
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
}

#[tokio::test]
async fn list_filters_receive_from_each_topic() {
    let t = MemoryTransport::new();
    let a = topic("la");
    let b = topic("lb");
    let mut sub = t
        .subscribe(Subscription::new(
            TopicFilter::list([a.clone(), b.clone()]).unwrap(),
        ))
        .await
        .unwrap();
    t.publish(msg(&a, 1)).await.unwrap();
    t.publish(msg(&b, 2)).await.unwrap();
    t.publish(msg(&topic("other"), 3)).await.unwrap();
    assert_eq!(num(&recv(&mut sub).await), 1);
    assert_eq!(num(&recv(&mut sub).await), 2);
    assert!(
        recv_within(&mut sub, Duration::from_millis(10))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn headers_payload_and_dedup_id_survive() {
    let t = MemoryTransport::new();
    let tp = topic("hdr");
    let mut sub = t.subscribe(Subscription::new(tp.clone())).await.unwrap();
    let m = msg(&tp, 7).with_header("tenant", "acme");
    t.publish(m.clone()).await.unwrap();
    let d = recv(&mut sub).await;
    assert_eq!(d.message(), &m);
    assert_eq!(d.dedup_id(), m.dedup_id);
    assert_eq!(d.headers().get("tenant"), Some("acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_midway_and_keeps_its_order() {
    let t = MemoryTransport::new();
    let tp = topic("batchblock");
    let other = topic("batchother");
    let mut sub = t
        .subscribe(Subscription::new(tp.clone()).buffer(3))
        .await
        .unwrap();
    let batch: Vec<_> = (0..40)
        .map(|i| {
            if i % 10 == 9 {
                msg(&other, i)
            } else {
                msg(&tp, i)
            }
        })
        .collect();
    let publisher = tokio::spawn({
        let t = t.clone();
        async move { t.publish_batch(batch).await.unwrap() }
    });
    for i in (0..40).filter(|i| i % 10 != 9) {
        assert_eq!(num(&recv(&mut sub).await), i);
    }
    let ids = publisher.await.unwrap();
    assert_eq!(ids.len(), 40);
    assert_eq!(ids[9], MessageId::from_seq(1));
    assert_eq!(ids[39], MessageId::from_seq(4));
    assert_eq!(ids[38], MessageId::from_seq(36));
    assert_eq!(t.stats().published, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_keep_their_own_order() {
    let t = MemoryTransport::new();
    let tp = topic("concurrent");
    let mut sub = t
        .subscribe(Subscription::new(tp.clone()).buffer(8))
        .await
        .unwrap();
    let mut publishers = Vec::new();
    for p in 0..3 {
        let t = t.clone();
        let tp = tp.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..500 {
                t.publish(msg(&tp, p * 1000 + i)).await.unwrap();
            }
        }));
    }
    let mut next = [0usize; 3];
    let mut last_id = MessageId::default();
    for _ in 0..1500 {
        let d = recv(&mut sub).await;
        assert!(d.id() > last_id);
        last_id = d.id();
        let n = num(&d);
        assert_eq!(
            n % 1000,
            next[n / 1000],
            "publisher {} out of order",
            n / 1000
        );
        next[n / 1000] += 1;
    }
    for p in publishers {
        p.await.unwrap();
    }
    assert_eq!(next, [500; 3]);
}
