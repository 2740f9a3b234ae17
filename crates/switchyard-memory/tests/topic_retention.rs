//! Per-topic retention on the memory adapter: rules by exact topic and
//! pattern, most specific first, exact counts, age caps (with tokio's
//! paused clock, so no real waiting), and the transport-wide fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{msg, num, recv, recv_within};
use switchyard_core::{Message, Start, Subscription, Topic, TopicFilter, Transport};
use switchyard_memory::{MemoryConfig, MemoryTransport};

async fn length(t: &MemoryTransport, topic: &str) -> u64 {
    let infos = t.topics(&TopicFilter::parse(topic).unwrap()).await.unwrap();
    infos
        .iter()
        .find(|i| i.topic.as_str() == topic)
        .map_or(0, |i| i.length)
}

async fn publish(t: &MemoryTransport, topic: &str, n: usize) {
    let tp = Topic::new(topic).unwrap();
    // Half one by one, half in one batch: both paths trim.
    for i in 0..n / 2 {
        t.publish(msg(&tp, i)).await.unwrap();
    }
    let batch: Vec<Message> = (n / 2..n).map(|i| msg(&tp, i)).collect();
    t.publish_batch(batch).await.unwrap();
}

/// Replays `topic` from the start and returns the payloads, in order.
async fn replay(t: &MemoryTransport, topic: &str, expect: usize) -> Vec<usize> {
    let tp = Topic::new(topic).unwrap();
    let mut sub = t
        .subscribe(Subscription::new(tp).start(Start::Earliest))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..expect {
        got.push(num(&recv(&mut sub).await));
    }
    assert!(
        recv_within(&mut sub, Duration::from_millis(50))
            .await
            .is_none(),
        "{topic}: more than {expect} replayed"
    );
    got
}

#[tokio::test]
async fn rules_cap_their_topics_exactly_most_specific_first() {
    let t = MemoryTransport::from_url(
        "memory://?retention=500&retain=*/camera/rgb:maxlen=50&retain=*/scan:maxlen=100\
         &retain=robot-1/camera/rgb:maxlen=20&retain=big/*:0",
    )
    .unwrap();
    for (topic, published, kept) in [
        ("robot-7/camera/rgb", 2000, 50),
        ("robot-7/scan", 2000, 100),
        ("robot-1/camera/rgb", 2000, 20),
        ("robot-7/odom", 2000, 500),
        ("big/x", 1000, 1000),
    ] {
        publish(&t, topic, published).await;
        assert_eq!(length(&t, topic).await, kept, "{topic}");
        let got = replay(&t, topic, kept as usize).await;
        let first = published - kept as usize;
        assert_eq!(got, (first..published).collect::<Vec<_>>(), "{topic}");
    }
    t.close().await.unwrap();
}

#[tokio::test]
async fn typed_rules_and_dead_letters() {
    let cfg = MemoryConfig::default()
        .with_retention(30)
        .with_dead_letter_retention(4)
        .with_topic_retention(
            "jobs.*".parse().unwrap(),
            switchyard_core::Retention::max_len_of(7),
        )
        .unwrap()
        .with_topic_retention(
            "jobs.a:dlq".parse().unwrap(),
            switchyard_core::Retention::max_len_of(2),
        )
        .unwrap();
    let t = MemoryTransport::with_config(cfg);
    publish(&t, "jobs.a", 40).await;
    publish(&t, "other", 40).await;
    // Wildcards skip dead-letter topics: jobs.b:dlq keeps the
    // dead-letter retention, jobs.a:dlq its own rule.
    publish(&t, "jobs.a:dlq", 10).await;
    publish(&t, "jobs.b:dlq", 10).await;
    assert_eq!(length(&t, "jobs.a").await, 7);
    assert_eq!(length(&t, "other").await, 30);
    assert_eq!(length(&t, "jobs.a:dlq").await, 2);
    assert_eq!(length(&t, "jobs.b:dlq").await, 4);
    t.close().await.unwrap();
}

/// Age caps: entries older than the age are dropped when the topic is
/// next published to, and never replayed nor read by a group (the paused
/// clock moves only when told).
#[tokio::test(start_paused = true)]
async fn age_caps_drop_old_entries_and_never_replay_them() {
    let t = MemoryTransport::from_url(
        "memory://?retain=*/scan:age=10s&retain=robot-1/scan:maxlen=3,age=10s",
    )
    .unwrap();
    publish(&t, "robot-7/scan", 20).await;
    publish(&t, "robot-1/scan", 20).await;
    publish(&t, "robot-7/odom", 20).await;
    assert_eq!(length(&t, "robot-7/scan").await, 20);
    assert_eq!(length(&t, "robot-1/scan").await, 3);
    tokio::time::advance(Duration::from_secs(6)).await;
    publish(&t, "robot-7/scan", 4).await;
    assert_eq!(length(&t, "robot-7/scan").await, 24);
    // The first 20 are now 11 s old, the last 4 are 5 s old.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(replay(&t, "robot-7/scan", 4).await, vec![0, 1, 2, 3]);
    assert_eq!(length(&t, "robot-7/scan").await, 4);
    // A group created now starts from what is left.
    let mut group = t
        .subscribe(
            Subscription::new(Topic::new("robot-1/scan").unwrap())
                .group_member("g", "c")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    assert!(
        recv_within(&mut group, Duration::from_millis(50))
            .await
            .is_none()
    );
    assert_eq!(length(&t, "robot-1/scan").await, 0);
    publish(&t, "robot-1/scan", 2).await;
    assert_eq!(num(&recv(&mut group).await), 0);
    assert_eq!(num(&recv(&mut group).await), 1);
    // No rule: nothing expires.
    assert_eq!(length(&t, "robot-7/odom").await, 20);
    t.close().await.unwrap();
}
