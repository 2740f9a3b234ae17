//! Two-stage publish (`publish_queued` + `PublishAck`) through
//! `switchyard::connect` (so through the `Traced` wrapper) on every adapter,
//! against real `redis-server` processes: order and count of the ids, XLEN,
//! errors reaching the acks, dropped acks not cancelling, back-pressure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::prelude::*;
use switchyard::redis_streams::keys;
use switchyard::{PublishAck, trace::Traced};
use switchyard_testkit::{Persistence, RedisOptions, RedisServer};

const NS: &str = "queued";
/// Hang guard: no ack may take longer than this to resolve.
const HANG: Duration = Duration::from_secs(60);

fn hostport(server: &RedisServer) -> String {
    let base = server.url();
    base.split_once("://")
        .map_or(base.as_str(), |(_, r)| r)
        .to_owned()
}

fn streams_url(server: &RedisServer, params: &str) -> String {
    format!(
        "redis+streams://{}/0?namespace={NS}&{params}",
        hostport(server)
    )
}

fn xlen(server: &RedisServer, topic: &Topic) -> i64 {
    server
        .cmd(&["XLEN", &keys::stream_key(NS, topic)])
        .expect("XLEN")
        .as_int()
        .expect("XLEN integer")
}

/// Polls XLEN until it is `want` (or the deadline passes); returns the last value.
async fn xlen_becomes(server: &RedisServer, topic: &Topic, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = xlen(server, topic);
        if n == want || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn topics() -> [Topic; 2] {
    [
        Topic::new("queued.a").unwrap(),
        Topic::new("queued.b").unwrap(),
    ]
}

/// One task queues 10,000 messages over two topics (alternating), then
/// awaits every ack: 5,000 ids per topic, strictly increasing in publish
/// order (so distinct).
async fn ten_thousand_in_order(transport: &Arc<dyn Transport>) -> [Vec<MessageId>; 2] {
    let topics = topics();
    let mut acks: Vec<(usize, PublishAck)> = Vec::with_capacity(10_000);
    for n in 0..10_000u32 {
        let which = (n % 2) as usize;
        let message = Message::new(topics[which].clone(), n.to_string());
        acks.push((
            which,
            transport.publish_queued(message).await.expect("queued"),
        ));
    }
    let mut ids: [Vec<MessageId>; 2] = [Vec::new(), Vec::new()];
    tokio::time::timeout(HANG, async {
        for (which, ack) in acks {
            ids[which].push(ack.await.expect("acknowledged"));
        }
    })
    .await
    .expect("every ack resolves");
    for per_topic in &ids {
        assert_eq!(per_topic.len(), 5_000);
        assert!(
            per_topic.windows(2).all(|w| w[0] < w[1]),
            "ids in publish order"
        );
        assert_eq!(per_topic.iter().collect::<HashSet<_>>().len(), 5_000);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_ten_thousand_in_order() {
    let transport = switchyard::connect("memory://").await.unwrap();
    ten_thousand_in_order(&transport).await;
    // Through the typed layer too.
    let bus = Bus::new(transport.clone());
    let topic = Topic::new("queued.bus").unwrap();
    let first = bus.publish_queued(&topic, &1u32).await.unwrap();
    let second = bus.publish_queued(&topic, &2u32).await.unwrap();
    assert!(first.await.unwrap() < second.await.unwrap());
    transport.close().await.unwrap();
    assert!(matches!(
        transport.publish_queued(Message::new(topic, "late")).await,
        Err(Error::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_ten_thousand_in_order_xlen() {
    let server = RedisServer::start().expect("redis-server");
    let transport = switchyard::connect(&streams_url(&server, ""))
        .await
        .unwrap();
    let ids = ten_thousand_in_order(&transport).await;
    let [a, b] = topics();
    assert_eq!(xlen(&server, &a), 5_000);
    assert_eq!(xlen(&server, &b), 5_000);
    // The ids are the stream's entry ids, in order.
    let last = server
        .cmd(&[
            "XREVRANGE",
            &keys::stream_key(NS, &a),
            "+",
            "-",
            "COUNT",
            "1",
        ])
        .unwrap();
    let last_id = last.as_array().unwrap()[0].as_array().unwrap()[0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(ids[0].last().unwrap().to_string(), last_id);

    // Bus::publish_queued through the same transport.
    let bus = Bus::new(transport.clone());
    let mut acks = Vec::new();
    for n in 0..10u32 {
        acks.push(bus.publish_queued(&a, &n).await.unwrap());
    }
    let acks = futures::future::join_all(acks).await;
    assert_eq!(acks.into_iter().filter(|r| r.is_ok()).count(), 10);
    assert_eq!(xlen(&server, &a), 5_010);
    transport.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_ten_thousand_in_order() {
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+pubsub://{}/0?namespace={NS}", hostport(&server));
    let transport = switchyard::connect(&url).await.unwrap();
    ten_thousand_in_order(&transport).await;
    transport.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_dropped_acks_do_not_cancel() {
    let server = RedisServer::start().expect("redis-server");
    let transport = switchyard::connect(&streams_url(&server, ""))
        .await
        .unwrap();
    let topic = Topic::new("queued.dropped").unwrap();
    for n in 0..100u32 {
        let ack = transport
            .publish_queued(Message::new(topic.clone(), n.to_string()))
            .await
            .unwrap();
        drop(ack);
    }
    assert_eq!(xlen_becomes(&server, &topic, 100).await, 100);
    // Dropped answers are still counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    while transport.stats().published < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(transport.stats().published, 100);
    transport.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_writer_queue_of_one_applies_back_pressure() {
    let server = RedisServer::start().expect("redis-server");
    let transport = switchyard::connect(&streams_url(&server, "writer_queue=1&writer_batch=1"))
        .await
        .unwrap();
    let topic = Topic::new("queued.pressure").unwrap();
    let mut acks = Vec::new();
    for n in 0..1_000u32 {
        // Waits for room; never fails.
        let ack = tokio::time::timeout(
            HANG,
            transport.publish_queued(Message::new(topic.clone(), n.to_string())),
        )
        .await
        .expect("queuing waits, bounded")
        .expect("queuing does not fail when the queue is full");
        acks.push(ack);
    }
    let ids = tokio::time::timeout(HANG, futures::future::try_join_all(acks))
        .await
        .expect("acks resolve")
        .expect("all acknowledged");
    assert_eq!(ids.len(), 1_000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(xlen(&server, &topic), 1_000);
    transport.close().await.unwrap();
}

/// Awaits every ack (bounded by the hang guard): (ok, err).
async fn settle(acks: Vec<PublishAck>) -> (usize, usize) {
    let results = tokio::time::timeout(HANG, futures::future::join_all(acks))
        .await
        .expect("no ack hangs");
    let ok = results.iter().filter(|r| r.is_ok()).count();
    (ok, results.len() - ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_server_gone_before_acks_errors_reach_them() {
    let mut server = RedisServer::start().expect("redis-server");
    let transport = switchyard::connect(&streams_url(
        &server,
        "response_timeout=1s&connect_timeout=500ms&breaker_threshold=1000",
    ))
    .await
    .unwrap();
    let topic = Topic::new("queued.gone").unwrap();
    // The writer's connection is open ...
    transport
        .publish(Message::new(topic.clone(), "warm-up"))
        .await
        .unwrap();
    // ... and the server goes away before anything else is queued.
    server = tokio::task::spawn_blocking(move || {
        server.stop().expect("stop");
        server
    })
    .await
    .unwrap();
    let mut acks = Vec::new();
    let mut refused = 0;
    for n in 0..100u32 {
        match transport
            .publish_queued(Message::new(topic.clone(), n.to_string()))
            .await
        {
            Ok(ack) => acks.push(ack),
            Err(_) => refused += 1,
        }
    }
    let queued = acks.len();
    let (ok, err) = settle(acks).await;
    assert_eq!(queued + refused, 100);
    assert_eq!(
        (ok, err),
        (0, queued),
        "every queued message's ack is an error"
    );
    assert!(queued >= 1);
    assert_eq!(transport.stats().publish_errors, queued as u64);
    transport.close().await.ok();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_server_stopped_while_acks_pending_every_ack_resolves() {
    let mut server = RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof))
        .expect("redis-server");
    let transport = switchyard::connect(&streams_url(
        &server,
        "response_timeout=1s&connect_timeout=500ms&writer_queue=20000",
    ))
    .await
    .unwrap();
    let topic = Topic::new("queued.stopped").unwrap();
    let mut acks = Vec::new();
    for n in 0..10_000u32 {
        acks.push(
            transport
                .publish_queued(Message::new(topic.clone(), n.to_string()))
                .await
                .unwrap(),
        );
    }
    server = tokio::task::spawn_blocking(move || {
        server.stop().expect("stop");
        server
    })
    .await
    .unwrap();
    let (ok, err) = settle(acks).await;
    assert_eq!(ok + err, 10_000, "every ack resolves, Ok {ok} + Err {err}");
    // What was acknowledged is in the stream (the AOF kept it); an
    // entry whose reply was lost with the connection may be there too.
    server = tokio::task::spawn_blocking(move || {
        server.start_again().expect("start again");
        server
    })
    .await
    .unwrap();
    let len = xlen(&server, &topic) as usize;
    eprintln!("server stopped with acks pending: Ok {ok}, Err {err}, XLEN {len}");
    assert!(ok <= len && len <= 10_000, "XLEN {len}, Ok {ok}, Err {err}");
    transport.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_close_flushes_queued_messages() {
    let server = RedisServer::start().expect("redis-server");
    let transport = switchyard::connect(&streams_url(&server, "writer_queue=20000"))
        .await
        .unwrap();
    let topic = Topic::new("queued.close").unwrap();
    let mut acks = Vec::new();
    for n in 0..10_000u32 {
        acks.push(
            transport
                .publish_queued(Message::new(topic.clone(), n.to_string()))
                .await
                .unwrap(),
        );
    }
    transport.close().await.unwrap();
    let (ok, err) = settle(acks).await;
    assert_eq!((ok, err), (10_000, 0));
    assert_eq!(xlen(&server, &topic), 10_000);
    assert!(matches!(
        transport
            .publish_queued(Message::new(topic.clone(), "late"))
            .await,
        Err(Error::Closed)
    ));
}

/// A `Traced` transport (with spans recorded) returns what the wrapped one
/// returns: the same ids in sequence, the same errors.
#[tokio::test]
async fn traced_returns_what_the_inner_transport_returns() {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_test_writer()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let inner: Arc<dyn Transport> = Arc::new(switchyard::memory::MemoryTransport::new());
    let traced = Traced::new(inner.clone());
    let topic = Topic::new("queued.traced").unwrap();
    let mut ids = Vec::new();
    for n in 0..10u32 {
        let m = Message::new(topic.clone(), n.to_string());
        let ack = if n % 2 == 0 {
            traced.publish_queued(m).await.unwrap()
        } else {
            inner.publish_queued(m).await.unwrap()
        };
        ids.push(ack.await.unwrap());
    }
    assert_eq!(ids, (1..=10).map(MessageId::from_seq).collect::<Vec<_>>());
    inner.close().await.unwrap();
    let from_traced = traced
        .publish_queued(Message::new(topic.clone(), "x"))
        .await
        .unwrap_err();
    let from_inner = inner
        .publish_queued(Message::new(topic, "x"))
        .await
        .unwrap_err();
    assert_eq!(from_traced.to_string(), from_inner.to_string());
}
