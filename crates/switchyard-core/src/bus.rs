//! The typed layer: publish and receive `T: Serialize + DeserializeOwned`.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Codec;
use crate::delivery::{Delivery, Retry};
use crate::error::Result;
use crate::message::{Message, MessageId, header};
use crate::subscription::Subscription;
use crate::topic::Topic;
use crate::transport::{Subscriber, SubscriberStats, Transport};

/// Typed publishing and subscribing on top of any [`Transport`].
///
/// ```
/// # async fn demo(transport: std::sync::Arc<dyn switchyard_core::Transport>) -> switchyard_core::Result<()> {
/// use switchyard_core::{Bus, Subscription, Topic};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderCreated { id: u64 }
///
/// let bus = Bus::new(transport);
/// let topic = Topic::new("orders.created")?;
/// let mut orders = bus.subscribe::<OrderCreated>(Subscription::new(topic.clone())).await?;
/// bus.publish(&topic, &OrderCreated { id: 1 }).await?;
/// if let Some(Ok(order)) = orders.recv().await {
///     assert_eq!(order.value.id, 1);
///     order.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bus {
    transport: Arc<dyn Transport>,
    codec: Codec,
}

impl Bus {
    /// A bus with the JSON codec.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Bus {
            transport,
            codec: Codec::Json,
        }
    }

    /// Uses `codec` for encoding and decoding.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The codec in use.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Encodes `value` into a message for `topic` (to add headers before publishing).
    pub fn message<T: Serialize + ?Sized>(&self, topic: &Topic, value: &T) -> Result<Message> {
        let payload = self.codec.encode(value)?;
        Ok(Message::new(topic.clone(), payload)
            .with_header(header::CONTENT_TYPE, self.codec.content_type()))
    }

    /// Encodes and publishes `value` on `topic`.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &Topic,
        value: &T,
    ) -> Result<MessageId> {
        self.transport.publish(self.message(topic, value)?).await
    }

    /// Subscribes and decodes every delivery as `T`.
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        subscription: Subscription,
    ) -> Result<TypedSubscriber<T>> {
        let inner = self.transport.subscribe(subscription).await?;
        Ok(TypedSubscriber {
            inner,
            codec: self.codec,
            decode_errors: 0,
            _marker: PhantomData,
        })
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("transport", &self.transport.name())
            .field("codec", &self.codec)
            .finish()
    }
}

/// A decoded value together with its delivery (to settle it).
#[derive(Debug)]
#[non_exhaustive]
pub struct Typed<T> {
    /// The decoded payload.
    pub value: T,
    /// The delivery it came in.
    pub delivery: Delivery,
}

impl<T> Typed<T> {
    /// Acknowledges the delivery.
    pub async fn ack(self) -> Result<()> {
        self.delivery.ack().await
    }

    /// Negatively acknowledges the delivery.
    pub async fn nack(self, retry: Retry) -> Result<()> {
        self.delivery.nack(retry).await
    }
}

/// A subscriber that decodes payloads as `T`.
///
/// A payload that fails to decode yields one `Err(Error::Codec)` item and the
/// stream goes on. In group mode that message is dead-lettered with the
/// decode error as reason, so it is neither lost nor redelivered forever.
pub struct TypedSubscriber<T> {
    inner: Box<dyn Subscriber>,
    codec: Codec,
    decode_errors: u64,
    _marker: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TypedSubscriber<T> {
    /// The next decoded delivery; `None` once closed.
    pub async fn recv(&mut self) -> Option<Result<Typed<T>>> {
        let delivery = match self.inner.recv().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        match self.codec.decode::<T>(delivery.payload()) {
            Ok(value) => Some(Ok(Typed { value, delivery })),
            Err(e) => {
                self.decode_errors += 1;
                tracing::warn!(
                    topic = %delivery.topic(),
                    id = %delivery.id(),
                    error = %e,
                    "payload failed to decode"
                );
                if delivery.needs_ack() {
                    let reason = format!("decode error: {e}");
                    if let Err(settle) = delivery.nack(Retry::DeadLetter(reason)).await {
                        tracing::warn!(error = %settle, "could not dead-letter an undecodable payload; it will be redelivered");
                    }
                }
                Some(Err(e))
            }
        }
    }

    /// Counters, including `decode_errors`.
    pub fn stats(&self) -> SubscriberStats {
        let mut s = self.inner.stats();
        s.decode_errors += self.decode_errors;
        s
    }

    /// The untyped subscriber underneath.
    pub fn into_inner(self) -> Box<dyn Subscriber> {
        self.inner
    }

    /// Closes the subscriber.
    pub async fn close(self) -> Result<()> {
        self.inner.close().await
    }
}

impl<T> std::fmt::Debug for TypedSubscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedSubscriber")
            .field("codec", &self.codec)
            .field("decode_errors", &self.decode_errors)
            .finish()
    }
}
