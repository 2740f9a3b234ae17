//! Fan-out subscribers: every subscriber gets every message of its topics.
//!
//! Each subscriber owns a bounded queue (a `parking_lot` mutex around a
//! `VecDeque` of shared entries plus the consumer's waker). Publishers push
//! into it under the topic lock, so the messages of one topic arrive in
//! publish order. With [`Overflow::Block`] the publisher first reserves a
//! slot (an atomic fill counter); when the queue is full it waits on the
//! queue's `Notify` without holding any lock, then tries again. The drop
//! policies never wait and count what they drop.
//!
//! A `Block` subscriber made with a gap origin (see
//! [`MemoryTransport::subscribe_never_blocking`](crate::MemoryTransport::subscribe_never_blocking),
//! used by the Redis Pub/Sub backplane) never makes a publisher wait: when
//! full it drops the new message, counts it and queues a gap signal in its
//! place (consecutive drops of one topic widen one signal).
//!
//! The queue holds bare `Arc<Entry>` pointers (8 bytes each); the rare gap
//! signals wait in a side queue, each marked with the position among the
//! entries where it belongs.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker, ready};

use parking_lot::Mutex;
use switchyard_core::{
    Delivery, Error, MessageId, Overflow, Result, Subscriber, SubscriberStats, Topic, async_trait,
};
use tokio::sync::Notify;

use crate::hub::Hub;
use crate::topic_log::{Entry, TopicState};
use crate::wake::Wakers;

/// What a fan-out queue hands to its consumer.
pub(crate) enum Queued {
    /// A message.
    Entry(Arc<Entry>),
    /// Messages the full queue had no room for (gap-signalling `Block`
    /// subscribers only).
    Gap(Gap),
}

/// Messages `from..=to` of `topic` (sequence numbers, also the message ids)
/// that a full gap-signalling subscriber dropped.
pub(crate) struct Gap {
    topic: Topic,
    from: u64,
    to: u64,
}

struct QueueState {
    items: VecDeque<Arc<Entry>>,
    /// Position (counting every entry ever queued) of `items[0]`.
    head: u64,
    /// Gap signals (gap-signalling subscribers only, at most `cap`), each
    /// with the position of the entry it comes before.
    gaps: VecDeque<(u64, Gap)>,
    waker: Option<Waker>,
    closed: bool,
}

impl QueueState {
    fn messages(&self) -> usize {
        self.items.len()
    }

    /// Position of the next entry to be queued.
    fn tail(&self) -> u64 {
        self.head + self.items.len() as u64
    }
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
    /// Set for a `Block` subscriber that never makes publishers wait: the
    /// `origin` of its gap signals is `"{gap_origin}/{topic}"`.
    gap_origin: Option<Arc<str>>,
}

impl FanoutShared {
    pub(crate) fn new(cap: usize, policy: Overflow) -> Self {
        FanoutShared {
            cap: cap.max(1),
            policy,
            fill: AtomicUsize::new(0),
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                head: 0,
                gaps: VecDeque::new(),
                waker: None,
                closed: false,
            }),
            space: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            topics: Mutex::new(Vec::new()),
            watch: None,
            gap_origin: None,
        }
    }

    /// Makes a `Block` subscriber never make publishers wait: a message that
    /// finds it full is dropped, counted in `dropped` and reported in its
    /// place as an `Error::Lost` whose origin is `"{origin}/{topic}"`. No
    /// effect on the drop policies.
    pub(crate) fn with_gap_signals(mut self, origin: &str) -> Self {
        if !matches!(self.policy, Overflow::DropOldest | Overflow::DropNewest) {
            self.gap_origin = Some(origin.into());
        }
        self
    }

    /// Warns through `watch` while the queue stays full.
    pub(crate) fn with_watch(mut self, watch: switchyard_core::BufferWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Items queued now, and the capacity.
    pub(crate) fn fill(&self) -> (usize, usize) {
        (self.state.lock().messages(), self.cap)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether publishers wait for room (lossless policy).
    pub(crate) fn blocks(&self) -> bool {
        self.gap_origin.is_none()
            && !matches!(self.policy, Overflow::DropOldest | Overflow::DropNewest)
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
                    q.head += 1;
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
            _ if self.gap_origin.is_some() && q.messages() >= self.cap => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if self.signal_gap(&mut q, entry) {
                    wakers.push_opt(q.waker.take());
                }
                return true;
            }
            _ => q.items.push_back(entry.clone()),
        }
        let len = q.messages();
        wakers.push_opt(q.waker.take());
        drop(q);
        if let Some(watch) = &self.watch {
            watch.observe(len);
        }
        true
    }

    /// Reports `entry`, dropped by a full gap-signalling subscriber: widens
    /// the signal of its topic that ends right before it among the signals
    /// at the back of the queue (behind the last message), or queues a new
    /// one. Returns whether a new one was queued. At most `cap` signals wait
    /// at once; beyond that the drop is only counted.
    fn signal_gap(&self, q: &mut QueueState, entry: &Entry) -> bool {
        let (topic, seq) = (&entry.message.topic, entry.seq);
        let tail = q.tail();
        let mut widened = false;
        for (at, g) in q.gaps.iter_mut().rev() {
            if *at != tail {
                break;
            }
            if g.topic == *topic && g.to.checked_add(1) == Some(seq) {
                g.to = seq;
                widened = true;
                break;
            }
        }
        if widened || q.gaps.len() >= self.cap {
            return false;
        }
        q.gaps.push_back((
            tail,
            Gap {
                topic: topic.clone(),
                from: seq,
                to: seq,
            },
        ));
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
    fn poll_pop(&self, local: &mut LocalBatch, cx: &mut Context<'_>) -> Poll<Option<Queued>> {
        if let Some(entry) = local.take(self) {
            return Poll::Ready(Some(entry));
        }
        let mut q = self.state.lock();
        if self.blocks() && !q.items.is_empty() {
            // Gap signals never wait in the queue of a blocking subscriber.
            q.head += q.items.len() as u64;
            std::mem::swap(&mut q.items, &mut local.items);
            drop(q);
            return Poll::Ready(local.take(self));
        }
        if q.gaps.front().is_some_and(|(at, _)| *at == q.head)
            && let Some((_, gap)) = q.gaps.pop_front()
        {
            return Poll::Ready(Some(Queued::Gap(gap)));
        }
        if let Some(entry) = q.items.pop_front() {
            q.head += 1;
            return Poll::Ready(Some(Queued::Entry(entry)));
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
            q.gaps.clear();
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
    fn take(&mut self, queue: &FanoutShared) -> Option<Queued> {
        let entry = self.items.pop_front()?;
        self.unreleased += 1;
        if self.items.is_empty() || queue.fill.load(Ordering::Acquire) >= queue.cap {
            queue.release(std::mem::take(&mut self.unreleased));
        }
        Some(Queued::Entry(entry))
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
                Some(Queued::Entry(e)) => e,
                Some(Queued::Gap(gap)) => {
                    coop.made_progress();
                    let origin = self.shared.gap_origin.as_deref().unwrap_or("memory");
                    return Poll::Ready(Some(Err(Error::Lost {
                        origin: format!("{origin}/{}", gap.topic),
                        from: gap.from,
                        to: gap.to,
                    })));
                }
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
