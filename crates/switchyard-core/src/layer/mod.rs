//! Layers (middleware) around a [`Transport`] and its subscribers,
//! tower-style: a [`Layer`] takes a transport and returns one that does a
//! little more and passes every call on to the one it wraps.
//!
//! | layer | side | what it does |
//! |---|---|---|
//! | [`TraceLayer`] | both | the [`Traced`] spans (`send`, `process`, `ack`/`nack`) |
//! | [`PublishRetryLayer`] | publish | retries `publish`/`publish_batch` on transient errors with exponential backoff, the same message (same dedup id) every time |
//! | [`DeliveryTimeoutLayer`] | subscribe | nacks a group delivery the application has not settled within a time |
//! | [`DedupLayer`] | subscribe | drops (and acks) a delivery whose dedup id this subscriber saw within a bounded window |
//!
//! [`layers`] starts a [`Stack`]: the first layer added is the outermost
//! (it sees a call first and a result last), as in tower's
//! `ServiceBuilder`.
//!
//! ```
//! use std::time::Duration;
//! use switchyard_core::{DedupLayer, PublishRetryLayer, Transport, layers};
//! # fn f(adapter: std::sync::Arc<dyn Transport>) -> switchyard_core::Result<()> {
//! let transport = layers()
//!     .with(PublishRetryLayer::new(5, Duration::from_millis(50), Duration::from_secs(2))?)
//!     .with(DedupLayer::new(10_000)?)
//!     .apply(adapter);
//! # let _ = transport; Ok(()) }
//! ```
//!
//! Every wrapper forwards every [`Transport`] and [`Subscriber`] method it
//! does not change (`name`, `capabilities`, `topics`, `subscribers`,
//! `health`, `stats`, `close`, a subscriber's `stats` and `close`). A layer
//! that only changes subscribers implements [`SubscriberLayer`] and is
//! turned into a [`Layer`] by [`on_subscribe`]; it decorates settlement by
//! taking a delivery's acknowledger apart with
//! [`Delivery::map_acknowledger`](crate::Delivery::map_acknowledger) (or
//! [`Delivery::into_parts`](crate::Delivery::into_parts)).

use std::sync::Arc;

use crate::error::Result;
use crate::message::{Message, MessageId};
use crate::subscription::Subscription;
use crate::topic::{Topic, TopicFilter};
use crate::trace::{Propagator, Traced};
use crate::transport::{Capabilities, Health, Subscriber, Transport, TransportStats};

mod dedup;
mod retry;
mod timeout;

pub use dedup::DedupLayer;
pub use retry::PublishRetryLayer;
pub use timeout::DeliveryTimeoutLayer;

/// Wraps a transport in another that adds behaviour and passes every call
/// on (tower's `Layer`, for `Arc<dyn Transport>`). Object-safe: a
/// [`Stack`] holds layers as `Arc<dyn Layer>`.
pub trait Layer: Send + Sync + 'static {
    /// The transport `inner` with this layer's behaviour added.
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport>;
}

impl<L: Layer + ?Sized> Layer for Arc<L> {
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        (**self).layer(inner)
    }
}

/// A layer that only changes subscribers: it wraps what `subscribe`
/// returns (to filter deliveries or wrap each one's acknowledger).
/// [`on_subscribe`] makes a [`Layer`] of it; it can also wrap a subscriber
/// directly.
pub trait SubscriberLayer: Send + Sync + 'static {
    /// The subscriber `inner` with this layer's behaviour added.
    fn layer_subscriber(&self, inner: Box<dyn Subscriber>) -> Box<dyn Subscriber>;
}

/// The transport `inner` whose `subscribe` results `layer` wraps; every
/// other call passes through unchanged.
pub fn on_subscribe(
    inner: Arc<dyn Transport>,
    layer: Arc<dyn SubscriberLayer>,
) -> Arc<dyn Transport> {
    Arc::new(SubscribeLayered { inner, layer })
}

/// A transport whose subscribers a [`SubscriberLayer`] wraps.
struct SubscribeLayered {
    inner: Arc<dyn Transport>,
    layer: Arc<dyn SubscriberLayer>,
}

#[async_trait::async_trait]
impl Transport for SubscribeLayered {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn publish(&self, message: Message) -> Result<MessageId> {
        self.inner.publish(message).await
    }

    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.inner.publish_batch(messages).await
    }

    async fn publish_queued(&self, message: Message) -> Result<crate::PublishAck> {
        self.inner.publish_queued(message).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        let sub = self.inner.subscribe(subscription).await?;
        Ok(self.layer.layer_subscriber(sub))
    }

    async fn topics(&self, filter: &TopicFilter) -> Result<Vec<crate::TopicInfo>> {
        self.inner.topics(filter).await
    }

    async fn subscribers(&self, topic: &Topic) -> Result<crate::SubscriberCounts> {
        self.inner.subscribers(topic).await
    }

    async fn health(&self) -> Health {
        self.inner.health().await
    }

    fn stats(&self) -> TransportStats {
        self.inner.stats()
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// Layers applied in order, outermost first (tower's `ServiceBuilder`);
/// start one with [`layers`]. A `Stack` is itself a [`Layer`].
#[derive(Clone, Default)]
pub struct Stack {
    layers: Vec<Arc<dyn Layer>>,
}

/// An empty [`Stack`]: `layers().with(a).with(b).apply(transport)` gives
/// `a(b(transport))`: `a` sees each call first.
pub fn layers() -> Stack {
    Stack::default()
}

impl Stack {
    /// An empty stack (the same as [`layers`]).
    pub fn new() -> Self {
        Stack::default()
    }

    /// Adds `layer` inside the layers added before it.
    pub fn with(mut self, layer: impl Layer) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// How many layers the stack holds.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the stack holds no layer (then `apply` returns the
    /// transport as it is).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// `transport` wrapped in every layer, the first added outermost.
    pub fn apply(&self, transport: Arc<dyn Transport>) -> Arc<dyn Transport> {
        self.layers
            .iter()
            .rev()
            .fold(transport, |inner, layer| layer.layer(inner))
    }
}

impl Layer for Stack {
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        self.apply(inner)
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// The tracing spans of [`crate::trace`] as a layer: applies the
/// [`Traced`] wrapper (the same one `switchyard::connect` applies, so do
/// not add it to a transport `connect` opened: the spans would double).
#[derive(Clone, Default)]
pub struct TraceLayer {
    propagation: TracePropagation,
}

#[derive(Clone, Default)]
enum TracePropagation {
    #[default]
    Global,
    Fixed(Arc<dyn Propagator>),
    Off,
}

impl TraceLayer {
    /// Spans, with trace context through the process-wide propagator
    /// ([`set_global_propagator`](crate::trace::set_global_propagator)), if
    /// one is set.
    pub fn new() -> Self {
        TraceLayer::default()
    }

    /// Uses `propagator` instead of the process-wide one
    /// ([`Traced::with_propagator`]).
    pub fn with_propagator(mut self, propagator: Arc<dyn Propagator>) -> Self {
        self.propagation = TracePropagation::Fixed(propagator);
        self
    }

    /// Writes and reads no trace context ([`Traced::without_propagation`]).
    pub fn without_propagation(mut self) -> Self {
        self.propagation = TracePropagation::Off;
        self
    }
}

impl Layer for TraceLayer {
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        let traced = Traced::new(inner);
        Arc::new(match &self.propagation {
            TracePropagation::Global => traced,
            TracePropagation::Fixed(p) => traced.with_propagator(p.clone()),
            TracePropagation::Off => traced.without_propagation(),
        })
    }
}
