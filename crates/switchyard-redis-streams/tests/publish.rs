//! Publishing against real `redis-server` processes: coalescing under
//! concurrency, batch order, dedup ids, retention, the circuit breaker,
//! connect errors and password hygiene.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Error, Health, Message, MessageId, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{RedisOptions, RedisServer};

const NS: &str = "pubtest";

fn url(server: &RedisServer, params: &str) -> String {
    let base = server.url();
    let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
    format!("redis+streams://{rest}/0?namespace={NS}&{params}")
}

async fn connect(server: &RedisServer, params: &str) -> Arc<RedisStreamsTransport> {
    let cfg = StreamsConfig::from_url(&url(server, params)).expect("config");
    Arc::new(RedisStreamsTransport::connect(cfg).await.expect("connect"))
}

fn key(topic: &Topic) -> String {
    keys::stream_key(NS, topic)
}

fn xlen(server: &RedisServer, topic: &Topic) -> i64 {
    server
        .cmd(&["XLEN", &key(topic)])
        .expect("XLEN")
        .as_int()
        .expect("XLEN integer")
}

/// Field/value pairs of one entry.
type Fields = Vec<(String, Vec<u8>)>;

/// `(id, fields)` of every entry of a stream, oldest first.
fn xrange(server: &RedisServer, topic: &Topic) -> Vec<(String, Fields)> {
    let reply = server
        .cmd(&["XRANGE", &key(topic), "-", "+"])
        .expect("XRANGE");
    let mut out = Vec::new();
    for entry in reply.as_array().expect("array") {
        let parts = entry.as_array().expect("entry");
        let id = parts[0].as_str().expect("id").to_owned();
        let flat = parts[1].as_array().expect("fields");
        let fields = flat
            .chunks(2)
            .map(|c| {
                (
                    c[0].as_str().expect("name").to_owned(),
                    c[1].as_bytes().expect("value").to_vec(),
                )
            })
            .collect();
        out.push((id, fields));
    }
    out
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_coalesce_without_loss() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let topic = Topic::new("load.concurrent").expect("topic");
    let mut tasks = Vec::new();
    for p in 0..64u32 {
        let t = t.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(500);
            for i in 0..500u32 {
                let m = Message::new(topic.clone(), format!("{p}:{i}"));
                ids.push(t.publish(m).await.expect("publish"));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let ids = task.await.expect("publisher");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids of one publisher must increase"
        );
        all.extend(ids);
    }
    assert_eq!(xlen(&server, &topic), 32_000);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 32_000, "every publish got its own id");
    assert_eq!(t.stats().published, 32_000);
    assert_eq!(t.stats().publish_errors, 0);
    t.close().await.expect("close");
}

#[tokio::test]
async fn publish_batch_keeps_order() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let a = Topic::new("batch.a").expect("topic");
    let b = Topic::new("batch.b").expect("topic");
    let messages: Vec<Message> = (0..300)
        .map(|i| {
            Message::new(
                if i % 3 == 0 { b.clone() } else { a.clone() },
                format!("m{i}"),
            )
        })
        .collect();
    let ids = t.publish_batch(messages).await.expect("publish_batch");
    assert_eq!(ids.len(), 300);
    // Ids of one stream increase in the order given.
    let of = |on_b: bool| -> Vec<MessageId> {
        ids.iter()
            .enumerate()
            .filter(|(i, _)| (i % 3 == 0) == on_b)
            .map(|(_, id)| *id)
            .collect()
    };
    for (name, on_b) in [("a", false), ("b", true)] {
        let ids = of(on_b);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "topic {name}: {ids:?}");
    }
    let entries = xrange(&server, &a);
    assert_eq!(entries.len(), 200);
    let payloads: Vec<String> = entries
        .iter()
        .map(|(_, f)| String::from_utf8(field(f, "p").expect("p").to_vec()).expect("utf8"))
        .collect();
    let want: Vec<String> = (0..300)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(payloads, want);
    assert!(
        t.publish_batch(Vec::new())
            .await
            .expect("empty batch")
            .is_empty()
    );
    t.close().await.expect("close");
}

#[tokio::test]
async fn dedup_id_is_stable_across_retries() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let topic = Topic::new("dedup.t").expect("topic");
    let m = Message::new(topic.clone(), "once").with_header("content-type", "text/plain");
    let first = t.publish(m.clone()).await.expect("publish");
    let second = t.publish(m.clone()).await.expect("retry");
    assert!(first < second, "a retry is a new entry");
    let entries = xrange(&server, &topic);
    assert_eq!(entries.len(), 2);
    let want = m.dedup_id.to_string();
    for (id, fields) in &entries {
        assert_eq!(field(fields, "d"), Some(want.as_bytes()), "entry {id}");
        assert_eq!(field(fields, "v"), Some(&b"1"[..]), "entry {id}");
    }
    assert_eq!(entries[0].0, first.to_string());
    assert_eq!(entries[1].0, second.to_string());
    let other = t
        .publish(Message::new(topic.clone(), "once"))
        .await
        .expect("publish");
    let entries = xrange(&server, &topic);
    let other_d = field(&entries[2].1, "d").expect("d");
    assert_ne!(
        other_d,
        want.as_bytes(),
        "a new Message gets a new dedup id"
    );
    assert_eq!(entries[2].0, other.to_string());
    t.close().await.expect("close");
}

#[tokio::test]
async fn maxlen_keeps_the_stream_near_its_cap() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "maxlen=100").await;
    let topic = Topic::new("retention.capped").expect("topic");
    for chunk in 0..20 {
        let batch: Vec<Message> = (0..100)
            .map(|i| Message::new(topic.clone(), format!("{chunk}-{i}")))
            .collect();
        t.publish_batch(batch).await.expect("publish_batch");
    }
    for _ in 0..50 {
        t.publish(Message::new(topic.clone(), "single"))
            .await
            .expect("publish");
    }
    let len = xlen(&server, &topic);
    // `~` trims whole macro nodes (100 entries by default): near, not exact.
    assert!((100..=250).contains(&len), "XLEN {len} should be near 100");
    t.close().await.expect("close");
}

#[tokio::test]
async fn minid_retention_trims_old_entries() {
    let server = RedisServer::start().expect("redis-server");
    let topic = Topic::new("retention.aged").expect("topic");
    // Entries with ids from long ago: older than any retention.
    for i in 1..=300 {
        server
            .cmd(&["XADD", &key(&topic), &format!("{i}-1"), "x", "y"])
            .expect("XADD");
    }
    let t = connect(&server, "retention=1m").await;
    t.publish(Message::new(topic.clone(), "new"))
        .await
        .expect("publish");
    let len = xlen(&server, &topic);
    // MINID ~ trims whole nodes: the 300 old entries (3 full nodes) go.
    assert!(len < 300, "XLEN {len}: old entries should be trimmed");
    t.close().await.expect("close");
}

async fn eventually<F: FnMut() -> bool>(what: &str, within: Duration, mut f: F) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_when_redis_is_down_and_recovers() {
    let mut server = RedisServer::start().expect("redis-server");
    let t = connect(
        &server,
        "breaker_threshold=3&breaker_cool_down=300ms&connect_timeout=500ms&response_timeout=1s",
    )
    .await;
    let topic = Topic::new("breaker.t").expect("topic");
    t.publish(Message::new(topic.clone(), "before"))
        .await
        .expect("publish");
    tokio::task::block_in_place(|| server.stop()).expect("stop");

    let started = Instant::now();
    let mut saw_open = false;
    for _ in 0..50 {
        let err = t
            .publish(Message::new(topic.clone(), "down"))
            .await
            .expect_err("publish to a stopped server");
        assert!(err.is_transient(), "{err}");
        if matches!(err, Error::CircuitOpen { .. }) {
            saw_open = true;
            break;
        }
    }
    assert!(saw_open, "the breaker never opened");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failing fast, not waiting out timeouts: {:?}",
        started.elapsed()
    );
    let stats = t.stats();
    assert!(stats.breaker_open);
    assert!(stats.breaker_rejections >= 1);
    assert!(stats.publish_errors >= 3, "{stats:?}");
    // The breaker's own view: state, failures in a row, requests, rejected
    // requests, when it changed.
    let b = stats.breaker.expect("redis-streams reports its breaker");
    assert_ne!(b.state, switchyard_core::BreakerState::Closed, "{b:?}");
    assert!(b.consecutive_failures >= 3, "{b:?}");
    assert_eq!(b.rejected_requests, stats.breaker_rejections, "{b:?}");
    assert!(b.total_requests > b.rejected_requests, "{b:?}");
    assert!(
        b.times_opened >= 1 && b.last_state_change.is_some(),
        "{b:?}"
    );
    assert!(!t.health().await.is_ok());

    tokio::task::block_in_place(|| server.start_again()).expect("start again");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match t.publish(Message::new(topic.clone(), "after")).await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(!t.stats().breaker_open);
    let b = t.stats().breaker.expect("breaker stats");
    assert_eq!(
        (b.state, b.consecutive_failures),
        (switchyard_core::BreakerState::Closed, 0),
        "{b:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.health().await != Health::Ok {
        assert!(Instant::now() < deadline, "health never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.close().await.expect("close");
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_in_time_naming_the_address() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("redis+streams://127.0.0.1:{port}/0?connect_timeout=1s");
    let started = Instant::now();
    let Err(err) = switchyard_redis_streams::connect(&url).await else {
        panic!("nothing listens there, yet connect succeeded");
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(err.is_transient(), "{text}");
}

#[tokio::test]
async fn passwords_never_show() {
    let server =
        RedisServer::start_with(RedisOptions::default().password("hunter2-secret")).expect("redis");
    // Right password: works (the lean writer authenticates too).
    let t = connect(&server, "").await;
    let topic = Topic::new("auth.t").expect("topic");
    let id = t
        .publish(Message::new(topic.clone(), "x"))
        .await
        .expect("publish");
    assert!(id > MessageId::new(0, 0));
    let shown = format!("{t:?} {:?}", t.config());
    assert!(!shown.contains("hunter2"), "{shown}");
    t.close().await.expect("close");

    // Wrong password: a clear error without the password.
    let bad = format!(
        "redis+streams://:wrong-hunter3@127.0.0.1:{}/0?namespace={NS}",
        server.port()
    );
    let Err(err) = switchyard_redis_streams::connect(&bad).await else {
        panic!("connect with a wrong password succeeded");
    };
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("hunter3") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        text.contains("credentials") || text.contains("WRONGPASS"),
        "{text}"
    );

    // Bad URL parameters: the password is redacted too.
    let err = StreamsConfig::from_url(&format!(
        "redis+streams://:hunter2-secret@127.0.0.1:{}/x",
        server.port()
    ))
    .expect_err("bad db");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test]
async fn acl_user_publishes_through_the_lean_writer() {
    let server = RedisServer::start_with(RedisOptions::default().acl_user("app", "s3cret-acl"))
        .expect("redis");
    let t = connect(&server, "").await;
    let topic = Topic::new("acl.t").expect("topic");
    t.publish(Message::new(topic.clone(), "x"))
        .await
        .expect("publish");
    assert_eq!(xlen(&server, &topic), 1);
    t.close().await.expect("close");
}

#[tokio::test]
async fn close_flushes_then_refuses() {
    let server = RedisServer::start().expect("redis-server");
    let t = connect(&server, "").await;
    let topic = Topic::new("close.t").expect("topic");
    let mut pending = Vec::new();
    for i in 0..200 {
        let t = t.clone();
        let topic = topic.clone();
        pending.push(tokio::spawn(async move {
            t.publish(Message::new(topic, format!("{i}"))).await
        }));
    }
    // Let every publisher enqueue, then close.
    eventually("publishers enqueued", Duration::from_secs(10), || {
        pending.iter().all(|p| p.is_finished()) || xlen(&server, &topic) > 0
    })
    .await;
    t.close().await.expect("close");
    let mut ok = 0;
    for p in pending {
        match p.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => assert!(matches!(e, Error::Closed), "{e}"),
        }
    }
    assert_eq!(
        xlen(&server, &topic),
        ok,
        "every accepted publish reached Redis"
    );
    let err = t
        .publish(Message::new(topic.clone(), "late"))
        .await
        .expect_err("after close");
    assert!(matches!(err, Error::Closed), "{err}");
    assert!(t.close().await.is_ok(), "a second close is fine");
}
