//! The `Transport` and `Subscriber` traits every adapter implements.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;

use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::message::{Message, MessageId};
use crate::publish_ack::PublishAck;
use crate::subscription::Subscription;
use crate::topic::TopicFilter;

/// What an adapter can do; the conformance suite reads it to decide which
/// cases apply.
///
/// The struct is `#[non_exhaustive]` (a new flag is not a breaking change),
/// so a struct literal does not compile outside this crate. Adapters build
/// it with [`Capabilities::new`] (every flag off, [`Limits::DEFAULT`]) and
/// the `with_*` methods, which are `const`:
///
/// ```
/// use switchyard_core::{Capabilities, Limits};
///
/// const CAPS: Capabilities = Capabilities::new()
///     .with_persistent(true)
///     .with_replay(true)
///     .with_consumer_groups(true)
///     .with_ack_redelivery(true)
///     .with_per_topic_ordering(true)
///     .with_at_least_once(true);
///
/// assert!(CAPS.persistent && CAPS.consumer_groups);
/// assert!(!CAPS.patterns);
/// assert_eq!(CAPS.limits, Limits::DEFAULT);
/// assert_eq!(Capabilities::new(), Capabilities::default());
/// ```
///
/// The fields are public, so `let mut c = Capabilities::new(); c.patterns =
/// true;` works too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// Messages survive a restart of the backend.
    pub persistent: bool,
    /// Subscriptions can start at `Earliest` or `After(id)`.
    pub replay: bool,
    /// `Mode::Group` is supported.
    pub consumer_groups: bool,
    /// nack and unsettled deliveries are redelivered.
    pub ack_redelivery: bool,
    /// Messages of one topic reach a subscriber in publish order.
    pub per_topic_ordering: bool,
    /// Exhausted or rejected messages move to `{topic}:dlq`.
    pub dead_letters: bool,
    /// Wildcard pattern subscriptions.
    pub patterns: bool,
    /// Two transports in different processes reach each other.
    pub cross_process: bool,
    /// Delivery may repeat a message (at-least-once); when false, delivery is
    /// at-most-once and a message is never delivered twice.
    pub at_least_once: bool,
    /// Losses on the way are reported as `Error::Lost` items (gap signals).
    pub gap_signals: bool,
    /// [`Overflow::Block`](crate::Overflow::Block) never holds a producer
    /// back: a subscriber whose buffer is full misses the new message
    /// (counted in its `stats().dropped`) and gets an `Error::Lost` gap
    /// signal in its place. False (the default) where `Block` is lossless
    /// (the producer side waits for room). True for the Redis Pub/Sub
    /// backplane, whose publishers must never stall on a slow subscriber.
    pub lossy_block: bool,
    /// The message limits `publish` enforces: [`Limits::DEFAULT`], or a
    /// lower payload bound where the backend needs one.
    pub limits: Limits,
}

impl Capabilities {
    /// Every flag off and [`Limits::DEFAULT`] (the same as `default()`,
    /// usable in a `const`).
    pub const fn new() -> Self {
        Capabilities {
            persistent: false,
            replay: false,
            consumer_groups: false,
            ack_redelivery: false,
            per_topic_ordering: false,
            dead_letters: false,
            patterns: false,
            cross_process: false,
            at_least_once: false,
            gap_signals: false,
            lossy_block: false,
            limits: Limits::DEFAULT,
        }
    }

    /// Sets [`persistent`](Capabilities::persistent): messages survive a restart of the backend.
    pub const fn with_persistent(mut self, on: bool) -> Self {
        self.persistent = on;
        self
    }

    /// Sets [`replay`](Capabilities::replay): subscriptions can start at `Earliest` or `After(id)`.
    pub const fn with_replay(mut self, on: bool) -> Self {
        self.replay = on;
        self
    }

    /// Sets [`consumer_groups`](Capabilities::consumer_groups): `Mode::Group` is supported.
    pub const fn with_consumer_groups(mut self, on: bool) -> Self {
        self.consumer_groups = on;
        self
    }

    /// Sets [`ack_redelivery`](Capabilities::ack_redelivery): nack and unsettled deliveries are redelivered.
    pub const fn with_ack_redelivery(mut self, on: bool) -> Self {
        self.ack_redelivery = on;
        self
    }

    /// Sets [`per_topic_ordering`](Capabilities::per_topic_ordering): messages of one topic reach a subscriber in publish order.
    pub const fn with_per_topic_ordering(mut self, on: bool) -> Self {
        self.per_topic_ordering = on;
        self
    }

    /// Sets [`dead_letters`](Capabilities::dead_letters): exhausted or rejected messages move to `{topic}:dlq`.
    pub const fn with_dead_letters(mut self, on: bool) -> Self {
        self.dead_letters = on;
        self
    }

    /// Sets [`patterns`](Capabilities::patterns): wildcard pattern subscriptions.
    pub const fn with_patterns(mut self, on: bool) -> Self {
        self.patterns = on;
        self
    }

    /// Sets [`cross_process`](Capabilities::cross_process): two transports in different processes reach each other.
    pub const fn with_cross_process(mut self, on: bool) -> Self {
        self.cross_process = on;
        self
    }

    /// Sets [`lossy_block`](Capabilities::lossy_block): `Overflow::Block` never holds a producer back; a full subscriber gets a gap signal instead.
    pub const fn with_lossy_block(mut self, on: bool) -> Self {
        self.lossy_block = on;
        self
    }

    /// Sets [`at_least_once`](Capabilities::at_least_once): delivery may repeat a message (at-least-once).
    pub const fn with_at_least_once(mut self, on: bool) -> Self {
        self.at_least_once = on;
        self
    }

    /// Sets [`gap_signals`](Capabilities::gap_signals): losses on the way are reported as `Error::Lost` items.
    pub const fn with_gap_signals(mut self, on: bool) -> Self {
        self.gap_signals = on;
        self
    }

    /// Sets [`limits`](Capabilities::limits), the message limits `publish`
    /// enforces.
    pub const fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// The health of a transport.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Everything works.
    Ok,
    /// Working with reduced guarantees (for example local-only delivery
    /// while Redis is away); the reason says what is missing.
    Degraded(String),
    /// Not working; the reason says why.
    Down(String),
}

impl Health {
    /// Whether the transport is fully healthy.
    pub fn is_ok(&self) -> bool {
        matches!(self, Health::Ok)
    }
}

/// Counters of one subscriber. All counts since the subscriber was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberStats {
    /// Deliveries handed to the application.
    pub received: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Deliveries negatively acknowledged (including dead-letter requests).
    pub nacked: u64,
    /// Deliveries with `attempt > 1`.
    pub redelivered: u64,
    /// Messages moved to a dead-letter topic by this subscriber.
    pub dead_lettered: u64,
    /// Messages dropped by the overflow policy.
    pub dropped: u64,
    /// Payloads that failed to decode (typed layer).
    pub decode_errors: u64,
    /// Malformed entries skipped or dead-lettered by the adapter.
    pub malformed: u64,
    /// Messages reported lost by gap detection.
    pub lost: u64,
    /// Pending messages whose data was trimmed by retention before delivery.
    pub lost_to_retention: u64,
    /// Deliveries ready to hand out now, without waiting: what the local
    /// buffer holds (a memory group member has no local buffer: what its
    /// group could hand out now). A snapshot, not a counter.
    pub buffered: u64,
    /// The local buffer's capacity ([`Subscription::buffer`](crate::Subscription::buffer));
    /// `buffered / capacity` is its fill ratio. 0 when the subscriber has
    /// no local buffer of its own (a memory group member).
    pub capacity: u64,
}

impl SubscriberStats {
    /// Every counter by name, in a fixed order: `received`, `acked`,
    /// `nacked`, `redelivered`, `dead_lettered`, `dropped`,
    /// `decode_errors`, `malformed`, `lost`, `lost_to_retention`. For
    /// printing and for metrics ([`gauges`](Self::gauges) has the
    /// snapshots).
    pub fn counters(&self) -> [(&'static str, u64); 10] {
        [
            ("received", self.received),
            ("acked", self.acked),
            ("nacked", self.nacked),
            ("redelivered", self.redelivered),
            ("dead_lettered", self.dead_lettered),
            ("dropped", self.dropped),
            ("decode_errors", self.decode_errors),
            ("malformed", self.malformed),
            ("lost", self.lost),
            ("lost_to_retention", self.lost_to_retention),
        ]
    }

    /// The snapshots by name: `buffered`, `capacity`.
    pub fn gauges(&self) -> [(&'static str, u64); 2] {
        [("buffered", self.buffered), ("capacity", self.capacity)]
    }

    /// `buffered / capacity` (0.0 without a local buffer).
    pub fn fill_ratio(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.buffered as f64 / self.capacity as f64
        }
    }
}

/// What [`fetch`](trait.Subscriber.html#method.fetch) returns.
#[derive(Debug)]
#[non_exhaustive]
pub struct Fetched {
    /// Up to `max` items, in order; empty when nothing arrived in time.
    pub items: Vec<Result<Delivery>>,
    /// Whether more deliveries were ready when the fetch returned (the
    /// next `fetch` returns at once).
    pub more: bool,
    /// Whether the subscriber is closed (no item will ever come again).
    pub closed: bool,
}

/// Counters of a transport's publishing side and connection, and every
/// adapter-specific counter, reachable through `Arc<dyn Transport>`
/// without downcasting.
///
/// The named fields are common to all adapters (0 where an adapter has no
/// such event). What only one adapter counts is in [`extra`](Self::extra)
/// (counters) and [`extra_gauges`](Self::extra_gauges) (snapshots), keyed
/// by a documented name prefixed with the adapter (`pubsub.gaps`,
/// `pubsub.self_echoes`, ...; each adapter's guide lists its names). A
/// name, once documented, keeps its meaning; new names may appear.
///
/// ```
/// # async fn show(transport: std::sync::Arc<dyn switchyard_core::Transport>) {
/// let stats = transport.stats();
/// for (name, value) in stats.counters() {
///     // published, publish_errors, ..., then pubsub.gaps, ... on a backplane
/// #   let _ = (name, value);
/// }
/// let gaps = stats.extra.get("pubsub.gaps").copied().unwrap_or(0);
/// # let _ = gaps;
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// Messages accepted by the backend.
    pub published: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Messages dropped before reaching the backend (outbox full or expired).
    pub dropped: u64,
    /// Reconnections after a lost connection.
    pub reconnects: u64,
    /// Publishes refused by the open circuit breaker.
    pub breaker_rejections: u64,
    /// Whether the circuit breaker is open now.
    pub breaker_open: bool,
    /// The circuit breaker's state and counters, for adapters that have one
    /// (redis-streams guards its publishes with one); `None` otherwise.
    pub breaker: Option<crate::BreakerStats>,
    /// Adapter-specific counters (monotonic, since the transport started),
    /// by documented name (`pubsub.self_echoes`, `pubsub.gaps`,
    /// `pubsub.malformed`, ...). Empty for adapters without any.
    pub extra: BTreeMap<&'static str, u64>,
    /// Adapter-specific snapshots (values that go up and down, such as
    /// `pubsub.outbox_len`), by documented name.
    pub extra_gauges: BTreeMap<&'static str, u64>,
}

impl TransportStats {
    /// Every counter by name: the common ones (`published`,
    /// `publish_errors`, `dropped`, `reconnects`, `breaker_rejections`),
    /// then the adapter's [`extra`](Self::extra) ones sorted by name.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut all = vec![
            ("published", self.published),
            ("publish_errors", self.publish_errors),
            ("dropped", self.dropped),
            ("reconnects", self.reconnects),
            ("breaker_rejections", self.breaker_rejections),
        ];
        all.extend(self.extra.iter().map(|(k, v)| (*k, *v)));
        all
    }

    /// Every snapshot by name: `breaker_open` (1 or 0), then the adapter's
    /// [`extra_gauges`](Self::extra_gauges) sorted by name.
    pub fn gauges(&self) -> Vec<(&'static str, u64)> {
        let mut all = vec![("breaker_open", u64::from(self.breaker_open))];
        all.extend(self.extra_gauges.iter().map(|(k, v)| (*k, *v)));
        all
    }
}

/// A backend: publishes messages and creates subscribers.
///
/// Implementations are cheap to share behind an `Arc`. After
/// [`close`](Transport::close), `publish` fails with `Error::Closed` and the
/// transport's subscribers end.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// A short name of the adapter (`memory`, `redis-streams`, `redis-pubsub`).
    fn name(&self) -> &'static str;

    /// What this adapter can do.
    fn capabilities(&self) -> Capabilities;

    /// Publishes one message; returns its id once the backend accepted it.
    /// A message over [`Capabilities::limits`] is refused with
    /// `Error::InvalidMessage` before anything of it is sent.
    async fn publish(&self, message: Message) -> Result<MessageId>;

    /// Publishes several messages in order, returning one id per message.
    /// Every message is checked against [`Capabilities::limits`] first: one
    /// over a limit fails the whole batch with `Error::InvalidMessage` and
    /// nothing of it is sent.
    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>>;

    /// Two-stage publish: queues one message and returns as soon as it is
    /// queued, with a [`PublishAck`] that resolves to the backend's
    /// acknowledgement (its id) or error. `publish` is this followed by
    /// awaiting the ack; a single task that publishes many messages queues
    /// them all and awaits the acks afterwards, so the adapter can put them
    /// on the wire together instead of one round trip each.
    ///
    /// - Back-pressure: when the adapter's queue is full, this waits for
    ///   room (it does not fail).
    /// - Errors come from one of the two stages, never lost: this call
    ///   fails when the message was not queued (over
    ///   [`Capabilities::limits`], the transport closed, a circuit breaker
    ///   open); everything that happens to a queued message (the backend
    ///   refusing it, the connection lost, the transport closed before it
    ///   was written) resolves the ack.
    /// - Dropping the ack does not cancel the publish.
    /// - Order: acks of one task's messages to one topic resolve to ids in
    ///   the order the messages were queued.
    ///
    /// The default implementation performs the whole [`publish`](Transport::publish)
    /// here and returns an ack that is already resolved (what the memory
    /// adapter and the Pub/Sub backplane do: their `publish` does not wait
    /// for a network round trip). redis-streams queues on its writer.
    ///
    /// ```
    /// # async fn demo(transport: std::sync::Arc<dyn switchyard_core::Transport>) -> switchyard_core::Result<()> {
    /// use switchyard_core::{Message, Topic};
    ///
    /// let topic = Topic::new("readings")?;
    /// let mut acks = Vec::new();
    /// for n in 0..100u32 {
    ///     acks.push(transport.publish_queued(Message::new(topic.clone(), n.to_string())).await?);
    /// }
    /// for ack in acks {
    ///     let _id = ack.await?;
    /// }
    /// # Ok(()) }
    /// ```
    async fn publish_queued(&self, message: Message) -> Result<PublishAck> {
        let id = self.publish(message).await?;
        Ok(PublishAck::ready(Ok(id)))
    }

    /// Starts a subscription. When this returns, messages published
    /// afterwards are not missed (for `Start::Latest` too).
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>>;

    /// The topics of this transport's namespace that match `filter`, with
    /// their length, ids and consumer groups, sorted by topic. A topic's
    /// dead-letter topic (`t:dlq`) is listed when `t` matches (wildcards
    /// never match dead-letter names themselves). Adapters that keep no
    /// topics (the Pub/Sub backplane) return `Error::Unsupported`.
    async fn topics(&self, filter: &TopicFilter) -> Result<Vec<crate::TopicInfo>> {
        let _ = filter;
        Err(Error::Unsupported {
            adapter: self.name(),
            what: "listing topics (it keeps none)".into(),
        })
    }

    /// Who listens on `topic`: this transport's subscribers whose filter
    /// matches it and, across a backplane, the replicas subscribed to it
    /// (presence rooms, "is anyone listening?"). Adapters that cannot
    /// tell return `Error::Unsupported`.
    async fn subscribers(&self, topic: &crate::Topic) -> Result<crate::SubscriberCounts> {
        let _ = topic;
        Err(Error::Unsupported {
            adapter: self.name(),
            what: "counting subscribers (use topics() for consumer groups)".into(),
        })
    }

    /// Checks the backend within a bounded time.
    async fn health(&self) -> Health;

    /// Publishing-side counters.
    fn stats(&self) -> TransportStats {
        TransportStats::default()
    }

    /// Stops the transport: flushes what it can within a bounded time, then
    /// refuses new work and ends its subscribers.
    async fn close(&self) -> Result<()>;
}

/// A stream of deliveries. Also a [`futures::Stream`]; `recv` and
/// `recv_batch` are available on `dyn Subscriber` (and therefore on
/// `Box<dyn Subscriber>`) without imports.
///
/// An `Err` item is about one delivery or one gap (a malformed payload, a
/// lost range); the stream goes on after it. `None` means closed.
#[async_trait::async_trait]
pub trait Subscriber: Send + Unpin {
    /// Polls for the next delivery; `Ready(None)` once closed.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>>;

    /// Counters of this subscriber.
    fn stats(&self) -> SubscriberStats;

    /// Stops receiving; settlements already made are flushed within a
    /// bounded time. Unsettled group deliveries come back to the group.
    async fn close(self: Box<Self>) -> Result<()>;
}

impl dyn Subscriber {
    /// Waits for the next delivery; `None` once the subscriber is closed.
    pub fn recv(&mut self) -> Recv<'_> {
        Recv { sub: self }
    }

    /// A pull: up to `max` deliveries, waiting up to `wait` in all for the
    /// batch to fill (it returns as soon as `max` arrived), and whether more
    /// were ready when it returned ([`SubscriberStats::buffered`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use switchyard_core::{Subscriber, Fetched};
    /// # async fn work(sub: &mut Box<dyn Subscriber>) {
    /// loop {
    ///     let Fetched { items, more, closed, .. } = sub.fetch(250, Duration::from_millis(300)).await;
    ///     for item in items {
    ///         // handle and ack each delivery
    /// #       let _ = item;
    ///     }
    ///     if closed {
    ///         break;
    ///     }
    /// #   let _ = more;
    /// }
    /// # }
    /// ```
    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Fetched {
        let mut items = Vec::with_capacity(max.min(1024));
        let mut closed = false;
        let deadline = tokio::time::Instant::now() + wait;
        while items.len() < max {
            match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let more = !closed && self.stats().buffered > 0;
        Fetched {
            items,
            more,
            closed,
        }
    }

    /// Waits up to `deadline` for the first delivery, then takes whatever
    /// else is ready without waiting, up to `max` items in all. Returns an
    /// empty vector when nothing arrived in time or the subscriber is closed.
    /// ([`fetch`](trait.Subscriber.html#method.fetch) waits for the batch to fill.)
    pub async fn recv_batch(&mut self, max: usize, deadline: Duration) -> Vec<Result<Delivery>> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        match tokio::time::timeout(deadline, self.recv()).await {
            Ok(Some(item)) => out.push(item),
            Ok(None) | Err(_) => return out,
        }
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while out.len() < max {
            match self.poll_recv(&mut cx) {
                Poll::Ready(Some(item)) => out.push(item),
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        out
    }
}

/// Future of [`recv`](trait.Subscriber.html#method.recv).
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a> {
    sub: &'a mut dyn Subscriber,
}

impl Future for Recv<'_> {
    type Output = Option<Result<Delivery>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.sub.poll_recv(cx)
    }
}

impl Stream for dyn Subscriber {
    type Item = Result<Delivery>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}
