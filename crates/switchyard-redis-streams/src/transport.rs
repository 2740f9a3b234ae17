//! [`RedisStreamsTransport`]: the `Transport` implementation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_core::{
    BreakerState, Capabilities, CircuitBreaker, Error, Health, Message, MessageId, Mode,
    PublishAck, Result, Subscriber, SubscriberCounts, Subscription, Topic, TopicFilter, TopicInfo,
    Transport, TransportStats,
};
use switchyard_redis::RedisClient;
use tokio::sync::watch;

use crate::config::StreamsConfig;
use crate::discovery::TopicSource;
use crate::inner::{Inner, Stats};
use crate::publish::Writer;
use crate::{fanout, group};

/// The adapter's name, as [`Transport::name`] reports it.
pub const NAME: &str = "redis-streams";

/// A transport over Redis Streams: one stream per topic, fan-out with
/// XREAD, consumer groups with XREADGROUP.
///
/// Cheap to share behind an `Arc`; every subscriber reads on a dedicated
/// connection, publishing shares one multiplexed connection.
pub struct RedisStreamsTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStreamsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamsTransport")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl RedisStreamsTransport {
    /// Connects: opens the shared connection (bounded by the connect
    /// timeout, failing with an error that names the address) and starts
    /// the writer task.
    pub async fn connect(config: StreamsConfig) -> Result<Self> {
        config.validate()?;
        let client = RedisClient::new(config.redis.clone())?;
        let conn = switchyard_redis::connect_with_retry(&config.redis, "redis-streams", || {
            switchyard_redis::SharedConnection::open(client.clone())
        })
        .await?;
        let breaker = Arc::new(CircuitBreaker::new(
            "redis",
            config.breaker_threshold,
            config.breaker_cool_down,
        ));
        let stats = Arc::new(Stats::default());
        let writer = Writer::spawn(conn.clone(), &config, breaker.clone(), stats.clone());
        let (shutdown, _) = watch::channel(false);
        tracing::debug!(redis = %config.redis, "redis-streams transport connected");
        Ok(RedisStreamsTransport {
            inner: Arc::new(Inner {
                config,
                client,
                conn,
                breaker,
                closed: AtomicBool::new(false),
                shutdown,
                stats,
                writer,
                group_flushers: parking_lot::Mutex::new(Vec::new()),
                group_closers: parking_lot::Mutex::new(Vec::new()),
                denied: switchyard_redis::denied::Denials::new(),
                no_unblock: AtomicBool::new(false),
                readers: crate::inner::ReaderHealth::default(),
                subscribers: Arc::default(),
            }),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &StreamsConfig {
        &self.inner.config
    }

    /// Turns a `NOPERM` from XADD into a `permission denied` error and
    /// records it for `health()`.
    fn note_denied<T>(&self, r: Result<T>) -> Result<T> {
        note_denied(&self.inner, r)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

/// Turns a `NOPERM` from XADD into a `permission denied` error and records
/// it in `inner`'s denials for `health()`.
fn note_denied<T>(inner: &Inner, r: Result<T>) -> Result<T> {
    match r {
        Err(Error::Backend(text)) if switchyard_redis::denied::is_noperm_text(&text) => {
            let text = inner.denied.record("XADD", &text);
            Err(Error::Backend(format!("permission denied: {text}")))
        }
        other => other,
    }
}

/// The capabilities of this adapter.
pub fn capabilities() -> Capabilities {
    let mut c = Capabilities::default();
    c.persistent = true;
    c.replay = true;
    c.consumer_groups = true;
    c.ack_redelivery = true;
    c.per_topic_ordering = true;
    c.dead_letters = true;
    c.patterns = true;
    c.cross_process = true;
    c.at_least_once = true;
    c.gap_signals = false;
    c
}

#[async_trait::async_trait]
impl Transport for RedisStreamsTransport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn publish(&self, message: Message) -> Result<MessageId> {
        self.check_open()?;
        self.inner.breaker.check()?;
        let r = self.inner.writer.publish(message).await;
        self.note_denied(r)
    }

    /// Queues the message on the writer (waiting while its queue of
    /// `writer_queue` entries is full) and returns; the ack is the writer's
    /// answer once Redis replied to the XADD (and to `WAIT`, with
    /// `wait_replicas`). Fails at once, queuing nothing, when the
    /// transport is closed, the circuit breaker is open or the message is
    /// over the limits. A queued message is written even if its ack is
    /// dropped; `close` flushes it.
    async fn publish_queued(&self, message: Message) -> Result<PublishAck> {
        self.check_open()?;
        self.inner.breaker.check()?;
        let ack = self.inner.writer.enqueue(message).await?;
        let inner = Arc::downgrade(&self.inner);
        Ok(PublishAck::new(async move {
            let r = ack.wait().await;
            match (&r, inner.upgrade()) {
                (Err(_), Some(inner)) => note_denied(&inner, r),
                _ => r,
            }
        }))
    }

    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.check_open()?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.breaker.check()?;
        let r = self.inner.writer.publish_batch(messages).await;
        self.note_denied(r)
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        self.check_open()?;
        subscription.validate()?;
        let topics = TopicSource::open(&self.inner, subscription.filter()).await?;
        let filter = subscription.filter().clone();
        let sub = match subscription.mode() {
            Mode::Group { .. } => {
                group::subscribe(self.inner.clone(), subscription, topics).await?
            }
            _ => fanout::subscribe(self.inner.clone(), subscription, topics).await?,
        };
        Ok(self.inner.subscribers.counted(&filter, sub))
    }

    /// This transport's open subscribers whose filter matches `topic`;
    /// `remote` is `None` (a Redis stream has readers, not subscriptions:
    /// see `topics()` for its consumer groups).
    async fn subscribers(&self, topic: &Topic) -> Result<SubscriberCounts> {
        Ok(SubscriberCounts::new(
            self.inner.subscribers.count(topic) as u64,
            None,
        ))
    }

    async fn topics(&self, filter: &TopicFilter) -> Result<Vec<TopicInfo>> {
        crate::catalog::topics(&self.inner.conn, self.inner.namespace(), filter).await
    }

    async fn health(&self) -> Health {
        if self.inner.is_closed() {
            return Health::Down("the transport is closed".into());
        }
        let mut conn = self.inner.conn.clone();
        let timeout = self.inner.config.redis.response_timeout;
        let addr = self.inner.config.redis.addr();
        if let Some(reason) = self.inner.denied.health_reason() {
            return Health::Degraded(format!("{reason} (redis at {addr})"));
        }
        let health = if self.inner.client.is_cluster() {
            switchyard_redis::cluster_health(&self.inner.conn, timeout).await
        } else {
            match switchyard_redis::ping_health(&mut conn, &addr, timeout).await {
                // A replica answers PING too: ask its role.
                Health::Ok => switchyard_redis::role_health(&mut conn, &addr, timeout).await,
                other => other,
            }
        };
        // A reader refused meanwhile (while the PING was on its way) has
        // recorded the denial before it reported itself down: name the
        // permission, not only that it cannot read.
        if let Some(reason) = self.inner.denied.health_reason() {
            return Health::Degraded(format!("{reason} (redis at {addr})"));
        }
        let health = match (health, self.inner.readers.reason()) {
            (Health::Ok, Some(reason)) => Health::Degraded(reason),
            (other, _) => other,
        };
        match health {
            Health::Ok if self.inner.breaker.state() == BreakerState::Open => {
                Health::Degraded(format!(
                    "publishing to redis at {addr} is paused: the circuit breaker is open after repeated failures"
                ))
            }
            other => other,
        }
    }

    fn stats(&self) -> TransportStats {
        self.inner.transport_stats()
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let timeout = self
            .inner
            .config
            .redis
            .response_timeout
            .max(Duration::from_millis(100));
        let flushed = self.inner.writer.close(timeout).await;
        // Every group subscriber ends: `recv` returns `None`, queued acks
        // are sent, and what was fetched but never handed out goes back to
        // the group at once (as on `Subscriber::close`).
        self.inner.shutdown.send_replace(true);
        self.inner.drain_group_flushers(timeout).await;
        self.inner
            .drain_group_closers(timeout.saturating_mul(3))
            .await;
        flushed
    }
}
