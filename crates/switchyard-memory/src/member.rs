//! Group member subscribers and the acknowledger of their deliveries.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};

use switchyard_core::{
    Acknowledger, Delivery, Error, MessageId, Result, Retry, Subscriber, SubscriberStats,
    async_trait,
};
use tokio::time::Instant;

use crate::group::{DeadLetter, MemberShared, NackOutcome};
use crate::hub::Hub;
use crate::topic_log::{TopicInner, TopicState};
use crate::wake::Wakers;

/// Settles deliveries of one member on one topic. One per attachment, shared
/// by every delivery from there (no allocation per delivery).
pub(crate) struct GroupAcker {
    member: Arc<MemberShared>,
    topic: Weak<TopicState>,
    group: usize,
    hub: Weak<Hub>,
}

impl GroupAcker {
    /// Runs `f` on the group under the topic lock, then wakes and
    /// dead-letters what it asked for, outside the lock.
    fn with_group<R>(
        &self,
        f: impl FnOnce(&mut crate::group::GroupState, u64, &mut Wakers) -> (R, Option<DeadLetter>),
    ) -> Option<R> {
        let topic = self.topic.upgrade()?;
        let mut wakers = Wakers::new();
        let (r, dead) = {
            let mut inner = topic.inner.lock();
            let log_end = inner.next_seq;
            let group = inner.groups.get_mut(self.group)?;
            f(group, log_end, &mut wakers)
        };
        wakers.wake_all();
        if let Some(dead) = dead
            && let Some(hub) = self.hub.upgrade()
        {
            hub.dead_letter(dead);
        }
        Some(r)
    }

    fn settle_nack(&self, delivery: &Delivery, retry: &Retry) {
        let seq = delivery.id().seq;
        let attempt = delivery.attempt();
        let now = Instant::now();
        self.with_group(|g, log_end, wakers| {
            match g.nack(seq, &self.member, attempt, retry, now, log_end, wakers) {
                NackOutcome::Dead(d) => ((), Some(d)),
                NackOutcome::Requeued => ((), None),
                NackOutcome::Stale => {
                    tracing::debug!(
                        seq,
                        attempt,
                        "nack of a delivery this member no longer holds: ignored"
                    );
                    ((), None)
                }
            }
        });
    }
}

#[async_trait]
impl Acknowledger for GroupAcker {
    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let seq = delivery.id().seq;
        self.member.acked.fetch_add(1, Ordering::Relaxed);
        self.with_group(|g, _, wakers| (g.ack(seq, wakers), None));
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, retry: Retry) -> Result<()> {
        self.member.nacked.fetch_add(1, Ordering::Relaxed);
        self.settle_nack(delivery, &retry);
        Ok(())
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<()> {
        if self.member.is_closed() {
            return Err(Error::Closed);
        }
        let seq = delivery.id().seq;
        let attempt = delivery.attempt();
        let now = Instant::now();
        self.with_group(|g, _, _| (g.progress(seq, &self.member, attempt, now), None));
        Ok(())
    }

    fn abandon(&self, delivery: &Delivery) {
        self.settle_nack(delivery, &Retry::Now);
    }
}

/// A cached attachment: the topic, the group's index there, the acker.
struct Attached {
    topic: Arc<TopicState>,
    group: usize,
    acker: Arc<dyn Acknowledger>,
}

/// A member of a consumer group.
pub(crate) struct MemberSubscriber {
    shared: Arc<MemberShared>,
    hub: Arc<Hub>,
    attached: Vec<Attached>,
    seen_version: u64,
    next: usize,
    received: u64,
    redelivered: u64,
}

impl MemberSubscriber {
    pub(crate) fn new(shared: Arc<MemberShared>, hub: Arc<Hub>) -> Self {
        let mut sub = MemberSubscriber {
            shared,
            hub,
            attached: Vec::new(),
            seen_version: u64::MAX,
            next: 0,
            received: 0,
            redelivered: 0,
        };
        sub.refresh();
        sub
    }

    /// Picks up topics attached since the last look (pattern subscriptions).
    fn refresh(&mut self) {
        let version = self.shared.topics_version();
        if version == self.seen_version {
            return;
        }
        self.seen_version = version;
        let known = self.attached.len();
        let mut index = 0;
        let mut fresh = Vec::new();
        self.shared.for_each_topic(|a| {
            if index >= known
                && let Some(topic) = a.topic.upgrade()
            {
                fresh.push((topic, a.group));
            }
            index += 1;
        });
        for (topic, group) in fresh {
            let acker: Arc<dyn Acknowledger> = Arc::new(GroupAcker {
                member: self.shared.clone(),
                topic: Arc::downgrade(&topic),
                group,
                hub: Arc::downgrade(&self.hub),
            });
            self.attached.push(Attached {
                topic,
                group,
                acker,
            });
        }
    }

    fn try_take(&mut self) -> Option<Delivery> {
        let n = self.attached.len();
        if n == 0 || self.shared.at_limit() {
            return None;
        }
        let now = Instant::now();
        let mut dead = Vec::new();
        let mut wakers = Wakers::new();
        let mut out = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            let a = &self.attached[i];
            let got = {
                let mut inner = a.topic.inner.lock();
                a.topic.expire(&mut inner);
                let TopicInner {
                    log,
                    next_seq,
                    groups,
                    ..
                } = &mut *inner;
                match groups.get_mut(a.group) {
                    Some(g) => g.take(log, *next_seq, &self.shared, now, &mut dead, &mut wakers),
                    None => None,
                }
            };
            if let Some((entry, attempt)) = got {
                self.next = (i + 1) % n;
                out = Some(Delivery::new(
                    entry.message.clone(),
                    MessageId::from_seq(entry.seq),
                    attempt,
                    Some(a.acker.clone()),
                ));
                break;
            }
        }
        wakers.wake_all();
        for d in dead {
            self.hub.dead_letter(d);
        }
        if let Some(d) = &out {
            self.received += 1;
            if d.attempt() > 1 {
                self.redelivered += 1;
            }
        }
        out
    }
}

#[async_trait]
impl Subscriber for MemberSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        if self.shared.is_closed() {
            return Poll::Ready(None);
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        // A flag left from an earlier wait must not attract wake-ups meant
        // for members that really wait.
        self.shared.stop_waiting();
        self.refresh();
        if let Some(d) = self.try_take() {
            coop.made_progress();
            return Poll::Ready(Some(Ok(d)));
        }
        self.shared.start_waiting(cx.waker());
        self.refresh();
        if let Some(d) = self.try_take() {
            self.shared.stop_waiting();
            coop.made_progress();
            return Poll::Ready(Some(Ok(d)));
        }
        if self.shared.is_closed() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    fn stats(&self) -> SubscriberStats {
        let mut s = SubscriberStats::default();
        s.received = self.received;
        s.redelivered = self.redelivered;
        s.acked = self.shared.acked.load(Ordering::Relaxed);
        s.nacked = self.shared.nacked.load(Ordering::Relaxed);
        s.dead_lettered = self.shared.dead_lettered.load(Ordering::Relaxed);
        s.lost_to_retention = self.shared.lost_to_retention.load(Ordering::Relaxed);
        // No local buffer: what the groups could hand out now.
        s.buffered = self
            .attached
            .iter()
            .map(|a| {
                let inner = a.topic.inner.lock();
                inner
                    .groups
                    .get(a.group)
                    .map_or(0, |g| g.ready(inner.log.len(), inner.next_seq))
            })
            .sum::<usize>() as u64;
        s
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.shared.shutdown();
        Ok(())
    }
}

impl Drop for MemberSubscriber {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}
