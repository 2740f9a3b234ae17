//! One topic: its bounded retained log, its live fan-out subscribers and its
//! consumer groups, all behind one mutex.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use switchyard_core::Message;
use tokio::time::Instant;

use crate::fanout::FanoutShared;
use crate::group::GroupState;
use crate::wake::Wakers;

/// A retained message. Shared (never copied) by the log, fan-out queues and
/// group pending sets.
pub(crate) struct Entry {
    /// Sequence number within the topic, from 1.
    pub(crate) seq: u64,
    /// The message as published.
    pub(crate) message: Message,
    /// When it was published; only on topics with an age cap.
    pub(crate) at: Option<Instant>,
}

/// A fan-out subscriber attached to a topic.
pub(crate) struct LiveSub {
    pub(crate) sub: Arc<FanoutShared>,
    /// Messages with a smaller sequence number are not for this subscriber
    /// (`Start::After` beyond the end of the log).
    pub(crate) min_seq: u64,
}

/// The locked part of a topic.
pub(crate) struct TopicInner {
    /// Retained entries, oldest first; `log[i].seq == first_seq() + i`.
    pub(crate) log: VecDeque<Arc<Entry>>,
    /// Sequence number of the next message.
    pub(crate) next_seq: u64,
    /// Attached fan-out subscribers.
    pub(crate) fanout: Vec<LiveSub>,
    /// Consumer groups of this topic. Never removed, so an index into this
    /// vector identifies a group for the life of the topic.
    pub(crate) groups: Vec<GroupState>,
}

impl TopicInner {
    /// Sequence number of the oldest retained entry (`next_seq` when empty).
    pub(crate) fn first_seq(&self) -> u64 {
        self.next_seq - self.log.len() as u64
    }

    /// Retained entries with a sequence number of at least `seq`.
    pub(crate) fn entries_from(&self, seq: u64) -> impl Iterator<Item = &Arc<Entry>> {
        let skip = seq.saturating_sub(self.first_seq());
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.log.iter().skip(skip)
    }

    /// The index of group `name`, if it exists.
    pub(crate) fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| &*g.name == name)
    }
}

/// A topic of a hub.
pub(crate) struct TopicState {
    /// Most entries kept.
    retention: usize,
    /// Entries older than this are dropped (`None`: no age cap).
    max_age: Option<Duration>,
    pub(crate) inner: Mutex<TopicInner>,
}

impl TopicState {
    pub(crate) fn new(retention: usize, max_age: Option<Duration>) -> Self {
        TopicState {
            retention: retention.max(1),
            max_age,
            inner: Mutex::new(TopicInner {
                log: VecDeque::new(),
                next_seq: 1,
                fanout: Vec::new(),
                groups: Vec::new(),
            }),
        }
    }

    /// Appends `message` under the topic lock: reserves room in every
    /// `Block` subscriber first, so the message is either delivered to all
    /// of them or to none. Returns the message with the full subscriber to
    /// wait for when one is full (unless `force`, which overfills instead;
    /// only for dead letters published where nothing can wait).
    pub(crate) fn append_locked(
        &self,
        inner: &mut TopicInner,
        message: Message,
        wakers: &mut Wakers,
        force: bool,
    ) -> Result<u64, (Message, Arc<FanoutShared>)> {
        let seq = inner.next_seq;
        if let Some(full) = reserve_all(&inner.fanout, seq, force) {
            return Err((message, full));
        }
        inner.next_seq += 1;
        let at = self.max_age.map(|_| Instant::now());
        let entry = Arc::new(Entry { seq, message, at });
        if !inner.fanout.is_empty() {
            let mut prune = false;
            for live in &inner.fanout {
                if seq >= live.min_seq && !live.sub.push(&entry, wakers) {
                    prune = true;
                }
            }
            if prune {
                inner.fanout.retain(|l| !l.sub.is_closed());
            }
        }
        for group in &mut inner.groups {
            group.wake_members(1, wakers);
        }
        inner.log.push_back(entry);
        if inner.log.len() > self.retention {
            inner.log.pop_front();
        }
        if let Some(now) = at {
            self.expire_at(inner, now);
        }
        Ok(seq)
    }

    /// Drops the entries older than the topic's age cap, if it has one.
    /// Called before the log is replayed or read by a group, so expired
    /// entries are never handed out from the log.
    pub(crate) fn expire(&self, inner: &mut TopicInner) {
        if self.max_age.is_some() {
            self.expire_at(inner, Instant::now());
        }
    }

    fn expire_at(&self, inner: &mut TopicInner, now: Instant) {
        let Some(age) = self.max_age else {
            return;
        };
        while inner
            .log
            .front()
            .and_then(|e| e.at)
            .is_some_and(|at| now.saturating_duration_since(at) > age)
        {
            inner.log.pop_front();
        }
    }
}

/// Reserves one slot in every `Block` subscriber that takes `seq`; on the
/// first full one, undoes the reservations made and returns it.
fn reserve_all(fanout: &[LiveSub], seq: u64, force: bool) -> Option<Arc<FanoutShared>> {
    for (i, live) in fanout.iter().enumerate() {
        if seq >= live.min_seq && live.sub.blocks() && !live.sub.try_reserve(force) {
            for done in &fanout[..i] {
                if seq >= done.min_seq && done.sub.blocks() {
                    done.sub.unreserve();
                }
            }
            return Some(live.sub.clone());
        }
    }
    None
}
