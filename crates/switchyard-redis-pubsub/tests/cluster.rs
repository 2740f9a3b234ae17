//! The backplane on a Redis Cluster (3 masters with a replica each, testkit
//! `ClusterGroup`, `redis+pubsub+cluster://`): sharded pub/sub on the
//! partition channels.
//!
//! - the 16 partitions spread over every master, and a message crosses
//!   between two transports on every partition (exact subscriptions and a
//!   pattern);
//! - a live migration of a subscribed partition's slot (`migrate_slot`),
//!   and a manual failover of its master (`CLUSTER FAILOVER`), while
//!   messages flow on every partition: the subscriber keeps receiving, and
//!   an exact ledger per topic holds: every sequence number published was
//!   either received once or announced missing by an `Error::Lost` signal
//!   (the sum of the gap ranges equals the messages missing).
//!
//! Reproduction of the defect: `redis+pubsub+cluster://` was refused as an
//! unknown scheme, and a plain URL to one node of a cluster delivered only
//! what was published on that same node (PUBLISH fans out over the whole
//! cluster bus; nothing was sharded).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::{Error, Message, Pattern, Subscription, Topic, TopicFilter, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport, split_lost_origin};
use switchyard_testkit::{ClusterGroup, ClusterOptions};

const PARAMS: &str = "connect_timeout=2s&response_timeout=2s&probe_interval=500ms&probe_timeout=1s&outbox_ttl=30s&reconnect_max=200ms";
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn start_cluster() -> ClusterGroup {
    tokio::task::block_in_place(|| ClusterGroup::start(ClusterOptions::default()))
        .expect("cluster starts")
}

fn url(cluster: &ClusterGroup, ns: &str) -> String {
    format!(
        "redis+pubsub+cluster://{}?namespace={ns}&partitions=16&{PARAMS}",
        cluster.host_list()
    )
}

async fn connect(url: &str) -> Arc<RedisPubSubTransport> {
    let cfg = PubSubConfig::from_url(url).expect("valid url");
    Arc::new(RedisPubSubTransport::connect(cfg).await.expect("connects"))
}

/// One topic per partition (the first `room.N` that lands on each), with
/// its channel.
fn topic_per_partition(url: &str) -> Vec<(Topic, String)> {
    let cfg = PubSubConfig::from_url(url).unwrap();
    let mut seen = BTreeMap::new();
    for i in 0..10_000 {
        let t = format!("room.{i}");
        seen.entry(cfg.channel(&t)).or_insert(t);
        if seen.len() == cfg.partitions {
            break;
        }
    }
    assert_eq!(seen.len(), cfg.partitions, "a topic on every partition");
    seen.into_iter()
        .map(|(ch, t)| (Topic::new(t).unwrap(), ch))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_over_masters_and_every_partition_crosses() {
    let cluster = start_cluster();
    let ns = format!("sp-{}", std::process::id());
    let url = url(&cluster, &ns);
    let topics = topic_per_partition(&url);
    // The partitions spread over every master.
    let masters: BTreeSet<_> = tokio::task::block_in_place(|| {
        topics
            .iter()
            .map(|(_, ch)| {
                let slot = cluster.slot_of(ch).unwrap();
                cluster.master_of(slot).unwrap().addr
            })
            .collect()
    });
    assert_eq!(masters.len(), 3, "16 partitions on 3 masters: {masters:?}");

    let (a, b) = (connect(&url).await, connect(&url).await);
    let list = topics
        .iter()
        .map(|(t, _)| t.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut exact = b
        .subscribe(Subscription::new(TopicFilter::parse(&list).unwrap()))
        .await
        .expect("exact subscription confirmed");
    let mut pattern = b
        .subscribe(Subscription::new(Pattern::new("room.*").unwrap()))
        .await
        .expect("pattern subscription confirmed");
    assert!(
        matches!(b.health().await, switchyard_core::Health::Ok),
        "{:?}",
        b.health().await
    );
    for (t, _) in &topics {
        a.publish(Message::new(t.clone(), t.as_str().to_owned()))
            .await
            .unwrap();
    }
    for (name, sub) in [("exact", &mut exact), ("pattern", &mut pattern)] {
        let mut got = BTreeSet::new();
        while got.len() < topics.len() {
            let item = tokio::time::timeout(Duration::from_secs(10), sub.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: {} of {} arrived", got.len(), topics.len()))
                .expect("open");
            let d = item.expect("no gap, no error");
            assert_eq!(d.payload().as_ref(), d.message().topic.as_str().as_bytes());
            assert!(got.insert(d.message().topic.clone()), "{name}: a duplicate");
        }
        // Nothing more (a message per partition, exactly).
        assert!(
            tokio::time::timeout(Duration::from_millis(300), sub.recv())
                .await
                .is_err(),
            "{name}: more than one message per partition"
        );
    }
    let stats = a.pubsub_stats();
    assert_eq!((stats.published, stats.outbox_refused), (16, 0));
    // The other way too, and the channels are the sharded ones.
    let mut back = a
        .subscribe(Subscription::new(topics[0].0.clone()))
        .await
        .unwrap();
    b.publish(Message::new(topics[0].0.clone(), "back"))
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), back.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.payload().as_ref(), b"back");
    let numsub = tokio::task::block_in_place(|| {
        let slot = cluster.slot_of(&topics[0].1).unwrap();
        let m = cluster.master_of(slot).unwrap();
        let node = &cluster.nodes()[cluster.index_of(m.addr).unwrap()];
        node.cmd(&["PUBSUB", "SHARDNUMSUB", &topics[0].1]).unwrap()
    });
    eprintln!("PUBSUB SHARDNUMSUB {}: {numsub:?}", topics[0].1);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Migrate,
    Failover,
    KillMaster,
}

/// What the subscriber saw of one topic.
#[derive(Default)]
struct Seen {
    received: BTreeSet<u64>,
    duplicates: u64,
    /// Sequence numbers announced lost, and the sum of the ranges.
    lost: BTreeSet<u64>,
    lost_sum: u64,
}

const TOTAL: u64 = 4_000;
const FAULT_AT: u64 = 1_000;

async fn fault_run(change: Change) {
    let cluster = Arc::new(Mutex::new(start_cluster()));
    let ns = format!("fl-{}-{:?}", std::process::id(), change);
    let url = url(&cluster.lock(), &ns);
    let topics = topic_per_partition(&url);
    let (publisher, subscriber) = (connect(&url).await, connect(&url).await);
    let mut sub = subscriber
        .subscribe(
            Subscription::new(Pattern::new("room.*").unwrap()).buffer(Subscription::MAX_BUFFER),
        )
        .await
        .expect("subscribed on every partition");
    let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
    let deadline = Instant::now() + RUN_LIMIT;
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let item = match tokio::time::timeout(Duration::from_millis(500), sub.recv()).await
                {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(_) => continue,
                };
                let mut seen = seen.lock();
                match item {
                    Ok(d) => {
                        let s = seen.entry(d.message().topic.to_string()).or_default();
                        if !s.received.insert(d.id().seq) {
                            s.duplicates += 1;
                        }
                    }
                    Err(Error::Lost { origin, from, to }) => {
                        let (_, topic) = split_lost_origin(&origin).expect("our origin");
                        let s = seen.entry(topic.to_owned()).or_default();
                        s.lost_sum += to - from + 1;
                        s.lost.extend(from..=to);
                    }
                    Err(e) => panic!("unexpected error item: {e}"),
                }
            }
            sub.stats()
        })
    };
    // The hot partition: the first topic's.
    let (hot, hot_channel) = topics[0].clone();
    let slot = tokio::task::block_in_place(|| cluster.lock().slot_of(&hot_channel)).unwrap();
    let old = tokio::task::block_in_place(|| cluster.lock().master_of(slot))
        .unwrap()
        .addr;
    let n = topics.len() as u64;
    let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut fault: Option<tokio::task::JoinHandle<std::net::SocketAddr>> = None;
    let mut published = 0u64;
    // Publish until TOTAL and until the change is over (bounded in count).
    while published < TOTAL || fault.as_ref().is_some_and(|f| !f.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "publishing stalled at {published}"
        );
        assert!(published < 20 * TOTAL, "the change did not end");
        let (t, _) = &topics[(published % n) as usize];
        let id = publisher
            .publish(Message::new(t.clone(), published.to_le_bytes().to_vec()))
            .await
            .unwrap();
        last_seq.insert(t.to_string(), id.seq);
        published += 1;
        if published == FAULT_AT {
            let cluster = cluster.clone();
            fault = Some(tokio::task::spawn_blocking(move || match change {
                Change::Migrate => {
                    let cluster = cluster.lock();
                    let to = cluster
                        .topology()
                        .unwrap()
                        .into_iter()
                        .find(|n| n.master && n.addr != old)
                        .unwrap()
                        .addr;
                    cluster.migrate_slot(slot, to).unwrap();
                    to
                }
                Change::Failover => cluster
                    .lock()
                    .failover(slot, Duration::from_secs(60))
                    .unwrap(),
                Change::KillMaster => {
                    let mut cluster = cluster.lock();
                    let killed = cluster.kill_master_of(slot).unwrap();
                    cluster
                        .wait_master_other_than(slot, killed, Duration::from_secs(60))
                        .unwrap()
                }
            }));
        }
        if published.is_multiple_of(4) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let fault = fault.expect("the change ran").await.unwrap();
    let new = fault;
    assert_ne!(
        new, old,
        "{change:?}: the hot partition's slot has a new master"
    );
    // Trailing losses are revealed by one more message per topic, sent
    // until the subscriber has seen a number past the main run's.
    loop {
        assert!(Instant::now() < deadline, "the subscriber never caught up");
        let behind: Vec<Topic> = topics
            .iter()
            .filter(|(t, _)| {
                let seen = seen.lock();
                let s = seen.get(t.as_str());
                let last = last_seq[t.as_str()];
                !s.is_some_and(|s| {
                    s.received.range(last + 1..).next().is_some()
                        || s.lost.range(last + 1..).next().is_some()
                })
            })
            .map(|(t, _)| t.clone())
            .collect();
        if behind.is_empty() {
            break;
        }
        for t in behind {
            publisher
                .publish(Message::new(t, u64::MAX.to_le_bytes().to_vec()))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The ledger, per topic, over the main run's numbers.
    let mut received = 0u64;
    let mut lost = 0u64;
    {
        let seen = seen.lock();
        for (t, _) in &topics {
            let s = &seen[t.as_str()];
            let last = last_seq[t.as_str()];
            let got: BTreeSet<u64> = s.received.range(1..=last).copied().collect();
            let gone: BTreeSet<u64> = s.lost.range(1..=last).copied().collect();
            assert_eq!(s.duplicates, 0, "{t}: duplicates");
            assert!(
                got.is_disjoint(&gone),
                "{t}: a message both received and lost"
            );
            assert_eq!(
                got.len() as u64 + gone.len() as u64,
                last,
                "{t}: every number received or announced lost"
            );
            assert_eq!(
                s.lost_sum,
                s.lost.len() as u64,
                "{t}: gap ranges do not overlap"
            );
            received += got.len() as u64;
            lost += gone.len() as u64;
        }
    }
    assert_eq!(received + lost, published);
    // The hot partition is subscribed on its new master now (by the
    // subscriber only), and no longer on the old one.
    let shard_subscribers = |addr: std::net::SocketAddr| {
        let cluster = cluster.lock();
        let node = &cluster.nodes()[cluster.index_of(addr).unwrap()];
        let reply = node.cmd(&["PUBSUB", "SHARDNUMSUB", &hot_channel]).unwrap();
        reply.as_array().unwrap_or_default()[1].as_int().unwrap()
    };
    tokio::task::block_in_place(|| {
        assert_eq!(
            shard_subscribers(new),
            1,
            "{hot_channel} subscribed on {new}"
        );
        if change != Change::KillMaster {
            assert_eq!(shard_subscribers(old), 0, "{hot_channel} left {old}");
        }
    });
    let sub_stats = {
        let _ = subscriber.close().await;
        reader.await.unwrap()
    };
    let pstats = publisher.pubsub_stats();
    let sstats = subscriber.pubsub_stats();
    eprintln!(
        "{change:?}: published {published}, to redis {} (expired {}, refused {}), received {received}, lost {lost} (gap signals {}, subscriber lost {}), reconnects {}, hot partition {hot} moved {old} -> {new}",
        pstats.published,
        pstats.outbox_expired,
        pstats.outbox_refused,
        sstats.gaps,
        sub_stats.lost,
        sstats.reconnects,
    );
    assert_eq!(sub_stats.dropped, 0, "no overflow drops");
    assert_eq!(pstats.outbox_refused, 0);
    // The subscriber kept receiving after the change: the last part of the
    // run arrived on every partition.
    assert!(
        received >= published / 2,
        "received only {received} of {published}"
    );
    let _ = publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migration_of_a_subscribed_partition_keeps_delivering_with_exact_gaps() {
    fault_run(Change::Migrate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_keeps_delivering_with_exact_gaps() {
    fault_run(Change::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_master_keeps_delivering_with_exact_gaps() {
    fault_run(Change::KillMaster).await;
}

/// The ACL on a cluster: `&<namespace>:*` allows every subscription,
/// patterns included (they are SSUBSCRIBEs of the partition channels, not
/// PSUBSCRIBEs), and publishing; a user without it gets a `permission
/// denied` error naming SSUBSCRIBE and the rule to grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_channel_rule_of_the_namespace_covers_every_subscription() {
    let cluster = start_cluster();
    let ns = format!("acl-{}", std::process::id());
    tokio::task::block_in_place(|| {
        for node in cluster.nodes() {
            for (user, rule) in [("app", format!("&{ns}:*")), ("narrow", "&other:*".into())] {
                let reply = node
                    .cmd(&[
                        "ACL", "SETUSER", user, "reset", "on", ">pw", "~*", &rule, "+@all",
                    ])
                    .unwrap();
                assert!(format!("{reply:?}").contains("OK"), "{reply:?}");
            }
        }
    });
    let with_user = |user: &str| {
        format!(
            "redis+pubsub+cluster://{user}:pw@{}?namespace={ns}&{PARAMS}",
            cluster.host_list()
        )
    };
    let (a, b) = (
        connect(&with_user("app")).await,
        connect(&with_user("app")).await,
    );
    let mut sub = b
        .subscribe(Subscription::new(Pattern::new("room.*").unwrap()))
        .await
        .expect("a pattern is allowed by &<namespace>:*");
    a.publish(Message::new(Topic::new("room.1").unwrap(), "hi"))
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.payload().as_ref(), b"hi");
    for t in [&a, &b] {
        let h = t.health().await;
        assert!(matches!(h, switchyard_core::Health::Ok), "{h:?}");
    }
    let narrow = connect(&with_user("narrow")).await;
    let e = narrow
        .subscribe(Subscription::new(Topic::new("room.1").unwrap()))
        .await
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(matches!(e, Error::Backend(_)), "{text}");
    for needle in ["permission denied", "SSUBSCRIBE", &format!("&{ns}:*")] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!text.contains("pw@"), "{text}");
    a.close().await.unwrap();
    b.close().await.unwrap();
    narrow.close().await.unwrap();
}
