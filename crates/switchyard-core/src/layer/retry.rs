//! [`PublishRetryLayer`]: publish again after a transient error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Layer;
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::message::{Message, MessageId};
use crate::subscription::Subscription;
use crate::topic::{Topic, TopicFilter};
use crate::transport::{Capabilities, Health, Subscriber, Transport, TransportStats};

/// Retries `publish` and `publish_batch` when they fail with a transient
/// error ([`Error::is_transient`]: connection lost, timeout, transient
/// backend error, open circuit breaker), waiting an exponential backoff
/// with full jitter between attempts (the `n`th wait drawn from
/// `[0, min(max_delay, first_delay * 2^n)]`, see [`Backoff`](crate::Backoff)).
///
/// Every attempt publishes a clone of the same message, so its
/// [`DedupId`](crate::DedupId) is the same: a publish that reached the
/// backend although its reply was lost, then retried, gives two copies a
/// consumer can tell apart ([`DedupLayer`](super::DedupLayer)). A batch is
/// retried whole, with the same dedup ids. Any other error is returned at
/// once; after the last attempt the last error is returned.
///
/// Settings, checked by [`new`](PublishRetryLayer::new):
///
/// | setting | range | default |
/// |---|---|---|
/// | `max_attempts` (the first try included) | 1 to [`MAX_ATTEMPTS`](PublishRetryLayer::MAX_ATTEMPTS) (100) | 3 |
/// | `first_delay` | 0 to [`MAX_DELAY`](PublishRetryLayer::MAX_DELAY) (10 min) | 100 ms |
/// | `max_delay` | `first_delay` to [`MAX_DELAY`](PublishRetryLayer::MAX_DELAY) | 2 s |
///
/// A publish can therefore take up to about `max_attempts` times the
/// adapter's own publish timeout plus the waits: keep the product within
/// what the caller can wait.
#[derive(Clone, Debug)]
pub struct PublishRetryLayer {
    max_attempts: u32,
    first_delay: Duration,
    max_delay: Duration,
    retries: Arc<AtomicU64>,
}

impl PublishRetryLayer {
    /// The most attempts (the first try included) allowed: 100.
    pub const MAX_ATTEMPTS: u32 = 100;
    /// The longest delay allowed: 10 minutes.
    pub const MAX_DELAY: Duration = Duration::from_secs(600);

    /// Up to `max_attempts` tries in all, waiting from about `first_delay`
    /// (doubling) up to `max_delay` between them; see the ranges above.
    pub fn new(max_attempts: u32, first_delay: Duration, max_delay: Duration) -> Result<Self> {
        if !(1..=Self::MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(Error::InvalidConfig(format!(
                "PublishRetryLayer max_attempts must be 1 to {} (the first try included), got {max_attempts}",
                Self::MAX_ATTEMPTS
            )));
        }
        if first_delay > Self::MAX_DELAY {
            return Err(Error::InvalidConfig(format!(
                "PublishRetryLayer first_delay must be 0 to {:?}, got {first_delay:?}",
                Self::MAX_DELAY
            )));
        }
        if max_delay < first_delay || max_delay > Self::MAX_DELAY {
            return Err(Error::InvalidConfig(format!(
                "PublishRetryLayer max_delay must be first_delay ({first_delay:?}) to {:?}, got {max_delay:?}",
                Self::MAX_DELAY
            )));
        }
        Ok(PublishRetryLayer {
            max_attempts,
            first_delay,
            max_delay,
            retries: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The most attempts per publish, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Retries made so far by every transport this layer (and its clones)
    /// wrapped: attempts after the first.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

impl Default for PublishRetryLayer {
    /// 3 attempts, 100 ms first delay, 2 s cap.
    fn default() -> Self {
        PublishRetryLayer {
            max_attempts: 3,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            retries: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Layer for PublishRetryLayer {
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        Arc::new(RetryTransport {
            inner,
            layer: self.clone(),
        })
    }
}

/// The transport a [`PublishRetryLayer`] makes.
struct RetryTransport {
    inner: Arc<dyn Transport>,
    layer: PublishRetryLayer,
}

impl RetryTransport {
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt_once: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        let mut backoff = Backoff::new(self.layer.first_delay, self.layer.max_delay);
        let mut attempt = 1;
        loop {
            match attempt_once().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() && attempt < self.layer.max_attempts => {
                    let delay = backoff.next_delay();
                    tracing::debug!(
                        adapter = self.inner.name(),
                        attempt,
                        max_attempts = self.layer.max_attempts,
                        ?delay,
                        error = %e,
                        "{what} failed with a transient error; retrying"
                    );
                    self.layer.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    if e.is_transient() {
                        tracing::warn!(
                            adapter = self.inner.name(),
                            attempts = attempt,
                            error = %e,
                            "{what} failed after the last attempt of PublishRetryLayer"
                        );
                    }
                    return Err(e);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Transport for RetryTransport {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn publish(&self, message: Message) -> Result<MessageId> {
        let inner = &self.inner;
        self.retrying("publish", || inner.publish(message.clone()))
            .await
    }

    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let inner = &self.inner;
        self.retrying("publish_batch", || inner.publish_batch(messages.clone()))
            .await
    }

    /// Retries the queuing stage (a transient refusal to queue, such as an
    /// open breaker); an error the ack resolves to is not retried: the
    /// message may have reached the backend, and the ack is the caller's.
    async fn publish_queued(&self, message: Message) -> Result<crate::PublishAck> {
        let inner = &self.inner;
        self.retrying("publish_queued", || inner.publish_queued(message.clone()))
            .await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        self.inner.subscribe(subscription).await
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
