//! [`MemoryTransport`] and [`MemoryHub`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use switchyard_core::{
    Capabilities, Error, Health, Limits, Message, MessageId, Mode, Result, Start, Subscriber,
    SubscriberCounts, Subscription, Topic, TopicFilter, TopicInfo, Transport, TransportStats,
    async_trait,
};
use tokio::sync::Notify;

use crate::config::MemoryConfig;
use crate::fanout::{FanoutShared, FanoutSubscriber};
use crate::group::MemberShared;
use crate::hub::{Hub, Target};
use crate::member::MemberSubscriber;
use crate::publish::Blocked;

/// A handle to an in-process hub: the topics, retained messages, groups and
/// subscribers that every transport connected to it shares. Cheap to clone.
///
/// Two transports on the same hub see each other's messages, like two
/// processes on one broker. See the [crate docs](crate) for how an adapter
/// (the Redis Pub/Sub backplane) reuses a hub for its local fan-out.
#[derive(Clone)]
pub struct MemoryHub {
    pub(crate) inner: Arc<Hub>,
}

impl MemoryHub {
    /// A fresh private hub with the default configuration.
    pub fn new() -> Self {
        Self::with_config(MemoryConfig::default())
    }

    /// A fresh private hub.
    pub fn with_config(config: MemoryConfig) -> Self {
        MemoryHub {
            inner: Arc::new(Hub::new(config, None)),
        }
    }

    /// The process-wide hub called `name`: the same hub for every caller
    /// while any handle, transport or subscriber on it is alive.
    pub fn named(name: &str) -> Self {
        MemoryHub {
            inner: Hub::named(name, MemoryConfig::default()),
        }
    }

    /// The hub's configuration.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.config
    }

    /// The name of a named hub.
    pub fn name(&self) -> Option<&str> {
        self.inner.name()
    }

    /// Number of topics the hub has seen (published to or subscribed to).
    pub fn topic_count(&self) -> usize {
        self.inner.topic_count()
    }

    /// Whether both handles are the same hub.
    pub fn same_hub(&self, other: &MemoryHub) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A new transport on this hub (same as [`MemoryTransport::connect_to`]).
    pub fn transport(&self) -> MemoryTransport {
        MemoryTransport::connect_to(self)
    }
}

impl Default for MemoryHub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryHub")
            .field("name", &self.inner.name())
            .field("topics", &self.inner.topic_count())
            .field("config", &self.inner.config)
            .finish()
    }
}

enum SubRef {
    Fanout(Weak<FanoutShared>),
    Member(Weak<MemberShared>),
}

impl SubRef {
    fn is_alive(&self) -> bool {
        match self {
            SubRef::Fanout(w) => w.upgrade().is_some_and(|s| !s.is_closed()),
            SubRef::Member(w) => w.upgrade().is_some_and(|s| !s.is_closed()),
        }
    }

    fn shutdown(&self) {
        match self {
            SubRef::Fanout(w) => {
                if let Some(s) = w.upgrade() {
                    s.shutdown();
                }
            }
            SubRef::Member(w) => {
                if let Some(s) = w.upgrade() {
                    s.shutdown();
                }
            }
        }
    }
}

struct TransportShared {
    hub: Arc<Hub>,
    closed: AtomicBool,
    closing: Notify,
    subs: Mutex<Vec<SubRef>>,
    published: AtomicU64,
    publish_errors: AtomicU64,
}

impl TransportShared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.closing.notify_waiters();
        let subs = std::mem::take(&mut *self.subs.lock());
        for s in &subs {
            s.shutdown();
        }
        tracing::debug!(subscribers = subs.len(), "memory transport closed");
    }

    fn register(&self, sub: SubRef) {
        let mut subs = self.subs.lock();
        if subs.len() >= 16 && subs.len().is_power_of_two() {
            subs.retain(SubRef::is_alive);
        }
        subs.push(sub);
    }
}

/// Closes the transport when the last clone of a [`MemoryTransport`] is dropped.
struct Handle(Arc<TransportShared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// The in-process transport. Cheap to clone; all clones are one transport.
///
/// Dropping the last clone closes it, like [`close`](Transport::close): its
/// subscribers end and group messages they held go back to their groups.
/// The hub lives on for other transports on it.
#[derive(Clone)]
pub struct MemoryTransport {
    handle: Arc<Handle>,
}

impl MemoryTransport {
    /// A transport on a fresh private hub with the default configuration.
    pub fn new() -> Self {
        Self::connect_to(&MemoryHub::new())
    }

    /// A transport on a fresh private hub.
    pub fn with_config(config: MemoryConfig) -> Self {
        Self::connect_to(&MemoryHub::with_config(config))
    }

    /// A transport on the process-wide hub called `name`: every
    /// `MemoryTransport::named("x")` shares one hub while any of them (or
    /// any other handle on that hub) is alive, so two "replicas" in one
    /// process can talk.
    pub fn named(name: &str) -> Self {
        Self::connect_to(&MemoryHub::named(name))
    }

    /// Opens `memory://` (a fresh private hub) or `memory://NAME` (the
    /// named hub `NAME`). Query parameters configure a hub when it is
    /// created (an existing named hub keeps its configuration):
    ///
    /// - `retention`, `dead_letter_retention`: 0 to 100 000 000 messages
    ///   per topic, 0 meaning the largest ([`MemoryConfig::MAX_RETENTION`]);
    /// - `redelivery_tick_ms`: 1 to 60 000;
    /// - `retain=<filter>:<spec>`, repeatable (at most 256): per-topic
    ///   retention rules, see [`MemoryConfig::topic_retention`] and
    ///   [`switchyard_core::retention`]; values are percent-decoded (write
    ///   a `+` in a topic as `%2B`).
    ///
    /// ```
    /// use switchyard_memory::MemoryTransport;
    /// let a = MemoryTransport::from_url("memory://orders?retention=1000&retain=*/camera/rgb:maxlen=60")?;
    /// let b = MemoryTransport::from_url("memory://orders")?;
    /// assert!(a.hub().same_hub(&b.hub()));
    /// assert!(MemoryTransport::from_url("memory://a/b").is_err());
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = crate::url::parse(url)?;
        let hub = match parsed.name {
            Some(name) => MemoryHub {
                inner: Hub::named(&name, parsed.config),
            },
            None => MemoryHub::with_config(parsed.config),
        };
        Ok(Self::connect_to(&hub))
    }

    /// A handle to the hub this transport is on.
    pub fn hub(&self) -> MemoryHub {
        MemoryHub {
            inner: self.shared().hub.clone(),
        }
    }

    /// Publishes `message` like [`Transport::publish`] but without checking
    /// it against [`Limits`]. For an adapter layered on a hub (the Redis
    /// Pub/Sub backplane) that checked the message against its own limits
    /// before adding a reserved header of its own (`sy-origin`), which the
    /// limits do not count. Applications call [`Transport::publish`].
    pub async fn publish_prechecked(&self, message: Message) -> Result<MessageId> {
        self.refuse_if_closed()?;
        let shared = self.shared();
        let seq = match shared.hub.try_publish(message) {
            Ok(seq) => seq,
            Err(blocked) => Box::pin(self.wait_blocked(blocked)).await?,
        };
        shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(MessageId::from_seq(seq))
    }

    /// Subscribes like [`Transport::subscribe`], except that a fan-out
    /// subscriber with [`Overflow::Block`](switchyard_core::Overflow) never
    /// makes a publisher wait. For an adapter layered on a hub whose local
    /// publishers must not stall (the Redis Pub/Sub backplane: a stuck local
    /// subscriber would hold back every other replica); applications call
    /// [`Transport::subscribe`], where `Block` is lossless.
    ///
    /// When such a subscriber's buffer is full, a new message is dropped for
    /// it (the publisher and the other subscribers go on), counted in its
    /// `stats().dropped`, and reported in its place, in its stream, as
    /// `Err(Error::Lost { origin, from, to })` with `origin`
    /// `"{lost_origin}/{topic}"` and `from..=to` the dropped messages'
    /// sequence numbers on that topic (their ids are `0-from` to `0-to`).
    /// Consecutive drops of one topic widen one signal; at most the buffer
    /// size of signals wait at once, beyond that a drop is only counted.
    /// The messages of a signal are counted once, in `dropped` (not in
    /// `lost`). `DropOldest`, `DropNewest` and group members are not
    /// affected.
    pub fn subscribe_never_blocking(
        &self,
        subscription: &Subscription,
        lost_origin: &str,
    ) -> Result<Box<dyn Subscriber>> {
        self.subscribe_now(subscription, Some(lost_origin))
    }

    /// Another independent transport on `hub`, with its own closed state:
    /// what a second process on the same broker would be.
    pub fn connect_to(hub: &MemoryHub) -> Self {
        MemoryTransport {
            handle: Arc::new(Handle(Arc::new(TransportShared {
                hub: hub.inner.clone(),
                closed: AtomicBool::new(false),
                closing: Notify::new(),
                subs: Mutex::new(Vec::new()),
                published: AtomicU64::new(0),
                publish_errors: AtomicU64::new(0),
            }))),
        }
    }

    fn shared(&self) -> &TransportShared {
        &self.handle.0
    }

    fn refuse_if_closed(&self) -> Result<()> {
        if self.shared().is_closed() {
            self.shared().publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The slow path of a publish: waits for room, fails if the transport
    /// closes meanwhile.
    async fn wait_blocked(&self, blocked: Box<Blocked>) -> Result<u64> {
        let shared = self.shared();
        let closing = shared.closing.notified();
        self.refuse_if_closed()?;
        match shared.hub.publish_blocked(blocked, closing).await {
            Some(seq) => Ok(seq),
            None => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                Err(Error::Closed)
            }
        }
    }

    /// Subscribes; `gap_origin` makes a `Block` fan-out subscriber signal
    /// gaps instead of making publishers wait.
    fn subscribe_now(
        &self,
        subscription: &Subscription,
        gap_origin: Option<&str>,
    ) -> Result<Box<dyn Subscriber>> {
        let shared = self.shared();
        if shared.is_closed() {
            return Err(Error::Closed);
        }
        subscription.validate()?;
        let start = subscription.start_at();
        if let Start::After(id) = start
            && id.ms != 0
        {
            return Err(Error::InvalidConfig(format!(
                "Start::After({id}): memory message ids have the form 0-N"
            )));
        }
        let hub = &shared.hub;
        let (target, sub_ref) = match subscription.mode() {
            Mode::Fanout => {
                let mut f =
                    FanoutShared::new(subscription.buffer_size(), subscription.overflow_policy())
                        .with_watch(switchyard_core::BufferWatch::new(
                            subscription,
                            subscription.buffer_size(),
                            format!("memory fan-out {}", subscription.filter()),
                        ));
                if let Some(origin) = gap_origin {
                    f = f.with_gap_signals(origin);
                }
                let f = Arc::new(f);
                let r = SubRef::Fanout(Arc::downgrade(&f));
                (Target::Fanout(f, start), r)
            }
            Mode::Group { group, consumer } => {
                hub.ensure_ticker();
                let m = Arc::new(
                    MemberShared::new(
                        group,
                        consumer,
                        subscription.max_attempts_value(),
                        subscription.ack_timeout_value(),
                    )
                    .with_max_in_flight(subscription.max_in_flight_value()),
                );
                let r = SubRef::Member(Arc::downgrade(&m));
                (Target::Member(m, start), r)
            }
            other => {
                return Err(Error::Unsupported {
                    adapter: "memory",
                    what: format!("subscription mode {other:?}"),
                });
            }
        };
        let mut backlog = Vec::new();
        match subscription.filter() {
            TopicFilter::Pattern(p) => hub.attach_pattern(p, &target, &mut backlog),
            filter => match filter.topics() {
                Some(topics) => hub.attach_topics(topics, &target, &mut backlog),
                None => {
                    return Err(Error::Unsupported {
                        adapter: "memory",
                        what: format!("topic filter {filter}"),
                    });
                }
            },
        }
        shared.register(sub_ref);
        let sub: Box<dyn Subscriber> = match target {
            Target::Fanout(f, _) => Box::new(FanoutSubscriber::new(f, backlog, hub.clone())),
            Target::Member(m, _) => Box::new(MemberSubscriber::new(m, hub.clone())),
        };
        if shared.is_closed() {
            // close() ran while we attached: it may have missed this one.
            drop(sub);
            return Err(Error::Closed);
        }
        Ok(sub)
    }
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("hub", &self.hub())
            .field("closed", &self.shared().is_closed())
            .finish()
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.persistent = false;
        c.replay = true;
        c.consumer_groups = true;
        c.ack_redelivery = true;
        c.per_topic_ordering = true;
        c.dead_letters = true;
        c.patterns = true;
        c.cross_process = false;
        c.at_least_once = true;
        c.gap_signals = false;
        c.lossy_block = false;
        c.limits = Limits::DEFAULT;
        c
    }

    /// Refuses a message over [`Limits::DEFAULT`] with
    /// `Error::InvalidMessage` (nothing is appended), else appends it.
    async fn publish(&self, message: Message) -> Result<MessageId> {
        self.refuse_if_closed()?;
        Limits::DEFAULT.check(&message)?;
        self.publish_prechecked(message).await
    }

    /// Checks every message first: one over [`Limits::DEFAULT`] fails the
    /// whole batch with `Error::InvalidMessage` and nothing is appended.
    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.refuse_if_closed()?;
        Limits::DEFAULT.check_batch(&messages)?;
        let shared = self.shared();
        let mut ids = Vec::with_capacity(messages.len());
        let mut messages = messages.into_iter().peekable();
        let result = loop {
            match shared.hub.try_publish_batch(&mut messages, &mut ids) {
                Ok(()) => break Ok(()),
                Err(blocked) => match Box::pin(self.wait_blocked(blocked)).await {
                    Ok(seq) => ids.push(MessageId::from_seq(seq)),
                    Err(e) => break Err(e),
                },
            }
        };
        shared
            .published
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        result.map(|()| ids)
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        self.subscribe_now(&subscription, None)
    }

    async fn subscribers(&self, topic: &Topic) -> Result<SubscriberCounts> {
        let local = self.shared().hub.subscriber_count(topic) as u64;
        Ok(SubscriberCounts::new(local, None))
    }

    async fn topics(&self, filter: &TopicFilter) -> Result<Vec<TopicInfo>> {
        Ok(self.shared().hub.topic_infos(filter))
    }

    async fn health(&self) -> Health {
        if self.shared().is_closed() {
            Health::Down("closed".into())
        } else {
            Health::Ok
        }
    }

    fn stats(&self) -> TransportStats {
        let mut s = TransportStats::default();
        s.published = self.shared().published.load(Ordering::Relaxed);
        s.publish_errors = self.shared().publish_errors.load(Ordering::Relaxed);
        s
    }

    async fn close(&self) -> Result<()> {
        self.shared().shutdown();
        Ok(())
    }
}
