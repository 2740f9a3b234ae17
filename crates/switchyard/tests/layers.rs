//! Layers (`switchyard::layer`): forwarding, publish retry, delivery
//! timeout and dedup, on the memory adapter and on a test double of a
//! `Transport` that fails on demand.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use std::sync::Mutex;
use switchyard::prelude::*;
use switchyard::{
    DedupId, DedupLayer, DeliveryTimeoutLayer, Health, Layer, PublishRetryLayer, SubscriberCounts,
    TraceLayer, layers,
};

/// Generous: the machine is shared and loaded.
const DEADLINE: Duration = Duration::from_secs(10);

async fn next(sub: &mut Box<dyn Subscriber>) -> Delivery {
    tokio::time::timeout(DEADLINE, sub.recv())
        .await
        .expect("a delivery within the deadline")
        .expect("subscriber open")
        .expect("a delivery, not an error")
}

/// A transport that fails `publish`/`publish_batch` with `fail_with` the
/// first `failures` times, then passes them to `inner` (or, with
/// `lose_reply`, publishes first and then reports the failure: a reply
/// lost on the way). Records every attempt's dedup ids.
struct Flaky {
    inner: Arc<dyn Transport>,
    failures: u32,
    fail_with: fn() -> Error,
    lose_reply: bool,
    attempts: AtomicU32,
    seen: Mutex<Vec<DedupId>>,
}

impl Flaky {
    fn new(inner: Arc<dyn Transport>, failures: u32, fail_with: fn() -> Error) -> Arc<Self> {
        Arc::new(Flaky {
            inner,
            failures,
            fail_with,
            lose_reply: false,
            attempts: AtomicU32::new(0),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn attempt(&self) -> bool {
        self.attempts.fetch_add(1, Ordering::SeqCst) < self.failures
    }
}

fn transient() -> Error {
    Error::Transient("connection reset (test)".into())
}

fn fatal() -> Error {
    Error::Backend("WRONGTYPE (test)".into())
}

#[switchyard::async_trait]
impl Transport for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn capabilities(&self) -> switchyard::Capabilities {
        self.inner.capabilities()
    }
    async fn publish(&self, message: Message) -> switchyard::Result<MessageId> {
        self.seen.lock().unwrap().push(message.dedup_id);
        let fail = self.attempt();
        if fail && !self.lose_reply {
            return Err((self.fail_with)());
        }
        let id = self.inner.publish(message).await?;
        if fail {
            return Err((self.fail_with)());
        }
        Ok(id)
    }
    async fn publish_batch(&self, messages: Vec<Message>) -> switchyard::Result<Vec<MessageId>> {
        self.seen
            .lock()
            .unwrap()
            .extend(messages.iter().map(|m| m.dedup_id));
        if self.attempt() {
            return Err((self.fail_with)());
        }
        self.inner.publish_batch(messages).await
    }
    async fn subscribe(&self, s: Subscription) -> switchyard::Result<Box<dyn Subscriber>> {
        self.inner.subscribe(s).await
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
    async fn close(&self) -> switchyard::Result<()> {
        self.inner.close().await
    }
}

async fn memory() -> Arc<dyn Transport> {
    switchyard::connect("memory://?redelivery_tick_ms=10")
        .await
        .unwrap()
}

fn retry(max_attempts: u32) -> PublishRetryLayer {
    PublishRetryLayer::new(
        max_attempts,
        Duration::from_millis(1),
        Duration::from_millis(5),
    )
    .unwrap()
}

#[tokio::test]
async fn every_layer_forwards_every_read_only_method() {
    let inner = memory().await;
    let topic = Topic::new("fwd.orders").unwrap();
    let _fanout = inner
        .subscribe(Subscription::new(topic.clone()))
        .await
        .unwrap();
    let _member = inner
        .subscribe(Subscription::new(topic.clone()).group("g"))
        .await
        .unwrap();
    inner
        .publish(Message::new(topic.clone(), "x"))
        .await
        .unwrap();

    let layered = layers()
        .with(TraceLayer::new().without_propagation())
        .with(retry(3))
        .with(DeliveryTimeoutLayer::new(Duration::from_secs(5)).unwrap())
        .with(DedupLayer::new(100).unwrap())
        .apply(inner.clone());

    assert_eq!(layered.name(), inner.name());
    assert_eq!(layered.capabilities(), inner.capabilities());
    assert_eq!(layered.health().await, inner.health().await);
    assert_eq!(layered.stats(), inner.stats());
    let all = TopicFilter::parse("fwd.>").unwrap();
    let topics = inner.topics(&all).await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(layered.topics(&all).await.unwrap(), topics);
    let counts: SubscriberCounts = inner.subscribers(&topic).await.unwrap();
    assert_eq!(layered.subscribers(&topic).await.unwrap(), counts);

    // Subscribers too: stats pass through, close reaches the adapter.
    let mut sub = layered
        .subscribe(
            Subscription::new(topic.clone())
                .group("g2")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    let d = next(&mut sub).await;
    d.ack().await.unwrap();
    let stats = sub.stats();
    assert_eq!((stats.received, stats.acked), (1, 1));
    sub.close().await.unwrap();

    // close() reaches the inner transport.
    layered.close().await.unwrap();
    let e = inner.publish(Message::new(topic, "y")).await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e}");
}

#[tokio::test]
async fn publish_retry_retries_transient_errors_with_the_same_dedup_id() {
    let layer = retry(5);
    let flaky = Flaky::new(memory().await, 3, transient);
    let transport = layer.layer(flaky.clone());
    let topic = Topic::new("retry.ok").unwrap();
    let message = Message::new(topic.clone(), "m");
    transport.publish(message.clone()).await.unwrap();
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 4);
    assert_eq!(*flaky.seen.lock().unwrap(), vec![message.dedup_id; 4]);
    assert_eq!(layer.retries(), 3);
}

/// `publish_queued` through every layer: the acks resolve to the ids the
/// adapter gave, and a transient refusal to queue is retried (same dedup
/// id) like a refused `publish`.
#[tokio::test]
async fn publish_queued_passes_through_every_layer_and_is_retried() {
    let inner = memory().await;
    let topic = Topic::new("queued.orders").unwrap();
    let mut reader = inner
        .subscribe(Subscription::new(topic.clone()))
        .await
        .unwrap();
    let layered = layers()
        .with(TraceLayer::new().without_propagation())
        .with(retry(3))
        .with(DeliveryTimeoutLayer::new(Duration::from_secs(5)).unwrap())
        .with(DedupLayer::new(100).unwrap())
        .apply(inner.clone());
    let mut acks = Vec::new();
    for i in 0..100 {
        acks.push(
            layered
                .publish_queued(Message::new(topic.clone(), format!("m{i}")))
                .await
                .unwrap(),
        );
    }
    let mut ids = Vec::new();
    for ack in acks {
        ids.push(ack.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 100);
    for id in &ids {
        assert_eq!(next(&mut reader).await.id(), *id);
    }

    let layer = retry(5);
    let flaky = Flaky::new(memory().await, 2, transient);
    let transport = layer.layer(flaky.clone());
    let message = Message::new(Topic::new("queued.retry").unwrap(), "m");
    let ack = transport.publish_queued(message.clone()).await.unwrap();
    ack.await.unwrap();
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(*flaky.seen.lock().unwrap(), vec![message.dedup_id; 3]);
    assert_eq!(layer.retries(), 2);
}

#[tokio::test]
async fn publish_retry_stops_after_max_attempts_and_at_once_on_fatal_errors() {
    let layer = retry(4);
    let flaky = Flaky::new(memory().await, u32::MAX, transient);
    let e = layer
        .layer(flaky.clone())
        .publish(Message::new(Topic::new("retry.exhausted").unwrap(), "m"))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 4);

    let flaky = Flaky::new(memory().await, u32::MAX, fatal);
    let e = retry(4)
        .layer(flaky.clone())
        .publish(Message::new(Topic::new("retry.fatal").unwrap(), "m"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Backend(_)), "{e}");
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn publish_retry_retries_a_batch_whole() {
    let flaky = Flaky::new(memory().await, 2, transient);
    let topic = Topic::new("retry.batch").unwrap();
    let batch = vec![
        Message::new(topic.clone(), "a"),
        Message::new(topic.clone(), "b"),
    ];
    let ids = retry(3)
        .layer(flaky.clone())
        .publish_batch(batch.clone())
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
    let want: Vec<_> = (0..3)
        .flat_map(|_| batch.iter().map(|m| m.dedup_id))
        .collect();
    assert_eq!(*flaky.seen.lock().unwrap(), want);
}

#[test]
fn settings_are_validated() {
    let ms = Duration::from_millis;
    assert!(PublishRetryLayer::new(0, ms(1), ms(1)).is_err());
    assert!(PublishRetryLayer::new(101, ms(1), ms(1)).is_err());
    assert!(PublishRetryLayer::new(100, ms(0), ms(0)).is_ok());
    assert!(PublishRetryLayer::new(3, ms(10), ms(9)).is_err());
    assert!(PublishRetryLayer::new(3, ms(10), PublishRetryLayer::MAX_DELAY + ms(1)).is_err());
    let e = PublishRetryLayer::new(0, ms(1), ms(1)).unwrap_err();
    assert!(
        e.to_string().contains("max_attempts must be 1 to 100"),
        "{e}"
    );
    assert!(DeliveryTimeoutLayer::new(Duration::ZERO).is_err());
    assert!(DeliveryTimeoutLayer::new(DeliveryTimeoutLayer::MAX_TIMEOUT + ms(1)).is_err());
    let t = DeliveryTimeoutLayer::new(ms(1)).unwrap();
    assert!(t.clone().with_retry(Retry::After(Duration::MAX)).is_err());
    assert!(t.with_retry(Retry::After(ms(5))).is_ok());
    assert!(DedupLayer::new(0).is_err());
    assert!(DedupLayer::new(DedupLayer::MAX_WINDOW + 1).is_err());
}

#[tokio::test]
async fn an_unsettled_delivery_is_nacked_after_the_timeout_and_comes_back() {
    let layer = DeliveryTimeoutLayer::new(Duration::from_millis(200)).unwrap();
    let transport = layers().with(layer.clone()).apply(memory().await);
    let topic = Topic::new("timeout.jobs").unwrap();
    let mut sub = transport
        .subscribe(
            Subscription::new(topic.clone())
                .group("workers")
                .ack_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let id = transport
        .publish(Message::new(topic.clone(), "job"))
        .await
        .unwrap();

    // The handler never settles the first delivery...
    let first = next(&mut sub).await;
    assert_eq!((first.id(), first.attempt()), (id, 1));
    // ...so it is nacked after 200 ms (not the 60 s ack timeout) and
    // comes back.
    let second = next(&mut sub).await;
    assert_eq!((second.id(), second.attempt()), (id, 2));
    assert_eq!(layer.expired(), 1);

    // The late settlement of the first fails and changes nothing.
    let e = first.ack().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("DeliveryTimeoutLayer"), "{e}");
    second.ack().await.unwrap();

    // Settled in time: nothing more comes (bounded wait for an absence).
    let more = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await;
    assert!(more.is_err(), "no further delivery: {more:?}");
    assert_eq!(layer.expired(), 1);
    let stats = sub.stats();
    assert_eq!((stats.received, stats.acked, stats.nacked), (2, 1, 1));
    sub.close().await.unwrap();
}

#[tokio::test]
async fn in_progress_restarts_the_delivery_timeout() {
    let layer = DeliveryTimeoutLayer::new(Duration::from_millis(300)).unwrap();
    let transport = layers().with(layer.clone()).apply(memory().await);
    let topic = Topic::new("timeout.long").unwrap();
    let mut sub = transport
        .subscribe(Subscription::new(topic.clone()).group("workers"))
        .await
        .unwrap();
    transport
        .publish(Message::new(topic.clone(), "job"))
        .await
        .unwrap();
    let d = next(&mut sub).await;
    // 4 x 150 ms = 600 ms of work, twice the timeout, kept alive.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        d.in_progress().await.unwrap();
    }
    d.ack().await.unwrap();
    assert_eq!(layer.expired(), 0);
    sub.close().await.unwrap();
}

#[tokio::test]
async fn dedup_drops_a_repeated_dedup_id_and_acks_it() {
    for group in [true, false] {
        let layer = DedupLayer::new(16).unwrap();
        let transport = layers().with(layer.clone()).apply(memory().await);
        let topic = Topic::new("dedup.orders").unwrap();
        let subscription = Subscription::new(topic.clone());
        let subscription = if group {
            subscription.group("g")
        } else {
            subscription
        };
        let mut sub = transport.subscribe(subscription).await.unwrap();

        let message = Message::new(topic.clone(), "order-1");
        let first = transport.publish(message.clone()).await.unwrap();
        let second = transport.publish(message.clone()).await.unwrap();
        assert_ne!(first, second, "two backend entries");
        let marker = transport
            .publish(Message::new(topic.clone(), "marker"))
            .await
            .unwrap();

        let d = next(&mut sub).await;
        assert_eq!((d.id(), d.dedup_id()), (first, message.dedup_id));
        d.ack().await.unwrap();
        let d = next(&mut sub).await;
        assert_eq!(d.id(), marker, "the duplicate was skipped");
        d.ack().await.unwrap();
        assert_eq!(layer.duplicates(), 1);

        if group {
            // The duplicate was acked too: 3 acks in the adapter's count.
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while sub.stats().acked < 3 {
                assert!(tokio::time::Instant::now() < deadline, "{:?}", sub.stats());
                let _ = tokio::time::timeout(Duration::from_millis(20), sub.recv()).await;
            }
            assert_eq!(sub.stats().acked, 3);
        }
        assert_eq!(sub.stats().received, 3);
        sub.close().await.unwrap();
    }
}

/// A redelivery (same backend id after a nack) is not a duplicate.
#[tokio::test]
async fn dedup_lets_redeliveries_through() {
    let layer = DedupLayer::new(16).unwrap();
    let transport = layers().with(layer.clone()).apply(memory().await);
    let topic = Topic::new("dedup.redeliver").unwrap();
    let mut sub = transport
        .subscribe(Subscription::new(topic.clone()).group("g"))
        .await
        .unwrap();
    let id = transport
        .publish(Message::new(topic.clone(), "job"))
        .await
        .unwrap();
    next(&mut sub).await.nack(Retry::Now).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!((d.id(), d.attempt()), (id, 2));
    d.ack().await.unwrap();
    assert_eq!(layer.duplicates(), 0);
    sub.close().await.unwrap();
}

/// Retry and dedup together: a publish whose reply is lost is retried (a
/// second copy, same dedup id) and the consumer processes it once.
#[tokio::test]
async fn retried_publish_after_a_lost_reply_is_processed_once() {
    let dedup = DedupLayer::new(1_000).unwrap();
    let retry = retry(3);
    let inner = memory().await;
    let mut flaky = Flaky::new(inner.clone(), 1, transient);
    Arc::get_mut(&mut flaky).unwrap().lose_reply = true;
    let transport = layers()
        .with(retry.clone())
        .with(dedup.clone())
        .apply(flaky.clone());
    let topic = Topic::new("once.orders").unwrap();
    let mut sub = transport
        .subscribe(Subscription::new(topic.clone()).group("g"))
        .await
        .unwrap();
    transport
        .publish(Message::new(topic.clone(), "order-7"))
        .await
        .unwrap();
    let marker = transport
        .publish(Message::new(topic.clone(), "marker"))
        .await
        .unwrap();
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(retry.retries(), 1);
    let topics = inner
        .topics(&TopicFilter::parse("once.>").unwrap())
        .await
        .unwrap();
    assert_eq!(
        topics[0].length, 3,
        "two copies and the marker reached the backend"
    );

    let d = next(&mut sub).await;
    assert_eq!(&d.payload()[..], b"order-7");
    d.ack().await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.id(), marker);
    d.ack().await.unwrap();
    assert_eq!(dedup.duplicates(), 1);
    sub.close().await.unwrap();
}

/// `with_retry(Retry::DeadLetter(..))`: the expired delivery goes to the
/// dead-letter topic instead of coming back.
#[tokio::test]
async fn an_expired_delivery_can_be_dead_lettered() {
    let layer = DeliveryTimeoutLayer::new(Duration::from_millis(100))
        .unwrap()
        .with_retry(Retry::DeadLetter("handler took too long".into()))
        .unwrap();
    let inner = memory().await;
    let topic = Topic::new("timeout.dlq").unwrap();
    let mut dlq = inner
        .subscribe(Subscription::new(topic.dead_letter().unwrap()))
        .await
        .unwrap();
    let transport = layers().with(layer.clone()).apply(inner);
    let mut sub = transport
        .subscribe(Subscription::new(topic.clone()).group("workers"))
        .await
        .unwrap();
    transport
        .publish(Message::new(topic.clone(), "slow"))
        .await
        .unwrap();
    let held = next(&mut sub).await;
    let dead = next(&mut dlq).await;
    assert_eq!(&dead.payload()[..], b"slow");
    assert_eq!(layer.expired(), 1);
    assert!(held.ack().await.is_err());
    let more = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await;
    assert!(more.is_err(), "not redelivered: {more:?}");
}

/// A subscriber layer wraps one subscriber directly too.
#[tokio::test]
async fn a_subscriber_layer_wraps_a_subscriber_directly() {
    use switchyard::SubscriberLayer;
    let transport = memory().await;
    let topic = Topic::new("direct.dedup").unwrap();
    let dedup = DedupLayer::new(1).unwrap();
    let mut sub = dedup.layer_subscriber(
        transport
            .subscribe(Subscription::new(topic.clone()))
            .await
            .unwrap(),
    );
    let a = Message::new(topic.clone(), "a");
    let b = Message::new(topic.clone(), "b");
    // a, a (dropped), b, a (window of 1 forgot a: passes), a (dropped).
    for m in [&a, &a, &b, &a, &a] {
        transport.publish(m.clone()).await.unwrap();
    }
    let marker = transport
        .publish(Message::new(topic.clone(), "end"))
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let d = next(&mut sub).await;
        if d.id() == marker {
            break;
        }
        got.push(String::from_utf8(d.payload().to_vec()).unwrap());
    }
    assert_eq!(got, ["a", "b", "a"]);
    assert_eq!(dedup.duplicates(), 2);
}
