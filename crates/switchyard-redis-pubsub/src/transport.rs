//! The backplane transport: publish locally first, then to Redis through
//! the outbox; subscribe locally and, through the receiving loop, to Redis.

use std::collections::VecDeque;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use switchyard_core::{
    Capabilities, Error, Health, Message, MessageId, Mode, Result, Start, Subscriber,
    SubscriberCounts, Subscription, Topic, Transport, TransportStats, async_trait, header,
};
use switchyard_memory::{MemoryConfig, MemoryTransport};
use switchyard_redis::RedisClient;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, run_cluster_receiver};
use crate::config::{PubSubConfig, channel_name};
use crate::denied::{refused, refused_subscription};
use crate::envelope::{self, Origin, origin_hex};
use crate::gaps::GapTracker;
use crate::outbox::{Outbox, OutboxEntry, run_sender};
use crate::partition::Partitions;
use crate::publisher::PublishConn;
use crate::receiver::run_receiver;
use crate::registry::{Registry, RemoteQueue};
use crate::shared::{LinkState, Shared, supervise};
use crate::stats::{Counters, PubSubStats, WarnKind, WarnLimiter, add, limited_warn};
use crate::subconn::SubConn;
use crate::subscriber::{PubSubSubscriber, Registration};

/// Publishes of one topic are serialized on one of these stripes, so the
/// order of the sequence numbers (taken from the local hub) is the order
/// frames enter the outbox.
const STRIPES: usize = 64;

const ADAPTER: &str = "redis-pubsub";

/// The Redis Pub/Sub backplane transport. See the [crate docs](crate).
///
/// Open it with [`RedisPubSubTransport::connect`] (typed config) or
/// [`connect`](crate::connect) (URL). Dropping it stops its background
/// tasks and ends its subscribers; [`close`](Transport::close) first flushes
/// the outbox for up to `close_timeout`.
pub struct RedisPubSubTransport {
    shared: Arc<Shared>,
    local: MemoryTransport,
    stripes: Box<[tokio::sync::Mutex<()>]>,
    seq: AtomicU64,
    closed: AtomicBool,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The connection `health()` asks `ROLE` on, opened on first use and
    /// dropped after a failure (one at a time: the lock bounds it).
    role_conn: tokio::sync::Mutex<Option<switchyard_redis::redis::aio::MultiplexedConnection>>,
    /// On a cluster: the connection `health()` checks the masters and
    /// `cluster_state` on, opened on first use, dropped after a failure.
    cluster_conn: tokio::sync::Mutex<Option<switchyard_redis::SharedConnection>>,
}

impl fmt::Debug for RedisPubSubTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPubSubTransport")
            .field("redis", &self.shared.config.redis.addr())
            .field("namespace", &self.shared.config.redis.namespace)
            .field("instance_id", &self.shared.origin_hex)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl RedisPubSubTransport {
    /// Connects to Redis: opens the subscribing connection and the
    /// publishing connection side by side, each ending with a real round
    /// trip (`PING`, after `AUTH` and `SELECT`), all within
    /// `connect_timeout`, and starts the receiving and sending loops.
    ///
    /// Start-up is strict. It fails, naming the address and the cause, when
    /// nothing listens (`could not connect to redis at 127.0.0.1:6379 within
    /// 2s: connection refused`), when the port accepts but nothing answers
    /// in time (a frozen or overloaded Redis), when the peer closes the
    /// connection, when it does not answer like Redis (an HTTP server, say),
    /// and when Redis refuses: a missing password (`NOAUTH`), wrong
    /// credentials (`WRONGPASS`) or a user without the right (`NOPERM`).
    /// Those three are [`Error::Backend`] (not transient) with a hint what
    /// to fix; the others are transient. Later outages only degrade the
    /// transport.
    ///
    /// Needs a Tokio runtime (with the timer enabled).
    pub async fn connect(config: PubSubConfig) -> Result<Self> {
        config.validate()?;
        let client = RedisClient::new(config.redis.clone())?;
        // Strict start-up: both sides must connect (and authenticate); with
        // `connect_retry` (off by default) they are tried again while Redis
        // is not reachable yet.
        let (pubsub, partitions) = if client.is_cluster() {
            switchyard_redis::connect_with_retry(&config.redis, "redis-pubsub", || {
                cluster::connect(&client)
            })
            .await?;
            let parts = Partitions::new(&config.redis.namespace, config.partitions);
            (None, Some(Arc::new(parts)))
        } else {
            // The publishing side must connect (and authenticate) too; the
            // sender opens its own connection from here on.
            let (pubsub, publisher) =
                switchyard_redis::connect_with_retry(&config.redis, "redis-pubsub", || async {
                    tokio::try_join!(SubConn::open(&client), PublishConn::open(&client))
                })
                .await?;
            drop(publisher);
            (Some(pubsub), None)
        };
        let epoch = next_epoch();
        let origin = Origin {
            id: config.instance_id.unwrap_or_else(rand::random),
            epoch,
        };
        // The subscribing connection is up (and holds nothing yet): the
        // receiving loop takes it over.
        let (link, _) = watch::channel(LinkState::up());
        let shared = Arc::new(Shared {
            origin,
            origin_hex: origin_hex(origin.id),
            registry: Arc::new(Registry::new(&config.redis.namespace, partitions.clone())),
            outbox: Outbox::new(config.outbox_capacity, config.outbox_bytes),
            tracker: Mutex::new(GapTracker::new(config.gap_tracker_capacity)),
            counters: Counters::default(),
            warn: WarnLimiter::new(config.warn_interval),
            link,
            probe: Notify::new(),
            rx_bursts: AtomicU64::new(0),
            refusals: Mutex::new(VecDeque::new()),
            denied: switchyard_redis::denied::Denials::new(),
            last_failure: Mutex::new(None),
            initial: Mutex::new(pubsub),
            partitions,
            client,
            config,
        });
        let cancel = CancellationToken::new();
        let receiving = if shared.client.is_cluster() {
            supervise(
                "receiving",
                shared.clone(),
                cancel.clone(),
                run_cluster_receiver,
            )
        } else {
            supervise("receiving", shared.clone(), cancel.clone(), run_receiver)
        };
        let tasks = vec![
            receiving,
            supervise("sending", shared.clone(), cancel.clone(), run_sender),
        ];
        tracing::debug!(
            redis = %shared.config.redis.addr(),
            namespace = %shared.config.redis.namespace,
            instance_id = %shared.origin_hex,
            "redis pubsub: connected"
        );
        Ok(RedisPubSubTransport {
            local: MemoryTransport::with_config(MemoryConfig::default().with_retention(1)),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            tasks: Mutex::new(tasks),
            shared,
            cancel,
            role_conn: tokio::sync::Mutex::new(None),
            cluster_conn: tokio::sync::Mutex::new(None),
        })
    }

    /// This transport's origin id as 16 hex digits: the `sy-origin` header
    /// of its messages, and the first part of the `origin` of the
    /// `Error::Lost` items other replicas report about it.
    pub fn instance_id(&self) -> &str {
        &self.shared.origin_hex
    }

    /// The settings.
    pub fn config(&self) -> &PubSubConfig {
        &self.shared.config
    }

    /// All counters of the backplane (outbox, reconnects, malformed frames,
    /// self-echoes, gaps, ...).
    pub fn pubsub_stats(&self) -> PubSubStats {
        self.shared.counters.snapshot(self.shared.outbox.len())
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn stripe(&self, topic: &str) -> &tokio::sync::Mutex<()> {
        let mut h = DefaultHasher::new();
        topic.hash(&mut h);
        &self.stripes[(h.finish() as usize) % self.stripes.len()]
    }

    async fn publish_one(&self, mut message: Message) -> Result<MessageId> {
        self.check_open()?;
        let shared = &self.shared;
        let mut frame = envelope::encode(shared.origin, &message)?;
        let channel = match &shared.partitions {
            // On a cluster: the sharded channel of the topic's partition.
            Some(p) => p.channel_of(message.topic.as_str()).to_owned(),
            None => channel_name(&shared.config.redis.namespace, message.topic.as_str()),
        };
        message
            .headers
            .insert(header::ORIGIN, shared.origin_hex.clone());
        let _order = self.stripe(message.topic.as_str()).lock().await;
        // Local subscribers first; the hub's per-topic number is the topic
        // sequence number other replicas check for gaps.
        // Checked against LIMITS by `encode`; the local hub must not count
        // the `sy-origin` header added here. Never waits: every local
        // subscriber is a never-blocking one (see `subscribe`), so a stuck
        // subscriber cannot hold this stripe, the outbox or other replicas.
        let id = self.local.publish_prechecked(message).await?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        envelope::set_seqs(&mut frame, seq, id.seq);
        add(&shared.counters.publishes, 1);
        let entry = OutboxEntry {
            channel,
            frame: frame.freeze(),
            enqueued: Instant::now(),
        };
        if !shared.outbox.push(entry, shared.config.outbox_wait).await {
            add(&shared.counters.outbox_full, 1);
            limited_warn!(
                shared.warn,
                WarnKind::OutboxDrop,
                capacity = shared.config.outbox_capacity,
                "redis pubsub: outbox full; message delivered locally but dropped for redis (other replicas will see a gap)"
            );
        }
        Ok(id)
    }

    fn check_subscription(subscription: &Subscription) -> Result<()> {
        subscription.validate()?;
        if let Mode::Group { group, .. } = subscription.mode() {
            return Err(Error::Unsupported {
                adapter: ADAPTER,
                what: format!(
                    "consumer groups (group {group:?}): the Pub/Sub backplane fans every message out to every subscriber; use redis+streams:// for groups"
                ),
            });
        }
        match subscription.start_at() {
            Start::Latest => Ok(()),
            other => Err(Error::Unsupported {
                adapter: ADAPTER,
                what: format!(
                    "Start::{other:?}: Redis Pub/Sub keeps no history, subscriptions start at Latest; use redis+streams:// for replay"
                ),
            }),
        }
    }

    fn shut_down(&self) {
        self.cancel.cancel();
        self.shared.registry.close_all();
        self.shared.link.send_modify(|s| s.connected = false);
    }
}

impl RedisPubSubTransport {
    /// The role of the server: a replica is `Degraded` ("connected to a
    /// replica (read-only)": its PUBLISHes reach only its own subscribers,
    /// not those of the primary and the other replicas). Asked on a
    /// connection of its own (a subscribing connection cannot send `ROLE`),
    /// kept between calls and dropped after a failure.
    async fn role_health(&self) -> Health {
        let cfg = &self.shared.config;
        let timeout = cfg.probe_timeout;
        let mut slot = self.role_conn.lock().await;
        if slot.is_none() {
            match self.shared.client.dedicated(Some(timeout)).await {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    return Health::Degraded(format!(
                        "could not open a connection to ask redis its role: {e}"
                    ));
                }
            }
        }
        let Some(conn) = slot.as_mut() else {
            return Health::Ok;
        };
        let health = switchyard_redis::role_health(conn, &cfg.redis.addr(), timeout).await;
        if !matches!(health, Health::Ok) {
            *slot = None;
        }
        match health {
            Health::Down(why) => Health::Degraded(why),
            other => other,
        }
    }
}

impl Drop for RedisPubSubTransport {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.shut_down();
    }
}

/// What the backplane can do: fan-out across processes, patterns, per-topic
/// order (per origin) and gap signals; no persistence, replay, groups,
/// acknowledgements or dead letters; at-most-once; `Overflow::Block` never
/// holds a publisher back (`lossy_block`: a full subscriber gets a gap
/// signal instead).
pub fn capabilities() -> Capabilities {
    let mut c = Capabilities::default();
    c.persistent = false;
    c.replay = false;
    c.consumer_groups = false;
    c.ack_redelivery = false;
    c.dead_letters = false;
    c.per_topic_ordering = true;
    c.patterns = true;
    c.cross_process = true;
    c.at_least_once = false;
    c.gap_signals = true;
    c.lossy_block = true;
    c.limits = envelope::LIMITS;
    c
}

#[async_trait]
impl Transport for RedisPubSubTransport {
    fn name(&self) -> &'static str {
        ADAPTER
    }

    /// This replica's subscribers whose filter matches `topic`, and the
    /// replicas subscribed to its channel (`PUBSUB NUMSUB`; on a cluster
    /// `SHARDNUMSUB` of its partition). Pattern subscriptions of other
    /// replicas are not in `remote` (Redis counts them per pattern).
    async fn subscribers(&self, topic: &Topic) -> Result<SubscriberCounts> {
        let local = self.shared.registry.count_matching(topic) as u64;
        let remote = crate::presence::remote_count(&self.shared, topic).await?;
        Ok(SubscriberCounts::new(local, Some(remote)))
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    /// Delivers `message` to this transport's local subscribers, enqueues it
    /// for Redis and returns its id. It does not wait for Redis: a message
    /// that cannot reach Redis in time is dropped and counted, and other
    /// replicas receive an `Error::Lost` for it. Nor does it wait for a
    /// local subscriber: one whose buffer is full (under `Overflow::Block`
    /// too) misses the message, counted in its `stats().dropped`, and under
    /// `Block` gets an `Error::Lost` in its place.
    async fn publish(&self, message: Message) -> Result<MessageId> {
        self.publish_one(message).await
    }

    /// Checks every message against [`LIMITS`](crate::LIMITS) first: one
    /// over a limit fails the batch and none of it is published.
    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.check_open()?;
        envelope::LIMITS.check_batch(&messages)?;
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            ids.push(self.publish_one(m).await?);
        }
        Ok(ids)
    }

    /// Subscribes locally and on Redis; returns once Redis confirmed the
    /// channel or pattern, so a message published anywhere afterwards is
    /// not missed.
    ///
    /// Never returns `Ok` without that confirmation. When Redis refuses the
    /// subscription (`NOPERM`: the ACL user may not use that channel) it
    /// fails with [`Error::Backend`]; when Redis does not confirm within
    /// `connect_timeout + response_timeout` (Redis away, frozen, or the
    /// subscribing connection being replaced) it fails with
    /// [`Error::Timeout`], which is transient: retry later. Either way
    /// nothing is left subscribed, locally or on Redis.
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        self.check_open()?;
        Self::check_subscription(&subscription)?;
        let shared = &self.shared;
        // Local publishes never wait for a local subscriber: a full `Block`
        // one gets a gap signal (origin `{instance id}/{topic}`) in place of
        // what it had no room for, like for messages of other replicas.
        let local = self
            .local
            .subscribe_never_blocking(&subscription, &shared.origin_hex)?;
        let remote = Arc::new(RemoteQueue::new(
            subscription.buffer_size(),
            subscription.overflow_policy(),
        ));
        let filter = subscription.filter().clone();
        let mut link = shared.link.subscribe();
        let seen_refusals = link.borrow_and_update().refusals;
        let (id, version) = shared.registry.register(&filter, remote.clone())?;
        let registration = Registration {
            registry: shared.registry.clone(),
            id,
            filter,
        };
        let names = shared.registry.names(&registration.filter);
        let cfg = &shared.config;
        let bound = cfg.redis.connect_timeout + cfg.redis.response_timeout;
        let deadline = tokio::time::Instant::now() + bound;
        let mut refusals = seen_refusals;
        loop {
            let waited = tokio::select! {
                () = self.cancel.cancelled() => return Err(Error::Closed),
                w = tokio::time::timeout_at(
                    deadline,
                    link.wait_for(|s| s.refusals > refusals || s.synced >= version),
                ) => w,
            };
            let state = match waited {
                Ok(Ok(state)) => *state,
                // The sender lives as long as the transport.
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => {
                    self.check_open()?;
                    let why = shared
                        .last_failure
                        .lock()
                        .clone()
                        .map(|f| format!(" (last failure: {f})"))
                        .unwrap_or_default();
                    return Err(Error::Timeout {
                        operation: format!(
                            "confirming the subscription to {} by {}{why}; nothing was subscribed, retry later",
                            subscription.filter(),
                            shared.describe()
                        ),
                        after: bound,
                    });
                }
            };
            if let Some(reply) = refused(shared, refusals, &names) {
                return Err(refused_subscription(
                    shared,
                    subscription.filter(),
                    &names,
                    &reply,
                ));
            }
            refusals = state.refusals;
            if state.synced >= version {
                self.check_open()?;
                return Ok(Box::new(PubSubSubscriber::new(local, remote, registration)));
            }
        }
    }

    /// Probes the server: asks the receiving loop for a `PING` on the
    /// subscribing connection and waits for the answer, at most
    /// `probe_timeout` (traffic arriving meanwhile counts as an answer: the
    /// reply may queue behind it). `Ok` when it came, Redis confirmed every
    /// subscription and the last publish to Redis succeeded; `Degraded`
    /// (local delivery only, or publishing failing) otherwise, with the
    /// reason; `Down` once closed.
    async fn health(&self) -> Health {
        if self.closed.load(Ordering::Acquire) {
            return Health::Down("closed".into());
        }
        let shared = &self.shared;
        if shared.client.is_cluster() {
            let health = cluster::health(shared, &self.cluster_conn).await;
            if self.closed.load(Ordering::Acquire) {
                return Health::Down("closed".into());
            }
            return health;
        }
        let cfg = &shared.config;
        let addr = cfg.redis.addr();
        let unreachable = || {
            let why = shared
                .last_failure
                .lock()
                .clone()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            Health::Degraded(format!(
                "redis at {addr} is unreachable{why}: delivering locally only; {} channel(s)/pattern(s) will be subscribed again on reconnect; {} message(s) wait in the outbox",
                shared.registry.subscription_count(),
                shared.outbox.len()
            ))
        };
        if let Some(reason) = shared.denied.health_reason() {
            return Health::Degraded(format!("{reason} (redis at {addr})"));
        }
        let mut link = shared.link.subscribe();
        let before = *link.borrow_and_update();
        if !before.connected {
            return unreachable();
        }
        let bursts = shared.rx_bursts.load(Ordering::Relaxed);
        shared.probe.notify_one();
        let answered = tokio::time::timeout(
            cfg.probe_timeout,
            link.wait_for(|s| s.pongs > before.pongs || !s.connected),
        )
        .await;
        // The watch guard must not live across the awaits below.
        let answered = answered.map(|r| r.map(|s| s.connected));
        match answered {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return unreachable(),
            Ok(Err(_)) => return Health::Down("closed".into()),
            Err(_) if shared.rx_bursts.load(Ordering::Relaxed) != bursts => {}
            Err(_) => {
                return Health::Degraded(format!(
                    "redis at {addr} did not answer a PING on the subscribing connection within {:?}: delivering locally only until it does",
                    cfg.probe_timeout
                ));
            }
        }
        if self.closed.load(Ordering::Acquire) {
            return Health::Down("closed".into());
        }
        if shared.link.borrow().synced < shared.registry.version() {
            return Health::Degraded(format!(
                "redis at {addr} has not confirmed every subscription yet"
            ));
        }
        if !shared.outbox.is_healthy() {
            return Health::Degraded(format!(
                "publishing to redis at {addr} is failing: delivering locally; {} message(s) wait in the outbox",
                shared.outbox.len()
            ));
        }
        self.role_health().await
    }

    /// The common counters plus every backplane counter of
    /// [`pubsub_stats`](Self::pubsub_stats) under `pubsub.*` names in
    /// `extra` (and `pubsub.outbox_len` in `extra_gauges`).
    fn stats(&self) -> TransportStats {
        self.pubsub_stats().to_transport_stats()
    }

    /// Refuses new work, flushes the outbox for up to `close_timeout`,
    /// then stops the loops and ends every subscriber.
    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let drained = self
            .shared
            .outbox
            .drain(self.shared.config.close_timeout)
            .await;
        if !drained {
            let left = self.shared.outbox.len();
            tracing::warn!(
                left,
                "redis pubsub: closing with messages not yet sent to redis"
            );
        }
        self.shut_down();
        let _ = self.local.close().await;
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        Ok(())
    }
}

/// Opens a backplane transport from a `redis+pubsub://` or
/// `rediss+pubsub://` URL; used by the `switchyard` facade's scheme registry.
pub async fn connect(url: &str) -> Result<Arc<dyn Transport>> {
    let config = PubSubConfig::from_url(url)?;
    Ok(Arc::new(RedisPubSubTransport::connect(config).await?))
}

/// The boot epoch of a new transport: Unix milliseconds now, but always
/// above the epoch of any transport started before in this process. Two
/// transports of one origin id started within the same millisecond (a
/// quick close and reconnect) would otherwise share an epoch, and the
/// second one's frames would be taken for the first one's (duplicates or a
/// false gap).
fn next_epoch() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(
            last,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before: the epoch was the wall clock's milliseconds alone, so a
    /// transport closed and reopened with the same instance id within one
    /// millisecond got the same epoch (`accounting.rs`'s older-epoch test
    /// failed in CI with "the second run's epoch is not newer").
    #[test]
    fn epochs_increase_within_a_process() {
        let epochs: Vec<u64> = (0..1000).map(|_| next_epoch()).collect();
        assert!(epochs.windows(2).all(|w| w[1] > w[0]));
    }
}
