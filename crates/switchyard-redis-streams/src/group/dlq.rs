//! Dead letters: one Lua script moves an entry to its topic's dead-letter
//! stream and acks the original, atomically.
//!
//! Both keys (`{ns}:{t}` and `{ns}:{t}:dlq`) share a hash tag, so the
//! script stays within one Redis Cluster slot. The script first checks that
//! the entry is still pending in the group — so a retry after a lost reply
//! does nothing twice — and that it still exists in the stream; an entry
//! trimmed by retention meanwhile is only acked (and counted as lost to
//! retention).

use std::sync::LazyLock;

use switchyard_core::{Message, MessageId, Result, header};

use super::{Group, Stream, acker, is_nogroup};
use crate::buffer::SubStats;
use crate::wire;

/// Longest reason stored, in bytes.
const MAX_REASON: usize = 1024;

/// The dead-letter script. KEYS: the stream, its dead-letter stream. ARGV:
/// group, entry id, mode, MAXLEN of the dead-letter stream (`0`: none),
/// then fields. Mode `msg`: the fields are the whole new entry (the
/// original re-encoded with the dead-letter headers added). Mode `raw`:
/// the original entry's fields are copied as they are and the given fields
/// appended (for entries that cannot be decoded).
///
/// Returns 1 when dead-lettered, 0 when the entry was trimmed (only acked),
/// 2 when it was not pending any more (nothing done).
const SCRIPT: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 then return 2 end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #e == 0 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
local f = {}
if ARGV[3] == 'raw' then f = e[1][2] end
for i = 5, #ARGV do f[#f + 1] = ARGV[i] end
if ARGV[4] ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(f))
else
  redis.call('XADD', KEYS[2], '*', unpack(f))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
";

static DEAD_LETTER: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// What to dead-letter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Content<'a> {
    /// A decoded message: the dead letter is the same message (payload,
    /// dedup id, headers) with the `sy-dlq-*` headers added.
    Message(&'a Message),
    /// An entry that could not be decoded: its fields are copied raw, and
    /// the `sy-dlq-*` values appended as plain fields.
    Raw,
}

/// What the dead-letter script did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Moved to the dead-letter stream and acked.
    DeadLettered,
    /// Gone from the stream (trimmed): only acked.
    Trimmed,
    /// Not pending any more (or a dead letter itself): nothing to move.
    Settled,
}

/// Moves entry `id` of `stream` to the dead-letter stream with `reason`
/// and the number of delivery `attempts`, and acks it. Counts the outcome
/// in the subscriber's stats.
pub(crate) async fn dead_letter(
    g: &Group,
    stream: &Stream,
    id: MessageId,
    content: Content<'_>,
    reason: &str,
    attempts: u32,
) -> Result<Outcome> {
    g.untrack(stream.idx, id);
    let reason = truncate(reason, MAX_REASON);
    let Some(dlq_key) = &stream.dlq_key else {
        // Dead letters are not dead-lettered again: ack, and leave the entry
        // in its stream for inspection.
        if let Some(suppressed) = g.warn.check() {
            tracing::warn!(
                topic = %stream.topic, id = %id, reason, suppressed,
                "redis-streams: not dead-lettering an entry of a dead-letter topic; acking it (it stays in the stream)"
            );
        }
        acker::xack(g, &stream.key, &[id]).await?;
        return Ok(Outcome::Settled);
    };
    let attempts = attempts.to_string();
    let id_text = id.to_string();
    let mut inv = DEAD_LETTER.prepare_invoke();
    inv.key(&stream.key)
        .key(dlq_key)
        .arg(&g.cfg.group)
        .arg(&id_text);
    // The dead-letter stream's own rule when one names it, else `maxlen`.
    let maxlen = stream
        .topic
        .dead_letter()
        .map_or(g.inner.config.default_retention(), |t| {
            g.inner.config.retention_for(&t)
        })
        .max_len()
        .unwrap_or(0);
    match content {
        Content::Message(m) => {
            let mut headers = m.headers.clone();
            headers.insert(header::DLQ_REASON, reason);
            headers.insert(header::DLQ_TOPIC, stream.topic.as_str());
            headers.insert(header::DLQ_ID, id_text.as_str());
            headers.insert(header::DLQ_ATTEMPTS, attempts.as_str());
            inv.arg("msg")
                .arg(maxlen)
                .arg(wire::F_VERSION)
                .arg(wire::FORMAT_VERSION)
                .arg(wire::F_DEDUP)
                .arg(&wire::dedup_hex(m.dedup_id)[..])
                .arg(wire::F_PAYLOAD)
                .arg(&m.payload[..])
                .arg(wire::F_HEADERS)
                .arg(wire::encode_headers(&headers));
        }
        Content::Raw => {
            inv.arg("raw")
                .arg(maxlen)
                .arg(header::DLQ_REASON)
                .arg(reason)
                .arg(header::DLQ_TOPIC)
                .arg(stream.topic.as_str())
                .arg(header::DLQ_ID)
                .arg(&id_text)
                .arg(header::DLQ_ATTEMPTS)
                .arg(&attempts);
        }
    }
    let mut conn = g.conn();
    let done: i64 = match inv.invoke_async(&mut conn).await {
        Ok(n) => n,
        Err(e) if is_nogroup(&e) => 2,
        Err(e) => return Err(switchyard_redis::classify("dead-letter script", &e)),
    };
    let outcome = match done {
        1 => {
            SubStats::bump(&g.stats.dead_lettered);
            Outcome::DeadLettered
        }
        0 => {
            SubStats::bump(&g.stats.lost_to_retention);
            Outcome::Trimmed
        }
        _ => Outcome::Settled,
    };
    tracing::debug!(topic = %stream.topic, id = %id, reason, ?outcome, "redis-streams: dead letter");
    Ok(outcome)
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("éé", 3), "é");
        assert_eq!(truncate("", 0), "");
    }
}
