//! Consumer groups (`Mode::Group`): XREADGROUP, batched acks, redelivery,
//! claiming from crashed members, dead letters.
//!
//! One group subscriber runs four tasks around a bounded [`LocalQueue`]:
//!
//! - the **reader** ([`reader`]) creates the group on every stream (XGROUP
//!   CREATE MKSTREAM), re-reads this consumer's own pending entries (`0`),
//!   then blocks on new ones (`>`) on a dedicated connection;
//! - the **claimer** ([`claim`]) takes over entries idle for longer than the
//!   ack timeout (XAUTOCLAIM) — those of crashed members and those released
//!   by `nack`;
//! - the **keeper** ([`keep`]) keeps the entries this consumer holds (in its
//!   buffer, handed out, or waiting for a `nack(After)` delay) from being
//!   claimed by others, releases nacked entries, and removes idle consumers
//!   ([`cleanup`]);
//! - the **flusher** ([`acker`]) batches acks into one XACK per stream;
//!
//! and a **closer** ([`close`]) that, once the subscriber or its transport
//! closes, gives back what was fetched but never handed out.
//!
//! `attempt()` counts the deliveries the application received: the
//! delivery count of the pending list, set back (`RETRYCOUNT`) whenever an
//! entry goes back to the group (see `docs/redis-streams.md`, "Attempts").
//!
//! Every entry this consumer holds is in the [`Tracker`],
//! which is what the keeper refreshes and what dedupes entries that come
//! back through a claim while still held. Dead letters go through one Lua
//! script ([`dlq`]).

mod acker;
mod claim;
mod cleanup;
mod close;
mod dlq;
pub(crate) mod fetch;
mod keep;
mod readconn;
mod reader;
mod track;
pub(crate) mod xread;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use switchyard_core::{
    Acknowledger, Delivery, Error, Message, MessageId, Overflow, Result, Start, Subscriber,
    SubscriberStats, Subscription, Topic,
};
use switchyard_redis::SharedConnection;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::buffer::{LocalQueue, SubStats};
use crate::discovery::TopicSource;
use crate::inner::{Inner, WarnLimiter, wait_shutdown};

use self::acker::{AckOp, Release, StreamAcker};
use self::track::Tracker;

/// Capacity of the ack queue between `ack()` callers and the flusher.
const ACK_QUEUE: usize = 16_384;
/// How long `close` waits for queued acks to reach Redis.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One stream this subscriber reads, with its cached keys.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Index in [`Group::streams`]; also the id used in the tracker.
    pub(crate) idx: u32,
    /// The topic.
    pub(crate) topic: Topic,
    /// Its stream key.
    pub(crate) key: String,
    /// The dead-letter stream key ([`crate::keys::dead_letter_key`], which
    /// exists for every valid topic), `None` for a dead-letter topic itself
    /// (dead letters are not dead-lettered again).
    pub(crate) dlq_key: Option<String>,
}

/// An entry fetched for the application.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) stream: u32,
    pub(crate) id: MessageId,
    pub(crate) message: Message,
    pub(crate) attempt: u32,
}

/// What the local queue holds.
#[derive(Debug)]
pub(crate) enum Item {
    /// A delivery to hand out.
    Entry(Fetched),
    /// A malformed entry that was dead-lettered; surfaced as an
    /// `Error::Malformed` item so the application knows.
    Malformed { id: MessageId, reason: String },
}

/// The settings of one group subscriber.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) ack_timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) claim_interval: Duration,
    pub(crate) overflow: Overflow,
    pub(crate) buffer: usize,
    /// `Subscription::max_in_flight`.
    pub(crate) max_in_flight: Option<usize>,
}

/// State shared by a group subscriber, its tasks and its acknowledgers.
pub(crate) struct Group {
    pub(crate) inner: Arc<Inner>,
    pub(crate) cfg: Settings,
    pub(crate) stats: Arc<SubStats>,
    pub(crate) queue: LocalQueue<Item>,
    pub(crate) streams: RwLock<Vec<Arc<Stream>>>,
    pub(crate) tracker: Mutex<Tracker>,
    pub(crate) acks: mpsc::Sender<AckOp>,
    /// Wakes the claimer for an immediate round (after a release).
    pub(crate) claim_now: Notify,
    /// Wakes the keeper (releases or an earlier delay are waiting).
    pub(crate) keep_now: Notify,
    /// Signalled when an entry stops being held (settled, given back):
    /// a reader waiting at `max_in_flight` reads again.
    pub(crate) settled: Notify,
    /// Entries given back by `nack(Now)`, a due `nack(After)`, a dropped
    /// delivery, an overflow drop or a close, for the keeper to make
    /// claimable at once.
    pub(crate) releases: Mutex<Vec<Release>>,
    /// When the subscriber started (entries delivered to this consumer
    /// since then are told apart from those of an earlier run on close).
    pub(crate) started: Instant,
    /// `true` once the flusher has drained the ack queue and ended.
    pub(crate) flushed: watch::Sender<bool>,
    /// The readers' dedicated connections (by reader), for the closer.
    pub(crate) reading: Mutex<std::collections::HashMap<usize, reader::ReadSlot>>,
    stop: watch::Sender<bool>,
    pub(crate) warn: WarnLimiter,
}

impl Group {
    /// The stream with index `idx`.
    pub(crate) fn stream(&self, idx: u32) -> Option<Arc<Stream>> {
        self.streams.read().get(idx as usize).cloned()
    }

    /// A snapshot of the streams.
    pub(crate) fn all_streams(&self) -> Vec<Arc<Stream>> {
        self.streams.read().clone()
    }

    /// Registers `topic` (once) and returns its stream.
    pub(crate) fn add_stream(&self, topic: &Topic) -> Arc<Stream> {
        let mut streams = self.streams.write();
        if let Some(s) = streams.iter().find(|s| &s.topic == topic) {
            return s.clone();
        }
        let dlq_key = if topic.is_dead_letter() {
            None
        } else {
            Some(crate::keys::dead_letter_key(self.inner.namespace(), topic))
        };
        let s = Arc::new(Stream {
            idx: u32::try_from(streams.len()).unwrap_or(u32::MAX),
            topic: topic.clone(),
            key: self.inner.key(topic),
            dlq_key,
        });
        streams.push(s.clone());
        s
    }

    /// Records a `NOPERM` in `error` for `health()` (a denied command
    /// inside a script too): `what` failed, `grant` would fix it.
    pub(crate) fn note_denied(&self, what: &str, grant: &str, error: &dyn std::fmt::Display) {
        let text = error.to_string();
        if switchyard_redis::denied::is_noperm_text(&text) {
            self.inner.denied.record_granting(what, grant, &text);
        }
    }

    /// A clone of the shared connection.
    pub(crate) fn conn(&self) -> SharedConnection {
        self.inner.conn.clone()
    }

    /// Whether the subscriber or its transport stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        *self.stop.borrow() || self.inner.is_closed()
    }

    /// Resolves once the subscriber is closed or its transport shuts down.
    pub(crate) async fn stopped(&self) {
        let mut own = self.stop.subscribe();
        let mut transport = self.inner.shutdown_signal();
        tokio::select! {
            _ = own.wait_for(|s| *s) => {}
            () = wait_shutdown(&mut transport) => {}
        }
    }

    /// Sleeps for `d`; `false` when stopped meanwhile.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !self.is_stopped(),
            () = self.stopped() => false,
        }
    }

    /// Asks every task to stop, ends `recv` (it returns `None` at once),
    /// and queues the buffered entries (fetched, never handed out) for
    /// release. The closer (after `close` or the transport's close) then
    /// releases them so other members take them at once; after a drop
    /// without `close` they stay pending in Redis and come back after the
    /// ack timeout (or to this consumer name when it subscribes again).
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
        for item in self.queue.close_consumer() {
            self.give_back(&item);
        }
    }

    /// Queues a fetched entry that was never handed out for release.
    fn give_back(&self, item: &Item) {
        if let Item::Entry(f) = item {
            self.give_back_unseen(f.stream, f.id, f.attempt);
        }
    }

    /// Hands fetched items to the application through the local queue,
    /// applying the overflow policy. `false` once the queue is closed.
    /// Items not handed over because the subscriber stopped are queued
    /// for release, like the buffered ones.
    pub(crate) async fn deliver(&self, items: Vec<Item>) -> bool {
        // The whole batch at once: one lock and one wake-up of the
        // application per run of items that fit, not one per item.
        let mut items: VecDeque<Item> = items.into();
        let mut dropped = Vec::new();
        let open = tokio::select! {
            open = self.queue.push_all(&mut items, &mut dropped) => Some(open),
            () = self.stopped() => None,
        };
        for old in &dropped {
            // Given back to the group at once, its delivery count lowered
            // again: a drop uses up no attempt. This member claims it again
            // when its buffer has room (or another member does).
            self.give_back(old);
            SubStats::bump(&self.stats.dropped);
        }
        match open {
            Some(true) => true,
            // Closed or stopped: what was not queued goes back.
            Some(false) | None => {
                items.iter().for_each(|rest| self.give_back(rest));
                false
            }
        }
    }

    /// Entries to fetch in one read: what fits the buffer under `Block`
    /// (at least 1), `read_count` otherwise; never more than
    /// `max_in_flight` leaves room for (0 at the limit).
    pub(crate) fn fetch_count(&self) -> usize {
        let max = self.inner.config.read_count.max(1);
        let count = match self.cfg.overflow {
            Overflow::DropOldest | Overflow::DropNewest => max,
            _ => self.queue.room().clamp(1, max),
        };
        count.min(self.in_flight_room())
    }

    /// How many more entries `max_in_flight` lets this member hold.
    pub(crate) fn in_flight_room(&self) -> usize {
        match self.cfg.max_in_flight {
            Some(max) => max.saturating_sub(self.tracker.lock().len()),
            None => usize::MAX,
        }
    }

    /// Stops holding an entry (settled, given back, gone) and lets a
    /// reader waiting at `max_in_flight` read again.
    pub(crate) fn untrack(&self, stream: u32, id: MessageId) {
        self.tracker.lock().remove(stream, id);
        self.settled.notify_one();
    }

    /// At `max_in_flight`: waits (at most a second) until an entry stops
    /// being held or the subscriber stops.
    pub(crate) async fn wait_for_room(&self) {
        tokio::select! {
            () = self.settled.notified() => {}
            () = self.stopped() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The id XGROUP CREATE starts at for `start`.
fn start_id(start: Start) -> String {
    match start {
        Start::Earliest => "0".to_owned(),
        Start::After(id) => id.to_string(),
        _ => "$".to_owned(),
    }
}

/// `XGROUP CREATE key group start MKSTREAM`; an existing group is fine.
pub(crate) async fn create_group(
    conn: &mut SharedConnection,
    key: &str,
    group: &str,
    start: &str,
) -> Result<()> {
    let r: redis::RedisResult<redis::Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(switchyard_redis::classify("XGROUP CREATE", &e)),
    }
}

/// Whether `e` says the group (or its stream) does not exist.
pub(crate) fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

/// Starts a group subscriber.
pub(crate) async fn subscribe(
    inner: Arc<Inner>,
    sub: Subscription,
    mut topics: TopicSource,
) -> Result<Box<dyn Subscriber>> {
    let Some((group, consumer)) = sub.group_names() else {
        return Err(Error::InvalidConfig(
            "group::subscribe needs a group subscription".into(),
        ));
    };
    let ack_timeout = sub.ack_timeout_value();
    let cfg = Settings {
        group: group.to_owned(),
        consumer: consumer.to_owned(),
        ack_timeout,
        max_attempts: sub.max_attempts_value(),
        claim_interval: inner
            .config
            .claim_interval
            .unwrap_or_else(|| (ack_timeout / 2).min(Duration::from_secs(1)))
            .max(Duration::from_millis(1)),
        overflow: sub.overflow_policy(),
        buffer: sub.buffer_size(),
        max_in_flight: sub.max_in_flight_value(),
    };
    // Create the groups before returning, so that with `Start::Latest`
    // (`$` at creation) nothing published after `subscribe` is missed.
    let initial = topics.current();
    let mut conn = inner.conn.clone();
    let start = start_id(sub.start_at());
    for topic in initial.iter() {
        create_group(&mut conn, &inner.key(topic), &cfg.group, &start).await?;
    }
    let (acks, ack_rx) = mpsc::channel(ACK_QUEUE);
    let (stop, _) = watch::channel(false);
    let group = Arc::new(Group {
        queue: LocalQueue::new(cfg.buffer, cfg.overflow).with_watch(
            switchyard_core::BufferWatch::new(
                &sub,
                cfg.buffer,
                format!("redis-streams group {}", cfg.group),
            ),
        ),
        inner: inner.clone(),
        cfg,
        stats: Arc::new(SubStats::default()),
        streams: RwLock::new(Vec::new()),
        tracker: Mutex::new(Tracker::default()),
        acks,
        claim_now: Notify::new(),
        keep_now: Notify::new(),
        settled: Notify::new(),
        releases: Mutex::new(Vec::new()),
        started: Instant::now(),
        flushed: watch::channel(false).0,
        reading: Mutex::new(std::collections::HashMap::new()),
        stop,
        warn: WarnLimiter::default(),
    });
    for topic in initial.iter() {
        group.add_stream(topic);
    }
    tracing::debug!(
        group = %group.cfg.group,
        consumer = %group.cfg.consumer,
        streams = initial.len(),
        "redis-streams group subscriber started"
    );
    let flusher = tokio::spawn(acker::flush(group.clone(), ack_rx));
    inner.register_group_flusher(flusher);
    let tasks = vec![
        tokio::spawn(reader::run(group.clone(), topics)),
        tokio::spawn(claim::run(group.clone())),
        tokio::spawn(keep::run(group.clone())),
    ];
    let mut aborts: Vec<AbortHandle> = tasks.iter().map(JoinHandle::abort_handle).collect();
    let (done_tx, done) = watch::channel(false);
    let closer = tokio::spawn(close::run(group.clone(), tasks, done_tx));
    // The closer goes first on a drop, so a dropped subscriber releases
    // nothing (like a crash).
    aborts.insert(0, closer.abort_handle());
    inner.register_group_closer(done.clone());
    Ok(Box::new(GroupSubscriber {
        group,
        ackers: Vec::new(),
        aborts,
        done,
    }))
}

/// The [`Subscriber`] of a group subscription.
struct GroupSubscriber {
    group: Arc<Group>,
    /// One acknowledger per stream, made on first use.
    ackers: Vec<Arc<dyn Acknowledger>>,
    /// The closer, then the reader, claimer and keeper (aborted on drop).
    aborts: Vec<AbortHandle>,
    /// `true` once the closer ran the close sequence.
    done: watch::Receiver<bool>,
}

impl GroupSubscriber {
    fn acker(&mut self, idx: u32) -> Option<Arc<dyn Acknowledger>> {
        let i = idx as usize;
        while self.ackers.len() <= i {
            let next = u32::try_from(self.ackers.len()).ok()?;
            let stream = self.group.stream(next)?;
            self.ackers
                .push(Arc::new(StreamAcker::new(self.group.clone(), stream)));
        }
        self.ackers.get(i).cloned()
    }
}

#[async_trait::async_trait]
impl Subscriber for GroupSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        loop {
            let item = match self.group.queue.poll_pop(cx) {
                Poll::Ready(Some(item)) => item,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let f = match item {
                Item::Entry(f) => f,
                Item::Malformed { id, reason } => {
                    return Poll::Ready(Some(Err(Error::Malformed {
                        id: id.to_string(),
                        reason,
                    })));
                }
            };
            // The ack timeout counts from here, not from the read.
            let deadline = keep::later(Instant::now(), self.group.cfg.ack_timeout);
            self.group
                .tracker
                .lock()
                .hand_over(f.stream, f.id, deadline);
            let Some(acker) = self.acker(f.stream) else {
                // Cannot happen (streams only grow); skip rather than panic.
                continue;
            };
            SubStats::bump(&self.group.stats.received);
            if f.attempt > 1 {
                SubStats::bump(&self.group.stats.redelivered);
            }
            return Poll::Ready(Some(Ok(Delivery::new(
                f.message,
                f.id,
                f.attempt,
                Some(acker),
            ))));
        }
    }

    fn stats(&self) -> SubscriberStats {
        let mut s = self.group.stats.snapshot();
        s.buffered = self.group.queue.len() as u64;
        s.capacity = self.group.queue.capacity() as u64;
        s
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        // The closer does the work (the same as on the transport's close).
        self.group.stop();
        close::wait(&mut self.done, close::CLOSE_BOUND).await;
        Ok(())
    }
}

impl Drop for GroupSubscriber {
    fn drop(&mut self) {
        if self.group.is_stopped() {
            // Closed (by `close` or the transport's close): the closer runs
            // or ran the close sequence; let it finish.
            return;
        }
        // Dropped without close: stop the closer and the tasks so nothing
        // keeps this consumer's entries alive any more (like a crash); the
        // flusher still drains queued acks.
        for task in &self.aborts {
            task.abort();
        }
        self.group.stop();
    }
}
