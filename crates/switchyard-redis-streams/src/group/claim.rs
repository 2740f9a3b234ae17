//! The claimer task: takes over entries idle for longer than the ack
//! timeout with `XAUTOCLAIM key group <self> <ack timeout> <cursor> COUNT n`.
//!
//! Such entries belong to members that crashed, dropped a delivery, or let
//! its ack timeout pass — and to entries released by `nack`, which the
//! keeper marks idle so the next round of any member takes them. Every
//! member runs a round every claim interval; this subscriber also runs one
//! right after it released something. Entries XAUTOCLAIM reports deleted
//! (trimmed by retention while pending) are acked and counted as lost to
//! retention, never retried.

use std::sync::Arc;
use std::time::Instant;

use redis::Value;
use switchyard_core::MessageId;

use super::fetch::{self, Attempts};
use super::keep::millis;
use super::{Group, Stream, is_nogroup};
use crate::wire;

/// Most XAUTOCLAIM calls per stream per round (each scans at most 10 ×
/// COUNT pending entries); the next round continues from the start.
const MAX_CALLS_PER_ROUND: usize = 64;

/// Runs until the subscriber or transport stops.
pub(crate) async fn run(g: Arc<Group>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(g.cfg.claim_interval) => {}
            () = g.claim_now.notified() => {}
            () = g.stopped() => return,
        }
        for stream in g.all_streams() {
            if g.is_stopped() {
                return;
            }
            if let Err(e) = claim_stream(&g, &stream).await {
                if is_nogroup(&e) {
                    // The reader recreates the group.
                    tracing::debug!(topic = %stream.topic, "XAUTOCLAIM: no such group yet");
                } else if switchyard_redis::denied::is_noperm(&e) {
                    // Not retried in a tighter loop; reported by health().
                    let text = g.inner.denied.record("XAUTOCLAIM", &e.to_string());
                    if let Some(suppressed) = g.warn.check() {
                        tracing::warn!(topic = %stream.topic, group = %g.cfg.group, suppressed,
                            "redis-streams: permission denied, stale entries are not claimed: {text}");
                    }
                } else if let Some(suppressed) = g.warn.check() {
                    tracing::warn!(
                        topic = %stream.topic, group = %g.cfg.group, error = %e, suppressed,
                        "redis-streams: claiming stale entries failed; retrying next round"
                    );
                }
            }
        }
    }
}

/// One round over `stream`: claims what is idle, as much as the local
/// buffer takes.
async fn claim_stream(g: &Group, stream: &Stream) -> redis::RedisResult<()> {
    let min_idle = millis(g.cfg.ack_timeout);
    let mut cursor = "0-0".to_owned();
    for _ in 0..MAX_CALLS_PER_ROUND {
        // Claim only what the buffer takes, under every overflow policy: a
        // claimed entry that is dropped again would only count an attempt.
        let count = g
            .queue
            .room()
            .min(g.inner.config.read_count)
            .min(g.in_flight_room());
        if count == 0 {
            // Full: leave them to other members (or the next round).
            return Ok(());
        }
        let mut conn = g.conn();
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&stream.key)
            .arg(&g.cfg.group)
            .arg(&g.cfg.consumer)
            .arg(min_idle)
            .arg(&cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        let touched = Instant::now();
        let Some(parsed) = parse_autoclaim(reply) else {
            tracing::debug!(topic = %stream.topic, "XAUTOCLAIM: unexpected reply");
            return Ok(());
        };
        if !parsed.deleted.is_empty() {
            fetch::lost_to_retention(g, stream, &parsed.deleted).await;
        }
        if !parsed.entries.is_empty() {
            tracing::debug!(
                topic = %stream.topic, n = parsed.entries.len(),
                "redis-streams: claimed stale entries"
            );
            if !fetch::accept(
                g,
                stream,
                parsed.entries.into_iter().map(Into::into).collect(),
                Attempts::Lookup,
                touched,
            )
            .await
            {
                return Ok(());
            }
        }
        if parsed.next == "0-0" {
            return Ok(());
        }
        cursor = parsed.next;
    }
    Ok(())
}

/// An XAUTOCLAIM reply: the next cursor, the claimed entries, and the ids
/// of pending entries that no longer exist (Redis 7+).
struct AutoClaim {
    next: String,
    entries: Vec<wire::RawEntry>,
    deleted: Vec<MessageId>,
}

fn parse_autoclaim(v: Value) -> Option<AutoClaim> {
    let Value::Array(parts) = v else {
        return None;
    };
    let mut it = parts.into_iter();
    let next = match it.next()? {
        Value::BulkString(b) => String::from_utf8(b).ok()?,
        Value::SimpleString(s) => s,
        _ => return None,
    };
    wire::parse_id(&next)?;
    let entries = wire::parse_entries(it.next()?).ok()?;
    let deleted = match it.next() {
        Some(Value::Array(ids)) => ids
            .into_iter()
            .filter_map(|v| match v {
                Value::BulkString(b) => std::str::from_utf8(&b).ok().and_then(wire::parse_id),
                Value::SimpleString(s) => wire::parse_id(&s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(AutoClaim {
        next,
        entries,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn autoclaim_replies() {
        let reply = Value::Array(vec![
            bulk("7-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-0"),
                Value::Array(vec![bulk("v"), bulk("1")]),
            ])]),
            Value::Array(vec![bulk("6-0"), bulk("6-1")]),
        ]);
        let p = parse_autoclaim(reply).unwrap();
        assert_eq!(p.next, "7-0");
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.deleted, vec![MessageId::new(6, 0), MessageId::new(6, 1)]);
        // Redis 6.2: no deleted list.
        let p = parse_autoclaim(Value::Array(vec![bulk("0-0"), Value::Array(vec![])])).unwrap();
        assert!(p.entries.is_empty() && p.deleted.is_empty());
        assert!(parse_autoclaim(Value::Nil).is_none());
        assert!(parse_autoclaim(Value::Array(vec![bulk("x"), Value::Array(vec![])])).is_none());
    }
}
