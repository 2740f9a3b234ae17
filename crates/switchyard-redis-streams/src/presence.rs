//! `Transport::subscribers` for Redis Streams: the transport keeps the
//! filters of its open subscribers ([`Subscribers`]); each subscriber it
//! hands out is wrapped in [`Counted`], whose drop (or close) removes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use parking_lot::Mutex;
use switchyard_core::{Delivery, Result, Subscriber, SubscriberStats, Topic, TopicFilter};

/// The filters of a transport's open subscribers.
#[derive(Default)]
pub(crate) struct Subscribers {
    next: AtomicU64,
    open: Mutex<Vec<(u64, TopicFilter)>>,
}

impl Subscribers {
    /// How many open subscribers' filters match `topic`.
    pub(crate) fn count(&self, topic: &Topic) -> usize {
        self.open
            .lock()
            .iter()
            .filter(|(_, f)| f.matches(topic.as_str()))
            .count()
    }

    /// Wraps `sub` (subscribed with `filter`) so that it counts while open.
    pub(crate) fn counted(
        self: &Arc<Self>,
        filter: &TopicFilter,
        sub: Box<dyn Subscriber>,
    ) -> Box<dyn Subscriber> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().push((id, filter.clone()));
        Box::new(Counted {
            inner: sub,
            _reg: Registration {
                subscribers: self.clone(),
                id,
            },
        })
    }
}

struct Registration {
    subscribers: Arc<Subscribers>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.subscribers
            .open
            .lock()
            .retain(|(id, _)| *id != self.id);
    }
}

/// A subscriber that counts in [`Subscribers`] while it is open.
struct Counted {
    inner: Box<dyn Subscriber>,
    _reg: Registration,
}

#[async_trait::async_trait]
impl Subscriber for Counted {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        self.inner.poll_recv(cx)
    }

    fn stats(&self) -> SubscriberStats {
        self.inner.stats()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let Counted { inner, _reg } = *self;
        drop(_reg);
        inner.close().await
    }
}
