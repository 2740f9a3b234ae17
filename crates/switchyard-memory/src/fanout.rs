//! Fan-out subscribers: every subscriber gets every message of its topics.
//!
//! Each subscriber owns a bounded queue (a `parking_lot` mutex around a
//! `VecDeque` of shared entries plus the consumer's waker). Publishers push
//! into it under the topic lock, so the messages of one topic arrive in
//! publish order. With [`Overflow::Block`] the publisher first reserves a
//! slot (an atomic fill counter); when the queue is full it waits on the
//! queue's `Notify` without holding any lock, then tries again. The drop
//! policies never wait and count what they drop.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker, ready};

use parking_lot::Mutex;
use switchyard_core::{
    Delivery, MessageId, Overflow, Result, Subscriber, SubscriberStats, async_trait,
};
use tokio::sync::Notify;

use crate::hub::Hub;
use crate::topic_log::{Entry, TopicState};
use crate::wake::Wakers;

struct QueueState {
    items: VecDeque<Arc<Entry>>,
    waker: Option<Waker>,
    closed: bool,
}

/// The part of a fan-out subscriber that publishers see.
pub(crate) struct FanoutShared {
    cap: usize,
    policy: Overflow,
    /// `Block` only: queued plus reserved entries.
    fill: AtomicUsize,
    state: Mutex<QueueState>,
    /// Publishers waiting for room.
    space: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
    /// Topics this subscriber is attached to (to detach on close).
    topics: Mutex<Vec<Weak<TopicState>>>,
    /// The back-pressure warning (`Subscription::buffer_warning`).
    watch: Option<switchyard_core::BufferWatch>,
}

impl FanoutShared {
    pub(crate) fn new(cap: usize, policy: Overflow) -> Self {
        FanoutShared {
            cap: cap.max(1),
            policy,
            fill: AtomicUsize::new(0),
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                waker: None,
                closed: false,
            }),
            space: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            topics: Mutex::new(Vec::new()),
            watch: None,
        }
    }

    /// Warns through `watch` while the queue stays full.
    pub(crate) fn with_watch(mut self, watch: switchyard_core::BufferWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Items queued now, and the capacity.
    pub(crate) fn fill(&self) -> (usize, usize) {
        (self.state.lock().items.len(), self.cap)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether publishers wait for room (lossless policy).
    pub(crate) fn blocks(&self) -> bool {
        !matches!(self.policy, Overflow::DropOldest | Overflow::DropNewest)
    }

    /// Reserves a slot; false when full (a closed queue always has room).
    pub(crate) fn try_reserve(&self, force: bool) -> bool {
        if force || self.is_closed() {
            self.fill.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.fill
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                (f < self.cap).then_some(f + 1)
            })
            .is_ok()
    }

    /// Gives back a reserved or consumed slot, waking waiting publishers
    /// when the queue stops being full.
    pub(crate) fn unreserve(&self) {
        self.release(1);
    }

    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let prev = self.fill.fetch_sub(n, Ordering::AcqRel);
        if prev >= self.cap {
            self.space.notify_waiters();
        }
    }

    fn has_room(&self) -> bool {
        self.fill.load(Ordering::Acquire) < self.cap
    }

    /// Queues `entry` (a `Block` slot must have been reserved). Returns false
    /// when the subscriber is closed.
    pub(crate) fn push(&self, entry: &Arc<Entry>, wakers: &mut Wakers) -> bool {
        let mut q = self.state.lock();
        if q.closed {
            return false;
        }
        match self.policy {
            Overflow::DropOldest => {
                if q.items.len() >= self.cap {
                    q.items.pop_front();
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                q.items.push_back(entry.clone());
            }
            Overflow::DropNewest => {
                if q.items.len() >= self.cap {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                q.items.push_back(entry.clone());
            }
            _ => q.items.push_back(entry.clone()),
        }
        let len = q.items.len();
        wakers.push_opt(q.waker.take());
        drop(q);
        if let Some(watch) = &self.watch {
            watch.observe(len);
        }
        true
    }

    /// Waits until the queue has room or is closed. Registers before
    /// checking, so a slot freed in between is not missed.
    pub(crate) async fn wait_for_room(&self) {
        let mut notified = pin!(self.space.notified());
        notified.as_mut().enable();
        if self.has_room() || self.is_closed() {
            return;
        }
        notified.await;
    }

    /// Remembers a topic this subscriber is attached to.
    pub(crate) fn attached(&self, topic: &Arc<TopicState>) {
        self.topics.lock().push(Arc::downgrade(topic));
    }

    /// Takes the next entry. `Block` queues hand over everything queued at
    /// once into `local` (one lock per batch, not per message). Their slots
    /// are given back when the batch is used up, or at once while the queue
    /// is full, so a waiting publisher never waits for more than the bound.
    fn poll_pop(&self, local: &mut LocalBatch, cx: &mut Context<'_>) -> Poll<Option<Arc<Entry>>> {
        if let Some(entry) = local.take(self) {
            return Poll::Ready(Some(entry));
        }
        let mut q = self.state.lock();
        if self.blocks() && !q.items.is_empty() {
            std::mem::swap(&mut q.items, &mut local.items);
            drop(q);
            return Poll::Ready(local.take(self));
        }
        if let Some(entry) = q.items.pop_front() {
            return Poll::Ready(Some(entry));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        match &q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Closes the queue: drops what it holds, ends the consumer, releases
    /// waiting publishers and detaches from every topic.
    pub(crate) fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let (items, waker) = {
            let mut q = self.state.lock();
            q.closed = true;
            (std::mem::take(&mut q.items), q.waker.take())
        };
        drop(items);
        if let Some(w) = waker {
            w.wake();
        }
        self.space.notify_waiters();
        let topics = std::mem::take(&mut *self.topics.lock());
        for topic in topics.iter().filter_map(Weak::upgrade) {
            topic
                .inner
                .lock()
                .fanout
                .retain(|l| !std::ptr::eq(Arc::as_ptr(&l.sub), self));
        }
    }
}

/// Entries a `Block` subscriber took from its queue in one batch, and how
/// many delivered ones still hold a slot.
#[derive(Default)]
struct LocalBatch {
    items: VecDeque<Arc<Entry>>,
    unreleased: usize,
}

impl LocalBatch {
    fn take(&mut self, queue: &FanoutShared) -> Option<Arc<Entry>> {
        let entry = self.items.pop_front()?;
        self.unreleased += 1;
        if self.items.is_empty() || queue.fill.load(Ordering::Acquire) >= queue.cap {
            queue.release(std::mem::take(&mut self.unreleased));
        }
        Some(entry)
    }
}

/// A fan-out subscriber.
pub(crate) struct FanoutSubscriber {
    shared: Arc<FanoutShared>,
    /// Retained messages selected by `Start` at subscribe time; handed out
    /// before the live queue.
    backlog: VecDeque<Arc<Entry>>,
    /// Entries taken from the shared queue in one batch (`Block` only).
    local: LocalBatch,
    received: u64,
    /// Keeps the hub alive while subscribed.
    _hub: Arc<Hub>,
}

impl FanoutSubscriber {
    pub(crate) fn new(shared: Arc<FanoutShared>, backlog: Vec<Arc<Entry>>, hub: Arc<Hub>) -> Self {
        FanoutSubscriber {
            shared,
            backlog: backlog.into(),
            local: LocalBatch::default(),
            received: 0,
            _hub: hub,
        }
    }

    fn deliver(&mut self, entry: &Entry) -> Delivery {
        self.received += 1;
        Delivery::new(
            entry.message.clone(),
            MessageId::from_seq(entry.seq),
            1,
            None,
        )
    }
}

#[async_trait]
impl Subscriber for FanoutSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        if self.shared.is_closed() {
            return Poll::Ready(None);
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let entry = match self.backlog.pop_front() {
            Some(e) => e,
            None => match ready!(self.shared.poll_pop(&mut self.local, cx)) {
                Some(e) => e,
                None => return Poll::Ready(None),
            },
        };
        coop.made_progress();
        Poll::Ready(Some(Ok(self.deliver(&entry))))
    }

    fn stats(&self) -> SubscriberStats {
        let mut s = SubscriberStats::default();
        s.received = self.received;
        s.dropped = self.shared.dropped.load(Ordering::Relaxed);
        let (buffered, capacity) = self.shared.fill();
        // Also what this subscriber took out of the queue in one batch, and
        // the retained messages `Start` selected.
        let held = self.local.items.len() + self.backlog.len();
        s.buffered = (buffered + held) as u64;
        s.capacity = capacity as u64;
        s
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.shared.shutdown();
        Ok(())
    }
}

impl Drop for FanoutSubscriber {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}
