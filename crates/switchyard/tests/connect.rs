//! `connect(url)` end to end on the in-memory adapter.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard::prelude::*;

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Ping {
    n: u32,
}

#[tokio::test]
async fn memory_url_round_trip() {
    let transport = switchyard::connect("memory://").await.unwrap();
    assert_eq!(transport.name(), "memory");
    let topic = Topic::new("facade.ping").unwrap();

    let mut raw = transport
        .subscribe(Subscription::new(topic.clone()))
        .await
        .unwrap();
    transport
        .publish(Message::new(topic.clone(), "hello"))
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), raw.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&d.payload()[..], b"hello");
    assert_eq!(d.attempt(), 1);

    let bus = Bus::new(transport.clone());
    let mut typed = bus
        .subscribe::<Ping>(Subscription::new(topic.clone()).group("g"))
        .await
        .unwrap();
    bus.publish(&topic, &Ping { n: 7 }).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), typed.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.value, Ping { n: 7 });
    got.ack().await.unwrap();
    transport.close().await.unwrap();
}

#[tokio::test]
async fn named_memory_hubs_are_shared() {
    let a = switchyard::connect("memory://facade-shared").await.unwrap();
    let b = switchyard::connect("MEMORY://facade-shared").await.unwrap();
    let topic = Topic::new("facade.shared").unwrap();
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await.unwrap();
    a.publish(Message::new(topic, "x")).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&d.payload()[..], b"x");
}

#[tokio::test]
async fn compiled_schemes_and_env_default() {
    assert!(switchyard::compiled_schemes().contains(&"memory"));
    assert_eq!(switchyard::DEFAULT_URL, "memory://");
    // The variable is not set by the test runner; if a developer set it to
    // something else, connect_from_env follows it, which is not checked here.
    if std::env::var_os(switchyard::URL_ENV).is_none() {
        let t = switchyard::connect_from_env().await.unwrap();
        assert_eq!(t.name(), "memory");
    }
}
