//! Helpers shared by the hardening tests: a `redis-server` on a free
//! loopback port with a namespace, group subscriptions, polling with a
//! deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Delivery, Message, Subscriber, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{RedisServer, RespValue};

/// A boxed subscriber.
pub(crate) type Sub = Box<dyn Subscriber>;
/// What the tests return.
pub(crate) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The longest a test waits for one event (the machine may be loaded).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A server and a namespace on it.
pub(crate) struct Env {
    pub(crate) server: RedisServer,
    pub(crate) ns: String,
}

impl Env {
    pub(crate) fn start(name: &str) -> Env {
        let server = RedisServer::start().expect("redis-server starts");
        Env {
            server,
            ns: format!("h-{name}-{:08x}", rand_u32()),
        }
    }

    pub(crate) fn config(&self, extra: &str) -> StreamsConfig {
        let rest = self.server.url();
        let rest = rest.split_once("://").map_or(rest.as_str(), |(_, r)| r);
        StreamsConfig::from_url(&format!(
            "redis+streams://{rest}?namespace={}&block=200ms&pattern_rescan=100ms{extra}",
            self.ns
        ))
        .expect("valid url")
    }

    pub(crate) async fn connect(&self, extra: &str) -> Arc<dyn Transport> {
        Arc::new(
            RedisStreamsTransport::connect(self.config(extra))
                .await
                .expect("connects"),
        )
    }

    pub(crate) fn key(&self, topic: &Topic) -> String {
        keys::stream_key(&self.ns, topic)
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> RespValue {
        self.server.cmd(args).expect("command succeeds")
    }

    /// Entries pending in the group.
    pub(crate) fn pending(&self, topic: &Topic, group: &str) -> i64 {
        let reply = self.cmd(&["XPENDING", &self.key(topic), group]);
        reply
            .as_array()
            .and_then(|a| a.first())
            .and_then(RespValue::as_int)
            .unwrap_or(-1)
    }

    /// `(id, consumer, deliveries)` of every pending entry of the group.
    pub(crate) fn pending_rows(&self, topic: &Topic, group: &str) -> Vec<(String, String, i64)> {
        let reply = self.cmd(&["XPENDING", &self.key(topic), group, "-", "+", "100000"]);
        reply
            .as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(|row| {
                let row = row.as_array()?;
                Some((
                    row.first()?.as_str()?.to_owned(),
                    row.get(1)?.as_str()?.to_owned(),
                    row.get(3)?.as_int()?,
                ))
            })
            .collect()
    }

    /// Whether no client is blocked in a read (a dropped subscriber's
    /// blocking XREADGROUP is gone).
    pub(crate) fn no_blocked_clients(&self) -> bool {
        self.server
            .info("clients")
            .is_ok_and(|i| i.contains("blocked_clients:0"))
    }
}

pub(crate) fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(13)
}

pub(crate) fn topic(name: &str) -> Topic {
    Topic::new(name).expect("valid topic")
}

pub(crate) fn member(
    t: &Topic,
    group: &str,
    consumer: &str,
    ack_timeout: Duration,
) -> Subscription {
    Subscription::new(t.clone())
        .group_member(group, consumer)
        .ack_timeout(ack_timeout)
}

/// Publishes `n` messages `tag-000000`... in one batch.
pub(crate) async fn publish_n(t: &Arc<dyn Transport>, topic: &Topic, tag: &str, n: usize) {
    let batch: Vec<Message> = (0..n)
        .map(|i| Message::new(topic.clone(), format!("{tag}-{i:06}")))
        .collect();
    t.publish_batch(batch).await.expect("publish");
}

pub(crate) async fn next(sub: &mut Sub) -> Delivery {
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Ok(d))) => d,
        other => panic!("expected a delivery within {WAIT:?}, got {other:?}"),
    }
}

pub(crate) async fn nothing_within(sub: &mut Sub, period: Duration) {
    if let Ok(item) = tokio::time::timeout(period, sub.recv()).await {
        panic!("expected nothing within {period:?}, got {item:?}");
    }
}

/// Polls `check` every 20 ms until it holds or `WAIT` passes.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
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
