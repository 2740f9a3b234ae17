//! `admin::DeadLetters` against a real `redis-server`: list, replay (the
//! replayed message is delivered again, once), purge, and a replay racing
//! another replay of the same entries moves each entry exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Message, Retry, Start, Subscription, Topic, Transport};
use switchyard_redis_streams::admin::{DeadLetters, Replay};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::RedisServer;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(15);

fn config(server: &RedisServer, ns: &str) -> StreamsConfig {
    let rest = server.url();
    let rest = rest.split_once("://").map_or(rest.as_str(), |(_, r)| r);
    StreamsConfig::from_url(&format!(
        "redis+streams://{rest}?namespace={ns}&block=200ms"
    ))
    .expect("valid url")
}

/// Publishes `n` messages on `topic` and dead-letters every one through a
/// group member; returns once all `n` are in the dead-letter stream.
async fn dead_letter_n(t: &Arc<dyn Transport>, dlq: &mut DeadLetters, topic: &Topic, n: usize) {
    let mut sub = t
        .subscribe(
            Subscription::new(topic.clone())
                .group("workers")
                .start(Start::Earliest),
        )
        .await
        .expect("subscribes");
    for i in 0..n {
        let m = Message::new(topic.clone(), format!("order {i}")).with_header("tenant", "t1");
        t.publish(m).await.expect("publishes");
    }
    for _ in 0..n {
        let d = tokio::time::timeout(WAIT, sub.recv())
            .await
            .expect("a delivery in time")
            .expect("open")
            .expect("decodes");
        d.nack(Retry::DeadLetter("poison".into()))
            .await
            .expect("nacks");
    }
    let deadline = Instant::now() + WAIT;
    while dlq.count(topic).await.expect("XLEN") < n as u64 {
        assert!(Instant::now() < deadline, "dead letters did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sub.close().await.expect("closes");
}

#[tokio::test]
async fn list_replay_and_purge() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = config(&server, "adm");
    let t: Arc<dyn Transport> = Arc::new(RedisStreamsTransport::connect(cfg.clone()).await?);
    let mut dlq = DeadLetters::connect(&cfg).await?;
    let topic = Topic::new("orders.created")?;
    dead_letter_n(&t, &mut dlq, &topic, 5).await;

    let letters = dlq.list(&topic, None, 100).await?;
    assert_eq!(letters.len(), 5);
    for l in &letters {
        assert_eq!(l.reason.as_deref(), Some("poison"));
        assert_eq!(l.attempts, Some(1));
        assert!(l.original_id.is_some());
        let m = l.message.as_ref().expect("decodes");
        assert_eq!(m.headers.get("tenant"), Some("t1"));
        assert_eq!(m.headers.len(), 1, "sy-dlq-* headers are taken out");
    }
    // Paging: after the second, three remain; `t:dlq` names the same letters.
    let page = dlq
        .list(&topic.dead_letter()?, Some(letters[1].id), 100)
        .await?;
    assert_eq!(page.len(), 3);

    // Replay the first: it is delivered again on the topic, once, with its
    // original dedup id and a fresh attempt count.
    let mut fan = t
        .subscribe(Subscription::new(topic.clone()).start(Start::Latest))
        .await?;
    let original = letters[0].message.clone().expect("decodes");
    let Replay::Moved { new_id } = dlq.replay(&topic, letters[0].id).await? else {
        panic!("the first replay moves the letter");
    };
    assert_eq!(dlq.replay(&topic, letters[0].id).await?, Replay::Gone);
    let d = tokio::time::timeout(WAIT, fan.recv())
        .await?
        .expect("open")?;
    assert_eq!(d.id(), new_id);
    assert_eq!(d.payload(), &original.payload[..]);
    assert_eq!(d.headers().get("tenant"), Some("t1"));
    assert_eq!(d.headers().len(), 1);
    assert_eq!(d.message().dedup_id, original.dedup_id);
    assert_eq!(dlq.count(&topic).await?, 4);

    // Purge one by id, then the rest up to the newest.
    assert!(dlq.purge(&topic, letters[1].id).await?);
    assert!(!dlq.purge(&topic, letters[1].id).await?);
    let last = dlq.last_id(&topic).await?.expect("letters remain");
    assert_eq!(dlq.purge_through(&topic, last).await?, 3);
    assert_eq!(dlq.count(&topic).await?, 0);
    fan.close().await?;
    t.close().await?;
    Ok(())
}

#[tokio::test]
async fn racing_replays_move_each_letter_once() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = config(&server, "race");
    let t: Arc<dyn Transport> = Arc::new(RedisStreamsTransport::connect(cfg.clone()).await?);
    let mut dlq = DeadLetters::connect(&cfg).await?;
    let topic = Topic::new("jobs")?;
    const N: usize = 200;
    dead_letter_n(&t, &mut dlq, &topic, N).await;
    let letters = dlq.list(&topic, None, N).await?;
    assert_eq!(letters.len(), N);
    let ids: Vec<_> = letters.iter().map(|l| l.id).collect();

    let mut tasks = Vec::new();
    for _ in 0..2 {
        let cfg = cfg.clone();
        let topic = topic.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut dlq = DeadLetters::connect(&cfg).await.expect("connects");
            let mut moved = Vec::new();
            for id in ids {
                if let Replay::Moved { new_id } = dlq.replay(&topic, id).await.expect("replays") {
                    moved.push(new_id);
                }
            }
            moved
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    assert_eq!(all.len(), N, "each letter moved exactly once");
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), N);
    assert_eq!(dlq.count(&topic).await?, 0);
    // The topic holds the N originals plus the N replayed entries.
    let len = server.cmd(&["XLEN", "race:{jobs}"])?;
    assert_eq!(len.as_int(), Some(2 * N as i64));
    t.close().await?;
    Ok(())
}
