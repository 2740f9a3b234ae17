//! Sentinel failover under load: a primary, a replica and three sentinels
//! (testkit `SentinelGroup`), a `redis+streams+sentinel://` URL, two
//! publishers and two group consumers moving 10,000 messages while the
//! primary changes — once by `SENTINEL FAILOVER`, once by SIGKILL.
//!
//! Reproduction of the defect: with the plain URL of the primary, after
//! `SENTINEL FAILOVER` every publish failed with `READONLY` (the old
//! primary, now a replica) as a transient error until the circuit breaker
//! opened, and nothing ever found the new primary. There was no Sentinel
//! URL form at all.
//!
//! Each run prints its figures (time until publishing resumes, time until
//! consuming resumes, messages acknowledged but lost); docs/reliability.md
//! ("Failover") records them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::{Message, Start, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{SentinelGroup, SentinelOptions};

const TOTAL: u64 = 10_000;
const PUBLISHERS: u64 = 2;
const CONSUMERS: usize = 2;
/// The fault happens once this many messages are acknowledged.
const FAULT_AT: u64 = 3_000;
/// Pause after each acknowledged publish, per publisher.
const PACE: Duration = Duration::from_millis(1);
/// Bound on the whole run (publishing and consuming).
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Fault {
    Failover,
    KillPrimary,
}

fn url(group: &SentinelGroup, ns: &str, extra: &str) -> String {
    let sentinels: Vec<String> = group
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    format!(
        "redis+streams+sentinel://{}/{}/0?namespace={ns}&block=200ms&connect_timeout=1s&response_timeout=2s{extra}",
        sentinels.join(","),
        group.master_name()
    )
}

async fn connect(url: &str) -> Arc<RedisStreamsTransport> {
    let cfg = StreamsConfig::from_url(url).expect("valid url");
    Arc::new(RedisStreamsTransport::connect(cfg).await.expect("connects"))
}

fn index_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload.try_into().expect("8-byte payload"))
}

/// Timestamps of successes, relative to the start of the run.
#[derive(Default)]
struct Timeline(Mutex<Vec<Duration>>);

impl Timeline {
    fn mark(&self, start: Instant) {
        self.0.lock().push(start.elapsed());
    }

    /// The longest pause between two successes after `from`.
    fn longest_gap_after(&self, from: Duration) -> Duration {
        let mut marks = self.0.lock().clone();
        marks.sort();
        let mut longest = Duration::ZERO;
        let mut previous = from;
        for m in marks.into_iter().filter(|m| *m >= from) {
            longest = longest.max(m - previous);
            previous = m;
        }
        longest
    }
}

struct Figures {
    publish_resumed: Duration,
    consume_resumed: Duration,
    acknowledged: usize,
    lost: usize,
    present: usize,
    received: usize,
}

async fn run(fault: Fault, extra: &str) -> Figures {
    let mut group = tokio::task::block_in_place(|| {
        SentinelGroup::start(SentinelOptions::default().down_after(Duration::from_secs(1)))
    })
    .expect("sentinel group starts");
    let ns = format!(
        "failover-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let url = url(&group, &ns, extra);
    let topic = Topic::new("orders").unwrap();
    let started = Instant::now();
    let deadline = started + RUN_LIMIT;

    // Consumers first, so the group exists before the first message.
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let consumed = Arc::new(Timeline::default());
    let consumer_transport = connect(&url).await;
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let mut sub = consumer_transport
            .subscribe(
                Subscription::new(topic.clone())
                    .group("workers")
                    .start(Start::Earliest)
                    .ack_timeout(Duration::from_secs(2)),
            )
            .await
            .expect("subscribe");
        let received = received.clone();
        let consumed = consumed.clone();
        consumers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
                    Ok(Some(Ok(d))) => {
                        received.lock().insert(index_of(&d.message().payload));
                        consumed.mark(started);
                        // An ack lost in the failover is redelivered later.
                        let _ = d.ack().await;
                    }
                    Ok(Some(Err(_))) | Err(_) => {}
                    Ok(None) => break,
                }
            }
            let _ = sub.close().await;
        }));
    }

    // Publishers: each index is retried until acknowledged (or the run's
    // time is up); a retry after an ambiguous failure may duplicate it.
    let publisher_transport = connect(&url).await;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let published = Arc::new(Timeline::default());
    let count = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let t = publisher_transport.clone();
        let topic = topic.clone();
        let acknowledged = acknowledged.clone();
        let published = published.clone();
        let count = count.clone();
        publishers.push(tokio::spawn(async move {
            let mut i = p;
            while i < TOTAL && Instant::now() < deadline {
                let m = Message::new(topic.clone(), i.to_le_bytes().to_vec());
                if t.publish(m).await.is_ok() {
                    acknowledged.lock().insert(i);
                    published.mark(started);
                    count.fetch_add(1, Ordering::Relaxed);
                    i += PUBLISHERS;
                    // Paced (about 1,000 msg/s per publisher), so the
                    // publishing spans the failover.
                    tokio::time::sleep(PACE).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    // The fault, once FAULT_AT messages are acknowledged.
    while count.load(Ordering::Relaxed) < FAULT_AT {
        assert!(
            Instant::now() < deadline,
            "publishing stalled before the fault"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fault_at = started.elapsed();
    let old = group.current_primary_addr().expect("primary");
    let new = tokio::task::block_in_place(|| {
        match fault {
            Fault::Failover => group.failover().expect("SENTINEL FAILOVER"),
            Fault::KillPrimary => {
                group.kill_primary().expect("kill the primary");
            }
        }
        group.wait_for_new_primary(old, Duration::from_secs(60))
    })
    .expect("a new primary");
    assert_ne!(old, new);
    if let Fault::KillPrimary = fault {
        // A supervisor restarts the killed node; the sentinels make it a
        // replica of the new primary (with wait_replicas=1 publishing
        // resumes only then: the new primary has no other replica).
        let index = group
            .nodes()
            .iter()
            .position(|n| n.addr() == old)
            .expect("the killed node");
        tokio::task::block_in_place(|| {
            group
                .node_mut(index)
                .expect("node")
                .start_again()
                .expect("the killed node starts again");
        });
    }

    for p in publishers {
        p.await.unwrap();
    }
    let acknowledged = acknowledged.lock().clone();
    assert_eq!(
        acknowledged.len() as u64,
        TOTAL,
        "every index acknowledged within {RUN_LIMIT:?}"
    );

    // What the new primary holds: read the whole stream back.
    let reader = connect(&url).await;
    let xlen = {
        let primary = group.primary().expect("primary");
        let key = switchyard_redis_streams::keys::stream_key(&ns, &topic);
        primary
            .cmd(&["XLEN", &key])
            .expect("XLEN")
            .as_int()
            .expect("XLEN is an integer")
    };
    let mut all = reader
        .subscribe(Subscription::new(topic.clone()).start(Start::Earliest))
        .await
        .expect("subscribe");
    let mut present = BTreeSet::new();
    let mut entries = 0i64;
    while entries < xlen {
        assert!(
            Instant::now() < deadline,
            "reading the stream back: {entries} of {xlen}"
        );
        if let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(1), all.recv()).await {
            present.insert(index_of(&d.message().payload));
            entries += 1;
        }
    }
    let _ = all.close().await;
    let lost: BTreeSet<u64> = acknowledged.difference(&present).copied().collect();

    // Every message the new primary holds reaches the group.
    loop {
        let missing = present.difference(&received.lock()).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} message(s) on the new primary never reached the group"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received_count = received.lock().len();
    let _ = publisher_transport.close().await;
    let _ = consumer_transport.close().await;
    let _ = reader.close().await;
    for c in consumers {
        c.await.unwrap();
    }
    let figures = Figures {
        publish_resumed: published.longest_gap_after(fault_at),
        consume_resumed: consumed.longest_gap_after(fault_at),
        acknowledged: acknowledged.len(),
        lost: lost.len(),
        present: present.len(),
        received: received_count,
    };
    eprintln!(
        "failover figures ({fault:?}{extra}): publishing resumed after {:?}, consuming resumed after {:?}, acknowledged {}, lost {} (acknowledged by the old primary, not replicated), received by the group {}",
        figures.publish_resumed,
        figures.consume_resumed,
        figures.acknowledged,
        figures.lost,
        figures.received
    );
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_mid_stream() {
    let f = run(Fault::Failover, "").await;
    assert_eq!(f.acknowledged as u64, TOTAL);
    assert_eq!(f.present + f.lost, TOTAL as usize);
    assert!(f.received >= f.present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_mid_stream() {
    let f = run(Fault::KillPrimary, "").await;
    assert_eq!(f.acknowledged as u64, TOTAL);
    assert_eq!(f.present + f.lost, TOTAL as usize);
    assert!(f.received >= f.present);
}

/// With `wait_replicas=1` nothing acknowledged is lost in the failover:
/// what the old primary took after the replica's promotion never got a
/// replica's confirmation, so its publish failed and was retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_with_wait_replicas_loses_nothing() {
    let f = run(
        Fault::Failover,
        "&wait_replicas=1&wait_timeout=500ms&breaker_threshold=1000000",
    )
    .await;
    assert_eq!(f.acknowledged as u64, TOTAL);
    assert_eq!(f.lost, 0);
    assert_eq!(f.present, TOTAL as usize);
}

/// The same with SIGKILL of the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_with_wait_replicas_loses_nothing() {
    let f = run(
        Fault::KillPrimary,
        "&wait_replicas=1&wait_timeout=500ms&breaker_threshold=1000000",
    )
    .await;
    assert_eq!(f.acknowledged as u64, TOTAL);
    assert_eq!(f.lost, 0);
    assert_eq!(f.present, TOTAL as usize);
}
