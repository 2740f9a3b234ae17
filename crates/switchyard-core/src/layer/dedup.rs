//! [`DedupLayer`]: a subscriber that drops repeated dedup ids.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;

use super::{Layer, SubscriberLayer, on_subscribe};
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::message::{DedupId, MessageId};
use crate::transport::{Subscriber, SubscriberStats, Transport};

/// Acks of dropped duplicates a subscriber keeps going at once; while this
/// many are unfinished it hands out nothing new.
const MAX_PENDING_ACKS: usize = 64;

/// Deliveries looked at per `poll_recv` before yielding to the runtime.
const MAX_DROPS_PER_POLL: usize = 1024;

/// How long `close` waits for the acks of dropped duplicates to finish.
const CLOSE_ACK_WAIT: Duration = Duration::from_secs(5);

/// Drops a delivery whose [`DedupId`] this subscriber already saw, from
/// another backend entry, among the last `window` distinct dedup ids:
/// effectively-once processing over at-least-once delivery (a publish
/// retried after a lost reply, [`PublishRetryLayer`](super::PublishRetryLayer),
/// or a producer that published twice).
///
/// The dropped duplicate is acknowledged (group mode), so the backend
/// forgets it; the count of dropped duplicates is
/// [`duplicates`](DedupLayer::duplicates). A *redelivery* of the entry
/// first seen (same backend id, after a nack or an ack timeout) is not a
/// duplicate and passes through: the message was not processed yet.
///
/// Each subscriber has its own window (`window` ids, the oldest forgotten
/// first: a ring), so two fan-out subscribers each get their copy, and a
/// duplicate that reaches another member of a consumer group (or this one
/// after more than `window` other ids) is not caught. `window` ranges from
/// 1 to [`MAX_WINDOW`](DedupLayer::MAX_WINDOW) (1,000,000); each id kept
/// costs about 60 bytes.
#[derive(Clone, Debug)]
pub struct DedupLayer {
    window: usize,
    duplicates: Arc<AtomicU64>,
}

impl DedupLayer {
    /// The largest window allowed: 1,000,000 dedup ids per subscriber.
    pub const MAX_WINDOW: usize = 1_000_000;

    /// Remembers the last `window` distinct dedup ids of each subscriber
    /// (1 to [`MAX_WINDOW`](DedupLayer::MAX_WINDOW)).
    pub fn new(window: usize) -> Result<Self> {
        if !(1..=Self::MAX_WINDOW).contains(&window) {
            return Err(Error::InvalidConfig(format!(
                "DedupLayer window must be 1 to {} dedup ids, got {window}",
                Self::MAX_WINDOW
            )));
        }
        Ok(DedupLayer {
            window,
            duplicates: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The window size.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Duplicates dropped so far by every subscriber of this layer (and of
    /// its clones).
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

impl Layer for DedupLayer {
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        on_subscribe(inner, Arc::new(self.clone()))
    }
}

impl SubscriberLayer for DedupLayer {
    fn layer_subscriber(&self, inner: Box<dyn Subscriber>) -> Box<dyn Subscriber> {
        Box::new(DedupSubscriber {
            inner,
            window: Window::new(self.window),
            duplicates: self.duplicates.clone(),
            acks: FuturesUnordered::new(),
        })
    }
}

/// The last `cap` distinct dedup ids and the backend id each was first
/// seen with.
struct Window {
    cap: usize,
    order: VecDeque<DedupId>,
    seen: HashMap<DedupId, MessageId>,
}

impl Window {
    fn new(cap: usize) -> Self {
        Window {
            cap,
            order: VecDeque::with_capacity(cap.min(4096)),
            seen: HashMap::with_capacity(cap.min(4096)),
        }
    }

    /// Whether a delivery of `dedup` with backend id `id` repeats one seen
    /// before (under another id); remembers it when not.
    fn is_duplicate(&mut self, dedup: DedupId, id: MessageId) -> bool {
        if let Some(first) = self.seen.get(&dedup) {
            return *first != id;
        }
        if self.order.len() >= self.cap
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(dedup);
        self.seen.insert(dedup, id);
        false
    }
}

/// The subscriber a [`DedupLayer`] makes.
struct DedupSubscriber {
    inner: Box<dyn Subscriber>,
    window: Window,
    duplicates: Arc<AtomicU64>,
    /// Acks of dropped duplicates, driven by `poll_recv` (bounded by
    /// [`MAX_PENDING_ACKS`]).
    acks: FuturesUnordered<BoxFuture<'static, ()>>,
}

fn ack_dropped(delivery: Delivery) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let id = delivery.id();
        if let Err(e) = delivery.ack().await {
            tracing::warn!(%id, error = %e, "DedupLayer could not ack a dropped duplicate; it may come back");
        }
    })
}

#[async_trait::async_trait]
impl Subscriber for DedupSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        for _ in 0..MAX_DROPS_PER_POLL {
            while let Poll::Ready(Some(())) = self.acks.poll_next_unpin(cx) {}
            if self.acks.len() >= MAX_PENDING_ACKS {
                // Woken when one of them finishes.
                return Poll::Pending;
            }
            match std::task::ready!(self.inner.poll_recv(cx)) {
                Some(Ok(delivery)) => {
                    if !self.window.is_duplicate(delivery.dedup_id(), delivery.id()) {
                        return Poll::Ready(Some(Ok(delivery)));
                    }
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        id = %delivery.id(),
                        dedup_id = %delivery.dedup_id(),
                        topic = %delivery.topic(),
                        "dropping a duplicate delivery"
                    );
                    if delivery.needs_ack() {
                        self.acks.push(ack_dropped(delivery));
                    }
                }
                other => return Poll::Ready(other),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn stats(&self) -> SubscriberStats {
        self.inner.stats()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let DedupSubscriber {
            inner, mut acks, ..
        } = *self;
        let drain = async { while acks.next().await.is_some() {} };
        if tokio::time::timeout(CLOSE_ACK_WAIT, drain).await.is_err() {
            tracing::warn!(
                "DedupLayer: acks of dropped duplicates unfinished after {CLOSE_ACK_WAIT:?}; those duplicates come back"
            );
        }
        inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_bounded_and_lets_redeliveries_through() {
        let mut w = Window::new(2);
        let (a, b, c) = (DedupId(1), DedupId(2), DedupId(3));
        let id = MessageId::from_seq;
        assert!(!w.is_duplicate(a, id(1)));
        assert!(!w.is_duplicate(a, id(1)), "a redelivery is not a duplicate");
        assert!(w.is_duplicate(a, id(2)));
        assert!(!w.is_duplicate(b, id(3)));
        assert!(!w.is_duplicate(c, id(4)));
        assert_eq!((w.order.len(), w.seen.len()), (2, 2));
        assert!(!w.is_duplicate(a, id(5)), "a was forgotten");
        assert!(DedupLayer::new(0).is_err());
        assert!(DedupLayer::new(DedupLayer::MAX_WINDOW + 1).is_err());
        assert!(DedupLayer::new(DedupLayer::MAX_WINDOW).is_ok());
    }
}
