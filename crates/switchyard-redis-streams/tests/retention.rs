//! What `stats().lost_to_retention` counts, exactly (issue "Hardening",
//! item 11): entries this subscriber found pending whose data retention
//! trimmed before they were settled. Entries trimmed before the group read
//! them are not counted (Redis keeps no trace of them per group).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, TestResult, eventually, member, next, nothing_within, publish_n, topic};
use switchyard_core::{Delivery, Retry, Start};

/// Reproduction (before the fix: 2 of 7 counted — only the dead-letter
/// nacks; `nack(Now)`/`nack(After)` released trimmed entries through an
/// XCLAIM that silently dropped them from the pending list): 7 deliveries
/// in the application's hands are trimmed away, then nacked 3 × `Now`,
/// 2 × `After(50ms)`, 2 × `DeadLetter`: all 7 are counted, none is
/// dead-lettered or delivered again, nothing stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_in_hand_then_nacked_counts_each_one() -> TestResult {
    for round in 0..3 {
        let env = Env::start("trim-nack");
        let t = topic("frames");
        let bus = env.connect("").await;
        let mut sub = bus
            .subscribe(member(&t, "g", "c1", Duration::from_secs(30)).start(Start::Earliest))
            .await?;
        publish_n(&bus, &t, "f", 7).await;
        let mut held: Vec<Delivery> = Vec::new();
        for _ in 0..7 {
            held.push(next(&mut sub).await);
        }
        env.cmd(&["XTRIM", &env.key(&t), "MAXLEN", "0"]);
        for (i, d) in held.into_iter().enumerate() {
            let retry = match i {
                0..3 => Retry::Now,
                3..5 => Retry::After(Duration::from_millis(50)),
                _ => Retry::DeadLetter("bad".into()),
            };
            d.nack(retry).await?;
        }
        eventually("7 lost to retention", || async {
            sub.stats().lost_to_retention >= 7
        })
        .await;
        nothing_within(&mut sub, Duration::from_millis(500)).await;
        let stats = sub.stats();
        assert_eq!(
            (stats.lost_to_retention, stats.dead_lettered, stats.received),
            (7, 0, 7),
            "round {round}"
        );
        assert_eq!(env.pending(&t, "g"), 0, "round {round}");
        assert_eq!(
            env.cmd(&["EXISTS", &format!("{}:dlq", env.key(&t))])
                .as_int(),
            Some(0)
        );
        sub.close().await?;
        bus.close().await?;
    }
    Ok(())
}

/// Trimmed while in the application's hands and then acked: processed,
/// not lost (0 counted), and the acks settle them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_in_hand_then_acked_is_not_lost() -> TestResult {
    let env = Env::start("trim-ack");
    let t = topic("frames");
    let bus = env.connect("").await;
    let mut sub = bus
        .subscribe(member(&t, "g", "c1", Duration::from_secs(30)).start(Start::Earliest))
        .await?;
    publish_n(&bus, &t, "f", 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut sub).await);
    }
    env.cmd(&["XTRIM", &env.key(&t), "MAXLEN", "0"]);
    for d in held {
        d.in_progress()
            .await
            .expect_err("trimmed: in_progress says so");
        d.ack().await?;
    }
    eventually("3 acked", || async { env.pending(&t, "g") == 0 }).await;
    nothing_within(&mut sub, Duration::from_millis(300)).await;
    let stats = sub.stats();
    assert_eq!((stats.acked, stats.lost_to_retention), (3, 0));
    sub.close().await?;
    bus.close().await?;
    Ok(())
}

/// Entries trimmed before the group ever read them are gone unseen: not
/// delivered and not counted (0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_before_the_group_read_them_is_not_counted() -> TestResult {
    let env = Env::start("trim-unread");
    let t = topic("frames");
    let key = env.key(&t);
    env.cmd(&["XGROUP", "CREATE", &key, "g", "0", "MKSTREAM"]);
    let bus = env.connect("").await;
    publish_n(&bus, &t, "f", 10).await;
    env.cmd(&["XTRIM", &key, "MAXLEN", "0"]);
    let mut sub = bus
        .subscribe(member(&t, "g", "c1", Duration::from_millis(300)))
        .await?;
    publish_n(&bus, &t, "after", 2).await;
    for _ in 0..2 {
        let d = next(&mut sub).await;
        assert!(d.payload().starts_with(b"after-"), "{d:?}");
        d.ack().await?;
    }
    nothing_within(&mut sub, Duration::from_millis(800)).await;
    let stats = sub.stats();
    assert_eq!((stats.received, stats.lost_to_retention), (2, 0));
    sub.close().await?;
    bus.close().await?;
    Ok(())
}
