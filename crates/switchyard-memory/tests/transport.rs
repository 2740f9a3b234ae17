//! Hubs, URLs, closing, health and validation of the memory adapter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{msg, num, recv, recv_within, topic};
use switchyard_core::{Error, Health, Overflow, Start, Subscription, Transport};
use switchyard_memory::{MemoryConfig, MemoryHub, MemoryTransport, SCHEMES, connect};

fn unique(name: &str) -> String {
    format!("{name}-{}", topic("x").as_str().replace('.', "-"))
}

#[tokio::test]
async fn named_hubs_are_shared_and_plain_urls_are_not() {
    let name = unique("shared");
    let a = MemoryTransport::named(&name);
    let b = MemoryTransport::from_url(&format!("memory://{name}")).unwrap();
    assert!(a.hub().same_hub(&b.hub()));
    assert_eq!(a.hub().name(), Some(name.as_str()));
    let tp = topic("named");
    let mut sub = b.subscribe(Subscription::new(tp.clone())).await.unwrap();
    a.publish(msg(&tp, 1)).await.unwrap();
    assert_eq!(num(&recv(&mut sub).await), 1);

    let c = MemoryTransport::from_url("memory://").unwrap();
    let d = MemoryTransport::from_url("memory://").unwrap();
    assert!(!c.hub().same_hub(&d.hub()));
    let mut on_d = d.subscribe(Subscription::new(tp.clone())).await.unwrap();
    c.publish(msg(&tp, 2)).await.unwrap();
    assert!(
        recv_within(&mut on_d, Duration::from_millis(20))
            .await
            .is_none()
    );
    assert!(
        !MemoryTransport::new()
            .hub()
            .same_hub(&MemoryTransport::new().hub())
    );
}

#[tokio::test]
async fn a_named_hub_lives_while_anyone_holds_it() {
    let name = unique("lifetime");
    let tp = topic("keep");
    let first = MemoryTransport::named(&name);
    first.publish(msg(&tp, 1)).await.unwrap();
    let second = MemoryTransport::named(&name);
    drop(first);
    let mut sub = second
        .subscribe(Subscription::new(tp.clone()).start(Start::Earliest))
        .await
        .unwrap();
    assert_eq!(num(&recv(&mut sub).await), 1);
    drop(sub);
    drop(second);
    // Everyone let go: the next one is a new, empty hub.
    let third = MemoryTransport::named(&name);
    let mut sub = third
        .subscribe(Subscription::new(tp).start(Start::Earliest))
        .await
        .unwrap();
    assert!(
        recv_within(&mut sub, Duration::from_millis(20))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn urls_configure_and_errors_explain() {
    let t = MemoryTransport::from_url("memory://?retention=2").unwrap();
    assert_eq!(t.hub().config().retention, 2);
    // 0 means no cap, which a memory hub bounds at MAX_RETENTION.
    let t = MemoryTransport::from_url("memory://?retention=0").unwrap();
    assert_eq!(
        t.hub().config().retention,
        switchyard_memory::MemoryConfig::MAX_RETENTION
    );
    for bad in [
        "redis://localhost",
        "memory:/x",
        "memory://a/b",
        "memory://x?retention=-1",
        "memory://x?retain=x",
        "memory://x?colour=blue",
        "memory://user:hunter2@x",
    ] {
        let e = MemoryTransport::from_url(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidUrl { .. }), "{bad}: {e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    assert_eq!(SCHEMES, ["memory"]);
    let t = connect("memory://").await.unwrap();
    assert_eq!(t.name(), "memory");
    assert!(connect("nats://x").await.is_err());
}

#[tokio::test]
async fn capabilities_and_health() {
    let t = MemoryTransport::default();
    let c = t.capabilities();
    assert!(!c.persistent && !c.cross_process && !c.gap_signals);
    assert!(c.replay && c.consumer_groups && c.ack_redelivery && c.per_topic_ordering);
    assert!(c.dead_letters && c.patterns && c.at_least_once);
    assert_eq!(t.health().await, Health::Ok);
    t.close().await.unwrap();
    assert_eq!(t.health().await, Health::Down("closed".into()));
}

#[tokio::test]
async fn after_close_publish_fails_and_subscribers_end() {
    let hub = MemoryHub::new();
    let t = hub.transport();
    let other = hub.transport();
    let tp = topic("close");
    let mut fan = t.subscribe(Subscription::new(tp.clone())).await.unwrap();
    let mut grp = t
        .subscribe(Subscription::new(tp.clone()).group("g"))
        .await
        .unwrap();
    let mut survivor = other
        .subscribe(Subscription::new(tp.clone()))
        .await
        .unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    t.close().await.unwrap();
    t.close().await.unwrap(); // idempotent
    assert!(matches!(t.publish(msg(&tp, 2)).await, Err(Error::Closed)));
    assert!(matches!(
        t.publish_batch(vec![msg(&tp, 2)]).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        t.subscribe(Subscription::new(tp.clone())).await.err(),
        Some(Error::Closed)
    ));
    assert!(fan.recv().await.is_none());
    assert!(grp.recv().await.is_none());
    assert!(fan.recv().await.is_none());
    assert_eq!(t.stats().published, 1);
    assert!(t.stats().publish_errors >= 2);
    // The hub goes on for the other transport.
    other.publish(msg(&tp, 3)).await.unwrap();
    assert_eq!(num(&recv(&mut survivor).await), 1);
    assert_eq!(num(&recv(&mut survivor).await), 3);
    assert_eq!(other.health().await, Health::Ok);
}

#[tokio::test]
async fn a_publisher_blocked_on_a_full_subscriber_fails_when_its_transport_closes() {
    let hub = MemoryHub::new();
    let publisher = hub.transport();
    let reader = hub.transport();
    let tp = topic("blockedclose");
    let _sub = reader
        .subscribe(Subscription::new(tp.clone()).buffer(1))
        .await
        .unwrap();
    publisher.publish(msg(&tp, 1)).await.unwrap();
    let blocked = tokio::spawn({
        let publisher = publisher.clone();
        let tp = tp.clone();
        async move { publisher.publish(msg(&tp, 2)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!blocked.is_finished());
    publisher.close().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(result, Err(Error::Closed)));
}

#[tokio::test]
async fn invalid_subscriptions_are_errors() {
    let t = MemoryTransport::new();
    let tp = topic("invalid");
    for sub in [
        Subscription::new(tp.clone()).buffer(0),
        Subscription::new(tp.clone()).max_attempts(0),
        Subscription::new(tp.clone()).ack_timeout(Duration::ZERO),
        Subscription::new(tp.clone()).group_member("bad name", "c"),
        Subscription::new(tp.clone()).buffer(usize::MAX),
    ] {
        assert!(matches!(
            t.subscribe(sub).await.err(),
            Some(Error::InvalidConfig(_))
        ));
    }
    assert!(matches!(
        Subscription::to("a..b").err(),
        Some(Error::InvalidTopic { .. })
    ));
}

#[tokio::test]
async fn dead_letter_retention_is_separate() {
    let t = MemoryTransport::with_config(
        MemoryConfig::default()
            .with_retention(1)
            .with_dead_letter_retention(5),
    );
    let tp = topic("dlqretain");
    let dlq = tp.dead_letter().unwrap();
    for i in 0..5 {
        t.publish(msg(&dlq, i)).await.unwrap();
        t.publish(msg(&tp, i)).await.unwrap();
    }
    let mut d = t
        .subscribe(Subscription::new(dlq).start(Start::Earliest))
        .await
        .unwrap();
    for i in 0..5 {
        assert_eq!(num(&recv(&mut d).await), i);
    }
    let mut o = t
        .subscribe(
            Subscription::new(tp)
                .start(Start::Earliest)
                .overflow(Overflow::DropNewest),
        )
        .await
        .unwrap();
    assert_eq!(num(&recv(&mut o).await), 4);
    assert!(
        recv_within(&mut o, Duration::from_millis(10))
            .await
            .is_none()
    );
}

#[test]
fn transports_can_be_made_outside_a_runtime() {
    let t = MemoryTransport::new();
    let hub = t.hub();
    assert_eq!(hub.topic_count(), 0);
    assert!(format!("{t:?}").contains("MemoryTransport"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tp = topic("outside");
        let mut sub = t
            .subscribe(Subscription::new(tp.clone()).group("g"))
            .await
            .unwrap();
        t.publish(msg(&tp, 1)).await.unwrap();
        recv(&mut sub).await.ack().await.unwrap();
    });
    assert_eq!(hub.topic_count(), 1);
}
