//! Operator access to dead letters: list them, move them back onto their
//! topic (replay), or delete them (purge). The `switchyard dlq` command is
//! built on this module.
//!
//! A dead letter of topic `t` is an entry of the stream `<ns>:{t}:dlq`: the
//! original message (payload, headers, dedup id) with four `sy-dlq-*`
//! headers added (see `docs/wire-format.md`).
//!
//! **Replay moves, atomically.** One Lua script checks that the dead letter
//! is still there, `XADD`s the message to `t` (without the `sy-dlq-*`
//! headers, with its original dedup id) and `XDEL`s the dead letter. Redis
//! runs a script as one step, so an interrupted replay (a killed process, a
//! lost connection) has either moved an entry completely or not at all:
//! running the replay again finishes the job without losing or duplicating
//! anything. Two operators replaying the same entry at once move it once.
//! Both keys share the hash tag `{t}`, so the script stays within one Redis
//! Cluster slot.
//!
//! ```no_run
//! use switchyard_core::Topic;
//! use switchyard_redis_streams::{StreamsConfig, admin::{DeadLetters, Replay}};
//! # async fn demo() -> switchyard_core::Result<()> {
//! let config = StreamsConfig::from_url("redis+streams://127.0.0.1:6379")?;
//! let mut dlq = DeadLetters::connect(&config).await?;
//! let topic = Topic::new("orders.created")?;
//! for letter in dlq.list(&topic, None, 100).await? {
//!     println!("{} failed {:?} times: {:?}", letter.id, letter.attempts, letter.reason);
//!     if let Replay::Moved { new_id } = dlq.replay(&topic, letter.id).await? {
//!         println!("back on {topic} as {new_id}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::LazyLock;

use redis::Value;
use switchyard_core::{Error, Message, MessageId, Result, Topic, header};
use switchyard_redis::{RedisClient, SharedConnection};

use crate::config::StreamsConfig;
use crate::keys::{dead_letter_key, stream_key};
use crate::wire::{self, Malformed};

/// Most entries one [`DeadLetters::list`] call returns.
pub const MAX_LIST: usize = 10_000;

/// The replay script. KEYS: the dead-letter stream, the topic's stream.
/// ARGV: dead-letter entry id, MAXLEN of the topic's stream (`0`: none),
/// then the fields of the new entry. Returns the new entry id, or `false`
/// when the dead letter is gone (replayed or purged meanwhile).
///
/// The XADD comes before the XDEL: should the XADD fail (out of memory),
/// the script stops with the dead letter still in place.
const REPLAY: &str = r"
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
local f = {}
for i = 3, #ARGV do f[#f + 1] = ARGV[i] end
local id
if ARGV[2] ~= '0' then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(f))
else
  id = redis.call('XADD', KEYS[2], '*', unpack(f))
end
redis.call('XDEL', KEYS[1], ARGV[1])
return id
";

static REPLAY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REPLAY));

/// One dead letter.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in the dead-letter stream (what `replay` and `purge` take).
    pub id: MessageId,
    /// Why it was dead-lettered (`sy-dlq-reason`), when recorded.
    pub reason: Option<String>,
    /// Its id in the original topic's stream (`sy-dlq-id`), when recorded.
    pub original_id: Option<MessageId>,
    /// Deliveries attempted before it was dead-lettered (`sy-dlq-attempts`).
    pub attempts: Option<u32>,
    /// The original message, `sy-dlq-*` headers removed; `Err` when the
    /// original entry could not be decoded (it was dead-lettered for that:
    /// such an entry can be listed and purged, not replayed).
    pub message: std::result::Result<Message, Malformed>,
}

/// What [`DeadLetters::replay`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replay {
    /// Moved back onto the topic as a new entry.
    Moved {
        /// The id of the new entry in the topic's stream.
        new_id: MessageId,
    },
    /// No such dead letter (already replayed or purged).
    Gone,
    /// The dead letter holds an entry that cannot be decoded; it stays in
    /// place (inspect it with `XRANGE`, then purge it).
    Malformed(Malformed),
}

/// Every stream key matching the `SCAN … MATCH` glob `glob` (see
/// [`keys::scan_all`](crate::keys::scan_all), [`keys::scan_match`](crate::keys::scan_match)):
/// on one server one full `SCAN` pass, on a Redis Cluster one on every
/// master. Sorted, without repeats.
pub async fn stream_keys(conn: &mut SharedConnection, glob: &str) -> Result<Vec<String>> {
    let mut keys = crate::discovery::scan_everywhere(conn, glob).await?;
    // SCAN may return a key twice.
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// Dead-letter operations on one Redis server (or a Redis Cluster),
/// within the namespace of a [`StreamsConfig`].
pub struct DeadLetters {
    conn: SharedConnection,
    namespace: String,
    /// For the length cap of replayed entries' topics.
    config: StreamsConfig,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// Connects to the Redis of `config` (bounded by its connect timeout;
    /// commands by its response timeout). Replayed entries are trimmed with
    /// the length cap of their topic's retention (its
    /// [`topic_retention`](StreamsConfig::topic_retention) rule, else
    /// `maxlen`), like published ones.
    pub async fn connect(config: &StreamsConfig) -> Result<DeadLetters> {
        let client = RedisClient::new(config.redis.clone())?;
        // On a cluster: routed by key, SCAN on every master.
        let conn = SharedConnection::open(client).await?;
        Ok(DeadLetters {
            conn,
            namespace: config.redis.namespace.clone(),
            config: config.clone(),
        })
    }

    /// The dead-letter stream key of `topic` (`t` or `t:dlq` both name the
    /// dead letters of `t`; every valid `t` has one).
    fn dlq_key(&self, topic: &Topic) -> Result<String> {
        Ok(dead_letter_key(&self.namespace, topic))
    }

    /// The stream key of the topic whose dead letters these are.
    fn topic_key(&self, topic: &Topic) -> String {
        let origin = topic.dead_letter_origin().unwrap_or_else(|| topic.clone());
        stream_key(&self.namespace, &origin)
    }

    /// Every topic of the namespace that has dead letters: its dead-letter
    /// topic (`T:dlq`) and how many it holds, sorted by topic. One `SCAN`
    /// pass over the namespace, then one `XLEN` per dead-letter stream.
    pub async fn topics(&mut self) -> Result<Vec<(Topic, u64)>> {
        let glob = crate::keys::scan_dead_letters(&self.namespace);
        let keys = crate::discovery::scan_everywhere(&mut self.conn, &glob).await?;
        let mut out = Vec::new();
        for key in keys {
            let Some(topic) = crate::keys::topic_of_key(&self.namespace, &key) else {
                continue;
            };
            if !topic.is_dead_letter() {
                continue;
            }
            let n = self.count(&topic).await?;
            if n > 0 {
                out.push((topic, n));
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// How many dead letters `topic` has (XLEN).
    pub async fn count(&mut self, topic: &Topic) -> Result<u64> {
        let key = self.dlq_key(topic)?;
        redis::cmd("XLEN")
            .arg(&key)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| failed("XLEN", &e))
    }

    /// The id of the newest dead letter of `topic`, if any.
    pub async fn last_id(&mut self, topic: &Topic) -> Result<Option<MessageId>> {
        let key = self.dlq_key(topic)?;
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| failed("XREVRANGE", &e))?;
        let entries = wire::parse_entries(reply).map_err(|m| Error::Backend(m.reason))?;
        Ok(entries.first().map(|e| e.id))
    }

    /// Up to `limit` (at most [`MAX_LIST`]) dead letters of `topic`, oldest
    /// first, starting after `after` (exclusive) or at the beginning.
    pub async fn list(
        &mut self,
        topic: &Topic,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let start = match after {
            Some(id) => format!("({id}"),
            None => "-".to_owned(),
        };
        self.range(topic, &start, "+", limit.clamp(1, MAX_LIST))
            .await
    }

    /// Moves dead letter `id` of `topic` back onto `topic`, atomically (see
    /// the module docs). The new entry has the original payload, headers
    /// and dedup id; its delivery count starts afresh.
    pub async fn replay(&mut self, topic: &Topic, id: MessageId) -> Result<Replay> {
        let letter = match self.get(topic, id).await? {
            None => return Ok(Replay::Gone),
            Some(l) => l,
        };
        let message = match letter.message {
            Ok(m) => m,
            Err(m) => return Ok(Replay::Malformed(m)),
        };
        let origin = topic.dead_letter_origin().unwrap_or_else(|| topic.clone());
        let maxlen = self.config.retention_for(&origin).max_len().unwrap_or(0);
        let mut inv = REPLAY_SCRIPT.prepare_invoke();
        inv.key(self.dlq_key(topic)?)
            .key(self.topic_key(topic))
            .arg(id.to_string())
            .arg(maxlen)
            .arg(wire::F_VERSION)
            .arg(wire::FORMAT_VERSION)
            .arg(wire::F_DEDUP)
            .arg(&wire::dedup_hex(message.dedup_id)[..])
            .arg(wire::F_PAYLOAD)
            .arg(&message.payload[..]);
        if !message.headers.is_empty() {
            inv.arg(wire::F_HEADERS)
                .arg(wire::encode_headers(&message.headers));
        }
        let reply: Value = inv.invoke_async(&mut self.conn).await.map_err(|e| {
            failed_granting(
                "the dead-letter replay script",
                "+evalsha +script|load +xrange +xadd +xdel",
                &e,
            )
        })?;
        match reply {
            Value::Nil | Value::Boolean(false) => Ok(Replay::Gone),
            other => {
                let text = match &other {
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    Value::SimpleString(s) => s.clone(),
                    _ => String::new(),
                };
                wire::parse_id(&text)
                    .map(|new_id| Replay::Moved { new_id })
                    .ok_or_else(|| {
                        Error::Backend(format!(
                            "the replay script returned {other:?}, not an entry id"
                        ))
                    })
            }
        }
    }

    /// Deletes dead letter `id` of `topic`; `false` when it was not there.
    pub async fn purge(&mut self, topic: &Topic, id: MessageId) -> Result<bool> {
        let key = self.dlq_key(topic)?;
        let n: u64 = redis::cmd("XDEL")
            .arg(&key)
            .arg(id.to_string())
            .query_async(&mut self.conn)
            .await
            .map_err(|e| failed("XDEL", &e))?;
        Ok(n > 0)
    }

    /// Deletes every dead letter of `topic` up to and including `up_to`
    /// (`XTRIM MINID`, exact), so letters dead-lettered after the caller
    /// looked stay. Returns how many were deleted.
    pub async fn purge_through(&mut self, topic: &Topic, up_to: MessageId) -> Result<u64> {
        let key = self.dlq_key(topic)?;
        let next = up_to.next();
        redis::cmd("XTRIM")
            .arg(&key)
            .arg("MINID")
            .arg(next.to_string())
            .query_async(&mut self.conn)
            .await
            .map_err(|e| failed("XTRIM", &e))
    }

    /// Dead letter `id` of `topic`, if it is there.
    pub async fn get(&mut self, topic: &Topic, id: MessageId) -> Result<Option<DeadLetter>> {
        let text = id.to_string();
        Ok(self.range(topic, &text, &text, 1).await?.into_iter().next())
    }

    /// `XRANGE <dead-letter stream> start end COUNT count`, decoded.
    async fn range(
        &mut self,
        topic: &Topic,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<DeadLetter>> {
        let key = self.dlq_key(topic)?;
        let origin = topic.dead_letter_origin().unwrap_or_else(|| topic.clone());
        let reply: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| failed("XRANGE", &e))?;
        let entries = wire::parse_entries(reply).map_err(|m| Error::Backend(m.reason))?;
        Ok(entries
            .into_iter()
            .map(|e| letter(&origin, e.id, e.fields.unwrap_or_default()))
            .collect())
    }
}

/// Reads one dead-letter entry: the message with its `sy-dlq-*` headers
/// taken out, or (for an undecodable original) the `sy-dlq-*` plain fields
/// the dead-letter script appended.
fn letter(origin: &Topic, id: MessageId, fields: Vec<(Vec<u8>, Vec<u8>)>) -> DeadLetter {
    let plain = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(f, _)| f.as_slice() == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let raw = (
        plain(header::DLQ_REASON),
        plain(header::DLQ_ID),
        plain(header::DLQ_ATTEMPTS),
    );
    let message = wire::decode(origin, id, fields);
    let (reason, original, attempts) = match &message {
        Ok(m) => (
            m.headers.get(header::DLQ_REASON).map(str::to_owned),
            m.headers.get(header::DLQ_ID).map(str::to_owned),
            m.headers.get(header::DLQ_ATTEMPTS).map(str::to_owned),
        ),
        Err(_) => raw,
    };
    let message = message.map(|mut m| {
        for key in [
            header::DLQ_REASON,
            header::DLQ_TOPIC,
            header::DLQ_ID,
            header::DLQ_ATTEMPTS,
        ] {
            m.headers.remove(key);
        }
        m
    });
    DeadLetter {
        id,
        reason,
        original_id: original.as_deref().and_then(wire::parse_id),
        attempts: attempts.and_then(|a| a.trim().parse().ok()),
        message,
    }
}

/// A redis-rs error of `command` as a switchyard error; a `NOPERM` says
/// `permission denied` and what to grant (docs/security.md).
fn failed(command: &str, e: &redis::RedisError) -> Error {
    if switchyard_redis::denied::is_noperm(e) {
        return switchyard_redis::denied::permission_denied(command, &e.to_string());
    }
    switchyard_redis::classify(command, e)
}

/// Like [`failed`] for a script: `grant` lists the commands it runs.
fn failed_granting(what: &str, grant: &str, e: &redis::RedisError) -> Error {
    if switchyard_redis::denied::is_noperm(e) {
        return Error::Backend(format!(
            "permission denied: {}",
            switchyard_redis::denied::denial_text_granting(what, grant, &e.to_string())
        ));
    }
    switchyard_redis::classify(what, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchyard_core::{DedupId, Headers};

    fn fields_of(m: &Message) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut f = vec![
            (b"v".to_vec(), b"1".to_vec()),
            (b"d".to_vec(), wire::dedup_hex(m.dedup_id).to_vec()),
            (b"p".to_vec(), m.payload.to_vec()),
        ];
        if !m.headers.is_empty() {
            f.push((b"h".to_vec(), wire::encode_headers(&m.headers)));
        }
        f
    }

    #[test]
    fn a_dead_letter_reads_back_as_the_original_message() -> Result<()> {
        let topic = Topic::new("orders")?;
        let mut headers = Headers::new();
        headers.insert("tenant", "a");
        headers.insert(header::DLQ_REASON, "poison");
        headers.insert(header::DLQ_TOPIC, "orders");
        headers.insert(header::DLQ_ID, "5-1");
        headers.insert(header::DLQ_ATTEMPTS, "3");
        let dedup = DedupId::random();
        let m = Message::from_parts(topic.clone(), Bytes::from_static(b"x"), headers, dedup);
        let l = letter(&topic, MessageId::new(9, 0), fields_of(&m));
        assert_eq!(l.reason.as_deref(), Some("poison"));
        assert_eq!(l.original_id, Some(MessageId::new(5, 1)));
        assert_eq!(l.attempts, Some(3));
        let back = l.message.map_err(|m| Error::Backend(m.reason))?;
        assert_eq!(back.dedup_id, dedup);
        assert_eq!(back.headers.len(), 1);
        assert_eq!(back.headers.get("tenant"), Some("a"));
        Ok(())
    }

    #[test]
    fn an_undecodable_dead_letter_keeps_its_plain_fields() {
        let Ok(topic) = Topic::new("orders") else {
            panic!("valid topic")
        };
        let fields = vec![
            (b"junk".to_vec(), b"1".to_vec()),
            (
                b"sy-dlq-reason".to_vec(),
                b"malformed entry: missing field v".to_vec(),
            ),
            (b"sy-dlq-id".to_vec(), b"7-0".to_vec()),
            (b"sy-dlq-attempts".to_vec(), b"1".to_vec()),
        ];
        let l = letter(&topic, MessageId::new(9, 0), fields);
        assert!(l.message.is_err());
        assert_eq!(l.original_id, Some(MessageId::new(7, 0)));
        assert_eq!(l.attempts, Some(1));
        assert!(
            l.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("malformed"))
        );
    }
}
