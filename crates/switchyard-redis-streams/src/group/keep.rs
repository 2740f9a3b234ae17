//! The keeper task: keeps held entries from being claimed by other members,
//! releases nacked entries, and runs the idle-consumer cleanup.
//!
//! Every quarter of the ack timeout it refreshes the entries held here
//! whose idle clock in Redis is at least that old, with
//! `XCLAIM key group <self> <min-idle> id... JUSTID` (JUSTID leaves the
//! delivery count alone and resets the idle time). `<min-idle>` is the
//! youngest idle time this consumer can be sure of minus a margin: an entry
//! another member claimed meanwhile has a smaller idle time and is not
//! taken back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Error, MessageId, Result};

use super::track::Stale;
use super::{Group, Stream, cleanup};

/// Most ids in one XCLAIM.
const XCLAIM_MAX_IDS: usize = 1000;
/// The fewest milliseconds between keep-alive passes.
const MIN_TICK: Duration = Duration::from_millis(5);

/// Runs until the subscriber or transport stops.
pub(crate) async fn run(g: Arc<Group>) {
    let at = g.cfg.ack_timeout;
    let tick = (at / 4).max(MIN_TICK);
    let cleanup_every = (g.inner.config.consumer_idle_cleanup / 2)
        .clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut next_keep = Instant::now() + tick;
    let mut next_cleanup = Instant::now() + cleanup_every;
    loop {
        let mut wake = next_keep.min(next_cleanup);
        if let Some(due) = g.tracker.lock().next_due() {
            wake = wake.min(due);
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            () = g.keep_now.notified() => {}
            () = g.stopped() => return,
        }
        let now = Instant::now();
        let due = g.tracker.lock().take_due(now);
        if !due.is_empty() {
            g.releases.lock().extend(due);
        }
        release(&g).await;
        if now >= next_keep {
            refresh(&g, tick).await;
            next_keep = Instant::now() + tick;
        }
        if now >= next_cleanup {
            cleanup::run(&g).await;
            next_cleanup = Instant::now() + cleanup_every;
        }
    }
}

/// Makes the released entries claimable at once: `XCLAIM key group <self>
/// 0 id... IDLE <ack timeout> JUSTID` sets their idle time to the ack
/// timeout, so the next XAUTOCLAIM round of any member takes them (and
/// counts a new delivery). Wakes this subscriber's claimer for that round.
pub(crate) async fn release(g: &Group) {
    let released = std::mem::take(&mut *g.releases.lock());
    if released.is_empty() {
        return;
    }
    let mut by_stream: BTreeMap<u32, Vec<MessageId>> = BTreeMap::new();
    for (s, id) in released {
        by_stream.entry(s).or_default().push(id);
    }
    let idle_ms = millis(g.cfg.ack_timeout);
    let mut pipe = redis::pipe();
    for (idx, ids) in &by_stream {
        let Some(stream) = g.stream(*idx) else {
            continue;
        };
        for chunk in ids.chunks(XCLAIM_MAX_IDS) {
            let cmd = pipe
                .cmd("XCLAIM")
                .arg(&stream.key)
                .arg(&g.cfg.group)
                .arg(&g.cfg.consumer)
                .arg(0);
            for id in chunk {
                cmd.arg(id.to_string());
            }
            cmd.arg("IDLE").arg(idle_ms).arg("JUSTID").ignore();
        }
    }
    let mut conn = g.conn();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await
        && let Some(suppressed) = g.warn.check()
    {
        // Not fatal: the entries are no longer kept alive, so they come
        // back after the ack timeout anyway.
        tracing::warn!(
            group = %g.cfg.group, error = %e, suppressed,
            "redis-streams: releasing nacked entries failed; they come back after the ack timeout"
        );
    }
    g.claim_now.notify_one();
}

/// Most pending entries per stream `release_untracked` looks at.
const CLOSE_SCAN: usize = 1000;

/// On close: releases the entries pending for this consumer that it does
/// not hold — fetched by a read that `close` cut short, or left by an
/// earlier run of this consumer name — so other members take them at once
/// instead of after the ack timeout. Handed-out and delayed entries stay.
pub(crate) async fn release_untracked(g: &Group) {
    let streams = g.all_streams();
    if streams.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    for s in &streams {
        pipe.cmd("XPENDING")
            .arg(&s.key)
            .arg(&g.cfg.group)
            .arg("-")
            .arg("+")
            .arg(CLOSE_SCAN)
            .arg(&g.cfg.consumer);
    }
    let mut conn = g.conn();
    let replies: Vec<redis::Value> = match pipe.query_async(&mut conn).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(group = %g.cfg.group, error = %e, "redis-streams: XPENDING on close failed; entries come back after the ack timeout");
            return;
        }
    };
    for (s, reply) in streams.iter().zip(replies) {
        let redis::Value::Array(rows) = reply else {
            continue;
        };
        for row in rows {
            let redis::Value::Array(fields) = row else {
                continue;
            };
            let id = match fields.first() {
                Some(redis::Value::BulkString(b)) => {
                    std::str::from_utf8(b).ok().and_then(crate::wire::parse_id)
                }
                Some(redis::Value::SimpleString(t)) => crate::wire::parse_id(t),
                _ => None,
            };
            if let Some(id) = id
                && !g.tracker.lock().contains(s.idx, id)
            {
                g.release(s.idx, id);
            }
        }
    }
}

/// Refreshes held entries whose idle clock is at least `tick` old.
async fn refresh(g: &Group, tick: Duration) {
    let at = g.cfg.ack_timeout;
    let now = Instant::now();
    let stale = g.tracker.lock().stale(now, tick, at);
    if stale.is_empty() {
        return;
    }
    let mut by_stream: BTreeMap<u32, Vec<Stale>> = BTreeMap::new();
    for s in stale {
        by_stream.entry(s.0).or_default().push(s);
    }
    for (idx, mut entries) in by_stream {
        let Some(stream) = g.stream(idx) else {
            continue;
        };
        // Oldest first; chunks whose touch times lie within a quarter of the
        // ack timeout share one min-idle guard.
        entries.sort_by_key(|e| e.2);
        let mut start = 0;
        while start < entries.len() {
            let oldest = entries[start].2;
            let mut end = start;
            while end < entries.len()
                && end - start < XCLAIM_MAX_IDS
                && entries[end].2.saturating_duration_since(oldest) <= at / 4
            {
                end += 1;
            }
            let chunk = &entries[start..end];
            start = end;
            let ids: Vec<MessageId> = chunk.iter().map(|e| e.1).collect();
            let youngest = chunk.iter().map(|e| e.2).max().unwrap_or(now);
            let min_idle = now
                .saturating_duration_since(youngest)
                .saturating_sub(at / 4);
            match claim_justid(g, &stream, &ids, min_idle).await {
                Ok(kept) => {
                    let when = Instant::now();
                    let mut t = g.tracker.lock();
                    t.touch(idx, &kept, when);
                    if kept.len() < ids.len() {
                        // Settled, claimed by another member, or trimmed:
                        // not ours to keep any more.
                        for id in ids.iter().filter(|id| !kept.contains(id)) {
                            t.remove(idx, *id);
                        }
                    }
                }
                Err(e) => {
                    if let Some(suppressed) = g.warn.check() {
                        tracing::warn!(
                            group = %g.cfg.group, error = %e, entries = ids.len(), suppressed,
                            "redis-streams: keeping held entries alive failed; retrying"
                        );
                    }
                }
            }
        }
    }
}

/// `in_progress()`: restarts the idle clock of one handed-out entry and
/// its ack deadline. Fails when the entry is no longer pending for this
/// consumer (settled, claimed by another member after its deadline, or
/// trimmed).
pub(crate) async fn extend(g: &Group, stream: &Stream, id: MessageId) -> Result<()> {
    let at = g.cfg.ack_timeout;
    let now = Instant::now();
    let touched = g.tracker.lock().touched(stream.idx, id);
    let min_idle = touched
        .map(|t| now.saturating_duration_since(t).saturating_sub(at / 4))
        .unwrap_or_default();
    let kept = claim_justid(g, stream, &[id], min_idle)
        .await
        .map_err(|e| switchyard_redis::classify("XCLAIM", &e))?;
    let when = Instant::now();
    if kept.contains(&id) {
        g.tracker.lock().extend(stream.idx, id, when, when + at);
        Ok(())
    } else {
        g.tracker.lock().remove(stream.idx, id);
        Err(Error::Backend(format!(
            "in_progress: entry {id} of {} is no longer pending for consumer {:?} of group {:?} (settled, claimed by another member after its ack timeout, or trimmed)",
            stream.topic, g.cfg.consumer, g.cfg.group
        )))
    }
}

/// `XCLAIM key group <self> <min_idle> ids... JUSTID`: the ids now
/// pending for this consumer with a fresh idle time.
async fn claim_justid(
    g: &Group,
    stream: &Stream,
    ids: &[MessageId],
    min_idle: Duration,
) -> redis::RedisResult<Vec<MessageId>> {
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(&stream.key)
        .arg(&g.cfg.group)
        .arg(&g.cfg.consumer)
        .arg(millis(min_idle));
    for id in ids {
        cmd.arg(id.to_string());
    }
    cmd.arg("JUSTID");
    let mut conn = g.conn();
    let reply: Vec<String> = cmd.query_async(&mut conn).await?;
    Ok(reply
        .iter()
        .filter_map(|s| crate::wire::parse_id(s))
        .collect())
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
