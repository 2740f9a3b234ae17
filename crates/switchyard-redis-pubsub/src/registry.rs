//! Local subscribers fed from Redis: their bounded queues, the index from
//! topic to queue, and the reference-counted channels and patterns the
//! subscribing connection must hold.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use switchyard_core::{Error, Message, MessageId, Overflow, Pattern, Result, Topic, TopicFilter};
use tokio::sync::Notify;

use crate::config::channel_name;
pub(crate) use crate::glob::pattern_glob;
use crate::partition::Partitions;
use crate::receiver::{is_lost_origin, lost_origin};
use crate::stats::add;

/// A message from another replica, shared by every queue it is pushed to
/// (the `Delivery` is built when the subscriber takes it).
#[derive(Debug)]
pub(crate) struct RemoteMessage {
    pub(crate) message: Message,
    pub(crate) id: MessageId,
    /// The sending replica's instance id.
    pub(crate) origin: u64,
}

/// One item of a remote queue.
#[derive(Debug)]
pub(crate) enum Item {
    Message(Arc<RemoteMessage>),
    /// Messages `from..=to` of `origin` were not delivered. `gap` of them
    /// were lost in transit (gap detection, counted in the subscriber's
    /// `lost` when it takes the item); the others were dropped by this
    /// queue's overflow policy (counted in `dropped` when dropped).
    Lost {
        origin: String,
        from: u64,
        to: u64,
        gap: u64,
    },
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Item>,
    messages: usize,
    lost_items: usize,
    waker: Option<Waker>,
    /// The receiving loop, waiting for room (see [`RemoteQueue::poll_room`]).
    room_waker: Option<Waker>,
    /// Messages taken so far (progress, for the waiting receiving loop).
    taken: u64,
    /// The receiving loop waited its whole bound for room and gave up: full
    /// pushes drop at once until the queue has drained to its low-water
    /// mark.
    stalled: bool,
    closed: bool,
}

/// What [`RemoteQueue::try_push`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued (under `DropOldest` perhaps in place of an older one, which
    /// is then counted in `dropped`).
    Queued,
    /// Not queued, counted in `dropped` (and under `Block` reported as a
    /// gap signal).
    Dropped,
    /// Not queued and not counted: the queue (`Block`, not stalled) is
    /// full and the caller may wait for room ([`RemoteQueue::poll_room`])
    /// and try again, or give up with [`RemoteQueue::stall`].
    Full,
}

/// The bounded queue of remote input of one local subscriber. Pushing never
/// waits: when full, `DropOldest` drops the oldest message and every other
/// policy (including `Block`) drops the new one; either way it is counted
/// in `dropped`. Under `Block`, which promised not to lose anything, the
/// dropped messages are also reported to the subscriber as a gap signal in
/// their place, which does not count them again.
///
/// Under `Block` the receiving loop may instead be told the queue is full
/// ([`Pushed::Full`]) and wait, a bounded time, for the subscriber to make
/// room ([`poll_room`](Self::poll_room): half the buffer free); if it gives
/// up ([`stall`](Self::stall)), full pushes drop at once until the queue
/// has drained to half, so a stuck subscriber costs one wait, not one per
/// message.
///
/// Every message is counted once: in `dropped` when the overflow policy
/// (or the bound on waiting gap signals) dropped it, in the subscriber's
/// `lost` when a gap signal for it (from gap detection) was taken.
#[derive(Debug)]
pub(crate) struct RemoteQueue {
    cap: usize,
    drop_oldest: bool,
    report_drops: bool,
    state: Mutex<QueueState>,
    pub(crate) dropped: AtomicU64,
}

impl RemoteQueue {
    pub(crate) fn new(cap: usize, overflow: Overflow) -> Self {
        RemoteQueue {
            cap: cap.max(1),
            drop_oldest: overflow == Overflow::DropOldest,
            report_drops: overflow == Overflow::Block,
            state: Mutex::new(QueueState::default()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a message; returns false when it (or an older one) was dropped.
    pub(crate) fn push(&self, msg: &Arc<RemoteMessage>) -> bool {
        self.try_push(msg, false) == Pushed::Queued
    }

    /// The low-water mark: a full queue has room again (for a waiting
    /// receiving loop, and no longer counts as stalled) once it holds at
    /// most this many messages.
    fn low_water(&self) -> usize {
        self.cap / 2
    }

    /// Queues a message. With `may_wait`, a full `Block` queue that is not
    /// stalled answers [`Pushed::Full`] instead of dropping.
    pub(crate) fn try_push(&self, msg: &Arc<RemoteMessage>, may_wait: bool) -> Pushed {
        let mut kept = Pushed::Queued;
        let waker = {
            let mut q = self.state.lock();
            if q.closed {
                return Pushed::Dropped;
            }
            if q.messages >= self.cap {
                if may_wait && self.report_drops && !q.stalled {
                    return Pushed::Full;
                }
                kept = Pushed::Dropped;
                if !self.drop_oldest {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    if !self.report_drops {
                        return Pushed::Dropped;
                    }
                    let (topic, seq) = (msg.message.topic.as_str(), msg.id.seq);
                    // Most drops come in runs: widen the signal just queued
                    // without building its origin string again.
                    if let Some(Item::Lost {
                        origin, from, to, ..
                    }) = q.items.back_mut()
                        && is_lost_origin(origin, msg.origin, topic)
                        && (*from..=to.saturating_add(1)).contains(&seq)
                    {
                        *to = (*to).max(seq);
                        return Pushed::Dropped;
                    }
                    if !self.lost_locked(&mut q, &lost_origin(msg.origin, topic), seq, seq, 0) {
                        return Pushed::Dropped;
                    }
                    let waker = q.waker.take();
                    drop(q);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return Pushed::Dropped;
                }
                if let Some(i) = q.items.iter().position(|it| matches!(it, Item::Message(_))) {
                    q.items.remove(i);
                    q.messages -= 1;
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.items.push_back(Item::Message(msg.clone()));
            q.messages += 1;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        kept
    }

    /// Queues a gap signal for messages `from..=to` lost in transit. Gap
    /// signals do not count against the message capacity; at most `cap` of
    /// them wait at once, beyond that a new one is merged into the last
    /// waiting signal of the same origin (widening its range) or, if there
    /// is none, dropped, its messages counted in `dropped`.
    pub(crate) fn push_lost(&self, origin: &str, from: u64, to: u64) {
        let gap = to.saturating_sub(from).saturating_add(1);
        let waker = {
            let mut q = self.state.lock();
            if q.closed || !self.lost_locked(&mut q, origin, from, to, gap) {
                return;
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues a gap signal while the lock is held; returns whether a new
    /// item was queued. `gap` of its messages were lost in transit (the
    /// rest were already counted as dropped). A range right after the last
    /// item's (same origin) widens that item instead.
    fn lost_locked(&self, q: &mut QueueState, origin: &str, from: u64, to: u64, gap: u64) -> bool {
        if let Some(Item::Lost {
            origin: o,
            from: f,
            to: t,
            gap: g,
        }) = q.items.back_mut()
            && o == origin
            && from >= *f
            && from <= t.saturating_add(1)
        {
            *t = (*t).max(to);
            *g = g.saturating_add(gap);
            return false;
        }
        if q.lost_items >= self.cap {
            let merged = q.items.iter_mut().rev().find_map(|it| match it {
                Item::Lost {
                    origin: o,
                    from: f,
                    to: t,
                    gap: g,
                } if o == origin => {
                    *f = (*f).min(from);
                    *t = (*t).max(to);
                    *g = g.saturating_add(gap);
                    Some(())
                }
                _ => None,
            });
            if merged.is_none() {
                // Neither delivered nor reported: dropped.
                add(&self.dropped, gap);
            }
            return false;
        }
        q.items.push_back(Item::Lost {
            origin: origin.to_owned(),
            from,
            to,
            gap,
        });
        q.lost_items += 1;
        true
    }

    /// Ready once the queue has room again (at most half full) or is
    /// closed; else the receiving loop is woken when it has.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.state.lock();
        if q.closed || q.messages <= self.low_water() {
            return Poll::Ready(());
        }
        match &q.room_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.room_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Messages the subscriber has taken so far (wrapping).
    pub(crate) fn taken(&self) -> u64 {
        self.state.lock().taken
    }

    /// The receiving loop waited its bound for room in vain: until the
    /// queue has drained to half, full pushes drop (and report) at once.
    pub(crate) fn stall(&self) {
        let mut q = self.state.lock();
        q.stalled = true;
        q.room_waker = None;
    }

    /// The next item; `Ready(None)` once closed and empty.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut q = self.state.lock();
        if let Some(item) = q.items.pop_front() {
            match item {
                Item::Message(_) => {
                    q.messages -= 1;
                    q.taken = q.taken.wrapping_add(1);
                    if q.messages <= self.low_water() {
                        q.stalled = false;
                        if let Some(w) = q.room_waker.take() {
                            drop(q);
                            w.wake();
                        }
                    }
                }
                Item::Lost { .. } => q.lost_items -= 1,
            }
            return Poll::Ready(Some(item));
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

    /// Ends the queue: drops what it holds and wakes the consumer.
    pub(crate) fn close(&self) {
        let waker = {
            let mut q = self.state.lock();
            q.closed = true;
            q.items.clear();
            q.messages = 0;
            q.lost_items = 0;
            (q.waker.take(), q.room_waker.take())
        };
        for w in [waker.0, waker.1].into_iter().flatten() {
            w.wake();
        }
    }

    /// Number of queued messages (not counting gap signals).
    pub(crate) fn len(&self) -> usize {
        self.state.lock().messages
    }
}

/// What the subscribing connection should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    pub(crate) channels: HashSet<String>,
    pub(crate) globs: HashSet<String>,
    pub(crate) version: u64,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    exact: HashMap<Topic, Vec<(u64, Arc<RemoteQueue>)>>,
    patterns: Vec<(u64, Pattern, Arc<RemoteQueue>)>,
    channels: HashMap<String, usize>,
    globs: HashMap<String, usize>,
    version: u64,
    closed: bool,
}

/// Every local subscriber fed from Redis.
pub(crate) struct Registry {
    namespace: String,
    /// On a Redis Cluster: the partitions a topic maps onto. A topic then
    /// holds its partition's channel and a pattern every partition's
    /// channel (no glob).
    partitions: Option<Arc<Partitions>>,
    inner: Mutex<Inner>,
    /// Signalled whenever the desired channels or patterns change.
    pub(crate) changed: Notify,
}

impl Registry {
    pub(crate) fn new(namespace: &str, partitions: Option<Arc<Partitions>>) -> Self {
        Registry {
            namespace: namespace.to_owned(),
            partitions,
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        }
    }

    /// The channel a subscription to `topic` holds.
    fn topic_channel(&self, topic: &str) -> String {
        match &self.partitions {
            Some(p) => p.channel_of(topic).to_owned(),
            None => channel_name(&self.namespace, topic),
        }
    }

    /// The channels (`true`) or the glob (`false`) a pattern holds.
    fn pattern_names(&self, p: &Pattern) -> (bool, Vec<String>) {
        match &self.partitions {
            Some(parts) => (true, parts.channels().to_vec()),
            None => (false, vec![pattern_glob(&self.namespace, p)]),
        }
    }

    /// Adds a subscriber; returns its id and the version of the desired set
    /// that includes it.
    pub(crate) fn register(
        &self,
        filter: &TopicFilter,
        queue: Arc<RemoteQueue>,
    ) -> Result<(u64, u64)> {
        let mut g = self.inner.lock();
        if g.closed {
            return Err(Error::Closed);
        }
        g.next_id += 1;
        let id = g.next_id;
        match filter.topics() {
            Some(topics) => {
                for t in topics {
                    g.exact
                        .entry(t.clone())
                        .or_default()
                        .push((id, queue.clone()));
                    *g.channels
                        .entry(self.topic_channel(t.as_str()))
                        .or_default() += 1;
                }
            }
            None => {
                if let TopicFilter::Pattern(p) = filter {
                    g.patterns.push((id, p.clone(), queue.clone()));
                    let (channels, names) = self.pattern_names(p);
                    let held = if channels {
                        &mut g.channels
                    } else {
                        &mut g.globs
                    };
                    for n in names {
                        *held.entry(n).or_default() += 1;
                    }
                }
            }
        }
        g.version += 1;
        let version = g.version;
        drop(g);
        self.changed.notify_one();
        Ok((id, version))
    }

    /// The channels or patterns the subscribing connection holds for
    /// `filter`.
    pub(crate) fn names(&self, filter: &TopicFilter) -> Vec<String> {
        match filter.topics() {
            Some(topics) => {
                let mut names: Vec<String> = topics
                    .iter()
                    .map(|t| self.topic_channel(t.as_str()))
                    .collect();
                names.sort();
                names.dedup();
                names
            }
            None => match filter {
                TopicFilter::Pattern(p) => self.pattern_names(p).1,
                _ => Vec::new(),
            },
        }
    }

    /// Removes a subscriber (idempotent).
    pub(crate) fn deregister(&self, id: u64, filter: &TopicFilter) {
        let mut g = self.inner.lock();
        let mut removed = false;
        match filter.topics() {
            Some(topics) => {
                for t in topics {
                    let Some(list) = g.exact.get_mut(t) else {
                        continue;
                    };
                    let before = list.len();
                    list.retain(|(i, _)| *i != id);
                    if list.len() == before {
                        continue;
                    }
                    removed = true;
                    if list.is_empty() {
                        g.exact.remove(t);
                    }
                    decrement(&mut g.channels, self.topic_channel(t.as_str()));
                }
            }
            None => {
                let before = g.patterns.len();
                g.patterns.retain(|(i, _, _)| *i != id);
                if g.patterns.len() != before {
                    removed = true;
                    if let TopicFilter::Pattern(p) = filter {
                        let (channels, names) = self.pattern_names(p);
                        let held = if channels {
                            &mut g.channels
                        } else {
                            &mut g.globs
                        };
                        for n in names {
                            decrement(held, n);
                        }
                    }
                }
            }
        }
        if removed {
            g.version += 1;
            drop(g);
            self.changed.notify_one();
        }
    }

    /// Appends the queues whose filter matches `topic` to `out`.
    pub(crate) fn matching(&self, topic: &Topic, out: &mut Vec<Arc<RemoteQueue>>) {
        let g = self.inner.lock();
        if let Some(list) = g.exact.get(topic) {
            out.extend(list.iter().map(|(_, q)| q.clone()));
        }
        for (_, p, q) in &g.patterns {
            if p.matches(topic.as_str()) {
                out.push(q.clone());
            }
        }
    }

    /// How many local subscribers' filters match `topic`.
    pub(crate) fn count_matching(&self, topic: &Topic) -> usize {
        let g = self.inner.lock();
        g.exact.get(topic).map_or(0, Vec::len)
            + g.patterns
                .iter()
                .filter(|(_, p, _)| p.matches(topic.as_str()))
                .count()
    }

    /// Whether any subscriber's filter matches `topic`.
    pub(crate) fn has_match(&self, topic: &Topic) -> bool {
        let g = self.inner.lock();
        g.exact.contains_key(topic) || g.patterns.iter().any(|(_, p, _)| p.matches(topic.as_str()))
    }

    /// The channels and patterns wanted now.
    pub(crate) fn desired(&self) -> Desired {
        let g = self.inner.lock();
        Desired {
            channels: g.channels.keys().cloned().collect(),
            globs: g.globs.keys().cloned().collect(),
            version: g.version,
        }
    }

    /// The current version of the desired set.
    pub(crate) fn version(&self) -> u64 {
        self.inner.lock().version
    }

    /// Number of channels and patterns wanted.
    pub(crate) fn subscription_count(&self) -> usize {
        let g = self.inner.lock();
        g.channels.len() + g.globs.len()
    }

    /// Refuses new subscribers and ends every queue.
    pub(crate) fn close_all(&self) {
        let queues: Vec<Arc<RemoteQueue>> = {
            let mut g = self.inner.lock();
            g.closed = true;
            let mut qs: Vec<_> = g
                .exact
                .drain()
                .flat_map(|(_, l)| l.into_iter().map(|(_, q)| q))
                .collect();
            qs.extend(g.patterns.drain(..).map(|(_, _, q)| q));
            g.channels.clear();
            g.globs.clear();
            qs
        };
        for q in queues {
            q.close();
        }
    }
}

fn decrement(map: &mut HashMap<String, usize>, key: String) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
