//! The hub: the topics of one in-process bus, shared by every transport
//! connected to it.
//!
//! Locks, always taken in this order (never the reverse):
//! `patterns` → a topic-map shard → a topic → a subscriber's or member's own
//! small locks. The publish path takes a shard's read lock only to find the
//! topic (the write lock and `patterns` only when the topic is new), then
//! the topic lock. Nothing is held across an `.await`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::{Mutex, RwLock};
use switchyard_core::{MessageId, Pattern, Start, Topic, TopicFilter};
use tokio::task::JoinHandle;

use crate::config::MemoryConfig;
use crate::fanout::FanoutShared;
use crate::group::{GroupState, MemberShared};
use crate::topic_log::{Entry, LiveSub, TopicInner, TopicState};
use crate::wake::Wakers;

const SHARDS: usize = 16;

/// What a subscription attaches to each matching topic.
#[derive(Clone)]
pub(crate) enum Target {
    Fanout(Arc<FanoutShared>, Start),
    Member(Arc<MemberShared>, Start),
}

impl Target {
    fn is_closed(&self) -> bool {
        match self {
            Target::Fanout(f, _) => f.is_closed(),
            Target::Member(m, _) => m.is_closed(),
        }
    }
}

struct PatternReg {
    pattern: Pattern,
    target: Target,
}

type Shard = RwLock<HashMap<Topic, Arc<TopicState>, FxBuild>>;

/// A fast multiplicative string hash (FxHash) with a random per-hub seed:
/// topic lookup is on every publish, and SipHash dominated it. Topic names
/// come from the application, so the seed is enough protection.
#[derive(Clone, Copy)]
pub(crate) struct FxBuild(u64);

impl FxBuild {
    /// For keys the hub makes itself (sequence numbers), which nobody can
    /// choose to collide: no seed needed.
    pub(crate) const INTERNAL: FxBuild = FxBuild(0);
}

pub(crate) struct FxHasher(u64);

const FX_K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_K);
    }
}

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(self.0)
    }
}

/// The shared state behind [`MemoryHub`](crate::MemoryHub).
pub(crate) struct Hub {
    /// Unique for the life of the process.
    id: u64,
    pub(crate) config: MemoryConfig,
    name: Option<String>,
    hasher: FxBuild,
    shards: Box<[Shard]>,
    /// Pattern subscriptions; its lock also serialises topic creation.
    patterns: Mutex<Vec<PatternReg>>,
    /// Topics with at least one group, for the redelivery tick.
    group_topics: Mutex<Vec<Weak<TopicState>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

thread_local! {
    static LAST_TOPIC: RefCell<Option<(u64, Topic, Weak<TopicState>)>> = const { RefCell::new(None) };
}

static NEXT_HUB_ID: AtomicU64 = AtomicU64::new(1);

static NAMED: LazyLock<Mutex<HashMap<String, Weak<Hub>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl Hub {
    pub(crate) fn new(config: MemoryConfig, name: Option<String>) -> Self {
        let hasher = FxBuild(RandomState::new().hash_one(0x5eed_u64));
        Hub {
            id: NEXT_HUB_ID.fetch_add(1, Ordering::Relaxed),
            config: config.normalized(),
            name,
            hasher,
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(hasher)))
                .collect(),
            patterns: Mutex::new(Vec::new()),
            group_topics: Mutex::new(Vec::new()),
            ticker: Mutex::new(None),
        }
    }

    /// The process-wide hub called `name`, created with `config` if no
    /// transport holds it now.
    pub(crate) fn named(name: &str, config: MemoryConfig) -> Arc<Hub> {
        let mut map = NAMED.lock();
        if let Some(hub) = map.get(name).and_then(Weak::upgrade) {
            if hub.config != config.clone().normalized() {
                tracing::debug!(
                    hub = name,
                    "named memory hub exists: its configuration is kept"
                );
            }
            return hub;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let hub = Arc::new(Hub::new(config, Some(name.to_owned())));
        map.insert(name.to_owned(), Arc::downgrade(&hub));
        hub
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn shard(&self, topic: &Topic) -> &Shard {
        // Bits the map itself hardly uses (it takes the lowest and highest).
        let h = self.hasher.hash_one(topic) >> 20;
        &self.shards[(h as usize) % self.shards.len()]
    }

    /// Open subscribers (fan-out and group members) whose filter matches
    /// `topic`, without creating it: those attached to it, or for a topic
    /// not created yet the pattern subscriptions that match it.
    pub(crate) fn subscriber_count(&self, topic: &Topic) -> usize {
        let existing = self.shard(topic).read().get(topic).cloned();
        match existing {
            Some(state) => {
                let inner = state.inner.lock();
                inner.fanout.iter().filter(|f| !f.sub.is_closed()).count()
                    + inner
                        .groups
                        .iter()
                        .map(GroupState::member_count)
                        .sum::<usize>()
            }
            None => self
                .patterns
                .lock()
                .iter()
                .filter(|p| !p.target.is_closed() && p.pattern.matches(topic.as_str()))
                .count(),
        }
    }

    /// The topics matching `filter` (and the dead-letter topics of those
    /// that match), sorted by name.
    pub(crate) fn topic_infos(&self, filter: &TopicFilter) -> Vec<switchyard_core::TopicInfo> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (topic, state) in shard.read().iter() {
                let origin = topic.dead_letter_origin();
                let wanted = filter.matches(topic.as_str())
                    || origin.as_ref().is_some_and(|o| filter.matches(o.as_str()));
                if !wanted {
                    continue;
                }
                let mut inner = state.inner.lock();
                state.expire(&mut inner);
                let mut info =
                    switchyard_core::TopicInfo::new(topic.clone(), inner.log.len() as u64);
                info.first_id = inner.log.front().map(|e| MessageId::from_seq(e.seq));
                info.last_id =
                    (inner.next_seq > 1).then(|| MessageId::from_seq(inner.next_seq - 1));
                info.groups = inner
                    .groups
                    .iter()
                    .map(|g| g.info(inner.log.len(), inner.next_seq))
                    .collect();
                info.groups.sort_by(|a, b| a.name.cmp(&b.name));
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
        out
    }

    /// Number of topics.
    pub(crate) fn topic_count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// The state of `topic`, created on first use.
    pub(crate) fn topic(&self, topic: &Topic) -> Arc<TopicState> {
        // Publishers mostly repeat the topic they used last: remember it per
        // thread (weakly, keyed by the never-reused hub id).
        let cached = LAST_TOPIC
            .try_with(|c| match c.try_borrow().as_deref() {
                Ok(Some((hub, name, state))) if *hub == self.id && name == topic => state.upgrade(),
                _ => None,
            })
            .ok()
            .flatten();
        if let Some(state) = cached {
            return state;
        }
        let state = self.lookup(topic);
        let _ = LAST_TOPIC.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = Some((self.id, topic.clone(), Arc::downgrade(&state)));
            }
        });
        state
    }

    fn lookup(&self, topic: &Topic) -> Arc<TopicState> {
        let shard = self.shard(topic);
        if let Some(t) = shard.read().get(topic) {
            return t.clone();
        }
        let mut patterns = self.patterns.lock();
        if let Some(t) = shard.read().get(topic) {
            return t.clone();
        }
        let (retention, max_age) = self.config.limits_for(topic);
        let state = Arc::new(TopicState::new(retention, max_age));
        patterns.retain(|p| !p.target.is_closed());
        let mut wakers = Wakers::new();
        {
            let mut inner = state.inner.lock();
            for p in patterns.iter() {
                if p.pattern.matches(topic.as_str()) {
                    self.attach(&state, &mut inner, &p.target, None, &mut wakers);
                }
            }
        }
        shard.write().insert(topic.clone(), state.clone());
        drop(patterns);
        wakers.wake_all();
        state
    }

    /// Attaches `target` to the topics of `topics` (exact or list filter).
    pub(crate) fn attach_topics(
        &self,
        topics: &[Topic],
        target: &Target,
        backlog: &mut Vec<Arc<Entry>>,
    ) {
        let mut wakers = Wakers::new();
        for topic in topics {
            let state = self.topic(topic);
            let mut inner = state.inner.lock();
            self.attach(&state, &mut inner, target, Some(backlog), &mut wakers);
        }
        wakers.wake_all();
    }

    /// Registers a pattern subscription: attaches it to every existing
    /// matching topic now and to every matching topic created later.
    pub(crate) fn attach_pattern(
        &self,
        pattern: &Pattern,
        target: &Target,
        backlog: &mut Vec<Arc<Entry>>,
    ) {
        let mut wakers = Wakers::new();
        let mut patterns = self.patterns.lock();
        patterns.retain(|p| !p.target.is_closed());
        patterns.push(PatternReg {
            pattern: pattern.clone(),
            target: target.clone(),
        });
        for shard in self.shards.iter() {
            for (name, state) in shard.read().iter() {
                if pattern.matches(name.as_str()) {
                    let mut inner = state.inner.lock();
                    self.attach(state, &mut inner, target, Some(backlog), &mut wakers);
                }
            }
        }
        drop(patterns);
        wakers.wake_all();
    }

    /// Attaches a subscriber or member to one topic (under its lock).
    fn attach(
        &self,
        state: &Arc<TopicState>,
        inner: &mut TopicInner,
        target: &Target,
        backlog: Option<&mut Vec<Arc<Entry>>>,
        wakers: &mut Wakers,
    ) {
        state.expire(inner);
        match target {
            Target::Fanout(sub, start) => {
                if sub.is_closed() {
                    return;
                }
                let from = match start {
                    Start::Earliest => inner.first_seq(),
                    Start::After(id) => id.seq.saturating_add(1),
                    _ => inner.next_seq,
                };
                if let Some(backlog) = backlog {
                    backlog.extend(inner.entries_from(from).cloned());
                }
                inner.fanout.push(LiveSub {
                    sub: sub.clone(),
                    min_seq: from.max(inner.next_seq),
                });
                sub.attached(state);
                if sub.is_closed() {
                    inner.fanout.retain(|l| !Arc::ptr_eq(&l.sub, sub));
                }
            }
            Target::Member(member, start) => {
                if member.is_closed() {
                    return;
                }
                let index = match inner.group_index(&member.group) {
                    Some(i) => i,
                    None => {
                        let cursor = match start {
                            Start::Earliest => inner.first_seq(),
                            Start::After(id) => id.seq.saturating_add(1),
                            _ => inner.next_seq,
                        };
                        if inner.groups.is_empty() {
                            self.group_topics.lock().push(Arc::downgrade(state));
                        }
                        inner
                            .groups
                            .push(GroupState::new(member.group.clone(), cursor));
                        inner.groups.len() - 1
                    }
                };
                if let Some(g) = inner.groups.get_mut(index) {
                    g.add_member(member.clone());
                }
                member.attached(state, index);
                let log_end = inner.next_seq;
                if member.is_closed()
                    && let Some(g) = inner.groups.get_mut(index)
                {
                    g.remove_member(member.id, log_end, wakers);
                }
                member.wake(wakers);
            }
        }
    }

    /// Starts the redelivery tick task if it is not running (it needs a
    /// tokio runtime; it stops by itself when the hub is dropped).
    pub(crate) fn ensure_ticker(self: &Arc<Self>) {
        let mut ticker = self.ticker.lock();
        if ticker.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                *ticker =
                    Some(rt.spawn(tick_loop(Arc::downgrade(self), self.config.redelivery_tick)));
            }
            Err(_) => tracing::warn!(
                "no tokio runtime: ack timeouts and delayed retries of the memory hub are not processed"
            ),
        }
    }

    /// One redelivery tick over every topic with groups.
    fn tick(self: &Arc<Self>) {
        let topics: Vec<Arc<TopicState>> = {
            let mut list = self.group_topics.lock();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let now = tokio::time::Instant::now();
        let mut dead = Vec::new();
        for topic in topics {
            let mut wakers = Wakers::new();
            {
                let mut inner = topic.inner.lock();
                let seqs = (inner.first_seq(), inner.next_seq);
                for g in inner.groups.iter_mut() {
                    g.tick(
                        now,
                        seqs,
                        self.config.redelivery_tick,
                        &mut dead,
                        &mut wakers,
                    );
                }
            }
            wakers.wake_all();
            for d in dead.drain(..) {
                self.dead_letter(d);
            }
        }
    }
}

async fn tick_loop(hub: Weak<Hub>, every: std::time::Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(hub) = hub.upgrade() else {
            break;
        };
        hub.tick();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.get_mut().take() {
            t.abort();
        }
        if let Some(name) = &self.name {
            let mut map = NAMED.lock();
            if map.get(name).is_some_and(|w| w.strong_count() == 0) {
                map.remove(name);
            }
        }
    }
}
