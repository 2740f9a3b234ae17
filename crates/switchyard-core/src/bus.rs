//! The typed layer: publish and receive `T: Serialize + DeserializeOwned`.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::future::BoxFuture;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Codec;
use crate::delivery::{Delivery, Retry};
use crate::error::{Error, Result};
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

    /// Encodes `value` and queues it on `topic`
    /// ([`Transport::publish_queued`]): returns once it is queued, with a
    /// [`PublishAck`](crate::PublishAck) resolving to its id or error.
    /// Fails at once when `value` does not encode or the message cannot be
    /// queued.
    ///
    /// ```
    /// # async fn demo(bus: switchyard_core::Bus) -> switchyard_core::Result<()> {
    /// let topic = switchyard_core::Topic::new("orders.created")?;
    /// let mut acks = Vec::new();
    /// for id in 0..100u64 {
    ///     acks.push(bus.publish_queued(&topic, &id).await?);
    /// }
    /// for ack in acks {
    ///     ack.await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn publish_queued<T: Serialize + ?Sized>(
        &self,
        topic: &Topic,
        value: &T,
    ) -> Result<crate::PublishAck> {
        self.transport
            .publish_queued(self.message(topic, value)?)
            .await
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
            settling: None,
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

/// A subscriber that decodes payloads as `T`. Also a [`futures::Stream`]
/// of the same items as [`recv`](TypedSubscriber::recv).
///
/// A message whose `content-type` header names another media type than
/// the bus's codec (a bincode message on a JSON subscriber) is not decoded:
/// it is an `Err(Error::Codec)` item naming both types. A message without
/// the header is decoded with the bus's codec.
///
/// A payload that fails to decode (or is labelled with another content
/// type) yields one `Err(Error::Codec)` item and the stream goes on. In
/// group mode that message is dead-lettered with the decode error as
/// reason, so it is neither lost nor redelivered forever; the error item
/// comes once the dead-letter request settled.
///
/// ```
/// # async fn demo(bus: switchyard_core::Bus, topic: switchyard_core::Topic) -> switchyard_core::Result<()> {
/// use futures::StreamExt;
/// use switchyard_core::Subscription;
///
/// let orders = bus.subscribe::<u64>(Subscription::new(topic)).await?;
/// let mut first_two = orders.take(2);
/// while let Some(item) = first_two.next().await {
///     let order = item?;
///     order.ack().await?;
/// }
/// # Ok(()) }
/// ```
pub struct TypedSubscriber<T> {
    inner: Box<dyn Subscriber>,
    codec: Codec,
    decode_errors: u64,
    /// The dead-letter request of an undecodable group delivery, under way,
    /// and the error item to yield once it settled.
    settling: Option<(BoxFuture<'static, ()>, Error)>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TypedSubscriber<T> {
    /// The next decoded delivery; `None` once closed.
    ///
    /// Cancel-safe: dropping the future loses no delivery (a dead-letter
    /// request under way goes on at the next call).
    pub async fn recv(&mut self) -> Option<Result<Typed<T>>> {
        futures::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next decoded delivery; `Ready(None)` once closed.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Typed<T>>>> {
        loop {
            if let Some((settle, _)) = &mut self.settling {
                ready!(settle.as_mut().poll(cx));
                if let Some((_, error)) = self.settling.take() {
                    return Poll::Ready(Some(Err(error)));
                }
            }
            let delivery = match ready!(self.inner.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(d)) => d,
            };
            let decoded = self
                .codec
                .check_content_type(delivery.headers().get(header::CONTENT_TYPE))
                .and_then(|()| self.codec.decode::<T>(delivery.payload()));
            let e = match decoded {
                Ok(value) => return Poll::Ready(Some(Ok(Typed { value, delivery }))),
                Err(e) => e,
            };
            self.decode_errors += 1;
            tracing::warn!(
                topic = %delivery.topic(),
                id = %delivery.id(),
                error = %e,
                "payload failed to decode"
            );
            if !delivery.needs_ack() {
                return Poll::Ready(Some(Err(e)));
            }
            let reason = format!("decode error: {e}");
            let settle = async move {
                if let Err(settle) = delivery.nack(Retry::DeadLetter(reason)).await {
                    tracing::warn!(error = %settle, "could not dead-letter an undecodable payload; it will be redelivered");
                }
            };
            self.settling = Some((Box::pin(settle), e));
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

    /// Closes the subscriber (after a dead-letter request under way settled).
    pub async fn close(mut self) -> Result<()> {
        if let Some((settle, _)) = self.settling.take() {
            settle.await;
        }
        self.inner.close().await
    }
}

impl<T: DeserializeOwned> Stream for TypedSubscriber<T> {
    type Item = Result<Typed<T>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
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
