//! The keeper task: keeps held entries from being claimed by other members,
//! releases nacked and given-back entries, and runs the idle-consumer
//! cleanup.
//!
//! Every quarter of the ack timeout it refreshes the entries held here
//! whose idle clock in Redis is at least that old, through the hold script
//! (`XCLAIM key group <self> <min-idle> id... JUSTID` on the entries still
//! pending for this consumer and still in the stream; JUSTID leaves the
//! delivery count alone and resets the idle time). `<min-idle>` is the
//! youngest idle time this consumer can be sure of minus a margin: an entry
//! another member claimed meanwhile has a smaller idle time and is not
//! taken back.
//!
//! Releases go through the same script with `IDLE <ack timeout>` (claimable
//! at once) and `RETRYCOUNT <deliveries the application received>`, so
//! `attempt()` counts only deliveries that reached the application.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
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
    let mut next_keep = later(Instant::now(), tick);
    let mut next_cleanup = later(Instant::now(), cleanup_every);
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
        for (stream, id, attempt) in due {
            // Delivered with `attempt`: the next delivery is `attempt + 1`.
            g.release(stream, id, Some(attempt));
        }
        release(&g).await;
        if now >= next_keep {
            refresh(&g, tick).await;
            next_keep = later(Instant::now(), tick);
        }
        if now >= next_cleanup {
            cleanup::run(&g).await;
            next_cleanup = later(Instant::now(), cleanup_every);
        }
    }
}

/// The hold script: takes entries pending for this consumer (again) with
/// `XCLAIM ... JUSTID`, after checking each one. KEYS: the stream. ARGV:
/// group, consumer, min-idle ms, `IDLE` ms (`''`: none), `RETRYCOUNT`
/// (`''`: leave the delivery count alone), `'1'` to XACK entries trimmed
/// away (else they are only reported), then the ids.
///
/// An id not pending for this consumer (settled, or taken over by another
/// member) is skipped, so a hand-back never takes an entry back from
/// another member. An id pending here whose entry was trimmed is reported
/// in the second list (XCLAIM would silently drop it from the pending list
/// on Redis 7, and it would never be counted as lost to retention).
/// Returns `{claimed ids, trimmed ids}`.
const HOLD: &str = r"
local claim, gone = {}, {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p == 1 then
    if #redis.call('XRANGE', KEYS[1], id, id) == 0 then
      if ARGV[6] == '1' then redis.call('XACK', KEYS[1], ARGV[1], id) end
      gone[#gone + 1] = id
    else
      claim[#claim + 1] = id
    end
  end
end
local kept = {}
if #claim > 0 then
  local args = {KEYS[1], ARGV[1], ARGV[2], ARGV[3]}
  for _, id in ipairs(claim) do args[#args + 1] = id end
  if ARGV[4] ~= '' then
    args[#args + 1] = 'IDLE'
    args[#args + 1] = ARGV[4]
  end
  if ARGV[5] ~= '' then
    args[#args + 1] = 'RETRYCOUNT'
    args[#args + 1] = ARGV[5]
  end
  args[#args + 1] = 'JUSTID'
  kept = redis.call('XCLAIM', unpack(args))
end
return {kept, gone}
";

static HOLD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(HOLD));

/// How [`hold`] treats the entries it takes.
#[derive(Clone, Copy, Debug)]
struct HoldMode {
    /// Only entries idle at least this long are taken (a guard against
    /// taking back what another member claimed).
    min_idle: Duration,
    /// `IDLE`: the idle time to set (a release sets the ack timeout).
    idle: Option<Duration>,
    /// `RETRYCOUNT`: the delivery count to set.
    count: Option<u32>,
    /// XACK entries trimmed away (a release: nobody holds their data).
    ack_trimmed: bool,
}

/// What [`hold`] did: the ids now pending here, and those trimmed away.
#[derive(Debug, Default)]
struct Held {
    kept: Vec<MessageId>,
    trimmed: Vec<MessageId>,
}

/// Runs the hold script on `ids` of `stream`.
async fn hold(
    g: &Group,
    stream: &Stream,
    ids: &[MessageId],
    mode: HoldMode,
) -> redis::RedisResult<Held> {
    let mut inv = HOLD_SCRIPT.prepare_invoke();
    inv.key(&stream.key)
        .arg(&g.cfg.group)
        .arg(&g.cfg.consumer)
        .arg(millis(mode.min_idle))
        .arg(mode.idle.map(|d| millis(d).to_string()).unwrap_or_default())
        .arg(mode.count.map(|c| c.to_string()).unwrap_or_default())
        .arg(if mode.ack_trimmed { "1" } else { "0" });
    for id in ids {
        inv.arg(id.to_string());
    }
    let mut conn = g.conn();
    let (kept, trimmed): (Vec<String>, Vec<String>) = inv.invoke_async(&mut conn).await?;
    let parse = |v: Vec<String>| -> Vec<MessageId> {
        v.iter().filter_map(|s| crate::wire::parse_id(s)).collect()
    };
    Ok(Held {
        kept: parse(kept),
        trimmed: parse(trimmed),
    })
}

/// Makes the released entries claimable at once: the hold script sets
/// their idle time to the ack timeout (`XCLAIM ... IDLE`), so the next
/// XAUTOCLAIM round of any member takes them, and their delivery count to
/// the deliveries the application received (`RETRYCOUNT`), so the claim
/// that delivers them again numbers the attempt right. Entries trimmed
/// meanwhile are acked and counted as lost to retention. Wakes this
/// subscriber's claimer for that round.
pub(crate) async fn release(g: &Group) {
    let released = std::mem::take(&mut *g.releases.lock());
    if released.is_empty() {
        return;
    }
    let mut batches: BTreeMap<(u32, Option<u32>), Vec<MessageId>> = BTreeMap::new();
    for r in released {
        batches.entry((r.stream, r.count)).or_default().push(r.id);
    }
    let mode = |count| HoldMode {
        min_idle: Duration::ZERO,
        idle: Some(g.cfg.ack_timeout),
        count,
        ack_trimmed: true,
    };
    for ((idx, count), ids) in &batches {
        let Some(stream) = g.stream(*idx) else {
            continue;
        };
        for chunk in ids.chunks(XCLAIM_MAX_IDS) {
            match hold(g, &stream, chunk, mode(*count)).await {
                Ok(held) => {
                    if !held.trimmed.is_empty() {
                        count_lost(g, &stream, held.trimmed.len());
                    }
                }
                Err(e) => {
                    g.note_denied(
                        "the release script",
                        "+evalsha +script|load +xpending +xrange +xclaim +xack",
                        &e,
                    );
                    if let Some(suppressed) = g.warn.check() {
                        // Not fatal: the entries are no longer kept alive, so
                        // they come back after the ack timeout anyway.
                        tracing::warn!(
                            group = %g.cfg.group, topic = %stream.topic, error = %e, suppressed,
                            "redis-streams: giving entries back to the group failed; they come back after the ack timeout"
                        );
                    }
                }
            }
        }
    }
    g.claim_now.notify_one();
}

/// Sets the delivery count of held entries fetched again back to the
/// attempt of their delivery (`RETRYCOUNT`), so a re-read that made no new
/// delivery costs no attempt. Best effort: on failure the count stays one
/// higher until the entry is settled or given back (which sets it).
pub(crate) async fn restore_counts(g: &Group, stream: &Stream, entries: &[(MessageId, u32)]) {
    let mut by_count: BTreeMap<u32, Vec<MessageId>> = BTreeMap::new();
    for (id, attempt) in entries {
        by_count.entry(*attempt).or_default().push(*id);
    }
    for (count, ids) in by_count {
        for chunk in ids.chunks(XCLAIM_MAX_IDS) {
            let mode = HoldMode {
                min_idle: Duration::ZERO,
                idle: None,
                count: Some(count),
                ack_trimmed: false,
            };
            // One retry: right after a reconnect the shared connection may
            // fail once before it reconnects too.
            let mut result = hold(g, stream, chunk, mode).await;
            if result.is_err() {
                result = hold(g, stream, chunk, mode).await;
            }
            match result {
                Ok(held) => g
                    .tracker
                    .lock()
                    .touch(stream.idx, &held.kept, Instant::now()),
                Err(e) => {
                    tracing::debug!(topic = %stream.topic, error = %e, "redis-streams: restoring delivery counts failed");
                }
            }
        }
    }
}

/// Counts `n` entries of `stream` lost to retention.
fn count_lost(g: &Group, stream: &Stream, n: usize) {
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    g.stats
        .lost_to_retention
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(topic = %stream.topic, n, "redis-streams: pending entries were trimmed by retention");
}

/// Most pending entries per stream `release_untracked` looks at.
const CLOSE_SCAN: usize = 1000;

/// On close: releases the entries pending for this consumer that it does
/// not hold — fetched by a read that `close` cut short, or left by an
/// earlier run of this consumer name — so other members take them at once
/// instead of after the ack timeout. Handed-out and delayed entries stay.
///
/// An entry delivered to this consumer since the subscriber started (its
/// idle time says so) never reached the application: its delivery count
/// goes back by one. One left by an earlier run keeps its count (that run
/// may have handed it out before it ended).
pub(crate) async fn release_untracked(g: &Group) {
    let streams = g.all_streams();
    if streams.is_empty() {
        return;
    }
    let xpending = |s: &Stream| {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&s.key)
            .arg(&g.cfg.group)
            .arg("-")
            .arg("+")
            .arg(CLOSE_SCAN)
            .arg(&g.cfg.consumer);
        cmd
    };
    let mut conn = g.conn();
    let replies: redis::RedisResult<Vec<redis::Value>> = if g.inner.client.is_cluster() {
        // One slot per stream: no pipeline across them.
        let mut replies = Vec::with_capacity(streams.len());
        let mut failed = None;
        for s in &streams {
            match xpending(s).query_async(&mut conn).await {
                Ok(v) => replies.push(v),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        failed.map_or(Ok(replies), Err)
    } else {
        let mut pipe = redis::pipe();
        for s in &streams {
            pipe.add_command(xpending(s));
        }
        pipe.query_async(&mut conn).await
    };
    let replies = match replies {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(group = %g.cfg.group, error = %e, "redis-streams: XPENDING on close failed; entries come back after the ack timeout");
            return;
        }
    };
    let running = millis(g.started.elapsed());
    // Already on their way back (with the count they should get).
    let queued: std::collections::HashSet<(u32, MessageId)> =
        g.releases.lock().iter().map(|r| (r.stream, r.id)).collect();
    for (s, reply) in streams.iter().zip(replies) {
        let redis::Value::Array(rows) = reply else {
            continue;
        };
        for row in rows {
            let Some((id, idle, count)) = parse_pending_row(&row) else {
                continue;
            };
            if queued.contains(&(s.idx, id)) || g.tracker.lock().contains(s.idx, id) {
                continue;
            }
            let count = (idle < running).then(|| count.saturating_sub(1));
            g.release(s.idx, id, count);
        }
    }
}

/// One row `[id, consumer, idle ms, deliveries]` of extended XPENDING
/// (also read by `fetch` for the delivery counts of re-read entries).
pub(super) fn parse_pending_row(row: &redis::Value) -> Option<(MessageId, u64, u32)> {
    let redis::Value::Array(fields) = row else {
        return None;
    };
    let id = match fields.first()? {
        redis::Value::BulkString(b) => crate::wire::parse_id(std::str::from_utf8(b).ok()?)?,
        redis::Value::SimpleString(t) => crate::wire::parse_id(t)?,
        _ => return None,
    };
    let idle = match fields.get(2)? {
        redis::Value::Int(n) => u64::try_from(*n).ok()?,
        _ => return None,
    };
    let count = match fields.get(3)? {
        redis::Value::Int(n) => u32::try_from(*n).ok()?,
        _ => return None,
    };
    Some((id, idle, count))
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
            let mode = HoldMode {
                min_idle,
                idle: None,
                count: None,
                ack_trimmed: false,
            };
            match hold(g, &stream, &ids, mode).await {
                Ok(held) => {
                    let when = Instant::now();
                    let mut t = g.tracker.lock();
                    t.touch(idx, &held.kept, when);
                    if held.kept.len() + held.trimmed.len() < ids.len() {
                        // Settled or claimed by another member: not ours to
                        // keep any more. Trimmed ones stay held (their data
                        // is here): their settlement counts them.
                        for id in ids
                            .iter()
                            .filter(|id| !held.kept.contains(id) && !held.trimmed.contains(id))
                        {
                            t.remove(idx, *id);
                        }
                    }
                }
                Err(e) => {
                    g.note_denied(
                        "the keep-alive script",
                        "+evalsha +script|load +xpending +xrange +xclaim +xack",
                        &e,
                    );
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

/// `in_progress()`: restarts the idle clock of one handed-out entry
/// (delivered with `attempt`) and its ack deadline. Fails when the entry
/// is no longer pending for this consumer (settled, or claimed by another
/// member after its ack timeout) or was trimmed by retention.
pub(crate) async fn extend(g: &Group, stream: &Stream, id: MessageId, attempt: u32) -> Result<()> {
    let at = g.cfg.ack_timeout;
    let now = Instant::now();
    let touched = g.tracker.lock().touched(stream.idx, id);
    let min_idle = touched
        .map(|t| now.saturating_duration_since(t).saturating_sub(at / 4))
        .unwrap_or_default();
    let mode = HoldMode {
        min_idle,
        idle: None,
        count: None,
        ack_trimmed: false,
    };
    let held = hold(g, stream, &[id], mode)
        .await
        .map_err(|e| switchyard_redis::classify("in_progress (XCLAIM)", &e))?;
    let when = Instant::now();
    if held.kept.contains(&id) {
        g.tracker
            .lock()
            .extend(stream.idx, id, attempt, when, later(when, at));
        Ok(())
    } else if held.trimmed.contains(&id) {
        Err(Error::Backend(format!(
            "in_progress: entry {id} of {} was trimmed by retention (maxlen/retention) while in the application's hands; ack it when done, or nack it (it is then counted as lost to retention)",
            stream.topic
        )))
    } else {
        g.tracker.lock().remove(stream.idx, id);
        Err(Error::Backend(format!(
            "in_progress: entry {id} of {} is no longer pending for consumer {:?} of group {:?} (settled, or claimed by another member after its ack timeout)",
            stream.topic, g.cfg.consumer, g.cfg.group
        )))
    }
}

/// `from + d`, or the latest representable instant when that overflows
/// (a `Duration::MAX` delay or ack timeout means "never" here).
pub(crate) fn later(from: Instant, d: Duration) -> Instant {
    if let Some(t) = from.checked_add(d) {
        return t;
    }
    // About 30 years, then shorter steps: the first that fits.
    let mut step = Duration::from_secs(30 * 365 * 24 * 3600);
    while !step.is_zero() {
        if let Some(t) = from.checked_add(step) {
            return t;
        }
        step /= 2;
    }
    from
}

/// Whole milliseconds, saturating at `i64::MAX` (the largest time Redis
/// accepts as an argument).
pub(crate) fn millis(d: Duration) -> u64 {
    const MAX: u64 = i64::MAX as u64;
    u64::try_from(d.as_millis()).unwrap_or(MAX).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(3600));
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(millis(Duration::MAX), i64::MAX as u64);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
    }

    #[test]
    fn pending_rows() {
        use redis::Value;
        let row = Value::Array(vec![
            Value::BulkString(b"5-1".to_vec()),
            Value::BulkString(b"c".to_vec()),
            Value::Int(10),
            Value::Int(3),
        ]);
        assert_eq!(parse_pending_row(&row), Some((MessageId::new(5, 1), 10, 3)));
        assert_eq!(parse_pending_row(&Value::Int(1)), None);
        assert_eq!(
            parse_pending_row(&Value::Array(vec![Value::BulkString(b"x".to_vec())])),
            None
        );
    }
}
