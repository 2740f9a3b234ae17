//! Per-topic retention against a real `redis-server`: each XADD carries the
//! MAXLEN / MINID of its topic's most specific rule, else the
//! transport-wide `maxlen`; `0` lifts the cap; dead-letter streams follow a
//! rule naming them.
//!
//! `MAXLEN ~` trims whole stream nodes, so the server runs with
//! `stream-node-max-entries 10`: a stream capped at N then holds N to N+9
//! entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Env, TestResult, eventually, next, topic};
use switchyard_core::{Message, Retry, Start, Subscription, Topic, Transport};

const NODE: i64 = 10;

fn env(name: &str) -> Env {
    let env = Env::start(name);
    env.cmd(&[
        "CONFIG",
        "SET",
        "stream-node-max-entries",
        &NODE.to_string(),
    ]);
    env
}

fn xlen(env: &Env, t: &Topic) -> i64 {
    env.cmd(&["XLEN", &env.key(t)]).as_int().expect("XLEN")
}

/// Publishes `n` messages: a quarter one by one, the rest in batches of 250.
async fn publish(bus: &Arc<dyn Transport>, t: &Topic, n: usize) {
    let single = n / 4;
    for i in 0..single {
        bus.publish(Message::new(t.clone(), format!("{i}")))
            .await
            .expect("publish");
    }
    let mut i = single;
    while i < n {
        let end = (i + 250).min(n);
        let batch: Vec<Message> = (i..end)
            .map(|j| Message::new(t.clone(), format!("{j}")))
            .collect();
        bus.publish_batch(batch).await.expect("publish_batch");
        i = end;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_and_exact_rules_cap_their_streams() -> TestResult {
    let env = env("rules");
    let bus = env
        .connect(
            "&maxlen=500&retain=*/camera/rgb:maxlen=50&retain=*/scan:maxlen=100\
             &retain=robot-1/camera/rgb:maxlen=20&retain=big/*:0",
        )
        .await;
    for (name, published, cap) in [
        ("robot-7/camera/rgb", 2000, Some(50)),
        ("robot-7/scan", 2000, Some(100)),
        ("robot-1/camera/rgb", 2000, Some(20)),
        ("robot-7/odom", 2000, Some(500)),
        ("big/x", 1000, None),
    ] {
        let t = topic(name);
        publish(&bus, &t, published).await;
        let len = xlen(&env, &t);
        match cap {
            Some(cap) => assert!(
                (cap..cap + NODE).contains(&len),
                "{name}: {len} entries, expected {cap} to {}",
                cap + NODE - 1
            ),
            None => assert_eq!(len, published as i64, "{name}"),
        }
    }
    bus.close().await?;
    Ok(())
}

/// `maxlen=0` (refused before) means no cap; an age rule trims by MINID
/// while other topics keep everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_is_unlimited_and_age_rules_trim_by_minid() -> TestResult {
    let env = env("age");
    let bus = env.connect("&maxlen=0&retain=frames.*:age=1ms").await;
    let keep = topic("log.all");
    publish(&bus, &keep, 1000).await;
    assert_eq!(xlen(&env, &keep), 1000);
    let frames = topic("frames.rgb");
    publish(&bus, &frames, 1000).await;
    // Each new XADD trims what is older than 1 ms, a node at a time.
    let mut extra = 0;
    eventually("frames.rgb trimmed to its newest node", || {
        extra += 1;
        let bus = bus.clone();
        let frames = frames.clone();
        let env = &env;
        async move {
            bus.publish(Message::new(frames, format!("late {extra}")))
                .await
                .expect("publish");
            xlen(env, &topic("frames.rgb")) <= NODE
        }
    })
    .await;
    assert_eq!(xlen(&env, &keep), 1000);
    bus.close().await?;
    Ok(())
}

/// Dead-letter streams keep the transport-wide `maxlen` unless a rule
/// names them; wildcards do not reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_streams_follow_a_rule_naming_them() -> TestResult {
    let env = env("dlq");
    let bus = env
        .connect("&maxlen=1000&retain=jobs.*:maxlen=20&retain=jobs.a:dlq:maxlen=5")
        .await;
    for (name, dlq_cap) in [("jobs.a", Some(5)), ("jobs.b", None)] {
        let t = topic(name);
        publish(&bus, &t, 30).await;
        assert!((20..20 + NODE).contains(&xlen(&env, &t)), "{name}");
        let kept = xlen(&env, &t) as usize;
        let mut sub = bus
            .subscribe(
                Subscription::new(t.clone())
                    .group("workers")
                    .start(Start::Earliest),
            )
            .await?;
        for _ in 0..kept {
            next(&mut sub)
                .await
                .nack(Retry::DeadLetter("poison".into()))
                .await?;
        }
        eventually("dead-lettered", || async {
            sub.stats().dead_lettered >= kept as u64
        })
        .await;
        assert_eq!(sub.stats().dead_lettered, kept as u64, "{name}");
        let dlq = t.dead_letter()?;
        let len = xlen(&env, &dlq);
        match dlq_cap {
            Some(cap) => assert!((cap..cap + NODE).contains(&len), "{name}: {len}"),
            None => assert_eq!(len, kept as i64, "{name}"),
        }
        sub.close().await?;
    }
    bus.close().await?;
    Ok(())
}
