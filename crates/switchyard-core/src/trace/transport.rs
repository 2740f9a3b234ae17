//! The [`Traced`] transport wrapper: `send` spans and context injection.

use std::sync::Arc;

use tracing::Instrument;
use tracing::field::Empty;

use super::{Propagator, TARGET, TracedSubscriber, global_propagator, int, messaging_system};
use crate::error::Result;
use crate::message::{Message, MessageId};
use crate::publish_ack::PublishAck;
use crate::subscription::Subscription;
use crate::topic::{Topic, TopicFilter};
use crate::transport::{Capabilities, Health, Subscriber, Transport, TransportStats};

/// Which propagator a [`Traced`] transport uses.
#[derive(Clone)]
pub(super) enum Propagation {
    /// The process-wide one ([`set_global_propagator`](super::set_global_propagator)), if set.
    Global,
    /// This one.
    Fixed(Arc<dyn Propagator>),
    /// None: no trace context is written or read.
    Off,
}

impl Propagation {
    pub(super) fn get(&self) -> Option<&Arc<dyn Propagator>> {
        match self {
            Propagation::Global => global_propagator(),
            Propagation::Fixed(p) => Some(p),
            Propagation::Off => None,
        }
    }
}

/// A [`Transport`] with tracing spans (see [`crate::trace`]): every call is
/// passed to the wrapped transport, with a `send` span around publishes and
/// subscribers that give each delivery a `process` span.
///
/// `switchyard::connect` returns transports already wrapped; wrap a
/// transport built from a typed config yourself (once: wrapping twice
/// doubles the spans).
///
/// ```
/// use std::sync::Arc;
/// use switchyard_core::trace::Traced;
/// # fn f(adapter: Arc<dyn switchyard_core::Transport>) {
/// let transport: Arc<dyn switchyard_core::Transport> = Arc::new(Traced::new(adapter));
/// # let _ = transport;
/// # }
/// ```
pub struct Traced {
    inner: Arc<dyn Transport>,
    system: &'static str,
    propagation: Propagation,
}

/// Wraps `transport` in [`Traced`] with the process-wide propagator.
pub fn traced(transport: Arc<dyn Transport>) -> Arc<dyn Transport> {
    Arc::new(Traced::new(transport))
}

impl Traced {
    /// Wraps `inner`; trace context goes through the process-wide
    /// propagator, if one is set.
    pub fn new(inner: Arc<dyn Transport>) -> Self {
        Traced {
            system: messaging_system(inner.name()),
            inner,
            propagation: Propagation::Global,
        }
    }

    /// Uses `propagator` for this transport instead of the process-wide one.
    pub fn with_propagator(mut self, propagator: Arc<dyn Propagator>) -> Self {
        self.propagation = Propagation::Fixed(propagator);
        self
    }

    /// Writes and reads no trace context on this transport, whatever the
    /// process-wide propagator (spans are still made).
    pub fn without_propagation(mut self) -> Self {
        self.propagation = Propagation::Off;
        self
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &Arc<dyn Transport> {
        &self.inner
    }

    /// The `send` span of one message.
    fn send_span(&self, message: &Message) -> tracing::Span {
        tracing::info_span!(
            target: TARGET,
            "send",
            otel.name = %format_args!("send {}", message.topic),
            otel.kind = "producer",
            otel.status_code = Empty,
            "messaging.system" = self.system,
            "messaging.operation.type" = "send",
            "messaging.operation.name" = "send",
            "messaging.destination.name" = %message.topic,
            "messaging.message.body.size" = int(message.payload.len()),
            "messaging.message.id" = Empty,
            "messaging.switchyard.adapter" = self.inner.name(),
            "error.type" = Empty,
        )
    }
}

/// Records a publish's outcome on its `send` span.
fn record_outcome(span: &tracing::Span, result: &Result<MessageId>) {
    match result {
        Ok(id) => {
            span.record("messaging.message.id", tracing::field::display(id));
        }
        Err(e) => super::record_error(span, e),
    }
}

/// The topic shared by every message of a batch, if there is one.
fn common_topic(messages: &[Message]) -> Option<&Topic> {
    let first = &messages.first()?.topic;
    messages.iter().all(|m| m.topic == *first).then_some(first)
}

#[async_trait::async_trait]
impl Transport for Traced {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn publish(&self, mut message: Message) -> Result<MessageId> {
        let span = self.send_span(&message);
        if span.is_disabled() {
            return self.inner.publish(message).await;
        }
        if let Some(p) = self.propagation.get() {
            p.inject(&span, &mut message.headers);
        }
        let result = self.inner.publish(message).instrument(span.clone()).await;
        record_outcome(&span, &result);
        result
    }

    /// Forwards to the wrapped transport with the same `send` span as
    /// `publish`: it covers queuing and lasts until the ack resolves (or is
    /// dropped), and records the id or the error the ack resolves to.
    async fn publish_queued(&self, mut message: Message) -> Result<PublishAck> {
        let span = self.send_span(&message);
        if span.is_disabled() {
            return self.inner.publish_queued(message).await;
        }
        if let Some(p) = self.propagation.get() {
            p.inject(&span, &mut message.headers);
        }
        match self
            .inner
            .publish_queued(message)
            .instrument(span.clone())
            .await
        {
            Ok(ack) => Ok(ack.map(move |result| {
                record_outcome(&span, &result);
                result
            })),
            Err(e) => {
                super::record_error(&span, &e);
                Err(e)
            }
        }
    }

    async fn publish_batch(&self, mut messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let topic = common_topic(&messages);
        let span = tracing::info_span!(
            target: TARGET,
            "send",
            otel.name = %format_args!("send {}", topic.map(Topic::as_str).unwrap_or("(mixed)")),
            otel.kind = "producer",
            otel.status_code = Empty,
            "messaging.system" = self.system,
            "messaging.operation.type" = "send",
            "messaging.operation.name" = "send",
            "messaging.destination.name" = topic.map(Topic::as_str),
            "messaging.batch.message_count" = int(messages.len()),
            "messaging.switchyard.adapter" = self.inner.name(),
            "error.type" = Empty,
        );
        if span.is_disabled() {
            return self.inner.publish_batch(messages).await;
        }
        if let Some(p) = self.propagation.get() {
            for m in &mut messages {
                p.inject(&span, &mut m.headers);
            }
        }
        let result = self
            .inner
            .publish_batch(messages)
            .instrument(span.clone())
            .await;
        if let Err(e) = &result {
            super::record_error(&span, e);
        }
        result
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        let group = subscription.group_names().map(|(g, _)| g.to_owned());
        let inner = self.inner.subscribe(subscription).await?;
        Ok(Box::new(TracedSubscriber::new(
            inner,
            self.inner.name(),
            group,
            self.propagation.clone(),
        )))
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
