//! A backplane subscriber: local messages from the memory hub, remote ones
//! (and gap signals) from its remote queue, merged into one stream.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use switchyard_core::{
    Delivery, Error, Result, Subscriber, SubscriberStats, TopicFilter, async_trait,
};

use crate::registry::{Item, Registry, RemoteQueue};

/// Deregisters a subscriber from the registry when dropped.
pub(crate) struct Registration {
    pub(crate) registry: Arc<Registry>,
    pub(crate) id: u64,
    pub(crate) filter: TopicFilter,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.deregister(self.id, &self.filter);
    }
}

/// The subscriber handed to applications.
pub(crate) struct PubSubSubscriber {
    /// Messages published on this transport (the memory hub); `None` once ended.
    local: Option<Box<dyn Subscriber>>,
    /// Messages from other replicas and gap signals.
    remote: Arc<RemoteQueue>,
    _registration: Registration,
    /// Alternates which source is polled first, so neither starves.
    remote_first: bool,
    ended: bool,
    received: u64,
    lost: u64,
    local_dropped: u64,
}

impl PubSubSubscriber {
    pub(crate) fn new(
        local: Box<dyn Subscriber>,
        remote: Arc<RemoteQueue>,
        registration: Registration,
    ) -> Self {
        PubSubSubscriber {
            local: Some(local),
            remote,
            _registration: registration,
            remote_first: false,
            ended: false,
            received: 0,
            lost: 0,
            local_dropped: 0,
        }
    }

    fn poll_remote(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        match self.remote.poll_pop(cx) {
            Poll::Ready(Some(Item::Message(m))) => {
                self.received += 1;
                // The last queue to take a message (the only one, with one
                // subscriber) takes it whole: no copy of its headers.
                let (message, id) = match Arc::try_unwrap(m) {
                    Ok(m) => (m.message, m.id),
                    Err(m) => (m.message.clone(), m.id),
                };
                Poll::Ready(Some(Ok(Delivery::new(message, id, 1, None))))
            }
            Poll::Ready(Some(Item::Lost {
                origin,
                from,
                to,
                gap,
            })) => {
                // Only what was lost in transit: messages this subscriber's
                // overflow policy dropped are already in `dropped`.
                self.lost = self.lost.saturating_add(gap);
                Poll::Ready(Some(Err(Error::Lost { origin, from, to })))
            }
            // The queue ends only when the transport closes or is dropped.
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_local(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        let Some(local) = self.local.as_mut() else {
            return Poll::Pending;
        };
        match local.poll_recv(cx) {
            // An `Err(Lost)` from the hub reports local messages this
            // subscriber's full `Block` buffer dropped: already counted in
            // the hub subscriber's `dropped`, so not in `lost`.
            Poll::Ready(Some(item)) => {
                if item.is_ok() {
                    self.received += 1;
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.local_dropped = local.stats().dropped;
                self.local = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn end(&mut self) -> Poll<Option<Result<Delivery>>> {
        self.ended = true;
        if let Some(local) = self.local.take() {
            self.local_dropped = local.stats().dropped;
        }
        Poll::Ready(None)
    }
}

#[async_trait]
impl Subscriber for PubSubSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.remote_first = !self.remote_first;
        let first = if self.remote_first {
            self.poll_remote(cx)
        } else {
            self.poll_local(cx)
        };
        match first {
            Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
            Poll::Ready(None) => return self.end(),
            Poll::Pending => {}
        }
        let second = if self.remote_first {
            self.poll_local(cx)
        } else {
            self.poll_remote(cx)
        };
        match second {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Ready(None) => self.end(),
            Poll::Pending => Poll::Pending,
        }
    }

    /// `received`: messages handed over (local and remote). `dropped`:
    /// messages its overflow policy dropped (local hub and remote queue),
    /// including those reported under `Block` as a gap signal in their
    /// place. `lost`: messages of other replicas lost in transit, as
    /// reported by the gap signals taken so far. Each message counts in
    /// one of them at most; all saturate at `u64::MAX`.
    fn stats(&self) -> SubscriberStats {
        let mut s = SubscriberStats::default();
        s.received = self.received;
        s.lost = self.lost;
        let local_dropped = match &self.local {
            Some(local) => local.stats().dropped,
            None => self.local_dropped,
        };
        s.dropped = local_dropped.saturating_add(self.remote.dropped.load(Ordering::Relaxed));
        // Two buffers of the subscription's size: this replica's messages
        // (the memory hub) and the other replicas'.
        let (local_buffered, local_capacity) = self.local.as_ref().map_or((0, 0), |l| {
            let st = l.stats();
            (st.buffered, st.capacity)
        });
        s.buffered = local_buffered.saturating_add(self.remote.len() as u64);
        s.capacity = local_capacity.saturating_mul(2);
        s
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.remote.close();
        if let Some(local) = self.local.take() {
            local.close().await?;
        }
        Ok(())
    }
}
