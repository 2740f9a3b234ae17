//! Consumer groups under faults, against real `redis-server` processes:
//! a server restart with AOF, a consumer whose transport dies mid-batch, a
//! foreign entry, retention trimming pending entries, and a restart without
//! persistence (`NOGROUP`).
//!
//! Every message carries a numbered payload and its dedup id, so the
//! checks count exactly: every message delivered, acked ones not
//! redelivered, duplicates with their first copy's dedup id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use switchyard_core::{
    DedupId, Delivery, Error, Message, MessageId, Subscriber, Subscription, Topic, Transport,
    header,
};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{FaultProxy, Persistence, RedisOptions, RedisServer, RespValue};

type Sub = Box<dyn Subscriber>;
type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(20);

fn streams_url(redis_url: &str, ns: &str, extra: &str) -> String {
    let rest = redis_url.split_once("://").map_or(redis_url, |(_, r)| r);
    format!("redis+streams://{rest}?namespace={ns}&block=200ms&connect_timeout=1s{extra}")
}

async fn connect(url: &str) -> Arc<dyn Transport> {
    let config = StreamsConfig::from_url(url).expect("valid url");
    Arc::new(
        RedisStreamsTransport::connect(config)
            .await
            .expect("connects"),
    )
}

fn topic(name: &str) -> Topic {
    Topic::new(name).expect("valid topic")
}

fn member(t: &Topic, group: &str, consumer: &str, ack_timeout: Duration) -> Subscription {
    Subscription::new(t.clone())
        .group_member(group, consumer)
        .ack_timeout(ack_timeout)
}

/// Publishes `n` numbered messages in batches; returns their dedup ids.
async fn publish_numbered(t: &Arc<dyn Transport>, topic: &Topic, n: usize) -> Vec<DedupId> {
    let mut dedups = Vec::with_capacity(n);
    for start in (0..n).step_by(500) {
        let batch: Vec<Message> = (start..n.min(start + 500))
            .map(|i| Message::new(topic.clone(), format!("m-{i:06}")))
            .collect();
        dedups.extend(batch.iter().map(|m| m.dedup_id));
        t.publish_batch(batch).await.expect("publish");
    }
    dedups
}

fn index(d: &Delivery) -> usize {
    std::str::from_utf8(d.payload())
        .ok()
        .and_then(|s| s.strip_prefix("m-"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected payload in {d:?}"))
}

async fn next(sub: &mut Sub) -> Delivery {
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Ok(d))) => d,
        other => panic!("expected a delivery within {WAIT:?}, got {other:?}"),
    }
}

/// Polls `check` every 20 ms until it holds or `WAIT` passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ids pending in `group` on `key` (extended XPENDING).
fn pending_ids(server: &RedisServer, key: &str, group: &str) -> BTreeSet<String> {
    let reply = server
        .cmd(&["XPENDING", key, group, "-", "+", "100000"])
        .expect("XPENDING");
    reply
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|row| row.as_array()?.first()?.as_str().map(str::to_owned))
        .collect()
}

/// Checks copies `(index, dedup)` against the published dedup ids; returns
/// how many times each index arrived.
fn count_copies(copies: &[(usize, DedupId)], dedups: &[DedupId]) -> Vec<u32> {
    let mut counts = vec![0u32; dedups.len()];
    for &(i, d) in copies {
        assert_eq!(d, dedups[i], "message {i} arrived with another dedup id");
        counts[i] += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_aof_delivers_everything_and_no_acked_again() -> TestResult {
    const N: usize = 10_000;
    let mut server =
        RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof))?;
    let url = streams_url(&server.url(), "aof", "");
    let bus = connect(&url).await;
    let t = topic("durable");
    let key = keys::stream_key("aof", &t);
    let mut sub = bus
        .subscribe(member(&t, "g", "c1", Duration::from_secs(2)).buffer(256))
        .await?;
    let dedups = publish_numbered(&bus, &t, N).await;

    // Consume part: 4,000 received, 3,000 acked, 1,000 held unsettled.
    let mut before = Vec::new();
    let mut acked_ids = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut held = Vec::new();
    for k in 0..4000 {
        let d = next(&mut sub).await;
        before.push((index(&d), d.dedup_id()));
        if k < 3000 {
            acked.insert(index(&d));
            acked_ids.insert(d.id().to_string());
            d.ack().await?;
        } else {
            held.push(d);
        }
    }
    eventually("the 3,000 acks reached redis", || async {
        pending_ids(&server, &key, "g").is_disjoint(&acked_ids)
    })
    .await;
    drop(held); // abandoned: they come back

    let restarting = tokio::task::spawn_blocking(move || server.restart().map(|()| server));
    let server = restarting.await??;

    // Finish with the same subscriber: it reconnects by itself.
    let mut after = Vec::new();
    let mut seen: BTreeSet<usize> = acked.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < N {
        assert!(Instant::now() < deadline, "only {} of {N} seen", seen.len());
        let d = next(&mut sub).await;
        let i = index(&d);
        assert!(
            !acked.contains(&i),
            "message {i} was acked before the restart but came again"
        );
        after.push((i, d.dedup_id()));
        seen.insert(i);
        d.ack().await?;
    }
    // Anything still to come (duplicates) within the ack timeout.
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), sub.recv()).await {
        let i = index(&d);
        assert!(
            !acked.contains(&i),
            "message {i} was acked before the restart but came again"
        );
        after.push((i, d.dedup_id()));
        d.ack().await?;
    }
    let mut all = before.clone();
    all.extend(after.iter().copied());
    let counts = count_copies(&all, &dedups);
    let missing = counts.iter().filter(|&&c| c == 0).count();
    let duplicated = counts.iter().filter(|&&c| c > 1).count();
    eprintln!(
        "restart with AOF: published {N}, delivered {} ({} before, {} after the restart), distinct {}, duplicated {duplicated}, acked before restart {}",
        all.len(),
        before.len(),
        after.len(),
        N - missing,
        acked.len()
    );
    assert_eq!(missing, 0);
    for i in &acked {
        assert_eq!(
            counts[*i], 1,
            "acked message {i} delivered {} times",
            counts[*i]
        );
    }
    sub.close().await?;
    bus.close().await?;
    assert!(pending_ids(&server, &key, "g").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_consumer_is_taken_over_after_the_claim_timeout() -> TestResult {
    const N: usize = 2000;
    let server = RedisServer::start()?;
    let proxy = FaultProxy::start(server.addr()).await?;
    let at = Duration::from_millis(500);
    let t = topic("work");
    let ta = connect(&streams_url(&server.url_for(proxy.addr()), "crash", "")).await;
    let tb = connect(&streams_url(&server.url(), "crash", "")).await;
    let mut a = ta.subscribe(member(&t, "g", "a", at).buffer(64)).await?;
    let mut b = tb.subscribe(member(&t, "g", "b", at).buffer(64)).await?;

    // Member b works all along.
    let b_copies = Arc::new(Mutex::new(Vec::<(usize, DedupId, u32)>::new()));
    let (stop_b, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sink = b_copies.clone();
    let worker = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return b,
                item = b.recv() => match item {
                    Some(Ok(d)) => {
                        sink.lock().expect("lock").push((index(&d), d.dedup_id(), d.attempt()));
                        d.ack().await.expect("ack");
                    }
                    other => panic!("member b: {other:?}"),
                },
            }
        }
    });
    let dedups = publish_numbered(&tb, &t, N).await;

    // Member a: 100 received, 50 acked, then its transport dies mid-batch.
    let mut a_copies = Vec::new();
    let mut held = Vec::new();
    for k in 0..100 {
        let d = next(&mut a).await;
        a_copies.push((index(&d), d.dedup_id()));
        if k < 50 {
            d.ack().await?;
        } else {
            held.push(index(&d));
            std::mem::forget(d); // a crash settles nothing
        }
    }
    proxy.set_refuse(true);
    proxy.cut();
    drop(a);
    drop(ta);

    let covered = || {
        let b = b_copies.lock().expect("lock");
        let mut all: BTreeSet<usize> = a_copies.iter().map(|c| c.0).collect();
        all.extend(b.iter().map(|c| c.0));
        all.len()
    };
    eventually("member b covers everything", || async { covered() == N }).await;
    // Let late duplicates arrive (one more claim timeout).
    let settle = Instant::now();
    eventually("a claim timeout passed", || async {
        settle.elapsed() > at * 2
    })
    .await;
    let _ = stop_b.send(());
    let b = worker.await?;
    let b_copies = b_copies.lock().expect("lock").clone();

    let mut all: Vec<(usize, DedupId)> = a_copies.clone();
    all.extend(b_copies.iter().map(|c| (c.0, c.1)));
    let counts = count_copies(&all, &dedups);
    assert!(counts.iter().all(|&c| c >= 1), "a message was lost");
    let taken_over: Vec<u32> = b_copies
        .iter()
        .filter(|c| held.contains(&c.0))
        .map(|c| c.2)
        .collect();
    assert_eq!(taken_over.len(), held.len(), "b got each held message once");
    assert!(
        taken_over.iter().all(|&n| n >= 2),
        "attempts {taken_over:?}"
    );
    eprintln!(
        "crash: published {N}, a received {} (acked 50), b received {}, distinct {}, duplicated {}",
        a_copies.len(),
        b_copies.len(),
        counts.iter().filter(|&&c| c > 0).count(),
        counts.iter().filter(|&&c| c > 1).count()
    );
    b.close().await?;
    tb.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_entry_goes_to_the_dead_letter_stream() -> TestResult {
    let server = RedisServer::start()?;
    let bus = connect(&streams_url(&server.url(), "foreign", "")).await;
    let t = topic("inbox");
    let key = keys::stream_key("foreign", &t);
    let dlq_key = keys::stream_key("foreign", &t.dead_letter()?);
    let mut sub = bus
        .subscribe(member(&t, "g", "c1", Duration::from_secs(5)))
        .await?;
    let foreign = server.cmd(&["XADD", &key, "*", "foo", "bar"])?;
    let foreign_id = foreign.as_str().unwrap_or_default().to_owned();
    bus.publish(Message::new(t.clone(), "good")).await?;

    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Err(Error::Malformed { id, reason }))) => {
            assert_eq!(id, foreign_id);
            assert!(reason.contains("missing field v"), "{reason}");
        }
        other => panic!("expected a Malformed item first, got {other:?}"),
    }
    let good = next(&mut sub).await;
    assert_eq!(good.payload().as_ref(), b"good");
    good.ack().await?;

    let dead = server.cmd(&["XRANGE", &dlq_key, "-", "+"])?;
    let entries = dead.as_array().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{dead:?}");
    let fields: Vec<&str> = entries[0].as_array().unwrap_or_default()[1]
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(RespValue::as_str)
        .collect();
    let field = |name: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == name)
            .map(|kv| kv[1].to_owned())
    };
    assert_eq!(
        field("foo").as_deref(),
        Some("bar"),
        "fields copied raw: {fields:?}"
    );
    assert!(field(header::DLQ_REASON).is_some_and(|r| r.contains("malformed")));
    assert_eq!(field(header::DLQ_TOPIC).as_deref(), Some("inbox"));
    assert_eq!(field(header::DLQ_ID), Some(foreign_id));
    assert_eq!(field(header::DLQ_ATTEMPTS).as_deref(), Some("1"));
    let stats = sub.stats();
    assert_eq!((stats.malformed, stats.dead_lettered), (1, 1));
    eventually("nothing pending", || async {
        pending_ids(&server, &key, "g").is_empty()
    })
    .await;
    bus.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_a_crashed_members_pending_entries() -> TestResult {
    let server = RedisServer::start()?;
    let url = streams_url(&server.url(), "retain", "&maxlen=100");
    let bus = connect(&url).await;
    let t = topic("frames");
    let key = keys::stream_key("retain", &t);
    let at = Duration::from_millis(300);
    let mut slow = bus
        .subscribe(member(&t, "g", "slow", at).buffer(20))
        .await?;
    publish_numbered(&bus, &t, 20).await;
    for _ in 0..20 {
        std::mem::forget(next(&mut slow).await);
    }
    drop(slow); // fell behind for good: 20 pending
    // A crashed process's blocked XREADGROUP dies with its socket; wait for
    // that here, or it could still take one of the entries published next
    // (under CPU starvation it did: 21 pending, 21 lost).
    eventually("the dropped reader's blocking read is gone", || async {
        server
            .info("clients")
            .is_ok_and(|i| i.contains("blocked_clients:0"))
    })
    .await;

    // 1,000 more: MAXLEN ~ 100 trims the 20 pending ones away.
    let more: Vec<Message> = (0..1000)
        .map(|i| Message::new(t.clone(), format!("n-{i:06}")))
        .collect();
    bus.publish_batch(more).await?;
    let left = server.cmd(&["XRANGE", &key, "-", "+"])?;
    let left: BTreeSet<MessageId> = left
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_array()?.first()?.as_str()?.parse().ok())
        .collect();
    assert!(left.len() < 1000, "retention trimmed nothing");

    // Another member gets what remains, and counts the trimmed pending
    // entries it found when claiming the crashed member's entries.
    let mut sub = bus.subscribe(member(&t, "g", "fresh", at)).await?;
    let mut got = BTreeSet::new();
    while got.len() < left.len() {
        let d = next(&mut sub).await;
        assert!(
            left.contains(&d.id()),
            "{d:?} is not one of the remaining entries"
        );
        assert!(got.insert(d.id()), "{d:?} delivered twice");
        d.ack().await?;
    }
    eventually("20 lost to retention", || async {
        sub.stats().lost_to_retention == 20
    })
    .await;
    eventually("nothing pending", || async {
        pending_ids(&server, &key, "g").is_empty()
    })
    .await;
    eprintln!(
        "retention: 1,020 published, {} remained and were delivered, {} pending entries lost to retention",
        got.len(),
        sub.stats().lost_to_retention
    );
    bus.close().await?;
    Ok(())
}

/// Counts WARN (and worse) events whose `group` field equals `GROUP`.
struct WarnCounter;

const NOGROUP_GROUP: &str = "nogroup-workers";

fn warnings() -> &'static AtomicUsize {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = tracing::subscriber::set_global_default(WarnCounter);
    });
    &COUNT
}

struct GroupField(bool);

impl tracing::field::Visit for GroupField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "group" && format!("{value:?}") == NOGROUP_GROUP {
            self.0 = true;
        }
    }
}

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut v = GroupField(false);
        event.record(&mut v);
        if v.0 {
            warnings().fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.info("commandstats").unwrap_or_default();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_persistence_recreates_the_group() -> TestResult {
    let warned = warnings();
    let mut server = RedisServer::start()?;
    let url = streams_url(&server.url(), "nogroup", "");
    let bus = connect(&url).await;
    let t = topic("events");
    let mut sub = bus
        .subscribe(member(&t, NOGROUP_GROUP, "c1", Duration::from_secs(1)))
        .await?;
    publish_numbered(&bus, &t, 5).await;
    for _ in 0..5 {
        next(&mut sub).await.ack().await?;
    }
    warned.store(0, Ordering::Relaxed);
    let server = tokio::task::spawn_blocking(move || server.restart().map(|()| server)).await??;
    let restarted = Instant::now();

    // Everything is gone, the group too. New messages must arrive anyway.
    let mut published = false;
    let deadline = Instant::now() + WAIT;
    while !published {
        assert!(
            Instant::now() < deadline,
            "publishing after the restart kept failing"
        );
        let batch: Vec<Message> = (0..10)
            .map(|i| Message::new(t.clone(), format!("m-{:06}", 100 + i)))
            .collect();
        published = bus.publish_batch(batch).await.is_ok();
        if !published {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut got = BTreeSet::new();
    while got.len() < 10 {
        let d = next(&mut sub).await;
        got.insert(index(&d));
        d.ack().await?;
    }
    assert_eq!(got, (100..110).collect::<BTreeSet<_>>());
    let elapsed = restarted.elapsed();
    let reads = command_calls(&server, "xreadgroup");
    let creates = command_calls(&server, "xgroup|create");
    let warns = warned.load(Ordering::Relaxed);
    eprintln!(
        "NOGROUP: recovered in {elapsed:?} with {reads} XREADGROUP and {creates} XGROUP CREATE calls, {warns} warnings"
    );
    assert!(creates >= 1, "the group was recreated");
    // No busy loop: a blocking read every 200 ms, a few retries.
    let bound = 20 + 10 * elapsed.as_secs();
    assert!(reads <= bound, "{reads} XREADGROUP calls in {elapsed:?}");
    assert!(warns <= 4, "{warns} warnings logged for one restart");
    sub.close().await?;
    bus.close().await?;
    Ok(())
}
