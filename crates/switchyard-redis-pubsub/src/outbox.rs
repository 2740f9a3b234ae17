//! The bounded outbox between local publishing and Redis, and the task
//! that drains it with pipelined `PUBLISH`es.
//!
//! `publish` delivers locally, then enqueues the encoded frame here and
//! returns. The sender task takes up to `batch` frames at a time and sends
//! them as one pipeline on its own connection (see `publisher`). A failed
//! pipeline is retried (in order, before anything newer) with jittered
//! backoff while its frames are younger than `outbox_ttl`; older frames are
//! dropped and counted, and other replicas see them as a gap. The outbox is
//! bounded twice: in messages (`outbox`) and in bytes of frames and channel
//! names (`outbox_bytes`). When it is full, `publish`
//! waits up to `outbox_wait` for room while Redis is reachable (at once
//! while it is not), then drops the message and counts it.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use switchyard_core::Backoff;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterSink;
use crate::publisher::{Answered, Failed, PublishConn};
use crate::shared::Shared;
use crate::stats::{WarnKind, add, limited_warn};

/// A pipeline stops growing past this many bytes of frames.
pub(crate) const MAX_PIPELINE_BYTES: usize = 1 << 20;

/// One frame waiting to be published.
#[derive(Debug)]
pub(crate) struct OutboxEntry {
    pub(crate) channel: String,
    pub(crate) frame: Bytes,
    pub(crate) enqueued: Instant,
}

impl OutboxEntry {
    /// What the entry weighs against the byte bound.
    fn size(&self) -> usize {
        self.frame.len() + self.channel.len()
    }
}

/// The queued entries and their total size.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<OutboxEntry>,
    bytes: usize,
}

impl Queue {
    fn pop_front(&mut self) -> Option<OutboxEntry> {
        let e = self.items.pop_front()?;
        self.bytes -= e.size();
        Some(e)
    }
}

/// The bounded queue of frames for Redis.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    cap: usize,
    /// Most bytes of frames and channel names queued.
    cap_bytes: usize,
    /// Wakes the sender.
    work: Notify,
    /// Wakes publishers waiting for room.
    space: Notify,
    /// Signalled when the queue is empty and nothing is in flight.
    idle: Notify,
    in_flight: AtomicUsize,
    /// Whether the last attempt to reach Redis succeeded.
    healthy: AtomicBool,
}

impl Outbox {
    /// An outbox of at most `cap` messages and `cap_bytes` bytes (one
    /// message is always let in when the outbox is empty).
    pub(crate) fn new(cap: usize, cap_bytes: usize) -> Self {
        Outbox {
            queue: Mutex::new(Queue::default()),
            cap: cap.max(1),
            cap_bytes,
            work: Notify::new(),
            space: Notify::new(),
            idle: Notify::new(),
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    /// Frames waiting (not counting a batch in flight).
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Bytes of frames and channel names waiting.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.queue.lock().bytes
    }

    /// Whether the sender reached Redis on its last attempt.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.queue.lock().items.is_empty()
    }

    fn try_push(&self, entry: OutboxEntry) -> Result<(), OutboxEntry> {
        {
            let mut q = self.queue.lock();
            let size = entry.size();
            let over_bytes = !q.items.is_empty() && q.bytes.saturating_add(size) > self.cap_bytes;
            if q.items.len() >= self.cap || over_bytes {
                return Err(entry);
            }
            q.bytes += size;
            q.items.push_back(entry);
        }
        self.work.notify_one();
        Ok(())
    }

    /// Enqueues `entry`; when full, waits up to `wait` for room (only while
    /// Redis is reachable). Returns false when the entry was dropped.
    pub(crate) async fn push(&self, entry: OutboxEntry, wait: Duration) -> bool {
        let mut entry = match self.try_push(entry) {
            Ok(()) => return true,
            Err(e) => e,
        };
        if wait.is_zero() || !self.is_healthy() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut room = pin!(self.space.notified());
            room.as_mut().enable();
            entry = match self.try_push(entry) {
                Ok(()) => return true,
                Err(e) => e,
            };
            if tokio::time::timeout_at(deadline, room).await.is_err() || !self.is_healthy() {
                return self.try_push(entry).is_ok();
            }
        }
    }

    /// Moves up to `max` frames into `batch`, oldest first, stopping before
    /// frames and channel names exceed [`MAX_PIPELINE_BYTES`] (always at
    /// least one frame).
    fn take(&self, max: usize, batch: &mut Vec<OutboxEntry>) {
        let mut q = self.queue.lock();
        let mut n = 0;
        let mut bytes = 0;
        for e in q.items.iter().take(max) {
            let size = e.size();
            if n > 0 && bytes + size > MAX_PIPELINE_BYTES {
                break;
            }
            bytes += size;
            n += 1;
        }
        q.bytes -= bytes;
        batch.extend(q.items.drain(..n));
        self.in_flight.store(batch.len(), Ordering::Release);
        drop(q);
        if n > 0 {
            self.space.notify_waiters();
        }
    }

    /// Drops queued frames older than `ttl`; returns how many.
    fn expire(&self, ttl: Duration) -> usize {
        let now = Instant::now();
        let mut q = self.queue.lock();
        let before = q.items.len();
        while q
            .items
            .front()
            .is_some_and(|e| now.duration_since(e.enqueued) >= ttl)
        {
            q.pop_front();
        }
        let n = before - q.items.len();
        drop(q);
        if n > 0 {
            self.space.notify_waiters();
        }
        n
    }

    fn done(&self) {
        self.in_flight.store(0, Ordering::Release);
        if self.is_idle() {
            self.idle.notify_waiters();
        }
    }

    /// Waits until every queued frame was sent (or dropped), at most `timeout`.
    /// Returns whether the outbox drained.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut idle = pin!(self.idle.notified());
            idle.as_mut().enable();
            if self.is_idle() {
                return true;
            }
            self.work.notify_one();
            // Re-check now and then: the sender may be sleeping in a backoff.
            let step = tokio::time::Instant::now() + Duration::from_millis(50);
            if tokio::time::timeout_at(step.min(deadline), idle)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.is_idle();
            }
        }
    }
}

/// Where the sender publishes: one server (`PUBLISH`, following the
/// Sentinel primary) or the masters of a cluster (`SPUBLISH`).
enum Sink {
    Single {
        conn: Option<PublishConn>,
        /// The Sentinel primary epoch `conn` was opened under.
        epoch: u64,
    },
    Cluster(ClusterSink),
}

impl Sink {
    /// Publishes `batch`. Afterwards `batch` holds what is to be sent
    /// again (all of it, or on a cluster what did not reach its master);
    /// the answer counts what Redis took or refused.
    async fn send(
        &mut self,
        sh: &Shared,
        batch: &mut Vec<OutboxEntry>,
    ) -> (Answered, Option<Failed>) {
        let (conn, conn_epoch) = match self {
            Sink::Cluster(c) => return c.send(sh, batch).await,
            Sink::Single { conn, epoch } => (conn, epoch),
        };
        let epoch = sh.client.primary_epoch();
        if epoch != *conn_epoch {
            // The sentinels name a new primary: publish there.
            *conn = None;
        }
        let connection = match conn {
            Some(c) => c,
            None => {
                *conn_epoch = epoch;
                match PublishConn::open(&sh.client).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        return (
                            Answered::default(),
                            Some(Failed::connect(format!(
                                "cannot reach redis to publish: {e}"
                            ))),
                        );
                    }
                }
            }
        };
        match connection
            .publish(batch, sh.config.redis.response_timeout)
            .await
        {
            Ok(mut answered) => {
                // No cluster here: a redirection is a refusal like any other.
                answered.refused += std::mem::take(&mut answered.redirected).len();
                batch.clear();
                (answered, None)
            }
            Err(failed) => {
                *conn = None;
                (Answered::default(), Some(failed))
            }
        }
    }

    /// Connects if needed and PINGs (every master on a cluster); false
    /// on failure.
    async fn probe(&mut self, sh: &Shared) -> bool {
        match self {
            Sink::Single { conn, .. } => probe(sh, conn).await,
            Sink::Cluster(c) => c.probe(sh).await,
        }
    }
}

/// The sender task: drains the outbox into Redis until cancelled.
pub(crate) async fn run_sender(sh: Arc<Shared>, cancel: CancellationToken) {
    let cfg = &sh.config;
    let outbox = &sh.outbox;
    let ttl = cfg.outbox_ttl;
    let mut sink = if sh.client.is_cluster() {
        Sink::Cluster(ClusterSink::default())
    } else {
        Sink::Single {
            conn: None,
            epoch: sh.client.primary_epoch(),
        }
    };
    let mut batch: Vec<OutboxEntry> = Vec::with_capacity(cfg.batch);
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    loop {
        let expired = expire_batch(&mut batch, ttl) + outbox.expire(ttl);
        if expired > 0 {
            add(&sh.counters.outbox_expired, expired as u64);
            limited_warn!(sh.warn, WarnKind::OutboxDrop, expired, ttl = ?ttl,
                "redis pubsub: dropped messages not sent to redis within the outbox ttl; other replicas will see a gap");
        }
        if !batch.is_empty() && matches!(sink, Sink::Cluster(_)) && batch.len() < cfg.batch {
            // On a cluster what is left of a batch waits for one master
            // (gone, or its slots moving): newer messages go along, so the
            // other masters are not held up. Per-topic order holds, since a
            // topic's messages all go to one master, in outbox order.
            outbox.take(cfg.batch - batch.len(), &mut batch);
        }
        if batch.is_empty() {
            outbox.take(cfg.batch, &mut batch);
            if batch.is_empty() {
                outbox.done();
                if !outbox.is_healthy() {
                    // Nothing to send, but the last attempt failed: find out
                    // when Redis is back, so health() does not stay degraded.
                    let up = tokio::select! {
                        _ = cancel.cancelled() => return,
                        up = sink.probe(&sh) => up,
                    };
                    if up {
                        outbox.healthy.store(true, Ordering::Relaxed);
                        backoff.reset();
                    } else {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = outbox.work.notified() => {}
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                        }
                    }
                    continue;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = outbox.work.notified() => continue,
                }
            }
        }
        let (answered, failed) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sink.send(&sh, &mut batch) => r,
        };
        let refused = answered.refused;
        if refused > 0 {
            add(&sh.counters.outbox_refused, refused as u64);
            if let Some(reply) = answered.first_refusal.as_deref()
                && switchyard_redis::denied::is_noperm_text(reply)
            {
                let command = if sh.client.is_cluster() {
                    "SPUBLISH"
                } else {
                    "PUBLISH"
                };
                sh.denied.record(command, reply);
            }
            limited_warn!(sh.warn, WarnKind::PublishError, refused, reply = ?answered.first_refusal,
                "redis pubsub: redis refused PUBLISH; those messages are dropped");
        }
        add(&sh.counters.published, answered.delivered as u64);
        match failed {
            None => {
                batch.clear();
                outbox.healthy.store(true, Ordering::Relaxed);
                backoff.reset();
            }
            Some(failed) if !failed.transient => {
                add(&sh.counters.publish_errors, 1);
                add(&sh.counters.outbox_refused, batch.len() as u64);
                limited_warn!(sh.warn, WarnKind::PublishError, error = %failed.reason, dropped = batch.len(),
                    "redis pubsub: publishing failed for good; dropping the batch");
                batch.clear();
            }
            Some(failed) => {
                if !failed.connect {
                    add(&sh.counters.publish_errors, 1);
                }
                outbox.healthy.store(false, Ordering::Relaxed);
                limited_warn!(sh.warn, WarnKind::PublishError, error = %failed.reason, pending = batch.len(),
                    "redis pubsub: publishing to redis failed; retrying while the messages are young");
                if sleep_or_cancel(backoff.next_delay(), &cancel).await {
                    return;
                }
            }
        }
    }
}

/// Connects if needed and PINGs; false (and no connection) on failure.
async fn probe(sh: &Shared, conn: &mut Option<PublishConn>) -> bool {
    let timeout = sh.config.redis.response_timeout;
    if conn.is_none() {
        match PublishConn::open(&sh.client).await {
            Ok(c) => *conn = Some(c),
            Err(_) => return false,
        }
    }
    let Some(c) = conn.as_mut() else {
        return false;
    };
    let ok = c.ping(timeout).await;
    if !ok {
        *conn = None;
    }
    ok
}

fn expire_batch(batch: &mut Vec<OutboxEntry>, ttl: Duration) -> usize {
    let now = Instant::now();
    let before = batch.len();
    batch.retain(|e| now.duration_since(e.enqueued) < ttl);
    before - batch.len()
}

/// Sleeps `d`; returns true when cancelled first.
pub(crate) async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> OutboxEntry {
        OutboxEntry {
            channel: "ns:t".into(),
            frame: Bytes::from(i.to_string()),
            enqueued: Instant::now(),
        }
    }

    #[tokio::test]
    async fn bounded_with_back_pressure() {
        let o = Outbox::new(2, usize::MAX);
        assert!(o.push(entry(1), Duration::ZERO).await);
        assert!(o.push(entry(2), Duration::ZERO).await);
        assert!(!o.push(entry(3), Duration::ZERO).await);
        let started = Instant::now();
        assert!(!o.push(entry(3), Duration::from_millis(50)).await);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // While Redis is away a full outbox drops at once.
        o.healthy.store(false, Ordering::Relaxed);
        let started = Instant::now();
        assert!(!o.push(entry(3), Duration::from_secs(10)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
        o.healthy.store(true, Ordering::Relaxed);
        // Room made while a publisher waits lets it in.
        let o = Arc::new(o);
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.push(entry(4), Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        let mut batch = Vec::new();
        o.take(1, &mut batch);
        assert!(waiter.await.unwrap());
        assert_eq!(o.len(), 2);
        assert!(!o.is_idle());
        batch.clear();
        o.take(10, &mut batch);
        assert_eq!(batch.len(), 2);
        batch.clear();
        o.done();
        assert!(o.drain(Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn pipelines_are_bounded_in_bytes() {
        let o = Outbox::new(10, usize::MAX);
        let big = |n: usize| OutboxEntry {
            channel: "ns:t".into(),
            frame: Bytes::from(vec![0u8; n]),
            enqueued: Instant::now(),
        };
        assert!(o.push(big(2 * MAX_PIPELINE_BYTES), Duration::ZERO).await);
        assert!(o.push(big(MAX_PIPELINE_BYTES / 3), Duration::ZERO).await);
        assert!(o.push(big(MAX_PIPELINE_BYTES / 3), Duration::ZERO).await);
        assert!(o.push(big(MAX_PIPELINE_BYTES / 3), Duration::ZERO).await);
        let mut batch = Vec::new();
        // An oversized frame goes alone.
        o.take(10, &mut batch);
        assert_eq!(batch.len(), 1);
        batch.clear();
        // Three thirds (plus channel names) exceed the bound: two go.
        o.take(10, &mut batch);
        assert_eq!(batch.len(), 2);
        batch.clear();
        o.take(10, &mut batch);
        assert_eq!(batch.len(), 1);
    }

    /// Before: the outbox was bounded in messages only, so 10,000 queued
    /// messages of 8 MiB (while Redis is slow or away) could hold 80 GB.
    #[tokio::test]
    async fn bounded_in_bytes() {
        let o = Outbox::new(1000, 100);
        let sized = |n: usize| OutboxEntry {
            channel: "ns:t".into(),
            frame: Bytes::from(vec![0u8; n]),
            enqueued: Instant::now(),
        };
        // An empty outbox lets one message in whatever its size.
        assert!(o.push(sized(500), Duration::ZERO).await);
        assert!(!o.push(sized(1), Duration::ZERO).await);
        let mut batch = Vec::new();
        o.take(10, &mut batch);
        assert_eq!((batch.len(), o.bytes()), (1, 0));
        // 4 + 46 bytes each: two fit in 100, the third does not.
        assert!(o.push(sized(46), Duration::ZERO).await);
        assert!(o.push(sized(46), Duration::ZERO).await);
        assert!(!o.push(sized(46), Duration::ZERO).await);
        assert_eq!((o.len(), o.bytes()), (2, 100));
        // Expiry and sending give the bytes back.
        let mut old = sized(46);
        old.enqueued = Instant::now() - Duration::from_secs(10);
        let o = Outbox::new(1000, 100);
        assert!(o.push(old, Duration::ZERO).await);
        assert_eq!(o.expire(Duration::from_secs(5)), 1);
        assert_eq!(o.bytes(), 0);
    }

    #[tokio::test]
    async fn expiry() {
        let o = Outbox::new(10, usize::MAX);
        let mut old = entry(1);
        old.enqueued = Instant::now() - Duration::from_secs(10);
        assert!(o.push(old, Duration::ZERO).await);
        assert!(o.push(entry(2), Duration::ZERO).await);
        assert_eq!(o.expire(Duration::from_secs(5)), 1);
        assert_eq!(o.len(), 1);
        let mut batch = vec![entry(3)];
        batch[0].enqueued = Instant::now() - Duration::from_secs(10);
        batch.push(entry(4));
        assert_eq!(expire_batch(&mut batch, Duration::from_secs(5)), 1);
        assert_eq!(batch.len(), 1);
    }
}
