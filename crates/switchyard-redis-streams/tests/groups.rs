//! Consumer-group behaviour beyond the conformance suite, against real
//! `redis-server` processes: idle consumer cleanup, consumers removed on
//! close, acks flushed on close, attempts from the pending list, dead
//! letters after crashes, long `nack(After)` delays, overflow in group mode,
//! pattern groups, and pending entries trimmed by retention.
//!
//! Every test polls with a deadline; none waits on a fixed sleep for an
//! event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{
    Delivery, Message, Overflow, Retry, Start, Subscriber, Subscription, Topic, Transport, header,
};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{RedisServer, RespValue};

type Sub = Box<dyn Subscriber>;
type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(15);

/// A server and a namespace on it.
struct Env {
    server: RedisServer,
    ns: String,
}

impl Env {
    fn start(name: &str) -> Env {
        let server = RedisServer::start().expect("redis-server starts");
        Env {
            server,
            ns: format!("g-{name}-{:08x}", rand_u32()),
        }
    }

    fn url(&self, extra: &str) -> String {
        let rest = self.server.url();
        let rest = rest.split_once("://").map_or(rest.as_str(), |(_, r)| r);
        format!(
            "redis+streams://{rest}?namespace={}&block=200ms&pattern_rescan=100ms{extra}",
            self.ns
        )
    }

    async fn connect(&self, extra: &str) -> Arc<dyn Transport> {
        let config = StreamsConfig::from_url(&self.url(extra)).expect("valid url");
        Arc::new(
            RedisStreamsTransport::connect(config)
                .await
                .expect("connects"),
        )
    }

    fn key(&self, topic: &Topic) -> String {
        keys::stream_key(&self.ns, topic)
    }

    fn cmd(&self, args: &[&str]) -> RespValue {
        self.server.cmd(args).expect("command succeeds")
    }

    /// `XINFO CONSUMERS`: name → pending.
    fn consumers(&self, topic: &Topic, group: &str) -> BTreeMap<String, i64> {
        let reply = self.cmd(&["XINFO", "CONSUMERS", &self.key(topic), group]);
        let mut out = BTreeMap::new();
        for c in reply.as_array().unwrap_or_default() {
            let fields = c.as_array().unwrap_or_default();
            let get = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0].as_str() == Some(name))
                    .map(|kv| kv[1].clone())
            };
            if let (Some(n), Some(p)) = (get("name"), get("pending")) {
                out.insert(
                    n.as_str().unwrap_or_default().to_owned(),
                    p.as_int().unwrap_or(-1),
                );
            }
        }
        out
    }

    /// Entries pending in the group.
    fn pending(&self, topic: &Topic, group: &str) -> i64 {
        let reply = self.cmd(&["XPENDING", &self.key(topic), group]);
        reply
            .as_array()
            .and_then(|a| a.first())
            .and_then(RespValue::as_int)
            .unwrap_or(-1)
    }
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(13)
}

fn topic(name: &str) -> Topic {
    Topic::new(name).expect("valid topic")
}

fn member(t: &Topic, group: &str, consumer: &str, ack_timeout: Duration) -> Subscription {
    Subscription::new(t.clone())
        .group_member(group, consumer)
        .ack_timeout(ack_timeout)
}

async fn publish_n(t: &Arc<dyn Transport>, topic: &Topic, tag: &str, n: usize) {
    let batch: Vec<Message> = (0..n)
        .map(|i| Message::new(topic.clone(), format!("{tag}-{i:06}")))
        .collect();
    t.publish_batch(batch).await.expect("publish");
}

async fn next(sub: &mut Sub) -> Delivery {
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Ok(d))) => d,
        other => panic!("expected a delivery within {WAIT:?}, got {other:?}"),
    }
}

async fn nothing_within(sub: &mut Sub, period: Duration) {
    if let Ok(item) = tokio::time::timeout(period, sub.recv()).await {
        panic!("expected nothing within {period:?}, got {item:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_consumers_without_pending_are_removed_others_kept() -> TestResult {
    let env = Env::start("cleanup");
    let t = topic("jobs");
    let key = env.key(&t);
    env.cmd(&["XGROUP", "CREATE", &key, "g", "$", "MKSTREAM"]);
    let bus = env.connect("&consumer_idle_cleanup=300ms").await;
    publish_n(&bus, &t, "j", 2).await;
    // A consumer that holds 2 entries and went away, and one with nothing.
    env.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "holder",
        "COUNT",
        "2",
        "STREAMS",
        &key,
        ">",
    ]);
    env.cmd(&["XGROUP", "CREATECONSUMER", &key, "g", "ghost"]);
    let mut sub = bus
        .subscribe(member(&t, "g", "worker", Duration::from_secs(600)))
        .await?;
    eventually("ghost removed", || async {
        !env.consumers(&t, "g").contains_key("ghost")
    })
    .await;
    // Several more cleanup rounds: the holder and the active worker stay.
    let after = Instant::now();
    eventually("three more cleanup rounds", || async {
        after.elapsed() > Duration::from_millis(1000)
    })
    .await;
    let consumers = env.consumers(&t, "g");
    assert_eq!(consumers.get("holder"), Some(&2), "{consumers:?}");
    assert!(consumers.contains_key("worker"), "{consumers:?}");
    publish_n(&bus, &t, "k", 1).await;
    next(&mut sub).await.ack().await?;
    sub.close().await?;
    bus.close().await?;
    Ok(())
}

/// Also guards the close race: the closer once waited for the reader
/// *task* only, while its last `XREADGROUP` (sent as the task was stopped)
/// was still blocked in Redis. That read took the first of the two entries
/// published for c2 below for the closed c1, where it stayed pending until
/// the ack timeout: c2 never got its second delivery (2 of 15 runs under 3
/// CPU hogs `yes > /dev/null`). The closer now ends that read
/// (`reader::settle`) before it hands entries back: 20 of 20 under 3 hogs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_flushes_acks_and_removes_an_idle_consumer() -> TestResult {
    let env = Env::start("close");
    let t = topic("orders");
    let bus = env.connect("").await;
    let mut sub = bus
        .subscribe(member(&t, "g", "c1", Duration::from_secs(30)))
        .await?;
    publish_n(&bus, &t, "o", 200).await;
    for _ in 0..200 {
        next(&mut sub).await.ack().await?;
    }
    // No polling: close itself must have flushed every ack.
    sub.close().await?;
    assert_eq!(env.pending(&t, "g"), 0, "acks not flushed by close");
    assert!(
        !env.consumers(&t, "g").contains_key("c1"),
        "a consumer with nothing pending is removed on close"
    );

    // A consumer that still holds an unsettled delivery is kept.
    let mut sub = bus
        .subscribe(member(&t, "g", "c2", Duration::from_secs(30)))
        .await?;
    publish_n(&bus, &t, "p", 2).await;
    let keep = next(&mut sub).await;
    next(&mut sub).await.ack().await?;
    sub.close().await?;
    assert_eq!(env.consumers(&t, "g").get("c2"), Some(&1));
    drop(keep);

    // Transport close flushes the acks of its group subscribers too.
    let mut sub = bus
        .subscribe(member(&t, "g", "c3", Duration::from_secs(30)))
        .await?;
    publish_n(&bus, &t, "q", 50).await;
    let mut acked = 0;
    while acked < 50 {
        let d = next(&mut sub).await;
        if d.payload().starts_with(b"q-") {
            acked += 1;
        }
        d.ack().await?;
    }
    bus.close().await?;
    let consumers = env.consumers(&t, "g");
    assert_eq!(
        consumers.get("c3").copied().unwrap_or(0),
        0,
        "{consumers:?}"
    );
    assert!(
        sub.recv().await.is_none(),
        "recv ends after transport close"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_consumer_rereads_its_pending_with_attempt_counts() -> TestResult {
    let env = Env::start("reread");
    let t = topic("tasks");
    let bus = env.connect("").await;
    let sub_of = || member(&t, "g", "c1", Duration::from_secs(60));
    let mut sub = bus.subscribe(sub_of()).await?;
    publish_n(&bus, &t, "t", 3).await;
    let first: Vec<Delivery> = vec![
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
    ];
    assert!(first.iter().all(|d| d.attempt() == 1));
    let ids: BTreeSet<_> = first.iter().map(Delivery::id).collect();
    // A crash: nothing settled, nothing released.
    first.into_iter().for_each(std::mem::forget);
    drop(sub);

    let mut sub = bus.subscribe(sub_of()).await?;
    let again = vec![
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
    ];
    let again_ids: BTreeSet<_> = again.iter().map(Delivery::id).collect();
    assert_eq!(ids, again_ids);
    for d in again {
        assert_eq!(d.attempt(), 2, "pending re-read counts a delivery: {d:?}");
        d.ack().await?;
    }
    assert_eq!(sub.stats().redelivered, 3);
    sub.close().await?;
    bus.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_by_drops_goes_to_the_dead_letter_stream() -> TestResult {
    let env = Env::start("exhaust");
    let t = topic("fragile");
    let bus = env.connect("").await;
    let mut dlq = bus
        .subscribe(Subscription::new(t.dead_letter()?).start(Start::Earliest))
        .await?;
    let mut sub = bus
        .subscribe(member(&t, "g", "c1", Duration::from_millis(300)).max_attempts(2))
        .await?;
    let id = bus
        .publish(Message::new(t.clone(), "boom").with_header("k", "v"))
        .await?;
    for attempt in 1..=2 {
        let d = next(&mut sub).await;
        assert_eq!((d.id(), d.attempt()), (id, attempt));
        drop(d); // never settled: comes back, counts an attempt
    }
    let dl = next(&mut dlq).await;
    assert_eq!(dl.payload().as_ref(), b"boom");
    let h = dl.headers();
    assert_eq!(h.get("k"), Some("v"));
    assert_eq!(h.get(header::DLQ_ATTEMPTS), Some("2"));
    assert_eq!(h.get(header::DLQ_TOPIC), Some("fragile"));
    assert_eq!(h.get(header::DLQ_ID), Some(id.to_string().as_str()));
    assert!(
        h.get(header::DLQ_REASON)
            .is_some_and(|r| r.contains("max attempts"))
    );
    nothing_within(&mut sub, Duration::from_millis(900)).await;
    assert_eq!(sub.stats().dead_lettered, 1);
    assert_eq!(env.pending(&t, "g"), 0);
    bus.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_nack_delay_is_not_claimed_by_other_members() -> TestResult {
    let env = Env::start("delay");
    let t = topic("later");
    let at = Duration::from_millis(300);
    let (ta, tb) = (env.connect("").await, env.connect("").await);
    let mut a = ta.subscribe(member(&t, "g", "a", at)).await?;
    let mut b = tb.subscribe(member(&t, "g", "b", at)).await?;
    ta.publish(Message::new(t.clone(), "x")).await?;
    let d = tokio::select! {
        d = next(&mut a) => d,
        d = next(&mut b) => d,
    };
    let delay = at * 5;
    let nacked = Instant::now();
    d.nack(Retry::After(delay)).await?;
    // Neither member may see it before the delay, although it is 5 ack
    // timeouts long: the nacking member keeps it alive meanwhile.
    let again = tokio::select! {
        d = next(&mut a) => d,
        d = next(&mut b) => d,
    };
    let elapsed = nacked.elapsed();
    assert!(
        elapsed >= delay,
        "redelivered after {elapsed:?}, before the delay {delay:?}"
    );
    assert_eq!(again.attempt(), 2);
    again.ack().await?;
    ta.close().await?;
    tb.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_by_overflow_comes_back_later() -> TestResult {
    let env = Env::start("overflow");
    let t = topic("burst");
    let bus = env.connect("").await;
    let mut sub = bus
        .subscribe(
            member(&t, "g", "c1", Duration::from_millis(300))
                .buffer(4)
                .overflow(Overflow::DropNewest),
        )
        .await?;
    publish_n(&bus, &t, "b", 40).await;
    // Nobody reads until the reader has dropped some.
    eventually("some dropped", || async { sub.stats().dropped > 0 }).await;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 40 {
        assert!(
            Instant::now() < deadline,
            "only {} of 40 came back",
            seen.len()
        );
        let d = next(&mut sub).await;
        seen.insert(d.payload().clone());
        d.ack().await?;
    }
    assert!(sub.stats().dropped > 0);
    bus.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_group_reads_new_streams_from_their_start() -> TestResult {
    let env = Env::start("pattern");
    let bus = env.connect("").await;
    let mut sub = bus
        .subscribe(Subscription::to("fleet.*.scan")?.group_member("g", "c1"))
        .await?;
    // Streams created after the subscription: all their entries arrive.
    for r in ["r1", "r2"] {
        publish_n(&bus, &topic(&format!("fleet.{r}.scan")), r, 5).await;
    }
    let mut got = BTreeSet::new();
    while got.len() < 10 {
        let d = next(&mut sub).await;
        got.insert(String::from_utf8_lossy(d.payload()).into_owned());
        d.ack().await?;
    }
    assert!(
        got.contains("r1-000000") && got.contains("r2-000004"),
        "{got:?}"
    );
    nothing_within(&mut sub, Duration::from_millis(300)).await;
    bus.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_pending_entries_are_counted_on_reread() -> TestResult {
    let env = Env::start("trim");
    let t = topic("frames");
    let bus = env.connect("&maxlen=100").await;
    let sub_of = || member(&t, "g", "c1", Duration::from_secs(60)).buffer(10);
    let mut sub = bus.subscribe(sub_of()).await?;
    publish_n(&bus, &t, "f", 10).await;
    let held: Vec<Delivery> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(next(&mut sub).await);
        }
        v
    };
    held.into_iter().for_each(std::mem::forget);
    drop(sub); // crashed with 10 pending
    // A crashed process's blocked XREADGROUP dies with its socket; wait for
    // that here, or it could still take one of the entries published next.
    eventually("the dropped reader's blocking read is gone", || async {
        env.server
            .info("clients")
            .is_ok_and(|i| i.contains("blocked_clients:0"))
    })
    .await;
    publish_n(&bus, &t, "g", 1000).await; // trims the 10 away
    let first_left = env.cmd(&["XRANGE", &env.key(&t), "-", "+", "COUNT", "1"]);
    assert!(
        !format!("{first_left:?}").contains("f-0000"),
        "the first entries must be trimmed"
    );
    let mut sub = bus.subscribe(sub_of()).await?;
    eventually("10 lost to retention", || async {
        sub.stats().lost_to_retention == 10
    })
    .await;
    // What remains after the group's cursor arrives; the trimmed pending
    // ones are acked, not retried.
    let remaining = env.cmd(&["XLEN", &env.key(&t)]).as_int().unwrap_or(0);
    let mut n = 0;
    while n < remaining {
        next(&mut sub).await.ack().await?;
        n += 1;
    }
    nothing_within(&mut sub, Duration::from_millis(300)).await;
    assert_eq!(sub.stats().lost_to_retention, 10);
    bus.close().await?;
    assert_eq!(env.pending(&t, "g"), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_buffered_entries_back_at_once() -> TestResult {
    let env = Env::start("release");
    let t = topic("jobs");
    let bus = env.connect("").await;
    // A long ack timeout: without the release on close, the other member
    // would wait a minute for the entries `a` fetched but never handed out.
    let at = Duration::from_secs(60);
    let mut a = bus
        .subscribe(member(&t, "g", "a", at).start(Start::Earliest).buffer(8))
        .await?;
    publish_n(&bus, &t, "j", 20).await;
    let first = next(&mut a).await;
    let first_payload = first.payload().to_vec();
    first.ack().await?;
    // `a` has fetched more than it handed out.
    eventually("a holds buffered entries", || async {
        env.consumers(&t, "g").get("a").copied().unwrap_or(0) > 0
    })
    .await;
    a.close().await?;
    let mut b = bus
        .subscribe(member(&t, "g", "b", at).start(Start::Earliest))
        .await?;
    let mut seen = BTreeSet::new();
    seen.insert(first_payload);
    while seen.len() < 20 {
        let d = next(&mut b).await;
        assert!(seen.insert(d.payload().to_vec()), "no entry twice");
        d.ack().await?;
    }
    assert_eq!(seen.len(), 20);
    eventually("nothing pending", || async { env.pending(&t, "g") == 0 }).await;
    b.close().await?;
    bus.close().await?;
    Ok(())
}
