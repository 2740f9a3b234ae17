//! `attempt()` counts the deliveries the application received: entries a
//! member fetched but never handed out (given back at close, dropped by
//! overflow) do not use up attempts, and the numbers the application sees
//! are contiguous (issue "Hardening", item 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, TestResult, WAIT, eventually, member, next, nothing_within, publish_n, topic};
use switchyard_core::{Overflow, Retry, Start, Subscription, header};
use switchyard_redis_streams::admin::DeadLetters;

/// Reproduction (before the fix: the 6th member got 0 deliveries and all 10
/// were in the dead-letter topic with "max attempts exhausted: 5
/// deliveries of at most 5 were not settled"): 10 messages; 5 members in
/// turn subscribe, take nothing for 1.5 s and close; a 6th member gets all
/// 10 with attempt 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_close_without_taking_anything_use_up_no_attempts() -> TestResult {
    let env = Env::start("idle-members");
    let t = topic("jobs");
    let bus = env.connect("").await;
    let sub_of = |name: &str| {
        Subscription::new(t.clone())
            .group_member("g", name)
            .start(Start::Earliest)
    };
    publish_n(&bus, &t, "j", 10).await;
    for i in 0..5 {
        let sub = bus.subscribe(sub_of(&format!("m{i}"))).await?;
        // The application takes nothing; the member fetches meanwhile.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(sub.stats().received, 0);
        sub.close().await?;
    }
    let mut last = bus.subscribe(sub_of("m5")).await?;
    for _ in 0..10 {
        let d = next(&mut last).await;
        assert_eq!(d.attempt(), 1, "never received before: {d:?}");
        d.ack().await?;
    }
    nothing_within(&mut last, Duration::from_millis(500)).await;
    let stats = last.stats();
    assert_eq!(
        (stats.received, stats.redelivered, stats.dead_lettered),
        (10, 0, 0)
    );
    let mut dlq = DeadLetters::connect(&env.config("")).await?;
    assert_eq!(dlq.count(&t).await?, 0);
    eventually("nothing pending", || async { env.pending(&t, "g") == 0 }).await;
    last.close().await?;
    bus.close().await?;
    Ok(())
}

/// Reproduction (before the fix: 4 of 5 went to the dead-letter topic
/// without ever reaching the application): `buffer(1)`, `DropOldest`,
/// `max_attempts(1)`, a batch of 5, the application waits 3 s before its
/// first `recv()`. All 5 arrive, each with attempt 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_drops_use_up_no_attempts() -> TestResult {
    for overflow in [Overflow::DropOldest, Overflow::DropNewest] {
        let env = Env::start("drops");
        let t = topic("burst");
        let bus = env.connect("").await;
        let mut sub = bus
            .subscribe(
                member(&t, "g", "c1", Duration::from_millis(500))
                    .buffer(1)
                    .overflow(overflow)
                    .max_attempts(1),
            )
            .await?;
        publish_n(&bus, &t, "b", 5).await;
        eventually("4 dropped", || async { sub.stats().dropped == 4 }).await;
        // A slow application: several ack timeouts pass before it reads.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 5 {
            let d = next(&mut sub).await;
            assert_eq!(d.attempt(), 1, "{overflow:?}: {d:?}");
            assert!(seen.insert(d.payload().clone()), "no message twice");
            d.ack().await?;
        }
        nothing_within(&mut sub, Duration::from_millis(500)).await;
        let stats = sub.stats();
        assert_eq!(
            (stats.received, stats.dead_lettered, stats.redelivered),
            (5, 0, 0),
            "{overflow:?}"
        );
        let mut dlq = DeadLetters::connect(&env.config("")).await?;
        assert_eq!(dlq.count(&t).await?, 0, "{overflow:?}");
        sub.close().await?;
        bus.close().await?;
    }
    Ok(())
}

/// Reproduction (before the fix: attempts 1, 2, 4, 5 seen and the dead
/// letter said `sy-dlq-attempts: 5` after 4 nacks): with default settings
/// (`max_attempts` 5) a message nacked at every delivery is seen with
/// attempts 1, 2, 3, 4, 5 and the fifth nack dead-letters it with
/// `sy-dlq-attempts: 5`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_deliveries_have_contiguous_attempts() -> TestResult {
    for round in 0..3 {
        let env = Env::start("contiguous");
        let t = topic("poison");
        let bus = env.connect("").await;
        let mut dlq = bus
            .subscribe(Subscription::new(t.dead_letter()?).start(Start::Earliest))
            .await?;
        let mut sub = bus
            .subscribe(Subscription::new(t.clone()).group_member("g", "c1"))
            .await?;
        publish_n(&bus, &t, "p", 3).await;
        let mut seen: std::collections::BTreeMap<Vec<u8>, Vec<u32>> = Default::default();
        let deadline = Instant::now() + WAIT * 2;
        while seen.values().map(Vec::len).sum::<usize>() < 15 {
            assert!(Instant::now() < deadline, "round {round}: {seen:?}");
            let d = next(&mut sub).await;
            seen.entry(d.payload().to_vec())
                .or_default()
                .push(d.attempt());
            d.nack(Retry::Now).await?;
        }
        assert_eq!(seen.len(), 3);
        for (payload, attempts) in &seen {
            assert_eq!(
                attempts,
                &[1, 2, 3, 4, 5],
                "round {round}: {}",
                String::from_utf8_lossy(payload)
            );
        }
        for _ in 0..3 {
            let dl = next(&mut dlq).await;
            assert_eq!(dl.headers().get(header::DLQ_ATTEMPTS), Some("5"));
        }
        nothing_within(&mut sub, Duration::from_millis(300)).await;
        let stats = sub.stats();
        assert_eq!(
            (stats.received, stats.nacked, stats.dead_lettered),
            (15, 15, 3)
        );
        eventually("nothing pending", || async { env.pending(&t, "g") == 0 }).await;
        bus.close().await?;
    }
    Ok(())
}

/// A late nack does not take back what another member claimed: `a` holds a
/// delivery past its ack timeout (its full one-slot buffer keeps its own
/// claimer from taking anything), `b` claims it (attempt 2), then `a` nacks.
/// The entry stays with `b` with its count 2: the hand-back only touches
/// entries still pending for the member that gives them back. (A guard for
/// the hold script; before it, `b`'s keep-alive happened to pull the entry
/// back, so this passed then too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_nack_leaves_another_members_claim_alone() -> TestResult {
    let env = Env::start("late-nack");
    let t = topic("jobs");
    let bus = env.connect("").await;
    let at = Duration::from_millis(300);
    let mut a = bus
        .subscribe(member(&t, "g", "a", at).start(Start::Earliest).buffer(1))
        .await?;
    publish_n(&bus, &t, "j", 2).await;
    let held = next(&mut a).await;
    assert_eq!(held.attempt(), 1);
    // The second entry fills a's buffer.
    eventually("a holds both", || async {
        env.pending_rows(&t, "g")
            .iter()
            .filter(|r| r.1 == "a")
            .count()
            == 2
    })
    .await;
    let mut b = bus
        .subscribe(member(&t, "g", "b", at).start(Start::Earliest))
        .await?;
    let taken = next(&mut b).await;
    let id = taken.id();
    assert_eq!((id, taken.attempt()), (held.id(), 2));
    held.nack(Retry::Now).await?;
    // No third copy of it reaches anyone while `b` works on it (`b` keeps
    // it alive until its own deadline).
    nothing_within(&mut b, Duration::from_millis(250)).await;
    let rows = env.pending_rows(&t, "g");
    let row = rows
        .iter()
        .find(|r| r.0 == id.to_string())
        .expect("still pending");
    assert_eq!((row.1.as_str(), row.2), ("b", 2), "{rows:?}");
    taken.ack().await?;
    // a's second entry is still its own, delivered once it reads.
    let second = next(&mut a).await;
    assert_ne!(second.id(), id);
    assert_eq!(second.attempt(), 1);
    second.ack().await?;
    eventually("nothing pending", || async { env.pending(&t, "g") == 0 }).await;
    nothing_within(&mut a, Duration::from_millis(300)).await;
    nothing_within(&mut b, Duration::from_millis(100)).await;
    assert_eq!((a.stats().received, b.stats().received), (2, 1));
    a.close().await?;
    b.close().await?;
    bus.close().await?;
    Ok(())
}

/// Reproduction (before: the re-read of its own pending entries after a
/// reconnect raised the delivery count of every entry the member still
/// held, so a crash afterwards showed them to the next member with attempt
/// 3): member `a` holds 2 deliveries and 2 buffered entries (attempt 1);
/// its connections are cut; once it reconnected and re-read them, it
/// crashes. Member `b` gets all 4 with attempt 2 (the crash counts one,
/// the reconnect none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_uses_up_no_attempts() -> TestResult {
    let env = Env::start("reconnect");
    let t = topic("jobs");
    let proxy = switchyard_testkit::FaultProxy::start(env.server.addr()).await?;
    let via_proxy = switchyard_redis_streams::StreamsConfig::from_url(&format!(
        "redis+streams://{}?namespace={}&block=200ms",
        proxy.addr(),
        env.ns
    ))
    .expect("valid url");
    let ta: std::sync::Arc<dyn switchyard_core::Transport> = std::sync::Arc::new(
        switchyard_redis_streams::RedisStreamsTransport::connect(via_proxy).await?,
    );
    let at = Duration::from_secs(2);
    let mut a = ta
        .subscribe(member(&t, "g", "a", at).start(Start::Earliest).buffer(4))
        .await?;
    publish_n(&ta, &t, "j", 4).await;
    let held = vec![next(&mut a).await, next(&mut a).await];
    assert!(held.iter().all(|d| d.attempt() == 1));
    eventually("a holds all 4", || async {
        env.pending_rows(&t, "g")
            .iter()
            .filter(|r| r.1 == "a")
            .count()
            == 4
    })
    .await;
    proxy.cut();
    eventually("a reconnected and blocks for new entries again", || async {
        ta.stats().reconnects >= 1
            && env
                .server
                .info("clients")
                .is_ok_and(|i| i.contains("blocked_clients:1"))
    })
    .await;
    let rows = env.pending_rows(&t, "g");
    assert!(
        rows.iter().all(|r| r.1 == "a" && r.2 == 1),
        "the re-read made no delivery: {rows:?}"
    );
    // A crash: nothing settled, nothing given back.
    held.into_iter().for_each(std::mem::forget);
    drop(a);
    drop(ta);
    let bus = env.connect("").await;
    let mut b = bus.subscribe(member(&t, "g", "b", at)).await?;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 4 {
        let d = next(&mut b).await;
        assert_eq!(d.attempt(), 2, "{d:?}");
        assert!(seen.insert(d.id()));
        d.ack().await?;
    }
    nothing_within(&mut b, Duration::from_millis(300)).await;
    b.close().await?;
    bus.close().await?;
    Ok(())
}
