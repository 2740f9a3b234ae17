//! `nack(Retry::After(d))` with `d` past `Retry::MAX_DELAY`, through the
//! public API on the memory adapter.
//!
//! Reproduction of the defect: `delivery.nack(Retry::After(Duration::MAX))`
//! panicked inside the memory adapter (`now + delay` overflowed). Now core
//! refuses it with `Error::InvalidConfig` before the adapter sees it, the
//! delivery is released unsettled, and the message comes back (attempt 2).
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard::prelude::*;

/// Generous: the machine is shared and loaded.
const DEADLINE: Duration = Duration::from_secs(10);

async fn next(sub: &mut Box<dyn Subscriber>) -> Delivery {
    tokio::time::timeout(DEADLINE, sub.recv())
        .await
        .expect("a delivery within the deadline")
        .expect("subscriber open")
        .expect("a delivery, not an error")
}

#[tokio::test]
async fn too_long_a_retry_delay_is_refused_and_the_message_comes_back() {
    let transport = switchyard::connect("memory://?redelivery_tick_ms=10")
        .await
        .unwrap();
    refused_then_redelivered(transport).await;
}

/// The same on Redis Streams, whose group code also computed `now + delay`.
#[cfg(feature = "redis-streams")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_too() {
    let server = switchyard_testkit::RedisServer::start().expect("redis-server must be installed");
    let url = format!(
        "redis+streams://{}?namespace=retry-delay&block=100ms",
        server.addr()
    );
    let transport = switchyard::connect(&url).await.unwrap();
    refused_then_redelivered(transport.clone()).await;
    transport.close().await.unwrap();
}

async fn refused_then_redelivered(transport: std::sync::Arc<dyn Transport>) {
    let topic = Topic::new("retry.delay").unwrap();
    let mut sub = transport
        .subscribe(
            Subscription::new(topic.clone())
                .group_member("g", "c1")
                .ack_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    transport
        .publish(Message::new(topic.clone(), "job"))
        .await
        .unwrap();

    let delays = [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Retry::MAX_DELAY + Duration::from_millis(1),
    ];
    for (i, delay) in delays.into_iter().enumerate() {
        let d = next(&mut sub).await;
        assert_eq!(&d.payload()[..], b"job");
        assert_eq!(d.attempt() as usize, i + 1);
        let e = d.nack(Retry::After(delay)).await.unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
        assert!(e.to_string().contains("Retry::MAX_DELAY"), "{e}");
    }
    // Released unsettled each time: back at once (well before the 60 s ack
    // timeout), as after nack(Retry::Now).
    let d = next(&mut sub).await;
    assert_eq!(d.attempt(), 4);
    d.ack().await.unwrap();
    // Nothing else is pending.
    let nothing = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await;
    assert!(nothing.is_err(), "unexpected delivery: {nothing:?}");
}
