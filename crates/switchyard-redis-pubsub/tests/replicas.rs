//! Several transports on one Redis, as replicas of one service: fan-out
//! exactly once, self-echo suppression, channel/pattern overlap, garbage on
//! the channel, gap isolation between topics, and fail-fast start-up.

mod support;

use std::time::{Duration, Instant};

use anyhow::ensure;
use switchyard_core::{Subscription, Topic, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport};
use switchyard_testkit::RedisServer;

use support::{Seen, namespace, publish_range, pubsub_url, read_quiet, read_until, replica};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_deliver_everything_exactly_once() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let url = pubsub_url(&server.url(), &namespace(), "");
    let replicas = [
        replica(&url).await?,
        replica(&url).await?,
        replica(&url).await?,
    ];
    let tags = ["a", "b", "c"];
    let named: Vec<(&str, &RedisPubSubTransport)> = tags
        .iter()
        .copied()
        .zip(replicas.iter().map(|r| &**r))
        .collect();
    let topic = Topic::new("chat.room-1")?;

    // On every replica: one subscriber of the channel and one of a pattern
    // covering it (Redis sends each message on both; it must arrive once).
    let mut subs = Vec::new();
    for r in &replicas {
        subs.push(r.subscribe(Subscription::new(topic.clone())).await?);
        subs.push(r.subscribe(Subscription::to("chat.*")?).await?);
    }
    const N: u64 = 300;
    let publishers: Vec<_> = replicas
        .iter()
        .zip(tags)
        .map(|(r, tag)| {
            let (r, topic) = (r.clone(), topic.clone());
            tokio::spawn(async move { publish_range(&r, &topic, tag, 0..N).await })
        })
        .collect();
    for p in publishers {
        p.await??;
    }
    for (k, sub) in subs.iter_mut().enumerate() {
        let mut seen = Seen::new(&named);
        read_until(sub, &mut seen, WAIT, &format!("subscriber {k}"), |s| {
            tags.iter().all(|t| s.count(t) as u64 >= N)
        })
        .await?;
        read_quiet(sub, &mut seen, QUIET).await;
        for tag in tags {
            let (received, lost) = seen.check_accounting(tag, N)?;
            ensure!(
                received == N && lost == 0,
                "subscriber {k}, origin {tag}: {received} received, {lost} lost"
            );
        }
    }
    for (tag, r) in tags.iter().zip(&replicas) {
        let s = r.pubsub_stats();
        // Own messages come back from Redis (twice: channel and pattern) and are dropped.
        ensure!(
            s.self_echoes == 2 * N,
            "{tag}: self echoes {}",
            s.self_echoes
        );
        // Each remote message is handed out once and its second copy dropped.
        ensure!(s.received == 2 * N, "{tag}: received {}", s.received);
        ensure!(s.duplicates == 2 * N, "{tag}: duplicates {}", s.duplicates);
        ensure!(
            s.published == N && s.gaps == 0 && s.malformed == 0,
            "{tag}: {s:?}"
        );
        ensure!(
            r.stats().published == N && r.stats().dropped == 0,
            "{tag}: {:?}",
            r.stats()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_is_counted_and_skipped() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let ns = namespace();
    let url = pubsub_url(&server.url(), &ns, "");
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let topic = Topic::new("news")?;
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await?;
    let channel = format!("{ns}:news");
    server.cmd(&["PUBLISH", &channel, "garbage"])?;
    // A switchyard envelope of a future version.
    server.cmd(&["PUBLISH", &channel, "SY\u{2}\u{0}from the future"])?;
    // A valid-looking frame cut short.
    server.cmd(&["PUBLISH", &channel, "SY\u{1}\u{0}\u{1}\u{2}"])?;
    publish_range(&a, &topic, "a", 0..1).await?;
    let mut seen = Seen::new(&[("a", &a)]);
    read_until(&mut sub, &mut seen, WAIT, "the good message", |s| {
        s.count("a") == 1
    })
    .await?;
    read_quiet(&mut sub, &mut seen, QUIET).await;
    seen.check_accounting("a", 1)?;
    let s = b.pubsub_stats();
    ensure!(s.malformed == 2 && s.unknown_version == 1, "{s:?}");
    // The loop goes on.
    publish_range(&a, &topic, "a", 1..3).await?;
    read_until(&mut sub, &mut seen, WAIT, "two more", |s| s.count("a") == 3).await?;
    seen.check_accounting("a", 3)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_on_other_topics_is_no_gap() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let url = pubsub_url(&server.url(), &namespace(), "");
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let (room1, room2) = (Topic::new("room.1")?, Topic::new("room.2")?);
    // b listens to room 1 only; a interleaves both rooms.
    let mut sub = b.subscribe(Subscription::new(room1.clone())).await?;
    for i in 0..50 {
        publish_range(&a, &room1, "a", i..i + 1).await?;
        publish_range(&a, &room2, "x", i..i + 1).await?;
        publish_range(&a, &room2, "x", 1000 + i..1001 + i).await?;
    }
    let mut seen = Seen::new(&[("a", &a)]);
    read_until(&mut sub, &mut seen, WAIT, "room 1", |s| s.count("a") == 50).await?;
    read_quiet(&mut sub, &mut seen, QUIET).await;
    seen.check_accounting("a", 50)?;
    ensure!(
        seen.lost.is_empty() && b.pubsub_stats().gaps == 0,
        "{seen:?}"
    );
    // Leaving and joining again later reports nothing for what was missed
    // in between (this replica was not subscribed then).
    drop(sub);
    support::wait_until(WAIT, "b to unsubscribe", || async {
        server
            .cmd(&[
                "PUBSUB",
                "NUMSUB",
                &format!("{}:room.1", b.config().redis.namespace),
            ])
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.get(1).and_then(|n| n.as_int())))
            == Some(0)
    })
    .await?;
    publish_range(&a, &room1, "a", 50..60).await?;
    support::wait_until(WAIT, "a to publish", || async {
        a.pubsub_stats().published >= 160
    })
    .await?;
    let mut again = b.subscribe(Subscription::new(room1.clone())).await?;
    publish_range(&a, &room1, "a", 60..70).await?;
    let mut seen = Seen::new(&[("a", &a)]);
    read_until(&mut again, &mut seen, WAIT, "room 1 again", |s| {
        s.count("a") == 10
    })
    .await?;
    read_quiet(&mut again, &mut seen, QUIET).await;
    ensure!(
        seen.lost.is_empty() && seen.received["a"] == (60..70).collect::<Vec<_>>(),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_messages_cross_replicas_intact() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let url = pubsub_url(&server.url(), &namespace(), "");
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let topic = Topic::new("blobs.mixed")?;
    let mut sub = b
        .subscribe(Subscription::new(topic.clone()).buffer(1024))
        .await?;
    // Frames larger than the reader's buffer and than one pipeline's byte
    // bound, between bursts of small ones that share pipelines and reads.
    let sizes: Vec<usize> = (0..300)
        .map(|i| match i % 100 {
            10 => 4 * 1024 * 1024 + 7,
            50 => 70_000,
            _ => i % 17,
        })
        .collect();
    for (i, &n) in sizes.iter().enumerate() {
        let mut payload = vec![u8::try_from(i % 251)?; n];
        if let Some(first) = payload.first_mut() {
            *first = b'#';
        }
        a.publish(switchyard_core::Message::new(topic.clone(), payload))
            .await?;
    }
    for (i, &n) in sizes.iter().enumerate() {
        let d = tokio::time::timeout(WAIT, sub.recv())
            .await
            .map_err(|_| anyhow::anyhow!("message {i} did not arrive within {WAIT:?}"))?
            .ok_or_else(|| anyhow::anyhow!("subscription ended at message {i}"))??;
        let p = d.payload();
        ensure!(p.len() == n, "message {i}: {} bytes, expected {n}", p.len());
        let fill = u8::try_from(i % 251)?;
        ensure!(
            p.iter().skip(1).all(|&x| x == fill) && (n == 0 || p[0] == b'#'),
            "message {i}: payload changed"
        );
    }
    let s = b.pubsub_stats();
    ensure!(
        s.received == 300 && s.malformed == 0 && s.gaps == 0,
        "{s:?}"
    );
    Ok(())
}

#[tokio::test]
async fn start_up_against_a_closed_port_fails_fast_naming_the_address() -> anyhow::Result<()> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let cfg = PubSubConfig::from_url(&format!(
        "redis+pubsub://127.0.0.1:{port}?connect_timeout=2s"
    ))?;
    let started = Instant::now();
    let err = RedisPubSubTransport::connect(cfg).await.err();
    let took = started.elapsed();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    ensure!(
        text == format!(
            "could not connect to redis at 127.0.0.1:{port} within 2s: connection refused"
        ),
        "unexpected error: {text:?}"
    );
    ensure!(took < Duration::from_millis(2500), "took {took:?}");
    // Through the URL entry point too.
    let err = switchyard_redis_pubsub::connect(&format!("redis+pubsub://127.0.0.1:{port}"))
        .await
        .err();
    ensure!(
        err.is_some_and(|e| e.is_transient()),
        "a refused connection is transient"
    );
    Ok(())
}
