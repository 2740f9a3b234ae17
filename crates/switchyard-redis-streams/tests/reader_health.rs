//! A subscriber reader that cannot reach Redis shows in `health()`.
//!
//! Reproduction of the defect: with more streams than Redis' `maxclients`
//! allows readers for (10,000 streams on one cluster master), the readers
//! that were refused retried in the background forever and `health()`
//! stayed `Ok` (bench-compare cluster --masters 1 --discovery 10000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use switchyard_core::{Health, Message, Start, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::RedisServer;

fn connected_clients(admin: &mut switchyard_testkit::RespConnection) -> i64 {
    let info = admin.command(&["INFO", "clients"]).unwrap();
    let info = info.as_str().unwrap().to_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_refused_by_maxclients_degrades_health_until_it_reads() {
    let server = tokio::task::block_in_place(RedisServer::start).unwrap();
    let base = server.url();
    let url = format!(
        "redis+streams://{}?block=200ms&connect_timeout=1s",
        base.strip_prefix("redis://").unwrap()
    );
    let bus = RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let topic = Topic::new("orders").unwrap();
    bus.publish(Message::new(topic.clone(), "warm-up"))
        .await
        .unwrap();
    assert_eq!(bus.health().await, Health::Ok);
    // No room for one more client: the group member's reader is refused
    // ("max number of clients reached"). An admin connection opened before
    // raises the limit again.
    let mut admin = server.connect().unwrap();
    let now = connected_clients(&mut admin);
    admin
        .command(&["CONFIG", "SET", "maxclients", &now.to_string()])
        .unwrap();
    let sub = bus
        .subscribe(
            Subscription::new(topic.clone())
                .group("g")
                .start(Start::Earliest),
        )
        .await;
    let mut sub = sub.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        match bus.health().await {
            Health::Degraded(r) if r.contains("subscriber reader") => break r,
            other => {
                assert!(Instant::now() < deadline, "health stayed {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        reason.starts_with("1 subscriber reader(s) cannot read"),
        "{reason}"
    );
    admin
        .command(&["CONFIG", "SET", "maxclients", "10000"])
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(20), sub.recv())
        .await
        .expect("delivered once Redis takes the reader")
        .unwrap()
        .unwrap();
    assert_eq!(&d.payload()[..], b"warm-up");
    d.ack().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = bus.health().await;
        if h == Health::Ok {
            break;
        }
        assert!(Instant::now() < deadline, "health stayed {h:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sub.close().await.unwrap();
    bus.close().await.unwrap();
}
