//! Turning fetched entries (from XREADGROUP, a pending re-read or
//! XAUTOCLAIM) into deliveries: dedupe against held entries, attempt
//! numbers from the pending list, dead letters for exhausted and malformed
//! entries, lost-to-retention for trimmed ones.

use std::collections::HashMap;
use std::time::Instant;

use redis::Value;
use switchyard_core::{Message, MessageId};

use super::dlq::{self, Content};
use super::{Fetched, Group, Item, Stream, acker, keep};
use crate::buffer::SubStats;
use crate::wire::{self, Malformed, RawEntry};

/// One fetched entry: its id, and its fields (`None` when the entry was
/// deleted but is still pending).
#[derive(Debug)]
pub(crate) struct FetchedEntry {
    /// The stream id.
    pub(crate) id: MessageId,
    /// The entry's content; `None` for a deleted entry.
    pub(crate) body: Option<Body>,
}

/// The content of a fetched entry.
#[derive(Debug)]
pub(crate) enum Body {
    /// Field/value pairs, decoded on delivery (replies parsed by redis-rs).
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// Already decoded by the lean reply parser.
    Decoded(Result<Message, Malformed>),
}

impl From<RawEntry> for FetchedEntry {
    fn from(e: RawEntry) -> Self {
        FetchedEntry {
            id: e.id,
            body: e.fields.map(Body::Pairs),
        }
    }
}

/// Where the attempt number of fetched entries comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempts {
    /// New entries (`>`): first delivery.
    First,
    /// Pending re-reads and claims: the delivery count in the pending
    /// list, fetched with one XPENDING per batch.
    Lookup,
}

/// Accepts a batch of entries of `stream` fetched at `touched` and hands
/// them to the application. `false` once the subscriber is closed.
pub(crate) async fn accept(
    g: &Group,
    stream: &Stream,
    entries: Vec<FetchedEntry>,
    attempts: Attempts,
    touched: Instant,
) -> bool {
    let mut gone = Vec::new();
    let mut fresh = Vec::with_capacity(entries.len());
    // Held entries fetched again (a re-read after a reconnect, a claim of
    // an entry whose keep-alive failed): the fetch raised their delivery
    // count although no new delivery is made; set it back.
    let mut again = Vec::new();
    {
        let mut t = g.tracker.lock();
        for e in entries {
            match e.body {
                // Held here (buffered or in the application's hands): its
                // data is here, its settlement decides.
                None if t.contains(stream.idx, e.id) => {}
                // Trimmed while pending: nothing to deliver.
                None => gone.push(e.id),
                Some(fields) => {
                    if t.fetch(stream.idx, e.id, touched) {
                        fresh.push((e.id, fields));
                    } else if attempts == Attempts::Lookup
                        && let Some(attempt) = t.attempt(stream.idx, e.id)
                    {
                        again.push((e.id, attempt));
                    }
                }
            }
        }
    }
    if !gone.is_empty() {
        lost_to_retention(g, stream, &gone).await;
    }
    if !again.is_empty() {
        keep::restore_counts(g, stream, &again).await;
    }
    if fresh.is_empty() {
        return true;
    }
    let counts = match attempts {
        Attempts::First => HashMap::new(),
        Attempts::Lookup => {
            let ids: Vec<MessageId> = fresh.iter().map(|(id, _)| *id).collect();
            pending_counts(g, stream, &ids).await
        }
    };
    let attempt_of = |id: &MessageId| match attempts {
        Attempts::First => 1,
        // Missing only under concurrent changes: it was delivered before.
        Attempts::Lookup => counts.get(id).copied().unwrap_or(2),
    };
    {
        // One lock for the batch, not one per entry.
        let mut t = g.tracker.lock();
        for (id, _) in &fresh {
            t.set_attempt(stream.idx, *id, attempt_of(id));
        }
    }
    let mut items = Vec::with_capacity(fresh.len());
    for (id, fields) in fresh {
        let attempt = attempt_of(&id);
        let decoded = match fields {
            Body::Pairs(pairs) => wire::decode(&stream.topic, id, pairs),
            Body::Decoded(decoded) => decoded,
        };
        if attempt > g.cfg.max_attempts {
            let reason = format!(
                "max attempts exhausted: {} deliveries of at most {} were not settled",
                attempt - 1,
                g.cfg.max_attempts
            );
            let content = match &decoded {
                Ok(m) => Content::Message(m),
                Err(_) => Content::Raw,
            };
            dead_letter(g, stream, id, content, &reason, attempt - 1).await;
            continue;
        }
        match decoded {
            Ok(message) => items.push(Item::Entry(Fetched {
                stream: stream.idx,
                id,
                message,
                attempt,
            })),
            Err(malformed) => {
                SubStats::bump(&g.stats.malformed);
                if let Some(suppressed) = g.warn.check() {
                    tracing::warn!(
                        topic = %stream.topic, id = %id, reason = %malformed, suppressed,
                        "redis-streams: malformed entry; moving it to the dead-letter stream"
                    );
                }
                let reason = format!("malformed entry: {malformed}");
                dead_letter(g, stream, id, Content::Raw, &reason, attempt).await;
                items.push(Item::Malformed {
                    id,
                    reason: malformed.reason,
                });
            }
        }
    }
    g.deliver(items).await
}

/// Dead-letters one entry; on failure it is no longer held here, so it
/// comes back after the ack timeout and is tried again.
async fn dead_letter(
    g: &Group,
    stream: &Stream,
    id: MessageId,
    content: Content<'_>,
    reason: &str,
    attempts: u32,
) {
    let r = dlq::dead_letter(g, stream, id, content, reason, attempts).await;
    if let Err(e) = &r {
        g.note_denied(
            "the dead-letter script",
            "+evalsha +script|load +xpending +xrange +xadd +xack",
            e,
        );
    }
    if let Err(e) = r
        && let Some(suppressed) = g.warn.check()
    {
        tracing::warn!(
            topic = %stream.topic, id = %id, error = %e, suppressed,
            "redis-streams: dead-lettering failed; the entry will be retried after the ack timeout"
        );
    }
}

/// Acks pending entries whose data was trimmed away and counts them.
pub(crate) async fn lost_to_retention(g: &Group, stream: &Stream, ids: &[MessageId]) {
    let n = u64::try_from(ids.len()).unwrap_or(u64::MAX);
    g.stats
        .lost_to_retention
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(topic = %stream.topic, n, "redis-streams: pending entries were trimmed by retention");
    let r = acker::xack(g, &stream.key, ids).await;
    if let Err(e) = &r {
        g.note_denied("XACK", "+xack", e);
    }
    if let Err(e) = r
        && let Some(suppressed) = g.warn.check()
    {
        tracing::warn!(topic = %stream.topic, error = %e, suppressed, "redis-streams: acking trimmed entries failed");
    }
}

/// The delivery counts of `ids` (pending for this consumer), in one
/// `XPENDING key group first last count consumer`. Ids it does not report
/// are missing from the map.
pub(crate) async fn pending_counts(
    g: &Group,
    stream: &Stream,
    ids: &[MessageId],
) -> HashMap<MessageId, u32> {
    let mut out = HashMap::with_capacity(ids.len());
    let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else {
        return out;
    };
    // Other held entries may lie in the range; ask for enough rows.
    let count = ids.len() + g.tracker.lock().held_in(stream.idx);
    let mut conn = g.conn();
    let reply: redis::RedisResult<Value> = redis::cmd("XPENDING")
        .arg(&stream.key)
        .arg(&g.cfg.group)
        .arg(first.to_string())
        .arg(last.to_string())
        .arg(count)
        .arg(&g.cfg.consumer)
        .query_async(&mut conn)
        .await;
    let rows = match reply {
        Ok(Value::Array(rows)) => rows,
        Ok(_) => return out,
        Err(e) => {
            tracing::debug!(topic = %stream.topic, error = %e, "XPENDING for delivery counts failed");
            return out;
        }
    };
    for row in rows {
        if let Some((id, _idle, n)) = super::keep::parse_pending_row(&row) {
            out.insert(id, n);
        }
    }
    out
}
