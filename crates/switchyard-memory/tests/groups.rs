//! Consumer-group semantics of the memory adapter: sharing, ack, nack,
//! redelivery, ack timeouts and dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{DEADLINE, msg, num, recv, recv_within, topic};
use parking_lot::Mutex;
use switchyard_core::{
    Message, MessageId, Retry, Start, Subscriber, Subscription, Topic, Transport, header,
};
use switchyard_memory::{MemoryConfig, MemoryTransport};
use tokio::time::Instant;

fn fast() -> MemoryTransport {
    MemoryTransport::with_config(
        MemoryConfig::default().with_redelivery_tick(Duration::from_millis(10)),
    )
}

fn member(tp: &Topic, name: &str) -> Subscription {
    Subscription::new(tp.clone())
        .group_member("g", name)
        .start(Start::Earliest)
}

async fn share_thousand(t: MemoryTransport) {
    let tp = topic("share");
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(t.subscribe(member(&tp, &format!("m{i}"))).await.unwrap());
    }
    let acked: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for mut sub in members {
        let acked = acked.clone();
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            let deadline = Instant::now() + DEADLINE;
            while total.load(Ordering::SeqCst) < 1000 {
                assert!(Instant::now() < deadline, "group did not finish in time");
                let Some(d) = recv_within(&mut sub, Duration::from_millis(50)).await else {
                    continue;
                };
                assert_eq!(d.attempt(), 1, "nothing should be redelivered");
                *acked.lock().entry(num(&d)).or_default() += 1;
                d.ack().await.unwrap();
                total.fetch_add(1, Ordering::SeqCst);
                mine += 1;
            }
            (mine, sub.stats())
        }));
    }
    for i in 0..1000 {
        t.publish(msg(&tp, i)).await.unwrap();
    }
    let mut counts = Vec::new();
    for task in tasks {
        let (mine, stats) = task.await.unwrap();
        assert_eq!(stats.acked, mine as u64);
        assert_eq!(stats.received, mine as u64);
        counts.push(mine);
    }
    let acked = acked.lock();
    assert_eq!(acked.len(), 1000);
    assert!(
        acked.values().all(|&n| n == 1),
        "every message acked exactly once"
    );
    assert_eq!(counts.iter().sum::<usize>(), 1000);
    assert!(
        counts.iter().all(|&c| c > 0),
        "a member was starved: {counts:?}"
    );
}

#[tokio::test]
async fn three_members_share_a_thousand_current_thread() {
    share_thousand(fast()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_a_thousand_multi_thread() {
    share_thousand(fast()).await;
}

#[tokio::test]
async fn nack_now_redelivers_with_the_next_attempt() {
    let t = fast();
    let tp = topic("nack");
    let mut sub = t.subscribe(member(&tp, "a")).await.unwrap();
    let id = t.publish(msg(&tp, 1)).await.unwrap();
    let d = recv(&mut sub).await;
    assert_eq!((d.id(), d.attempt()), (id, 1));
    assert!(d.needs_ack());
    d.nack(Retry::Now).await.unwrap();
    let d = recv(&mut sub).await;
    assert_eq!((d.id(), d.attempt(), num(&d)), (id, 2, 1));
    d.ack().await.unwrap();
    assert!(
        recv_within(&mut sub, Duration::from_millis(50))
            .await
            .is_none()
    );
    let s = sub.stats();
    assert_eq!((s.received, s.nacked, s.acked, s.redelivered), (2, 1, 1, 1));
}

#[tokio::test]
async fn nack_after_waits_at_least_the_delay() {
    let t = fast();
    let tp = topic("delay");
    let mut sub = t.subscribe(member(&tp, "a")).await.unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let d = recv(&mut sub).await;
    let nacked_at = Instant::now();
    d.nack(Retry::After(Duration::from_millis(200)))
        .await
        .unwrap();
    let d = recv(&mut sub).await;
    assert!(nacked_at.elapsed() >= Duration::from_millis(200));
    assert_eq!(d.attempt(), 2);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn a_dropped_delivery_comes_back() {
    let t = fast();
    let tp = topic("drop");
    let mut a = t.subscribe(member(&tp, "a")).await.unwrap();
    t.publish(msg(&tp, 5)).await.unwrap();
    drop(recv(&mut a).await);
    let d = recv(&mut a).await;
    assert_eq!((num(&d), d.attempt()), (5, 2));
    // into_message also counts as not settled.
    let m = d.into_message();
    assert_eq!(&m.payload[..], b"5");
    let d = recv(&mut a).await;
    assert_eq!(d.attempt(), 3);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn max_attempts_moves_to_the_dead_letter_topic_once() {
    let t = fast();
    let tp = topic("dlq");
    let mut dlq = t
        .subscribe(Subscription::new(tp.dead_letter().unwrap()))
        .await
        .unwrap();
    let mut sub = t.subscribe(member(&tp, "a").max_attempts(3)).await.unwrap();
    let original = msg(&tp, 9).with_header("tenant", "acme");
    let id = t.publish(original.clone()).await.unwrap();
    for attempt in 1..=3 {
        let d = recv(&mut sub).await;
        assert_eq!(d.attempt(), attempt);
        d.nack(Retry::Now).await.unwrap();
    }
    let dead = recv(&mut dlq).await;
    assert_eq!(dead.topic().as_str(), format!("{tp}:dlq"));
    assert_eq!(dead.payload(), &original.payload);
    assert_eq!(dead.dedup_id(), original.dedup_id);
    let h = dead.headers();
    assert_eq!(h.get("tenant"), Some("acme"));
    assert_eq!(h.get(header::DLQ_TOPIC), Some(tp.as_str()));
    assert_eq!(h.get(header::DLQ_ID), Some(id.to_string().as_str()));
    assert_eq!(h.get(header::DLQ_ATTEMPTS), Some("3"));
    assert!(h.get(header::DLQ_REASON).unwrap().contains("max attempts"));
    assert!(
        recv_within(&mut sub, Duration::from_millis(100))
            .await
            .is_none()
    );
    assert!(
        recv_within(&mut dlq, Duration::from_millis(10))
            .await
            .is_none()
    );
    let s = sub.stats();
    assert_eq!((s.nacked, s.dead_lettered, s.redelivered), (3, 1, 2));
}

#[tokio::test]
async fn dead_letter_on_request_carries_the_reason() {
    let t = fast();
    let tp = topic("dlqreq");
    let mut sub = t.subscribe(member(&tp, "a")).await.unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    recv(&mut sub)
        .await
        .nack(Retry::DeadLetter("poison".into()))
        .await
        .unwrap();
    let mut dlq = t
        .subscribe(Subscription::new(tp.dead_letter().unwrap()).start(Start::Earliest))
        .await
        .unwrap();
    let dead = recv(&mut dlq).await;
    assert_eq!(dead.headers().get(header::DLQ_REASON), Some("poison"));
    assert_eq!(dead.headers().get(header::DLQ_ATTEMPTS), Some("1"));
    assert!(
        recv_within(&mut sub, Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn ack_timeout_hands_the_message_to_another_member() {
    let t = fast();
    let tp = topic("timeout");
    let ack_timeout = Duration::from_millis(200);
    let mut a = t
        .subscribe(member(&tp, "a").ack_timeout(ack_timeout))
        .await
        .unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let held = recv(&mut a).await;
    let taken_at = Instant::now();
    let mut b = t
        .subscribe(member(&tp, "b").ack_timeout(ack_timeout))
        .await
        .unwrap();
    let d = recv(&mut b).await;
    assert!(taken_at.elapsed() >= ack_timeout);
    assert_eq!((num(&d), d.attempt()), (1, 2));
    d.ack().await.unwrap();
    // The stale holder's settlement changes nothing.
    held.nack(Retry::Now).await.unwrap();
    assert!(
        recv_within(&mut a, Duration::from_millis(100))
            .await
            .is_none()
    );
    assert!(
        recv_within(&mut b, Duration::from_millis(10))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn in_progress_keeps_the_message() {
    let t = fast();
    let tp = topic("progress");
    let ack_timeout = Duration::from_millis(150);
    let mut a = t
        .subscribe(member(&tp, "a").ack_timeout(ack_timeout))
        .await
        .unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let d = recv(&mut a).await;
    let mut b = t
        .subscribe(member(&tp, "b").ack_timeout(ack_timeout))
        .await
        .unwrap();
    // Work for 4 ack timeouts, reporting progress every half timeout.
    for _ in 0..8 {
        let stolen = recv_within(&mut b, ack_timeout / 2).await;
        assert!(stolen.is_none(), "handed out while in progress");
        d.in_progress().await.unwrap();
    }
    d.ack().await.unwrap();
    assert!(recv_within(&mut b, ack_timeout * 2).await.is_none());
    assert!(
        recv_within(&mut a, Duration::from_millis(10))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn timeout_at_max_attempts_dead_letters() {
    let t = fast();
    let tp = topic("timeoutdlq");
    let mut sub = t
        .subscribe(
            member(&tp, "a")
                .max_attempts(1)
                .ack_timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let held = recv(&mut sub).await;
    let mut dlq = t
        .subscribe(Subscription::new(tp.dead_letter().unwrap()).start(Start::Earliest))
        .await
        .unwrap();
    let dead = recv(&mut dlq).await;
    assert!(
        dead.headers()
            .get(header::DLQ_REASON)
            .unwrap()
            .contains("ack timeout")
    );
    drop(held);
    assert!(
        recv_within(&mut sub, Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn closing_a_member_returns_its_messages_at_once() {
    let t = MemoryTransport::new(); // default 50 ms tick; ack timeout 30 s
    let tp = topic("close");
    let mut a = t.subscribe(member(&tp, "a")).await.unwrap();
    t.publish_batch(vec![msg(&tp, 1), msg(&tp, 2)])
        .await
        .unwrap();
    let d1 = recv(&mut a).await;
    let d2 = recv(&mut a).await;
    let mut b = t.subscribe(member(&tp, "b")).await.unwrap();
    a.close().await.unwrap();
    let mut got = vec![recv(&mut b).await, recv(&mut b).await];
    got.sort_by_key(num);
    assert_eq!(got.iter().map(num).collect::<Vec<_>>(), [1, 2]);
    assert!(got.iter().all(|d| d.attempt() == 2));
    // A late ack of the old delivery is honoured; b's ack is then a no-op.
    d1.ack().await.unwrap();
    drop(d2);
    for d in got {
        d.ack().await.unwrap();
    }
    assert!(
        recv_within(&mut b, Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_crashed_transport_s_messages_go_to_the_survivor() {
    let hub = fast().hub();
    let a = MemoryTransport::connect_to(&hub);
    let b = MemoryTransport::connect_to(&hub);
    let tp = topic("crash");
    let ack_timeout = Duration::from_millis(300);
    let mut on_a = a
        .subscribe(member(&tp, "a").ack_timeout(ack_timeout))
        .await
        .unwrap();
    b.publish(msg(&tp, 1)).await.unwrap();
    let d = recv(&mut on_a).await;
    // Crash: nothing settles the delivery, the transport goes away.
    std::mem::forget(d);
    let mut on_b = b
        .subscribe(member(&tp, "b").ack_timeout(ack_timeout))
        .await
        .unwrap();
    // Dropping the transport ends its subscribers too.
    drop(a);
    assert!(on_a.recv().await.is_none());
    let d = recv(&mut on_b).await;
    assert_eq!((num(&d), d.attempt()), (1, 2));
    d.ack().await.unwrap();
}

#[tokio::test]
async fn a_hung_member_s_messages_go_to_the_others_after_the_ack_timeout() {
    let t = fast();
    let tp = topic("hung");
    let ack_timeout = Duration::from_millis(200);
    let mut a = t
        .subscribe(member(&tp, "a").ack_timeout(ack_timeout))
        .await
        .unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    std::mem::forget(recv(&mut a).await);
    let since = Instant::now();
    let mut b = t
        .subscribe(member(&tp, "b").ack_timeout(ack_timeout))
        .await
        .unwrap();
    let d = recv(&mut b).await;
    assert!(since.elapsed() >= ack_timeout - Duration::from_millis(20));
    assert_eq!(d.attempt(), 2);
}

#[tokio::test]
async fn group_start_applies_when_the_group_is_created() {
    let t = fast();
    let tp = topic("gstart");
    t.publish_batch((0..3).map(|i| msg(&tp, i)).collect())
        .await
        .unwrap();
    let mut latest = t
        .subscribe(Subscription::new(tp.clone()).group_member("late", "x"))
        .await
        .unwrap();
    let mut earliest = t
        .subscribe(
            Subscription::new(tp.clone())
                .group_member("early", "x")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    let mut after = t
        .subscribe(
            Subscription::new(tp.clone())
                .group_member("after", "x")
                .start(Start::After(MessageId::from_seq(2))),
        )
        .await
        .unwrap();
    t.publish(msg(&tp, 3)).await.unwrap();
    async fn expect(sub: &mut Box<dyn Subscriber>, want: std::ops::Range<usize>) {
        for i in want {
            let d = recv(sub).await;
            assert_eq!(num(&d), i);
            d.ack().await.unwrap();
        }
        assert!(recv_within(sub, Duration::from_millis(20)).await.is_none());
    }
    expect(&mut latest, 3..4).await;
    expect(&mut earliest, 0..4).await;
    expect(&mut after, 2..4).await;
    // A second member joins the existing group where it is, whatever its Start.
    let mut again = t
        .subscribe(
            Subscription::new(tp.clone())
                .group_member("early", "y")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    assert!(
        recv_within(&mut again, Duration::from_millis(50))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn pattern_group_members_cover_topics_created_later() {
    let t = fast();
    let prefix = topic("pgroup");
    let sub = |name: &str| {
        Subscription::to(&format!("{prefix}.*"))
            .unwrap()
            .group_member("workers", name)
    };
    let mut a = t.subscribe(sub("a")).await.unwrap();
    let mut b = t.subscribe(sub("b")).await.unwrap();
    let mut sent = Vec::new();
    for (i, name) in ["x", "y", "z"].iter().enumerate() {
        let tp = Topic::new(format!("{prefix}.{name}")).unwrap();
        for j in 0..10 {
            t.publish(Message::new(tp.clone(), (i * 10 + j).to_string()))
                .await
                .unwrap();
            sent.push(i * 10 + j);
        }
    }
    let mut got = Vec::new();
    while got.len() < 30 {
        let d = tokio::select! {
            d = recv(&mut a) => d,
            d = recv(&mut b) => d,
        };
        got.push(num(&d));
        d.ack().await.unwrap();
    }
    got.sort_unstable();
    assert_eq!(got, sent);
    assert!(
        recv_within(&mut a, Duration::from_millis(20))
            .await
            .is_none()
    );
    assert!(
        recv_within(&mut b, Duration::from_millis(20))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn late_ack_after_transport_close_and_recv_ends() {
    let t = fast();
    let tp = topic("lateack");
    let mut sub: Box<dyn Subscriber> = t.subscribe(member(&tp, "a")).await.unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let d = recv(&mut sub).await;
    t.close().await.unwrap();
    assert!(sub.recv().await.is_none());
    assert!(matches!(
        d.in_progress().await,
        Err(switchyard_core::Error::Closed)
    ));
    d.ack().await.unwrap();
}

#[tokio::test]
async fn dead_lettering_never_waits_for_a_full_dead_letter_subscriber() {
    let t = fast();
    let tp = topic("dlqfull");
    let dlq = tp.dead_letter().unwrap();
    let mut watcher = t
        .subscribe(Subscription::new(dlq.clone()).buffer(1))
        .await
        .unwrap();
    t.publish(msg(&dlq, 100)).await.unwrap(); // fills the watcher
    let mut sub = t.subscribe(member(&tp, "a")).await.unwrap();
    t.publish(msg(&tp, 1)).await.unwrap();
    let d = recv(&mut sub).await;
    tokio::time::timeout(
        Duration::from_secs(1),
        d.nack(Retry::DeadLetter("full".into())),
    )
    .await
    .expect("nack must not wait for the dead-letter subscriber")
    .unwrap();
    // Dropping at max attempts (from Drop, which cannot wait) also works.
    t.publish(msg(&tp, 2)).await.unwrap();
    let mut one_shot = t.subscribe(member(&tp, "b").max_attempts(1)).await.unwrap();
    let d2 = recv(&mut one_shot).await;
    assert_eq!(num(&d2), 2);
    drop(d2);
    assert_eq!(num(&recv(&mut watcher).await), 100);
    let mut dead: Vec<usize> = vec![
        num(&recv(&mut watcher).await),
        num(&recv(&mut watcher).await),
    ];
    dead.sort_unstable();
    assert_eq!(dead, [1, 2]);
    assert!(
        recv_within(&mut sub, Duration::from_millis(50))
            .await
            .is_none()
    );
}

/// Like the conformance case: members loop on plain `recv` on a 2-worker
/// runtime while the publisher runs outside it without yielding.
#[test]
fn no_member_is_starved_by_busy_ones() {
    for _ in 0..5 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = MemoryTransport::new();
            let tp = topic("starve");
            let (done_tx, done_rx) = tokio::sync::watch::channel(false);
            let total = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for m in 0..3 {
                let mut sub = t.subscribe(member(&tp, &format!("m{m}"))).await.unwrap();
                let mut done = done_rx.clone();
                let total = total.clone();
                let done_tx = done_tx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut mine = 0;
                    loop {
                        tokio::select! {
                            biased;
                            _ = done.changed() => break,
                            d = sub.recv() => {
                                d.unwrap().unwrap().ack().await.unwrap();
                                mine += 1;
                                if total.fetch_add(1, Ordering::SeqCst) + 1 == 1000 {
                                    done_tx.send(true).unwrap();
                                }
                            }
                        }
                    }
                    mine
                }));
            }
            for i in 0..1000 {
                t.publish(msg(&tp, i)).await.unwrap();
            }
            let mut counts = Vec::new();
            for task in tasks {
                counts.push(tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap());
            }
            assert_eq!(counts.iter().sum::<usize>(), 1000);
            assert!(
                counts.iter().all(|&c| c > 0),
                "a member was starved: {counts:?}"
            );
        });
    }
}

/// Reproduction (before `Topic::MAX_DEAD_LETTER_LEN`): on a topic of 252 to
/// 255 bytes, `nack(DeadLetter)` logged "dead-letter topic name too long:
/// message discarded" and the message was gone.
#[tokio::test]
async fn dead_letters_of_the_longest_topics_are_kept() {
    let t = fast();
    for len in [252, 255] {
        let tp = Topic::new("d".repeat(len)).unwrap();
        let dlq = tp.dead_letter().unwrap();
        let mut dead = t
            .subscribe(Subscription::new(dlq.clone()).start(Start::Earliest))
            .await
            .unwrap();
        let mut sub = t.subscribe(member(&tp, "c")).await.unwrap();
        t.publish(Message::new(tp.clone(), "poison")).await.unwrap();
        let d = recv(&mut sub).await;
        d.nack(Retry::DeadLetter("bad".into())).await.unwrap();
        let letter = recv(&mut dead).await;
        assert_eq!(letter.topic(), &dlq, "{len}");
        assert_eq!(&letter.payload()[..], b"poison");
        assert_eq!(letter.headers().get(header::DLQ_TOPIC), Some(tp.as_str()));
        assert_eq!(sub.stats().dead_lettered, 1, "{len}");
    }
}
