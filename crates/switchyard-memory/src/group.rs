//! Consumer groups: the per-(topic, group) cursor, pending set and retry
//! queues, and the shared state of a group member.
//!
//! A group does not copy messages into member queues: members pull from the
//! topic's retained log under the topic lock when the application asks
//! (`recv`), so a message is handed to exactly one member at a time and its
//! ack deadline starts at hand-over. A message that comes back (nack,
//! abandon, expired deadline, released member) is queued behind every
//! message published before it came back: it is redelivered once the group
//! has handed those out, before anything published later. So `a` nacked
//! while `b` and `c` wait gives `a#1, b#1, c#1, a#2`, as on Redis Streams.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::time::Duration;

use parking_lot::Mutex;
use switchyard_core::Retry;
use tokio::time::Instant;

use crate::hub::FxBuild;
use crate::topic_log::{Entry, TopicState};
use crate::wake::Wakers;

/// A message leaving its group for the dead-letter topic.
pub(crate) struct DeadLetter {
    pub(crate) entry: Arc<Entry>,
    pub(crate) attempts: u32,
    pub(crate) reason: String,
    /// The member the move is counted for.
    pub(crate) member: Arc<MemberShared>,
}

enum PendingState {
    /// Handed to `member`; comes back when `deadline` passes.
    Held {
        member: Arc<MemberShared>,
        deadline: Instant,
    },
    /// Waiting in the retry queue.
    Ready,
    /// Waiting in the delay heap until the instant.
    Delayed(Instant),
}

struct Pending {
    entry: Arc<Entry>,
    /// Deliveries made so far.
    attempt: u32,
    state: PendingState,
}

/// What a nack did.
pub(crate) enum NackOutcome {
    /// Queued for redelivery (now or later).
    Requeued,
    /// Must be moved to the dead-letter topic.
    Dead(DeadLetter),
    /// The delivery was no longer held by this member: nothing to do.
    Stale,
}

/// A consumer group on one topic.
pub(crate) struct GroupState {
    pub(crate) name: Arc<str>,
    /// Next sequence number never handed out yet.
    cursor: u64,
    /// By sequence number; a multiplicative hash (SipHash was a tenth of
    /// the cost of a hand-over and its ack).
    pending: HashMap<u64, Pending, FxBuild>,
    /// Messages to redeliver, oldest first, each with the log end when it
    /// came back: it waits until the cursor reached that point.
    retry: VecDeque<(u64, u64)>,
    delayed: BinaryHeap<Reverse<(Instant, u64)>>,
    members: Vec<Arc<MemberShared>>,
    rr: usize,
    /// Members told there is work (or that just joined) that have not come
    /// for it yet, and since when. Each holds back one message from the
    /// others, so a member the scheduler runs late is not starved by busy
    /// ones. The tick drops entries older than a tick.
    woken: Vec<(u64, Instant)>,
}

impl GroupState {
    pub(crate) fn new(name: Arc<str>, cursor: u64) -> Self {
        GroupState {
            name,
            cursor,
            pending: HashMap::with_hasher(FxBuild::INTERNAL),
            retry: VecDeque::new(),
            delayed: BinaryHeap::new(),
            members: Vec::new(),
            rr: 0,
            woken: Vec::new(),
        }
    }

    pub(crate) fn add_member(&mut self, member: Arc<MemberShared>) {
        if !self.members.iter().any(|m| m.id == member.id) {
            self.woken.push((member.id, Instant::now()));
            self.members.push(member);
        }
    }

    /// Removes a member and sends everything it holds back to the group.
    ///
    /// `log_end` is the topic's next sequence number: the released messages
    /// come back behind everything published before.
    pub(crate) fn remove_member(&mut self, id: u64, log_end: u64, wakers: &mut Wakers) {
        self.members.retain(|m| m.id != id);
        self.woken.retain(|(w, _)| *w != id);
        let mut released = 0;
        for (seq, p) in &mut self.pending {
            if let PendingState::Held { member, .. } = &p.state
                && member.id == id
            {
                member.let_go(wakers);
                p.state = PendingState::Ready;
                self.retry.push_back((*seq, log_end));
                released += 1;
            }
        }
        if released > 0 {
            tracing::debug!(group = %self.name, released, "member left: its messages go back to the group");
        }
        self.wake_members(released, wakers);
    }

    /// Wakes up to `n` members that wait for messages, round robin.
    pub(crate) fn wake_members(&mut self, n: usize, wakers: &mut Wakers) {
        let len = self.members.len();
        if n == 0 || len == 0 {
            return;
        }
        let mut woken = 0;
        for i in 0..len {
            let m = &self.members[(self.rr + i) % len];
            if m.waiting.load(Ordering::Acquire) && m.waiting.swap(false, Ordering::AcqRel) {
                wakers.push_opt(m.waker.lock().take());
                if !self.woken.iter().any(|(id, _)| *id == m.id) {
                    self.woken.push((m.id, Instant::now()));
                }
                woken += 1;
                if woken == n {
                    self.rr = (self.rr + i + 1) % len;
                    return;
                }
            }
        }
    }

    /// Members of the group now (open ones).
    pub(crate) fn member_count(&self) -> usize {
        self.members.iter().filter(|m| !m.is_closed()).count()
    }

    /// What `topics()` tells about this group.
    pub(crate) fn info(&self, log_len: usize, next_seq: u64) -> switchyard_core::GroupInfo {
        let mut g = switchyard_core::GroupInfo::new(
            self.name.as_ref(),
            self.members.len() as u64,
            self.pending.len() as u64,
        );
        let first = next_seq.saturating_sub(log_len as u64);
        g.lag = Some(next_seq.saturating_sub(self.cursor.max(first)));
        g.last_delivered =
            (self.cursor > 1).then(|| switchyard_core::MessageId::from_seq(self.cursor - 1));
        g
    }

    /// [`available`](Self::available) for a log of `log_len` entries ending
    /// before `next_seq`.
    pub(crate) fn ready(&self, log_len: usize, next_seq: u64) -> usize {
        self.available(next_seq.saturating_sub(log_len as u64), next_seq)
    }

    /// Messages that could be handed out now (an estimate: the retry queue
    /// may hold entries settled meanwhile).
    fn available(&self, first_seq: u64, next_seq: u64) -> usize {
        let unread = next_seq.saturating_sub(self.cursor.max(first_seq));
        self.retry
            .len()
            .saturating_add(usize::try_from(unread).unwrap_or(usize::MAX))
    }

    /// Hands the next message to `member`: a redelivery whose turn has come
    /// (every message published before it came back was handed out), else
    /// the next new one from the log, else any redelivery. Messages whose redelivery would exceed the
    /// member's `max_attempts` go to `dead` instead.
    pub(crate) fn take(
        &mut self,
        log: &VecDeque<Arc<Entry>>,
        next_seq: u64,
        member: &Arc<MemberShared>,
        now: Instant,
        dead: &mut Vec<DeadLetter>,
        wakers: &mut Wakers,
    ) -> Option<(Arc<Entry>, u32)> {
        let first_seq = next_seq - log.len() as u64;
        if !self.woken.is_empty() {
            self.woken.retain(|(id, _)| *id != member.id);
            if self.available(first_seq, next_seq) <= self.woken.len() {
                // What is left is held back for members woken for it.
                return None;
            }
        }
        let got = self.take_inner(log, next_seq, member, now, dead);
        if got.is_some() && self.available(first_seq, next_seq) > self.woken.len() {
            // Pass the baton so the rest does not wait for this member.
            self.wake_members(1, wakers);
        }
        got
    }

    fn take_inner(
        &mut self,
        log: &VecDeque<Arc<Entry>>,
        next_seq: u64,
        member: &Arc<MemberShared>,
        now: Instant,
        dead: &mut Vec<DeadLetter>,
    ) -> Option<(Arc<Entry>, u32)> {
        let first = next_seq - log.len() as u64;
        if self.cursor < first {
            let lost = first - self.cursor;
            member.lost_to_retention.fetch_add(lost, Ordering::Relaxed);
            tracing::warn!(group = %self.name, lost, "messages trimmed by retention before the group read them");
            self.cursor = first;
        }
        while let Some(&(seq, behind)) = self.retry.front() {
            let ready = self
                .pending
                .get(&seq)
                .is_some_and(|p| matches!(p.state, PendingState::Ready));
            if !ready {
                // Settled (or requeued again) since it was queued.
                self.retry.pop_front();
                continue;
            }
            if behind > self.cursor && self.cursor < next_seq {
                // Messages published before it came back go first.
                break;
            }
            self.retry.pop_front();
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            if p.attempt >= member.max_attempts {
                let attempts = p.attempt;
                if let Some(p) = self.pending.remove(&seq) {
                    dead.push(DeadLetter {
                        entry: p.entry,
                        attempts,
                        reason: format!(
                            "max attempts reached: {attempts} deliveries, the limit is {}",
                            member.max_attempts
                        ),
                        member: member.clone(),
                    });
                }
                continue;
            }
            p.attempt += 1;
            p.state = PendingState::Held {
                member: member.clone(),
                deadline: deadline_after(now, member.ack_timeout),
            };
            member.holding.fetch_add(1, Ordering::AcqRel);
            return Some((p.entry.clone(), p.attempt));
        }
        if self.cursor >= next_seq {
            return None;
        }
        let index = usize::try_from(self.cursor - first).ok()?;
        let entry = log.get(index)?.clone();
        self.cursor += 1;
        self.pending.insert(
            entry.seq,
            Pending {
                entry: entry.clone(),
                attempt: 1,
                state: PendingState::Held {
                    member: member.clone(),
                    deadline: deadline_after(now, member.ack_timeout),
                },
            },
        );
        member.holding.fetch_add(1, Ordering::AcqRel);
        Some((entry, 1))
    }

    /// Acknowledges `seq`: it is never delivered again, whoever holds it.
    pub(crate) fn ack(&mut self, seq: u64, wakers: &mut Wakers) -> bool {
        match self.pending.remove(&seq) {
            Some(p) => {
                if let PendingState::Held { member, .. } = &p.state {
                    member.let_go(wakers);
                }
                true
            }
            None => false,
        }
    }

    fn held_by(&mut self, seq: u64, member: &MemberShared, attempt: u32) -> Option<&mut Pending> {
        self.pending.get_mut(&seq).filter(|p| {
            p.attempt == attempt
                && matches!(&p.state, PendingState::Held { member: m, .. } if m.id == member.id)
        })
    }

    /// Negatively acknowledges `seq` delivered to `member` as `attempt`.
    /// `log_end` is the topic's next sequence number: a redelivery comes
    /// after everything published before the nack.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn nack(
        &mut self,
        seq: u64,
        member: &Arc<MemberShared>,
        attempt: u32,
        retry: &Retry,
        now: Instant,
        log_end: u64,
        wakers: &mut Wakers,
    ) -> NackOutcome {
        if self.held_by(seq, member, attempt).is_none() {
            return NackOutcome::Stale;
        }
        member.let_go(wakers);
        let Some(p) = self.pending.get_mut(&seq) else {
            return NackOutcome::Stale;
        };
        let reason = match retry {
            Retry::DeadLetter(reason) => Some(reason.clone()),
            _ if attempt >= member.max_attempts => Some(format!(
                "max attempts reached: nacked on delivery {attempt} of {}",
                member.max_attempts
            )),
            _ => None,
        };
        if let Some(reason) = reason {
            return match self.pending.remove(&seq) {
                Some(p) => NackOutcome::Dead(DeadLetter {
                    entry: p.entry,
                    attempts: attempt,
                    reason,
                    member: member.clone(),
                }),
                None => NackOutcome::Stale,
            };
        }
        match retry {
            Retry::After(delay) if !delay.is_zero() => {
                let at = deadline_after(now, *delay);
                p.state = PendingState::Delayed(at);
                self.delayed.push(Reverse((at, seq)));
            }
            _ => {
                p.state = PendingState::Ready;
                self.retry.push_back((seq, log_end));
                self.wake_members(1, wakers);
            }
        }
        NackOutcome::Requeued
    }

    /// Restarts the ack deadline of `seq` held by `member`.
    pub(crate) fn progress(
        &mut self,
        seq: u64,
        member: &MemberShared,
        attempt: u32,
        now: Instant,
    ) -> bool {
        let timeout = member.ack_timeout;
        match self.held_by(seq, member, attempt) {
            Some(Pending {
                state: PendingState::Held { deadline, .. },
                ..
            }) => {
                *deadline = deadline_after(now, timeout);
                true
            }
            _ => false,
        }
    }

    /// Redelivery tick: expired deadlines and due delayed retries go back
    /// to the retry queue (or to `dead` when out of attempts), and waiting
    /// members are woken if anything is available.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        (first_seq, next_seq): (u64, u64),
        stale_after: Duration,
        dead: &mut Vec<DeadLetter>,
        wakers: &mut Wakers,
    ) {
        // A woken member that did not come for its message within a tick
        // (its application stopped polling) no longer holds it back.
        self.woken
            .retain(|(_, since)| now.saturating_duration_since(*since) < stale_after);
        let mut expired = Vec::new();
        for (seq, p) in &self.pending {
            if let PendingState::Held { deadline, .. } = &p.state
                && *deadline <= now
            {
                expired.push(*seq);
            }
        }
        for seq in expired {
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            let PendingState::Held { member, .. } = &p.state else {
                continue;
            };
            member.let_go(wakers);
            if p.attempt >= member.max_attempts {
                let member = member.clone();
                let attempts = p.attempt;
                if let Some(p) = self.pending.remove(&seq) {
                    dead.push(DeadLetter {
                        entry: p.entry,
                        attempts,
                        reason: format!(
                            "max attempts reached: ack timeout on delivery {attempts} of {}",
                            member.max_attempts
                        ),
                        member,
                    });
                }
            } else {
                tracing::debug!(group = %self.name, seq, consumer = %member.consumer, "ack timeout: redelivering");
                p.state = PendingState::Ready;
                self.retry.push_back((seq, next_seq));
            }
        }
        while let Some(Reverse((at, seq))) = self.delayed.peek().copied() {
            if at > now {
                break;
            }
            self.delayed.pop();
            if let Some(p) = self.pending.get_mut(&seq)
                && matches!(p.state, PendingState::Delayed(t) if t == at)
            {
                p.state = PendingState::Ready;
                self.retry.push_back((seq, next_seq));
            }
        }
        let spare = self
            .available(first_seq, next_seq)
            .saturating_sub(self.woken.len());
        if spare > 0 {
            self.wake_members(spare, wakers);
        }
    }
}

/// `now + d`, or a point about a century ahead when that overflows: a
/// delay or timeout of `Duration::MAX` means "not in this process' life",
/// never a panic.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(CENTURY))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Where a member is attached: a topic and the index of its group there.
pub(crate) struct Attachment {
    pub(crate) topic: Weak<TopicState>,
    pub(crate) group: usize,
}

/// The part of a group member that groups, ackers and the transport see.
pub(crate) struct MemberShared {
    pub(crate) id: u64,
    pub(crate) group: Arc<str>,
    pub(crate) consumer: String,
    pub(crate) max_attempts: u32,
    pub(crate) ack_timeout: Duration,
    /// Set while the subscriber waits for a message (cleared by whoever wakes it).
    waiting: AtomicBool,
    waker: Mutex<Option<Waker>>,
    closed: AtomicBool,
    topics: Mutex<Vec<Attachment>>,
    topics_version: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) nacked: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) lost_to_retention: AtomicU64,
    /// Deliveries held now (handed out, not settled).
    holding: AtomicUsize,
    /// `Subscription::max_in_flight` (`usize::MAX`: no limit).
    max_in_flight: usize,
}

impl MemberShared {
    pub(crate) fn new(
        group: &str,
        consumer: &str,
        max_attempts: u32,
        ack_timeout: Duration,
    ) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(1);
        MemberShared {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            group: Arc::from(group),
            consumer: consumer.to_owned(),
            max_attempts: max_attempts.max(1),
            ack_timeout,
            waiting: AtomicBool::new(false),
            waker: Mutex::new(None),
            closed: AtomicBool::new(false),
            topics: Mutex::new(Vec::new()),
            topics_version: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            lost_to_retention: AtomicU64::new(0),
            holding: AtomicUsize::new(0),
            max_in_flight: usize::MAX,
        }
    }

    /// Limits the deliveries held at once (`Subscription::max_in_flight`).
    pub(crate) fn with_max_in_flight(mut self, max: Option<usize>) -> Self {
        self.max_in_flight = max.unwrap_or(usize::MAX).max(1);
        self
    }

    /// Whether the member holds `max_in_flight` deliveries now.
    pub(crate) fn at_limit(&self) -> bool {
        self.holding.load(Ordering::Acquire) >= self.max_in_flight
    }

    /// A delivery this member held was settled or taken back: one less
    /// held; a member that waited at its limit is woken.
    fn let_go(&self, wakers: &mut Wakers) {
        let before = self
            .holding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before >= self.max_in_flight && self.waiting.load(Ordering::Acquire) {
            self.wake(wakers);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records that the member joined the group at `group` on `topic`.
    pub(crate) fn attached(&self, topic: &Arc<TopicState>, group: usize) {
        self.topics.lock().push(Attachment {
            topic: Arc::downgrade(topic),
            group,
        });
        self.topics_version.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn topics_version(&self) -> u64 {
        self.topics_version.load(Ordering::Acquire)
    }

    /// Calls `f` on every attachment.
    pub(crate) fn for_each_topic(&self, mut f: impl FnMut(&Attachment)) {
        for a in self.topics.lock().iter() {
            f(a);
        }
    }

    /// Registers the waker and marks the member as waiting. Call before
    /// checking for messages one last time.
    pub(crate) fn start_waiting(&self, waker: &Waker) {
        {
            let mut w = self.waker.lock();
            match &*w {
                Some(old) if old.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        }
        self.waiting.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stop_waiting(&self) {
        self.waiting.store(false, Ordering::Release);
    }

    /// Wakes the subscriber (for example because a topic was attached).
    pub(crate) fn wake(&self, wakers: &mut Wakers) {
        self.waiting.store(false, Ordering::Release);
        wakers.push_opt(self.waker.lock().take());
    }

    /// Closes the member: it leaves every group, and everything it holds
    /// goes back to the group at once.
    pub(crate) fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut wakers = Wakers::new();
        self.wake(&mut wakers);
        let topics = std::mem::take(&mut *self.topics.lock());
        for a in &topics {
            if let Some(topic) = a.topic.upgrade() {
                let mut inner = topic.inner.lock();
                let log_end = inner.next_seq;
                if let Some(g) = inner.groups.get_mut(a.group) {
                    g.remove_member(self.id, log_end, &mut wakers);
                }
            }
        }
        wakers.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_after_never_overflows() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now);
        assert_eq!(
            deadline_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
