//! Fan-out against real `redis-server` processes: start positions,
//! several streams per read, pattern discovery, foreign entries, reconnect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{
    Delivery, Message, MessageId, Start, Subscriber, Subscription, Topic, TopicFilter, Transport,
};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{Persistence, RedisOptions, RedisServer};

const NS: &str = "fantest";
const WAIT: Duration = Duration::from_secs(10);

fn url(server: &RedisServer, params: &str) -> String {
    let base = server.url();
    let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
    format!("redis+streams://{rest}/0?namespace={NS}&block=200ms&pattern_rescan=100ms&{params}")
}

async fn connect(server: &RedisServer, params: &str) -> Arc<RedisStreamsTransport> {
    let cfg = StreamsConfig::from_url(&url(server, params)).expect("config");
    Arc::new(RedisStreamsTransport::connect(cfg).await.expect("connect"))
}

fn topic(name: &str) -> Topic {
    Topic::new(name).expect("topic")
}

async fn next(sub: &mut Box<dyn Subscriber>, what: &str) -> Delivery {
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("{what}: error item {e}"),
        Ok(None) => panic!("{what}: subscriber ended"),
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

async fn payloads(sub: &mut Box<dyn Subscriber>, n: usize, what: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let d = next(sub, &format!("{what} ({i} of {n})")).await;
        out.push(String::from_utf8_lossy(d.payload()).into_owned());
    }
    out
}

/// Nothing more arrives within a short quiet period.
async fn quiet(sub: &mut Box<dyn Subscriber>, what: &str) {
    if let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        panic!("{what}: unexpected {item:?}");
    }
}

async fn publish_n(
    t: &RedisStreamsTransport,
    topic: &Topic,
    prefix: &str,
    n: usize,
) -> Vec<MessageId> {
    let batch = (0..n)
        .map(|i| Message::new(topic.clone(), format!("{prefix}{i}")))
        .collect();
    t.publish_batch(batch).await.expect("publish_batch")
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_misses_nothing_published_after_subscribe() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let tp = topic("latest.t");
    publish_n(&t, &tp, "old", 50).await;
    for round in 0..20 {
        let mut sub = t
            .subscribe(Subscription::new(tp.clone()).start(Start::Latest))
            .await
            .expect("subscribe");
        // Published right after subscribe returned: must arrive.
        let id = t
            .publish(Message::new(tp.clone(), format!("new{round}")))
            .await
            .expect("publish");
        let d = next(&mut sub, "first message after subscribe").await;
        assert_eq!(d.payload(), format!("new{round}").as_bytes());
        assert_eq!(d.id(), id);
        assert_eq!(d.attempt(), 1);
        assert!(!d.needs_ack());
        quiet(&mut sub, "Latest subscriber").await;
        sub.close().await.expect("close");
    }
    // A stream that does not exist yet: Latest is 0-0, everything new arrives.
    let fresh = topic("latest.fresh");
    let mut sub = t
        .subscribe(Subscription::new(fresh.clone()))
        .await
        .expect("subscribe");
    publish_n(&t, &fresh, "f", 5).await;
    assert_eq!(
        payloads(&mut sub, 5, "fresh stream").await,
        names("f", 0..5)
    );
    t.close().await.expect("close");
}

#[tokio::test]
async fn earliest_and_after_id() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let tp = topic("replay.t");
    let ids = publish_n(&t, &tp, "m", 20).await;
    let mut all = t
        .subscribe(Subscription::new(tp.clone()).start(Start::Earliest))
        .await
        .expect("subscribe");
    assert_eq!(payloads(&mut all, 20, "Earliest").await, names("m", 0..20));
    let mut after = t
        .subscribe(Subscription::new(tp.clone()).start(Start::After(ids[9])))
        .await
        .expect("subscribe");
    let got = next(&mut after, "After").await;
    assert_eq!(got.id(), ids[10]);
    let rest = payloads(&mut after, 9, "After").await;
    assert_eq!(rest, names("m", 11..20));
    quiet(&mut after, "After").await;
    t.close().await.expect("close");
}

#[tokio::test]
async fn several_streams_in_one_subscription() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "read_count=7").await;
    let topics: Vec<Topic> = (0..5).map(|i| topic(&format!("multi.t{i}"))).collect();
    let filter = TopicFilter::list(topics.clone()).expect("list");
    let mut sub = t
        .subscribe(Subscription::new(filter))
        .await
        .expect("subscribe");
    for tp in &topics {
        publish_n(&t, tp, &format!("{tp}/"), 30).await;
    }
    let mut got = payloads(&mut sub, 150, "list subscriber").await;
    // Per topic in order; all of them, once.
    for tp in &topics {
        let of: Vec<&String> = got
            .iter()
            .filter(|p| p.starts_with(&format!("{tp}/")))
            .collect();
        let want = names(&format!("{tp}/"), 0..30);
        assert_eq!(of, want.iter().collect::<Vec<_>>(), "{tp}");
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 150);
    quiet(&mut sub, "list subscriber").await;
    t.close().await.expect("close");
}

#[tokio::test]
async fn pattern_discovers_streams_created_later() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let existing = topic("robots.r1.scan");
    publish_n(&t, &existing, "old", 3).await;
    let mut sub = t
        .subscribe(Subscription::to("robots.*.scan").expect("filter"))
        .await
        .expect("subscribe");
    // Created after subscribing: read from its beginning once discovered.
    let later = topic("robots.r2.scan");
    publish_n(&t, &later, "r2-", 4).await;
    publish_n(&t, &existing, "new", 2).await;
    publish_n(&t, &topic("robots.r3.other"), "no", 2).await;
    publish_n(&t, &topic("robots.r2.scan:dlq"), "no", 2).await;
    let mut got = payloads(&mut sub, 6, "pattern subscriber").await;
    got.sort();
    let mut want: Vec<String> = names("r2-", 0..4)
        .into_iter()
        .chain(names("new", 0..2))
        .collect();
    want.sort();
    assert_eq!(got, want);
    quiet(&mut sub, "pattern subscriber").await;
    // A pattern with no stream at all yet.
    let mut empty = t
        .subscribe(Subscription::to("later.>").expect("filter"))
        .await
        .expect("subscribe");
    publish_n(&t, &topic("later.a.b"), "x", 1).await;
    assert_eq!(payloads(&mut empty, 1, "empty pattern").await, ["x0"]);
    t.close().await.expect("close");
}

#[tokio::test]
async fn foreign_entries_are_skipped_and_counted() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let tp = topic("foreign.t");
    let key = keys::stream_key(NS, &tp);
    let mut sub = t
        .subscribe(Subscription::new(tp.clone()))
        .await
        .expect("subscribe");
    t.publish(Message::new(tp.clone(), "good1"))
        .await
        .expect("publish");
    for fields in [
        vec!["hello", "world"],
        vec!["v", "9", "d", "00000000000000000000000000000001", "p", "x"],
        vec!["v", "1", "d", "nothex", "p", "x"],
        vec![
            "v",
            "1",
            "d",
            "00000000000000000000000000000001",
            "p",
            "x",
            "h",
            "\u{7f}",
        ],
    ] {
        let mut args = vec!["XADD", key.as_str(), "*"];
        args.extend(fields);
        server.cmd(&args).expect("XADD foreign");
    }
    t.publish(Message::new(tp.clone(), "good2"))
        .await
        .expect("publish");
    assert_eq!(
        payloads(&mut sub, 2, "around foreign entries").await,
        ["good1", "good2"]
    );
    assert_eq!(sub.stats().malformed, 4);
    assert_eq!(sub.stats().received, 2);
    quiet(&mut sub, "after foreign entries").await;
    t.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_reconnects_after_a_server_restart() {
    let mut server = RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof))
        .expect("redis");
    let t = connect(&server, "connect_timeout=500ms&response_timeout=1s").await;
    let tp = topic("restart.t");
    let mut sub = t
        .subscribe(Subscription::new(tp.clone()))
        .await
        .expect("subscribe");
    publish_n(&t, &tp, "before", 3).await;
    assert_eq!(
        payloads(&mut sub, 3, "before restart").await,
        names("before", 0..3)
    );

    tokio::task::block_in_place(|| server.restart()).expect("restart");

    // Publishing recovers (retry while the connections come back).
    let deadline = Instant::now() + WAIT;
    let mut sent = 0;
    while sent < 3 {
        match t
            .publish(Message::new(tp.clone(), format!("after{sent}")))
            .await
        {
            Ok(_) => sent += 1,
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                assert!(Instant::now() < deadline, "publishing never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(
        payloads(&mut sub, 3, "after restart").await,
        names("after", 0..3)
    );
    quiet(&mut sub, "after restart").await;
    assert!(t.stats().reconnects >= 1, "{:?}", t.stats());
    t.close().await.expect("close");
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(None) => {}
        other => panic!("the subscriber should end with its transport: {other:?}"),
    }
}
