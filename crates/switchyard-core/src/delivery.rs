//! What a subscriber receives, and how it is settled.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::message::{DedupId, Headers, Message, MessageId};
use crate::topic::Topic;

/// How a negatively acknowledged message should come back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// Redeliver as soon as possible (counts as an attempt).
    Now,
    /// Redeliver no earlier than this delay: 0 to [`Retry::MAX_DELAY`]
    /// (24 h). [`Delivery::nack`] refuses a longer one.
    After(Duration),
    /// Do not redeliver: move to the topic's dead-letter topic with this reason.
    DeadLetter(String),
}

impl Retry {
    /// The longest delay [`Retry::After`] accepts: 24 hours.
    pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// Checks the delay of [`Retry::After`] against [`Retry::MAX_DELAY`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_core::Retry;
    /// assert!(Retry::After(Retry::MAX_DELAY).validate().is_ok());
    /// assert!(Retry::After(Duration::MAX).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match self {
            Retry::After(delay) if *delay > Self::MAX_DELAY => Err(Error::InvalidConfig(format!(
                "the delay of nack(Retry::After) must be 0 to 24h (Retry::MAX_DELAY), got {delay:?}: \
                 the delivery was released unsettled and comes back like after nack(Retry::Now)"
            ))),
            _ => Ok(()),
        }
    }
}

/// How a delivery is settled; adapters implement this for group
/// subscriptions. Fan-out deliveries carry no acknowledger and settling them
/// is a no-op.
///
/// Settling may be batched by the adapter: a successful return means the
/// settlement was accepted and will reach the backend (or was refused with an
/// error), not necessarily that it already did.
#[async_trait::async_trait]
pub trait Acknowledger: Send + Sync + 'static {
    /// The delivery was processed: never deliver it again.
    async fn ack(&self, delivery: &Delivery) -> Result<()>;
    /// The delivery failed: redeliver it (or dead-letter it) as `retry` says.
    /// Adapters dead-letter instead of redelivering once `attempt` reached the
    /// subscription's `max_attempts`.
    async fn nack(&self, delivery: &Delivery, retry: Retry) -> Result<()>;
    /// The work goes on: restart the ack timeout so no other member takes it over.
    async fn in_progress(&self, delivery: &Delivery) -> Result<()>;
    /// The delivery was dropped without being settled. Must not block. The
    /// message must come back (like `nack(Retry::Now)`), at the latest after
    /// the ack timeout; it must never be lost.
    fn abandon(&self, delivery: &Delivery);
}

/// A [`Delivery`] taken apart by [`Delivery::into_parts`], to be rebuilt
/// with [`Delivery::from_parts`]: how a layer
/// ([`crate::layer`]) decorates settlement (wraps the acknowledger) or
/// inspects a delivery without settling it.
///
/// Taking a delivery apart settles nothing and abandons nothing: whoever
/// holds the parts owns the duty to rebuild the delivery (or to settle the
/// message through `acker` directly). Dropping the parts of a group
/// delivery without either leaves the message unsettled until the
/// backend's ack timeout brings it back.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_core::{Delivery, Message, MessageId};
///
/// let d = Delivery::new(Message::to("t", "p")?, MessageId::from_seq(7), 2, None);
/// let mut parts = d.into_parts();
/// assert!(parts.acker.is_none()); // fan-out: nothing to settle
/// let d = Delivery::from_parts(parts);
/// assert_eq!((d.id(), d.attempt()), (MessageId::from_seq(7), 2));
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[non_exhaustive]
pub struct DeliveryParts {
    /// The message.
    pub message: Message,
    /// The backend id.
    pub id: MessageId,
    /// 1 on first delivery, then 2, 3, ...
    pub attempt: u32,
    /// How it is settled; `None` for fan-out deliveries.
    pub acker: Option<Arc<dyn Acknowledger>>,
    /// Its `process` span ([`Delivery::span`]).
    pub span: tracing::Span,
}

impl fmt::Debug for DeliveryParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryParts")
            .field("topic", &self.message.topic)
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("needs_ack", &self.acker.is_some())
            .finish()
    }
}

/// A message handed to a subscriber, with its backend id, attempt number and
/// (in group mode) the handle to settle it.
///
/// In group mode, settle every delivery with [`ack`](Delivery::ack) or
/// [`nack`](Delivery::nack). Dropping an unsettled delivery behaves like
/// `nack(Retry::Now)`: the message comes back, it is never lost.
pub struct Delivery {
    message: Message,
    id: MessageId,
    attempt: u32,
    acker: Option<Arc<dyn Acknowledger>>,
    settled: bool,
    span: tracing::Span,
}

impl Delivery {
    /// For adapters: a delivery of `message` with backend `id`, first
    /// delivered when `attempt` is 1. `acker` is `None` for fan-out.
    pub fn new(
        message: Message,
        id: MessageId,
        attempt: u32,
        acker: Option<Arc<dyn Acknowledger>>,
    ) -> Self {
        Delivery {
            message,
            id,
            attempt,
            acker,
            settled: false,
            span: tracing::Span::none(),
        }
    }

    /// The delivery's `process {topic}` span (see [`crate::trace`]): open
    /// from the moment the subscriber handed the delivery out until it is
    /// settled or dropped, a child of the producer's trace context when a
    /// [`Propagator`](crate::trace::Propagator) extracted one. Enter it
    /// (`delivery.span().clone()` with `Instrument`, or `in_scope`) so the
    /// handler's own spans and events join the trace.
    /// [`Span::none`](tracing::Span::none) when the transport is not traced
    /// or no tracing subscriber is interested.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// For [`crate::trace`]: attaches the process span and lets `wrap`
    /// replace the acknowledger (to add settle spans).
    pub(crate) fn attach_trace(
        &mut self,
        span: tracing::Span,
        wrap: impl FnOnce(&Arc<dyn Acknowledger>) -> Arc<dyn Acknowledger>,
    ) {
        if let Some(acker) = &self.acker {
            self.acker = Some(wrap(acker));
        }
        self.span = span;
    }

    /// Takes the delivery apart without settling or abandoning it (see
    /// [`DeliveryParts`]); [`Delivery::from_parts`] rebuilds it.
    pub fn into_parts(mut self) -> DeliveryParts {
        self.settled = true;
        let empty = Message::from_parts(
            self.message.topic.clone(),
            Bytes::new(),
            Headers::new(),
            DedupId(0),
        );
        DeliveryParts {
            message: std::mem::replace(&mut self.message, empty),
            id: self.id,
            attempt: self.attempt,
            acker: self.acker.take(),
            span: std::mem::replace(&mut self.span, tracing::Span::none()),
        }
    }

    /// Rebuilds a delivery from its parts (unsettled: settle it, or drop
    /// it to abandon it, as any delivery).
    pub fn from_parts(parts: DeliveryParts) -> Self {
        let DeliveryParts {
            message,
            id,
            attempt,
            acker,
            span,
        } = parts;
        Delivery {
            message,
            id,
            attempt,
            acker,
            settled: false,
            span,
        }
    }

    /// Replaces the acknowledger of a group delivery with what `wrap`
    /// makes of it (a fan-out delivery, which has none, is returned as it
    /// is). A layer decorates settlement this way: the wrapper sees every
    /// `ack`, `nack`, `in_progress` and `abandon` and passes them on.
    pub fn map_acknowledger(
        mut self,
        wrap: impl FnOnce(Arc<dyn Acknowledger>) -> Arc<dyn Acknowledger>,
    ) -> Self {
        if let Some(acker) = self.acker.take() {
            self.acker = Some(wrap(acker));
        }
        self
    }

    /// The acknowledger of a group delivery; `None` for fan-out.
    pub fn acknowledger(&self) -> Option<&Arc<dyn Acknowledger>> {
        self.acker.as_ref()
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &Topic {
        &self.message.topic
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.message.payload
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.message.headers
    }

    /// The dedup id given by the publisher.
    pub fn dedup_id(&self) -> DedupId {
        self.message.dedup_id
    }

    /// The whole message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The backend id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// 1 on first delivery, then 2, 3, ... on redeliveries.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether this delivery must be settled (group mode).
    pub fn needs_ack(&self) -> bool {
        self.acker.is_some()
    }

    /// Acknowledges: the message is done and is not delivered again.
    pub async fn ack(mut self) -> Result<()> {
        if let Some(acker) = self.acker.clone() {
            acker.ack(&self).await?;
        }
        self.settled = true;
        Ok(())
    }

    /// Negatively acknowledges: redeliver now, after a delay, or dead-letter.
    ///
    /// A [`Retry::After`] delay longer than [`Retry::MAX_DELAY`] fails with
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) before anything
    /// is sent to the backend; the delivery is then dropped unsettled, so
    /// the message comes back as after `nack(Retry::Now)`.
    pub async fn nack(mut self, retry: Retry) -> Result<()> {
        retry.validate()?;
        if let Some(acker) = self.acker.clone() {
            acker.nack(&self, retry).await?;
        }
        self.settled = true;
        Ok(())
    }

    /// Tells the backend the work is still going on, restarting the ack
    /// timeout so the message is not handed to another member.
    pub async fn in_progress(&self) -> Result<()> {
        match &self.acker {
            Some(acker) => acker.in_progress(self).await,
            None => Ok(()),
        }
    }

    /// Takes the message out, settling nothing. In group mode the message
    /// comes back later (as if dropped).
    pub fn into_message(mut self) -> Message {
        self.abandon_now();
        self.settled = true;
        let empty = Message::from_parts(
            self.message.topic.clone(),
            Bytes::new(),
            Headers::new(),
            DedupId(0),
        );
        std::mem::replace(&mut self.message, empty)
    }

    fn abandon_now(&mut self) {
        if !self.settled
            && let Some(acker) = &self.acker
        {
            acker.abandon(self);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.abandon_now();
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.message.topic)
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("payload_len", &self.message.payload.len())
            .field("headers", &self.message.headers)
            .field("needs_ack", &self.acker.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counting {
        acks: AtomicUsize,
        nacks: AtomicUsize,
        abandons: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Acknowledger for Counting {
        async fn ack(&self, _: &Delivery) -> Result<()> {
            self.acks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn nack(&self, _: &Delivery, _: Retry) -> Result<()> {
            self.nacks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn in_progress(&self, _: &Delivery) -> Result<()> {
            Ok(())
        }
        fn abandon(&self, _: &Delivery) {
            self.abandons.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn delivery(acker: &Arc<Counting>) -> Delivery {
        let a: Arc<dyn Acknowledger> = acker.clone();
        Delivery::new(
            Message::to("t", "p").unwrap(),
            MessageId::from_seq(1),
            1,
            Some(a),
        )
    }

    /// `nack(Retry::After(Duration::MAX))` used to reach the adapters, whose
    /// `now + delay` panicked. It is refused first and the delivery is
    /// abandoned (so it comes back), the acknowledger's nack never called.
    #[tokio::test]
    async fn too_long_a_retry_delay_is_refused_and_abandons() {
        let c = Arc::new(Counting::default());
        for delay in [
            Retry::MAX_DELAY + Duration::from_nanos(1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let e = delivery(&c).nack(Retry::After(delay)).await.unwrap_err();
            assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
            assert!(e.to_string().contains("Retry::MAX_DELAY"), "{e}");
        }
        delivery(&c)
            .nack(Retry::After(Retry::MAX_DELAY))
            .await
            .unwrap();
        assert_eq!(c.nacks.load(Ordering::SeqCst), 1);
        assert_eq!(c.abandons.load(Ordering::SeqCst), 3);
    }

    /// Taking apart and rebuilding settles and abandons nothing; the
    /// rebuilt delivery settles through the (wrapped) acknowledger.
    #[tokio::test]
    async fn parts_round_trip_and_map_acknowledger() {
        let c = Arc::new(Counting::default());
        let parts = delivery(&c).into_parts();
        assert_eq!(c.abandons.load(Ordering::SeqCst), 0);
        assert_eq!((parts.attempt, &parts.message.payload[..]), (1, &b"p"[..]));
        let rebuilt = Delivery::from_parts(parts);
        assert!(rebuilt.acknowledger().is_some());
        let wrapped = Arc::new(Counting::default());
        let w = wrapped.clone();
        rebuilt
            .map_acknowledger(move |_inner| w)
            .ack()
            .await
            .unwrap();
        assert_eq!(wrapped.acks.load(Ordering::SeqCst), 1);
        assert_eq!(c.acks.load(Ordering::SeqCst), 0);
        assert_eq!(c.abandons.load(Ordering::SeqCst), 0);
        drop(Delivery::from_parts(delivery(&c).into_parts()));
        assert_eq!(c.abandons.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn settle_once_and_drop_abandons() {
        let c = Arc::new(Counting::default());
        delivery(&c).ack().await.unwrap();
        delivery(&c).nack(Retry::Now).await.unwrap();
        drop(delivery(&c));
        let m = delivery(&c).into_message();
        assert_eq!(&m.payload[..], b"p");
        assert_eq!(c.acks.load(Ordering::SeqCst), 1);
        assert_eq!(c.nacks.load(Ordering::SeqCst), 1);
        assert_eq!(c.abandons.load(Ordering::SeqCst), 2);
    }
}
