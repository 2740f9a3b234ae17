//! Settling group deliveries: the [`Acknowledger`] handed out with every
//! delivery, and the flusher that batches acks into XACKs.
//!
//! `ack()` puts the id on a bounded queue (waiting when it is full) and
//! returns; the flusher takes everything queued at once and sends one
//! `XACK key group id1 id2 ...` per stream, so acks reach Redis within one
//! round trip of being made. On close the queue is drained within a bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Acknowledger, Backoff, Delivery, Error, MessageId, Result, Retry};
use tokio::sync::mpsc;

use super::dlq::{self, Content};
use super::{CLOSE_FLUSH_TIMEOUT, Group, Stream, is_nogroup, keep};
use crate::buffer::SubStats;

/// Most acks taken from the queue per flush.
const FLUSH_MAX: usize = 8192;
/// Most ids in one XACK command.
const XACK_MAX_IDS: usize = 2048;
/// Most `nack(After)` delays waiting at once per subscriber.
const MAX_DELAYED: usize = 1 << 20;
/// Most releases waiting for the keeper; beyond, entries simply come back
/// after the ack timeout.
const MAX_RELEASES: usize = 1 << 20;

/// One queued ack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AckOp {
    pub(crate) stream: u32,
    pub(crate) id: MessageId,
}

/// The acknowledger of the deliveries of one stream.
pub(crate) struct StreamAcker {
    group: Arc<Group>,
    stream: Arc<Stream>,
}

impl StreamAcker {
    pub(crate) fn new(group: Arc<Group>, stream: Arc<Stream>) -> Self {
        StreamAcker { group, stream }
    }
}

#[async_trait::async_trait]
impl Acknowledger for StreamAcker {
    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let g = &self.group;
        let id = delivery.id();
        g.untrack(self.stream.idx, id);
        let op = AckOp {
            stream: self.stream.idx,
            id,
        };
        // Room on the queue (the common case): no send future to wait on.
        let queued = match g.acks.try_send(op) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(op)) => g.acks.send(op).await.map_err(|_| ()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        if queued.is_err() {
            // The flusher is gone (subscriber closed): ack directly.
            if g.inner.is_closed() {
                return Err(Error::Closed);
            }
            xack(g, &self.stream.key, &[id]).await?;
        }
        SubStats::bump(&g.stats.acked);
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, retry: Retry) -> Result<()> {
        let g = &self.group;
        let (idx, id, attempt) = (self.stream.idx, delivery.id(), delivery.attempt());
        SubStats::bump(&g.stats.nacked);
        let max = g.cfg.max_attempts;
        let reason = match &retry {
            Retry::DeadLetter(reason) => Some(reason.clone()),
            _ if attempt >= max => Some(format!(
                "max attempts exhausted: attempt {attempt} of {max} was nacked"
            )),
            _ => None,
        };
        if let Some(reason) = reason {
            let content = Content::Message(delivery.message());
            dlq::dead_letter(g, &self.stream, id, content, &reason, attempt).await?;
            return Ok(());
        }
        match retry {
            Retry::After(delay) if !delay.is_zero() => {
                let due = keep::later(Instant::now(), delay);
                if !g.tracker.lock().delay(idx, id, attempt, due, MAX_DELAYED) {
                    return Err(Error::Transient(format!(
                        "too many delayed nacks waiting ({MAX_DELAYED}); the message comes back after the ack timeout"
                    )));
                }
                g.keep_now.notify_one();
            }
            // Delivered with `attempt`: the next delivery is `attempt + 1`.
            _ => g.release(idx, id, Some(attempt)),
        }
        Ok(())
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<()> {
        keep::extend(&self.group, &self.stream, delivery.id(), delivery.attempt()).await
    }

    fn abandon(&self, delivery: &Delivery) {
        self.group
            .release(self.stream.idx, delivery.id(), Some(delivery.attempt()));
    }
}

/// An entry given back to the group, waiting for the keeper.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Release {
    pub(crate) stream: u32,
    pub(crate) id: MessageId,
    /// The delivery count to set (`RETRYCOUNT`): the deliveries the
    /// application received. `None` leaves the count as it is.
    pub(crate) count: Option<u32>,
}

impl Group {
    /// Gives an entry back to the group at once: the keeper marks it idle
    /// for the ack timeout (`XCLAIM ... IDLE`) and sets its delivery count
    /// to `count` (`RETRYCOUNT`, the deliveries the application received),
    /// and the next claim round — here, triggered right away, or of any
    /// other member — takes it.
    pub(crate) fn release(&self, stream: u32, id: MessageId, count: Option<u32>) {
        self.untrack(stream, id);
        {
            let mut r = self.releases.lock();
            if r.len() >= MAX_RELEASES {
                return;
            }
            r.push(Release { stream, id, count });
        }
        self.keep_now.notify_one();
    }

    /// Gives back an entry fetched for a delivery with `attempt` that
    /// never reached the application: its count goes back by one.
    pub(crate) fn give_back_unseen(&self, stream: u32, id: MessageId, attempt: u32) {
        self.release(stream, id, Some(attempt.saturating_sub(1)));
    }
}

/// `XACK key group ids...` now, on the shared connection.
pub(crate) async fn xack(g: &Group, key: &str, ids: &[MessageId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut conn = g.conn();
    let mut cmd = redis::cmd("XACK");
    cmd.arg(key).arg(&g.cfg.group);
    for id in ids {
        cmd.arg(id.to_string());
    }
    match cmd.query_async::<redis::Value>(&mut conn).await {
        Ok(_) => Ok(()),
        // No group any more: nothing is pending, so nothing to ack.
        Err(e) if is_nogroup(&e) => Ok(()),
        Err(e) => Err(switchyard_redis::classify("XACK", &e)),
    }
}

/// The flusher task: sends queued acks until the subscriber or transport
/// stops, then drains what is queued within [`CLOSE_FLUSH_TIMEOUT`].
pub(crate) async fn flush(g: Arc<Group>, mut rx: mpsc::Receiver<AckOp>) {
    let mut buf = Vec::with_capacity(256);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut buf, FLUSH_MAX) => n,
            () = g.stopped() => break,
        };
        if n == 0 {
            break;
        }
        if buf.len() < FLUSH_MAX {
            // One wake-up per run of acks: let the application's tasks
            // that are acking right now queue theirs, so one XACK carries
            // them all instead of one XACK per wake-up.
            tokio::task::yield_now().await;
            while buf.len() < FLUSH_MAX {
                match rx.try_recv() {
                    Ok(op) => buf.push(op),
                    Err(_) => break,
                }
            }
        }
        send(&g, &mut buf, None).await;
    }
    // Refuse new acks (callers then ack directly) and flush the rest.
    rx.close();
    let deadline = Instant::now() + CLOSE_FLUSH_TIMEOUT;
    while let Ok(op) = rx.try_recv() {
        buf.push(op);
        if buf.len() >= FLUSH_MAX {
            send(&g, &mut buf, Some(deadline)).await;
        }
    }
    send(&g, &mut buf, Some(deadline)).await;
    g.flushed.send_replace(true);
}

/// Waits (up to `timeout`) until the flusher drained the ack queue.
pub(crate) async fn drain(g: &Group, timeout: Duration) {
    let mut done = g.flushed.subscribe();
    let _ = tokio::time::timeout(timeout, done.wait_for(|d| *d)).await;
}

/// Sends the acks in `buf` (one XACK per stream, pipelined), retrying
/// transient failures with backoff until they succeed, the subscriber
/// stops (when `deadline` is `None`) or `deadline` passes. Empties `buf`.
///
/// On a Redis Cluster a pipeline may only touch one slot, and every stream
/// has its own: one pipeline per stream there.
async fn send(g: &Group, buf: &mut Vec<AckOp>, deadline: Option<Instant>) {
    if buf.is_empty() {
        return;
    }
    let mut by_stream: BTreeMap<u32, Vec<MessageId>> = BTreeMap::new();
    for op in buf.drain(..) {
        by_stream.entry(op.stream).or_default().push(op.id);
    }
    let per_stream = g.inner.client.is_cluster();
    let mut pipes = vec![(redis::pipe(), 0usize)];
    for (idx, ids) in &by_stream {
        let Some(stream) = g.stream(*idx) else {
            continue;
        };
        if per_stream && pipes.last().is_some_and(|(_, n)| *n > 0) {
            pipes.push((redis::pipe(), 0));
        }
        let Some((pipe, acked)) = pipes.last_mut() else {
            continue;
        };
        for chunk in ids.chunks(XACK_MAX_IDS) {
            let cmd = pipe.cmd("XACK").arg(&stream.key).arg(&g.cfg.group);
            for id in chunk {
                cmd.arg(id.to_string());
            }
            cmd.ignore();
            *acked += chunk.len();
        }
    }
    for (pipe, acked) in pipes {
        if acked > 0 {
            send_pipe(g, &pipe, acked, deadline).await;
        }
    }
}

/// Sends one pipeline of XACKs (`acked` ids), retrying as [`send`] says.
async fn send_pipe(g: &Group, pipe: &redis::Pipeline, acked: usize, deadline: Option<Instant>) {
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
    loop {
        let mut conn = g.conn();
        let e = match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if is_nogroup(&e) {
            // The group is gone (server restarted without persistence):
            // these entries are not pending anywhere any more.
            tracing::debug!(group = %g.cfg.group, acked, "XACK: no such group; dropping acks");
            return;
        }
        if switchyard_redis::denied::is_noperm(&e) {
            let text = g.inner.denied.record("XACK", &e.to_string());
            if let Some(suppressed) = g.warn.check() {
                tracing::warn!(group = %g.cfg.group, acks = acked, suppressed,
                    "redis-streams: permission denied, the entries will be redelivered: {text}");
            }
            return;
        }
        let transient = switchyard_redis::is_transient(&e);
        if let Some(suppressed) = g.warn.check() {
            tracing::warn!(
                group = %g.cfg.group, error = %e, acks = acked, transient, suppressed,
                "redis-streams: sending acks failed{}",
                if transient { "; retrying" } else { "; the entries will be redelivered" }
            );
        }
        if !transient {
            return;
        }
        let pause = backoff.next_delay();
        match deadline {
            Some(d) => {
                if Instant::now() + pause >= d {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
            None => {
                if !g.sleep(pause).await {
                    // Stopped: one last try within the close deadline.
                    let last = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
                        let mut conn = g.conn();
                        pipe.query_async::<()>(&mut conn).await
                    });
                    let _ = last.await;
                    return;
                }
            }
        }
    }
}
