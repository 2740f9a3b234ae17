//! Dead-lettering never loses a message, whatever the topic's length, and
//! huge durations never panic (issue "Hardening", item 3, and the
//! `Duration::MAX` guards).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, TestResult, eventually, member, next, nothing_within, topic};
use switchyard_core::{Error, Message, Retry, Start, Topic};
use switchyard_redis_streams::admin::{DeadLetters, Replay};
use switchyard_redis_streams::keys;

/// A valid topic of exactly `len` bytes (for `len` > 251 its `<topic>:dlq`
/// is longer than 255 bytes, allowed for dead-letter topics only).
fn long_topic(len: usize) -> Topic {
    let t = topic(&format!("t{}", "x".repeat(len - 1)));
    assert_eq!(t.as_str().len(), len);
    t
}

/// Reproduction (before the fix: the `:dlq` topic name exceeded 255
/// bytes, the failure became "no dead-letter stream", and the entry was
/// XACKed: gone, no dead letter, counters unchanged): on topics of 252 to
/// 255 bytes, `nack(DeadLetter)` moves the message to the dead-letter
/// stream, where `admin::DeadLetters` lists and replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_dead_letter_on_the_longest_topics_keeps_the_message() -> TestResult {
    let env = Env::start("long-dlq");
    let bus = env.connect("").await;
    let mut admin = DeadLetters::connect(&env.config("")).await?;
    for len in 252..=255 {
        let t = long_topic(len);
        let dlq = t.dead_letter()?;
        assert_eq!(
            keys::stream_key("ns", &dlq),
            keys::dead_letter_key("ns", &t),
            "{len}: the dead-letter topic names the dead-letter stream"
        );
        let mut sub = bus
            .subscribe(member(&t, "g", "c1", Duration::from_secs(30)).start(Start::Earliest))
            .await?;
        let id = bus
            .publish(Message::new(t.clone(), format!("poison {len}")))
            .await?;
        let d = next(&mut sub).await;
        assert_eq!(d.id(), id);
        d.nack(Retry::DeadLetter("bad".into())).await?;
        assert_eq!(sub.stats().dead_lettered, 1, "{len}");
        assert_eq!(env.pending(&t, "g"), 0, "{len}");
        // The dead-letter stream key of every valid topic.
        let dlq_key = keys::dead_letter_key(&env.ns, &t);
        assert_eq!(dlq_key, format!("{}:{{{}}}:dlq", env.ns, t.as_str()));
        assert_eq!(env.cmd(&["XLEN", &dlq_key]).as_int(), Some(1), "{len}");
        let letters = admin.list(&t, None, 10).await?;
        assert_eq!(letters.len(), 1, "{len}");
        let letter = &letters[0];
        assert_eq!(letter.reason.as_deref(), Some("bad"));
        assert_eq!(letter.original_id, Some(id));
        assert_eq!(letter.attempts, Some(1));
        let m = letter.message.as_ref().expect("decodes");
        assert_eq!(m.payload.as_ref(), format!("poison {len}").as_bytes());
        // Replayed onto the topic, it is delivered again.
        assert!(matches!(
            admin.replay(&t, letter.id).await?,
            Replay::Moved { .. }
        ));
        let again = next(&mut sub).await;
        assert_eq!(again.payload().as_ref(), format!("poison {len}").as_bytes());
        assert_eq!(again.attempt(), 1);
        again.ack().await?;
        assert_eq!(admin.count(&t).await?, 0);
        sub.close().await?;
    }
    bus.close().await?;
    Ok(())
}

/// Max-attempts exhaustion and a malformed entry on a 255-byte topic go to
/// the dead-letter stream too (before the fix both were acked and lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_and_malformed_entries_on_the_longest_topic_are_kept() -> TestResult {
    let env = Env::start("long-exhaust");
    let bus = env.connect("").await;
    let mut admin = DeadLetters::connect(&env.config("")).await?;
    let t = long_topic(255);
    let mut sub = bus
        .subscribe(
            member(&t, "g", "c1", Duration::from_millis(300))
                .start(Start::Earliest)
                .max_attempts(1),
        )
        .await?;
    bus.publish(Message::new(t.clone(), "fragile")).await?;
    let d = next(&mut sub).await;
    assert_eq!(d.attempt(), 1);
    drop(d); // unsettled: comes back once more than max_attempts allows
    eventually("the exhausted entry is dead-lettered", || async {
        sub.stats().dead_lettered == 1
    })
    .await;
    let foreign = env.cmd(&["XADD", &env.key(&t), "*", "foo", "bar"]);
    match tokio::time::timeout(common::WAIT, sub.recv()).await {
        Ok(Some(Err(Error::Malformed { id, .. }))) => {
            assert_eq!(Some(id.as_str()), foreign.as_str());
        }
        other => panic!("expected a Malformed item, got {other:?}"),
    }
    eventually("both dead-lettered", || async {
        sub.stats().dead_lettered == 2
    })
    .await;
    let letters = admin.list(&t, None, 10).await?;
    assert_eq!(letters.len(), 2);
    assert!(
        letters[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("max attempts"))
    );
    assert_eq!(letters[0].attempts, Some(1));
    assert!(
        letters[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("malformed"))
    );
    nothing_within(&mut sub, Duration::from_millis(300)).await;
    assert_eq!(env.pending(&t, "g"), 0);
    sub.close().await?;
    bus.close().await?;
    Ok(())
}

/// Reproduction (before the fix both panicked on `Instant + Duration`
/// overflow): `Subscription::ack_timeout(Duration::MAX)` either is refused
/// by validation (`InvalidConfig`) or works (deliveries, `in_progress`,
/// ack), and `nack(Retry::After(Duration::MAX))` keeps the message held:
/// nothing arrives, it stays pending, the subscriber closes normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_durations_do_not_panic() -> TestResult {
    let env = Env::start("huge");
    let bus = env.connect("").await;
    let t = topic("forever");
    bus.publish(Message::new(t.clone(), "a")).await?;
    match bus
        .subscribe(member(&t, "huge", "c1", Duration::MAX).start(Start::Earliest))
        .await
    {
        Ok(mut sub) => {
            let a = next(&mut sub).await;
            a.in_progress().await?;
            a.ack().await?;
            assert_eq!(sub.stats().acked, 1);
            sub.close().await?;
        }
        Err(Error::InvalidConfig(reason)) => {
            assert!(reason.contains("ack_timeout"), "{reason}");
        }
        Err(e) => panic!("unexpected error for ack_timeout(Duration::MAX): {e}"),
    }
    let mut sub = bus
        .subscribe(member(&t, "g", "c1", Duration::from_secs(30)).start(Start::Earliest))
        .await?;
    let a = next(&mut sub).await;
    // Past Retry::MAX_DELAY the nack is refused before the adapter sees it;
    // the delivery is dropped unsettled and comes back.
    match a.nack(Retry::After(Duration::MAX)).await {
        Err(Error::InvalidConfig(reason)) => assert!(reason.contains("delay"), "{reason}"),
        other => panic!("nack(After(Duration::MAX)) must be refused, got {other:?}"),
    }
    let again = next(&mut sub).await;
    assert_eq!(again.attempt(), 2);
    // The longest delay allowed keeps it pending, without a panic.
    again.nack(Retry::After(Retry::MAX_DELAY)).await?;
    nothing_within(&mut sub, Duration::from_millis(500)).await;
    let rows = env.pending_rows(&t, "g");
    assert_eq!(rows.len(), 1, "a stays pending: {rows:?}");
    assert_eq!(rows[0].2, 2, "two deliveries: {rows:?}");
    sub.close().await?;
    bus.close().await?;
    Ok(())
}
