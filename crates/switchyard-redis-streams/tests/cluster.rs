//! Redis Streams on a Redis Cluster under load: 3 masters with a replica
//! each (testkit `ClusterGroup`), a `redis+streams+cluster://` URL, six
//! topics spread over the masters, two publishers and a pattern group of
//! two members moving 10,000 messages while the cluster changes — a live
//! migration of a hot topic's slot, a manual failover of its master
//! (`CLUSTER FAILOVER`), and a SIGKILL of that master.
//!
//! Each run keeps an exact ledger: acknowledged publishes, what the
//! cluster holds at the end (read back), lost (acknowledged, not held:
//! asynchronous replication on SIGKILL only), what the group received,
//! duplicate deliveries (by dedup id) and entries still pending at the end.
//!
//! Reproduction of the defect: there was no cluster support;
//! `redis+streams+cluster://` was refused as an unknown scheme, and a plain
//! URL to one node failed with `MOVED` on every other slot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::{Message, Pattern, Start, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{ClusterGroup, ClusterOptions};

const TOTAL: u64 = 10_000;
const TOPICS: u64 = 6;
const PUBLISHERS: u64 = 2;
/// The change happens once this many messages are acknowledged.
const FAULT_AT: u64 = 3_000;
const PACE: Duration = Duration::from_millis(1);
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Migrate,
    Failover,
    KillMaster,
}

fn topic(i: u64) -> Topic {
    Topic::new(format!("orders.t{}", i % TOPICS)).unwrap()
}

fn index_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload.try_into().expect("8-byte payload"))
}

async fn connect(url: &str) -> Arc<RedisStreamsTransport> {
    let cfg = StreamsConfig::from_url(url).expect("valid url");
    Arc::new(RedisStreamsTransport::connect(cfg).await.expect("connects"))
}

struct Ledger {
    acknowledged: usize,
    present: usize,
    lost: usize,
    received: usize,
    /// Deliveries of a dedup id already delivered (acked, then delivered
    /// again).
    duplicates: usize,
    pending: i64,
    masters_used: usize,
}

async fn run(change: Change, extra: &str) -> Ledger {
    let mut cluster =
        tokio::task::block_in_place(|| ClusterGroup::start(ClusterOptions::default()))
            .expect("cluster starts");
    let ns = format!("cl-{}", std::process::id());
    let url = format!(
        "redis+streams+cluster://{}?namespace={ns}&block=200ms&pattern_rescan=200ms&connect_timeout=1s&response_timeout=2s&breaker_threshold=1000000{extra}",
        cluster.host_list()
    );
    // The topics live on more than one master.
    let masters_used: BTreeSet<_> = (0..TOPICS)
        .map(|i| {
            let key = keys::stream_key(&ns, &topic(i));
            let slot = cluster.slot_of(&key).unwrap();
            cluster.master_of(slot).unwrap().addr
        })
        .collect();
    let publisher = connect(&url).await;
    // Every stream exists before the group subscribes (a pattern finds
    // streams, not topics).
    for i in 0..TOPICS {
        let ids = publisher
            .publish_batch(vec![Message::new(
                topic(i),
                u64::MAX.to_le_bytes().to_vec(),
            )])
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
    }
    let started = Instant::now();
    let deadline = started + RUN_LIMIT;

    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let dedup_seen = Arc::new(Mutex::new(BTreeSet::new()));
    let duplicates = Arc::new(AtomicU64::new(0));
    let consumer = connect(&url).await;
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut sub = consumer
            .subscribe(
                Subscription::new(Pattern::new("orders.*").unwrap())
                    .group("workers")
                    .start(Start::Earliest)
                    .ack_timeout(Duration::from_secs(2)),
            )
            .await
            .expect("subscribe");
        let received = received.clone();
        let dedup_seen = dedup_seen.clone();
        let duplicates = duplicates.clone();
        members.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
                    Ok(Some(Ok(d))) => {
                        let i = index_of(&d.message().payload);
                        if i != u64::MAX {
                            received.lock().insert(i);
                        }
                        if !dedup_seen.lock().insert(d.message().dedup_id) {
                            duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = d.ack().await;
                    }
                    Ok(Some(Err(_))) | Err(_) => {}
                    Ok(None) => break,
                }
            }
            let _ = sub.close().await;
        }));
    }

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let t = publisher.clone();
        let acknowledged = acknowledged.clone();
        let count = count.clone();
        publishers.push(tokio::spawn(async move {
            let mut i = p;
            while i < TOTAL && Instant::now() < deadline {
                let m = Message::new(topic(i), i.to_le_bytes().to_vec());
                if t.publish(m).await.is_ok() {
                    acknowledged.lock().insert(i);
                    count.fetch_add(1, Ordering::Relaxed);
                    i += PUBLISHERS;
                    tokio::time::sleep(PACE).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    while count.load(Ordering::Relaxed) < FAULT_AT {
        assert!(
            Instant::now() < deadline,
            "publishing stalled before the change"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hot = keys::stream_key(&ns, &topic(0));
    tokio::task::block_in_place(|| {
        let slot = cluster.slot_of(&hot).unwrap();
        let old = cluster.master_of(slot).unwrap().addr;
        match change {
            Change::Migrate => {
                let to = cluster
                    .topology()
                    .unwrap()
                    .into_iter()
                    .find(|n| n.master && n.addr != old)
                    .unwrap()
                    .addr;
                assert_eq!(cluster.migrate_slot(slot, to).unwrap(), 1);
            }
            Change::Failover => {
                let new = cluster.failover(slot, Duration::from_secs(60)).unwrap();
                assert_ne!(new, old);
            }
            Change::KillMaster => {
                let killed = cluster.kill_master_of(slot).unwrap();
                cluster
                    .wait_master_other_than(slot, killed, Duration::from_secs(60))
                    .unwrap();
                // A supervisor restarts the killed node: it rejoins as a
                // replica of the promoted one (with wait_replicas=1 the
                // slot's publishes resume only then).
                let index = cluster.index_of(killed).unwrap();
                cluster.node_mut(index).unwrap().start_again().unwrap();
            }
        }
    });
    for p in publishers {
        p.await.unwrap();
    }
    let acknowledged = acknowledged.lock().clone();
    assert_eq!(
        acknowledged.len() as u64,
        TOTAL,
        "every index acknowledged within {RUN_LIMIT:?}"
    );

    // What the cluster holds: every stream read back from its beginning.
    let reader = connect(&url).await;
    let mut present = BTreeSet::new();
    for t in 0..TOPICS {
        let key = keys::stream_key(&ns, &topic(t));
        let xlen = tokio::task::block_in_place(|| {
            let slot = cluster.slot_of(&key).unwrap();
            let master = cluster.master_of(slot).unwrap();
            let node = &cluster.nodes()[cluster.index_of(master.addr).unwrap()];
            node.cmd(&["XLEN", &key]).unwrap().as_int().unwrap()
        });
        let mut all = reader
            .subscribe(Subscription::new(topic(t)).start(Start::Earliest))
            .await
            .unwrap();
        let mut entries = 0;
        while entries < xlen {
            assert!(
                Instant::now() < deadline,
                "reading {key} back: {entries} of {xlen}"
            );
            if let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(1), all.recv()).await
            {
                let i = index_of(&d.message().payload);
                if i != u64::MAX {
                    present.insert(i);
                }
                entries += 1;
            }
        }
        let _ = all.close().await;
    }
    let lost = acknowledged.difference(&present).count();
    loop {
        let missing = present.difference(&received.lock()).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} message(s) the cluster holds never reached the group"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = received.lock().len();
    let _ = publisher.close().await;
    let _ = consumer.close().await;
    let _ = reader.close().await;
    for m in members {
        m.await.unwrap();
    }
    // Entries still pending for the group, on every stream's master (the
    // members acked everything and closed: their acks are flushed).
    let pending: i64 = tokio::task::block_in_place(|| {
        (0..TOPICS)
            .map(|t| {
                let key = keys::stream_key(&ns, &topic(t));
                let slot = cluster.slot_of(&key).unwrap();
                let master = cluster.master_of(slot).unwrap();
                let node = &cluster.nodes()[cluster.index_of(master.addr).unwrap()];
                let summary = node.cmd(&["XPENDING", &key, "workers"]).unwrap();
                summary.as_array().unwrap()[0].as_int().unwrap()
            })
            .sum()
    });
    let ledger = Ledger {
        acknowledged: acknowledged.len(),
        present: present.len(),
        lost,
        received,
        duplicates: usize::try_from(duplicates.load(Ordering::Relaxed)).unwrap(),
        pending,
        masters_used: masters_used.len(),
    };
    eprintln!(
        "cluster ledger ({change:?}{extra}): acknowledged {}, held {}, lost {}, received by the group {}, duplicate deliveries {}, pending at the end {}, topics on {} masters, {:?}",
        ledger.acknowledged,
        ledger.present,
        ledger.lost,
        ledger.received,
        ledger.duplicates,
        ledger.pending,
        ledger.masters_used,
        started.elapsed()
    );
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_mid_stream_loses_nothing() {
    let l = run(Change::Migrate, "").await;
    assert!(l.masters_used >= 2);
    assert_eq!(l.lost, 0);
    assert_eq!(l.present, TOTAL as usize);
    assert_eq!(l.received, TOTAL as usize);
    assert_eq!(l.pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_mid_stream_loses_nothing() {
    let l = run(Change::Failover, "").await;
    assert_eq!(l.lost, 0);
    assert_eq!(l.present, TOTAL as usize);
    assert_eq!(l.received, TOTAL as usize);
    assert_eq!(l.pending, 0);
}

/// SIGKILL of a master: what it acknowledged and had not replicated yet
/// is lost (asynchronous replication); everything else arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_stream() {
    let l = run(Change::KillMaster, "").await;
    assert_eq!(l.present + l.lost, TOTAL as usize);
    assert_eq!(l.received, l.present);
    assert_eq!(l.pending, 0);
}

/// With `wait_replicas=1` a publish is acknowledged only once the master's
/// replica has it: nothing acknowledged is lost when the master is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_with_wait_replicas_loses_nothing() {
    let l = run(Change::KillMaster, "&wait_replicas=1&wait_timeout=500ms").await;
    assert_eq!(l.lost, 0);
    assert_eq!(l.present, TOTAL as usize);
    assert_eq!(l.received, TOTAL as usize);
    assert_eq!(l.pending, 0);
}

/// One task queues 6,000 messages over six topics spread across the
/// masters with `publish_queued` (the writer splits each pipeline by
/// master): every ack resolves, ids per topic in queuing order, each
/// stream holds exactly its 1,000 entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_queued_across_masters_in_order() {
    let cluster = tokio::task::block_in_place(|| {
        ClusterGroup::start(ClusterOptions::default().replicas_per_master(0))
    })
    .expect("cluster starts");
    let ns = format!("clq-{}", std::process::id());
    let url = format!(
        "redis+streams+cluster://{}?namespace={ns}",
        cluster.host_list()
    );
    let t = connect(&url).await;
    let mut acks = Vec::new();
    for n in 0..(TOPICS * 1_000) {
        let ack = t
            .publish_queued(Message::new(topic(n), n.to_le_bytes().to_vec()))
            .await
            .expect("queued");
        acks.push((n % TOPICS, ack));
    }
    let mut ids = vec![Vec::new(); TOPICS as usize];
    tokio::time::timeout(RUN_LIMIT, async {
        for (which, ack) in acks {
            ids[which as usize].push(ack.await.expect("acknowledged"));
        }
    })
    .await
    .expect("every ack resolves");
    let mut masters = BTreeSet::new();
    for i in 0..TOPICS {
        let per_topic = &ids[i as usize];
        assert_eq!(per_topic.len(), 1_000);
        assert!(per_topic.windows(2).all(|w| w[0] < w[1]));
        let key = keys::stream_key(&ns, &topic(i));
        let master = cluster
            .master_of(cluster.slot_of(&key).unwrap())
            .unwrap()
            .addr;
        masters.insert(master);
        let node = &cluster.nodes()[cluster.index_of(master).unwrap()];
        assert_eq!(node.cmd(&["XLEN", &key]).unwrap().as_int(), Some(1_000));
    }
    assert!(
        masters.len() >= 2,
        "the topics live on more than one master"
    );
    t.close().await.unwrap();
}
